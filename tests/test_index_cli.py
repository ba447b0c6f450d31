"""`rsrag index build|add|delete|info|list` and `rsrag search`, through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from index_helpers import HashEncoder, assert_consistent, make_cli, make_image, make_records, write_captions_file
from typer.testing import CliRunner

from rsrag.index import Library

runner = CliRunner()
cli = make_cli()


def run(*args: str, ok: bool = True):
    result = runner.invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A captions-file index with one missing and one corrupt image in its SOURCE."""
    tmp = tmp_path_factory.mktemp("cli")
    records = make_records(tmp / "images", n_per_colour=6)
    (tmp / "images" / "img5.png").unlink()
    (tmp / "images" / "img7.png").write_bytes(b"\x89PNG broken")
    source = write_captions_file(tmp / "captions.jsonl", records)
    root = tmp / "indexes"
    result = run("index", "build", source, "--name", "caps", "--root", root, "--encoder", "test-hash", "--json")
    return root, records, json.loads(result.stdout), tmp


def test_build_reports_skipped_files(built):
    root, records, summary, _ = built
    assert summary["added"] == len(records) - 2 and summary["records"] == len(records) - 2
    assert sorted(f["id"] for f in summary["failures"]) == ["img5", "img7"]
    info = json.loads(run("index", "info", "--name", "caps", "--root", root, "--json").stdout)
    assert info["encoder"]["id"] == "test-hash@v1" and info["index"]["type"] == "flat"
    assert {"lon", "lat", "meta_score"} <= set(info["columns"]) and info["last_build"]["failed"] == 2
    text = run("index", "info", "--name", "caps", "--root", root).stdout
    assert "test-hash@v1" in text and "skipped img5" in text


def test_search_json_and_table(built):
    root = built[0]
    out = json.loads(run("search", "tag3", "--index", "caps", "--root", root, "--mode", "bm25", "--json").stdout)
    assert [h["id"] for h in out["hits"]] == ["img3"]
    assert {"id", "score", "label", "path", "captions", "lon", "lat"} <= set(out["hits"][0])
    out = json.loads(run("search", "blue", "--index", "caps", "--root", root, "--k", "3", "--mode", "dense",
                         "--filter", "split=train", "--json").stdout)
    assert len(out["hits"]) == 3 and {h["label"] for h in out["hits"]} == {"blue"}
    assert {h["split"] for h in out["hits"]} == {"train"}
    out = json.loads(run("search", "field", "--index", "caps", "--root", root, "--bbox", "0,0,1.5,0.5",
                         "--json").stdout)
    assert sorted(h["id"] for h in out["hits"]) == ["img0", "img1"]
    table = run("search", "green field", "--index", "caps", "--root", root, "-k", "2").stdout
    assert "green" in table and "score" in table


def test_search_by_image(built):
    root, records = built[0], built[1]
    out = json.loads(run("search", "--image", records[10].path, "--index", "caps", "--root", root, "--json").stdout)
    assert out["hits"][0]["id"] == "img10"


def test_add_upsert_delete_list(built, tmp_path):
    root, records, _, tmp = built
    extra = make_records(tmp_path / "more", n_per_colour=2, colours=("yellow",), start=100)
    source = write_captions_file(tmp_path / "more.jsonl", extra)
    assert json.loads(run("index", "add", source, "--name", "caps", "--root", root, "--json").stdout)["added"] == 2
    make_image(extra[0].path, "black", seed=5)  # same id, new pixels
    upsert = json.loads(run("index", "add", source, "--name", "caps", "--root", root, "--upsert", "--json").stdout)
    assert upsert["replaced"] == 2
    result = run("index", "delete", "--id", "img100", "--id", "ghost", "--name", "caps", "--root", root)
    assert "deleted 1" in result.stdout and "ghost" in result.output
    out = json.loads(run("search", "tag100", "--index", "caps", "--root", root, "--json").stdout)
    assert "img100" not in [h["id"] for h in out["hits"]]
    listing = json.loads(run("index", "list", "--root", root, "--json").stdout)
    assert [i["name"] for i in listing["indexes"]] == ["caps"]
    assert "caps" in run("index", "list", "--root", root).stdout
    assert_consistent(Library.open(root, "caps", encoder=HashEncoder()))


def test_folder_sources(tmp_path):
    flat = tmp_path / "flat"
    make_records(flat, n_per_colour=2)
    classes = tmp_path / "classes"
    for colour in ("red", "blue"):
        make_records(classes / colour, n_per_colour=2, colours=(colour,))
    root = tmp_path / "indexes"
    assert json.loads(run("index", "build", flat, "--name", "flat", "--root", root, "--encoder", "test-hash",
                          "--json").stdout)["added"] == 6
    run("index", "build", classes, "--name", "classes", "--root", root, "--encoder", "test-hash")
    out = json.loads(run("search", "x", "--index", "classes", "--root", root, "--mode", "dense",
                         "--filter", "label=blue", "--json").stdout)
    assert len(out["hits"]) == 2 and out["hits"][0]["id"].startswith("blue/")


def test_named_dataset_brings_captions_and_labels(tmp_path, data_root):
    root = tmp_path / "indexes"
    run("index", "build", "ucm", "--name", "ucm", "--root", root, "--encoder", "test-hash", "--limit", "36")
    out = json.loads(run("search", "harbor", "--index", "ucm", "--root", root, "--mode", "bm25", "--json").stdout)
    assert out["hits"] and out["hits"][0]["label"] == "harbor" and len(out["hits"][0]["captions"]) == 5


def test_clear_errors(built, tmp_path):
    root = built[0]
    result = run("search", "x", "--index", "nope", "--root", root, ok=False)
    assert result.exit_code == 2 and "no index named 'nope'" in result.output
    result = run("search", "x", "--index", "caps", "--root", root, "--filter", "colour=red", ok=False)
    assert result.exit_code == 2 and "unknown filter column 'colour'" in result.output
    result = run("search", "--index", "caps", "--root", root, ok=False)
    assert result.exit_code == 2 and "give one of: a text query, --image PATH" in result.output
    result = run("index", "build", tmp_path / "nothing-here", "--name", "x", "--root", root, ok=False)
    assert result.exit_code == 2 and "not a folder, a captions file or a dataset" in result.output
    result = run("index", "build", built[3] / "captions.jsonl", "--name", "caps", "--root", root,
                 "--encoder", "rs-lite-missing", ok=False)
    assert result.exit_code == 2 and "unknown encoder" in result.output
    result = run("search", "--image", tmp_path / "missing.jpg", "--index", "caps", "--root", root, ok=False)
    assert result.exit_code == 2 and "missing.jpg" in result.output


def assert_clean_error(result) -> None:
    """Refused with one `error: ...` line and a non-zero status: an exit, not an escaped exception."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output


def test_index_names_that_leave_the_root_are_refused(tmp_path):
    """`--name ../x` must not open the index x beside the root (one name rule, on open as on create)."""
    root = tmp_path / "indexes"
    root.mkdir()
    Library.create(tmp_path, "x", encoder=HashEncoder())  # tmp/x: what ../x points at from the root
    for args in (["index", "info"], ["index", "delete", "--id", "img0"]):
        result = run(*args, "--name", "../x", "--root", root, ok=False)
        assert_clean_error(result)
        assert "../x" in result.output
    result = run("search", "red", "--index", "../x", "--root", root, ok=False)
    assert_clean_error(result)


def test_overlong_index_names_are_refused(tmp_path):
    """A 300-character name: a clear one-line error for every command that takes a name, no traceback."""
    root, name = tmp_path / "indexes", "n" * 300
    root.mkdir()  # an existing root: the name itself is what the operating system refuses
    for args in (["index", "info", "--name", name], ["search", "red", "--index", name],
                 ["index", "build", tmp_path, "--name", name, "--encoder", "test-hash"]):
        result = run(*args, "--root", root, ok=False)
        assert_clean_error(result)
        assert "name" in result.output.lower()
    assert not any(root.iterdir())  # nothing was created
