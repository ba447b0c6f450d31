"""A bounded, thread-safe LRU of text embeddings, for texts that come back again and again
(a server's popular queries, the captions `Library.image_to_text` ranks)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np


class TextVectorCache:
    """text -> embedding, keeping the `size` most recently used."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
            return vector

    def put(self, text: str, vector: np.ndarray) -> np.ndarray:
        with self._lock:
            self._vectors[text] = vector
            self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vector

    def vectors(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(len(texts), dim): remembered vectors, and `encode` once over the texts not remembered."""
        unique = dict.fromkeys(texts)
        found = {t: v for t in unique if (v := self.get(t)) is not None}
        missing = [t for t in unique if t not in found]
        if missing:
            found.update((t, self.put(t, v)) for t, v in zip(missing, encode(missing)))
        return np.stack([found[t] for t in texts])
