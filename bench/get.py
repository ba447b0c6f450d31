"""Get-by-id benchmark: `Library.get` (in-memory id -> rid map) against the full scan of the id
column it replaced, at 1k, 10k and 100k records, in one run.

    python bench/get.py [--sizes 1000,10000,100000] [--json]

Each collection is built once with `add_embedded` (dim-64 random vectors, one short caption per
record). Then single-id lookups of random existing ids are timed, interleaved query by query in
random order (`bench/search.py`'s `timed_loop`), for:

- `map`: `Library.get([id])` as it is now: a dict lookup and a hit built from the rows in memory;
- `scan`: the old way: `RecordStore.id_rids([id])`, which reads the whole `id` column from LanceDB
  to build an id -> rid map, then the same hydration.

`flat` = the map's p50 at the largest size over its p50 at the smallest (1.0: no growth).
JSON goes to `results_dir()/bench_get.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from search import timed_loop  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.data import ImageRecord  # noqa: E402
from rsrag.encoders import Encoder, Preprocess  # noqa: E402
from rsrag.index import Library  # noqa: E402

DIM = 64
SIZES = (1_000, 10_000, 100_000)


class NoEncoder(Encoder):
    """The collections are added with precomputed vectors: nothing is ever encoded."""

    id = "bench-get@v1"
    dim = DIM
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def bench_size(n: int, work: Path, queries: int) -> dict:
    rng = np.random.default_rng(n)
    records = [ImageRecord(f"item-{i:07d}", None, label=f"c{i % 30}", captions=[f"caption of item {i}"],
                           metadata={"lon": float(i % 360 - 180), "lat": float(i % 180 - 90)}) for i in range(n)]
    lib = Library.create(work, f"get-{n}", encoder=NoEncoder())
    t0 = time.perf_counter()
    lib.add_embedded(records, rng.standard_normal((n, DIM)).astype(np.float32))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lib.preload()
    preload_s = time.perf_counter() - t0
    ids = [records[i].id for i in rng.integers(0, n, queries)]
    store = lib.store

    def by_map(i: str) -> list:
        return lib.get([i])

    def by_scan(i: str) -> list:
        found = store.id_rids([i])  # the lookup `get` used before: the whole id column per call
        return lib.get(list(found))

    assert [h.id for h in by_map(ids[0])] == [h.id for h in by_scan(ids[0])] == [ids[0]]
    map_stats, scan_stats = timed_loop([by_map, by_scan], ids, budget_s=2.0, min_n=20)
    shutil.rmtree(lib.folder, ignore_errors=True)
    return {"n": n, "build_s": round(build_s, 2), "preload_s": round(preload_s, 3),
            "map": map_stats, "scan": scan_stats,
            "speedup": round(scan_stats["p50_ms"] / map_stats["p50_ms"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated collection sizes (default 1000,10000,100000)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    work = Path(tempfile.mkdtemp(prefix="rsrag-bench-get-"))
    started = time.perf_counter()
    try:
        rows = [bench_size(n, work, args.queries) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "get", "sizes": sizes, "dim": DIM, "seconds": round(time.perf_counter() - started, 1),
        "flat": round(rows[-1]["map"]["p50_ms"] / rows[0]["map"]["p50_ms"], 2), "rows": rows,
        "machine": {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "python": platform.python_version()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (results_dir() / "bench_get.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'records':>9s} {'get p50':>10s} {'get p99':>10s} {'scan p50':>10s} {'scan p99':>10s} {'speedup':>8s}")
    for r in rows:
        print(f"{r['n']:>9,} {r['map']['p50_ms']:>8.4f}ms {r['map']['p99_ms']:>8.4f}ms {r['scan']['p50_ms']:>8.3f}ms "
              f"{r['scan']['p99_ms']:>8.3f}ms {r['speedup']:>7.0f}x")
    print(f"get p50 at {sizes[-1]:,} / at {sizes[0]:,}: {result['flat']} "
          f"({result['seconds']} s; JSON in {results_dir() / 'bench_get.json'})")


if __name__ == "__main__":
    main()
