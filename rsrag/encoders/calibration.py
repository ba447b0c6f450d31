"""How strong a text-image match is: `strong`, `weak` or `none`, from an encoder's cosine score.

Raw cosine scores mean different things for different encoders and say nothing absolute ("0.31" is a
good match for one model, noise for another), so each encoder gets a scale fitted on validation data
(`rsrag eval match --save`, RSICD val): every caption is a query over the split's images, and its best
score among images of its own class (the library has it) and among the other classes' images (it does
not) make two distributions:

- `weak`: the 10th percentile of best scores when the library has it: 90% of such searches reach it;
  below it a hit is `none`;
- `strong`: the 99th percentile of best scores when the library does not have it: only 1% of searches
  for something absent score this high.

The scales live in `rsrag/weights/match.json`, keyed by encoder id; an encoder without one gets no label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rsrag.config import WEIGHTS_DIR

MATCH_FILE = WEIGHTS_DIR / "match.json"
LEVELS = ("strong", "weak", "none")


@dataclass(frozen=True)
class MatchScale:
    strong: float
    weak: float

    def level(self, score: float | None) -> str | None:
        if score is None or not np.isfinite(score):
            return None
        return "strong" if score >= self.strong else "weak" if score >= self.weak else "none"


def fit_match_scale(present: np.ndarray, absent: np.ndarray) -> MatchScale:
    """The scale from validation best-hit scores (module doc)."""
    if not len(present) or not len(absent):
        raise ValueError("fitting a match scale needs best-hit scores with and without the class")
    weak = float(np.percentile(present, 10))
    strong = max(float(np.percentile(absent, 99)), weak)
    return MatchScale(round(strong, 4), round(weak, 4))


@lru_cache(maxsize=8)
def _scales(path: str) -> dict:
    file = Path(path)
    return json.loads(file.read_text()) if file.is_file() else {}


def match_scale(encoder_id: str, path: Path | None = None) -> MatchScale | None:
    entry = _scales(str(path or MATCH_FILE)).get(encoder_id)
    return MatchScale(entry["strong"], entry["weak"]) if entry else None


def save_match_scale(encoder_id: str, scale: MatchScale, fitted_on: dict, path: Path | None = None) -> Path:
    path = path or MATCH_FILE
    scales = dict(_scales(str(path)))
    scales[encoder_id] = {"strong": scale.strong, "weak": scale.weak, "fitted_on": fitted_on}
    path.write_text(json.dumps(scales, indent=2, sort_keys=True) + "\n")
    _scales.cache_clear()
    return path
