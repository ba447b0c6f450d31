"""Indexes on an S3-compatible object store (a real SeaweedFS server on loopback, tests/s3_server.py):
build to the bucket, search from a second process, write from one process and read from another,
two writers at once without a lock, and a writer killed mid-build resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import HashEncoder, assert_consistent, kill_when, make_records, write_captions_file

from rsrag.data import ImageRecord
from rsrag.index import Library
from rsrag.index.folder import MANIFEST
from rsrag.index.storage import ObjectStorage, StorageError, location
from rsrag.index.store import RecordStore

HELPERS = Path(__file__).with_name("index_helpers.py")


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The index CLI (with the test encoder) in a separate process."""
    return subprocess.run([sys.executable, str(HELPERS), *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def test_build_search_and_list_on_the_bucket(s3_root, tmp_path):
    records = make_records(tmp_path / "images", n_per_colour=6)
    lib = Library.create(s3_root, "demo", encoder=HashEncoder())
    assert lib.add(records).added == len(records)
    assert lib.location == ObjectStorage(f"{s3_root}/demo")
    assert [m["name"] for m in Library.list(s3_root)] == ["demo"]
    names = location(s3_root).child("demo").names()
    assert MANIFEST in names and "records.lance" in names
    manifest = location(s3_root).child("demo").read_json(MANIFEST)
    artefacts = manifest["artefacts"]  # named for the LanceDB version they reflect
    assert artefacts["lance_version"] == manifest["lance_version"] == lib.version
    assert artefacts["ann"] == f"vectors.{lib.version}.faiss" and artefacts["ann"] in names
    assert ids(lib.search_text("red", 3, mode="dense"))[0] in {r.id for r in records if r.label == "red"}

    reopened = Library.open(s3_root, "demo", encoder=HashEncoder())
    assert_consistent(reopened)
    assert reopened.search_image(records[7].path, k=1)[0].id == "img7"
    assert ids(reopened.search_text("tag5", 3, mode="bm25"))[0] == "img5"
    assert reopened.delete(["img5"]) == ["img5"]
    assert "img5" not in ids(Library.open(s3_root, "demo", encoder=HashEncoder()).search_text("tag5", 5, mode="bm25"))


def test_a_second_process_searches_and_writes(s3_root, tmp_path):
    records = make_records(tmp_path / "images", n_per_colour=8)
    lib = Library.create(s3_root, "shared", encoder=HashEncoder())
    lib.add(records[:12])
    out = cli("search", "tag3", "--index", "shared", "--root", s3_root, "--mode", "bm25", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["hits"][0]["id"] == "img3"

    source = write_captions_file(tmp_path / "rest.jsonl", records[12:])  # written by another process
    out = cli("index", "build", str(source), "--name", "shared", "--root", s3_root, "--encoder", "test-hash", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == len(records) - 12
    time.sleep(1.1)  # a reader checks the manifest at most once a second (folder.STAMP_CHECK_S)
    assert ids(lib.search_text("tag20", 3, mode="bm25"))[0] == "img20"
    assert len(lib) == len(records)
    assert_consistent(lib)


def test_two_writers_at_once_without_a_lock(s3_root, tmp_path):
    """Two processes add disjoint halves at the same time; then one adds an overlapping set. Every
    record lands once with its own rid, and a fresh reader's FAISS and BM25 agree with LanceDB."""
    records = make_records(tmp_path / "images", n_per_colour=16)
    Library.create(s3_root, "busy", encoder=HashEncoder())
    halves = [write_captions_file(tmp_path / f"half{i}.jsonl", records[i::2]) for i in range(2)]
    cmd = ["index", "build", "--name", "busy", "--root", s3_root, "--encoder", "test-hash", "--chunk-size", "4", "--json"]
    procs = [subprocess.Popen([sys.executable, str(HELPERS), cmd[0], cmd[1], str(h), *cmd[2:]],
                              env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for h in halves]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    overlap = write_captions_file(tmp_path / "all.jsonl", records)
    again = cli(*cmd[:2], str(overlap), *cmd[2:])
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == len(records), again.stderr

    lib = Library.open(s3_root, "busy", encoder=HashEncoder())
    assert_consistent(lib)
    rids = lib.store.rids()
    assert len(rids) == len(set(rids.tolist())) == len(records)
    assert sorted(lib.store.scan(["id"]).column("id").to_pylist()) == sorted(r.id for r in records)
    assert lib.search_image(records[9].path, k=1)[0].id == "img9"


def test_a_writer_killed_mid_build_resumes(s3_root, tmp_path):
    records = make_records(tmp_path / "images", n_per_colour=30)  # 90 images
    source = write_captions_file(tmp_path / "captions.jsonl", records)
    cmd = [sys.executable, str(HELPERS), "index", "build", str(source), "--name", "killed", "--root", s3_root,
           "--encoder", "test-hash", "--batch-size", "8", "--chunk-size", "16", "--json"]
    env = {**os.environ, "RSRAG_TEST_ENCODER_DELAY": "0.2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    storage = location(s3_root).child("killed")
    kill_when(proc, lambda: storage.exists(MANIFEST) and RecordStore(storage, 1).count() >= 32, timeout=120, poll=0.1)
    done_before = RecordStore(storage, 1).count()
    assert 32 <= done_before < len(records), "kill landed too late to test resuming"
    reader = Library.open(s3_root, "killed", encoder=HashEncoder())  # the last good version reads
    assert len(reader) == done_before and reader.search_text("tag1", 1, mode="bm25")[0].id == "img1"

    env["RSRAG_TEST_ENCODER_DELAY"] = "0"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == done_before and summary["added"] == len(records) - done_before
    lib = Library.open(s3_root, "killed", encoder=HashEncoder())
    assert_consistent(lib)
    assert sorted(lib.store.scan(["id"]).column("id").to_pylist()) == sorted(r.id for r in records)


def test_plain_http_only_to_this_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://storage.example.com:9000")
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    with pytest.raises(StorageError, match="plain HTTP"):
        Library.list("s3://bucket/indexes")
    with pytest.raises(StorageError, match="not an object-store URI"):
        ObjectStorage("s3://")


def test_rids_are_reserved_once_across_writers(s3_root, tmp_path):
    """The compare-and-swap on the rid counter: two Library objects (as two machines would) reserve
    interleaved blocks and never the same rid."""
    records = make_records(tmp_path / "images", n_per_colour=2)
    first = Library.create(s3_root, "rids", encoder=HashEncoder())
    first.add(records[:1])
    second = Library.open(s3_root, "rids", encoder=HashEncoder())
    got = []
    for i in range(6):
        lib = (first, second)[i % 2]
        got.append(lib._index.reserve_rids(3))
    flat = np.concatenate(got)
    assert len(set(flat.tolist())) == len(flat)


def test_the_indexes_variable_can_name_a_bucket(s3_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RSRAG_INDEXES", s3_root)
    lib = Library.create(None, "from-env", encoder=HashEncoder())
    lib.add(make_records(tmp_path / "images", n_per_colour=1))
    assert [m["name"] for m in Library.list()] == ["from-env"]
    assert len(Library.open(None, "from-env", encoder=HashEncoder())) == 3


def test_a_sharded_index_on_the_bucket_equals_the_unsharded_one(s3_root):
    """Shards are ordinary indexes under the same root, so replicas on other machines can serve them."""
    from rsrag.index.sharded import ShardedLibrary, open_index

    rng = np.random.default_rng(3)
    records = [ImageRecord(f"p{i}", None, label="x", captions=[f"place {i}"],
                           metadata={"lon": float(rng.uniform(-170, 170)), "lat": float(rng.uniform(-60, 60))})
               for i in range(60)]
    vectors = rng.standard_normal((60, 64)).astype(np.float32)
    ShardedLibrary.create(s3_root, "geo", shards=3, by="geo", encoder=HashEncoder(), index_type="flat").add_embedded(
        records, vectors)
    plain = Library.create(s3_root, "plain", encoder=HashEncoder(), index_type="flat")
    plain.add_embedded(records, vectors)
    sharded = open_index(s3_root, "geo", encoder=HashEncoder())
    assert isinstance(sharded, ShardedLibrary) and sharded.count() == 60
    for query in rng.standard_normal((5, 64)).astype(np.float32):
        assert ids(sharded.search_vector(query, 7)) == ids(plain.search_vector(query, 7))


def test_a_compressed_index_reranks_from_the_bucket(s3_root):
    """IVF-PQ on the bucket: its exact re-rank reads the candidates' vectors from the Lance dataset
    on the object store, so the scores are true cosines and the best hit is the query's own record."""
    vectors = np.random.default_rng(3).standard_normal((300, HashEncoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lib = Library.create(s3_root, "pq", encoder=HashEncoder(), index_type="ivfpq:nlist=4,m=8,nprobe=4,rerank=50")
    lib.add_embedded([ImageRecord(f"v{i}", None, None, None, []) for i in range(300)], vectors)
    reopened = Library.open(s3_root, "pq", encoder=HashEncoder())
    assert reopened.manifest["index"]["type"] == "ivfpq"
    hits = reopened.search_vector(vectors[5], 3)
    assert hits[0].id == "v5" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    rids, stored = reopened.store.vectors()
    got, fetched = reopened.store.vectors_for_rids(rids[[9, 2, 5]])
    assert list(got) == list(rids[[2, 5, 9]]) and np.array_equal(fetched, stored[[2, 5, 9]])
