"""The web page at `/`, end to end in headless Chromium (Debian's `chromium`, driven by Playwright).

Text search fills the grid (thumbnail, score, label, caption), an uploaded image finds itself, a
question shows an answer with its citations, and API errors reach the page. The index uses the
test encoder (colours), so the page is what is under test, not retrieval quality.
"""

from __future__ import annotations

import shutil

import pytest
from index_helpers import HashEncoder, make_records

from rsrag.index import Library
from rsrag.service import create_app, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    records = make_records(tmp / "images", n_per_colour=4)
    lib = Library.create(tmp / "indexes", "web", encoder=HashEncoder())
    lib.add(records)
    with running_server(create_app(lib, token="")) as url:
        yield url, records


@pytest.fixture(scope="module")
def page(site):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        tab = browser.new_page()
        tab.set_default_timeout(20_000)
        yield tab
        browser.close()


def loaded_images(page) -> list[int]:
    """naturalWidth of every thumbnail in the grid, once they have all finished loading."""
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
    return page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.naturalWidth)")


def test_text_search_grid(site, page):
    url, _ = site
    page.goto(url)
    page.wait_for_function("document.getElementById('status').textContent.includes('12 items')")
    page.fill("#query", "red field")
    page.click("#search-btn")
    page.wait_for_selector("#results .card")
    cards = page.locator("#results .card")
    assert cards.count() == 12
    assert cards.first.locator(".label").inner_text() == "red"
    assert float(cards.first.locator(".score").inner_text()) > 0
    assert "red field" in cards.first.locator(".caption").inner_text()
    assert all(w > 0 for w in loaded_images(page))
    assert "results for" in page.inner_text("#summary")
    assert page.locator("#map-section").is_hidden()  # an index of plain images has no map


def test_image_search_and_errors(site, page, tmp_path):
    url, records = site
    page.goto(url)
    target = records[5]
    page.set_input_files("#image", str(target.path))
    page.click("#image-search-btn")
    page.wait_for_function(f"document.querySelector('#results .card')?.dataset.id === '{target.id}'")
    assert all(w > 0 for w in loaded_images(page))
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not an image")
    page.set_input_files("#image", str(bogus))
    page.click("#image-search-btn")
    page.wait_for_selector("#error:not([hidden])")
    assert "not a supported image" in page.inner_text("#error")


def test_question_shows_answer_and_citations(site, page):
    pytest.importorskip("rsrag.rag", reason="rsrag.rag (QA) is not installed")
    url, records = site
    page.goto(url)
    page.fill("#query", "where are the blue areas?")
    page.click("#ask-btn")
    page.wait_for_selector("#answer:not([hidden])")
    assert page.inner_text("#answer-text").strip()
    page.wait_for_selector("#citations li")
    assert page.locator("#citations li").count() >= 1 and "[1]" in page.inner_text("#citations")
    assert page.locator("#results .card").count() >= 1 and all(w > 0 for w in loaded_images(page))
    # an uploaded image alone is a question too: answered from the most similar items
    page.fill("#query", "")
    page.evaluate("document.getElementById('answer-text').textContent = ''")
    page.set_input_files("#image", str(records[9].path))
    page.click("#ask-btn")
    page.wait_for_function("document.getElementById('answer-text').textContent.trim().length > 0")
    assert page.locator("#results .card").count() >= 1
    assert page.locator("#results .card .label").first.inner_text() == records[9].label


# ---- the map of a scene index ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def geo_site(tmp_path_factory):
    """An index of two dated colour-mosaic scenes (UTM), served: the map page's data."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from rsrag.geo import Tiling, index_scenes

    tmp = tmp_path_factory.mktemp("geo-web")
    colours = {"r": (220, 20, 20), "g": (20, 200, 20), "b": (20, 20, 220), "w": (230, 230, 230)}
    grid = ["rgbw", "grbw", "wbgr", "bwrg"]
    for year in (2019, 2021):
        data = np.zeros((3, 256, 256), np.uint8)
        for i, line in enumerate(grid):
            for j, ch in enumerate(line):
                data[:, i * 64:(i + 1) * 64, j * 64:(j + 1) * 64] = np.array(colours[ch])[:, None, None]
        with rasterio.open(tmp / f"area_{year}0601.tif", "w", driver="GTiff", width=256, height=256, count=3,
                           dtype="uint8", crs="EPSG:32633", transform=from_origin(500_000, 4_600_000, 10, 10)) as ds:
            ds.write(data)
    lib = Library.create(tmp / "indexes", "geo", encoder=HashEncoder())
    index_scenes(lib, [tmp], tiling=Tiling(size=64))
    with running_server(create_app(lib, token="")) as url:
        yield url, tmp


def test_map_shows_scenes_footprints_similar_and_area(geo_site, page, tmp_path):
    url, _ = geo_site
    page.goto(url)
    page.wait_for_selector("#map-section:not([hidden])")
    page.wait_for_function("[...document.querySelectorAll('img.scene-overlay')].some(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#scene-date option").count() == 2  # two dates; the newest shown
    assert page.input_value("#scene-date").startswith("2021")
    page.fill("#opacity", "0.4")  # the slider fades the imagery
    page.wait_for_function("getComputedStyle(document.querySelector('img.scene-overlay')).opacity === '0.4'")
    page.select_option("#scene-date", index=0)  # the other date's scene replaces it
    page.wait_for_function("[...document.querySelectorAll('img.scene-overlay')].length === 1 && "
                           "document.querySelector('img.scene-overlay').src.includes('area_2019')")
    page.fill("#query", "red")
    page.select_option("#mode", "dense")
    page.click("#search-btn")
    page.wait_for_selector("#results .card")
    n_cards = page.locator("#results .card").count()
    assert page.locator("path.footprint").count() == n_cards > 0
    assert all(w > 0 for w in loaded_images(page))  # chip thumbnails read from their scene windows
    # click a footprint: more like that chip
    page.locator("path.footprint").first.click(force=True)
    page.wait_for_function("document.getElementById('summary').textContent.includes('chips like')")
    # shift + drag: only the top-left quarter of the scene
    box = page.locator("#map").bounding_box()
    overlay = page.locator("img.scene-overlay").first.bounding_box()
    x0, y0 = overlay["x"] + 2, overlay["y"] + 2
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + overlay["width"] / 2 - 4, y0 + overlay["height"] / 2 - 4, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert box["width"] > 0 and page.inner_text("#area").startswith("area ")
    page.click("#search-btn")
    page.wait_for_function("document.getElementById('summary').textContent.includes('\"red\"')")
    west, south, east, north = (float(v) for v in page.inner_text("#area").removeprefix("area ").split(","))
    lons = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
    assert lons  # hits exist inside the area
    centres = page.evaluate("""async (ids) => Promise.all(ids.map(async id =>
        (await (await fetch('/items/' + encodeURIComponent(id))).json()).metadata))""", lons)
    assert all(west - 0.01 < m["lon"] < east + 0.01 and south - 0.01 < m["lat"] < north + 0.01 for m in centres)
    shot = tmp_path / "map.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_match_levels_show_as_badges_and_a_search_for_nothing_says_so(site, page, tmp_path, monkeypatch):
    from rsrag.encoders import calibration

    url, _ = site
    lib_encoder_id = HashEncoder().id
    monkeypatch.setattr(calibration, "MATCH_FILE", tmp_path / "match.json")
    calibration.save_match_scale(lib_encoder_id, calibration.MatchScale(strong=5.0, weak=4.0), {})  # nothing reaches it
    page.goto(url)
    page.wait_for_function("document.getElementById('status').textContent.includes('12 items')")
    page.fill("#query", "red field")
    page.click("#search-btn")
    page.wait_for_selector("#results .card .match")
    assert page.locator("#results .card .match.match-none").count() == page.locator("#results .card").count()
    assert "nothing in this library looks like that" in page.inner_text("#summary")
    calibration.save_match_scale(lib_encoder_id, calibration.MatchScale(strong=-1.0, weak=-2.0), {})  # everything does
    page.click("#search-btn")
    page.wait_for_selector("#results .card .match.match-strong")
    assert "nothing in this library" not in page.inner_text("#summary")


def test_map_localizes_a_query_and_compares_two_dates(geo_site, page, tmp_path):
    url, _ = geo_site
    page.goto(url)
    page.wait_for_selector("#map-section:not([hidden])")
    page.wait_for_function("[...document.querySelectorAll('img.scene-overlay')].some(i => i.complete && i.naturalWidth > 0)")
    page.fill("#query", "red")
    page.click("#localize-btn")
    page.wait_for_function("document.getElementById('localize-status').textContent.includes('\"red\" in')")
    assert page.locator("#regions li").count() >= 1  # the top regions, or the no-match message
    if "found" in page.inner_text("#localize-status"):
        page.wait_for_selector("img.heat-overlay")
        page.fill("#heat-opacity", "0.3")
        page.wait_for_function("getComputedStyle(document.querySelector('img.heat-overlay')).opacity === '0.3'")
    # the change view: two dates of the series side by side with the change map over the later one
    page.wait_for_selector("#change-section:not([hidden])")
    assert page.locator("#change-before option").count() == 2
    page.select_option("#change-before", index=0)
    page.click("#change-btn")
    page.wait_for_function("document.getElementById('change-sentence').textContent.includes('->')")
    page.wait_for_function("['change-img-before', 'change-img-after'].every(id => "
                           "document.getElementById(id).complete && document.getElementById(id).naturalWidth > 0)")
    assert "overlay.png" in page.get_attribute("#change-img-overlay", "src")
    shot = tmp_path / "views.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_an_added_item_shows_on_the_page_at_once(tmp_path_factory, page, tmp_path):
    """POST /items then the page: the server's read snapshot follows its own write in place (no
    reload of the index), so the new item is counted and found by the very next search."""
    import base64

    import httpx

    tmp = tmp_path_factory.mktemp("web-writes")
    records = make_records(tmp / "images", n_per_colour=3)
    lib = Library.create(tmp / "indexes", "writes", encoder=HashEncoder())
    lib.add(records)
    with running_server(create_app(lib, token="secret")) as url:
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent.includes('9 items')")
        image = base64.b64encode(records[0].path.read_bytes()).decode()
        answer = httpx.post(f"{url}/items", headers={"Authorization": "Bearer secret"}, timeout=30,
                            json={"id": "fresh", "label": "red", "captions": ["a freshly added zebra tag"],
                                  "image_base64": image})
        assert answer.status_code == 201, answer.text
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent.includes('10 items')")
        page.fill("#query", "zebra")
        page.click("#search-btn")
        page.wait_for_function("document.querySelector('#results .card')?.dataset.id === 'fresh'")
        assert all(w > 0 for w in loaded_images(page))
        shot = tmp_path / "added.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
