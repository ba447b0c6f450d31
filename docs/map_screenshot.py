"""Draws docs/map.jpg: the web page's map over the NAIP tile of the shared data, after a search.

    python docs/map_screenshot.py

Builds a small scene index of the NAIP dates (224 px chips) in a temporary folder with the default
encoder, serves it on loopback, searches it in headless Chromium (Debian's `chromium`, driven by
Playwright) and saves the page. Needs `make setup` (the map library) and chromium.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rsrag.config import data_root  # noqa: E402
from rsrag.geo import Tiling, index_scenes  # noqa: E402
from rsrag.index import Library  # noqa: E402
from rsrag.service import create_app, running_server  # noqa: E402


def main() -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    naip = sorted((data_root() / "geo" / "naip").glob("*.tif"))
    with tempfile.TemporaryDirectory() as tmp:
        lib = Library.create(Path(tmp) / "indexes", "naip")
        index_scenes(lib, [naip[0], naip[-1]], tiling=Tiling(size=224, overlap=56))  # the first and last dates
        with running_server(create_app(lib, token="")) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            page.wait_for_function("[...document.querySelectorAll('img.scene-overlay')].some(i => i.complete && i.naturalWidth > 0)")
            page.fill("#query", "a lake with water")
            page.select_option("#mode", "dense")
            page.click("#search-btn")
            page.wait_for_selector("path.footprint")
            page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
            png = Path(tmp) / "map.png"
            page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": 1100, "height": 900})
            browser.close()
        out = Path(__file__).resolve().parent / "map.jpg"
        Image.open(png).convert("RGB").save(out, quality=80)
        print(out)


if __name__ == "__main__":
    main()
