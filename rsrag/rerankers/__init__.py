"""Re-rankers: score (query, passage) pairs jointly, to re-order a retriever's top candidates.

`create_reranker("cross-encoder")` (the default) is ms-marco-MiniLM-L-12-v2 run with ONNX Runtime;
`create_reranker("none")` keeps the retriever's order.

Owns: the `Reranker` interface, the re-ranker registry and the cross-encoder. May import
`rsrag.registry` and third-party runtimes only; never `rsrag.index` nor `rsrag.rag`.
"""

from rsrag.rerankers.base import RERANKERS, IdentityReranker, Reranker, create_reranker, register_reranker
from rsrag.rerankers.cross_encoder import CrossEncoderReranker, find_model_dir

__all__ = [
    "Reranker",
    "IdentityReranker",
    "CrossEncoderReranker",
    "RERANKERS",
    "create_reranker",
    "register_reranker",
    "find_model_dir",
]
