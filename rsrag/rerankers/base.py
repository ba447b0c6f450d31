"""The re-ranker interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from rsrag.registry import Registry

DEFAULT_RERANKER = "cross-encoder"


class Reranker(ABC):
    """Scores passages against a query; higher is more relevant. Scores are only comparable within
    one call (a cross-encoder's logits are not probabilities)."""

    name: str = "reranker"

    @abstractmethod
    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """(len(passages),) float32 relevance scores."""

    def rerank(self, query: str, passages: Sequence[str]) -> list[int]:
        """Positions of `passages`, most relevant first (ties keep the input order)."""
        if not passages:
            return []
        scores = self.score(query, passages)
        return sorted(range(len(passages)), key=lambda i: (-float(scores[i]), i))


class IdentityReranker(Reranker):
    """Keeps the input order (scores decrease with position): re-ranking switched off."""

    name = "none"

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return -np.arange(len(passages), dtype=np.float32)


RERANKERS: Registry[Reranker] = Registry("reranker", builtins=("rsrag.rerankers.cross_encoder",))
register_reranker = RERANKERS.register
register_reranker("none")(IdentityReranker)


def create_reranker(name: str | Reranker | None = DEFAULT_RERANKER, *, shared: bool = True, **cfg) -> Reranker:
    """A re-ranker by name (an instance is returned as is). With `shared`, one instance per name is
    kept for the process, so the model is loaded once however many questions are asked."""
    if isinstance(name, Reranker):
        return name
    name = name or DEFAULT_RERANKER
    return RERANKERS.shared(name) if shared and not cfg else RERANKERS.create(name, **cfg)
