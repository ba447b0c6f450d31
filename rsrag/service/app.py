"""`create_app(library)`: the FastAPI app behind `rsrag serve` (search, items, QA, caption, VQA, web page).

The endpoints live in `rsrag.service.routes` (one `APIRouter` per area) and get the library handle,
settings, image decoder and models as dependencies (`rsrag.service.deps`); this module only wires
them together: the shared `Service` on `app.state`, the error handlers, the request guards (body
size and time, allowed Host headers) and the OpenAPI document. Endpoints are plain functions run in
the server's thread pool (decoding, encoding and FAISS all release the GIL for much of their work),
except text search, which awaits the batched query encoder. Reads go to an immutable snapshot of the
index and writes to one writer (see `state.py`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rsrag.index import Library
from rsrag.service import schemas as S
from rsrag.service.components import default_components
from rsrag.service.deps import TOKEN_ENV, Service, Settings
from rsrag.service.errors import install_error_handlers
from rsrag.service.routes import change, geo, items, meta, models, qa, search
from rsrag.service.routes import localize as localize_routes
from rsrag.service.routes.meta import STATIC
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import BodyLimitMiddleware, BodyTimeoutMiddleware, ImageDecoder, UploadLimits

ALLOWED_HOSTS_ENV = "RSRAG_ALLOWED_HOSTS"
ROUTERS = (meta.router, search.router, geo.router, items.router, qa.router, models.router, change.router,
           localize_routes.router)


def create_app(library: Library, *, token: str | None = None, ask: Callable | None = None, captioner: Any = None,
               vqa: Any = None, limits: UploadLimits = UploadLimits(), thumb_size: int = 256,
               generators: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("extractive",),
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The API over `library` (opened for writing; searches use snapshots of it).

    `token`: bearer token for POST/DELETE /items; None reads RSRAG_API_TOKEN; empty disables writes.
    `ask`, `captioner`, `vqa`: the QA function and models; by default rsrag's own, loaded on first use.
    `generators`: the QA generators clients may pick (others may call out to remote services or
    load large models, so the operator enables them): names, or name -> config (e.g. `{"openai":
    {"url": ..., "model": ..., "api_key_env": "MY_KEY"}}`; a key is read from that variable by the
    generator and never stored in the settings).
    `allowed_hosts`: Host header values to answer (e.g. ["rsrag.example.org", "localhost"]; "*."
    prefixes allowed), against DNS rebinding; None reads RSRAG_ALLOWED_HOSTS (comma-separated);
    empty: any host.
    """
    token = os.environ.get(TOKEN_ENV, "") if token is None else token
    if allowed_hosts is None:
        allowed_hosts = [h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    app = FastAPI(title="rsrag", version="0.1.0", description=(
        "Search a remote-sensing image library by text or image, ask questions grounded in it, caption "
        "images and answer questions about them. Every error answers `{\"error\": {status, code, message, "
        "details}}`. Writes (`POST /items`, `DELETE /items/{id}`) need `Authorization: Bearer $RSRAG_API_TOKEN`."))
    app.state.service = Service(
        handle=LibraryHandle(library),
        settings=Settings(token=token, thumb_size=thumb_size, generators=tuple(generators),
                          generator_configs={name: dict(cfg) for name, cfg in generators.items()}
                          if isinstance(generators, Mapping) else {}),
        decoder=ImageDecoder(limits),
        components=default_components(ask, captioner, vqa))
    install_error_handlers(app)
    app.add_middleware(BodyTimeoutMiddleware, timeout=limits.body_timeout)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_request_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def openapi() -> dict:
        """FastAPI's document plus the models only named in hand-written request bodies."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (S.ItemIn, S.QARequest):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(model_schema.pop("$defs", {}))
                schemas[model.__name__] = model_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
