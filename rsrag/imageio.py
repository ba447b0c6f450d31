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

Bounded decoding (what a server needs from untrusted uploads; both are off by default):
- `max_decode_bytes`: refuse, from the header and before any pixel is decoded, an image whose decode
  would produce more than this many bytes: width x height x the bands the reader must decode x
  bytes per sample (for Pillow, its in-memory bytes per pixel: 4 for RGB and other multi-band
  modes). Only the bands the band rule keeps are decoded where the layout allows it (planar TIFFs,
  one band per page, GeoTIFFs); contiguous TIFFs decode every band of a strip, so all count.
- `size_hint`: the longest side the caller needs. A larger image is read reduced by the largest
  integer factor that keeps its longest side at least `size_hint`: JPEG by DCT scaling, TIFF by
  keeping every n-th row and column of each strip or tile as it is decoded (GeoTIFFs: GDAL's
  decimated read, which uses overviews when present), other Pillow formats by reducing right after
  decoding. Images under twice `size_hint` are not reduced, so the output is unchanged for them.
Either failure is an `ImageTooLargeError` (a subclass of ImageLoadError) whose message states the limit.
TIFF pixels are decoded strip by strip (or tile by tile), so a TIFF never holds more than one decoded
strip of the bands it does not keep.

Size guard: images with more than `max_pixels` pixels (default `DEFAULT_MAX_PIXELS`, 100 MP, e.g.
10,000 x 10,000) are refused from the header, before any pixel data is decoded or allocated.
Pillow's own decompression-bomb guard also applies to Pillow-decoded files: its hard error (above
2 x `PIL.Image.MAX_IMAGE_PIXELS`, about 179 MP) surfaces as ImageLoadError; its warning is replaced
by the `max_pixels` check. To load larger images raise both limits.
"""

from __future__ import annotations

import logging
import math
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
_GDAL_CACHE_MB = 64  # GDAL's block cache (default: 5% of RAM) holds decoded blocks of every band read


class ImageLoadError(ValueError):
    """An image could not be decoded; the message names the file.

    `reason` is what is wrong, in terms anyone sending the image understands; the message adds the
    file's name and, for decoder failures, the decoder's own words (for logs, not for clients)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class ImageTooLargeError(ImageLoadError):
    """The image is above `max_pixels` or `max_decode_bytes`; the message states the limit."""


# ---------------------------------------------------------------------------------------------
# public API


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bands: Bands | None = None,
    max_decode_bytes: int | None = None,
    size_hint: int | None = None,
) -> Image.Image:
    """Decode `source` into a mode "RGB" PIL image following the module's band and bit-depth rules
    (`max_decode_bytes`, `size_hint`: see "Bounded decoding" in the module doc)."""
    name = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, name)
        return _pil_to_rgb(source, name, bands)
    if isinstance(source, np.ndarray):
        stack = _array_to_stack(source, name)
        _check_size((stack.shape[1], stack.shape[0]), max_pixels, name)
        return _stack_to_rgb(stack, _select_bands(stack.shape[2], name, bands), name)
    src = _file_source(source, name)
    limits = _Limits(max_pixels, max_decode_bytes, size_hint)
    if _is_tiff(src):
        return _load_tiff(src, name, limits, bands)
    return _load_with_pillow(src, name, limits, bands)


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


def _fail(name: str, reason: str, detail: str | None = None) -> ImageLoadError:
    """The error for `name`: `reason` for anyone, `detail` (a decoder's own message) only in the text."""
    message = f"cannot load image {name}: {reason}" + (f" ({detail})" if detail else "")
    return ImageLoadError(message, reason)


def _too_large(name: str, reason: str) -> ImageTooLargeError:
    return ImageTooLargeError(f"cannot load image {name}: {reason}", reason)


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
        raise ImageTooLargeError(f"cannot load image {name}: image too large (Pillow decompression-bomb guard: {exc})",
                                 f"image too large (above {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels)") from exc
    except UnidentifiedImageError as exc:
        raise _fail(name, "unsupported or unrecognised image format") from exc
    except MemoryError as exc:
        raise _fail(name, "not enough memory to decode it") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, struct.error, ...
        detail = f"{type(exc).__name__}: {exc}"
        raise _fail(name, "corrupt, truncated or unsupported image data", detail) from exc


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
        raise _too_large(name, f"image too large: {pixels} exceeds max_pixels={max_pixels:,}")


@dataclass(frozen=True)
class _Limits:
    """What one `load_image` call may cost: see "Bounded decoding" in the module doc."""

    max_pixels: int
    max_decode_bytes: int | None = None
    size_hint: int | None = None

    def check_decode(self, name: str, width: int, height: int, pixel_bytes: int, how: str) -> None:
        """Refuse, before decoding, a decode of width x height x `pixel_bytes` above the budget
        (`how`: what makes up a pixel's bytes, for the message)."""
        total = width * height * pixel_bytes
        if self.max_decode_bytes is not None and total > self.max_decode_bytes:
            raise _too_large(name, f"image too large to decode: {width}x{height} pixels x {pixel_bytes} bytes "
                                   f"per pixel ({how}) = {total:,} bytes exceeds the decode limit of "
                                   f"{self.max_decode_bytes:,} bytes")

    def factor(self, width: int, height: int) -> int:
        """The integer reduction for `size_hint`: the longest side stays at least `size_hint`."""
        if not self.size_hint:
            return 1
        return max(1, max(width, height) // max(1, self.size_hint))


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


def _load_with_pillow(src: Path | bytes, name: str, limits: _Limits, bands: Bands | None) -> Image.Image:
    with _open_pillow(src, name) as img:
        _check_size(img.size, limits.max_pixels, name)
        factor = limits.factor(*img.size)
        if factor > 1 and img.format == "JPEG":
            with _decode_errors(name):  # DCT scaling (1/2, 1/4, 1/8): decoded at the smaller size
                img.draft(img.mode, (math.ceil(img.width / factor), math.ceil(img.height / factor)))
            factor = limits.factor(*img.size)
        limits.check_decode(name, img.width, img.height, _pillow_pixel_bytes(img.mode), f"mode {img.mode}")
        with _decode_errors(name):
            img.load()  # the pixel data is decoded here, after the size checks
            reduced = _reduce_pillow(img, factor) if factor > 1 else img
        return _pil_to_rgb(reduced, name, bands)


def _pillow_pixel_bytes(mode: str) -> int:
    """Bytes per pixel of a decoded Pillow image (multi-band modes are stored 4 bytes per pixel)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _reduce_pillow(img: Image.Image, factor: int) -> Image.Image:
    """`img` reduced by `factor`: box-averaged, except palette, bilevel and 16-bit images (which
    Pillow cannot average), which keep every factor-th pixel. Averaged a band of rows at a time, as
    Pillow averages images with alpha through a full premultiplied copy."""
    size = (math.ceil(img.width / factor), math.ceil(img.height / factor))
    if img.mode in ("1", "P", "PA") or img.mode.startswith("I;16"):
        return img.resize(size, Image.Resampling.NEAREST)
    out = Image.new(img.mode, size)
    out.info = dict(img.info)  # e.g. a transparency key
    rows = factor * max(1, 512 // factor)  # a multiple of factor: the same blocks as one whole reduce
    for top in range(0, img.height, rows):
        out.paste(img.crop((0, top, img.width, min(top + rows, img.height))).reduce(factor), (0, top // factor))
    return out


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


def _load_tiff(src: Path | bytes, name: str, limits: _Limits, bands: Bands | None) -> Image.Image:
    """tifffile for plain TIFFs, rasterio for GeoTIFFs and whatever tifffile cannot decode."""
    import tifffile

    try:
        tif = tifffile.TiffFile(_stream(src))
    except Exception as exc:  # noqa: BLE001 - not parseable by tifffile: let GDAL try
        return _rasterio_fallback(src, name, limits, bands, exc)
    with tif:
        with _decode_errors(name):
            info = _tifffile_info(tif)
        _check_size((info.width, info.height), limits.max_pixels, name)
        if info.count < 0:
            raise _fail(name, f"unsupported band layout: TIFF series of shape {tif.series[0].shape} "
                        f"(axes {tif.series[0].axes}) has more than three dimensions")
        if info.needs_gdal:
            return _load_with_rasterio(src, name, limits, bands)
        if info.is_picture:
            return _load_with_pillow(src, name, limits, bands)
        index = _select_bands(info.count, name, bands)
        wanted = sorted(set(index))
        try:
            stack = _read_tiff_bands(tif, info, wanted, limits, name)
        except ImageLoadError:
            raise  # our own verdict (the decode budget)
        except MemoryError as exc:
            raise _fail(name, "not enough memory to decode it") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. a codec tifffile lacks; GDAL has more
            tifffile_error = exc
        else:
            tifffile_error = None
    if tifffile_error is not None:
        return _rasterio_fallback(src, name, limits, bands, tifffile_error)
    return _stack_to_rgb(stack, [wanted.index(b) for b in index], name, info.nodata)


def _read_tiff_bands(tif, info: _TiffInfo, wanted: list[int], limits: _Limits, name: str) -> np.ndarray:
    """(H', W', len(wanted)): the `wanted` bands (0-based, sorted) of a plain TIFF, every `factor`-th
    row and column (`limits.factor`), decoded strip by strip (or tile by tile) into the output.

    Only the strips of wanted bands are read and decoded where bands are separate (one band per
    page, or planar samples); contiguous samples are decoded together, so the budget counts them all.
    Layouts beyond these (volumes, odd series) are decoded whole, with every band counted."""
    series = tif.series[0]
    pages, key = series.pages, series.keyframe
    height, width = info.height, info.width
    itemsize = np.dtype(key.dtype).itemsize
    factor = limits.factor(width, height)
    out = np.zeros((math.ceil(height / factor), math.ceil(width / factor), len(wanted)), key.dtype)
    spp = key.samplesperpixel
    plain_pages = key.imagedepth == 1 and all(p is not None for p in pages)
    if plain_pages and spp == 1 and len(pages) == info.count:  # one band per page (or a single band)
        limits.check_decode(name, width, height, len(wanted) * itemsize,
                            f"{len(wanted)} of {info.count} bands x {itemsize} bytes")
        for channel, band in enumerate(wanted):
            segments = range(len(pages[band].dataoffsets))
            _decode_segments(tif, pages[band], segments, factor, out, lambda plane, c=channel: ([c], [0]))
    elif plain_pages and len(pages) == 1 and spp == info.count and key.planarconfig == 2:  # planar samples
        limits.check_decode(name, width, height, len(wanted) * itemsize,
                            f"{len(wanted)} of {info.count} bands x {itemsize} bytes")
        per_plane = len(key.dataoffsets) // spp
        segments = [plane * per_plane + i for plane in wanted for i in range(per_plane)]
        _decode_segments(tif, key, segments, factor, out, lambda plane: ([wanted.index(plane)], [0]))
    elif plain_pages and len(pages) == 1 and spp == info.count:  # contiguous samples
        limits.check_decode(name, width, height, spp * itemsize, f"all {spp} bands x {itemsize} bytes")
        channels = list(range(len(wanted)))
        _decode_segments(tif, key, range(len(key.dataoffsets)), factor, out, lambda plane: (channels, wanted))
    else:
        limits.check_decode(name, width, height, info.count * itemsize, f"all {info.count} bands x {itemsize} bytes")
        data = series.asarray()
        stack = data.transpose(info.order).reshape(height, width, -1)
        out[:] = stack[::factor, ::factor][:, :, wanted]
    return out


def _decode_segments(tif, page, segments, factor: int, out: np.ndarray, route) -> None:
    """Read and decode the given strips/tiles of `page` one at a time, writing every `factor`-th
    row and column of the samples `route(plane)` names into the channels it names."""
    keyframe = page.keyframe
    fh = tif.filehandle
    decode_args = {}
    if keyframe.compression in (6, 7, 34892, 33007):  # JPEG: tables live in the IFD
        decode_args = {"jpegtables": page.jpegtables, "jpegheader": keyframe.jpegheader}
    height, width = keyframe.imagelength, keyframe.imagewidth
    segments = list(segments)
    offsets = [page.dataoffsets[i] for i in segments]
    counts = [page.databytecounts[i] for i in segments]
    for data, index in fh.read_segments(offsets, counts, indices=segments, lock=fh.lock, sort=True):
        segment, (plane, _, y0, x0, _), _ = keyframe.decode(data, index, **decode_args)
        if segment is None:  # an empty (sparse) segment: zeros, as tifffile fills it
            continue
        rows, cols = min(segment.shape[1], height - y0), min(segment.shape[2], width - x0)  # (depth, rows, cols, samples)
        dy, dx = (-y0) % factor, (-x0) % factor  # first row/column on the output grid
        if dy >= rows or dx >= cols:
            continue
        channels, samples = route(plane)
        block = segment[0, dy:rows:factor, dx:cols:factor][:, :, samples]
        oy, ox = (y0 + dy) // factor, (x0 + dx) // factor
        out[oy:oy + block.shape[0], ox:ox + block.shape[1], channels] = block


def _rasterio_fallback(
    src: Path | bytes, name: str, limits: _Limits, bands: Bands | None, tifffile_error: Exception
) -> Image.Image:
    """Let GDAL try a TIFF tifffile failed on; if it fails too, report both reasons."""
    log.debug("tifffile cannot read %s (%s); trying rasterio", name, tifffile_error)
    try:
        return _load_with_rasterio(src, name, limits, bands)
    except ImageLoadError as exc:
        if exc.__cause__ is None:
            raise  # our own verdict (size, band layout), not a decoder failure
        reason = f"tifffile: {tifffile_error}; rasterio: {exc.__cause__}"
        raise _fail(name, "corrupt, truncated or unsupported TIFF", reason) from exc


@contextmanager
def _open_rasterio(src: Path | bytes):
    """A rasterio dataset over a path or in-memory bytes (header only until `read`)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with ExitStack() as cleanup:
        cleanup.enter_context(rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB))
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


def _load_with_rasterio(src: Path | bytes, name: str, limits: _Limits, bands: Bands | None) -> Image.Image:
    """GDAL reads only the bands shown, decimated to `limits.factor` (from overviews when present)."""
    from rasterio.enums import Resampling

    with _decode_errors(name), _open_rasterio(src) as ds:
        _check_size((ds.width, ds.height), limits.max_pixels, name)
        index = _select_bands(ds.count, name, bands, _rgb_from_colorinterp(ds.colorinterp))
        itemsize = max(np.dtype(t).itemsize for t in ds.dtypes)
        pixel_interleaved = ds.count > 1 and getattr(ds.interleaving, "name", "") == "pixel"
        decoded = ds.count if pixel_interleaved else len(set(index))  # pixel-interleaved blocks hold every band
        limits.check_decode(name, ds.width, ds.height, decoded * itemsize,
                            f"{decoded} of {ds.count} bands x {itemsize} bytes")
        factor = limits.factor(ds.width, ds.height)
        shape = (len(index), math.ceil(ds.height / factor), math.ceil(ds.width / factor))
        if factor > 1:
            data = ds.read([i + 1 for i in index], out_shape=shape, resampling=Resampling.nearest)
        else:
            data = ds.read([i + 1 for i in index])  # only the bands shown: (k, H, W)
        nodata = ds.nodata
    stack = np.moveaxis(data, 0, -1)
    return _stack_to_rgb(stack, list(range(stack.shape[2])), name, nodata)
