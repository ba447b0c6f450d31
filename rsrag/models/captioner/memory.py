"""Where the retrieval-augmented captioner finds neighbour captions.

Two sources, one interface (`retrieve`: query embeddings -> per query, per neighbour, its captions):

* `CaptionMemory`: the training images themselves (RSICD + UCM train), exact cosine kNN in the
  shared space. The embeddings ship beside the weights as int8 (5 MB for 10k images, enough to rank
  neighbours), keyed by record id; the captions are read from the data root at load time, since
  the project ships no annotation files.
* `LibraryRetriever`: any rsrag index built with the same rs-lite weights (`rsrag index build`),
  searched with `Library.search_vector`; its records' captions are the neighbour captions.

Each neighbour contributes one caption. Training draws one at random (augmentation); inference uses
the neighbour's consensus caption, the one sharing most words with its other captions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rsrag.models.captioner.vocab import tokenize


class Retriever(Protocol):
    def retrieve(self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
                 ) -> list[list[list[str]]]:
        """(B, dim) L2-normalised queries -> for each query, the captions of its k nearest images."""


def consensus_caption(captions: Sequence[str]) -> str:
    """The caption whose word set overlaps most (Dice) with the image's other captions."""
    if len(captions) <= 2:
        return captions[0] if captions else ""
    sets = [set(tokenize(c)) for c in captions]

    def support(i: int) -> float:
        return sum(2 * len(sets[i] & s) / max(1, len(sets[i]) + len(s)) for j, s in enumerate(sets) if j != i)

    return captions[max(range(len(captions)), key=support)]


def top_k(queries: np.ndarray, keys: np.ndarray, k: int, exclude: np.ndarray | None = None,
          chunk: int = 1024) -> np.ndarray:
    """(B, k) indices of the most cosine-similar keys, best first; `exclude[i]` (an index or -1) is
    never returned for query i (a training image must not retrieve itself)."""
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ keys.T
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            ex = exclude[start : start + chunk]
            sims[rows[ex >= 0], ex[ex >= 0]] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, 1)
    return out


@dataclass
class CaptionMemory:
    """Images with captions, searchable by their shared-space embedding."""

    ids: list[str]
    embeddings: np.ndarray  # (n, dim) float32, L2-normalised
    captions: list[list[str]]

    def __post_init__(self) -> None:
        self._row = {rid: i for i, rid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def retrieve(self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
                 ) -> list[list[list[str]]]:
        exclude = None
        if exclude_ids is not None:
            exclude = np.array([self._row.get(rid, -1) if rid else -1 for rid in exclude_ids])
        rows = top_k(np.asarray(queries, np.float32), self.embeddings, min(k, len(self)), exclude)
        return [[self.captions[j] for j in row] for row in rows]

    def save(self, path: Path, encoder_id: str) -> None:
        """int8 embeddings + ids; the encoder id guards against a memory from other rs-lite weights."""
        from safetensors.numpy import save_file

        from rsrag.fileio import atomic_write

        scale = np.abs(self.embeddings).max(axis=1, keepdims=True).clip(min=1e-12)
        q = np.round(self.embeddings / scale * 127).astype(np.int8)
        meta = {"ids": json.dumps(self.ids), "encoder_id": encoder_id}
        atomic_write(Path(path), lambda tmp: save_file({"embeddings": q}, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path, encoder_id: str) -> CaptionMemory:
        """Read the shipped embeddings and look the captions up in the data root."""
        from safetensors import safe_open

        from rsrag.config import data_root
        from rsrag.data import load_dataset

        with safe_open(str(path), "np") as f:
            meta = f.metadata()
            q = f.get_tensor("embeddings").astype(np.float32)
        if meta.get("encoder_id") != encoder_id:
            raise ValueError(f"caption memory {path} was built with {meta.get('encoder_id')}, but the image "
                             f"tower is {encoder_id}; retrain the captioner (`rsrag train captioner`)")
        ids = json.loads(meta["ids"])
        captions: dict[str, list[str]] = {}
        for name in sorted({rid.split("/", 1)[0] for rid in ids}):
            try:
                records = load_dataset(name)
            except (FileNotFoundError, OSError) as exc:
                raise FileNotFoundError(
                    f"the retrieval-augmented captioner reads its neighbours' captions from the {name!r} "
                    f"dataset under the data root {data_root()} (set RSRAG_DATA), or pass an index; "
                    f"without either use the plain captioner. ({exc})") from exc
            captions.update((r.id, r.captions) for r in records)
        missing = [rid for rid in ids if rid not in captions]
        if missing:
            raise ValueError(f"{len(missing)} caption-memory records are not in the data root, e.g. {missing[0]}")
        emb = q / np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
        return cls(ids, emb, [captions[rid] for rid in ids])


class LibraryRetriever:
    """Neighbour captions from an rsrag index (`rsrag.index.Library`) built with the same rs-lite."""

    def __init__(self, library, encoder_id: str):
        if not str(library.encoder_id).startswith(encoder_id):
            raise ValueError(f"index {library.name!r} was built with {library.encoder_id}; the captioner needs "
                             f"vectors from {encoder_id} (build it with the default rs-lite encoder)")
        self.library = library

    def retrieve(self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
                 ) -> list[list[list[str]]]:
        out = []
        for i, vector in enumerate(np.asarray(queries, np.float32)):
            skip = exclude_ids[i] if exclude_ids is not None else None
            hits = [h for h in self.library.search_vector(vector, k + 1) if h.id != skip and h.captions][:k]
            if not hits:
                raise ValueError(f"index {self.library.name!r} has no captioned records to retrieve from")
            caps = [list(h.captions) for h in hits]
            out.append(caps + [caps[-1]] * (k - len(caps)))  # a tiny index: repeat the last neighbour
        return out
