"""`POST /localize` (a scene of the index, by id: its stored chip vectors are reused) and
`POST /localize/image` (an uploaded image, streamed through the tiler once, pixel coordinates): a
heatmap of where a text query applies, as a PNG overlay for the map, and the top regions (rsrag.localize)."""

from __future__ import annotations

import base64
import time
from io import BytesIO

import numpy as np
from fastapi import APIRouter, Depends, Form, UploadFile

from rsrag.service import schemas as S
from rsrag.service.deps import get_decoder, get_handle
from rsrag.service.errors import ApiError
from rsrag.service.routes import UPLOAD_ERRORS, error_docs, image_file
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder

router = APIRouter(tags=["localize"])


def _png(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _answer(result, took: float, scene: str | None) -> dict:
    from rsrag.geo.heatmap import overlay_rgba, regions_geojson, to_mercator

    data = result.to_dict()
    bounds = None
    if result.heatmap.crs is not None:
        grid, bounds = to_mercator(result.heatmap)
    else:
        grid = result.heatmap.grid
    overlay = overlay_rgba(grid, vmin=0.0, vmax=1.0, alpha=1.0, flat=not result.match)
    return {"query": result.query, "scene": scene, "match": result.match, "message": result.message,
            "peak": data["peak"], "background": data["background"], "chips": result.chips,
            "took_ms": round(took * 1000, 2), "grid": data["grid"], "crs": data["crs"],
            "regions": regions_geojson(result.regions), "overlay_png": _png(overlay),
            "overlay_bounds": list(bounds) if bounds else None}


@router.post("/localize", response_model=S.LocalizeResponse, responses=error_docs(400, 404, 422))
def localize_scene(body: S.LocalizeRequest, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """Where the query applies in an indexed scene (the map's overlay is drawn flat when nothing matches)."""
    from rsrag.localize import LocalizeError, Localizer, indexed_features

    t0 = time.perf_counter()
    lib = handle.reader()
    try:
        features = indexed_features(lib, body.scene)
    except LocalizeError as exc:
        raise ApiError(404, str(exc)) from None
    result = Localizer(lib.encoder).localize(features, body.query, top=body.top)
    return _answer(result, time.perf_counter() - t0, body.scene)


@router.post("/localize/image", response_model=S.LocalizeResponse, responses=error_docs(*UPLOAD_ERRORS))
def localize_image(file: UploadFile = image_file("image to search in"), query: str = Form(..., min_length=1, max_length=500),
                   top: int = Form(10, ge=1, le=50), handle: LibraryHandle = Depends(get_handle),
                   decoder: ImageDecoder = Depends(get_decoder)) -> dict:
    """Where the query applies in an uploaded image (no CRS: regions in pixel coordinates). Images needing
    more chips than the request budget are refused with the limit named (413)."""
    from rsrag.localize import LocalizeError, LocalizeSettings, Localizer
    from rsrag.localize.api import features_for

    t0 = time.perf_counter()
    image = np.asarray(decoder.read(file).image.convert("RGB"))
    encoder = handle.reader().encoder
    settings = LocalizeSettings()
    try:
        features = features_for(image, encoder=encoder, settings=settings)
    except LocalizeError as exc:
        raise ApiError(413, str(exc)) from None
    result = Localizer(encoder, settings).localize(features, query, top=top)
    return _answer(result, time.perf_counter() - t0, None)
