"""Knowledge-grounded QA: fusion, prompt budget, and `ask` end to end on a small knowledge set."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_helpers import HashEncoder, make_image, make_records  # noqa: F401  (registers test-hash)
from rsrag.generators import Generation, Generator
from rsrag.index import IndexNotFoundError, Library
from rsrag.knowledge import KnowledgeBase, KnowledgeRecord
from rsrag import fusion
from rsrag.rag import (
    Answer,
    Answerer,
    AskOptions,
    Evidence,
    KnowledgeRetriever,
    PromptBuilder,
    QAInputError,
    RetrievalConfig,
    answerer_for,
    ask,
    image_to_text,
)
from rsrag.rag.prompt import estimate_tokens

FACTS = [
    {
        "name": "Red Tower",
        "category": "Tower",
        "chunks": {
            "location": "Redtown, Kent, England",
            "construction_period": "1890-1895",
            "history": "The tower was built as a lookout. It burnt down in 1950. It was rebuilt in 1960 as a museum.",
        },
    },
    {
        "name": "Blue Bridge",
        "category": "Bridge",
        "chunks": {"location": "Bluford, Norway", "construction_period": "1820-1825", "visitors": "King Olav V"},
    },
    {
        "name": "Green Park",
        "category": "Park",
        "chunks": {"location": "Greenville, Ohio", "function": "Public recreation"},
    },
]


@pytest.fixture(scope="module")
def kb_library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("rag")
    lib = Library.create(root, "lib", encoder="test-hash")
    KnowledgeBase.attach(lib).add([KnowledgeRecord.from_dict(f) for f in FACTS])
    return Library.open(root, "lib", encoder=HashEncoder())


@pytest.fixture(scope="module")
def image_records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("images"), n_per_colour=8)  # img0-7 red, 8-15 green, 16-23 blue


@pytest.fixture(scope="module")
def image_library(tmp_path_factory, image_records) -> Library:
    lib = Library.create(tmp_path_factory.mktemp("imglib"), "imgs", encoder=HashEncoder())
    lib.add(image_records, workers=1)
    return lib


def test_rrf_fusion_orders_by_summed_reciprocal_ranks():
    lists = {"text": [("a", 0.9), ("b", 0.8), ("c", 0.1)], "bm25": [("b", 10.0), ("c", 5.0)]}
    fused = fusion.rrf(lists, k=60)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61) and fused["a"] == pytest.approx(1 / 61)
    assert sorted(fused, key=lambda c: -fused[c]) == ["b", "c", "a"]
    assert max(fusion.rrf(lists, weights={"text": 1.0, "bm25": 0.0}).items(), key=lambda kv: kv[1])[0] == "a"


def test_weighted_fusion_follows_alpha():
    lists = {"text": [("a", 0.9), ("b", 0.5)], "image": [("c", 0.9), ("a", 0.1)]}
    top = lambda alpha: max(fusion.weighted(lists, alpha=alpha).items(), key=lambda kv: kv[1])[0]  # noqa: E731
    assert top(0.0) == "a" and top(1.0) == "c"
    fused = fusion.weighted(lists, alpha=0.5)
    assert fused["a"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.9)
    assert fused["c"] == pytest.approx(0.5 * 0.9 + 0.5 * 0.5)  # absent from text: that list's floor
    with_bm25 = fusion.weighted({"text": [("a", 0.5), ("b", 0.5)], "bm25": [("b", 8.0), ("a", 2.0)]}, bm25_weight=0.5)
    assert with_bm25["b"] == pytest.approx(0.75) and with_bm25["a"] == pytest.approx(0.375)
    assert fusion.weighted({"text": [("a", 0.2)]}, alpha=0.9) == {"a": pytest.approx(0.2)}  # no image: text only
    with pytest.raises(ValueError, match="fusion"):
        RetrievalConfig(fusion="max")


def test_prompt_budget_truncates_context_and_history():
    evidence = [{"id": f"r{i}#history", "text": " ".join(f"word{i}x{j}" for j in range(60))} for i in range(10)]
    history = [{"role": "user", "content": f"turn {i} " + "blah " * 30} for i in range(6)]
    builder = PromptBuilder(budget=300)
    prompt = builder.build("question", "What happened?", evidence, history)
    assert prompt.truncated and 1 <= len(prompt.evidence_ids) < 10
    assert prompt.evidence_ids == [e["id"] for e in evidence[: len(prompt.evidence_ids)]]  # in rank order
    assert prompt.tokens <= 300 + 10
    assert prompt.messages[0]["role"] == "system" and "[1] (r0#history)" in prompt.messages[-1]["content"]
    kept = [m for m in prompt.messages[1:-1]]
    assert 0 < len(kept) < 6 and kept[-1]["content"].startswith("turn 5")  # most recent turns kept
    assert prompt.dropped_history == 6 - len(kept)
    last = prompt.messages[-1]["content"].split("Question:")[0]
    assert last.rstrip().endswith("...")  # the last chunk that fits only partly is cut
    roomy = PromptBuilder(budget=100_000).build("question", "What happened?", evidence, history)
    assert not roomy.truncated and len(roomy.evidence_ids) == 10 and len(roomy.messages) == 8
    classify = PromptBuilder().build("classify", None, evidence[:1], labels=["forest", "river"])
    assert "forest, river" in classify.messages[-1]["content"]
    with pytest.raises(ValueError, match="label set"):
        PromptBuilder().build("classify", None, evidence)
    assert estimate_tokens("a tokenizer-free estimate") >= 4


def test_ask_end_to_end_on_small_knowledge(kb_library):
    answer = ask(kb_library, "When was the Red Tower built?")
    assert isinstance(answer, Answer) and answer.generator == "extractive"
    assert answer.text == "1890-1895"
    assert answer.citations[0]["chunk_id"] == "red-tower#construction_period"
    assert answer.citations[0]["record_id"] == "red-tower"
    assert answer.evidence[0]["record_id"] == "red-tower"
    assert set(answer.evidence[0]) >= {"id", "record_id", "name", "chunk_type", "text", "score"}
    assert set(answer.timings) >= {"retrieve", "rerank", "generate", "total"}
    assert set(answer.to_dict()) == {"answer", "citations", "evidence", "timings", "generator"}

    # a question whose type has no exact chunk: the cross-encoder picks the sentence
    fire = ask(kb_library, "Red Tower fire: in which year did it burn down?")
    assert fire.text == "It burnt down in 1950."
    assert ask(kb_library, "Who visited the Blue Bridge?").text == "King Olav V"
    missing = ask(kb_library, "Who visited Green Park?")  # no such fact: never another place's visitors
    assert missing.text == "The knowledge base has no notable visitors for Green Park."
    assert missing.citations[0]["record_id"] == "green-park"
    assert ask(kb_library, "Where is Green Park?", fusion="weighted", rerank=False).text == "Greenville, Ohio"
    assert ask(kb_library, "Where is Green Park?", use_bm25=False, k=2).citations[0]["record_id"] == "green-park"
    assert len(ask(kb_library, "Where is Green Park?", k=2).evidence) == 2


def test_bad_input(kb_library, tmp_path):
    with pytest.raises(QAInputError, match="question, an image"):
        ask(kb_library, "   ")
    with pytest.raises(QAInputError):
        ask(kb_library, None, None)
    with pytest.raises(IndexNotFoundError, match="no index named 'nope'"):
        Library.open(tmp_path, "nope")
    with pytest.raises(QAInputError, match="label set"):
        ask(kb_library, "What is it?", task="classify")
    with pytest.raises(TypeError, match="unknown options"):
        ask(kb_library, "Where?", colour="red")


class Recorder(Generator):
    """Captures the request (to check what ask hands a generator)."""

    name = "recorder"

    def generate(self, request):
        self.request = request
        return Generation("ok [1]", [request.prompt.evidence_ids[0]])


def test_history_reaches_the_prompt(kb_library):
    rec = Recorder()
    history = [
        {"role": "user", "content": "Tell me about the Red Tower."},
        {"role": "assistant", "content": "It is in Redtown."},
    ]
    answer = ask(kb_library, "When was it built?", history=history, generator=rec)
    assert answer.text == "ok [1]" and answer.generator == "recorder"
    assert [m["content"] for m in rec.request.prompt.messages[1:3]] == [h["content"] for h in history]
    assert answer.citations[0]["n"] == 1


def test_image_questions_with_and_without_knowledge(tmp_path: Path):
    lib = Library.create(tmp_path, "imgs", encoder="test-hash")
    lib.add(make_records(tmp_path / "img", n_per_colour=4), workers=1)
    query = make_image(tmp_path / "q.png", "red", seed=99)
    # no knowledge: the nearest library images' captions and labels are the evidence
    caption = ask(lib, None, query)
    assert caption.extra["task"] == "caption" and "red" in caption.text
    assert caption.evidence[0]["chunk_type"] == "caption"
    label = ask(lib, None, query, labels=["red", "green", "blue"])
    assert label.text == "red" and label.citations
    # with knowledge images: image -> knowledge image brings that record's chunks
    kb = KnowledgeBase.attach(lib)
    kb.add(
        [
            KnowledgeRecord.from_dict(
                {
                    "name": "Crimson Field",
                    "category": "Park",
                    "images": [str(tmp_path / "img" / "img0.png")],
                    "chunks": {"location": "Scarlet Valley"},
                }
            ),
            KnowledgeRecord.from_dict(
                {
                    "name": "Azure Lake",
                    "category": "Park",
                    "images": [str(tmp_path / "img" / "img8.png")],
                    "chunks": {"location": "Cobalt Hills"},
                }
            ),
        ]
    )
    assert kb.has_images
    where = ask(lib, "Where is this place?", query)
    assert where.text == "Scarlet Valley" and where.extra["task"] == "vqa"
    assert all(e["chunk_type"] != "image" for e in where.evidence)


def test_cli_ask_and_knowledge_add(tmp_path: Path):
    import json

    import typer
    from typer.testing import CliRunner

    from rsrag.cli.ask import ask_command
    from rsrag.cli.knowledge import app as knowledge_app

    app = typer.Typer()
    app.command("ask")(ask_command)
    app.add_typer(knowledge_app, name="knowledge")
    runner = CliRunner()
    Library.create(tmp_path, "lib", encoder="test-hash")
    good = tmp_path / "k.jsonl"
    good.write_text(json.dumps(FACTS[0]) + "\n")
    result = runner.invoke(app, ["knowledge", "add", str(good), "--index", "lib", "--root", str(tmp_path)])
    assert result.exit_code == 0 and json.loads(result.output)["chunks"] == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(FACTS[1]) + "\n" + '{"name": "X", "lat": 300, "chunks": {"history": "h"}}\n')
    result = runner.invoke(app, ["knowledge", "add", str(bad), "--index", "lib", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "bad.jsonl:2: lon/lat out of range" in result.output
    assert len(KnowledgeBase.open(Library.open(tmp_path, "lib"))) == 3  # the valid first line was not stored either
    typed = tmp_path / "typed.jsonl"  # a wrong type is refused whole too, and types no column
    typed.write_text(json.dumps({**FACTS[1], "source": 5, "images": [str(make_image(tmp_path / "i.png", "red", 1))]}))
    result = runner.invoke(app, ["knowledge", "add", str(typed), "--index", "lib", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "'source' must be a string or null" in result.output
    assert len(KnowledgeBase.open(Library.open(tmp_path, "lib"))) == 3
    typed.write_text(json.dumps({**FACTS[1], "source": "atlas"}))
    result = runner.invoke(app, ["knowledge", "add", str(typed), "--index", "lib", "--root", str(tmp_path)])
    assert result.exit_code == 0 and json.loads(result.output)["chunks"] == 3

    result = runner.invoke(
        app, ["ask", "When was the Red Tower built?", "--index", "lib", "--root", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["answer"] == "1890-1895" and out["citations"][0]["chunk_id"] == "red-tower#construction_period"
    result = runner.invoke(app, ["ask", "", "--index", "lib", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "needs a question, an image" in result.output
    result = runner.invoke(app, ["ask", "Where?", "--index", "nope", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "no index named 'nope'" in result.output
    result = runner.invoke(
        app,
        [
            "ask",
            "Where is the Red Tower?",  # answerable: a vague question would be abstained on before any model call
            "--index",
            "lib",
            "--root",
            str(tmp_path),
            "--generator",
            "openai",
            "--url",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert result.exit_code == 2 and "cannot reach generator endpoint" in result.output


def test_image_to_text(image_library, image_records):
    info = image_to_text(image_library, image_records[9].path, k=3)
    assert info["labels"][0]["label"] == "green" and info["hits"][0]["id"] == "img9"
    assert all("green" in c["text"] for c in info["captions"])
    assert sum(lab["score"] for lab in info["labels"]) == pytest.approx(1.0)
    boxed = image_to_text(image_library, image_records[9].path, k=3, filters={"label": "blue"})
    assert {h["label"] for h in boxed["hits"]} == {"blue"}


def test_image_to_text_encodes_each_caption_once(tmp_path, image_records, monkeypatch):
    lib = Library.create(tmp_path, "fresh", encoder=HashEncoder())  # its own caption cache starts empty
    lib.add(image_records, workers=1)
    encoded: list[str] = []
    real = lib.encoder.encode_texts
    monkeypatch.setattr(lib.encoder, "encode_texts", lambda texts, **kw: encoded.extend(texts) or real(texts, **kw))
    first = image_to_text(lib, image_records[10].path, k=3)
    assert encoded and len(encoded) == len(set(encoded))
    seen = len(encoded)
    assert image_to_text(lib, image_records[10].path, k=3) == first  # same answer, from remembered caption vectors
    assert len(encoded) == seen
    image_to_text(lib, image_records[0].path, k=3)  # other neighbours: only their captions are new
    assert not set(encoded[seen:]) & set(encoded[:seen])


def test_ask_options_and_evidence_types(kb_library):
    opts = AskOptions.from_kwargs(k=2, fusion="rrf", rerank=False, task=None, generator_config=None)
    assert opts.k == 2 and opts.config == RetrievalConfig(fusion="rrf", rerank=False) and opts.generator_config == {}
    with pytest.raises(TypeError, match="config= and RetrievalConfig fields"):
        ask(kb_library, "Where?", config=RetrievalConfig(), fusion="rrf")
    with pytest.raises(TypeError, match="options= and keyword options"):
        ask(kb_library, "Where?", options=opts, k=3)
    answer = ask(kb_library, "Where is Green Park?", options=opts)
    assert len(answer.evidence) == 2 and answer.citations[0]["record_id"] == "green-park"
    assert list(answer.evidence[0]) == ["id", "record_id", "name", "chunk_type", "text", "score", "category"]
    # one answerer per library object; retrieve() hands back everything it found
    answerer = answerer_for(kb_library)
    assert answerer is answerer_for(kb_library) and isinstance(answerer, Answerer)
    found = answerer.retrieve("Where is Green Park?", None, opts)
    assert all(isinstance(e, Evidence) for e in found.evidence) and found.evidence[0].record_id == "green-park"
    assert found.fused and found.candidates and set(found.timings) == {"retrieve", "rerank"}
    _, retriever = answerer.knowledge()
    assert isinstance(retriever, KnowledgeRetriever) and not hasattr(retriever, "last_fused")


def test_answerer_does_not_keep_its_library_alive(tmp_path):
    import gc
    import weakref

    Library.create(tmp_path, "gone", encoder="test-hash")
    lib = Library.open(tmp_path, "gone", encoder=HashEncoder())
    answerer_for(lib)
    ref = weakref.ref(lib)
    del lib
    gc.collect()
    assert ref() is None


class SlowOverlap:
    """A re-ranker (word overlap) that sleeps, so that concurrent questions interleave."""

    name = "slow-overlap"

    def score(self, query, passages):
        import time

        import numpy as np

        time.sleep(0.003)
        words = set(query.lower().split())
        return np.array([len(words & set(p.lower().split())) for p in passages], np.float32)


def test_concurrent_questions_keep_their_own_evidence(kb_library, image_library, image_records):
    """Many threads share one library (and so one answerer, retriever and reranker): each answer's
    citations, evidence and fused records are those of its own question or image."""
    from concurrent.futures import ThreadPoolExecutor

    from rsrag.rerankers import Reranker

    slow = type("Slow", (SlowOverlap, Reranker), {})()
    questions = {
        "When was the Red Tower built?": "red-tower",
        "Who visited the Blue Bridge?": "blue-bridge",
        "Where is Green Park?": "green-park",
    }
    images = {"red": image_records[2].path, "green": image_records[12].path, "blue": image_records[20].path}
    jobs = [("q", q) for q in questions] * 12 + [("img", c) for c in images] * 8

    def run(job):
        kind, what = job
        if kind == "q":
            return job, ask(kb_library, what, reranker=slow, rerank=what != "Where is Green Park?")
        return job, ask(image_library, None, images[what], k=3)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs[::2] + jobs[1::2]))
    for (kind, what), answer in results:
        if kind == "q":
            want = questions[what]
            assert answer.citations[0]["record_id"] == want, what
            assert answer.evidence[0]["record_id"] == want and answer.extra["fused_record_ids"][0] == want, what
        else:
            assert what in answer.text and all(e["category"] == what for e in answer.evidence[:3]), what
