"""Writing STAC Items for scenes stored as one file per band (a Sentinel-2 SAFE granule, a Landsat
scene's `_B4.TIF` files), so they can be indexed as one scene with every band at hand."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Mapping

from rsrag.geo.bands import SENSORS, canonical_sensor
from rsrag.geo.scene import SceneError, parse_time

_BAND_IN_NAME = re.compile(r"(?:^|[_.-])(B\d{1,2}A?)(?:[_.-]|$)", re.I)


def band_files(folder: str | Path) -> dict[str, Path]:
    """Band name -> file for the per-band rasters of a folder (`..._B04.jp2`, `l8_B4.tif`)."""
    out = {}
    for path in sorted(Path(folder).iterdir()):
        match = _BAND_IN_NAME.search(path.stem)
        if match and path.suffix.lower() in (".tif", ".tiff", ".jp2"):
            out[match[1].upper()] = path
    if not out:
        raise SceneError(f"{folder}: no per-band files (names with _B01, _B4, ...) found")
    return out


def write_item(path: str | Path, bands: Mapping[str, str | Path], *, item_id: str, when: str | datetime,
               sensor: str | None = None) -> Path:
    """Write a STAC Item JSON at `path` whose assets are the given band files (hrefs relative to it),
    with `eo:bands` names and common names from the sensor's band table."""
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds
    from shapely.geometry import box, mapping

    sensor = canonical_sensor(sensor) if sensor else None
    commons = {name.upper(): common for name, common in SENSORS.get(sensor or "", [])}

    def common_of(name: str) -> str | None:
        key = name.upper()
        short = re.sub(r"^B0+(?=\d)", "B", key)
        return commons.get(key) or commons.get(short) or commons.get("B0" + key[1:] if len(key) == 2 else key)

    path = Path(path)
    first = Path(next(iter(bands.values())))
    with rasterio.open(first) as ds:
        bbox = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds) if ds.crs else None
    stamp = datetime.fromisoformat(parse_time(when).replace("Z", "+00:00"))
    item = pystac.Item(id=item_id, geometry=mapping(box(*bbox)) if bbox else None, bbox=list(bbox) if bbox else None,
                       datetime=stamp, properties={"platform": sensor} if sensor else {})
    for name, file in bands.items():
        file = Path(file)
        href = str(file.resolve())
        try:
            href = str(file.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            pass
        media = pystac.MediaType.JPEG2000 if file.suffix.lower() == ".jp2" else pystac.MediaType.GEOTIFF
        asset = pystac.Asset(href=href, media_type=media, roles=["data"])
        asset.extra_fields["eo:bands"] = [{"name": name, **({"common_name": common_of(name)} if common_of(name) else {})}]
        item.add_asset(name, asset)
    item.set_self_href(None)
    path.write_text(__import__("json").dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1))
    return path
