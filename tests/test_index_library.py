"""Library: search modes, filters, add / delete / upsert consistency across LanceDB, FAISS and BM25,
index types, locking, crash repair and bad input. Uses the toy HashEncoder, never rs-lite."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from index_helpers import HashEncoder, assert_consistent, consistency, make_image, make_records

from rsrag.data import ImageRecord
from rsrag.index import EncoderMismatchError, FilterError, IndexBusyError, IndexExistsError, IndexNotFoundError, Library
from rsrag.index.folder import IndexFolder
from rsrag.index.fsutil import CommitCounter, writer_lock


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("images"), n_per_colour=8)  # img0-7 red, 8-15 green, 16-23 blue


@pytest.fixture
def lib(tmp_path, records):
    library = Library.create(tmp_path / "indexes", "test", encoder=HashEncoder())
    library.add(records)
    return library


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def never_returned(lib: Library, rec: ImageRecord) -> bool:
    """The record shows up in no search: its own image, its unique tag, or a filter on its id."""
    tag = rec.captions[0].split()[-1]
    found = ids(lib.search_image(rec.path, k=50)) + ids(lib.search_text(tag, k=50, mode="bm25"))
    found += ids(lib.search_text(tag, k=50, mode="hybrid"))
    found += ids(lib.search_text("x", 50, mode="dense", filters={"id": rec.id}))
    return rec.id not in found


def test_search_modes_and_hit_fields(lib, records):
    dense = lib.search_text("red", k=5, mode="dense")
    assert [h.label for h in dense] == ["red"] * 5
    assert dense[0].score >= dense[-1].score and dense[0].rank == 1
    bm25 = lib.search_text("tag17", k=3, mode="bm25")
    assert ids(bm25) == ["img17"]
    hybrid = lib.search_text("blue tag17", k=5)
    assert hybrid[0].id == "img17" and set(hybrid[0].parts) == {"dense", "bm25"}
    hit = hybrid[0].to_dict()
    assert hit["captions"] == records[17].captions and hit["path"] == str(records[17].path.resolve())
    assert hit["label"] == "blue" and hit["lon"] == 7.0 and hit["meta_score"] == 17 and hit["split"] == "train"
    assert {"id", "score", "rank", "dense_score", "bm25_score"} <= set(hit)


def test_hits_from_a_search_have_every_field_of_the_dataclass(lib, records):
    """Hits are plain dataclass instances: every field set, equal to one built from its fields."""
    from dataclasses import fields

    from rsrag.index import Hit

    for hit in lib.search_text("blue tag17", k=3) + lib.search_vector(lib.encoder.encode_texts(["red"])[0], k=2):
        values = {f.name: getattr(hit, f.name) for f in fields(Hit)}
        assert Hit(**values) == hit and isinstance(hit.captions, tuple)
    assert [h.id for h in lib.get(["img3", "nope", "img5"])] == ["img3", "img5"]


def test_search_image(lib, records):
    hits = lib.search_image(records[3].path, k=4)
    assert hits[0].id == "img3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert "img3" not in ids(lib.search_image(records[3].path, k=4, exclude_ids=["img3"]))


def test_filters(lib):
    assert {h.label for h in lib.search_text("red", 30, mode="dense", filters={"label": "green"})} == {"green"}
    two = lib.search_text("red", 30, mode="dense", filters=["label=green,blue"])
    assert {h.label for h in two} == {"green", "blue"}
    hits = lib.search_text("red", 30, mode="dense", filters=["meta_score>=20", "label!=red"])
    assert sorted(ids(hits)) == ["img20", "img21", "img22", "img23"]
    assert {h.split for h in lib.search_text("area", 30, mode="bm25", where="split = 'test'")} == {"test"}
    boxed = lib.search_text("red", 30, mode="hybrid", bbox=(2, 0, 4, 1))  # lon 2..4, lat 0..1
    assert sorted(ids(boxed)) == ["img12", "img13", "img14", "img2", "img3", "img4"]
    assert ids(lib.search_text("red", 5, filters={"label": "nothing"})) == []


def test_bad_filters_give_clear_errors(lib, tmp_path):
    with pytest.raises(FilterError, match="unknown filter column 'colour'.*label"):
        lib.search_text("red", filters={"colour": "red"})
    with pytest.raises(FilterError, match="cannot parse"):
        lib.search_text("red", filters=["label~red"])
    with pytest.raises(FilterError, match="nosuch"):
        lib.search_text("red", where="nosuch = 1")
    with pytest.raises(FilterError, match="does not fit"):
        lib.search_text("red", filters=["lon>east"])
    plain = Library.create(tmp_path / "indexes", "plain", encoder=HashEncoder())
    plain.add([ImageRecord("a", make_image(tmp_path / "a.png", "red", 1))])
    with pytest.raises(FilterError, match="lon/lat"):
        plain.search_text("red", bbox=(0, 0, 1, 1))


def test_delete_is_consistent_and_final(lib, records):
    gone = [records[1], records[9], records[20]]
    assert lib.delete([r.id for r in gone] + ["no-such-id"]) == [r.id for r in gone]
    assert_consistent(lib)
    assert len(lib) == len(records) - 3
    assert all(never_returned(lib, r) for r in gone)
    reopened = Library.open(lib.folder.parent, "test", encoder=HashEncoder())
    assert_consistent(reopened)
    assert all(never_returned(reopened, r) for r in gone)


def test_upsert_replaces_in_all_three_stores(lib, records, tmp_path):
    old = records[2]  # red
    new = ImageRecord(old.id, make_image(tmp_path / "new.png", "blue", 999), "train", "blue",
                      ["a blue lake newtag"], {"lon": 50.0, "lat": 50.0})
    before = consistency(lib)
    report = lib.upsert([new])
    assert (report.replaced, report.added) == (1, 0)
    assert_consistent(lib)
    after = consistency(lib)
    assert len(after["lance"]) == len(before["lance"]) and sorted(after["ids"]) == sorted(before["ids"])
    assert ids(lib.search_text("tag2", 5, mode="bm25")) == []  # old caption gone
    assert ids(lib.search_text("newtag", 5, mode="bm25")) == ["img2"]
    assert lib.search_image(new.path, k=1)[0].id == "img2"
    assert "img2" not in ids(lib.search_text("x", 30, mode="dense", filters={"label": "red"}))
    assert ids(lib.search_text("x", 30, mode="dense", bbox=(49, 49, 51, 51))) == ["img2"]
    reopened = Library.open(lib.folder.parent, "test", encoder=HashEncoder())
    assert_consistent(reopened)
    assert reopened.get(["img2"])[0].label == "blue"


def test_add_skips_existing_ids_and_duplicates(lib, records):
    report = lib.add(records[:5] + records[:2])
    assert (report.added, report.skipped, report.duplicates) == (0, 5, 2)
    assert_consistent(lib)
    assert len(lib) == len(records)


def test_new_metadata_key_becomes_a_filterable_column(lib, tmp_path):
    rec = ImageRecord("cloudy", make_image(tmp_path / "c.png", "white", 5), label="white", metadata={"cloud": 0.8})
    lib.add([rec])
    assert "cloud" in lib.columns()
    assert ids(lib.search_text("x", 5, mode="dense", filters=["cloud>0.5"])) == ["cloudy"]


def test_single_queries_set_faiss_threads_once_per_thread(lib, monkeypatch):
    """A run of single queries sets FAISS' OpenMP thread count once, not around every call; a batch
    search and a build run on FAISS' default; another thread keeps its own setting."""
    import faiss

    from rsrag.index import ann

    seen = []
    real_set = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: seen.append(n) or real_set(n))
    before = faiss.omp_get_max_threads()
    real_set(ann.DEFAULT_THREADS)
    try:
        for _ in range(5):
            lib.search_vector(np.ones(lib.dim, np.float32), 3)
        expected = [ann.SEARCH_THREADS] if ann.SEARCH_THREADS not in (0, ann.DEFAULT_THREADS) else []
        assert seen == expected
        assert faiss.omp_get_max_threads() == (ann.SEARCH_THREADS or ann.DEFAULT_THREADS)
        other = []
        worker = threading.Thread(target=lambda: other.append(faiss.omp_get_max_threads()))
        worker.start()
        worker.join()
        assert other == [ann.DEFAULT_THREADS]
        seen.clear()
        lib._index.ann.search(np.ones((ann.FEW_QUERIES + 1, lib.dim), np.float32), 3)  # a batch: all cores
        assert faiss.omp_get_max_threads() == ann.DEFAULT_THREADS
        assert seen == ([ann.DEFAULT_THREADS] if expected else [])  # switched back once, for the batch
    finally:
        real_set(before)


def test_ann_search_refuses_wrongly_shaped_or_typed_queries(lib):
    index = lib._index.ann
    good = np.ones((2, lib.dim), np.float32)
    assert index.search(good, 3)[1].shape == (2, 3)
    assert index.search(good[0], 3)[1].shape == (1, 3)
    assert (index.search(good.astype(np.float64), 3)[1] == index.search(good, 3)[1]).all()
    assert (index.search(np.asfortranarray(good), 3)[1] == index.search(good, 3)[1]).all()
    for bad in (np.ones((2, lib.dim // 2), np.float32), np.ones(lib.dim * 2, np.float32),
                np.ones((1, 2, lib.dim), np.float32), np.ones((2, lib.dim), np.int64), np.array(["x"] * lib.dim)):
        with pytest.raises(ValueError, match="queries must"):
            index.search(bad, 3)


@pytest.mark.parametrize("index_type", ["ivf:nlist=4,nprobe=2", "hnsw:m=8"])
def test_ann_index_types_stay_consistent(tmp_path, records, index_type):
    lib = Library.create(tmp_path / "indexes", "ann", encoder=HashEncoder(), index_type=index_type)
    lib.add(records)
    assert lib.manifest["index"]["type"] == index_type.split(":")[0]
    assert lib.search_image(records[5].path, k=1)[0].id == "img5"
    lib.delete(["img5", "img6"])
    assert_consistent(lib)
    assert never_returned(lib, records[5]) and never_returned(lib, records[6])
    # a filter is searched exactly: every record of the label comes back
    assert sorted(ids(lib.search_text("x", 50, mode="dense", filters={"label": "red"}))) == \
        sorted(f"img{i}" for i in range(8) if i not in (5, 6))
    reopened = Library.open(tmp_path / "indexes", "ann", encoder=HashEncoder())
    assert_consistent(reopened)
    assert never_returned(reopened, records[5])
    assert reopened.manifest["index"]["type"] == index_type.split(":")[0]


def test_auto_index_type_switches_to_ivf_when_large(tmp_path, records, monkeypatch):
    import rsrag.index.ann as ann

    monkeypatch.setattr(ann, "FLAT_MAX", 20)
    lib = Library.create(tmp_path / "indexes", "auto", encoder=HashEncoder())
    lib.add(records[:12])
    assert lib.manifest["index"]["type"] == "flat"
    lib.add(records[12:])
    assert lib.manifest["index"]["type"] == "ivf"
    assert_consistent(lib)
    assert lib.search_image(records[20].path, k=1)[0].id == "img20"


def test_missing_and_corrupt_images_are_skipped_and_reported(tmp_path, records):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    inputs = records[:3] + [ImageRecord("missing", tmp_path / "nope.png"), ImageRecord("broken", bad)] + records[3:6]
    lib = Library.create(tmp_path / "indexes", "bad", encoder=HashEncoder())
    report = lib.add(inputs, batch_size=2)
    assert report.added == 6 and sorted(f[0] for f in report.failed) == ["broken", "missing"]
    assert all(f[2] for f in report.failed)
    assert_consistent(lib)


def test_open_errors(tmp_path, lib):
    with pytest.raises(IndexNotFoundError, match="no index named 'nope'.*test"):
        Library.open(tmp_path / "indexes", "nope")
    with pytest.raises(IndexExistsError):
        Library.create(tmp_path / "indexes", "test", encoder=HashEncoder())

    class Small(HashEncoder):
        dim = 32

    with pytest.raises(EncoderMismatchError, match="dimension mismatch.*32.*64"):
        Library.open(tmp_path / "indexes", "test", encoder=Small())

    class Other(HashEncoder):
        id = "test-hash@v2"

    with pytest.raises(EncoderMismatchError, match="built with encoder test-hash@v1"):
        Library.open(tmp_path / "indexes", "test", encoder=Other())
    with pytest.raises(EncoderMismatchError, match="dimension mismatch"):
        lib.search_vector(np.ones(10, np.float32))


def test_second_writer_gets_a_clear_error_or_waits(lib, records, tmp_path):
    with writer_lock(lib.folder):
        other = Library.open(tmp_path / "indexes", "test", encoder=HashEncoder(), lock_timeout=0.2)
        with pytest.raises(IndexBusyError, match=r"being written by pid \d+"):
            other.delete(["img0"])
        assert len(lib.search_text("red", 3)) == 3  # readers are never blocked

    def hold() -> None:
        with writer_lock(lib.folder):
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.1)
    waiting = Library.open(tmp_path / "indexes", "test", encoder=HashEncoder(), lock_timeout=10)
    assert waiting.delete(["img0"]) == ["img0"]  # serialised behind the holder
    holder.join()
    assert_consistent(waiting)


def test_reader_sees_other_writers_changes(lib, records, tmp_path):
    reader = Library.open(tmp_path / "indexes", "test", encoder=HashEncoder())
    assert reader.search_image(records[4].path, k=1)[0].id == "img4"
    lib.delete(["img4"])
    assert never_returned(reader, records[4])
    late = make_image(tmp_path / "late.png", "yellow", 3)
    lib.add([ImageRecord("late", late, label="yellow", captions=["late one"])])
    assert ids(reader.search_text("late", 3, mode="bm25")) == ["late"]


def test_searches_check_the_commit_counter_not_the_manifest(lib, records, tmp_path, monkeypatch):
    """Between commits a search reads the mapped counter and does not stat the manifest; a commit
    by another object (or process: the file is shared) is seen by the very next search."""
    reader = Library.open(tmp_path / "indexes", "test", encoder=HashEncoder())
    stats = []
    real_stamp = IndexFolder._stamp
    monkeypatch.setattr(IndexFolder, "_stamp", lambda self: stats.append(1) or real_stamp(self))
    for _ in range(5):
        reader.search_text("red", 3, mode="bm25")
    assert stats == []
    other = CommitCounter(lib.folder)
    before = other.value()
    lib.delete(["img5"])
    assert other.value() == before + 1
    assert "img5" not in ids(reader.search_text("tag5", 5, mode="bm25")) and stats


def test_commit_counter_in_a_read_only_folder_falls_back_to_the_manifest(tmp_path, records, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setattr("rsrag.index.fsutil.os.open", lambda *a, **k: (_ for _ in ()).throw(PermissionError("ro")))
    counter = CommitCounter(folder)
    assert counter.value() is None
    counter.bump()  # nothing to write to, and no error


def test_repair_after_a_crash_between_lancedb_and_faiss(tmp_path, records, monkeypatch):
    """A writer that dies after its LanceDB commit: the next open repairs FAISS and BM25 from
    LanceDB, without embedding anything again."""
    lib = Library.create(tmp_path / "indexes", "crash", encoder=HashEncoder())
    lib.add(records[:10])

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(IndexFolder, "apply", die)
    with pytest.raises(KeyboardInterrupt):
        lib.add(records[10:])
    with pytest.raises(KeyboardInterrupt):
        lib.delete(["img0"])
    monkeypatch.undo()
    (lib.folder / "bm25.npz").write_bytes(b"garbage")  # a damaged derived file is rebuilt too
    encoder = HashEncoder()
    reopened = Library.open(tmp_path / "indexes", "crash", encoder=encoder)
    assert_consistent(reopened)
    assert len(reopened) == len(records) - 1
    assert never_returned(reopened, records[0])
    assert reopened.search_image(records[15].path, k=1)[0].id == "img15"
    assert encoder.images_encoded == 2  # the two query images above: nothing was embedded again
    assert reopened.add(records).added == 1  # img0 again; nothing else re-embedded


def test_add_embedded_takes_precomputed_vectors(tmp_path, records):
    lib = Library.create(tmp_path / "indexes", "vec", encoder=HashEncoder())
    vectors = HashEncoder().encode_images([r.path for r in records])
    report = lib.add_embedded(records, vectors * 3.0)  # normalised on the way in
    assert report.added == len(records)
    hits = lib.search_vector(vectors[7], k=2)
    assert hits[0].id == "img7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert lib.add_embedded(records[:2], vectors[:2]).skipped == 2
    assert_consistent(lib)
    with pytest.raises(EncoderMismatchError, match="dimension mismatch"):
        lib.add_embedded(records[:1], np.ones((1, 10), np.float32))
