"""`create_app(library)`: the FastAPI app behind `rsrag serve` (search, items, QA, caption, VQA, web page).

Endpoints are plain functions run in the server's thread pool (decoding, encoding and FAISS all
release the GIL for much of their work); the two that take JSON *or* multipart bodies (`POST /qa`,
`POST /items`) parse their body themselves and describe both forms in the OpenAPI document.
Reads go to an immutable snapshot of the index and writes to one writer (see `state.py`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import os
import time
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from rsrag.data import ImageRecord
from rsrag.imageio import load_image
from rsrag.index import Library
from rsrag.index.library import Hit as LibraryHit
from rsrag.index.store import sql_literal
from rsrag.service import schemas as S
from rsrag.service.components import default_components
from rsrag.service.errors import ApiError, install_error_handlers
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import MiB, BodyLimitMiddleware, UploadedImage, UploadLimits, check_image

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_ENV = "RSRAG_API_TOKEN"


_DESCRIPTIONS = {400: "bad input (filter, image, question)", 401: "missing bearer token",
                 403: "wrong token, or writes disabled (no RSRAG_API_TOKEN)", 404: "no such item",
                 409: "an item with that id exists (send replace=true)", 413: "upload or image too large",
                 415: "not a supported image format / body type", 422: "request does not match the schema",
                 503: "index busy, or a model that is not available"}
_UPLOAD_ERRORS = (400, 413, 415, 422)


def _errors(*codes: int) -> dict:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {c: {"model": S.ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null, numpy scalars plain numbers, paths are dropped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if k != "path"}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _clean(value.item())
    return value


def image_url(item_id: str) -> str:
    return f"/items/{quote(str(item_id), safe='/:')}/image"


def _item(hit: LibraryHit) -> dict:
    return {"id": hit.id, "label": hit.label, "captions": list(hit.captions), "split": hit.split,
            "metadata": _clean(dict(hit.metadata)), "image_url": image_url(hit.id)}


def _hit(hit: LibraryHit) -> dict:
    return {"rank": hit.rank, "score": _clean(float(hit.score)), "parts": _clean(dict(hit.parts)), **_item(hit)}


def _with_image_urls(answer: dict) -> dict:
    """An answer as clients see it: no server paths; evidence and citations link the thumbnail of
    the item they come from (`record_id`, else `id`)."""
    out = _clean(answer)
    for entry in [*(out.get("evidence") or []), *(out.get("citations") or [])]:
        if isinstance(entry, dict):
            source = entry.get("record_id", entry.get("id"))
            if source is not None:
                entry.setdefault("image_url", image_url(source))
    return out


@lru_cache(maxsize=1024)
def _thumbnail(path: str, mtime_ns: int, size: int) -> bytes:
    """JPEG thumbnail of an indexed image (cached by path, modification time and size)."""
    image = load_image(path)
    image.thumbnail((size, size))
    buf = BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


# ---- JSON-or-multipart bodies --------------------------------------------------------------------
def _structured_fields(model: type[BaseModel]) -> dict[str, str]:
    """Fields that are lists or objects ("array" / "object"): a form sends them as JSON or, for a
    list, as one form field per item."""
    out = {}
    for name, prop in model.model_json_schema()["properties"].items():
        kinds = {p.get("type") for p in prop.get("anyOf", [prop])} | ({"object"} if "$ref" in prop else set())
        for kind in ("array", "object"):
            if kind in kinds:
                out[name] = kind
    return out


def _form_value(name: str, values: list[str], kind: str) -> Any:
    """A list or object from form fields: one JSON-encoded value, or (lists) one field per item,
    each item JSON if it is a JSON object (history turns) and plain text otherwise (captions)."""
    if len(values) == 1:
        try:
            parsed = json.loads(values[0])
        except ValueError:
            parsed = None
        if isinstance(parsed, list if kind == "array" else dict):
            return parsed
    if kind == "object":
        raise ApiError(422, f"{name} must be a JSON-encoded object")
    items = []
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        items.append(parsed if isinstance(parsed, dict) else value)
    return items


def _body_spec(model: type[BaseModel]) -> dict:
    """openapi_extra for a body that is either `model` as JSON or the same fields as multipart
    (lists and objects as JSON-encoded parts, the image as the `file` part)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    structured = _structured_fields(model)
    props = {name: prop for name, prop in schema["properties"].items() if name != "image_base64"}
    props["file"] = {"type": "string", "format": "binary", "minLength": 1,
                     "description": "the image (JPEG, PNG, TIFF or WebP)"}
    as_form = {"image_base64": "file"}  # in a form the image is the `file` part
    form: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        form["required"] = [as_form.get(f, f) for f in schema["required"]]
    if "anyOf" in schema:  # one of these must be there
        form["anyOf"] = [{"required": [as_form.get(f, f) for f in alt["required"]]} for alt in schema["anyOf"]]
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                             "examples": {f"example{i}": {"value": v} for i, v in
                                          enumerate(schema.get("examples", []), start=1)}},
        "multipart/form-data": {"schema": form, "encoding": {
            name: {"contentType": "application/json"} for name in structured}}}}}


async def _read_body(request: Request, model: type[BaseModel],
                     limits: UploadLimits) -> tuple[Any, UploadedImage | None]:
    """Parse a JSON or form body into `model`, plus its checked image (`image_base64` / `file`)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    image: bytes | None = None
    if ctype == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(422, "body must be a JSON object")
        raw = data.pop("image_base64", None)
        if raw is not None:
            try:
                image = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ApiError(400, "image_base64 is not valid base64", code="bad_image") from None
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data = {}
        structured = _structured_fields(model)
        form = await request.form(max_files=1, max_fields=64, max_part_size=MiB)
        try:
            for key in form.keys():
                values = form.getlist(key)
                if key == "file" and len(values) == 1 and not isinstance(values[0], str):
                    image = await values[0].read(limits.max_bytes + 1)
                elif key in ("file", "image_base64") or not all(isinstance(v, str) for v in values):
                    raise ApiError(422, f"{key}: send the image as one file part named 'file'")
                elif key in structured:
                    data[key] = _form_value(key, values, structured[key])
                else:
                    data[key] = values[0] if len(values) == 1 else values
        finally:
            await form.close()
    else:
        raise ApiError(415, "send the body as application/json or multipart/form-data")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    upload = await run_in_threadpool(check_image, image, limits) if image is not None else None
    return parsed, upload


def _drop_unused_upload(lib: Library, path: Path) -> None:
    """Remove a file under the index's uploads folder once no record points at it (uploads are
    content-addressed, so two items can share one). Called under the write lock."""
    uploads = (lib.folder / "uploads").resolve()
    if path.resolve().parent != uploads:
        return
    still_used = lib.store.scan(["path"], where=f"path = {sql_literal(str(path))}").num_rows
    if not still_used:
        path.unlink(missing_ok=True)


# ---- the app --------------------------------------------------------------------------------------
def create_app(library: Library, *, token: str | None = None, ask: Callable | None = None, captioner: Any = None,
               vqa: Any = None, limits: UploadLimits = UploadLimits(), thumb_size: int = 256,
               generators: Sequence[str] = ("extractive",)) -> FastAPI:
    """The API over `library` (opened for writing; searches use snapshots of it).

    `token`: bearer token for POST/DELETE /items; None reads RSRAG_API_TOKEN; empty disables writes.
    `ask`, `captioner`, `vqa`: the QA function and models; by default rsrag's own, loaded on first use.
    `generators`: the QA generators clients may pick (others may call out to remote services or
    load large models, so the operator enables them).
    """
    token = os.environ.get(TOKEN_ENV, "") if token is None else token
    handle = LibraryHandle(library)
    components = default_components(ask, captioner, vqa)
    app = FastAPI(title="rsrag", version="0.1.0", description=(
        "Search a remote-sensing image library by text or image, ask questions grounded in it, caption "
        "images and answer questions about them. Every error answers `{\"error\": {status, code, message, "
        "details}}`. Writes (`POST /items`, `DELETE /items/{id}`) need `Authorization: Bearer $RSRAG_API_TOKEN`."))
    app.state.handle = handle
    app.state.components = components
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_request_bytes)
    bearer = HTTPBearer(auto_error=False, description="the server's RSRAG_API_TOKEN")

    def writer(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """Writes need the token; with none configured they are off."""
        if not token:
            raise ApiError(403, f"writes are disabled on this server (start it with {TOKEN_ENV} set)",
                           code="writes_disabled")
        if creds is None:
            raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise ApiError(403, "invalid bearer token")

    def image_file(description: str) -> Any:
        """A required image upload parameter (non-empty, as the schema says)."""
        return File(..., description=f"{description} (JPEG, PNG, TIFF or WebP)", json_schema_extra={"minLength": 1})

    def read_upload(file: UploadFile) -> UploadedImage:
        return check_image(file.file.read(limits.max_bytes + 1), limits)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=S.Health, tags=["service"])
    def health() -> dict:
        """Liveness, index size and which models are loaded."""
        snap = handle.reader()
        return {"status": "ok", "index": snap.name, "records": len(snap), "encoder": snap.encoder_id,
                "writes_enabled": bool(token), "components": {k: c.state for k, c in components.items()}}

    @app.post("/search", response_model=S.SearchResponse, tags=["search"], responses=_errors(400, 413, 422))
    async def search(body: S.SearchRequest) -> dict:
        """Search by text: dense, BM25 or hybrid, with optional metadata filters."""
        # The query is encoded on the encoder threads while the event loop serves other requests;
        # the search itself (FAISS + BM25, well under a millisecond on UCM-sized indexes) then runs
        # inline, which costs less than handing it to a worker thread.
        t0 = time.perf_counter()
        if body.mode != "bm25":
            await handle.query_encoder.prepare(body.query)
        hits = handle.reader().search_text(body.query, body.k, mode=body.mode, filters=body.filters, bbox=body.bbox)
        return {"query": body.query, "mode": body.mode, "k": body.k,
                "took_ms": round((time.perf_counter() - t0) * 1000, 2), "hits": [_hit(h) for h in hits]}

    @app.post("/search/image", response_model=S.SearchResponse, tags=["search"], responses=_errors(*_UPLOAD_ERRORS))
    def search_image(file: UploadFile = image_file("query image"),
                     k: int = Form(10, ge=1, le=100)) -> dict:
        """Images most like the uploaded one."""
        t0 = time.perf_counter()
        hits = handle.reader().search_image(read_upload(file).image, k)
        return {"mode": "image", "k": k, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
                "hits": [_hit(h) for h in hits]}

    def get_item(item_id: str) -> LibraryHit:
        found = handle.reader().get([item_id])
        if not found:
            raise ApiError(404, f"no item {item_id!r}")
        return found[0]

    @app.get("/items/{item_id:path}/image", tags=["items"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail"}, **_errors(404, 422)})
    def item_image(item_id: str, size: int = Query(thumb_size, ge=16, le=1024, description="longest side")) -> Response:
        """A JPEG thumbnail of an item's image."""
        path = get_item(item_id).path
        try:
            mtime = os.stat(path).st_mtime_ns
        except (OSError, TypeError):
            raise ApiError(404, f"the image of item {item_id!r} is missing on the server") from None
        return Response(_thumbnail(str(path), mtime, size), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/items/{item_id:path}", response_model=S.Item, tags=["items"], responses=_errors(404, 422))
    def item(item_id: str) -> dict:
        """One item: label, captions, split and metadata."""
        return _item(get_item(item_id))

    def add_item(body: S.ItemIn, upload: UploadedImage) -> dict:
        with handle.writing() as lib:
            path = upload.save_under(lib.folder / "uploads")
            replaced = handle.refresh().get([body.id]) if body.replace else []  # the snapshot: no full scan
            record = ImageRecord(body.id, path, body.split, body.label, list(body.captions), dict(body.metadata))
            report = lib.add([record], upsert=body.replace, batch_size=1, workers=1)
            for stale in {path, *(Path(h.path) for h in replaced)}:  # a refused upload, a replaced image
                _drop_unused_upload(lib, stale)
        if report.skipped:
            raise ApiError(409, f"item {body.id!r} already exists; send replace=true to replace it")
        if report.failed:
            raise ApiError(400, f"cannot index the image: {report.failed[0][2]}", code="bad_image")
        return {"replaced": bool(report.replaced), "item": _item(handle.refresh().get([body.id])[0])}

    @app.post("/items", status_code=201, response_model=S.ItemCreated, tags=["items"], dependencies=[Depends(writer)],
              openapi_extra=_body_spec(S.ItemIn),
              responses=_errors(400, 401, 403, 409, 413, 415, 422, 503))
    async def create_item(request: Request) -> dict:
        """Add an item (image + label, captions, metadata); needs the bearer token. The image is stored
        under the index folder by its hash."""
        body, upload = await _read_body(request, S.ItemIn, limits)
        if upload is None:
            raise ApiError(422, "an item needs an image: a 'file' part or 'image_base64'")
        return await run_in_threadpool(add_item, body, upload)

    @app.delete("/items/{item_id:path}", response_model=S.Deleted, tags=["items"], dependencies=[Depends(writer)],
                responses=_errors(401, 403, 404, 422, 503))
    def delete_item(item_id: str) -> dict:
        """Delete an item; needs the bearer token. An uploaded image no other item uses is removed too."""
        with handle.writing() as lib:
            before = handle.refresh().get([item_id])
            found = lib.delete([item_id])
            if found and before:
                _drop_unused_upload(lib, Path(before[0].path))
        if not found:
            raise ApiError(404, f"no item {item_id!r}")
        return {"deleted": item_id}

    def answer(body: S.QARequest, upload: UploadedImage | None) -> dict:
        question = (body.question or "").strip() or None
        if question is None and upload is None:
            raise ApiError(400, "ask a question, upload an image, or both")
        if body.generator not in generators:
            raise ApiError(400, f"generator {body.generator!r} is not enabled on this server; "
                                f"choose one of {', '.join(generators)}")
        ask_fn = components["qa"].get()
        history = [t.model_dump() for t in body.history] or None
        try:
            result = ask_fn(handle.reader(), question, upload.image if upload else None, history=history,
                            generator=body.generator, k=body.k)
        except ValueError as exc:  # QAInputError, unknown generator, ...: the caller's to fix
            raise ApiError(400, str(exc)) from None
        return _with_image_urls(result.to_dict())

    @app.post("/qa", response_model=S.QAResponse, tags=["qa"], openapi_extra=_body_spec(S.QARequest),
              responses=_errors(400, 413, 415, 422, 503))
    async def qa(request: Request) -> dict:
        """Answer a question about the library (and/or an uploaded image), citing the items used."""
        body, upload = await _read_body(request, S.QARequest, limits)
        return await run_in_threadpool(answer, body, upload)

    @app.post("/caption", response_model=S.CaptionResponse, tags=["models"],
              responses=_errors(*_UPLOAD_ERRORS, 503))
    def caption(file: UploadFile = image_file("image to caption"),
                beam_size: int = Form(3, ge=1, le=8)) -> dict:
        """Describe an uploaded image in one sentence."""
        image = read_upload(file).image
        component = components["caption"]
        model = component.get()
        t0 = time.perf_counter()
        with component.serial:
            text = model.caption([image], beam_size=beam_size)[0]
        return {"caption": text, "took_ms": round((time.perf_counter() - t0) * 1000, 1)}

    @app.post("/vqa", response_model=S.VQAResponse, tags=["models"], responses=_errors(*_UPLOAD_ERRORS, 503))
    def vqa_route(file: UploadFile = image_file("the image the question is about"),
                  question: str = Form(..., min_length=1, max_length=500)) -> dict:
        """Answer a question about an uploaded image (yes/no, counts, land cover, ...)."""
        image = read_upload(file).image
        if not question.strip():
            raise ApiError(400, "the question is empty")
        component = components["vqa"]
        model = component.get()
        try:
            with component.serial:
                result = model.answer(image, question)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return _clean(result.to_dict())

    def openapi() -> dict:
        """FastAPI's document plus the models only named in hand-written request bodies."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            models = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (S.ItemIn, S.QARequest):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                models.update(model_schema.pop("$defs", {}))
                models[model.__name__] = model_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
