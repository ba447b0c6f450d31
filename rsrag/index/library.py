"""`Library`: one searchable index of images with their captions, labels and metadata.

The facade over an index folder (`folder.IndexFolder`: manifest, writer lock, crash repair, the
commit counter; its module doc gives the layout and the consistency rules): open or create an
index, read its records (`rows`, `count`, `get`, `columns`, `info`, `version`), search it
(`search_text`, `search_vector`, `search_image`) and write to it (`add`, `upsert`, `delete`,
`add_embedded`, `rebuild`).

Searches check the folder's commit counter first (a memory read) and reload when another writer
has committed. Results are always hydrated from the LanceDB rows in memory (`rows.RecordRows`), so
a rid that is no longer there cannot be returned.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from rsrag import fusion
from rsrag.config import cache_dir
from rsrag.encoders.base import Encoder, ImageInput, l2_normalize
from rsrag.encoders.decoding import batched
from rsrag.index.ann import IndexSpec
from rsrag.index.errors import EncoderMismatchError, FilterError, IndexExistsError, IndexNotFoundError
from rsrag.index.filters import Filters, build_where
from rsrag.index.folder import MANIFEST, IndexFolder, new_manifest, now, record_text, validate_index_name
from rsrag.index.fsutil import writer_lock
from rsrag.index.storage import LocalStorage, ObjectStorage, Storage, is_remote, location
from rsrag.index.pipeline import EmbeddedBatch, embed_records
from rsrag.index.rows import Hit, RecordRows
from rsrag.index.rwlock import ReadWriteLock
from rsrag.index.store import RecordStore

if TYPE_CHECKING:  # place filters load shapely: imported when a place is given
    from rsrag.geo.filters import Place

log = logging.getLogger(__name__)

__all__ = ["Library", "Hit", "AddReport", "MANIFEST", "record_text"]

MODES = ("dense", "bm25", "hybrid")
FILTER_CACHE = 64  # filter results (sorted rids) remembered per SQL predicate until the next change
_FLOAT32 = np.dtype(np.float32)


@dataclass
class AddReport:
    """What an `add` did. `failed` holds (id, path, error) of records whose image could not be read."""

    added: int = 0
    replaced: int = 0
    skipped: int = 0  # already in the index (resume) and not upserted
    duplicates: int = 0  # the same id more than once in the input (first kept)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def embedded(self) -> int:
        return self.added + self.replaced

    def to_dict(self) -> dict:
        return {"added": self.added, "replaced": self.replaced, "skipped": self.skipped,
                "duplicates": self.duplicates, "failed": len(self.failed), "seconds": round(self.seconds, 2),
                "images_per_second": round(self.embedded / self.seconds, 1) if self.seconds else None}


@dataclass
class Change:
    """One write as committed: LanceDB went from `base_version` to `version`, removing `removed`
    and adding `rids` (with their vectors, BM25 texts and rows as a scan returns them). What a
    snapshot needs to follow its writer in time proportional to the write (`Library.follow`)."""

    base_version: int
    version: int
    removed: np.ndarray
    rids: np.ndarray
    vectors: np.ndarray
    texts: list[str]
    rows: pa.Table | None


def unique_by_id(records: Iterable) -> tuple[dict[str, Any], int]:
    """id -> record, the first of each id kept, and how many later duplicates were left out."""
    unique: dict[str, Any] = {}
    duplicates = 0
    for rec in records:
        if str(rec.id) in unique:
            duplicates += 1
        else:
            unique[str(rec.id)] = rec
    return unique, duplicates


def _reads(method: Callable) -> Callable:
    """A read of the index: after catching up with other writers, shared with this object's other
    readers, never alongside an in-place update (a reload, `follow`, a write's `apply`)."""

    @functools.wraps(method)
    def reader(self: "Library", *args, **kwargs):
        self._maybe_refresh()
        with self._state.reading():
            return method(self, *args, **kwargs)

    return reader


class Library:
    """An index under `ROOT/NAME`: build it with `create` + `add`, search it after `open`.

    Writes (`add`, `upsert`, `delete`, `rebuild`) take the folder's writer lock, waiting up to
    `lock_timeout` seconds before raising `IndexBusyError` naming the holder's pid.
    """

    def __init__(self, folder: Path | str | Storage, encoder: Encoder | None = None, lock_timeout: float = 10.0,
                 auto_refresh: bool = True, encoder_options: dict | None = None) -> None:
        """`folder`: the index's local folder, `s3://bucket/prefix/NAME`, or a `Storage`.
        `auto_refresh=False` makes a frozen view: it never reloads after other writers commit
        (check `is_stale()` and open a new one), so many threads can share it while writes go on.
        `encoder_options` go to the encoder rebuilt from the manifest's spec (runtime choices such
        as rs-lite's `text_precision`), when no `encoder` is given."""
        if not isinstance(folder, Storage):
            folder = ObjectStorage(folder) if is_remote(folder) else LocalStorage(folder)
        self.location: Storage = folder
        # a local folder for what is kept beside an index on this machine (uploads, caches): the
        # index's own folder, or a cache folder mirroring an object-store prefix
        self.folder = folder.local_path or cache_dir() / "object-store" / folder.uri.removeprefix("s3://")
        self.name = folder.name
        self.auto_refresh = auto_refresh
        self._encoder = encoder
        self._encoder_options = dict(encoder_options or {})
        self._rows: RecordRows | None = None  # loaded on the first search after a change (_record_rows)
        self._filter_cache: dict[Any, np.ndarray] = {}  # SQL predicate (or place) -> sorted rids passing it
        self._place_columns: Any = None  # the rows' place and time columns as arrays (rsrag.geo.filters)
        self._state = ReadWriteLock()  # reads share it; in-place updates of the in-memory state have it alone
        self.changes: list[Change] = []  # this object's writes, for snapshots to follow (service)
        self._index = IndexFolder(self.location, lock_timeout, on_change=self._forget_records,
                                  guard=self._state.writing)
        if encoder is not None:
            self._check_encoder(encoder)
        self._index.open()

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path | None = None, name: str | None = None, *, encoder: Encoder | None = None,
             lock_timeout: float = 10.0, encoder_options: dict | None = None) -> "Library":
        """Open an existing index. `root`: a folder or `s3://` URI (`storage.location`); the encoder is rebuilt
        from the manifest's spec on first use unless one is given (it must match the index)."""
        if name is None:
            raise ValueError("Library.open needs an index name")
        folder = location(root).child(validate_index_name(name))
        if not folder.exists(MANIFEST):
            known = ", ".join(i["name"] for i in cls.list(root)) or "none"
            raise IndexNotFoundError(f"no index named {name!r} under {location(root)} (indexes there: {known}); "
                                     f"build one with `rsrag index build SOURCE --name {name}`")
        return cls(folder, encoder=encoder, lock_timeout=lock_timeout, encoder_options=encoder_options)

    @staticmethod
    def exists(root: str | Path | Storage | None, name: str) -> bool:
        """Whether an index of that name is under root."""
        return location(root).child(validate_index_name(name)).exists(MANIFEST)

    @classmethod
    def create(cls, root: str | Path | None, name: str, *, encoder: Encoder | str | None = None,
               encoder_name: str | None = None, index_type: str | IndexSpec = "auto", exist_ok: bool = False,
               lock_timeout: float = 10.0) -> "Library":
        """Create an empty index for an encoder (instance or registry name; default rs-lite).

        The manifest keeps the encoder's spec (`encoder.spec`, set by `create_encoder`: registry
        name, arguments, checksums of its weight files) to rebuild the same encoder at search time.
        An encoder made otherwise has no spec; then only its registry name is kept: `encoder_name`,
        else `encoder.name`, else the start of `encoder.id` ("rs-lite:..@..").

        With `exist_ok`, an existing index is opened instead (after checking it uses the same
        encoder), which is how an interrupted build resumes.
        """
        folder = location(root).child(validate_index_name(name))
        if isinstance(encoder, str) or encoder is None:
            from rsrag.encoders import create_encoder

            encoder = create_encoder(encoder or encoder_name)
        if folder.exists(MANIFEST):
            if not exist_ok:
                raise IndexExistsError(f"index {name!r} already exists under {location(root)}")
            return cls(folder, encoder=encoder, lock_timeout=lock_timeout)
        spec = index_type if isinstance(index_type, IndexSpec) else IndexSpec.parse(index_type)
        manifest = new_manifest(name, _encoder_entry(encoder, encoder_name), spec)
        if folder.local_path is None:
            folder.write_json(MANIFEST, manifest)  # no lock on an object store; two creators write the same
        else:
            folder.local_path.mkdir(parents=True, exist_ok=True)
            with writer_lock(folder.local_path, lock_timeout):
                if not folder.exists(MANIFEST):
                    folder.write_json(MANIFEST, manifest)
        return cls(folder, encoder=encoder, lock_timeout=lock_timeout)

    @staticmethod
    def list(root: str | Path | None = None) -> list[dict]:
        """The manifests of every index under root (name, encoder, counts, ...), by name."""
        base = location(root)
        out = []
        for name in base.names():
            index = base.child(name)
            try:
                out.append(index.read_json(MANIFEST))
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                out.append({"name": name, "error": "unreadable manifest"})
        return out

    # ---- state ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict:
        """The folder's manifest as last loaded (encoder, index type, counts, last build)."""
        return self._index.manifest

    @property
    def folder_state(self) -> IndexFolder:
        """The index folder's state (manifest, FAISS, BM25, rids); for rsrag.index itself."""
        return self._index

    @property
    def store(self) -> RecordStore:
        """The LanceDB record store; for rsrag.index itself (others read through `rows`/`count`)."""
        return self._index.store

    @property
    def lock_timeout(self) -> float:
        return self._index.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._index.lock_timeout = seconds

    @property
    def dim(self) -> int:
        return self._index.dim

    @property
    def encoder_id(self) -> str:
        return self.manifest["encoder"]["id"]

    @property
    def spec(self) -> IndexSpec:
        """The requested index type (`auto` unless overridden at create)."""
        return self._index.requested

    @_reads
    def __len__(self) -> int:
        return len(self._index.rids)

    def __repr__(self) -> str:
        return f"Library({self.name!r}, records={len(self._index.rids)}, index={self.manifest['index'].get('type')})"

    @property
    def encoder(self) -> Encoder:
        """The index's encoder, rebuilt from the manifest on first use: from its spec (the same
        weights, checked by checksum; for older specs, what the recorded id says), or by registry name
        and id for indexes made before specs were kept."""
        if self._encoder is None:
            from rsrag.encoders.registry import EncoderSpec, EncoderSpecError, create_encoder_from_spec

            want = self.manifest["encoder"]
            spec = EncoderSpec.from_dict(want["spec"]) if want.get("spec") else EncoderSpec(want["name"])
            try:
                enc = create_encoder_from_spec(spec, encoder_id=want["id"], **self._encoder_options)
            except EncoderSpecError as exc:
                raise EncoderMismatchError(f"cannot rebuild the encoder of index {self.name!r}: {exc}") from None
            self._check_encoder(enc)
            if enc.superseded_by:
                log.warning("index %r was built with %s, kept for it; the default is now %s: rebuild the "
                            "index (`rsrag index build ... --name %s`) to use it", self.name, enc.id,
                            enc.superseded_by, self.name)
            self._encoder = enc
        return self._encoder

    def _check_encoder(self, enc: Encoder) -> None:
        want, name = self.manifest["encoder"], self.manifest.get("name")
        if int(enc.dim) != int(want["dim"]):
            raise EncoderMismatchError(
                f"dimension mismatch: encoder {enc.id} makes {enc.dim}-d vectors but index {name!r} holds "
                f"{want['dim']}-d vectors from {want['id']}; search it with that encoder or rebuild the index")
        if enc.id != want["id"]:
            raise EncoderMismatchError(
                f"index {name!r} was built with encoder {want['id']}, not {enc.id}: its vectors are not "
                f"comparable; use the same encoder or rebuild the index")

    def _maybe_refresh(self) -> None:
        """Reload when another process has committed (see `folder.IndexFolder.is_stale`), alone
        (no search of this object's other threads runs meanwhile)."""
        if (self.auto_refresh and not self._index.is_writing and not self._state.reading_here()
                and self._index.is_stale()):
            with self._state.writing():
                if self._index.is_stale():
                    self._index.load()

    def is_stale(self) -> bool:
        """True when a writer has committed since this object last loaded the index."""
        return self._index.is_stale()

    def refresh(self) -> None:
        """Reload from disk now."""
        self._index.load()

    def preload(self) -> "Library":
        """Load now what the first search would load lazily (the record rows)."""
        self._record_rows()
        return self

    def _forget_records(self) -> None:
        """The folder's state changed: what is cached about the records is out of date."""
        self._rows = None
        self._place_columns = None
        self._filter_cache.clear()

    # ---- writing -------------------------------------------------------------------------------
    def add(self, records: Iterable, *, upsert: bool = False, batch_size: int = 64, workers: int = 2,
            chunk_size: int = 512, progress: Callable[[int, int], None] | None = None) -> AddReport:
        """Embed and add records (`rsrag.data.ImageRecord` or anything with id, path, split, label,
        captions, metadata).

        Ids already in the index are skipped (so re-running an interrupted build resumes it without
        re-embedding), or replaced when `upsert`. Embedded records are committed to LanceDB every
        `chunk_size` records; FAISS and BM25 are updated once at the end. `progress(done, total)` is
        called after every batch.
        """

        def embed(todo: list) -> Iterable[EmbeddedBatch]:
            return embed_records(self.encoder, todo, batch_size=batch_size, workers=workers) if todo else []

        return self._add_stream(records, embed, upsert, chunk_size, progress)

    def add_embedded(self, records: Sequence, vectors: np.ndarray, *, upsert: bool = False,
                     chunk_size: int = 50_000) -> AddReport:
        """Add records with vectors computed elsewhere (same encoder space; L2-normalised here).
        Same skip / upsert / commit rules as `add`; no encoder is needed."""
        vectors = l2_normalize(np.asarray(vectors, np.float32).reshape(len(records), -1))
        if vectors.shape[1] != self.dim:
            raise EncoderMismatchError(f"dimension mismatch: vectors have {vectors.shape[1]} dims, "
                                       f"index {self.name!r} holds {self.dim}-d vectors")
        row_of = {id(rec): i for i, rec in enumerate(records)}

        def embed(todo: list) -> Iterator[EmbeddedBatch]:
            for chunk in batched(todo, 4096):
                yield EmbeddedBatch(chunk, vectors[[row_of[id(r)] for r in chunk]])

        return self._add_stream(records, embed, upsert, chunk_size, None)

    def _add_stream(self, records: Iterable, embed: Callable[[list], Iterable[EmbeddedBatch]], upsert: bool,
                    chunk_size: int, progress: Callable[[int, int], None] | None) -> AddReport:
        """The body of `add`: filter ids, embed what is left, commit chunks to LanceDB, then mirror."""
        t0 = time.perf_counter()
        report = AddReport()
        unique, report.duplicates = unique_by_id(records)
        written: list[pa.Table] = []
        with self._index.writing():
            store = self._index.store
            base_version = store.version
            existing = store.id_rids(list(unique))
            todo = [r for i, r in unique.items() if upsert or i not in existing]
            types = store.metadata_types(todo)  # every value checked before anything is written
            report.skipped = len(unique) - len(todo)
            removed, new_rids, new_vecs, new_texts = [], [], [], []
            pending: list[tuple[Any, np.ndarray]] = []
            done = 0

            def commit() -> None:
                recs = [r for r, _ in pending]
                vecs = np.stack([v for _, v in pending])
                rids = self._index.reserve_rids(len(recs))
                rows = store.rows(recs, rids, vecs, types)
                old = [existing[str(r.id)] for r in recs if str(r.id) in existing]
                (store.upsert if old else store.insert_new if self._index.remote else store.add)(rows)
                written.append(rows.drop_columns(["vector"]))
                removed.extend(old)
                new_rids.append(rids)
                new_vecs.append(vecs)
                new_texts.extend(record_text(r.label, r.captions) for r in recs)
                report.replaced += len(old)
                report.added += len(recs) - len(old)
                pending.clear()

            for batch in embed(todo):
                report.failed += [(str(r.id), str(r.path), err) for r, err in batch.failures]
                pending.extend(zip(batch.records, batch.vectors))
                if len(pending) >= chunk_size:
                    commit()
                done += len(batch.records) + len(batch.failures)
                if progress:
                    progress(done, len(todo))
            if pending:
                commit()
            if new_rids:
                removed_rids, added = np.asarray(removed, np.int64), np.concatenate(new_rids)
                vectors = np.concatenate(new_vecs)
                self._index.apply(removed_rids, added, vectors, new_texts)
                if len(new_rids) > 8:
                    store.compact()
                change = Change(base_version, store.version, removed_rids, added, vectors, new_texts,
                                pa.concat_tables(written, promote_options="default"))
        if new_rids:
            self._record(change)
        report.seconds = time.perf_counter() - t0
        return report

    def _record(self, change: Change) -> None:
        """Keep a write for snapshots to follow, unless other writers' commits were mixed into it
        (then they reload)."""
        self.changes.append(change if self._index.last_write_alone else None)
        del self.changes[:-64]

    def follow(self, writer: "Library") -> bool:
        """Apply the writes `writer` made (on the same index) since this object's version, in place
        and in time proportional to them; False (nothing changed) when they do not continue from
        this version: then reopen. How a service's read snapshot keeps up with its own writes
        without reading the whole index again."""
        with self._state.writing():
            version, target = self._index.store.version, writer.folder_state.store.version
            changes = writer.changes
            start = next((i for i in range(len(changes) - 1, -1, -1)
                          if changes[i] is not None and changes[i].base_version == version), None)
            if start is None or version == target:
                return False
            todo = changes[start:]
            if (any(c is None for c in todo) or todo[-1].version != target
                    or any(b.base_version != a.version for a, b in zip(todo, todo[1:]))):
                return False
            rows = self._rows
            for change in todo:
                self._index.follow(writer.folder_state, change.version, change.removed, change.rids, change.vectors,
                                   change.texts)
                if rows is not None:
                    rows.apply(change.rows, change.removed)
            self._rows = rows
        return True

    def upsert(self, records: Iterable, **kwargs) -> AddReport:
        """`add` that replaces records whose id is already in the index."""
        return self.add(records, upsert=True, **kwargs)

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete records by id from LanceDB, FAISS and BM25; returns the ids that were found."""
        ids = [str(i) for i in ids]
        with self._index.writing():
            base_version = self._index.store.version
            found = self._index.store.id_rids(ids)
            if found:
                rids = np.array(sorted(found.values()), np.int64)
                self._index.store.delete(rids)
                nothing = np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), []
                self._index.apply(rids, *nothing)
                change = Change(base_version, self._index.store.version, rids, *nothing, None)
        if found:
            self._record(change)
        return [i for i in ids if i in found]

    def compact(self) -> None:
        """Merge LanceDB's small fragments and write FAISS and BM25 out in full, so readers load
        without catching up (writes otherwise leave that to every few percent of the index's size)."""
        with self._index.writing():
            self._index.store.compact()
            self._index.persist(artefacts=True)

    def rebuild(self, index_type: str | None = None, *, bm25: bool = True) -> None:
        """Rebuild FAISS (optionally switching its type, e.g. "hnsw" or "auto") and BM25 from LanceDB."""
        with self._index.writing():
            self._index.rebuild(index_type, bm25=bm25)

    def note_build(self, source: str, report: AddReport) -> None:
        """Record the last build's source and outcome (with up to 100 failures) in the manifest."""
        with self._index.writing():
            self.manifest["last_build"] = {
                "source": source, "finished": now(), **report.to_dict(),
                "failures": [{"id": i, "path": p, "error": e} for i, p, e in report.failed[:100]]}

    # ---- reading -------------------------------------------------------------------------------
    @_reads
    def info(self) -> dict:
        """Manifest plus live counts, columns and size on disk."""
        local = self.location.local_path
        size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file()) if local is not None else None
        return {**self.manifest, "folder": str(self.location), "columns": self.store.columns(),
                "records": len(self._index.rids), "bytes": size}

    def columns(self) -> list[str]:
        return self.store.columns()

    @property
    @_reads
    def version(self) -> int:
        """The record table's version: changes with every committed write (a key for caches)."""
        return self.store.version

    @_reads
    def rows(self, columns: Sequence[str] | None = None, *, filters: Filters = None, where: str | None = None,
             bbox: Sequence[float] | None = None, place: Place | None = None) -> pa.Table:
        """Records (without their vectors unless asked for) matching the filters, as an Arrow table
        sorted by insertion; `columns` defaults to every column but the vector."""
        cols = list(columns) if columns is not None else self.store.columns()
        table = self.store.scan(cols, self._where(filters, where, bbox))
        if place is not None:
            allowed = self._allowed(None, None, None, place)  # the SQL part is in the scan already
            table = table.filter(pa.array(np.isin(table.column("rid").to_numpy(), allowed)))
        return table.select([c for c in cols if c in table.column_names])

    @_reads
    def count(self, *, filters: Filters = None, where: str | None = None, bbox: Sequence[float] | None = None,
              place: Place | None = None) -> int:
        """How many records match the filters (all records without any)."""
        allowed = self._allowed(filters, where, bbox, place)
        return len(self._index.rids) if allowed is None else len(allowed)

    @_reads
    def get(self, ids: Sequence[str]) -> list[Hit]:
        """Records by id (those that exist, in the order asked), as hits with score 0. Looked up in
        the in-memory id -> rid map, so the cost does not grow with the index."""
        rows = self._record_rows()
        rids = rows.rids_of(ids)
        return rows.hits(rids, [0.0] * len(rids))

    def _record_rows(self) -> RecordRows:
        """The records in memory, indexed by rid (see rows.py); loaded on the first use after a change."""
        if self._rows is None:
            store = self.store
            self._rows = RecordRows(store.scan([c for c in store.columns() if c != "rid"]))
        return self._rows

    def _hydrate(self, rids: Sequence[int], scores: Sequence[float], parts: list[dict] | None = None) -> list[Hit]:
        return self._record_rows().hits(rids, scores, parts)

    def _where(self, filters: Filters, where: str | None, bbox: Sequence[float] | None) -> str | None:
        """The filters as one SQL predicate checked against the schema (None: no filter)."""
        if not filters and not where and bbox is None:
            return None
        return build_where(self.store.schema(), filters, where, bbox)

    def _allowed(self, filters: Filters, where: str | None, bbox: Sequence[float] | None,
                 place: Place | None = None) -> np.ndarray | None:
        """Sorted rids passing the filters, or None when there are no filters. A place is tested in
        memory (`Place.select` over the rows' place and time columns), then ANDed with the SQL filters."""
        sql = self._where(filters, where, bbox)
        allowed = None
        if sql is not None:
            try:
                allowed = self._cached(sql, lambda: self.store.rids(where=sql))
            except (ValueError, RuntimeError, OSError) as exc:
                known = ", ".join(self.store.columns())
                raise FilterError(f"bad filter {sql!r}: {exc} (columns: {known})") from None
        if place is None:
            return allowed
        from rsrag.geo.filters import PlaceError

        try:  # a place asked again (a map's area, query after query) is not tested again
            inside = self._cached(("place", place),
                                  lambda: np.flatnonzero(place.select(self._place_arrays())).astype(np.int64))
        except PlaceError as exc:
            raise FilterError(str(exc)) from None
        return inside if allowed is None else np.intersect1d(inside, allowed, assume_unique=True)

    def _cached(self, key: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A filter's rids from the cache (the oldest of FILTER_CACHE entries goes), else computed."""
        if key not in self._filter_cache:
            self._filter_cache[key] = compute()
            if len(self._filter_cache) > FILTER_CACHE:
                self._filter_cache.pop(next(iter(self._filter_cache)))
        return self._filter_cache[key]

    def _place_arrays(self):
        """The records' place and time columns as arrays indexed by rid, built once per table version."""
        if self._place_columns is None:
            from rsrag.geo.filters import PlaceColumns

            rows = self._record_rows()
            present = np.array([row is not None for row in rows.rows], bool)
            self._place_columns = PlaceColumns(rows.metadata, present)
        return self._place_columns

    def _dense(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[list[int], list[float]]:
        """(rids, cosine scores) of the k nearest records, best first, as lists (what the callers
        iterate)."""
        if type(vector) is np.ndarray and vector.dtype is _FLOAT32 and vector.ndim == 1 and vector.flags.c_contiguous:
            query = vector[None]  # already FAISS' own layout: a view, no copy
        else:
            query = np.ascontiguousarray(vector, np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise EncoderMismatchError(f"dimension mismatch: query vector has {query.shape[1]} dims, "
                                       f"index {self.name!r} holds {self.dim}-d vectors")
        ann = self._index.ann
        if ann is None or k <= 0 or (allowed is not None and not len(allowed)):
            return [], []
        scores, rids = ann.search(query, k, allowed, vectors_for=self.store.vectors_for_rids)
        rids, scores = rids[0].tolist(), scores[0].tolist()
        if rids and rids[-1] < 0:  # FAISS fills the slots it found nothing for, at the end, with -1
            keep = [i for i, rid in enumerate(rids) if rid >= 0]
            rids, scores = [rids[i] for i in keep], [scores[i] for i in keep]
        if allowed is not None and len(rids) < min(k, len(allowed)):  # an ANN missed some: go exact
            cand, vecs = self.store.vectors(allowed)
            sims = vecs @ query[0]
            top = np.argsort(-sims, kind="stable")[:k]
            rids, scores = cand[top].tolist(), sims[top].tolist()
        return rids, scores

    @_reads
    def search_vector(self, vector: np.ndarray, k: int = 10, *, filters: Filters = None, where: str | None = None,
                      bbox: Sequence[float] | None = None, place: Place | None = None) -> list[Hit]:
        """Nearest records to an embedding (cosine)."""
        return self._hydrate(*self._dense(vector, k, self._allowed(filters, where, bbox, place)))

    @_reads
    def search_text(self, query: str, k: int = 10, *, mode: str = "hybrid", filters: Filters = None,
                    where: str | None = None, bbox: Sequence[float] | None = None, place: Place | None = None,
                    weights: tuple[float, float] = (1.0, 1.0), depth: int | None = None,
                    vector: np.ndarray | None = None) -> list[Hit]:
        """Search by text.

        `vector`: the query's text embedding when the caller has it already (a server that batches
        query encoding across requests); otherwise the index's encoder embeds `query`.

        - `dense`: the query's text embedding against the image vectors (cross-modal).
        - `bm25`: keywords against each record's label + captions; only records that match.
        - `hybrid` (default): reciprocal-rank fusion of the two top-`depth` lists (default
          max(50, 5k)): score = w_dense / (60 + dense rank) + w_bm25 / (60 + bm25 rank), ranks from 1,
          a list a record is absent from adds nothing. `weights` = (w_dense, w_bm25), default (1, 1).
        """
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        allowed = self._allowed(filters, where, bbox, place)
        if mode == "bm25":
            rids, scores = self._index.bm25.search(query, k, allowed)
            return self._hydrate(rids.tolist(), scores.tolist())
        if vector is None:
            vector = self.encoder.encode_texts([query])[0]
        if mode == "dense":
            return self._hydrate(*self._dense(vector, k, allowed))
        depth = depth or max(50, 5 * k)
        bm25_rids, bm25_scores = self._index.bm25.search(query, depth, allowed)
        lists = {"dense": list(zip(*self._dense(vector, depth, allowed))),
                 "bm25": list(zip(bm25_rids.tolist(), bm25_scores.tolist()))}
        fused = fusion.rrf(lists, weights=dict(zip(lists, weights)))
        parts: dict[int, dict] = {}
        for name, ranked_list in lists.items():
            for rid, s in ranked_list:
                parts.setdefault(rid, {})[name] = s
        order = fusion.ranked(fused, k)
        return self._hydrate(order, [fused[r] for r in order], [parts[r] for r in order])

    @_reads
    def search_image(self, image: ImageInput, k: int = 10, *, filters: Filters = None, where: str | None = None,
                     bbox: Sequence[float] | None = None, place: Place | None = None,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """Images most like `image` (a path, bytes, PIL image or array). `exclude_ids` drops e.g. the
        query itself when it is in the index."""
        vector = self.encoder.encode_images([image])[0]
        hits = self._hydrate(*self._dense(vector, k + len(exclude_ids), self._allowed(filters, where, bbox, place)))
        excluded = set(exclude_ids)
        hits = [h for h in hits if h.id not in excluded][:k]
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
        return hits


def _encoder_entry(encoder: Encoder, encoder_name: str | None) -> dict:
    """The manifest's `encoder` entry: registry name, spec (when the encoder has a portable one),
    id and dimension."""
    from rsrag.encoders.registry import EncoderSpec

    spec = getattr(encoder, "spec", None)
    entry: dict[str, Any] = {"name": None, "id": encoder.id, "dim": int(encoder.dim)}
    if isinstance(spec, EncoderSpec):
        entry["name"] = spec.name
        try:
            entry["spec"] = spec.to_dict()
        except ValueError as exc:  # an argument JSON cannot hold: only the name is kept
            log.warning("encoder %s: keeping only its name in the manifest: %s", encoder.id, exc)
    entry["name"] = entry["name"] or encoder_name or getattr(encoder, "name", None) or re.split(r"[@:]", encoder.id)[0]
    return entry
