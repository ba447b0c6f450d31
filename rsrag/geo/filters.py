"""Place and time filters: a bbox, a point and radius in metres, a GeoJSON polygon, a time range.

Two steps, because LanceDB's SQL cannot test polygons: `Place.sql()` is a cheap prefilter on the
footprint bbox columns (`minx`, `miny`, `maxx`, `maxy`) and the `datetime` column, and `Place.keep()`
is the exact test with shapely on the footprints that passed it. Records without a footprint but with
`lon`/`lat` (points a user supplied) are tested as points. A radius is measured on the ground: the
footprints are projected to an azimuthal equidistant projection centred on the point, where distance
from the centre is true distance, so "within 20 km" means 20 km at any latitude.

Bboxes are (min_lon, min_lat, max_lon, max_lat); min_lon > max_lon means the box crosses the
antimeridian, for queries and for stored footprints alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import shapely
from shapely import Geometry
from shapely.geometry import shape

from rsrag.geo.footprint import bbox_polygon
from rsrag.geo.scene import parse_time

EARTH_M_PER_DEG = 111_320.0
FOOTPRINT_COLUMNS = ("footprint", "minx", "miny", "maxx", "maxy", "lon", "lat")


class PlaceError(ValueError):
    """A place or time filter that cannot be understood."""


def _lon_ranges(min_lon: float, max_lon: float) -> list[tuple[float, float]]:
    return [(min_lon, max_lon)] if min_lon <= max_lon else [(min_lon, 180.0), (-180.0, max_lon)]


def _overlap_sql(bbox: tuple[float, float, float, float]) -> str:
    """Stored footprint bboxes (maybe crossing 180 themselves) that overlap a query bbox."""
    min_lon, min_lat, max_lon, max_lat = bbox
    lat = f"maxy >= {min_lat!r} AND miny <= {max_lat!r}"
    tests = []
    for lo, hi in _lon_ranges(min_lon, max_lon):
        # a stored box overlaps [lo, hi] when it is a normal box that does, or a box across 180 (minx > maxx)
        # whose east part [minx, 180] or west part [-180, maxx] does
        tests.append(f"(minx <= maxx AND maxx >= {lo!r} AND minx <= {hi!r})")
        tests.append(f"(minx > maxx AND (minx <= {hi!r} OR maxx >= {lo!r}))")
    return f"({lat} AND ({' OR '.join(tests)}))"


def _point_sql(bbox: tuple[float, float, float, float]) -> str:
    min_lon, min_lat, max_lon, max_lat = bbox
    lons = " OR ".join(f"(lon >= {lo!r} AND lon <= {hi!r})" for lo, hi in _lon_ranges(min_lon, max_lon))
    return f"(lat >= {min_lat!r} AND lat <= {max_lat!r} AND ({lons}))"


def read_geojson(source: str | Path | Mapping[str, Any]) -> Geometry:
    """A GeoJSON geometry, Feature or FeatureCollection (a file, a JSON string or a dict) as one geometry."""
    if isinstance(source, Mapping):
        data = source
    else:
        text = str(source)
        try:
            data = json.loads(Path(text).read_text() if not text.lstrip().startswith("{") else text)
        except (OSError, ValueError) as exc:
            raise PlaceError(f"cannot read GeoJSON from {text[:80]!r}: {exc}") from None
    try:
        if data.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in data.get("features", []) if f.get("geometry")]
            geom = shapely.union_all(geoms) if geoms else None
        elif data.get("type") == "Feature":
            geom = shape(data["geometry"]) if data.get("geometry") else None
        else:
            geom = shape(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise PlaceError(f"not a GeoJSON geometry: {exc}") from None
    if geom is None or geom.is_empty:
        raise PlaceError("the GeoJSON holds no geometry")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    if lon_min < -180.0001 or lon_max > 180.0001 or lat_min < -90.0001 or lat_max > 90.0001:
        raise PlaceError("GeoJSON coordinates must be lon/lat (WGS84) within -180..180 and -90..90")
    return geom


@dataclass(frozen=True)
class Place:
    """Where and when (see module doc). Every part is optional; the parts combine with AND."""

    bbox: tuple[float, float, float, float] | None = None
    near: tuple[float, float, float] | None = None  # lon, lat, radius in metres
    within: Geometry | None = None  # lon/lat geometry the footprint must intersect
    after: str | None = None  # ISO-8601 UTC, inclusive
    before: str | None = None  # ISO-8601 UTC, inclusive

    @classmethod
    def of(cls, *, bbox: Sequence[float] | str | None = None, near: Sequence[float] | str | None = None,
           within: Any = None, after: Any = None, before: Any = None) -> "Place | None":
        """Build from user input (strings as the CLI takes them: 'lon,lat,metres'); None when empty."""
        if all(v is None for v in (bbox, near, within, after, before)):
            return None

        def floats(value: Sequence[float] | str, n: int, what: str) -> tuple[float, ...]:
            try:
                out = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
            except (TypeError, ValueError):
                out = ()
            if len(out) != n or not all(math.isfinite(v) for v in out):
                raise PlaceError(f"{what} needs {n} numbers, got {value!r}")
            return out

        box = floats(bbox, 4, "bbox (min_lon,min_lat,max_lon,max_lat)") if bbox is not None else None
        if box is not None and (box[1] > box[3] or not all(-180 <= box[i] <= 180 for i in (0, 2))
                                or not all(-90 <= box[i] <= 90 for i in (1, 3))):
            raise PlaceError(f"bbox {box} is not min_lon,min_lat,max_lon,max_lat in degrees")
        point = floats(near, 3, "near (lon,lat,metres)") if near is not None else None
        if point is not None and (not -180 <= point[0] <= 180 or not -90 <= point[1] <= 90 or point[2] <= 0):
            raise PlaceError(f"near {point}: lon in -180..180, lat in -90..90 and a positive radius in metres")
        area = read_geojson(within) if within is not None and not isinstance(within, Geometry) else within
        start = parse_time(after, "after: ") if after is not None else None
        end = parse_time(before, "before: ") if before is not None else None
        if start and end and start > end:
            raise PlaceError(f"after {start} is later than before {end}")
        return cls(box, point, area, start, end)  # type: ignore[arg-type]

    # ---- the SQL prefilter ----------------------------------------------------------------------------
    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The query's lon/lat boxes (each part of the query must overlap its box)."""
        out = []
        if self.bbox is not None:
            out.append(self.bbox)
        if self.near is not None:
            lon, lat, metres = self.near
            dlat = metres / EARTH_M_PER_DEG
            if abs(lat) + dlat >= 89.9:  # reaches a pole: every longitude
                out.append((-180.0, max(-90.0, lat - dlat), 180.0, min(90.0, lat + dlat)))
            else:
                dlon = metres / (EARTH_M_PER_DEG * math.cos(math.radians(abs(lat) + dlat)))
                if dlon >= 180:
                    out.append((-180.0, lat - dlat, 180.0, lat + dlat))
                else:
                    lo, hi = lon - dlon, lon + dlon
                    lo = lo + 360 if lo < -180 else lo
                    hi = hi - 360 if hi > 180 else hi
                    out.append((lo, lat - dlat, hi, lat + dlat))
        if self.within is not None:
            out.append(tuple(self.within.bounds))  # type: ignore[arg-type]
        return out

    def sql(self, columns: Sequence[str]) -> str | None:
        """The prefilter as SQL over the index's columns (footprint bbox, else lon/lat points; datetime)."""
        terms = []
        has_box = all(c in columns for c in ("minx", "miny", "maxx", "maxy"))
        has_point = "lon" in columns and "lat" in columns
        for box in self.boxes():
            if has_box and has_point:
                terms.append(f"(({_overlap_sql(box)}) OR (minx IS NULL AND {_point_sql(box)}))")
            elif has_box:
                terms.append(_overlap_sql(box))
            elif has_point:
                terms.append(_point_sql(box))
            else:
                raise PlaceError("this index has no footprints or lon/lat columns to filter by place")
        if self.after or self.before:
            if "datetime" not in columns:
                raise PlaceError("this index has no acquisition times (a `datetime` column) to filter by time")
            if self.after:
                terms.append(f"datetime >= '{self.after}'")
            if self.before:
                terms.append(f"datetime <= '{self.before}'")
        return " AND ".join(terms) if terms else None

    # ---- the exact test ---------------------------------------------------------------------------------
    @property
    def needs_exact(self) -> bool:
        """Whether rows that passed the SQL prefilter still need the shapely test."""
        return self.near is not None or self.within is not None or self.bbox is not None

    def keep(self, rows: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Bool mask over rows (columns from FOOTPRINT_COLUMNS that exist) of those inside the place."""
        n = len(next(iter(rows.values()))) if rows else 0
        shapes = _row_geometries(rows, n)
        keep = ~shapely.is_missing(shapes) if n else np.zeros(0, bool)
        if self.bbox is not None:
            keep &= shapely.intersects(shapes, bbox_polygon(self.bbox))
        if self.within is not None:
            keep &= shapely.intersects(shapes, self.within)
        if self.near is not None and keep.any():
            keep[keep] = _within_metres(shapes[keep], *self.near)
        return keep


def _row_geometries(rows: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
    """Footprint polygons where stored, else lon/lat points, else None (missing)."""
    footprints = rows.get("footprint", [None] * n)
    lons, lats = rows.get("lon", [None] * n), rows.get("lat", [None] * n)
    shapes = np.empty(n, dtype=object)
    wkt = [f for f in footprints]
    parsed = shapely.from_wkt(np.array([w if w else None for w in wkt], dtype=object), on_invalid="ignore")
    for i in range(n):
        if parsed[i] is not None:
            shapes[i] = parsed[i]
        elif lons[i] is not None and lats[i] is not None:
            shapes[i] = shapely.Point(float(lons[i]), float(lats[i]))
        else:
            shapes[i] = None
    return shapes


def _within_metres(shapes: np.ndarray, lon: float, lat: float, metres: float) -> np.ndarray:
    """Which geometries come within `metres` of (lon, lat) on the ground (azimuthal equidistant)."""
    from pyproj import Transformer

    to_local = Transformer.from_crs("EPSG:4326", f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m",
                                    always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = to_local.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    local = shapely.transform(shapes, project)
    return shapely.distance(local, shapely.Point(0.0, 0.0)) <= metres
