"""Crash-safe file writes and the single-writer lock of an index folder."""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rsrag.index.errors import IndexBusyError

LOCK_FILE = ".lock"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` then rename tmp over `path`, so readers see the old file or the new one, never half.

    The temp file sits in the same folder (rename is atomic only within a file system) and is fsynced
    before the rename so a power cut cannot leave an empty file behind the new name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


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
