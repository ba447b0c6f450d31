"""Simulate a coarser ground sample distance (GSD): what the same scene looks like from a sensor with
pixels `factor` times larger, shown to the encoder at the original image size.

Model (the Wald protocol used to simulate coarse sensors from fine ones in pansharpening work):
1. Blur with the coarse sensor's optics: a Gaussian point-spread function whose modulation transfer
   at the coarse sensor's Nyquist frequency is `NYQUIST_MTF` (0.25, typical of Earth-observation
   imagers). For a Gaussian, MTF(nu) = exp(-2 pi^2 sigma^2 nu^2); at nu = 1 / (2 factor) cycles per
   fine pixel that gives sigma = factor * sqrt(-2 ln MTF) / pi, about 0.53 * factor fine pixels.
2. Integrate over the coarse detector: area averaging (box filter) down to 1 / factor of the size.
3. Resample back up to the original size (bicubic), which is what happens when a coarse chip is
   resized to an encoder's input: sharp-looking edges stay absent, the grid is not visible.

Area averaging alone would keep the aliasing a real sensor's optics remove; blur alone would keep the
fine sampling grid. Factor 1 is the identity (the image itself is returned), so factor-1 scores equal
the plain evaluation. Used by the resolution-robustness evaluation (`rsrag.eval.resolution`) and
meant as the training augmentation across resolutions, so both see the same degradation.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

#: MTF of the coarse sensor at its own Nyquist frequency (sets the blur).
NYQUIST_MTF = 0.25
#: Coarsening factors of the resolution-robustness curve (1 = native).
DEFAULT_FACTORS: tuple[int, ...] = (1, 2, 4, 8, 16)


def blur_sigma(factor: float, nyquist_mtf: float = NYQUIST_MTF) -> float:
    """Gaussian sigma, in original pixels, of a sensor `factor` times coarser (0 at factor 1)."""
    _check_factor(factor)
    if not 0.0 < nyquist_mtf < 1.0:
        raise ValueError(f"nyquist_mtf must be in (0, 1), got {nyquist_mtf}")
    return 0.0 if factor == 1 else factor * math.sqrt(-2.0 * math.log(nyquist_mtf)) / math.pi


def degrade(image: Image.Image, factor: float, nyquist_mtf: float = NYQUIST_MTF) -> Image.Image:
    """`image` as a sensor with pixels `factor` (>= 1) times larger sees it, at the original size.

    Blur (Gaussian PSF), area-average down to round(size / factor) pixels (at least 1), bicubic back
    up. Factor 1 returns `image` itself. Any PIL mode Pillow can filter works; RGB is the usual one.
    """
    if factor == 1:
        _check_factor(factor)
        return image
    sigma = blur_sigma(factor, nyquist_mtf)
    width, height = image.size
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    blurred = image.filter(ImageFilter.GaussianBlur(radius=sigma))  # Pillow's radius is the std. dev.
    return blurred.resize(small, Image.BOX).resize((width, height), Image.BICUBIC)


def degrade_array(rgb: np.ndarray, factor: float, nyquist_mtf: float = NYQUIST_MTF) -> np.ndarray:
    """`degrade` for an (h, w, 3) uint8 array (scene chips, training batches decoded to arrays)."""
    if factor == 1:
        _check_factor(factor)
        return rgb
    return np.asarray(degrade(Image.fromarray(rgb), factor, nyquist_mtf))


def parse_factors(text: str) -> list[float]:
    """"1,2,4,8,16" -> [1, 2, 4, 8, 16] (ints where whole); each >= 1, no repeats."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"factors must be comma-separated numbers >= 1, e.g. 1,2,4,8,16; got {text!r}") from None
    if not values:
        raise ValueError("give at least one factor, e.g. 1,2,4,8,16")
    for value in values:
        _check_factor(value)
    if len(set(values)) != len(values):
        raise ValueError(f"repeated factor in {text!r}")
    return [int(v) if v.is_integer() else v for v in values]


def _check_factor(factor: float) -> None:
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1):
        raise ValueError(f"a GSD factor must be a number >= 1 (1 = native resolution), got {factor!r}")
