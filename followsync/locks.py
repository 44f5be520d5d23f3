"""Exclusive file locks that name their holder: the state dir's, and a lead file's for `done`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from followsync.errors import LockBusy


def flock_until(fd: int, deadline: float, pause: float = 0.05) -> bool:
    """Take an exclusive flock on `fd`, trying until the monotonic `deadline`; False if it
    stayed busy (the caller says who holds it)."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)


class Lock:
    """An exclusive lock on a state dir, naming its holder's PID when busy."""

    def __init__(self, folder: Path, name: str = "lock") -> None:
        self.path = folder / name
        self.fd: int | None = None

    def acquire(self, wait: float = 10.0, what: str = "sync") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not flock_until(fd, time.monotonic() + wait):
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockBusy(f"another followsync (PID {holder}) is using {self.path.parent}",
                           "wait for it to finish, or stop the running daemon")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None
