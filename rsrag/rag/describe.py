"""What a library knows about an image: its nearest records, their labels voted by similarity and
their captions ranked against the image. The evidence of an image question when the library has no
knowledge attached; built only on the library's public search API.

Captions are ranked by 0.5 * (cosine of their source image to the query) + 0.5 * (cosine of the
caption's text embedding to the query image). The same captions come back query after query, so
their embeddings are remembered: one bounded LRU (`TextVectorCache`) per library object, kept here
in a weak map (it goes away with the library) rather than on the library itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from rsrag.encoders.cache import TextVectorCache
from rsrag.rag.perlibrary import PerLibrary

if TYPE_CHECKING:  # importing rsrag.rag stays light: the index is imported by whoever opens a library
    from rsrag.encoders.base import ImageInput
    from rsrag.index import Library
    from rsrag.geo.filters import Place
    from rsrag.index.filters import Filters

CAPTION_CACHE = 8192  # caption embeddings kept per library (16 MB at 512 dims)

_CAPTION_VECTORS: PerLibrary[TextVectorCache] = PerLibrary(lambda library: TextVectorCache(CAPTION_CACHE))


def caption_vectors(library: Library) -> TextVectorCache:
    """The library's caption-embedding cache (one per library object, shared by every thread)."""
    return _CAPTION_VECTORS.get(library)


def image_to_text(library: Library, image: ImageInput, k: int = 5, *, n_captions: int = 5, filters: Filters = None,
                  where: str | None = None, bbox: Sequence[float] | None = None, place: Place | None = None) -> dict:
    """What `library` knows about `image` (module doc): {"labels": [{label, score}] (scores sum to 1),
    "captions": [{text, score, source}] best first (at most `n_captions`), "hits": the k nearest
    records as dicts}. Was `Library.image_to_text`."""
    encoder = library.encoder
    vector = encoder.encode_images([image])[0]
    hits = library.search_vector(vector, k, filters=filters, where=where, bbox=bbox, place=place)
    votes: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}  # caption -> (similarity of its best source image, that image's id)
    for hit in hits:
        if hit.label is not None:
            votes[hit.label] = votes.get(hit.label, 0.0) + max(hit.score, 0.0)
        for cap in hit.captions:
            if cap not in best or best[cap][0] < hit.score:
                best[cap] = (hit.score, hit.id)
    total = sum(votes.values()) or 1.0
    labels = [{"label": lab, "score": v / total} for lab, v in sorted(votes.items(), key=lambda kv: -kv[1])]
    texts = list(best)
    cross = caption_vectors(library).vectors(texts, encoder.encode_texts) @ vector if texts else np.zeros(0)
    captions = sorted(({"text": t, "score": float(0.5 * best[t][0] + 0.5 * c), "source": best[t][1]}
                       for t, c in zip(texts, cross)), key=lambda d: -d["score"])
    return {"labels": labels, "captions": captions[:n_captions], "hits": [h.to_dict() for h in hits]}
