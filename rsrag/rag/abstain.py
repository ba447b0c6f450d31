"""Knowing when the knowledge base does not know: abstain instead of quoting the nearest chunk.

The signal is the cross-encoder's score of the best re-ranked knowledge chunk: a question about a
landmark the knowledge base holds finds a chunk that names it, one about anything else does not. The
threshold is fitted on a validation split (`rsrag eval abstain --save`, RSWK landmarks held out of the
knowledge base) and stored in `rsrag/weights/abstention.json` with what it was fitted on; `ask` uses it
when the evidence was re-ranked by that re-ranker (scores of another scorer are not comparable).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from rsrag.config import WEIGHTS_DIR

CALIBRATION = WEIGHTS_DIR / "abstention.json"
ABSTAIN_TEXT = "The knowledge base has nothing on this."


@lru_cache(maxsize=4)
def _load(path: str) -> dict | None:
    file = Path(path)
    return json.loads(file.read_text()) if file.is_file() else None


def fitted_threshold(reranker: str = "cross-encoder", path: Path = CALIBRATION) -> float | None:
    """The committed threshold for evidence re-ranked by `reranker`, or None when there is none."""
    data = _load(str(path))
    if not data or data.get("reranker") != reranker:
        return None
    return float(data["threshold"])


def save_threshold(threshold: float, reranker: str, fitted_on: dict, path: Path = CALIBRATION) -> Path:
    path.write_text(json.dumps({"reranker": reranker, "threshold": round(float(threshold), 4),
                                "fitted_on": fitted_on}, indent=2) + "\n")
    _load.cache_clear()
    return path


def fit_threshold(answerable: list[float], unanswerable: list[float]) -> float:
    """The threshold that maximises balanced accuracy (mean of answered-when-answerable and
    abstained-when-not) on validation scores; the midpoint between neighbouring scores."""
    values = sorted(set(answerable) | set(unanswerable))
    if not values:
        raise ValueError("no validation scores to fit an abstention threshold on")
    cuts = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6]

    def balanced(cut: float) -> float:
        answered = sum(s >= cut for s in answerable) / max(1, len(answerable))
        abstained = sum(s < cut for s in unanswerable) / max(1, len(unanswerable))
        return (answered + abstained) / 2

    return max(cuts, key=balanced)
