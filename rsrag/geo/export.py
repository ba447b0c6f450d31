"""Search results as GeoJSON and GeoParquet, so they open in QGIS, geopandas and web maps.

A result is anything with `to_dict()` (a search hit) or a dict holding an `id`, a `score` and the chip
columns (`footprint` as WKT, else `lon`/`lat`). Geometries are WGS84; a hit without either has a null
geometry in GeoJSON (allowed by RFC 7946) and a null in GeoParquet.

GeoParquet is written with pyarrow: the geometry as WKB in a `geometry` column and the `geo` file
metadata of the GeoParquet 1.1 specification (primary column, encoding, geometry types, CRS84, bbox).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import shapely
from shapely.geometry import mapping

from rsrag.geo.footprint import footprint_geometry

# the properties exported (server paths, row ids, vectors and stretches never are)
PROPERTIES = ("id", "rank", "score", "label", "captions", "scene", "datetime", "sensor", "gsd", "scale", "window",
              "crs", "bands")


def _as_dict(result: Any) -> dict:
    """A result's fields, with a nested `metadata` mapping (the API's hit shape) lifted to the top."""
    row = dict(result.to_dict() if hasattr(result, "to_dict") else result)
    nested = row.pop("metadata", None)
    return {**nested, **row} if isinstance(nested, dict) else row


def _geometry(row: Mapping[str, Any]):
    if row.get("footprint"):
        return footprint_geometry(row["footprint"])
    if row.get("lon") is not None and row.get("lat") is not None:
        return shapely.Point(float(row["lon"]), float(row["lat"]))
    return None


def _properties(row: Mapping[str, Any]) -> dict:
    props = {k: row[k] for k in PROPERTIES if k in row}
    props.update({k: v for k, v in row.items() if k.endswith("_score")})
    return props


def to_feature_collection(results: Iterable[Any]) -> dict:
    """A GeoJSON FeatureCollection of search results (footprints as polygons, points otherwise)."""
    features = []
    for result in results:
        row = _as_dict(result)
        geom = _geometry(row)
        features.append({"type": "Feature", "id": row.get("id"),
                         "geometry": mapping(geom) if geom is not None else None,
                         "properties": _properties(row)})
    return {"type": "FeatureCollection", "features": features}


def write_geoparquet(results: Iterable[Any], path: str | Path) -> Path:
    """Write results as a GeoParquet file (see module doc); returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_as_dict(r) for r in results]
    geoms = [_geometry(r) for r in rows]
    props = [_properties(r) for r in rows]
    columns: dict[str, list] = {k: [p.get(k) for p in props] for k in dict.fromkeys(k for p in props for k in p)}
    if "captions" in columns:
        columns["captions"] = [list(c) if c else [] for c in columns["captions"]]
    table = pa.table({**{k: pa.array(v) for k, v in columns.items()},
                      "geometry": pa.array([shapely.to_wkb(g) if g is not None else None for g in geoms], pa.binary())})
    present = [g for g in geoms if g is not None]
    bounds = shapely.total_bounds(present).tolist() if present else None
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": sorted({g.geom_type for g in present}),
                                    "crs": _crs84(), **({"bbox": bounds} if bounds else {})}}}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()})
    path = Path(path)
    pq.write_table(table, path)
    return path


def _crs84() -> dict:
    """OGC:CRS84 (lon/lat WGS84) as PROJJSON, the GeoParquet default written out explicitly."""
    from pyproj import CRS

    return CRS("OGC:CRS84").to_json_dict()
