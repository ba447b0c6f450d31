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
from typing import TYPE_CHECKING, Any, Iterator

from rsrag.generators import GENERATORS, Evidence, Generation, GenerationRequest, Generator
from rsrag.knowledge import KnowledgeBase
from rsrag.rag.answer import Answer, QAInputError
from rsrag.rag.describe import image_to_text
from rsrag.rag.abstain import ABSTAIN_TEXT, fitted_threshold
from rsrag.rag.followup import refers_back, resolve
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
    focus: list[str] | None = None  # names a follow-up question may point back to, most recent first
    focus_records: list[str] | None = None  # their knowledge records: a follow-up is answered from them
    # abstain when the best re-ranked knowledge chunk scores below this: "auto" is the threshold fitted on
    # validation data for the re-ranker in use (rsrag.rag.abstain); False never abstains
    abstain: float | str | bool = "auto"
    resolve_followups: bool = True  # rewrite "When was it built?" with the name in focus (rsrag.rag.followup)

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

    def history_focus(self, options: AskOptions) -> tuple[str | None, list[str]]:
        """What a plain history is about: the name (and knowledge record) that the last self-contained
        user turn retrieves first."""
        for turn in reversed(options.history or []):
            text = str(turn.get("content") or "").strip()
            if turn.get("role", "user") == "user" and text and not refers_back(text):
                found = self.retrieve(text, None, AskOptions(k=1, config=options.config, reranker=options.reranker,
                                                               place=options.place))
                top = next((e for e in found.evidence if e.name), None)
                if top is not None:
                    return top.name, [top.record_id] if top.record_id and self.knowledge() is not None else []
                return None, []
        return None, []

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
        change = self._change_answer(question, image, options)
        if change is not None:  # "what changed between 2009 and 2020?" over a dated series
            return change
        turn = self._prepare(question, image, options)
        t_g = time.perf_counter()
        if turn.abstained is not None:
            return self._finish(turn, turn.abstained, t_g)
        return self._finish(turn, turn.generator.generate(turn.request), t_g)

    def stream(self, question: str | None = None, image: ImageInput | None = None,
               options: AskOptions | None = None) -> Iterator[str | Answer]:
        """`answer`, with the generated text yielded piece by piece as the generator produces it
        (token streaming where the generator can; one piece otherwise), and the `Answer` last."""
        options = options or AskOptions()
        change = self._change_answer(question, image, options)
        if change is not None:
            yield change.text
            yield change
            return
        turn = self._prepare(question, image, options)
        t_g = time.perf_counter()
        if turn.abstained is not None:
            yield turn.abstained.text
            yield self._finish(turn, turn.abstained, t_g)
            return
        for piece in turn.generator.stream(turn.request):
            if isinstance(piece, Generation):
                yield self._finish(turn, piece, t_g)
                return
            yield piece

    def _change_answer(self, question: str | None, image: ImageInput | None, options: AskOptions) -> Answer | None:
        """The answer of a change question about a dated series (rsrag.rag.change), or None."""
        from rsrag.rag.change import change_answer, wants_change

        if wants_change(self.library, question, image, options.history or []):
            return change_answer(self.library, question, options.history or [])
        return None

    def _prepare(self, question: str | None, image: ImageInput | None, options: AskOptions) -> "_Turn":
        """Check the inputs, retrieve the evidence and build the prompt: everything before generation."""
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

        extra: dict[str, Any] = {"task": task}
        focus_records: list[str] = []
        if question and options.resolve_followups and refers_back(question):
            name, focus_records = ((options.focus[0], list(options.focus_records or [])) if options.focus
                                   else self.history_focus(options))
            if name:
                question = resolve(question, name)
                extra["resolved_question"] = question
        knowledge = self.knowledge()
        found = None
        if focus_records and image is None and knowledge is not None:
            found = knowledge[1].retrieve_within(question, focus_records[:1], options.config, options.k,
                                                 create_reranker(options.reranker) if options.config.rerank else None)
        if found is None or not found.evidence:
            found = self.retrieve(question, image, options)
        evidence = found.evidence
        if found.candidates or found.fused:  # knowledge: the records in fused order, before re-ranking
            extra["fused_record_ids"] = list(dict.fromkeys(c.record_id for c in found.fused))

        history = list(options.history or [])
        prompt = builder.build(task, question, evidence, history, labels)
        request = GenerationRequest(
            question,
            task,
            evidence[: len(prompt.evidence_ids)] or evidence,
            prompt,
            history,
            list(labels) if labels else None,
            image,
        )
        abstained = self._abstention(question, found, options, extra) if image is None else None
        return _Turn(gen, request, evidence, dict(found.timings), extra, t0, abstained)

    @staticmethod
    def _abstention(question: str | None, found: Retrieval, options: AskOptions,
                    extra: dict[str, Any]) -> Generation | None:
        """The abstaining answer when the best re-ranked knowledge chunk is below the threshold
        (rsrag.rag.abstain), else None. Judged only for text questions over knowledge re-ranked by the
        calibrated re-ranker (with an image, retrieval follows the image and the question may name
        nothing), and never when the question names the best chunk's own place: then the knowledge base
        does know the place, and the generator says which fact it lacks."""
        scored = [c for c in found.candidates if c.rerank is not None]
        if not scored or not options.config.rerank:
            return None
        top = max(scored, key=lambda c: c.rerank)
        best = top.rerank
        extra["evidence_score"] = round(best, 4)  # the best re-ranked chunk: what abstention is judged on
        if options.abstain is None or options.abstain is False:
            return None
        if options.abstain == "auto":
            name = options.reranker if isinstance(options.reranker, str) else getattr(options.reranker, "name", None)
            threshold = fitted_threshold(name or "")
        else:
            threshold = float(options.abstain)
        if threshold is None or best >= threshold:
            return None
        if top.name and question and top.name.lower() in question.lower():
            extra["abstain_skipped"] = f"the question names {top.name}, which the knowledge base holds"
            return None
        extra["abstained"] = True
        extra["abstain_threshold"] = threshold
        return Generation(ABSTAIN_TEXT, [], {})

    @staticmethod
    def _finish(turn: "_Turn", result: Generation, t_generate: float) -> Answer:
        """The Answer: citations resolved against the numbered evidence, timings closed."""
        timings = turn.timings
        timings["generate"] = (time.perf_counter() - t_generate) * 1000
        timings["total"] = (time.perf_counter() - turn.started) * 1000
        numbered = {e.id: (n, e) for n, e in enumerate(turn.evidence, start=1)}
        citations = [
            {"record_id": numbered[c][1].record_id, "chunk_id": c, "n": numbered[c][0], "name": numbered[c][1].name}
            for c in result.cited
            if c in numbered
        ]
        return Answer(
            result.text,
            citations,
            [e.to_dict() for e in turn.evidence],
            {key: round(v, 2) for key, v in timings.items()},
            getattr(turn.generator, "name", type(turn.generator).__name__),
            {**turn.extra, **result.extra},
        )


@dataclass
class _Turn:
    """One question between retrieval and generation (see `Answerer._prepare`)."""

    generator: Generator
    request: GenerationRequest
    evidence: list[Evidence]
    timings: dict[str, float]
    extra: dict[str, Any]
    started: float
    abstained: Generation | None = None  # the answer when the knowledge base has nothing on the question


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
    return answerer_for(library).answer(question, image, options or AskOptions.from_kwargs(**kwargs))


def ask_stream(
    library: Library,
    question: str | None = None,
    image: ImageInput | None = None,
    *,
    options: AskOptions | None = None,
    **kwargs: Any,
) -> Iterator[str | Answer]:
    """`ask`, streaming: the answer's text pieces as the generator produces them, then the `Answer`."""
    if options is not None and kwargs:
        raise TypeError(f"ask_stream got options= and keyword options ({', '.join(sorted(kwargs))}): pass one or the other")
    return answerer_for(library).stream(question, image, options or AskOptions.from_kwargs(**kwargs))
