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
