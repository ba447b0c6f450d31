"""Classification metrics from embeddings: top-1 accuracy overall and per class, pure numpy."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def zeroshot_metrics(
    image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Top-1 accuracy (percent) and per-class accuracy; `labels[i]` indexes `class_names`.

    A tie between classes goes to the lower class index (numpy argmax), so it is not a free hit.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(image_emb) != len(labels):
        raise ValueError(f"{len(image_emb)} image embeddings but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("zero-shot evaluation needs at least one image")
    pred = np.argmax(np.asarray(image_emb, np.float32) @ np.asarray(class_emb, np.float32).T, axis=1)
    correct = pred == labels
    per_class = {}
    for idx, name in enumerate(class_names):
        mask = labels == idx
        n = int(mask.sum())
        per_class[name] = {"accuracy": 100.0 * float(correct[mask].mean()) if n else 0.0, "n": n}
    return {"accuracy": 100.0 * float(correct.mean()), "per_class": per_class, "predictions": pred}
