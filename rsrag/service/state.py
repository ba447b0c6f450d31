"""How the service shares one index between many request threads.

`Library` objects reload themselves in place when another writer commits, which is fine for one
thread but not for many sharing one object. So searches here go to a snapshot: a Library opened with
`auto_refresh=False`, which never changes after it is opened. After every commit (the manifest's
change stamp moves) the next request opens a fresh snapshot and swaps it in; requests already
running finish on the old one, which is dropped when they are done. Searches therefore never block
on writes and never see half a write. Snapshots share the writable Library's encoder; query texts
are encoded by one `BatchingEncoder` and passed to `search_text` as vectors.

Writes go to the one writable Library passed to `create_app`, one at a time (a process-wide lock
in front of the index's own writer lock, so threads queue instead of timing out), and the snapshot
is brought up to date before the write is answered, so a client reads its own writes. Reopening it
would cost time proportional to the whole index (every vector and record read again), so the
snapshot instead follows the writer's own writes in place (`Library.follow`: the same FAISS, BM25
and record changes, under the snapshot's readers-writer lock, so a search waits at most for that
in-memory step and never sees half of it); only a write mixed with another process's commits, or an
index changed by another process, reopens it. `bench/writes.py` measures POST /items at 10k to 1M
records.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from rsrag.index import Library
from rsrag.service.batching import BatchingEncoder


class LibraryHandle:
    """The writable Library plus the current read snapshot (see module doc)."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.query_encoder = BatchingEncoder(library.encoder)
        self.query_encoder.encode("warm-up")  # first-call costs (model sessions) before serving
        self._write_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._snapshot = self._open()

    def _open(self) -> Library:
        lib = self.library
        return Library(lib.location, encoder=lib.encoder, lock_timeout=lib.lock_timeout, auto_refresh=False).preload()

    def reader(self) -> Library:
        """The newest snapshot. When the index changed, one thread reopens it while the others keep
        using the previous snapshot rather than wait."""
        snap = self._snapshot
        if snap.is_stale() and self._reload_lock.acquire(blocking=False):
            try:
                snap = self._reload()
            finally:
                self._reload_lock.release()
        return snap

    def _reload(self) -> Library:
        if self._snapshot.is_stale():
            self._snapshot = self._open()
        return self._snapshot

    def refresh(self) -> Library:
        """Reopen now if the index changed, waiting for a reload in progress (read-your-writes)."""
        with self._reload_lock:
            return self._reload()

    @contextmanager
    def writing(self) -> Iterator[Library]:
        """The writable Library, one thread at a time; afterwards the snapshot follows the writes in
        place (in time proportional to them), or is reopened when it cannot (module doc)."""
        with self._write_lock:
            del self.library.changes[:]
            try:
                yield self.library
            finally:
                with self._reload_lock:
                    if not self._snapshot.follow(self.library):
                        self._reload()
