"""Resolution robustness: zero-shot accuracy and retrieval mR as the ground sample distance coarsens.

Every image of a split is degraded by each factor (`rsrag.data.degrade`: sensor blur, area averaging
down by the factor, bicubic back to the original size) and encoded; the class and caption texts are
encoded once. Factor 1 is the undegraded image, so its scores equal `ZeroShotEvaluator` and
`RetrievalEvaluator` on the same records. The scoring itself is theirs, given the embeddings.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from rsrag.data.degrade import DEFAULT_FACTORS, NYQUIST_MTF, blur_sigma, degrade
from rsrag.encoders.prompts import class_text_embeddings
from rsrag.eval.retrieval import RetrievalEvaluator
from rsrag.eval.zeroshot import ZeroShotEvaluator
from rsrag.imageio import load_image
from rsrag.metrics.classification import zeroshot_metrics

if TYPE_CHECKING:
    from rsrag.encoders import Encoder

log = logging.getLogger(__name__)


def encode_degraded(encoder: Encoder, paths: Sequence, factor: float, batch_size: int = 64,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, dim) embeddings of the images at `paths`, each degraded by `factor` (1: as they are).

    Images are decoded and degraded a few batches at a time (memory stays flat on large splits);
    the encoder's batches are the same as when it encodes the whole list, so factor 1 gives the
    plain evaluation's vectors exactly. `progress(n)` is called after each chunk."""
    chunk = batch_size * 4
    out = [np.zeros((0, encoder.dim), np.float32)]
    for start in range(0, len(paths), chunk):
        part = list(paths[start:start + chunk])
        images = part if factor == 1 else [degrade(load_image(p), factor) for p in part]
        out.append(encoder.encode_images(images, batch_size=batch_size))
        if progress is not None:
            progress(len(part))
    return np.concatenate(out)


class ResolutionEvaluator:
    """Zero-shot accuracy (records need labels) and, when every record has captions, retrieval mR
    of one split at each GSD factor."""

    def __init__(self, records: Sequence, name: str = "", split: str | None = None,
                 factors: Sequence[float] = DEFAULT_FACTORS, batch_size: int = 64) -> None:
        if not factors:
            raise ValueError("give at least one GSD factor")
        for factor in factors:
            blur_sigma(factor)  # validates: a number >= 1
        self.zeroshot = ZeroShotEvaluator(records, name=name, split=split, batch_size=batch_size)
        self.records = self.zeroshot.records
        self.retrieval = (RetrievalEvaluator(self.records, name=name, split=split, batch_size=batch_size)
                          if all(r.captions for r in self.records) else None)
        self.name = name
        self.split = self.zeroshot.split
        self.factors = list(factors)
        self.batch_size = batch_size

    def __call__(self, encoder: Encoder, encoder_id: str | None = None,
                 progress: Callable[[int], None] | None = None) -> dict:
        """`curve`: one row per factor {factor, blur_sigma, accuracy, per_class, most_predicted (the
        three classes most often predicted, % of images: where a coarse image goes), and with
        captions mR and Recall@K}; plus what was evaluated. `progress(n)` counts degraded images encoded."""
        class_emb = class_text_embeddings(encoder, self.zeroshot.class_texts, self.zeroshot.templates)
        text_emb = encoder.encode_texts(self.retrieval.captions) if self.retrieval is not None else None
        paths = [r.path for r in self.records]
        curve = []
        for factor in self.factors:
            log.info("GSD factor %s: encoding %d degraded images", factor, len(paths))
            image_emb = encode_degraded(encoder, paths, factor, self.batch_size, progress)
            zs = zeroshot_metrics(image_emb, class_emb, self.zeroshot.labels, self.zeroshot.class_names)
            predicted = np.bincount(zs["predictions"], minlength=len(self.zeroshot.class_names))
            row = {"factor": factor, "blur_sigma": round(blur_sigma(factor), 3), "accuracy": zs["accuracy"],
                   "per_class": {c: v["accuracy"] for c, v in zs["per_class"].items()},
                   "most_predicted": {self.zeroshot.class_names[i]: round(100.0 * float(predicted[i]) / len(paths), 2)
                                      for i in np.argsort(-predicted, kind="stable")[:3]}}
            if self.retrieval is not None:
                metrics = self.retrieval(image_emb=image_emb, text_emb=text_emb, encoder_id="-")
                row.update({k: v for k, v in metrics.items() if k == "mR" or k.startswith(("i2t_", "t2i_"))})
            curve.append(row)
        return {
            "curve": curve,
            "encoder": encoder_id or encoder.id,
            "dataset": self.name,
            "split": self.split,
            "n_images": len(self.records),
            "n_classes": len(self.zeroshot.class_names),
            "n_captions": len(self.retrieval.captions) if self.retrieval is not None else 0,
            "degradation": {"model": "gaussian psf (MTF at coarse Nyquist), area average down, bicubic up",
                            "nyquist_mtf": NYQUIST_MTF},
        }

    evaluate = __call__
