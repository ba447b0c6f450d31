"""POST /items latency as the index grows: one write should cost the write, not the index.

    python bench/writes.py [--sizes 10000,100000,1000000] [--posts 20] [--quick] [--json]

For each size N an index of N records is built with the default encoder's dimension (synthetic unit
vectors and short captions through `Library.add_embedded`, then `Library.compact` so FAISS, BM25
and LanceDB's id/path indexes are written as a finished build leaves them), the service app is
made over it (`create_app`, writes enabled) and `--posts` items are POSTed one after another with a
real RSICD image (embedded by the encoder: a constant cost), each followed by a GET of the new item
(read-your-writes). Reported per size: POST p50 / p90 latency, its ratio to the smallest size's p50
(flat = 1.0), and, as the baseline measured in the same run, what each write cost before the read
snapshot followed its writer in place: reopening the snapshot (`Library(...).preload()`: FAISS,
BM25 and every record read again). Also timed: a hybrid /search right after a write (the first
search after a change rebuilds BM25's term-major postings and drops cached filters) and the same
search again. Indexes are built under `$RSRAG_CACHE/bench/writes/` and removed
afterwards. `--quick`: 10k and 50k records. JSON in `results_dir()/bench_writes.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import cache_dir, data_root, results_dir  # noqa: E402

TOKEN = "bench-token"
WORDS = ("green", "field", "river", "road", "houses", "forest", "bare", "land", "port", "ships", "airport",
         "runway", "parking", "lot", "cars", "beach", "sea", "bridge", "farmland", "stadium")


def build(root: Path, n: int, encoder) -> "object":
    """An index of n synthetic records in the encoder's space, compacted as a finished build is."""
    from rsrag.data import ImageRecord
    from rsrag.index import Library

    lib = Library.create(root, f"w{n}", encoder=encoder)
    rng = np.random.default_rng(n)
    image = str(data_root() / "rsicd" / "images" / "00001.jpg")
    for start in range(0, n, 100_000):
        count = min(100_000, n - start)
        vectors = rng.standard_normal((count, encoder.dim)).astype(np.float32)
        words = rng.integers(0, len(WORDS), (count, 4))
        records = [ImageRecord(f"r{start + i}", image, "train", WORDS[w[0]],
                               [" ".join(WORDS[j] for j in w)], {"lon": float(w[1]), "lat": float(w[2])})
                   for i, w in enumerate(words)]
        lib.add_embedded(records, vectors)
    lib.compact()
    return lib


def bench_size(root: Path, n: int, encoder, posts: int, image_b64: str) -> dict:
    from fastapi.testclient import TestClient

    from rsrag.index import Library
    from rsrag.service.app import create_app

    t0 = time.perf_counter()
    lib = build(root, n, encoder)
    built_s = time.perf_counter() - t0
    reopen_ms = []
    for _ in range(3):  # the old path: each write reopened the read snapshot
        t0 = time.perf_counter()
        Library(lib.location, encoder=encoder, auto_refresh=False).preload()
        reopen_ms.append((time.perf_counter() - t0) * 1000)
    client = TestClient(create_app(lib, token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies = []
    for i in range(posts + 2):  # two warm-up posts
        body = {"id": f"new{i}", "label": "harbor", "captions": [f"a new harbor item {i}"],
                "metadata": {"lon": 1.0, "lat": 2.0}, "image_base64": image_b64}
        t0 = time.perf_counter()
        answer = client.post("/items", json=body, headers=headers)
        elapsed = (time.perf_counter() - t0) * 1000
        assert answer.status_code == 201, answer.text
        assert client.get(f"/items/new{i}").status_code == 200  # read-your-writes
        if i >= 2:
            latencies.append(elapsed)
    after_write, steady = [], []
    for i in range(5):  # hybrid search right after a write, then again with nothing new
        body = {"id": f"more{i}", "captions": [f"a new harbor item {i}"], "image_base64": image_b64}
        assert client.post("/items", json=body, headers=headers).status_code == 201
        for times in (after_write, steady):
            t0 = time.perf_counter()
            found = client.post("/search", json={"query": f"harbor item {i} ships", "k": 10}).json()
            times.append((time.perf_counter() - t0) * 1000)
        assert any(h["id"].startswith(("new", "more")) for h in found["hits"]), found
    latencies.sort()
    return {"records": n, "build_s": round(built_s, 1), "posts": posts,
            "post_p50_ms": round(statistics.median(latencies), 1),
            "post_p90_ms": round(latencies[int(0.9 * (len(latencies) - 1))], 1),
            "reopen_snapshot_ms": round(min(reopen_ms), 1),
            "search_after_write_p50_ms": round(statistics.median(after_write), 1),
            "search_p50_ms": round(statistics.median(steady), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--posts", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="10k and 50k records")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [10_000, 50_000] if args.quick else [int(s) for s in args.sizes.split(",")]

    from rsrag.encoders import create_encoder

    encoder = create_encoder()
    image_b64 = base64.b64encode((data_root() / "rsicd" / "images" / "00002.jpg").read_bytes()).decode()
    work = cache_dir() / "bench" / "writes"
    result: dict = {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "encoder": encoder.id,
                    "dim": encoder.dim, "rows": []}
    out = results_dir() / "bench_writes.json"
    try:
        for n in sizes:
            shutil.rmtree(work, ignore_errors=True)
            result["rows"].append(bench_size(work, n, encoder, args.posts, image_b64))
            base = result["rows"][0]["post_p50_ms"]
            for row in result["rows"]:
                row["post_p50_vs_smallest"] = round(row["post_p50_ms"] / base, 2)
            out.write_text(json.dumps(result, indent=2))  # after every size: a later failure loses nothing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_1min_end"] = os.getloadavg()[0]
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| records | POST /items p50 | p90 | p50 vs smallest | before: reopen the snapshot per write "
          "| search right after a write | search | build |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        print(f"| {r['records']:,} | {r['post_p50_ms']} ms | {r['post_p90_ms']} ms | {r['post_p50_vs_smallest']} "
              f"| {r['reopen_snapshot_ms']} ms | {r['search_after_write_p50_ms']} ms | {r['search_p50_ms']} ms "
              f"| {r['build_s']} s |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
