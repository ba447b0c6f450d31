"""Generators that call model servers: the openai generator against a real OpenAI-compatible server
(`transformers serve` on loopback, over a tiny random model the test writes), the image part, streaming,
failures (a server that is down, one that refuses images, one that errors), and the service's /qa."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from index_helpers import HashEncoder, make_records
from rsrag.generators import (Evidence, Generation, GenerationRequest, GeneratorRefused, GeneratorUnavailable,
                              create_generator)
from rsrag.generators.tiny import tiny_chat_model, tiny_llava
from rsrag.index import Library
from rsrag.rag import PromptBuilder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """`transformers serve` (a real OpenAI-compatible server) on loopback, serving the tiny model."""
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if cli is None:
        pytest.fail("the `transformers` command is missing (pip install transformers)")
    folder = tiny_chat_model(tmp_path_factory.mktemp("tiny-llm"))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([cli, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not start in 120 s")
        yield {"url": f"{url}/v1", "model": str(folder)}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _request(image=None) -> GenerationRequest:
    evidence = [Evidence("harbor05#caption-1", "many boats in a harbour", "harbor05", "harbor", "caption", 0.9)]
    prompt = PromptBuilder().build("vqa", "what is moored here?", evidence)
    return GenerationRequest("what is moored here?", "vqa", evidence, prompt, [], None, image)


def _photo(tmp_path: Path, size=(1600, 900)) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "scene.png"
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_openai_request_carries_the_image_as_an_openai_content_part(tmp_path):
    from openai.types.chat import (ChatCompletionContentPartImageParam, ChatCompletionContentPartTextParam,
                                   ChatCompletionMessageParam)
    from pydantic import TypeAdapter

    gen = create_generator("openai", url="http://127.0.0.1:9/v1", model="m", image_max_side=512)
    body = gen.body(_request(_photo(tmp_path)))
    messages = body["messages"]
    TypeAdapter(list[ChatCompletionMessageParam]).validate_python(messages)  # OpenAI's schema, message by message
    parts = messages[-1]["content"]
    TypeAdapter(ChatCompletionContentPartTextParam).validate_python(parts[0], strict=True)
    TypeAdapter(ChatCompletionContentPartImageParam).validate_python(parts[1], strict=True)
    assert messages[-1]["role"] == "user" and [p["type"] for p in parts] == ["text", "image_url"]
    assert "what is moored here?" in parts[0]["text"] and "[1]" in parts[0]["text"]  # the numbered context
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG" and max(sent.size) == 512 and sent.size[0] > sent.size[1]  # re-encoded, capped
    assert all(isinstance(m["content"], str) for m in body["messages"][:-1])
    text_only = create_generator("openai", url="http://127.0.0.1:9/v1", vision=False).body(_request(_photo(tmp_path)))
    assert isinstance(text_only["messages"][-1]["content"], str)


def test_openai_generator_answers_and_streams_from_a_real_server(model_server, tmp_path):
    gen = create_generator("openai", url=model_server["url"], model=model_server["model"], max_tokens=6)
    result = gen.generate(_request(_photo(tmp_path, (64, 64))))
    assert result.text and result.cited == ["harbor05#caption-1"]
    assert result.extra["image_sent"] is True and result.extra["usage"]["completion_tokens"] > 0
    pieces = list(gen.stream(_request()))
    final = pieces[-1]
    assert isinstance(final, Generation) and len(pieces) >= 3  # several tokens, then the whole answer
    assert "".join(p for p in pieces[:-1]).strip() == final.text
    assert final.extra["first_token_ms"] is not None and final.extra["first_token_ms"] > 0


def test_server_errors_are_unavailable_or_refused_and_never_show_the_key(monkeypatch):
    monkeypatch.setenv("MY_VLM_KEY", "sk-very-secret")
    gen = create_generator("openai", url=f"http://127.0.0.1:{_free_port()}/v1", api_key_env="MY_VLM_KEY",
                           retries=1, backoff=0.01)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorUnavailable, match="after 2 attempt") as down:
        gen.generate(_request())
    assert time.perf_counter() - t0 < 5 and "sk-very-secret" not in str(down.value) + repr(gen)

    seen: list[dict] = []

    class Refusing(BaseHTTPRequestHandler):
        """Refuses image parts as a text-only server does; answers text."""

        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"auth": self.headers.get("Authorization"), "body": body})
            if any(isinstance(m["content"], list) for m in body["messages"]):
                status, reply = 400, {"error": {"message": "this model does not support image input"}}
            else:
                status, reply = 200, {"choices": [{"message": {"role": "assistant", "content": "Boats [1]."}}]}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        auto = create_generator("openai", url=url, api_key_env="MY_VLM_KEY")
        answer = auto.generate(_request(Image.new("RGB", (32, 32))))
        assert answer.text == "Boats [1]." and answer.extra["image_sent"] is False
        assert "does not support image input" in answer.extra["image_note"]
        assert seen[0]["auth"] == "Bearer sk-very-secret" and len(seen) == 2  # refused, then text only
        auto.generate(_request(Image.new("RGB", (32, 32))))
        assert len(seen) == 3  # remembered: no second try with the image
        strict = create_generator("openai", url=url, vision=True)
        with pytest.raises(GeneratorRefused, match="HTTP 400: this model does not support image input"):
            strict.generate(_request(Image.new("RGB", (32, 32))))
    finally:
        server.shutdown()


def _library(tmp_path: Path) -> Library:
    lib = Library.create(tmp_path / "indexes", "tiny", encoder=HashEncoder())
    lib.add(make_records(tmp_path / "images", n_per_colour=2))
    return lib


def test_service_streams_qa_and_maps_model_server_failures(model_server, tmp_path):
    from fastapi.testclient import TestClient

    from rsrag.service import create_app

    lib = _library(tmp_path)
    generators = {"extractive": {}, "openai": {"url": model_server["url"], "model": model_server["model"],
                                               "max_tokens": 6},
                  "ollama": {"url": f"http://127.0.0.1:{_free_port()}", "model": "llava"}}
    with TestClient(create_app(lib, token="", generators=generators)) as client:
        with client.stream("POST", "/qa", json={"question": "a red field", "generator": "openai", "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[5:]) if line.startswith("data:") else line
                      for line in r.iter_lines() if line]
        names = [e.split(": ", 1)[1] for e in events if isinstance(e, str) and e.startswith("event:")]
        data = [e for e in events if isinstance(e, dict)]
        assert names[-1] == "answer" and names.count("token") >= 2
        answer = data[-1]
        assert answer["generator"] == "openai" and answer["answer"] == "".join(d["text"] for d in data[:-1]).strip()
        plain = client.post("/qa", json={"question": "a red field", "generator": "openai"})
        assert plain.status_code == 200 and plain.json()["generator"] == "openai"
        down = client.post("/qa", json={"question": "a red field", "generator": "ollama"})
        assert down.status_code == 503 and "cannot reach ollama" in down.json()["error"]["message"]
        off = client.post("/qa", json={"question": "a red field", "generator": "hf"})
        assert off.status_code == 400 and "not enabled" in off.json()["error"]["message"]


def test_serve_enables_generators_from_flags_and_a_config_without_keys(tmp_path):
    from rsrag.cli.serve import generator_settings

    enabled = generator_settings("openai", "http://127.0.0.1:8000/v1", "qwen2-vl", "VLM_KEY", None)
    assert enabled == {"extractive": {}, "openai": {"url": "http://127.0.0.1:8000/v1", "model": "qwen2-vl",
                                                    "api_key_env": "VLM_KEY"}}
    config = tmp_path / "generators.json"
    config.write_text(json.dumps({"generators": {"ollama": {"url": "http://127.0.0.1:11434", "model": "llava"}}}))
    assert set(generator_settings(None, None, None, None, config)) == {"extractive", "ollama"}
    config.write_text(json.dumps({"generators": {"openai": {"url": "http://x/v1", "api_key": "sk-1"}}}))
    with pytest.raises(ValueError, match="environment variable"):
        generator_settings(None, None, None, None, config)


def test_hf_generator_shows_the_image_to_an_image_text_to_text_model(tmp_path):
    vlm = create_generator("hf", model=str(tiny_llava(tmp_path / "llava")), max_new_tokens=4)
    with_image = vlm.generate(_request(_photo(tmp_path, (96, 64))))
    without = vlm.generate(_request())
    assert vlm.sees_images and with_image.extra["image_sent"] and not without.extra["image_sent"]
    # the processor expanded the image into the vision tower's 16 patches + CLS in the prompt
    assert with_image.extra["prompt_tokens"] == without.extra["prompt_tokens"] + 17
    pieces = list(vlm.stream(_request(Image.new("RGB", (40, 40)))))
    assert isinstance(pieces[-1], Generation) and pieces[-1].extra["image_sent"]
    assert "".join(p for p in pieces[:-1]).strip() == pieces[-1].text
    text_only = create_generator("hf", model=str(tiny_chat_model(tmp_path / "llm")), max_new_tokens=3)
    answer = text_only.generate(_request(Image.new("RGB", (8, 8))))
    assert not text_only.sees_images and answer.extra["image_sent"] is False and "text-only" in answer.extra["image_note"]
