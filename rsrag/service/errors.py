"""One JSON shape for every error the API returns: `{"error": {"status", "code", "message", "details"}}`.

Handlers cover FastAPI's own errors (unknown route, wrong method, validation), the errors rsrag
raises on purpose (bad filter, busy index, undecodable image) and, last, anything unexpected, which
is logged with its traceback and answered with a 500 that reveals nothing about the server.

Messages say what was wrong in the client's terms. What only the operator needs (generated SQL,
decoder messages, the index folder, a lock holder's pid, the full column list) goes to the log.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from rsrag.imageio import ImageLoadError, ImageTooLargeError
from rsrag.index import FilterError, IndexBusyError, IndexNameError, IndexNotFoundError, LibraryError, RecordError

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         408: "request_timeout", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
         422: "validation_error", 500: "internal_error", 502: "bad_gateway", 503: "unavailable"}

#: Filter errors of `rsrag.index.filters` that describe the client's own input; any other filter
#: error (e.g. the query engine refusing the generated SQL) is answered with `FILTER_FAILED`.
_CLIENT_FILTER_MESSAGES = ("filter value ", "cannot parse filter ", "list column ", "a list of values ",
                           "bbox ", "a bounding-box filter ")
FILTER_FAILED = "the filters cannot be applied to this index; check each value against its column's type"
BUSY = "the index is busy with another write; try again in a moment"


class ApiError(HTTPException):
    """An error answered as is. A subclass of Starlette's HTTPException so that one raised while
    FastAPI reads a body (the upload size limit) keeps its status instead of becoming a generic 400."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, details: list | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code or CODES.get(status, "error")
        self.details = details


def error_body(status: int, message: str, code: str | None = None, details: list | None = None) -> dict:
    return {"error": {"status": status, "code": code or CODES.get(status, "error"), "message": message,
                      "details": details}}


def error_response(status: int, message: str, *, code: str | None = None, details: list | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, details), status_code=status, headers=headers)


def _validation_details(errors: list[dict[str, Any]]) -> list[dict]:
    """Where and what, without echoing the input (it can be a megabyte of base64)."""
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors[:20]]


def library_error_status(exc: LibraryError) -> int:
    if isinstance(exc, IndexBusyError):
        return 503
    if isinstance(exc, IndexNotFoundError):
        return 404
    return 400  # FilterError, RecordError, IndexNameError, ...: the request's values


def library_error_message(exc: LibraryError) -> str:
    """What a client is told about a library error (the full text goes to the log)."""
    message = str(exc)
    if isinstance(exc, IndexBusyError):
        return BUSY
    if isinstance(exc, FilterError):
        return message if message.startswith(_CLIENT_FILTER_MESSAGES) else FILTER_FAILED
    if isinstance(exc, (RecordError, IndexNameError)):
        return message  # about a value the client sent
    if isinstance(exc, IndexNotFoundError):
        return "the index is not available"
    return "the index cannot serve this request"


def image_error(exc: ImageLoadError, field: str = "image") -> "ApiError":
    """413 for an image above a limit (the message states it), else 400 naming what is wrong."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, f"{field}: {exc.reason}")
    return ApiError(400, f"{field}: cannot decode image: {exc.reason}", code="bad_image")


def flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, descending into included routers (FastAPI includes an APIRouter lazily, as one
    entry holding the `original_router`; the service includes its routers without a prefix)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from flat_routes(original.routes)
        else:
            yield route


def _allowed_methods(request: Request) -> str:
    """The methods of the route this path resolves to, across every route sharing its template.
    Starlette names only the first route's, which is wrong where two routes share a template
    (GET and DELETE /items/{id})."""
    routes = list(flat_routes(request.app.router.routes))
    first = next((r for r in routes if r.matches(request.scope)[0] is not Match.NONE), None)
    template = getattr(first, "path", None)
    methods = {m for r in routes if getattr(r, "path", None) == template for m in (getattr(r, "methods", None) or ())}
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through `error_response`."""

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error").replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, message, code=getattr(exc, "code", None),
                              details=getattr(exc, "details", None), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(list(exc.errors()))
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path")) or "request"
        return error_response(422, f"invalid {where}: {first['msg']}", details=details)

    @app.exception_handler(ImageLoadError)
    async def _image(request: Request, exc: ImageLoadError) -> JSONResponse:
        log.info("image refused on %s %s: %s", request.method, request.url.path, exc)
        return await _http(request, image_error(exc))

    @app.exception_handler(LibraryError)
    async def _library(request: Request, exc: LibraryError) -> JSONResponse:
        status = library_error_status(exc)
        log.log(logging.WARNING if status >= 500 else logging.INFO, "%s on %s %s: %s: %s", status, request.method,
                request.url.path, type(exc).__name__, exc)
        return error_response(status, library_error_message(exc), headers={"Retry-After": "1"} if status == 503 else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")
