"""`extractive`: the default generator. No language model: it answers with text taken verbatim from
the evidence, so it is offline, fast and deterministic.

For a question it (1) reads the kind of fact asked for from the wording (`question_type`), (2) picks
the evidence chunk: the best-ranked chunk of that type from the top record, else of a related type
(location/area/address, the three function types, ...) from it; when the top record has neither, it
says the knowledge base holds no such fact (it never answers from another place's chunk). Without a
type cue it takes the best-ranked chunk. (3) It picks the span:
when the chunk's type is exactly the asked type the whole fact is the answer; otherwise the
cross-encoder scores the chunk's sentences (and `;`-separated parts) against the question and the best
one is returned. For `classify` it votes the evidence's labels/categories (rank-weighted) into the label
set; for `caption` it returns the best caption-like evidence.
"""

from __future__ import annotations

import re

from rsrag.generators.base import Evidence, Generation, GenerationRequest, Generator, register_generator
from rsrag.knowledge.questions import question_type
from rsrag.knowledge.records import CHUNK_TYPES

FAMILIES = [
    {"location", "area", "address"},
    {"function", "original_function", "current_function"},
    {"history", "significance", "events"},
    {"description", "culture", "architecture"},
]
_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\"'(])")


def segments(text: str) -> list[str]:
    """Sentences (and `;`-separated parts) of a text, stripped, without empty ones."""
    return [s.strip().rstrip(";").strip() for s in _SPLIT.split(text) if s.strip().rstrip(";").strip()]


def _norm_label(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", str(text)).strip().lower()


@register_generator("extractive")
class ExtractiveGenerator(Generator):
    """See module doc. `reranker`: a Reranker, a registry name, or None for the shared cross-encoder."""

    name = "extractive"

    def __init__(self, reranker=None) -> None:
        self._reranker = reranker

    @property
    def reranker(self):
        from rsrag.rerankers import create_reranker

        if self._reranker is None or isinstance(self._reranker, str):
            self._reranker = create_reranker(self._reranker or "cross-encoder")
        return self._reranker

    def generate(self, request: GenerationRequest) -> Generation:
        evidence = request.evidence
        if not evidence:
            return Generation("I found no evidence to answer this.", [])
        if request.task == "classify":
            return self._classify(evidence, request.labels or [])
        if request.task == "caption" or not request.question:
            best = next((e for e in evidence if e.chunk_type == "caption"), evidence[0])
            return Generation(best.text, [best.id])
        qtype = question_type(request.question, [str(e.name or "") for e in evidence])
        chosen, exact = self.choose_evidence(qtype, evidence)
        if chosen is None:  # the place was found but the knowledge holds no fact of the asked kind
            top = evidence[0]
            what = CHUNK_TYPES.get(qtype or "", "answer")
            return Generation(f"The knowledge base has no {what} for {top.name}.", [top.id], {"span": "none"})
        text = chosen.text.strip()
        if exact:
            return Generation(text, [chosen.id], {"span": "chunk"})
        parts = segments(text)
        if len(parts) > 1:
            scores = self.reranker.score(request.question, parts)
            text = parts[int(scores.argmax())]
        return Generation(text, [chosen.id], {"span": "sentence" if len(parts) > 1 else "chunk"})

    @staticmethod
    def choose_evidence(qtype: str | None, evidence: list[Evidence]) -> tuple[Evidence | None, bool]:
        """(the evidence item to answer from, whether its type is exactly the asked one). None when
        the evidence is knowledge about the top record and none of its chunks is of the asked kind."""
        top_record = evidence[0].record_id
        if qtype is None:
            return evidence[0], False
        same = [e for e in evidence if e.record_id == top_record]
        family = next((f for f in FAMILIES if qtype in f), {qtype})
        for types, exact in (({qtype}, True), (family, False)):
            for item in same:
                if item.chunk_type in types:
                    return item, exact
        if evidence[0].chunk_type in CHUNK_TYPES:  # knowledge chunks (not image captions)
            return None, False
        return evidence[0], False

    @staticmethod
    def _classify(evidence: list[Evidence], labels: list[str]) -> Generation:
        wanted = {_norm_label(lab): lab for lab in labels}
        votes: dict[str, float] = {}
        cited: dict[str, str] = {}
        for rank, item in enumerate(evidence, start=1):
            label = item.category or (item.text if item.chunk_type == "label" else None)
            if label is None:
                continue
            key = _norm_label(label)
            if wanted and key not in wanted:
                continue
            weight = item.score if item.chunk_type == "label" else 1.0 / rank
            votes[key] = votes.get(key, 0.0) + weight
            cited.setdefault(key, item.id)
        if not votes:
            return Generation(labels[0] if labels else "unknown", [], {"votes": {}})
        best = max(votes, key=lambda k: (votes[k], -list(votes).index(k)))
        return Generation(wanted.get(best, best), [cited[best]], {"votes": votes})
