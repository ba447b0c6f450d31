"""Change over time: nuisance, calibration, change sentences, change maps of small GeoTIFFs the tests
write from real benchmark chips (with the real offline encoder), bad inputs, the CLI and the evaluation's
pair sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from rsrag.change.captions import ChangeCaptioner, frame_of
from rsrag.change.nuisance import jitter, shift_image
from rsrag.change.score import Calibration

CELL = 224


def write_tif(path: Path, image: np.ndarray, *, crs: str = "EPSG:32614", origin=(500_000.0, 5_200_000.0),
              res: float = 1.0, nodata=None, descriptions=None) -> Path:
    """(h, w, bands) uint8 -> a GeoTIFF on a `res` m grid."""
    data = np.moveaxis(image, 2, 0)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint8",
                   transform=from_origin(origin[0], origin[1], res, res), crs=crs, nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if descriptions:
            ds.descriptions = tuple(descriptions)
    return path


def chip(data_root: Path, name: str) -> np.ndarray:
    with Image.open(data_root / "ucm" / "images" / f"{name}.jpg") as im:
        return np.asarray(im.convert("RGB").resize((CELL, CELL), Image.BICUBIC))


def mosaic(cells: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(row, axis=1) for row in cells], axis=0)


@pytest.fixture(scope="module")
def encoder():
    from rsrag.encoders import create_encoder

    return create_encoder()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, data_root) -> tuple[Path, Path]:
    """2 x 3 cells of 224 m (1 m pixels): the top-left forest becomes dense buildings; the rest is the same
    ground seen again with other light, haze, blur and a 2 px shift."""
    folder = tmp_path_factory.mktemp("change")
    names = [["forest05", "agricultural10", "river12"], ["beach03", "agricultural22", "forest40"]]
    before = mosaic([[chip(data_root, n) for n in row] for row in names])
    after_cells = [[chip(data_root, n) for n in row] for row in names]
    after_cells[0][0] = chip(data_root, "buildings07")
    rng = np.random.default_rng(3)
    after = shift_image(mosaic([[jitter(c, rng, shift=False) for c in row] for row in after_cells]), 2, 1)
    return write_tif(folder / "area_20090818.tif", before), write_tif(folder / "area_20200831.tif", after)


# ---- nuisance, calibration, sentences ------------------------------------------------------------------
def test_jitter_keeps_shape_and_changes_colour_but_not_layout():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 10:20] = 200
    out = jitter(image, rng)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    assert out[15, 15].mean() > out[35, 35].mean() + 50  # the bright square is still where it was (+-2 px)


def test_shift_moves_pixels_and_fills_from_the_edge():
    image = np.arange(25, dtype=np.uint8).reshape(5, 5, 1).repeat(3, axis=2)
    moved = shift_image(image, 1, 2)
    assert moved[2, 1, 0] == image[0, 0, 0] and moved[4, 4, 0] == image[2, 3, 0]
    assert moved[0, 0, 0] == image[0, 0, 0]  # the uncovered border repeats the edge, no black seam


def test_calibration_puts_the_threshold_at_one_half_and_a_noisier_scene_raises_it():
    cal = Calibration.from_null(np.zeros(0), threshold=1.5, median=0.01, q99=0.21)
    assert cal.unit == pytest.approx(0.2) and cal.threshold_raw == pytest.approx(0.31)
    assert cal.score(np.array([0.31]))[0] == pytest.approx(0.5, abs=1e-4)
    assert cal.score(np.array([0.0]))[0] == 0.0 and cal.score(np.array([1.0]))[0] > 0.7
    quiet = Calibration.from_null(np.linspace(0.0, 0.2, 100), threshold=1.5, median=0.01, q99=0.21)
    assert not quiet.raised and quiet.false_alarm_estimate == 0.0 and quiet.threshold == 1.5
    noisy = Calibration.from_null(np.linspace(0.0, 0.6, 100), threshold=1.5, median=0.01, q99=0.21)
    assert noisy.raised and noisy.threshold_raw == pytest.approx(np.quantile(np.linspace(0.0, 0.6, 100), 0.99))
    assert noisy.false_alarm_estimate <= 0.02


def test_each_kind_of_concept_bank_is_calibrated_on_its_own_reference():
    """Text-only banks (the real-scene vocabulary) and prototype-pulled banks (the evaluation's) spread
    the same self-pairs differently, so each gets the reference measured with its kind."""
    from rsrag.change import score
    from rsrag.change.concepts import ConceptBank

    text = ConceptBank(["a", "b"], ["a", "b"], np.eye(2, dtype=np.float32))
    pulled = text.with_prototypes(np.eye(2, dtype=np.float32), ["a", "b"])
    assert not text.prototypes and pulled.prototypes
    assert Calibration.for_bank(text, np.zeros(0)).median == score.TEXT_REFERENCE_MEDIAN
    assert Calibration.for_bank(text, np.zeros(0)).unit == pytest.approx(
        score.TEXT_REFERENCE_Q99 - score.TEXT_REFERENCE_MEDIAN)
    cal = Calibration.for_bank(pulled, np.zeros(0), threshold=1.5)
    assert cal.median == score.REFERENCE_MEDIAN and cal.threshold == 1.5


def test_one_changed_window_among_overlapping_unchanged_ones_forms_a_region():
    """A change smaller than a chip passes in one window only: the map keeps the max over overlapping
    windows, so that window forms a region (the mean with its unchanged neighbours would drop it)."""
    from rsrag.change.concepts import ConceptBank
    from rsrag.change.detect import ChangeOptions, detect_vectors

    bank = ConceptBank(["forest", "buildings"], ["forest", "buildings"], np.eye(2, dtype=np.float32), 0.1)
    windows = [(c, r, 64, 64) for r in (0, 32, 64) for c in (0, 32, 64)]  # 3 x 3 at half overlap, 128 px
    forest = np.tile(np.array([[1.0, 0.0]], np.float32), (len(windows), 1))
    after = forest.copy()
    after[4] = [0.0, 1.0]  # the centre window (32..96) becomes buildings
    result = detect_vectors(bank, Calibration(), windows, forest, after, width=128, height=128,
                            options=ChangeOptions())
    assert result.scores[4] >= 0.5 and np.delete(result.scores, 4).max() < 0.5
    assert len(result.regions) == 1
    region = result.regions[0]
    assert region.transition == "forest -> buildings" and region.chips == [4]
    assert region.bounds == pytest.approx([32, 32, 96, 96], abs=1)  # pixel coordinates: the window itself
    assert result.heatmap.grid[0, 0] < 0.5  # outside the changed window nothing is changed
    unchanged = detect_vectors(bank, Calibration(), windows, forest, forest, width=128, height=128)
    assert not unchanged.regions and unchanged.sentence == "there is no difference"


def test_frames_take_roles_from_the_verb():
    assert frame_of("many houses are built on the bareland at the top left corner").text == \
        "many {after} are built on the {before} {where}"
    assert frame_of("the trees are replaced by houses").text == "the {before} are replaced by {after}"
    assert frame_of("some trees are removed").kind == "disappear"
    assert frame_of("many houses are built along the road") is None  # a landmark, not what was there
    assert frame_of("there is no difference") is None


def test_captioner_from_a_corpus(tmp_path):
    corpus = tmp_path / "c.jsonl"
    rows = [{"pair": "a", "split": "train", "captions": ["there is no difference"] * 3 + ["the scene is the same as before"]},
            {"pair": "b", "split": "train", "captions": ["many houses are built on the bareland"] * 3
             + ["the trees are replaced by houses"] * 2},
            {"pair": "c", "split": "test", "captions": ["a lake appears"] * 5}]
    corpus.write_text("\n".join(json.dumps(r) for r in rows))
    cap = ChangeCaptioner.from_corpus(corpus)
    assert cap.no_change == "there is no difference"
    assert cap.sentence(None, None) == "there is no difference"
    assert cap.sentence("bare land", "dense residential") == "many houses are built on the bareland"
    # the most frequent frame first, the next one for the next region; a place is added where a frame has none
    assert cap.sentence("forest", "buildings", "top left") == "many buildings are built on the trees at the top left corner"
    assert cap.sentence("forest", "buildings", "top left", variant=1) == \
        "the trees are replaced by buildings at the top left corner"
    assert "lake" not in " ".join(f.text for f in cap.frames)  # test-split sentences are not mined


# ---- change maps ----------------------------------------------------------------------------------------
def test_change_map_finds_the_new_buildings_and_ignores_nuisance(encoder, pair, tmp_path):
    from rsrag.change.detect import ChangeOptions, detect_scenes

    before, after = pair
    result = detect_scenes(encoder, before, after, options=ChangeOptions(chip=CELL, stride=1.0))
    assert len(result.windows) == 6
    by_window = dict(zip(result.windows, result.scores))
    assert by_window[(0, 0, CELL, CELL)] >= 0.5  # forest -> buildings
    unchanged = [s for w, s in by_window.items() if w != (0, 0, CELL, CELL)]
    assert max(unchanged) < 0.5, unchanged
    assert len(result.regions) == 1
    region = result.regions[0]
    assert region.area_m2 == pytest.approx(CELL * CELL, rel=0.05)  # 1 m pixels, from the CRS
    assert region.before in ("forest", "park") and region.after in ("buildings", "dense residential", "town")
    assert region.position == "top left" and region.sentence and result.sentence != "there is no difference"
    assert result.dates == ("2009-08-18T00:00:00Z", "2020-08-31T00:00:00Z")
    files = result.write(tmp_path / "out")
    with rasterio.open(files["geotiff"]) as ds:
        grid = ds.read(1)
        assert ds.crs.to_epsg() == 32614 and ds.dtypes[0] == "float32"
        assert grid[0, 0] >= 0.5 and np.nanmax(grid[-1, :]) < 0.5
    geo = json.loads(Path(files["regions"]).read_text())
    assert geo["features"][0]["properties"]["transition"] == region.transition
    lon, lat = geo["features"][0]["geometry"]["coordinates"][0][0]
    assert -100 < lon < -98 and 46 < lat < 48  # WGS84 (UTM 14N)
    assert Path(files["overlay"]).stat().st_size > 0


def test_the_same_scene_twice_is_no_change(encoder, pair):
    from rsrag.change.detect import ChangeOptions, detect_scenes

    result = detect_scenes(encoder, pair[0], pair[0], options=ChangeOptions(chip=CELL, stride=0.5))
    assert not result.regions and result.sentence == "there is no difference"
    assert np.nanmax(result.scores) < 0.5


def test_another_crs_is_reprojected_and_said(encoder, pair, tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from rsrag.change.detect import ChangeOptions, detect_scenes

    src_path = pair[1]
    out = tmp_path / "after_4326.tif"
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(out, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b), resampling=Resampling.bilinear)
    result = detect_scenes(encoder, pair[0], out, options=ChangeOptions(chip=CELL, stride=1.0))
    assert any("reprojected" in n and "EPSG:4326" in n for n in result.notes)
    by_window = dict(zip(result.windows, result.scores))
    assert by_window[(0, 0, CELL, CELL)] >= 0.5


def test_bad_inputs_are_errors_naming_the_files(encoder, pair, tmp_path):
    from rsrag.change.detect import ChangeError, ChangeOptions, detect_scenes

    before = pair[0]
    with rasterio.open(before) as ds:
        image = ds.read().transpose(1, 2, 0)
    far = write_tif(tmp_path / "far.tif", image, origin=(600_000.0, 5_300_000.0))
    with pytest.raises(ChangeError, match="do not overlap") as err:
        detect_scenes(encoder, before, far)
    assert "far.tif" in str(err.value) and "area_20090818.tif" in str(err.value)
    other = write_tif(tmp_path / "swir.tif", np.dstack([image, image[..., :1]]),
                      descriptions=["swir16", "nir", "red", "green"])
    with pytest.raises(ChangeError, match="band") as err:
        detect_scenes(encoder, before, other)
    assert "swir.tif" in str(err.value)
    empty = image.copy()
    empty[:, CELL:] = 0
    holes = write_tif(tmp_path / "holes.tif", empty, nodata=0)
    result = detect_scenes(encoder, before, holes, options=ChangeOptions(chip=CELL, stride=1.0))
    assert any("holes.tif" in w and "nodata" in w for w in result.warnings)
    assert np.isnan(result.scores).sum() == 4  # the empty chips are left out, not scored
    blank = write_tif(tmp_path / "blank.tif", np.zeros_like(image), nodata=0)
    with pytest.raises(ChangeError, match="no chip"):
        detect_scenes(encoder, before, blank)


def test_cli_change_writes_the_three_files_and_json(pair, tmp_path):
    from typer.testing import CliRunner

    from rsrag.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["change", str(pair[0]), str(pair[1]), "--out", str(out), "--json",
                                   "--chip", str(CELL), "--stride", "1"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout[res.stdout.index("{"):])
    assert body["regions"] and body["regions"][0]["area_ha"] == pytest.approx(CELL * CELL / 1e4, rel=0.05)
    assert {p.name for p in out.iterdir()} == {"change.tif", "overlay.png", "regions.geojson"}
    missing = CliRunner().invoke(app, ["change", str(pair[0]), str(tmp_path / "nope.tif")])
    assert missing.exit_code == 2 and "nope.tif" in missing.output


# ---- evaluation pairs -------------------------------------------------------------------------------------
def test_pairs_change_only_to_other_classes_and_redraw_within_one(data_root):
    from rsrag.eval.change import CHANGE, REDRAW, SAME, sample_pairs
    from rsrag.eval.mosaics import confusable, load_labelled_chips

    chips = load_labelled_chips("val")
    lookup = {c.id: c for c in chips}
    specs = sample_pairs(chips, 10, seed=5)
    assert specs == sample_pairs(chips, 10, seed=5)  # seeded
    kinds = {k for s in specs for row in s.kinds for k in row}
    assert kinds == {SAME, REDRAW, CHANGE}
    for spec in specs:
        flat = lambda g: [x for row in g for x in row]  # noqa: E731
        for b, a, kind in zip(flat(spec.before), flat(spec.after), flat(spec.kinds)):
            assert lookup[b].dataset == lookup[a].dataset == spec.dataset
            if kind == SAME:
                assert a == b
            elif kind == REDRAW:
                assert a != b and lookup[a].label == lookup[b].label
            else:
                assert not confusable(lookup[a].label, lookup[b].label)
        if spec.index % 5 == 0:
            assert CHANGE not in flat(spec.kinds)


# ---- an indexed series ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def series(tmp_path_factory, pair, encoder):
    """The pair as a two-date series in an index (one 224 px chip per cell), from the stored vectors on."""
    import shutil

    from rsrag.geo import Tiling, index_scenes
    from rsrag.index import Library

    folder = tmp_path_factory.mktemp("series")
    for path in pair:
        shutil.copy(path, folder / path.name)
    library = Library.create(tmp_path_factory.mktemp("idx"), "area", encoder=encoder)
    report = index_scenes(library, [folder], tiling=Tiling(size=CELL))
    assert report.added == 12
    return library


def test_series_change_from_stored_vectors(series, tmp_path):
    from rsrag.change.detect import ChangeError, ChangeOptions
    from rsrag.change.series import detect_dates, series_dates

    assert [s.datetime[:4] for s in series_dates(series)] == ["2009", "2020"]
    options = ChangeOptions(calibration_chips=6)
    result = detect_dates(series, "2009", "2020-08-31", options=options)
    assert len(result.windows) == 6 and len(result.regions) == 1
    region = result.regions[0]
    assert region.position == "top left" and region.area_m2 == pytest.approx(CELL * CELL, rel=0.05)
    cited = result.to_dict()["chips"]
    assert cited == [{"before": "area_20090818:s1:r0:c0", "after": "area_20200831:s1:r0:c0"}]
    with pytest.raises(ChangeError, match="2009-08-18, 2020-08-31"):
        detect_dates(series, "2015", "2020", options=options)  # a date missing from the series names the dates


def test_change_search_and_timeline(series, tmp_path):
    from rsrag.change.series import change_search, plot_timeline, timeline

    hits = change_search(series, "buildings", "2009", "2020", k=3)
    assert hits[0]["before_id"] == "area_20090818:s1:r0:c0" and hits[0]["score"] > hits[1]["score"]
    gone = change_search(series, "forest", "2009", "2020", k=1, gone=True)
    assert gone[0]["before_id"] == "area_20090818:s1:r0:c0"
    result = timeline(series, hits[0]["lon"], hits[0]["lat"], ["buildings", "forest"])
    first, last = result["points"]
    assert last["scores"]["buildings"] > first["scores"]["buildings"]
    assert first["scores"]["forest"] > last["scores"]["forest"]
    assert plot_timeline(result, tmp_path / "t.png").stat().st_size > 1000


def test_post_change(series):
    from fastapi.testclient import TestClient

    from rsrag.service.app import create_app

    client = TestClient(create_app(series))
    dates = client.get("/change/dates").json()["dates"]
    assert [d["date"] for d in dates] == ["2009-08-18", "2020-08-31"]
    assert dates[0]["image_url"] == "/scenes/area_20090818/image" and "path" not in dates[0]
    body = client.post("/change", json={"before": "2009", "after": "2020"}).json()
    assert body["regions"][0]["position"] == "top left" and body["sentence"] != "there is no difference"
    assert body["before"] == "2009-08-18T00:00:00Z" and "/" not in json.dumps(body["notes"])  # no server paths
    overlay = client.get("/change/overlay.png", params={"before": "2009", "after": "2020"})
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"
    bad = client.post("/change", json={"before": "1999", "after": "2020"})
    assert bad.status_code == 400 and "2009-08-18" in bad.text


def test_an_index_of_plain_images_has_no_series(tmp_path, encoder, data_root):
    from fastapi.testclient import TestClient

    from rsrag.data import load_dataset
    from rsrag.index import Library
    from rsrag.service.app import create_app

    library = Library.create(tmp_path, "plain", encoder=encoder)
    library.add(load_dataset("ucm", "test", limit=2))
    client = TestClient(create_app(library))
    assert client.get("/change/dates").json() == {"dates": []}
    res = client.post("/change", json={"before": "2009", "after": "2020"})
    assert res.status_code == 400 and "no dated scene" in res.text


def test_ask_answers_change_questions_and_keeps_the_pair_in_context(series):
    from rsrag.rag import ask

    first = ask(series, "What changed between 2009 and 2020?")
    assert first.generator == "change" and "region 1" in first.text and "top left" in first.text
    assert first.citations[0]["before_id"] == "area_20090818:s1:r0:c0"
    history = [{"role": "user", "content": "What changed between 2009 and 2020?"},
               {"role": "assistant", "content": first.text}]
    area = ask(series, "How much area?", history=history)
    assert "ha" in area.text and "2009-08-18" in area.text and "2020-08-31" in area.text
    when = ask(series, "When did region 1 start to change?", history=history)
    assert "started between 2009-08-18 and 2020-08-31" in when.text
    missing = ask(series, "And region 3, what changed there?", history=history)
    assert "no region 3" in missing.text
    where = ask(series, "Where?", history=history)  # a bare follow-up stays on the pair
    assert where.generator == "change" and "region 1 at the top left" in where.text


def test_what_counts_as_a_change_question():
    from rsrag.change.questions import is_change_question

    assert is_change_question("What changed?") and is_change_question("where was forest cleared?")
    assert is_change_question("new buildings since 2009?") and is_change_question("2009 vs 2020")
    assert not is_change_question("When was the Red Tower built?")  # a knowledge question, no date
    assert not is_change_question("Where?")
    assert is_change_question("Where?", [{"role": "assistant", "content": "Between 2009-08-18 and 2020-08-31: x"}])
