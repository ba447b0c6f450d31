"""Build the pair memory of rs-lite-mem (`rsrag.encoders.memory`) from training image-caption pairs."""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from rsrag.data.benchmarks import load_dataset
from rsrag.encoders import create_encoder
from rsrag.encoders.memory import PairMemory
from rsrag.encoders.rs_lite import MEMORY
from rsrag.encoders.weights import weights_path

log = logging.getLogger(__name__)


def build_memory(encoder: str = "rs-lite", datasets: Sequence[str] = ("rsicd", "ucm"), *, name: str = MEMORY,
                 k: int = 10, beta: float = 0.5, temperature: float = 0.05, limit: int | None = None,
                 command: str = "") -> dict:
    """Encode every train image of `datasets` and its captions with `encoder` (which must have no
    memory of its own), and write rsrag/weights/NAME.safetensors + NAME.json (or NAME itself when it
    is a .safetensors path). `limit` takes the first N images per dataset (quick runs)."""
    enc = create_encoder(encoder)
    if getattr(enc, "memory", None) is not None:
        raise ValueError(f"build the memory with the plain encoder, not {enc.id}")
    records = []
    for ds in datasets:
        recs = [r for r in load_dataset(ds, "train") if r.captions]
        records += recs[:limit] if limit else recs
    started = time.perf_counter()
    log.info("encoding %d train images and their captions with %s", len(records), enc.id)
    images = enc.encode_images([r.path for r in records], batch_size=64)
    captions = [c for r in records for c in r.captions]
    owners = np.repeat(np.arange(len(records)), [len(r.captions) for r in records])
    texts = enc.encode_texts(captions)
    memory = PairMemory.from_pairs(images, texts, owners, enc.id, k=k, beta=beta, temperature=temperature)
    card = {"datasets": list(datasets), "split": "train", "images": len(records), "captions": len(captions),
            "limit": limit, "seconds": round(time.perf_counter() - started, 1), "command": command}
    path = weights_path(name)
    memory.save(path, card)
    return {"path": str(path), **card}
