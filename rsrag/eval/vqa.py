"""VQA evaluation: exact-match accuracy on the generated RSICD + UCM question set, per question type.

Besides overall and per-type accuracy it reports per-dataset accuracy, the scene-type accuracy on
RSICD alone, count accuracy on stated counts and on absent objects ("0") separately, a question-only
baseline (the most frequent train answer of each question text, to show how much the image
contributes) and how the `unknown` flag splits the answers (accuracy of flagged vs. unflagged
answers: a calibrated flag marks the answers that are mostly wrong).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from rsrag.models.vqa.dataset import DATASETS, VQAItem, build_vqa
from rsrag.models.vqa.features import dataset_image_features
from rsrag.models.vqa.model import VQAModel
from rsrag.models.vqa.questions import QUESTION_TYPES


def _pct(values: Sequence[bool]) -> float:
    return round(100 * float(np.mean(values)), 2) if len(values) else 0.0


def question_only_answers(train: Sequence[VQAItem], items: Sequence[VQAItem]) -> list[str]:
    """Most frequent train answer of each question text (else of its type): the blind baseline."""
    by_question: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for i in train:
        by_question[i.question][i.answer] += 1
        by_type[i.question_type][i.answer] += 1
    return [(by_question.get(i.question) or by_type[i.question_type]).most_common(1)[0][0] for i in items]


def evaluate_vqa(model: VQAModel, split: str = "test", datasets: Sequence[str] = DATASETS, seed: int = 0,
                 limit: int | None = None) -> dict:
    """Accuracy (%) of `model` on the VQA questions of `split`, overall and by question type."""
    start = time.perf_counter()
    items, records = build_vqa(split, seed, datasets, limit)
    feats = dataset_image_features(model.encoder, records, limit)
    texts = sorted({i.question for i in items})
    qfeats = model.question_features(texts)
    qrow = {q: k for k, q in enumerate(texts)}
    image = np.stack([feats[i.image_id][0] for i in items])
    question = qfeats[[qrow[i.question] for i in items]]
    answers = model.answer_features(image, question, [i.question for i in items])
    correct = np.array([a.answer == i.answer for a, i in zip(answers, items)])
    flagged = np.array([a.unknown for a in answers])
    types = np.array([i.question_type for i in items])
    sets = np.array([i.image_id.split("/", 1)[0] for i in items])
    gold = np.array([i.answer for i in items])
    train_items, _ = build_vqa("train", seed, datasets)
    blind = np.array([a == i.answer for a, i in zip(question_only_answers(train_items, items), items)])
    type_ok = np.array([a.question_type == i.question_type for a, i in zip(answers, items)])
    present = [t for t in QUESTION_TYPES if (types == t).any()]
    return {
        "model": model.name,
        "split": split,
        "datasets": list(datasets),
        "n_questions": len(items),
        "n_images": len(records),
        "accuracy": _pct(correct),
        "by_type": {t: _pct(correct[types == t]) for t in present},
        "n_by_type": {t: int((types == t).sum()) for t in present},
        "by_dataset": {d: _pct(correct[sets == d]) for d in datasets if (sets == d).any()},
        "rsicd_scene_accuracy": _pct(correct[(sets == "rsicd") & (types == "scene")]),
        "count_accuracy_stated": _pct(correct[(types == "count") & (gold != "0")]),  # without the "0" answers
        "count_accuracy_absent": _pct(correct[(types == "count") & (gold == "0")]),
        "question_type_accuracy": _pct(type_ok),
        "question_only_baseline": {"accuracy": _pct(blind),
                                   "by_type": {t: _pct(blind[types == t]) for t in present}},
        "unknown_flag": {"fraction": _pct(flagged), "accuracy_flagged": _pct(correct[flagged]),
                         "accuracy_unflagged": _pct(correct[~flagged])},
        "elapsed_s": round(time.perf_counter() - start, 2),
    }
