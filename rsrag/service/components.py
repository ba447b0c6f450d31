"""The models behind /qa, /caption and /vqa, loaded on first use (or injected, e.g. by tests).

Loading a captioner or VQA model takes seconds and memory, and an API that only serves search
should not pay for them; a component whose module or weights are missing answers 503 (the reason,
which names files on the server, goes to the log) instead of failing the whole server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from rsrag.service.errors import ApiError

log = logging.getLogger(__name__)


class Component:
    """A lazily created object: `get()` builds it once (thread-safe) or raises ApiError 503.

    `serial` also hands out a lock for callers to run the model one request at a time: these models
    use every core already, and running several at once only adds memory and latency.
    """

    def __init__(self, name: str, factory: Callable[[], Any] | None = None, instance: Any = None) -> None:
        self.name = name
        self._factory = factory
        self._instance = instance
        self._error: str | None = None
        self._lock = threading.Lock()
        self.serial = threading.Lock()

    @property
    def state(self) -> str:
        if self._instance is not None:
            return "loaded"
        return "unavailable" if self._error else "not loaded"

    def get(self) -> Any:
        if self._instance is None:
            with self._lock:
                if self._instance is None and self._error is None:
                    try:
                        self._instance = self._factory()
                    except (ImportError, OSError, RuntimeError) as exc:
                        log.warning("%s is unavailable: %s", self.name, exc)
                        self._error = f"{type(exc).__name__}: {exc}"
        if self._instance is None:
            raise ApiError(503, f"{self.name} is not available on this server")
        return self._instance


def _load_ask() -> Callable:
    from rsrag.rag import ask

    return ask


def _load_captioner() -> Any:
    from rsrag.models.captioner import load_captioner

    return load_captioner()


def _load_vqa() -> Any:
    from rsrag.models.vqa import load_vqa

    return load_vqa()


def default_components(ask: Callable | None = None, captioner: Any = None, vqa: Any = None) -> dict[str, Component]:
    """The three components, each the object given or the package's own, loaded on first use."""
    return {"qa": Component("question answering", _load_ask, ask),
            "caption": Component("the captioner", _load_captioner, captioner),
            "vqa": Component("visual question answering", _load_vqa, vqa)}
