"""Zero-shot scene classification: class names become text prompts, images take the nearest class.

Each class is described by several remote-sensing prompt templates; the normalised template
embeddings are averaged and renormalised (the CLIP prompt-ensembling recipe), which is steadier
than any single prompt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rsrag.eval.retrieval import common_split
from rsrag.encoders.prompts import TEMPLATES, class_text_embeddings, pretty_label
from rsrag.metrics.classification import zeroshot_metrics

if TYPE_CHECKING:
    from rsrag.encoders import Encoder

log = logging.getLogger(__name__)

class ZeroShotEvaluator:
    """Zero-shot classification of labelled records (dataset scene labels or class-folder names).

    Classes are the sorted distinct labels of the records. Pass `image_emb` (record order) and/or
    `class_emb` (class order) to reuse cached features instead of encoding.
    """

    def __init__(
        self,
        records: Sequence,
        name: str = "",
        split: str | None = None,
        templates: Sequence[str] = TEMPLATES,
        class_texts: dict[str, str] | None = None,
        batch_size: int = 64,
    ) -> None:
        self.records = list(records)
        if not self.records:
            raise ValueError("ZeroShotEvaluator needs at least one record")
        unlabelled = [r.id for r in self.records if not r.label]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} record(s) have no label, e.g. {unlabelled[0]!r}")
        self.name = name
        self.split = split if split is not None else common_split(self.records)
        self.templates = list(templates)
        self.batch_size = batch_size
        self.class_names: list[str] = sorted({r.label for r in self.records})
        overrides = class_texts or {}
        self.class_texts: list[str] = [overrides.get(c, pretty_label(c)) for c in self.class_names]
        index = {c: i for i, c in enumerate(self.class_names)}
        self.labels = np.array([index[r.label] for r in self.records], dtype=np.int64)

    def __call__(
        self,
        encoder: Encoder | None = None,
        *,
        image_emb: np.ndarray | None = None,
        class_emb: np.ndarray | None = None,
        encoder_id: str | None = None,
    ) -> dict:
        """`accuracy`, `per_class` {class: {accuracy, n, text}}, counts, `encoder`, `dataset`, `split`."""
        if encoder is None and (image_emb is None or class_emb is None):
            raise ValueError("pass an encoder, or both image_emb and class_emb")
        if image_emb is None:
            log.info("encoding %d images", len(self.records))
            image_emb = encoder.encode_images([r.path for r in self.records], batch_size=self.batch_size)
        if class_emb is None:
            class_emb = class_text_embeddings(encoder, self.class_texts, self.templates)
        result = zeroshot_metrics(image_emb, class_emb, self.labels, self.class_names)
        for name, text in zip(self.class_names, self.class_texts):
            result["per_class"][name]["text"] = text
        return {
            "accuracy": result["accuracy"],
            "per_class": result["per_class"],
            "n_images": len(self.records),
            "n_classes": len(self.class_names),
            "encoder": encoder_id or (encoder.id if encoder is not None else None),
            "dataset": self.name,
            "split": self.split,
            "templates": self.templates,
        }

    evaluate = __call__
