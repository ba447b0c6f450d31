"""`POST /qa`: a question about the library (and/or an uploaded image), answered with citations;
with `"stream": true`, as server-sent events: `token` events carry the text as the generator produces
it, then one `answer` event carries the whole answer (the non-streaming response), or an `error` event."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rsrag.generators import GeneratorRefused, GeneratorUnavailable
from rsrag.service import public
from rsrag.service import schemas as S
from rsrag.service.bodies import body_spec, read_body
from rsrag.service.components import Component
from rsrag.service.conversations import MAX_FOCUS_SIDE, ConversationStore
from rsrag.service.deps import Settings, get_components, get_conversations, get_decoder, get_handle, get_settings
from rsrag.service.errors import ApiError, error_body
from rsrag.service.routes import error_docs
from rsrag.service.state import LibraryHandle
from rsrag.service.uploads import ImageDecoder, UploadedImage

router = APIRouter(tags=["qa"])


def _arguments(handle: LibraryHandle, settings: Settings, body: S.QARequest, upload: UploadedImage | None,
               conversations: ConversationStore) -> dict:
    """The checked arguments of one question (400 for what the caller must fix; 404 for a conversation
    that is unknown or expired)."""
    question = (body.question or "").strip() or None
    if question is None and upload is None:
        raise ApiError(400, "ask a question, upload an image, or both")
    if body.generator not in settings.generators:
        raise ApiError(400, f"generator {body.generator!r} is not enabled on this server; "
                            f"choose one of {', '.join(settings.generators)}")
    args = {"library": handle.reader(), "question": question, "image": upload.image if upload else None,
            "history": [t.model_dump() for t in body.history] or None, "generator": body.generator, "k": body.k}
    if settings.generator_configs.get(body.generator):  # only configured generators take a config
        args["generator_config"] = dict(settings.generator_configs[body.generator])
    if body.conversation_id:
        conversation = conversations.start() if body.conversation_id == "new" else conversations.get(body.conversation_id)
        if conversation is None:
            raise ApiError(404, f"conversation {body.conversation_id!r} is unknown or has expired; start a new one "
                                f"with conversation_id \"new\"")
        args["conversation"] = conversation
        if args["image"] is not None:  # kept as the image in focus: bounded in memory
            image = args["image"].copy()
            image.thumbnail((MAX_FOCUS_SIDE, MAX_FOCUS_SIDE))
            args["image"] = image
    return args


def _conversation_call(args: dict, stream: bool):
    """A turn of a kept conversation (the library's own answerer; follow-ups resolved)."""
    from rsrag.rag import AskOptions

    conversation = args.pop("conversation")
    library, question, image = args.pop("library"), args.pop("question"), args.pop("image")
    args.pop("history", None)  # the conversation has its own
    options = AskOptions.from_kwargs(**args)
    call = conversation.stream if stream else conversation.ask
    return call(library, question, image, options=options)


def _upstream(exc: Exception) -> ApiError:
    """A model server's failure as the gateway errors: 503 when it cannot be reached, 502 when it refused."""
    status = 503 if isinstance(exc, GeneratorUnavailable) else 502
    return ApiError(status, str(exc))


def _public(result: Any) -> dict:
    out = public.answer(result.to_dict())
    extra = getattr(result, "extra", None) or {}  # an injected ask may return a plainer answer
    for key in ("conversation_id", "resolved_question"):
        if extra.get(key):
            out[key] = extra[key]
    return out


def answer(ask: Callable, args: dict) -> dict:
    try:
        if "conversation" in args:
            result = _conversation_call(args, stream=False)
        else:
            library, question, image = args.pop("library"), args.pop("question"), args.pop("image")
            result = ask(library, question, image, **args)
    except (GeneratorUnavailable, GeneratorRefused) as exc:
        raise _upstream(exc) from None
    except ValueError as exc:  # QAInputError, unknown generator, ...: the caller's to fix
        raise ApiError(400, str(exc)) from None
    return _public(result)


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_events(ask: Callable, args: dict) -> Iterator[str]:
    """Server-sent events of one answer (module doc); an error after the stream began is an event."""
    from rsrag.rag import ask as default_ask
    from rsrag.rag import ask_stream

    try:
        if "conversation" in args or ask is default_ask:
            if "conversation" in args:
                pieces = _conversation_call(args, stream=True)
            else:
                pieces = ask_stream(args.pop("library"), args.pop("question"), args.pop("image"), **args)
            for piece in pieces:
                if isinstance(piece, str):
                    yield _event("token", {"text": piece})
                else:
                    yield _event("answer", _public(piece))
        else:  # an injected ask function cannot stream: its answer is one piece
            result = ask(args.pop("library"), args.pop("question"), args.pop("image"), **args)
            yield _event("token", {"text": result.text})
            yield _event("answer", _public(result))
    except (GeneratorUnavailable, GeneratorRefused) as exc:
        error = _upstream(exc)
        yield _event("error", error_body(error.status_code, str(exc)))
    except ValueError as exc:
        yield _event("error", error_body(400, str(exc)))


@router.post("/qa", response_model=S.QAResponse, openapi_extra=body_spec(S.QARequest),
             responses=error_docs(400, 404, 408, 413, 415, 422, 502, 503))
async def qa(request: Request, handle: LibraryHandle = Depends(get_handle), settings: Settings = Depends(get_settings),
             decoder: ImageDecoder = Depends(get_decoder),
             components: dict[str, Component] = Depends(get_components),
             conversations: ConversationStore = Depends(get_conversations)):
    """Answer a question about the library (and/or an uploaded image), citing the items used
    (`"stream": true`: as server-sent events, module doc)."""
    body, upload = await read_body(request, S.QARequest, decoder)
    args = _arguments(handle, settings, body, upload, conversations)
    ask = await run_in_threadpool(components["qa"].get)
    if body.stream:
        return StreamingResponse(stream_events(ask, args), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await run_in_threadpool(answer, ask, args)
