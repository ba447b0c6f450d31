"""`POST /caption` and `POST /vqa`: the captioner and the VQA model on an uploaded image.

Each model runs one request at a time (`Component.serial`): they use every core already, and
running several at once only adds memory and latency.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Form, UploadFile

from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.components import Component
from rsrag.service.deps import get_components, get_decoder
from rsrag.service.errors import ApiError
from rsrag.service.routes import UPLOAD_ERRORS, error_docs, image_file
from rsrag.service.uploads import ImageDecoder

router = APIRouter(tags=["models"])


@router.post("/caption", response_model=S.CaptionResponse, responses=error_docs(*UPLOAD_ERRORS, 503))
def caption(file: UploadFile = image_file("image to caption"), beam_size: int = Form(3, ge=1, le=8),
            decoder: ImageDecoder = Depends(get_decoder),
            components: dict[str, Component] = Depends(get_components)) -> dict:
    """Describe an uploaded image in one sentence."""
    image = decoder.read(file).image
    component = components["caption"]
    model = component.get()
    t0 = time.perf_counter()
    with component.serial:
        text = model.caption([image], beam_size=beam_size)[0]
    return {"caption": text, "took_ms": round((time.perf_counter() - t0) * 1000, 1)}


@router.post("/vqa", response_model=S.VQAResponse, responses=error_docs(*UPLOAD_ERRORS, 503))
def vqa(file: UploadFile = image_file("the image the question is about"),
        question: str = Form(..., min_length=1, max_length=500), decoder: ImageDecoder = Depends(get_decoder),
        components: dict[str, Component] = Depends(get_components)) -> dict:
    """Answer a question about an uploaded image (yes/no, counts, land cover, ...)."""
    image = decoder.read(file).image
    if not question.strip():
        raise ApiError(400, "the question is empty")
    component = components["vqa"]
    model = component.get()
    try:
        with component.serial:
            result = model.answer(image, question)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return public.clean(result.to_dict())
