"""What a chip shows: a bank of land-cover concepts, each a text-anchored vector, scored per chip.

A concept's vector is the prompt-ensembled text embedding of its name (`rsrag.encoders` texts with
the zero-shot templates); optionally it is pulled towards the mean embedding of labelled *train*-split
chips of that class (a prototype), which makes the labels steadier under jitter than text alone.
Chips get a probability distribution over the concepts (a softmax at `temperature`); the change score
compares those distributions (`rsrag.change.score`), and the region labels ("forest -> bare land")
are their argmax.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rsrag.encoders.prompts import class_text_embeddings, pretty_label

log = logging.getLogger(__name__)


# the default vocabulary for real scenes: land covers people name when they describe change
DEFAULT_CONCEPTS: tuple[str, ...] = (
    "forest", "bare land", "farmland", "meadow", "river", "lake", "pond", "wetland", "dense residential",
    "sparse residential", "buildings", "industrial area", "commercial area", "road", "parking lot", "desert",
    "mountain", "beach", "airport", "port", "bridge", "playground", "park", "construction site", "town",
)



def concept_text(label: str) -> str:
    """Dataset label -> readable concept text ("DenseResidential" -> "dense residential")."""
    return pretty_label(label)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class ConceptBank:
    """Named concepts and their unit vectors in the encoder's space."""

    names: list[str]  # what labels are reported as (dataset labels or concept texts)
    texts: list[str]  # the readable text of each
    vectors: np.ndarray  # (n, dim) unit vectors
    temperature: float = 0.1  # chosen on val pairs (sharper: same-class chips flip more)
    prototypes: bool = False  # pulled towards image prototypes (its scores spread differently: rsrag.change.score)

    @classmethod
    def from_texts(cls, encoder, names: Sequence[str], *, texts: Sequence[str] | None = None,
                   temperature: float = 0.1) -> "ConceptBank":
        """Text-only concepts: the prompt-ensembled embedding of each name's text (default: the
        dataset-label rewriting of `concept_text`; a readable vocabulary passes `texts=names`)."""
        names = list(names)
        if not names:
            raise ValueError("a concept bank needs at least one concept")
        texts = list(texts) if texts is not None else [concept_text(n) for n in names]
        return cls(names, texts, class_text_embeddings(encoder, texts), temperature)

    def with_prototypes(self, image_vectors: np.ndarray, labels: Sequence[str], weight: float = 1.0) -> "ConceptBank":
        """Each concept pulled towards the mean of the image vectors labelled with its name:
        normalise(text + weight * normalise(mean image)). Concepts without examples stay text-only."""
        labels = np.asarray(labels)
        vectors = self.vectors.copy()
        for i, name in enumerate(self.names):
            mine = image_vectors[labels == name]
            if len(mine):
                vectors[i] = _normalise(vectors[i] + weight * _normalise(mine.mean(axis=0)))
        return ConceptBank(self.names, self.texts, vectors, self.temperature, prototypes=True)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) unit image vectors -> (n, concepts) softmax over cosine / temperature."""
        logits = np.asarray(vectors, np.float32) @ self.vectors.T / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def label(self, probabilities: np.ndarray) -> list[str]:
        return [self.texts[i] for i in np.asarray(probabilities).argmax(axis=-1).reshape(-1)]


def dataset_prototypes(encoder, dataset: str, split: str = "train", cache: Path | None = None,
                       progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Embeddings and labels of a labelled dataset split (RSICD / UCM train), cached on disk per
    encoder, so the prototypes cost one pass over the images once."""
    from rsrag.config import cache_dir
    from rsrag.data import load_dataset

    records = [r for r in load_dataset(dataset, split=split) if r.label]
    key = hashlib.sha1(f"{encoder.id}|{dataset}|{split}|{len(records)}".encode()).hexdigest()[:12]
    path = (cache or cache_dir()) / f"change-prototypes-{dataset}-{split}-{key}.npz"
    if path.is_file():
        data = np.load(path)
        return data["vectors"], [str(x) for x in data["labels"]]
    log.info("encoding %d %s %s images for concept prototypes (once; cached at %s)", len(records), dataset, split, path)
    vectors = encoder.encode_images([r.path for r in records])
    labels = [r.label for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=vectors, labels=np.array(labels))
    tmp.replace(path)
    return vectors, labels
