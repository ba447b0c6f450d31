"""Knowledge records: question typing and grounding, the RSWK converter, JSONL ingestion and the
knowledge table (stored with the library machinery, crash-safe against malformed input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_helpers import HashEncoder, make_records  # noqa: F401  (registers the test-hash encoder)
from rsrag.index import Library
from rsrag.knowledge import (
    Chunk,
    KnowledgeBase,
    KnowledgeFormatError,
    KnowledgeRecord,
    convert_rswk,
    ground_question,
    load_qa_items,
    question_type,
    read_jsonl,
)
from rsrag.knowledge.rswk import measurement_fact, parse_coordinates

KNOWN = {"Piazza Navona", "Muradiye Complex", "Pontigny Abbey", "Mahane Yehuda Market"}


@pytest.fixture(scope="module")
def rswk_records(data_root: Path) -> dict[str, KnowledgeRecord]:
    return {r.name: r for r in convert_rswk(data_root / "rswk", names=KNOWN)}


def _chunks(record: KnowledgeRecord, ctype: str) -> list[str]:
    return [c.text for c in record.chunks if c.type == ctype]


def test_converter_aggregates_every_file(rswk_records):
    assert set(rswk_records) == KNOWN
    navona = rswk_records["Piazza Navona"]
    assert navona.id == "piazza-navona" and navona.category == "Historic Site"
    assert _chunks(navona, "location") == ["Rome, Italy"]  # vqa_wk: "What is the location of ..."
    assert _chunks(navona, "name") == ["Piazza Navona"]
    assert any("2019" in t for t in _chunks(navona, "rs_measurements"))  # vqa_rsk
    assert navona.chunk_text(navona.chunks[1]).startswith("Piazza Navona (Historic Site) - ")
    market = rswk_records["Mahane Yehuda Market"]
    assert _chunks(market, "address")[0].startswith("Bounded by Jaffa Road")
    pontigny = rswk_records["Pontigny Abbey"]  # one of the 320 landmarks of vqa_c
    env = " ".join(_chunks(pontigny, "environment"))
    assert "The NDVI value is 0.13, which indicates low vegetation coverage." in env
    assert len(_chunks(pontigny, "environment")) >= 3
    ids = [c.id for r in rswk_records.values() for c in r.chunks]
    assert len(ids) == len(set(ids)) and "pontigny-abbey#environment-2" in ids


def test_question_wording_gives_type_and_grounding(data_root: Path):
    items = load_qa_items(data_root / "rswk")
    assert len(items) == 2993
    templates = {}
    for item in items:
        templates.setdefault(item.question, item)
    assert len(templates) == 45
    for question, item in templates.items():
        grounded = item.grounded
        assert item.name in grounded, question
        assert "remote image" not in grounded and "<image>" not in grounded
        assert item.qtype is not None, question
    assert question_type("What was the original primary function of the site captured?") == "original_function"
    assert question_type("What significant major events are part of the site's history?") == "events"
    assert question_type("What additional details are available about this remote image location?") == "description"
    assert question_type("What is the ALBEDO value for January 2019 in the remote image?") == "rs_measurements"
    assert (
        ground_question("Whatarchitectural characteristics are notable here?", "X")
        == "What architectural characteristics are notable at X?"
    )
    assert (
        ground_question("What is the location of the place in the remote image?", "Rome")
        == "What is the location of Rome?"
    )


def test_coordinates_and_measurements():
    lon, lat = parse_coordinates("34°44′12″N 92°17′56″W")
    assert lat == pytest.approx(34.7367, abs=1e-3) and lon == pytest.approx(-92.2989, abs=1e-3)
    assert parse_coordinates("Rome, Italy") is None
    assert (
        measurement_fact("What is the ALBEDO value for January 2019 in the remote image?", "0.45")
        == "ALBEDO January 2019: 0.45"
    )


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_read_jsonl_reports_the_bad_line(tmp_path: Path):
    good = {"name": "Old Mill", "category": "Museum", "chunks": {"location": "Leeds"}}
    with pytest.raises(KnowledgeFormatError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(_jsonl(tmp_path / "bad.jsonl", [good, "{oops"]))
    with pytest.raises(KnowledgeFormatError, match=r":3: chunk 0 has unknown type 'colour'"):
        read_jsonl(
            _jsonl(tmp_path / "bad2.jsonl", [good, "", {"name": "B", "chunks": [{"type": "colour", "text": "red"}]}])
        )
    with pytest.raises(KnowledgeFormatError, match=r":1: missing or empty 'name'"):
        read_jsonl(_jsonl(tmp_path / "bad3.jsonl", [{"chunks": {"history": "x"}}]))
    with pytest.raises(KnowledgeFormatError, match=r":2: duplicate record id 'old-mill'"):
        read_jsonl(_jsonl(tmp_path / "bad4.jsonl", [good, good]))
    (rec,) = read_jsonl(_jsonl(tmp_path / "ok.jsonl", [{**good, "images": ["a.png"], "lon": 1.5, "lat": 53.8}]))
    assert rec.id == "old-mill" and rec.chunks[0].id == "old-mill#location"
    assert rec.images == [str(tmp_path / "a.png")] and rec.lon == 1.5


def test_knowledge_table_ingest_replace_and_malformed_file(tmp_path: Path):
    lib = Library.create(tmp_path / "idx", "lib", encoder="test-hash")
    kb = KnowledgeBase.attach(lib)
    assert (tmp_path / "idx" / "lib" / "knowledge" / "manifest.json").is_file()
    rows = [
        {
            "name": "Red Tower",
            "category": "Tower",
            "chunks": {"location": "Redtown", "history": ["Built in 1900.", "Burnt in 1950."]},
        },
        {
            "name": "Blue Bridge",
            "category": "Bridge",
            "chunks": {"construction_period": "1820-1825"},
            "lon": 2.0,
            "lat": 48.0,
        },
    ]
    report = kb.add_jsonl(_jsonl(tmp_path / "k.jsonl", rows))
    assert report.to_dict()["chunks"] == 4 and len(kb) == 4
    assert kb.records() == ["blue-bridge", "red-tower"]
    hit = kb.index.get(["red-tower#history-2"])[0]
    assert hit.metadata["text"] == "Burnt in 1950." and hit.metadata["chunk_type"] == "history"
    assert hit.metadata["record_id"] == "red-tower" and hit.label == "Tower"
    assert kb.search_bm25("Redtown", 3)[0].id == "red-tower#location"

    before = sorted(kb.index.rows(["id"]).column("id").to_pylist())
    with pytest.raises(KnowledgeFormatError, match=":2:"):
        kb.add_jsonl(_jsonl(tmp_path / "broken.jsonl", [{"name": "Green Park", "chunks": {"history": "x"}}, "{broken"]))
    assert sorted(kb.index.rows(["id"]).column("id").to_pylist()) == before  # nothing lost, nothing half-added

    kb.add([KnowledgeRecord.from_dict({"name": "Red Tower", "chunks": {"location": "Newtown"}})])
    ids = sorted(kb.index.rows(["id"]).column("id").to_pylist())
    assert ids == ["blue-bridge#construction_period", "red-tower#location"]  # stale history chunks removed
    reopened = KnowledgeBase.open(Library.open(tmp_path / "idx", "lib"))
    assert reopened is not None and len(reopened) == 2
    assert Library.list(tmp_path / "idx")[0]["name"] == "lib"  # the sub-index is not listed as an index


def _table_state(kb: KnowledgeBase) -> tuple:
    """Everything a refused ingestion must leave as it was: rows, schema and table version."""
    table = kb.index.rows()
    rows = sorted(zip(*(table.column(c).to_pylist() for c in ("id", "text", "source"))))
    return rows, table.schema, kb.index.version


def test_ingest_with_a_wrong_type_writes_nothing(tmp_path: Path):
    """A record with `"source": 5` and an image is refused before any write (it used to store its
    chunks and create an int `source` column that then refused every string source)."""
    image = make_records(tmp_path / "img", n_per_colour=1)[0].path
    lib = Library.create(tmp_path / "idx", "lib", encoder="test-hash")
    kb = KnowledgeBase.attach(lib)
    bad = {"name": "Old Mill", "source": 5, "images": [str(image)], "chunks": {"location": "Leeds"}}
    with pytest.raises(KnowledgeFormatError, match=r"bad\.jsonl:1: 'source' must be a string or null, got int 5"):
        kb.add_jsonl(_jsonl(tmp_path / "bad.jsonl", [bad]))
    assert len(kb) == 0 and "source" not in kb.index.columns()  # no column typed by the refused value
    with pytest.raises(KnowledgeFormatError, match="'source' must be a string"):  # built in code, same check
        kb.add([KnowledgeRecord("old-mill", "Old Mill", chunks=[Chunk("location", "Leeds")], images=[str(image)],
                                source=5)])
    assert len(kb) == 0

    good = {"name": "Old Mill", "source": "survey 1990", "images": [str(image)], "chunks": {"location": "Leeds"}}
    assert kb.add_jsonl(_jsonl(tmp_path / "good.jsonl", [good])).to_dict()["images"] == 1
    hit = kb.index.get(["old-mill#location"])[0]
    assert hit.metadata["source"] == "survey 1990"

    before = _table_state(kb)
    refused = [
        {**good, "name": "New Mill", "chunks": [{"type": "history", "text": "Built.", "source": 7}]},  # chunk source
        {**good, "name": "Lost Mill", "images": [str(tmp_path / "missing.png")]},  # no such image file
        {**good, "name": "Odd Mill", "category": None, "images": 5},
    ]
    for i, row in enumerate(refused):
        with pytest.raises(KnowledgeFormatError):
            kb.add_jsonl(_jsonl(tmp_path / f"refused{i}.jsonl", [good, row]))
    assert _table_state(kb) == before  # same rows, same schema, same version


def test_ingest_undoes_the_upsert_when_the_stale_deletion_fails(tmp_path: Path, monkeypatch):
    from rsrag.index import IndexBusyError

    lib = Library.create(tmp_path / "idx", "lib", encoder="test-hash")
    kb = KnowledgeBase.attach(lib)
    kb.add([KnowledgeRecord.from_dict({"name": "Red Tower", "chunks": {"location": "Redtown", "history": "Old."}})])
    before = _table_state(kb)[0]
    real_delete, calls = kb.index.delete, []

    def busy_once(ids):
        calls.append(list(ids))
        if len(calls) == 1:
            raise IndexBusyError("index busy")
        return real_delete(ids)

    monkeypatch.setattr(kb.index, "delete", busy_once)
    # replaces the location, adds an address and drops the history chunk (the deletion that fails)
    update = {"name": "Red Tower", "chunks": {"location": "Newtown", "address": "1 Main Street"}}
    with pytest.raises(IndexBusyError):
        kb.add([KnowledgeRecord.from_dict(update)])
    assert calls[0] == ["red-tower#history"] and calls[1] == ["red-tower#address"]  # the undo deleted the new row
    assert _table_state(kb)[0] == before  # the replaced row is back, the new one gone
    assert [h.id for h in kb.search_bm25("Redtown", 3)] == ["red-tower#location"]
    monkeypatch.undo()
    kb.add([KnowledgeRecord.from_dict(update)])
    assert sorted(r[0] for r in _table_state(kb)[0]) == ["red-tower#address", "red-tower#location"]
