"""Writes that cost the batch, not the index: FAISS and BM25 files are not rewritten on every
write (readers catch up from LanceDB), and a read snapshot follows its writer in place instead of
reading the whole index again, with the same results as a fresh open."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from index_helpers import HashEncoder, assert_consistent, make_records

from rsrag.data import ImageRecord
from rsrag.index import Library
from rsrag.index import folder as folder_module
from rsrag.index.rows import RecordRows
from rsrag.index.store import RecordStore


@pytest.fixture
def records(tmp_path):
    return make_records(tmp_path / "images", n_per_colour=12)


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def test_small_writes_leave_faiss_and_bm25_files_alone(tmp_path, records, monkeypatch):
    lib = Library.create(tmp_path / "indexes", "lag", encoder=HashEncoder())
    lib.add(records[:20])  # the first write makes the files
    faiss_file, bm25_file = lib.folder / "vectors.faiss", lib.folder / "bm25.npz"
    stamps = faiss_file.stat().st_mtime_ns, bm25_file.stat().st_mtime_ns
    lib.add(records[20:30])
    lib.delete(["img3"])
    assert (faiss_file.stat().st_mtime_ns, bm25_file.stat().st_mtime_ns) == stamps
    manifest = lib.manifest
    assert manifest["artefacts"]["lance_version"] < manifest["lance_version"] == lib.version
    assert manifest["counts"]["records"] == 29

    reader = Library.open(tmp_path / "indexes", "lag", encoder=HashEncoder())  # catches up from LanceDB
    assert_consistent(reader)
    assert ids(reader.search_text("tag25", 1, mode="bm25")) == ["img25"]
    assert "img3" not in ids(reader.search_text("tag3", 5, mode="bm25"))
    assert faiss_file.stat().st_mtime_ns == stamps[0]  # a reader does not write the lag out

    lib.compact()
    assert faiss_file.stat().st_mtime_ns != stamps[0]
    assert lib.manifest["artefacts"]["lance_version"] == lib.version

    monkeypatch.setattr(folder_module, "DELTA_MIN", 5)  # past the limit a write rewrites them
    lib.add(records[30:])
    assert lib.manifest["artefacts"]["lance_version"] == lib.version


def test_record_rows_apply_matches_a_fresh_scan(tmp_path, records):
    lib = Library.create(tmp_path / "indexes", "rows", encoder=HashEncoder())
    lib.add(records[:10])
    store = lib.store
    rows = RecordRows(store.scan([c for c in store.columns() if c != "rid"]))
    before = store.version
    del lib.changes[:]
    lib.add([ImageRecord("new", records[0].path, label="red", captions=["brand new"], metadata={"site": "x"})])
    lib.upsert([ImageRecord("img2", records[2].path, label="green", captions=["changed"])])
    lib.delete(["img4"])
    for change in lib.changes:
        assert change.base_version >= before
        rows.apply(change.rows, change.removed)
    fresh = RecordRows(store.scan([c for c in store.columns() if c != "rid"]))
    assert rows.rid_of == fresh.rid_of
    live = sorted(fresh.rid_of.values())
    assert [rows.rows[r] for r in live] == [fresh.rows[r] for r in live]
    assert [rows.metadata["site"][r] for r in live] == [fresh.metadata["site"][r] for r in live]


def test_a_snapshot_follows_its_writer_without_reading_everything(tmp_path, records, monkeypatch):
    writer = Library.create(tmp_path / "indexes", "snap", encoder=HashEncoder())
    writer.add(records[:24])
    snapshot = Library(writer.location, encoder=writer.encoder, auto_refresh=False).preload()
    del writer.changes[:]
    writer.add(records[24:30])
    writer.upsert([ImageRecord("img1", records[30].path, label="blue", captions=["moved tag1"],
                               metadata={"lon": 1.0, "lat": 0.0, "score": 1})])
    writer.delete(["img5", "img6"])

    scans = []
    real_scan = RecordStore.scan
    monkeypatch.setattr(RecordStore, "scan", lambda self, *a, **k: scans.append(a) or real_scan(self, *a, **k))
    assert snapshot.follow(writer)
    assert not [a for a in scans if a and "captions" in a[0]], "the snapshot read every record again"
    monkeypatch.undo()

    fresh = Library.open(tmp_path / "indexes", "snap", encoder=HashEncoder())
    assert snapshot.version == fresh.version and len(snapshot) == len(fresh) == 28
    assert not snapshot.is_stale()
    rng = np.random.default_rng(0)
    for query in ["red", "blue tag1", "tag26", "tag5", "green field", "moved"]:
        for mode in ("dense", "bm25", "hybrid"):
            a, b = snapshot.search_text(query, 8, mode=mode), fresh.search_text(query, 8, mode=mode)
            assert [(h.id, round(h.score, 5)) for h in a] == [(h.id, round(h.score, 5)) for h in b], (query, mode)
    for _ in range(5):
        vector = rng.standard_normal(64).astype(np.float32)
        assert ids(snapshot.search_vector(vector, 6, where="meta_score > 3")) == ids(fresh.search_vector(vector, 6, where="meta_score > 3"))
    assert snapshot.get(["img1"])[0].label == "blue" and snapshot.get(["img5", "img25"])[0].id == "img25"
    assert snapshot.count(where="label = 'blue'") == fresh.count(where="label = 'blue'")


def test_follow_refuses_a_gap(tmp_path, records):
    """A snapshot behind writes it did not see through this writer reopens instead."""
    writer = Library.create(tmp_path / "indexes", "gap", encoder=HashEncoder())
    writer.add(records[:5])
    snapshot = Library(writer.location, encoder=writer.encoder, auto_refresh=False)
    other = Library.open(tmp_path / "indexes", "gap", encoder=HashEncoder())
    other.add(records[5:8])  # another writer (as another process would)
    writer.add(records[8:10])
    assert not snapshot.follow(writer)
    assert snapshot.is_stale()


def test_searches_run_while_a_snapshot_follows(tmp_path, records):
    writer = Library.create(tmp_path / "indexes", "busy", encoder=HashEncoder())
    writer.add(records[:10])
    snapshot = Library(writer.location, encoder=writer.encoder, auto_refresh=False).preload()
    errors, stop = [], threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                for hit in snapshot.search_text("red tag2", 5, mode="hybrid"):
                    assert hit.id.startswith("img")
            except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)
                return

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for start in range(10, len(records), 2):
            del writer.changes[:]
            writer.add(records[start:start + 2])
            writer.delete([f"img{start - 10}"])
            assert snapshot.follow(writer)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:1]
    assert len(snapshot) == len(Library.open(tmp_path / "indexes", "busy", encoder=HashEncoder()))
