"""VQA image features of whole dataset splits, from the shared trunk caches.

The frozen trunk's activations of RSICD / UCM images are cached once by
`rsrag.encoders.features.cache_trunk_features` (shared with encoder and captioner training); here
they go through rs-lite's tuned tail and projection (`image_features_from_map`), optionally
under several dihedral transforms for augmentation, and the result is cached per encoder version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rsrag.config import cache_dir
from rsrag.data import ImageRecord
from rsrag.encoders.features import cache_trunk_features, cached_array, trunk_cache_key
from rsrag.encoders.rs_lite import dihedral
from rsrag.models.vqa.model import image_features_from_map

FEATURES = "emb-mean-max"  # names the feature recipe in cache file names


def _split_keys(records: Sequence[ImageRecord], limit: int | None) -> list[tuple[str, list[ImageRecord]]]:
    """Group records by dataset and split, keyed like the encoder-training caches ("rsicd_train", "ucm_val_limit8")."""
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        dataset = r.id.split("/", 1)[0]
        groups.setdefault(trunk_cache_key(dataset, r.split, limit), []).append(r)
    return list(groups.items())


def dataset_image_features(encoder, records: Sequence[ImageRecord], limit: int | None = None,
                           views: Sequence[int] = (0,), batch_size: int = 256) -> dict[str, np.ndarray]:
    """Image id -> (len(views), image_dim) float32 features, for benchmark images.

    `limit` must be the per-dataset limit the records were loaded with: it names the trunk cache.
    """
    out: dict[str, np.ndarray] = {}
    for key, group in _split_keys(records, limit):
        digest = encoder.id.split("@")[-1]
        path = cache_dir() / "features" / "vqa" / f"{key}-{digest}-{FEATURES}-v{''.join(map(str, views))}.npy"
        ids = [r.id for r in group]
        feats = cached_array(path, path.with_suffix(".ids.json"), ids,
                             lambda: _compute(encoder, group, key, views, batch_size))
        out.update((image_id, feats[:, row]) for row, image_id in enumerate(ids))
    return out


def _compute(encoder, group: list[ImageRecord], key: str, views: Sequence[int], batch_size: int) -> np.ndarray:
    model = encoder.image_model
    trunk = cache_trunk_features(group, encoder.config, key, model)
    feats = []
    with torch.inference_mode():
        for view in views:
            chunks = []
            for i in range(0, len(trunk), batch_size):
                x = dihedral(torch.from_numpy(np.asarray(trunk[i : i + batch_size], np.float32)), view)
                chunks.append(image_features_from_map(model.tail.spatial(x), model.proj).numpy())
            feats.append(np.concatenate(chunks))
    return np.stack(feats).astype(np.float32)
