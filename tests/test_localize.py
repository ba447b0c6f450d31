"""Semantic localization: heatmaps on scene grids, regions, mosaics, the localizer, CLI and service.

Most tests use a toy dense encoder (colours in, colours out) on tiny synthetic GeoTIFFs, so they check
the geometry and the decisions exactly and run in milliseconds; one test runs the real rs-lite dense
path on a few chips.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from rsrag.encoders import l2_normalize, register_backend
from rsrag.eval.localize import auc_roc, map_metrics, query_for, selo_metrics
from rsrag.eval.mosaics import (LabelledChip, build_mosaic, confusable, render, sample_mosaics)
from rsrag.geo.heatmap import (HeatmapAccumulator, is_flat, merge_regions, overlay_rgba, regions, regions_geojson,
                               to_mercator, write_geotiff)
from rsrag.localize import LocalizeError, LocalizeSettings, Localizer, array_features, indexed_features, scene_features
from rsrag.localize.api import features_for, ground
from rsrag.localize.features import PatchBank, chip_windows_for, count_windows
from index_helpers import HashEncoder

UTM = CRS.from_epsg(32614)


@register_backend("test-dense-hash")
class DenseHash(HashEncoder):
    """HashEncoder with a dense path: every 2x2-pixel cell of the 8-px input becomes a vector the way
    a whole image does, so the cells' colours are localizable (a 4x4 map per chip)."""

    id = "test-dense-hash@v1"

    def encode_patch_arrays(self, batch: np.ndarray, normalize: bool = True) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        n = len(batch)
        cells = batch.reshape(n, 3, 4, 2, 4, 2).mean(axis=(3, 5))  # (n, 3, 4, 4)
        out = np.zeros((n, 4, 4, self.dim), np.float32)
        out[..., :3] = (cells.transpose(0, 2, 3, 1) - 0.5) * 4
        out[..., 3] = 0.05
        return l2_normalize(out) if normalize else out


def write_scene(path: Path, *, crs: CRS | None = UTM, size: int = 448, red: tuple[int, int, int, int] = (224, 0, 224, 224),
                res: float = 5.0) -> Path:
    """A green GeoTIFF with one red rectangle (row, col, height, width)."""
    data = np.zeros((3, size, size), np.uint8)
    data[1] = 180
    r, c, h, w = red
    data[:, r:r + h, c:c + w] = np.array([200, 20, 20], np.uint8)[:, None, None]
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                   transform=from_origin(500_000.0, 5_200_000.0, res, res))
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


SMALL = LocalizeSettings(chip=112, scales=(1, 2), overlap=0.5)


# ---- heatmap -------------------------------------------------------------------------------------------


def test_accumulator_mean_max_and_coarse_grid():
    acc = HeatmapAccumulator(100, 80, factor=2, transform=Affine(5, 0, 500_000, 0, -5, 5_200_000), crs=UTM)
    acc.add((0, 0, 40, 40), 1.0)
    acc.add((20, 20, 40, 40), 3.0)
    mean, top = acc.result("mean"), acc.result("max")
    assert mean.shape == (40, 50) and mean.transform.a == 10 and mean.transform.c == 500_000
    assert mean.grid[5, 5] == 1.0 and mean.grid[15, 15] == 2.0 and mean.grid[25, 25] == 3.0
    assert top.grid[15, 15] == 3.0
    assert np.isnan(mean.grid[39, 49])  # nothing covered it
    col, row, value = mean.peak()
    assert value == 3.0 and 20 <= row < 60 and 20 <= col < 60 and not (row < 40 and col < 40)


def test_add_scalars_matches_one_by_one_and_patch_maps_spread_over_their_window():
    rng = np.random.default_rng(0)
    windows = np.c_[rng.integers(0, 300, (200, 2)), np.full((200, 2), 64)]
    scores = rng.random(200)
    one, many = HeatmapAccumulator(400, 400, factor=3), HeatmapAccumulator(400, 400, factor=3)
    for w, s in zip(windows, scores):
        one.add(tuple(w), float(s))
    many.add_scalars(windows, scores)
    for mode in ("mean", "max"):
        np.testing.assert_allclose(one.result(mode).grid, many.result(mode).grid, rtol=1e-6)
    acc = HeatmapAccumulator(40, 40)
    acc.add((0, 0, 40, 40), np.array([[0.0, 1.0], [0.0, 1.0]]))
    grid = acc.result().grid
    assert grid[:, :10].max() == pytest.approx(0.0) and grid[:, 30:].min() == pytest.approx(1.0)
    assert np.all(np.diff(grid[20]) >= 0)  # bilinear, monotone from left to right


def test_geotiff_overlay_and_mercator(tmp_path):
    grid = np.full((20, 30), np.nan, np.float32)
    grid[5:10, 5:10] = 0.9
    grid[10:, :] = 0.1
    transform = Affine(10, 0, 500_000, 0, -10, 5_200_000)
    path = write_geotiff(tmp_path / "h.tif", grid, transform, UTM)
    with rasterio.open(path) as ds:
        assert ds.crs == UTM and ds.transform == transform and ds.dtypes[0] == "float32"
        back = ds.read(1)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(grid))
    rgba = overlay_rgba(grid)
    assert rgba[0, 0, 3] == 0 and rgba[6, 6, 3] > 0  # transparent where no data
    assert overlay_rgba(np.full((4, 4), 0.2, np.float32))[..., 3].max() == 0  # flat: nothing drawn
    assert is_flat(np.full((3, 3), 0.5)) and not is_flat(grid)
    from rsrag.geo.heatmap import Heatmap

    warped, (south, west, north, east) = to_mercator(Heatmap(grid, transform, UTM))
    assert south < north and west < east and -99.1 < west < -98.9  # UTM 14N near its central meridian
    assert np.nanmax(warped) == pytest.approx(0.9, abs=0.05)


def test_regions_areas_and_coordinates():
    grid = np.zeros((40, 40), np.float32)
    grid[2:6, 2:6] = 0.9  # 16 cells
    grid[20:30, 20:25] = 0.7  # 50 cells
    transform = Affine(10, 0, 500_000, 0, -10, 5_200_000)  # 10 m cells
    found = regions(grid, transform, UTM, threshold=0.5)
    assert [r.rank for r in found] == [1, 2] and found[0].score == pytest.approx(0.9)
    assert found[0].area_m2 == pytest.approx(1600) and found[1].area_m2 == pytest.approx(5000)
    assert found[1].cells == 50 and found[1].mean == pytest.approx(0.7)
    lon, lat = found[0].lonlat.centroid.coords[0]
    assert -99.1 < lon < -98.9 and 46.9 < lat < 47.0
    feature = regions_geojson(found)["features"][0]
    assert feature["properties"]["coordinates"] == "wgs84" and feature["geometry"]["type"] == "Polygon"
    # geographic CRS: geodesic area; no CRS: pixel coordinates and no area
    geo = regions(grid, Affine(0.0001, 0, -99, 0, -0.0001, 47), CRS.from_epsg(4326), 0.5)
    assert geo[0].area_m2 == pytest.approx(16 * 7.6 * 11.1, rel=0.05)  # 0.0001 deg ~ 7.6 m E-W, 11.1 m N-S at 47 N
    pixel = regions(grid, Affine.scale(4), None, 0.5)
    assert pixel[0].area_m2 is None and pixel[0].lonlat is None and pixel[0].geometry.bounds == (8, 8, 24, 24)
    assert regions_geojson(pixel)["features"][0]["properties"]["coordinates"] == "pixel"
    assert len(merge_regions(found + regions(grid, transform, UTM, threshold=0.8), UTM)) == 2  # overlapping ones merge


# ---- mosaics and metrics ---------------------------------------------------------------------------------


def _chips(tmp_path: Path) -> list[LabelledChip]:
    colours = {"river": (20, 60, 200), "forest": (20, 140, 40), "desert": (220, 200, 120), "airport": (128, 128, 128),
               "denseresidential": (180, 90, 60), "mediumresidential": (170, 100, 70)}
    chips = []
    for label, rgb in colours.items():
        for i in range(6):
            path = tmp_path / f"{label}{i}.png"
            Image.fromarray(np.full((32, 32, 3), rgb, np.uint8)).save(path)
            chips.append(LabelledChip(f"x/{label}{i}", path, label, "x"))
    return chips


def test_build_mosaic_plain_and_blended():
    cells = [[np.full((10, 10, 3), 50 * (r * 2 + c), np.uint8) for c in range(2)] for r in range(2)]
    labels = [["a", "b"], ["b", "a"]]
    plain = build_mosaic(cells, labels, cell=16, target="a")
    assert plain.image.shape == (32, 32, 3) and plain.image[20, 5, 0] == 100 and plain.image[15, 16, 0] == 50
    np.testing.assert_array_equal(plain.mask(), np.kron([[1, 0], [0, 1]], np.ones((16, 16))).astype(bool))
    blended = build_mosaic(cells, labels, cell=16, blend=4)
    assert blended.image[4, 4, 0] == 0 and 10 < blended.image[4, 15, 0] < 40  # cross-faded at the cell edge
    assert blended.image[2, 2, 0] == 0 and blended.image[28, 28, 0] == 150  # cell interiors untouched
    with pytest.raises(ValueError):
        build_mosaic(cells, [["a"]], cell=16)


def test_sample_mosaics_is_seeded_and_keeps_confusable_classes_out(tmp_path):
    chips = _chips(tmp_path)
    specs = sample_mosaics(chips, 12, rows=3, cols=3, seed=3)
    assert specs == sample_mosaics(chips, 12, rows=3, cols=3, seed=3)
    assert specs != sample_mosaics(chips, 12, rows=3, cols=3, seed=4)
    lookup = {c.id: c for c in chips}
    for spec in specs:
        labels = [lookup[i].label for row in spec.ids for i in row]
        assert 1 <= labels.count(spec.target) <= 4 and len(set(i for row in spec.ids for i in row)) == 9
        assert all(label == spec.target or not confusable(label, spec.target) for label in labels)
    assert confusable("DenseResidential", "mediumresidential") and not confusable("River", "desert")
    mosaic = render(specs[0], chips, cell=16)
    assert mosaic.image.shape == (48, 48, 3) and mosaic.mask().sum() == 256 * mosaic.cell_mask().sum()


def test_auc_and_selo_metrics():
    assert auc_roc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auc_roc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    target = np.zeros((20, 20), bool)
    target[:10, :10] = True
    centres = np.array([[5.0, 5.0]])
    perfect = selo_metrics(target.astype(np.float32), target, centres)
    assert perfect["rsu"] == pytest.approx(1.0) and perfect["ras"] < 0.05 and perfect["rda"] == 0.0
    wrong = selo_metrics((~target).astype(np.float32), target, centres)
    assert wrong["rsu"] == 0.0 and wrong["ras"] > perfect["ras"] and wrong["rmi"] < perfect["rmi"]
    assert query_for("StorageTanks") == "there are storage tanks in the image."


# ---- the localizer ---------------------------------------------------------------------------------------


def test_chip_windows_cover_the_scene_and_are_counted():
    chips = chip_windows_for(500, 300, 112, (1, 2), 0.5)
    assert len(chips) == count_windows(500, 300, 112, (1, 2), 0.5)
    for scale in (1, 2):
        wins = [w for w, s in chips if s == scale]
        assert max(c + w for c, _, w, _ in wins) == 500 and max(r + h for _, r, _, h in wins) == 300


def test_patch_bank_is_compact_and_close():
    rng = np.random.default_rng(1)
    patches = l2_normalize(rng.standard_normal((5, 7, 7, 64)).astype(np.float32))
    bank = PatchBank.quantize(patches)
    assert bank.q.dtype == np.int8 and bank.q.nbytes * 4 == patches.nbytes
    cos = (bank.vectors() * patches).sum(-1) / np.linalg.norm(bank.vectors(), axis=-1)
    assert cos.min() > 0.999


def test_localize_scene_finds_the_red_corner_and_writes_outputs(tmp_path):
    path = write_scene(tmp_path / "scene.tif")
    encoder = DenseHash()
    features = scene_features(encoder, path, chip=SMALL.chip, scales=SMALL.scales, overlap=SMALL.overlap)
    assert features.crs == UTM and features.patches is not None and len(features.patch_rows) == 49
    result = Localizer(encoder, SMALL).localize(features, "red")
    col, row, value = result.peak
    assert result.match and 224 <= row < 448 and 0 <= col < 224 and value > 0.9
    top = result.regions[0]
    assert top.area_m2 == pytest.approx(224 * 224 * 25, rel=0.3)  # the red square, 5 m pixels
    x0, y0, x1, y1 = top.geometry.bounds
    assert x0 == pytest.approx(500_000, abs=300) and y1 == pytest.approx(5_200_000 - 224 * 5, abs=300)
    # patch refinement sharpens the edge the chip level blurs
    inside, edge = (100, 300), (250, 300)  # (col, row): in the red square, and just right of it
    assert result.heatmap.value_at(*edge) < result.chip_map.value_at(*edge)
    assert result.heatmap.value_at(*inside) > 0.9
    # only the best chip refined: patch scores change the map inside that chip only
    one = Localizer(encoder, LocalizeSettings(chip=112, scales=(1, 2), dense_top=1)).localize(features, "red")
    changed = np.abs(one.heatmap.grid - one.chip_map.grid) > 1e-6
    rows, cols = np.nonzero(changed)
    assert changed.any() and rows.max() - rows.min() < 112 and cols.max() - cols.min() < 112
    paths = result.save(tmp_path / "out", background=np.zeros((448, 448, 3), np.uint8))
    with rasterio.open(paths["heatmap"]) as ds:
        assert ds.crs == UTM and ds.width == 448 and ds.dtypes[0] == "float32"
    collection = json.loads(paths["regions"].read_text())
    assert collection["match"] and collection["features"][0]["properties"]["area_m2"] > 0
    assert Image.open(paths["overlay"]).size == (448, 448)


def test_a_query_matching_nothing_is_flat_and_says_so(tmp_path):
    features = scene_features(DenseHash(), write_scene(tmp_path / "scene.tif"), chip=112, scales=(1, 2))
    result = Localizer(DenseHash(), SMALL).localize(features, "blue")
    assert not result.match and result.regions == [] and "nothing here matches" in result.message
    assert np.nanmax(result.heatmap.grid) < 0.1  # calibrated, not rescaled into a hot spot
    paths = result.save(tmp_path / "out")
    assert np.asarray(Image.open(paths["overlay"]))[..., 3].max() == 0


def test_no_crs_gives_pixel_polygons_and_the_budget_is_named(tmp_path):
    path = write_scene(tmp_path / "plain.tif", crs=None)
    features = scene_features(DenseHash(), path, chip=112, scales=(1, 2))
    result = Localizer(DenseHash(), SMALL).localize(features, "red")
    assert result.match and result.heatmap.crs is None
    region = result.regions[0]
    assert region.area_m2 is None and region.lonlat is None
    x0, y0, x1, y1 = region.geometry.bounds  # pixel coordinates, rows down
    assert x0 == pytest.approx(0, abs=30) and y0 == pytest.approx(224, abs=40) and y1 == pytest.approx(448, abs=5)
    with pytest.raises(ValueError, match="limit of 5 chips"):
        scene_features(DenseHash(), path, chip=112, scales=(1, 2), max_chips=5)
    with pytest.raises(LocalizeError, match="limit of 5 chips"):
        features_for(np.zeros((600, 600, 3), np.uint8), encoder=DenseHash(), settings=LocalizeSettings(max_chips=5))


def test_indexed_scene_reuses_stored_vectors_and_caches_patches(tmp_path, monkeypatch):
    from rsrag.geo import Tiling, index_scenes
    from rsrag.index.library import Library
    from rsrag.localize import store

    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path / "cache"))
    store.forget()
    (tmp_path / "scenes").mkdir()
    path = write_scene(tmp_path / "scenes" / "area_20200105.tif")
    encoder = DenseHash()
    lib = Library.create(tmp_path / "idx", "geo", encoder=encoder)
    index_scenes(lib, [path], tiling=Tiling(size=112, overlap=56, scales=(1, 2)))
    encoded = encoder.images_encoded
    features = indexed_features(lib, "area_20200105")
    assert len(features) == lib.count() and features.crs == UTM and features.patches is not None
    stores = list((tmp_path / "cache" / "localize").iterdir())
    assert len(stores) == 1 and np.load(stores[0] / "q.npy").dtype == np.int8
    result = Localizer(encoder, SMALL).localize(features, "red")
    assert result.match and 224 <= result.peak[1] < 448 and result.peak[0] < 224
    store.forget()
    before = encoder.images_encoded
    indexed_features(lib, "area_20200105")  # patches come from the cache file, not the encoder
    assert encoder.images_encoded == before and before > encoded - 1
    with pytest.raises(LocalizeError, match="no chips of scene"):
        indexed_features(lib, "elsewhere")


def test_ground_gives_a_mask_over_the_red_part():
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 1] = 180  # green
    image[:, 128:] = (200, 20, 20)
    out = ground(image, "red", encoder=DenseHash())
    assert out.mask.shape == (256, 256) and out.localization.match
    assert out.mask[:, 160:].mean() > 0.9 and out.mask[:, :96].mean() < 0.1
    assert out.regions and out.regions[0].area_m2 is None
    nothing = ground(image, "blue", encoder=DenseHash())
    assert not nothing.mask.any() and not nothing.localization.match


def test_map_metrics_on_a_mosaic(tmp_path):
    chips = _chips(tmp_path)
    spec = sample_mosaics(chips, 1, rows=3, cols=3, seed=0)[0]
    mosaic = render(spec, chips, cell=32)
    features = array_features(DenseHash(), mosaic.image, chip=32, scales=(1,), overlap=0.5)
    result = Localizer(DenseHash(), LocalizeSettings(chip=32, scales=(1,))).localize(features, "white")
    metrics = map_metrics(mosaic, result.heatmap)
    assert set(metrics) == {"hit_at_1", "auc", "rsu", "ras", "rda", "rmi"}
    assert metrics["hit_at_1"] in (0.0, 1.0) and 0.0 <= metrics["auc"] <= 1.0 and 0.0 <= metrics["rsu"] <= 1.0


# ---- the real encoder, CLI and service -------------------------------------------------------------------


def test_rs_lite_patch_features_average_to_the_image_vector():
    from rsrag.encoders import create_encoder

    encoder = create_encoder("rs-lite")
    pixels = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    raw = encoder.encode_patch_arrays(pixels, normalize=False)
    assert raw.shape == (2, 7, 7, encoder.dim)
    np.testing.assert_allclose(l2_normalize(raw.mean((1, 2))), encoder.encode_arrays(pixels), atol=1e-4)
    unit = encoder.encode_patch_arrays(pixels)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-5)


def test_cli_localize_and_ground(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import rsrag.encoders
    from rsrag.cli import app

    monkeypatch.setattr(rsrag.encoders, "create_encoder", lambda *a, **k: DenseHash())
    scene = write_scene(tmp_path / "scene.tif")
    runner = CliRunner()
    res = runner.invoke(app, ["localize", str(scene), "red", "--chip", "112", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{"):])
    assert data["match"] and data["regions"][0]["area_m2"] > 0
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"heatmap.tif", "overlay.png", "regions.geojson"}
    res = runner.invoke(app, ["localize", str(scene), "blue", "--chip", "112"])
    assert res.exit_code == 0 and "no match" in res.output
    res = runner.invoke(app, ["localize", str(tmp_path / "missing.tif"), "red"])
    assert res.exit_code == 2 and "no such file" in res.output
    image = tmp_path / "img.png"
    pixels = np.full((128, 128, 3), (20, 180, 20), np.uint8)
    pixels[:64] = (200, 20, 20)
    Image.fromarray(pixels).save(image)
    res = runner.invoke(app, ["ground", str(image), "red", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    mask = np.asarray(Image.open(tmp_path / "g" / "mask.png"))
    assert mask.shape == (128, 128) and mask[:48].mean() > 200 and mask[80:].mean() < 50


def test_service_localize_indexed_scene_and_upload(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from rsrag.geo import Tiling, index_scenes
    from rsrag.index.library import Library
    from rsrag.localize import store
    from rsrag.service.app import create_app

    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path / "cache"))
    store.forget()
    (tmp_path / "scenes").mkdir()
    path = write_scene(tmp_path / "scenes" / "area_20200105.tif")
    lib = Library.create(tmp_path / "idx", "geo", encoder=DenseHash())
    index_scenes(lib, [path], tiling=Tiling(size=112, overlap=56, scales=(1, 2)))
    client = TestClient(create_app(lib, token=""))
    res = client.post("/localize", json={"scene": "area_20200105", "query": "red", "top": 3})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["match"] and body["overlay_bounds"][0] < body["overlay_bounds"][2]
    assert body["regions"]["features"][0]["properties"]["coordinates"] == "wgs84"
    assert client.post("/localize", json={"scene": "nowhere", "query": "red"}).status_code == 404
    buf = tmp_path / "up.png"
    pixels = np.full((600, 600, 3), (20, 180, 20), np.uint8)
    pixels[:, :200] = (200, 20, 20)
    Image.fromarray(pixels).save(buf)
    res = client.post("/localize/image", files={"file": ("up.png", buf.read_bytes(), "image/png")},
                      data={"query": "red"})
    assert res.status_code == 200, res.text
    assert res.json()["match"] and res.json()["overlay_bounds"] is None
    assert res.json()["regions"]["features"][0]["properties"]["coordinates"] == "pixel"


def test_web_page_shows_the_heatmap_with_its_opacity_and_regions(tmp_path):
    """The map page: Localize draws the heatmap over the scene, the slider fades it, regions are listed."""
    import shutil

    from rsrag.geo import Tiling, index_scenes
    from rsrag.index.library import Library
    from rsrag.service import create_app, running_server

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    playwright = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("chromium is not installed")
    (tmp_path / "scenes").mkdir()
    write_scene(tmp_path / "scenes" / "area_20200105.tif")
    lib = Library.create(tmp_path / "idx", "geo", encoder=DenseHash())
    index_scenes(lib, [tmp_path / "scenes"], tiling=Tiling(size=112, overlap=56, scales=(1, 2)))
    with running_server(create_app(lib, token="")) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_selector("#map-section:not([hidden])")
        page.fill("#query", "red")
        page.click("#localize-btn")
        page.wait_for_function("[...document.querySelectorAll('img.heat-overlay')].some(i => i.complete && i.naturalWidth > 0)")
        assert "found" in page.inner_text("#localize-status")
        assert page.locator("#regions li.region").count() >= 1
        assert page.locator("path.heat-region").count() >= 1
        page.fill("#heat-opacity", "0.3")
        page.wait_for_function("getComputedStyle(document.querySelector('img.heat-overlay')).opacity === '0.3'")
        page.fill("#query", "blue")
        page.click("#localize-btn")
        page.wait_for_function("document.getElementById('localize-status').textContent.includes('no match')")
        assert "nothing here matches" in page.inner_text("#regions")
        browser.close()
