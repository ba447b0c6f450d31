"""Text-search precision@10 on a UCM index: each query names a scene class, hits count by label.

    python bench/text_precision.py [--root DIR] [--name ucm] [--encoder rs-lite] [--json]

Builds (or resumes) the UCM index over all 1,800 images, then runs one natural-language query per
class in the three modes (dense, BM25, hybrid). Dense search uses only the image vectors, so it
measures the shared embedding space; BM25 and hybrid also read each record's captions and label.
Queries are encoded at full precision (`modes`) and, where the encoder has one, with the int8 text
path that `rsrag serve` uses (`modes_int8`), so the served quality is measured too.
Prints a table and writes `results/bench_text_precision.json` with `precision_at_10` per mode,
per-class rows and the p50 query latency per mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from rsrag.config import results_dir
from rsrag.encoders import encoder_accepts
from rsrag.index import Library, build_index

# one query per UCM class present in the data (chaparral, denseresidential, golfcourse are missing)
QUERIES = {
    "agricultural": "farmland with crop fields",
    "airplane": "airplanes parked at an airport",
    "baseballdiamond": "a baseball field",
    "beach": "a sandy beach next to the sea",
    "buildings": "large buildings in a city",
    "forest": "a dense forest of trees",
    "freeway": "a freeway with cars",
    "harbor": "boats in a harbor",
    "intersection": "a road intersection",
    "mediumresidential": "houses in a residential area",
    "mobilehomepark": "a mobile home park",
    "overpass": "a highway overpass",
    "parkinglot": "a parking lot full of cars",
    "river": "a river flowing through land",
    "runway": "an airport runway",
    "sparseresidential": "a few scattered houses with lawns",
    "storagetanks": "white storage tanks",
    "tenniscourt": "a tennis court",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="index root (default: a temporary folder)")
    ap.add_argument("--name", default="ucm")
    ap.add_argument("--encoder", default="rs-lite")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="rsrag-bench-")
    lib, _ = build_index("ucm", args.name, root, encoder=args.encoder)
    rows, summaries = [], {}
    precisions_to_run = ["fp32"] + (["int8"] if encoder_accepts(args.encoder, "text_precision") else [])
    for precision in precisions_to_run:
        searcher = lib if precision == "fp32" else Library.open(root, args.name, encoder_options={"text_precision": precision})
        summary = summaries.setdefault(precision, {})
        for mode in ("dense", "bm25", "hybrid"):
            precisions, latencies = [], []
            for label, query in QUERIES.items():
                t0 = time.perf_counter()
                hits = searcher.search_text(query, k=10, mode=mode)
                latencies.append((time.perf_counter() - t0) * 1000)
                p = sum(h.label == label for h in hits) / 10
                precisions.append(p)
                rows.append({"text_precision": precision, "mode": mode, "label": label, "query": query,
                             "precision_at_10": p})
            summary[mode] = {"precision_at_10": 100 * statistics.mean(precisions),
                             "p50_ms": statistics.median(latencies)}
    result = {"encoder": lib.encoder.id, "n_records": lib.info()["records"],
              "n_queries": len(QUERIES), "modes": summaries["fp32"], "modes_int8": summaries.get("int8"), "rows": rows}
    out = results_dir() / "bench_text_precision.json"
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"UCM text-search precision@10 ({len(QUERIES)} class-naming queries, {lib.encoder.id})")
        print(f"{'text':6s} {'mode':8s} {'P@10 %':>8s} {'p50 ms':>8s}")
        for precision, summary in summaries.items():
            for mode, s in summary.items():
                print(f"{precision:6s} {mode:8s} {s['precision_at_10']:8.1f} {s['p50_ms']:8.2f}")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
