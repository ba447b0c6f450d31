"""`POST /search` (text: dense, BM25 or hybrid, with filters) and `POST /search/image`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Form, UploadFile

from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.deps import get_decoder, get_handle
from rsrag.service.routes import UPLOAD_ERRORS, error_docs, image_file
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder

router = APIRouter(tags=["search"])


@router.post("/search", response_model=S.SearchResponse, responses=error_docs(400, 413, 422))
async def search(body: S.SearchRequest, handle: LibraryHandle = Depends(get_handle)) -> dict:
    """Search by text: dense, BM25 or hybrid, with optional metadata filters."""
    # The query is encoded on the encoder threads while the event loop serves other requests;
    # the search itself (FAISS + BM25, well under a millisecond on UCM-sized indexes) then runs
    # inline, which costs less than handing it to a worker thread.
    t0 = time.perf_counter()
    public.check_filters(body.filters, handle.reader())
    vector = await handle.query_encoder.encode_async(body.query) if body.mode != "bm25" else None
    hits = handle.reader().search_text(body.query, body.k, mode=body.mode, filters=body.filters, bbox=body.bbox,
                                       vector=vector)
    return {"query": body.query, "mode": body.mode, "k": body.k,
            "took_ms": round((time.perf_counter() - t0) * 1000, 2), "hits": [public.hit(h) for h in hits]}


@router.post("/search/image", response_model=S.SearchResponse, responses=error_docs(*UPLOAD_ERRORS))
def search_image(file: UploadFile = image_file("query image"), k: int = Form(10, ge=1, le=100),
                 handle: LibraryHandle = Depends(get_handle), decoder: ImageDecoder = Depends(get_decoder)) -> dict:
    """Images most like the uploaded one."""
    t0 = time.perf_counter()
    hits = handle.reader().search_image(decoder.read(file).image, k)
    return {"mode": "image", "k": k, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
            "hits": [public.hit(h) for h in hits]}
