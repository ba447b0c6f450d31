"""The single-writer lock of an index folder (crash-safe file writes are in `rsrag.fileio`)."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rsrag.index.errors import IndexBusyError

LOCK_FILE = ".lock"


@contextmanager
def writer_lock(folder: Path, timeout: float = 10.0) -> Iterator[None]:
    """Hold the exclusive writer lock of an index folder, waiting up to `timeout` seconds for it.

    `flock` is released by the kernel when the holder dies, so a killed build never leaves a stale
    lock. The holder's pid is written into the lock file only to make the busy error useful.
    """
    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(timeout, 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise IndexBusyError(
                        f"index {Path(folder)} is being written by pid {holder}; "
                        f"waited {timeout:g}s - try again when that process has finished"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
