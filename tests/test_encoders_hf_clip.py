"""The `hf-clip` backend with a tiny random transformers CLIPModel saved to a temp folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rsrag.encoders import create_encoder

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)

TEXTS = ["a field of wheat", "a river crossing a town with two bridges", "airport"]


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (printable bytes map to themselves)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, shift = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + shift))
            shift += 1
    return out


def _write_tokenizer_files(folder) -> dict[str, int]:
    """A merge-free CLIP BPE vocabulary: every byte symbol, alone and word-final, plus the specials."""
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return vocab


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in [(48, 48), (33, 61)]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(in-memory model, tokenizer, saved folder) for a 2-layer CLIP with 32-px images."""
    root = tmp_path_factory.mktemp("hfclip")
    vocab = _write_tokenizer_files(root)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(root))
    eos = vocab["<|endoftext|>"]
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=16,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    folder = root / "tiny-clip"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    preprocessor = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "resample": 2, "crop_size": 32}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model, tokenizer, folder


@pytest.fixture(scope="module")
def encoder(tiny):
    return create_encoder("hf-clip", model=str(tiny[2]), device="cpu")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _projected(out) -> np.ndarray:
    return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()


def test_metadata_and_preprocess(encoder):
    assert encoder.id == "hf-clip:tiny-clip"
    assert encoder.dim == 24
    assert encoder.preprocess.size == 32
    assert encoder.preprocess.mean == pytest.approx((0.5, 0.4, 0.3))
    assert encoder.preprocess.std == pytest.approx((0.2, 0.25, 0.3))
    assert encoder.preprocess.resample == "bilinear"


def test_shapes_dtype_norm(encoder):
    for vecs, n in ((encoder.encode_images(_images()), 2), (encoder.encode_texts(TEXTS), 3)):
        assert vecs.shape == (n, 24) and vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_deterministic(encoder):
    np.testing.assert_array_equal(encoder.encode_images(_images()), encoder.encode_images(_images()))
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS), encoder.encode_texts(TEXTS))


def test_loaded_weights_equal_saved_ones(tiny, encoder):
    model, tokenizer, _ = tiny
    images = _images()
    pixels = torch.from_numpy(np.stack([encoder.preprocess.to_array(im) for im in images]))
    tokens = tokenizer(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        ref_img = _projected(model.get_image_features(pixel_values=pixels))
        ref_txt = _projected(model.get_text_features(**tokens))
    np.testing.assert_allclose(encoder.encode_images(images), _unit(ref_img), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), _unit(ref_txt), atol=1e-5)


def test_text_longer_than_context_is_truncated(encoder):
    vecs = encoder.encode_texts(["a very long caption " * 10])
    assert vecs.shape == (1, 24) and np.isfinite(vecs).all()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        create_encoder("hf-clip", model=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_encoder("hf-clip", model=str(tmp_path / "empty"))


def test_hub_id_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline"):
        create_encoder("hf-clip", model="rsrag-test/no-such-clip", cache_dir=str(tmp_path))
