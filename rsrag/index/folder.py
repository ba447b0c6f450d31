"""`IndexFolder`: the objects of one index, kept consistent with each other.

An index lives in a local folder or under an object-store prefix (`storage.Storage`); layout of
`ROOT/NAME/`:

- `records.lance/`  LanceDB table, the source of truth (rows, vectors, metadata; see store.py)
- `vectors.faiss`   FAISS index over the vectors, keyed by rid (see ann.py)
- `bm25.npz`        BM25 state over each record's label + captions (see bm25.py)
- `manifest.json`   encoder spec, id and dim, index type and parameters, counts, the rid counter,
                    the LanceDB version, and which LanceDB version the FAISS/BM25 files reflect
- `next_rid`        the rid counter as reserved by the writer of the moment (see `reserve_rids`)
- `.lock`           writer lock (flock): one writer at a time, readers never block
- `.commits`        commit counter (8 bytes), bumped by writers, memory-mapped by readers (below)

On an object store the FAISS and BM25 objects carry the LanceDB version they reflect in their name
(`vectors.V.faiss`, `bm25.V.npz`; the manifest names the current pair, the pair before it is kept for
readers still downloading it), there is no lock or counter file, and rids are reserved in a small
Lance table (`rid_counter.lance`) by compare-and-swap (below).

Consistency. FAISS and BM25 are derived from LanceDB and can always be rebuilt from it. A write
commits to LanceDB first (one atomic commit per chunk), then updates FAISS and BM25 in memory
(`apply`), then the manifest (`persist`; atomically). Whenever a folder is loaded, and whenever a
writer starts (`writing`), FAISS and BM25 are compared with the rids in LanceDB and repaired:
vectors missing from FAISS are read back from LanceDB (never re-embedded), rids LanceDB no longer
has are removed. So a process killed at any point loses nothing that was committed, and never
resurrects what was deleted. rids are never reused: an upsert writes a new rid, so a stale file
can never pair an old vector with a new record.

Writes cost the batch, not the index. Rewriting FAISS and BM25 on every write would make one small
write cost time proportional to the whole index. Instead `persist` writes them only when the
changes since they were last written pass `delta_limit` (1,000 records or 5% of the index, the
larger) or when asked (`persist(artefacts=True)`, `Library.compact`); until then the manifest
records the LanceDB version they reflect and every load brings them up to date from LanceDB by the
same repair (reading only the newer vectors). The cost of rewriting them is thus spread over at
least 5% of the index's size in writes; `bench/writes.py` measures it.

Several writers. In a local folder writers take turns on the `.lock` flock. On an object store there
is no shared lock: each writer commits to LanceDB through Lance's own optimistic commit protocol
(concurrent appends both land; inserts are merge-inserts on `id`, retried by Lance against the newer
version, so two writers adding one id store it once), reserves rids by a compare-and-swap on the
counter table (a merge-insert conditioned on the value it read), and, when it finds that another
writer committed between its own commits (the table version moved further than its own commits or
the row count differs), re-reads the rids from LanceDB before writing the manifest. A manifest write
never goes back to an older LanceDB version than the one it replaces. A writer that dies leaves the
last manifest, which pairs with the LanceDB version it names; the next load repairs from there.

Staleness. Readers notice a writer's commit by the manifest's change stamp and reload. Before every
search they read the folder's memory-mapped commit counter (`fsutil.CommitCounter`, bumped by each
writer after its manifest replace) and `stat` the manifest only when it moved, or when
`STAMP_CHECK_S` (1 s) has passed: that catches a folder deleted and built again under the same name
(a new counter file), a writer killed between its manifest replace and the bump, and writers on
another machine sharing the folder over a network filesystem, where memory maps need not see each
other's writes. On an object store the manifest is checked (one HEAD request) at most every
`STAMP_CHECK_S`, so a reader sees another machine's write within about a second.

Names. An index name is a plain folder name (`validate_index_name`), checked wherever a name comes
in, so no name can reach outside the indexes root.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import numpy as np
import pyarrow as pa

from rsrag.index.ann import AnnIndex, IndexSpec
from rsrag.index.bm25 import BM25Index
from rsrag.index.errors import IndexBusyError, IndexNameError
from rsrag.index.fsutil import CommitCounter, writer_lock
from rsrag.index.storage import LocalStorage, Storage
from rsrag.index.store import RecordStore

log = logging.getLogger(__name__)

MANIFEST, FAISS_FILE, BM25_FILE, RIDS_FILE = "manifest.json", "vectors.faiss", "bm25.npz", "next_rid"
RID_COUNTER = "rid_counter"  # the Lance table that reserves rids on an object store
FORMAT = 1
STAMP_CHECK_S = 1.0  # see the module doc: the manifest is stat'ed at least this often while searching
DELTA_MIN, DELTA_FRACTION = 1000, 0.05  # FAISS/BM25 are rewritten once this many records changed
NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def validate_index_name(name: object) -> str:
    """The name itself when it is a plain folder name: letters, digits, '.', '_' and '-', at most
    `NAME_MAX` characters, not starting with '.' and without '..'; else `IndexNameError`. The one
    rule for every place that takes an index name, so none can point outside the indexes root."""
    if not isinstance(name, str) or not name:
        raise IndexNameError(f"an index name must be a non-empty string, not {name!r}")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > NAME_MAX:
        raise IndexNameError(f"index name {shown!r} is {len(name)} characters long; at most {NAME_MAX} are allowed")
    if not _NAME.fullmatch(name) or name.startswith(".") or ".." in name:
        raise IndexNameError(f"bad index name {shown!r}: use letters, digits, '.', '_' and '-' only, "
                             f"not starting with '.' and without '..'")
    return name


def record_text(label: str | None, captions: Sequence[str] | None) -> str:
    """What BM25 indexes for a record: its label (underscores as spaces) and all its captions."""
    return " ".join([str(label or "").replace("_", " "), *(captions or [])])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(name: str, encoder: dict, index_type: IndexSpec) -> dict:
    """The manifest of an empty index (`encoder`: name, spec, id and dim of its encoder)."""
    return {
        "format": FORMAT, "name": name, "created": now(), "updated": now(), "encoder": encoder,
        "index": {"requested": str(index_type), "type": None, "params": {}, "trained_n": 0},
        "counts": {"records": 0, "faiss": 0, "bm25": 0, "tombstones": 0},
        "next_rid": 0, "lance_version": 0,
    }


def read_manifest(folder: Path | Storage) -> dict:
    storage = folder if isinstance(folder, Storage) else LocalStorage(folder)
    return storage.read_json(MANIFEST)


def delta_limit(n: int) -> int:
    """How many changed records FAISS and BM25 may lag behind LanceDB on disk (module doc)."""
    return max(DELTA_MIN, int(DELTA_FRACTION * n))


class IndexFolder:
    """One index (local folder or object-store prefix) and its derived state in memory: the
    manifest, the LanceDB store, FAISS (`ann`), BM25 (`bm25`) and the sorted rids LanceDB holds
    (`rids`), kept in step as the module doc describes. `on_change` is called whenever that state
    changes (a load or a write), so the owner can drop what it caches about the records."""

    def __init__(self, storage: Storage | Path, lock_timeout: float = 10.0,
                 on_change: Callable[[], None] | None = None,
                 guard: Callable[[], ContextManager] | None = None) -> None:
        """`guard()`: held around every in-place change of the in-memory state (the owner's
        readers-writer lock, so no search of another thread sees half of one)."""
        self.storage = storage if isinstance(storage, Storage) else LocalStorage(storage)
        self.path = self.storage.local_path  # None on an object store
        self.remote = self.path is None
        self.name = self.storage.name
        self.lock_timeout = lock_timeout
        self._on_change = on_change or (lambda: None)
        self._guard = guard or nullcontext
        self.last_write_alone = True  # whether the last write's commits were all this object's
        self._commits = CommitCounter(self.path) if self.path is not None else None
        self._commits_seen: int | None = None
        self._stamp_seen: tuple = ()
        self._stamp_checked = 0.0
        self._writing_depth = 0
        self._thread_lock = threading.RLock()  # threads of one process sharing this object take turns
        self.manifest: dict = read_manifest(self.storage)
        self.dim = int(self.manifest["encoder"]["dim"])
        self.store = RecordStore(self.storage, self.dim)
        self.ann: AnnIndex | None = None
        self.bm25 = BM25Index()
        self.rids = np.zeros(0, np.int64)  # sorted rids of the records in LanceDB
        self.next_rid = 0
        self.synced_version = 0  # the LanceDB version FAISS and BM25 were last brought in line with
        self.pending = 0  # records changed since FAISS/BM25 were last written (module doc)
        self._artefacts_readable = False  # whether the last load read both FAISS and BM25 files
        self._rid_counter = None  # the object store's rid counter table, once opened

    @property
    def requested(self) -> IndexSpec:
        """The requested index type (`auto` unless overridden at create or rebuild)."""
        return IndexSpec.parse(self.manifest["index"]["requested"])

    @property
    def is_writing(self) -> bool:
        """Whether this object holds the writer lock now (inside `writing()`)."""
        return self._writing_depth > 0

    # ---- loading and repair --------------------------------------------------------------------
    def open(self) -> None:
        """Load, and save a repair the load made when no writer is busy (else the next writer saves
        it): only one that rebuilt what was lost, not the lag the module doc allows; never on an
        object store, where readers do not write."""
        if not self.load() or self.remote or (self.pending < delta_limit(len(self.rids)) and self._artefacts_readable):
            return
        try:
            with writer_lock(self.path, timeout=0):
                if self._stamp() == self._stamp_seen:
                    self.persist(artefacts=True)
        except IndexBusyError:
            pass

    def load(self) -> bool:
        """Read manifest, LanceDB, FAISS and BM25 from disk and repair the derived two (module doc).
        Returns True when a repair changed them (so the files on disk are stale)."""
        self._commits_seen = self._commits.value() if self._commits else None  # before the manifest
        self._stamp_seen, self._stamp_checked = self._stamp(), time.monotonic()
        self.manifest = read_manifest(self.storage)
        self.store.refresh()
        self.ann = self._load_ann()
        bm25 = self._load_bm25()
        self._artefacts_readable = bm25 is not None and (self.ann is not None or not self._artefact("ann"))
        self.bm25 = bm25 or BM25Index()
        self.rids = self.store.rids()
        stored_max = int(self.ann.stored_ids().max()) if self.ann is not None and self.ann.index.ntotal else -1
        lance_max = int(self.rids.max()) if len(self.rids) else -1
        reserved = 0
        if self.path is not None and (self.path / RIDS_FILE).is_file():
            reserved = int((self.path / RIDS_FILE).read_text())
        self.next_rid = max(int(self.manifest.get("next_rid", 0)), reserved, lance_max + 1, stored_max + 1)
        self.pending = 0
        repaired = self.repair()
        self.synced_version = self.store.version
        self._on_change()
        return repaired

    def _artefact(self, kind: str) -> str | None:
        """The object holding FAISS ("ann") or BM25 ("bm25") as the manifest names it."""
        named = self.manifest.get("artefacts", {})
        if kind in named:
            return named[kind]
        return {"ann": FAISS_FILE, "bm25": BM25_FILE}[kind]

    @contextmanager
    def _local_copy(self, key: str) -> Iterator[Path | None]:
        """A local file with the object's bytes (the object itself in a local folder); None if missing."""
        if self.path is not None:
            path = self.path / key
            yield path if path.is_file() else None
            return
        with tempfile.TemporaryDirectory(prefix="rsrag-") as tmp:
            local = Path(tmp) / Path(key).name
            try:
                self.storage.download(key, local)
            except FileNotFoundError:
                yield None
                return
            yield local

    def _load_ann(self) -> AnnIndex | None:
        """The FAISS file when it matches the manifest, else None (rebuilt from LanceDB by `repair`)."""
        kind, key = self.manifest["index"].get("type"), self._artefact("ann")
        if not kind or not key:
            return None
        with self._local_copy(key) as local:
            if local is None:
                return None
            try:
                spec = IndexSpec(kind, self.manifest["index"]["params"])
                ann = AnnIndex.load(local, spec, self.manifest["index"].get("trained_n", 0))
            except RuntimeError as exc:
                log.warning("cannot read %s, rebuilding it from LanceDB: %s", key, exc)
                return None
        if AnnIndex.file_kind(ann.index) != kind or ann.dim != self.dim:
            return None  # a crash between the FAISS file and the manifest
        return ann

    def _load_bm25(self) -> BM25Index | None:
        key = self._artefact("bm25")
        with self._local_copy(key) as local:
            if local is None:
                return None
            try:
                return BM25Index.load(local)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot read %s, rebuilding it from LanceDB: %s", key, exc)
                return None

    def repair(self) -> bool:
        """Bring FAISS and BM25 in line with the rids in LanceDB; True if anything changed."""
        changed = False
        rids = self.rids
        lag = 0  # records FAISS/BM25 had to catch up on (the write lag the module doc allows, or a crash)
        if self.ann is not None:
            stored = self.ann.stored_ids()
            stale = np.setdiff1d(stored, rids, assume_unique=True)
            missing = np.setdiff1d(rids, stored, assume_unique=True)
            if len(stale):
                self.ann.remove(stale)
                changed |= self.ann.spec.kind != "hnsw"  # hnsw only tombstones them: its file is unchanged
            if len(missing):
                self.ann.add(*self.store.vectors(missing))
                changed = True
            lag = len(stale) + len(missing)
        if self.rebuild_ann_if_needed():
            changed = True
            lag = max(lag, delta_limit(len(rids)))  # a new FAISS index: worth writing out
        stale = np.setdiff1d(self.bm25.doc_rids, rids)
        missing = np.setdiff1d(rids, self.bm25.doc_rids)
        lag = max(lag, len(stale) + len(missing))
        self.pending += lag
        if len(stale):
            self.bm25.remove(stale)
            changed = True
        if len(missing):
            where = f"rid >= {int(missing.min())} AND rid <= {int(missing.max())}"
            table = self.store.scan(["label", "captions"], where)
            table = table.filter(pa.array(np.isin(table.column("rid").to_numpy(), missing)))
            labels, captions = table.column("label").to_pylist(), table.column("captions").to_pylist()
            texts = [record_text(label, caps) for label, caps in zip(labels, captions)]
            self.bm25.add(table.column("rid").to_numpy().astype(np.int64), texts)
            changed = True
        if changed:
            log.info("index %s: repaired FAISS/BM25 from LanceDB", self.name)
        return changed

    def rebuild_ann_if_needed(self) -> bool:
        """Build FAISS again from LanceDB when its type or training no longer suits the collection."""
        n = len(self.rids)
        requested = self.requested
        if n == 0:
            rebuilt = self.ann is not None and self.ann.index.ntotal > 0
            self.ann = None
            return rebuilt
        if self.ann is not None and not self.ann.needs_rebuild(requested, n):
            return False
        spec = requested.resolve(n, self.dim)
        rids, vectors = self.store.vectors()
        t0 = time.perf_counter()
        self.ann = AnnIndex.build(spec, self.dim, rids, vectors)
        log.info("index %s: built FAISS %s over %d vectors in %.1fs", self.name, spec, n, time.perf_counter() - t0)
        return True

    def rebuild(self, index_type: str | None = None, *, bm25: bool = True) -> None:
        """Rebuild FAISS (optionally as another type) and BM25 from LanceDB; call inside `writing()`."""
        if index_type is not None:
            self.manifest["index"]["requested"] = str(IndexSpec.parse(index_type))
        with self._guard():
            self.ann = None
            if bm25:
                self.bm25 = BM25Index()
            self.repair()  # the records are the same: nothing for `on_change`

    # ---- staleness -----------------------------------------------------------------------------
    def _stamp(self) -> tuple:
        return self.storage.stamp(MANIFEST)

    def is_stale(self) -> bool:
        """True when a writer has committed since this object last loaded the folder."""
        commits = self._commits.value() if self._commits else None  # before every search: a memory read
        now_s = time.monotonic()
        recent = now_s - self._stamp_checked < STAMP_CHECK_S
        if recent and (self.remote or (commits is not None and commits == self._commits_seen)):
            return False
        if self._stamp() != self._stamp_seen:
            return True  # and stays so until a reload
        self._commits_seen, self._stamp_checked = commits, now_s  # nothing new: remember we looked
        return False

    # ---- writing -------------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock; start from what is on disk; persist on success.

        On an exception nothing derived is written: whatever reached LanceDB is picked up by the
        repair on the next load.
        """
        with self._thread_lock:
            if self._writing_depth:  # nested (e.g. rebuild inside a write): already locked
                yield
                return
            with nullcontext() if self.remote else writer_lock(self.path, self.lock_timeout):
                if self.path is not None:
                    for tmp in self.path.glob(".*.tmp-*"):  # left by a writer killed mid-write
                        tmp.unlink(missing_ok=True)
                with self._guard():
                    if self._stamp() != self._stamp_seen:
                        self.load()
                    self.store.refresh()
                    if self.store.version != self.synced_version:  # another writer, or one that died after a commit
                        self._resync()
                start_version, start_commits = self.store.version, self.store.commits
                self._writing_depth += 1
                try:
                    yield
                finally:
                    self._writing_depth -= 1
                self.last_write_alone = True
                if self.remote and (self.store.version - start_version != self.store.commits - start_commits
                                    or self.store.count() != len(self.rids)):
                    self.last_write_alone = False
                    with self._guard():
                        self._resync()  # another machine committed between our commits (module doc)
                self.synced_version = self.store.version
                self.persist()

    def _resync(self) -> None:
        """Bring FAISS and BM25 in line with every rid LanceDB holds now."""
        self.store.refresh()
        self.rids = self.store.rids()
        self.repair()
        self._on_change()

    def reserve_rids(self, n: int) -> np.ndarray:
        """Fresh rids, recorded before use so no crash can make one be reused: in their own small
        file under the writer lock (rewriting the manifest per chunk would make every reader
        reload), or on an object store by compare-and-swap on the counter table (module doc)."""
        if self.remote:
            start = self._reserve_remote(n)
        else:
            start = self.next_rid
            self.storage.write_bytes(RIDS_FILE, f"{start + n}\n".encode())
        self.next_rid = max(self.next_rid, start + n)
        return np.arange(start, start + n, dtype=np.int64)

    def _reserve_remote(self, n: int, attempts: int = 50) -> int:
        """Move the shared counter from its value v to v + n, only if nobody moved it first; returns v."""
        table = self._rid_counter_table()
        for attempt in range(attempts):
            table.checkout_latest()
            stored = int(table.to_arrow().column("next")[0].as_py())
            current = max(stored, self.next_rid)
            new = pa.table({"key": ["rid"], "next": pa.array([current + n], pa.int64())})
            result = (table.merge_insert("key").when_matched_update_all(where=f"target.next = {stored}")
                      .execute(new))
            if result.num_updated_rows == 1:
                return current
            time.sleep(0.01 * (1 + secrets.randbelow(10)) * min(attempt + 1, 10))
        raise IndexBusyError(f"index {self.storage}: could not reserve record ids after {attempts} attempts; "
                             f"too many writers at once - try again")

    def _rid_counter_table(self):
        """The counter table on the object store (made by the first writer), opened once."""
        if self._rid_counter is None:
            db = self.store.db
            try:
                self._rid_counter = db.open_table(RID_COUNTER)
            except ValueError:
                try:
                    self._rid_counter = db.create_table(
                        RID_COUNTER, pa.table({"key": ["rid"], "next": pa.array([self.next_rid], pa.int64())}))
                except ValueError:  # another writer made it first
                    self._rid_counter = db.open_table(RID_COUNTER)
        return self._rid_counter

    def apply(self, removed: np.ndarray, rids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        """Mirror a committed LanceDB change into FAISS, BM25 and the in-memory rid list."""
        with self._guard():
            removed = np.asarray(removed, np.int64)
            self.rids = _updated_rids(self.rids, removed, np.asarray(rids, np.int64))
            if self.ann is not None:
                self.ann.remove(removed)
                self.ann.add(rids, vectors)
            self.rebuild_ann_if_needed()
            self.bm25.remove(removed)
            self.bm25.add(rids, texts)
            self.pending += len(removed) + len(rids)
            self._on_change()

    @property
    def seen(self) -> tuple:
        """What this object last saw of the folder's change stamps (manifest stamp, commit count)."""
        return self._stamp_seen, self._commits_seen

    def follow(self, writer: "IndexFolder", version: int, removed: np.ndarray, rids: np.ndarray,
               vectors: np.ndarray, texts: list[str]) -> None:
        """Apply one of `writer`'s writes (LanceDB now at `version`) to this read-only copy of the
        same index, and take the writer's manifest and change stamps, so this copy is current
        without reloading (`Library.follow`)."""
        self.store.checkout(version)  # first: a FAISS rebuild in `apply` reads the vectors of this version
        self.apply(removed, rids, vectors, texts)
        self.synced_version = version
        self.next_rid = max(self.next_rid, writer.next_rid)
        self.manifest = json.loads(json.dumps(writer.manifest))
        (self._stamp_seen, self._commits_seen), self._stamp_checked = writer.seen, time.monotonic()

    def persist(self, artefacts: bool | None = None) -> None:
        """Write FAISS and BM25 when they lag too far behind LanceDB (module doc; `artefacts=True`:
        now), then the manifest (the commit point for readers)."""
        ann = self.ann
        if artefacts is None:
            artefacts = self.pending >= delta_limit(len(self.rids)) or "artefacts" not in self.manifest
        if self.remote:
            current = self.storage.read_json(MANIFEST)
            if int(current.get("lance_version", 0)) > self.store.version:
                return  # a newer writer's manifest stays (never go back to an older version)
        if artefacts:
            self._write_artefacts(ann)
        self.manifest["index"].update({
            "type": ann.spec.kind if ann else None, "params": ann.spec.params if ann else {},
            "trained_n": ann.trained_n if ann else 0})
        self.manifest["counts"] = {"records": len(self.rids), "faiss": len(ann) if ann else 0,
                                   "bm25": len(self.bm25), "tombstones": len(ann.tombstones) if ann else 0}
        self.manifest.update({"next_rid": self.next_rid, "lance_version": self.store.version, "updated": now()})
        self.storage.write_json(MANIFEST, self.manifest)
        if artefacts and self.remote:
            self._drop_old_artefacts()
        self._commits_seen = self._commits.bump() if self._commits else None  # under the writer lock
        self._stamp_seen = self._stamp()

    def _write_artefacts(self, ann: AnnIndex | None) -> None:
        """FAISS and BM25 as they are in memory, named for the LanceDB version they reflect on an
        object store (module doc); the manifest written next points at them."""
        version = self.store.version
        ann_key = (f"vectors.{version}.faiss" if self.remote else FAISS_FILE) if ann is not None else None
        bm25_key = f"bm25.{version}.npz" if self.remote else BM25_FILE
        if ann is not None:
            self._put(ann_key, ann.save)
        elif self.path is not None:
            (self.path / FAISS_FILE).unlink(missing_ok=True)
        self._put(bm25_key, self.bm25.save)
        previous = self.manifest.get("artefacts", {})
        self.manifest["artefacts"] = {"ann": ann_key, "bm25": bm25_key, "lance_version": version,
                                      "previous": [k for k in (previous.get("ann"), previous.get("bm25"))
                                                   if k and k not in (ann_key, bm25_key)]}
        self.pending = 0

    def _put(self, key: str, save: Callable[[Path], None]) -> None:
        """Write an object with `save(path)`: in place in a local folder (`save` writes atomically),
        through a temporary file uploaded in one piece on an object store (`_local_copy` reads back)."""
        if self.path is not None:
            save(self.path / key)
            return
        with tempfile.TemporaryDirectory(prefix="rsrag-") as tmp:
            local = Path(tmp) / key
            save(local)
            self.storage.upload(local, key)

    def _drop_old_artefacts(self) -> None:
        """Delete FAISS/BM25 objects older than the current and the previous pair (kept for readers
        that read the previous manifest and are still downloading); newer ones may be another
        writer's, about to be named by its manifest."""
        named = self.manifest["artefacts"]
        keep = {named.get("ann"), named.get("bm25"), *named.get("previous", [])}
        for key in self.storage.names():
            found = re.fullmatch(r"(?:vectors\.(\d+)\.faiss|bm25\.(\d+)\.npz)", key)
            if found and key not in keep and int(found.group(1) or found.group(2)) < named["lance_version"]:
                self.storage.delete(key)


def _updated_rids(rids: np.ndarray, removed: np.ndarray, added: np.ndarray) -> np.ndarray:
    """The sorted rid list after a write, in time proportional to the write plus one copy: new rids
    are always above every earlier one (never reused), so they are appended."""
    if len(removed):
        at = np.searchsorted(rids, removed)
        at = at[(at < len(rids)) & (rids[np.minimum(at, len(rids) - 1)] == removed)] if len(rids) else at[:0]
        rids = np.delete(rids, at)
    if len(added):
        added = np.sort(added)
        if len(rids) and added[0] <= rids[-1]:
            return np.union1d(rids, added)
        rids = np.concatenate([rids, added])
    return rids

