"""Items: `GET /items/{id}` and its JPEG thumbnail, `POST /items` and `DELETE /items/{id}` (writes
need the bearer token).

An uploaded image is stored under the index folder as `uploads/<sha256><suffix>` and embedded from
the image already decoded (under the upload limits) for the checks, so the index never decodes an
upload a second time. Whatever happens to an add (refused, conflicting, a value that does not fit
a column, a busy index, an unexpected error), an uploaded file that no record points at is removed.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any
from io import BytesIO
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rsrag.data import ImageRecord
from rsrag.index import Hit, Library
from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.bodies import body_spec, read_body
from rsrag.service.deps import Settings, get_decoder, get_handle, get_settings, require_writer
from rsrag.service.errors import ApiError
from rsrag.service.routes import error_docs
from rsrag.service.state import LibraryHandle
from rsrag.geo.chips import ChipSource
from rsrag.service.uploads import ImageDecoder, UploadedImage

log = logging.getLogger(__name__)
router = APIRouter(tags=["items"])
_CHIPS = ChipSource()  # scene chips read back from their windows (a few scenes kept open)


def find(handle: LibraryHandle, item_id: str) -> Hit:
    found = handle.reader().get([item_id])
    if not found:
        raise ApiError(404, f"no item {item_id!r}")
    return found[0]


@lru_cache(maxsize=1024)
def _thumbnail(decoder: ImageDecoder, path: str, mtime_ns: int, size: int) -> bytes:
    """JPEG thumbnail of an indexed image (cached by path, modification time and size)."""
    return _jpeg(decoder.load_stored(path, size_hint=size), size)


def _jpeg(image: Any, size: int) -> bytes:
    """An image shrunk to fit `size` and encoded as a JPEG thumbnail."""
    image.thumbnail((size, size))
    buf = BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@router.get("/items/{item_id:path}/image", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail"}, **error_docs(404, 422)})
def item_image(item_id: str, size: int | None = Query(None, ge=16, le=1024, description="longest side"),
               handle: LibraryHandle = Depends(get_handle), settings: Settings = Depends(get_settings),
               decoder: ImageDecoder = Depends(get_decoder)) -> Response:
    """A JPEG thumbnail of an item's image (default size: the server's thumbnail size); a scene chip's
    is read from its window of the scene."""
    hit = find(handle, item_id)
    path = hit.path
    try:
        mtime = os.stat(path).st_mtime_ns
    except (OSError, TypeError):
        raise ApiError(404, f"the image of item {item_id!r} is missing on the server") from None
    side = size or settings.thumb_size
    meta = hit.metadata
    if meta.get("window"):
        chip = tuple(str(meta.get(k) or "") for k in ("window", "size", "bands", "stretch"))
        try:
            data = _chip_thumbnail(str(path), mtime, chip, side)
        except (OSError, ValueError) as exc:
            raise ApiError(404, f"the image of item {item_id!r} cannot be read on the server") from exc
    else:
        data = _thumbnail(decoder, str(path), mtime, side)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@lru_cache(maxsize=1024)
def _chip_thumbnail(path: str, mtime_ns: int, chip: tuple[str, str, str, str], size: int) -> bytes:
    """JPEG thumbnail of a scene chip, read from its window exactly as it was embedded."""
    from PIL import Image

    window, chip_size, bands, stretch = chip
    return _jpeg(Image.fromarray(_CHIPS.read(path, {"window": window, "size": chip_size, "bands": bands,
                                                    "stretch": stretch})), size)


@router.get("/items/{item_id:path}", response_model=S.Item, responses=error_docs(404, 422))
def get_item(item_id: str, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """One item: label, captions, split and metadata."""
    return public.item(find(handle, item_id))


def drop_unused_upload(lib: Library, path: Path) -> None:
    """Remove a file under the index's uploads folder once no record points at it (uploads are
    content-addressed, so two items can share one). Called under the service's write lock."""
    uploads = (lib.folder / "uploads").resolve()
    if path.resolve().parent != uploads:
        return
    if not lib.count(filters={"path": str(path)}):
        path.unlink(missing_ok=True)


def add_item(handle: LibraryHandle, body: S.ItemIn, upload: UploadedImage) -> dict:
    """Store the upload, embed it and add the record; on any failure the upload is not kept."""
    if not body.replace and handle.reader().get([body.id]):  # the add checks again under the lock
        raise ApiError(409, f"item {body.id!r} already exists; send replace=true to replace it")
    vector = handle.library.encoder.encode_images([upload.image])
    with handle.writing() as lib:
        path = upload.save_under(lib.folder / "uploads")
        replaced: list[Hit] = []
        stored = False
        try:
            replaced = handle.refresh().get([body.id]) if body.replace else []  # the snapshot: no full scan
            record = ImageRecord(body.id, path, body.split, body.label, list(body.captions), dict(body.metadata))
            report = lib.add_embedded([record], vector, upsert=body.replace)
            stored = report.embedded > 0
        finally:  # a refused or failed add, or a replaced item's old image (a stored upload is in use)
            unused = {Path(h.path) for h in replaced} - {path} if stored else {path, *(Path(h.path) for h in replaced)}
            for stale in unused:
                try:
                    drop_unused_upload(lib, stale)
                except Exception:  # noqa: BLE001 - the add's own error matters more
                    log.exception("could not check whether %s is still used", stale)
    if report.skipped:
        raise ApiError(409, f"item {body.id!r} already exists; send replace=true to replace it")
    return {"replaced": bool(report.replaced), "item": public.item(handle.refresh().get([body.id])[0])}


@router.post("/items", status_code=201, response_model=S.ItemCreated, dependencies=[Depends(require_writer)],
             openapi_extra=body_spec(S.ItemIn), responses=error_docs(400, 401, 403, 408, 409, 413, 415, 422, 503))
async def create_item(request: Request, handle: LibraryHandle = Depends(get_handle),
                      decoder: ImageDecoder = Depends(get_decoder)) -> dict:
    """Add an item (image + label, captions, metadata); needs the bearer token. The image is stored
    under the index folder by its hash."""
    body, upload = await read_body(request, S.ItemIn, decoder)
    if upload is None:
        raise ApiError(422, "an item needs an image: a 'file' part or 'image_base64'")
    return await run_in_threadpool(add_item, handle, body, upload)


@router.delete("/items/{item_id:path}", response_model=S.Deleted, dependencies=[Depends(require_writer)],
               responses=error_docs(401, 403, 404, 422, 503))
def delete_item(item_id: str, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """Delete an item; needs the bearer token. An uploaded image no other item uses is removed too."""
    with handle.writing() as lib:
        before = handle.refresh().get([item_id])
        found = lib.delete([item_id])
        if found and before:
            drop_unused_upload(lib, Path(before[0].path))
    if not found:
        raise ApiError(404, f"no item {item_id!r}")
    return {"deleted": item_id}
