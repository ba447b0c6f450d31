"""Encoder registry and factory, in the open_clip style.

A *backend* is a class that knows how to build an encoder (`rs-lite`, `openclip`, `hf-clip`).
A *named config* is a JSON file in `encoders/configs/` that fixes a backend plus its arguments, so
`create_encoder("rs-lite")` and `create_encoder("openclip", model="ViT-B-32", checkpoint="x.pt")`
both work. Keyword arguments override the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rsrag.encoders.base import Encoder

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_ENCODER = "rs-lite"

_BACKENDS: dict[str, Callable[..., Encoder]] = {}


def register_backend(name: str):
    """Class decorator: make a backend constructible by name."""

    def wrap(factory):
        _BACKENDS[name] = factory
        return factory

    return wrap


def _named_configs() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.json"))}


def list_encoders() -> list[str]:
    """Every name `create_encoder` accepts: named configs and bare backends."""
    _import_backends()
    return sorted(set(_named_configs()) | set(_BACKENDS))


def create_encoder(name: str | None = None, **overrides) -> Encoder:
    """Build an encoder by config name or backend name; `overrides` replace config arguments."""
    _import_backends()
    name = name or DEFAULT_ENCODER
    configs = _named_configs()
    if name in configs:
        cfg = dict(configs[name])
        backend = cfg.pop("backend")
        cfg.update(overrides)
    elif name in _BACKENDS:
        backend, cfg = name, dict(overrides)
    else:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    if backend not in _BACKENDS:
        raise ValueError(f"encoder config {name!r} names unknown backend {backend!r}")
    return _BACKENDS[backend](**cfg)


def encoder_accepts(name: str, option: str) -> bool:
    """Whether `create_encoder(name, option=...)` is understood: the backend takes that argument."""
    import inspect

    _import_backends()
    backend = _named_configs().get(name, {}).get("backend", name)
    if backend not in _BACKENDS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    return option in inspect.signature(_BACKENDS[backend]).parameters


def _import_backends() -> None:
    """Importing the backend modules registers them; done lazily so `import rsrag` stays light."""
    from rsrag.encoders import hf_clip, openclip, rs_lite  # noqa: F401
