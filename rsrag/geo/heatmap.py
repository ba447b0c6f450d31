"""Heatmaps on a scene's grid: per-window scores -> a float32 raster, a GeoTIFF, a PNG overlay, polygons.

Shared by semantic localization (a text query's score per chip) and change detection (a change score
per chip): both score windows `(col_off, row_off, width, height)` of a scene's reference grid, often
overlapping and at several pyramid scales, and need one map out of them.

- `HeatmapAccumulator` adds windows one at a time (streaming: memory is the output grid, never the
  windows), each with a scalar score or a small (h, w) score map (a chip's patch-level scores, resized
  over its window), and a weight. `result("mean")` is the weighted mean of the windows covering each
  cell, `result("max")` their maximum; cells no window covers are NaN.
- The grid can be coarser than the scene (`factor` scene pixels per cell, so a 50k-pixel scene does not
  need a 50k-pixel map); its affine transform is the scene's scaled by `factor`, so the raster still
  lies exactly on the scene in its CRS.
- `write_geotiff` writes the float32 map (NaN nodata) in the scene's CRS; `overlay_rgba`/`overlay_png`
  colour it (matplotlib colormap), transparent where there is no data, and entirely transparent when the
  map is flat (a query that matches nothing must not look like one that does).
- `regions` turns the cells above a threshold into polygons (connected components, so overlapping hot
  windows merge into one region) with their peak and mean score, area in m^2 (planar for a projected
  CRS, geodesic on the WGS84 ellipsoid for a geographic one, None without a CRS) and a WGS84 geometry;
  a scene without a CRS gets polygons in pixel coordinates. `merge_regions` unions regions from several
  sources whose polygons overlap. `regions_geojson` writes them as a FeatureCollection.

May import what rsrag.geo may (numpy, rasterio, shapely, pyproj, matplotlib); nothing from rsrag.index.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

Window = tuple[int, int, int, int]  # col_off, row_off, width, height in scene pixels


def grid_transform(transform: Any, factor: float) -> Any:
    """The affine transform of a grid whose cells are `factor` x `factor` scene pixels."""
    from affine import Affine

    return transform * Affine.scale(factor, factor)


def grid_factor(width: int, height: int, max_side: int | None) -> float:
    """Scene pixels per grid cell so the grid's long side is at most `max_side` (1.0: full resolution)."""
    if not max_side or max(width, height) <= max_side:
        return 1.0
    return max(width, height) / float(max_side)


@dataclass
class Heatmap:
    """A float32 map on (a coarsening of) a scene's grid: NaN where nothing was scored."""

    grid: np.ndarray  # (rows, cols) float32
    transform: Any  # affine.Affine of the grid (the scene's, scaled by `factor`)
    crs: Any = None  # rasterio CRS, or None: `transform` is then in scene pixel coordinates
    factor: float = 1.0  # scene pixels per grid cell

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape  # type: ignore[return-value]

    def value_at(self, col: float, row: float) -> float:
        """The map's value at a scene pixel position."""
        r = min(int(row / self.factor), self.grid.shape[0] - 1)
        c = min(int(col / self.factor), self.grid.shape[1] - 1)
        return float(self.grid[r, c])

    def peak(self) -> tuple[float, float, float]:
        """(col, row, value) of the map's maximum, the position in scene pixels (cell centre)."""
        if not np.isfinite(self.grid).any():
            return float("nan"), float("nan"), float("nan")
        r, c = np.unravel_index(np.nanargmax(self.grid), self.grid.shape)
        return (c + 0.5) * self.factor, (r + 0.5) * self.factor, float(self.grid[r, c])


class HeatmapAccumulator:
    """Adds scored windows into a grid (see module doc); `result` gives the `Heatmap`."""

    def __init__(self, width: int, height: int, *, factor: float = 1.0, transform: Any = None,
                 crs: Any = None, keep_max: bool = True) -> None:
        """`width`, `height`: the scene in pixels; `factor`: scene pixels per grid cell; `transform`,
        `crs`: the scene's (None: pixel coordinates, y down); `keep_max=False` skips the running
        maximum (`result("max")` is then unavailable) for speed."""
        from affine import Affine

        if factor <= 0:
            raise ValueError("factor must be positive")
        self.width, self.height, self.factor = int(width), int(height), float(factor)
        self.rows = max(1, math.ceil(self.height / self.factor))
        self.cols = max(1, math.ceil(self.width / self.factor))
        self.transform = grid_transform(transform if transform is not None else Affine.identity(), self.factor)
        self.crs = crs
        self.keep_max = keep_max
        self._sum = np.zeros((self.rows, self.cols), np.float64)
        self._weight = np.zeros((self.rows, self.cols), np.float64)
        self._max = np.full((self.rows, self.cols), -np.inf, np.float64)

    def _cells(self, window: Window) -> tuple[int, int, int, int] | None:
        """The grid cells a scene window covers: (r0, r1, c0, c1), or None when it is outside."""
        col, row, width, height = window
        c0 = max(0, int(math.floor(col / self.factor)))
        r0 = max(0, int(math.floor(row / self.factor)))
        c1 = min(self.cols, int(math.ceil((col + width) / self.factor)))
        r1 = min(self.rows, int(math.ceil((row + height) / self.factor)))
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def add(self, window: Window, score: float | np.ndarray, weight: float = 1.0) -> None:
        """Add one window's score: a number for the whole window, or an (h, w) map over it (resized
        bilinearly to the cells it covers; a map of patch scores spreads over its chip)."""
        cells = self._cells(window)
        if cells is None or weight <= 0:
            return
        r0, r1, c0, c1 = cells
        if np.ndim(score) == 0:
            value: float | np.ndarray = float(score)
        else:
            value = _resize(np.asarray(score, np.float32), self._full_extent(window), (r0, r1, c0, c1))
        self._sum[r0:r1, c0:c1] += weight * value
        self._weight[r0:r1, c0:c1] += weight
        if self.keep_max:
            np.maximum(self._max[r0:r1, c0:c1], value, out=self._max[r0:r1, c0:c1])

    def _full_extent(self, window: Window) -> tuple[float, float, float, float]:
        """The window in fractional grid cells (r0, r1, c0, c1), before clipping to the grid."""
        col, row, width, height = window
        return row / self.factor, (row + height) / self.factor, col / self.factor, (col + width) / self.factor

    def add_many(self, windows: Iterable[Window], scores: Iterable[float | np.ndarray],
                 weights: Iterable[float] | None = None) -> None:
        """`add` for each (window, score[, weight])."""
        weights = weights if weights is not None else iter(lambda: 1.0, None)
        for window, score, weight in zip(windows, scores, weights):
            self.add(window, score, weight)

    def add_scalars(self, windows: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> None:
        """`add` for many windows with one number each, vectorised: the weighted sums go through 2-D
        difference arrays (one pass, whatever the overlap), so 10k windows cost milliseconds; the
        running maximum is kept per window."""
        windows = np.asarray(windows, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        weights = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if not len(scores):
            return
        col, row, width, height = windows.T
        c0 = np.clip(np.floor(col / self.factor), 0, self.cols).astype(int)
        r0 = np.clip(np.floor(row / self.factor), 0, self.rows).astype(int)
        c1 = np.clip(np.ceil((col + width) / self.factor), 0, self.cols).astype(int)
        r1 = np.clip(np.ceil((row + height) / self.factor), 0, self.rows).astype(int)
        keep = (c1 > c0) & (r1 > r0) & (weights > 0)
        c0, r0, c1, r1, scores, weights = c0[keep], r0[keep], c1[keep], r1[keep], scores[keep], weights[keep]
        width1 = self.cols + 1
        corners = np.concatenate([r0 * width1 + c0, r0 * width1 + c1, r1 * width1 + c0, r1 * width1 + c1])
        signs = np.concatenate([np.ones(len(r0)), -np.ones(len(r0)), -np.ones(len(r0)), np.ones(len(r0))])
        for target, values in ((self._sum, weights * scores), (self._weight, weights)):
            diff = np.bincount(corners, weights=signs * np.tile(values, 4), minlength=(self.rows + 1) * width1)
            target += diff.reshape(self.rows + 1, width1).cumsum(0).cumsum(1)[:-1, :-1]
        for i in np.argsort(scores) if self.keep_max else ():  # ascending, so the slices only ever raise the maximum
            np.maximum(self._max[r0[i]:r1[i], c0[i]:c1[i]], scores[i], out=self._max[r0[i]:r1[i], c0[i]:c1[i]])

    @property
    def coverage(self) -> np.ndarray:
        """(rows, cols) bool: cells at least one window covered."""
        return self._weight > 0

    def result(self, mode: str = "mean") -> Heatmap:
        """The map: "mean" (weighted mean of the windows over each cell) or "max"; NaN where uncovered."""
        covered = self.coverage
        grid = np.full((self.rows, self.cols), np.nan, np.float32)
        if mode == "mean":
            grid[covered] = (self._sum[covered] / self._weight[covered]).astype(np.float32)
        elif mode == "max":
            if not self.keep_max:
                raise ValueError("this accumulator was made with keep_max=False")
            grid[covered] = self._max[covered].astype(np.float32)
        else:
            raise ValueError(f"mode must be 'mean' or 'max', not {mode!r}")
        return Heatmap(grid, self.transform, self.crs, self.factor)


def _resize(score: np.ndarray, extent: tuple[float, float, float, float], cells: tuple[int, int, int, int]) -> np.ndarray:
    """Sample an (h, w) map spread over `extent` (fractional cells r0, r1, c0, c1) at the centres of
    the integer `cells` it covers (bilinear, edges clamped)."""
    h, w = score.shape
    fr0, fr1, fc0, fc1 = extent
    r0, r1, c0, c1 = cells
    ys = ((np.arange(r0, r1) + 0.5) - fr0) / max(fr1 - fr0, 1e-9) * h - 0.5
    xs = ((np.arange(c0, c1) + 0.5) - fc0) / max(fc1 - fc0, 1e-9) * w - 0.5
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = score[y0][:, x0] * (1 - wx) + score[y0][:, x1] * wx
    bottom = score[y1][:, x0] * (1 - wx) + score[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map resized bilinearly to `shape` (rows, cols), NaN kept as NaN (nearest for the NaN mask)."""
    rows, cols = shape
    filled = np.where(np.isfinite(grid), grid, np.nanmin(grid) if np.isfinite(grid).any() else 0.0)
    out = _resize(filled.astype(np.float32), (0.0, float(rows), 0.0, float(cols)), (0, rows, 0, cols))
    ri = np.minimum((np.arange(rows) * grid.shape[0]) // rows, grid.shape[0] - 1)
    ci = np.minimum((np.arange(cols) * grid.shape[1]) // cols, grid.shape[1] - 1)
    out[~np.isfinite(grid)[ri][:, ci]] = np.nan
    return out


def write_geotiff(path: str | Path, grid: np.ndarray, transform: Any, crs: Any = None) -> Path:
    """Write a (rows, cols) map as a one-band float32 GeoTIFF (NaN = nodata, deflate) in `crs`."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(grid, np.float32)
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "float32",
               "transform": transform, "nodata": float("nan"), "compress": "deflate"}
    if crs is not None:
        profile["crs"] = crs
    with rasterio.Env(GTIFF_SRS_SOURCE="EPSG"), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def is_flat(grid: np.ndarray, min_range: float = 1e-6) -> bool:
    """Whether a map has no structure worth showing (no data, or all its values about equal)."""
    values = grid[np.isfinite(grid)]
    return values.size == 0 or float(values.max() - values.min()) <= min_range


def overlay_rgba(grid: np.ndarray, *, vmin: float | None = None, vmax: float | None = None, cmap: str = "inferno",
                 alpha: float = 0.65, flat: bool | None = None, background: np.ndarray | None = None) -> np.ndarray:
    """(rows, cols, 4) uint8 colouring of a map: values from `vmin` (default the map's minimum) to
    `vmax` (its maximum) through `cmap`, with opacity `alpha`; transparent where NaN, and everywhere
    when `flat` (default: `is_flat(grid)`). Over `background` ((H, W, 3) uint8, the scene as people see
    it) the map is resized to it and blended in, giving an opaque RGB(A) picture."""
    from matplotlib import colormaps

    grid = np.asarray(grid, np.float32)
    if background is not None and background.shape[:2] != grid.shape:
        grid = upsample(grid, background.shape[:2])
    valid = np.isfinite(grid)
    flat = is_flat(grid) if flat is None else flat
    lo = float(np.nanmin(grid)) if vmin is None and valid.any() else (vmin if vmin is not None else 0.0)
    hi = float(np.nanmax(grid)) if vmax is None and valid.any() else (vmax if vmax is not None else 1.0)
    norm = np.clip((np.where(valid, grid, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgba = colormaps[cmap](norm)  # float64 (rows, cols, 4)
    a = np.where(valid & (not flat), alpha, 0.0)
    if background is None:
        rgba[..., 3] = a
        return (rgba * 255).round().astype(np.uint8)
    base = np.asarray(background, np.float32)[..., :3] / 255.0
    out = base * (1 - a[..., None]) + rgba[..., :3] * a[..., None]
    return np.dstack([(out * 255).round().astype(np.uint8), np.full(grid.shape, 255, np.uint8)])


def overlay_png(path: str | Path, grid: np.ndarray, **options: Any) -> Path:
    """Write `overlay_rgba(grid, **options)` as a PNG (or JPEG, by the suffix: RGB over a background)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgba = overlay_rgba(grid, **options)
    image = Image.fromarray(rgba, "RGBA")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=85)
    else:
        image.save(path)
    return path


def to_mercator(heatmap: Heatmap, max_side: int = 1024) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The map warped to Web Mercator for a web map (like `rsrag.geo.render.mercator_overview` does
    the scene): (float32 grid, NaN outside, (south, west, north, east) in degrees). Needs a CRS."""
    from rasterio.transform import array_bounds, from_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    if heatmap.crs is None:
        raise ValueError("a heatmap without a CRS has no place on a map")
    rows, cols = heatmap.shape
    # array_bounds gives (west, south, east, north) as (left, bottom, right, top)
    left, bottom, right, top = array_bounds(rows, cols, heatmap.transform)
    west, south, east, north = transform_bounds(heatmap.crs, "EPSG:3857", left, bottom, right, top, densify_pts=21)
    scale = max(east - west, north - south) / min(max(rows, cols), max_side)
    dst_w, dst_h = max(1, round((east - west) / scale)), max(1, round((north - south) / scale))
    dst = np.full((dst_h, dst_w), np.nan, np.float32)
    reproject(np.asarray(heatmap.grid, np.float32), dst, src_transform=heatmap.transform, src_crs=heatmap.crs,
              src_nodata=np.nan, dst_transform=from_bounds(west, south, east, north, dst_w, dst_h),
              dst_crs="EPSG:3857", dst_nodata=np.nan, resampling=Resampling.bilinear)
    lon_w, lat_s, lon_e, lat_n = transform_bounds("EPSG:3857", "EPSG:4326", west, south, east, north)
    return dst, (lat_s, lon_w, lat_n, lon_e)


@dataclass
class HeatRegion:
    """One region of a map: a polygon where the map is above the threshold, and how hot it is."""

    geometry: Any  # shapely polygon in the map's CRS (pixel coordinates when it has none)
    score: float  # the map's peak inside
    mean: float  # the map's mean inside
    cells: int  # grid cells inside
    area_m2: float | None  # None without a CRS
    lonlat: Any = None  # shapely polygon in WGS84, None without a CRS
    rank: int = 0

    def to_feature(self) -> dict:
        """A GeoJSON Feature: WGS84 geometry, or pixel coordinates (said in the properties) without a CRS."""
        from shapely.geometry import mapping

        geom = self.lonlat if self.lonlat is not None else self.geometry
        props = {"rank": self.rank, "score": round(self.score, 6), "mean": round(self.mean, 6), "cells": self.cells,
                 "area_m2": round(self.area_m2, 1) if self.area_m2 is not None else None,
                 "coordinates": "wgs84" if self.lonlat is not None else "pixel"}
        return {"type": "Feature", "geometry": mapping(geom), "properties": props}

    def to_dict(self) -> dict:
        feature = self.to_feature()
        return {**feature["properties"], "geometry": feature["geometry"], "bounds": list(self.geometry.bounds)}


def _area_m2(geometry: Any, crs: Any) -> float | None:
    if crs is None:
        return None
    if crs.is_geographic:
        from pyproj import Geod

        return abs(Geod(ellps="WGS84").geometry_area_perimeter(geometry)[0])
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return float(geometry.area) * factor * factor


def _to_lonlat(geometry: Any, crs: Any) -> Any:
    if crs is None:
        return None
    from pyproj import Transformer
    from shapely.ops import transform as shapely_transform

    transformer = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    return shapely_transform(transformer.transform, geometry)


def regions(grid: np.ndarray, transform: Any, crs: Any, threshold: float, *, top: int = 10,
            min_cells: int = 1, simplify: float = 0.0) -> list[HeatRegion]:
    """The `top` hottest regions where `grid >= threshold` (see module doc), by peak score, ranked from 1.
    `transform`/`crs`: the grid's (with no CRS the transform maps cells to scene pixels); `simplify`:
    a tolerance in grid cells for the polygons (0: the exact cell outlines)."""
    from rasterio import features
    from shapely.geometry import shape

    grid = np.asarray(grid, np.float32)
    mask = np.isfinite(grid) & (grid >= threshold)
    if not mask.any():
        return []
    # connected components (8-connected) as polygons, then a label image of them for the statistics
    geoms = [shape(g) for g, v in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform,
                                                  connectivity=8) if v == 1]
    labels = features.rasterize([(g, i + 1) for i, g in enumerate(geoms)], out_shape=grid.shape, transform=transform,
                                fill=0, dtype="int32", all_touched=False)
    inside = np.flatnonzero(mask.ravel() & (labels.ravel() > 0))
    flat_labels, flat_values = labels.ravel()[inside], grid.ravel()[inside].astype(np.float64)
    counts = np.bincount(flat_labels, minlength=len(geoms) + 1)[1:]
    sums = np.bincount(flat_labels, weights=flat_values, minlength=len(geoms) + 1)[1:]
    peaks = np.full(len(geoms) + 1, -np.inf)
    order = np.argsort(flat_values, kind="stable")
    peaks[flat_labels[order]] = flat_values[order]  # ascending, so each label keeps its largest value
    peaks = peaks[1:]
    keep = [i for i in np.argsort(-peaks, kind="stable") if counts[i] >= max(min_cells, 1)][:top]
    found: list[HeatRegion] = []
    tolerance = simplify * abs(transform.a)
    for i in keep:
        geom = geoms[i].simplify(tolerance, preserve_topology=True) if tolerance else geoms[i]
        found.append(HeatRegion(geom, float(peaks[i]), float(sums[i] / counts[i]), int(counts[i]),
                                _area_m2(geom, crs), _to_lonlat(geom, crs)))
    for rank, region in enumerate(found, 1):
        region.rank = rank
    return found


def merge_regions(found: Sequence[HeatRegion], crs: Any = None) -> list[HeatRegion]:
    """Union regions whose polygons intersect (e.g. regions of several maps or thresholds): the merged
    region keeps the highest peak, the cell-weighted mean and the summed cells; re-ranked by peak."""
    from shapely.ops import unary_union

    groups: list[list[HeatRegion]] = []
    for region in sorted(found, key=lambda r: -r.score):
        hits = [g for g in groups if any(region.geometry.intersects(o.geometry) for o in g)]
        merged = [region] + [r for g in hits for r in g]
        groups = [g for g in groups if g not in hits] + [merged]
    out = []
    for group in groups:
        geom = unary_union([r.geometry for r in group])
        cells = sum(r.cells for r in group)
        mean = sum(r.mean * r.cells for r in group) / max(cells, 1)
        out.append(HeatRegion(geom, max(r.score for r in group), mean, cells, _area_m2(geom, crs), _to_lonlat(geom, crs)))
    out.sort(key=lambda r: -r.score)
    for rank, region in enumerate(out, 1):
        region.rank = rank
    return out


def regions_geojson(found: Sequence[HeatRegion], path: str | Path | None = None, **properties: Any) -> dict:
    """A GeoJSON FeatureCollection of regions (extra `properties` go on the collection); written to
    `path` when given."""
    collection = {"type": "FeatureCollection", "features": [r.to_feature() for r in found], **properties}
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(collection))
    return collection


__all__ = ["Heatmap", "HeatmapAccumulator", "HeatRegion", "Window", "grid_factor", "grid_transform", "is_flat",
           "merge_regions", "overlay_png", "overlay_rgba", "regions", "regions_geojson", "to_mercator", "upsample", "write_geotiff"]
