"""The rsrag VQA set: questions generated from RSICD and UCM-captions annotations.

Per image (see `rsrag.models.vqa.questions` for the parsers and templates):

* one `scene` question (its template drawn per image);
* `presence`: for every vocabulary object, "yes" questions on images whose captions name it and
  the same number of "no" questions on images that do not name it and whose scene class rarely
  names it (fewer than `NEGATIVE_CLASS_RATE` of the class's *train* images), so each object's
  yes/no answers are balanced in every split and "no" means "absent", not "not mentioned";
* `count` for every consistently stated number, and as many "0" answers per object, asked about
  images drawn from that object's presence negatives;
* `comparison`, both directions of every supported "more X than Y" pair.

Splits follow the image splits (VQA train = RSICD train + UCM train, etc.). Generation is
deterministic: every random draw (templates, negative samples) comes from a `random.Random`
seeded with a string built from `seed` and the image id / object, independent of process,
platform and hash seed. Counts per split and type for seed 0 are in rsrag/weights/README.md.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

from rsrag.data import ImageRecord, load_dataset
from rsrag.models.vqa.questions import (
    OBJECTS,
    SCENE_TEMPLATES,
    comparison_question,
    count_question,
    mentioned_objects,
    parse_comparisons,
    parse_counts,
    presence_question,
    scene_answer,
)

DATASETS = ("rsicd", "ucm")
NEGATIVE_CLASS_RATE = 0.05


@dataclass(frozen=True)
class VQAItem:
    """One question about one image, with its answer and type."""

    image_id: str
    question: str
    answer: str
    question_type: str

    def to_dict(self) -> dict:
        return asdict(self)


def _rng(seed: int, *key: str) -> random.Random:
    return random.Random(":".join([str(seed), *key]))


def class_mention_rates(records: Iterable[ImageRecord]) -> dict[str, dict[str, float]]:
    """Scene label -> object -> fraction of that class's images whose captions name the object."""
    seen: dict[str, Counter] = defaultdict(Counter)
    sizes: Counter = Counter()
    for r in records:
        sizes[r.label] += 1
        seen[r.label].update(mentioned_objects(r.captions))
    return {label: {o: seen[label][o] / n for o in OBJECTS} for label, n in sizes.items()}


def generate_items(records: Sequence[ImageRecord], rates: dict[str, dict[str, float]], seed: int = 0) -> list[VQAItem]:
    """All questions for `records` (one split). `rates` come from the train split (`class_mention_rates`)."""
    records = sorted(records, key=lambda r: r.id)
    items: list[VQAItem] = []
    positives: dict[str, list[str]] = defaultdict(list)
    counted: Counter = Counter()
    negatives: dict[str, list[str]] = defaultdict(list)
    for r in records:
        rng = _rng(seed, r.id)
        answer = scene_answer(r.label)
        if answer is not None:
            items.append(VQAItem(r.id, rng.choice(SCENE_TEMPLATES), answer, "scene"))
        named = mentioned_objects(r.captions)
        class_rates = rates.get(r.label, {})
        for name in OBJECTS:
            if name in named:
                positives[name].append(r.id)
            elif class_rates.get(name, 1.0) < NEGATIVE_CLASS_RATE:
                negatives[name].append(r.id)
        for name, n in sorted(parse_counts(r.captions).items()):
            counted[name] += 1
            items.append(VQAItem(r.id, count_question(name, rng.randrange(99)), str(n), "count"))
        for more, fewer in parse_comparisons(r.captions):
            template = rng.randrange(99)
            items.append(VQAItem(r.id, comparison_question(more, fewer, template), "yes", "comparison"))
            items.append(VQAItem(r.id, comparison_question(fewer, more, template), "no", "comparison"))
    for name in OBJECTS:
        k = min(len(positives[name]), len(negatives[name]))
        rng = _rng(seed, "presence", name)
        for answer, pool in (("yes", positives[name]), ("no", negatives[name])):
            for image_id in sorted(rng.sample(pool, k)):
                question = presence_question(name, _rng(seed, image_id, name).randrange(99))
                items.append(VQAItem(image_id, question, answer, "presence"))
        zeros = _rng(seed, "count0", name).sample(negatives[name], min(counted[name], len(negatives[name])))
        for image_id in sorted(zeros):
            question = count_question(name, _rng(seed, image_id, name, "count").randrange(99))
            items.append(VQAItem(image_id, question, "0", "count"))
    return items


def load_records(split: str, datasets: Sequence[str] = DATASETS, limit: int | None = None) -> list[ImageRecord]:
    """The images of one split of every dataset (`limit` per dataset, for quick runs and tests)."""
    return [r for name in datasets for r in load_dataset(name, split=split, limit=limit)]


def build_vqa(split: str, seed: int = 0, datasets: Sequence[str] = DATASETS,
              limit: int | None = None) -> tuple[list[VQAItem], list[ImageRecord]]:
    """The VQA questions of one split and the image records they refer to.

    Negative sampling uses class statistics of the full train split, whatever `split` or `limit`.
    """
    rates = _train_rates(tuple(datasets))
    records = load_records(split, datasets, limit)
    return generate_items(records, rates, seed), records


@lru_cache(maxsize=4)
def _train_rates(datasets: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return class_mention_rates(load_records("train", datasets))


def counts_by_type(items: Iterable[VQAItem]) -> dict[str, int]:
    return dict(sorted(Counter(i.question_type for i in items).items()))
