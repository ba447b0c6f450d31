"""Conversations: follow-up questions resolve against what the conversation is about, in Python, over
the service's `conversation_id` and in `rsrag chat`; images carry across turns ("the second one")."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_helpers import HashEncoder, make_records
from rsrag.index import Library
from rsrag.knowledge import KnowledgeBase, KnowledgeRecord
from rsrag.rag import AskOptions, Conversation, answerer_for
from rsrag.rag.followup import ordinal, refers_back, resolve

FACTS = [
    {"name": "Red Tower", "category": "Tower",
     "chunks": {"location": "Redtown, Kent, England", "construction_period": "1890-1895"}},
    {"name": "Blue Bridge", "category": "Bridge",
     "chunks": {"location": "Bluford, Norway", "construction_period": "1820-1825", "visitors": "King Olav V"}},
    {"name": "Green Park", "category": "Park",
     "chunks": {"location": "Greenville, Ohio", "construction_period": "1701-1703"}},
]
NO_RERANK = {"rerank": False}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("conversation")
    lib = Library.create(root, "lib", encoder="test-hash")
    lib.add(make_records(root / "images", n_per_colour=2))
    KnowledgeBase.attach(lib).add([KnowledgeRecord.from_dict(f) for f in FACTS])
    return Library.open(root, "lib", encoder=HashEncoder())


def test_follow_up_words():
    assert refers_back("When was it built?") and resolve("When was it built?", "Red Tower") == "When was Red Tower built?"
    assert resolve("What is its address?", "Red Tower") == "What is Red Tower's address?"
    assert resolve("Is there a port near it?", "Red Tower") == "Is there a port near Red Tower?"  # existential "there"
    assert not refers_back("When was Blue Bridge built?") and not refers_back("Are there boats?")
    assert ordinal("describe the second one") == 1 and ordinal("and the last image?") == -1 and ordinal("hi") is None


def test_a_follow_up_is_answered_about_the_landmark_in_focus(library):
    conversation = Conversation()
    first = conversation.ask(library, "Where is the Blue Bridge?", options=AskOptions(config=_config()))
    assert "Bluford" in first.text and conversation.focus[0] == "Blue Bridge"
    follow = conversation.ask(library, "When was it built?", options=AskOptions(config=_config()))
    assert follow.extra["resolved_question"] == "When was Blue Bridge built?"
    assert follow.text == "1820-1825" and follow.citations[0]["name"] == "Blue Bridge"
    assert [t["role"] for t in conversation.turns] == ["user", "assistant"] * 2
    # without resolution the follow-up names nothing, and its answer comes from whichever record is nearest
    plain = answerer_for(library).answer("When was it built?", None, AskOptions(config=_config(), resolve_followups=False))
    assert "resolved_question" not in plain.extra
    # a plain history (stateless API) resolves too: against what its last self-contained question retrieves
    stateless = answerer_for(library).answer("When was it built?", None, AskOptions(
        config=_config(), history=[{"role": "user", "content": "Where is the Green Park?"},
                                   {"role": "assistant", "content": "Greenville, Ohio"}]))
    assert stateless.text == "1701-1703" and stateless.extra["resolved_question"] == "When was Green Park built?"
    # a new topic is left alone
    other = conversation.ask(library, "When was Red Tower built?", options=AskOptions(config=_config()))
    assert "resolved_question" not in other.extra and other.text == "1890-1895"


def test_turns_are_bounded():
    conversation = Conversation(max_turns=4)
    from rsrag.rag import Answer

    for i in range(5):
        conversation.record(f"q{i}", Answer(f"a{i}"))
    assert [t["content"] for t in conversation.turns] == ["q3", "a3", "q4", "a4"]


def test_images_carry_across_turns(tmp_path):
    library = Library.create(tmp_path / "indexes", "images", encoder=HashEncoder())
    library.add(make_records(tmp_path / "images", n_per_colour=3))
    records = make_records(tmp_path / "query", n_per_colour=1, colours=("red",))
    conversation = Conversation()
    found = conversation.ask(library, "find images like this", records[0].path, AskOptions(config=_config()))
    assert conversation.results and conversation.image_source == "upload"
    second = conversation.results[1]
    conversation.ask(library, "describe the second one", options=AskOptions(config=_config()))
    assert conversation.image_source == second  # the library's second hit is now the image in focus
    follow = conversation.ask(library, "what is in it?", options=AskOptions(config=_config()))
    assert follow.evidence and found.evidence  # answered about the image in focus, from the library's images


def test_service_keeps_conversations(library):
    from fastapi.testclient import TestClient

    from rsrag.service import create_app

    with TestClient(create_app(library, token="")) as client:
        first = client.post("/qa", json={"question": "Where is the Blue Bridge?", "conversation_id": "new"}).json()
        cid = first["conversation_id"]
        follow = client.post("/qa", json={"question": "When was it built?", "conversation_id": cid}).json()
        assert follow["conversation_id"] == cid and follow["resolved_question"] == "When was Blue Bridge built?"
        assert follow["answer"] == "1820-1825"
        with client.stream("POST", "/qa", json={"question": "Who visited it?", "conversation_id": cid,
                                                "stream": True}) as r:
            body = "".join(r.iter_text())
        assert "event: answer" in body and "King Olav V" in body
        lost = client.post("/qa", json={"question": "and then?", "conversation_id": "nope"})
        assert lost.status_code == 404 and "start a new one" in lost.json()["error"]["message"]
        alone = client.post("/qa", json={"question": "Where is the Blue Bridge?"}).json()
        assert alone.get("conversation_id") is None


def test_chat_command_keeps_the_conversation(library, monkeypatch):
    from typer.testing import CliRunner

    from rsrag.cli import app as cli

    root = library.folder.parent
    lines = "Where is the Blue Bridge?\nWhen was it built?\n:image /no/such.png hello\n:quit\n"
    result = CliRunner().invoke(cli, ["chat", "--index", "lib", "--root", str(root)], input=lines)
    assert result.exit_code == 0, result.output
    assert "Bluford" in result.output and "1820-1825" in result.output
    assert "no/such.png" in result.output  # a bad image is one error line; the chat went on to :quit


def _config():
    from rsrag.rag import RetrievalConfig

    return RetrievalConfig(**NO_RERANK)


# ---- knowing when it does not know -----------------------------------------------------------------
def test_fit_threshold_balances_answering_and_abstaining():
    from rsrag.rag.abstain import fit_threshold

    assert 2.0 < fit_threshold([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) < 3.0
    cut = fit_threshold([1.0, 5.0, 6.0], [0.0, 2.0])  # overlapping: the cut that gets most of both right
    assert 2.0 < cut < 5.0
    with pytest.raises(ValueError):
        fit_threshold([], [])


def test_ask_abstains_on_what_the_knowledge_base_does_not_hold(library):
    from rsrag.rag import ask
    from rsrag.rag.abstain import ABSTAIN_TEXT, fitted_threshold

    threshold = fitted_threshold("cross-encoder")
    assert threshold is not None  # committed with `rsrag eval abstain --save`
    known = ask(library, "When was the Blue Bridge built?")
    assert known.text == "1820-1825" and known.citations and not known.extra.get("abstained")
    unknown = ask(library, "When was the Hagia Sophia in Istanbul built?")
    assert unknown.extra["abstained"] and unknown.text == ABSTAIN_TEXT and unknown.citations == []
    assert unknown.extra["evidence_score"] < threshold <= known.extra["evidence_score"]
    assert not ask(library, "When was the Hagia Sophia in Istanbul built?", abstain=False).extra.get("abstained")
    assert ask(library, "When was the oldest bridge built?", abstain=1e9).extra["abstained"]  # an explicit threshold
    # a place the knowledge base holds, asked for a fact it lacks: the generator says which fact is missing
    lacking = ask(library, "Who visited the Green Park?", abstain=1e9)
    assert not lacking.extra.get("abstained") and "Green Park" in lacking.extra["abstain_skipped"]


def test_search_hits_carry_a_calibrated_match_level(library, tmp_path, monkeypatch):
    import numpy as np
    from fastapi.testclient import TestClient

    from rsrag.encoders import calibration
    from rsrag.service import create_app

    scale = calibration.fit_match_scale(np.linspace(0.4, 0.8, 100), np.linspace(0.0, 0.5, 100))
    assert scale.weak == pytest.approx(0.44, abs=0.01) and scale.strong == pytest.approx(0.495, abs=0.01)
    assert [scale.level(s) for s in (0.9, 0.45, 0.1, None)] == ["strong", "weak", "none", None]
    monkeypatch.setattr(calibration, "MATCH_FILE", tmp_path / "match.json")
    with TestClient(create_app(library, token="")) as client:
        plain = client.post("/search", json={"query": "a red field", "mode": "dense", "k": 3}).json()
        assert plain["match"] is None and all(h["match"] is None for h in plain["hits"])  # no scale for this encoder
        best = plain["hits"][0]["score"]
        calibration.save_match_scale(library.encoder.id, calibration.MatchScale(strong=best + 1, weak=best - 1e-3), {})
        body = client.post("/search", json={"query": "a red field", "mode": "hybrid", "k": 3}).json()
        assert body["hits"][0]["match"] == "weak" and body["match"] == "weak"
        calibration.save_match_scale(library.encoder.id, calibration.MatchScale(strong=2.0, weak=1.5), {})
        nothing = client.post("/search", json={"query": "a red field", "mode": "dense", "k": 3}).json()
        assert nothing["match"] == "none" and {h["match"] for h in nothing["hits"]} == {"none"}
        assert client.post("/search", json={"query": "red", "mode": "bm25"}).json()["match"] is None
