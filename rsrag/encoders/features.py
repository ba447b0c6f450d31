"""Cached rs-lite features of whole dataset splits, shared by every model trained on them.

rs-lite's frozen trunk (`LiteTrunk`) and frozen text tower give the same output whatever is trained
on top, so encoder training (`rsrag.training.encoder`), the captioner (`rsrag.models.captioner`) and
VQA (`rsrag.models.vqa`) read one cache per dataset split (`trunk_cache_key`) under
`cache_dir()/features/`, computed on first use. A cache entry is an `.npy` array plus the ids (or
texts) of its rows; it is used only when those match the request exactly.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rsrag.config import cache_dir
from rsrag.encoders.decoding import decode_batches
from rsrag.encoders.rs_lite import RSLiteConfig, RSLiteImageModel, export_image_onnx, load_text_tower, onnx_session
from rsrag.fileio import atomic_write
from rsrag.imageio import ImageLoadError


def trunk_cache_key(dataset: str, split: str, limit: int | None = None) -> str:
    """Name of one dataset split's feature caches ("rsicd_train", "ucm_val_limit8"): every model
    trained on these features asks for the same key, so one cache serves all."""
    return f"{dataset}_{split}" + (f"_limit{limit}" if limit else "")


def cached_array(path: Path, rows_path: Path, rows: list, compute: Callable[[], np.ndarray],
                 mmap: bool = False) -> np.ndarray:
    """The array in `path` (.npy) when it was computed for exactly these `rows` (ids or texts, kept
    as JSON in `rows_path`), else `compute()`, written there first. Both files are written atomically."""
    if path.exists() and rows_path.exists() and json.loads(rows_path.read_text()) == rows:
        return np.load(path, mmap_mode="r" if mmap else None)
    array = compute()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    atomic_write(rows_path, lambda tmp: tmp.write_text(json.dumps(rows)))
    return array


def _feature_dir(model: RSLiteConfig) -> Path:
    return cache_dir() / "features" / f"{model.tower}-tail{model.tail_blocks}"


def cache_trunk_features(records: Sequence, model: RSLiteConfig, key: str, image_model: RSLiteImageModel,
                         batch_size: int = 64, image_of: Callable | None = None) -> np.ndarray:
    """Frozen-trunk activations (n, C, H, W) fp16 for `records` (anything with `.id` and `.path`),
    computed once and reused (memory-mapped). `image_of(record)` gives the image to run instead of
    the file at `record.path` (a degraded copy for resolution augmentation); `key` must then name
    that transform, since the cache is matched by key and ids only.

    The trunk runs through ONNX Runtime (several times faster than PyTorch on CPU) while a thread
    decodes the next images. Training data must be complete (features are aligned with captions by
    position), so decoding is strict: an unreadable image raises `ImageLoadError` naming it.
    """
    out_dir = _feature_dir(model)

    def compute() -> np.ndarray:
        from tqdm import tqdm

        session = onnx_session(out_dir / "trunk.onnx", partial(export_image_onnx, image_model.trunk, model.image_size),
                               cpu_only=True)
        batches = decode_batches(model.preprocess, records, batch_size=batch_size, strict=True,
                                 image_of=image_of or (lambda record: record.path))
        chunks = []
        try:
            for batch in tqdm(batches, total=-(-len(records) // batch_size), desc=f"trunk features {key}",
                              unit="batch"):
                chunks.append(session.run(None, {"pixels": batch.arrays})[0].astype(np.float16))
        except ImageLoadError as exc:
            raise ImageLoadError(f"cannot cache features for {key}: {exc}") from exc
        return np.concatenate(chunks)

    ids = [r.id for r in records]
    return cached_array(out_dir / f"{key}.npy", out_dir / f"{key}.ids.json", ids, compute, mmap=True)


def cache_text_features(texts: list[str], key: str) -> np.ndarray:
    """Frozen MiniLM sentence embeddings (n, 384) fp32 for `texts`, cached by key."""
    # the frozen text tower's output does not depend on the image side
    out_dir = cache_dir() / "features" / "minilm-l6"

    def compute() -> np.ndarray:
        tower = load_text_tower("cpu")
        return tower.encode(texts, batch_size=256, show_progress_bar=True, convert_to_numpy=True).astype(np.float32)

    return cached_array(out_dir / f"{key}.text.npy", out_dir / f"{key}.text.json", list(texts), compute)
