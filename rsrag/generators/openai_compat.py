"""`openai`: any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, `transformers
serve`, LM Studio, Ollama's /v1, OpenAI).

`url` is the server's base (`http://host:8000/v1`) or the full `.../chat/completions` address. The key
comes from `api_key`, else from the environment variable named by `api_key_env` (default
OPENAI_API_KEY); local servers usually need none. The key is sent only in the Authorization header and
never appears in errors, logs or answers.

The image: with a query image, the last user message becomes a list of content parts, the prompt text
then `{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}` (re-encoded, long side
capped: `rsrag.generators.images`). `vision="auto"` (default) sends it and, when the server refuses
image parts (a text-only model), sends the text alone, remembers that for this generator, and says so
in the answer's metadata (`image_sent: false`, `image_note`); `vision=False` never sends images
(configured text-only model); `vision=True` fails instead of falling back.

Failures: connection errors, timeouts, 429 and 5xx are retried `retries` times with exponential
backoff, then raise `GeneratorUnavailable` (503 in the service); other HTTP errors and replies that are
not answers raise `GeneratorRefused` (502) with the upstream's message.
"""

from __future__ import annotations

import json
import os
import time
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
from rsrag.generators.images import MAX_SIDE, image_data_url

RETRY_STATUS = (429, 500, 502, 503, 504)
IMAGE_REFUSALS = ("image", "vision", "multimodal", "content type", "content part", "image_url")


def chat_messages(messages: list[dict], image_url: str | None) -> list[dict]:
    """The prompt's messages, with the image as a content part of the last user message."""
    out = [dict(m) for m in messages]
    if image_url is None:
        return out
    for message in reversed(out):
        if message["role"] == "user":
            message["content"] = [{"type": "text", "text": str(message["content"])},
                                  {"type": "image_url", "image_url": {"url": image_url}}]
            break
    return out


@register_generator("openai")
class OpenAIGenerator(Generator):
    name = "openai"

    def __init__(
        self,
        url: str | None = None,
        model: str = "default",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        vision: bool | str = "auto",
        image_max_side: int = MAX_SIDE,
        retries: int = 2,
        backoff: float = 0.5,
        **_: object,
    ) -> None:
        if not url:
            raise GeneratorError("the openai generator needs url=<http://host:port/v1>")
        if vision not in ("auto", True, False):
            raise GeneratorError(f"vision must be 'auto', True or False, not {vision!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model, self.timeout, self.max_tokens, self.temperature = model, timeout, max_tokens, temperature
        self.vision, self.image_max_side = vision, image_max_side
        self.retries, self.backoff = max(0, int(retries)), backoff
        self._api_key = api_key or os.environ.get(api_key_env or "OPENAI_API_KEY") or None
        self._text_only_reason: str | None = None  # set once the server refused an image part
        # one pooled client per generator (thread-safe); keep-alive saves a connect per answer
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)))

    def __repr__(self) -> str:  # never the key
        return f"OpenAIGenerator(url={self.url!r}, model={self.model!r}, vision={self.vision!r})"

    # ---- request -----------------------------------------------------------------------------------
    def body(self, request: GenerationRequest, *, stream: bool = False, with_image: bool = True) -> dict:
        """The JSON body sent to /chat/completions (public so that tests and users can inspect it)."""
        send_image = (with_image and request.image is not None and self.vision is not False
                      and self._text_only_reason is None)
        image_url = image_data_url(request.image, self.image_max_side) if send_image else None
        body: dict[str, Any] = {"model": self.model, "messages": chat_messages(request.prompt.messages, image_url),
                                "max_tokens": self.max_tokens, "temperature": self.temperature}
        if stream:
            body["stream"] = True
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, body: dict, stream: bool):
        """POST with retries; returns an open response (the caller closes it)."""
        client = self._client
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = client.send(client.build_request("POST", self.url, json=body, headers=self._headers()),
                                       stream=stream)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout:g} s"
                continue
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}: {exc})"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {_detail(response)}"
                response.close()
                continue
            if response.status_code >= 400:
                detail = _detail(response)
                response.close()
                raise GeneratorRefused(f"generator endpoint {self.url} answered HTTP {response.status_code}: {detail}")
            return response
        raise GeneratorUnavailable(f"cannot reach generator endpoint {self.url} after {self.retries + 1} "
                                   f"attempt(s): {last}")

    def _send(self, request: GenerationRequest, stream: bool) -> tuple[Any, dict]:
        """Send with the image when allowed; on a refused image part under vision="auto", resend text only."""
        meta: dict[str, Any] = {"image_sent": False}
        body = self.body(request, stream=stream)
        has_image = any(isinstance(m.get("content"), list) for m in body["messages"])  # a content-part list
        if request.image is not None and not has_image:
            meta["image_note"] = ("the generator is configured text-only" if self.vision is False
                                  else self._text_only_reason or "no image was sent")
        try:
            response = self._post(body, stream)
            meta["image_sent"] = has_image
            return response, meta
        except GeneratorRefused as exc:
            refused_image = has_image and any(word in str(exc).lower() for word in IMAGE_REFUSALS)
            if not refused_image or self.vision is True:
                raise
            self._text_only_reason = f"the model server refused the image part, so it gets text only ({exc})"
            meta["image_note"] = self._text_only_reason
            return self._post(self.body(request, stream=stream, with_image=False), stream), meta

    # ---- answers -----------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> Generation:
        response, meta = self._send(request, stream=False)
        try:
            reply = response.json()
        except ValueError as exc:
            raise GeneratorRefused(f"generator endpoint {self.url} sent a reply that is not JSON: {exc}") from None
        finally:
            response.close()
        try:
            text = str(reply["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise GeneratorRefused(
                f"generator endpoint {self.url} sent no choices[0].message.content: {str(reply)[:300]}") from None
        return model_answer(request, text, {"usage": reply.get("usage"), **meta})

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """Tokens as the server sends them (server-sent events, `"stream": true`), then the Generation."""
        t0 = time.perf_counter()  # the image's encoding and the upload count towards the first token
        response, meta = self._send(request, stream=True)
        yield from stream_answer(request, self._stream_pieces(response), meta, started=t0)

    def _stream_pieces(self, response: httpx.Response) -> Iterator[str]:
        """The text pieces of a chat-completions event stream (closes the response)."""
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise GeneratorRefused(f"generator endpoint {self.url} sent a stream event that is not "
                                           f"JSON: {data[:200]}") from None
                if not isinstance(event, dict) or "error" in event:
                    detail = event.get("error") if isinstance(event, dict) else event
                    raise GeneratorRefused(f"generator endpoint {self.url} failed mid-stream: {str(detail)[:300]}")
                choices = event.get("choices") or [{}]
                yield ((choices[0] or {}).get("delta") or {}).get("content") or ""
        except httpx.TransportError as exc:
            raise GeneratorUnavailable(f"generator endpoint {self.url} broke off the stream: {exc}") from None
        finally:
            response.close()


def _detail(response: httpx.Response) -> str:
    """The upstream's error message, short."""
    try:
        response.read()
        data = response.json()
        message = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(message, dict):
            message = message.get("message", message)
        return str(message)[:300]
    except Exception:  # noqa: BLE001 - not JSON: the body as text
        try:
            return response.text[:300]
        except httpx.HTTPError:
            return ""

