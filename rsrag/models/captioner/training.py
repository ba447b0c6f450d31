"""Training the captioner from cached rs-lite trunk features, in minutes on a 2-core CPU.

The frozen tuned tail runs once over the cached trunk activations of every image, giving its 7x7
map (kept in fp16) and shared-space embedding. Each step takes a batch of training images, applies a
random dihedral transform to their maps (overhead imagery has no canonical orientation; transforming
the tail's output rather than its input saves re-running the tail every step, which would cost a
fifth of the step), and trains the decoder with teacher forcing on `captions_per_image` of each
image's captions at once (label-smoothed cross-entropy): the image side is computed once for all of
them, and batches are cut to their longest caption. The retrieval-augmented variant also gets one
random caption of each of the image's k nearest *other* training images. Model selection: greedy
CIDEr averaged over the RSICD and UCM val splits, checked every epoch; the best epoch is saved.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rsrag.data import load_dataset
from rsrag.encoders.features import trunk_cache_key
from rsrag.encoders.rs_lite import random_dihedral
from rsrag.encoders.weights import run_card
from rsrag.metrics.caption import score_captions
from rsrag.models.captioner.api import Captioner, pad_ids, save_captioner
from rsrag.models.captioner.features import (
    ENCODER_WEIGHTS,
    ImageFeatures,
    ImageTower,
    cached_trunk,
)
from rsrag.models.captioner.memory import CaptionMemory, top_k
from rsrag.models.captioner.model import CaptionerConfig, CaptionModel
from rsrag.models.captioner.vocab import Vocab
from rsrag.models.fitting import EarlyStopping, warmup_cosine

log = logging.getLogger(__name__)


@dataclass
class CaptionerTrainConfig:
    """Everything that determines a run; written into the weights card."""

    neighbours: int = 0  # 0: plain model; k > 0: retrieval-augmented with k neighbour captions
    d_model: int = 256
    decoder_layers: int = 2
    encoder_layers: int = 0
    ff_dim: int = 1024
    dropout: float = 0.1
    train_sets: tuple[str, ...] = ("rsicd", "ucm")
    val_sets: tuple[str, ...] = ("rsicd", "ucm")
    epochs: int = 2
    patience: int = 2  # epochs without val CIDEr gain before stopping
    batch_size: int = 32  # images per step
    captions_per_image: int = 5  # captions trained per image and step (drawn without replacement)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    min_count: int = 4  # vocabulary: words seen at least this often in the train captions
    seed: int = 0
    limit: int | None = None  # images per split, for quick runs and tests
    encoder_weights: str = ENCODER_WEIGHTS


@dataclass
class CaptionSplit:
    ids: list[str]
    trunk: np.ndarray  # (n, C, H, W) fp16 frozen-trunk activations
    captions: list[list[str]]


def load_split(tower: ImageTower, names: tuple[str, ...], split: str, limit: int | None = None) -> CaptionSplit:
    """Records of `names`/`split` with their cached trunk activations (computed on first use)."""
    ids, trunks, captions = [], [], []
    for name in names:
        records = load_dataset(name, split=split, limit=limit)
        trunks.append(cached_trunk(tower, records, trunk_cache_key(name, split, limit)))
        ids += [r.id for r in records]
        captions += [list(r.captions) for r in records]
    return CaptionSplit(ids, np.concatenate(trunks), captions)


def caption_ids(vocab: Vocab, captions: list[list[str]], length: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, max captions, length) padded ids and (n,) caption counts."""
    per_image = max(len(c) for c in captions)
    out = np.zeros((len(captions), per_image, length), np.int64)
    for i, caps in enumerate(captions):
        out[i, : len(caps)] = pad_ids([vocab.encode(c, length) for c in caps], length)
    return out, np.array([len(c) for c in captions])


def _random_rows(ids: np.ndarray, counts: np.ndarray, rows: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """One random caption of each image in `rows` (any shape) -> ids of shape rows.shape + (length,)."""
    pick = (torch.rand(rows.shape, generator=gen).numpy() * counts[rows]).astype(np.int64)
    return ids[rows, pick]


def _caption_draw(counts: np.ndarray, rows: np.ndarray, per_image: int, gen: torch.Generator) -> np.ndarray:
    """(len(rows), per_image) caption indices, without replacement while an image has enough."""
    keys = torch.rand((len(rows), counts.max()), generator=gen).numpy()
    keys[np.arange(counts.max())[None] >= counts[rows][:, None]] = np.inf  # captions an image lacks sort last
    order = np.argsort(keys, axis=1)
    slot = np.arange(per_image)[None] % counts[rows][:, None]  # wrap around when an image has fewer
    return np.take_along_axis(order, slot, 1)


def _trim(ids: np.ndarray) -> torch.Tensor:
    """Drop padding columns every row has (batches are cut to their longest caption)."""
    used = int((ids != Vocab.pad_id).any(axis=tuple(range(ids.ndim - 1))).nonzero()[0].max()) + 1
    return torch.from_numpy(np.ascontiguousarray(ids[..., :used]))


def val_scores(captioner: Captioner, feats: ImageFeatures, references: list[list[str]]) -> dict:
    """Greedy BLEU-4 and CIDEr with a pure-Python tokenizer: model selection only. Reported metrics
    come from `rsrag.metrics.caption` with the toolkit's PTB tokenizer."""
    return score_captions(references, captioner.caption_many(feats, beam_size=1), metrics=("bleu", "cider"), ptb=False)


def train_captioner(cfg: CaptionerTrainConfig, weights_name: str | None = None, command: str = "",
                    on_epoch=None) -> dict:
    """Train one variant; returns history and results (and the captioner under "captioner")."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time()
    tower = ImageTower(cfg.encoder_weights)
    train = load_split(tower, cfg.train_sets, "train", cfg.limit)
    vals = {name: load_split(tower, (name,), "val", cfg.limit) for name in cfg.val_sets}
    train_feats = tower.from_cache(train.trunk)
    val_feats = {name: tower.from_cache(split.trunk) for name, split in vals.items()}
    vocab = Vocab.build((c for caps in train.captions for c in caps), cfg.min_count)
    mcfg = CaptionerConfig(vocab_size=len(vocab), d_model=cfg.d_model, decoder_layers=cfg.decoder_layers,
                           encoder_layers=cfg.encoder_layers, ff_dim=cfg.ff_dim, dropout=cfg.dropout,
                           neighbours=cfg.neighbours,
                           feat_dim=tower.model.tail.out_dim, global_dim=tower.config.dim)
    targets, counts = caption_ids(vocab, train.captions, mcfg.max_len)

    memory, neighbours, neighbour_ids = None, None, None
    if cfg.neighbours:
        emb = train_feats.embedding.numpy()
        memory = CaptionMemory(train.ids, emb, train.captions)
        neighbours = top_k(emb, emb, cfg.neighbours, exclude=np.arange(len(emb)))
        neighbour_ids, _ = caption_ids(vocab, train.captions, mcfg.neighbour_len)
    feature_s = time.time() - t0
    log.info("data ready in %.0fs: %d train images, vocabulary %d", feature_s, len(train.ids), len(vocab))

    model = CaptionModel(mcfg)
    captioner = Captioner(model, vocab, tower, memory, name=weights_name or "captioner")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train.ids) / cfg.batch_size)
    sched = warmup_cosine(opt, cfg.warmup_steps, steps_per_epoch * cfg.epochs)

    history: list[dict] = []
    stopping = EarlyStopping(cfg.patience)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train.ids), generator=gen).numpy()
        losses = []
        t_epoch = time.time()
        for start in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[start : start + cfg.batch_size])
            spatial = random_dihedral(train_feats.spatial[idx].float(), gen)
            ids = _trim(targets[idx[:, None], _caption_draw(counts, idx, cfg.captions_per_image, gen)].reshape(
                -1, targets.shape[-1]))
            nbr = None
            if cfg.neighbours:
                nbr = _trim(_random_rows(neighbour_ids, counts, neighbours[idx], gen))
            mem, mem_pad = model.encode(spatial, train_feats.embedding[idx], nbr)
            per = cfg.captions_per_image
            logits = model.decode(mem.repeat_interleave(per, 0), mem_pad.repeat_interleave(per, 0), ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                   ignore_index=Vocab.pad_id, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if len(losses) % 50 == 0:
                log.info("  step %d/%d loss %.3f (%.0fs)", len(losses), steps_per_epoch, np.mean(losses[-50:]),
                         time.time() - t_epoch)
        model.eval()
        val = {name: val_scores(captioner, val_feats[name], split.captions) for name, split in vals.items()}
        score = float(np.mean([v["cider"] for v in val.values()]))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "first_loss": losses[0],
               "seconds": round(time.time() - t_epoch, 1), "val_cider": score,
               **{f"val_{n}_{m}": round(v[m], 4) for n, v in val.items() for m in ("bleu4", "cider")}}
        history.append(row)
        log.info("epoch %s", json.dumps(row))
        if on_epoch is not None:
            on_epoch(row)
        if stopping.improved(score, model):
            if weights_name:  # the best so far stays on disk: a run stopped early still leaves weights
                save_captioner(model, vocab, weights_name, run_card(cfg, command, {"history": history, "finished": False}),
                               cfg.encoder_weights, memory, tower.encoder_id)
        elif stopping.stop:
            break
    stopping.restore(model)
    result = {"history": history, "best_val_cider": stopping.best, "train_images": len(train.ids), "vocab_size": len(vocab),
              "parameters": sum(p.numel() for p in model.parameters()),
              "feature_seconds": round(feature_s, 1), "train_seconds": round(time.time() - t0 - feature_s, 1),
              "finished": True}
    if weights_name:
        path = save_captioner(model, vocab, weights_name, run_card(cfg, command, result), cfg.encoder_weights, memory,
                              tower.encoder_id)
        result["weights"] = str(path)
    result["captioner"] = captioner
    return result
