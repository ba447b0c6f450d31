"""Evaluation: retrieval recall (RSICD / UCM protocol) and zero-shot scene classification.

Metric functions are pure numpy so training code can call them on cached features; the evaluator
classes add encoding and bookkeeping; `rsrag.eval.cli` is the `rsrag eval` command group.
"""

from rsrag.eval.retrieval import RetrievalEvaluator, evaluate_embeddings, retrieval_metrics, retrieval_ranks
from rsrag.eval.zeroshot import (
    LABEL_TEXT,
    TEMPLATES,
    ZeroShotEvaluator,
    class_text_embeddings,
    pretty_label,
    zeroshot_metrics,
)

__all__ = [
    "RetrievalEvaluator",
    "evaluate_embeddings",
    "retrieval_metrics",
    "retrieval_ranks",
    "ZeroShotEvaluator",
    "class_text_embeddings",
    "pretty_label",
    "zeroshot_metrics",
    "TEMPLATES",
    "LABEL_TEXT",
]
