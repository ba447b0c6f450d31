"""`POST /search` (text: dense, BM25 or hybrid, with filters) and `POST /search/image`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.deps import get_decoder, get_handle
from rsrag.service.errors import ApiError
from rsrag.service.routes import UPLOAD_ERRORS, error_docs, image_file
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder

router = APIRouter(tags=["search"])


GEOJSON = "application/geo+json"


def place_of(body: S.SearchRequest | S.LikeRequest):
    """The request's place and time filter (rsrag.geo.filters.Place), or None; a bad one is a 400."""
    if body.bbox is None and body.near is None and body.within is None and body.after is None and body.before is None:
        return None
    from rsrag.geo.filters import Place, PlaceError

    try:
        return Place.of(bbox=body.bbox, near=body.near, within=body.within, after=body.after, before=body.before)
    except (PlaceError, ValueError) as exc:
        raise ApiError(400, str(exc), code="bad_place") from None


def respond(result: dict, request: Request):
    """JSON, or a GeoJSON FeatureCollection of the hits when the client accepts application/geo+json."""
    if GEOJSON not in request.headers.get("accept", ""):
        return result
    from rsrag.geo.export import to_feature_collection

    collection = to_feature_collection(result["hits"])
    collection["properties"] = {k: v for k, v in result.items() if k != "hits"}
    return JSONResponse(collection, media_type=GEOJSON)


@router.post("/search", response_model=S.SearchResponse, responses={
    **error_docs(400, 413, 422), 200: {"content": {GEOJSON: {"schema": {"type": "object"}}},
                                       "description": "hits, or a GeoJSON FeatureCollection with Accept: " + GEOJSON}})
async def search(body: S.SearchRequest, request: Request, handle: LibraryHandle = Depends(get_handle)):
    """Search by text: dense, BM25 or hybrid, with optional metadata filters, place and time."""
    # The query is encoded on the encoder threads while the event loop serves other requests;
    # the search itself (FAISS + BM25, well under a millisecond on UCM-sized indexes) then runs
    # inline, which costs less than handing it to a worker thread.
    t0 = time.perf_counter()
    lib = handle.reader()  # one snapshot: the filters are checked against the index that is searched
    public.check_filters(body.filters, lib)
    place = place_of(body)
    vector = await handle.query_encoder.encode_async(body.query) if body.mode != "bm25" else None
    hits = lib.search_text(body.query, body.k, mode=body.mode, filters=body.filters, place=place,
                                       vector=vector)
    levels, overall = match_levels(lib, hits, body.mode)
    return respond({"query": body.query, "mode": body.mode, "k": body.k, "match": overall,
                     "took_ms": round((time.perf_counter() - t0) * 1000, 2),
                     "hits": [{**public.hit(h), "match": level} for h, level in zip(hits, levels)]},
                    request)


def match_levels(lib, hits: list, mode: str) -> tuple[list[str | None], str | None]:
    """Each hit's match level from its dense (text-image) score on the encoder's calibrated scale
    (rsrag.encoders.calibration), and the best one's; None where there is no scale or no dense score."""
    from rsrag.encoders.calibration import match_scale

    scale = match_scale(lib.encoder.id) if mode != "bm25" else None
    if scale is None:
        return [None] * len(hits), None
    dense = [h.score if mode == "dense" else h.parts.get("dense") for h in hits]
    levels = [scale.level(s) for s in dense]
    known = [s for s in dense if s is not None]
    return levels, scale.level(max(known)) if known else "none"


@router.post("/search/image", response_model=S.SearchResponse, responses=error_docs(*UPLOAD_ERRORS))
def search_image(file: UploadFile = image_file("query image"), k: int = Form(10, ge=1, le=100),
                 handle: LibraryHandle = Depends(get_handle), decoder: ImageDecoder = Depends(get_decoder)) -> dict:
    """Images most like the uploaded one."""
    t0 = time.perf_counter()
    hits = handle.reader().search_image(decoder.read(file).image, k)
    return {"mode": "image", "k": k, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            "hits": [public.hit(h) for h in hits]}
