"""Replacing a file so that a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, data: bytes | bytearray | Iterable[bytes | memoryview],
                 mode: int | None = None) -> None:
    """Write `data` (or its chunks, in order: a large file need never be whole in memory)
    to a temp file beside `path`, fsync it, give it `mode` (else keep the old file's), rename
    it over `path` and fsync the folder. Raises OSError (also when the folder does not
    exist); the old file is then untouched."""
    folder = path.parent
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = None
    # no mkdir: a missing folder is the user's typo, reported (config.py), never created
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
            if isinstance(data, bytes | bytearray):
                handle.write(data)
            else:
                for chunk in data:
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    _sweep(path)


def write_private(path: Path, data: bytes | bytearray | Iterable[bytes | memoryview]) -> None:
    """`write_atomic` as 0600: what followsync keeps is nobody else's to read."""
    write_atomic(path, data, mode=0o600)


def read_private(path: Path, limit: int) -> bytes | None:
    """The bytes of `path` if it is a regular file of this user's that nobody else may read
    or write, of at most `limit` bytes; else None. Never through a symbolic link, never
    blocking on a FIFO: what followsync keeps is read back only if it is still its own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or \
                info.st_mode & 0o077 or info.st_size > limit:
            return None
        return stream.read(limit + 1)


STALE_AFTER = 600.0  # seconds: no write of ours takes that long


def _sweep(path: Path) -> None:
    """Remove temp files a killed process left beside `path` (SIGKILL skips the cleanup
    above); only old ones, so another process's write in progress is never touched."""
    limit = time.time() - STALE_AFTER
    with contextlib.suppress(OSError):
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                info = stale.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_mtime < limit:
                    stale.unlink()
