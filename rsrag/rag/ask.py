"""`ask`: knowledge-grounded question answering over a library.

With knowledge attached to the library (`KnowledgeBase`), evidence is knowledge chunks found by
`KnowledgeRetriever` (dense + BM25 for the question, image->chunk and image->knowledge-image for an
image; fused; cross-encoder re-ranked). Without knowledge, an image question is grounded in the
library's own images: the nearest images' captions and voted labels (`describe.image_to_text`); a
text-only question uses the library's hybrid caption search. The prompt is built with
`PromptBuilder`; the answer comes from a generator of the registry (default `extractive`).

An `Answerer` holds what is worth building once per library snapshot (its knowledge base and
retriever); `ask` takes the library's shared one (`answerer_for`). Everything one question produces
(candidates, evidence, timings) lives in that call's local values, so concurrent calls on one
library never see each other's results.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rsrag.generators import GENERATORS, Evidence, GenerationRequest, Generator
from rsrag.knowledge import KnowledgeBase
from rsrag.rag.answer import Answer, QAInputError
from rsrag.rag.describe import image_to_text
from rsrag.rag.perlibrary import PerLibrary
from rsrag.rag.prompt import TASKS, PromptBuilder, estimate_tokens
from rsrag.rag.retrieval import KnowledgeRetriever, Retrieval, RetrievalConfig
from rsrag.rerankers import Reranker, create_reranker

if TYPE_CHECKING:  # importing rsrag.rag stays light: the index is imported by whoever opens a library
    from rsrag.encoders.base import ImageInput
    from rsrag.geo.filters import Place
    from rsrag.index import Library

_CONFIG_KEYS = frozenset(f.name for f in fields(RetrievalConfig))


@dataclass
class AskOptions:
    """How one question is answered (everything but the library and the inputs).

    `task`: question, vqa, caption or classify (default from the inputs); `labels`: the label set
    for classify; `config`: retrieval (fusion, BM25, re-ranking, ...); `reranker`: name or instance;
    `budget`: prompt tokens; `generator_config`: the generator's config (`url`, `model`, ...);
    `place`: only evidence from knowledge records and library items inside that place and time.
    """

    history: list[dict] | None = None
    generator: str | Generator = "extractive"
    k: int = 5
    task: str | None = None
    labels: list[str] | None = None
    config: RetrievalConfig = field(default_factory=RetrievalConfig)
    reranker: str | Reranker = "cross-encoder"
    budget: int = 1024
    generator_config: dict[str, Any] = field(default_factory=dict)
    place: Place | None = None  # where and when (rsrag.geo.filters.Place): knowledge and library hits inside it

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "AskOptions":
        """Options from `ask`'s keywords: the fields above, or `RetrievalConfig` fields directly
        (`fusion="rrf"`, `rerank=False`, ...) instead of `config=`. Unknown keywords are a TypeError."""
        retrieval = {key: kwargs.pop(key) for key in list(kwargs) if key in _CONFIG_KEYS}
        unknown = sorted(set(kwargs) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"ask got unknown options: {', '.join(unknown)} (known: {', '.join(f.name for f in fields(cls))} "
                f"and the RetrievalConfig fields {', '.join(sorted(_CONFIG_KEYS))})"
            )
        if retrieval and kwargs.get("config") is not None:
            raise TypeError(f"ask got config= and RetrievalConfig fields ({', '.join(retrieval)}): pass one or the other")
        if retrieval:
            kwargs["config"] = RetrievalConfig(**retrieval)
        # None for an option means "the default" (how the CLI passes what the user left out)
        return cls(**{key: value for key, value in kwargs.items() if value is not None})


def _default_task(question: str | None, image: ImageInput | None, labels: list[str] | None) -> str:
    """classify with a label set; vqa for an image with a question; caption for an image alone."""
    if labels:
        return "classify"
    if image is not None:
        return "vqa" if question else "caption"
    return "question"


def _generator(generator: str | Generator, cfg: dict[str, Any]) -> Generator:
    """A generator instance, built once per (name, config) for the process."""
    return generator if not isinstance(generator, str) else GENERATORS.shared(generator, **cfg)


class Answerer:
    """Answers questions over one library snapshot (module doc).

    It keeps only a weak reference to the library, so a cached answerer never keeps an old snapshot
    alive: whoever uses it keeps the library.
    """

    def __init__(self, library: Library) -> None:
        self._library = weakref.ref(library)
        self._knowledge: tuple[KnowledgeBase, KnowledgeRetriever] | None = None
        self._lock = threading.Lock()

    @property
    def library(self) -> Library:
        library = self._library()
        if library is None:
            raise RuntimeError("the library of this answerer has been closed; build an Answerer for the new one")
        return library

    def knowledge(self) -> tuple[KnowledgeBase, KnowledgeRetriever] | None:
        """The library's knowledge base and its retriever, opened once (checked again while the library
        has none, so knowledge attached later is found)."""
        if self._knowledge is None:
            with self._lock:
                if self._knowledge is None:
                    kb = KnowledgeBase.open(self.library)
                    if kb is not None:
                        self._knowledge = (kb, KnowledgeRetriever(kb))
        return self._knowledge

    # ---- retrieval -------------------------------------------------------------------------------
    def retrieve(self, question: str | None, image: ImageInput | None, options: AskOptions) -> Retrieval:
        """The evidence for a question and/or an image, with what produced it (module doc)."""
        knowledge = self.knowledge()
        if knowledge is not None and len(knowledge[0]):
            kb, retriever = knowledge
            config = options.config
            reranker = create_reranker(options.reranker) if config.rerank else None
            t0 = time.perf_counter()
            image_vector = kb.index.encoder.encode_images([image])[0] if image is not None else None
            encode_ms = (time.perf_counter() - t0) * 1000
            found = retriever.retrieve(question, image_vector, config, k=options.k, reranker=reranker,
                                       place=options.place)
            found.timings["retrieve"] += encode_ms
            return found
        t0 = time.perf_counter()
        if image is not None:
            evidence = self.image_evidence(image, options.k, options.place)
        else:
            evidence = self.caption_evidence(question or "", options.k, options.place)
        return Retrieval(evidence, timings={"retrieve": (time.perf_counter() - t0) * 1000, "rerank": 0.0})

    def image_evidence(self, image: ImageInput, k: int, place: Place | None = None) -> list[Evidence]:
        """Evidence from the library's own images: the nearest images' captions, then their voted labels."""
        found = image_to_text(self.library, image, k=k, n_captions=k, place=place)
        label_of = {h["id"]: h.get("label") for h in found["hits"]}
        evidence = [
            Evidence(f"{c['source']}#caption-{i}", c["text"], c["source"], label_of.get(c["source"]), "caption",
                     c["score"], label_of.get(c["source"]))
            for i, c in enumerate(found["captions"], start=1)
        ]
        for lab in found["labels"]:
            source = next((h["id"] for h in found["hits"] if h.get("label") == lab["label"]), None)
            evidence.append(
                Evidence(f"label:{lab['label']}", lab["label"], source, lab["label"], "label", lab["score"], lab["label"])
            )
        return evidence

    def caption_evidence(self, question: str, k: int, place: Place | None = None) -> list[Evidence]:
        """Evidence for a text question over a library without knowledge: captions of matching images."""
        return [
            Evidence(f"{h.id}#caption-1", " ".join(h.captions[:2]), h.id, h.label, "caption", h.score, h.label)
            for h in self.library.search_text(question, k, place=place)
        ]

    # ---- answering -------------------------------------------------------------------------------
    def answer(self, question: str | None = None, image: ImageInput | None = None,
               options: AskOptions | None = None) -> Answer:
        """Answer a question about the library's knowledge and/or an image (module doc)."""
        options = options or AskOptions()
        t0 = time.perf_counter()
        question = (question or "").strip() or None
        if question is None and image is None:
            raise QAInputError("ask needs a question, an image, or both (got an empty question and no image)")
        labels = options.labels
        task = options.task or _default_task(question, image, labels)
        if task not in TASKS:
            raise QAInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if task in ("question", "vqa") and not question:
            raise QAInputError(f"the {task} task needs a question")
        if task == "classify" and not labels:
            raise QAInputError("the classify task needs labels=[...] (the label set)")
        gen = _generator(options.generator, dict(options.generator_config))
        # a generator with its own tokenizer (hf) counts the prompt budget in its real tokens
        builder = PromptBuilder(budget=int(options.budget), count_tokens=getattr(gen, "count_tokens", estimate_tokens))

        found = self.retrieve(question, image, options)
        evidence = found.evidence
        timings = dict(found.timings)
        extra: dict[str, Any] = {}
        if found.candidates or found.fused:  # knowledge: the records in fused order, before re-ranking
            extra["fused_record_ids"] = list(dict.fromkeys(c.record_id for c in found.fused))

        history = list(options.history or [])
        prompt = builder.build(task, question, evidence, history, labels)
        t_g = time.perf_counter()
        request = GenerationRequest(
            question,
            task,
            evidence[: len(prompt.evidence_ids)] or evidence,
            prompt,
            history,
            list(labels) if labels else None,
            image,
        )
        result = gen.generate(request)
        timings["generate"] = (time.perf_counter() - t_g) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        numbered = {e.id: (n, e) for n, e in enumerate(evidence, start=1)}
        citations = [
            {"record_id": numbered[c][1].record_id, "chunk_id": c, "n": numbered[c][0], "name": numbered[c][1].name}
            for c in result.cited
            if c in numbered
        ]
        return Answer(
            result.text,
            citations,
            [e.to_dict() for e in evidence],
            {key: round(v, 2) for key, v in timings.items()},
            getattr(gen, "name", type(gen).__name__),
            {"task": task, **extra, **result.extra},
        )


_ANSWERERS: PerLibrary[Answerer] = PerLibrary(Answerer)


def answerer_for(library: Library) -> Answerer:
    """The library's shared answerer (one per library object; forgotten with the library)."""
    return _ANSWERERS.get(library)


def ask(
    library: Library,
    question: str | None = None,
    image: ImageInput | None = None,
    *,
    options: AskOptions | None = None,
    **kwargs: Any,
) -> Answer:
    """Answer a question about the library's knowledge and/or an image (see module doc).

    Options are `AskOptions` (`options=`) or its fields as keywords: `history`, `generator` (name or
    instance, default extractive), `k` (evidence items, default 5), `task`, `labels`, `config` or the
    `RetrievalConfig` fields (`fusion`, `alpha`, `bm25_weight`, `use_bm25`, `rerank`, `rerank_top`,
    `depth`, ...), `reranker`, `budget` (prompt tokens, default 1024), `generator_config`.
    """
    if options is not None and kwargs:
        raise TypeError(f"ask got options= and keyword options ({', '.join(sorted(kwargs))}): pass one or the other")
    options = options or AskOptions.from_kwargs(**kwargs)
    from rsrag.rag.change import change_answer, wants_change

    if wants_change(library, question, image, options.history or []):  # "what changed between 2009 and 2020?" over a dated series
        return change_answer(library, question, options.history or [])
    return answerer_for(library).answer(question, image, options)
