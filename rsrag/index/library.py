"""`Library`: one searchable index of images with their captions, labels and metadata.

Layout of `ROOT/NAME/`:

- `records.lance/`  LanceDB table, the source of truth (rows, vectors, metadata; see store.py)
- `vectors.faiss`   FAISS index over the vectors, keyed by rid (see ann.py)
- `bm25.npz`        BM25 state over each record's label + captions (see bm25.py)
- `manifest.json`   encoder id and dim, index type and parameters, counts, the rid counter
- `.lock`           writer lock (flock): one writer at a time, readers never block
- `.commits`        commit counter (8 bytes), bumped by writers, memory-mapped by readers (below)

Consistency. FAISS and BM25 are derived from LanceDB and can always be rebuilt from it. A write
commits to LanceDB first (one atomic commit per chunk), then updates FAISS and BM25 in memory,
then replaces their files and finally the manifest (each atomically, temp file + rename). Whenever
an index is opened, and whenever a writer takes the lock, FAISS and BM25 are compared with the rids
in LanceDB and repaired: vectors missing from FAISS are read back from LanceDB (never re-embedded),
rids LanceDB no longer has are removed. So a process killed at any point loses nothing that was
committed, and never resurrects what was deleted. rids are never reused: an upsert writes a new rid,
so a stale file can never pair an old vector with a new record.

Readers notice a writer's commit by the manifest's change stamp and reload. Before every search
they read the folder's memory-mapped commit counter (`fsutil.CommitCounter`, bumped by each writer
after its manifest replace) and `stat` the manifest only when it moved, or when `STAMP_CHECK_S` (1 s)
has passed: that catches a folder deleted and built again under the same name (a new counter file),
a writer killed between its manifest replace and the bump, and writers on another machine sharing the
folder over a network filesystem, where memory maps need not see each other's writes.
Search results are always hydrated from the LanceDB rows in memory, so a rid that is no longer
there cannot be returned.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from rsrag import fusion
from rsrag.config import indexes_root
from rsrag.encoders.base import Encoder, ImageInput, batched, l2_normalize
from rsrag.encoders.cache import TextVectorCache
from rsrag.index.ann import AnnIndex, IndexSpec
from rsrag.index.bm25 import BM25Index
from rsrag.index.errors import EncoderMismatchError, FilterError, IndexBusyError, IndexExistsError, IndexNotFoundError
from rsrag.index.filters import Filters, build_where
from rsrag.fileio import atomic_write, atomic_write_json
from rsrag.index.fsutil import CommitCounter, writer_lock
from rsrag.index.pipeline import EmbeddedBatch, embed_records
from rsrag.index.store import RecordStore

log = logging.getLogger(__name__)

MANIFEST, FAISS_FILE, BM25_FILE, RIDS_FILE = "manifest.json", "vectors.faiss", "bm25.npz", "next_rid"
FORMAT = 1
MODES = ("dense", "bm25", "hybrid")
_HIT_FIELDS = ("id", "label", "path", "captions", "split")
_EMPTY: Mapping[str, Any] = MappingProxyType({})  # a hit's metadata / parts when it has none (read-only, shared)
_FLOAT32 = np.dtype(np.float32)
_new_hit = object.__new__  # Library._hydrate fills a Hit's slots itself
STAMP_CHECK_S = 1.0  # see the module doc: the manifest is stat'ed at least this often while searching
CAPTION_CACHE = 8192  # caption embeddings kept by image_to_text (16 MB at 512 dims)


def record_text(label: str | None, captions: Sequence[str] | None) -> str:
    """What BM25 indexes for a record: its label (underscores as spaces) and all its captions."""
    return " ".join([str(label or "").replace("_", " "), *(captions or [])])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


class Library:
    """An index under `ROOT/NAME`: build it with `create` + `add`, search it after `open`.

    Writes (`add`, `upsert`, `delete`, `rebuild`) take the folder's writer lock, waiting up to
    `lock_timeout` seconds before raising `IndexBusyError` naming the holder's pid.
    """

    def __init__(self, folder: Path, encoder: Encoder | None = None, lock_timeout: float = 10.0,
                 auto_refresh: bool = True, encoder_options: dict | None = None) -> None:
        """`auto_refresh=False` makes a frozen view: it never reloads after other writers commit
        (check `is_stale()` and open a new one), so many threads can share it while writes go on.
        `encoder_options` go to `create_encoder` with the manifest's encoder name (runtime choices
        such as rs-lite's `text_precision`), when no `encoder` is given."""
        self.folder = Path(folder)
        self.auto_refresh = auto_refresh
        self.name = self.folder.name
        self._manifest_path = str(self.folder / MANIFEST)
        self._commits = CommitCounter(self.folder)
        self.lock_timeout = lock_timeout
        self._encoder = encoder
        self._encoder_options = dict(encoder_options or {})
        self._caption_vectors = TextVectorCache(CAPTION_CACHE)  # see image_to_text
        self._writing_depth = 0
        self._thread_lock = threading.RLock()  # threads of one process sharing this object take turns
        if encoder is not None:
            self._check_encoder_against(json.loads((self.folder / MANIFEST).read_text()), encoder)
        if self._load():
            self._persist_if_free()

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path | None = None, name: str | None = None, *, encoder: Encoder | None = None,
             lock_timeout: float = 10.0, encoder_options: dict | None = None) -> "Library":
        """Open an existing index. `root` as in `rsrag.config.indexes_root`; the encoder is created
        from the manifest on first use unless one is given (it must match the index)."""
        if name is None:
            raise ValueError("Library.open needs an index name")
        folder = indexes_root(root) / name
        if not (folder / MANIFEST).is_file():
            known = ", ".join(i["name"] for i in cls.list(root)) or "none"
            raise IndexNotFoundError(f"no index named {name!r} under {indexes_root(root)} (indexes there: {known}); "
                                     f"build one with `rsrag index build SOURCE --name {name}`")
        return cls(folder, encoder=encoder, lock_timeout=lock_timeout, encoder_options=encoder_options)

    @classmethod
    def create(cls, root: str | Path | None, name: str, *, encoder: Encoder | str | None = None,
               encoder_name: str | None = None, index_type: str | IndexSpec = "auto", exist_ok: bool = False,
               lock_timeout: float = 10.0) -> "Library":
        """Create an empty index for an encoder (instance or registry name; default rs-lite).

        The manifest keeps the registry name to re-create the encoder at search time: the string
        given, else `encoder_name`, else `encoder.name`, else the start of `encoder.id` ("rs-lite:..@..").

        With `exist_ok`, an existing index is opened instead (after checking it uses the same
        encoder), which is how an interrupted build resumes.
        """
        folder = indexes_root(root) / name
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad index name {name!r}")
        if isinstance(encoder, str) or encoder is None:
            from rsrag.encoders import create_encoder

            encoder_name, encoder = encoder or encoder_name, create_encoder(encoder or encoder_name)
        encoder_name = encoder_name or getattr(encoder, "name", None) or re.split(r"[@:]", encoder.id)[0]
        if (folder / MANIFEST).is_file():
            if not exist_ok:
                raise IndexExistsError(f"index {name!r} already exists under {folder.parent}")
            return cls(folder, encoder=encoder, lock_timeout=lock_timeout)
        spec = index_type if isinstance(index_type, IndexSpec) else IndexSpec.parse(index_type)
        folder.mkdir(parents=True, exist_ok=True)
        with writer_lock(folder, lock_timeout):
            if not (folder / MANIFEST).is_file():
                atomic_write_json(folder / MANIFEST, {
                    "format": FORMAT, "name": name, "created": _now(), "updated": _now(),
                    "encoder": {"name": encoder_name, "id": encoder.id, "dim": int(encoder.dim)},
                    "index": {"requested": str(spec), "type": None, "params": {}, "trained_n": 0},
                    "counts": {"records": 0, "faiss": 0, "bm25": 0, "tombstones": 0},
                    "next_rid": 0, "lance_version": 0,
                })
        return cls(folder, encoder=encoder, lock_timeout=lock_timeout)

    @staticmethod
    def list(root: str | Path | None = None) -> list[dict]:
        """The manifests of every index under root (name, encoder, counts, ...), by name."""
        base = indexes_root(root)
        out = []
        for man in sorted(base.glob(f"*/{MANIFEST}")) if base.is_dir() else []:
            try:
                out.append(json.loads(man.read_text()))
            except (OSError, ValueError):
                out.append({"name": man.parent.name, "error": "unreadable manifest"})
        return out

    # ---- state ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def encoder_id(self) -> str:
        return self.manifest["encoder"]["id"]

    @property
    def spec(self) -> IndexSpec:
        """The requested index type (`auto` unless overridden at create)."""
        return IndexSpec.parse(self.manifest["index"]["requested"])

    def __len__(self) -> int:
        self._maybe_refresh()
        return len(self._rids)

    def __repr__(self) -> str:
        return f"Library({self.name!r}, records={len(self._rids)}, index={self.manifest['index'].get('type')})"

    @property
    def encoder(self) -> Encoder:
        """The index's encoder, created from the manifest on first use."""
        if self._encoder is None:
            from rsrag.encoders import create_encoder

            enc = create_encoder(self.manifest["encoder"]["name"], **self._encoder_options)
            self._check_encoder(enc)
            self._encoder = enc
        return self._encoder

    def _check_encoder(self, enc: Encoder) -> None:
        self._check_encoder_against(self.manifest, enc)

    @staticmethod
    def _check_encoder_against(manifest: dict, enc: Encoder) -> None:
        want, name = manifest["encoder"], manifest.get("name")
        if int(enc.dim) != int(want["dim"]):
            raise EncoderMismatchError(
                f"dimension mismatch: encoder {enc.id} makes {enc.dim}-d vectors but index {name!r} holds "
                f"{want['dim']}-d vectors from {want['id']}; search it with that encoder or rebuild the index")
        if enc.id != want["id"]:
            raise EncoderMismatchError(
                f"index {name!r} was built with encoder {want['id']}, not {enc.id}: its vectors are not "
                f"comparable; use the same encoder or rebuild the index")

    def _stamp(self) -> tuple:
        try:
            st = os.stat(self._manifest_path)
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return ()

    def _load(self) -> bool:
        """Read manifest, LanceDB, FAISS and BM25 from disk and repair the derived two (module doc).
        Returns True when a repair changed them (so the files on disk are stale)."""
        self._commits_seen = self._commits.value()  # before the manifest: a commit in between is seen next time
        self._stamp_seen, self._stamp_checked = self._stamp(), time.monotonic()
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        self._dim = int(self.manifest["encoder"]["dim"])
        if not hasattr(self, "store"):
            self.store = RecordStore(self.folder, self.dim)
        self.store.refresh()
        ann = None
        kind = self.manifest["index"].get("type")
        if kind and (self.folder / FAISS_FILE).is_file():
            try:
                spec = IndexSpec(kind, self.manifest["index"]["params"])
                ann = AnnIndex.load(self.folder / FAISS_FILE, spec, self.manifest["index"].get("trained_n", 0))
                if AnnIndex.file_kind(ann.index) != kind or ann.dim != self.dim:
                    ann = None  # a crash between the FAISS file and the manifest: rebuild below
            except RuntimeError as exc:
                log.warning("cannot read %s, rebuilding it from LanceDB: %s", FAISS_FILE, exc)
                ann = None
        bm25 = None
        if (self.folder / BM25_FILE).is_file():
            try:
                bm25 = BM25Index.load(self.folder / BM25_FILE)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot read %s, rebuilding it from LanceDB: %s", BM25_FILE, exc)
        self._ann, self._bm25 = ann, bm25 or BM25Index()
        self._rids = self.store.rids()
        stored_max = int(ann.stored_ids().max()) if ann is not None and ann.index.ntotal else -1
        lance_max = int(self._rids.max()) if len(self._rids) else -1
        reserved = int((self.folder / RIDS_FILE).read_text()) if (self.folder / RIDS_FILE).is_file() else 0
        self._next_rid = max(int(self.manifest.get("next_rid", 0)), reserved, lance_max + 1, stored_max + 1)
        self._meta: tuple[list[tuple | None], dict[str, list]] | None = None  # see _meta_rows
        self._filter_cache: dict[str, np.ndarray] = {}
        repaired = self._repair()
        self._synced_version = self.store.version
        return repaired

    def _persist_if_free(self) -> None:
        """Save a repair made at open when no writer is busy (else the next writer saves it)."""
        try:
            with writer_lock(self.folder, timeout=0):
                if self._stamp() == self._stamp_seen:
                    self._persist()
        except IndexBusyError:
            pass

    def _repair(self) -> bool:
        """Bring FAISS and BM25 in line with the rids in LanceDB; True if anything changed."""
        changed = False
        rids = self._rids
        if self._ann is not None:
            stored = self._ann.stored_ids()
            stale = np.setdiff1d(stored, rids, assume_unique=True)
            missing = np.setdiff1d(rids, stored, assume_unique=True)
            if len(stale):
                self._ann.remove(stale)
                changed |= self._ann.spec.kind != "hnsw"  # hnsw only tombstones them: its file is unchanged
            if len(missing):
                self._ann.add(*self.store.vectors(missing))
                changed = True
        changed |= self._rebuild_ann_if_needed()
        stale = np.setdiff1d(self._bm25.doc_rids, rids)
        missing = np.setdiff1d(rids, self._bm25.doc_rids)
        if len(stale):
            self._bm25.remove(stale)
            changed = True
        if len(missing):
            where = f"rid >= {int(missing.min())} AND rid <= {int(missing.max())}"
            table = self.store.scan(["label", "captions"], where)
            keep = np.isin(table.column("rid").to_numpy(), missing)
            table = table.filter(pa.array(keep))
            labels, captions = table.column("label").to_pylist(), table.column("captions").to_pylist()
            texts = [record_text(label, caps) for label, caps in zip(labels, captions)]
            self._bm25.add(table.column("rid").to_numpy().astype(np.int64), texts)
            changed = True
        if changed:
            log.info("index %s: repaired FAISS/BM25 from LanceDB", self.name)
        return changed

    def _rebuild_ann_if_needed(self) -> bool:
        n = len(self._rids)
        auto = self.spec.kind == "auto"
        if n == 0:
            rebuilt = self._ann is not None and self._ann.index.ntotal > 0
            self._ann = None
            return rebuilt
        if self._ann is not None and not self._ann.needs_rebuild(auto, n):
            return False
        spec = self.spec.resolve(n)
        rids, vectors = self.store.vectors()
        t0 = time.perf_counter()
        self._ann = AnnIndex.build(spec, self.dim, rids, vectors)
        log.info("index %s: built FAISS %s over %d vectors in %.1fs", self.name, spec, n, time.perf_counter() - t0)
        return True

    def _maybe_refresh(self) -> None:
        """Reload when another process has committed (its manifest replace changes the stamp)."""
        if self.auto_refresh and self._writing_depth == 0 and self.is_stale():
            self._load()

    def is_stale(self) -> bool:
        """True when a writer has committed since this object last loaded the index."""
        commits, now = self._commits.value(), time.monotonic()  # before every search: a memory read
        if commits is not None and commits == self._commits_seen and now - self._stamp_checked < STAMP_CHECK_S:
            return False
        if self._stamp() != self._stamp_seen:
            return True  # and stays so until a reload
        self._commits_seen, self._stamp_checked = commits, now  # nothing new: remember we looked
        return False

    def preload(self) -> "Library":
        """Load now what the first search would load lazily (the record rows)."""
        self._meta_rows()
        return self

    def refresh(self) -> None:
        """Reload from disk now."""
        self._load()

    def _persist(self) -> None:
        """Replace the FAISS and BM25 files, then the manifest (the commit point for readers)."""
        if self._ann is not None:
            self._ann.save(self.folder / FAISS_FILE)
        elif (self.folder / FAISS_FILE).exists():
            (self.folder / FAISS_FILE).unlink()
        self._bm25.save(self.folder / BM25_FILE)
        ann = self._ann
        self.manifest["index"].update({
            "type": ann.spec.kind if ann else None, "params": ann.spec.params if ann else {},
            "trained_n": ann.trained_n if ann else 0})
        self.manifest["counts"] = {"records": len(self._rids), "faiss": len(ann) if ann else 0,
                                   "bm25": len(self._bm25), "tombstones": len(ann.tombstones) if ann else 0}
        self.manifest.update({"next_rid": self._next_rid, "lance_version": self.store.version, "updated": _now()})
        atomic_write_json(self.folder / MANIFEST, self.manifest)
        self._commits_seen = self._commits.bump()  # we hold the writer lock: nobody else bumped
        self._stamp_seen = self._stamp()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock; start from what is on disk; persist on success.

        On an exception nothing derived is written: whatever reached LanceDB is picked up by the
        repair on the next open.
        """
        with self._thread_lock:
            if self._writing_depth:  # nested (e.g. rebuild inside a write): already locked
                yield
                return
            with writer_lock(self.folder, self.lock_timeout):
                for tmp in self.folder.glob(".*.tmp-*"):  # left by a writer killed mid-write
                    tmp.unlink(missing_ok=True)
                if self._stamp() != self._stamp_seen:
                    self._load()
                self.store.refresh()
                if self.store.version != self._synced_version:  # a writer died after a LanceDB commit
                    self._rids = self.store.rids()
                    self._repair()
                self._writing_depth += 1
                try:
                    yield
                finally:
                    self._writing_depth -= 1
                self._synced_version = self.store.version
                self._persist()

    def _reserve_rids(self, n: int) -> np.ndarray:
        """Fresh rids, recorded on disk before use so no crash can make one be reused (in their own
        small file: rewriting the manifest per chunk would make every reader reload)."""
        start = self._next_rid
        self._next_rid += n
        atomic_write(self.folder / RIDS_FILE, lambda tmp: tmp.write_text(f"{self._next_rid}\n"))
        return np.arange(start, start + n, dtype=np.int64)

    def _apply(self, removed: np.ndarray, rids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        """Mirror a committed LanceDB change into FAISS, BM25 and the in-memory rid list."""
        removed = np.asarray(removed, np.int64)
        self._rids = np.union1d(np.setdiff1d(self._rids, removed), rids)
        if self._ann is not None:
            self._ann.remove(removed)
            self._ann.add(rids, vectors)
        self._rebuild_ann_if_needed()
        self._bm25.remove(removed)
        self._bm25.add(rids, texts)
        self._meta = None
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
        unique: dict[str, Any] = {}
        for rec in records:
            if str(rec.id) in unique:
                report.duplicates += 1
            else:
                unique[str(rec.id)] = rec
        with self._writing():
            existing = self.store.id_rids()
            todo = [r for i, r in unique.items() if upsert or i not in existing]
            report.skipped = len(unique) - len(todo)
            removed, new_rids, new_vecs, new_texts = [], [], [], []
            pending: list[tuple[Any, np.ndarray]] = []
            done = 0

            def commit() -> None:
                recs = [r for r, _ in pending]
                vecs = np.stack([v for _, v in pending])
                rids = self._reserve_rids(len(recs))
                rows = self.store.rows(recs, rids, vecs)
                old = [existing[str(r.id)] for r in recs if str(r.id) in existing]
                (self.store.upsert if old else self.store.add)(rows)
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
                self._apply(np.asarray(removed, np.int64), np.concatenate(new_rids),
                            np.concatenate(new_vecs), new_texts)
                if len(new_rids) > 8:
                    self.store.compact()
        report.seconds = time.perf_counter() - t0
        return report

    def upsert(self, records: Iterable, **kwargs) -> AddReport:
        """`add` that replaces records whose id is already in the index."""
        return self.add(records, upsert=True, **kwargs)

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete records by id from LanceDB, FAISS and BM25; returns the ids that were found."""
        ids = [str(i) for i in ids]
        with self._writing():
            found = self.store.id_rids(ids)
            if found:
                rids = np.array(sorted(found.values()), np.int64)
                self.store.delete(rids)
                self._apply(rids, np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), [])
        return [i for i in ids if i in found]

    def rebuild(self, index_type: str | None = None, *, bm25: bool = True) -> None:
        """Rebuild FAISS (optionally switching its type, e.g. "hnsw" or "auto") and BM25 from LanceDB."""
        with self._writing():
            if index_type is not None:
                self.manifest["index"]["requested"] = str(IndexSpec.parse(index_type))
            self._ann = None
            if bm25:
                self._bm25 = BM25Index()
            self._repair()

    def note_build(self, source: str, report: AddReport) -> None:
        """Record the last build's source and outcome (with up to 100 failures) in the manifest."""
        with self._writing():
            self.manifest["last_build"] = {
                "source": source, "finished": _now(), **report.to_dict(),
                "failures": [{"id": i, "path": p, "error": e} for i, p, e in report.failed[:100]]}

    # ---- reading -------------------------------------------------------------------------------
    def info(self) -> dict:
        """Manifest plus live counts, columns and size on disk."""
        self._maybe_refresh()
        size = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
        return {**self.manifest, "folder": str(self.folder), "columns": self.store.columns(),
                "records": len(self._rids), "bytes": size}

    def columns(self) -> list[str]:
        return self.store.columns()

    @property
    def version(self) -> int:
        """The record table's version: changes with every committed write (a key for caches)."""
        self._maybe_refresh()
        return self.store.version

    def rows(self, columns: Sequence[str] | None = None, *, filters: Filters = None, where: str | None = None,
             bbox: Sequence[float] | None = None) -> pa.Table:
        """Records (without their vectors unless asked for) matching the filters, as an Arrow table
        sorted by insertion; `columns` defaults to every column but the vector."""
        self._maybe_refresh()
        cols = list(columns) if columns is not None else self.store.columns()
        table = self.store.scan(cols, self._where(filters, where, bbox))
        return table.select([c for c in cols if c in table.column_names])

    def count(self, *, filters: Filters = None, where: str | None = None, bbox: Sequence[float] | None = None) -> int:
        """How many records match the filters (all records without any)."""
        self._maybe_refresh()
        allowed = self._allowed(filters, where, bbox)
        return len(self._rids) if allowed is None else len(allowed)

    def get(self, ids: Sequence[str]) -> list[Hit]:
        """Records by id (those that exist), as hits with score 0."""
        found = self.store.id_rids([str(i) for i in ids])
        rids = [found[str(i)] for i in ids if str(i) in found]
        return self._hydrate(rids, [0.0] * len(rids))

    def _meta_rows(self) -> tuple[list[tuple | None], dict[str, list]]:
        """The records without their vectors, in memory and indexed by rid, so hydrating a hit is a
        list lookup (a pyarrow take per query costs more than an IVF search): (one (id, label, path,
        captions, split) tuple per rid, None where there is no record; the other columns as lists
        indexed the same way). Costs about as much memory as the records' text plus 8 bytes per
        rid ever given out; loaded on the first search after a change."""
        if self._meta is None:
            table = self.store.scan([c for c in self.store.columns() if c != "rid"])
            rids = table.column("rid").to_pylist()
            size = rids[-1] + 1 if rids else 0  # scan sorts by rid

            def by_rid(values: list) -> list:
                if len(values) == size:  # no holes: rids are 0..size-1
                    return values
                out = [None] * size
                for rid, value in zip(rids, values):
                    out[rid] = value
                return out

            cols = {c: by_rid(table.column(c).to_pylist()) for c in table.column_names
                    if c != "rid" and c not in _HIT_FIELDS}
            fields = {c: table.column(c).to_pylist() for c in _HIT_FIELDS}
            fields["captions"] = [tuple(c or ()) for c in fields["captions"]]
            for c in ("label", "split"):  # few distinct values: one shared str each, not one per record
                shared: dict = {}
                fields[c] = [shared.setdefault(v, v) for v in fields[c]]
            rows = by_rid(list(zip(*fields.values())))
            self._meta = (rows, cols)
        return self._meta

    def _hydrate(self, rids: Sequence[int], scores: Sequence[float], parts: list[dict] | None = None) -> list[Hit]:
        """Hits for (rid, score) pairs in rank order. Rids with no record in LanceDB (any more) are
        dropped, so a deleted record is never returned. Kept to plain list lookups and slot stores:
        it runs right after a FAISS scan has pushed everything else out of the CPU caches, where
        calling the dataclass' `__init__` for each hit measured 7-16 us more per query."""
        rows, extra = self._meta_rows()
        n = len(rows)
        hits: list[Hit] = []
        for i, (rid, score) in enumerate(zip(rids, scores)):
            row = rows[rid] if 0 <= rid < n else None
            if row is not None:
                hit = _new_hit(Hit)  # every field is set below (tests/test_index_library.py checks)
                hit.id, hit.label, hit.path, hit.captions, hit.split = row
                hit.score, hit.rank = score, len(hits) + 1
                hit.metadata = {c: v[rid] for c, v in extra.items()} if extra else _EMPTY
                hit.parts = parts[i] if parts else _EMPTY
                hits.append(hit)
        return hits

    def _where(self, filters: Filters, where: str | None, bbox: Sequence[float] | None) -> str | None:
        """The filters as one SQL predicate checked against the schema (None: no filter)."""
        if not filters and not where and bbox is None:
            return None
        return build_where(self.store.schema(), filters, where, bbox)

    def _allowed(self, filters: Filters, where: str | None, bbox: Sequence[float] | None) -> np.ndarray | None:
        """Sorted rids passing the filters, or None when there are no filters."""
        sql = self._where(filters, where, bbox)
        if sql is None:
            return None
        if sql not in self._filter_cache:
            try:
                self._filter_cache[sql] = self.store.rids(where=sql)
            except (ValueError, RuntimeError, OSError) as exc:
                known = ", ".join(self.store.columns())
                raise FilterError(f"bad filter {sql!r}: {exc} (columns: {known})") from None
            if len(self._filter_cache) > 64:
                self._filter_cache.pop(next(iter(self._filter_cache)))
        return self._filter_cache[sql]

    def _dense(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[list[int], list[float]]:
        """(rids, cosine scores) of the k nearest records, best first, as lists (what the callers
        iterate). Array work is kept to what FAISS needs: this runs once per query, half of it
        cache-cold after the scan."""
        if type(vector) is np.ndarray and vector.dtype is _FLOAT32 and vector.ndim == 1 and vector.flags.c_contiguous:
            query = vector[None]  # already FAISS' own layout: a view, no copy
        else:
            query = np.ascontiguousarray(vector, np.float32).reshape(1, -1)
        if query.shape[1] != self._dim:
            raise EncoderMismatchError(f"dimension mismatch: query vector has {query.shape[1]} dims, "
                                       f"index {self.name!r} holds {self._dim}-d vectors")
        ann = self._ann
        if ann is None or k <= 0 or (allowed is not None and not len(allowed)):
            return [], []
        scores, rids = ann.search_prepared(query, k, allowed)
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

    def search_vector(self, vector: np.ndarray, k: int = 10, *, filters: Filters = None, where: str | None = None,
                      bbox: Sequence[float] | None = None) -> list[Hit]:
        """Nearest records to an embedding (cosine)."""
        self._maybe_refresh()
        return self._hydrate(*self._dense(vector, k, self._allowed(filters, where, bbox)))

    def search_text(self, query: str, k: int = 10, *, mode: str = "hybrid", filters: Filters = None,
                    where: str | None = None, bbox: Sequence[float] | None = None,
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
        self._maybe_refresh()
        allowed = self._allowed(filters, where, bbox)
        if mode == "bm25":
            rids, scores = self._bm25.search(query, k, allowed)
            return self._hydrate(rids.tolist(), scores.tolist())
        if vector is None:
            vector = self.encoder.encode_texts([query])[0]
        if mode == "dense":
            return self._hydrate(*self._dense(vector, k, allowed))
        depth = depth or max(50, 5 * k)
        bm25_rids, bm25_scores = self._bm25.search(query, depth, allowed)
        lists = {"dense": list(zip(*self._dense(vector, depth, allowed))),
                 "bm25": list(zip(bm25_rids.tolist(), bm25_scores.tolist()))}
        fused = fusion.rrf(lists, weights=dict(zip(lists, weights)))
        parts: dict[int, dict] = {}
        for name, ranked_list in lists.items():
            for rid, s in ranked_list:
                parts.setdefault(rid, {})[name] = s
        order = fusion.ranked(fused, k)
        return self._hydrate(order, [fused[r] for r in order], [parts[r] for r in order])

    def search_image(self, image: ImageInput, k: int = 10, *, filters: Filters = None, where: str | None = None,
                     bbox: Sequence[float] | None = None, exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """Images most like `image` (a path, bytes, PIL image or array). `exclude_ids` drops e.g. the
        query itself when it is in the index."""
        self._maybe_refresh()
        vector = self.encoder.encode_images([image])[0]
        hits = self._hydrate(*self._dense(vector, k + len(exclude_ids), self._allowed(filters, where, bbox)))
        excluded = set(exclude_ids)
        hits = [h for h in hits if h.id not in excluded][:k]
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
        return hits

    def image_to_text(self, image: ImageInput, k: int = 5, *, n_captions: int = 5, filters: Filters = None,
                      where: str | None = None, bbox: Sequence[float] | None = None) -> dict:
        """What the library knows about an image: its k nearest records, their labels voted by
        similarity, and their captions ranked by 0.5 * (similarity of the source image) +
        0.5 * (cosine between the caption's text embedding and the query image)."""
        self._maybe_refresh()
        vector = self.encoder.encode_images([image])[0]
        hits = self._hydrate(*self._dense(vector, k, self._allowed(filters, where, bbox)))
        votes: dict[str, float] = {}
        best: dict[str, tuple[float, str]] = {}
        for hit in hits:
            if hit.label is not None:
                votes[hit.label] = votes.get(hit.label, 0.0) + max(hit.score, 0.0)
            for cap in hit.captions:
                if cap not in best or best[cap][0] < hit.score:
                    best[cap] = (hit.score, hit.id)
        total = sum(votes.values()) or 1.0
        labels = [{"label": lab, "score": v / total} for lab, v in sorted(votes.items(), key=lambda kv: -kv[1])]
        texts = list(best)
        # caption embeddings are remembered: the same captions come back query after query
        cross = self._caption_vectors.vectors(texts, self.encoder.encode_texts) @ vector if texts else np.zeros(0)
        captions = sorted(({"text": t, "score": float(0.5 * best[t][0] + 0.5 * c), "source": best[t][1]}
                           for t, c in zip(texts, cross)), key=lambda d: -d["score"])
        return {"labels": labels, "captions": captions[:n_captions], "hits": [h.to_dict() for h in hits]}
