"""Candidate retrieval for QA: several candidate lists, fused, then re-ranked by a cross-encoder.

Candidate lists (each a ranked list of knowledge chunks):

- `text`: dense, the question's text embedding against chunk embeddings;
- `bm25`: keywords of the question against chunk text;
- `image`: the query image's embedding against chunk embeddings (the shared image-text space);
- `image_kimg`: the query image against knowledge images; a hit brings all chunks of its record,
  scored with the image similarity.

Fusion (`RetrievalConfig.fusion`; the default `"auto"` is RRF for a question alone and the weighted
fusion when the query has an image, whose similarities are well calibrated and decisive):

- `"rrf"`: reciprocal-rank fusion, score = sum over lists of w_list / (rrf_k + rank), ranks
  from 1, a list a chunk is absent from adds nothing. Rank-based, so it needs no score calibration.
- `"weighted"`: RS-RAG's score = alpha * image_sim + (1 - alpha) * text_sim, with
  image_sim = max(image->chunk cosine, image->knowledge-image cosine) and
  text_sim = (1 - bm25_weight) * dense cosine + bm25_weight * (BM25 score / best BM25 score).
  A similarity a chunk did not get (absent from that list) counts as the lowest one the list returned.
  With only a question (no image) the score is text_sim; with only an image, image_sim.

Re-ranking: the top `rerank_top` fused candidates are scored by the cross-encoder against the question
and re-ordered by that score (the rest follow in fused order). Without a question nothing is re-ranked.
The cross-encoder reads only text, so when the query has an image (which is what identifies the place)
re-ranking keeps the fused order of the records and re-orders chunks within each record
(`rerank_within_records`, default: only with an image).

Expansion (`expand`): when the top record's chunks in the evidence do not include the kind of fact the
question asks for (`question_type`), that record's chunk of that kind is added to the evidence (so the
evidence can hold k + 1 items). It is how "what are the major events of X" finds X's long events chunk
when shorter chunks of X out-rank it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from rsrag.rerankers import Reranker

LISTS = ("text", "bm25", "image", "image_kimg")


@dataclass
class RetrievalConfig:
    """How candidates are gathered, fused and re-ranked (see module doc)."""

    fusion: str = "auto"  # "rrf", "weighted", or "auto" (weighted with an image, else rrf)
    alpha: float = 0.5  # weighted: weight of the image similarity
    bm25_weight: float = 0.3  # weighted: share of BM25 in the text similarity
    rrf_k: int = 60
    weights: dict[str, float] = field(default_factory=lambda: {name: 1.0 for name in LISTS})  # rrf list weights
    use_dense: bool = True
    use_bm25: bool = True
    rerank: bool = True
    depth: int = 50  # candidates taken from each list
    rerank_top: int = 10  # fused candidates the cross-encoder scores
    rerank_within_records: bool | None = None  # None: only when the query has an image (module doc)
    expand: bool = True  # add the top record's chunk of the asked type when retrieval missed it

    def __post_init__(self) -> None:
        if self.fusion not in ("auto", "rrf", "weighted"):
            raise ValueError(f"unknown fusion {self.fusion!r}; use 'auto', 'rrf' or 'weighted'")
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.bm25_weight <= 1.0:
            raise ValueError("alpha and bm25_weight must be in [0, 1]")


@dataclass
class Candidate:
    """A knowledge chunk under consideration; `scores` holds its raw score in each list it is in."""

    id: str
    record_id: str
    name: str
    chunk_type: str
    text: str  # the bare fact
    passage: str  # the rendered chunk text (name, type, fact): what is embedded and re-ranked
    category: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    fused: float = 0.0
    rerank: float | None = None

    @classmethod
    def from_hit(cls, hit) -> "Candidate":
        meta = hit.metadata
        return cls(
            hit.id,
            str(meta.get("record_id") or hit.id),
            str(meta.get("name") or hit.label or hit.id),
            str(meta.get("chunk_type") or "description"),
            str(meta.get("text") or " ".join(hit.captions)),
            hit.captions[0] if hit.captions else str(meta.get("text") or ""),
            meta.get("category") or hit.label,
        )

    @property
    def score(self) -> float:
        return self.rerank if self.rerank is not None else self.fused

    def to_evidence(self) -> dict:
        return {
            "id": self.id,
            "record_id": self.record_id,
            "name": self.name,
            "chunk_type": self.chunk_type,
            "text": self.text,
            "score": round(float(self.score), 4),
            "category": self.category,
            "passage": self.passage,
        }


def fuse_rrf(
    lists: dict[str, list[tuple[str, float]]], k: int = 60, weights: dict[str, float] | None = None
) -> dict[str, float]:
    """Reciprocal-rank fusion of ranked (id, score) lists: id -> sum of w / (k + rank)."""
    fused: dict[str, float] = {}
    for name, ranked in lists.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, (cid, _) in enumerate(ranked, start=1):
            fused[cid] = fused.get(cid, 0.0) + w / (k + rank)
    return fused


def fuse_weighted(
    lists: dict[str, list[tuple[str, float]]], alpha: float = 0.5, bm25_weight: float = 0.3
) -> dict[str, float]:
    """RS-RAG's weighted fusion, alpha * image_sim + (1 - alpha) * text_sim (see module doc)."""
    ids = {cid for ranked in lists.values() for cid, _ in ranked}

    def channel(name: str, normalise: bool = False) -> dict[str, float] | None:
        ranked = lists.get(name) or []
        if not ranked:
            return None
        scores = {cid: s for cid, s in ranked}
        if normalise:
            top = max(scores.values())
            scores = {cid: (s / top if top > 0 else 0.0) for cid, s in scores.items()}
        floor = min(scores.values())
        return {cid: scores.get(cid, floor) for cid in ids}

    dense, bm25 = channel("text"), channel("bm25", normalise=True)
    img_chunk, img_kimg = channel("image"), channel("image_kimg")
    text = None
    if dense is not None or bm25 is not None:
        bw = bm25_weight if dense is not None and bm25 is not None else (1.0 if dense is None else 0.0)
        text = {c: (1 - bw) * (dense or {}).get(c, 0.0) + bw * (bm25 or {}).get(c, 0.0) for c in ids}
    image = None
    if img_chunk is not None or img_kimg is not None:
        image = {c: max(v for v in ((img_chunk or {}).get(c), (img_kimg or {}).get(c)) if v is not None) for c in ids}
    if text is None and image is None:
        return {}
    if image is None:
        return text
    if text is None:
        return image
    return {c: alpha * image[c] + (1 - alpha) * text[c] for c in ids}


class KnowledgeRetriever:
    """Gathers, fuses and re-ranks knowledge chunks for a question and/or an image (module doc)."""

    def __init__(self, knowledge, reranker: Reranker | None = None) -> None:
        self.kb = knowledge
        self.reranker = reranker
        self.last_fused: list[Candidate] = []  # the fused order of the last `retrieve`, before re-ranking

    def candidate_lists(
        self,
        question: str | None,
        image_vector: np.ndarray | None,
        config: RetrievalConfig,
        question_vector: np.ndarray | None = None,
    ) -> tuple[dict[str, list[tuple[str, float]]], dict]:
        """The raw candidate lists (id, score) and a pool id -> Candidate."""
        pool: dict[str, Candidate] = {}
        lists: dict[str, list[tuple[str, float]]] = {}

        def take(name: str, hits) -> None:
            ranked = []
            for hit in hits:
                cand = pool.get(hit.id) or pool.setdefault(hit.id, Candidate.from_hit(hit))
                cand.scores[name], cand.ranks[name] = float(hit.score), len(ranked) + 1
                ranked.append((hit.id, float(hit.score)))
            lists[name] = ranked

        if question:
            if config.use_dense:
                if question_vector is None:
                    question_vector = self.kb.index.encoder.encode_texts([question])[0]
                take("text", self.kb.search_dense(question_vector, config.depth))
            if config.use_bm25:
                take("bm25", self.kb.search_bm25(question, config.depth))
        if image_vector is not None:
            take("image", self.kb.search_dense(image_vector, config.depth))
            kimg = self.kb.search_images(image_vector, config.depth)
            best: dict[str, float] = {}
            for hit in kimg:
                rid = str(hit.metadata.get("record_id"))
                best[rid] = max(best.get(rid, -1.0), float(hit.score))
            if best:
                chunks = self.kb.chunks_of(list(best))
                for hit in chunks:
                    hit.score = best[str(hit.metadata.get("record_id"))]
                chunks.sort(key=lambda h: -h.score)
                take("image_kimg", chunks)
        return {k: v for k, v in lists.items() if v}, pool

    def fuse(
        self, lists: dict[str, list[tuple[str, float]]], pool: dict[str, Candidate], config: RetrievalConfig
    ) -> list[Candidate]:
        image = any(name.startswith("image") for name in lists)
        if config.fusion == "weighted" or config.fusion == "auto" and image:
            fused = fuse_weighted(lists, config.alpha, config.bm25_weight)
        else:
            fused = fuse_rrf(lists, config.rrf_k, config.weights)
        order = sorted(fused, key=lambda c: (-fused[c], c))
        out = []
        for cid in order:
            cand = replace(pool[cid], rerank=None)
            cand.fused = fused[cid]
            out.append(cand)
        return out

    def rerank(
        self,
        question: str | None,
        candidates: list[Candidate],
        config: RetrievalConfig,
        cache: dict[str, float] | None = None,
        within_records: bool = False,
    ) -> list[Candidate]:
        """Cross-encoder re-ranking of the top `rerank_top` (scores cached by chunk id in `cache`);
        `within_records` keeps the records' fused order and re-orders chunks inside each record."""
        if not (config.rerank and question and self.reranker is not None and candidates):
            return candidates
        head, tail = candidates[: config.rerank_top], candidates[config.rerank_top :]
        cache = {} if cache is None else cache
        todo = [c for c in head if c.id not in cache]
        if todo:
            for cand, s in zip(todo, self.reranker.score(question, [c.passage for c in todo])):
                cache[cand.id] = float(s)
        for cand in head:
            cand.rerank = cache[cand.id]
        if within_records:
            record_pos = {rid: i for i, rid in enumerate(records_in_order(head))}
            head = sorted(head, key=lambda c: (record_pos[c.record_id], -c.rerank))
        else:
            head = sorted(head, key=lambda c: -c.rerank)
        return head + tail

    def expand(self, question: str | None, candidates: list[Candidate], config: RetrievalConfig) -> list[Candidate]:
        """Once the top record is found, make sure the chunk of the kind the question asks for is in
        the evidence: if retrieval missed it, add that record's chunk of the asked type (scored by the
        re-ranker when there is one) right after the record's other chunks."""
        from rsrag.knowledge.questions import question_type

        if not (config.expand and question and candidates):
            return candidates
        top = candidates[0].record_id
        qtype = question_type(question, {c.name for c in candidates})
        if qtype is None or any(c.record_id == top and c.chunk_type == qtype for c in candidates):
            return candidates
        extra = [Candidate.from_hit(h) for h in self.kb.chunks_of([top]) if h.metadata.get("chunk_type") == qtype]
        if not extra:
            return candidates
        if self.reranker is not None and config.rerank:
            for cand, s in zip(extra, self.reranker.score(question, [c.passage for c in extra])):
                cand.rerank = float(s)
        for cand in extra:
            cand.scores["expanded"] = 1.0
        last = max(i for i, c in enumerate(candidates) if c.record_id == top)
        return candidates[: last + 1] + extra + candidates[last + 1 :]

    def retrieve(
        self,
        question: str | None,
        image_vector: np.ndarray | None = None,
        config: RetrievalConfig | None = None,
        k: int = 5,
        timings: dict | None = None,
    ) -> list[Candidate]:
        config = config or RetrievalConfig()
        t0 = time.perf_counter()
        lists, pool = self.candidate_lists(question, image_vector, config)
        fused = self.fuse(lists, pool, config)
        self.last_fused = fused[: max(k, 0)]
        t1 = time.perf_counter()
        within = config.rerank_within_records
        ranked = self.rerank(
            question, fused, config, within_records=image_vector is not None if within is None else within
        )
        ranked = self.expand(question, ranked[: max(k, 0)], config)
        t2 = time.perf_counter()
        if timings is not None:
            timings["retrieve"] = timings.get("retrieve", 0.0) + (t1 - t0) * 1000
            timings["rerank"] = (t2 - t1) * 1000
        return ranked


def records_in_order(candidates: Sequence[Candidate]) -> list[str]:
    """Distinct record ids, in the order of their best chunk."""
    return list(dict.fromkeys(c.record_id for c in candidates))
