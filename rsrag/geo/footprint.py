"""Footprints: where a window of a scene lies on the Earth, as a WGS84 (lon/lat) polygon.

The window's outline is densified in the scene's own CRS (so a UTM square becomes the slightly curved
shape it is in lon/lat), then reprojected by GDAL with antimeridian cutting: a footprint that crosses
180 degrees becomes a MultiPolygon of its two sides, and its bbox is written with min_lon > max_lon,
the convention the bbox filter understands. A footprint that contains a pole gets the full longitude
range and reaches latitude +-90.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapely import Geometry, MultiPolygon, Point, Polygon, box, segmentize
from shapely.geometry import mapping, shape

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


def _transform_geom(src_crs, geom: Geometry) -> Geometry:
    from rasterio.errors import CRSError
    from rasterio.warp import transform_geom

    try:
        out = transform_geom(src_crs, WGS84, mapping(geom), antimeridian_cutting=True, antimeridian_offset=0.0)
    except (CRSError, ValueError, RuntimeError) as exc:
        raise FootprintError(f"cannot reproject from {src_crs} to lon/lat: {exc}") from None
    result = shape(out)
    if result.is_empty or not result.is_valid and not result.buffer(0).is_valid:
        raise FootprintError(f"the footprint from {src_crs} is not a valid lon/lat polygon")
    return result if result.is_valid else result.buffer(0)


def _transform_point(src_crs, x: float, y: float) -> tuple[float, float]:
    from rasterio.warp import transform

    xs, ys = transform(src_crs, WGS84, [x], [y])
    return float(xs[0]), float(ys[0])


def _contains_pole(src_crs, outline: Polygon) -> int:
    """+1 / -1 when the outline (in the source CRS) contains the north / south pole, else 0."""
    from rasterio.warp import transform

    for sign in (1, -1):
        try:
            xs, ys = transform(WGS84, src_crs, [0.0], [90.0 * sign])
        except Exception:  # the pole has no place in that projection (e.g. Mercator)
            continue
        if all(map(lambda v: v == v and abs(v) != float("inf"), (xs[0], ys[0]))) and outline.contains(Point(xs[0], ys[0])):
            return sign
    return 0


def footprint(crs, bounds: tuple[float, float, float, float]) -> Footprint:
    """The footprint of (left, bottom, right, top) in `crs` (see module doc)."""
    left, bottom, right, top = bounds
    outline = box(min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    edge = max(abs(right - left), abs(top - bottom)) / DENSIFY
    geom = _transform_geom(crs, segmentize(outline, edge) if edge > 0 else outline)
    lon, lat = _transform_point(crs, (left + right) / 2, (bottom + top) / 2)
    pole = _contains_pole(crs, outline)
    if pole:
        lats = [geom.bounds[1], geom.bounds[3]]
        bbox = (-180.0, min(lats) if pole > 0 else -90.0, 180.0, 90.0 if pole > 0 else max(lats))
        return Footprint(geom, bbox, lon, lat)
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    min_lat = min(p.bounds[1] for p in parts)
    max_lat = max(p.bounds[3] for p in parts)
    east = [p for p in parts if p.bounds[2] >= 179.999999]
    west = [p for p in parts if p.bounds[0] <= -179.999999]
    if len(parts) > 1 and east and west:  # cut at the antimeridian: east side runs to +180, west from -180
        bbox = (min(p.bounds[0] for p in east), min_lat, max(p.bounds[2] for p in west), max_lat)
    else:
        bbox = (min(p.bounds[0] for p in parts), min_lat, max(p.bounds[2] for p in parts), max_lat)
    return Footprint(geom, bbox, lon, lat)


def bbox_polygon(bbox: tuple[float, float, float, float]) -> Geometry:
    """A lon/lat bbox as a polygon (two when it crosses the antimeridian)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon <= max_lon:
        return box(min_lon, min_lat, max_lon, max_lat)
    return MultiPolygon([box(min_lon, min_lat, 180.0, max_lat), box(-180.0, min_lat, max_lon, max_lat)])
