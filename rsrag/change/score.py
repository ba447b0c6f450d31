"""The change score of a location between two dates, and its calibration against nuisance.

Raw score: how far apart the two dates' concept distributions are (1 - cosine between the chips'
softmax distributions over a `ConceptBank`), optionally mixed with the raw embedding distance
(`embedding_weight`). Comparing *what the chip shows* rather than raw embeddings is what keeps a
different field of the same crop, or a redrawn roof of the same kind, from reading as change; the
weights were chosen on val-split pairs (`rsrag eval change --split val`).

Calibration: the same score between chips and photometrically jittered / blurred / 1-2 px shifted
copies of themselves (`rsrag.change.nuisance`) is the distribution of "no change". Scores are
reported as `z / (z + threshold)` where z is the raw score's robust z-value under that null
(median, MAD): 0.5 exactly at the threshold, monotone, 0..1, comparable across scenes and sensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsrag.change.concepts import ConceptBank
from rsrag.change.nuisance import Nuisance, jitter

THRESHOLD_Z = 8.0  # robust z above the nuisance null that counts as change (chosen on val pairs)
EMBEDDING_WEIGHT = 0.0  # share of the raw embedding distance in the raw score (chosen on val pairs)


def raw_scores(bank: ConceptBank, before: np.ndarray, after: np.ndarray,
               embedding_weight: float = EMBEDDING_WEIGHT) -> np.ndarray:
    """(n,) raw change scores of n chip pairs given their unit embeddings (n, dim) each."""
    p, q = bank.probabilities(before), bank.probabilities(after)
    cos = (p * q).sum(axis=1) / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(q, axis=1), 1e-12)
    score = 1.0 - cos
    if embedding_weight:
        score = (1.0 - embedding_weight) * score + embedding_weight * (1.0 - (before * after).sum(axis=1))
    return score.astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """The nuisance null of the raw score (robust centre and spread) and the threshold in z units."""

    median: float
    spread: float  # 1.4826 * MAD, floored so a perfectly stable sample cannot divide by ~0
    threshold_z: float = THRESHOLD_Z
    samples: int = 0

    def z(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, np.float32) - self.median) / self.spread

    def score(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated change score in [0, 1): 0.5 at the threshold (module doc)."""
        z = np.maximum(self.z(raw), 0.0)
        return (z / (z + self.threshold_z)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"median": round(self.median, 6), "spread": round(self.spread, 6), "threshold_z": self.threshold_z,
                "samples": self.samples, "threshold_raw": round(self.median + self.threshold_z * self.spread, 6)}

    @classmethod
    def from_null(cls, null: np.ndarray, threshold_z: float = THRESHOLD_Z) -> "Calibration":
        null = np.asarray(null, np.float64)
        if not len(null):
            raise ValueError("calibration needs at least one self-pair")
        median = float(np.median(null))
        mad = float(np.median(np.abs(null - median))) * 1.4826
        spread = max(mad, 1e-4, 0.1 * float(null.std()))
        return cls(median, spread, threshold_z, len(null))


def self_pairs(images: list[np.ndarray], rng: np.random.Generator, copies: int = 2,
               nuisance: Nuisance = Nuisance()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(a, b) image lists where each b is an independently jittered/shifted copy of the same chip as
    its a (also jittered): the no-change pairs the calibration is fitted on."""
    first, second = [], []
    for image in images:
        for _ in range(copies):
            first.append(jitter(image, rng, nuisance))
            second.append(jitter(image, rng, nuisance))
    return first, second


def calibrate(encode, bank: ConceptBank, images: list[np.ndarray], *, seed: int = 0, copies: int = 2,
              threshold_z: float = THRESHOLD_Z, embedding_weight: float = EMBEDDING_WEIGHT,
              nuisance: Nuisance = Nuisance()) -> Calibration:
    """Fit the null on chips of the scene itself: `encode(list of (h, w, 3) uint8) -> (n, dim)`."""
    if not images:
        raise ValueError("calibration needs at least one chip with data")
    a, b = self_pairs(images, np.random.default_rng(seed), copies, nuisance)
    null = raw_scores(bank, encode(a), encode(b), embedding_weight)
    return Calibration.from_null(null, threshold_z)
