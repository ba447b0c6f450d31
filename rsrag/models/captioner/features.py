"""rs-lite's image side as the captioner sees it: spatial map + shared-space embedding.

Training reads the frozen-trunk activations cached by `rsrag.encoders.features.cache_trunk_features`
(shared with encoder and VQA training), runs the tuned tail and keeps its 7x7 map before pooling. At
inference the same path runs on decoded pixels. Only the image parts of the rs-lite weights are
loaded, so the text tower is never needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rsrag.data import ImageRecord
from rsrag.encoders.base import ImageInput
from rsrag.encoders.features import cache_trunk_features
from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS, RSLiteImageModel, load_image_parts, read_weights

ENCODER_WEIGHTS = DEFAULT_WEIGHTS  # a new captioner trains on the default rs-lite; a saved one names its own


@dataclass
class ImageFeatures:
    spatial: torch.Tensor  # (B, 1280, 7, 7) tuned tail map
    embedding: torch.Tensor  # (B, 512) L2-normalised shared-space embedding (retrieval key)

    def __len__(self) -> int:
        return len(self.embedding)

    def rows(self, index) -> ImageFeatures:
        """A subset (slice or index array), maps as float32."""
        return ImageFeatures(self.spatial[index].float(), self.embedding[index])


class ImageTower:
    """Frozen rs-lite image model (trunk + tuned tail + projection) in eval mode."""

    def __init__(self, weights: str = ENCODER_WEIGHTS):
        state, self.config, self.digest = read_weights(weights)
        self.model = RSLiteImageModel(self.config).eval().requires_grad_(False)
        load_image_parts(self.model, state)
        self.encoder_id = f"rs-lite:{weights}@{self.digest}"  # what an index built with this encoder records
        self.preprocess = self.config.preprocess

    @torch.inference_mode()
    def from_trunk(self, acts: torch.Tensor) -> ImageFeatures:
        """Cached trunk activations (B, C, H, W) -> tail map and embedding."""
        spatial = self.model.tail.spatial(acts.float())
        embedding = F.normalize(self.model.proj(spatial.mean(dim=(2, 3))), dim=-1)
        return ImageFeatures(spatial, embedding)

    @torch.inference_mode()
    def from_images(self, images: Sequence[ImageInput]) -> ImageFeatures:
        """Decode (raising `ImageLoadError` on a bad image), preprocess, run trunk + tail."""
        arrays = self.preprocess.stack(images)
        return self.from_trunk(self.model.trunk(torch.from_numpy(arrays)))

    def from_cache(self, acts: np.ndarray, batch_size: int = 256) -> ImageFeatures:
        """Features of many cached trunk activations, in batches; maps kept in fp16 to halve memory."""
        parts = [self.from_trunk(torch.from_numpy(np.asarray(acts[i : i + batch_size], np.float32)))
                 for i in range(0, len(acts), batch_size)]
        return ImageFeatures(torch.cat([p.spatial.half() for p in parts]), torch.cat([p.embedding for p in parts]))


def cached_trunk(tower: ImageTower, records: list[ImageRecord], key: str) -> np.ndarray:
    """Trunk activations of `records` from the feature cache shared with encoder and VQA training."""
    return np.asarray(cache_trunk_features(records, tower.config, key, tower.model))
