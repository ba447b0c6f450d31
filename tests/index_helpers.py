"""Helpers for the index tests: a tiny deterministic encoder and synthetic images with captions.

`HashEncoder` ("test-hash", dim 64) puts an image's mean colour in the first three dimensions and
a fixed random projection of its quadrant colours in the rest; a text's colour words ("red", ...)
land on the same three dimensions and its other words are hashed into the rest. So "red" finds red
images, similar images are near each other, and everything runs in microseconds.

Run as a script (`python tests/index_helpers.py index build ...`) it is the rsrag index CLI with
the test encoder registered, for tests that need a separate process (kill-and-resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rsrag.data import ImageRecord
from rsrag.encoders import Encoder, Preprocess, register_backend
from rsrag.index.bm25 import tokenize

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "yellow": (1.0, 1.0, 0.0)}
_PROJ = np.random.default_rng(7).standard_normal((12, 61)).astype(np.float32)


@register_backend("test-hash")
class HashEncoder(Encoder):
    """Deterministic toy encoder for tests (see module doc). `delay` seconds per image batch
    slows it down so a test can interrupt a build; RSRAG_TEST_ENCODER_DELAY sets it too."""

    id = "test-hash@v1"
    dim = 64
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resample="bilinear")

    def __init__(self, delay: float | None = None) -> None:
        self.delay = float(os.environ.get("RSRAG_TEST_ENCODER_DELAY", 0)) if delay is None else delay
        self.images_encoded = 0

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        out = np.zeros((n, self.dim), np.float32)
        out[:, :3] = (batch.mean(axis=(2, 3)) - 0.5) * 4
        quads = batch.reshape(n, 3, 2, 4, 2, 4).mean(axis=(3, 5)).reshape(n, 12)
        out[:, 3:] = (quads - 0.5) @ _PROJ * 0.3
        self.images_encoded += n
        if self.delay:
            time.sleep(self.delay)
        return out

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in tokenize(text):
                if word in COLOURS:
                    out[i, :3] += (np.asarray(COLOURS[word]) - 0.5) * 4
                else:
                    h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                    out[i, 3 + h % 61] += 0.5
            out[i, 3] += 1e-3  # never all-zero
        return out


def make_image(path: Path, colour: str, seed: int, size: int = 16) -> Path:
    """A small noisy image of one colour."""
    rng = np.random.default_rng(seed)
    base = np.asarray(COLOURS[colour]) * 200 + 25
    pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_records(folder: Path, n_per_colour: int = 8, colours=("red", "green", "blue"),
                 start: int = 0) -> list[ImageRecord]:
    """Images `img<i>.png` in `folder` with captions, a label (= colour) and lon/lat/score metadata.

    Caption i carries the unique word `tag<i>` so BM25 can target exactly one record.
    """
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    i = start
    for colour in colours:
        for _ in range(n_per_colour):
            path = make_image(folder / f"img{i}.png", colour, seed=i)
            records.append(ImageRecord(
                id=f"img{i}", path=path, split="test" if i % 4 == 0 else "train", label=colour,
                captions=[f"a {colour} field tag{i}", f"some {colour} area"],
                metadata={"lon": float(i % 10), "lat": float(i // 10), "score": i}))
            i += 1
    return records


def write_captions_file(path: Path, records: list[ImageRecord]) -> Path:
    """A captions JSONL for `records` (filename relative to the file's folder)."""
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps({"path": os.path.relpath(r.path, path.parent), "id": r.id, "label": r.label,
                                 "split": r.split, "captions": r.captions, **r.metadata}) + "\n")
    return path


def consistency(lib) -> dict:
    """The rid sets of LanceDB, FAISS (live) and BM25, and the ids in LanceDB, for assertions."""
    lance = lib.store.rids()
    table = lib.store.scan(["id"])
    ids = table.column("id").to_pylist()
    return {
        "lance": lance.tolist(),
        "faiss": lib._index.ann.live_ids().tolist() if lib._index.ann is not None else [],
        "bm25": sorted(lib._index.bm25.doc_rids.tolist()),
        "ids": ids,
        "unique_ids": len(set(ids)) == len(ids),
    }


def assert_consistent(lib) -> None:
    state = consistency(lib)
    assert state["unique_ids"], "duplicate ids in LanceDB"
    assert state["lance"] == state["faiss"] == state["bm25"], state


def kill_when(proc, ready, timeout: float = 90, poll: float = 0.05) -> None:
    """SIGKILL a build process once `ready()` is true (it must still be running then)."""
    import signal

    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "build made no progress"
            time.sleep(poll)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def make_cli():
    """The index CLI as the lead mounts it: `index ...` plus a top-level `search`."""
    import typer

    from rsrag.cli.index import app
    from rsrag.cli.search import search_command

    root = typer.Typer()
    root.add_typer(app, name="index")
    root.command("search")(search_command)
    return root


if __name__ == "__main__":
    sys.exit(make_cli()())
