"""Answer generators (a registry): `extractive` (default, offline, deterministic), `hf` (a transformers
causal LM), `openai` (an OpenAI-compatible chat endpoint: vLLM, llama.cpp server, `transformers
serve`, LM Studio, OpenAI; the query image goes along as an `image_url` part), `ollama` (Ollama's
native chat API, image included), and the optional `caption` / `vqa` that look at the query image with
the models trained in rsrag.

Owns: the `Generator` interface, `GenerationRequest` / `Generation`, `Evidence` (what a generator
answers from) and the generator registry. May import: `rsrag.registry`, `rsrag.rerankers`,
`rsrag.knowledge.questions` / `records` (question typing), and lazily `rsrag.models`; never
`rsrag.index` nor `rsrag.rag` (the RAG layer imports generators, not the other way round).
"""

from rsrag.generators.base import (
    GENERATORS,
    Evidence,
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    GeneratorRefused,
    GeneratorUnavailable,
    as_evidence,
    create_generator,
    list_generators,
    register_generator,
)

__all__ = [
    "Generator",
    "GenerationRequest",
    "Generation",
    "GeneratorError",
    "GeneratorRefused",
    "GeneratorUnavailable",
    "Evidence",
    "as_evidence",
    "GENERATORS",
    "create_generator",
    "register_generator",
    "list_generators",
]
