"""The captioner users call: `load_captioner()` then `Captioner.caption(images)`.

A captioner is its decoder weights (`rsrag/weights/<name>.safetensors`, fp16) plus a JSON card
(architecture, vocabulary, the rs-lite weights it reads features from, training command and
results). The retrieval-augmented variant also ships `<name>.memory.safetensors`, the int8
embeddings of its training images (see `memory.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from rsrag.encoders import weights as store
from rsrag.encoders.base import ImageInput
from rsrag.models.captioner.decoding import beam_decode
from rsrag.models.captioner.features import ImageFeatures, ImageTower
from rsrag.models.captioner.memory import (
    CaptionMemory,
    LibraryRetriever,
    Retriever,
    consensus_caption,
)
from rsrag.models.captioner.model import CaptionerConfig, CaptionModel
from rsrag.models.captioner.vocab import Vocab

log = logging.getLogger(__name__)

#: the committed captioner `load_captioner()` returns (the better of the two variants on the test splits)
DEFAULT_CAPTIONER = "captioner-rag"
REPRODUCE_HINT = "train it with `rsrag train captioner` (see rsrag/weights/README.md for the exact command)"


def pad_ids(rows: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """Right-pad id lists with <pad> (0) into an int64 array."""
    out = np.zeros((len(rows), length), np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row[:length]
    return out


class Captioner:
    """Captions images with a trained `CaptionModel`; thread-compatible, not thread-safe."""

    def __init__(self, model: CaptionModel, vocab: Vocab, tower: ImageTower, retriever: Retriever | None = None,
                 name: str = "captioner"):
        if model.cfg.neighbours and retriever is None:
            raise ValueError(f"{name} is retrieval-augmented and needs a caption memory or an index")
        self.model = model.eval()
        self.vocab = vocab
        self.tower = tower
        self.retriever = retriever
        self.name = name

    @property
    def retrieval_augmented(self) -> bool:
        return bool(self.model.cfg.neighbours)

    def caption(self, images: Sequence[ImageInput], *, beam_size: int = 3) -> list[str]:
        """One caption per image (path, bytes, PIL image or array). A corrupt or unreadable image
        raises `rsrag.imageio.ImageLoadError` naming it."""
        if isinstance(images, (str, Path, bytes)):
            raise TypeError("caption expects a sequence of images; wrap a single image in a list")
        return self.caption_features(self.tower.from_images(list(images)), beam_size=beam_size)

    def neighbour_captions(self, embeddings: np.ndarray, exclude_ids: Sequence[str | None] | None = None
                           ) -> list[list[str]]:
        """The neighbour captions the decoder is given: one consensus caption per retrieved image."""
        found = self.retriever.retrieve(embeddings, self.model.cfg.neighbours, exclude_ids)
        return [[consensus_caption(caps) for caps in per_query] for per_query in found]

    @torch.inference_mode()
    def caption_features(self, feats: ImageFeatures, *, beam_size: int = 3,
                         exclude_ids: Sequence[str | None] | None = None) -> list[str]:
        """Captions from precomputed features; `exclude_ids` keeps a memory image from retrieving itself."""
        neighbour_ids = None
        if self.retrieval_augmented:
            cfg = self.model.cfg
            texts = self.neighbour_captions(feats.embedding.numpy(), exclude_ids)
            ids = [[self.vocab.encode(t, cfg.neighbour_len) for t in row] for row in texts]
            neighbour_ids = torch.from_numpy(np.stack([pad_ids(row, cfg.neighbour_len) for row in ids]))
        memory, pad = self.model.encode(feats.spatial, feats.embedding, neighbour_ids)
        return [self.vocab.decode(ids) for ids in beam_decode(self.model, memory, pad, beam_size)]

    def caption_many(self, feats: ImageFeatures, *, beam_size: int = 3, batch_size: int = 128,
                     exclude_ids: Sequence[str | None] | None = None) -> list[str]:
        """Captions for many precomputed features, in batches (evaluation over a whole split)."""
        out: list[str] = []
        for i in range(0, len(feats), batch_size):
            ex = exclude_ids[i : i + batch_size] if exclude_ids is not None else None
            out.extend(self.caption_features(feats.rows(slice(i, i + batch_size)), beam_size=beam_size, exclude_ids=ex))
        return out


# ---------------------------------------------------------------- weights


def memory_file(weights: Path) -> Path:
    """The caption memory shipped beside the weights of a retrieval-augmented captioner."""
    return weights.with_suffix(".memory.safetensors")


def save_captioner(model: CaptionModel, vocab: Vocab, name: str, card: dict, encoder_weights: str,
                   memory: CaptionMemory | None = None, encoder_id: str = "") -> Path:
    """fp16 weights + card (+ the int8 caption memory for the retrieval-augmented variant)."""
    card = {**card, "config": asdict(model.cfg), "encoder_weights": encoder_weights, "vocab": list(vocab.words)}
    path = store.save(name, store.fp16(model.state_dict()), card)
    if memory is not None:
        memory.save(memory_file(path), encoder_id)
    return path


def load_captioner(name: str | Path | None = None, *, library=None, index: str | None = None,
                   index_root: str | Path | None = None) -> Captioner:
    """A trained captioner: `name` is a file in rsrag/weights (default `DEFAULT_CAPTIONER`) or a path.

    The retrieval-augmented variant retrieves neighbour captions from the shipped training-image
    memory (captions read from the data root), or from an rsrag index when given: `library`, an
    opened `rsrag.index.Library` (models sit below the index, so callers open it), or, for the
    commands that still pass names, the index `index` under `index_root`.
    Raises FileNotFoundError, naming the file and how to reproduce it, when weights are missing.
    """
    name = name or DEFAULT_CAPTIONER
    path = store.weights_path(name)
    state, card = store.load(name, what="captioner", fix=REPRODUCE_HINT)
    cfg = CaptionerConfig(**card["config"])
    model = CaptionModel(cfg)
    model.load_state_dict(store.fp32(state))
    tower = ImageTower(card["encoder_weights"])
    retriever: Retriever | None = None
    if cfg.neighbours:
        if library is None and index is not None:  # to go once the commands pass `library`
            from rsrag.index import Library

            library = Library.open(index_root, index)
        if library is not None:
            retriever = LibraryRetriever(library, tower.encoder_id)
        else:
            mem = memory_file(path)
            if not mem.exists():
                raise FileNotFoundError(f"caption memory not found: {mem}; {REPRODUCE_HINT}, or pass an index")
            retriever = CaptionMemory.load(mem, tower.encoder_id)
    return Captioner(model, Vocab(tuple(card["vocab"])), tower, retriever, name=path.stem)
