"""Metadata filters: from the CLI's `col=value` strings, a Python dict, a raw SQL `where` and a
lon/lat bounding box to one SQL predicate for LanceDB, with every column checked against the schema."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import pyarrow as pa

from rsrag.index.errors import FilterError
from rsrag.index.store import sql_literal

_EXPR = re.compile(r"^\s*([A-Za-z_]\w*)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")
LON_COLUMNS = ("lon", "lng", "longitude")
LAT_COLUMNS = ("lat", "latitude")

Filters = Mapping[str, Any] | Sequence[str] | None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'min_lon,min_lat,max_lon,max_lat' -> floats (min_lon > max_lon means it crosses 180 degrees)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise FilterError(f"bbox must be 'min_lon,min_lat,max_lon,max_lat', got {text!r}")
    return values  # type: ignore[return-value]


def _check(column: str, schema: pa.Schema) -> pa.DataType:
    if column not in schema.names or column == "vector":
        known = ", ".join(n for n in schema.names if n != "vector") or "(empty index)"
        raise FilterError(f"unknown filter column {column!r}; this index has: {known}")
    return schema.field(column).type


def _typed(value: Any, typ: pa.DataType, column: str) -> Any:
    """A filter value from the CLI (always a string) converted to the column's type."""
    if not isinstance(value, str) or pa.types.is_string(typ):
        return value
    try:
        if pa.types.is_integer(typ):
            return int(value)
        if pa.types.is_floating(typ):
            return float(value)
        if pa.types.is_boolean(typ):
            return {"true": True, "1": True, "false": False, "0": False}[value.lower()]
    except (ValueError, KeyError):
        raise FilterError(f"filter value {value!r} does not fit column {column!r} of type {typ}") from None
    return value


def _term(column: str, op: str, value: Any, schema: pa.Schema) -> str:
    typ = _check(column, schema)
    if pa.types.is_list(typ):  # e.g. captions: match any element
        if op not in ("=", "!="):
            raise FilterError(f"list column {column!r} supports only = and !=")
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        test = " OR ".join(f"array_has({column}, {sql_literal(str(v))})" for v in values)
        return f"({test})" if op == "=" else f"NOT ({test})"
    if value is None:
        return f"{column} IS NULL" if op == "=" else f"{column} IS NOT NULL"
    if isinstance(value, (list, tuple, set, frozenset)):
        if op not in ("=", "!="):
            raise FilterError(f"a list of values needs = or !=, not {op}")
        items = ", ".join(sql_literal(_typed(v, typ, column)) for v in value)
        return f"{column} {'IN' if op == '=' else 'NOT IN'} ({items})"
    return f"{column} {op} {sql_literal(_typed(value, typ, column))}"


def build_where(schema: pa.Schema, filters: Filters = None, where: str | None = None,
                bbox: Sequence[float] | None = None) -> str | None:
    """One SQL predicate ANDing every condition, or None when there is none.

    `filters`: a dict {column: value or list of values} (list = any of), or strings
    'column<op>value' with op one of = != > >= < <=. `where`: raw SQL passed to LanceDB as is.
    `bbox`: (min_lon, min_lat, max_lon, max_lat) over the lon/lat (or longitude/latitude) columns.
    """
    terms: list[str] = []
    if isinstance(filters, Mapping):
        terms += [_term(col, "=", value, schema) for col, value in filters.items()]
    elif filters:
        for expr in [filters] if isinstance(filters, str) else filters:
            match = _EXPR.match(expr)
            if not match:
                raise FilterError(f"cannot parse filter {expr!r}; use column=value (or != > >= < <=)")
            column, op, value = match[1], match[2], match[3]
            multi = op in ("=", "!=") and "," in value  # label=airport,port -> either of them
            terms.append(_term(column, op, value.split(",") if multi else value, schema))
    if bbox is not None:
        lon = next((c for c in LON_COLUMNS if c in schema.names), None)
        lat = next((c for c in LAT_COLUMNS if c in schema.names), None)
        if lon is None or lat is None:
            raise FilterError("a bounding-box filter needs lon/lat columns in the records; this index has none")
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in bbox)
        if min_lat > max_lat:
            raise FilterError(f"bbox min_lat {min_lat} is above max_lat {max_lat}")
        joint = "AND" if min_lon <= max_lon else "OR"  # min_lon > max_lon: the box crosses 180 degrees
        terms.append(f"({lon} >= {min_lon!r} {joint} {lon} <= {max_lon!r}) "
                     f"AND {lat} >= {min_lat!r} AND {lat} <= {max_lat!r}")
    if where and where.strip():
        terms.append(f"({where})")
    return " AND ".join(f"({t})" for t in terms) if terms else None
