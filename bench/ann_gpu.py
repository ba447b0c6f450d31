"""GPU benchmark: rsrag's AnnIndex searching on the GPU vs the same index on the CPU, in one run.

    python bench/ann_gpu.py [--quick] [--json] [--sizes 100000,1000000] [--batch 1024]

Needs faiss with GPU support and a visible GPU (exits with a message otherwise). For each synthetic
collection (dim 512, the clustered points of bench/search.py) and index type (`flat`, and `ivf` with
rsrag's automatic parameters) one AnnIndex is built on the CPU, then searched two ways at k=10:
`use_gpu=False` (CPU, FAISS' single-query thread setting for single queries, every core for a
batch) and the GPU copy rsrag makes. Per row:

- `single`: single queries in sequence, CPU and GPU interleaved query by query (p50/p99, QPS);
- `batch`: one search of `--batch` queries (queries per second);
- `gpu_vs_cpu_single`, `gpu_vs_cpu_batch`: GPU QPS / CPU QPS from the same run;
- `numpy_batch_qps` (flat rows): the same batch as one numpy matrix product + argpartition, an
  exact CPU baseline that does not depend on the BLAS bundled with the faiss wheel (the CUDA
  wheels' CPU search was measured 30x slower than numpy on a 16-core machine);
- `gpu_recall_at_10`: GPU results against exact search; `gpu_agrees_with_cpu`: overlap of GPU and
  CPU results (flat: both exact; IVF: the same nprobe);
- `gpu_copy_s`: the first search, which copies the index to the GPU; `gpu_after_add_s`: adding
  1,000 vectors (to the CPU index and the GPU copy) plus the next search.

`--quick`: 100k only. JSON goes to `results_dir()/bench_ann_gpu.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/search.py's collections and timers
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from search import DIM, K, add_collection_args, exact_top, recall, synthetic, timed_loop  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.index.ann import AnnIndex, IndexSpec, gpu_available  # noqa: E402

FULL_SIZES, QUICK_SIZES = (100_000, 1_000_000), (100_000,)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_index(kind: str, data: dict, batch: int, truth: np.ndarray) -> dict:
    """One row: the index built once, searched on the CPU and the GPU."""
    vectors, queries = data["vectors"], data["queries"]
    rids = np.arange(len(vectors), dtype=np.int64)
    spec = IndexSpec.parse(kind).resolve(len(vectors))
    start = time.perf_counter()
    gpu = AnnIndex.build(spec, DIM, rids, vectors)
    build_s = time.perf_counter() - start
    cpu = AnnIndex(spec, DIM, gpu.index, len(vectors))  # the same FAISS object, pinned to the CPU
    cpu.use_gpu = False
    gpu_copy_s = timed(lambda: gpu.search(queries[:1], K))
    if gpu.device != "gpu":
        raise SystemExit("the index did not move to the GPU (see the warning above)")

    single = timed_loop([lambda q: cpu.search(q, K), lambda q: gpu.search(q, K)], queries)
    batch_q = np.ascontiguousarray(np.resize(queries, (batch, DIM)))
    cpu.search(batch_q[:64], K), gpu.search(batch_q[:64], K)  # warm-up
    cpu_batch_s, gpu_batch_s = timed(lambda: cpu.search(batch_q, K)), timed(lambda: gpu.search(batch_q, K))
    found_gpu, found_cpu = gpu.search(queries, K)[1], cpu.search(queries, K)[1]
    numpy_s = timed(lambda: np.argpartition(-(batch_q @ vectors.T), K, axis=1)[:, :K]) if spec.kind == "flat" else None

    extra = np.resize(vectors, (1000, DIM))
    new_rids = np.arange(len(vectors), len(vectors) + 1000, dtype=np.int64)
    gpu_after_add_s = timed(lambda: (gpu.add(new_rids, extra), gpu.search(queries[:1], K)))
    return {
        "n": len(vectors), "index": str(spec), "build_s": round(build_s, 2),
        "single": {"cpu": single[0], "gpu": single[1]},
        "batch": {"queries": batch, "cpu_qps": round(batch / cpu_batch_s, 1), "gpu_qps": round(batch / gpu_batch_s, 1),
                  "numpy_batch_qps": round(batch / numpy_s, 1) if numpy_s else None},
        "gpu_vs_cpu_single": round(single[1]["qps"] / single[0]["qps"], 2),
        "gpu_vs_cpu_batch": round(cpu_batch_s / gpu_batch_s, 2),
        "gpu_recall_at_10": round(recall(found_gpu, truth), 4),
        "cpu_recall_at_10": round(recall(found_cpu, truth), 4),
        "gpu_agrees_with_cpu": round(recall(found_gpu, found_cpu), 4),
        "gpu_copy_s": round(gpu_copy_s, 3), "gpu_after_add_s": round(gpu_after_add_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_collection_args(parser, quick_help="100k only")
    parser.add_argument("--batch", type=int, default=1024, help="queries in the batch search")
    args = parser.parse_args()
    if not gpu_available():
        raise SystemExit("no GPU for FAISS here: install faiss-gpu on a machine with a GPU "
                         "(and leave RSRAG_FAISS_GPU unset)")

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    started, rows = time.perf_counter(), []
    for n in sizes:
        data = synthetic(n, args.queries)
        truth = exact_top(data["vectors"], data["queries"])
        for kind in ("flat", "ivf"):
            rows.append(bench_index(kind, data, args.batch, truth))
    result = {
        "benchmark": "ann_gpu", "sizes": sizes, "k": K, "dim": DIM, "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"cpus": os.cpu_count(), "faiss": faiss.__version__, "gpus": faiss.get_num_gpus(),
                    "load_1min": os.getloadavg()[0]},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (results_dir() / "bench_ann_gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'n':>9s} {'index':22s} {'cpu p50':>9s} {'gpu p50':>9s} {'x single':>8s} {'cpu qps':>9s} "
          f"{'gpu qps':>9s} {'x batch':>7s} {'numpy qps':>9s} {'recall':>6s} {'agree':>6s} {'copy s':>6s} {'add s':>6s}")
    for r in rows:
        print(f"{r['n']:>9,} {r['index']:22s} {r['single']['cpu']['p50_ms']:>7.3f}ms {r['single']['gpu']['p50_ms']:>7.3f}ms "
              f"{r['gpu_vs_cpu_single']:>8.2f} {r['batch']['cpu_qps']:>9.0f} {r['batch']['gpu_qps']:>9.0f} "
              f"{r['gpu_vs_cpu_batch']:>7.2f} {r['batch']['numpy_batch_qps'] or 0:>9.0f} {r['gpu_recall_at_10']:>6.3f} {r['gpu_agrees_with_cpu']:>6.3f} "
              f"{r['gpu_copy_s']:>6.2f} {r['gpu_after_add_s']:>6.2f}")
    print(f"({result['seconds']} s; JSON in {results_dir() / 'bench_ann_gpu.json'})")


if __name__ == "__main__":
    main()
