"""What `ask` returns, and the error for a question that cannot be asked."""

from __future__ import annotations

from dataclasses import dataclass, field


class QAInputError(ValueError):
    """A question `ask` cannot take (e.g. no question and no image)."""


@dataclass
class Answer:
    """An answer with its provenance.

    - `citations`: the evidence the answer rests on, each `{"record_id", "chunk_id", "n", "name"}`
      (`n` is the evidence number used in the prompt, from 1);
    - `evidence`: every evidence item given to the generator, best first, each as
      `Evidence.to_dict()`: `{"id", "record_id", "name", "chunk_type", "text", "score", "category"}`;
    - `timings`: milliseconds per stage (`retrieve`, `rerank`, `generate`, `total`).
    """

    text: str
    citations: list[dict] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    generator: str = "extractive"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "citations": self.citations,
            "evidence": self.evidence,
            "timings": self.timings,
            "generator": self.generator,
        }
