"""sd_notify(3) without libsystemd: tell systemd that the daemon is ready, alive, reloading.

A message is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by $NOTIFY_SOCKET;
a name starting with '@' is in the abstract namespace. Without $NOTIFY_SOCKET every call is a
no-op, so the daemon calls these unconditionally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("followsync")


def socket_address(name: str) -> str | bytes:
    """The address to send to: '@name' is the abstract socket '\\0name'."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_seconds(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """How often to send WATCHDOG=1 (half of $WATCHDOG_USEC), or None when not asked for.

    $WATCHDOG_PID, when set, must be our PID (else the variable was meant for a parent).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


def one_line(text: str, limit: int = 400) -> str:
    """A STATUS value: one line, not too long."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Notifier:
    """Sends notifications to systemd; silent when not run under it (or the socket is gone)."""

    def __init__(self, socket_name: str | None) -> None:
        self.address = socket_address(socket_name) if socket_name else None
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields as one message; False if nothing was sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify: %s", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (>= 253) match the READY=1 that ends this reload
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
