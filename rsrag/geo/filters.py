"""Place and time filters: a bbox, a point and radius in metres, a GeoJSON polygon, a time range.

In memory, because the pinned LanceDB cannot test polygons: `Place.select` runs vectorised bbox,
distance and time tests over a table's place columns (`PlaceColumns`: the footprint bbox `minx`,
`miny`, `maxx`, `maxy`, the centre `lon`/`lat`, `datetime`), and `Place.keep`, the exact test with
shapely, only on rows on a boundary. Records without a footprint but with `lon`/`lat` (points a user
supplied) are tested as points. A radius is measured on the ground: the
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

EARTH_M_PER_DEG_MIN = 110_570.0  # the shortest degree of latitude (at the equator), in metres
FOOTPRINT_COLUMNS = ("footprint", "minx", "miny", "maxx", "maxy", "lon", "lat")


class PlaceError(ValueError):
    """A place or time filter that cannot be understood."""


def _lon_ranges(min_lon: float, max_lon: float) -> list[tuple[float, float]]:
    return [(min_lon, max_lon)] if min_lon <= max_lon else [(min_lon, 180.0), (-180.0, max_lon)]


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

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The query's lon/lat boxes (each part of the query must overlap its box)."""
        out = []
        if self.bbox is not None:
            out.append(self.bbox)
        if self.near is not None:
            lon, lat, metres = self.near
            metres = metres * 1.01  # the box must hold the whole circle on the ellipsoid: err on the wide side
            dlat = metres / EARTH_M_PER_DEG_MIN
            if abs(lat) + dlat >= 89.9:  # reaches a pole: every longitude
                out.append((-180.0, max(-90.0, lat - dlat), 180.0, min(90.0, lat + dlat)))
            else:
                dlon = metres / (EARTH_M_PER_DEG_MIN * math.cos(math.radians(abs(lat) + dlat)))
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

    # ---- in memory: what a Library uses -------------------------------------------------------------------
    def select(self, columns: "PlaceColumns") -> np.ndarray:
        """Bool mask over the rows of `columns` inside the place: vectorised bbox, radius and time tests
        on the bbox and point columns, and the exact shapely test only for rows on a boundary (a
        footprint partly inside a box, a polygon or a radius), so it stays fast at 100k chips."""
        keep = columns.present.copy()
        if self.after or self.before:
            if not columns.has_time:
                raise PlaceError("this index has no acquisition times (a `datetime` column) to filter by time")
            if self.after:
                keep &= columns.time >= self.after
            if self.before:
                keep &= columns.time <= self.before
        if not (self.bbox or self.near or self.within is not None):
            return keep
        if not columns.has_place:
            raise PlaceError("this index has no footprints or lon/lat columns to filter by place")
        for box in self.boxes():
            keep &= columns.overlaps(box)
        unsure = np.zeros(len(keep), bool)
        if self.bbox is not None:
            unsure |= keep & ~columns.inside_box(self.bbox)
        if self.within is not None:
            idx = np.flatnonzero(keep)
            boxes = shapely.box(columns.x0[idx], columns.y0[idx], columns.x1[idx], columns.y1[idx])
            shapely.prepare(self.within)
            inside = shapely.contains(self.within, boxes) & (columns.minx[idx] <= columns.maxx[idx])
            unsure[idx[~inside]] = True
        if self.near is not None:
            lon, lat, metres = self.near
            idx = np.flatnonzero(keep & ~unsure)
            nearest, farthest = _corner_distances(columns, idx, lon, lat)
            # margins for the sphere here vs the ellipsoid of the exact test (under 0.6%): it decides between
            reach = metres * 1.006 + 1.0
            keep[idx[nearest > reach]] = False  # even the closest point of the box is out of reach
            unsure[idx[(nearest <= reach) & (farthest > metres * 0.994 - 1.0)]] = True
        idx = np.flatnonzero(keep & unsure)
        if len(idx):
            keep[idx] = self.keep({c: [columns.values[c][i] for i in idx] for c in FOOTPRINT_COLUMNS
                                   if c in columns.values})
        return keep

    # ---- the exact test ---------------------------------------------------------------------------------
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
    wkb = np.array([bytes(w) if isinstance(w, (bytes, bytearray, memoryview)) and len(w) else None for w in footprints],
                   dtype=object)
    wkt = np.array([w if isinstance(w, str) and w else None for w in footprints], dtype=object)
    parsed = shapely.from_wkb(wkb, on_invalid="ignore")  # indexes store WKB; older ones WKT
    if any(w is not None for w in wkt):
        parsed = np.where(parsed == None, shapely.from_wkt(wkt, on_invalid="ignore"), parsed)  # noqa: E711
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


class PlaceColumns:
    """The place and time columns of a table as arrays (NaN / "" where a row has none), built once per
    table version by whoever holds the rows (the Library), for `Place.select`."""

    def __init__(self, values: dict[str, list], present: np.ndarray) -> None:
        self.values = {c: values[c] for c in FOOTPRINT_COLUMNS if c in values}
        self.present = present

        def floats(name: str) -> np.ndarray:
            col = values.get(name)
            return np.array([np.nan if v is None else v for v in col], float) if col is not None \
                else np.full(len(present), np.nan)

        self.minx, self.miny, self.maxx, self.maxy = (floats(c) for c in ("minx", "miny", "maxx", "maxy"))
        self.lon, self.lat = floats("lon"), floats("lat")
        self.has_box = np.isfinite(self.minx) & np.isfinite(self.miny) & np.isfinite(self.maxx) & np.isfinite(self.maxy)
        self.has_point = np.isfinite(self.lon) & np.isfinite(self.lat)
        # each row's box: its footprint bbox, else its point (a box of no size)
        self.x0, self.y0, self.x1, self.y1 = (np.where(self.has_box, a, b) for a, b in (
            (self.minx, self.lon), (self.miny, self.lat), (self.maxx, self.lon), (self.maxy, self.lat)))
        self.has_place = bool(self.has_box.any() or self.has_point.any()) or "minx" in values or "lon" in values
        self.has_time = "datetime" in values
        self.time = np.array([v or "" for v in values.get("datetime", [None] * len(present))], dtype="U32")

    def overlaps(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Rows whose footprint bbox (or, without one, point) overlaps a query box (antimeridian-aware)."""
        min_lon, min_lat, max_lon, max_lat = box
        with np.errstate(invalid="ignore"):
            lat_ok = (self.maxy >= min_lat) & (self.miny <= max_lat)
            normal, across = self.minx <= self.maxx, self.minx > self.maxx
            lon_ok = np.zeros(len(self.present), bool)
            point_ok = np.zeros(len(self.present), bool)
            for lo, hi in _lon_ranges(min_lon, max_lon):
                lon_ok |= (normal & (self.maxx >= lo) & (self.minx <= hi)) | (across & ((self.minx <= hi) | (self.maxx >= lo)))
                point_ok |= (self.lon >= lo) & (self.lon <= hi)
            point_ok &= (self.lat >= min_lat) & (self.lat <= max_lat)
        return np.where(self.has_box, lat_ok & lon_ok, self.has_point & point_ok)

    def inside_box(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Rows whose whole footprint bbox lies inside a (non-crossing) query box: no exact test needed."""
        min_lon, min_lat, max_lon, max_lat = box
        if min_lon > max_lon:
            return ~self.has_box & self.has_point  # points already tested exactly by `overlaps`
        with np.errstate(invalid="ignore"):
            whole = (self.minx >= min_lon) & (self.maxx <= max_lon) & (self.miny >= min_lat) & (self.maxy <= max_lat)
        return np.where(self.has_box, whole & (self.minx <= self.maxx), self.has_point)


def _haversine(lon1, lat1, lon2, lat2) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, float)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _corner_distances(columns: PlaceColumns, idx: np.ndarray, lon: float, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest point, distance to the farthest corner) of each row's bbox (its point
    when it has no bbox) from (lon, lat), in metres on the sphere: rows with the nearest point out of
    reach are out, rows whose farthest corner is within reach are in, the rest get the exact test."""
    minx, miny, maxx, maxy = columns.x0[idx], columns.y0[idx], columns.x1[idx], columns.y1[idx]
    across = minx > maxx  # a box across the antimeridian: measure the nearest point the long way too
    near_lon = np.where(across, lon, np.clip(lon, minx, maxx))
    nearest = _haversine(lon, lat, near_lon, np.clip(lat, miny, maxy))
    nearest = np.where(across, 0.0, nearest)  # rare: leave those to the exact test
    corners = np.stack([_haversine(lon, lat, x, y) for x in (minx, maxx) for y in (miny, maxy)])
    farthest = np.where(across, np.inf, corners.max(axis=0))
    return nearest, farthest
