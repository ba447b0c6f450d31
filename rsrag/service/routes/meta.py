"""The web page at `/` and `GET /health`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from rsrag.service import schemas as S
from rsrag.service.components import Component
from rsrag.service.deps import Settings, get_components, get_handle, get_settings
from rsrag.service.state import LibraryHandle

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/health", response_model=S.Health, tags=["service"])
def health(handle: LibraryHandle = Depends(get_handle), settings: Settings = Depends(get_settings),
                 components: dict[str, Component] = Depends(get_components)) -> dict:
    """Liveness, index size and which models are loaded."""
    snap = handle.reader()
    return {"status": "ok", "index": snap.name, "records": len(snap), "encoder": snap.encoder_id,
            "writes_enabled": bool(settings.token), "components": {k: c.state for k, c in components.items()}}
