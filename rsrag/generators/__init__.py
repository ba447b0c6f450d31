"""Answer generators (a registry): `extractive` (default, offline, deterministic), `hf` (a transformers
causal LM), `openai` (an OpenAI-compatible chat endpoint: vLLM, llama.cpp server, Ollama)."""

from rsrag.generators.base import (
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    create_generator,
    list_generators,
    register_generator,
)

__all__ = [
    "Generator",
    "GenerationRequest",
    "Generation",
    "GeneratorError",
    "create_generator",
    "register_generator",
    "list_generators",
]
