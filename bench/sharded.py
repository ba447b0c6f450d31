"""Sharded search benchmark: a query over N shards in parallel vs the same collection unsharded.

    python bench/sharded.py [--n 200000] [--shards 4] [--dim 512] [--quick] [--json]

One synthetic collection of n unit vectors (dim 512) with records spread uniformly over the Earth
(lon/lat points), indexed twice: one `Library` and one `ShardedLibrary` of N shards by `geo` (S2
cells, rsrag.index.sharded), both with `add_embedded`. For each FAISS type (`flat`: exact; `ivf`:
rsrag's automatic parameters for each index's own size), single queries at k=10 are timed
interleaved, query by query in random order, so machine noise hits both alike:

- `dense`: an unfiltered `search_vector` (every shard asked, in parallel threads);
- `near_50km`: `search_vector` with a 50 km place filter around a random record (the place is new
  each query, so nothing is cached), which the sharded index sends to the shards whose extents reach it.

`same_as_unsharded` is the fraction of queries whose sharded top-10 (ids and scores) equals the
unsharded one (1.0 expected over flat; IVF is approximate on each side). `shards_touched` counts, for
500 random 50 km place queries, how many shards each asks under `geo` and `hash` sharding, for
2, 4, 8 and 16 shards (computed from the shard maps the same records give). `--quick`: 20,000
vectors. JSON in `results_dir()/bench_sharded.json`.
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

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.data import ImageRecord  # noqa: E402
from rsrag.encoders import Encoder, Preprocess  # noqa: E402
from rsrag.geo.filters import Place  # noqa: E402
from rsrag.index import Library  # noqa: E402
from rsrag.index.sharded import ShardedLibrary, ShardMap  # noqa: E402

K = 10
TIME_BUDGET_S = 20.0  # per timed loop
MIN_QUERIES, MAX_QUERIES = 30, 400


class NoEncoder(Encoder):
    """The collection's encoder entry: vectors come with `add_embedded` and queries are vectors."""

    id = "bench-sharded@v1"
    dim = 512
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError("synthetic vectors only")

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("synthetic vectors only")


def collection(n: int, dim: int, seed: int = 0) -> tuple[list[ImageRecord], np.ndarray, np.ndarray]:
    """Records at uniform points on the sphere, clustered unit vectors (32 clusters), 1,000 queries."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    centres = rng.standard_normal((32, dim)).astype(np.float32)

    def points(m: int) -> np.ndarray:
        x = centres[rng.integers(32, size=m)] + 0.8 * rng.standard_normal((m, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    records = [ImageRecord(id=f"v{i}", path=Path(f"v{i}.png"), label=f"c{i % 32}", captions=[],
                           metadata={"lon": float(lon[i]), "lat": float(lat[i])}) for i in range(n)]
    return records, points(n), points(1000)


def stats(lat: list[float]) -> dict:
    a = np.asarray(lat) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "queries": len(a)}


def timed(fns: list, args: list) -> list[dict]:
    """Each fn on each argument, interleaved in random order, until the budget is spent."""
    for fn in fns:
        for a in args[:3]:
            fn(a)
    lat = [[] for _ in fns]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i, a in enumerate(args[:MAX_QUERIES]):
        for j in rng.permutation(len(fns)):
            t = time.perf_counter()
            fns[j](a)
            lat[j].append(time.perf_counter() - t)
        if i + 1 >= MIN_QUERIES and time.perf_counter() - start > TIME_BUDGET_S:
            break
    return [stats(x) for x in lat]


def same(a: list, b: list) -> bool:
    return [(h.id, h.score) for h in a] == [(h.id, h.score) for h in b]


def touched(records: list[ImageRecord], places: list[Place]) -> dict:
    """Mean and max shards asked by the place queries, per scheme and shard count."""
    out = {}
    for by in ("geo", "hash"):
        for n in (2, 4, 8, 16):
            m = ShardMap("t", ShardMap.shard_names("t", n), by)
            for r in records:
                m.add_extents(m.shard_of(r.id, r.metadata), r.metadata)
            counts = [len(m.shards_for(p)) for p in places]
            out[f"{by}-{n}"] = {"shards": n, "mean": round(float(np.mean(counts)), 3), "max": int(max(counts))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="20,000 vectors")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.n
    NoEncoder.dim = args.dim
    records, vectors, queries = collection(n, args.dim)
    rng = np.random.default_rng(1)
    anchors = rng.integers(n, size=1000)
    places = [Place.of(near=(records[i].metadata["lon"], records[i].metadata["lat"], 50_000)) for i in anchors]

    work = Path(tempfile.mkdtemp(prefix="bench-sharded-"))
    rows = []
    try:
        enc = NoEncoder()
        t0 = time.perf_counter()
        plain = Library.create(work, "plain", encoder=enc, index_type="flat")
        plain.add_embedded(records, vectors)
        plain_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        sharded = ShardedLibrary.create(work, "sharded", shards=args.shards, by="geo", encoder=enc, index_type="flat")
        sharded.add_embedded(records, vectors)
        sharded_build = time.perf_counter() - t0
        sizes = [len(lib) for lib in sharded.shards.values()]
        for kind in ("flat", "ivf"):
            plain.rebuild(kind)
            for lib in sharded.shards.values():
                lib.rebuild(kind)
            for lib in (plain, *sharded.shards.values()):
                lib.preload()
            agree = np.mean([same(sharded.search_vector(q, K), plain.search_vector(q, K)) for q in queries[:100]])
            dense = timed([lambda q: plain.search_vector(q, K), lambda q: sharded.search_vector(q, K)], list(queries))
            asked = []

            def near_sharded(i: int) -> None:
                sharded.search_vector(queries[i], K, place=places[i])
                asked.append(len(sharded.last_searched))

            near = timed([lambda i: plain.search_vector(queries[i], K, place=places[i]), near_sharded],
                         list(range(len(places))))
            near_agree = np.mean([same(sharded.search_vector(queries[i], K, place=places[i]),
                                       plain.search_vector(queries[i], K, place=places[i])) for i in range(50)])
            for query, (p, s), agreement in (("dense", dense, agree), ("near_50km", near, near_agree)):
                rows.append({"index": kind, "query": query, "unsharded_p50_ms": p["p50_ms"],
                             "sharded_p50_ms": s["p50_ms"], "unsharded_p90_ms": p["p90_ms"],
                             "sharded_p90_ms": s["p90_ms"], "speedup_p50": round(p["p50_ms"] / s["p50_ms"], 2),
                             "same_as_unsharded": round(float(agreement), 3), "queries": p["queries"],
                             **({"shards_asked_mean": round(float(np.mean(asked)), 3)} if query != "dense" else {})})
        sharded.close()
        result = {
            "benchmark": "sharded", "n": n, "dim": args.dim, "k": K, "shards": args.shards, "shard_by": "geo",
            "s2_level": sharded.shard_map.level, "shard_sizes": sizes, "build_s": {
                "unsharded": round(plain_build, 1), "sharded": round(sharded_build, 1)},
            "rows": rows, "shards_touched_50km": touched(records, places[:500]),
            "machine": {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "faiss": faiss.__version__,
                        "search_threads": os.environ.get("RSRAG_SEARCH_THREADS", "1"),
                        "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = results_dir() / "bench_sharded.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{n:,} vectors (dim {args.dim}), {args.shards} geo shards {sizes}, k={K}; "
          f"build {result['build_s']['unsharded']} s unsharded, {result['build_s']['sharded']} s sharded")
    print(f"{'index':6} {'query':10} {'unsharded p50':>14} {'sharded p50':>12} {'speedup':>8} {'same':>6} {'asked':>6}")
    for r in rows:
        print(f"{r['index']:6} {r['query']:10} {r['unsharded_p50_ms']:>11.2f} ms {r['sharded_p50_ms']:>9.2f} ms "
              f"{r['speedup_p50']:>8} {r['same_as_unsharded']:>6} {r.get('shards_asked_mean', args.shards):>6}")
    print("shards asked by a 50 km place query (mean / max):")
    for key, t in result["shards_touched_50km"].items():
        print(f"  {key:8} {t['mean']:.2f} / {t['max']}")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
