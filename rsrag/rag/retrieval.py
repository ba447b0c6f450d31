"""Candidate retrieval for QA: several candidate lists, fused, then re-ranked by a cross-encoder.

Candidate lists (each a ranked list of knowledge chunks):

- `text`: dense, the question's text embedding against chunk embeddings;
- `bm25`: keywords of the question against chunk text;
- `image`: the query image's embedding against chunk embeddings (the shared image-text space);
- `image_kimg`: the query image against knowledge images; a hit brings all chunks of its record,
  scored with the image similarity.

Fusion (`RetrievalConfig.fusion`; the default `"auto"` is RRF for a question alone and the weighted
fusion when the query has an image, whose similarities are well calibrated and decisive; both are the
functions of `rsrag.fusion`, shared with the library's hybrid search):

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
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rsrag import fusion
from rsrag.generators import Evidence
from rsrag.rerankers import Reranker

if TYPE_CHECKING:
    from rsrag.geo.filters import Place
    from rsrag.index import Hit
    from rsrag.knowledge import KnowledgeBase

LISTS = ("text", "bm25", "image", "image_kimg")
RankedLists = dict[str, list[tuple[str, float]]]


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
    def from_hit(cls, hit: Hit) -> "Candidate":
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

    def to_evidence(self) -> Evidence:
        return Evidence(
            self.id, self.text, self.record_id, self.name, self.chunk_type, self.score, self.category, self.passage
        )


@dataclass
class Retrieval:
    """What one `retrieve` call found, returned to its caller (nothing is kept on the retriever, so
    concurrent calls cannot see each other's results).

    `evidence`: what the generator is given, best first; `candidates`: the knowledge chunks it came
    from (re-ranked, expanded; empty when the evidence is the library's own captions and labels);
    `fused`: the top-k fused candidates before re-ranking; `timings`: ms for `retrieve` and `rerank`."""

    evidence: list[Evidence] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    fused: list[Candidate] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class KnowledgeRetriever:
    """Gathers, fuses and re-ranks knowledge chunks for a question and/or an image (module doc)."""

    def __init__(self, knowledge: KnowledgeBase, reranker: Reranker | None = None) -> None:
        """`reranker`: the default one; a call may pass its own (`retrieve(..., reranker=)`)."""
        self.kb = knowledge
        self.reranker = reranker

    def candidate_lists(
        self,
        question: str | None,
        image_vector: np.ndarray | None,
        config: RetrievalConfig,
        question_vector: np.ndarray | None = None,
        place: Place | None = None,
    ) -> tuple[RankedLists, dict[str, Candidate]]:
        """The raw candidate lists (id, score) and a pool id -> Candidate (only knowledge inside `place`)."""
        pool: dict[str, Candidate] = {}
        lists: RankedLists = {}

        def take(name: str, hits: Sequence[Hit]) -> None:
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
                take("text", self.kb.search_dense(question_vector, config.depth, place))
            if config.use_bm25:
                take("bm25", self.kb.search_bm25(question, config.depth, place))
        if image_vector is not None:
            take("image", self.kb.search_dense(image_vector, config.depth, place))
            kimg = self.kb.search_images(image_vector, config.depth, place)
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

    def fuse(self, lists: RankedLists, pool: dict[str, Candidate], config: RetrievalConfig) -> list[Candidate]:
        """Fresh copies of the pooled candidates in fused order (`rsrag.fusion`)."""
        image = any(name.startswith("image") for name in lists)
        if config.fusion == "weighted" or config.fusion == "auto" and image:
            fused = fusion.weighted(lists, alpha=config.alpha, bm25_weight=config.bm25_weight)
        else:
            fused = fusion.rrf(lists, k=config.rrf_k, weights=config.weights)
        out = []
        for cid in fusion.ranked(fused):
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
        reranker: Reranker | None = None,
    ) -> list[Candidate]:
        """Cross-encoder re-ranking of the top `rerank_top` (scores cached by chunk id in `cache`);
        `within_records` keeps the records' fused order and re-orders chunks inside each record.
        `reranker` defaults to the retriever's."""
        reranker = reranker if reranker is not None else self.reranker
        if not (config.rerank and question and reranker is not None and candidates):
            return candidates
        head, tail = candidates[: config.rerank_top], candidates[config.rerank_top :]
        cache = {} if cache is None else cache
        todo = [c for c in head if c.id not in cache]
        if todo:
            for cand, s in zip(todo, reranker.score(question, [c.passage for c in todo])):
                cache[cand.id] = float(s)
        for cand in head:
            cand.rerank = cache[cand.id]
        if within_records:
            record_pos = {rid: i for i, rid in enumerate(records_in_order(head))}
            head = sorted(head, key=lambda c: (record_pos[c.record_id], -c.rerank))
        else:
            head = sorted(head, key=lambda c: -c.rerank)
        return head + tail

    def expand(
        self,
        question: str | None,
        candidates: list[Candidate],
        config: RetrievalConfig,
        reranker: Reranker | None = None,
    ) -> list[Candidate]:
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
        reranker = reranker if reranker is not None else self.reranker
        if reranker is not None and config.rerank:
            for cand, s in zip(extra, reranker.score(question, [c.passage for c in extra])):
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
        reranker: Reranker | None = None,
        place: Place | None = None,
    ) -> Retrieval:
        """Gather, fuse, re-rank (with `reranker`, default the retriever's) and expand; everything
        found is returned in the `Retrieval`."""
        config = config or RetrievalConfig()
        t0 = time.perf_counter()
        lists, pool = self.candidate_lists(question, image_vector, config, place=place)
        fused = self.fuse(lists, pool, config)
        t1 = time.perf_counter()
        within = config.rerank_within_records
        ranked = self.rerank(
            question,
            fused,
            config,
            within_records=image_vector is not None if within is None else within,
            reranker=reranker,
        )
        ranked = self.expand(question, ranked[: max(k, 0)], config, reranker)
        t2 = time.perf_counter()
        timings = {"retrieve": (t1 - t0) * 1000, "rerank": (t2 - t1) * 1000}
        return Retrieval([c.to_evidence() for c in ranked], ranked, fused[: max(k, 0)], timings)


    def retrieve_within(self, question: str, record_ids: Sequence[str], config: RetrievalConfig | None = None,
                        k: int = 5, reranker: Reranker | None = None) -> Retrieval:
        """The chunks of the given records only, re-ranked for the question: a follow-up about the record
        in focus ("When was it built?") is answered from that record, not from a similar one."""
        config = config or RetrievalConfig()
        t0 = time.perf_counter()
        candidates = [Candidate.from_hit(h) for h in self.kb.chunks_of(list(record_ids))]
        order = {rid: i for i, rid in enumerate(record_ids)}
        candidates.sort(key=lambda c: order.get(c.record_id, len(order)))
        t1 = time.perf_counter()
        ranked = self.rerank(question, candidates, replace(config, rerank_top=max(config.rerank_top, len(candidates))),
                             within_records=True, reranker=reranker)[: max(k, 0)]
        timings = {"retrieve": (t1 - t0) * 1000, "rerank": (time.perf_counter() - t1) * 1000}
        return Retrieval([c.to_evidence() for c in ranked], ranked, candidates[: max(k, 0)], timings)


def records_in_order(candidates: Sequence[Candidate]) -> list[str]:
    """Distinct record ids, in the order of their best chunk."""
    return list(dict.fromkeys(c.record_id for c in candidates))
