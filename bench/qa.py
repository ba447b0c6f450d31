"""The RSWK QA ablation over every question: fusion x BM25 x cross-encoder re-ranking.

    python bench/qa.py [--limit N] [--json]

`rsrag eval qa --dataset rswk` prints the same table over its first 300 questions (the default
`--ablation-limit`), next to the headline numbers; this runs it over all 2,993 (about 25 min on a
busy 2-core machine: every question is retrieved once, re-fused per variant, and cross-encoder scores
are cached across variants). Uses the cached RSWK knowledge index of the eval. Writes
`results/bench_qa_ablation.json`.
"""

from __future__ import annotations

import argparse
import json
import time

from rsrag.config import results_dir
from rsrag.eval.qa import CachedReranker, ablation, rswk_library
from rsrag.generators.extractive import ExtractiveGenerator
from rsrag.knowledge import KnowledgeBase, convert_rswk, load_qa_items
from rsrag.rerankers import create_reranker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    t0 = time.perf_counter()
    kb = KnowledgeBase.open(rswk_library())
    record_id = {r.name: r.id for r in convert_rswk()}
    rows = [{"question": q.grounded, "gold": q.answer, "gold_id": record_id[q.name], "name": q.name}
            for q in load_qa_items(limit=args.limit)]
    reranker = CachedReranker(create_reranker("cross-encoder"))
    table = ablation(kb, rows, reranker, ExtractiveGenerator(reranker))
    result = {"n_questions": len(rows), "ablation": table, "seconds": round(time.perf_counter() - t0, 1),
              "note": "weighted fusion: the image channel is an identity proxy (text embedding of the landmark "
                      "name), RSWK has no landmark images; alpha=0 is text only"}
    path = results_dir() / "bench_qa_ablation.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'fusion':16s} {'BM25':5s} {'re-rank':8s} {'R@1':>7s} {'F1':>7s}")
        for row in table:
            print(f"{row['fusion']:16s} {'on' if row['bm25'] else 'off':5s} {'on' if row['rerank'] else 'off':8s} "
                  f"{row['r1']:7.4f} {row['f1']:7.4f}")
        print(f"{len(rows)} questions, {result['seconds']}s; wrote {path}")


if __name__ == "__main__":
    main()
