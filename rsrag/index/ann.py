"""The FAISS side of an index: which index type, built how, searched how, on CPU or GPU.

Every FAISS index here maps vectors to the record's stable int64 `rid` (never a position), so
adding and deleting never renumber anything. Inner product on L2-normalised vectors = cosine.

Index types (`IndexSpec`; the string form `"ivf:nlist=1024,nprobe=32"` is what `--index-type` takes):

- `flat`  exact search, `IndexIDMap(IndexFlatIP)`. Chosen by `auto` below `FLAT_MAX` (50,000)
  vectors: exact and still only a few ms per query there.
- `ivf`   `IndexIVFFlat`, inner-product coarse quantiser. Chosen by `auto` from 50,000 vectors, while they fit
  the memory budget (below).
  Defaults: `nlist` = the power of two nearest sqrt(n) (64..16384), trained by k-means on at most
  `TRAIN_PER_LIST` (40) vectors per list; `nprobe` = max(16, nlist/16), i.e. about 6% of the
  lists are scanned (see bench/search.py for the recall and speed this gives). Deletes are real
  (`remove_ids`).
- `hnsw`  `IndexIDMap(IndexHNSWFlat)`, M=32, efConstruction=80, efSearch=64 (only on request:
  slower to build on few cores). HNSW cannot remove vectors, so a delete becomes a tombstone that
  every search excludes through an ID selector; `needs_rebuild` asks for a rebuild past 10%.
- `ivfpq` IVF-PQ, `[OPQm,]IVFn,PQmx8` (FAISS index_factory), inner product: each vector is m code
  bytes (64 for 512-d by default: the most sub-quantisers up to 64 with >= 4 dimensions each) plus
  its 8-byte rid, instead of 4*dim float bytes. `nlist` as ivf, `nprobe` = max(16, nlist/128),
  `opq` = 1 (a learned rotation before the codes; 0 turns it off), `rerank` = 100: the search asks
  FAISS for the `rerank` best candidates by PQ score, reads their float32 vectors from the owner
  through `vectors_for` (LanceDB, see `RecordStore.vectors_for_rids`) and re-scores them exactly,
  so the scores returned are true cosines and the vectors never sit in RAM. Why these defaults
  (`python bench/scale.py`, synthetic 512-d, PQ64, one run each): OPQ lifts the codes' own
  recall@10 (1M: 0.54 -> 0.67; 10M: 0.46 -> 0.60), so 100 re-ranked candidates do what 200-400 did
  without it: 1M, nlist 1024, nprobe 16: recall@10 0.990 at 8.4 ms (no OPQ, 200 re-ranked: 0.967 at
  8.6 ms); 10M, nlist 4096, nprobe 32: 0.985 at 14.2 ms (nprobe 64: 0.986 at 22.5 ms; nlist 2048
  scans twice the codes: 19.8 ms). Its price is the build: 183 s instead of 55 s at 1M on 2 cores.
  Inner product rather than L2: exact IP and L2 rank unit vectors alike and both encode the residual
  to the list centroid, but their PQ estimates differ. IP's look-up table is computed once per query, where L2 needs one per probed list
  or FAISS' precomputed table (nlist*m*256 floats: 268 MB at nlist 4096, m 64, outside the budget).
  Measured (200k synthetic 512-d, IVF512,PQ64, nprobe 16): L2 ranks the PQ candidates better
  (recall@10 0.71 vs 0.60 without re-rank, 0.973 vs 0.959 with 100 candidates, 0.973 vs 0.977 with
  200), IP scans faster (0.36 vs 0.52 ms). With 200 candidates they are equal; L2 with 100 would
  halve the re-rank fetch, the dominant cost, for that table's memory: a possible next step.
  Below 2^nbits vectors (256), too few to train the codes, an ivfpq index is exact (flat) and
  becomes ivfpq once the collection has that many. Trained on at most max(40*nlist, 16384)
  vectors; PQ k-means 10 rounds on <= 64 points per code word; no polysemous training (FAISS'
  factory default, unused here, and most of the build time). Deletes are real (`remove_ids`).
  bench/scale.py measures memory, recall and latency against raw FAISS.

`auto` picks by size and memory (rsrag.index.sizing, given the dimension): flat below `FLAT_MAX`,
ivf while the float32 vectors fit the memory budget (`auto:budget=BYTES`, default 4 GiB), ivfpq
beyond. It re-chooses as the collection grows: an index whose type no longer fits, or an IVF or
IVF-PQ index that grows 4x past the size it was trained at, is rebuilt from the stored vectors.

Threads: a search of a few queries runs FAISS on `RSRAG_SEARCH_THREADS` OpenMP threads (default
1; 0 keeps FAISS' default of all cores). On a shared 2-core machine a single flat query over 10k
vectors took 24 ms with 2 threads (the second thread waits for a busy core) and 0.7 ms with one;
IVF queries and batches are unaffected. An add of a few rows (a `POST /items`) runs like a few
queries (7 ms for one IVF add at 300k records on all threads of a busy machine); builds, large adds
and batch searches use FAISS' default (every core, or `OMP_NUM_THREADS`). OpenMP keeps the thread
count per calling thread, so `use_threads` changes it only when the kind of work changes: a run of
single queries sets it once, not around every call, and other threads (a server's other workers, the caller's own FAISS work elsewhere)
keep theirs. A thread that searched is left at the search setting afterwards.

GPU: when faiss was built with GPU support and a GPU is visible (and `RSRAG_FAISS_GPU` is not
"0"), unfiltered flat and IVF searches run on a GPU copy of the index (on every GPU, replicated):
adds go to both, a delete drops the copy and the next search makes it again; the GPU resources (cuBLAS handles, scratch memory) are made once per
process. Filtered searches, HNSW and k > 2048 (FAISS' GPU limit) stay on the CPU (FAISS GPU indexes
take no ID selector); so does ivfpq, whose cost is the re-rank fetch, not the scan. The CPU index
stays the one that is updated and saved. `bench/ann_gpu.py`
measures GPU against CPU.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from rsrag.fileio import atomic_write

log = logging.getLogger(__name__)
_ptr = faiss.swig_ptr


def _openmp_default() -> int:
    """What OpenMP gives a new thread: OMP_NUM_THREADS, else the cores this process may run on. Not
    read from the importing thread, whose count another library (torch) may already have changed."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


DEFAULT_THREADS = _openmp_default()  # FAISS' default for batch searches and builds
_FLOAT32 = np.dtype(np.float32)

FLAT_MAX = 50_000
TRAIN_PER_LIST = 40
SEARCH_THREADS = int(os.environ.get("RSRAG_SEARCH_THREADS", "1"))
FEW_QUERIES = 8  # up to this many queries count as a latency-bound search
GPU_MAX_K = 2048  # FAISS GPU indexes return at most this many neighbours per query
KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
_PARAMS = {"flat": set(), "ivf": {"nlist", "nprobe"}, "hnsw": {"m", "ef_construction", "ef_search"},
           "ivfpq": {"nlist", "m", "nbits", "nprobe", "opq", "rerank"}, "auto": {"budget"}}
_ZERO_OK = {"opq", "rerank"}  # parameters where 0 means "off"
PQ_TRAIN_MIN = 64 * 256  # PQ k-means wants ~40+ points per code word (256 for 8 bits); more is no better
ADD_CHUNK = 262_144  # rows per add in `build`: one chunk of float32 in RAM at a time (512 MB at 512-d)
PQ_NBITS = 8  # bits per PQ code: 256 code words per sub-quantiser
PQ_RERANK = 100  # candidates re-ranked exactly (with OPQ): recall@10 0.99 at 1M, 0.985 at 10M (module doc)
VectorsFor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class IndexSpec:
    """An index type plus the parameters given explicitly (the rest are filled by `resolve`)."""

    kind: str = "auto"
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "IndexSpec":
        """'auto[:budget=BYTES]' | 'flat' | 'ivf[:nlist=N,nprobe=N]' | 'hnsw[:m=N,ef_construction=N,ef_search=N]'
        | 'ivfpq[:nlist=N,m=N,nbits=N,nprobe=N,opq=0|1,rerank=N]'."""
        text = (text or "auto").strip().lower()
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
        params = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in _PARAMS[kind] or not value.isdigit() or int(value) < (key not in _ZERO_OK):
                raise ValueError(f"bad index parameter {item!r} for {kind}; allowed: {sorted(_PARAMS[kind]) or 'none'}")
            params[key] = int(value)
        return cls(kind, params)

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) if self.params else "")

    def resolve(self, n: int, dim: int | None = None) -> "IndexSpec":
        """The concrete type and full parameters for a collection of n vectors (of `dim` dimensions:
        `auto` then picks by memory, see sizing.py; without it, flat below FLAT_MAX, else ivf)."""
        if self.kind == "auto":
            if dim is None:
                return IndexSpec("flat" if n < FLAT_MAX else "ivf").resolve(n)
            from rsrag.index.sizing import choose  # sizing builds on this module

            return choose(n, dim, self.params.get("budget")).spec
        params = dict(self.params)
        if self.kind == "ivfpq" and n < 2 ** params.get("nbits", PQ_NBITS):
            return IndexSpec("flat")  # too few vectors to train the codes: exact until there are enough
        if self.kind in ("ivf", "ivfpq"):
            nlist = params.get("nlist") or min(16384, max(64, 2 ** round(math.log2(math.sqrt(max(n, 1))))))
            nlist = max(1, min(nlist, n // 4 or 1))  # k-means needs several points per list
            nprobe = params.get("nprobe") or (max(16, nlist // 16) if self.kind == "ivf" else max(16, nlist // 128))
            params |= {"nlist": nlist, "nprobe": min(nlist, nprobe)}
        if self.kind == "ivfpq":
            d = dim or 0  # default m: the most sub-quantisers up to 64 with at least 4 dimensions each
            m = params.get("m") or (max(x for x in range(1, min(64, d // 4) + 1) if d % x == 0) if d >= 4 else 8)
            params = {"m": m, "nbits": PQ_NBITS, "opq": 1, "rerank": PQ_RERANK} | params
        elif self.kind == "hnsw":
            params = {"m": 32, "ef_construction": 80, "ef_search": 64} | params
        return IndexSpec(self.kind, params)


def search_thread_count(n_queries: int) -> int:
    """The OpenMP threads a search of n queries should run on: SEARCH_THREADS for a latency-bound
    search of a few queries, else 0 (leave FAISS' setting alone). See the module doc."""
    return SEARCH_THREADS if 0 < SEARCH_THREADS and n_queries <= FEW_QUERIES else 0


def use_threads(n_queries: int | None) -> None:
    """Make this thread's next FAISS calls run on the threads a search of n queries should use
    (`None`: a build, FAISS' default; an add of n rows counts as n queries). Set only when it
    differs from the current setting, which OpenMP keeps per thread (see the module doc)."""
    want = (search_thread_count(n_queries) if n_queries is not None else 0) or DEFAULT_THREADS
    if faiss.omp_get_max_threads() != want:
        faiss.omp_set_num_threads(want)


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside `index` (itself, or behind an OPQ transform), as its own class; None if none."""
    ivf = faiss.try_extract_index_ivf(index)
    return faiss.downcast_index(ivf) if ivf is not None else None


@functools.cache
def gpu_available() -> bool:
    """faiss-gpu installed, a GPU visible, and not switched off by RSRAG_FAISS_GPU=0 (asked once per
    process: it sits on every search's path)."""
    if os.environ.get("RSRAG_FAISS_GPU", "1") == "0" or not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001 - a broken CUDA setup means CPU, not a crash
        return False


@functools.cache
def _gpu_resources() -> tuple:
    """One StandardGpuResources per GPU for the whole process: each holds a cuBLAS handle, streams
    and scratch memory, too costly to make again for every GPU copy."""
    return tuple(faiss.StandardGpuResources() for _ in range(faiss.get_num_gpus()))


class AnnIndex:
    """A FAISS index keyed by rid, with the bookkeeping to add, delete, persist and search it."""

    def __init__(self, spec: IndexSpec, dim: int, index: faiss.Index, trained_n: int = 0) -> None:
        self.spec, self.dim, self.index, self.trained_n = spec, dim, index, trained_n
        self.tombstones = np.zeros(0, np.int64)  # hnsw only: rids deleted but still in the graph
        self._gpu: faiss.Index | None = None
        self._gpu_failed = False
        self._use_gpu = True
        self._changed()
        self._apply_search_params()

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def build(cls, spec: IndexSpec, dim: int, rids: np.ndarray, vectors: np.ndarray) -> "AnnIndex":
        """A new index of a resolved spec over (rids, vectors); IVF is trained on a sample of them.

        `vectors` may be an array or any array-like with len(), row slices and integer-array indexing
        that return arrays (e.g. a reader over a file of rows larger than RAM): IVF trains on a
        bounded sample (`_sample`) and, like flat, is then added ADD_CHUNK rows at a time, so an
        IVF-PQ build never holds all the vectors as float32. Chunking changes nothing in the result
        for these types (each vector is assigned and encoded on its own, in order). HNSW is added in
        one call: its graph depends on how adds are batched, and it keeps every vector in RAM anyway.
        """
        use_threads(None)
        if spec.kind == "flat":
            index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        elif spec.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, spec.params["m"], faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = spec.params["ef_construction"]
            index = faiss.IndexIDMap(inner)
        elif spec.kind in ("ivf", "ivfpq"):
            nlist = spec.params["nlist"]
            if len(vectors) < nlist:
                raise ValueError(f"IVF with nlist={nlist} needs at least {nlist} vectors, got {len(vectors)}")
            take = TRAIN_PER_LIST * nlist
            if spec.kind == "ivf":
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                index = cls._new_ivfpq(spec, dim)
                take = max(take, PQ_TRAIN_MIN)
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.niter = 10  # fewer k-means rounds than faiss' 25: same recall here, 2.5x faster
            ivf.cp.max_points_per_centroid = TRAIN_PER_LIST
            if spec.kind == "ivfpq":  # the m PQ k-means (256 words each): 10 rounds too, on <= 64 points/word
                pq_cp = faiss.downcast_index(ivf).pq.cp
                pq_cp.niter, pq_cp.max_points_per_centroid = 10, 64
            index.train(cls._sample(vectors, take))
        else:
            raise ValueError(f"cannot build an index of unresolved type {spec.kind!r}")
        ann = cls(spec, dim, index, trained_n=len(rids))
        step = max(1, len(rids) if spec.kind == "hnsw" else ADD_CHUNK)
        for start in range(0, len(rids), step):
            ann.add(rids[start : start + step], vectors[start : start + step])
        return ann

    @staticmethod
    def _new_ivfpq(spec: IndexSpec, dim: int) -> faiss.Index:
        """An untrained `[OPQm,]IVFn,PQmxb` index, inner product (see the module doc for why IP)."""
        m, nbits = spec.params["m"], spec.params["nbits"]
        if dim % m:
            raise ValueError(f"ivfpq: m={m} sub-quantisers must divide the dimension {dim}")
        opq = f"OPQ{m}," if spec.params["opq"] else ""
        factory = f"{opq}IVF{spec.params['nlist']},PQ{m}x{nbits}np"  # np: no polysemous training
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)

    @staticmethod
    def _sample(vectors: np.ndarray, take: int) -> np.ndarray:
        """At most `take` of the vectors, picked at random (seeded) and in storage order, as float32:
        what k-means trains on. Reading them in order keeps a memory-mapped source sequential."""
        if take >= len(vectors):
            return np.ascontiguousarray(vectors, np.float32)
        pick = np.sort(np.random.default_rng(0).choice(len(vectors), take, replace=False))
        return np.ascontiguousarray(vectors[pick], np.float32)

    @classmethod
    def load(cls, path: Path, spec: IndexSpec, trained_n: int = 0) -> "AnnIndex":
        index = faiss.read_index(str(path))
        return cls(spec, index.d, index, trained_n)

    def save(self, path: Path) -> None:
        atomic_write(Path(path), lambda tmp: faiss.write_index(self.index, str(tmp)))

    @staticmethod
    def file_kind(index: faiss.Index) -> str:
        """What a loaded FAISS object is, to check it against the manifest."""
        ivf = _ivf_of(index)
        if ivf is not None:
            return "ivfpq" if isinstance(ivf, faiss.IndexIVFPQ) else "ivf"
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"

    def _apply_search_params(self) -> None:
        if self.spec.kind in ("ivf", "ivfpq"):
            _ivf_of(self.index).nprobe = self.spec.params["nprobe"]
        elif self.spec.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = self.spec.params["ef_search"]

    # ---- updates -------------------------------------------------------------------------------
    def add(self, rids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their rids; a GPU copy gets them too, rather than being copied again
        at the next search (1.5 s for 1M vectors under IVF)."""
        if len(rids):
            vectors, rids = np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(rids, np.int64)
            use_threads(len(rids))  # a few rows (one POST /items) are latency-bound, like a few queries
            self.index.add_with_ids(vectors, rids)
            gpu = self._gpu
            if gpu is not None:
                try:
                    gpu.add_with_ids(vectors, rids)
                except Exception as exc:  # noqa: BLE001 - the next search copies the index again
                    log.debug("could not add to the GPU copy, it will be made again: %s", exc)
                    gpu = None
            self._changed(keep_gpu=gpu)

    def remove(self, rids: np.ndarray) -> None:
        rids = np.asarray(rids, np.int64)
        if not len(rids):
            return
        if self.spec.kind == "hnsw":
            self.tombstones = np.union1d(self.tombstones, np.intersect1d(rids, self.stored_ids()))
        else:
            self.index.remove_ids(rids)
        self._changed()

    def _changed(self, keep_gpu: faiss.Index | None = None) -> None:
        """Forget what searches cache about the index: its size, the search device, and the GPU
        copy unless `keep_gpu` is that copy brought up to date."""
        self._ntotal = int(self.index.ntotal)
        self._gpu, self._searcher = keep_gpu, None

    @property
    def use_gpu(self) -> bool:
        """Whether unfiltered searches may run on a GPU (where one is available); False pins this
        index to the CPU, e.g. to compare the two."""
        return self._use_gpu

    @use_gpu.setter
    def use_gpu(self, value: bool) -> None:
        self._use_gpu = bool(value)
        self._searcher = None

    @property
    def device(self) -> str:
        """Where an unfiltered search runs now: "gpu" or "cpu"."""
        return "cpu" if self._search_device() is self.index else "gpu"

    def stored_ids(self) -> np.ndarray:
        """Every rid with a vector in the FAISS index, tombstoned ones included, sorted."""
        ivf = _ivf_of(self.index)
        if ivf is not None:
            lists = ivf.invlists
            parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                     for i in range(lists.nlist) if lists.list_size(i)]
            return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))

    def live_ids(self) -> np.ndarray:
        ids = self.stored_ids()
        return np.setdiff1d(ids, self.tombstones, assume_unique=True) if len(self.tombstones) else ids

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    def needs_rebuild(self, requested: IndexSpec, n: int) -> bool:
        """Whether the index type or its training no longer suits n live vectors under the requested
        spec (see module doc): only `auto` changes type or retrains as the collection grows; an
        explicit type changes only from the flat index a small ivfpq starts as."""
        if self.spec.kind == "hnsw" and len(self.tombstones) > 0.1 * max(self.index.ntotal, 1):
            return True
        if requested.resolve(n, self.dim).kind != self.spec.kind:
            return True
        return requested.kind == "auto" and self.spec.kind in ("ivf", "ivfpq") and n > 4 * max(self.trained_n, 1)

    # ---- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               vectors_for: VectorsFor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rids), each (nq, k); missing slots have rid -1.

        `queries`: a floating-point array of shape (nq, dim), or (dim,) for one query; anything else
        raises ValueError (FAISS itself would read whatever memory the pointer leads to).
        `allowed` (sorted rids) restricts the search through a FAISS ID selector. Flat stays exact.
        IVF and HNSW widen their search by 1 / (fraction of vectors allowed) - nprobe up to every
        list (then exact), efSearch up to 4096 - so a filtered query scans about as many allowed
        candidates as an unfiltered one, and keeps its recall.
        `vectors_for(rids) -> (found rids, their vectors)` (ivfpq only): where the exact re-rank reads
        the stored vectors of the candidates; without it ivfpq returns its compressed-code scores.
        """
        queries = self._query_array(queries)
        if self.spec.kind == "ivfpq":
            return self._search_reranked(queries, k, allowed, vectors_for)
        return self._search(queries, k, allowed)

    def _search_reranked(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
                         vectors_for: VectorsFor | None) -> tuple[np.ndarray, np.ndarray]:
        """ivfpq: the `rerank` best candidates by PQ score, then re-scored exactly from their stored
        vectors (one fetch for all queries) and cut to k."""
        if vectors_for is None or not self.spec.params["rerank"]:
            return self._search(queries, k, allowed)
        scores, rids = self._search(queries, max(k, self.spec.params["rerank"]), allowed)
        found, vectors = vectors_for(np.unique(rids[rids >= 0]))
        order = np.argsort(found, kind="stable")
        found, vectors = found[order], np.asarray(vectors, np.float32)[order]
        pos = np.minimum(np.searchsorted(found, rids), max(len(found) - 1, 0))
        known = (rids >= 0) & (found[pos] == rids) if len(found) else np.zeros(rids.shape, bool)
        exact = np.full(rids.shape, -np.inf, np.float32)
        for i in range(len(queries)):  # a (candidates, dim) @ (dim,) product per query
            exact[i, known[i]] = vectors[pos[i, known[i]]] @ queries[i]
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        out_scores, out_rids = np.take_along_axis(exact, top, 1), np.take_along_axis(rids, top, 1)
        out_rids[~np.isfinite(out_scores)] = -1  # candidates the store no longer has
        return out_scores, out_rids

    def _query_array(self, queries: np.ndarray) -> np.ndarray:
        """`queries` as FAISS reads them, C-contiguous float32 (n, dim): a view when they already
        are, a converted copy for other float arrays, ValueError for anything else."""
        if type(queries) is not np.ndarray:
            queries = np.asarray(queries)
        if queries.dtype.kind != "f":
            raise ValueError(f"queries must be a floating-point array, not {queries.dtype}")
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}) or ({self.dim},), not {queries.shape}")
        if queries.dtype is not _FLOAT32 or not queries.flags.c_contiguous:
            queries = np.ascontiguousarray(queries, np.float32)
        return queries

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """`search` for queries `_query_array` has checked. The per-query path, kept to few Python
        steps because it runs cache-cold after the previous scan."""
        k = max(1, min(k, self._ntotal)) if self._ntotal else 1
        n = len(queries)
        use_threads(n)
        if allowed is not None or len(self.tombstones):
            return self._search_selected(queries, k, allowed)
        index = self._search_device() if k <= GPU_MAX_K else self.index
        # FAISS' C++ search itself: its Python `search` checks and converts again what
        # `_query_array` guarantees (measured 3 us a call warm, more cold)
        scores, rids = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
        index.search_c(n, _ptr(queries), k, _ptr(scores), _ptr(rids))
        return scores, rids

    def _search_selected(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """A search restricted to `allowed` rids, or past the tombstones."""
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, np.int64))
        else:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.tombstones))
        widen = self._ntotal / max(len(allowed), 1) if allowed is not None else 1.0
        if self.spec.kind in ("ivf", "ivfpq"):
            nprobe = min(_ivf_of(self.index).nlist, math.ceil(self.spec.params["nprobe"] * widen))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        elif self.spec.kind == "hnsw":
            ef = min(4096, math.ceil(max(self.spec.params["ef_search"], 4 * k) * widen))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, k))
        else:
            params = faiss.SearchParameters(sel=sel)
        return self.index.search(queries, k, params=params)

    def _search_device(self) -> faiss.Index:
        """The GPU copy when there is one, else the CPU index; remembered as `_searcher` until the
        next change."""
        if self._searcher is None:
            self._searcher = self._pick_device()
        return self._searcher

    def _pick_device(self) -> faiss.Index:
        if self.spec.kind in ("hnsw", "ivfpq") or self._gpu_failed or not self._use_gpu or not gpu_available():
            return self.index
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_gpu_multiple_py(list(_gpu_resources()), self.index)
                if self.spec.kind == "ivf":
                    faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", self.spec.params["nprobe"])
            except Exception as exc:  # noqa: BLE001 - fall back to CPU, but say so once
                log.warning("could not move the FAISS index to the GPU, searching on CPU: %s", exc)
                self._gpu_failed = True
                return self.index
        return self._gpu
