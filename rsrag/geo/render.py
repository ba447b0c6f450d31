"""Scenes drawn for a web map: a whole scene decimated and warped to Web Mercator (EPSG:3857, the
CRS of Leaflet and MapLibre), so the imagery itself can be the basemap when no tile server is
reachable. Pixels outside the scene, and nodata, are transparent."""

from __future__ import annotations

import numpy as np

from rsrag.geo.scene import SceneReader, Stretch, open_scene

WEB_MERCATOR = "EPSG:3857"


def mercator_bounds(path: str) -> tuple[float, float, float, float]:
    """(south, west, north, east) in degrees of a scene warped to Web Mercator: where the overlay of
    `mercator_overview` goes on a map."""
    from rasterio.warp import transform_bounds

    scene = open_scene(path)
    if scene.crs is None:
        raise ValueError(f"{path}: a scene without a CRS has no place on a map")
    west, south, east, north = transform_bounds(scene.crs, WEB_MERCATOR, *scene.bounds, densify_pts=21)
    lon_w, lat_s, lon_e, lat_n = transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)
    return lat_s, lon_w, lat_n, lon_e


def mercator_overview(path: str, bands: str | None, stretch: Stretch, max_side: int = 1024
                      ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(RGBA uint8 (h, w, 4) in Web Mercator, (south, west, north, east) in degrees) for a scene,
    read with the same band rule and stretch as its chips."""
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    scene = open_scene(path)
    if scene.crs is None:
        raise ValueError(f"{path}: a scene without a CRS has no place on a map")
    factor = max(1.0, max(scene.width, scene.height) / max_side)
    out_w, out_h = max(1, round(scene.width / factor)), max(1, round(scene.height / factor))
    with SceneReader(scene, scene.pick(bands), stretch) as reader:
        rgb, valid = reader.read_raw((0, 0, scene.width, scene.height), (out_w, out_h))
        bands = reader.stretch.planar(rgb, valid)
    src = np.concatenate([bands, (valid * 255).astype(np.uint8)[None]])
    left, bottom, right, top = scene.bounds
    src_transform = from_bounds(left, bottom, right, top, out_w, out_h)
    west, south, east, north = transform_bounds(scene.crs, WEB_MERCATOR, left, bottom, right, top, densify_pts=21)
    scale = max(east - west, north - south) / max(out_w, out_h)
    dst_w, dst_h = max(1, round((east - west) / scale)), max(1, round((north - south) / scale))
    dst = np.zeros((4, dst_h, dst_w), np.uint8)
    reproject(src, dst, src_transform=src_transform, src_crs=scene.crs,
              dst_transform=from_bounds(west, south, east, north, dst_w, dst_h), dst_crs=WEB_MERCATOR,
              resampling=Resampling.bilinear)
    lon_w, lat_s, lon_e, lat_n = transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)
    return dst.transpose(1, 2, 0), (lat_s, lon_w, lat_n, lon_e)
