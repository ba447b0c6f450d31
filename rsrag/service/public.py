"""What the API shows and accepts of an index: items without their internal columns, filters on
public columns only.

An index keeps columns only the server needs: `path` (where the image lives on the server's disk),
`rid` (the row id FAISS and BM25 use) and `vector`. They are never in a response, and a filter on
them is refused exactly like a filter on a column that does not exist, so neither the answers nor
the errors tell a client anything about them (a `path<...` filter would otherwise recover a server
path by bisection).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from rsrag.index import Hit, Library
from rsrag.service.errors import ApiError

#: index columns that are never shown or filterable over HTTP
INTERNAL_COLUMNS = frozenset({"path", "rid", "vector"})
#: item fields that are not metadata (a new item's metadata may not use these keys either)
RESERVED_KEYS = INTERNAL_COLUMNS | {"id", "label", "captions", "split"}
_FILTER_COLUMN = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:!=|>=|<=|=|>|<)")


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null, numpy scalars plain numbers; internal columns are dropped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items() if k not in INTERNAL_COLUMNS}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return clean(value.item())
    return value


def image_url(item_id: str) -> str:
    return f"/items/{quote(str(item_id), safe='/:')}/image"


def item(hit: Hit) -> dict:
    return {"id": hit.id, "label": hit.label, "captions": list(hit.captions), "split": hit.split,
            "metadata": clean(dict(hit.metadata)), "image_url": image_url(hit.id)}


def hit(h: Hit) -> dict:
    return {"rank": h.rank, "score": clean(float(h.score)), "parts": clean(dict(h.parts)), **item(h)}


def answer(result: dict) -> dict:
    """An answer as clients see it: no internal columns; evidence and citations link the thumbnail
    of the item they come from (`record_id`, else `id`)."""
    out = clean(result)
    for entry in [*(out.get("evidence") or []), *(out.get("citations") or [])]:
        if isinstance(entry, dict):
            source = entry.get("record_id", entry.get("id"))
            if source is not None:
                entry.setdefault("image_url", image_url(source))
    return out


def public_columns(lib: Library) -> list[str]:
    return [c for c in lib.columns() if c not in INTERNAL_COLUMNS]


def check_filters(filters: Mapping[str, Any] | Sequence[str] | None, lib: Library) -> None:
    """Refuse (400) a filter on a column that is internal or does not exist, naming only public
    columns. Filters the index cannot parse are left to it (its message is about the client's text)."""
    if not filters:
        return
    names = list(filters) if isinstance(filters, Mapping) else [
        m[1] for m in map(_FILTER_COLUMN.match, [filters] if isinstance(filters, str) else filters) if m]
    public = public_columns(lib)
    for name in names:
        if name not in public:
            raise ApiError(400, f"unknown filter column {name!r}; filterable columns: {', '.join(public)}",
                           code="bad_filter")
