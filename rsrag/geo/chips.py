"""Chip records: what the index stores about each chip, and reading a chip back from its record.

A chip is a record like any other image (id, path, vectors, metadata columns), but its `path` is its
scene (a raster file or a STAC item) and its pixels are read on demand from the window it names, for
embedding and for display; no image file is copied. Its metadata columns (see `CHIP_COLUMNS`):

| column | what |
| --- | --- |
| `scene` | the scene id (file stem or STAC item id) |
| `window` | `col,row,width,height` in the scene's reference grid (pixels) |
| `scale`, `size` | pyramid scale (1 = native or target GSD) and chip side in output pixels |
| `crs`, `bounds` | native CRS (EPSG code or WKT; empty for a scene without one) and `left,bottom,right,top` in it |
| `footprint` | WGS84 polygon as WKB (a MultiPolygon when it crosses the antimeridian); hits show it as WKT |
| `minx`, `miny`, `maxx`, `maxy` | the footprint's lon/lat bbox (minx > maxx across the antimeridian) |
| `lon`, `lat` | the chip centre |
| `gsd` | metres per chip pixel |
| `datetime` | acquisition time, ISO-8601 UTC (`2020-08-31T00:00:00Z`), empty when unknown |
| `sensor`, `bands`, `stretch` | sensor, the three bands of the RGB chip, the scene's stretch (`lo,hi;...`) |
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import shapely

from rsrag.data import ImageRecord
from rsrag.geo.footprint import Footprint, footprint
from rsrag.geo.scene import Scene, SceneError, SceneReader, Stretch, open_scene
from rsrag.geo.tiling import ChipWindow

CHIP_COLUMNS = ("scene", "window", "scale", "size", "crs", "bounds", "footprint", "minx", "miny", "maxx", "maxy",
                "lon", "lat", "gsd", "datetime", "sensor", "bands", "stretch")


def chip_id(scene: Scene, chip: ChipWindow) -> str:
    """A stable id: the same scene, scale and window always get the same id (so a build resumes)."""
    return f"{scene.id}:s{chip.scale}:r{chip.row}:c{chip.col}"


def crs_text(crs: Any) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def chip_bounds(scene: Scene, chip: ChipWindow) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a chip window in the scene's CRS."""
    t = scene.transform
    xs = [t.c + t.a * chip.col, t.c + t.a * (chip.col + chip.width)]
    ys = [t.f + t.e * chip.row, t.f + t.e * (chip.row + chip.height)]
    return min(xs), min(ys), max(xs), max(ys)


def chip_record(scene: Scene, chip: ChipWindow, size: int, bands: list[str], stretch: Stretch,
                place: Footprint | None) -> ImageRecord:
    """The record of one chip (see module doc for its columns)."""
    bounds = chip_bounds(scene, chip)
    gsd = scene.gsd * chip.width / size if scene.gsd is not None else None
    meta: dict[str, Any] = {
        "scene": scene.id, "window": ",".join(map(str, chip.window)), "scale": chip.scale, "size": size,
        "crs": crs_text(scene.crs), "bounds": ",".join(f"{v:.6f}" for v in bounds),
        "footprint": shapely.to_wkb(place.geometry) if place else None,
        "minx": place.bbox[0] if place else None, "miny": place.bbox[1] if place else None,
        "maxx": place.bbox[2] if place else None, "maxy": place.bbox[3] if place else None,
        "lon": place.lon if place else None, "lat": place.lat if place else None,
        "gsd": gsd, "datetime": scene.datetime, "sensor": scene.sensor, "bands": ",".join(bands),
        "stretch": stretch.to_text(),
    }
    return ImageRecord(id=chip_id(scene, chip), path=Path(scene.source), metadata=meta)


def chip_place(scene: Scene, chip: ChipWindow) -> Footprint | None:
    """The chip's footprint, or None for a scene without a CRS."""
    return footprint(scene.crs, chip_bounds(scene, chip)) if scene.crs is not None else None


class ChipSource:
    """Reads chips back from their records for display (thread-safe; keeps a few scenes open)."""

    def __init__(self, keep_open: int = 8) -> None:
        self._readers: OrderedDict[tuple, SceneReader] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep_open

    def read(self, path: str | Path, metadata: Mapping[str, Any], size: int | None = None) -> np.ndarray:
        """The chip's (h, w, 3) uint8 RGB, exactly as it was embedded (same bands, same scene stretch)."""
        try:
            col, row, width, height = (int(v) for v in str(metadata["window"]).split(","))
            side = int(size or metadata.get("size") or 224)
        except (KeyError, ValueError):
            raise SceneError(f"{path}: this record is not a scene chip (no window)") from None
        key = (str(path), str(metadata.get("bands") or ""), str(metadata.get("stretch") or ""))
        with self._lock:
            reader = self._readers.pop(key, None)
            if reader is None:
                scene = open_scene(path)
                bands = scene.pick(str(metadata.get("bands")) if metadata.get("bands") else None)
                reader = SceneReader(scene, bands, Stretch.from_text(metadata.get("stretch")))
            self._readers[key] = reader
            while len(self._readers) > self._keep:
                self._readers.popitem(last=False)[1].close()
            image, _ = reader.read((col, row, width, height), (side, side))
        return image

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
