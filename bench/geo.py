"""Scenes: chip throughput and memory on a full Sentinel-2-sized tile, and relevance-feedback gain.

    python bench/geo.py [--json] [--parts throughput,filters,feedback] [--size 10980] [--split test]

throughput  Writes a synthetic 4-band uint16 GeoTIFF the size of a Sentinel-2 tile (10,980 x 10,980 px
            at 10 m, tiled and deflate-compressed like a COG; cached in RSRAG_CACHE), then indexes it
            with the default encoder in a child process (224 px chips, no overlap) and reports chips/s end
            to end against the encoder's model-alone rate on chips of the same scene (another child,
            same run), and the indexing child's peak RSS. Targets: >= 85% of model-alone, peak RSS < 1.5 GB.
filters     Geo filter latency at 100k chips: an index of 100,000 synthetic chip records (real footprints
            on a 316 x 316 grid of 1 km chips in UTM, 10 dates, random unit vectors) searched by text
            (hybrid, the query's text encoding included) with no filter, a bbox, a point + radius, a
            GeoJSON polygon and a time range; p50 / p90 over 50 queries each, new query text each time.
feedback    A labelled area: the UCM images of one split laid out as a mosaic GeoTIFF (one 256 px cell per
            image, 0.3 m, UTM), indexed as 256 px chips, so every chip's class is known. For each class,
            start from one example chip; each round shows the 10 best unseen chips, the simulated user
            marks them relevant (same class) or not, and the next round searches with all marks so far.
            Reports the mean fraction of the class's other chips found after each round, with feedback
            (Rocchio and the on-the-spot logistic model) and without (the next 10 of the first ranking).
Writes `results_dir()/bench_geo.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import cache_dir, results_dir  # noqa: E402

S2_SIZE = 10_980


def synthetic_s2(size: int) -> Path:
    """A 4-band (B02, B03, B04, B08) uint16 tile written block by block (never whole in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path = cache_dir() / f"bench_s2_synthetic_{size}.tif"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(300_000.0, 5_000_040.0, 10.0, 10.0), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", nodata=0)
    rng = np.random.default_rng(0)
    coarse = rng.uniform(300, 3000, (4, size // 256 + 2, size // 256 + 2)).astype(np.float32)
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.descriptions = ("B02", "B03", "B04", "B08")
        for row in range(0, size, 512):
            for col in range(0, size, 512):
                h, w = min(512, size - row), min(512, size - col)
                ys = (row + np.arange(h)) / 256.0
                xs = (col + np.arange(w)) / 256.0
                y0, x0 = ys.astype(int), xs.astype(int)
                fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
                block = np.empty((4, h, w), np.uint16)
                for b in range(4):  # bilinear fields of land cover plus texture
                    c = coarse[b]
                    field = (c[y0][:, x0] * (1 - fy) * (1 - fx) + c[y0 + 1][:, x0] * fy * (1 - fx)
                             + c[y0][:, x0 + 1] * (1 - fy) * fx + c[y0 + 1][:, x0 + 1] * fy * fx)
                    block[b] = np.clip(field + rng.normal(0, 60, (h, w)), 1, 60000).astype(np.uint16)
                ds.write(block, window=Window(col, row, w, h))
    tmp.rename(path)
    return path


MODEL_CHILD = """
import json, sys, time
import numpy as np
from PIL import Image
from rsrag.encoders import create_encoder
from rsrag.geo import SceneReader, Tiling, chip_windows, open_scene
encoder = create_encoder()
scene = open_scene(sys.argv[1], sensor="sentinel-2")
with SceneReader(scene, scene.pick(None)) as reader:
    chips = [reader.read(w.window, (224, 224))[0] for w, _ in zip(chip_windows(scene, Tiling(size=224)), range(256))]
tensors = np.stack([encoder.preprocess.to_array(Image.fromarray(c)) for c in chips])
rates = {}
for batch in (16, 32):  # the indexing's batch size, and a larger one: the baseline is the faster of the two
    encoder.encode_arrays(tensors[:batch])
    t0 = time.perf_counter()
    for i in range(0, len(tensors), batch):
        encoder.encode_arrays(tensors[i:i + batch])
    rates[batch] = len(tensors) / (time.perf_counter() - t0)
print(json.dumps({"model_alone_per_s": max(rates.values()), "model_alone_by_batch": rates}))
"""

INDEX_CHILD = """
import json, resource, sys, time
from rsrag.encoders import create_encoder
from rsrag.geo import Tiling, index_scenes
from rsrag.index import Library
lib = Library.create(sys.argv[2], "s2", encoder=create_encoder())
t0 = time.perf_counter()
report = index_scenes(lib, [sys.argv[1]], tiling=Tiling(size=224), sensor="sentinel-2")
seconds = time.perf_counter() - t0
print(json.dumps({"chips": report.added, "seconds": seconds, "chips_per_s": report.added / seconds,
                  "encode_s": report.encode_seconds, "skipped_nodata": report.skipped_nodata,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_throughput(size: int) -> dict:
    """Model alone and end to end, each in a fresh process (so the peak RSS is the indexing's own)."""
    scene = synthetic_s2(size)
    model = _child(MODEL_CHILD, str(scene))
    with tempfile.TemporaryDirectory() as root:
        result = _child(INDEX_CHILD, str(scene), root)
    result.update(model, scene_px=size, scene_mb=round(scene.stat().st_size / 2**20, 1),
                  ratio_vs_model_alone=round(result["chips_per_s"] / model["model_alone_per_s"], 3))
    return result


def bench_filters(n: int = 100_000, queries: int = 50) -> dict:
    from rasterio.warp import transform as warp
    from shapely import box

    from rsrag.data import ImageRecord
    from rsrag.encoders import create_encoder
    from rsrag.geo.filters import Place
    from rsrag.geo.footprint import footprint
    from rsrag.index import Library

    encoder = create_encoder()
    side = int(np.ceil(np.sqrt(n / 10)))  # cells per axis; 10 dates per cell
    rng = np.random.default_rng(0)
    records = []
    places = {}
    for i in range(side):
        for j in range(side):
            x0, y0 = 500_000.0 + j * 1000.0, 4_000_000.0 + i * 1000.0
            places[(i, j)] = footprint("EPSG:32633", (x0, y0, x0 + 1000.0, y0 + 1000.0))
    cells = list(places)
    for k in range(n):
        cell = cells[k % len(cells)]
        fp = places[cell]
        year = 2011 + k // len(cells)
        records.append(ImageRecord(f"c{k}", Path(f"scene_{year}.tif"), label=None, metadata={
            "footprint": fp.geometry.wkt, "minx": fp.bbox[0], "miny": fp.bbox[1], "maxx": fp.bbox[2],
            "maxy": fp.bbox[3], "lon": fp.lon, "lat": fp.lat, "datetime": f"{year}-06-01T00:00:00Z",
            "scene": f"scene_{year}"}))
    vectors = rng.standard_normal((n, encoder.dim)).astype(np.float32)
    centre = places[(side // 2, side // 2)]
    lon, lat = centre.lon, centre.lat
    (x1, x2), (y1, y2) = warp("EPSG:32633", "EPSG:4326", [500_000.0 + 100_000, 500_000.0 + 130_000],
                              [4_000_000.0 + 100_000, 4_000_000.0 + 130_000])
    area = box(x1, y1, x2, y2).buffer(0.05).simplify(0.01)
    cases = {
        "no filter": None,
        "bbox 0.3 x 0.3 deg": Place.of(bbox=(lon - 0.15, lat - 0.15, lon + 0.15, lat + 0.15)),
        "near 20 km": Place.of(near=(lon, lat, 20_000.0)),
        "within polygon": Place.of(within=area.__geo_interface__),
        "time range 2 years": Place.of(after="2014-01-01", before="2015-12-31"),
        "near 20 km + after 2016": Place.of(near=(lon, lat, 20_000.0), after="2016-01-01"),
        # a new place every query (a user panning a map): the filter is never served from the cache
        "near 20 km, new centre each query": lambda q: Place.of(near=(lon + 0.01 * q, lat - 0.005 * q, 20_000.0)),
    }
    words = ["farmland", "river", "forest", "town", "lake", "road", "field", "bare land", "harbour", "houses"]
    out: dict = {"records": n}
    with tempfile.TemporaryDirectory() as root:
        lib = Library.create(root, "chips", encoder=encoder)
        t0 = time.perf_counter()
        lib.add_embedded(records, vectors)
        out["build_s"] = round(time.perf_counter() - t0, 1)
        encoder.encode_texts(["warm up"])
        for name, place in cases.items():
            times, counts = [], []
            for q in range(queries):
                text = f"{words[q % 10]} near {words[(q * 7) % 10]} {q}"
                where = place(q) if callable(place) else place
                t1 = time.perf_counter()
                hits = lib.search_text(text, k=10, place=where)
                times.append((time.perf_counter() - t1) * 1000)
                counts.append(len(hits))
            out[name] = {"p50_ms": round(float(np.percentile(times, 50)), 2),
                         "p90_ms": round(float(np.percentile(times, 90)), 2),
                         "first_query_ms": round(times[0], 2),
                         "matching_chips": lib.count(place=place(0) if callable(place) else place) if place else n}
    return out


def ucm_mosaic(split: str, folder: Path) -> tuple[Path, dict[str, str]]:
    """The UCM images of a split as one GeoTIFF mosaic; returns it and window -> class label."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from rsrag.data import load_dataset

    records = load_dataset("ucm", split)
    cols = int(np.ceil(np.sqrt(len(records))))
    rows = int(np.ceil(len(records) / cols))
    order = np.random.default_rng(0).permutation(len(records))  # classes scattered over the area
    path = folder / f"ucm_{split}_mosaic.tif"
    labels = {}
    with rasterio.open(path, "w", driver="GTiff", width=cols * 256, height=rows * 256, count=3, dtype="uint8",
                       crs="EPSG:32611", transform=from_origin(600_000.0, 3_800_000.0, 0.3, 0.3),
                       nodata=0) as ds:  # the cells left over at the end of the grid are nodata
        for cell, idx in enumerate(order):
            r, c = divmod(cell, cols)
            image = np.asarray(Image.open(records[idx].path).convert("RGB").resize((256, 256)))
            ds.write(image.transpose(2, 0, 1), window=Window(c * 256, r * 256, 256, 256))
            labels[f"{c * 256},{r * 256},256,256"] = records[idx].label
    return path, labels


def bench_feedback(split: str, rounds: int = 3, shown: int = 10) -> dict:
    from rsrag.encoders import create_encoder
    from rsrag.geo import Tiling, index_scenes
    from rsrag.geo.examples import ExampleSearch
    from rsrag.index import Library

    with tempfile.TemporaryDirectory() as tmp:
        path, labels = ucm_mosaic(split, Path(tmp))
        lib = Library.create(Path(tmp) / "idx", "area", encoder=create_encoder())
        index_scenes(lib, [path], tiling=Tiling(size=256))
        rows = lib.rows(["id", "window"]).to_pylist()
        label_of = {r["id"]: labels[r["window"]] for r in rows}
        by_class: dict[str, list[str]] = {}
        for rid, lab in sorted(label_of.items()):
            by_class.setdefault(lab, []).append(rid)
        curves: dict[str, list[float]] = {}
        for name, method in (("no feedback", None), ("rocchio", "rocchio"), ("logistic", "logistic")):
            found_per_round = np.zeros(rounds + 1)
            for lab, members in by_class.items():
                seed, targets = members[0], set(members[1:])
                pos, neg, seen = [seed], [], {seed}
                search = ExampleSearch(lib, method=method or "rocchio", depth=len(rows), nms_iou=1.0)
                first = [r.id for r in search.rank([seed], k=len(rows))] if method is None else None
                for rnd in range(rounds + 1):
                    if method is None:
                        batch = [i for i in first if i not in seen][:shown]
                    else:
                        ranked = search.rank(pos, neg, k=len(seen) + shown + 1)
                        batch = [r.id for r in ranked if r.id not in seen][:shown]
                    seen |= set(batch)
                    pos += [i for i in batch if label_of[i] == lab]
                    neg += [i for i in batch if label_of[i] != lab]
                    found_per_round[rnd] += len(seen & targets) / max(1, len(targets))
            curves[name] = [round(float(v / len(by_class)), 4) for v in found_per_round]
    return {"split": split, "classes": len(by_class), "chips": len(rows), "shown_per_round": shown,
            "found_after_round": curves,
            "gain_after_last_round": {k: round(v[-1] - curves["no feedback"][-1], 4) for k, v in curves.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="throughput,filters,feedback")
    ap.add_argument("--size", type=int, default=S2_SIZE, help="side of the synthetic tile in pixels")
    ap.add_argument("--split", default="test", help="UCM split of the feedback area (choose settings on val)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict = {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]}
    parts = args.parts.split(",")
    out = results_dir() / "bench_geo.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for part, run in (("throughput", lambda: bench_throughput(args.size)), ("filters", bench_filters),
                      ("feedback", lambda: bench_feedback(args.split))):
        if part in parts:
            result[part] = run()
            out.write_text(json.dumps(result, indent=2))  # after every part: a later failure loses nothing
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if "throughput" in result:
        t = result["throughput"]
        print("| scene | chips | chips/s end to end | model alone | ratio | peak RSS |\n| --- | --- | --- | --- | --- | --- |")
        print(f"| {t['scene_px']}^2 px, 4 x uint16 | {t['chips']} | {t['chips_per_s']:.1f} | {t['model_alone_per_s']:.1f} "
              f"| {t['ratio_vs_model_alone']:.2f} | {t['peak_rss_mb']:.0f} MB |")
    if "filters" in result:
        f = result["filters"]
        print(f"\nhybrid text search at {f['records']:,} chips, text encoding included (ms)\n"
              "| filter | matching chips | p50 | p90 | first query |\n| --- | --- | --- | --- | --- |")
        for name, row in f.items():
            if isinstance(row, dict):
                print(f"| {name} | {row['matching_chips']:,} | {row['p50_ms']} | {row['p90_ms']} | {row['first_query_ms']} |")
    if "feedback" in result:
        f = result["feedback"]
        print(f"\nrelevance feedback, UCM {f['split']} mosaic ({f['chips']} chips, {f['classes']} classes): "
              f"fraction of a class found after each round of {f['shown_per_round']}")
        for name, curve in f["found_after_round"].items():
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in curve) + " |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
