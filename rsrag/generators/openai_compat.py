"""`openai`: any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, ...).

`url` is the server's base (`http://host:8000/v1`) or the full `.../chat/completions` address.
The key comes from `api_key` or OPENAI_API_KEY (local servers usually need none). Plain urllib, no SDK.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

from rsrag.generators.base import (
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    cited_numbers,
    register_generator,
)


@register_generator("openai")
class OpenAIGenerator(Generator):
    name = "openai"

    def __init__(
        self,
        url: str | None = None,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        **_: object,
    ) -> None:
        if not url:
            raise GeneratorError("the openai generator needs url=<http://host:port/v1>")
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model, self.timeout, self.max_tokens, self.temperature = model, timeout, max_tokens, temperature
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")

    def generate(self, request: GenerationRequest) -> Generation:
        body = json.dumps(
            {
                "model": self.model,
                "messages": request.prompt.messages,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                reply = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise GeneratorError(f"generator endpoint {self.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GeneratorError(f"cannot reach generator endpoint {self.url}: {reason}") from None
        except ValueError as exc:
            raise GeneratorError(f"generator endpoint {self.url} sent a reply that is not JSON: {exc}") from None
        try:
            text = str(reply["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise GeneratorError(
                f"generator endpoint {self.url} sent no choices[0].message.content: {str(reply)[:300]}"
            ) from None
        ids = request.prompt.evidence_ids
        return Generation(text, cited_numbers(text, ids) or ids[:1], {"usage": reply.get("usage")})
