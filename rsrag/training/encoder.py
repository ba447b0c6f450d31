"""Training the `rs-lite` encoder from cached features, in minutes on a 2-core CPU.

Why cached features: the frozen part of the image tower (stem + early blocks) costs most of the
compute, and its output never changes during training. We run it once per image, keep the
(C, 7, 7) activation in fp16 (`rsrag.encoders.features`, shared with the captioner and VQA), and
train only the tail blocks and the projection heads. Augmentation uses the 8 dihedral transforms (flips and 90 degree rotations) of the
cached activation maps: overhead imagery has no canonical orientation.

The text tower is frozen too, so caption embeddings are cached once as well.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rsrag.data import load_dataset
from rsrag.encoders.features import cache_text_features, cache_trunk_features, trunk_cache_key
from rsrag.encoders.rs_lite import (
    RSLiteConfig,
    RSLiteHeads,
    RSLiteImageModel,
    freeze_text_tower_below_tail,
    load_text_tower,
    random_dihedral,
    save_weights,
)
from rsrag.encoders.weights import run_card
from rsrag.metrics.retrieval import retrieval_metrics
from rsrag.models.fitting import EarlyStopping, warmup_cosine

log = logging.getLogger(__name__)


@dataclass
class EncoderTrainConfig:
    """Everything that determines a training run; written into the weights card."""

    model: RSLiteConfig = field(default_factory=RSLiteConfig)
    train_sets: tuple[str, ...] = ("rsicd", "ucm")
    val_set: str = "rsicd"
    epochs: int = 30
    patience: int = 5  # early stopping on RSICD val mR
    batch_size: int = 256
    lr_tail: float = 2e-4
    lr_heads: float = 2e-3
    lr_text: float = 1e-4  # tuned top layers of the text tower (a pretrained transformer wants a small rate)
    weight_decay: float = 0.05
    warmup_steps: int = 40
    seed: int = 0
    limit: int | None = None  # images per split, for quick runs and tests


# ---------------------------------------------------------------- training


@dataclass
class SplitData:
    feats: np.ndarray  # (n_images, C, H, W) fp16 trunk activations
    text: np.ndarray  # (n_captions, 384) frozen text-tower features
    captions: list[str]
    caption_to_image: np.ndarray  # (n_captions,) image index of each caption


def prepare_split(names: tuple[str, ...], split: str, cfg: EncoderTrainConfig, image_model: RSLiteImageModel) -> SplitData:
    feats, texts, owners, captions = [], [], [], []
    offset = 0
    for name in names:
        records = load_dataset(name, split=split, limit=cfg.limit)
        key = trunk_cache_key(name, split, cfg.limit)
        feats.append(np.asarray(cache_trunk_features(records, cfg.model, key, image_model)))
        caps = [c for r in records for c in r.captions]
        texts.append(cache_text_features(caps, key))
        captions.extend(caps)
        owners.extend(offset + i for i, r in enumerate(records) for _ in r.captions)
        offset += len(records)
    return SplitData(np.concatenate(feats), np.concatenate(texts), captions, np.asarray(owners))


def text_features(heads: RSLiteHeads, text_model, data: SplitData, idx) -> torch.Tensor:
    """Text-tower features for captions `idx`: cached when the text tower is frozen, else recomputed."""
    if text_model is None:
        return torch.from_numpy(data.text[idx])
    texts = [data.captions[j] for j in idx]
    # sentence-transformers renamed `tokenize` to `preprocess` in v6
    batch = text_model.preprocess(texts) if hasattr(text_model, "preprocess") else text_model.tokenize(texts)
    return text_model(batch)["sentence_embedding"]


def embed_cached(heads: RSLiteHeads, data: SplitData, text_model=None, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Image and text embeddings of a cached split with the current heads (eval mode)."""
    heads.eval()
    if text_model is not None:
        text_model.eval()
    with torch.inference_mode():
        img = torch.cat([
            heads.image_proj(heads.tail(torch.from_numpy(np.asarray(data.feats[i : i + batch_size], np.float32))))
            for i in range(0, len(data.feats), batch_size)
        ])
        txt = torch.cat([
            heads.text_proj(text_features(heads, text_model, data, np.arange(i, min(i + batch_size, len(data.captions)))))
            for i in range(0, len(data.captions), batch_size)
        ])
    return F.normalize(img, dim=-1).numpy(), F.normalize(txt, dim=-1).numpy()


def evaluate_cached(heads: RSLiteHeads, data: SplitData, text_model=None) -> dict:
    img, txt = embed_cached(heads, data, text_model)
    return retrieval_metrics(img @ txt.T, data.caption_to_image)


def train_encoder(cfg: EncoderTrainConfig, weights_name: str | None = "rs-lite-lite0", command: str = "") -> dict:
    """Train rs-lite; returns the history and final metrics. Saves the best epoch by val mR."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    image_model = RSLiteImageModel(cfg.model)
    text_model = None
    if cfg.model.text_tail_layers:
        text_model = load_text_tower("cpu")
        freeze_text_tower_below_tail(text_model, cfg.model)
    heads = RSLiteHeads(image_model, cfg.model, text_model)
    t0 = time.time()
    train = prepare_split(cfg.train_sets, "train", cfg, image_model)
    val = prepare_split((cfg.val_set,), "val", cfg, image_model)
    feature_s = time.time() - t0
    log.info("features ready in %.0fs: %d train images, %d val images", feature_s, len(train.feats), len(val.feats))

    # each image is seen once per epoch, paired with one of its captions drawn at random
    captions_of = [[] for _ in range(len(train.feats))]
    for j, i in enumerate(train.caption_to_image):
        captions_of[i].append(j)

    tail_params = list(heads.tail.parameters())
    text_params = list(heads.text_layers.parameters()) if text_model is not None else []
    head_params = list(heads.image_proj.parameters()) + list(heads.text_proj.parameters()) + [heads.logit_scale]
    opt = torch.optim.AdamW([
        {"params": tail_params, "lr": cfg.lr_tail},
        {"params": head_params, "lr": cfg.lr_heads},
        {"params": text_params, "lr": cfg.lr_text},
    ], weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup_steps, math.ceil(len(train.feats) / cfg.batch_size) * cfg.epochs)

    history, stopping = [], EarlyStopping(cfg.patience)
    for epoch in range(cfg.epochs):
        heads.train()
        # BatchNorm keeps its ImageNet running statistics: with few steps and momentum 0.01 they
        # would lag the changing weights, and eval-mode outputs would drift from training ones.
        for module in heads.tail.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        if text_model is not None:
            text_model.train()
        order = torch.randperm(len(train.feats), generator=gen).numpy()
        losses = []
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}", leave=False):
            idx = np.sort(order[start : start + cfg.batch_size])
            cap = [captions_of[i][int(torch.randint(len(captions_of[i]), (1,), generator=gen))] for i in idx]
            x = random_dihedral(torch.from_numpy(np.asarray(train.feats[idx], np.float32)), gen)
            img = F.normalize(heads.image_proj(heads.tail(x)), dim=-1)
            txt = F.normalize(heads.text_proj(text_features(heads, text_model, train, cap)), dim=-1)
            logits = heads.logit_scale.exp().clamp(max=100) * img @ txt.T
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        metrics = evaluate_cached(heads, val, text_model)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_mR": metrics["mR"]})
        log.info("epoch %d loss %.4f val mR %.2f", epoch + 1, np.mean(losses), metrics["mR"])
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  val mR {metrics['mR']:.2f}", flush=True)
        if stopping.improved(metrics["mR"], heads):
            if weights_name:  # keep the best so far on disk: a long run stopped early still leaves weights
                save_weights(heads, cfg.model, weights_name,
                             run_card(cfg, command, {"history": history, "best_val_mR": stopping.best, "finished": False}))
        elif stopping.stop:
            break
    stopping.restore(heads)
    result = {
        "history": history,
        "best_val_mR": stopping.best,
        "train_images": int(len(train.feats)),
        "train_captions": int(len(train.text)),
        "feature_seconds": round(feature_s, 1),
        "train_seconds": round(time.time() - t0 - feature_s, 1),
        "finished": True,
    }
    if weights_name:
        save_weights(heads, cfg.model, weights_name, run_card(cfg, command, result))
    result["heads"] = heads
    result["text_model"] = text_model
    return result
