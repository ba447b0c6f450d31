"""Search by example over an area: "find more chips like these (and not like those)", with feedback.

The way Earth Index and GeoVibes work: the user marks a few chips as positive (and optionally some as
negative), rsrag ranks the chips of the area, the user marks more, and the ranking improves.

- `rocchio` (default): the query is mean(positives) - `beta` * mean(negatives), normalised, searched
  like any vector (cosine). Cheap and steady with one or two examples.
- `logistic`: a small L2-regularised logistic regression fitted on the spot over the embeddings: the
  positives against the negatives plus the candidates ranked last by the Rocchio query (as background).
  It can learn a direction the mean cannot (e.g. "boats, not water") once there are a handful of
  examples each way. The candidates come from the Rocchio search (`depth` of them), so it stays a
  re-ranking of an ANN search and costs milliseconds.

Overlapping hits (the same place found at two scales or with overlapping chips) are merged by
non-maximum suppression over their footprints: a hit whose footprint overlaps a better kept one by more
than `nms_iou` (intersection over union) is folded into it (`Region.merged`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import shapely

from rsrag.geo.filters import Place

METHODS = ("rocchio", "logistic")


@dataclass
class Region:
    """One ranked place: the best chip's id, score and footprint, and the chips merged into it."""

    id: str
    score: float
    footprint: str | None
    lon: float | None
    lat: float | None
    merged: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "score": self.score, "footprint": self.footprint, "lon": self.lon, "lat": self.lat,
                "merged": self.merged, **{k: v for k, v in self.metadata.items() if k not in ("footprint", "lon", "lat")}}


def stored_vectors(library: Any, ids: Sequence[str]) -> np.ndarray:
    """The stored embeddings of records by id (an unknown id is a KeyError naming it)."""
    if not ids:
        return np.zeros((0, library.dim), np.float32)
    table = library.rows(["id", "vector"], filters={"id": list(ids)})
    found = dict(zip(table.column("id").to_pylist(), table.column("vector").to_numpy(zero_copy_only=False)))
    missing = [i for i in ids if i not in found]
    if missing:
        raise KeyError(f"no records with ids {missing[:5]} in index {library.name!r}")
    return np.stack([np.asarray(found[i], np.float32) for i in ids])


def more_like(library: Any, record_id: str, k: int = 10, **filters: Any) -> list:
    """The k records most like a stored one (its own vector), itself left out, ranked from 1;
    `filters`: `filters`, `where`, `place` as `Library.search_vector` takes them."""
    vector = stored_vectors(library, [record_id])[0]
    hits = [h for h in library.search_vector(vector, k + 1, **filters) if h.id != record_id][:k]
    for rank, hit in enumerate(hits, start=1):
        hit.rank = rank
    return hits


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def rocchio(positives: np.ndarray, negatives: np.ndarray | None = None, beta: float = 0.5) -> np.ndarray:
    """mean(positives) - beta * mean(negatives), L2-normalised."""
    if not len(positives):
        raise ValueError("search by example needs at least one positive example")
    query = _normalise(np.asarray(positives, np.float32).mean(axis=0))
    if negatives is not None and len(negatives):
        query = query - beta * _normalise(np.asarray(negatives, np.float32).mean(axis=0))
    return _normalise(query).astype(np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, l2: float = 1e-2,
                 steps: int = 300, lr: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by full-batch gradient descent: (w, b). Tiny problems only
    (tens to thousands of rows), which is what relevance feedback is."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    sw = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    sw = sw / sw.sum()
    w, b = np.zeros(x.shape[1]), 0.0
    scale = 10.0  # unit vectors with cosines in a narrow band: scale the logits up so lr 1 moves them
    for _ in range(steps):
        z = scale * (x @ w) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        g = sw * (p - y)
        w -= lr * (scale * (x.T @ g) + l2 * w)
        b -= lr * g.sum()
    return (scale * w).astype(np.float32), float(b)


class ExampleSearch:
    """Ranks the chips of an index (within an optional place) by example chips (see module doc)."""

    def __init__(self, library: Any, *, method: str = "rocchio", depth: int = 1000, beta: float = 0.5,
                 nms_iou: float = 0.3) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        self.library, self.method, self.depth, self.beta, self.nms_iou = library, method, depth, beta, nms_iou

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        return stored_vectors(self.library, ids)

    def rank(self, positives: Sequence[str], negatives: Sequence[str] = (), *, k: int = 20,
             place: Place | None = None, exclude_examples: bool = True) -> list[Region]:
        """The best k regions for the examples, overlapping chips merged."""
        pos, neg = self.vectors(list(positives)), self.vectors(list(negatives))
        query = rocchio(pos, neg, self.beta)
        hits = self.library.search_vector(query, k=self.depth, place=place)
        if exclude_examples:
            examples = set(positives) | set(negatives)
            hits = [h for h in hits if h.id not in examples]
        if not hits:
            return []
        scores = np.array([h.score for h in hits], np.float32)
        if self.method == "logistic":
            cand = self.vectors([h.id for h in hits])
            background = cand[-min(len(cand), max(20, 4 * len(pos))):]  # the candidates ranked last
            x = np.concatenate([pos, neg, background])
            y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg)), np.zeros(len(background))])
            weights = np.concatenate([np.full(len(pos), 1.0), np.full(len(neg), 1.0),
                                      np.full(len(background), 0.5 * max(1, len(pos)) / max(1, len(background)))])
            w, b = fit_logistic(x, y, weights=weights)
            scores = cand @ w + b
        order = np.argsort(-scores, kind="stable")
        return self._suppress([(hits[i], float(scores[i])) for i in order], k)

    def _suppress(self, ranked: list[tuple[Any, float]], k: int) -> list[Region]:
        """Non-maximum suppression over footprints (hits without one are kept as they are)."""
        kept: list[tuple[Region, Any]] = []
        for hit, score in ranked:
            wkt = hit.metadata.get("footprint")
            shape = shapely.from_wkt(wkt) if wkt else None
            if shape is not None:
                owner = next((r for r, s in kept if s is not None and _iou(shape, s) > self.nms_iou), None)
                if owner is not None:
                    owner.merged.append(hit.id)
                    continue
            if len(kept) < k:  # past k, hits are only looked at to be merged into the kept ones
                kept.append((Region(hit.id, score, wkt, hit.metadata.get("lon"), hit.metadata.get("lat"),
                                    metadata=dict(hit.metadata)), shape))
        return [r for r, _ in kept]


def _iou(a, b) -> float:
    inter = a.intersection(b).area
    return inter / (a.area + b.area - inter) if inter > 0 else 0.0
