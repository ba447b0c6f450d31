"""`rsrag eval change`: synthetic bi-temporal pairs with known change, scored like real ones.

No labelled change scenes ship with the data, so pairs are built from val/test-split benchmark chips
(`rsrag.eval.mosaics`, one dataset per pair so class names mean one thing): a rows x cols mosaic at t1;
at t2 each cell is either the same chip, the same chip *redrawn* by another chip of the SAME class (not a
change: another field, another roof), or CHANGED to a chip of a class not confusable with it
(`mosaics.confusable`: "dense -> medium residential" is not counted as change). Every 5th pair has no
change at all. Every cell of every date gets its own photometric / seasonal / haze jitter and slight
blur, and the whole t2 mosaic is shifted 1-2 px (`rsrag.change.nuisance`), so the detector must ignore
exactly the nuisance it is calibrated on, drawn with other seeds.

Detection runs as on real scenes (`rsrag.change.detect`): windows are the cells, the calibration is fitted
on the pair's own t1 chips. Metrics over cells: localization AUC of the calibrated score, F1 at the
calibrated threshold (0.5), the false-alarm rate on unchanged cells (same chip, and same-class redraws,
also separately), transition accuracy (before AND after class right, among changed cells; `lenient`
also accepts a class confusable with the truth), and BLEU-4 / CIDEr of the generated change sentences
against template references made from the true transitions (per changed cell; per no-change pair the
LEVIR no-change sentences). Settings (threshold, temperature, embedding weight) are chosen on val
(`sweep`), test is reported once. The same cells are also scored by the real-scene vocabulary
(`DEFAULT_CONCEPTS`, text only, on its own reference null: `text_vocabulary`), so the false alarms of
the configuration real scenes use are measured too. Windows here are the cells and do not overlap, so
how a map aggregates overlapping windows (the max, `rsrag.change.detect`) does not change these numbers:
a cell's score is its window's.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from rsrag.change.captions import ChangeCaptioner, default_captioner
from rsrag.change.concepts import DEFAULT_CONCEPTS, ConceptBank, concept_text, dataset_prototypes
from rsrag.change.detect import ChangeOptions, detect_vectors, encode_images, position_words
from rsrag.change.nuisance import Nuisance, jitter, shift_image
from rsrag.change.score import Calibration, raw_scores
from rsrag.eval.mosaics import LabelledChip, build_mosaic, chips_by_dataset, confusable, load_labelled_chips

log = logging.getLogger(__name__)

SAME, REDRAW, CHANGE = "same", "redraw", "change"


@dataclass(frozen=True)
class PairSpec:
    """One synthetic pair: chip ids at t1 and t2 and what each cell is (same / redraw / change)."""

    index: int
    dataset: str
    before: tuple[tuple[str, ...], ...]
    after: tuple[tuple[str, ...], ...]
    kinds: tuple[tuple[str, ...], ...]


def sample_pairs(chips: Sequence[LabelledChip], n: int, *, rows: int = 4, cols: int = 4, p_change: float = 0.25,
                 p_redraw: float = 0.2, seed: int = 0) -> list[PairSpec]:
    """`n` seeded pair layouts (module doc); every 5th has no changed cell."""
    rng = random.Random(seed)
    by_dataset = chips_by_dataset(chips, "change pairs")
    datasets = sorted(by_dataset)
    specs = []
    for i in range(n):
        classes = by_dataset[datasets[i % len(datasets)]]
        pool = [c for items in classes.values() for c in items]
        first = rng.sample(pool, rows * cols)
        used = {c.id for c in first}
        after, kinds = [], []
        for chip in first:
            draw = rng.random()
            if i % 5 != 0 and draw < p_change:
                others = [c for c in pool if not confusable(c.label, chip.label) and c.id not in used]
                new, kind = rng.choice(others), CHANGE
            elif draw < p_change + p_redraw and len(classes[chip.label]) > 1:
                others = [c for c in classes[chip.label] if c.id not in used]
                new, kind = (rng.choice(others), REDRAW) if others else (chip, SAME)
            else:
                new, kind = chip, SAME
            used.add(new.id)
            after.append(new.id)
            kinds.append(kind)
        grid = lambda xs: tuple(tuple(xs[r * cols:(r + 1) * cols]) for r in range(rows))  # noqa: E731
        specs.append(PairSpec(i, datasets[i % len(datasets)], grid([c.id for c in first]), grid(after), grid(kinds)))
    return specs


def render_pair(spec: PairSpec, lookup: dict[str, LabelledChip], rng: np.random.Generator, *, cell: int = 224,
                nuisance: Nuisance = Nuisance()) -> tuple[np.ndarray, np.ndarray]:
    """The t1 and t2 mosaics: every cell jittered on its own (no per-cell shift), t2 shifted 1-2 px."""
    from PIL import Image

    def cells(ids: tuple[tuple[str, ...], ...]) -> list[list[np.ndarray]]:
        out = []
        for row in ids:
            line = []
            for chip_id in row:
                with Image.open(lookup[chip_id].path) as im:
                    image = np.asarray(im.convert("RGB").resize((cell, cell), Image.BICUBIC))
                line.append(jitter(image, rng, nuisance, shift=False))
            out.append(line)
        return out

    labels_b = [[lookup[i].label for i in row] for row in spec.before]
    labels_a = [[lookup[i].label for i in row] for row in spec.after]
    t1 = build_mosaic(cells(spec.before), labels_b, cell=cell).image
    t2 = build_mosaic(cells(spec.after), labels_a, cell=cell).image
    dx, dy = (int(rng.choice([-2, -1, 1, 2])) for _ in range(2))
    return t1, shift_image(t2, dx, dy)


@dataclass
class PairData:
    """What was measured on one pair: per cell vectors at both dates, the calibration chips' vectors."""

    spec: PairSpec
    before: np.ndarray  # (cells, dim)
    after: np.ndarray
    null_a: np.ndarray  # calibration: t1 chips and their jittered copies
    null_b: np.ndarray
    windows: list[tuple[int, int, int, int]]
    width: int
    height: int


@dataclass
class ChangeSet:
    """Encoded pairs of one split, reusable for any scoring settings (the val sweep)."""

    split: str
    pairs: list[PairData]
    lookup: dict[str, LabelledChip]
    banks: dict[str, ConceptBank]  # dataset -> its class concept bank
    text_bank: ConceptBank | None = None  # the real-scene vocabulary (DEFAULT_CONCEPTS, text only)
    encode_seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def collect(encoder, split: str, *, n_pairs: int = 40, rows: int = 4, cols: int = 4, seed: int = 0, cell: int = 224,
            prototype_weight: float = 1.0, temperature: float = 0.1, calibration_copies: int = 2,
            datasets: Sequence[str] = ("rsicd", "ucm"), progress: Callable[[int, int], None] | None = None) -> ChangeSet:
    """Build, render and encode `n_pairs` pairs of `split` (val to choose settings, test to report)."""
    chips = load_labelled_chips(split, datasets)
    lookup = {c.id: c for c in chips}
    specs = sample_pairs(chips, n_pairs, rows=rows, cols=cols, seed=seed)
    banks = {}
    for name in sorted({s.dataset for s in specs}):
        labels = sorted({c.label for c in chips if c.dataset == name})
        bank = ConceptBank.from_texts(encoder, labels, texts=[concept_text(lab) for lab in labels],
                                      temperature=temperature)
        if prototype_weight > 0:  # train-split chips: never the split being measured
            vectors, train_labels = dataset_prototypes(encoder, name, "train")
            bank = bank.with_prototypes(vectors, train_labels, prototype_weight)
        banks[name] = bank
    text_bank = ConceptBank.from_texts(encoder, list(DEFAULT_CONCEPTS), texts=list(DEFAULT_CONCEPTS))
    encode = encode_images(encoder)
    rng = np.random.default_rng(seed + 7919)
    pairs = []
    t0 = time.perf_counter()
    for k, spec in enumerate(specs):
        t1, t2 = render_pair(spec, lookup, rng, cell=cell)
        windows = [(c * cell, r * cell, cell, cell) for r in range(rows) for c in range(cols)]
        crops_b = [t1[r:r + h, c:c + w] for c, r, w, h in windows]
        crops_a = [t2[r:r + h, c:c + w] for c, r, w, h in windows]
        copies = [jitter(im, rng) for im in crops_b for _ in range(calibration_copies)]
        vectors = encode(crops_b + crops_a + copies)
        n = len(windows)
        before, after, jittered = vectors[:n], vectors[n:2 * n], vectors[2 * n:]
        pairs.append(PairData(spec, before, after, np.repeat(before, calibration_copies, axis=0), jittered, windows,
                              t1.shape[1], t1.shape[0]))
        if progress:
            progress(k + 1, len(specs))
    return ChangeSet(split, pairs, lookup, banks, text_bank, time.perf_counter() - t0,
                     {"rows": rows, "cols": cols, "cell": cell, "seed": seed, "prototype_weight": prototype_weight,
                      "temperature": temperature, "datasets": list(datasets)})


def _bank(bank: ConceptBank, temperature: float | None) -> ConceptBank:
    return bank if temperature is None else replace(bank, temperature=temperature)


def reference_null(data: ChangeSet, embedding_weight: float = 0.0, temperature: float | None = None,
                   bank: ConceptBank | None = None) -> dict:
    """The pooled self-pair scores of all pairs: median and 99th percentile (what `rsrag.change.score`
    keeps as REFERENCE_MEDIAN / REFERENCE_Q99, measured on val; with `bank`, the one bank scoring every
    pair: TEXT_REFERENCE_* for the real-scene vocabulary)."""
    pooled = np.concatenate([raw_scores(bank or _bank(data.banks[p.spec.dataset], temperature), p.null_a, p.null_b,
                                        embedding_weight) for p in data.pairs])
    return {"median": float(np.median(pooled)), "q99": float(np.quantile(pooled, 0.99)), "n": len(pooled)}


def cell_results(data: ChangeSet, options: ChangeOptions = ChangeOptions(), temperature: float | None = None,
                 reference: dict | None = None, bank: ConceptBank | None = None) -> list[dict]:
    """Per cell of every pair: kind, true and predicted labels, z and calibrated score, position. `bank`:
    one bank for every pair instead of the dataset's (the real-scene vocabulary: its labels are not the
    dataset's classes, so only the scores and false alarms mean something)."""
    out = []
    for pair in data.pairs:
        scorer = bank or _bank(data.banks[pair.spec.dataset], temperature)
        null = raw_scores(scorer, pair.null_a, pair.null_b, options.embedding_weight)
        calibration = (Calibration.from_null(null, options.threshold, reference["median"], reference["q99"])
                       if reference else Calibration.for_bank(scorer, null, options.threshold))
        change = detect_vectors(scorer, calibration, pair.windows, pair.before, pair.after, width=pair.width,
                                height=pair.height, options=options)
        pred_b, pred_a = change.labels("before"), change.labels("after")
        kinds = [k for row in pair.spec.kinds for k in row]
        ids_b = [i for row in pair.spec.before for i in row]
        ids_a = [i for row in pair.spec.after for i in row]
        for j, (col, row, w, h) in enumerate(pair.windows):
            out.append({"pair": pair.spec.index, "dataset": pair.spec.dataset, "kind": kinds[j],
                        "before": concept_text(data.lookup[ids_b[j]].label),
                        "after": concept_text(data.lookup[ids_a[j]].label),
                        "before_label": data.lookup[ids_b[j]].label, "after_label": data.lookup[ids_a[j]].label,
                        "pred_before": pred_b[j], "pred_after": pred_a[j], "z": float(calibration.z(change.raw[j:j + 1])[0]),
                        "score": float(change.scores[j]),
                        "where": position_words(col + w / 2, row + h / 2, pair.width, pair.height),
                        "map_sentence": change.sentence, "pair_changed": bool(change.regions)})
    return out


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")


def metrics(cells: list[dict], captioner: ChangeCaptioner | None = None, captions: bool = True) -> dict:
    """The headline numbers over cells (module doc)."""
    kinds = np.array([c["kind"] for c in cells])
    changed = kinds == CHANGE
    score = np.array([c["score"] for c in cells])
    z = np.array([c["z"] for c in cells])
    hit = score >= 0.5
    tp, fp, fn = int((hit & changed).sum()), int((hit & ~changed).sum()), int((~hit & changed).sum())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    right = [c["pred_before"] == c["before"] and c["pred_after"] == c["after"] for c in cells if c["kind"] == CHANGE]
    lenient = [confusable(c["pred_before"], c["before"]) and confusable(c["pred_after"], c["after"])
               for c in cells if c["kind"] == CHANGE]
    result = {
        "auc": round(_auc(changed.astype(int), z), 4),
        "f1": round(f1, 4), "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
        "false_alarm_rate": round(float(hit[~changed].mean()), 4) if (~changed).any() else None,
        "false_alarm_same_chip": round(float(hit[kinds == SAME].mean()), 4) if (kinds == SAME).any() else None,
        "false_alarm_redraw": round(float(hit[kinds == REDRAW].mean()), 4) if (kinds == REDRAW).any() else None,
        "transition_accuracy": round(float(np.mean(right)), 4) if right else None,
        "transition_accuracy_lenient": round(float(np.mean(lenient)), 4) if lenient else None,
        "cells": len(cells), "changed_cells": int(changed.sum()), "redraw_cells": int((kinds == REDRAW).sum()),
    }
    if captions:
        result["captions"] = caption_scores(cells, captioner or default_captioner())
    return result


def reference_sentences(before: str, after: str, where: str, captioner: ChangeCaptioner) -> list[str]:
    """Template references for a true transition, in the corpus's words."""
    b, a = captioner.word(before), captioner.word(after)
    place = f"at the {where}" + (" corner" if " " in where else "")
    return [f"the {b} {place} is replaced by {a}", f"{a} appear on the {b} {place}",
            f"the {b} {place} becomes {a}", f"{a} replace the {b} {place}", f"the {b} {place} turned into {a}"]


def caption_scores(cells: list[dict], captioner: ChangeCaptioner) -> dict:
    """BLEU-4 / CIDEr (pure-Python tokenizer) of generated sentences vs template references: one per
    changed cell (its transition sentence if detected, else the no-change sentence) and one per
    no-change pair (the map's sentence vs the corpus's no-change sentences)."""
    from rsrag.metrics.caption import score_captions

    refs, hyps = [], []
    for c in cells:
        if c["kind"] != CHANGE:
            continue
        refs.append(reference_sentences(c["before"], c["after"], c["where"], captioner))
        hyps.append(captioner.sentence(c["pred_before"], c["pred_after"], c["where"])
                    if c["score"] >= 0.5 else captioner.no_change)
    no_change_refs = ["there is no difference", "the two scenes seem identical", "the scene is the same as before",
                      "no change has occurred", "almost nothing has changed"]
    pairs_done = set()
    for c in cells:
        pair = c["pair"]
        if pair in pairs_done:
            continue
        pairs_done.add(pair)
        if not any(x["kind"] == CHANGE for x in cells if x["pair"] == pair):
            refs.append(no_change_refs)
            hyps.append(c["map_sentence"])
    if not refs:
        return {}
    scores = score_captions(refs, hyps, metrics=("bleu", "cider"), ptb=False)
    examples = [{"reference": r[0], "generated": h} for r, h in list(zip(refs, hyps))[:5]]
    return {"bleu4": round(scores["bleu4"], 4), "cider": round(scores["cider"], 4), "n": len(hyps),
            "examples": examples}


SWEEP_THRESHOLDS = tuple(round(0.8 + 0.1 * i, 1) for i in range(13))  # 0.8 .. 2.0 units of the null
SWEEP_TEMPERATURES = (0.05, 0.1)
SWEEP_EMBEDDING_WEIGHTS = (0.0, 0.5)
MAX_FALSE_ALARM = 0.03  # on val, for all unchanged cells and for same-class redraws alone (module doc)


def sweep(data: ChangeSet, thresholds: Sequence[float] = SWEEP_THRESHOLDS,
          temperatures: Sequence[float | None] = SWEEP_TEMPERATURES,
          embedding_weights: Sequence[float] = SWEEP_EMBEDDING_WEIGHTS, max_far: float = MAX_FALSE_ALARM) -> dict:
    """Settings on val: for each temperature / embedding weight, the metrics at each z threshold; the
    chosen setting is the best F1 whose false-alarm rates (all unchanged cells, and redraws alone) stay
    under `max_far`: a margin below the 0.05 target, since test is other chips (with 0.04, val chose a
    threshold whose redraw false-alarm rate was 0.037 on val and 0.056 on test)."""
    rows = []
    for temperature in temperatures:
        for weight in embedding_weights:
            reference = reference_null(data, weight, temperature)
            for t in thresholds:
                cells = cell_results(data, ChangeOptions(embedding_weight=weight, threshold=t), temperature, reference)
                m = metrics(cells, captions=False)
                rows.append({"temperature": temperature, "embedding_weight": weight, "threshold": t,
                             "reference_null": reference,
                             **{k: m[k] for k in ("auc", "f1", "false_alarm_rate", "false_alarm_redraw",
                                                  "transition_accuracy")}})
    ok = [r for r in rows if r["false_alarm_rate"] <= max_far and (r["false_alarm_redraw"] or 0) <= max_far]
    best = max(ok or rows, key=lambda r: (r["f1"], r["auc"]))
    return {"rows": rows, "chosen": best, "max_far": max_far, "text_vocabulary": text_vocabulary(data, best["threshold"])}


def text_vocabulary(data: ChangeSet, threshold: float) -> dict:
    """The real-scene configuration on the same pairs: the text vocabulary's null on this split (on val:
    what `rsrag.change.score` keeps as TEXT_REFERENCE_*) and its scores / false alarms at `threshold`,
    calibrated as real scenes are (on the kept reference). Its labels are not the dataset's classes: no
    transition accuracy."""
    if data.text_bank is None:
        return {}
    m = metrics(cell_results(data, ChangeOptions(threshold=threshold), bank=data.text_bank), captions=False)
    return {"reference_null": reference_null(data, bank=data.text_bank), "threshold": threshold,
            **{k: m[k] for k in ("auc", "f1", "precision", "recall", "false_alarm_rate", "false_alarm_redraw")}}


def evaluate_change(encoder, split: str = "test", *, n_pairs: int = 40, seed: int = 0,
                    options: ChangeOptions = ChangeOptions(), progress: Callable[[int, int], None] | None = None,
                    **collect_options: Any) -> dict:
    """The whole evaluation on one split: collect, score at `options`, metrics."""
    data = collect(encoder, split, n_pairs=n_pairs, seed=seed, progress=progress, **collect_options)
    t0 = time.perf_counter()
    cells = cell_results(data, options)
    result = metrics(cells)
    result["text_vocabulary"] = text_vocabulary(data, options.threshold)
    result.update({"split": split, "pairs": n_pairs, "seed": seed, "encoder": encoder.id,
                   "threshold": options.threshold, "embedding_weight": options.embedding_weight,
                   **data.meta, "encode_seconds": round(data.encode_seconds, 1),
                   "score_seconds": round(time.perf_counter() - t0, 2),
                   "label_key_note": "transition_accuracy: exact class before and after; lenient: a confusable class "
                                     "counts (mosaics.CONFUSABLE)"})
    return result
