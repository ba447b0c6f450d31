"""Training the `rs-lite` encoder from cached features, in minutes on a 2-core CPU.

Why cached features: the frozen part of the image tower (stem + early blocks) costs most of the
compute, and its output never changes during training. We run it once per image, keep the
(C, 7, 7) activation in fp16 (`rsrag.encoders.features`, shared with the captioner and VQA), and
train only the tail blocks and the projection heads. Augmentation uses the 8 dihedral transforms (flips and 90 degree rotations) of the
cached activation maps: overhead imagery has no canonical orientation.

The text tower is frozen too, so caption embeddings are cached once as well.

Across resolutions (`coarser_views`): every training image is also cached as a few copies seen by a
coarser sensor (`rsrag.data.degrade`, the same model the resolution evaluation uses), each at its own
factor drawn log-uniformly from `gsd_range` by a hash of the image id, so the copies span 0.3 to about
30 m per pixel and are the same on every machine. A step shows each image at native resolution with
probability `native_share`, else one of its coarser copies. Label-only corpus images
(`corpus_sets`, captioned from templates) would make every other image of their class a false
negative in the contrastive loss, so pairs of one class of one corpus dataset are masked out of it;
so are repeats of one image in a batch. With `consistency` > 0 every step also embeds each image
both native and through one coarser copy, and a contrastive loss between the two (the native side
held fixed) asks each coarser copy to land nearest its own native embedding: the caption loss alone
only teaches a blurred image its captions' words, this teaches it where the sharp image sits in the
space, which is what zero-shot and search compare it with. Sources are sampled with probability proportional to
size ** `source_temperature` (1: as they come; 0: every source equally), each epoch drawing
`epoch_images` images.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rsrag.data import load_dataset
from rsrag.data.corpus import load_corpus
from rsrag.data.degrade import degrade
from rsrag.imageio import load_image
from rsrag.encoders.features import cache_text_features, cache_trunk_features, trunk_cache_key
from rsrag.encoders.rs_lite import (
    RSLiteConfig,
    RSLiteHeads,
    RSLiteImageModel,
    freeze_text_tower_below_tail,
    load_text_tower,
    random_dihedral,
    read_weights,
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
    corpus_sets: tuple[str, ...] = ()  # prepared label-only corpus datasets (`rsrag data prepare`)
    corpus_root: str | None = None  # where they were prepared (default RSRAG_CACHE/corpus)
    coarser_views: int = 0  # cached coarser-sensor copies of every training image
    gsd_range: tuple[float, float] = (1.5, 32.0)  # coarsening factors of those copies (log-uniform)
    native_share: float = 0.5  # probability a step shows an image at its own resolution
    consistency: float = 0.0  # weight of the cross-resolution loss: a coarser copy must find its own native image
    val_factor: float = 8.0  # with coarser views, early stopping also scores RSICD val this much coarser
    source_temperature: float = 1.0  # sampling probability of a source ~ size ** temperature
    epoch_images: int | None = None  # images drawn per epoch (default: all training images)
    init_from: str | None = None  # start from these rs-lite weights (a name in rsrag/weights or a path)


# ---------------------------------------------------------------- training


@dataclass
class SplitData:
    feats: np.ndarray  # (n_images, C, H, W) fp16 trunk activations
    text: np.ndarray | None  # (n_captions, 384) frozen text-tower features; None when its top layers are tuned
    captions: list[str]
    caption_to_image: np.ndarray  # (n_captions,) image index of each caption
    coarser: list[np.ndarray] = field(default_factory=list)  # coarser-sensor copies of `feats`, view by view
    source: np.ndarray | None = None  # (n_images,) index of the dataset each image comes from
    group: np.ndarray | None = None  # (n_images,) class of a label-only corpus image, -1 for captioned ones


def coarser_factor(image_id: str, view: int, gsd_range: tuple[float, float]) -> float:
    """The coarsening factor of view `view` of an image: log-uniform in `gsd_range`, fixed by a hash of
    the id (the same on every machine and run), rounded to 0.01."""
    low, high = gsd_range
    u = int(hashlib.sha1(f"{image_id}|gsd|{view}".encode()).hexdigest()[:12], 16) / 16 ** 12
    return round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))), 2)


def _records(name: str, split: str, cfg: EncoderTrainConfig) -> list:
    if name in cfg.corpus_sets:
        records = load_corpus(name, split=split, root=cfg.corpus_root)
        return records[: cfg.limit] if cfg.limit else records
    return load_dataset(name, split=split, limit=cfg.limit)


def _degraded(factor_of: Callable[[object], float]) -> Callable[[object], object]:
    return lambda record: degrade(load_image(record.path), factor_of(record))


def prepare_split(names: tuple[str, ...], split: str, cfg: EncoderTrainConfig, image_model: RSLiteImageModel,
                  coarser_views: int = 0) -> SplitData:
    feats, texts, owners, captions, coarser, sources, groups = [], [], [], [], [[] for _ in range(coarser_views)], [], []
    group_ids: dict[tuple[int, str], int] = {}  # (source, label) of label-only images -> group id
    low, high = cfg.gsd_range
    offset = 0
    for source, name in enumerate(names):
        records = _records(name, split, cfg)
        key = trunk_cache_key(name, split, cfg.limit)
        feats.append(np.asarray(cache_trunk_features(records, cfg.model, key, image_model)))
        for view in range(coarser_views):
            factor_of = lambda record, view=view: coarser_factor(record.id, view, cfg.gsd_range)  # noqa: E731
            coarser[view].append(np.asarray(cache_trunk_features(
                records, cfg.model, f"{key}_gsd{low:g}-{high:g}_view{view}", image_model, image_of=_degraded(factor_of))))
        caps = [c for r in records for c in r.captions]
        if not cfg.model.text_tail_layers:  # a tuned text tower recomputes every caption anyway
            texts.append(cache_text_features(caps, key))
        captions.extend(caps)
        owners.extend(offset + i for i, r in enumerate(records) for _ in r.captions)
        sources.append(np.full(len(records), source))
        if name in cfg.corpus_sets:
            groups.append(np.asarray([group_ids.setdefault((source, r.label), len(group_ids)) for r in records]))
        else:
            groups.append(np.full(len(records), -1))
        offset += len(records)
    return SplitData(np.concatenate(feats), np.concatenate(texts) if texts else None, captions, np.asarray(owners),
                     [np.concatenate(v) for v in coarser], np.concatenate(sources), np.concatenate(groups))


def prepare_coarse_val(cfg: EncoderTrainConfig, val: SplitData, image_model: RSLiteImageModel) -> SplitData:
    """The validation split seen by a sensor `cfg.val_factor` times coarser (same captions)."""
    records = _records(cfg.val_set, "val", cfg)
    key = f"{trunk_cache_key(cfg.val_set, 'val', cfg.limit)}_gsd{cfg.val_factor:g}"
    feats = cache_trunk_features(records, cfg.model, key, image_model,
                                 image_of=_degraded(lambda record: cfg.val_factor))
    return SplitData(np.asarray(feats), val.text, val.captions, val.caption_to_image)


def sampling_weights(sources: np.ndarray, temperature: float) -> np.ndarray:
    """Per-image sampling probabilities: a source of n images gets n ** temperature of the mass."""
    counts = np.bincount(sources)
    mass = counts.astype(np.float64) ** temperature
    weights = (mass / mass.sum())[sources] / counts[sources]
    return weights / weights.sum()


def false_negative_mask(images: np.ndarray, groups: np.ndarray) -> torch.Tensor:
    """(b, b) True where pair (i, j), i != j, is not a real negative: the same image drawn twice, or
    two images of one class of a label-only dataset (their template captions are interchangeable)."""
    same_image = images[:, None] == images[None, :]
    same_group = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
    mask = same_image | same_group
    np.fill_diagonal(mask, False)
    return torch.from_numpy(mask)


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


def init_from_weights(heads: RSLiteHeads, config: RSLiteConfig, name: str) -> list[str]:
    """Start training from earlier rs-lite weights instead of ImageNet + random projections: a new
    version keeps what the last one learned. Tail blocks and tuned text layers are matched from the
    top (the earlier weights' last block is this model's last block), so a deeper tail starts with
    its extra blocks at ImageNet. Returns the parameters left at their initial values."""
    state, old, _ = read_weights(name)
    if (old.tower, old.dim, old.text_dim) != (config.tower, config.dim, config.text_dim):
        raise ValueError(f"cannot start from {name}: it is a {old.tower} model of dim {old.dim}, "
                         f"this one a {config.tower} model of dim {config.dim}")
    if old.tail_blocks > config.tail_blocks or old.text_tail_layers > config.text_tail_layers:
        raise ValueError(f"cannot start from {name}: it tuned more blocks or text layers than this model does")
    shift = {"tail.blocks.": config.tail_blocks - old.tail_blocks,
             "text_layers.": config.text_tail_layers - old.text_tail_layers}

    def renamed(key: str) -> str:
        for prefix, offset in shift.items():
            if key.startswith(prefix):
                index, rest = key[len(prefix):].split(".", 1)
                return f"{prefix}{int(index) + offset}.{rest}"
        return key

    result = heads.load_state_dict({renamed(k): v for k, v in state.items()}, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"weights {name} do not fit this model: unexpected {result.unexpected_keys[:5]}")
    return list(result.missing_keys)


def _image_features(data: SplitData, idx: np.ndarray, cfg: EncoderTrainConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trunk features of images `idx` (float32): native, one coarser copy of each drawn at random
    (native again without coarser views), and which rows a step shows coarse (probability
    1 - `native_share`)."""
    native = np.asarray(data.feats[idx], np.float32)
    if not data.coarser:
        return native, native, np.zeros(len(idx), bool)
    coarse = np.empty_like(native)  # every row gets one of its copies
    view = rng.integers(len(data.coarser), size=len(idx))
    for v, copies in enumerate(data.coarser):
        rows = np.flatnonzero(view == v)
        if len(rows):
            coarse[rows] = copies[idx[rows]]
    return native, coarse, rng.random(len(idx)) >= cfg.native_share


def cross_resolution_loss(coarse: torch.Tensor, native: torch.Tensor, scale: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """InfoNCE from each coarser copy to its own native embedding among the batch's (held fixed);
    `mask` removes the same false negatives as the caption loss."""
    logits = (scale * coarse @ native.detach().T).masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(coarse)))


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
    if cfg.init_from:
        fresh = init_from_weights(heads, cfg.model, cfg.init_from)
        log.info("started from %s; %d tensors at their initial values", cfg.init_from, len(fresh))
    t0 = time.time()
    train = prepare_split(cfg.train_sets + cfg.corpus_sets, "train", cfg, image_model, cfg.coarser_views)
    val = prepare_split((cfg.val_set,), "val", cfg, image_model)
    coarse_val = prepare_coarse_val(cfg, val, image_model) if cfg.coarser_views else None
    feature_s = time.time() - t0
    log.info("features ready in %.0fs: %d train images (%d coarser views each), %d val images", feature_s,
             len(train.feats), cfg.coarser_views, len(val.feats))

    # each drawn image is paired with one of its captions drawn at random
    captions_of = [[] for _ in range(len(train.feats))]
    for j, i in enumerate(train.caption_to_image):
        captions_of[i].append(j)
    weights = sampling_weights(train.source, cfg.source_temperature)
    epoch_images = cfg.epoch_images or len(train.feats)
    rng = np.random.default_rng(cfg.seed)

    tail_params = list(heads.tail.parameters())
    text_params = list(heads.text_layers.parameters()) if text_model is not None else []
    head_params = list(heads.image_proj.parameters()) + list(heads.text_proj.parameters()) + [heads.logit_scale]
    opt = torch.optim.AdamW([
        {"params": tail_params, "lr": cfg.lr_tail},
        {"params": head_params, "lr": cfg.lr_heads},
        {"params": text_params, "lr": cfg.lr_text},
    ], weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup_steps, math.ceil(epoch_images / cfg.batch_size) * cfg.epochs)

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
        if cfg.source_temperature == 1.0 and epoch_images == len(train.feats):
            order = torch.randperm(len(train.feats), generator=gen).numpy()  # every image once
        else:
            order = rng.choice(len(train.feats), size=epoch_images, p=weights)
        losses = []
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}", leave=False):
            idx = np.sort(order[start : start + cfg.batch_size])
            cap = [captions_of[i][int(torch.randint(len(captions_of[i]), (1,), generator=gen))] for i in idx]
            native, coarse, shown_coarse = _image_features(train, idx, cfg, rng)
            mask = false_negative_mask(idx, train.group[idx])
            scale = heads.logit_scale.exp().clamp(max=100)
            if cfg.consistency > 0:  # both views through the tail; the caption loss sees the drawn one
                both = random_dihedral(torch.from_numpy(np.concatenate([native, coarse])), gen)
                emb = F.normalize(heads.image_proj(heads.tail(both)), dim=-1)
                img_native, img_coarse = emb[: len(idx)], emb[len(idx):]
                img = torch.where(torch.from_numpy(shown_coarse)[:, None], img_coarse, img_native)
            else:
                x = np.where(shown_coarse[:, None, None, None], coarse, native)
                img = F.normalize(heads.image_proj(heads.tail(random_dihedral(torch.from_numpy(x), gen))), dim=-1)
            txt = F.normalize(heads.text_proj(text_features(heads, text_model, train, cap)), dim=-1)
            logits = (scale * img @ txt.T).masked_fill(mask, float("-inf"))
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            if cfg.consistency > 0:
                loss = loss + cfg.consistency * cross_resolution_loss(img_coarse, img_native, scale, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        metrics = evaluate_cached(heads, val, text_model)
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_mR": metrics["mR"]}
        score = metrics["mR"]
        if coarse_val is not None:
            entry[f"val_mR_gsd{cfg.val_factor:g}"] = evaluate_cached(heads, coarse_val, text_model)["mR"]
            score = (metrics["mR"] + entry[f"val_mR_gsd{cfg.val_factor:g}"]) / 2
        entry["score"] = score
        history.append(entry)
        log.info("epoch %d: %s", epoch + 1, entry)
        print(f"epoch {epoch + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"), flush=True)
        if stopping.improved(score, heads):
            if weights_name:  # keep the best so far on disk: a long run stopped early still leaves weights
                save_weights(heads, cfg.model, weights_name,
                             run_card(cfg, command, {"history": history, "best_score": stopping.best, "finished": False}))
        elif stopping.stop:
            break
    stopping.restore(heads)
    result = {
        "history": history,
        "best_score": stopping.best,  # val mR, or its mean with the coarse val mR under coarser views
        "train_images": int(len(train.feats)),
        "train_captions": len(train.captions),
        "feature_seconds": round(feature_s, 1),
        "train_seconds": round(time.time() - t0 - feature_s, 1),
        "finished": True,
    }
    if weights_name:
        save_weights(heads, cfg.model, weights_name, run_card(cfg, command, result))
    result["heads"] = heads
    result["text_model"] = text_model
    return result
