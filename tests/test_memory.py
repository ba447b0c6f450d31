"""The pair memory behind rs-lite-mem: the blend itself on hand-made vectors, building from pairs,
the int8 file round trip, and the encoder option (with a memory built here on a few train images)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsrag.encoders import create_encoder
from rsrag.encoders.memory import PairMemory


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def memory() -> PairMemory:
    keys = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    values = np.stack([unit(0, 1, 1), unit(1, 0, 1), unit(1, 1, 0)])
    return PairMemory(keys, values, "toy", k=1, beta=0.5)


def test_augment_blends_in_the_nearest_keys_value(memory):
    image = unit(0.9, 0.1, 0)  # nearest key: the first
    out = memory.augment(image[None])[0]
    expected = image + 0.5 * unit(0, 1, 1)
    assert np.allclose(out, expected / np.linalg.norm(expected), atol=1e-6)
    assert np.isclose(np.linalg.norm(out), 1.0)


def test_augment_weights_neighbours_by_similarity(memory):
    memory.k, memory.temperature = 2, 0.05
    image = unit(1, 0.8, 0)  # near the first key, less near the second
    out = memory.augment(image[None])[0]
    sims = memory.keys[:2] @ image  # the third key is not among the k=2 nearest
    w = np.exp((sims - sims.max()) / 0.05)
    w /= w.sum()
    assert w[0] > 0.9  # the nearer key's caption pulls hardest
    context = w @ memory.values[:2]
    expected = image + 0.5 * context / np.linalg.norm(context)
    assert np.allclose(out, expected / np.linalg.norm(expected), atol=1e-6)
    memory.beta = 0.0
    assert np.allclose(memory.augment(image[None])[0], image, atol=1e-6)


def test_bad_shapes_and_k_are_refused(memory):
    with pytest.raises(ValueError, match="expected"):
        memory.augment(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="k="):
        PairMemory(memory.keys, memory.values, "toy", k=4)
    with pytest.raises(ValueError, match="must both be"):
        PairMemory(memory.keys, memory.values[:2], "toy")


def test_from_pairs_averages_each_images_captions_and_needs_one():
    images = np.stack([unit(1, 0), unit(0, 1)])
    captions = np.stack([unit(1, 0), unit(0, 1), unit(0, 1)])
    mem = PairMemory.from_pairs(images, captions, [0, 0, 1], "toy", k=1)
    assert np.allclose(mem.values[0], unit(1, 1)) and np.allclose(mem.values[1], unit(0, 1))
    with pytest.raises(ValueError, match="no caption"):
        PairMemory.from_pairs(images, captions, [0, 0, 0], "toy")


def test_file_round_trip_is_int8_close(memory, tmp_path):
    rng = np.random.default_rng(0)
    keys, values = rng.standard_normal((50, 16)), rng.standard_normal((50, 16))
    mem = PairMemory(keys / np.linalg.norm(keys, axis=1, keepdims=True),
                     values / np.linalg.norm(values, axis=1, keepdims=True), "toy", k=3, beta=0.7)
    mem.save(tmp_path / "m.safetensors", {"note": "test"})
    back = PairMemory.load(tmp_path / "m.safetensors")
    assert (back.k, back.beta, back.encoder_id) == (3, 0.7, "toy")
    assert np.abs(back.keys - mem.keys).max() < 0.01 and np.abs(back.values - mem.values).max() < 0.01
    queries = mem.keys[:5] + 0.1
    assert np.abs(back.augment(queries) - mem.augment(queries)).max() < 0.01
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["note"] == "test" and card["n"] == 50
    card["format"] = 99
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="format"):
        PairMemory.load(tmp_path / "m.safetensors")
    with pytest.raises(FileNotFoundError, match="rsrag train memory"):
        PairMemory.load(tmp_path / "missing.safetensors")


def test_rs_lite_with_a_memory_built_here(data_root, tmp_path):
    from rsrag.data.benchmarks import load_rsicd
    from rsrag.training.memory import build_memory

    path = tmp_path / "small.safetensors"
    report = build_memory("rs-lite", ("rsicd", "ucm"), name=str(path), limit=6, k=3)
    assert report["images"] == 12 and report["captions"] == 60 and path.is_file()
    plain = create_encoder("rs-lite")
    with_memory = create_encoder("rs-lite", memory=str(path))
    assert with_memory.id == plain.id + "+mem:small" and with_memory.dim == plain.dim
    images = [r.path for r in load_rsicd("test")[:4]]
    a, b = plain.encode_images(images), with_memory.encode_images(images)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert np.allclose(b, PairMemory.load(path).augment(a), atol=2e-3)  # the encoder applies the blend
    assert np.allclose(with_memory.encode_texts(["a harbor"]), plain.encode_texts(["a harbor"]))  # text untouched
    with pytest.raises(ValueError, match="plain encoder"):
        build_memory("rs-lite-mem", ("rsicd",), name=str(tmp_path / "x.safetensors"), limit=2)
    mem = PairMemory.load(path)
    mem.encoder_id = "someone-else"
    mem.save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="was built with encoder"):
        create_encoder("rs-lite", memory=str(tmp_path / "other.safetensors"))


def test_committed_memory_matches_the_committed_weights():
    from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS, MEMORY

    enc = create_encoder("rs-lite-mem")
    assert enc.id.startswith(f"rs-lite:{DEFAULT_WEIGHTS}@") and enc.id.endswith(f"+mem:{MEMORY}")
    assert enc.name == "rs-lite-mem"
    assert len(enc.memory.keys) == 10177
