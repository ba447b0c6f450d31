"""Retrieval-augmented scene classification on RSICD (`rsrag eval qa --dataset rsicd --task classify`).

A library of the RSICD train images (built once, cached), then for each test image
`ask(..., image=..., task="classify", labels=<31 labels>)`: the nearest train images' labels voted by
similarity. Reports accuracy, overall and per class, and the p50 latency of `ask`.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from rsrag.config import cache_dir


def rsicd_library(
    *,
    encoder: str | None = None,
    cache: Path | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] = lambda m: None,
):
    """A library of the RSICD train images (built on first use, cached; resumes if interrupted).
    `threads`: ONNX Runtime threads of the encoder."""
    from rsrag.data import load_dataset
    from rsrag.encoders.registry import DEFAULT_ENCODER
    from rsrag.index import Library

    from rsrag.encoders import create_encoder

    encoder = encoder or DEFAULT_ENCODER
    folder = Path(cache or cache_dir() / "qa")
    name = f"rsicd-train-{re.sub(r'[^A-Za-z0-9._-]+', '-', encoder)}"
    instance = create_encoder(encoder, threads=threads) if threads else create_encoder(encoder)
    library = Library.create(folder, name, encoder=instance, encoder_name=encoder, exist_ok=True)
    records = load_dataset("rsicd", "train")
    if len(library) < len(records):
        t0 = time.perf_counter()
        report = library.add(records, workers=1)
        log(f"built RSICD train library: {report.to_dict()} in {time.perf_counter() - t0:.0f}s")
    return library


def evaluate_rsicd_classify(
    limit: int | None = None, *, k: int = 10, cache: Path | None = None, log: Callable[[str], None] = lambda m: None
) -> dict:
    """RSICD test label accuracy by retrieval-augmented classification over the train library."""
    from rsrag.data import class_names, load_dataset
    from rsrag.rag import ask

    library = rsicd_library(cache=cache, log=log)
    test = load_dataset("rsicd", "test", limit=limit)
    labels = class_names(load_dataset("rsicd", "train"))
    correct, latencies, per_class = 0, [], defaultdict(lambda: [0, 0])
    for rec in test:
        answer = ask(library, None, rec.path, task="classify", labels=labels, k=k)
        ok = answer.text == rec.label
        correct += ok
        per_class[rec.label][0] += ok
        per_class[rec.label][1] += 1
        latencies.append(answer.timings["total"])
    n = len(test) or 1
    return {
        "dataset": "rsicd",
        "task": "classify",
        "split": "test",
        "n_images": len(test),
        "k": k,
        "accuracy": round(correct / n, 4),
        "n_labels": len(labels),
        "per_class": {c: round(v[0] / v[1], 4) for c, v in sorted(per_class.items())},
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
    }
