"""The match-strength scale (`rsrag eval match`): fitted on one split, checked on another.

Every caption of the split is a query over the split's images. Its best hit among images of its own
class is what a search finds when the library has what is asked for; its best hit among the other
classes' images is what a search finds when the library has none of it. The scale
(`rsrag.encoders.calibration`) is fitted on `--fit-split` (val) from those two distributions and
checked on `--split` (test): the share of each level for both, and the level of the best hit of
off-domain queries (things no RSICD / UCM class shows) over the test images and over UCM.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rsrag.encoders.base import l2_normalize
from rsrag.encoders.calibration import LEVELS, MatchScale, fit_match_scale

OFF_DOMAIN = ("solar panels on a roof", "snow covered mountains", "a glacier", "an aurora in the night sky",
              "a volcano erupting", "a cat sleeping on a sofa", "icebergs floating in the sea", "a desert with sand dunes")


def best_hit_scores(encoder, records: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every caption as a query over the records' images: its best score among images of its own
    class (the library has what it asks for) and among the other classes' images (as if the library had
    none of it); plus the image vectors."""
    images = l2_normalize(encoder.encode_images([r.path for r in records]))
    labels = np.array([r.label for r in records])
    captions = [c for r in records for c in r.captions]
    query_labels = np.repeat(labels, [len(r.captions) for r in records])
    scores = l2_normalize(encoder.encode_texts(captions)) @ images.T  # (captions, images)
    same = query_labels[:, None] == labels[None, :]
    present = np.where(same, scores, -np.inf).max(axis=1)
    absent = np.where(~same, scores, -np.inf).max(axis=1)
    return present, absent, images


def level_shares(scale: MatchScale, scores: np.ndarray) -> dict[str, float]:
    levels = [scale.level(float(s)) for s in scores]
    return {name: round(levels.count(name) / max(1, len(levels)), 4) for name in LEVELS}


def evaluate_match(encoder, fit_records: Sequence, test_records: Sequence,
                   other_galleries: dict[str, Sequence] | None = None) -> tuple[MatchScale, dict]:
    present, absent, _ = best_hit_scores(encoder, fit_records)
    scale = fit_match_scale(present, absent)
    test_present, test_absent, images = best_hit_scores(encoder, test_records)
    queries = l2_normalize(encoder.encode_texts(list(OFF_DOMAIN)))
    result = {
        "encoder": encoder.id, "strong": scale.strong, "weak": scale.weak,
        "test_best_hit_class_present": level_shares(scale, test_present),
        "test_best_hit_class_absent": level_shares(scale, test_absent),
        "off_domain_best_hit": {q: scale.level(float(s)) for q, s in zip(OFF_DOMAIN, (queries @ images.T).max(axis=1))},
    }
    for name, records in (other_galleries or {}).items():
        gallery = l2_normalize(encoder.encode_images([r.path for r in records]))
        result[f"off_domain_best_hit_{name}"] = {q: scale.level(float(s))
                                                 for q, s in zip(OFF_DOMAIN, (queries @ gallery.T).max(axis=1))}
    return scale, result
