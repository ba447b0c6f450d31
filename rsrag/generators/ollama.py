"""`ollama`: a model served by Ollama, through its native chat API (`/api/chat`) and the `ollama`
client library; the query image goes in the message's `images` (re-encoded JPEG, long side capped).

`url` is the Ollama server (default `http://127.0.0.1:11434`, or OLLAMA_HOST); `model` a pulled model
(`llava`, `qwen2.5vl`, `gemma3`, ...). `vision=False` sends text only (a text-only model). Connection
failures and timeouts raise `GeneratorUnavailable`; an error from Ollama (unknown model, bad request)
raises `GeneratorRefused` with its message.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import httpx

from rsrag.generators.base import (
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    GeneratorRefused,
    GeneratorUnavailable,
    model_answer,
    register_generator,
    stream_answer,
)
from rsrag.generators.images import MAX_SIDE, image_jpeg


@register_generator("ollama")
class OllamaGenerator(Generator):
    name = "ollama"

    def __init__(self, url: str | None = None, model: str | None = None, timeout: float = 120.0,
                 max_tokens: int = 256, temperature: float = 0.0, vision: bool = True,
                 image_max_side: int = MAX_SIDE, **_: object) -> None:
        import ollama

        if not model:
            raise GeneratorError("the ollama generator needs model=<a model pulled into Ollama, e.g. llava>")
        self.url = url or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self.model, self.max_tokens, self.temperature = model, max_tokens, temperature
        self.vision, self.image_max_side = vision, image_max_side
        self._client = ollama.Client(host=self.url, timeout=timeout)
        self._errors = (ollama.ResponseError,)

    def messages(self, request: GenerationRequest) -> list[dict[str, Any]]:
        """The prompt's messages; the last user message carries the image when there is one."""
        out = [dict(m) for m in request.prompt.messages]
        if request.image is not None and self.vision:
            for message in reversed(out):
                if message["role"] == "user":
                    message["images"] = [image_jpeg(request.image, self.image_max_side)]
                    break
        return out

    def _chat(self, request: GenerationRequest, stream: bool):
        try:
            return self._client.chat(model=self.model, messages=self.messages(request), stream=stream,
                                     options={"temperature": self.temperature, "num_predict": self.max_tokens})
        except self._errors as exc:
            raise GeneratorRefused(f"ollama at {self.url} refused ({getattr(exc, 'status_code', '?')}): "
                                   f"{getattr(exc, 'error', exc)}") from None
        except (httpx.TransportError, ConnectionError) as exc:
            raise GeneratorUnavailable(f"cannot reach ollama at {self.url}: {exc}") from None

    def _meta(self, request: GenerationRequest) -> dict:
        return {"image_sent": request.image is not None and self.vision}

    def generate(self, request: GenerationRequest) -> Generation:
        reply = self._chat(request, stream=False)
        return model_answer(request, str(reply["message"]["content"] or ""), self._meta(request))

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        yield from stream_answer(request, self._stream_pieces(request), self._meta(request))

    def _stream_pieces(self, request: GenerationRequest) -> Iterator[str]:
        try:
            for part in self._chat(request, stream=True):
                yield part["message"]["content"] or ""
        except self._errors as exc:
            raise GeneratorRefused(f"ollama at {self.url} failed mid-stream: {getattr(exc, 'error', exc)}") from None
        except (httpx.TransportError, ConnectionError) as exc:
            raise GeneratorUnavailable(f"ollama at {self.url} broke off the stream: {exc}") from None
