"""Pure metrics: numbers from arrays and strings, with no model, encoder, dataset or index behind them.

Owns retrieval ranks / Recall@K / mR (`retrieval`), zero-shot top-1 accuracy (`classification`),
caption scoring with the COCO caption toolkit (`caption`) and SQuAD-style answer scores (`qa`).

May import: numpy, the standard library and third-party scorers (pycocoevalcap) only. It sits
below everything that measures something: `rsrag.training`, `rsrag.models` (model selection during
training) and `rsrag.eval` (the evaluators) all import it, and it imports none of them.
"""

from rsrag.metrics.classification import zeroshot_metrics
from rsrag.metrics.qa import exact_match, normalize_answer, token_f1
from rsrag.metrics.retrieval import evaluate_embeddings, retrieval_metrics, retrieval_ranks

__all__ = [
    "retrieval_ranks",
    "retrieval_metrics",
    "evaluate_embeddings",
    "zeroshot_metrics",
    "normalize_answer",
    "exact_match",
    "token_f1",
]
