"""Search hits and the in-memory record rows they are made from.

A search finds rids (FAISS, BM25); `RecordRows` turns them into `Hit`s with a list lookup per hit:
it holds every record without its vector, indexed by rid (a pyarrow `take` per query costs more
than an IVF search), and an id -> rid map for lookups by id (`Library.get`), so neither scans the
LanceDB table per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import pyarrow as pa

from rsrag.geo.footprint import footprint_wkt

HIT_FIELDS = ("id", "label", "path", "captions", "split")  # the row tuple's fields, in order
_EMPTY: Mapping[str, Any] = MappingProxyType({})  # a hit's metadata / parts when it has none (read-only, shared)


@dataclass(slots=True)
class Hit:
    """One search result. `score` is cosine similarity (dense), BM25 score, or fused RRF score."""

    id: str
    score: float
    rank: int
    label: str | None = None
    path: str | None = None
    captions: Sequence[str] = ()  # a tuple shared with the in-memory rows (read-only)
    split: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    parts: Mapping[str, float] = field(default_factory=dict)  # hybrid: the dense and bm25 scores that were fused

    def to_dict(self) -> dict:
        out = {"rank": self.rank, "id": self.id, "score": self.score, "label": self.label, "path": self.path,
               "captions": list(self.captions), "split": self.split}
        for key, value in [*self.metadata.items(), *((f"{k}_score", v) for k, v in self.parts.items())]:
            out.setdefault(key, value)
        return out


class RecordRows:
    """Every record of one table version without its vector, indexed by rid: one (id, label, path,
    captions, split) tuple per rid (None where there is no record), the metadata columns as lists
    indexed the same way, and an id -> rid map. Costs about as much memory as the records' text
    plus 8 bytes per rid ever given out."""

    def __init__(self, table: pa.Table) -> None:
        """`table`: a scan sorted by rid with `rid`, the `HIT_FIELDS` and any metadata columns."""
        rids = table.column("rid").to_pylist()
        size = rids[-1] + 1 if rids else 0

        def by_rid(values: list) -> list:
            if len(values) == size:  # no holes: rids are 0..size-1
                return values
            out = [None] * size
            for rid, value in zip(rids, values):
                out[rid] = value
            return out

        fields = _hit_fields(table)
        self.rows: list[tuple | None] = by_rid(list(zip(*fields.values())))
        self.metadata: dict[str, list] = {c: by_rid(table.column(c).to_pylist()) for c in table.column_names
                                          if c != "rid" and c not in HIT_FIELDS}
        self.rid_of: dict[str, int] = dict(zip(fields["id"], rids))

    def hits(self, rids: Sequence[int], scores: Sequence[float], parts: Sequence[Mapping] | None = None) -> list[Hit]:
        """Hits for (rid, score) pairs in rank order. Rids with no record (any more) are dropped, so
        a deleted record is never returned."""
        rows, extra, n = self.rows, self.metadata, len(self.rows)
        hits: list[Hit] = []
        for i, (rid, score) in enumerate(zip(rids, scores)):
            row = rows[rid] if 0 <= rid < n else None
            if row is not None:
                metadata = {c: v[rid] for c, v in extra.items()} if extra else _EMPTY
                if metadata and metadata.get("footprint") is not None:  # stored as WKB; hits show WKT
                    metadata["footprint"] = footprint_wkt(metadata["footprint"])
                hits.append(Hit(row[0], score, len(hits) + 1, row[1], row[2], row[3], row[4], metadata,
                                parts[i] if parts else _EMPTY))
        return hits

    def rids_of(self, ids: Sequence[str]) -> list[int]:
        """The rids of those ids that are records, in the order given."""
        rid_of = self.rid_of
        return [rid_of[i] for i in map(str, ids) if i in rid_of]

    def apply(self, table: pa.Table | None, removed: Sequence[int]) -> None:
        """Bring these rows in line with a write (new rows as a scan would give them, and the rids it
        removed), in place and in time proportional to the write: what a snapshot following its own
        writer does instead of reading every record again."""
        rows, extra = self.rows, self.metadata
        for rid in removed:
            if 0 <= rid < len(rows) and rows[rid] is not None:
                if self.rid_of.get(rows[rid][0]) == rid:
                    del self.rid_of[rows[rid][0]]
                rows[rid] = None
                for values in extra.values():
                    values[rid] = None
        if table is None or not table.num_rows:
            return
        rids = table.column("rid").to_pylist()
        size = max(len(rows), max(rids) + 1)
        grow = size - len(rows)
        rows.extend([None] * grow)
        for values in extra.values():
            values.extend([None] * grow)
        for rid, row in zip(rids, zip(*_hit_fields(table).values())):
            rows[rid] = row
            self.rid_of[row[0]] = rid
        for column in table.column_names:
            if column == "rid" or column in HIT_FIELDS:
                continue
            values = extra.setdefault(column, [None] * size)
            for rid, value in zip(rids, table.column(column).to_pylist()):
                values[rid] = value


def _hit_fields(table: pa.Table) -> dict[str, list]:
    """The `HIT_FIELDS` columns of a scan as lists: captions as tuples, each label and split one
    shared str (few distinct values)."""
    fields = {c: table.column(c).to_pylist() for c in HIT_FIELDS}
    fields["captions"] = [tuple(c or ()) for c in fields["captions"]]
    for c in ("label", "split"):
        shared: dict = {}
        fields[c] = [shared.setdefault(v, v) for v in fields[c]]
    return fields

