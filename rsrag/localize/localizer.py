"""From a scene's features and a text query to one heatmap, its regions, and a verdict.

The combination rule (chosen on val-split mosaics, see `rsrag eval localize`):

1. Every chip gets the calibrated probability that the query describes it (`scoring.QueryScorer`).
2. Chip level: each scale's chips are spread over their windows and AVERAGED where they overlap;
   the scales are then averaged with `scale_weights` (default 2:1, finest first).
3. Patch level: the `dense_top` best-scoring chips of the finest scale (all of them in a scene of up
   to that many; the best ones in a 10k-chip scene, which keeps a query fast: elsewhere the chip level
   says the query is absent anyway) get a g x g map of patch probabilities from their patch vectors,
   each cell covering 1/g of the chip's side, averaged where chips overlap.
4. Final map = (1 - `dense_weight`) * chip level + `dense_weight` * patch level where patches were
   scored, the chip level elsewhere. Values stay probabilities in [0, 1]: never rescaled per scene.

Verdict: the query matches when at its best chip it beats every generic scene text of the vocabulary
by a clear cosine margin (`min_margin`, chosen on val mosaics: with the query of a class absent from
the mosaic, 25% false matches; with the target present, 92.5% found). Otherwise the result says so, has
no regions, and the overlay is drawn flat (transparent) rather than stretched into false hot spots.
Regions: cells at least halfway from the background (the map's median) to the peak, as polygons
(`rsrag.geo.heatmap`).

Defaults chosen on 40 val mosaics (`rsrag eval localize --split val`): temperature 10 (50 saturates
probabilities into ties), scale weights 2:1 for 224 / 448 px chips, patch weight 0.5.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from affine import Affine

from rsrag.encoders import Encoder
from rsrag.geo.heatmap import (Heatmap, HeatmapAccumulator, HeatRegion, grid_factor, overlay_png, regions,
                               regions_geojson, write_geotiff)
from rsrag.localize.features import SceneFeatures
from rsrag.localize.scoring import TEMPLATES, QueryScorer


class LocalizeError(ValueError):
    """A localization request that cannot be served as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class LocalizeSettings:
    """How chips are cut, scored and combined (defaults chosen on val mosaics; module doc)."""

    chip: int = 224  # scene pixels per chip side at scale 1
    scales: tuple[int, ...] = (1, 2)
    overlap: float = 0.5  # fraction of a chip shared with its neighbour
    scale_weights: tuple[float, ...] | None = (2.0, 1.0)  # per scale, in the order of `scales` (None: equal)
    dense_weight: float = 0.5  # share of the patch-level map in the final one
    dense_top: int = 256  # at most this many (best-scoring) finest-scale chips refined with patch scores
    temperature: float = 10.0
    templates: tuple[str, ...] = TEMPLATES
    min_margin: float = 0.03  # a match: the query's cosine beats the best generic text's by this at some chip
    max_side: int = 512  # the heatmap's long side at most this many cells (coarser for large scenes)
    max_chips: int = 4000  # an unindexed scene needing more chips than this is refused

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Localization:
    """One query's answer on one scene."""

    query: str
    heatmap: Heatmap  # the final map (probabilities)
    chip_map: Heatmap  # the chip-level map alone
    peak: tuple[float, float, float]  # col, row (scene pixels), value
    background: float  # the final map's median
    match: bool
    message: str
    regions: list[HeatRegion] = field(default_factory=list)
    chips: int = 0
    seconds: float = 0.0
    dropped_negatives: tuple[str, ...] = ()
    best_margin: float = float("nan")  # the query's best cosine margin over the vocabulary (the verdict's test)

    def to_dict(self) -> dict:
        col, row, value = self.peak
        return {"query": self.query, "match": self.match, "message": self.message,
                "peak": {"col": col, "row": row, "score": value}, "background": self.background,
                "best_margin": round(self.best_margin, 4),
                "chips": self.chips, "seconds": round(self.seconds, 4),
                "grid": {"rows": self.heatmap.shape[0], "cols": self.heatmap.shape[1], "factor": self.heatmap.factor},
                "crs": self.heatmap.crs.to_string() if self.heatmap.crs is not None else None,
                "regions": [r.to_dict() for r in self.regions],
                "synonyms_not_used_as_negatives": list(self.dropped_negatives)}

    def save(self, out: str | Path, background: np.ndarray | None = None) -> dict[str, Path]:
        """Write `heatmap.tif` (float32, the scene's grid and CRS), `overlay.png` (over `background`, the
        scene as an RGB array, when given) and `regions.geojson` into folder `out`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"heatmap": write_geotiff(out / "heatmap.tif", self.heatmap.grid, self.heatmap.transform, self.heatmap.crs),
                 "overlay": overlay_png(out / "overlay.png", self.heatmap.grid, vmin=0.0, vmax=1.0,
                                        flat=not self.match, background=background),
                 "regions": out / "regions.geojson"}
        regions_geojson(self.regions, paths["regions"], query=self.query, match=self.match, message=self.message)
        return paths


REGION_SIDE = 256  # regions are traced on the map pooled to at most this many cells a side


def pooled(heatmap: Heatmap, max_side: int) -> Heatmap:
    """The map block-averaged by a whole factor so its long side is at most `max_side` (itself when it
    is already): region outlines need no more detail, and tracing them on 512 x 512 cells costs more
    than the rest of a query."""
    rows, cols = heatmap.shape
    k = int(np.ceil(max(rows, cols) / max_side))
    if k <= 1:
        return heatmap
    pad = np.full((int(np.ceil(rows / k)) * k, int(np.ceil(cols / k)) * k), np.nan, np.float32)
    pad[:rows, :cols] = heatmap.grid
    blocks = pad.reshape(pad.shape[0] // k, k, pad.shape[1] // k, k)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        grid = np.nanmean(blocks, axis=(1, 3)).astype(np.float32)
    return Heatmap(grid, heatmap.transform * Affine.scale(k, k), heatmap.crs, heatmap.factor * k)


def patch_windows(windows: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every patch of every chip as its own window with its score: (k * g * g, 4) windows and scores,
    so the patch level accumulates as fast as the chip level (each cell of a chip's g x g map covers
    1/g of its side; overlapping chips smooth the cell edges)."""
    k, g, _ = maps.shape
    col, row, width, height = (windows[:, i].astype(np.float64)[:, None, None] for i in range(4))
    a, b = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    cw, ch = width / g, height / g
    cells = np.stack(np.broadcast_arrays(col + b * cw, row + a * ch, cw, ch), -1).reshape(-1, 4)
    return cells, maps.reshape(-1)


class Localizer:
    """Scores scene features for text queries (see module doc)."""

    def __init__(self, encoder: Encoder, settings: LocalizeSettings = LocalizeSettings()) -> None:
        self.encoder = encoder
        self.settings = settings

    def with_settings(self, **changes: Any) -> "Localizer":
        return Localizer(self.encoder, replace(self.settings, **changes))

    def scorer(self, query: str) -> QueryScorer:
        return QueryScorer.build(self.encoder, query, temperature=self.settings.temperature,
                                 templates=self.settings.templates)

    def maps(self, features: SceneFeatures, scorer: QueryScorer) -> tuple[Heatmap, Heatmap]:
        """(final map, chip-level map) of a scene for a query (module doc, steps 1-4)."""
        return self._maps(features, scorer)[:2]

    def _maps(self, features: SceneFeatures, scorer: QueryScorer) -> tuple[Heatmap, Heatmap, float]:
        """`maps`, and the query's best cosine margin over the vocabulary at any chip (the verdict)."""
        s = self.settings
        if not len(features):
            raise LocalizeError("the scene has no chips to score")
        factor = grid_factor(features.width, features.height, s.max_side)

        def accumulator() -> HeatmapAccumulator:
            return HeatmapAccumulator(features.width, features.height, factor=factor, transform=features.transform,
                                      crs=features.crs, keep_max=False)

        probs, margins = scorer.probability_and_margin(features.vectors)
        present = sorted(set(features.scales.tolist()))
        weights = dict(zip(s.scales, s.scale_weights)) if s.scale_weights else {}
        chip_sum = np.zeros((0, 0))
        total = 0.0
        template: Heatmap | None = None
        for scale in present:
            rows = features.scales == scale
            acc = accumulator()
            acc.add_scalars(features.windows[rows], probs[rows])
            template = acc.result("mean")
            w = float(weights.get(scale, 1.0))
            chip_sum = w * np.nan_to_num(template.grid) + (chip_sum if chip_sum.size else 0.0)
            total += w
        assert template is not None
        chip_grid = (chip_sum / max(total, 1e-9)).astype(np.float32)
        chip_map = Heatmap(chip_grid, template.transform, template.crs, template.factor)
        final = chip_grid
        if s.dense_weight > 0 and features.patches is not None and len(features.patch_rows):
            rows = features.patch_rows
            chosen = np.arange(len(rows))
            if len(rows) > s.dense_top:
                chosen = np.sort(np.argsort(-probs[rows], kind="stable")[:max(1, s.dense_top)])
            patch_probs = scorer.probability(features.patches.vectors(chosen))  # (k, g, g)
            acc = accumulator()
            acc.add_scalars(*patch_windows(features.windows[rows[chosen]], patch_probs))
            dense = acc.result("mean").grid
            covered = np.isfinite(dense)
            final = chip_grid.copy()
            final[covered] = (1 - s.dense_weight) * chip_grid[covered] + s.dense_weight * dense[covered]
        final_map = Heatmap(final.astype(np.float32), chip_map.transform, chip_map.crs, chip_map.factor)
        return final_map, chip_map, float(margins.max())

    def localize(self, features: SceneFeatures, query: str, *, top: int = 10) -> Localization:
        """The answer for one query: maps, verdict, regions (module doc)."""
        t0 = time.perf_counter()
        scorer = self.scorer(query)
        final, chip_map, best = self._maps(features, scorer)
        return self.decide(query, final, chip_map, best, len(features), t0, scorer.dropped, top=top)

    def decide(self, query: str, final: Heatmap, chip_map: Heatmap, best_margin: float, chips: int, t0: float,
               dropped: Sequence[str] = (), *, top: int = 10) -> Localization:
        """The verdict (`best_margin`: the query's best cosine margin over the vocabulary at any chip)
        and the regions of a map (module doc)."""
        s = self.settings
        peak = final.peak()
        values = final.grid[np.isfinite(final.grid)]
        background = float(np.median(values)) if values.size else float("nan")
        match = bool(values.size) and best_margin >= s.min_margin
        if match:
            message = (f"best score {peak[2]:.2f} against a background of {background:.2f}; at its best chip the "
                       f"query beats every generic scene text by {best_margin:.3f} (a match needs {s.min_margin:.3f})")
            coarse = pooled(final, REGION_SIDE)
            found = regions(coarse.grid, coarse.transform, coarse.crs, background + 0.5 * (peak[2] - background), top=top)
        else:
            message = (f"nothing here matches {query!r}: at no chip does it describe the scene better than generic "
                       f"scene texts by the margin a match needs ({best_margin:.3f} < {s.min_margin:.3f}; best score "
                       f"{peak[2]:.2f}, background {background:.2f}); the map is left flat")
            found = []
        return Localization(query, final, chip_map, peak, background, match, message, found, chips,
                            time.perf_counter() - t0, tuple(dropped), best_margin)


__all__ = ["Localization", "LocalizeError", "LocalizeSettings", "Localizer"]
