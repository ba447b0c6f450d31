"""The generator interface and registry: a generator turns a question + evidence into answer text.

Register a new one with `@register_generator("name")` on a `Generator` subclass (or factory taking
keyword config); `create_generator("name", **cfg)` builds it. `rsrag.rag.ask` accepts a name or an
instance.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., "Generator"]] = {}
_BUILTIN_MODULES = ("rsrag.generators.extractive", "rsrag.generators.hf", "rsrag.generators.openai_compat",
                    "rsrag.generators.image_models")
# generators of other parts of the package (caption, vqa), registered when their module is present
_OPTIONAL_MODULES = ("rsrag.generators.image_models",)


class GeneratorError(RuntimeError):
    """A generator cannot produce an answer (unreachable endpoint, model not found, bad reply)."""


@dataclass
class GenerationRequest:
    """Everything a generator may use. `prompt` is the built chat prompt (see rsrag.rag.prompt);
    `evidence` are the dicts numbered in it (best first)."""

    question: str | None
    task: str = "question"
    evidence: list[dict] = field(default_factory=list)
    prompt: Any = None
    history: list[dict] = field(default_factory=list)
    labels: list[str] | None = None
    image: Any = None


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


def register_generator(name: str) -> Callable:
    """Decorator: make a generator class or factory available as `create_generator(name)`."""

    def deco(factory: Callable[..., Generator]) -> Callable[..., Generator]:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_generators() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for module in _OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def create_generator(name: str | Generator = "extractive", **cfg) -> Generator:
    """A generator by registry name with its config (`url`, `model`, ...); an instance is returned as is."""
    if isinstance(name, Generator):
        return name
    if name not in _REGISTRY:
        _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)


def cited_numbers(text: str, evidence_ids: list[str]) -> list[str]:
    """Evidence ids cited as [n] in a generated text (valid numbers only, first mention order)."""
    out = []
    for match in re.finditer(r"\[(\d+)\]", text):
        n = int(match.group(1))
        if 1 <= n <= len(evidence_ids) and evidence_ids[n - 1] not in out:
            out.append(evidence_ids[n - 1])
    return out
