"""The API's endpoints, one module per area, each an `APIRouter` whose routes get what they need
(library handle, settings, decoder, models) as dependencies from `rsrag.service.deps`:

- `meta`: the web page and `GET /health`
- `search`: `POST /search` (text) and `POST /search/image`
- `items`: `GET /items/{id}`, its thumbnail, `POST /items` and `DELETE /items/{id}`
- `qa`: `POST /qa`
- `models`: `POST /caption` and `POST /vqa`
"""

from __future__ import annotations

from typing import Any

from fastapi import File

from rsrag.service import schemas as S

_DESCRIPTIONS = {400: "bad input (filter, image, question)", 401: "missing bearer token",
                 403: "wrong token, or writes disabled (no RSRAG_API_TOKEN)", 404: "no such item (or conversation)",
                 408: "the request body did not arrive in time",
                 409: "an item with that id exists (send replace=true)", 413: "upload or image too large",
                 415: "not a supported image format / body type", 422: "request does not match the schema",
                 502: "the model server answered with an error (its message is passed on)",
                 503: "index busy, a model that is not available, or a model server that cannot be reached"}
UPLOAD_ERRORS = (400, 408, 413, 415, 422)


def error_docs(*codes: int) -> dict:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {c: {"model": S.ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


def image_file(description: str) -> Any:
    """A required image upload parameter (non-empty, as the schema says)."""
    return File(..., description=f"{description} (JPEG, PNG, TIFF or WebP)", json_schema_extra={"minLength": 1})
