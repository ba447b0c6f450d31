"""Decode any supported image into an 8-bit RGB PIL image, or fail with one clear error type.

Encoders, index builds and the API all decode through `load_image`, so they see the same pixels, and
every failure is an `ImageLoadError` whose message names the file (its path, or `<bytes>`,
`<array>`, `<PIL image>`) and says what is wrong.

Sources: a path (str / Path), raw `bytes`, a PIL image or a numpy array (HW, HWC, or CHW when the
first axis is the smallest and the last one is longer than 4, e.g. (13, 256, 256)).

Readers (chosen by the file's magic bytes, not its suffix):
- TIFF: TIFFs carrying GeoTIFF or GDAL tags are read with rasterio (GDAL), which knows the band
  colour interpretation and nodata value and reads only the three bands it needs. Other TIFFs are
  read with tifffile (planar and contiguous layouts, any bit depth); if tifffile cannot decode one
  (e.g. a compression codec it lacks) rasterio is tried. Palette, CMYK, min-is-white and bilevel
  TIFFs are pictures rather than rasters and go through Pillow.
- Everything else (JPEG, PNG, ...): Pillow. `SUPPORTED_SUFFIXES` is what folder scanners pick up.

Band rule (rasters: TIFFs and arrays):
- `bands` (three 0-based band indices), when given, always wins; for Pillow images it indexes the
  R, G, B channels after conversion.
- 1 band -> grey replicated to RGB; 2 bands -> ImageLoadError (unsupported layout); 3 bands -> RGB.
- 4+ bands -> a GeoTIFF whose colour interpretation names red, green and blue bands uses those
  (this also reorders a 3-band GeoTIFF stored as B, G, R); otherwise the first three bands in order
  (1-based bands 1, 2, 3). Multispectral stacks need `bands`: for Sentinel-2 stored B1, B2, ...
  pass `bands=(3, 2, 1)` (B4, B3, B2).
  Alpha in a TIFF is not composited: it is simply a band beyond the third.

Bit-depth rule: uint8 is used as is. Every other type (uint16, int, float, bool) is stretched per
band: the 2nd..98th percentile of the finite, non-nodata values maps linearly to 0..255 (clipped);
when those percentiles coincide the band's min..max is used; a constant band, NaN/inf and nodata
pixels (GDAL nodata of a GeoTIFF) become 0. Percentiles are estimated on at most 1M evenly strided values.

Pillow modes: L / 1 / I;16 / I / F grey -> replicated to RGB (I;16, I and F are stretched as above);
RGBA, LA, PA and images with a transparency key -> composited onto black (transparent pixels become
black, which is how remote-sensing tiles mark "no data"); P -> its palette colours; CMYK, YCbCr,
LAB -> Pillow's RGB conversion.

Size guard: images with more than `max_pixels` pixels (default `DEFAULT_MAX_PIXELS`, 100 MP, e.g.
10,000 x 10,000) are refused from the header, before any pixel data is decoded or allocated.
Pillow's own decompression-bomb guard also applies to Pillow-decoded files: its hard error (above
2 x `PIL.Image.MAX_IMAGE_PIXELS`, about 179 MP) surfaces as ImageLoadError; its warning is replaced
by the `max_pixels` check. To load larger images raise both limits.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

#: Refuse images above this many pixels (10,000 x 10,000) unless the caller passes a larger limit.
DEFAULT_MAX_PIXELS = 100_000_000
#: File suffixes that folder scanners treat as images (lower case).
SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

ImageSource = Union[str, "os.PathLike[str]", bytes, Image.Image, np.ndarray]
Bands = tuple[int, int, int]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_GDAL_METADATA_TAG = 42112
_GDAL_NODATA_TAG = 42113
_PERCENTILE_SAMPLE = 1_000_000
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_WARNINGS_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An image could not be decoded; the message names the file."""


# ---------------------------------------------------------------------------------------------
# public API


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bands: Bands | None = None,
) -> Image.Image:
    """Decode `source` into a mode "RGB" PIL image following the module's band and bit-depth rules."""
    name = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, name)
        return _pil_to_rgb(source, name, bands)
    if isinstance(source, np.ndarray):
        stack = _array_to_stack(source, name)
        _check_size((stack.shape[1], stack.shape[0]), max_pixels, name)
        return _stack_to_rgb(stack, _select_bands(stack.shape[2], name, bands), name)
    src = _file_source(source, name)
    if _is_tiff(src):
        return _load_tiff(src, name, max_pixels, bands)
    return _load_with_pillow(src, name, max_pixels, bands)


def image_size(source: ImageSource) -> tuple[int, int]:
    """(width, height) from the header alone, so size checks and index builds need not decode pixels.

    Raises ImageLoadError for unreadable headers, and for Pillow formats above Pillow's hard
    decompression-bomb limit (2 x PIL.Image.MAX_IMAGE_PIXELS), which Pillow enforces on opening.
    """
    import tifffile

    name = _describe(source)
    if isinstance(source, Image.Image):
        return source.size
    if isinstance(source, np.ndarray):
        stack_shape = _array_to_stack(source, name).shape
        return stack_shape[1], stack_shape[0]
    src = _file_source(source, name)
    if _is_tiff(src):
        try:
            with tifffile.TiffFile(_stream(src)) as tif:
                info = _tifffile_info(tif)
        except Exception as exc:  # noqa: BLE001 - tifffile cannot parse it; GDAL may
            log.debug("tifffile cannot parse %s (%s); asking rasterio", name, exc)
            with _decode_errors(name), _open_rasterio(src) as ds:
                return ds.width, ds.height
        return info.width, info.height
    with _open_pillow(src, name) as img:
        return img.size


# ---------------------------------------------------------------------------------------------
# sources and errors


def _describe(source: object) -> str:
    """How error messages name a source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _fail(name: str, reason: str) -> ImageLoadError:
    return ImageLoadError(f"cannot load image {name}: {reason}")


def _file_source(source: object, name: str) -> Path | bytes:
    """A checked path or the raw bytes; anything else is refused here rather than deep in a decoder."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise _fail(name, "empty data")
        return data
    if not isinstance(source, (str, os.PathLike)):
        raise _fail(name, f"unsupported source type {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise _fail(name, "file not found")
    if not path.is_file():
        raise _fail(name, "not a regular file")
    if path.stat().st_size == 0:
        raise _fail(name, "empty file")
    return path


def _stream(src: Path | bytes):
    """Something decoders can read: the path itself, or a file object over the bytes."""
    return BytesIO(src) if isinstance(src, bytes) else src


def _is_tiff(src: Path | bytes) -> bool:
    if isinstance(src, bytes):
        head = src[:4]
    else:
        with open(src, "rb") as fh:
            head = fh.read(4)
    return head in _TIFF_MAGIC


@contextmanager
def _decode_errors(name: str) -> Iterator[None]:
    """Turn whatever a third-party decoder raises into an ImageLoadError naming the file."""
    try:
        yield
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise _fail(name, f"image too large (Pillow decompression-bomb guard: {exc})") from exc
    except UnidentifiedImageError as exc:
        raise _fail(name, "unsupported or unrecognised image format") from exc
    except MemoryError as exc:
        raise _fail(name, "not enough memory to decode it") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, struct.error, ...
        reason = f"corrupt, truncated or unsupported image data ({type(exc).__name__}: {exc})"
        raise _fail(name, reason) from exc


@contextmanager
def _ignoring(category: type[Warning]) -> Iterator[None]:
    """Silence one warning category. `warnings.catch_warnings` swaps process-global state, so decode
    threads take turns here; only header parsing (opening a file) runs inside."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    """The decompression-bomb guard: called with header sizes, before pixel data is read."""
    width, height = size
    if width <= 0 or height <= 0:
        raise _fail(name, f"empty image ({width}x{height})")
    if width * height > max_pixels:
        pixels = f"{width}x{height} = {width * height:,} pixels"
        raise _fail(name, f"image too large: {pixels} exceeds max_pixels={max_pixels:,}")


# ---------------------------------------------------------------------------------------------
# band selection and bit depth, shared by every raster path


def _select_bands(count: int, name: str, bands: Bands | None, rgb_order: Bands | None = None) -> list[int]:
    """0-based indices of the bands to show: one (grey) or three (R, G, B). See the module docstring."""
    if bands is not None:
        chosen = [int(b) for b in bands]
        if len(chosen) != 3 or any(b < 0 or b >= count for b in chosen):
            raise _fail(name, f"bands={tuple(bands)} must be three 0-based band indices below {count}")
        return chosen
    if count == 1:
        return [0]
    if count < 3:
        raise _fail(name, f"unsupported band layout: {count} bands (need 1 or 3+, or pass bands=(i, j, k))")
    return [0, 1, 2] if rgb_order is None else list(rgb_order)


def _stretch(band: np.ndarray, nodata: float | None) -> np.ndarray:
    """One non-uint8 band -> uint8 by the 2..98 percentile stretch of its valid values."""
    values = band.astype(np.float32)
    valid = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= band != nodata
    sample = values[valid]
    out = np.zeros(band.shape, np.uint8)
    if sample.size == 0:
        return out
    step = max(1, sample.size // _PERCENTILE_SAMPLE)
    lo, hi = np.percentile(sample[::step], [2, 98])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return out  # constant band
    scaled = (values - lo) * (255.0 / (hi - lo))
    np.clip(scaled, 0, 255, out=scaled)
    out[valid] = np.rint(scaled[valid]).astype(np.uint8)
    return out


def _stack_to_rgb(stack: np.ndarray, index: list[int], name: str, nodata: float | None = None) -> Image.Image:
    """(H, W, C) raster + chosen band indices -> RGB image."""
    chosen = stack[:, :, index]
    if chosen.dtype.kind not in "biuf":
        raise _fail(name, f"unsupported pixel type {chosen.dtype}")
    if chosen.dtype != np.uint8:
        chosen = np.stack([_stretch(chosen[:, :, i], nodata) for i in range(chosen.shape[2])], axis=-1)
    if chosen.shape[2] == 1:
        chosen = np.repeat(chosen, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(chosen))  # uint8 (H, W, 3) -> mode RGB


def _array_to_stack(arr: np.ndarray, name: str) -> np.ndarray:
    """HW / HWC / obvious CHW array -> (H, W, C) view."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim == 3:
        first, second, last = arr.shape
        if first < min(second, last) and last > 4:
            return np.moveaxis(arr, 0, -1)
        return arr
    raise _fail(name, f"unsupported band layout: array of shape {arr.shape} (expected HW, HWC or CHW)")


# ---------------------------------------------------------------------------------------------
# Pillow


@contextmanager
def _open_pillow(src: Path | bytes, name: str) -> Iterator[Image.Image]:
    """Lazily open with Pillow (header only). Pillow's bomb warning is dropped: `_check_size` decides."""
    with _decode_errors(name), _ignoring(Image.DecompressionBombWarning):
        img = Image.open(_stream(src))
    with img:
        yield img


def _load_with_pillow(src: Path | bytes, name: str, max_pixels: int, bands: Bands | None) -> Image.Image:
    with _open_pillow(src, name) as img:
        _check_size(img.size, max_pixels, name)
        with _decode_errors(name):
            img.load()  # the pixel data is decoded here, after the size check
        return _pil_to_rgb(img, name, bands)


def _pil_to_rgb(img: Image.Image, name: str, bands: Bands | None) -> Image.Image:
    """Any Pillow mode -> RGB by the module's mode rules."""
    with _decode_errors(name):  # a lazily opened image decodes here
        if img.mode in _HIGH_DEPTH_MODES:
            return _stack_to_rgb(np.asarray(img)[:, :, None], _select_bands(1, name, bands), name)
        if img.has_transparency_data:
            rgba = img.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (0, 0, 0))
            rgb.paste(rgba, mask=rgba.getchannel("A"))  # composite onto black
        else:
            rgb = img.convert("RGB")
    if bands is None or tuple(bands) == (0, 1, 2):
        return rgb
    return _stack_to_rgb(np.asarray(rgb), _select_bands(3, name, bands), name)


# ---------------------------------------------------------------------------------------------
# TIFF


@dataclass
class _TiffInfo:
    """What tifffile tells from the header: size, band count and which reader should decode it."""

    width: int
    height: int
    count: int
    order: list[int]  # series axes, reordered to (Y, X, band axis, unit axes)
    needs_gdal: bool  # GeoTIFF / GDAL tags: colour interpretation and nodata live there
    is_picture: bool  # palette, CMYK, min-is-white, bilevel: Pillow converts these properly
    nodata: float | None


def _tifffile_info(tif) -> _TiffInfo:
    """Summarise an open tifffile.TiffFile from its IFDs (no pixel data is read)."""
    series = tif.series[0]
    page = series.keyframe
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"no image plane in TIFF series with axes {axes!r}")
    y, x = axes.index("Y"), axes.index("X")
    extra = [i for i in range(len(axes)) if i not in (y, x) and shape[i] != 1]
    units = [i for i in range(len(axes)) if i not in (y, x) and shape[i] == 1]
    count = shape[extra[0]] if len(extra) == 1 else (1 if not extra else -1)
    photometric = int(page.photometric)
    nodata_tag = page.tags.get(_GDAL_NODATA_TAG)
    try:
        nodata = float(str(nodata_tag.value).strip()) if nodata_tag is not None else None
    except ValueError:
        nodata = None
    return _TiffInfo(
        width=shape[x],
        height=shape[y],
        count=count,
        order=[y, x] + extra + units,
        needs_gdal=bool(page.is_geotiff) or _GDAL_METADATA_TAG in page.tags,
        is_picture=photometric in (0, 3, 5) or page.bitspersample < 8,  # MINISWHITE, PALETTE, SEPARATED
        nodata=nodata,
    )


def _load_tiff(src: Path | bytes, name: str, max_pixels: int, bands: Bands | None) -> Image.Image:
    """tifffile for plain TIFFs, rasterio for GeoTIFFs and whatever tifffile cannot decode."""
    import tifffile

    try:
        tif = tifffile.TiffFile(_stream(src))
    except Exception as exc:  # noqa: BLE001 - not parseable by tifffile: let GDAL try
        return _rasterio_fallback(src, name, max_pixels, bands, exc)
    with tif:
        with _decode_errors(name):
            info = _tifffile_info(tif)
        _check_size((info.width, info.height), max_pixels, name)
        if info.count < 0:
            raise _fail(name, f"unsupported band layout: TIFF series of shape {tif.series[0].shape} "
                        f"(axes {tif.series[0].axes}) has more than three dimensions")
        if info.needs_gdal:
            return _load_with_rasterio(src, name, max_pixels, bands)
        if info.is_picture:
            return _load_with_pillow(src, name, max_pixels, bands)
        index = _select_bands(info.count, name, bands)
        try:
            data = tif.series[0].asarray()
        except MemoryError as exc:
            raise _fail(name, "not enough memory to decode it") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. a codec tifffile lacks; GDAL has more
            tifffile_error = exc
        else:
            tifffile_error = None
    if tifffile_error is not None:
        return _rasterio_fallback(src, name, max_pixels, bands, tifffile_error)
    stack = data.transpose(info.order).reshape(info.height, info.width, -1)
    return _stack_to_rgb(stack, index, name, info.nodata)


def _rasterio_fallback(
    src: Path | bytes, name: str, max_pixels: int, bands: Bands | None, tifffile_error: Exception
) -> Image.Image:
    """Let GDAL try a TIFF tifffile failed on; if it fails too, report both reasons."""
    log.debug("tifffile cannot read %s (%s); trying rasterio", name, tifffile_error)
    try:
        return _load_with_rasterio(src, name, max_pixels, bands)
    except ImageLoadError as exc:
        if exc.__cause__ is None:
            raise  # our own verdict (size, band layout), not a decoder failure
        reason = f"tifffile: {tifffile_error}; rasterio: {exc.__cause__}"
        raise _fail(name, f"corrupt, truncated or unsupported TIFF ({reason})") from exc


@contextmanager
def _open_rasterio(src: Path | bytes):
    """A rasterio dataset over a path or in-memory bytes (header only until `read`)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with ExitStack() as cleanup:
        with _ignoring(NotGeoreferencedWarning):  # rasterio warns while opening a plain TIFF
            if isinstance(src, bytes):
                memfile = cleanup.enter_context(MemoryFile(src))
                dataset = cleanup.enter_context(memfile.open())
            else:
                dataset = cleanup.enter_context(rasterio.open(src))
        yield dataset


def _rgb_from_colorinterp(colorinterp) -> Bands | None:
    """0-based (red, green, blue) band indices when the colour interpretation names all three."""
    names = [ci.name for ci in colorinterp]
    if all(c in names for c in ("red", "green", "blue")):
        return names.index("red"), names.index("green"), names.index("blue")
    return None


def _load_with_rasterio(src: Path | bytes, name: str, max_pixels: int, bands: Bands | None) -> Image.Image:
    with _decode_errors(name), _open_rasterio(src) as ds:
        _check_size((ds.width, ds.height), max_pixels, name)
        index = _select_bands(ds.count, name, bands, _rgb_from_colorinterp(ds.colorinterp))
        data = ds.read([i + 1 for i in index])  # only the bands shown: (k, H, W)
        nodata = ds.nodata
    stack = np.moveaxis(data, 0, -1)
    return _stack_to_rgb(stack, list(range(stack.shape[2])), name, nodata)
