"""The `openclip` backend with a tiny randomly initialised open_clip model (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rsrag.encoders import create_encoder

open_clip = pytest.importorskip("open_clip")
torch.set_num_threads(1)

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TEXTS = ["a field of wheat", "a river crossing a town", "an airport with two runways"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 40), (57, 31), (32, 32)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The in-memory reference model and its weights saved in the two checkpoint layouts."""
    torch.manual_seed(0)
    net = open_clip.CLIP(**TINY).eval()
    folder = tmp_path_factory.mktemp("openclip")
    plain = folder / "tiny-plain.pt"
    torch.save(net.state_dict(), plain)  # RemoteCLIP style
    wrapped = folder / "tiny-train.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, wrapped)
    return net, plain, wrapped


@pytest.fixture(scope="module")
def encoder(tiny):
    _, plain, _ = tiny
    return create_encoder("openclip", model="tiny", model_config=TINY, checkpoint=str(plain), device="cpu")


def _reference_image_vectors(net, enc, images) -> np.ndarray:
    batch = torch.from_numpy(np.stack([enc.preprocess.to_array(im.convert("RGB")) for im in images]))
    with torch.no_grad():
        out = net.encode_image(batch).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_shapes_dtype_norm_and_metadata(encoder):
    assert encoder.dim == 32
    assert encoder.id == "openclip:tiny:tiny-plain"
    assert encoder.preprocess.size == 32
    assert encoder.preprocess.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    img = encoder.encode_images(_images())
    txt = encoder.encode_texts(TEXTS)
    for vecs, n in ((img, 3), (txt, 3)):
        assert vecs.shape == (n, 32) and vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_deterministic(encoder):
    images = _images()
    np.testing.assert_array_equal(encoder.encode_images(images), encoder.encode_images(images))
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS), encoder.encode_texts(TEXTS))


def test_loaded_weights_equal_saved_ones(tiny, encoder):
    net, _, _ = tiny
    images = _images()
    np.testing.assert_allclose(encoder.encode_images(images), _reference_image_vectors(net, encoder, images), atol=1e-5)
    tokens = open_clip.SimpleTokenizer(context_length=16)(TEXTS)
    with torch.no_grad():
        ref = net.encode_text(tokens).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), ref, atol=1e-5)


def test_training_checkpoint_with_module_prefix(tiny, encoder):
    _, _, wrapped = tiny
    enc = create_encoder("openclip", model="tiny", model_config=TINY, checkpoint=wrapped, device="cpu")
    np.testing.assert_allclose(enc.encode_images(_images()), encoder.encode_images(_images()), atol=1e-6)


def test_open_clip_config_layout_with_preprocess(tiny):
    _, plain, _ = tiny
    cfg = {"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    enc = create_encoder("openclip", model="tiny", model_config=cfg, checkpoint=plain, device="cpu")
    assert enc.preprocess.mean == (0.5, 0.5, 0.5) and enc.preprocess.std == (0.25, 0.25, 0.25)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        create_encoder("openclip", model="tiny", model_config=TINY, checkpoint=str(missing))


def test_wrong_architecture_is_a_clear_error(tiny):
    _, plain, _ = tiny
    other = {**TINY, "embed_dim": 16}
    with pytest.raises(ValueError, match="does not match the model architecture"):
        create_encoder("openclip", model="tiny", model_config=other, checkpoint=plain, device="cpu")


def test_needs_weights():
    with pytest.raises(ValueError, match="needs weights"):
        create_encoder("openclip", model="tiny", model_config=TINY)


@pytest.mark.parametrize("name, var", [("remoteclip-vit-b-32", "RSRAG_REMOTECLIP_CKPT"), ("georsclip-vit-b-32", "RSRAG_GEORSCLIP_CKPT")])
def test_named_config_missing_weights_says_where(name, var, monkeypatch, tmp_path):
    monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RSRAG_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        create_encoder(name)
    assert var in str(err.value) and str(tmp_path) in str(err.value) and "huggingface.co" in str(err.value)


def test_named_config_expands_env_var(tiny, encoder, monkeypatch):
    _, plain, _ = tiny
    monkeypatch.setenv("RSRAG_REMOTECLIP_CKPT", str(plain))
    # the config fixes ViT-B-32; overriding the architecture keeps the test tiny
    enc = create_encoder("remoteclip-vit-b-32", model="tiny", model_config=TINY, device="cpu")
    assert enc.checkpoint == plain
    np.testing.assert_allclose(enc.encode_texts(TEXTS), encoder.encode_texts(TEXTS), atol=1e-6)


def test_pretrained_tag_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline"):
        create_encoder("openclip", model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown open_clip pretrained tag"):
        create_encoder("openclip", model="ViT-B-32", pretrained="no-such-tag")
