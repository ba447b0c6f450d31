"""`PerLibrary`: one object per library (an answerer, a caption cache), shared by every thread and
forgotten with the library, so nothing of rag's is stored on the Library itself."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class PerLibrary(Generic[T]):
    """A lazily built `factory(library)` per library object (held weakly)."""

    def __init__(self, factory: Callable[[Any], T]) -> None:
        self._factory = factory
        self._items: "weakref.WeakKeyDictionary[Any, T]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, library: Any) -> T:
        with self._lock:
            item = self._items.get(library)
            if item is None:
                item = self._items[library] = self._factory(library)
            return item
