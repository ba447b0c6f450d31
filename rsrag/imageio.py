"""Decoding any supported image into 8-bit RGB (placeholder; being completed)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image


class ImageLoadError(ValueError):
    """An image could not be decoded; the message names the file."""


def load_image(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        return Image.fromarray(source).convert("RGB")
    try:
        if isinstance(source, bytes):
            img = Image.open(BytesIO(source))
        else:
            img = Image.open(Path(source))
        img.load()
        return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise ImageLoadError(f"cannot read image {source if not isinstance(source, bytes) else '<bytes>'}: {exc}") from exc
