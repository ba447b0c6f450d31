"""Records the index refuses, names it refuses, and lookups by id (issue 12: #2, #6, #8, #10).

Every refusal is a `RecordError` / `IndexNameError` raised before anything is written: the table
version, the columns and the record count stay as they were."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from index_helpers import HashEncoder, assert_consistent, make_image, make_records

from rsrag.data import ImageRecord
from rsrag.index import IndexNameError, Library, RecordError, build_index, validate_index_name
from rsrag.index.store import KNOWN_COLUMNS, RecordStore


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("images"), n_per_colour=4)  # metadata lon, lat (float), score (int)


@pytest.fixture
def lib(tmp_path, records):
    library = Library.create(tmp_path / "indexes", "recs", encoder=HashEncoder())
    library.add(records)
    return library


def vectors(n: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)


def state(lib: Library) -> tuple:
    """What a refused write must leave untouched."""
    return lib.version, lib.columns(), len(lib), lib.count()


def refused(lib: Library, recs: list, match: str, **kwargs) -> RecordError:
    before = state(lib)
    with pytest.raises(RecordError, match=match) as err:
        lib.add_embedded(recs, vectors(len(recs)), **kwargs)
    assert state(lib) == before
    assert state(Library.open(lib.folder.parent, lib.name, encoder=HashEncoder())) == before
    assert_consistent(lib)
    return err.value


def rec(i: str, **metadata) -> ImageRecord:
    return ImageRecord(i, None, label="x", captions=[f"record {i}"], metadata=metadata)


# ---- #2 integers outside int64 --------------------------------------------------------------------
def test_integer_outside_int64_is_a_record_error_for_a_new_column(lib):
    err = refused(lib, [rec("big", n=18446744073709551616)], r"'n'.*int64.*64-bit integer range")
    assert isinstance(err, ValueError) and not isinstance(err, OverflowError)


def test_integer_outside_int64_is_a_record_error_for_an_existing_int_column(lib):
    refused(lib, [rec("big", score=-(2**63) - 1)], r"'score'.*int64")
    assert lib.add_embedded([rec("edge", score=2**63 - 1)], vectors(1)).added == 1
    assert lib.get(["edge"])[0].metadata["meta_score"] == 2**63 - 1


# ---- #6 values that do not fit their column; fixed geo types ----------------------------------
def test_float_with_a_fraction_is_refused_by_an_int_column_not_truncated(lib):
    err = refused(lib, [rec("frac", score=2.75)], r"record 'frac'.*'score'.*2\.75.*int64")
    assert "fractional" in str(err)
    lib.add_embedded([rec("whole", score=3.0)], vectors(1))  # no fraction: nothing is lost
    assert lib.get(["whole"])[0].metadata["meta_score"] == 3


def test_text_or_bool_is_refused_by_a_number_column_and_an_int_fits_a_float_column(lib):
    refused(lib, [rec("s", lon="east")], r"'lon'.*float64.*not a number")
    refused(lib, [rec("b", score=True)], r"'score'.*int64")
    lib.add_embedded([rec("int-lon", lon=5, lat=1)], vectors(1))
    hit = lib.get(["int-lon"])[0]
    assert hit.metadata["lon"] == 5.0 and isinstance(hit.metadata["lon"], float)
    assert [h.id for h in lib.search_text("x", 50, mode="dense", bbox=(4.5, 0.5, 5.5, 1.5))] == ["int-lon"]


def test_known_geo_and_time_keys_have_a_fixed_type_from_the_first_value(tmp_path):
    lib = Library.create(tmp_path / "indexes", "geo", encoder=HashEncoder())
    before = state(lib)
    with pytest.raises(RecordError, match=r"'lon'.*float64"):
        lib.add_embedded([rec("a", lon="notanumber", lat=1.0)], vectors(1))
    assert state(lib) == before  # no table, no column, nothing
    lib.add_embedded([rec("b", lon=7, lat=2, gsd=1, crs="EPSG:4326", date="2021-06-01",
                          datetime="2021-06-01T10:30:00Z", footprint="POLYGON((0 0,1 0,1 1,0 0))")], vectors(1))
    schema = lib.store.schema()
    for column in ("lon", "lat", "gsd", "crs", "date", "datetime", "footprint"):
        assert schema.field(column).type == KNOWN_COLUMNS[column], column
    assert schema.field("lon").type == pa.float64()  # though the first value was an int
    assert [h.id for h in lib.search_text("x", 5, mode="dense", bbox=(6, 1, 8, 3))] == ["b"]
    refused(lib, [rec("c", date="yesterday")], r"'date'.*ISO-8601")
    lib.add_embedded([rec("d", date=date(2022, 1, 2))], vectors(1))
    assert lib.get(["d"])[0].metadata["date"] == "2022-01-02"


def test_a_new_key_takes_its_type_from_the_whole_batch_not_its_first_chunk(tmp_path):
    lib = Library.create(tmp_path / "indexes", "mixed", encoder=HashEncoder())
    lib.add_embedded([rec("a", cloud=1), rec("b", cloud=2.5)], vectors(2), chunk_size=1)
    assert lib.store.schema().field("cloud").type == pa.float64()
    assert [h.metadata["cloud"] for h in lib.get(["a", "b"])] == [1.0, 2.5]


def test_the_whole_batch_is_checked_before_the_first_write(tmp_path, records):
    lib = Library.create(tmp_path / "indexes", "batch", encoder=HashEncoder())
    lib.add_embedded([rec("first", score=1)], vectors(1))
    many = [rec(f"r{i}", score=i, newkey="x") for i in range(40)] + [rec("bad", score=0.5)]
    refused(lib, many, r"record 'bad'.*'score'", chunk_size=4)
    assert "newkey" not in lib.columns()
    encoder = HashEncoder()  # the embedding path refuses before decoding or embedding any image
    with_images = [*records[:3], ImageRecord("bad", records[3].path, metadata={"score": "many"})]
    other = Library.create(tmp_path / "indexes", "batch2", encoder=encoder)
    other.add_embedded([rec("first", score=1)], vectors(1))
    with pytest.raises(RecordError, match="'score'"):
        other.add(with_images, batch_size=1, chunk_size=1)
    assert encoder.images_encoded == 0 and len(other) == 1


def test_record_error_is_a_value_error_the_service_can_map_to_400(lib):
    err = refused(lib, [rec("x", score="lots")], "'score'")
    assert isinstance(err, ValueError)


# ---- #8 one index-name rule --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../other/idx", "a/b", "..", "a..b", ".hidden", "", "x" * 101, "x" * 300,
                                  "sp ace", "tab\t", "semi;colon", "ümlaut"])
def test_bad_index_names_are_refused_everywhere(tmp_path, name, records):
    root = tmp_path / "indexes"
    with pytest.raises(IndexNameError):
        validate_index_name(name)
    with pytest.raises(IndexNameError):
        Library.open(root, name)
    with pytest.raises(IndexNameError):
        Library.create(root, name, encoder=HashEncoder())
    with pytest.raises(IndexNameError):
        build_index(records[:1], name, root, encoder=HashEncoder())
    assert not root.exists() or not any(root.iterdir())


def test_open_cannot_reach_an_index_outside_the_root(tmp_path):
    Library.create(tmp_path, "outside", encoder=HashEncoder())
    (tmp_path / "indexes").mkdir()
    with pytest.raises(IndexNameError, match="bad index name"):
        Library.open(tmp_path / "indexes", "../outside")
    with pytest.raises(IndexNameError, match="300 characters.*at most 100"):
        Library.open(tmp_path / "indexes", "n" * 300)


@pytest.mark.parametrize("name", ["rsicd", "my-index_2.v1", "A", "x" * 100])
def test_good_index_names(tmp_path, name):
    assert validate_index_name(name) == name
    Library.create(tmp_path, name, encoder=HashEncoder())
    assert Library.open(tmp_path, name).name == name


# ---- #10 get by id through the in-memory map ---------------------------------------------------
def test_get_looks_ids_up_without_scanning_the_table(lib, records, monkeypatch, tmp_path):
    lib.preload()
    scans = []
    real_scan = RecordStore.scan
    monkeypatch.setattr(RecordStore, "scan", lambda self, *a, **k: scans.append(a) or real_scan(self, *a, **k))
    for _ in range(3):
        assert [h.id for h in lib.get(["img3", "nope", "img1", "img3"])] == ["img3", "img1", "img3"]
    assert scans == []
    monkeypatch.undo()
    new = ImageRecord("img1", make_image(tmp_path / "n.png", "blue", 99), label="blue", captions=["new"])
    lib.upsert([new])
    lib.delete(["img3"])
    got = lib.get(["img3", "img1"])
    assert [(h.id, h.label, h.score) for h in got] == [("img1", "blue", 0.0)]
    other = Library.open(lib.folder.parent, lib.name, encoder=HashEncoder())
    assert [h.label for h in other.get(["img1"])] == ["blue"]


def test_the_index_commands_refuse_bad_names_without_a_traceback(tmp_path, records):
    """`rsrag index build|info` and `rsrag search` with a name outside the root or too long: one
    error line and exit status 2, and nothing is read or created outside the root."""
    from index_helpers import make_cli, write_captions_file
    from typer.testing import CliRunner

    root = tmp_path / "indexes"
    root.mkdir()
    Library.create(tmp_path, "other", encoder=HashEncoder())  # an index just outside the root
    source = write_captions_file(tmp_path / "captions.jsonl", records[:2])
    runner, cli = CliRunner(), make_cli()
    for args in (["index", "build", str(source), "--name", "x" * 300, "--encoder", "test-hash"],
                 ["index", "build", str(source), "--name", "../escape", "--encoder", "test-hash"],
                 ["index", "info", "--name", "../other"], ["search", "red", "--index", "../other"]):
        result = runner.invoke(cli, [*args, "--root", str(root)])
        assert result.exit_code == 2 and "index name" in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not any(root.iterdir()) and not (tmp_path / "escape").exists()


def test_times_are_stored_in_one_form_so_text_order_is_time_order(tmp_path):
    from rsrag.data import ImageRecord
    from index_helpers import HashEncoder, make_image
    from rsrag.index import Library

    lib = Library.create(tmp_path / "idx", "t", encoder=HashEncoder())
    img = make_image(tmp_path / "a.png", "red", 0)
    lib.add([ImageRecord("a", img, metadata={"datetime": "2021-06-01", "date": "2021-06-01T23:00:00+00:00"}),
             ImageRecord("b", img, metadata={"datetime": "2021-06-01T10:30:00+02:00"})])
    rows = {r["id"]: r for r in lib.rows(["id", "datetime", "date"]).to_pylist()}
    assert rows["a"]["datetime"] == "2021-06-01T00:00:00Z" and rows["a"]["date"] == "2021-06-01"
    assert rows["b"]["datetime"] == "2021-06-01T08:30:00Z"
    assert lib.count(where="datetime >= '2021-06-01T08:00:00Z'") == 1
