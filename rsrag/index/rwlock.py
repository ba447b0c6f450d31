"""A readers-writer lock for the threads of one process sharing a `Library`: searches share it, an
in-place update (a reload, or a snapshot following its writer) has it alone. A waiting writer goes
before readers that arrive after it, so a steady stream of searches cannot hold an update off.
Both sides are re-entrant for the thread holding them; a thread that reads may not start writing
(`reading_here` lets a caller check)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None  # the thread holding it alone
        self._writers_waiting = 0
        self._depth = 0  # re-entry by the writing thread
        self._mine = threading.local()  # this thread's read depth

    def reading_here(self) -> bool:
        """Whether this thread holds the lock to read."""
        return getattr(self._mine, "depth", 0) > 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        me, mine = threading.get_ident(), self._mine
        depth = getattr(mine, "depth", 0)
        if depth or self._writer == me:  # re-entry, or the writer reading what it writes
            mine.depth = depth + 1
            try:
                yield
            finally:
                mine.depth -= 1
            return
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        mine.depth = 1
        try:
            yield
        finally:
            mine.depth = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        me = threading.get_ident()
        if self.reading_here():
            raise RuntimeError("a thread reading a Library cannot start writing to it")
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._writers_waiting += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._writers_waiting -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()
