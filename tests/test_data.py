"""Dataset loaders: the shared benchmarks, folder layouts and captions files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rsrag.data import (
    ImageRecord,
    class_names,
    load_captions_file,
    load_class_folder,
    load_dataset,
    load_image_folder,
    load_rsicd,
    load_ucm,
)

# --- benchmarks (shared data) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, total, splits, n_labels",
    [
        ("rsicd", 10_921, {"train": 8_734, "val": 1_093, "test": 1_094}, 31),
        ("ucm", 1_800, {"train": 1_443, "val": 177, "test": 180}, 18),
    ],
)
def test_benchmark_counts(data_root, name, total, splits, n_labels):
    records = load_dataset(name, root=data_root)
    assert len(records) == total
    assert len({r.id for r in records}) == total
    assert all(r.id.startswith(f"{name}/") and len(r.captions) == 5 for r in records)
    assert len(class_names(records)) == n_labels
    for split, count in splits.items():
        subset = load_dataset(name, split=split, root=data_root)
        assert len(subset) == count and {r.split for r in subset} == {split}


def test_rsicd_and_ucm_records(data_root):
    rsicd = {r.id: r for r in load_rsicd()}  # default root: rsrag.config.data_root()
    first = rsicd["rsicd/00001"]
    assert first.path == data_root / "rsicd" / "images" / "00001.jpg" and first.path.is_file()
    assert first.label == "playfields" and first.split == "train" and first.metadata == {}
    ucm = {r.id: r for r in load_ucm(root=data_root)}
    airplane = ucm["ucm/airplane00"]
    assert airplane.label == "airplane" and airplane.metadata["ucm_id"] == 101
    assert airplane.path.name == "airplane00.jpg"
    assert "airplane" in class_names(ucm.values())


def test_benchmark_records_are_copies(data_root):
    record = load_ucm("test", root=data_root)[0]
    record.captions.append("edited")
    record.metadata["x"] = 1
    again = load_ucm("test", root=data_root)[0]
    assert again.id == record.id and "edited" not in again.captions and "x" not in again.metadata


def test_benchmark_limit_takes_the_first_records(data_root):
    full = load_dataset("ucm", "val", root=data_root)
    assert [r.id for r in load_dataset("ucm", "val", root=data_root, limit=5)] == [r.id for r in full[:5]]
    assert len(load_dataset("ucm", "val", root=data_root, limit=None)) == len(full) == 177


def test_benchmark_argument_errors(tmp_path, data_root):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_rsicd("dev", root=data_root)
    with pytest.raises(ValueError, match="unknown dataset 'coco'.*rsicd, ucm"):
        load_dataset("coco")
    with pytest.raises(FileNotFoundError, match="RSRAG_DATA"):
        load_ucm(root=tmp_path)
    assert len(load_dataset("UCM", "val", root=data_root)) == 177


# --- folders -----------------------------------------------------------------------------------


def make_images(root: Path, names: list[str]) -> None:
    """Tiny real images at the given relative paths (non-image suffixes get text)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
            Image.new("RGB", (4, 4), (len(name) * 7 % 256, 50, 90)).save(path)
        else:
            path.write_text("not an image")


def test_class_folder(tmp_path):
    make_images(tmp_path, ["forest/b.png", "forest/a.jpg", "river/x.TIF", "river/deep/y.jpeg",
                           "river/notes.txt", "loose.jpg", ".hidden/z.png", "forest/.thumb.png"])
    (tmp_path / "empty").mkdir()
    records = load_class_folder(tmp_path)
    assert [r.id for r in records] == ["forest/a", "forest/b", "river/deep/y", "river/x"]
    assert [r.label for r in records] == ["forest", "forest", "river", "river"]
    assert records[0].path == tmp_path.resolve() / "forest" / "a.jpg"
    assert class_names(records) == ["forest", "river"]
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_class_folder(tmp_path / "empty")


def test_image_folder(tmp_path):
    make_images(tmp_path, ["b.png", "a.jpg", "sub/c.tiff", "readme.md"])
    records = load_image_folder(tmp_path)
    assert [r.id for r in records] == ["a", "b", "sub/c"]
    assert all(r.label is None and r.captions == [] for r in records)
    assert [r.id for r in load_image_folder(tmp_path, recursive=False)] == ["a", "b"]
    make_images(tmp_path, ["a.png"])
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing")


# --- captions files ----------------------------------------------------------------------------


def test_captions_jsonl(tmp_path):
    lines = [
        {"filename": "img/a.jpg", "captions": ["one", "two"], "label": "forest", "split": "train",
         "lon": 7.5, "lat": 46.1},
        {"path": "/abs/place/b.png", "caption": "a single caption", "id": "custom"},
        {"filename": "c.tif", "text": "described by text"},
    ]
    path = tmp_path / "caps.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    a, b, c = load_captions_file(path)
    assert a == ImageRecord("img/a", tmp_path.resolve() / "img" / "a.jpg", "train", "forest", ["one", "two"],
                            {"lon": 7.5, "lat": 46.1})
    assert (b.id, b.path, b.captions) == ("custom", Path("/abs/place/b.png"), ["a single caption"])
    assert b.label is None
    assert (c.id, c.captions) == ("c", ["described by text"])
    moved = load_captions_file(path, image_root=tmp_path / "elsewhere", id_prefix="mine")
    assert moved[0].id == "mine/img/a"
    assert moved[0].path == (tmp_path / "elsewhere" / "img" / "a.jpg").resolve()


def test_captions_csv(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text(
        'filename,captions,label,lon,lat,tile\n'
        'a.jpg,"[""first"", ""second""]",forest,7.25,46.5,007\n'
        'b.jpg,just one caption,,8,47,12\n'
    )
    a, b = load_captions_file(path)
    assert a.captions == ["first", "second"] and a.label == "forest"
    assert a.metadata == {"lon": 7.25, "lat": 46.5, "tile": "007"}
    assert b.captions == ["just one caption"] and b.label is None
    assert b.metadata == {"lon": 8, "lat": 47, "tile": 12}


@pytest.mark.parametrize(
    "name, text, line, message",
    [
        ("bad.jsonl", '{"filename": "a.jpg"}\n{"filename": "b.jpg", \n', 2, "invalid JSON"),
        ("bad.jsonl", '{"filename": "a.jpg"}\n\n["b.jpg"]\n', 3, "JSON object"),
        ("bad.jsonl", '{"filename": "a.jpg"}\n{"label": "x"}\n', 2, "'filename' or 'path'"),
        ("bad.jsonl", '{"filename": "a.jpg", "captions": [1, 2]}\n', 1, "list of strings"),
        ("bad.jsonl", '{"filename": "a.jpg"}\n{"filename": "a.png"}\n', 2, "duplicate id 'a'"),
        ("bad.csv", "filename,label\na.jpg,forest\nb.jpg,river,extra\n", 3, "expected 2 fields"),
        ("bad.csv", "name,label\na.jpg,forest\n", 1, "'filename' or 'path' column"),
    ],
)
def test_malformed_captions_file(tmp_path, name, text, line, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_captions_file(path)
    assert str(path.resolve()) in str(err.value) and f"line {line}" in str(err.value)


def test_captions_file_cache_sees_edits(tmp_path):
    path = tmp_path / "caps.jsonl"
    path.write_text('{"filename": "a.jpg"}\n')
    assert len(load_captions_file(path)) == 1
    path.write_text('{"filename": "a.jpg"}\n{"filename": "b.jpg"}\n')
    assert len(load_captions_file(path)) == 2
    with pytest.raises(FileNotFoundError):
        load_captions_file(tmp_path / "none.jsonl")
