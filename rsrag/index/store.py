"""LanceDB record store: the source of truth of an index.

One table, `records`, one row per image: `rid` (int64, the key FAISS and BM25 use; never reused,
an upsert gets a fresh one), `id` (the user's record id, unique), `path`, `split`, `label`,
`captions` (list of strings), `vector` (float32, L2-normalised), then one column per metadata key
seen in the records (`lon`, `lat`, ...; added to the schema when a new key first appears).
Every write is one LanceDB commit, so a crash leaves the table at the previous or the next version.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("LANCE_LOG", "error")  # not its INFO/WARN chatter ("No existing dataset ...") on stderr

import lancedb  # noqa: E402
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsrag.index.errors import LibraryError

TABLE = "records"
CORE = ("rid", "id", "path", "split", "label", "captions", "vector")
RESERVED = CORE + ("score", "rank")  # also keys of a search hit, so metadata may not take them
_SQL_TYPES = {pa.string(): "STRING", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}


def metadata_column(key: str) -> str:
    """A safe column name for a metadata key (`meta_` prefix when it would clash or start oddly)."""
    name = re.sub(r"\W+", "_", str(key)).strip("_").lower() or "meta"
    return f"meta_{name}" if name in RESERVED or name[0].isdigit() or name.startswith("_") else name


def _infer_type(values: list) -> pa.DataType:
    """Arrow type for a metadata column from the values one batch brings (None ignored)."""
    seen = {type(v) for v in values if v is not None}
    if seen and seen <= {bool}:
        return pa.bool_()
    if seen and seen <= {int}:
        return pa.int64()
    if seen and seen <= {int, float}:
        return pa.float64()
    return pa.string()


def _as_column(values: list, typ: pa.DataType, name: str) -> pa.Array:
    if typ == pa.string():
        values = [None if v is None else v if isinstance(v, str) else str(v) for v in values]
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise LibraryError(f"metadata column {name!r} holds {typ}, a record brings {values[:3]!r}...: {exc}") from exc


def sql_literal(value: Any) -> str:
    """A value as a SQL literal for a LanceDB filter."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    return "'" + str(value).replace("'", "''") + "'"


def _vectors_of(table: pa.Table, dim: int) -> np.ndarray:
    col = table.column("vector").combine_chunks() if table.num_rows else None
    if col is None:
        return np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim), np.float32)


class RecordStore:
    """The `records` table of one index folder (created by the first `add`)."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder, self.dim = Path(folder), dim
        self.db = lancedb.connect(str(self.folder))
        self.table = self._open_committed()

    def _open_committed(self):
        """The table, or None before its first commit: a build killed while LanceDB was writing the
        first rows leaves `records.lance/` without a version, which the next `add` simply creates."""
        if not (self.folder / f"{TABLE}.lance").exists():
            return None
        try:
            return self.db.open_table(TABLE)
        except ValueError as err:  # the folder holds no committed version yet
            if "was not found" not in str(err):
                raise
            return None

    # ---- reading -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.table.version if self.table is not None else 0

    def refresh(self) -> None:
        """See commits other processes made since this store was opened."""
        if self.table is None:
            self.table = self._open_committed()
        else:
            self.table.checkout_latest()

    def count(self) -> int:
        return self.table.count_rows() if self.table is not None else 0

    def schema(self) -> pa.Schema:
        if self.table is None:
            return pa.schema([])
        return self.table.schema

    def columns(self) -> list[str]:
        """Every filterable column (all but the vector); the core ones even before the first add."""
        names = [n for n in self.schema().names if n != "vector"]
        return names or [c for c in CORE if c != "vector"]

    def metadata_columns(self) -> list[str]:
        return [n for n in self.schema().names if n not in CORE]

    def scan(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """Selected columns of every row (matching `where`), sorted by rid."""
        cols = list(dict.fromkeys(["rid", *columns]))
        if self.table is None:
            return pa.table({c: pa.array([], type=pa.int64() if c == "rid" else pa.string()) for c in cols})
        query = self.table.search().select(cols).limit(None)
        if where:
            query = query.where(where)
        table = query.to_arrow()
        return table.take(pc.sort_indices(table, [("rid", "ascending")]))

    def rids(self, where: str | None = None) -> np.ndarray:
        """Sorted rids of all rows (or those matching a SQL filter)."""
        return self.scan(["rid"], where).column("rid").to_numpy().astype(np.int64)

    def id_rids(self, ids: Sequence[str] | None = None) -> dict[str, int]:
        """id -> rid, for the given ids that exist (all rows when ids is None)."""
        table = self.scan(["id"])
        mapping = dict(zip(table.column("id").to_pylist(), table.column("rid").to_pylist()))
        return mapping if ids is None else {i: mapping[i] for i in ids if i in mapping}

    def vectors(self, rids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rids, vectors) of the given rids (all when None), sorted by rid."""
        where = None
        if rids is not None:
            if not len(rids):
                return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
            where = f"rid >= {int(np.min(rids))} AND rid <= {int(np.max(rids))}"
        table = self.scan(["vector"], where)
        got = table.column("rid").to_numpy().astype(np.int64)
        if rids is not None:
            keep = np.isin(got, rids)
            table, got = table.filter(pa.array(keep)), got[keep]
        return got, _vectors_of(table, self.dim)

    def vectors_where(self, where: str) -> tuple[np.ndarray, np.ndarray]:
        table = self.scan(["vector"], where)
        return table.column("rid").to_numpy().astype(np.int64), _vectors_of(table, self.dim)

    # ---- writing -------------------------------------------------------------------------------
    def rows(self, records: Sequence, rids: np.ndarray, vectors: np.ndarray) -> pa.Table:
        """Records (ImageRecord-like: id, path, split, label, captions, metadata) -> an arrow batch,
        growing the table schema first when the batch brings a new metadata key."""
        meta: dict[str, list] = {}
        for pos, rec in enumerate(records):
            for key, value in (getattr(rec, "metadata", None) or {}).items():
                meta.setdefault(metadata_column(key), [None] * len(records))[pos] = value
        existing = {f.name: f.type for f in self.schema()}
        new_cols = {}
        for name, values in meta.items():
            if name not in existing:
                new_cols[name] = _infer_type(values)
        if new_cols and self.table is not None:
            self.table.add_columns({n: f"CAST(NULL AS {_SQL_TYPES[t]})" for n, t in new_cols.items()})
        columns = {
            "rid": pa.array(np.asarray(rids, np.int64)),
            "id": pa.array([str(r.id) for r in records], pa.string()),
            "path": pa.array([str(Path(r.path).resolve()) if r.path else None for r in records], pa.string()),
            "split": pa.array([getattr(r, "split", None) for r in records], pa.string()),
            "label": pa.array([None if r.label is None else str(r.label) for r in records], pa.string()),
            "captions": pa.array([[str(c) for c in (r.captions or [])] for r in records], pa.list_(pa.string())),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).ravel()), self.dim),
        }
        for name, values in meta.items():
            columns[name] = _as_column(values, existing.get(name) or new_cols[name], name)
        return pa.table(columns)

    def add(self, rows: pa.Table) -> None:
        """Append rows whose ids are new (the caller checked) in one commit."""
        if self.table is None:
            self.table = self.db.create_table(TABLE, rows)
        else:
            self.table.add(rows)

    def upsert(self, rows: pa.Table) -> None:
        """Insert or replace rows by id in one commit (merge-insert), so no reader sees a gap."""
        if self.table is None:
            self.table = self.db.create_table(TABLE, rows)
        else:
            self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def delete(self, rids: np.ndarray) -> None:
        for start in range(0, len(rids), 5000):
            chunk = ", ".join(str(int(r)) for r in rids[start : start + 5000])
            self.table.delete(f"rid IN ({chunk})")

    def compact(self) -> None:
        """Merge the many small fragments a chunked build leaves (and drop versions > 1 h old)."""
        if self.table is not None:
            from datetime import timedelta

            self.table.optimize(cleanup_older_than=timedelta(hours=1))
