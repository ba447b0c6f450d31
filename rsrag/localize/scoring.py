"""Calibrated query scores: how likely a chip (or a patch) shows the query, comparable across scenes.

A raw cosine between a text and an image vector has no fixed scale: its range shifts from query to
query, and normalising each scene's map to [0, 1] turns a scene where nothing matches into one with
false hot spots. So every chip is scored like zero-shot classification against a fixed vocabulary of
generic remote-sensing scene texts (`NEGATIVES`): the probability that the query, rather than any of
those, describes the chip, a softmax at temperature `temperature` over the cosines. A chip of the
queried class scores near 1; a scene without it scores near 0 everywhere, a flat map. Vocabulary
entries that say the same as the query (text cosine above `same_as`) are left out of its negatives,
so "water" is not scored against "the sea" (0.7, for the rs-lite text tower: "water" vs "a river" is
0.77, vs "a harbor" 0.62).

Short queries (a few words, "farmland") are wrapped in `TEMPLATES` and their embeddings averaged;
a sentence is embedded as it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rsrag.encoders import Encoder, l2_normalize

TEMPLATES: tuple[str, ...] = ("an aerial image of {}.", "a satellite image of {}.", "{}")
# generic overhead-imagery scenes and land covers; the query competes with these in every chip
NEGATIVES: tuple[str, ...] = (
    "an airport", "a runway", "bare land", "a baseball field", "a beach", "a bridge", "a city center",
    "a church", "commercial buildings", "dense residential houses", "a desert", "farmland", "a forest",
    "an industrial area", "a meadow", "medium residential houses", "mountains", "a park", "a parking lot",
    "a playground", "a pond", "a port with boats", "a railway station", "a resort", "a river", "a school",
    "sparse residential houses", "a square", "a stadium", "storage tanks", "a viaduct", "a freeway",
    "a road intersection", "a golf course", "a tennis court", "a lake", "the sea", "clouds", "snow",
    "grassland", "trees", "roads", "buildings", "a harbor", "airplanes", "a mobile home park",
    "chaparral shrubs", "wetland", "rocks",
)
SHORT_QUERY_WORDS = 4
_NEGATIVE_CACHE: dict[tuple[str, tuple[str, ...], tuple[str, ...]], np.ndarray] = {}
_LOCK = threading.Lock()


def embed_query(encoder: Encoder, text: str, templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """(dim,) unit vector for a query: template-averaged when it is a few words, else the text itself."""
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("the query is empty")
    if len(text.split()) <= SHORT_QUERY_WORDS and templates:
        prompts = [t.format(text) for t in templates]
    else:
        prompts = [text]
    return l2_normalize(encoder.encode_texts(prompts).mean(0))


def negative_vectors(encoder: Encoder, negatives: Sequence[str] = NEGATIVES,
                     templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """(n, dim) embeddings of the negative vocabulary (computed once per encoder and vocabulary)."""
    key = (encoder.id, tuple(negatives), tuple(templates))
    with _LOCK:
        cached = _NEGATIVE_CACHE.get(key)
    if cached is None:
        cached = np.stack([embed_query(encoder, n, templates) for n in negatives])
        with _LOCK:
            _NEGATIVE_CACHE[key] = cached
    return cached


@dataclass
class QueryScorer:
    """One query's scorer: `probability(vectors)` for chip or patch vectors (see module doc)."""

    query: str
    text: np.ndarray  # (dim,) the query's unit vector
    negatives: np.ndarray  # (k, dim) the negatives kept for this query
    temperature: float
    dropped: tuple[str, ...] = ()  # vocabulary entries left out as synonyms of the query

    @classmethod
    def build(cls, encoder: Encoder, query: str, *, temperature: float = 10.0, same_as: float = 0.7,
              negatives: Sequence[str] = NEGATIVES, templates: Sequence[str] = TEMPLATES) -> "QueryScorer":
        text = embed_query(encoder, query, templates)
        negs = negative_vectors(encoder, negatives, templates)
        similar = negs @ text > same_as
        return cls(query, text, negs[~similar], float(temperature),
                   tuple(n for n, s in zip(negatives, similar) if s))

    def cosine(self, vectors: np.ndarray) -> np.ndarray:
        """Raw cosines (any leading shape, last axis dim) with the query."""
        return np.asarray(vectors, np.float32) @ self.text

    def probability_and_margin(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`probability` and `margin` of (n, dim) vectors from one matrix product (the chip level)."""
        sims = np.asarray(vectors, np.float32) @ np.vstack([self.text[None], self.negatives]).T
        margin = sims[:, 0] - sims[:, 1:].max(1)
        logits = self.temperature * sims
        logits -= logits.max(1, keepdims=True)
        expo = np.exp(logits)
        return (expo[:, 0] / expo.sum(1)).astype(np.float32), margin

    def margin(self, vectors: np.ndarray) -> np.ndarray:
        """How far the query's cosine is above the best negative's, per vector: > 0 where the query
        describes a chip better than every generic scene text does (the no-match test uses the best)."""
        vectors = np.asarray(vectors, np.float32)
        flat = vectors.reshape(-1, vectors.shape[-1])
        sims = flat @ np.vstack([self.text[None], self.negatives]).T
        return (sims[:, 0] - sims[:, 1:].max(1)).reshape(vectors.shape[:-1])

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """P(query | chip) against the negatives, for (..., dim) unit vectors -> (...) float32 in [0, 1]."""
        vectors = np.asarray(vectors, np.float32)
        flat = vectors.reshape(-1, vectors.shape[-1])
        logits = self.temperature * (flat @ np.vstack([self.text[None], self.negatives]).T)
        logits -= logits.max(1, keepdims=True)
        expo = np.exp(logits)
        return (expo[:, 0] / expo.sum(1)).reshape(vectors.shape[:-1]).astype(np.float32)


__all__ = ["NEGATIVES", "TEMPLATES", "QueryScorer", "embed_query", "negative_vectors"]
