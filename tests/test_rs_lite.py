"""The default `rs-lite` encoder: committed weights, both runtimes, registry, training."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rsrag.encoders import create_encoder, list_encoders
from rsrag.encoders import rs_lite
from rsrag.encoders.rs_lite import RSLiteConfig, weights_path
from rsrag.imageio import ImageLoadError

pytestmark = pytest.mark.skipif(not weights_path(rs_lite.DEFAULT_WEIGHTS).exists(),
                                reason="rs-lite weights not trained")


@pytest.fixture(scope="module")
def onnx_encoder():
    return create_encoder("rs-lite")


@pytest.fixture(scope="module")
def torch_encoder():
    return create_encoder("rs-lite", runtime="torch", device="cpu")


def rsicd_images(data_root, n=4):
    from rsrag.data import load_dataset

    return [r.path for r in load_dataset("rsicd", split="test")[:n]]


def test_registry_lists_backends():
    names = list_encoders()
    assert {"rs-lite", "openclip", "hf-clip"} <= set(names)
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder("no-such-encoder")


def test_shapes_normalisation_determinism(onnx_encoder, data_root):
    enc = onnx_encoder
    assert enc.dim == 512 and enc.id.startswith(f"rs-lite:{rs_lite.DEFAULT_WEIGHTS}@")
    assert enc.preprocess.size == 224
    paths = rsicd_images(data_root)
    a = enc.encode_images(paths, batch_size=3)
    b = enc.encode_images(paths, batch_size=2)
    assert a.shape == (4, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batching does not change results
    t = enc.encode_texts(["an airport with two runways", "a dense residential area"])
    assert t.shape == (2, 512) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t, enc.encode_texts(["an airport with two runways", "a dense residential area"]), atol=1e-6)


def test_onnx_matches_torch(onnx_encoder, torch_encoder, data_root):
    paths = rsicd_images(data_root, 3)
    a = onnx_encoder.encode_images(paths)
    b = torch_encoder.encode_images(paths)
    assert (a * b).sum(axis=1).min() > 0.999
    assert onnx_encoder.id == torch_encoder.id


def test_onnx_text_path_matches_torch(onnx_encoder, torch_encoder):
    # different lengths in one batch: padding must not change any embedding
    texts = ["airport", "many green trees are around a playground with a red track and some buildings",
             "boats in a harbor", "a bridge over a river " * 60]  # the last is cut at the tower's max length
    a = onnx_encoder.encode_texts(texts)
    assert onnx_encoder._text_onnx(len(texts)) is not None and onnx_encoder._text_onnx(1) is not None  # really the ONNX path
    b = torch_encoder.encode_texts(texts)
    assert (a * b).sum(axis=1).min() > 0.9999
    np.testing.assert_allclose(onnx_encoder.encode_texts(texts[1:2]), a[1:2], atol=1e-5)
    # a batch over FEW_TEXTS runs on the multi-threaded session: same vectors
    np.testing.assert_allclose(onnx_encoder.encode_texts(texts * 3), np.tile(a, (3, 1)), atol=1e-5)


def test_int8_text_path_is_close_to_fp32_and_ranks_alike(onnx_encoder, data_root):
    """The int8 text path (served queries): near the fp32 vectors, same matches, same id."""
    from rsrag.data import load_dataset
    from rsrag.encoders import encoder_accepts

    assert encoder_accepts("rs-lite", "text_precision") and not encoder_accepts("remoteclip-vit-b-32", "text_precision")
    int8 = create_encoder("rs-lite", text_precision="int8")
    assert int8.id == onnx_encoder.id  # a runtime choice: indexes built with either stay compatible
    assert "int8" in int8._text_onnx(1)._model_path
    texts = [c for r in load_dataset("ucm", split="test")[::20] for c in r.captions[:1]]
    a, b = onnx_encoder.encode_texts(texts), int8.encode_texts(texts)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.98 and cos.mean() > 0.99
    assert not np.allclose(a, b, atol=1e-4)  # really another model
    np.testing.assert_allclose(int8.encode_texts(texts[:1]), b[:1], atol=1e-5)  # one text or a batch: same vector
    images = onnx_encoder.encode_images([r.path for r in load_dataset("ucm", split="test")[::40]])
    top_a, top_b = (a @ images.T).argmax(axis=1), (b @ images.T).argmax(axis=1)
    # 9 captions against 5 images: a caption matching none of them well (all scores near 0.16 with
    # the v2 weights) may flip between two near-equal images, so one disagreement in 9 is allowed
    assert (top_a == top_b).mean() >= 0.8
    with pytest.raises(ValueError, match="text_precision"):
        create_encoder("rs-lite", text_precision="fp16")


def test_text_finds_matching_image(onnx_encoder, data_root):
    """The trained space is meaningful: each scene's caption ranks its own image first."""
    from rsrag.data import load_dataset

    records = load_dataset("ucm", split="test")
    picks = [next(r for r in records if r.label == lab) for lab in ("airplane", "beach", "harbor", "storagetanks")]
    img = onnx_encoder.encode_images([r.path for r in picks])
    txt = onnx_encoder.encode_texts(["airplanes parked at an airport", "a sandy beach next to the sea",
                                     "many boats docked in a harbor", "white round storage tanks"])
    assert ((txt @ img.T).argmax(axis=1) == np.arange(4)).all()


def test_image_inputs_of_every_kind(onnx_encoder, data_root):
    path = rsicd_images(data_root, 1)[0]
    rgb = Image.open(path).convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    ref = onnx_encoder.encode_images([path])
    for item in (rgb, np.asarray(rgb), buf.getvalue(), str(path)):
        np.testing.assert_allclose(onnx_encoder.encode_images([item]), ref, atol=2e-3)
    gray16 = (np.asarray(rgb.convert("L"), np.uint16) * 257)
    rgba = rgb.convert("RGBA")
    palette = rgb.convert("P")
    out = onnx_encoder.encode_images([gray16, rgba, palette])
    assert out.shape == (3, 512) and np.isfinite(out).all()


def test_bad_images_named_or_skipped(onnx_encoder, data_root, tmp_path):
    good = rsicd_images(data_root, 2)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        onnx_encoder.encode_images([good[0], bad])
    res = onnx_encoder.encode_images_lenient([good[0], bad, missing, good[1]], batch_size=2)
    assert res.ok == [0, 3] and res.vectors.shape == (2, 512)
    assert [pos for pos, _ in res.failures] == [1, 2]
    assert "missing.png" in res.failures[1][1]
    np.testing.assert_allclose(res.vectors, onnx_encoder.encode_images(good), atol=1e-5)


def test_training_loss_falls(data_root, tmp_path, monkeypatch):
    """A tiny run on 48 RSICD + UCM train images: the contrastive loss falls epoch over epoch."""
    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path))
    import torch

    from rsrag.training.encoder import EncoderTrainConfig, train_encoder

    torch.set_num_threads(2)
    cfg = EncoderTrainConfig(model=RSLiteConfig(tail_blocks=1, dim=64), epochs=4, patience=10, batch_size=32,
                             warmup_steps=1, limit=48, lr_heads=5e-3)
    result = train_encoder(cfg, weights_name=None)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0] * 0.9
    assert all(np.isfinite(h["val_mR"]) for h in result["history"])
