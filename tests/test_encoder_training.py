"""Training rs-lite across datasets and resolutions (`rsrag.training.encoder`): coarser-sensor copies
of the training images, label-only corpus datasets, source-balanced sampling and the masking of
false negatives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rsrag.encoders.rs_lite import RSLiteConfig
from rsrag.training.encoder import (
    EncoderTrainConfig,
    coarser_factor,
    cross_resolution_loss,
    false_negative_mask,
    sampling_weights,
    train_encoder,
)


def test_coarser_factors_are_fixed_per_image_and_span_the_range():
    factors = [coarser_factor(f"img{i}", view, (1.5, 32.0)) for i in range(400) for view in range(2)]
    assert factors == [coarser_factor(f"img{i}", view, (1.5, 32.0)) for i in range(400) for view in range(2)]
    assert 1.5 <= min(factors) < 2.0 and 24.0 < max(factors) <= 32.0
    # log-uniform: about as many copies below the geometric middle (~6.9x) as above it
    assert 0.4 < np.mean(np.asarray(factors) < np.sqrt(1.5 * 32.0)) < 0.6
    assert coarser_factor("img0", 0, (1.5, 32.0)) != coarser_factor("img0", 1, (1.5, 32.0))


def test_sampling_weights_follow_the_source_temperature():
    sources = np.asarray([0] * 900 + [1] * 100)
    natural = sampling_weights(sources, 1.0)
    equal = sampling_weights(sources, 0.0)
    assert natural.sum() == pytest.approx(1.0) and equal.sum() == pytest.approx(1.0)
    assert natural[sources == 1].sum() == pytest.approx(0.1)
    assert equal[sources == 1].sum() == pytest.approx(0.5)
    tempered = sampling_weights(sources, 0.5)[sources == 1].sum()
    assert tempered == pytest.approx(10 / (30 + 10))


def test_false_negatives_are_repeats_and_same_class_corpus_images():
    images = np.asarray([3, 3, 5, 7, 8])
    groups = np.asarray([-1, -1, 1000, 1000, -1])  # 5 and 7: one class of one corpus dataset
    mask = false_negative_mask(images, groups).numpy()
    assert not mask.diagonal().any()
    assert mask[0, 1] and mask[1, 0]  # the same image drawn twice
    assert mask[2, 3] and mask[3, 2]  # interchangeable template captions
    assert not mask[0, 2] and not mask[4, 0] and not mask[4, 2]  # captioned images stay negatives


def test_the_cross_resolution_loss_pulls_each_copy_to_its_own_native_image_only():
    """Low when every coarser copy sits on its own native embedding, high when copies are swapped;
    only the coarser side gets a gradient; masked pairs are not negatives."""
    import torch
    import torch.nn.functional as F

    native = F.normalize(torch.randn(8, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(20.0)
    none = torch.zeros(8, 8, dtype=torch.bool)
    aligned = cross_resolution_loss(native.clone(), native, scale, none)
    swapped = cross_resolution_loss(native.roll(1, 0), native, scale, none)
    assert aligned < 0.5 < swapped

    coarse = native.roll(1, 0).clone().requires_grad_(True)
    target = native.clone().requires_grad_(True)
    cross_resolution_loss(coarse, target, scale, none).backward()
    assert coarse.grad.abs().sum() > 0 and target.grad is None

    # image 0's copy looks like image 1: a mask calling 0 and 1 one class keeps it from being punished
    confused = native.clone()
    confused[0] = native[1]
    mask = none.clone()
    mask[0, 1] = mask[1, 0] = True
    assert cross_resolution_loss(confused, native, scale, mask) < cross_resolution_loss(confused, native, scale, none)


def _fake_corpus(root, n_per_class: int = 8) -> None:
    """A prepared corpus dataset `fake` of two classes of synthetic images, all in `train`."""
    folder = root / "fake"
    rows = []
    rng = np.random.default_rng(0)
    for label, colour in (("Forest", (30, 110, 40)), ("Beach", (220, 200, 150))):
        (folder / "train" / label).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(np.asarray(colour) + rng.normal(0, 25, (96, 96, 3)), 0, 255).astype(np.uint8)
            path = f"train/{label}/{label.lower()}_{i}.png"
            Image.fromarray(pixels).save(folder / path)
            rows.append({"id": f"fake/{label}/{i}", "path": path, "label": label, "source_class": label,
                         "captions": [f"an aerial image of {label.lower()}.", f"{label.lower()} seen from above."],
                         "dataset": "fake", "split": "train", "role": "train", "width": 96, "height": 96})
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_training_with_a_corpus_and_coarser_views(data_root, tmp_path, monkeypatch):
    """A tiny run on RSICD train + a label-only corpus, each image also cached at two coarser
    resolutions: the copies differ from the native features, early stopping scores val at native
    and 8x coarser, and the loss falls."""
    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path / "cache"))
    import torch

    torch.set_num_threads(2)
    _fake_corpus(tmp_path / "corpus")
    cfg = EncoderTrainConfig(model=RSLiteConfig(tail_blocks=1, text_tail_layers=0, dim=64), train_sets=("rsicd",),
                             corpus_sets=("fake",), corpus_root=str(tmp_path / "corpus"), coarser_views=2,
                             epochs=4, patience=10, batch_size=16, warmup_steps=1, limit=24, lr_heads=5e-3,
                             source_temperature=0.5, epoch_images=40)
    result = train_encoder(cfg, weights_name=None)
    history = result["history"]
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"]
    assert all(np.isfinite(h["val_mR"]) and np.isfinite(h["val_mR_gsd8"]) for h in history)
    assert result["best_score"] == max(h["score"] for h in history)
    assert result["train_images"] == 24 + 16

    features = tmp_path / "cache" / "features" / "lite0-tail1"
    native = np.load(features / "fake_train_limit24.npy")
    coarse = [np.load(features / f"fake_train_limit24_gsd1.5-32_view{v}.npy") for v in range(2)]
    assert all(c.shape == native.shape for c in coarse)
    for c in coarse:  # every copy really is another image
        diff = np.abs(c.astype(np.float32) - native.astype(np.float32)).reshape(len(native), -1).mean(1)
        assert (diff > 1e-3).all()


def test_the_cross_resolution_loss_brings_coarser_copies_nearer_their_native_images(data_root, tmp_path, monkeypatch):
    """The same tiny run with and without `consistency`: with it, the coarser copies of the training
    images end nearer (cosine) their own native embeddings."""
    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path / "cache"))
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    features = tmp_path / "cache" / "features" / "lite0-tail1"
    agreement = {}
    for weight in (0.0, 2.0):
        cfg = EncoderTrainConfig(model=RSLiteConfig(tail_blocks=1, text_tail_layers=0, dim=64), train_sets=("rsicd",),
                                 coarser_views=2, epochs=3, patience=10, batch_size=16, warmup_steps=1, limit=32,
                                 lr_heads=5e-3, lr_tail=1e-3, consistency=weight)
        heads = train_encoder(cfg, weights_name=None)["heads"].eval()
        with torch.no_grad():
            def embed(name: str) -> torch.Tensor:
                x = torch.from_numpy(np.load(features / name).astype(np.float32))
                return F.normalize(heads.image_proj(heads.tail(x)), dim=-1)

            native = embed("rsicd_train_limit32.npy")
            copies = [embed(f"rsicd_train_limit32_gsd1.5-32_view{v}.npy") for v in range(2)]
        agreement[weight] = float(torch.stack([(c * native).sum(-1) for c in copies]).mean())
    assert agreement[2.0] > agreement[0.0] + 0.05, agreement  # measured 0.88 vs 0.74


def test_a_new_version_starts_from_the_last_weights_with_a_deeper_tail():
    """init_from: the committed weights' last tail block becomes the last block of a two-block tail
    (the extra block keeps ImageNet), and everything else they trained is loaded as it was."""
    import torch

    from rsrag.encoders.rs_lite import RSLiteHeads, RSLiteImageModel, read_weights
    from rsrag.training.encoder import init_from_weights

    config = RSLiteConfig(tail_blocks=2, text_tail_layers=0)
    old_state, old_config, _ = read_weights("rs-lite-lite0")
    if old_config.text_tail_layers:  # the committed weights tuned text layers: load them into a text tower
        from rsrag.encoders.rs_lite import freeze_text_tower_below_tail, load_text_tower

        config = RSLiteConfig(tail_blocks=2, text_tail_layers=old_config.text_tail_layers)
        tower = load_text_tower("cpu")
        freeze_text_tower_below_tail(tower, config)
    else:
        tower = None
    image_model = RSLiteImageModel(config)
    imagenet_block = {k: v.clone() for k, v in image_model.tail.blocks[0].state_dict().items()}
    heads = RSLiteHeads(image_model, config, tower)
    missing = init_from_weights(heads, config, "rs-lite-lite0")
    assert missing and all(k.startswith("tail.blocks.0.") for k in missing)
    state = heads.state_dict()
    for key, value in old_state.items():
        new_key = key.replace("tail.blocks.0.", "tail.blocks.1.")
        assert torch.equal(state[new_key], value.to(state[new_key].dtype)), key
    assert all(torch.equal(v, imagenet_block[k]) for k, v in image_model.tail.blocks[0].state_dict().items())
    with pytest.raises(ValueError, match="tuned more blocks"):
        init_from_weights(RSLiteHeads(RSLiteImageModel(RSLiteConfig(tail_blocks=1, text_tail_layers=0)),
                                      RSLiteConfig(tail_blocks=1, text_tail_layers=0)),
                          RSLiteConfig(tail_blocks=1, text_tail_layers=0), "rs-lite-lite0")
