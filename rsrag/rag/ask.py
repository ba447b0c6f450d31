"""`ask`: knowledge-grounded question answering over a library.

With knowledge attached to the library (`KnowledgeBase`), evidence is knowledge chunks found by
`KnowledgeRetriever` (dense + BM25 for the question, image->chunk and image->knowledge-image for an
image; fused; cross-encoder re-ranked). Without knowledge, an image question is grounded in the
library's own images: the nearest images' captions and voted labels (`Library.image_to_text`); a
text-only question uses the library's hybrid caption search. The prompt is built with
`PromptBuilder`; the answer comes from a generator of the registry (default `extractive`).
"""

from __future__ import annotations

import time
from typing import Any

from rsrag.generators import GenerationRequest, create_generator
from rsrag.rag.answer import Answer, QAInputError
from rsrag.rag.prompt import TASKS, PromptBuilder, estimate_tokens
from rsrag.rag.retrieval import KnowledgeRetriever, RetrievalConfig

_CONFIG_KEYS = set(RetrievalConfig.__dataclass_fields__)
_GENERATORS: dict[tuple, Any] = {}


def _knowledge(library):
    """The library's knowledge base and retriever, opened once per library object (re-checked while
    the library has none, so knowledge attached later is found)."""
    from rsrag.knowledge import KnowledgeBase

    cached = getattr(library, "_rsrag_rag", None)
    if cached is None or cached[0] is None and (KnowledgeBase.folder_of(library) / "manifest.json").is_file():
        kb = KnowledgeBase.open(library)
        cached = (kb, KnowledgeRetriever(kb) if kb is not None else None)
        library._rsrag_rag = cached
    return cached


def _generator(generator, cfg: dict):
    if not isinstance(generator, str):
        return generator
    key = (generator, tuple(sorted((k, repr(v)) for k, v in cfg.items())))
    if key not in _GENERATORS:
        _GENERATORS[key] = create_generator(generator, **cfg)
    return _GENERATORS[key]


def image_evidence(library, image, k: int) -> list[dict]:
    """Evidence from the library's own images: the nearest images' captions, then their voted labels."""
    found = library.image_to_text(image, k=k, n_captions=k)
    label_of = {h["id"]: h.get("label") for h in found["hits"]}
    evidence = [
        {
            "id": f"{c['source']}#caption-{i}",
            "record_id": c["source"],
            "name": label_of.get(c["source"]),
            "chunk_type": "caption",
            "text": c["text"],
            "score": round(float(c["score"]), 4),
            "category": label_of.get(c["source"]),
        }
        for i, c in enumerate(found["captions"], start=1)
    ]
    for lab in found["labels"]:
        source = next((h["id"] for h in found["hits"] if h.get("label") == lab["label"]), None)
        evidence.append(
            {
                "id": f"label:{lab['label']}",
                "record_id": source,
                "name": lab["label"],
                "chunk_type": "label",
                "text": lab["label"],
                "score": round(float(lab["score"]), 4),
                "category": lab["label"],
            }
        )
    return evidence


def caption_evidence(library, question: str, k: int) -> list[dict]:
    """Evidence for a text question over a library without knowledge: captions of matching images."""
    return [
        {
            "id": f"{h.id}#caption-1",
            "record_id": h.id,
            "name": h.label,
            "chunk_type": "caption",
            "text": " ".join(h.captions[:2]),
            "score": round(float(h.score), 4),
            "category": h.label,
        }
        for h in library.search_text(question, k)
    ]


def _default_task(question: str | None, image, labels) -> str:
    """classify with a label set; vqa for an image with a question; caption for an image alone."""
    if labels:
        return "classify"
    if image is not None:
        return "vqa" if question else "caption"
    return "question"


def ask(
    library,
    question: str | None = None,
    image=None,
    *,
    history: list[dict] | None = None,
    generator: str | object = "extractive",
    k: int = 5,
    **options,
) -> Answer:
    """Answer a question about the library's knowledge and/or an image (see module doc).

    Options: `task` (question, vqa, caption, classify; default from the inputs), `labels` (label set
    for classify), the `RetrievalConfig` fields (`fusion`, `alpha`, `bm25_weight`, `use_bm25`,
    `rerank`, `rerank_top`, `depth`, ...) or `config=RetrievalConfig(...)`, `reranker` (name or
    instance), `budget` (prompt tokens, default 1024), `generator_config` (dict for the generator:
    `url`, `model`, ...).
    """
    t0 = time.perf_counter()
    question = (question or "").strip() or None
    if question is None and image is None:
        raise QAInputError("ask needs a question, an image, or both (got an empty question and no image)")
    labels = options.pop("labels", None)
    task = options.pop("task", None) or _default_task(question, image, labels)
    if task not in TASKS:
        raise QAInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task in ("question", "vqa") and not question:
        raise QAInputError(f"the {task} task needs a question")
    if task == "classify" and not labels:
        raise QAInputError("the classify task needs labels=[...] (the label set)")
    config = options.pop("config", None) or RetrievalConfig(
        **{k_: options.pop(k_) for k_ in list(options) if k_ in _CONFIG_KEYS}
    )
    reranker = options.pop("reranker", "cross-encoder")
    gen = _generator(generator, dict(options.pop("generator_config", None) or {}))
    # a generator with its own tokenizer (hf) counts the prompt budget in its real tokens
    builder = PromptBuilder(
        budget=int(options.pop("budget", 1024)), count_tokens=getattr(gen, "count_tokens", estimate_tokens)
    )
    if options:
        raise TypeError(f"ask got unknown options: {', '.join(sorted(options))}")

    timings: dict[str, float] = {}
    extra: dict = {}
    kb, retriever = _knowledge(library)
    if kb is not None and len(kb):
        from rsrag.rerankers import create_reranker

        retriever.reranker = create_reranker(reranker) if config.rerank else None
        t_img = time.perf_counter()
        image_vector = kb.index.encoder.encode_images([image])[0] if image is not None else None
        timings["retrieve"] = (time.perf_counter() - t_img) * 1000
        candidates = retriever.retrieve(question, image_vector, config, k=k, timings=timings)
        evidence = [c.to_evidence() for c in candidates]
        extra = {"fused_record_ids": list(dict.fromkeys(c.record_id for c in retriever.last_fused))}
    else:
        t_r = time.perf_counter()
        evidence = image_evidence(library, image, k) if image is not None else caption_evidence(library, question, k)
        timings.update(retrieve=(time.perf_counter() - t_r) * 1000, rerank=0.0)

    prompt = builder.build(task, question, evidence, history, labels)
    t_g = time.perf_counter()
    request = GenerationRequest(
        question,
        task,
        evidence[: len(prompt.evidence_ids)] or evidence,
        prompt,
        list(history or []),
        list(labels) if labels else None,
        image,
    )
    result = gen.generate(request)
    timings["generate"] = (time.perf_counter() - t_g) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    by_id = {e["id"]: (n, e) for n, e in enumerate(evidence, start=1)}
    citations = [
        {"record_id": by_id[c][1].get("record_id"), "chunk_id": c, "n": by_id[c][0], "name": by_id[c][1].get("name")}
        for c in result.cited
        if c in by_id
    ]
    return Answer(
        result.text,
        citations,
        [{k_: v for k_, v in e.items() if k_ != "passage"} for e in evidence],
        {k_: round(v, 2) for k_, v in timings.items()},
        getattr(gen, "name", type(gen).__name__),
        {"task": task, **extra, **result.extra},
    )
