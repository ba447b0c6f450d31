"""Upload safety: bounded request bodies, formats sniffed from content, decode cost checked from the header.

The order matters: the body is cut off at `max_request_bytes` while it streams in (before anything
is parsed) and must arrive within `body_timeout` seconds; the image's format comes from its magic
bytes (the client's filename and content type are ignored); its pixel count and decode cost
(pixels x decoded bands x bytes per sample) are read from the header and refused above
`max_pixels` / `max_decode_bytes` with 413 (so a decompression bomb is never decoded); and only
then is it decoded, at most `max_concurrent_decodes` at once, reading only the bands shown and, for
large images, at a reduced size (`decode_side`, what the models need), with any decoder failure
answered as 400. Uploaded files are only ever held in memory or written under a name the server
derives from their hash; nothing a client names is opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rsrag.imageio import ImageLoadError, ImageTooLargeError, image_size, load_image
from rsrag.service.errors import ApiError, error_body, image_error

MiB = 1024 * 1024
log = logging.getLogger(__name__)

#: format name -> (file suffix, magic-byte prefixes); WebP is checked separately (RIFF....WEBP)
FORMATS: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "jpeg": (".jpg", (b"\xff\xd8\xff",)),
    "png": (".png", (b"\x89PNG\r\n\x1a\n",)),
    "tiff": (".tif", (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
    "webp": (".webp", ()),
}


@dataclass(frozen=True)
class UploadLimits:
    """What one request may make the server receive and decode.

    `max_bytes` per uploaded image; `max_pixels` per image and `max_decode_bytes` of decoded pixel
    data per image (both from its header, before decoding); `decode_side`: large images are decoded
    reduced to about this longest side (the models need far less); `max_concurrent_decodes` images
    decoded at once across all requests (default: one per core); `body_timeout`: seconds a client
    has to send its whole request body."""

    max_bytes: int = 20 * MiB
    max_pixels: int = 50_000_000
    max_decode_bytes: int = 256 * MiB
    decode_side: int = 1024
    max_concurrent_decodes: int = field(default_factory=lambda: os.cpu_count() or 1)
    body_timeout: float = 60.0

    @property
    def max_request_bytes(self) -> int:
        """Whole-body cap: one image, base64-encoded in JSON (4/3), plus room for the other fields."""
        return self.max_bytes * 4 // 3 + MiB


@dataclass
class UploadedImage:
    """A checked upload: its bytes, sniffed format and decoded RGB image."""

    data: bytes
    format: str
    image: Image.Image

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def save_under(self, folder: Path) -> Path:
        """Store the bytes as `folder/<sha256><suffix>` (content-addressed: re-uploads are free)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.sha256}{FORMATS[self.format][0]}"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(self.data)
            tmp.replace(path)
        return path


def sniff_format(data: bytes) -> str | None:
    """The image format from the first bytes, or None when it is not one the API accepts."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for name, (_, magics) in FORMATS.items():
        if any(data.startswith(m) for m in magics):
            return name
    return None


class ImageDecoder:
    """Checks and decodes images under `limits`, at most `limits.max_concurrent_decodes` at once
    (process-wide for one app), so concurrent requests cannot multiply decode memory."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(max(1, limits.max_concurrent_decodes))

    def check(self, data: bytes, field: str = "file") -> UploadedImage:
        """Run the checks of the module doc on an upload's bytes; raise ApiError (400/413/415) on failure."""
        limits = self.limits
        if not data:
            raise ApiError(400, f"{field}: empty upload", code="bad_image")
        if len(data) > limits.max_bytes:
            raise ApiError(413, f"{field}: upload of {len(data):,} bytes exceeds the limit of {limits.max_bytes:,} bytes")
        fmt = sniff_format(data)
        if fmt is None:
            raise ApiError(415, f"{field}: not a supported image (detected from its content); "
                                f"send one of {', '.join(FORMATS)}")
        try:
            width, height = image_size(data)
            if width * height > limits.max_pixels:
                raise ApiError(413, f"{field}: image of {width}x{height} = {width * height:,} pixels exceeds the limit "
                                    f"of {limits.max_pixels:,} pixels")
            with self._slots:
                image = load_image(data, max_pixels=limits.max_pixels, max_decode_bytes=limits.max_decode_bytes,
                                   size_hint=limits.decode_side)
        except ImageLoadError as exc:
            if not isinstance(exc, ImageTooLargeError):
                log.info("undecodable upload: %s", exc)
            raise image_error(exc, field) from None
        return UploadedImage(data, fmt, image)

    def read(self, file: UploadFile, field: str = "file") -> UploadedImage:
        """`check` on an uploaded file part (read up to one byte over the limit)."""
        return self.check(file.file.read(self.limits.max_bytes + 1), field)

    def load_stored(self, path: str, size_hint: int) -> Image.Image:
        """An indexed image (the operator's file, so no upload budget), decoded at about `size_hint`."""
        with self._slots:
            return load_image(path, size_hint=size_hint)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413: at once from Content-Length, else as the
    body streams in (chunked uploads), before a parser spools it anywhere."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_error(send, 400, "bad Content-Length header")
                return
            if too_big:
                await _send_error(send, 413, f"request body of {int(declared):,} bytes exceeds the limit of "
                                             f"{self.max_bytes:,} bytes")
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, f"request body exceeds the limit of {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyTimeoutMiddleware:
    """Answer 408 and close the connection when a request body has not fully arrived within
    `timeout` seconds of its first read (a client holding a partial body open). Reads after the
    body are the app waiting for a disconnect and are not timed."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        done = False

        async def timed() -> Message:
            nonlocal deadline, done
            if done:
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):  # a timer, not a task per read
                    message = await receive()
            except TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {self.timeout:g} seconds",
                               headers={"Connection": "close"}) from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
