"""The query image as a vision-language model receives it: re-encoded as JPEG, its long side capped.

Re-encoding (rather than forwarding the upload's bytes) means the model server only ever parses a
plain baseline JPEG of bounded size, whatever the user sent (a 16-bit GeoTIFF, a huge PNG), and the
request stays small enough for any server's body limit.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from rsrag.imageio import load_image

MAX_SIDE = 1024  # pixels on the long side; VLM processors resize to far less
JPEG_QUALITY = 90


def image_jpeg(image: Any, max_side: int = MAX_SIDE) -> bytes:
    """JPEG bytes of an image (path, bytes, PIL image or array), shrunk to `max_side` on its long side."""
    picture = image if isinstance(image, Image.Image) else load_image(image)
    picture = picture.convert("RGB")
    if max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side), Image.BICUBIC)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def image_data_url(image: Any, max_side: int = MAX_SIDE) -> str:
    """The image as a `data:image/jpeg;base64,...` URL (OpenAI's `image_url` content part)."""
    return "data:image/jpeg;base64," + base64.b64encode(image_jpeg(image, max_side)).decode("ascii")
