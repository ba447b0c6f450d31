"""The change score of a location between two dates, and its calibration against nuisance.

Raw score: how far apart the two dates' concept distributions are (1 - cosine between the chips'
softmax distributions over a `ConceptBank`), optionally mixed with the raw embedding distance
(`embedding_weight`). Comparing *what the chip shows* rather than raw embeddings is what keeps a
different field of the same crop, or a redrawn roof of the same kind, from reading as change; the
weights were chosen on val-split pairs (`rsrag eval change --split val`).

Calibration: the same score between chips and photometrically jittered / blurred / 1-2 px shifted
copies of themselves (`rsrag.change.nuisance`) is the distribution of "no change". It is heavy-tailed
(most self-pairs score ~0, a few chips flip between two concepts), so its unit is the span from its
median to its 99th percentile, measured once on thousands of val-split self-pairs (a per-scene null of
a few dozen chips is too noisy to set the scale: on val it cost 0.3 F1). The unit belongs to the concept
bank that scores: the evaluation's banks (dataset classes pulled towards train-split prototypes) and the
text-only vocabulary real scenes use (`DEFAULT_CONCEPTS`) spread the same self-pairs differently (median
0.005 vs 0.033), so each has its reference, both measured on the same val self-pairs. Scores are reported as
`z / (z + threshold)`, z = (raw - median) / unit: 0.5 exactly at the threshold, monotone, 0..1. Each
scene's own self-pairs still run: they estimate its false-alarm rate and raise the threshold for a
scene whose nuisance is worse than the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsrag.change.concepts import ConceptBank

# The reference null: raw scores of val-split chips against jittered / blurred / shifted copies of
# themselves, pooled (`rsrag eval change --split val` prints it as `reference_null`). Its median and 99th
# percentile set the unit of the calibrated score; the threshold is in that unit, chosen on val pairs.
REFERENCE_MEDIAN = 0.0053
REFERENCE_Q99 = 0.527
# The same self-pairs scored by the text-only real-scene vocabulary (`DEFAULT_CONCEPTS`; in the val sweep's
# JSON as `text_vocabulary.reference_null`): what scene files, photos and indexed series are calibrated on.
TEXT_REFERENCE_MEDIAN = 0.0332
TEXT_REFERENCE_Q99 = 0.4754
THRESHOLD = 1.6  # (raw - median) / (q99 - median) above which a location counts as changed (chosen on val)
EMBEDDING_WEIGHT = 0.0  # share of the raw embedding distance in the raw score (chosen on val pairs)


def raw_scores(bank: ConceptBank, before: np.ndarray, after: np.ndarray,
               embedding_weight: float = EMBEDDING_WEIGHT) -> np.ndarray:
    """(n,) raw change scores of n chip pairs given their unit embeddings (n, dim) each."""
    return raw_from_probabilities(bank.probabilities(before), bank.probabilities(after), before, after,
                                  embedding_weight)


def raw_from_probabilities(p: np.ndarray, q: np.ndarray, before: np.ndarray, after: np.ndarray,
                           embedding_weight: float = EMBEDDING_WEIGHT) -> np.ndarray:
    """`raw_scores` when the concept distributions are already computed."""
    cos = (p * q).sum(axis=1) / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(q, axis=1), 1e-12)
    score = 1.0 - cos
    if embedding_weight:
        score = (1.0 - embedding_weight) * score + embedding_weight * (1.0 - (before * after).sum(axis=1))
    return score.astype(np.float32)


def reference(bank: ConceptBank) -> tuple[float, float]:
    """The (median, q99) of the reference null measured with a bank of this kind (module doc)."""
    if bank.prototypes:
        return REFERENCE_MEDIAN, REFERENCE_Q99
    return TEXT_REFERENCE_MEDIAN, TEXT_REFERENCE_Q99


@dataclass(frozen=True)
class Calibration:
    """The nuisance null's centre and unit, and the threshold in that unit (module doc).

    The unit comes from the pooled reference null (thousands of self-pairs: steady); the scene's own
    self-pairs only *raise* the threshold when its nuisance is worse than the reference's (a hazier,
    noisier sensor), and give the false-alarm rate expected on its unchanged areas."""

    median: float = REFERENCE_MEDIAN
    unit: float = REFERENCE_Q99 - REFERENCE_MEDIAN
    threshold: float = THRESHOLD
    samples: int = 0
    false_alarm_estimate: float | None = None  # the share of the scene's self-pairs over the threshold
    raised: bool = False  # whether the scene's own nuisance raised the threshold

    @property
    def threshold_raw(self) -> float:
        return self.median + self.threshold * self.unit

    def z(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores in units of the reference null (0 at its median, 1 at its 99th percentile)."""
        return (np.asarray(raw, np.float32) - self.median) / self.unit

    def score(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated change score in [0, 1): 0.5 at the threshold (module doc)."""
        z = np.maximum(self.z(raw), 0.0)
        return (z / (z + self.threshold)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"median": round(self.median, 6), "unit": round(self.unit, 6), "threshold": self.threshold,
                "threshold_raw": round(self.threshold_raw, 6), "self_pairs": self.samples,
                "false_alarm_estimate": None if self.false_alarm_estimate is None else round(self.false_alarm_estimate, 4),
                "raised_by_scene_nuisance": self.raised}

    @classmethod
    def from_null(cls, null: np.ndarray, threshold: float = THRESHOLD, median: float = REFERENCE_MEDIAN,
                  q99: float = REFERENCE_Q99) -> "Calibration":
        """The reference calibration, checked against a scene's own self-pair scores `null`."""
        null = np.asarray(null, np.float64)
        base = cls(median, q99 - median, threshold)
        if not len(null):
            return base
        own = float(np.quantile(null, 0.99))
        raised = own > base.threshold_raw
        if raised:
            threshold = (own - median) / base.unit
        far = float((null >= median + threshold * base.unit).mean())
        return cls(median, base.unit, threshold, len(null), far, raised)

    @classmethod
    def for_bank(cls, bank: ConceptBank, null: np.ndarray, threshold: float = THRESHOLD) -> "Calibration":
        """`from_null` on the reference measured with this kind of bank (`reference`)."""
        median, q99 = reference(bank)
        return cls.from_null(null, threshold, median, q99)
