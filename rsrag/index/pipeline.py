"""Embedding many records for an index build.

Decoding runs through the encoders' one decode-ahead loop (`rsrag.encoders.decoding.decode_batches`,
in lenient mode: a record whose image cannot be read is reported in `failures` and left out, and the
build carries on), a few batches ahead on a thread pool; each batch then goes through the encoder's
public `encode_arrays`, the step `Encoder.encode_images` runs after the same decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from rsrag.encoders.base import Encoder
from rsrag.encoders.decoding import decode_batches


@dataclass
class EmbeddedBatch:
    records: list  # the records that produced a vector, in input order
    vectors: np.ndarray  # (len(records), dim) float32, L2-normalised
    failures: list[tuple[Any, str]] = field(default_factory=list)  # (record, error message)


def embed_records(encoder: Encoder, records: Sequence, batch_size: int = 64, workers: int = 2,
                  prefetch: int = 4) -> Iterator[EmbeddedBatch]:
    """Yield one `EmbeddedBatch` per `batch_size` records (anything with a `.path`), in order,
    decoding up to `prefetch` batches ahead on `workers` threads."""
    batches = decode_batches(encoder.preprocess, records, batch_size=batch_size, strict=False,
                             image_of=lambda record: record.path, workers=workers, prefetch=prefetch)
    for batch in batches:
        yield EmbeddedBatch([records[pos] for pos in batch.ok], encoder.encode_arrays(batch.arrays),
                            [(records[pos], message) for pos, message in batch.failures])
