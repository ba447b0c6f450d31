"""Embedding many records: images are decoded and preprocessed on a thread pool, a few batches
ahead, while the encoder runs on the current batch, so neither waits for the other.

Decoding (`decoded_batches`, also used by training to cache features) uses
`rsrag.imageio.load_image` and the encoder's own `preprocess.to_array`; the batch then
goes to the encoder's backend hook `_encode_arrays` (the step `Encoder.encode_images` runs after the
same decoding), and is L2-normalised like every encoder output. A record whose image cannot be read
(missing, truncated, not an image) is reported in `failures` and left out; the batch carries on.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from rsrag.encoders.base import Encoder, Preprocess, batched, l2_normalize
from rsrag.imageio import load_image

log = logging.getLogger(__name__)


@dataclass
class EmbeddedBatch:
    records: list  # the records that produced a vector, in input order
    vectors: np.ndarray  # (len(records), dim) float32, L2-normalised
    failures: list[tuple[Any, str]] = field(default_factory=list)  # (record, error message)


def _prepare(preprocess: Preprocess, records: list) -> tuple[list, list[np.ndarray], list[tuple[Any, str]]]:
    ok, arrays, failures = [], [], []
    for rec in records:
        try:
            arrays.append(preprocess.to_array(load_image(rec.path)))
            ok.append(rec)
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop a long build
            log.warning("skipping %s: %s", rec.path, exc)
            failures.append((rec, str(exc) or type(exc).__name__))
    return ok, arrays, failures


def decoded_batches(preprocess: Preprocess, records: Sequence, batch_size: int = 64, workers: int = 2,
                    prefetch: int = 4) -> Iterator[tuple[list, list[np.ndarray], list[tuple[Any, str]]]]:
    """Yield `(ok_records, arrays, failures)` per `batch_size` records, in order, decoding at most
    `prefetch` batches ahead on a thread pool (bounded, so memory stays flat on huge sources)."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rsrag-decode") as pool:
        chunks = iter(batched(records, batch_size))
        pending: deque[Future] = deque()

        def submit_next() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                pending.append(pool.submit(_prepare, preprocess, chunk))

        for _ in range(max(1, prefetch)):
            submit_next()
        while pending:
            batch = pending.popleft().result()
            submit_next()
            yield batch


def embed_records(encoder: Encoder, records: Sequence, batch_size: int = 64, workers: int = 2,
                  prefetch: int = 4) -> Iterator[EmbeddedBatch]:
    """Yield one `EmbeddedBatch` per `batch_size` records, in order, decoding `prefetch` batches ahead."""
    for ok, arrays, failures in decoded_batches(encoder.preprocess, records, batch_size, workers, prefetch):
        if arrays:
            vectors = l2_normalize(encoder._encode_arrays(np.stack(arrays)))
        else:
            vectors = np.zeros((0, encoder.dim), np.float32)
        yield EmbeddedBatch(ok, vectors, failures)
