"""Captioning evaluation: caption a split with one or more captioners and score them with the COCO
caption toolkit (`rsrag.metrics.caption`: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rsrag.metrics.caption import score_caption_sets
from rsrag.models.captioner.training import load_split


def evaluate_captioners(captioners: Sequence, dataset: str, split: str = "test", *,
                        beam_sizes: Sequence[int] = (3,), limit: int | None = None, examples: int = 5) -> list[dict]:
    """Caption every image of a split (from cached trunk features) with each captioner and beam size,
    and score all of them against the references in one toolkit run. One result dict per pair."""
    data = load_split(captioners[0].tower, (dataset,), split, limit)
    runs = []
    for captioner in captioners:
        feats = captioner.tower.from_cache(data.trunk)
        for beam in beam_sizes:
            start = time.perf_counter()
            hyps = captioner.caption_many(feats, beam_size=beam)
            runs.append((captioner.name, beam, hyps, time.perf_counter() - start))
    scores = score_caption_sets(data.captions, {f"{name}@{beam}": hyps for name, beam, hyps, _ in runs})
    step = max(1, len(data.ids) // max(1, examples))
    shown = list(range(0, len(data.ids), step))[:examples]
    return [{"captioner": name, "dataset": dataset, "split": split, "beam_size": beam, "n_images": len(hyps),
             **scores[f"{name}@{beam}"], "caption_seconds": round(seconds, 1),
             "examples": [{"id": data.ids[i], "caption": hyps[i], "references": data.captions[i]} for i in shown]}
            for name, beam, hyps, seconds in runs]


def evaluate_captioner(captioner, dataset: str, split: str = "test", *, beam_size: int = 3,
                       limit: int | None = None, examples: int = 5) -> dict:
    """`evaluate_captioners` for one captioner and beam size."""
    return evaluate_captioners([captioner], dataset, split, beam_sizes=(beam_size,), limit=limit,
                               examples=examples)[0]
