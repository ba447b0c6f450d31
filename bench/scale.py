"""Compressed indexes at scale: IVF-PQ + exact re-rank through rsrag against raw FAISS, in one run.

    python bench/scale.py [--quick] [--sizes 1000000] [--queries 200] [--configs "nlist=1024,m=64;..."]
                          [--nprobe 16,32] [--rerank 0,100,200,400] [--work-dir DIR]

Collections: bench/search.py's synthetic 512-d vectors (32 clusters, each a random 16-d patch plus
noise: a realistic low intrinsic dimension), `--queries` fresh points of the same mixture, and exact
top-10 by brute force as ground truth. `--quick`: 100k vectors, two configs, under 5 minutes.

Per size, the vectors are written once to a LanceDB records table (`RecordStore`, in `--work-dir`,
default a temporary folder) and, per index config (`nlist`, PQ `m`, `opq`), one FAISS IVF-PQ index
(inner product) is built through `AnnIndex.build`. Then for every `nprobe` x `rerank` (candidates
re-scored exactly; 0 = the PQ scores alone), single queries at k=10, interleaved in random order:

- `rsrag`: `AnnIndex.search(q, 10, vectors_for=store.vectors_for_rids)`: the FAISS search, then the
  candidates' float32 vectors read from LanceDB by row id and re-scored;
- `faiss`: the same FAISS index searched directly (`index.search`), re-ranked with numpy from the
  vectors in memory: the floor, with the vectors held in RAM that rsrag keeps on disk.

Reported per row: `ann_bytes` (`faiss.serialize_index` size: codes, ids, centroids, codebooks, OPQ
matrix) and `estimate_bytes` (`rsrag.index.sizing.index_bytes`), recall@10 of both paths, p50 / p99
latency of both and `rsrag_vs_faiss_p50` (ratio, same run), the build time. The table is printed,
JSON goes to `results_dir()/bench_scale.json`. `met_target` checks recall@10 >= 0.95, p50 < 20 ms
and the structure < 1.5 GB for each rsrag row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/search.py's collection and timers
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from search import DIM, K, exact_top, recall, synthetic, timed_loop  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.index import IndexSpec  # noqa: E402
from rsrag.index.ann import AnnIndex, use_threads  # noqa: E402
from rsrag.index.sizing import index_bytes  # noqa: E402
from rsrag.index.store import RecordStore  # noqa: E402

TARGET = {"recall_at_10": 0.95, "p50_ms": 20.0, "ann_bytes": 1.5e9}


def write_store(folder: Path, vectors: np.ndarray, chunk: int = 100_000) -> tuple[RecordStore, np.ndarray]:
    """The vectors as a LanceDB records table (rid, id, vector), written in chunks; rids = positions + 7
    (anything but positions)."""
    store = RecordStore(folder, vectors.shape[1])
    rids = np.arange(len(vectors), dtype=np.int64) + 7
    for s in range(0, len(vectors), chunk):
        part = vectors[s : s + chunk]
        store.add(pa.table({"rid": pa.array(rids[s : s + chunk]),
                            "id": pa.array([str(r) for r in rids[s : s + chunk]]),
                            "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), part.shape[1])}))
    store.compact()
    return store, rids


def padded(ids: np.ndarray) -> np.ndarray:
    """A (1, <=K) row of ids as (1, K), -1 filling."""
    return np.pad(ids, ((0, 0), (0, K - ids.shape[1])), constant_values=-1)


def parse_configs(text: str) -> list[dict]:
    """'nlist=1024,m=64;nlist=1024,m=64,opq=1' -> [{...}, ...]."""
    return [{k: int(v) for k, v in (item.split("=") for item in conf.split(","))} for conf in text.split(";") if conf]


def bench_size(n: int, args, work: Path) -> list[dict]:
    t0 = time.perf_counter()
    data = synthetic(n, args.queries)
    vectors, queries = data["vectors"], data["queries"]
    truth = exact_top(vectors, queries)
    store, rids = write_store(work / f"store_{n}", vectors)
    truth = rids[truth]
    print(f"n={n:,}: data, ground truth and LanceDB table in {time.perf_counter() - t0:.0f}s", flush=True)
    rows = []
    for conf in parse_configs(args.configs):
        spec = IndexSpec("ivfpq", conf).resolve(n, DIM)
        t0 = time.perf_counter()
        built = AnnIndex.build(spec, DIM, rids, vectors)
        build_s = time.perf_counter() - t0
        ann_bytes = len(faiss.serialize_index(built.index))
        for nprobe in args.nprobe:
            for rerank in args.rerank:
                searched = IndexSpec("ivfpq", spec.params | {"nprobe": nprobe, "rerank": rerank})
                ann = AnnIndex(searched, DIM, built.index)
                index, cand = built.index, max(K, rerank)

                def rsrag_path(q, ann=ann):
                    return ann.search(q, K, vectors_for=store.vectors_for_rids)[1]

                def faiss_path(q, index=index, cand=cand, rerank=rerank):
                    _, ids = index.search(q[None], cand)
                    if not rerank:
                        return ids
                    ids = ids[0][ids[0] >= 0]
                    exact = vectors[ids - 7] @ q  # rid = position + 7
                    return ids[np.argsort(-exact)[:K]][None]

                use_threads(1)
                found_rsrag = np.vstack([rsrag_path(q) for q in queries])
                found_faiss = np.vstack([padded(faiss_path(q)) for q in queries])
                lat = timed_loop([rsrag_path, faiss_path], queries, budget_s=args.time_budget, min_n=len(queries))
                row = {"n": n, "index": str(ann.spec), "nlist": spec.params["nlist"], "m": spec.params["m"],
                       "opq": spec.params["opq"], "nprobe": nprobe, "rerank": rerank, "build_s": round(build_s, 1),
                       "ann_bytes": ann_bytes, "estimate_bytes": index_bytes(spec, n, DIM),
                       "float32_bytes": n * DIM * 4,
                       "rsrag_recall_at_10": round(recall(found_rsrag, truth), 4),
                       "faiss_recall_at_10": round(recall(found_faiss, truth), 4),
                       "rsrag_p50_ms": lat[0]["p50_ms"], "rsrag_p99_ms": lat[0]["p99_ms"],
                       "faiss_p50_ms": lat[1]["p50_ms"], "faiss_p99_ms": lat[1]["p99_ms"],
                       "rsrag_vs_faiss_p50": round(lat[0]["p50_ms"] / lat[1]["p50_ms"], 2), "queries": lat[0]["queries"]}
                row["met_target"] = bool(row["rsrag_recall_at_10"] >= TARGET["recall_at_10"]
                                         and row["rsrag_p50_ms"] < TARGET["p50_ms"] and ann_bytes < TARGET["ann_bytes"])
                rows.append(row)
                print_row(row)
        del built
    return rows


COLUMNS = ("n", "nlist", "m", "opq", "nprobe", "rerank", "ann_bytes", "rsrag_recall_at_10", "faiss_recall_at_10",
           "rsrag_p50_ms", "rsrag_p99_ms", "faiss_p50_ms", "faiss_p99_ms", "rsrag_vs_faiss_p50", "met_target")


def print_row(row: dict) -> None:
    cells = [f"{row[c] / 1e6:.0f}MB" if c == "ann_bytes" else str(row[c]) for c in COLUMNS]
    print(" | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k vectors, two configs (a smoke run)")
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--configs", default="nlist=1024,m=64;nlist=1024,m=32",
                        help="IVF-PQ configs, ';'-separated (nlist, m, nbits, opq)")
    parser.add_argument("--nprobe", default="16,32")
    parser.add_argument("--rerank", default="0,100,200,400")
    parser.add_argument("--time-budget", type=float, default=1.0, help="seconds per timed loop (all queries run)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the LanceDB tables go (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.configs = "100000", "nlist=256,m=32;nlist=256,m=64"
        args.nprobe, args.rerank = "8,16", "0,50,100"
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    args.rerank = [int(v) for v in args.rerank.split(",")]
    print(" | ".join(COLUMNS))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for n in (int(v) for v in args.sizes.split(",")):
            rows += bench_size(n, args, Path(tmp))
    out = {"benchmark": "scale", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load_1min": round(os.getloadavg()[0], 2),
                       "faiss": faiss.__version__}, "dim": DIM, "k": K, "target": TARGET, "rows": rows}
    path = results_dir() / "bench_scale.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
