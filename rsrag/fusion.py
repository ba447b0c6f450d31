"""Fusion of ranked lists: one place for how several candidate lists become one ranking.

Used by `Library.search_text` (hybrid: dense + BM25) and by QA retrieval (`rsrag.rag.retrieval`:
text, BM25, image and knowledge-image lists). Each list is a sequence of (key, score) pairs, best
first; a fusion returns key -> fused score, and `ranked` turns that into the final order. Like
LanceDB's rerankers, fusions are plain functions that know nothing about where the lists came from.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
RankedList = Sequence[tuple[K, float]]


def rrf(lists: Mapping[str, RankedList], *, k: int = RRF_K,
        weights: Mapping[str, float] | None = None) -> dict[K, float]:
    """Reciprocal-rank fusion: key -> sum over lists of w_list / (k + rank), ranks from 1; a list a key
    is absent from adds nothing. Rank-based, so the lists' scores need no calibration."""
    fused: dict = {}
    for name, ranked in lists.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, (key, _) in enumerate(ranked, start=1):
            fused[key] = fused.get(key, 0.0) + w / (k + rank)
    return fused


def weighted(lists: Mapping[str, RankedList], *, alpha: float = 0.5, bm25_weight: float = 0.3) -> dict[K, float]:
    """RS-RAG's score-based fusion, alpha * image_sim + (1 - alpha) * text_sim, over the lists named
    `text` (dense cosine), `bm25`, `image` and `image_kimg` (other names are ignored).

    image_sim = max(image cosine, knowledge-image cosine); text_sim = (1 - bm25_weight) * dense
    cosine + bm25_weight * (BM25 / best BM25). A similarity a key did not get (absent from that list)
    counts as the lowest one the list returned. With only text lists the score is text_sim; with only
    image lists, image_sim.
    """
    keys = {key for ranked in lists.values() for key, _ in ranked}

    def channel(name: str, normalise: bool = False) -> dict | None:
        ranked = lists.get(name) or []
        if not ranked:
            return None
        scores = dict(ranked)
        if normalise:
            top = max(scores.values())
            scores = {key: (s / top if top > 0 else 0.0) for key, s in scores.items()}
        floor = min(scores.values())
        return {key: scores.get(key, floor) for key in keys}

    dense, bm25 = channel("text"), channel("bm25", normalise=True)
    img_chunk, img_kimg = channel("image"), channel("image_kimg")
    text = None
    if dense is not None or bm25 is not None:
        bw = bm25_weight if dense is not None and bm25 is not None else (1.0 if dense is None else 0.0)
        text = {c: (1 - bw) * (dense or {}).get(c, 0.0) + bw * (bm25 or {}).get(c, 0.0) for c in keys}
    image = None
    if img_chunk is not None or img_kimg is not None:
        image = {c: max(v for v in ((img_chunk or {}).get(c), (img_kimg or {}).get(c)) if v is not None) for c in keys}
    if text is None and image is None:
        return {}
    if image is None:
        return text
    if text is None:
        return image
    return {c: alpha * image[c] + (1 - alpha) * text[c] for c in keys}


def ranked(fused: Mapping[K, float], limit: int | None = None) -> list[K]:
    """Keys by fused score, best first; ties broken by key so the order is deterministic."""
    order = sorted(fused, key=lambda key: (-fused[key], key))
    return order if limit is None else order[:limit]
