"""Knowledge-grounded QA: fusion, prompt budget, and `ask` end to end on a small knowledge set."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_helpers import HashEncoder, make_image, make_records  # noqa: F401  (registers test-hash)
from rsrag.generators import Generation, Generator
from rsrag.index import IndexNotFoundError, Library
from rsrag.knowledge import KnowledgeBase, KnowledgeRecord
from rsrag.rag import Answer, PromptBuilder, QAInputError, RetrievalConfig, ask, fuse_rrf, fuse_weighted
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


def test_rrf_fusion_orders_by_summed_reciprocal_ranks():
    lists = {"text": [("a", 0.9), ("b", 0.8), ("c", 0.1)], "bm25": [("b", 10.0), ("c", 5.0)]}
    fused = fuse_rrf(lists, k=60)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61) and fused["a"] == pytest.approx(1 / 61)
    assert sorted(fused, key=lambda c: -fused[c]) == ["b", "c", "a"]
    assert max(fuse_rrf(lists, weights={"text": 1.0, "bm25": 0.0}).items(), key=lambda kv: kv[1])[0] == "a"


def test_weighted_fusion_follows_alpha():
    lists = {"text": [("a", 0.9), ("b", 0.5)], "image": [("c", 0.9), ("a", 0.1)]}
    top = lambda alpha: max(fuse_weighted(lists, alpha).items(), key=lambda kv: kv[1])[0]  # noqa: E731
    assert top(0.0) == "a" and top(1.0) == "c"
    fused = fuse_weighted(lists, 0.5)
    assert fused["a"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.9)
    assert fused["c"] == pytest.approx(0.5 * 0.9 + 0.5 * 0.5)  # absent from text: that list's floor
    with_bm25 = fuse_weighted({"text": [("a", 0.5), ("b", 0.5)], "bm25": [("b", 8.0), ("a", 2.0)]}, bm25_weight=0.5)
    assert with_bm25["b"] == pytest.approx(0.75) and with_bm25["a"] == pytest.approx(0.375)
    assert fuse_weighted({"text": [("a", 0.2)]}, alpha=0.9) == {"a": pytest.approx(0.2)}  # no image: text only
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
            "Where is it?",
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
