"""Generators: the registry, `openai` against a local server speaking the chat-completions protocol,
`hf` with a tiny randomly initialised causal LM, and their errors."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from index_helpers import HashEncoder  # noqa: F401  (registers test-hash)
from rsrag.generators import (
    Evidence,
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    create_generator,
    list_generators,
    register_generator,
)
from rsrag.index import Library
from rsrag.knowledge import KnowledgeBase, KnowledgeRecord
from rsrag.rag import PromptBuilder, ask

EVIDENCE = [
    Evidence("a#location", "Rome, Italy", "a", chunk_type="location", score=1.0),
    Evidence("b#location", "Paris, France", "b", chunk_type="location", score=0.5),
]


def _request(question: str = "Where is it?") -> GenerationRequest:
    return GenerationRequest(question, "question", EVIDENCE, PromptBuilder().build("question", question, EVIDENCE))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("gen")
    lib = Library.create(root, "lib", encoder="test-hash")
    KnowledgeBase.attach(lib).add(
        [
            KnowledgeRecord.from_dict({"name": "Old Forum", "chunks": {"location": "Rome, Italy"}}),
            KnowledgeRecord.from_dict({"name": "Iron Tower", "chunks": {"location": "Paris, France"}}),
        ]
    )
    return lib


class ChatHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible /v1/chat/completions endpoint."""

    seen: list[dict] = []
    reply = "It is in Paris [2]."
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        payload = {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": type(self).reply}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }
        data = json.dumps(payload).encode() if type(self).status == 200 else b'{"error": "overloaded"}'
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    ChatHandler.seen, ChatHandler.status = [], 200
    httpd = HTTPServer(("127.0.0.1", 0), ChatHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_registry():
    assert {"extractive", "hf", "openai"} <= set(list_generators())

    @register_generator("echo-test")
    class Echo(Generator):
        name = "echo-test"

        def __init__(self, prefix: str = "") -> None:
            self.prefix = prefix

        def generate(self, request):
            return Generation(self.prefix + request.question, [])

    assert create_generator("echo-test", prefix="> ").generate(_request("hi")).text == "> hi"
    with pytest.raises(ValueError, match="unknown generator"):
        create_generator("nope")
    with pytest.raises(GeneratorError, match="needs url"):
        create_generator("openai")


def test_openai_generator_against_local_server(server, library):
    answer = ask(
        library,
        "Where is the Iron Tower?",
        generator="openai",
        generator_config={"url": server, "model": "tiny", "api_key": "k"},
    )
    assert answer.text == "It is in Paris [2]." and answer.generator == "openai"
    call = ChatHandler.seen[-1]
    assert call["path"] == "/v1/chat/completions" and call["body"]["model"] == "tiny"
    assert call["auth"] == "Bearer k" and call["body"]["temperature"] == 0.0
    roles = [m["role"] for m in call["body"]["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert "[1] (" in call["body"]["messages"][-1]["content"]
    n_cited = answer.citations[0]["n"]
    assert n_cited == 2 and answer.citations[0]["chunk_id"] == answer.evidence[1]["id"]

    ChatHandler.status = 503
    with pytest.raises(GeneratorError, match="HTTP 503"):
        create_generator("openai", url=server + "/chat/completions").generate(_request())


def test_openai_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    gen = create_generator("openai", url=f"http://127.0.0.1:{port}/v1", timeout=2)
    with pytest.raises(
        GeneratorError, match=rf"cannot reach generator endpoint http://127.0.0.1:{port}/v1/chat/completions"
    ):
        gen.generate(_request())


def _tiny_causal_lm(folder: Path) -> Path:
    """A randomly initialised 1-layer GPT-2 with a word-level tokenizer, saved like a hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = [
        "<unk>",
        "<pad>",
        "<eos>",
        "[",
        "]",
        "1",
        "2",
        "rome",
        "italy",
        "paris",
        "france",
        "where",
        "is",
        "it",
        "context",
        "question",
        "answer",
        ":",
        ",",
        "?",
        ".",
    ]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(words), n_positions=512, n_embd=16, n_layer=1, n_head=2, eos_token_id=2, pad_token_id=1
        )
    ).save_pretrained(folder)
    return folder


def test_hf_generator_with_tiny_random_model(tmp_path: Path, library):
    folder = _tiny_causal_lm(tmp_path / "tiny")
    gen = create_generator("hf", model=str(folder), max_new_tokens=5)
    out = gen.generate(_request())
    assert isinstance(out.text, str) and out.extra["prompt_tokens"] > 10
    assert len(gen._tokenizer(out.text)["input_ids"]) <= 5  # greedy, bounded
    assert out.cited == ["a#location"]  # no [n] in the text: the top evidence is cited
    assert out.text == gen.generate(_request()).text  # deterministic
    answer = ask(library, "Where is the Old Forum?", generator=gen)
    assert answer.generator == "hf" and answer.citations and "generate" in answer.timings
    with pytest.raises(GeneratorError, match="cannot load hf model"):
        create_generator("hf", model=str(tmp_path / "missing")).generate(_request())
