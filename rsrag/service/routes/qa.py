"""`POST /qa`: a question about the library (and/or an uploaded image), answered with citations."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.bodies import body_spec, read_body
from rsrag.service.components import Component
from rsrag.service.deps import Settings, get_components, get_decoder, get_handle, get_settings
from rsrag.service.errors import ApiError
from rsrag.service.routes import error_docs
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder, UploadedImage

router = APIRouter(tags=["qa"])


def answer(handle: LibraryHandle, settings: Settings, qa: Component, body: S.QARequest,
           upload: UploadedImage | None) -> dict:
    question = (body.question or "").strip() or None
    if question is None and upload is None:
        raise ApiError(400, "ask a question, upload an image, or both")
    if body.generator not in settings.generators:
        raise ApiError(400, f"generator {body.generator!r} is not enabled on this server; "
                            f"choose one of {', '.join(settings.generators)}")
    ask = qa.get()
    history = [t.model_dump() for t in body.history] or None
    try:
        result = ask(handle.reader(), question, upload.image if upload else None, history=history,
                     generator=body.generator, k=body.k)
    except ValueError as exc:  # QAInputError, unknown generator, ...: the caller's to fix
        raise ApiError(400, str(exc)) from None
    return public.answer(result.to_dict())


@router.post("/qa", response_model=S.QAResponse, openapi_extra=body_spec(S.QARequest),
             responses=error_docs(400, 408, 413, 415, 422, 503))
async def qa(request: Request, handle: LibraryHandle = Depends(get_handle), settings: Settings = Depends(get_settings),
             decoder: ImageDecoder = Depends(get_decoder),
             components: dict[str, Component] = Depends(get_components)) -> dict:
    """Answer a question about the library (and/or an uploaded image), citing the items used."""
    body, upload = await read_body(request, S.QARequest, decoder)
    return await run_in_threadpool(answer, handle, settings, components["qa"], body, upload)
