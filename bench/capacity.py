"""Bytes and memory per chip record, the inputs of the capacity plan (docs/scale.md).

    python bench/capacity.py [--records 100000] [--json]

Builds an index of N scene-chip records as `rsrag index build` makes them from scenes (512-d vectors
of the default encoder's size, and the chip columns: scene, window, scale, size, crs, native bounds,
WGS84 footprint as WKB, bbox, centre lon/lat, gsd, datetime, sensor, bands, stretch; no captions),
then measures per record: LanceDB on disk (all columns, and without the vector), the FAISS file of
the index type rsrag picks, the BM25 file, the memory of the in-memory rows a searcher holds
(`RecordRows`, by tracemalloc), and the time to open the index for searching. Written to
`results_dir()/bench_capacity.json`; the index is built under `$RSRAG_CACHE/bench/capacity/` and
removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import cache_dir, results_dir  # noqa: E402

DIM = 512


class _Space:
    """Just the encoder identity an index records (vectors come precomputed), without loading a model."""

    id, dim, name = "capacity-bench@1", DIM, "capacity-bench"


def chip_records(n: int, seed: int = 0) -> list:
    """n chip records laid out like a Sentinel-2 tile's 224 px chips at 10 m (UTM 32633)."""
    from rsrag.data import ImageRecord

    rng = np.random.default_rng(seed)
    records = []
    per_scene = 2401  # 49 x 49 chips of a 10,980 px tile
    for i in range(n):
        scene, k = divmod(i, per_scene)
        row, col = divmod(k, 49)
        lon0, lat0 = 10.0 + (scene % 20) * 1.0 + col * 0.02, 45.0 + (scene // 20) * 1.0 + row * 0.02
        footprint = (f"POLYGON (({lon0:.6f} {lat0:.6f}, {lon0 + 0.02:.6f} {lat0:.6f}, {lon0 + 0.02:.6f} "
                     f"{lat0 + 0.02:.6f}, {lon0:.6f} {lat0 + 0.02:.6f}, {lon0:.6f} {lat0:.6f}))")
        records.append(ImageRecord(
            f"S2B_T33TWN_2023{scene:04d}/224/{row}/{col}", f"/data/scenes/S2B_T33TWN_2023{scene:04d}.tif", None, None, [],
            {"scene": f"S2B_T33TWN_2023{scene:04d}", "window": f"{col * 224},{row * 224},224,224", "scale": 1,
             "size": 224, "crs": "EPSG:32633", "native_bounds": f"{500000 + col * 2240},{5000000 + row * 2240},"
             f"{502240 + col * 2240},{5002240 + row * 2240}", "footprint": footprint, "minx": lon0, "miny": lat0,
             "maxx": lon0 + 0.02, "maxy": lat0 + 0.02, "lon": lon0 + 0.01, "lat": lat0 + 0.01, "gsd": 10.0,
             "datetime": f"2023-{1 + scene % 12:02d}-15T10:{int(rng.integers(0, 60)):02d}:00Z",
             "sensor": "sentinel-2", "bands": "B04,B03,B02", "stretch": "120,1800"}))
    return records


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measure(n: int) -> dict:
    from rsrag.index import Library
    from rsrag.index.rows import RecordRows

    work = cache_dir() / "bench" / "capacity"
    shutil.rmtree(work, ignore_errors=True)
    try:
        lib = Library.create(work, "chips", encoder=_Space())
        rng = np.random.default_rng(1)
        t0 = time.perf_counter()
        for start in range(0, n, 50_000):
            recs = chip_records(min(50_000, n - start), seed=start)
            for j, rec in enumerate(recs):
                rec.id = f"{rec.id}#{start + j}"  # unique over the whole run
            lib.add_embedded(recs, rng.standard_normal((len(recs), DIM)).astype(np.float32))
        lib.compact()
        build_s = time.perf_counter() - t0
        from datetime import timedelta

        # only the current version's files: the versions compaction replaced are kept an hour by default
        lib.folder_state.store.table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)
        folder = lib.folder
        lance = folder_bytes(folder / "records.lance")
        store = lib.folder_state.store
        columns = [c for c in store.columns() if c != "rid"]
        tracemalloc.start()
        rows = RecordRows(store.scan(columns))
        rows_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del rows
        t0 = time.perf_counter()
        Library(lib.location, encoder=_Space(), auto_refresh=False).preload()
        open_s = time.perf_counter() - t0
        per = lambda b: round(b / n, 1)  # noqa: E731
        return {
            "records": n, "dim": DIM, "index_type": lib.manifest["index"]["type"], "build_s": round(build_s, 1),
            "lance_bytes_per_record": per(lance),
            "lance_bytes_per_record_without_vector": per(lance - n * DIM * 4),
            "faiss_bytes_per_record": per((folder / "vectors.faiss").stat().st_size),
            "bm25_bytes_per_record": per((folder / "bm25.npz").stat().st_size),
            "rows_in_memory_bytes_per_record": per(rows_bytes),
            "open_for_search_s": round(open_s, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], **measure(args.records)}
    out = results_dir() / "bench_capacity.json"
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| measure | value |\n| --- | --- |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
