"""Semantic localization latency on an indexed scene of 10k chips: a new text query's heatmap.

    python bench/localize.py [--json] [--chips 10000] [--queries 30]

Builds (once, cached under RSRAG_CACHE) a synthetic scene the size that 224-px chips at stride 112
tile into `--chips` chips (100 x 100 chips: 11,312 px square, 5 m, UTM; a sparse GeoTIFF, only its
grid matters here), an index of its chip records with the default encoder's id and random unit
vectors (the index stores what `rsrag index scenes` would), and the scene's patch store (random int8
patch vectors of the finest-scale chips, 7 x 7 x dim each, as `rsrag.localize.store` keeps them).
Then times `Localizer.localize` for `--queries` new query texts, each never seen before (the text
encoding included): p50 / p90 in ms, after one warm-up query that loads the scene's stored vectors
(timed separately as `load_ms`). Target: p50 well under 200 ms.
Writes `results_dir()/bench_localize.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import cache_dir, results_dir  # noqa: E402

WORDS = ["farmland", "rivers", "small lakes", "a forest", "houses", "roads", "bare land", "a harbour", "wetlands",
         "a parking lot", "storage tanks", "a stadium", "a bridge", "a beach", "a golf course", "grassland",
         "an airport", "a freeway", "industrial buildings", "a church", "a school", "a playground", "a desert",
         "mountains", "a railway station", "dense houses", "sparse houses", "a port", "a square", "a resort"]


def synthetic_scene(side: int) -> Path:
    """A sparse 3-band uint8 GeoTIFF of `side` x `side` px (no blocks written: tiny on disk)."""
    import rasterio
    from rasterio.transform import from_origin

    path = cache_dir() / f"bench_localize_scene_{side}.tif"
    if not path.is_file():
        with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                           crs="EPSG:32614", transform=from_origin(500_000.0, 5_300_000.0, 5.0, 5.0),
                           tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True):
            pass
    return path


def build_index(chips: int):
    """The index of the scene's chips (random vectors) and its patch store; reused when present."""
    from rsrag.encoders import create_encoder
    from rsrag.geo import Stretch, Tiling, open_scene
    from rsrag.geo.chips import chip_place, chip_record
    from rsrag.geo.tiling import chip_windows
    from rsrag.index import Library
    from rsrag.localize.features import PatchBank
    from rsrag.localize.store import patch_file, save_patches

    per_side = int(round(np.sqrt(chips)))
    side = 112 * (per_side - 1) + 224
    scene = open_scene(synthetic_scene(side))
    root = cache_dir() / "bench_localize_index"
    name = f"loc{per_side * per_side}"
    encoder = create_encoder()
    try:
        lib = Library.open(root, name, encoder=encoder)
    except Exception:  # not built yet
        lib = Library.create(root, name, encoder=encoder, exist_ok=True)
    windows = list(chip_windows(scene, Tiling(size=224, overlap=112)))
    if len(lib) != len(windows):
        records = [chip_record(scene, w, 224, ["red", "green", "blue"], Stretch(), chip_place(scene, w))
                   for w in windows]
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((len(records), encoder.dim)).astype(np.float32)
        lib.add_embedded(records, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    ids = lib.rows(["id"], filters={"scene": scene.id}).column("id").to_pylist()
    store = patch_file(lib, scene.id, ids)
    if not (store / "scale.npy").is_file():
        rng = np.random.default_rng(1)
        q = np.empty((len(ids), 7, 7, encoder.dim), np.int8)
        scale = np.empty((len(ids), 7, 7), np.float32)
        for start in range(0, len(ids), 500):  # in slices: never the float32 patches of all chips at once
            block = rng.standard_normal((min(500, len(ids) - start), 7, 7, encoder.dim)).astype(np.float32)
            bank = PatchBank.quantize(block / np.linalg.norm(block, axis=-1, keepdims=True))
            q[start:start + len(block)], scale[start:start + len(block)] = bank.q, bank.scale
        save_patches(store, np.arange(len(ids)), PatchBank(q, scale))
    return lib, scene.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rsrag.localize import Localizer, indexed_features

    t0 = time.perf_counter()
    lib, scene_id = build_index(args.chips)
    build_s = time.perf_counter() - t0
    localizer = Localizer(lib.encoder)
    t1 = time.perf_counter()
    features = indexed_features(lib, scene_id)
    localizer.localize(features, "warm-up query about nothing in particular")
    load_ms = (time.perf_counter() - t1) * 1000
    times = []
    for i in range(args.queries):
        text = f"{WORDS[i % len(WORDS)]} near {WORDS[(7 * i + 3) % len(WORDS)]}"  # new text every time
        t = time.perf_counter()
        result = localizer.localize(indexed_features(lib, scene_id), text)
        times.append((time.perf_counter() - t) * 1000)
    out = {"chips": len(features), "patch_chips": int(len(features.patch_rows)),
           "grid": list(result.heatmap.shape), "dense_top": localizer.settings.dense_top,
           "build_s": round(build_s, 1), "load_ms": round(load_ms, 1), "queries": args.queries,
           "p50_ms": round(float(np.percentile(times, 50)), 1), "p90_ms": round(float(np.percentile(times, 90)), 1),
           "min_ms": round(min(times), 1)}
    path = results_dir() / "bench_localize.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2) if args.json else
          f"{out['chips']} chips: new-query heatmap p50 {out['p50_ms']} ms, p90 {out['p90_ms']} ms "
          f"(first query with loading {out['load_ms']} ms)")


if __name__ == "__main__":
    main()
