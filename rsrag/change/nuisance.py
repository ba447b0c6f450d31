"""Nuisance that must not read as change: illumination, season, haze, blur and small misregistration.

The same functions make the calibration's self-pairs (a scene against jittered or shifted copies of
itself, `rsrag.change.score`) and the evaluation's synthetic bi-temporal pairs (`rsrag.eval.change`),
so what the detector is calibrated against is exactly what it is tested against, drawn with other seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Nuisance:
    """How strong each nuisance may be; every draw picks a value uniformly up to these bounds."""

    brightness: float = 0.25  # multiplicative gain 1 +- this
    contrast: float = 0.25  # contrast about the mean 1 +- this
    gamma: float = 0.25  # exponent 1 +- this
    tint: float = 0.12  # per-channel gain 1 +- this (season / sensor colour)
    haze: float = 0.25  # blend towards a bright grey up to this fraction
    blur: float = 1.0  # Gaussian sigma in pixels, 0..this
    shift: int = 2  # whole-pixel shift 0..this in x and y


def jitter(image: np.ndarray, rng: np.random.Generator, nuisance: Nuisance = Nuisance(),
           *, shift: bool = True) -> np.ndarray:
    """One random photometric / seasonal / haze / blur draw (and a shift when `shift`) of an
    (h, w, 3) uint8 image; the result has the same shape and dtype."""
    from PIL import Image, ImageFilter

    x = image.astype(np.float32) / 255.0
    x = x ** (1.0 + rng.uniform(-nuisance.gamma, nuisance.gamma))
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * (1.0 + rng.uniform(-nuisance.contrast, nuisance.contrast)) + mean
    x = x * (1.0 + rng.uniform(-nuisance.brightness, nuisance.brightness))
    x = x * (1.0 + rng.uniform(-nuisance.tint, nuisance.tint, size=3))[None, None, :]
    haze = rng.uniform(0.0, nuisance.haze)
    x = x * (1.0 - haze) + haze * 0.8
    out = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    sigma = rng.uniform(0.0, nuisance.blur)
    if sigma > 0.2:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(sigma)))
    if shift and nuisance.shift > 0:
        dx, dy = (int(v) for v in rng.integers(-nuisance.shift, nuisance.shift + 1, size=2))
        out = shift_image(out, dx, dy)
    return out


def shift_image(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved by (dx, dy) whole pixels, the uncovered border filled from the nearest edge
    (a misregistered copy: no black seam that would itself look like change)."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return image[rows][:, cols]
