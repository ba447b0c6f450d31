"""Scenes on the map: `GET /scenes` (the scenes of a geo index, with their bounds and dates),
`GET /scenes/{scene}/image` (the scene warped to Web Mercator as a PNG overlay) and `POST /search/like`
(more like a stored chip, within a place and time)."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from io import BytesIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.deps import get_handle
from rsrag.service.errors import ApiError
from rsrag.service.routes import error_docs
from rsrag.service.routes.search import place_of, respond
from rsrag.service.state import LibraryHandle

router = APIRouter(tags=["geo"])
TILE_URL_ENV = "RSRAG_TILE_URL"  # an optional XYZ tile server for the map's basemap ({z}/{x}/{y})
SCENE_COLUMNS = ("scene", "datetime", "minx", "miny", "maxx", "maxy", "bands", "stretch", "path")


_SCENES: dict[tuple[str, int], dict[str, dict]] = {}  # (index folder, table version) -> _scene_rows


def _scene_rows(handle: LibraryHandle) -> dict[str, dict]:
    """scene id -> its date, bbox (union of chip footprints), chip count, and how it was read; one scan
    of the chips per table version, not one per request (the map asks for every scene's image)."""
    lib = handle.reader()
    key = (str(lib.location), lib.version)
    scenes = _SCENES.get(key)
    if scenes is None:
        scenes = _scan_scenes(lib)
        _SCENES.clear()  # only the current version is worth keeping
        _SCENES[key] = scenes
    return scenes


def _scan_scenes(lib) -> dict[str, dict]:
    columns = lib.columns()
    if "scene" not in columns:
        return {}
    scenes: dict[str, dict] = {}
    for row in lib.rows([c for c in SCENE_COLUMNS if c in columns]).to_pylist():
        entry = scenes.setdefault(row["scene"], {"scene": row["scene"], "datetime": row.get("datetime"), "chips": 0,
                                                 "bbox": None, "_path": row["path"], "_bands": row.get("bands"),
                                                 "_stretch": row.get("stretch")})
        entry["chips"] += 1
        if row.get("minx") is not None and row["minx"] <= row["maxx"]:
            box = entry["bbox"] or [row["minx"], row["miny"], row["maxx"], row["maxy"]]
            entry["bbox"] = [min(box[0], row["minx"]), min(box[1], row["miny"]), max(box[2], row["maxx"]),
                             max(box[3], row["maxy"])]
    return scenes


@router.get("/scenes", response_model=S.ScenesResponse)
def list_scenes(handle: LibraryHandle = Depends(get_handle)) -> dict:
    """The scenes of the index (empty for an index of plain images), oldest first."""
    scenes = sorted(_scene_rows(handle).values(), key=lambda s: (s["datetime"] or "", s["scene"]))
    out = []
    for s in scenes:
        if not s["bbox"]:
            continue
        try:
            bounds = list(_overlay_bounds(str(s["_path"])))
        except (OSError, ValueError):
            bounds = None
        out.append({**{k: v for k, v in s.items() if not k.startswith("_")}, "overlay_bounds": bounds,
                    "image_url": f"/scenes/{quote(s['scene'], safe='')}/image"})
    return {"tile_url": os.environ.get(TILE_URL_ENV) or None, "scenes": out}


@lru_cache(maxsize=1024)
def _overlay_bounds(path: str) -> tuple[float, float, float, float]:
    from rsrag.geo.render import mercator_bounds

    return mercator_bounds(path)


@lru_cache(maxsize=32)
def _overlay(path: str, mtime_ns: int, bands: str | None, stretch: str | None, size: int) -> tuple[bytes, tuple]:
    from PIL import Image

    from rsrag.geo.render import mercator_overview
    from rsrag.geo.scene import Stretch

    rgba, bounds = mercator_overview(path, bands, Stretch.from_text(stretch), size)
    buf = BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=False)
    return buf.getvalue(), bounds


@router.get("/scenes/{scene}/image", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the scene in Web Mercator; bounds in X-Bounds "
                                                      "(south,west,north,east)"}, **error_docs(404, 422)})
def scene_image(scene: str, size: int = Query(1024, ge=64, le=2048, description="longest side"),
                handle: LibraryHandle = Depends(get_handle)) -> Response:
    """The whole scene as a PNG map overlay (its band rule and stretch, transparent outside)."""
    entry = _scene_rows(handle).get(scene)
    if entry is None or not entry["bbox"]:
        raise ApiError(404, f"no scene {scene!r} with a place in this index")
    try:
        mtime = os.stat(entry["_path"]).st_mtime_ns
        png, bounds = _overlay(str(entry["_path"]), mtime, entry["_bands"], entry["_stretch"], size)
    except (OSError, ValueError) as exc:
        raise ApiError(404, f"the imagery of scene {scene!r} cannot be read on the server") from exc
    return Response(png, media_type="image/png", headers={
        "Cache-Control": "max-age=3600", "X-Bounds": ",".join(f"{v:.7f}" for v in bounds)})


@router.post("/search/like", response_model=S.SearchResponse, responses=error_docs(400, 404, 422))
def search_like(body: S.LikeRequest, request: Request, handle: LibraryHandle = Depends(get_handle)):
    """More like a stored item (its own vector), optionally within a place and time."""
    t0 = time.perf_counter()
    from rsrag.geo.examples import more_like

    try:
        hits = more_like(handle.reader(), body.id, body.k, place=place_of(body))
    except KeyError:
        raise ApiError(404, f"no item {body.id!r}") from None
    return respond({"mode": "like", "k": body.k, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
                    "hits": [public.hit(h) for h in hits]}, request)
