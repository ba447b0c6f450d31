"""Change maps: two dates of one place -> a calibrated per-location change score, regions, labels.

The pipeline, for two scene files (`detect_scenes`) or any two sets of co-located chips (`detect_chips`,
which the evaluation and the indexed series use):

1. A common grid: the BEFORE scene's. Chip windows tile the part of it the AFTER scene overlaps; each
   window's ground box is read from AFTER (same grid: the same window; another CRS or resolution: the
   box transformed into AFTER's CRS and resampled to the chip size, which is said in the notes).
2. Chips that are mostly nodata or cloud (bright, grey, flat) in either date are left out (NaN in the
   map) and counted; a scene that is mostly nodata/cloud over the overlap is a warning naming its file,
   an overlap with no usable chip at all is an error.
3. Both dates' chips are embedded; each gets a distribution over a `ConceptBank`; the raw score is the
   distance between the two distributions (`rsrag.change.score`).
4. Calibration on the scene itself: BEFORE's chips against jittered / blurred / shifted copies of
   themselves give the nuisance null; every score becomes z/(z+threshold): 0.5 is the threshold.
5. Windows -> heatmap on the grid (`rsrag.geo.heatmap`, the MAX of overlapping windows) -> regions
   above 0.5 with areas; each region's before/after labels are the score-weighted mean concept
   distributions of the changed chips under it. The max, not the mean: a change smaller than a chip
   passes the threshold in the one or two windows that hold most of it, and the mean with its
   unchanged neighbours would drop it (on real scenes no region formed although the strongest windows
   were right in kind). So a location is changed when a window covering it is; a region's area is at
   window resolution (an upper bound for a change smaller than a chip). False alarms are those of
   single windows, which the evaluation measures (its windows are its cells).

Memory is bounded: windows are read and embedded in batches; only vectors are kept (plus a small
reservoir of BEFORE chips for the calibration).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from rsrag.change.concepts import DEFAULT_CONCEPTS, ConceptBank
from rsrag.change.score import EMBEDDING_WEIGHT, THRESHOLD, Calibration, raw_from_probabilities, raw_scores

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]
CLOUD_LEVEL = 215  # a pixel whose darkest band is above this and whose bands differ by < CLOUD_GREY is cloud-like
CLOUD_GREY = 30


class ChangeError(ValueError):
    """Two inputs that cannot be compared (no overlap, other bands, nothing usable); names the files."""


@dataclass
class ChangeOptions:
    """How a change map is made (defaults chosen on val-split synthetic pairs)."""

    chip: int | None = None  # scene pixels per chip side (None: 224, or a quarter of a small scene's short side)
    stride: float = 0.5  # step between windows as a fraction of the chip
    threshold: float = THRESHOLD  # in units of the reference nuisance null (rsrag.change.score)
    embedding_weight: float = EMBEDDING_WEIGHT
    calibration_chips: int = 48
    calibration_copies: int = 2
    max_nodata: float = 0.5  # a chip with more of its pixels empty or cloud in either date is left out
    max_side: int = 512  # the heatmap grid's long side, cells
    top_regions: int = 20
    batch_size: int = 32
    seed: int = 0
    bands: str | None = None  # the band rule (rsrag.geo.bands); None: true colour or the first three


@dataclass
class ChangeRegion:
    """One changed region: where, how big, how sure, and what it was and became."""

    rank: int
    score: float
    mean: float
    area_m2: float | None
    geometry: dict  # GeoJSON geometry (WGS84, or pixel coordinates without a CRS)
    bounds: list[float]  # in the grid's CRS
    before: str
    after: str
    before_top: list[tuple[str, float]]
    after_top: list[tuple[str, float]]
    chips: list[int] = field(default_factory=list)  # indices of the windows under it
    position: str = ""  # "top left", "centre", ... within the compared area
    sentence: str = ""

    @property
    def transition(self) -> str:
        return f"{self.before} -> {self.after}"

    def to_dict(self) -> dict:
        return {"rank": self.rank, "score": round(self.score, 4), "mean": round(self.mean, 4),
                "area_m2": None if self.area_m2 is None else round(self.area_m2, 1),
                "area_ha": None if self.area_m2 is None else round(self.area_m2 / 1e4, 3),
                "before": self.before, "after": self.after, "transition": self.transition,
                "before_top": [[n, round(p, 3)] for n, p in self.before_top],
                "after_top": [[n, round(p, 3)] for n, p in self.after_top],
                "position": self.position, "sentence": self.sentence, "chips": len(self.chips),
                "bounds": [round(b, 6) for b in self.bounds], "geometry": self.geometry}


@dataclass
class ChangeMap:
    """The result of comparing two dates (see module doc)."""

    before: str  # file or date
    after: str
    windows: list[Window]
    raw: np.ndarray  # (n,) raw scores, NaN for windows left out
    scores: np.ndarray  # (n,) calibrated 0..1, NaN for windows left out
    probs_before: np.ndarray  # (n, concepts)
    probs_after: np.ndarray
    bank: ConceptBank
    calibration: Calibration
    width: int
    height: int
    transform: Any = None
    crs: Any = None
    heatmap: Any = None  # rsrag.geo.heatmap.Heatmap
    regions: list[ChangeRegion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dates: tuple[str | None, str | None] = (None, None)
    sentence: str = ""
    chip_ids: tuple[list[str], list[str]] | None = None  # indexed dates: the chips compared, per window

    @property
    def changed(self) -> np.ndarray:
        return np.nan_to_num(self.scores, nan=0.0) >= 0.5

    def labels(self, which: str) -> list[str]:
        probs = self.probs_before if which == "before" else self.probs_after
        return self.bank.label(probs)

    def summary(self) -> dict:
        valid = np.isfinite(self.scores)
        area = sum(r.area_m2 or 0.0 for r in self.regions) if self.crs is not None else None
        return {"windows": len(self.windows), "scored": int(valid.sum()), "changed_windows": int(self.changed.sum()),
                "changed_fraction": round(float(self.changed[valid].mean()), 4) if valid.any() else None,
                "regions": len(self.regions), "changed_area_m2": None if area is None else round(area, 1),
                "changed_area_ha": None if area is None else round(area / 1e4, 3)}

    def to_dict(self) -> dict:
        cited = None
        if self.chip_ids:
            cited = [{"before": self.chip_ids[0][i], "after": self.chip_ids[1][i]} for i in
                     sorted({i for r in self.regions for i in r.chips})][:50]
        return {"before": self.before, "after": self.after, "dates": list(self.dates), "sentence": self.sentence,
                "chips": cited,
                "summary": self.summary(), "regions": [r.to_dict() for r in self.regions],
                "calibration": self.calibration.to_dict(), "crs": _crs_text(self.crs), "notes": self.notes,
                "warnings": self.warnings, "seconds": round(self.seconds, 3)}

    def write(self, out: str | Path, background: np.ndarray | None = None) -> dict[str, str]:
        """`out/change.tif` (the calibrated score map, float32, NaN nodata), `out/overlay.png` (the map
        coloured, over `background` when given) and `out/regions.geojson`; returns the paths."""
        from rsrag.geo.heatmap import overlay_png, write_geotiff

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tif = write_geotiff(out / "change.tif", self.heatmap.grid, self.heatmap.transform, self.crs)
        png = overlay_png(out / "overlay.png", self.heatmap.grid, vmin=0.0, vmax=1.0, flat=False,
                          background=background)
        features = []
        for region in self.regions:
            props = {k: v for k, v in region.to_dict().items() if k != "geometry"}
            features.append({"type": "Feature", "geometry": region.geometry, "properties": props})
        collection = {"type": "FeatureCollection", "features": features, "before": self.before, "after": self.after,
                      "sentence": self.sentence}
        geojson = out / "regions.geojson"
        geojson.write_text(json.dumps(collection))
        return {"geotiff": str(tif), "overlay": str(png), "regions": str(geojson)}


def _crs_text(crs: Any) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


# ---- chips -> scores --------------------------------------------------------------------------------
def encode_images(encoder) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """(h, w, 3) uint8 chips -> unit vectors, through the encoder's own preprocessing, in batches."""
    from PIL import Image

    def encode(images: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
        out = [np.zeros((0, encoder.dim), np.float32)]
        for i in range(0, len(images), batch):
            arrays = np.stack([encoder.preprocess.to_array(Image.fromarray(im)) for im in images[i:i + batch]])
            out.append(encoder.encode_arrays(arrays))
        return np.concatenate(out)

    return encode


def bad_fraction(image: np.ndarray, valid: float = 1.0) -> float:
    """The fraction of a chip that is nodata or cloud-like (bright and grey)."""
    lo, hi = image.min(axis=2).astype(np.int16), image.max(axis=2).astype(np.int16)
    cloud = float(((lo > CLOUD_LEVEL) & (hi - lo < CLOUD_GREY)).mean())
    return min(1.0, (1.0 - valid) + cloud)


def score_vectors(bank: ConceptBank, calibration: Calibration, before: np.ndarray, after: np.ndarray,
                  embedding_weight: float = EMBEDDING_WEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(raw, calibrated, probs_before, probs_after) for co-located chip vectors."""
    p, q = bank.probabilities(before), bank.probabilities(after)
    raw = raw_from_probabilities(p, q, before, after, embedding_weight)
    return raw, calibration.score(raw), p, q


def detect_vectors(bank: ConceptBank, calibration: Calibration, windows: Sequence[Window], before: np.ndarray,
                   after: np.ndarray, *, width: int, height: int, transform: Any = None, crs: Any = None,
                   names: tuple[str, str] = ("before", "after"), options: ChangeOptions = ChangeOptions(),
                   usable: np.ndarray | None = None) -> ChangeMap:
    """A change map from already-embedded co-located chips (`usable`: False for windows left out)."""
    n = len(windows)
    raw = np.full(n, np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    pb = np.zeros((n, len(bank.names)), np.float32)
    pa = np.zeros((n, len(bank.names)), np.float32)
    ok = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
    if ok.any():
        r, s, p, q = score_vectors(bank, calibration, before[ok], after[ok], options.embedding_weight)
        raw[ok], scores[ok], pb[ok], pa[ok] = r, s, p, q
    result = ChangeMap(names[0], names[1], list(windows), raw, scores, pb, pa, bank, calibration, width, height,
                       transform, crs)
    finish(result, options)
    return result


def finish(result: ChangeMap, options: ChangeOptions) -> None:
    """Heatmap, regions with labels and sentences (in place)."""
    from rsrag.change.captions import describe_map, describe_region
    from rsrag.geo.heatmap import HeatmapAccumulator, grid_factor

    factor = grid_factor(result.width, result.height, options.max_side)
    acc = HeatmapAccumulator(result.width, result.height, factor=factor, transform=result.transform, crs=result.crs)
    scored = np.isfinite(result.scores)
    if scored.any():
        acc.add_scalars(np.asarray(result.windows, np.float64)[scored], result.scores[scored])
    result.heatmap = acc.result("max")  # a location is changed where a window over it is (module doc)
    result.regions = _regions(result, options)
    for region in result.regions:
        region.sentence = describe_region(region)
    result.sentence = describe_map(result)


def position_words(cx: float, cy: float, width: int, height: int) -> str:
    """Where a point lies in the compared area, in words ("top left", "centre", ...)."""
    col = 0 if cx < width / 3 else (2 if cx > 2 * width / 3 else 1)
    row = 0 if cy < height / 3 else (2 if cy > 2 * height / 3 else 1)
    names = [["top left", "top", "top right"], ["left", "centre", "right"], ["bottom left", "bottom", "bottom right"]]
    return names[row][col]


def _regions(result: ChangeMap, options: ChangeOptions) -> list[ChangeRegion]:
    from affine import Affine
    from shapely.geometry import mapping

    from rsrag.geo.heatmap import regions as heat_regions

    found = heat_regions(result.heatmap.grid, result.heatmap.transform, result.crs, 0.5, top=options.top_regions)
    if not found:
        return []
    transform = result.transform if result.transform is not None else Affine.identity()
    inverse = ~transform
    changed = result.changed
    scored = np.isfinite(result.scores)
    boxes = np.array(result.windows, np.float64).reshape(-1, 4)  # col, row, width, height
    out = []
    for region in found:
        # the windows under the region: changed ones overlapping its box by a sixteenth of their area
        minx, miny, maxx, maxy = region.geometry.bounds
        corners = [inverse * (x, y) for x, y in ((minx, miny), (maxx, maxy))]
        c0, c1 = sorted(c[0] for c in corners)
        r0, r1 = sorted(c[1] for c in corners)
        overlap_w = np.clip(np.minimum(boxes[:, 0] + boxes[:, 2], c1) - np.maximum(boxes[:, 0], c0), 0, None)
        overlap_h = np.clip(np.minimum(boxes[:, 1] + boxes[:, 3], r1) - np.maximum(boxes[:, 1], r0), 0, None)
        overlap = overlap_w * overlap_h
        under = np.flatnonzero(changed & (overlap > boxes[:, 2] * boxes[:, 3] / 16)).tolist()
        if not under:
            under = np.flatnonzero(scored & (overlap > 0)).tolist()
        weights = np.nan_to_num(result.scores[under], nan=0.0) + 1e-6
        pb = (result.probs_before[under] * weights[:, None]).sum(0) / weights.sum()
        pa = (result.probs_after[under] * weights[:, None]).sum(0) / weights.sum()
        top_b = [(result.bank.texts[i], float(pb[i])) for i in np.argsort(-pb)[:3]]
        top_a = [(result.bank.texts[i], float(pa[i])) for i in np.argsort(-pa)[:3]]
        geometry = mapping(region.lonlat if region.lonlat is not None else region.geometry)
        out.append(ChangeRegion(region.rank, region.score, region.mean, region.area_m2, geometry,
                                list(region.geometry.bounds), top_b[0][0], top_a[0][0], top_b, top_a, under,
                                position_words((c0 + c1) / 2, (r0 + r1) / 2, result.width, result.height)))
    return out


# ---- two scene files ----------------------------------------------------------------------------------
def _band_names(bands) -> list[str]:
    return [(b.common or b.name or str(b.index)).lower() for b in bands]


def chip_side(scene, options: ChangeOptions) -> int:
    """Scene pixels per chip side (ChangeOptions.chip, else 224 or a quarter of a small scene's short side)."""
    if options.chip:
        return int(options.chip)
    return int(max(32, min(224, min(scene.width, scene.height) // 4)))


def overlap_windows(before, after, side: int, stride: int) -> tuple[list[Window], list[tuple[float, float, float, float]]]:
    """The chip windows of BEFORE's grid inside the part AFTER covers, and each window's box in AFTER's
    CRS (left, bottom, right, top). Raises ChangeError naming both files when they do not overlap."""
    from rasterio.warp import transform_bounds

    a_bounds = after.bounds
    if before.crs is not None and after.crs is not None and before.crs != after.crs:
        a_bounds = transform_bounds(after.crs, before.crs, *a_bounds, densify_pts=21)
    elif (before.crs is None) != (after.crs is None):
        raise ChangeError(f"{before.source} and {after.source}: one has a CRS and the other not; they cannot be "
                          "placed on one grid")
    b = before.bounds
    left, bottom, right, top = max(b[0], a_bounds[0]), max(b[1], a_bounds[1]), min(b[2], a_bounds[2]), min(b[3], a_bounds[3])
    if right <= left or top <= bottom:
        raise ChangeError(f"{before.source} and {after.source} do not overlap (bounds {tuple(round(v, 4) for v in b)} "
                          f"and {tuple(round(v, 4) for v in a_bounds)} in the first one's CRS)")
    inverse = ~before.transform
    cols = sorted(((inverse * (left, top))[0], (inverse * (right, bottom))[0]))
    rows = sorted(((inverse * (left, top))[1], (inverse * (right, bottom))[1]))
    c0, c1 = max(0, int(np.floor(cols[0] + 1e-6))), min(before.width, int(np.ceil(cols[1] - 1e-6)))
    r0, r1 = max(0, int(np.floor(rows[0] + 1e-6))), min(before.height, int(np.ceil(rows[1] - 1e-6)))

    def starts(lo: int, hi: int) -> list[int]:
        if hi - lo <= side:
            return [lo]
        out = list(range(lo, hi - side + 1, stride))
        return out + [hi - side] if out[-1] != hi - side else out

    windows = [(c, r, side, side) for r in starts(r0, r1) for c in starts(c0, c1)]
    boxes = []
    t = before.transform
    for c, r, w, h in windows:
        xs, ys = (t.c + t.a * c, t.c + t.a * (c + w)), (t.f + t.e * r, t.f + t.e * (r + h))
        box = (min(xs), min(ys), max(xs), max(ys))
        if before.crs is not None and after.crs is not None and before.crs != after.crs:
            box = transform_bounds(before.crs, after.crs, *box, densify_pts=5)
        boxes.append(box)
    return windows, boxes


def _after_window(after, box: tuple[float, float, float, float]) -> Window:
    inverse = ~after.transform
    (x0, y0), (x1, y1) = inverse * (box[0], box[3]), inverse * (box[2], box[1])
    c0, c1 = sorted((x0, x1))
    r0, r1 = sorted((y0, y1))
    return int(round(c0)), int(round(r0)), max(1, int(round(c1 - c0))), max(1, int(round(r1 - r0)))


def detect_scenes(encoder, before_path: str | Path, after_path: str | Path, *, options: ChangeOptions = ChangeOptions(),
                  concepts: Sequence[str] = DEFAULT_CONCEPTS, bank: ConceptBank | None = None,
                  progress: Callable[[int, int], None] | None = None) -> ChangeMap:
    """The change map of two scene files of the same place (module doc)."""
    from rsrag.geo.bands import BandRuleError
    from rsrag.geo.scene import SceneError, SceneReader, open_scene

    t0 = time.perf_counter()
    try:
        before, after = open_scene(before_path), open_scene(after_path)
        pick_b, pick_a = before.pick(options.bands), after.pick(options.bands)
    except (SceneError, BandRuleError) as exc:
        raise ChangeError(str(exc)) from None
    notes, warnings = [], []
    names_b, names_a = _band_names(pick_b), _band_names(pick_a)
    if names_b != names_a:
        raise ChangeError(f"{before.source} reads bands {names_b} and {after.source} reads {names_a}: different "
                          "band sets cannot be compared; pick the same bands of both (--bands)")
    if before.sensor and after.sensor and before.sensor != after.sensor:
        warnings.append(f"different sensors: {before.source} is {before.sensor}, {after.source} is {after.sensor}; "
                        "colour and resolution differences are treated as nuisance")
    if before.crs is not None and after.crs is not None and before.crs != after.crs:
        notes.append(f"{after.source} ({_crs_text(after.crs)}) is reprojected onto the grid of {before.source} "
                     f"({_crs_text(before.crs)}) chip by chip")
    elif before.gsd and after.gsd and abs(before.gsd - after.gsd) > 0.01 * before.gsd:
        notes.append(f"{after.source} ({after.gsd:.2f} m) is resampled onto the grid of {before.source} "
                     f"({before.gsd:.2f} m)")
    if before.datetime and after.datetime and after.datetime < before.datetime:
        warnings.append(f"{after.source} ({after.datetime[:10]}) is older than {before.source} "
                        f"({before.datetime[:10]}): the map reads as BEFORE -> AFTER as given")
    side = chip_side(before, options)
    stride = max(1, int(round(side * options.stride)))
    windows, boxes = overlap_windows(before, after, side, stride)
    same_grid = before.crs == after.crs and before.transform == after.transform
    bank = bank or ConceptBank.from_texts(encoder, list(concepts), texts=list(concepts))
    encode = encode_images(encoder)
    size = encoder.preprocess.size
    rng = np.random.default_rng(options.seed)
    vec_b = np.zeros((len(windows), encoder.dim), np.float32)
    vec_a = np.zeros((len(windows), encoder.dim), np.float32)
    usable = np.zeros(len(windows), bool)
    bad_b = bad_a = 0
    reservoir: list[np.ndarray] = []
    seen = 0
    with SceneReader(before, pick_b) as read_b, SceneReader(after, pick_a) as read_a:
        for start in range(0, len(windows), options.batch_size):
            idx = list(range(start, min(start + options.batch_size, len(windows))))
            chips_b, chips_a, keep = [], [], []
            for i in idx:
                image_b, valid_b = read_b.read(windows[i], (size, size))
                window_a = windows[i] if same_grid else _after_window(after, boxes[i])
                image_a, valid_a = read_a.read(window_a, (size, size))
                lost_b = bad_fraction(image_b, valid_b) > options.max_nodata
                lost_a = bad_fraction(image_a, valid_a) > options.max_nodata
                bad_b += lost_b
                bad_a += lost_a
                if lost_b or lost_a:
                    continue
                chips_b.append(image_b), chips_a.append(image_a), keep.append(i)
                seen += 1  # reservoir sample of BEFORE chips for the calibration
                if len(reservoir) < options.calibration_chips:
                    reservoir.append(image_b)
                else:
                    j = int(rng.integers(seen))
                    if j < options.calibration_chips:
                        reservoir[j] = image_b
            if keep:
                vectors = encode(chips_b + chips_a)
                vec_b[keep], vec_a[keep] = vectors[:len(keep)], vectors[len(keep):]
                usable[keep] = True
            if progress:
                progress(idx[-1] + 1, len(windows))
    for path, bad in ((before.source, bad_b), (after.source, bad_a)):
        if bad > 0.5 * len(windows):
            warnings.append(f"{path}: {bad} of {len(windows)} chips over the overlap are mostly nodata or cloud; "
                            "they are left out of the map (NaN)")
    if not usable.any():
        raise ChangeError(f"no chip of the overlap of {before.source} and {after.source} has data in both "
                          "(nodata or cloud everywhere)")
    copies = [image for image in reservoir for _ in range(options.calibration_copies)]
    null_b = encode(_jittered(copies, rng))
    null_a = encode(copies)
    null = raw_scores(bank, null_a, null_b, options.embedding_weight)
    calibration = Calibration.for_bank(bank, null, options.threshold)
    scored = detect_vectors(bank, calibration, windows, vec_b, vec_a, width=before.width, height=before.height,
                            transform=before.transform, crs=before.crs,
                            names=(str(before.source), str(after.source)), options=options, usable=usable)
    scored.notes, scored.warnings = notes + [f"chips: {side} px of {before.source}, stride {stride} px"], warnings
    scored.dates = (before.datetime, after.datetime)
    scored.seconds = time.perf_counter() - t0
    return scored


def _jittered(images: Iterable[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    from rsrag.change.nuisance import jitter

    return [jitter(image, rng) for image in images]


def scene_background(path: str | Path, max_side: int = 1024, bands: str | None = None) -> np.ndarray:
    """The scene as people see it (stretched RGB), at most `max_side` on its long side, for overlays."""
    from rsrag.geo.scene import SceneReader, open_scene

    scene = open_scene(path)
    factor = max(1.0, max(scene.width, scene.height) / max_side)
    out = (max(1, round(scene.width / factor)), max(1, round(scene.height / factor)))
    with SceneReader(scene, scene.pick(bands)) as reader:
        image, _ = reader.read((0, 0, scene.width, scene.height), out)
    return image


def detect_arrays(encoder, before: np.ndarray, after: np.ndarray, *, options: ChangeOptions = ChangeOptions(),
                  concepts: Sequence[str] = DEFAULT_CONCEPTS, bank: ConceptBank | None = None,
                  names: tuple[str, str] = ("before", "after")) -> ChangeMap:
    """The change map of two co-registered RGB images without a CRS (pixel coordinates, no areas):
    photos of a pair such as LEVIR-CC's. Same tiling, scoring and calibration as `detect_scenes`."""
    if before.shape[:2] != after.shape[:2]:
        raise ChangeError(f"{names[0]} is {before.shape[1]}x{before.shape[0]} px and {names[1]} is "
                          f"{after.shape[1]}x{after.shape[0]} px: images without a CRS must share one grid")
    t0 = time.perf_counter()
    height, width = before.shape[:2]
    side = int(options.chip or max(32, min(224, min(width, height) // 2)))
    stride = max(1, int(round(side * options.stride)))

    def starts(extent: int) -> list[int]:
        if extent <= side:
            return [0]
        out = list(range(0, extent - side + 1, stride))
        return out + [extent - side] if out[-1] != extent - side else out

    windows = [(c, r, side, side) for r in starts(height) for c in starts(width)]
    crops_b = [before[r:r + h, c:c + w, :3] for c, r, w, h in windows]
    crops_a = [after[r:r + h, c:c + w, :3] for c, r, w, h in windows]
    usable = np.array([bad_fraction(b) <= options.max_nodata and bad_fraction(a) <= options.max_nodata
                       for b, a in zip(crops_b, crops_a)])
    bank = bank or ConceptBank.from_texts(encoder, list(concepts), texts=list(concepts))
    encode = encode_images(encoder)
    vectors = encode(crops_b + crops_a)
    rng = np.random.default_rng(options.seed)
    sample = [crops_b[i] for i in rng.permutation(len(crops_b))[:options.calibration_chips]]
    copies = [im for im in sample for _ in range(options.calibration_copies)]
    null = raw_scores(bank, encode(copies), encode(_jittered(copies, rng)), options.embedding_weight)
    calibration = Calibration.for_bank(bank, null, options.threshold)
    n = len(windows)
    result = detect_vectors(bank, calibration, windows, vectors[:n], vectors[n:], width=width, height=height,
                            names=names, options=options, usable=usable)
    result.notes = [f"no CRS: pixel coordinates, no areas; chips {side} px, stride {stride} px"]
    result.seconds = time.perf_counter() - t0
    return result
