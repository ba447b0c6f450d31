"""Kill a build half-way (SIGKILL, a real separate process) and run it again: it continues without
re-embedding finished items, without duplicates, and all three stores agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from index_helpers import HashEncoder, assert_consistent, kill_when, make_records, write_captions_file

from rsrag.index import Library
from rsrag.index.store import RecordStore

HELPERS = Path(__file__).with_name("index_helpers.py")


def committed(folder: Path) -> int:
    """Rows LanceDB has committed so far (0 before the table's first commit)."""
    return RecordStore(folder, dim=1).count()


def test_kill_and_resume(tmp_path):
    records = make_records(tmp_path / "images", n_per_colour=40)  # 120 images
    source = write_captions_file(tmp_path / "captions.jsonl", records)
    root, folder = tmp_path / "indexes", tmp_path / "indexes" / "killed"
    cmd = [sys.executable, str(HELPERS), "index", "build", str(source), "--name", "killed", "--root", str(root),
           "--encoder", "test-hash", "--batch-size", "8", "--chunk-size", "16", "--json"]
    env = {**os.environ, "RSRAG_TEST_ENCODER_DELAY": "0.15"}  # ~2 s of embedding in 15 batches
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: committed(folder) >= 32)
    done_before = committed(folder)
    assert 32 <= done_before < len(records), "kill landed too late to test resuming"

    env["RSRAG_TEST_ENCODER_DELAY"] = "0"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == done_before  # finished items were kept ...
    assert summary["added"] == len(records) - done_before  # ... and not embedded again
    assert summary["records"] == len(records)

    lib = Library.open(root, "killed", encoder=HashEncoder())
    assert_consistent(lib)
    assert sorted(lib.store.scan(["id"]).column("id").to_pylist()) == sorted(r.id for r in records)
    assert not list(folder.glob(".*.tmp-*"))
    assert lib.search_image(records[77].path, k=1)[0].id == "img77"


def test_resume_after_kill_before_first_commit(tmp_path):
    """A kill while LanceDB writes the very first rows leaves `records.lance/` with no version:
    opening the index treats it as empty and the next build creates the table."""
    records = make_records(tmp_path / "images", n_per_colour=2)
    source = write_captions_file(tmp_path / "captions.jsonl", records)
    root, folder = tmp_path / "indexes", tmp_path / "indexes" / "early"
    (folder / "records.lance" / "data").mkdir(parents=True)  # what such a kill leaves behind
    assert RecordStore(folder, dim=1).count() == 0
    cmd = [sys.executable, str(HELPERS), "index", "build", str(source), "--name", "early", "--root", str(root),
           "--encoder", "test-hash", "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["records"] == len(records)
    assert_consistent(Library.open(root, "early", encoder=HashEncoder()))
