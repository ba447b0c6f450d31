"""load_image / image_size on small generated images: modes, bit depths, band layouts and failures."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from rsrag.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, image_size, load_image

BLOCK = 4  # columns per band block in `band_blocks`


def band_blocks(n_bands: int, dtype=np.uint16, low: int = 1000, high: int = 9000, height: int = 6):
    """(H, W, n) raster where band k is bright only in column block k, so bands stay recognisable
    after any per-band stretch."""
    stack = np.full((height, BLOCK * n_bands, n_bands), low, dtype)
    for k in range(n_bands):
        stack[:, k * BLOCK : (k + 1) * BLOCK, k] = high
    return stack


def bright_blocks(img: Image.Image) -> list[int]:
    """For each of R, G, B: which column block is brightest, i.e. which source band it shows."""
    arr = np.asarray(img, dtype=np.float64)
    n_blocks = arr.shape[1] // BLOCK
    means = arr.reshape(arr.shape[0], n_blocks, BLOCK, 3).mean(axis=(0, 2))  # (blocks, channels)
    return [int(means[:, c].argmax()) for c in range(3)]


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A real 1x1 grey PNG whose IHDR is patched (CRC included) to claim width x height."""
    buf = BytesIO()
    Image.new("L", (1, 1), 7).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def tiff_claiming_size(width: int, height: int) -> bytes:
    """A minimal uncompressed 8-bit TIFF header claiming width x height, with only 4 data bytes."""
    entries = [
        (256, 4, width),  # ImageWidth, LONG
        (257, 4, height),  # ImageLength
        (258, 3, 8),  # BitsPerSample, SHORT
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # Photometric: min-is-black
        (273, 4, 0),  # StripOffsets, patched below
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, width * height),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHII", tag, kind, 1, data_offset if tag == 273 else value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 4


# --- Pillow modes ------------------------------------------------------------------------------


def test_grayscale_is_replicated(tmp_path):
    path = save(Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)), tmp_path / "g.png")
    img = load_image(path)
    arr = np.asarray(img)
    assert img.mode == "RGB" and img.size == (8, 6)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[..., 0].tolist() == np.arange(48).reshape(6, 8).tolist()  # uint8: unchanged


def test_rgba_composited_onto_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    arr = np.asarray(load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")))
    assert arr[:, :2].tolist() == [[[200, 100, 50]] * 2] * 4
    assert (arr[:, 2:] == 0).all()


def test_la_and_palette_and_cmyk(tmp_path):
    la = Image.merge("LA", [Image.new("L", (3, 3), 120), Image.new("L", (3, 3), 255)])
    assert np.asarray(load_image(la)).tolist() == [[[120] * 3] * 3] * 3
    palette = Image.new("RGB", (5, 5), (10, 200, 30)).convert("P", palette=Image.ADAPTIVE)
    assert palette.mode == "P"
    assert np.asarray(load_image(save(palette, tmp_path / "p.png")))[0, 0].tolist() == [10, 200, 30]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(load_image(save(cmyk, tmp_path / "c.jpg", quality=95)))[0, 0, 0] > 200


def test_16bit_png_is_stretched(tmp_path):
    ramp = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    path = save(Image.fromarray(ramp), tmp_path / "d16.png")
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(load_image(path))
    assert arr.min() == 0 and arr.max() == 255  # the 2..98 percentile range spans 0..255 (ends clipped)
    assert (np.diff(arr[..., 0].ravel().astype(int)) >= 0).all()  # monotone mapping
    assert (arr[..., 0] == arr[..., 2]).all()


# --- TIFF --------------------------------------------------------------------------------------


def test_16bit_single_band_tiff(tmp_path):
    data = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data)
    arr = np.asarray(load_image(tmp_path / "s.tif"))
    assert arr.shape == (8, 8, 3) and arr.min() == 0 and arr.max() == 255
    assert (arr[..., 0] == arr[..., 1]).all()


def test_constant_band_becomes_zero(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.full((5, 5), 4242, np.uint16))
    assert not np.asarray(load_image(tmp_path / "c.tif")).any()


def test_four_band_uint16_uses_first_three_or_given_bands(tmp_path):
    path = tmp_path / "ms.tif"
    tifffile.imwrite(path, band_blocks(4), photometric="minisblack", planarconfig="contig")
    assert bright_blocks(load_image(path)) == [0, 1, 2]
    assert bright_blocks(load_image(path, bands=(3, 2, 1))) == [3, 2, 1]
    with pytest.raises(ImageLoadError, match="bands"):
        load_image(path, bands=(0, 1, 4))


def test_planar_and_contiguous_tiffs_agree(tmp_path):
    stack = band_blocks(3, np.uint8, low=10, high=200)  # uint8, not stretched
    tifffile.imwrite(tmp_path / "contig.tif", stack, photometric="rgb", planarconfig="contig")
    planar_data = np.moveaxis(stack, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar_data, photometric="rgb", planarconfig="separate")
    contig, planar = load_image(tmp_path / "contig.tif"), load_image(tmp_path / "planar.tif")
    assert np.array_equal(np.asarray(contig), stack)
    assert np.array_equal(np.asarray(planar), stack)
    multi = tmp_path / "planar5.tif"
    five = np.moveaxis(band_blocks(5), -1, 0)
    tifffile.imwrite(multi, five, photometric="minisblack", planarconfig="separate")
    assert bright_blocks(load_image(multi)) == [0, 1, 2]


def test_float_tiff_with_nan(tmp_path):
    data = np.linspace(-1, 1, 100, dtype=np.float32).reshape(10, 10)
    data[0, :5] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", data)
    arr = np.asarray(load_image(tmp_path / "f.tif"))
    assert (arr[0, :5] == 0).all()
    assert arr[-1, -1, 0] == 255 and arr[1, 0, 0] < 10


def test_geotiff_colorinterp_order(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.enums import ColorInterp
    from rasterio.transform import Affine

    stack = band_blocks(4)
    stack[0, 0, :] = 0  # a nodata pixel
    path = tmp_path / "geo.tif"
    profile = dict(driver="GTiff", width=stack.shape[1], height=stack.shape[0], count=4, dtype="uint16",
                   crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=0)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.moveaxis(stack, -1, 0))
        ds.colorinterp = [ColorInterp.blue, ColorInterp.red, ColorInterp.green, ColorInterp.undefined]
    img = load_image(path)
    assert bright_blocks(img) == [1, 2, 0]  # red is band 2, green band 3, blue band 1
    assert np.asarray(img)[0, 0].tolist() == [0, 0, 0]
    assert bright_blocks(load_image(path.read_bytes())) == [1, 2, 0]  # bytes go through GDAL too
    assert bright_blocks(load_image(path, bands=(0, 1, 2))) == [0, 1, 2]  # explicit bands win
    assert image_size(path) == (stack.shape[1], stack.shape[0])


def test_two_band_tiff_is_refused(tmp_path):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, band_blocks(2), photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageLoadError, match="2 bands") as err:
        load_image(path)
    assert str(path) in str(err.value)


# --- other sources -----------------------------------------------------------------------------


def test_arrays_bytes_and_pil_sources(tmp_path):
    hwc = band_blocks(3, np.uint8, low=10, high=200)
    assert np.array_equal(np.asarray(load_image(hwc)), hwc)
    assert np.array_equal(np.asarray(load_image(np.moveaxis(hwc, -1, 0).copy())), hwc)  # CHW (3, 6, 12)
    assert bright_blocks(load_image(np.moveaxis(band_blocks(6, np.float32, height=10), -1, 0))) == [0, 1, 2]
    assert load_image(np.zeros((5, 7), np.int16)).size == (7, 5)
    path = save(Image.fromarray(hwc), tmp_path / "x.png")
    assert np.array_equal(np.asarray(load_image(path.read_bytes())), hwc)
    assert np.array_equal(np.asarray(load_image(Image.open(path))), hwc)
    assert image_size(path.read_bytes()) == (12, 6) and image_size(hwc) == (12, 6)
    with pytest.raises(ImageLoadError, match="<array>.*band layout"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ImageLoadError, match="<array>.*2 bands"):
        load_image(np.zeros((8, 8, 2), np.uint8))


# --- failures ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="not found") as err:
        load_image(missing)
    assert str(missing) in str(err.value)


def test_truncated_jpeg_names_the_file(tmp_path):
    full = BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as err:
        load_image(path)
    assert str(path) in str(err.value)
    with pytest.raises(ImageLoadError, match="<bytes>"):
        load_image(full.getvalue()[:200])


def test_garbage_is_unsupported_format(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="unsupported or unrecognised image format"):
        load_image(path)


def test_huge_png_header_refused_before_decoding(tmp_path, monkeypatch):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixel data must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(50_000, 50_000))
    with pytest.raises(ImageLoadError, match="too large") as err:  # Pillow's own hard limit
        load_image(path)
    assert str(path) in str(err.value)
    # with Pillow's guard out of the way, max_pixels alone refuses it, still before decoding
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert image_size(path) == (50_000, 50_000)
    with pytest.raises(ImageLoadError, match="too large.*max_pixels"):
        load_image(path)


def test_huge_tiff_header_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.tif"
    path.write_bytes(tiff_claiming_size(50_000, 50_000))
    assert path.stat().st_size < 200
    assert image_size(path) == (50_000, 50_000)
    with pytest.raises(ImageLoadError, match="too large") as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_max_pixels_applies_to_every_source(tmp_path):
    small = np.zeros((40, 40, 3), np.uint8)
    path = save(Image.fromarray(small), tmp_path / "s.png")
    tifffile.imwrite(tmp_path / "s.tif", small, photometric="rgb")
    for source in (path, path.read_bytes(), tmp_path / "s.tif", small, Image.fromarray(small)):
        with pytest.raises(ImageLoadError, match="too large"):
            load_image(source, max_pixels=1000)
        assert load_image(source).size == (40, 40)
    assert DEFAULT_MAX_PIXELS == 100_000_000
