"""`POST /change`: the change map between two dates of the served index's series (regions with
areas, before -> after labels, sentences, the chips compared); `GET /change/dates`: its dates and each
date's scene image URL; `GET /change/overlay.png?before=&after=`: the change map coloured (transparent
where no change), warped to Web Mercator like the scene images, for the web page's side-by-side view."""

from __future__ import annotations

from io import BytesIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from rsrag.service import schemas as S
from rsrag.service.deps import get_handle
from rsrag.service.errors import ApiError
from rsrag.service.routes import error_docs
from rsrag.service.state import LibraryHandle

router = APIRouter(tags=["change"])


@router.get("/change/dates", responses=error_docs(400))
def change_dates(handle: LibraryHandle = Depends(get_handle)) -> dict:
    """The dated scenes of the served index, oldest first."""
    from rsrag.change.series import series_dates

    return {"dates": [{**{k: v for k, v in s.to_dict().items() if k != "path"},  # no server paths over HTTP
                       "image_url": f"/scenes/{quote(s.scene, safe='')}/image"} for s in series_dates(handle.reader())]}


@router.get("/change/overlay.png", responses=error_docs(400))
def change_overlay(before: str = Query(..., min_length=4, max_length=40), after: str = Query(..., min_length=4, max_length=40),
                   handle: LibraryHandle = Depends(get_handle)) -> Response:
    """The change map of two dates as a transparent PNG (0.5 = the threshold, warmer = more change)."""
    from PIL import Image

    from rsrag.change.detect import ChangeError
    from rsrag.change.series import detect_dates
    from rsrag.geo.heatmap import overlay_rgba, to_mercator

    try:
        result = detect_dates(handle.reader(), before, after)
    except ChangeError as exc:
        raise ApiError(400, str(exc), code="change") from None
    grid = result.heatmap.grid
    if result.heatmap.crs is not None:  # warped like the scene images it is laid over
        grid, _ = to_mercator(result.heatmap)
    buffer = BytesIO()
    Image.fromarray(overlay_rgba(grid, vmin=0.0, vmax=1.0, flat=False, alpha=0.6), "RGBA").save(buffer, "PNG")
    return Response(buffer.getvalue(), media_type="image/png")


@router.post("/change", responses=error_docs(400, 422))
def change(body: S.ChangeRequest, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """Change between two dates of the series: the same as `rsrag change BEFORE AFTER --index I --json`."""
    from rsrag.change.concepts import DEFAULT_CONCEPTS
    from rsrag.change.detect import ChangeError, ChangeOptions
    from rsrag.change.series import detect_dates

    options = ChangeOptions()
    if body.threshold is not None:
        options.threshold = body.threshold
    try:
        result = detect_dates(handle.reader(), body.before, body.after, options=options,
                              concepts=body.concepts or list(DEFAULT_CONCEPTS))
    except ChangeError as exc:
        raise ApiError(400, str(exc), code="change") from None
    body = result.to_dict()
    body["before"], body["after"] = result.dates[0], result.dates[1]  # dates, not server file paths
    body["notes"] = [n for n in body["notes"] if "/" not in n]
    return body
