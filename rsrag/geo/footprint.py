"""Footprints: where a window of a scene lies on the Earth, as a WGS84 (lon/lat) polygon.

The window's outline is densified in the scene's own CRS (so a UTM square becomes the slightly curved
shape it is in lon/lat), then reprojected with pyproj (one cached transformer per CRS: this runs once
per chip) and cut at the antimeridian: a footprint that crosses 180 degrees becomes a MultiPolygon of
its two sides, and its bbox is written with min_lon > max_lon, the convention the bbox filter
understands. A footprint that contains a pole becomes the cap from its outline to the pole, with the
full longitude range, reaching latitude +-90.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import shapely
import shapely.affinity
from shapely import Geometry, MultiPolygon, Point, Polygon, box, segmentize

WGS84 = "EPSG:4326"
DENSIFY = 16  # points per window edge


class FootprintError(ValueError):
    """A footprint that cannot be reprojected to lon/lat."""


@dataclass(frozen=True)
class Footprint:
    """A window's place on the Earth: polygon (WGS84), bbox (min_lon, min_lat, max_lon, max_lat;
    min_lon > max_lon when it crosses the antimeridian) and centre."""

    geometry: Geometry
    bbox: tuple[float, float, float, float]
    lon: float
    lat: float

    @property
    def crosses_antimeridian(self) -> bool:
        return self.bbox[0] > self.bbox[2]


@lru_cache(maxsize=64)
def _to_lonlat(crs_key: str):
    """A cached pyproj transformer from a CRS (its WKT / user string) to lon/lat."""
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    try:
        return Transformer.from_crs(CRS.from_user_input(crs_key), WGS84, always_xy=True)
    except CRSError as exc:
        raise FootprintError(f"cannot reproject from {crs_key[:80]} to lon/lat: {exc}") from None


@lru_cache(maxsize=64)
def _poles_in(crs_key: str) -> tuple[tuple[int, float, float], ...]:
    """Where the north and south poles are in a CRS ((sign, x, y) for those it can place)."""
    from pyproj import CRS, Transformer

    try:
        back = Transformer.from_crs(WGS84, CRS.from_user_input(crs_key), always_xy=True)
    except Exception:  # noqa: BLE001 - a CRS pyproj cannot invert has no pole to offer
        return ()
    out = []
    for sign in (1, -1):
        try:
            x, y = back.transform(0.0, 90.0 * sign, errcheck=True)
        except Exception:  # noqa: BLE001 - the pole has no place in that projection (e.g. Mercator)
            continue
        if math.isfinite(x) and math.isfinite(y):
            out.append((sign, float(x), float(y)))
    return tuple(out)


def _crs_key(crs) -> str:
    return crs if isinstance(crs, str) else crs.to_wkt()


def _cut_at_antimeridian(lons: np.ndarray, lats: np.ndarray) -> Geometry:
    """A ring whose longitudes jump across 180 degrees, as a MultiPolygon of its two sides."""
    shifted = Polygon(zip(np.where(lons < 0, lons + 360.0, lons), lats))
    if not shifted.is_valid:
        shifted = shifted.buffer(0)
    east = shifted.intersection(box(-180.0, -90.0, 180.0, 90.0))
    west = shapely.affinity.translate(shifted.intersection(box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0)
    parts = [g for part in (east, west) for g in getattr(part, "geoms", [part]) if not g.is_empty and g.area > 0]
    return MultiPolygon(parts) if len(parts) > 1 else parts[0]


def footprint(crs, bounds: tuple[float, float, float, float]) -> Footprint:
    """The footprint of (left, bottom, right, top) in `crs` (see module doc)."""
    left, bottom, right, top = bounds
    outline = box(min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    edge = max(abs(right - left), abs(top - bottom)) / DENSIFY
    ring = np.asarray((segmentize(outline, edge) if edge > 0 else outline).exterior.coords)
    key = _crs_key(crs)
    transformer = _to_lonlat(key)
    lons, lats = transformer.transform(ring[:, 0], ring[:, 1])
    lons, lats = np.asarray(lons, float), np.asarray(lats, float)
    if not (np.isfinite(lons).all() and np.isfinite(lats).all()):
        raise FootprintError(f"the footprint of {bounds} in {key[:60]} has no place in lon/lat")
    lon, lat = transformer.transform((left + right) / 2, (bottom + top) / 2)
    pole = next((sign for sign, x, y in _poles_in(key) if outline.contains(Point(x, y))), 0)
    crosses = not pole and np.abs(np.diff(lons)).max(initial=0.0) > 180.0
    geom = _cut_at_antimeridian(lons, lats) if crosses else Polygon(zip(lons, lats))
    if pole:  # a ring around a pole: the cap from the ring to the pole, every longitude
        order = np.argsort(lons)
        cap_lat = 90.0 * pole
        geom = Polygon([(-180.0, cap_lat), *zip(lons[order], lats[order]), (180.0, cap_lat)])
        lats_all = list(lats)
        bbox = (-180.0, min(lats_all) if pole > 0 else -90.0, 180.0, 90.0 if pole > 0 else max(lats_all))
        return Footprint(geom if geom.is_valid else geom.buffer(0), bbox, float(lon), float(lat))
    if not geom.is_valid:
        geom = geom.buffer(0)
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    min_lat = min(p.bounds[1] for p in parts)
    max_lat = max(p.bounds[3] for p in parts)
    east = [p for p in parts if p.bounds[2] >= 179.999999]
    west = [p for p in parts if p.bounds[0] <= -179.999999]
    if len(parts) > 1 and east and west:  # cut at the antimeridian: east side runs to +180, west from -180
        bbox = (min(p.bounds[0] for p in east), min_lat, max(p.bounds[2] for p in west), max_lat)
    else:
        bbox = (min(p.bounds[0] for p in parts), min_lat, max(p.bounds[2] for p in parts), max_lat)
    return Footprint(geom, bbox, float(lon), float(lat))


def footprints(crs, bounds: Sequence[tuple[float, float, float, float]]) -> list[Footprint]:
    """`footprint(crs, b)` for many windows of one CRS: one reprojection call for all their outlines.
    Windows that need care (around a pole, across the antimeridian, or not reprojectable) go through
    `footprint` one by one; the rest are built in bulk, which is what a scene's chips almost all are."""
    if not bounds:
        return []
    key = _crs_key(crs)
    transformer = _to_lonlat(key)
    box_array = np.asarray(bounds, float).reshape(-1, 4)
    left, bottom = np.minimum(box_array[:, 0], box_array[:, 2]), np.minimum(box_array[:, 1], box_array[:, 3])
    right, top = np.maximum(box_array[:, 0], box_array[:, 2]), np.maximum(box_array[:, 1], box_array[:, 3])
    # the same densified ring as `footprint`: DENSIFY points per edge, counter-clockwise from lower right
    t = np.linspace(0.0, 1.0, DENSIFY + 1)[:-1]
    xs = np.concatenate([np.broadcast_to(right[:, None], (len(left), DENSIFY)), right[:, None] - t * (right - left)[:, None],
                         np.broadcast_to(left[:, None], (len(left), DENSIFY)), left[:, None] + t * (right - left)[:, None]],
                        axis=1)
    ys = np.concatenate([bottom[:, None] + t * (top - bottom)[:, None], np.broadcast_to(top[:, None], (len(left), DENSIFY)),
                         top[:, None] - t * (top - bottom)[:, None], np.broadcast_to(bottom[:, None], (len(left), DENSIFY))],
                        axis=1)
    lons, lats = transformer.transform(xs.ravel(), ys.ravel())
    lons, lats = np.asarray(lons, float).reshape(xs.shape), np.asarray(lats, float).reshape(xs.shape)
    clons, clats = transformer.transform((left + right) / 2, (bottom + top) / 2)
    ring_lons = np.concatenate([lons, lons[:, :1]], axis=1)
    simple = (np.isfinite(lons).all(axis=1) & np.isfinite(lats).all(axis=1)
              & (np.abs(np.diff(ring_lons, axis=1)).max(axis=1) <= 180.0))
    for _sign, x, y in _poles_in(key):
        simple &= ~((left <= x) & (x <= right) & (bottom <= y) & (y <= top))
    rings = np.stack([np.concatenate([lons, lons[:, :1]], axis=1), np.concatenate([lats, lats[:, :1]], axis=1)], axis=-1)
    polygons = shapely.polygons(rings)
    out: list[Footprint] = []
    for i, b in enumerate(bounds):
        if not simple[i] or not polygons[i].is_valid:
            out.append(footprint(crs, b))
            continue
        bbox = (float(lons[i].min()), float(lats[i].min()), float(lons[i].max()), float(lats[i].max()))
        out.append(Footprint(polygons[i], bbox, float(np.atleast_1d(clons)[i]), float(np.atleast_1d(clats)[i])))
    return out


def footprint_geometry(value: bytes | str | Geometry | None) -> Geometry | None:
    """A stored footprint as a shapely geometry: WKB (what indexes store), WKT (older indexes and
    records written by hand) or a geometry; None when there is none."""
    if value is None or isinstance(value, Geometry):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return shapely.from_wkb(bytes(value)) if len(value) else None
    return shapely.from_wkt(value) if value else None


def footprint_wkb(value: bytes | str | Geometry | None) -> bytes | None:
    """A footprint as WKB bytes, the stored form (the geometry encoding of GeoParquet and GeoArrow)."""
    geometry = footprint_geometry(value)
    return None if geometry is None else shapely.to_wkb(geometry)


def footprint_wkt(value: bytes | str | Geometry | None) -> str | None:
    """A footprint as WKT text, the form hits and JSON answers show."""
    if isinstance(value, str):
        return value or None
    geometry = footprint_geometry(value)
    return None if geometry is None else geometry.wkt


def bbox_polygon(bbox: tuple[float, float, float, float]) -> Geometry:
    """A lon/lat bbox as a polygon (two when it crosses the antimeridian)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon <= max_lon:
        return box(min_lon, min_lat, max_lon, max_lat)
    return MultiPolygon([box(min_lon, min_lat, 180.0, max_lat), box(-180.0, min_lat, max_lon, max_lat)])
