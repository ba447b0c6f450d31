"""Image-text retrieval metrics (RSICD / UCM-captions protocol), pure numpy.

The protocol is the one RemoteCLIP and GeoRSCLIP report: every test image is a query over all
test captions (image->text), and every caption is a query over all test images (text->image).

- image->text R@K: share of images with *any* of their ground-truth captions in the top K captions.
- text->image R@K: share of captions whose (single) image is in the top K images.
- mR: mean of the six recalls. All numbers are percentages (0..100).

Ties are broken by index, as the reference implementations (VSE++, RemoteCLIP, GeoRSCLIP) do
with a stable sort: among candidates with equal scores the one listed first ranks first. This
matters for UCM, whose captions repeat word for word across images of a class, and keeps a
degenerate encoder (constant embeddings) from scoring well. `ties="pessimistic"` (every tie ranks
above the ground truth) and `ties="optimistic"` (ties never do) bound the result.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
TIE_MODES = ("index", "pessimistic", "optimistic")
_ROW_BLOCK = 512  # image rows compared at once: bounds the temporary boolean arrays to 512 x n_captions


def retrieval_ranks(
    sim: np.ndarray, caption_to_image: np.ndarray, ties: str = "index"
) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of the best ground truth for every image query and every caption query.

    `sim` is (n_images, n_captions); `caption_to_image[j]` is the image index of caption j.
    Returns `(i2t_ranks, t2i_ranks)`; a query is a hit at K when its rank < K.
    """
    sim = np.asarray(sim)
    c2i = np.asarray(caption_to_image, dtype=np.int64)
    if sim.ndim != 2:
        raise ValueError(f"sim must be 2-D (n_images, n_captions), got shape {sim.shape}")
    n_images, n_captions = sim.shape
    if c2i.shape != (n_captions,):
        raise ValueError(f"caption_to_image must have one entry per caption ({n_captions}), got {c2i.shape}")
    if n_images == 0 or n_captions == 0:
        raise ValueError("retrieval needs at least one image and one caption")
    if c2i.min() < 0 or c2i.max() >= n_images:
        raise ValueError("caption_to_image holds an index outside 0..n_images-1")
    if np.bincount(c2i, minlength=n_images).min() == 0:
        raise ValueError("every image needs at least one caption")
    if not np.isfinite(sim).all():
        raise ValueError("sim contains NaN or infinite values")
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, not {ties!r}")

    # Score of each caption with its own image, read from the same matrix so comparisons are exact.
    gt_caption_score = sim[c2i, np.arange(n_captions)]
    i2t_ranks = np.empty(n_images, dtype=np.int64)
    t2i_ranks = np.zeros(n_captions, dtype=np.int64)

    for start in range(0, n_images, _ROW_BLOCK):
        block = sim[start : start + _ROW_BLOCK]  # a view, no copy
        rows = np.arange(start, start + block.shape[0])
        is_gt = c2i[None, :] == rows[:, None]  # (block, n_captions): caption j belongs to image row

        # image -> text: the best-scoring ground-truth caption decides the rank.
        gt_scores = np.where(is_gt, block, -np.inf)
        best_col = gt_scores.argmax(axis=1)[:, None]  # first (lowest-index) best ground-truth caption
        best_gt = np.take_along_axis(block, best_col, axis=1)
        rank = (block > best_gt).sum(axis=1)
        if ties != "optimistic":
            tied = (block == best_gt) & ~is_gt
            if ties == "index":
                tied &= np.arange(n_captions)[None, :] < best_col
            rank += tied.sum(axis=1)
        i2t_ranks[start : start + len(rows)] = rank

        # text -> image: accumulate, over image blocks, how many other images beat the caption's image.
        t2i_ranks += (block > gt_caption_score[None, :]).sum(axis=0)
        if ties != "optimistic":
            tied = (block == gt_caption_score[None, :]) & ~is_gt
            if ties == "index":
                tied &= rows[:, None] < c2i[None, :]
            t2i_ranks += tied.sum(axis=0)

    return i2t_ranks, t2i_ranks


def retrieval_metrics(
    sim: np.ndarray,
    caption_to_image: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    ties: str = "index",
) -> dict[str, float]:
    """Recall@K both ways plus mR, in percent, from an (n_images, n_captions) similarity matrix."""
    i2t_ranks, t2i_ranks = retrieval_ranks(sim, caption_to_image, ties=ties)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * float(np.mean(i2t_ranks < k))
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * float(np.mean(t2i_ranks < k))
    out["mR"] = float(np.mean(list(out.values())))
    return out


def evaluate_embeddings(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    caption_to_image: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    ties: str = "index",
) -> dict[str, float]:
    """Retrieval metrics from L2-normalised embeddings (cosine similarity = dot product).

    For training loops that already hold (cached) features. The full similarity matrix is built:
    4 bytes x n_images x n_captions, e.g. 24 MB for the RSICD test split.
    """
    image_emb = np.asarray(image_emb, dtype=np.float32)
    text_emb = np.asarray(text_emb, dtype=np.float32)
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"embedding shapes do not match: images {image_emb.shape}, texts {text_emb.shape}")
    return retrieval_metrics(image_emb @ text_emb.T, caption_to_image, ks=ks, ties=ties)
