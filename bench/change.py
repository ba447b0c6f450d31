"""Change maps: speed on an indexed 10k-chip area and on two unindexed 1000 x 1000 scenes.

    python bench/change.py [--json] [--chips 10000]

indexed     Two dates of a synthetic area as an index: two 3-band GeoTIFFs on one UTM grid, cut into
            64 px chips (100 x 100 = 10,000 chips per date). The chips' vectors are real: RSICD test
            embeddings of the default encoder assigned at random (date 2 = date 1 with small noise, 3% of
            the chips given another image's vector), added through `Library.add_embedded` (no encoding of
            the synthetic pixels). Times `detect_dates` cold (first call: the calibration reads and
            embeds 48 chips of the scene file, then caches) and warm (p50 / max of 5 calls). Target:
            warm under 1 s.
scenes      Two unindexed 1000 x 1000 px GeoTIFFs (4 x 4 UCM test chips of 250 px, 1 m, UTM; date 2 has
            3 cells replaced and every cell jittered): `detect_scenes` end to end (read, embed both dates,
            calibrate, map, regions), default options.
Writes `results_dir()/bench_change.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import results_dir  # noqa: E402


def write_tif(path: Path, image: np.ndarray, origin=(500_000.0, 5_200_000.0), res: float = 1.0) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    data = np.moveaxis(image, 2, 0)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                       crs="EPSG:32614", transform=from_origin(*origin, res, res), tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate") as ds:
        ds.write(data)
    return path


def indexed(encoder, folder: Path, chips: int) -> dict:
    from rsrag.change.series import detect_dates
    from rsrag.data import load_dataset
    from rsrag.geo import Tiling, chip_windows, open_scene
    from rsrag.geo.chips import chip_place, chip_record
    from rsrag.geo.scene import Stretch
    from rsrag.index import Library

    side = int(round(np.sqrt(chips)))
    size = 64
    rng = np.random.default_rng(0)
    texture = rng.integers(40, 200, (side * size, side * size, 3), dtype=np.uint8)
    paths = [write_tif(folder / f"area_{date}.tif", texture) for date in ("20090818", "20200831")]
    records = load_dataset("rsicd", "test")[:256]
    bank = encoder.encode_images([r.path for r in records])
    library = Library.create(folder / "idx", "bench-change", encoder=encoder)
    first = rng.integers(len(bank), size=side * side)
    vectors = bank[first]
    t0 = time.perf_counter()
    for k, path in enumerate(paths):
        scene = open_scene(path)
        windows = list(chip_windows(scene, Tiling(size=size)))
        recs = [chip_record(scene, w, size, ["red", "green", "blue"], Stretch(), chip_place(scene, w)) for w in windows]
        if k == 1:
            noise = rng.normal(0, 0.01, vectors.shape).astype(np.float32)
            vectors = vectors + noise
            swap = rng.random(len(vectors)) < 0.03
            vectors[swap] = bank[rng.integers(len(bank), size=int(swap.sum()))]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        library.add_embedded(recs, vectors.astype(np.float32))
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = detect_dates(library, "2009", "2020")
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        result = detect_dates(library, "2009", "2020")
        warm.append(time.perf_counter() - t0)
    return {"chips_per_date": len(result.windows), "records": len(library), "add_seconds": round(build, 1),
            "cold_s": round(cold, 3), "warm_p50_s": round(float(np.median(warm)), 3),
            "warm_max_s": round(max(warm), 3), "changed_windows": int(result.changed.sum()),
            "swapped_fraction_target": 0.03, "regions": len(result.regions), "target_warm_s": 1.0}


def scenes(encoder, folder: Path) -> dict:
    from PIL import Image

    from rsrag.change.detect import detect_scenes
    from rsrag.change.nuisance import jitter
    from rsrag.data import load_dataset

    records = [r for r in load_dataset("ucm", "test")]
    rng = np.random.default_rng(1)
    picked = rng.choice(len(records), 19, replace=False)

    def cell(i: int) -> np.ndarray:
        with Image.open(records[i].path) as im:
            return np.asarray(im.convert("RGB").resize((250, 250)))

    grid = [cell(i) for i in picked[:16]]
    after = [jitter(c, rng, shift=False) for c in grid]
    for slot, i in zip((0, 5, 10), picked[16:]):
        after[slot] = jitter(cell(i), rng, shift=False)
    tile = lambda cells: np.concatenate([np.concatenate(cells[r * 4:(r + 1) * 4], axis=1) for r in range(4)])  # noqa: E731
    a = write_tif(folder / "s_20090818.tif", tile(grid))
    b = write_tif(folder / "s_20200831.tif", tile(after))
    t0 = time.perf_counter()
    result = detect_scenes(encoder, a, b)
    seconds = time.perf_counter() - t0
    return {"size": "1000x1000", "windows": len(result.windows), "seconds": round(seconds, 2),
            "regions": len(result.regions), "changed_cells_truth": 3, "sentence": result.sentence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--chips", type=int, default=10_000)
    args = parser.parse_args()
    from rsrag.encoders import create_encoder

    encoder = create_encoder()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"indexed": indexed(encoder, Path(tmp), args.chips), "scenes": scenes(encoder, Path(tmp)),
               "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}
    path = results_dir() / "bench_change.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        i, s = out["indexed"], out["scenes"]
        print(f"indexed {i['chips_per_date']} chips/date: cold {i['cold_s']} s, warm p50 {i['warm_p50_s']} s "
              f"(max {i['warm_max_s']})")
        print(f"two unindexed 1000x1000 scenes: {s['seconds']} s end to end ({s['windows']} windows)")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
