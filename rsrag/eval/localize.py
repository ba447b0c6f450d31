"""Semantic localization on synthetic mosaics: does the heatmap's peak land on the queried class?

Protocol (`rsrag eval localize`): `n` seeded mosaics of `rows` x `cols` chips from one split of
RSICD / UCM (`rsrag.eval.mosaics`: 1-4 chips of a target class among non-confusable distractors, plain
or cross-faded borders, chips resized to `cell` px). The query is a caption-style sentence for the
target class (`QUERY`). Settings are chosen on the val split; the test split is reported.

Metrics per mosaic, averaged:
- `hit_at_1`: the map's peak lies in a target cell.
- `auc`: pixel AUC-ROC of the map against the target mask (on the heatmap grid, ties averaged).
- SeLo indicators (Yuan et al., "Learning to evaluate performance of multimodal semantic
  localization"), as we compute them from their stated definitions on a map min-max scaled to [0, 1]
  (the paper's normalisation; the reference code was not available, so values are comparable across
  methods here, not necessarily with published tables):
  `rsu` = 1 - mean(outside target) / mean(inside target), clipped to [0, 1] (higher is better);
  `ras` = mean distance from each attention region's centroid (connected cells >= 0.5) to the nearest
  target cell centre, over the mosaic diagonal (lower is better);
  `rda` = mean pairwise distance between the centroids of attention regions nearest to the same target
  cell, over the diagonal: attention scattered around a target (lower is better);
  `rmi` = 0.4 rsu + 0.35 (1 - ras) + 0.25 (1 - rda) (higher is better).
- The no-match check: every mosaic is also queried for a class it does not hold (none of its cells
  is confusable with it); `false_match_rate` is how often that is reported as a match, `match_rate`
  how often the real target is.

Baselines, scored on the same chip features in the same run: `random` (a seeded random map),
`chip` (the chip-level map of the default method alone, no patch refinement) and `sliding_window`
(224-px chips at stride 112 on one scale, the bare class name as text, raw cosine, averaged).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rsrag.eval.mosaics import (LabelledChip, Mosaic, MosaicSpec, confusable, load_labelled_chips, render,
                                sample_mosaics)
from rsrag.encoders.prompts import pretty_label
from rsrag.geo.heatmap import Heatmap, HeatmapAccumulator
from rsrag.localize import Localizer, SceneFeatures, array_features
from rsrag.localize.features import PatchBank

QUERY = "there are {} in the image."  # chosen on val among a few caption-style templates
SELO_WEIGHTS = (0.4, 0.35, 0.25)


def query_for(label: str) -> str:
    """The caption-style query for a class."""
    return QUERY.format(pretty_label(label))


def auc_roc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class only."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = start + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def mask_on_grid(mosaic: Mosaic, heatmap: Heatmap) -> np.ndarray:
    """The target mask sampled at the heatmap's cell centres."""
    rows, cols = heatmap.shape
    ys = np.minimum(((np.arange(rows) + 0.5) * heatmap.factor).astype(int), mosaic.image.shape[0] - 1)
    xs = np.minimum(((np.arange(cols) + 0.5) * heatmap.factor).astype(int), mosaic.image.shape[1] - 1)
    cells = mosaic.cell_mask()
    return cells[(ys // mosaic.cell)[:, None], (xs // mosaic.cell)[None, :]]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """(row, col) centroids of the 8-connected components of a boolean grid."""
    from affine import Affine
    from rasterio import features
    from shapely.geometry import shape

    if not mask.any():
        return []
    out = []
    for geom, value in features.shapes(mask.astype(np.uint8), mask=mask, connectivity=8, transform=Affine.identity()):
        if value == 1:
            c = shape(geom).centroid
            out.append(np.array([c.y, c.x]))
    return out


def selo_metrics(grid: np.ndarray, target: np.ndarray, cell_centres: np.ndarray) -> dict[str, float]:
    """rsu, ras, rda, rmi of one map (module doc); `cell_centres`: (k, 2) target cell centres in grid
    cells (row, col)."""
    values = np.where(np.isfinite(grid), grid, np.nanmin(grid))
    lo, hi = float(values.min()), float(values.max())
    norm = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    inside = float(norm[target].mean()) if target.any() else 0.0
    outside = float(norm[~target].mean()) if (~target).any() else 0.0
    rsu = float(np.clip(1.0 - outside / inside, 0.0, 1.0)) if inside > 0 else 0.0
    diagonal = float(np.hypot(*grid.shape))
    centroids = _components(norm >= 0.5)
    if not centroids or not len(cell_centres):
        ras, rda = 1.0, 1.0
    else:
        dist = np.linalg.norm(np.asarray(centroids)[:, None, :] - cell_centres[None, :, :], axis=2)
        nearest = dist.argmin(1)
        ras = float(dist.min(1).mean() / diagonal)
        spreads = []
        for k in np.unique(nearest):
            group = np.asarray(centroids)[nearest == k]
            if len(group) > 1:
                pair = np.linalg.norm(group[:, None] - group[None], axis=2)
                spreads.append(pair[np.triu_indices(len(group), 1)].mean())
        rda = float(np.mean(spreads) / diagonal) if spreads else 0.0
    rmi = SELO_WEIGHTS[0] * rsu + SELO_WEIGHTS[1] * (1 - ras) + SELO_WEIGHTS[2] * (1 - rda)
    return {"rsu": rsu, "ras": ras, "rda": rda, "rmi": rmi}


def map_metrics(mosaic: Mosaic, heatmap: Heatmap) -> dict[str, float]:
    """hit@1, AUC and the SeLo indicators of one map on one mosaic."""
    col, row, _ = heatmap.peak()
    cells = mosaic.cell_mask()
    hit = float(cells[min(int(row) // mosaic.cell, cells.shape[0] - 1), min(int(col) // mosaic.cell, cells.shape[1] - 1)])
    target = mask_on_grid(mosaic, heatmap)
    valid = np.isfinite(heatmap.grid)
    centres = np.array([((r + 0.5) * mosaic.cell / heatmap.factor, (c + 0.5) * mosaic.cell / heatmap.factor)
                        for r, c in zip(*np.nonzero(cells))])
    return {"hit_at_1": hit, "auc": auc_roc(heatmap.grid[valid], target[valid]),
            **selo_metrics(heatmap.grid, target, centres)}


def sliding_window_map(features: SceneFeatures, text: np.ndarray, factor: float) -> Heatmap:
    """The naive baseline: raw cosine of the finest-scale chips, averaged where they overlap."""
    rows = features.scales == features.scales.min()
    acc = HeatmapAccumulator(features.width, features.height, factor=factor, keep_max=False)
    acc.add_scalars(features.windows[rows], features.vectors[rows] @ text)
    return acc.result("mean")


def random_map(features: SceneFeatures, factor: float, seed: int) -> Heatmap:
    acc = HeatmapAccumulator(features.width, features.height, factor=factor, keep_max=False)
    grid = np.random.default_rng(seed).random((acc.rows, acc.cols)).astype(np.float32)
    return Heatmap(grid, acc.transform, None, factor)


def absent_label(spec: MosaicSpec, labels: Sequence[Sequence[str]], classes: Sequence[str], seed: int) -> str | None:
    """A class of the mosaic's dataset that none of its cells holds or is confusable with."""
    present = {label for row in labels for label in row}
    options = sorted(c for c in classes if not any(confusable(c, p) for p in present))
    return random.Random(seed * 7919 + spec.index).choice(options) if options else None


@dataclass
class LocalizeEvaluator:
    """Runs the protocol (module doc) for one localizer; features per mosaic are computed once and
    can be cached in `cache` (a folder) so several settings are compared on the same mosaics."""

    localizer: Localizer
    split: str = "test"
    n: int = 200
    rows: int = 6
    cols: int = 6
    cell: int = 224
    seed: int = 0
    cache: Path | None = None
    grid_side: int = 336  # heatmap cells on the mosaic's long side (1344 px -> 4 px cells)

    def mosaics(self) -> tuple[list[MosaicSpec], dict[str, LabelledChip]]:
        chips = load_labelled_chips(self.split)
        specs = sample_mosaics(chips, self.n, rows=self.rows, cols=self.cols, seed=self.seed)
        return specs, {c.id: c for c in chips}

    def features(self, spec: MosaicSpec, mosaic: Mosaic) -> SceneFeatures:
        s = self.localizer.settings
        path = None
        if self.cache is not None:
            tag = f"{self.split}-{self.seed}-{self.cell}-{spec.index}-{s.chip}-{'_'.join(map(str, s.scales))}-{s.overlap}"
            path = Path(self.cache) / f"{tag}.npz"
            if path.is_file():
                with np.load(path) as d:
                    bank = PatchBank(d["q"], d["scale"]) if d["q"].size else None
                    return SceneFeatures(int(d["width"]), int(d["height"]), d["windows"], d["scales"], d["vectors"],
                                         d["patch_rows"], bank)
        feats = array_features(self.localizer.encoder, mosaic.image, chip=s.chip, scales=s.scales, overlap=s.overlap)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            bank = feats.patches
            np.savez(path, width=feats.width, height=feats.height, windows=feats.windows, scales=feats.scales,
                     vectors=feats.vectors, patch_rows=feats.patch_rows,
                     q=bank.q if bank is not None else np.zeros(0, np.int8),
                     scale=bank.scale if bank is not None else np.zeros(0, np.float32))
        return feats

    def run(self, progress: Callable[[int, int], None] | None = None,
            variants: dict[str, Localizer] | None = None) -> dict[str, Any]:
        """Scores of the default method, the baselines and any `variants` (other settings on the same
        features: they must share chip, scales and overlap)."""
        t0 = time.perf_counter()
        specs, lookup = self.mosaics()
        classes = {d: sorted({c.label for c in lookup.values() if c.dataset == d}) for d in {c.dataset for c in lookup.values()}}
        methods = ["default", "chip", "sliding_window", "random", *(variants or {})]
        per: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        matched, false_matched, latencies = [], [], []
        factor = max(self.rows, self.cols) * self.cell / self.grid_side
        localizers = {"default": self.localizer.with_settings(max_side=self.grid_side), **{
            k: v.with_settings(max_side=self.grid_side) for k, v in (variants or {}).items()}}
        for i, spec in enumerate(specs):
            mosaic = render(spec, lookup, self.cell)
            feats = self.features(spec, mosaic)
            query = query_for(spec.target)
            for name, loc in localizers.items():
                t1 = time.perf_counter()
                result = loc.localize(feats, query)
                if name == "default":
                    latencies.append(time.perf_counter() - t1)
                    matched.append(result.match)
                    per["chip"].append(map_metrics(mosaic, result.chip_map))
                per[name].append(map_metrics(mosaic, result.heatmap))
            text = self.localizer.encoder.encode_texts([pretty_label(spec.target)])[0]
            per["sliding_window"].append(map_metrics(mosaic, sliding_window_map(feats, text, factor)))
            per["random"].append(map_metrics(mosaic, random_map(feats, factor, self.seed * 100003 + spec.index)))
            other = absent_label(spec, mosaic.labels, classes[spec.dataset], self.seed)
            if other is not None:
                false_matched.append(self.localizer.localize(feats, query_for(other)).match)
            if progress:
                progress(i + 1, len(specs))

        def summary(rows: list[dict[str, float]]) -> dict[str, float]:
            return {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in rows[0]} if rows else {}

        out = {"split": self.split, "mosaics": len(specs), "grid": f"{self.rows}x{self.cols}", "cell": self.cell,
               "seed": self.seed, "query_template": QUERY, "settings": self.localizer.settings.to_dict(),
               **summary(per["default"]),
               "match_rate": round(float(np.mean(matched)), 4) if matched else None,
               "false_match_rate": round(float(np.mean(false_matched)), 4) if false_matched else None,
               "query_ms_p50": round(1000 * float(np.median(latencies)), 2) if latencies else None,
               "baselines": {m: summary(per[m]) for m in ("chip", "sliding_window", "random")},
               "seconds": round(time.perf_counter() - t0, 1)}
        if variants:
            out["variants"] = {m: summary(per[m]) for m in variants}
        return out


__all__ = ["LocalizeEvaluator", "QUERY", "auc_roc", "map_metrics", "query_for", "selo_metrics"]
