"""The pieces every encoder and trained model shares: the decode-ahead loop and its failure rule,
`Encoder.encode_arrays`, the weights store and the feature-array cache. A toy encoder keeps them fast."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsrag.config import WEIGHTS_DIR
from rsrag.encoders import Encoder, Preprocess
from rsrag.encoders import weights as store
from rsrag.encoders.decoding import decode_batches
from rsrag.encoders.features import cached_array
from rsrag.encoders.hub import torch_dtype
from rsrag.imageio import ImageLoadError
from rsrag.index.pipeline import embed_records

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class MeanColourEncoder(Encoder):
    """3-d vectors: an image's mean RGB; counts the arrays its backend hook and public method see."""

    id = "mean-colour@1"
    dim = 3
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def __init__(self) -> None:
        self.public_calls = 0

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        return batch.mean(axis=(2, 3)) + 1e-3

    def encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        self.public_calls += 1
        return super().encode_arrays(batch)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([[t.count(c) for c in COLOURS] for t in texts], np.float32) + 1e-3


@dataclass
class Rec:
    id: str
    path: Path


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """good, missing, good, corrupt, good."""
    paths = []
    for i, colour in enumerate(("red", "green", "blue")):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", (12, 10), COLOURS[colour]).save(path)
        paths.append(path)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    return [paths[0], tmp_path / "missing.png", paths[1], corrupt, paths[2]]


def test_encode_arrays_normalises_and_checks_the_shape(images):
    enc = MeanColourEncoder()
    arrays = enc.preprocess.stack([images[0], images[2]])
    vectors = enc.encode_arrays(arrays)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors, enc.encode_images([images[0], images[2]]), atol=1e-6)
    assert enc.encode_arrays(np.zeros((0, 3, 8, 8), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(n, 3, 8, 8\)"):
        enc.encode_arrays(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="shape"):
        enc.encode_arrays(np.zeros((3, 8, 8), np.float32))


def test_decode_batches_one_failure_rule(images):
    pre = MeanColourEncoder.preprocess
    batches = list(decode_batches(pre, images, batch_size=2))
    assert [b.ok for b in batches] == [[0], [2], [4]]
    assert [pos for b in batches for pos, _ in b.failures] == [1, 3]
    assert "missing.png" in batches[0].failures[0][1] and "corrupt.png" in batches[1].failures[0][1]
    assert all(b.arrays.shape == (len(b.ok), 3, 8, 8) and b.arrays.dtype == np.float32 for b in batches)
    with pytest.raises(ImageLoadError, match="missing.png"):
        list(decode_batches(pre, images, batch_size=2, strict=True))

    def broken(item):  # a bug, not an unreadable image: never swallowed, even in lenient mode
        raise KeyError(item)

    with pytest.raises(KeyError):
        list(decode_batches(pre, images, batch_size=2, image_of=broken))


def test_decode_batches_stays_ahead_by_prefetch_only(images):
    seen = []

    def image_of(item):
        seen.append(item)
        return item

    many = [images[0]] * 40
    batches = decode_batches(MeanColourEncoder.preprocess, many, batch_size=4, image_of=image_of, prefetch=2)
    next(batches)
    batches.close()
    assert len(seen) <= 3 * 4  # the batch read, plus at most `prefetch` batches decoded ahead


def test_index_build_and_lenient_encoding_skip_the_same_images(images):
    enc = MeanColourEncoder()
    records = [Rec(f"r{i}", p) for i, p in enumerate(images)]
    embedded = list(embed_records(enc, records, batch_size=2, workers=2, prefetch=2))
    assert enc.public_calls == 3  # the index goes through the public method, never the backend hook
    lenient = enc.encode_images_lenient(images, batch_size=2)
    assert [r.id for b in embedded for r in b.records] == [f"r{i}" for i in lenient.ok] == ["r0", "r2", "r4"]
    assert [(r.id, msg) for b in embedded for r, msg in b.failures] == [(f"r{i}", m) for i, m in lenient.failures]
    np.testing.assert_allclose(np.concatenate([b.vectors for b in embedded]), lenient.vectors, atol=1e-6)


def test_weights_store_round_trip(tmp_path):
    state = {"w": torch.randn(4, 3), "steps": torch.tensor(7)}
    path = store.save(tmp_path / "m.safetensors", store.fp16(state), {"config": {"a": 1}})
    assert path == tmp_path / "m.safetensors" and store.card_path(path) == tmp_path / "m.json"
    loaded, card = store.load(path, what="toy model", fix="make one")
    assert card == {"config": {"a": 1}} and loaded["w"].dtype == torch.float16 and int(loaded["steps"]) == 7
    back = store.fp32(loaded)
    assert back["w"].dtype == torch.float32 and torch.allclose(back["w"], state["w"], atol=1e-2)
    assert store.digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert store.weights_path("rs-lite-lite0") == WEIGHTS_DIR / "rs-lite-lite0.safetensors"

    arrays = {"keys": np.arange(6, dtype=np.int8).reshape(2, 3)}
    store.save(tmp_path / "n.safetensors", arrays, {})
    np.testing.assert_array_equal(store.load(tmp_path / "n.safetensors", what="x", fix="y", framework="np")[0]["keys"],
                                  arrays["keys"])

    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"toy model file not found: .*m\.json; make one"):
        store.load(path, what="toy model", fix="make one")
    assert store.load(path, what="toy model", fix="make one", card_required=False)[1] == {}
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        store.load(tmp_path / "gone.safetensors", what="toy model", fix="make one")


def test_rs_lite_reads_the_card_beside_a_weights_path(tmp_path):
    from rsrag.encoders.rs_lite import RSLiteConfig, read_weights

    config = {"tower": "lite0", "tail_blocks": 2, "text_tail_layers": 0, "dim": 64, "text_dim": 384}
    path = store.save(tmp_path / "tiny.safetensors", {"image_proj.weight": torch.zeros(64, 1280)}, {"config": config})
    state, read, digest = read_weights(path)
    assert read == RSLiteConfig(**config) and state["image_proj.weight"].dtype == torch.float32
    assert digest == store.digest(path)
    assert read.preprocess == Preprocess(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_cached_array_recomputes_only_for_other_rows(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.full((2, 3), len(calls), np.float32)

    path, rows_path = tmp_path / "f" / "x.npy", tmp_path / "f" / "x.ids.json"
    first = cached_array(path, rows_path, ["a", "b"], compute)
    again = cached_array(path, rows_path, ["a", "b"], compute, mmap=True)
    assert len(calls) == 1 and isinstance(again, np.memmap) and np.array_equal(first, again)
    other = cached_array(path, rows_path, ["a", "c"], compute)
    assert len(calls) == 2 and other[0, 0] == 2
    assert not list(path.parent.glob(".*tmp*"))  # atomic writes leave no temp files


def test_precision_names():
    assert torch_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="fp32"):
        torch_dtype("fp64")
