"""Scenes: georeferenced rasters read window by window, never whole.

A `Scene` is one GeoTIFF / Cloud-Optimized GeoTIFF / JPEG 2000 file, or a STAC Item whose band assets
are local single- or multi-band files (possibly at different resolutions, like Sentinel-2's 10, 20 and
60 m bands). It knows its grid (width, height, CRS, affine transform: the finest band's), its bands
(see bands.py), its sensor and acquisition time where they can be told, and its nodata value.

`SceneReader` reads RGB chips: three bands (the band rule), a window of the reference grid, decimated
by GDAL to the chip size (`out_shape`: overviews are used when the file has them), stretched to 8 bits
with ONE stretch per scene (see `scene_stretch`), so neighbouring chips look alike.

Acquisition time, in order: the `datetime` option; the STAC item's `datetime` / `start_datetime`;
the file's acquisition tags (`ACQUISITIONDATETIME`, `DATE_ACQUIRED`, `SENSING_TIME`, ...; never
`TIFFTAG_DATETIME`, which is when the file was written); a date in the file name (`20200831`,
`2020-08-31`, or a name that is just a year, `1985.tif`). Stored as ISO-8601 UTC strings, which sort
and compare as times.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from rsrag.geo.bands import Band, BandRuleError, canonical_sensor, described_bands, resolve_rule, sensor_bands

log = logging.getLogger(__name__)
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
STRETCH_PERCENTILES = (2.0, 98.0)
STRIP_MAX_PX = 4096  # widest strip `SceneReader.read_many` reads at once (output pixels: 11 MB as float32 at 224 px)
STRETCH_SAMPLE_SIDE = 1024  # the whole-scene read that the stretch is estimated on, long side in pixels
_TIME_TAGS = ("ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_1_DATATAKE_SENSING_START",
              "PRODUCT_START_TIME", "DATETIME_ACQUIRED", "datetime", "acquisition_date")
_NAME_SENSORS = (
    (re.compile(r"^m_\d{7}_[a-z]{2}_\d{2}_\d", re.I), "naip"),
    (re.compile(r"(^|_)S2[ABC]_|(^|_)T\d{2}[A-Z]{3}_", re.I), "sentinel-2"),
    (re.compile(r"^L[COTE]08_", re.I), "landsat-8"),
    (re.compile(r"^L[COTE]09_", re.I), "landsat-9"),
)


class SceneError(ValueError):
    """A scene that cannot be opened or read as asked; the message names the file."""


def parse_time(value: Any, where: str = "") -> str:
    """A time (datetime, 'YYYY', 'YYYY-MM-DD', 'YYYYMMDD', ISO-8601 with or without zone) -> ISO UTC string."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            if re.fullmatch(r"\d{4}", text):
                moment = datetime(int(text), 1, 1)
            elif re.fullmatch(r"\d{8}", text):
                moment = datetime.strptime(text, "%Y%m%d")
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("/", "-"))
        except ValueError:
            try:  # GDAL/TIFF style 'YYYY:MM:DD HH:MM:SS'
                moment = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
            except ValueError:
                raise SceneError(f"{where}cannot read the time {text!r}; give it as YYYY, YYYY-MM-DD or ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_from_name(name: str) -> str | None:
    """A date found in a file name: YYYYMMDD or YYYY-MM-DD (years 1950-2099), or a name that is a year."""
    stem = Path(name).stem
    if re.fullmatch(r"(19[5-9]\d|20\d\d)", stem):
        return parse_time(stem)
    for pattern in (r"(?<!\d)((?:19[5-9]\d|20\d\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)",
                    r"(?<!\d)((?:19[5-9]\d|20\d\d)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))(?!\d)"):
        match = re.search(pattern, stem)
        if match:
            return parse_time(match[1])
    return None


@dataclass(frozen=True)
class BandSource:
    """Where one scene band lives: a file and the 1-based band index inside it."""

    path: str
    index: int


@dataclass
class Scene:
    """A georeferenced raster (one file or a STAC item's assets) described without reading pixels."""

    id: str
    source: Path  # the file or the STAC item JSON the user gave
    width: int
    height: int
    crs: Any  # rasterio CRS, or None for a scene without one (pixel coordinates)
    transform: Any  # affine.Affine of the reference grid
    bands: list[Band]
    sources: dict[int, BandSource]  # band index -> where it is stored
    dtype: str
    nodata: float | None = None
    datetime: str | None = None
    sensor: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "no CRS: indexed in pixel coordinates"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS (pixels when it has none)."""
        from rasterio.transform import array_bounds

        left, bottom, right, top = array_bounds(self.height, self.width, self.transform)
        return left, bottom, right, top

    @property
    def gsd(self) -> float | None:
        """Ground sample distance in metres (pixel width; for a geographic CRS at the scene's centre)."""
        if self.crs is None:
            return None
        size = abs(self.transform.a)
        if self.crs.is_geographic:
            lat = (self.bounds[1] + self.bounds[3]) / 2
            return size * 111_320.0 * max(math.cos(math.radians(lat)), 1e-6)
        return size * (self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0)

    def pick(self, rule: str | Sequence[str | int] | None) -> list[Band]:
        """The three bands a band rule takes from this scene (errors name the file)."""
        return resolve_rule(rule, self.bands, str(self.source))


def open_scene(path: str | Path, *, sensor: str | None = None, datetime: Any = None,
               scene_id: str | None = None) -> Scene:
    """Describe a scene file (GeoTIFF, COG, JP2, ...) or a STAC Item JSON (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        return _open_stac_item(path, sensor=sensor, when=datetime, scene_id=scene_id)
    return _open_raster(path, sensor=sensor, when=datetime, scene_id=scene_id)


def _rasterio_open(path: str | Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(str(path))
    except RasterioIOError as exc:
        raise SceneError(f"{path}: not a readable raster ({exc})") from None


def _detect_sensor(name: str, tags: dict) -> str | None:
    for key in ("SPACECRAFT_ID", "SPACECRAFT_NAME", "SATELLITE", "PLATFORM", "platform", "constellation"):
        if key in tags:
            try:
                return canonical_sensor(str(tags[key]))
            except BandRuleError:
                pass
    for pattern, sensor in _NAME_SENSORS:
        if pattern.search(name):
            return sensor
    return None


def _open_raster(path: Path, *, sensor: str | None, when: Any, scene_id: str | None) -> Scene:
    with _rasterio_open(path) as ds:
        tags = ds.tags()
        notes = []
        if ds.count < 1:
            raise SceneError(f"{path}: a raster without bands")
        chosen = canonical_sensor(sensor) if sensor else _detect_sensor(path.name, tags)
        colours = [c.name if c.name in ("red", "green", "blue") else None for c in ds.colorinterp]
        if any(ds.descriptions):
            bands = described_bands(ds.descriptions, colours)
        else:
            bands = sensor_bands(chosen, ds.count)
            if not any(b.name for b in bands):
                bands = described_bands([None] * ds.count, colours)
                if chosen and sensor:
                    raise SceneError(f"{path}: {ds.count} bands do not match the {chosen} band layout "
                                     f"({len(sensor_bands(chosen, 0)) or 'unknown'} expected); name the bands instead")
        crs, transform = ds.crs, ds.transform
        if crs is None:
            notes.append("no CRS: indexed in pixel coordinates, without footprints")
            if transform.is_identity or not ds.transform:
                from rasterio.transform import Affine

                transform = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(ds.height))  # y up, like a map
        found_time = next((tags[k] for k in _TIME_TAGS if k in tags), None)
        try:
            stamp = parse_time(when, f"{path}: ") if when is not None else (
                parse_time(found_time, f"{path}: ") if found_time else time_from_name(path.name))
        except SceneError:
            if when is not None:
                raise
            stamp = time_from_name(path.name)
        return Scene(
            id=scene_id or path.stem, source=path, width=ds.width, height=ds.height, crs=crs, transform=transform,
            bands=bands, sources={b.index: BandSource(str(path), b.index) for b in bands}, dtype=ds.dtypes[0],
            nodata=ds.nodata, datetime=stamp, sensor=chosen, notes=notes)


def _open_stac_item(path: Path, *, sensor: str | None, when: Any, scene_id: str | None) -> Scene:
    import pystac

    try:
        item = pystac.Item.from_file(str(path))
    except Exception as exc:  # pystac raises several types for a file that is not an item
        raise SceneError(f"{path}: not a STAC Item ({type(exc).__name__}: {exc})") from None
    props = item.properties
    chosen = canonical_sensor(sensor) if sensor else _detect_sensor(
        item.id, {k: v for k, v in props.items() if k in ("platform", "constellation")})
    bands: list[Band] = []
    sources: dict[int, BandSource] = {}
    grids = []
    for key, asset in item.assets.items():
        roles = asset.roles or []
        media = asset.media_type or ""
        if "thumbnail" in roles or "overview" in roles or not ("image/tiff" in media or "image/jp2" in media
                                                                or "geotiff" in media or not media):
            continue
        href = asset.get_absolute_href() or asset.href
        if re.match(r"^[a-z][a-z0-9+.-]*://", href) and not href.startswith("file://"):
            raise SceneError(f"{path}: asset {key!r} is remote ({href}); only local assets can be read here")
        local = Path(href.removeprefix("file://"))
        if not local.is_file():
            raise SceneError(f"{path}: asset {key!r} points at {local}, which does not exist")
        if local.suffix.lower() not in RASTER_SUFFIXES:
            continue
        eo = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
        with _rasterio_open(local) as ds:
            grids.append((abs(ds.transform.a), ds.width, ds.height, ds.crs, ds.transform, ds.dtypes[0], ds.nodata))
            for i in range(1, ds.count + 1):
                info = eo[i - 1] if i - 1 < len(eo) else {}
                name = info.get("name") or (key if ds.count == 1 else f"{key}_{i}")
                common = info.get("common_name") or (key.lower() if key.lower() in
                                                     ("red", "green", "blue", "nir", "swir16", "swir22") else None)
                index = len(bands) + 1
                bands.append(Band(index, name, common))
                sources[index] = BandSource(str(local), i)
    if not bands:
        raise SceneError(f"{path}: the STAC item has no local raster assets")
    _, width, height, crs, transform, dtype, nodata = min(grids, key=lambda g: g[0])  # the finest band's grid
    if any(g[3] != crs for g in grids):
        raise SceneError(f"{path}: assets in different CRSs cannot be read as one scene")
    stamp_source = when if when is not None else (item.datetime or props.get("start_datetime"))
    stamp = parse_time(stamp_source, f"{path}: ") if stamp_source is not None else None
    notes = [] if crs is not None else ["no CRS: indexed in pixel coordinates, without footprints"]
    return Scene(id=scene_id or item.id, source=path, width=width, height=height, crs=crs, transform=transform,
                 bands=bands, sources=sources, dtype=dtype, nodata=nodata, datetime=stamp, sensor=chosen, notes=notes)


def find_scenes(source: str | Path) -> list[Path]:
    """The scene files of a path: itself, or the rasters and STAC item JSONs under a folder (sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise SceneError(f"{source}: no such file or folder")
    found = []
    for p in sorted(source.rglob("*")):
        if p.suffix.lower() in RASTER_SUFFIXES and p.is_file():
            found.append(p)
        elif p.suffix.lower() == ".json" and p.is_file() and is_stac_item(p):
            found.append(p)
    # a raster that a STAC item of the folder already references is that item's asset, not a scene
    assets = set()
    for p in found:
        if p.suffix.lower() == ".json":
            assets |= _item_assets(p)
    return [p for p in found if p.resolve() not in assets]


def is_stac_item(path: Path) -> bool:
    """Whether a JSON file is a STAC Item (a GeoJSON Feature with assets)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("type") == "Feature" and "assets" in data


def _item_assets(path: Path) -> set[Path]:
    import json

    data = json.loads(path.read_text())
    out = set()
    for asset in (data.get("assets") or {}).values():
        href = str(asset.get("href", ""))
        if href and "://" not in href:
            out.add((path.parent / href).resolve())
    return out


@dataclass(frozen=True)
class Stretch:
    """Per-band linear stretch to 8 bits: value lo -> 0, hi -> 255 (None: the data is 8-bit already)."""

    lows: tuple[float, ...] | None = None
    highs: tuple[float, ...] | None = None

    def to_text(self) -> str:
        if self.lows is None or self.highs is None:
            return ""
        return ";".join(f"{lo:.6g},{hi:.6g}" for lo, hi in zip(self.lows, self.highs))

    @classmethod
    def from_text(cls, text: str | None) -> "Stretch":
        if not text:
            return cls()
        pairs = [tuple(float(v) for v in part.split(",")) for part in text.split(";")]
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def apply(self, stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(3, h, w) raw values -> (h, w, 3) uint8; invalid pixels are 0."""
        return interleaved(self.planar(stack, valid))

    def planar(self, stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(3, h, w) raw values -> (3, h, w) uint8 (the layout a model takes); invalid pixels are 0.
        8- and 16-bit unsigned values go through a per-band look-up table (`_table`), 5x cheaper than
        the float arithmetic, with the same result: the table holds that arithmetic's output."""
        if self.lows is None or self.highs is None:
            out = np.clip(stack, 0, 255).astype(np.uint8)
        elif stack.dtype in (np.uint8, np.uint16):
            table = self._table
            out = np.empty(stack.shape, np.uint8)
            for c in range(len(stack)):
                np.take(table[c], stack[c], out=out[c])
        else:
            out = self._scaled(stack)
        out[:, ~valid] = 0
        return out

    def _scaled(self, stack: np.ndarray) -> np.ndarray:
        """The stretch as float arithmetic: (value - lo) * 255 / (hi - lo), clipped, NaN -> 0."""
        lows = np.asarray(self.lows, np.float32)[:, None, None]
        span = np.asarray(self.highs, np.float32)[:, None, None] - lows
        scale = np.divide(np.float32(255.0), span, out=np.zeros_like(span), where=span > 0)
        band = (stack.astype(np.float32, copy=False) - lows) * scale  # one pass over all bands
        np.clip(band, 0.0, 255.0, out=band)  # +-inf are clipped; NaN (no data) stays NaN ...
        band[np.isnan(band)] = 0.0  # ... and becomes 0
        return band.astype(np.uint8)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        """(bands, 65536) uint8: `_scaled` of every 16-bit value, per band."""
        values = np.broadcast_to(np.arange(65536, dtype=np.float32), (len(self.lows), 1, 65536))
        return self._scaled(values)[:, 0]


class SceneReader:
    """Reads RGB chips of one scene through open dataset handles (one reader per thread)."""

    def __init__(self, scene: Scene, bands: Sequence[Band], stretch: Stretch | None = None) -> None:
        self.scene = scene
        self.bands = list(bands)
        self._datasets: dict[str, Any] = {}
        self.stretch = stretch if stretch is not None else scene_stretch(scene, bands, reader=self)

    def __enter__(self) -> "SceneReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for ds in self._datasets.values():
            ds.close()
        self._datasets.clear()

    def _dataset(self, path: str):
        if path not in self._datasets:
            self._datasets[path] = _rasterio_open(path)
        return self._datasets[path]

    def read_raw(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The three bands over `window` (col_off, row_off, width, height of the reference grid), decimated
        to `out_size` (width, height): ((3, h, w) values, (h, w) bool valid mask). Values are uint16
        when every band is 8- or 16-bit unsigned (most optical scenes: the stretch then looks them up
        in a table), else float32."""
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window, from_bounds
        from rasterio.windows import transform as window_transform

        col, row, width, height = window
        out_w, out_h = out_size
        ref = Window(col, row, width, height)
        reads: list[tuple[list[int], np.ndarray]] = []  # (stack channels, their values) per band read
        invalid = np.ones((out_h, out_w), bool)  # a pixel is nodata when every band says so
        shrink = width > out_w or height > out_h
        resampling = Resampling.average if shrink else Resampling.bilinear
        by_file: dict[str, list[int]] = {}  # the bands each file gives, read in one call per file:
        for c, band in enumerate(self.bands):  # a pixel-interleaved block is then decoded once
            by_file.setdefault(self.scene.sources[band.index].path, []).append(c)
        for path, channels in by_file.items():
            ds = self._dataset(path)
            indexes = [self.scene.sources[self.bands[c].index].index for c in channels]
            if ds.transform == self.scene.transform and ds.width == self.scene.width:
                win = ref
            else:  # a band on a coarser grid (e.g. Sentinel-2 20 m): the same ground window
                left, top = window_transform(ref, self.scene.transform) @ (0, 0)
                right, bottom = window_transform(ref, self.scene.transform) @ (width, height)
                win = from_bounds(left, bottom, right, top, transform=ds.transform)
            # a window inside the raster is read directly (GDAL's block cache serves neighbouring
            # chips); only one that hangs over the edge takes rasterio's slower boundless path
            outside = (win.col_off < 0 or win.row_off < 0 or win.col_off + win.width > ds.width
                       or win.row_off + win.height > ds.height)
            unique = list(dict.fromkeys(indexes))
            try:
                values = ds.read(unique, window=win, out_shape=(len(unique), out_h, out_w), boundless=outside,
                                 fill_value=ds.nodata if ds.nodata is not None else 0, resampling=resampling)
                for k, index in enumerate(unique):
                    mask = ~np.isfinite(values[k]) if values.dtype.kind == "f" else np.zeros((out_h, out_w), bool)
                    if ds.nodata is not None and np.isfinite(ds.nodata):
                        mask |= values[k] == np.float32(ds.nodata)
                    if _has_mask_band(ds, index):  # an internal mask or alpha band
                        mask |= ds.read_masks(index, window=win, out_shape=(out_h, out_w), boundless=outside,
                                              resampling=Resampling.nearest) == 0
                    elif outside:  # the fill beyond the edge is nodata even without a nodata value
                        mask |= _outside_mask(win, ds, (out_h, out_w))
                    reads.append(([c for c, i in zip(channels, indexes) if i == index], values[k]))
                    invalid &= mask
            except (RasterioIOError, ValueError) as exc:
                names = ", ".join(str(self.bands[c].name or self.bands[c].index) for c in channels)
                raise SceneError(f"{self.scene.source}: cannot read window {window} of band(s) "
                                 f"{names} ({exc})") from None
        small = all(values.dtype in (np.uint8, np.uint16) for _, values in reads)
        stack = np.empty((3, out_h, out_w), np.uint16 if small else np.float32)
        for channels, values in reads:
            stack[channels] = values
        return stack, ~invalid

    def read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> tuple[np.ndarray, float]:
        """An RGB chip: ((h, w, 3) uint8, the fraction of its pixels that hold data)."""
        stack, valid = self.read_raw(window, out_size)
        return self.stretch.apply(stack, valid), float(valid.mean()) if valid.size else 0.0

    def read_many(self, windows: Sequence[tuple[int, int, int, int]], size: int, *, planar: bool = False
                  ) -> Iterator[tuple[np.ndarray, float] | SceneError]:
        """`read(window, (size, size))` for each window, in order, but side-by-side windows of one row are
        read as one strip and cut apart: one GDAL call, one stretch and one mask per strip instead of per
        chip, which is most of the reading cost of a tiled scene. A strip that fails is retried chip by
        chip, so a corrupt tile costs only its own chips; such a chip yields its SceneError.
        `planar`: images as (3, size, size) views of the strip, the layout a model takes, instead of
        (size, size, 3) copies (no interleaving and back: index building reads this way)."""
        i = 0
        while i < len(windows):
            col0, row0, width, height = windows[i]
            offsets = [0]  # output column of each window of the strip
            j = i + 1
            while j < len(windows):
                col, row, w, h = windows[j]
                offset, exact = divmod((col - col0) * size, width)
                if (row, w, h) != (row0, width, height) or exact or offset <= offsets[-1] \
                        or offset + size > STRIP_MAX_PX:
                    break
                offsets.append(offset)
                j += 1
            strip = windows[i:j]
            span = strip[-1][0] + width - col0
            try:
                stack, valid = self.read_raw((col0, row0, span, height), (offsets[-1] + size, size))
            except SceneError as exc:
                if len(strip) == 1:
                    yield exc
                else:  # again chip by chip: a corrupt tile costs only its own chips
                    for window in strip:
                        yield from self.read_many([window], size, planar=planar)
                i = j
                continue
            image = self.stretch.planar(stack, valid)
            for offset in offsets:
                part = image[:, :, offset:offset + size]
                yield (part if planar else interleaved(part)), float(valid[:, offset:offset + size].mean())
            i = j


def interleaved(bands: np.ndarray) -> np.ndarray:
    """(3, h, w) -> a contiguous (h, w, 3) image."""
    return np.ascontiguousarray(bands.transpose(1, 2, 0))


def _has_mask_band(ds, index: int) -> bool:
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums[index - 1]
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def _outside_mask(win, ds, shape: tuple[int, int]) -> np.ndarray:
    """True where a boundless window's output pixels fall outside the raster."""
    out_h, out_w = shape
    cols = win.col_off + (np.arange(out_w) + 0.5) * win.width / out_w
    rows = win.row_off + (np.arange(out_h) + 0.5) * win.height / out_h
    return ((rows < 0) | (rows >= ds.height))[:, None] | ((cols < 0) | (cols >= ds.width))[None, :]


def _sample_windows(scene: Scene) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    """Where the stretch looks: the whole scene decimated when it is small or has overviews, else
    `_grid_windows`, which costs a fraction of decoding every block of a large overview-less file."""
    side = max(scene.width, scene.height)
    first = _rasterio_open(scene.sources[scene.bands[0].index].path)
    with first:
        overviews = bool(first.overviews(1))
    if side <= 2 * STRETCH_SAMPLE_SIDE or overviews:
        factor = max(1.0, side / STRETCH_SAMPLE_SIDE)
        out = (max(1, round(scene.width / factor)), max(1, round(scene.height / factor)))
        return [((0, 0, scene.width, scene.height), out)]
    return _grid_windows(scene)


def _grid_windows(scene: Scene) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    """An even 8 x 8 grid of full-resolution windows over the whole scene, about STRETCH_SAMPLE_SIDE^2
    pixels in all."""
    grid = 8
    width, height = min(STRETCH_SAMPLE_SIDE // grid, scene.width), min(STRETCH_SAMPLE_SIDE // grid, scene.height)
    cols = np.unique(np.linspace(0, scene.width - width, grid).astype(int))
    rows = np.unique(np.linspace(0, scene.height - height, grid).astype(int))
    return [((int(c), int(r), width, height), (width, height)) for r in rows for c in cols]


def scene_stretch(scene: Scene, bands: Sequence[Band], reader: SceneReader | None = None) -> Stretch:
    """One stretch for the whole scene: per band, the 2nd..98th percentile of its valid values over
    samples of the whole scene (`_sample_windows`: a decimated read, or an even grid of windows; about
    STRETCH_SAMPLE_SIDE^2 pixels). 8-bit scenes are used as they are, like every other 8-bit image
    rsrag reads."""
    if np.dtype(scene.dtype) == np.uint8:
        return Stretch()
    own = reader is None
    reader = reader or SceneReader(scene, bands, stretch=Stretch())
    stacks, masks = [], []

    def sample(windows: list[tuple[tuple[int, int, int, int], tuple[int, int]]]) -> None:
        for window, out in windows:
            try:
                stack, valid = reader.read_raw(window, out)
            except SceneError as exc:  # a damaged tile costs its samples, not the scene
                log.warning("stretch of %s: %s", scene.source, exc)
                continue
            stacks.append(stack.reshape(3, -1))
            masks.append(valid.reshape(-1))

    try:
        windows = _sample_windows(scene)
        sample(windows)
        if not stacks and len(windows) == 1:  # the decimated read met a damaged tile: look around it
            sample(_grid_windows(scene))
    finally:
        if own:
            reader.close()
    if not stacks:
        raise SceneError(f"{scene.source}: no part of the scene could be read")
    stack, valid = np.concatenate(stacks, axis=1), np.concatenate(masks)
    lows, highs = [], []
    for c in range(3):
        values = stack[c][valid]
        if not values.size:
            lows.append(0.0), highs.append(1.0)
            continue
        lo, hi = np.percentile(values, STRETCH_PERCENTILES)
        if hi <= lo:
            lo, hi = float(values.min()), float(values.max())
        lows.append(float(lo)), highs.append(float(hi))
    return Stretch(tuple(lows), tuple(highs))
