"""`IndexFolder`: the files of one index folder, kept consistent with each other.

Layout of `ROOT/NAME/`:

- `records.lance/`  LanceDB table, the source of truth (rows, vectors, metadata; see store.py)
- `vectors.faiss`   FAISS index over the vectors, keyed by rid (see ann.py)
- `bm25.npz`        BM25 state over each record's label + captions (see bm25.py)
- `manifest.json`   encoder spec, id and dim, index type and parameters, counts, the rid counter
- `next_rid`        the rid counter as reserved by the writer of the moment (see `reserve_rids`)
- `.lock`           writer lock (flock): one writer at a time, readers never block
- `.commits`        commit counter (8 bytes), bumped by writers, memory-mapped by readers (below)

Consistency. FAISS and BM25 are derived from LanceDB and can always be rebuilt from it. A write
commits to LanceDB first (one atomic commit per chunk), then updates FAISS and BM25 in memory
(`apply`), then replaces their files and finally the manifest (`persist`; each atomically, temp
file + rename). Whenever a folder is loaded, and whenever a writer takes the lock (`writing`),
FAISS and BM25 are compared with the rids in LanceDB and repaired: vectors missing from FAISS are
read back from LanceDB (never re-embedded), rids LanceDB no longer has are removed. So a process
killed at any point loses nothing that was committed, and never resurrects what was deleted. rids
are never reused: an upsert writes a new rid, so a stale file can never pair an old vector with a
new record.

Staleness. Readers notice a writer's commit by the manifest's change stamp and reload. Before every
search they read the folder's memory-mapped commit counter (`fsutil.CommitCounter`, bumped by each
writer after its manifest replace) and `stat` the manifest only when it moved, or when
`STAMP_CHECK_S` (1 s) has passed: that catches a folder deleted and built again under the same name
(a new counter file), a writer killed between its manifest replace and the bump, and writers on
another machine sharing the folder over a network filesystem, where memory maps need not see each
other's writes.

Names. An index name is a plain folder name (`validate_index_name`), checked wherever a name comes
in, so no name can reach outside the indexes root.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from rsrag.fileio import atomic_write, atomic_write_json
from rsrag.index.ann import AnnIndex, IndexSpec
from rsrag.index.bm25 import BM25Index
from rsrag.index.errors import IndexBusyError, IndexNameError
from rsrag.index.fsutil import CommitCounter, writer_lock
from rsrag.index.store import RecordStore

log = logging.getLogger(__name__)

MANIFEST, FAISS_FILE, BM25_FILE, RIDS_FILE = "manifest.json", "vectors.faiss", "bm25.npz", "next_rid"
FORMAT = 1
STAMP_CHECK_S = 1.0  # see the module doc: the manifest is stat'ed at least this often while searching
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


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


class IndexFolder:
    """One index folder on disk and its derived state in memory: the manifest, the LanceDB store,
    FAISS (`ann`), BM25 (`bm25`) and the sorted rids LanceDB holds (`rids`), kept in step as the
    module doc describes. `on_change` is called whenever that state changes (a load or a write),
    so the owner can drop what it caches about the records."""

    def __init__(self, path: Path, lock_timeout: float = 10.0, on_change: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.lock_timeout = lock_timeout
        self._on_change = on_change or (lambda: None)
        self._manifest_path = str(self.path / MANIFEST)
        self._commits = CommitCounter(self.path)
        self._commits_seen: int | None = None
        self._stamp_seen: tuple = ()
        self._stamp_checked = 0.0
        self._writing_depth = 0
        self._thread_lock = threading.RLock()  # threads of one process sharing this object take turns
        self.manifest: dict = read_manifest(self.path)
        self.dim = int(self.manifest["encoder"]["dim"])
        self.store = RecordStore(self.path, self.dim)
        self.ann: AnnIndex | None = None
        self.bm25 = BM25Index()
        self.rids = np.zeros(0, np.int64)  # sorted rids of the records in LanceDB
        self.next_rid = 0
        self.synced_version = 0  # the LanceDB version FAISS and BM25 were last brought in line with

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
        """Load, and save a repair the load made when no writer is busy (else the next writer saves it)."""
        if not self.load():
            return
        try:
            with writer_lock(self.path, timeout=0):
                if self._stamp() == self._stamp_seen:
                    self.persist()
        except IndexBusyError:
            pass

    def load(self) -> bool:
        """Read manifest, LanceDB, FAISS and BM25 from disk and repair the derived two (module doc).
        Returns True when a repair changed them (so the files on disk are stale)."""
        self._commits_seen = self._commits.value()  # before the manifest: a commit in between is seen next time
        self._stamp_seen, self._stamp_checked = self._stamp(), time.monotonic()
        self.manifest = read_manifest(self.path)
        self.store.refresh()
        self.ann = self._load_ann()
        self.bm25 = self._load_bm25() or BM25Index()
        self.rids = self.store.rids()
        stored_max = int(self.ann.stored_ids().max()) if self.ann is not None and self.ann.index.ntotal else -1
        lance_max = int(self.rids.max()) if len(self.rids) else -1
        reserved = int((self.path / RIDS_FILE).read_text()) if (self.path / RIDS_FILE).is_file() else 0
        self.next_rid = max(int(self.manifest.get("next_rid", 0)), reserved, lance_max + 1, stored_max + 1)
        repaired = self.repair()
        self.synced_version = self.store.version
        self._on_change()
        return repaired

    def _load_ann(self) -> AnnIndex | None:
        """The FAISS file when it matches the manifest, else None (rebuilt from LanceDB by `repair`)."""
        kind = self.manifest["index"].get("type")
        if not kind or not (self.path / FAISS_FILE).is_file():
            return None
        try:
            spec = IndexSpec(kind, self.manifest["index"]["params"])
            ann = AnnIndex.load(self.path / FAISS_FILE, spec, self.manifest["index"].get("trained_n", 0))
        except RuntimeError as exc:
            log.warning("cannot read %s, rebuilding it from LanceDB: %s", FAISS_FILE, exc)
            return None
        if AnnIndex.file_kind(ann.index) != kind or ann.dim != self.dim:
            return None  # a crash between the FAISS file and the manifest
        return ann

    def _load_bm25(self) -> BM25Index | None:
        if not (self.path / BM25_FILE).is_file():
            return None
        try:
            return BM25Index.load(self.path / BM25_FILE)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cannot read %s, rebuilding it from LanceDB: %s", BM25_FILE, exc)
            return None

    def repair(self) -> bool:
        """Bring FAISS and BM25 in line with the rids in LanceDB; True if anything changed."""
        changed = False
        rids = self.rids
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
        changed |= self.rebuild_ann_if_needed()
        stale = np.setdiff1d(self.bm25.doc_rids, rids)
        missing = np.setdiff1d(rids, self.bm25.doc_rids)
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
        self.ann = None
        if bm25:
            self.bm25 = BM25Index()
        self.repair()  # the records are the same: nothing for `on_change`

    # ---- staleness -----------------------------------------------------------------------------
    def _stamp(self) -> tuple:
        try:
            st = os.stat(self._manifest_path)
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return ()

    def is_stale(self) -> bool:
        """True when a writer has committed since this object last loaded the folder."""
        commits, now_s = self._commits.value(), time.monotonic()  # before every search: a memory read
        if commits is not None and commits == self._commits_seen and now_s - self._stamp_checked < STAMP_CHECK_S:
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
            with writer_lock(self.path, self.lock_timeout):
                for tmp in self.path.glob(".*.tmp-*"):  # left by a writer killed mid-write
                    tmp.unlink(missing_ok=True)
                if self._stamp() != self._stamp_seen:
                    self.load()
                self.store.refresh()
                if self.store.version != self.synced_version:  # a writer died after a LanceDB commit
                    self.rids = self.store.rids()
                    self.repair()
                    self._on_change()
                self._writing_depth += 1
                try:
                    yield
                finally:
                    self._writing_depth -= 1
                self.synced_version = self.store.version
                self.persist()

    def reserve_rids(self, n: int) -> np.ndarray:
        """Fresh rids, recorded on disk before use so no crash can make one be reused (in their own
        small file: rewriting the manifest per chunk would make every reader reload)."""
        start = self.next_rid
        self.next_rid += n
        atomic_write(self.path / RIDS_FILE, lambda tmp: tmp.write_text(f"{self.next_rid}\n"))
        return np.arange(start, start + n, dtype=np.int64)

    def apply(self, removed: np.ndarray, rids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        """Mirror a committed LanceDB change into FAISS, BM25 and the in-memory rid list."""
        removed = np.asarray(removed, np.int64)
        self.rids = np.union1d(np.setdiff1d(self.rids, removed), rids)
        if self.ann is not None:
            self.ann.remove(removed)
            self.ann.add(rids, vectors)
        self.rebuild_ann_if_needed()
        self.bm25.remove(removed)
        self.bm25.add(rids, texts)
        self._on_change()

    def persist(self) -> None:
        """Replace the FAISS and BM25 files, then the manifest (the commit point for readers)."""
        ann = self.ann
        if ann is not None:
            ann.save(self.path / FAISS_FILE)
        elif (self.path / FAISS_FILE).exists():
            (self.path / FAISS_FILE).unlink()
        self.bm25.save(self.path / BM25_FILE)
        self.manifest["index"].update({
            "type": ann.spec.kind if ann else None, "params": ann.spec.params if ann else {},
            "trained_n": ann.trained_n if ann else 0})
        self.manifest["counts"] = {"records": len(self.rids), "faiss": len(ann) if ann else 0,
                                   "bm25": len(self.bm25), "tombstones": len(ann.tombstones) if ann else 0}
        self.manifest.update({"next_rid": self.next_rid, "lance_version": self.store.version, "updated": now()})
        atomic_write_json(self.path / MANIFEST, self.manifest)
        self._commits_seen = self._commits.bump()  # we hold the writer lock: nobody else bumped
        self._stamp_seen = self._stamp()
