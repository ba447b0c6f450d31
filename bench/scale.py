"""Compressed indexes at scale: IVF-PQ + exact re-rank through rsrag against raw FAISS, in one run.

    python bench/scale.py [--quick] [--sizes 1000000] [--queries 200] [--configs "nlist=1024,m=64;..."]
                          [--nprobe 16,32] [--rerank 0,100,200,400] [--work-dir DIR]

Collections: bench/search.py's synthetic 512-d vectors (32 clusters, each a random 16-d patch plus
noise: a realistic low intrinsic dimension), `--queries` fresh points of the same mixture, and exact
top-10 by brute force as ground truth. `--quick`: 100k vectors, two configs, under 5 minutes.

Nothing holds all the vectors in RAM, so the run scales past memory (10M x 512-d float32 = 20 GB):
`generate` makes search.synthetic's points (the same `Mixture`, draws and arithmetic, so the same
vectors) 50,000 at a time and appends them to a raw float32 file in `--work-dir` (default a
temporary folder); the ground truth is a brute-force pass over that file 250,000 rows at a time
keeping a running top 10; the LanceDB records table (`RecordStore`) is written from it 2^20 rows (one
full Lance fragment) at a time and compacted; per index config (`nlist`, PQ `m`, `opq`) one
FAISS IVF-PQ index (inner product) is built through `AnnIndex.build`, which trains on a bounded
sample and adds the file in chunks. Then for every `nprobe` x `rerank` (candidates re-scored
exactly; 0 = the PQ scores alone), single queries at k=10, interleaved in random order:

- `rsrag`: `AnnIndex.search(q, 10, vectors_for=store.vectors_for_rids)`: the FAISS search, then the
  candidates' float32 vectors read from the Lance dataset by position and re-scored;
- `faiss`: the same FAISS index searched directly (`index.search`), the same candidates re-ranked
  with numpy from the vectors file through a memory map: the floor. Both paths read the vectors
  from disk or the page cache, not from process memory.

Reported per row: `ann_bytes` (`faiss.serialize_index` size: codes, ids, centroids, codebooks, OPQ
matrix) and `estimate_bytes` (`rsrag.index.sizing.index_bytes`), recall@10 of both paths, p50 / p99
latency of both and `rsrag_vs_faiss_p50` (ratio, same run); the phase times `generate_s`,
`truth_s`, `store_s`, `build_s` (this row's index); `vectors_file_bytes` and `store_bytes` on disk;
`peak_rss_mb` (ru_maxrss of the process so far, after this row's searches) and `rss_after_mb`
(ru_maxrss after each phase, showing which phase set the peak). The file and the table are read
with plain reads in the sequential passes, so the RSS is memory the run needs, not page cache. The
table is printed, JSON goes to `results_dir()/bench_scale.json`. `met_target` checks recall@10 >=
0.95, p50 < 20 ms and the structure < 1.5 GB for each rsrag row.

Measured on this project's 2-core, 24 GiB machine (2026-12-02; README "Scale" has the tables):

    python bench/scale.py                       # 1M: opq=0 / opq=1 x nprobe 8,16,32 x rerank 0,100,200
    python bench/scale.py --sizes 10000000 --configs "nlist=4096,m=64,opq=1;nlist=2048,m=64,opq=1" \
        --nprobe 32,64 --rerank 0,100,200 --work-dir /path/with/45GB/free

    n    generate  truth  store  build                          peak RSS  disk (file + table)
    1M     35.7 s  9.7 s  23.5 s  55 s (opq=0), 183 s (opq=1)     6.2 GB    2.0 + 2.1 GB
    10M   352 s   82 s   176 s   922 s (nlist 4096, opq=1),      10.0 GB   20.5 + 20.7 GB
                                 685 s (nlist 2048, opq=1)

The peak RSS is set while writing the table (Lance's write buffers for a 2^20-row fragment) and
while training OPQ at 10M; the search rows themselves need the index (0.73 GB at 10M) and the
rid -> position map (160 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/search.py's collection and timers
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from search import DIM, K, MIXTURE_BLOCK, Mixture, recall, timed_loop  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.index import IndexSpec  # noqa: E402
from rsrag.index.ann import AnnIndex, use_threads  # noqa: E402
from rsrag.index.sizing import index_bytes  # noqa: E402
from rsrag.index.store import RecordStore  # noqa: E402

TARGET = {"recall_at_10": 0.95, "p50_ms": 20.0, "ann_bytes": 1.5e9}
STORE_CHUNK = 1 << 20  # rows per LanceDB write: the size of a full Lance fragment (its compaction target)
READ_CHUNK = 250_000  # rows per step of a sequential pass (ground truth): 512 MB of float32 at 512-d
RID_OFFSET = 7  # rid = position + 7: anything but positions, so a mix-up shows as a recall of 0


def peak_rss_mb() -> float:
    """The process' peak resident set so far (ru_maxrss, KiB on Linux). Sequential passes read the
    vectors file with plain reads, not through a memory map, so this counts the memory the run
    really needs, not file pages the kernel can drop at any time."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class VectorFile:
    """n x dim float32 rows in a raw file, read a part at a time: the collection never has to fit
    in RAM (10M x 512-d is 20 GB).

    `vf[a:b]` reads rows a..b with one file read and `vf[int array]` gathers rows with one pread
    each (k-means' training sample), both into ordinary arrays that are freed after use; `vf.map`
    is a read-only np.memmap for the few rows a query re-ranks. This is the array-like
    `AnnIndex.build` and `write_store` take in place of an in-memory array.
    """

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path, self.shape, self.row_bytes = Path(path), (n, dim), dim * 4
        self.map = np.memmap(self.path, np.float32, "r", shape=self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        dim = self.shape[1]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("VectorFile reads contiguous row ranges only")
            count = max(stop - start, 0)
            return np.fromfile(self.path, np.float32, count=count * dim, offset=start * self.row_bytes).reshape(count, dim)
        rows = np.asarray(key, np.int64)
        out = np.empty((len(rows), dim), np.float32)
        with open(self.path, "rb", buffering=0) as f:
            for j, row in enumerate(rows.tolist()):
                os.preadv(f.fileno(), [out[j]], row * self.row_bytes)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or np.float32, copy=False)


def chunks(vectors, size: int, desc: str):
    """(start, rows) for consecutive `size`-row parts of an array or VectorFile, with a progress bar."""
    for start in tqdm(range(0, len(vectors), size), desc=desc, unit="chunk", mininterval=10):
        yield start, vectors[start : start + size]


def generate(path: Path, n: int, n_queries: int, seed: int = 0) -> tuple[VectorFile, np.ndarray]:
    """search.synthetic(n, n_queries, seed)'s vectors, written to `path` block by block, and its queries.

    The random draws are search.synthetic's, in its order (`Mixture.blocks`), so the vectors and
    queries are the same, bit for bit: numbers at 100k and 1M stay comparable with earlier runs. Only
    the captions are not drawn; they come last in its stream. The blocks are appended with plain
    writes (no memory map), so the process holds one 100 MB block at a time whatever n is.
    """
    rng = np.random.default_rng(seed)
    mixture = Mixture.draw(rng)
    with open(path, "wb") as f:
        for _, block in tqdm(mixture.blocks(rng, n), desc="generate", total=-(-n // MIXTURE_BLOCK),
                             unit="block", mininterval=10):
            block.tofile(f)
    queries, _ = mixture.points(rng, n_queries)
    return VectorFile(path, n, DIM), queries


def exact_top(vectors: VectorFile, queries: np.ndarray) -> np.ndarray:
    """Exact top-K positions per query by brute force, READ_CHUNK rows at a time (queries x chunk
    product, then merged into the running top K): the ground truth without a flat index holding
    every vector. Same ranking as search.exact_top up to float rounding of near-ties."""
    best_scores = np.full((len(queries), K), -np.inf, np.float32)
    best_ids = np.full((len(queries), K), -1, np.int64)
    for start, part in chunks(vectors, READ_CHUNK, "ground truth"):
        scores = queries @ part.T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        scores = np.hstack([best_scores, np.take_along_axis(scores, top, 1)])
        ids = np.hstack([best_ids, top + start])
        keep = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best_scores, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, 1)


def write_store(folder: Path, vectors, chunk: int = STORE_CHUNK) -> tuple[RecordStore, np.ndarray]:
    """The vectors (an array or a VectorFile) as a LanceDB records table (rid, id, path, vector),
    written `chunk` rows at a time, then compacted as a library build does (which indexes `id` and
    `path`, so the table has the library's `path` column, empty); rids = positions + RID_OFFSET.
    Each write is one full-size Lance fragment, so compaction has nothing to rewrite: a table of
    smaller writes is copied whole by it and, with the hour of old versions a library keeps, takes
    twice its size on disk (41 GB at 10M)."""
    store = RecordStore(folder, vectors.shape[1])
    rids = np.arange(len(vectors), dtype=np.int64) + RID_OFFSET
    for s, part in chunks(vectors, chunk, "LanceDB table"):
        store.add(pa.table({"rid": pa.array(rids[s : s + chunk]),
                            "id": pa.array([str(r) for r in rids[s : s + chunk]]),
                            "path": pa.nulls(len(part), pa.string()),
                            "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), part.shape[1])}))
    store.compact()
    return store, rids


def disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def phase(record: dict, name: str):
    """Time a phase into record[f"{name}_s"] and the peak RSS after it into record["rss_after_mb"][name]."""
    t0 = time.perf_counter()
    yield
    record[f"{name}_s"] = round(time.perf_counter() - t0, 1)
    record.setdefault("rss_after_mb", {})[name] = peak_rss_mb()
    print(f"  {name}: {record[f'{name}_s']}s, peak RSS {peak_rss_mb():.0f} MB", flush=True)


def padded(ids: np.ndarray) -> np.ndarray:
    """A (1, <=K) row of ids as (1, K), -1 filling."""
    return np.pad(ids, ((0, 0), (0, K - ids.shape[1])), constant_values=-1)


def parse_configs(text: str) -> list[dict]:
    """'nlist=1024,m=64;nlist=1024,m=64,opq=1' -> [{...}, ...]."""
    return [{k: int(v) for k, v in (item.split("=") for item in conf.split(","))} for conf in text.split(";") if conf]


def bench_size(n: int, args, work: Path) -> list[dict]:
    """Every config x nprobe x rerank row at n vectors. The vectors live in a file and the LanceDB
    table, never all in RAM; the file and table are deleted afterwards (disk is the limit at 10M)."""
    print(f"n={n:,}", flush=True)
    phases: dict = {}
    with phase(phases, "generate"):
        vectors, queries = generate(work / f"vectors_{n}.f32", n, args.queries)
    with phase(phases, "truth"):
        truth = exact_top(vectors, queries)
    with phase(phases, "store"):
        store, rids = write_store(work / f"store_{n}", vectors)
    truth = rids[truth]
    sizes = {"vectors_file_bytes": disk_bytes(vectors.path), "store_bytes": disk_bytes(work / f"store_{n}")}
    rows = []
    for conf in parse_configs(args.configs):
        spec = IndexSpec("ivfpq", conf).resolve(n, DIM)
        with phase(phases, "build"):
            built = AnnIndex.build(spec, DIM, rids, vectors)
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
                    exact = vectors.map[ids - RID_OFFSET] @ q  # from the memory-mapped file
                    return ids[np.argsort(-exact)[:K]][None]

                use_threads(1)
                found_rsrag = np.vstack([rsrag_path(q) for q in queries])
                found_faiss = np.vstack([padded(faiss_path(q)) for q in queries])
                lat = timed_loop([rsrag_path, faiss_path], queries, budget_s=args.time_budget, min_n=len(queries))
                row = {"n": n, "index": str(ann.spec), "nlist": spec.params["nlist"], "m": spec.params["m"],
                       "opq": spec.params["opq"], "nprobe": nprobe, "rerank": rerank,
                       "ann_bytes": ann_bytes, "estimate_bytes": index_bytes(spec, n, DIM),
                       "float32_bytes": n * DIM * 4,
                       "rsrag_recall_at_10": round(recall(found_rsrag, truth), 4),
                       "faiss_recall_at_10": round(recall(found_faiss, truth), 4),
                       "rsrag_p50_ms": lat[0]["p50_ms"], "rsrag_p99_ms": lat[0]["p99_ms"],
                       "faiss_p50_ms": lat[1]["p50_ms"], "faiss_p99_ms": lat[1]["p99_ms"],
                       "rsrag_vs_faiss_p50": round(lat[0]["p50_ms"] / lat[1]["p50_ms"], 2), "queries": lat[0]["queries"],
                       **{k: phases[k] for k in ("generate_s", "truth_s", "store_s", "build_s")}, **sizes,
                       "peak_rss_mb": peak_rss_mb(), "rss_after_mb": dict(phases["rss_after_mb"])}
                row["met_target"] = bool(row["rsrag_recall_at_10"] >= TARGET["recall_at_10"]
                                         and row["rsrag_p50_ms"] < TARGET["p50_ms"] and ann_bytes < TARGET["ann_bytes"])
                rows.append(row)
                print_row(row)
        del built
    (work / f"vectors_{n}.f32").unlink()
    shutil.rmtree(work / f"store_{n}")
    return rows


COLUMNS = ("n", "nlist", "m", "opq", "nprobe", "rerank", "ann_bytes", "rsrag_recall_at_10", "faiss_recall_at_10",
           "rsrag_p50_ms", "rsrag_p99_ms", "faiss_p50_ms", "faiss_p99_ms", "rsrag_vs_faiss_p50", "met_target",
           "build_s", "peak_rss_mb")


def print_row(row: dict) -> None:
    cells = [f"{row[c] / 1e6:.0f}MB" if c == "ann_bytes" else str(row[c]) for c in COLUMNS]
    print(" | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k vectors, two configs (a smoke run)")
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--configs", default="nlist=1024,m=64,opq=0;nlist=1024,m=64,opq=1",
                        help="IVF-PQ configs, ';'-separated (nlist, m, nbits, opq; unset ones take rsrag's defaults)")
    parser.add_argument("--nprobe", default="8,16,32")
    parser.add_argument("--rerank", default="0,100,200")
    parser.add_argument("--time-budget", type=float, default=1.0, help="seconds per timed loop (all queries run)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the vectors file and LanceDB table go (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.configs = "100000", "nlist=256,m=32,opq=0;nlist=256,m=64,opq=0"
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
