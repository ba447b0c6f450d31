"""Abstention on RSWK (`rsrag eval abstain`): answer questions about landmarks the knowledge base
holds, say "nothing on this" for landmarks it does not.

The 2,993 RSWK landmarks are shuffled (fixed seed) and split: `kb` landmarks go into a knowledge base
built for this evaluation (cached); the others are held out of it. Validation: questions about `n_val`
knowledge-base landmarks and `n_val` held-out ones; the threshold on the best re-ranked chunk's score is
fitted there (`rsrag.rag.abstain.fit_threshold`, balanced accuracy). Test, once, on disjoint landmarks
(`n_test` of each): abstention precision (abstained questions that were about held-out landmarks) and
recall (held-out questions abstained on), the answered rate of answerable questions, and the answered
accuracy (of answerable questions answered: landmark R@1 and answer token F1). `--save` writes the
threshold to `rsrag/weights/abstention.json`, which `ask` uses by default.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Callable

from rsrag.config import cache_dir, data_root
from rsrag.eval.qa import CachedReranker, records_rank
from rsrag.metrics import token_f1


def _knowledge_library(records: list, key: str, log: Callable[[str], None]):
    from rsrag.encoders import create_encoder
    from rsrag.encoders.registry import DEFAULT_ENCODER
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase

    folder = cache_dir() / "qa" / f"abstain-{key}"
    done = folder / "kb" / "knowledge" / ".complete"
    encoder = create_encoder(DEFAULT_ENCODER, threads=1)
    if done.is_file():
        return Library.open(folder, "kb", encoder=encoder)
    t0 = time.perf_counter()
    library = Library.create(folder, "kb", encoder=encoder, encoder_name=DEFAULT_ENCODER, exist_ok=True)
    report = KnowledgeBase.attach(library).add(records)
    done.write_text(json.dumps(report.to_dict()) + "\n")
    log(f"built the abstention knowledge base: {report.records} records in {time.perf_counter() - t0:.0f}s")
    return library


def evaluate_abstention(kb: int = 1500, n_val: int = 300, n_test: int = 500, seed: int = 0, save: bool = False,
                        root: Path | None = None, log: Callable[[str], None] = lambda m: None) -> dict:
    from rsrag.knowledge import convert_rswk, load_qa_items
    from rsrag.rag import AskOptions, answerer_for
    from rsrag.rag.abstain import fit_threshold, save_threshold
    from rsrag.rerankers import create_reranker

    root = Path(root or data_root() / "rswk")
    records = convert_rswk(root)
    by_name = {r.name: r for r in records}
    items = [i for i in load_qa_items(root) if i.name in by_name]
    names = sorted({i.name for i in items})
    random.Random(seed).shuffle(names)
    inside, outside = names[:kb], names[kb:]
    if len(inside) < n_val + n_test or len(outside) < n_val + n_test:
        raise ValueError(f"{len(names)} landmarks cannot give {kb} in the knowledge base and {n_val + n_test} "
                         f"answerable and held-out ones each")
    key = hashlib.sha1(f"{seed}|{kb}|{','.join(inside)}".encode()).hexdigest()[:10]
    library = _knowledge_library([by_name[n] for n in inside], key, log)
    first_item = {}
    for item in items:
        first_item.setdefault(item.name, item)
    split = {"val": (inside[:n_val], outside[:n_val]),
             "test": (inside[n_val:n_val + n_test], outside[n_val:n_val + n_test])}

    reranker = CachedReranker(create_reranker("cross-encoder"))
    answerer = answerer_for(library)
    options = AskOptions(reranker=reranker, abstain=False)  # validation: scores only, to fit the threshold on

    def run(names_in: list[str], names_out: list[str], options: AskOptions) -> list[dict]:
        rows = []
        for answerable, group in ((True, names_in), (False, names_out)):
            for name in group:
                item = first_item[name]
                answer = answerer.answer(item.grounded, None, options)
                rows.append({"answerable": answerable, "score": answer.extra.get("evidence_score", float("-inf")),
                             "abstained": bool(answer.extra.get("abstained")),
                             "r1": answerable and records_rank(answer.evidence, by_name[name].id) == 1,
                             "f1": token_f1(answer.text, item.answer) if answerable else 0.0})
        return rows

    t0 = time.perf_counter()
    val = run(*split["val"], options)
    threshold = fit_threshold([r["score"] for r in val if r["answerable"]], [r["score"] for r in val if not r["answerable"]])
    log(f"validation: {len(val)} questions, threshold {threshold:.3f} ({time.perf_counter() - t0:.0f}s)")
    # the test questions go through ask's own decision with that threshold (its rules included)
    test = run(*split["test"], AskOptions(reranker=reranker, abstain=threshold))
    abstained = [r for r in test if r["abstained"]]
    answered = [r for r in test if not r["abstained"] and r["answerable"]]
    answerable = [r for r in test if r["answerable"]]
    held_out = [r for r in test if not r["answerable"]]
    result = {
        "threshold": round(threshold, 4), "seed": seed, "kb_landmarks": len(inside),
        "val_questions": len(val), "test_questions": len(test),
        "abstention_precision": round(sum(not r["answerable"] for r in abstained) / max(1, len(abstained)), 4),
        "abstention_recall": round(sum(r["abstained"] for r in held_out) / max(1, len(held_out)), 4),
        "answered_rate": round(len(answered) / max(1, len(answerable)), 4),
        "answered_r1": round(sum(r["r1"] for r in answered) / max(1, len(answered)), 4),
        "answered_f1": round(sum(r["f1"] for r in answered) / max(1, len(answered)), 4),
        "without_abstention": {"held_out_answered_rate": 1.0,
                               "r1": round(sum(r["r1"] for r in answerable) / max(1, len(answerable)), 4)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if save:
        result["saved"] = str(save_threshold(threshold, "cross-encoder", {
            "data": "RSWK vqa_wk", "seed": seed, "kb_landmarks": len(inside), "val_questions": len(val),
            "rule": "max balanced accuracy of answer-if-answerable / abstain-if-held-out"}))
    return result
