"""The decode-ahead loop every image batch job runs: `Encoder.encode_images(_lenient)`, index builds
(`rsrag.index.pipeline.embed_records`) and the training feature caches.

Images are decoded (`rsrag.imageio.load_image`) and preprocessed (`Preprocess.to_array`) on a thread
pool, up to `prefetch` batches ahead, while the caller runs its model on the current batch. Decoding
and the models release the GIL, so a job pays for the slower of the two, not both; the bound keeps
memory flat on huge sources.

One failure rule: an image that cannot be decoded (`ImageLoadError`: missing, truncated, not an
image, too large) raises in strict mode and is logged, reported in the batch's `failures` and left
out in lenient mode, so a long batch job carries on. Any other exception is a bug and propagates.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from rsrag.imageio import ImageLoadError, load_image

if TYPE_CHECKING:
    from rsrag.encoders.base import Preprocess

log = logging.getLogger(__name__)


@dataclass
class DecodedBatch:
    """One batch of preprocessed images; positions index the job's whole input sequence."""

    ok: list[int]  # positions of the items that decoded, in order
    arrays: np.ndarray  # (len(ok), 3, size, size) float32
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, error message)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Yield lists of up to `size` items."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode(preprocess: Preprocess, chunk: list[tuple[int, Any]], image_of: Callable[[Any], Any],
            strict: bool) -> DecodedBatch:
    ok, arrays, failures = [], [], []
    for pos, item in chunk:
        try:
            arrays.append(preprocess.to_array(load_image(image_of(item))))
        except ImageLoadError as exc:
            if strict:
                raise
            log.warning("skipping image: %s", exc)
            failures.append((pos, str(exc) or type(exc).__name__))
            continue
        ok.append(pos)
    size = preprocess.size
    stacked = np.stack(arrays) if arrays else np.zeros((0, 3, size, size), np.float32)
    return DecodedBatch(ok, stacked, failures)


def decode_batches(preprocess: Preprocess, items: Iterable, *, batch_size: int = 64, strict: bool = False,
                   image_of: Callable[[Any], Any] | None = None, workers: int = 1,
                   prefetch: int = 1) -> Iterator[DecodedBatch]:
    """Yield one `DecodedBatch` per `batch_size` items, in order, decoding up to `prefetch` batches
    ahead on `workers` threads. `image_of(item)` gives the image input of an item (a path, bytes,
    PIL image or array; default: the item itself). Under `strict` the first undecodable image raises
    its `ImageLoadError` (decoding still in flight is cancelled)."""
    image_of = image_of or (lambda item: item)
    chunks = batched(enumerate(items), batch_size)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rsrag-decode") as pool:
        pending: deque[Future] = deque()

        def submit_next() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                pending.append(pool.submit(_decode, preprocess, chunk, image_of, strict))

        try:
            for _ in range(max(1, prefetch)):
                submit_next()
            while pending:
                batch = pending.popleft().result()
                submit_next()
                yield batch
        finally:  # an error or a consumer that stops early: do not decode batches nobody will read
            for future in pending:
                future.cancel()
