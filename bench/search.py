"""Search benchmark: rsrag's Library vs raw FAISS vs LanceDB vs numpy, on one machine, in one run.

    python bench/search.py [--quick] [--json] [--sizes 10000,100000,1000000] [--hnsw]
                           [--real-index NAME --root DIR] [--encoder rs-lite] [--no-real]

Collections of dim-512 vectors at 10k, 100k and 1M (`--quick`: 10k and 100k only, < 2 minutes):

- `synthetic`: 32 clusters on the unit sphere, each a random 16-d linear patch plus noise (a low
  intrinsic dimension, like real embeddings), with synthetic captions (topic words + random words).
  Queries are fresh points of the same mixture. Text queries use a stub text encoder (hashed words,
  microseconds), so `hybrid_p50_ms` there is rsrag's own cost: dense + BM25 + fusion + hydration.
- `rsicd`: real RSICD image embeddings of the encoder (default rs-lite), read from an index built
  with `rsrag index build rsicd` (`--real-index`), or embedded once and cached in
  `$RSRAG_CACHE/bench/` (a full run does it; `--quick` skips `rsicd` when nothing is cached). 10k =
  10,000 real vectors, queried with the other 921 real images; 100k and 1M repeat the real vectors
  with small noise (cosine ~0.95 to their source), labelled `rsicd-jitter`. Text queries are RSICD
  test captions through the real text encoder, so `hybrid_p50_ms` includes text encoding.

For each collection the Library is built once (`add_embedded`: LanceDB + BM25 + FAISS, `build_s`),
then the FAISS index is rebuilt as each type measured (`faiss_build_s`): `flat` (exact) and `ivf`
(auto parameters for n), plus `hnsw` with `--hnsw`. Per row, at k=10, single queries in sequence:
raw FAISS (`index.search` on the very index the Library holds, with FAISS set once for the loop
to the Library's single-query thread count, `RSRAG_SEARCH_THREADS`, default 1) and `Library.search_vector` (filter check, FAISS, hit
hydration) are timed interleaved query by query, in random order, so machine noise hits both
alike. `overhead_vs_faiss` = (rsrag p50 - FAISS p50) / FAISS p50; `auto_choice` marks the type
rsrag itself picks for that n (flat below 50k, IVF above). `ann_recall_at_10` is against exact
search over all queries. `qps_vs_exact` = this row's rsrag QPS / the flat row's. LanceDB's native
search (`table.search(q).metric("dot")`, no vector index: exact scan) and numpy brute force
(`X @ q` + argpartition) are timed once per collection. Memory: `faiss_mb` (index
file), `rss_mb` (process after building). JSON goes to `results_dir()/bench_search.json`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from rsrag.config import cache_dir, results_dir  # noqa: E402
from rsrag.data import ImageRecord  # noqa: E402
from rsrag.encoders import Encoder, Preprocess  # noqa: E402
from rsrag.index import IndexSpec, Library  # noqa: E402
from rsrag.index.ann import SEARCH_THREADS, search_thread_count  # noqa: E402

DIM, K = 512, 10
FULL_SIZES, QUICK_SIZES = (10_000, 100_000, 1_000_000), (10_000, 100_000)
TIME_BUDGET_S = 2.0  # per timed loop; at least MIN_QUERIES, at most the queries there are
MIN_QUERIES = 10


class StubTextEncoder(Encoder):
    """Text side of the synthetic collections: each word maps to a fixed random vector."""

    id = "bench-synthetic@v1"
    dim = DIM
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError("synthetic collections have no images")

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                seed = int.from_bytes(hashlib.md5(word.encode()).digest()[:8], "little")
                out[i] += np.random.default_rng(seed).standard_normal(DIM, dtype=np.float32)
        return out + 1e-6


def normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


# ---- collections ---------------------------------------------------------------------------------
MIXTURE_BLOCK = 50_000  # points are drawn this many at a time; the same blocks = the same vectors


@dataclass(frozen=True)
class Mixture:
    """32 clusters, each a random 16-d linear patch around its centre plus isotropic noise: a low
    intrinsic dimension like real embeddings have, so ANN recall is not trivially 1."""

    centres: np.ndarray  # (clusters, DIM) unit vectors
    patches: np.ndarray  # (clusters, latent, DIM)
    topics: np.ndarray  # (clusters, 3) vocabulary positions of each cluster's caption topic words

    @classmethod
    def draw(cls, rng: np.random.Generator, n_clusters: int = 32, latent: int = 16, vocab: int = 5000) -> Mixture:
        centres = normalize(rng.standard_normal((n_clusters, DIM), dtype=np.float32))
        patches = rng.standard_normal((n_clusters, latent, DIM), dtype=np.float32) * (4 / np.sqrt(DIM * latent))
        return cls(centres, patches, rng.integers(0, vocab, (n_clusters, 3)))

    def blocks(self, rng: np.random.Generator, m: int):
        """(labels, unit vectors) of m points, MIXTURE_BLOCK at a time (the labels of all m are drawn
        first, then per block the latent coordinates and the noise), so a caller can stream points to
        disk without holding them. The patch term is summed per cluster rather than over a gathered
        (block, latent, DIM) stack of patches, which took 7.5 s and 1.6 GB per block against 0.6 s."""
        labels = rng.integers(0, len(self.centres), m)
        for s in range(0, m, MIXTURE_BLOCK):
            c = labels[s : s + MIXTURE_BLOCK]
            z = rng.standard_normal((len(c), self.patches.shape[1]), dtype=np.float32)
            x = self.centres[c]
            for j in np.unique(c):
                x[c == j] += np.einsum("ml,ld->md", z[c == j], self.patches[j])
            x += rng.standard_normal(x.shape, dtype=np.float32) * (0.3 / np.sqrt(DIM))
            yield c, normalize(x)

    def points(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self.blocks(rng, m))
        return np.vstack([x for _, x in parts]), np.concatenate([c for c, _ in parts])


def synthetic(n: int, n_queries: int, seed: int = 0) -> dict:
    """n points of a `Mixture` plus n_queries fresh ones, with captions of topic and random words."""
    rng = np.random.default_rng(seed)
    mixture = Mixture.draw(rng)
    vocab = np.array([f"w{i}" for i in range(5000)])
    vectors, labels = mixture.points(rng, n)
    queries, q_labels = mixture.points(rng, n_queries)
    common = rng.zipf(1.3, (n, 6)) % len(vocab)
    topics = mixture.topics
    captions = [" ".join(vocab[np.r_[topics[c][:2], common[i]]]) for i, c in enumerate(labels)]
    texts = [" ".join(vocab[topics[c][:2]]) for c in q_labels]
    return {"vectors": vectors, "queries": queries, "captions": captions, "labels": [f"c{c}" for c in labels],
            "paths": [None] * n, "text_queries": texts, "encoder": StubTextEncoder()}


def real_rsicd(args) -> tuple[dict | None, str]:
    """RSICD embeddings + captions + an encoder for text queries, or (None, why not)."""
    try:
        if args.real_index:
            lib = Library.open(args.root, args.real_index)
            rids, vectors = lib.store.vectors()
            table = lib.store.scan(["captions", "label", "path", "split"])
            encoder = lib.encoder
        else:
            from rsrag.data import load_dataset
            from rsrag.encoders import create_encoder

            encoder = create_encoder(args.encoder)
            cache = cache_dir() / "bench" / f"rsicd-{hashlib.md5(encoder.id.encode()).hexdigest()[:12]}.npz"
            records = load_dataset("rsicd")
            if not cache.exists():
                if args.quick:
                    return None, f"no cached RSICD embeddings for {encoder.id} (a run without --quick makes them)"
                print(f"embedding {len(records)} RSICD images with {encoder.id} (once) ...", file=sys.stderr)
                result = encoder.encode_images_lenient([r.path for r in records], batch_size=64)
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, vectors=result.vectors, ok=np.array(result.ok))
            with np.load(cache) as z:
                vectors, ok = z["vectors"], z["ok"]
            records = [records[i] for i in ok]
            table = {"captions": [r.captions for r in records], "label": [r.label for r in records],
                     "path": [str(r.path) for r in records], "split": [r.split for r in records]}
        cols = table if isinstance(table, dict) else {c: table.column(c).to_pylist() for c in table.column_names}
    except Exception as exc:  # noqa: BLE001 - no weights, no data: the synthetic rows still run
        return None, f"{type(exc).__name__}: {exc}"
    test_caps = [c[0] for c, s in zip(cols["captions"], cols["split"]) if s == "test" and c]
    return {"vectors": normalize(np.asarray(vectors, np.float32)), "captions": cols["captions"],
            "labels": cols["label"], "paths": cols["path"], "text_queries": test_caps, "encoder": encoder}, ""


def real_collection(real: dict, n: int, n_queries: int) -> tuple[str, dict]:
    """10k real vectors (queries: the held-out rest), or real vectors repeated with noise."""
    base, m = real["vectors"], len(real["vectors"])
    rng = np.random.default_rng(1)
    if n <= m - 100:
        order = rng.permutation(m)
        keep, held = order[:n], order[n:][:n_queries]
        return "rsicd", {**real, "vectors": base[keep], "queries": base[held],
                         "captions": [real["captions"][i] for i in keep], "labels": [real["labels"][i] for i in keep],
                         "paths": [real["paths"][i] for i in keep]}
    src = np.arange(n) % m
    dim = base.shape[1]
    sigma = 0.33 / np.sqrt(dim)  # cosine ~0.95 with the source vector

    def jitter(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), dim), np.float32)
        for s in range(0, len(idx), 100_000):
            part = idx[s : s + 100_000]
            out[s : s + len(part)] = normalize(base[part] + rng.normal(0, sigma, (len(part), dim)).astype(np.float32))
        return out

    return "rsicd-jitter", {**real, "vectors": jitter(src), "queries": jitter(rng.integers(0, m, n_queries)),
                            "captions": [real["captions"][i] for i in src], "labels": [real["labels"][i] for i in src],
                            "paths": [real["paths"][i] for i in src]}


# ---- timing --------------------------------------------------------------------------------------
def stats(lat: list[float]) -> dict:
    a = np.asarray(lat) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "qps": round(1000 / float(a.mean()), 1), "queries": len(a)}


def timed_loop(fns: list, queries, budget_s: float = TIME_BUDGET_S, min_n: int = MIN_QUERIES) -> list[dict]:
    """Time each fn on each query, interleaved in random order, until the budget is spent
    (>= min_n queries)."""
    for fn in fns:  # warm-up
        for q in queries[:2]:
            fn(q)
    lat = [[] for _ in fns]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i, q in enumerate(queries):
        for j in rng.permutation(len(fns)):  # a fresh random order per query: no position bias
            t = time.perf_counter()
            fns[j](q)
            lat[j].append(time.perf_counter() - t)
        if i + 1 >= min_n and time.perf_counter() - start > budget_s:
            break
    return [stats(x) for x in lat]


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, K)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth)]))


# ---- one collection ------------------------------------------------------------------------------
def bench_collection(name: str, data: dict, n: int, types: list[str], work: Path) -> list[dict]:
    vectors, queries = data["vectors"], data["queries"]
    records = [ImageRecord(id=f"v{i}", path=p, label=lab, captions=c if isinstance(c, list) else [c])
               for i, (p, lab, c) in enumerate(zip(data["paths"], data["labels"], data["captions"]))]
    lib = Library.create(work, f"{name}-{n}", encoder=data["encoder"])
    t0 = time.perf_counter()
    lib.add_embedded(records, vectors)
    build_s = time.perf_counter() - t0
    del records
    rid_of = lib.store.rids()  # rids are 0..n-1 in insertion order here; checked:
    assert len(rid_of) == n and rid_of[-1] == n - 1
    truth = exact_top(vectors, queries)

    # once per collection: numpy brute force and LanceDB's own (exact) vector search
    def numpy_search(q):  # numpy's BLAS threads as they come
        s = vectors @ q
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top])]

    table = lib.store.table
    lance_budget = max(0.5, TIME_BUDGET_S / 2)
    numpy_stats, = timed_loop([numpy_search], queries)
    lance_stats, = timed_loop([lambda q: table.search(q).metric("dot").limit(K).to_arrow()], queries,
                              budget_s=lance_budget, min_n=3)
    text_queries = data["text_queries"][:200] or ["field"]

    rows, flat_qps = [], None
    for kind in types:
        t0 = time.perf_counter()
        lib.rebuild(kind, bm25=False)
        faiss_build_s = time.perf_counter() - t0
        ann = lib._index.ann  # the very FAISS index the Library searches
        index = ann.index

        def raw_faiss(q, index=index):
            return index.search(q[None], K)

        # FAISS runs on SEARCH_THREADS threads for the whole loop, set once as a FAISS user would,
        # so the raw baseline carries no thread switching; rsrag (per-thread setting) finds it set
        threads_before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(search_thread_count(1) or threads_before)
        try:
            faiss_stats, rsrag_stats = timed_loop([raw_faiss, lambda q: lib.search_vector(q, K)], queries)
        finally:
            faiss.omp_set_num_threads(threads_before)
        found = ann.search(queries, K)[1]
        hybrid, bm25 = timed_loop([lambda t: lib.search_text(t, K, mode="hybrid"),
                                   lambda t: lib.search_text(t, K, mode="bm25")], text_queries, budget_s=1.0)
        if ann.spec.kind == "flat":
            flat_qps = rsrag_stats["qps"]
        row = {
            "dataset": name, "n": n, "dim": int(vectors.shape[1]), "k": K, "index": str(ann.spec),
            "auto_choice": IndexSpec("auto").resolve(n).kind == ann.spec.kind,  # what rsrag picks for n
            "build_s": round(build_s, 2), "faiss_build_s": round(faiss_build_s, 2),
            "faiss_mb": round((lib.folder / "vectors.faiss").stat().st_size / 1e6, 1), "rss_mb": rss_mb(),
            "faiss": faiss_stats, "rsrag": rsrag_stats,
            "overhead_vs_faiss": round((rsrag_stats["p50_ms"] - faiss_stats["p50_ms"]) / faiss_stats["p50_ms"], 4),
            "ann_recall_at_10": round(recall(found, truth), 4),
            "qps_vs_exact": round(rsrag_stats["qps"] / flat_qps, 2) if flat_qps else None,
            "lancedb": lance_stats, "numpy": numpy_stats,
            "hybrid_p50_ms": hybrid["p50_ms"], "bm25_p50_ms": bm25["p50_ms"],
            "text_encoder": data["encoder"].id,
        }
        rows.append(row)
        print(f"  {name:13s} n={n:>8,} {row['index']:24s} faiss p50 {faiss_stats['p50_ms']:8.3f} ms  rsrag p50 "
              f"{rsrag_stats['p50_ms']:8.3f} ms  overhead {row['overhead_vs_faiss']:+.1%}  "
              f"recall {row['ann_recall_at_10']:.3f}"
              f"  qps x{row['qps_vs_exact'] or 0:.1f}  hybrid p50 {hybrid['p50_ms']:.2f} ms", file=sys.stderr)
    shutil.rmtree(lib.folder, ignore_errors=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    """The issue's targets, checked on the rows that exist."""
    out: dict = {
        "max_overhead_vs_faiss": max((r["overhead_vs_faiss"] for r in rows), default=None),
        "max_overhead_vs_faiss_auto": max((r["overhead_vs_faiss"] for r in rows if r["auto_choice"]), default=None),
    }
    at_1m = [r for r in rows if r["n"] >= 1_000_000 and not r["index"].startswith("flat")]
    if at_1m:
        out["ann_1m"] = [{"dataset": r["dataset"], "index": r["index"], "recall": r["ann_recall_at_10"],
                          "qps_vs_exact": r["qps_vs_exact"]} for r in at_1m]
    at_100k = [r for r in rows if r["n"] == 100_000]
    if at_100k:
        out["hybrid_p50_ms_100k"] = {f"{r['dataset']}/{r['index']}": r["hybrid_p50_ms"] for r in at_100k}
    return out


def add_collection_args(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options every search benchmark takes: which collection sizes, how many queries, JSON."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    parser.add_argument("--sizes", help="comma-separated collection sizes (overrides --quick)")
    parser.add_argument("--queries", type=int, default=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_collection_args(parser, quick_help="10k and 100k only (< 2 minutes)")
    parser.add_argument("--hnsw", action="store_true", help="also measure HNSW (slow to build on few cores)")
    parser.add_argument("--no-real", action="store_true", help="skip the RSICD collections")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--real-index", help="RSICD vectors from this index (`rsrag index build rsicd`)")
    parser.add_argument("--root", help="indexes root for --real-index")
    parser.add_argument("--encoder", default=None, help="encoder for RSICD embeddings (default rs-lite)")
    parser.add_argument("--work-dir", help="where the benchmark builds its indexes (default: a temp folder)")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    types = ["flat", "ivf"] + (["hnsw"] if args.hnsw else [])
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="rsrag-bench-"))
    started = time.perf_counter()
    rows, skipped = [], {}
    real, why = (None, "--no-real") if args.no_real else real_rsicd(args)
    if real is None:
        skipped["rsicd"] = why
        print(f"rsicd collections skipped: {why}", file=sys.stderr)
    try:
        for n in sizes:
            if not args.no_synthetic:
                rows += bench_collection("synthetic", synthetic(n, args.queries), n, types, work)
            if real is not None:
                name, data = real_collection(real, n, args.queries)
                rows += bench_collection(name, data, n, types, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "search", "quick": args.quick, "sizes": sizes, "k": K, "dim": DIM,
        "seconds": round(time.perf_counter() - started, 1), "skipped": skipped, "summary": summarise(rows),
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                    "search_threads": SEARCH_THREADS,
                    "load_1min": os.getloadavg()[0], "python": platform.python_version(), "faiss": faiss.__version__,
                    "gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (results_dir() / "bench_search.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'dataset':13s} {'n':>9s} {'index':24s} {'faiss p50':>10s} {'rsrag p50':>10s} {'overhead':>9s} "
              f"{'recall@10':>9s} {'qps':>9s} {'x exact':>7s} {'lancedb p50':>11s} {'numpy p50':>10s} "
              f"{'hybrid p50':>10s}")
        for r in rows:
            print(f"{r['dataset']:13s} {r['n']:>9,} {r['index']:24s} {r['faiss']['p50_ms']:>8.3f}ms "
                  f"{r['rsrag']['p50_ms']:>8.3f}ms {r['overhead_vs_faiss']:>+9.1%} {r['ann_recall_at_10']:>9.3f} "
                  f"{r['rsrag']['qps']:>9.0f} {r['qps_vs_exact'] or 0:>7.1f} {r['lancedb']['p50_ms']:>9.2f}ms "
                  f"{r['numpy']['p50_ms']:>8.2f}ms {r['hybrid_p50_ms']:>8.2f}ms")
        print(f"({result['seconds']} s; JSON in {results_dir() / 'bench_search.json'})")


if __name__ == "__main__":
    main()
