"""Image-text retrieval evaluation (RSICD / UCM-captions protocol): encode a captioned split and score it.

The protocol and the metric (Recall@K both ways, mR, tie handling) are in `rsrag.metrics.retrieval`;
this module adds encoding and the bookkeeping of what was evaluated.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rsrag.metrics.retrieval import DEFAULT_KS, evaluate_embeddings

if TYPE_CHECKING:
    from rsrag.encoders import Encoder

log = logging.getLogger(__name__)


def common_split(records: Sequence) -> str | None:
    """The records' split when they share one, "mixed" when not, None when they carry none."""
    splits = {getattr(r, "split", None) for r in records}
    return splits.pop() if len(splits) == 1 else ("mixed" if splits else None)


class RetrievalEvaluator:
    """Image<->caption retrieval over a list of captioned records (`rsrag.data.ImageRecord`).

    Call it with an encoder to encode images and captions, or pass precomputed embeddings
    (`image_emb` in record order, `text_emb` in `self.captions` order) to skip encoding.
    """

    def __init__(
        self,
        records: Sequence,
        name: str = "",
        split: str | None = None,
        ks: Sequence[int] = DEFAULT_KS,
        batch_size: int = 64,
    ) -> None:
        self.records = list(records)
        if not self.records:
            raise ValueError("RetrievalEvaluator needs at least one record")
        missing = [r.id for r in self.records if not r.captions]
        if missing:
            raise ValueError(f"{len(missing)} record(s) have no captions, e.g. {missing[0]!r}")
        self.name = name
        self.split = split if split is not None else common_split(self.records)
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.captions: list[str] = [c for r in self.records for c in r.captions]
        self.caption_to_image = np.repeat(np.arange(len(self.records)), [len(r.captions) for r in self.records])

    def __call__(
        self,
        encoder: Encoder | None = None,
        *,
        image_emb: np.ndarray | None = None,
        text_emb: np.ndarray | None = None,
        encoder_id: str | None = None,
        ties: str = "index",
    ) -> dict:
        """Metrics plus what was evaluated: `encoder`, `dataset`, `split`, `n_images`, `n_captions`."""
        if encoder is None and (image_emb is None or text_emb is None):
            raise ValueError("pass an encoder, or both image_emb and text_emb")
        if image_emb is None:
            log.info("encoding %d images", len(self.records))
            image_emb = encoder.encode_images([r.path for r in self.records], batch_size=self.batch_size)
        if text_emb is None:
            log.info("encoding %d captions", len(self.captions))
            text_emb = encoder.encode_texts(self.captions)
        if len(image_emb) != len(self.records) or len(text_emb) != len(self.captions):
            raise ValueError(
                f"expected {len(self.records)} image and {len(self.captions)} text embeddings, "
                f"got {len(image_emb)} and {len(text_emb)}"
            )
        metrics = evaluate_embeddings(image_emb, text_emb, self.caption_to_image, ks=self.ks, ties=ties)
        return {
            **metrics,
            "encoder": encoder_id or (encoder.id if encoder is not None else None),
            "dataset": self.name,
            "split": self.split,
            "n_images": len(self.records),
            "n_captions": len(self.captions),
        }

    evaluate = __call__
