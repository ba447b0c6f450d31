"""The generator interface and registry: a generator turns a question + evidence into answer text.

Register a new one with `@register_generator("name")` on a `Generator` subclass (or factory taking
keyword config); `create_generator("name", **cfg)` builds it. `rsrag.rag.ask` accepts a name or an
instance. A generator is given `Evidence` objects (below), never dicts: `GenerationRequest` turns
mappings it is handed into `Evidence`, so every generator reads attributes.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from rsrag.registry import Registry


class GeneratorError(RuntimeError):
    """A generator cannot produce an answer (unreachable endpoint, model not found, bad reply)."""


class GeneratorUnavailable(GeneratorError):
    """The model server cannot be reached or timed out, after retries (the service answers 503)."""


class GeneratorRefused(GeneratorError):
    """The model server answered with an error or a reply that is not an answer (the service answers 502)."""


@dataclass
class Evidence:
    """One item of evidence a question is answered from: a knowledge chunk, a caption of a similar
    library image, or a voted label. Defined here (not in `rsrag.rag`) because generators read it
    and may not import the RAG package.

    `passage` is the text a re-ranker and the prompt see (the chunk rendered with its place's name);
    `text` is the bare fact a generator quotes. `score` is rounded to 4 decimals (what clients see).
    """

    id: str
    text: str
    record_id: str | None = None
    name: str | None = None
    chunk_type: str | None = None
    score: float = 0.0
    category: str | None = None
    passage: str | None = None

    def __post_init__(self) -> None:
        self.score = round(float(self.score), 4)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evidence":
        """An item given as a mapping (its `to_dict` form; unknown keys are ignored)."""
        return cls(
            str(data["id"]),
            str(data.get("text") or ""),
            data.get("record_id"),
            data.get("name"),
            data.get("chunk_type"),
            data.get("score") or 0.0,
            data.get("category"),
            data.get("passage"),
        )

    def to_dict(self) -> dict:
        """The JSON form clients get (the `passage` stays internal)."""
        return {
            "id": self.id,
            "record_id": self.record_id,
            "name": self.name,
            "chunk_type": self.chunk_type,
            "text": self.text,
            "score": self.score,
            "category": self.category,
        }


def as_evidence(items: Iterable[Evidence | Mapping[str, Any]]) -> list[Evidence]:
    """`Evidence` objects for items that may be mappings (callers outside rsrag.rag build dicts)."""
    return [item if isinstance(item, Evidence) else Evidence.from_dict(item) for item in items]


@dataclass
class GenerationRequest:
    """Everything a generator may use. `prompt` is the built chat prompt (see rsrag.rag.prompt);
    `evidence` are the items numbered in it (best first)."""

    question: str | None
    task: str = "question"
    evidence: list[Evidence] = field(default_factory=list)
    prompt: Any = None
    history: list[dict] = field(default_factory=list)
    labels: list[str] | None = None
    image: Any = None

    def __post_init__(self) -> None:
        self.evidence = as_evidence(self.evidence)


@dataclass
class Generation:
    text: str
    cited: list[str] = field(default_factory=list)  # evidence ids the answer rests on
    extra: dict = field(default_factory=dict)


class Generator(ABC):
    name: str = "generator"

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Generation:
        """Answer the request."""

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """The answer as text pieces as they are produced, then the finished `Generation` last.
        Generators that cannot stream produce the whole text as one piece."""
        result = self.generate(request)
        yield result.text
        yield result


# caption and vqa (image_models) use the models trained in rsrag: optional, registered when importable
GENERATORS: Registry[Generator] = Registry(
    "generator",
    builtins=("rsrag.generators.extractive", "rsrag.generators.hf", "rsrag.generators.openai_compat",
              "rsrag.generators.ollama"),
    optional=("rsrag.generators.image_models",),
)
register_generator = GENERATORS.register


def list_generators() -> list[str]:
    return GENERATORS.names()


def create_generator(name: str | Generator = "extractive", **cfg) -> Generator:
    """A generator by registry name with its config (`url`, `model`, ...); an instance is returned as is."""
    if isinstance(name, Generator):
        return name
    return GENERATORS.create(name, **cfg)


def model_answer(request: GenerationRequest, text: str, extra: dict | None = None) -> Generation:
    """A model's answer: the evidence it cites as [n], else the first item it was given."""
    text = text.strip()
    ids = request.prompt.evidence_ids
    return Generation(text, cited_numbers(text, ids) or ids[:1], dict(extra or {}))


def stream_answer(request: GenerationRequest, pieces: Iterable[str], extra: dict | None = None,
                  started: float | None = None) -> Iterator[str | Generation]:
    """Yield a model's text pieces as they come, then its `model_answer`, with the time to the first
    piece in `extra["first_token_ms"]`, from `started` (a `time.perf_counter()`; default: this call)."""
    t0, first, text = time.perf_counter() if started is None else started, None, []
    for piece in pieces:
        if piece:
            first = first or time.perf_counter()
            text.append(piece)
            yield piece
    first_ms = round((first - t0) * 1000, 1) if first is not None else None
    yield model_answer(request, "".join(text), {**(extra or {}), "first_token_ms": first_ms})


def cited_numbers(text: str, evidence_ids: list[str]) -> list[str]:
    """Evidence ids cited as [n] in a generated text (valid numbers only, first mention order)."""
    out = []
    for match in re.finditer(r"\[(\d+)\]", text):
        n = int(match.group(1))
        if 1 <= n <= len(evidence_ids) and evidence_ids[n - 1] not in out:
            out.append(evidence_ids[n - 1])
    return out
