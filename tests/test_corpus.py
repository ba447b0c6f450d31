"""The label-only corpus (`rsrag.data.corpus`) and `rsrag data prepare`, on tiny fake clones laid out
like the real sources (a git repository with class folders; a plain folder with the class in the
file name)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from rsrag.cli import app
from rsrag.data import corpus
from rsrag.data.corpus import (CLASS_PHRASES, class_captions, image_captions, load_corpus, load_manifest,
                               near_duplicates, prepare_dataset, split_of)


def save_jpeg(path: Path, colour: tuple[int, int, int]) -> None:
    """A 16x12 JPEG: `colour` plus a texture seeded by the file name (so images differ)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(path.name.encode()))
    pixels = np.clip(np.array(colour) + rng.integers(-40, 40, (12, 16, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def make_aid_like_repo(root: Path, with_excluded: bool = False) -> tuple[Path, str]:
    """`AID/<Class>/<file>.jpg` (+ a stray .DS_Store) in a git repository; returns (repo, commit)."""
    for cls, n in (("Airport", 3), ("Beach", 2)):
        for i in range(n):
            save_jpeg(root / "AID" / cls / f"{cls.lower()}_{i}.jpg", (40 * i, 100, 200))
    (root / "AID" / ".DS_Store").write_bytes(b"\0junk")
    if with_excluded:
        save_jpeg(root / "AID" / "NWPU-RESISC45" / "x.jpg", (1, 2, 3))
        save_jpeg(root / "AID" / "Beach" / "eurosat_beach_9.jpg", (1, 2, 3))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "data")
    return root, git(root, "rev-parse", "HEAD")


def write_manifest(path: Path, datasets: dict) -> Path:
    path.write_text(json.dumps({"datasets": datasets}))
    return path


def aid_entry(commit: str, airport: int = 3, name_path: str = "AID") -> dict:
    return {"repository": "someone/aid", "commit": commit, "path": name_path, "class_from": "folder",
            "role": "train", "count": airport + 2, "license": "not stated",
            "classes": {"Airport": {"label": "Airport", "count": airport}, "Beach": {"label": "Beach", "count": 2}}}


WHU_ENTRY = {"repository": "someone/whu", "commit": "0" * 40, "path": "datasets/WHU/images", "class_from": "filename",
             "filename_pattern": "(?P<cls>[a-z]+)_\\d+", "role": "held-out", "count": 3, "license": "MIT",
             "classes": {"footballfield": {"label": "FootballField", "count": 2}, "river": {"label": "River", "count": 1}}}


def test_committed_manifest_is_consistent():
    sources = load_manifest()
    assert set(sources) == {"aid", "rsscn7", "whurs19"}
    assert (sources["aid"].count, sources["rsscn7"].count, sources["whurs19"].count) == (10000, 2800, 1005)
    assert sources["whurs19"].role == "held-out" and sources["aid"].role == "train"
    assert all(len(s.commit) == 40 for s in sources.values())
    assert len(sources["aid"].classes) == 30 and len(sources["whurs19"].classes) == 19
    assert sources["aid"].split_from == "rsicd"  # RSICD's named images are crops of AID's
    assert len(sources["whurs19"].seen) == 635  # WHU-RS19 frames found in AID


def test_prepare_from_git_repo_checks_counts_and_skips_excluded(tmp_path):
    repo, commit = make_aid_like_repo(tmp_path / "clone", with_excluded=True)
    source = load_manifest(write_manifest(tmp_path / "m.json", {"aid": aid_entry(commit)}))["aid"]
    out = tmp_path / "corpus"
    for clone in (repo, repo / ".git"):  # a checkout, or the git directory itself
        report = prepare_dataset(source, clone, out)
        assert report.n_images == 5 and sum(report.per_split.values()) == 5
        assert sorted(report.skipped_excluded) == ["Beach/eurosat_beach_9.jpg", "NWPU-RESISC45/x.jpg"]
    records = load_corpus("aid", root=out)
    assert Counter(r.label for r in records) == {"Airport": 3, "Beach": 2}
    assert all(r.path.is_file() and r.path.parent.name == r.label and r.path.parent.parent.name == r.split
               for r in records)
    assert not any("nwpu" in str(r.path).lower() or "eurosat" in str(r.path).lower() for r in records)
    assert records[0].id == "aid/Airport/airport_0" and len(records[0].captions) == 5
    assert records[0].metadata["width"] == 16 and records[0].metadata["source_class"] == "Airport"
    assert {r.split for r in load_corpus("aid", split="train", root=out)} <= {"train"}
    assert not (out / "aid.partial").exists()


def test_prepare_refuses_wrong_counts_missing_paths_and_excluded_sources(tmp_path):
    repo, commit = make_aid_like_repo(tmp_path / "clone")
    out = tmp_path / "corpus"
    wrong = load_manifest(write_manifest(tmp_path / "m.json", {"aid": aid_entry(commit, airport=4)}))["aid"]
    with pytest.raises(ValueError, match="Airport: 3 found, 4 expected"):
        prepare_dataset(wrong, repo, out)
    assert not (out / "aid").exists() and not (out / "aid.partial").exists()  # nothing half-written
    unknown = load_manifest(write_manifest(tmp_path / "m2.json", {"aid": aid_entry("1" * 40)}))["aid"]
    with pytest.raises(ValueError, match="cannot read 'AID' at commit 1111111"):
        prepare_dataset(unknown, repo, out)
    with pytest.raises(FileNotFoundError, match="not found"):
        prepare_dataset(unknown, tmp_path / "nowhere", out)
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        prepare_dataset(unknown, tmp_path / "EuroSAT-clone", out)
    with pytest.raises(ValueError, match="excluded data"):
        load_manifest(write_manifest(tmp_path / "m3.json", {"resisc": aid_entry(commit, name_path="NWPU-RESISC45")}))
    bad_label = aid_entry(commit)
    bad_label["classes"]["Beach"]["label"] = "Moonbase"
    with pytest.raises(ValueError, match="no caption phrases for label 'Moonbase'"):
        load_manifest(write_manifest(tmp_path / "m4.json", {"aid": bad_label}))


def test_prepare_from_plain_folder_with_class_in_file_name(tmp_path):
    images = tmp_path / "whu" / "datasets" / "WHU" / "images"
    for name in ("footballfield_01.jpg", "footballfield_02.jpg", "river_01.jpg"):
        save_jpeg(images / name, (0, 0, 255))
    source = load_manifest(write_manifest(tmp_path / "m.json", {"whu": WHU_ENTRY}))["whu"]
    report = prepare_dataset(source, tmp_path / "whu", tmp_path / "corpus")
    assert report.per_split == {"test": 3}  # held out: all test
    assert sorted(p.relative_to(tmp_path / "corpus" / "whu").as_posix()
                  for p in (tmp_path / "corpus" / "whu").rglob("*.jpg")) == [
        "test/FootballField/footballfield_01.jpg", "test/FootballField/footballfield_02.jpg", "test/River/river_01.jpg"]
    seen = dict(WHU_ENTRY, seen_in={"dataset": "aid", "files": {"river_01.jpg": "river_7.jpg"}})
    source_seen = load_manifest(write_manifest(tmp_path / "m5.json", {"whu": seen}))["whu"]
    report = prepare_dataset(source_seen, tmp_path / "whu", tmp_path / "corpus")
    assert report.per_split == {"overlap": 1, "test": 2}  # a frame a training source has is not test
    assert [r.id for r in load_corpus("whu", split="overlap", root=tmp_path / "corpus")] == ["whu/river/river_01"]
    typo = dict(WHU_ENTRY, seen_in={"dataset": "aid", "files": {"river_9.jpg": "river_7.jpg"}})
    with pytest.raises(ValueError, match="listed in seen_in not found, e.g. river_9.jpg"):
        prepare_dataset(load_manifest(write_manifest(tmp_path / "m6.json", {"whu": typo}))["whu"],
                        tmp_path / "whu", tmp_path / "corpus")
    save_jpeg(images / "lake_01.jpg", (0, 0, 255))
    with pytest.raises(ValueError, match="class 'lake', which the manifest does not list"):
        prepare_dataset(source, tmp_path / "whu", tmp_path / "corpus")


def test_cli_data_prepare(tmp_path, monkeypatch):
    repo, commit = make_aid_like_repo(tmp_path / "clone")
    monkeypatch.setattr(corpus, "MANIFEST_PATH", write_manifest(tmp_path / "m.json", {"aid": aid_entry(commit)}))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "prepare", "--source", f"aid={repo}", "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["dataset"] == "aid" and rows[0]["n_images"] == 5
    result = runner.invoke(app, ["data", "overlap", "aid", "aid", "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)  # against itself every image is its own duplicate
    assert len(pairs) == 5 and all(k == v for k, v in pairs.items())
    result = runner.invoke(app, ["data", "overlap", "whurs19", "aid", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "not prepared" in result.output
    result = runner.invoke(app, ["data", "prepare", "--source", f"nwpu={repo}"])
    assert result.exit_code == 2 and "unknown corpus dataset 'nwpu'" in result.output
    result = runner.invoke(app, ["data", "prepare", "--source", str(repo)])
    assert result.exit_code == 2 and "NAME=PATH" in result.output


def test_captions_are_deterministic_per_class_and_image():
    pool = class_captions("Airport")
    assert len(pool) == len(set(pool)) == len(CLASS_PHRASES["Airport"]) * len(corpus.CAPTION_TEMPLATES)
    first = image_captions("Airport", "aid/Airport/airport_1")
    assert first == image_captions("Airport", "aid/Airport/airport_1")
    assert len(first) == len(set(first)) == 5
    assert all(c[0].isupper() and c.lower() in pool for c in first)
    others = {tuple(image_captions("Airport", f"aid/Airport/airport_{i}")) for i in range(20)}
    assert len(others) > 10  # images of a class get different captions
    with pytest.raises(ValueError, match="no caption phrases"):
        class_captions("Moonbase")


def test_splits_are_seeded_and_proportioned():
    ids = [f"aid/X/img_{i}" for i in range(3000)]
    splits = Counter(split_of(i, "train") for i in ids)
    assert abs(splits["train"] / 3000 - 0.8) < 0.03 and abs(splits["test"] / 3000 - 0.1) < 0.02
    assert [split_of(i, "train") for i in ids[:50]] == [split_of(i, "train") for i in ids[:50]]
    assert {split_of(i, "held-out") for i in ids[:50]} == {"test"}
    with pytest.raises(ValueError, match="unknown corpus role"):
        split_of("x", "tune")


def test_split_follows_a_benchmark_by_file_name(tmp_path, monkeypatch):
    repo, commit = make_aid_like_repo(tmp_path / "clone")
    rsicd = tmp_path / "data" / "rsicd"
    rsicd.mkdir(parents=True)
    splits = {"airport_0.jpg": "test", "airport_1.jpg": "val", "airport_2.jpg": "train",
              "beach_0.jpg": "train", "beach_1.jpg": "test"}
    rsicd.joinpath("captions.jsonl").write_text("".join(
        json.dumps({"filename": n, "split": sp, "label": "x", "captions": ["c"]}) + "\n" for n, sp in splits.items()))
    entry = dict(aid_entry(commit), split_from={"dataset": "rsicd"})
    source = load_manifest(write_manifest(tmp_path / "m.json", {"aid": entry}))["aid"]
    prepare_dataset(source, repo, tmp_path / "corpus", benchmark_root=tmp_path / "data")
    assert {r.path.name: r.split for r in load_corpus("aid", root=tmp_path / "corpus")} == splits
    monkeypatch.setenv("RSRAG_DATA", str(tmp_path / "data"))  # the default root, as the CLI uses it
    prepare_dataset(source, repo, tmp_path / "corpus")
    rsicd.joinpath("captions.jsonl").write_text(json.dumps(
        {"filename": "airport_0.jpg", "split": "test", "label": "x", "captions": ["c"]}) + "\n")
    with pytest.raises(ValueError, match="'airport_1.jpg' is not in rsicd"):
        prepare_dataset(source, repo, tmp_path / "corpus")


def test_near_duplicates_find_the_same_frame_at_another_size(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).resize((120, 120)) for _ in range(3)]
    held = []
    for i, frame in enumerate(frames):
        frame.save(tmp_path / f"held{i}.png")
        held.append(tmp_path / f"held{i}.png")
    frames[1].resize((48, 48), Image.BILINEAR).save(tmp_path / "small1.jpg", quality=85)  # same frame, shrunk
    frames[2].transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "flipped2.png")  # another picture
    others = [tmp_path / "small1.jpg", tmp_path / "flipped2.png"]
    found = near_duplicates(held, others)
    assert list(found) == [held[1]] and found[held[1]][0] == others[0] and found[held[1]][1] > 0.95
    assert near_duplicates(held, []) == {}
