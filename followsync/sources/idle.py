"""Watching a mailbox's INBOX with IMAP IDLE (RFC 2177), so an answer reaches the calendars
within seconds instead of at the next `interval` (README "Mail").

Why it looks like this:
- One thread and one connection per mailbox; it only says "new mail" (`on_mail`): the scan
  itself stays the daemon's ordinary sync round (STATUS, then the new headers), so what
  IDLE adds is timing, never another way of reading mail. It says so also each time it
  starts watching: what came before INBOX was examined raises no EXISTS.
- Python 3.11's imaplib has no IDLE (3.14's has). The connection and login are the
  scanner's (`mail.connect`: TLS rules, refused logins); IDLE itself is written here over
  the socket: `TAG IDLE`, the server's `+`, untagged lines until it is time to renew, `DONE`
  and the tagged answer. Waiting uses select() on the socket and on a wake-up socket pair,
  never a socket timeout (a timeout leaves imaplib's buffered reader unusable), so `stop`
  ends the wait at once.
- IDLE is re-issued every `renew` seconds (25 minutes; servers may drop an IDLE after 29,
  RFC 2177), and a lost connection or a BYE is reconnected after 1 s, then with a back-off.
  A refused login ends the watcher (`on_refused`): repeated failed logins lock accounts; the
  daemon decides when to try again. A server without IDLE ends it too (`on_no_idle`): the
  interval scan is then all there is.
- The server is hostile like any input: lines are capped in length, and anything that is
  not `* n EXISTS`, `* BYE` or our tag's answer is ignored.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import date

from followsync.config import MailConfig
from followsync.errors import FollowsyncError
from followsync.schedule import backoff_delay
from followsync.sources.mail import MailError, MailLoginRefused, connect
from followsync.sources.scan import credentials_digest, mailbox_of

log = logging.getLogger("followsync")

IDLE_RENEW = 25 * 60.0  # seconds an IDLE lasts before it is renewed (RFC 2177: under 29 min)
ANSWER_TIMEOUT = 30.0  # seconds the server has to answer IDLE or DONE
MAX_LINE = 1 << 16  # bytes of one untagged line before the connection is given up
_EXISTS = re.compile(rb"^\* \d+ EXISTS\b", re.IGNORECASE)
_TAGS = itertools.count(1)


def watches_inbox(box: MailConfig) -> bool:
    """Whether the mailbox's scan covers INBOX (the default folders do)."""
    return box.folders is None or any(f.upper() == "INBOX" for f in box.folders)


def offers_idle(capabilities: bytes) -> bool:
    """Whether a CAPABILITY answer lists IDLE."""
    return b"IDLE" in capabilities.upper().split()


class _Stopped(Exception):
    """`stop` was called while waiting."""


class _Lines:
    """The server's lines (CRLF removed), each wait ending at a deadline or on a wake-up."""

    def __init__(self, sock: socket.socket, wake: socket.socket) -> None:
        self.sock = sock
        self.wake = wake
        self.buf = bytearray()

    def next(self, deadline: float, stoppable: bool = True) -> bytes | None:
        """The next line; None once `deadline` (monotonic) passed. _Stopped when woken (and
        `stoppable`); imaplib.IMAP4.abort when the connection ended."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            if len(self.buf) > MAX_LINE:
                raise imaplib.IMAP4.abort("the server sent a line longer than 64 KiB")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # bytes TLS already decrypted are not seen by select()
            if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                watched = [self.sock, self.wake] if stoppable else [self.sock]
                ready, _, _ = select.select(watched, [], [], left)
                if self.wake in ready:
                    raise _Stopped
                if self.sock not in ready:
                    continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise imaplib.IMAP4.abort("the server closed the connection")
            self.buf += chunk


class InboxWatcher:
    """IDLE on one mailbox's INBOX in a thread of its own (see the module docstring)."""

    def __init__(self, box: MailConfig, on_mail: Callable[[], None], *,
                 on_refused: Callable[[str, MailError], None],
                 on_no_idle: Callable[[], None], renew: float = IDLE_RENEW,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.box = box
        self.ssl_context = ssl_context  # None: the system's trusted certificates
        self.on_mail = on_mail
        self.on_refused = on_refused
        self.on_no_idle = on_no_idle
        self.renew = renew
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        self.thread = threading.Thread(target=self._run, name=f"followsync-idle-{box.name}",
                                       daemon=True)

    def start(self) -> InboxWatcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end (it says DONE and logs out); returns at once."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread; True if it ended."""
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self._stopping.is_set()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        failures = 0
        sessions = 0
        try:
            while not self._stopping.is_set():
                tried = ""
                try:
                    mailbox = mailbox_of(self.box, date(1970, 1, 1))
                    tried = credentials_digest(self.box, mailbox.password)
                    with connect(mailbox, self.box.timeout, self.ssl_context) as imap:
                        if not self._prepare(imap):
                            self.on_no_idle()
                            return
                        sessions += 1
                        failures = 0
                        self._session(imap, sessions)
                    return  # stopped
                except MailLoginRefused as exc:
                    self.on_refused(tried, exc)
                    return
                except FollowsyncError as exc:
                    if self._stopping.is_set():
                        return
                    failures += 1
                    wait = self._delay(failures)
                    # the first failure in a row is worth a line; the scans report the rest
                    log.log(logging.INFO if failures == 1 else logging.DEBUG,
                            "mailbox %s: watching INBOX (IDLE): %s; connecting again in %.0f s",
                            self.box.name, exc.message, wait)
                    if self._stopping.wait(wait):
                        return
        except Exception:  # a bug: the interval scan still runs; say how to get details
            log.warning("mailbox %s: watching INBOX (IDLE) ended by an internal error (new "
                        "mail is looked for every interval; run with -v for details)",
                        self.box.name)
            log.debug("traceback of the IDLE watcher", exc_info=True)
        finally:
            self._wake_read.close()
            self._wake_write.close()

    def _delay(self, failures: int) -> float:
        """1 s after a connection that worked (servers drop idle ones), then 30 s, 1 min, ...
        up to the mailbox's interval."""
        if failures <= 1:
            return 1.0
        return backoff_delay(failures - 1, self.box.interval).total_seconds()

    def _prepare(self, imap: imaplib.IMAP4) -> bool:
        """INBOX examined (read-only); False when the server offers no IDLE."""
        typ, data = imap.capability()
        words = b" ".join(d for d in data if isinstance(d, bytes))
        if typ != "OK" or not offers_idle(words):
            return False
        typ, data = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"EXAMINE INBOX: {typ}")
        return True

    def _session(self, imap: imaplib.IMAP4, number: int) -> None:
        """IDLE, renewed every `renew` s, until stopped; raises when the connection ends."""
        lines = _Lines(imap.socket(), self._wake_read)
        if number == 1:
            log.info("mailbox %s: watching INBOX (IDLE): new mail is seen within seconds",
                     self.box.name)
        else:
            log.debug("mailbox %s: watching INBOX (IDLE) again", self.box.name)
        # Mail that came before INBOX was examined (since the scan that started the watch,
        # or while it was away) raises no EXISTS: one more scan finds it.
        self.on_mail()
        while True:
            tag = b"FSIDLE%d" % next(_TAGS)
            imap.send(tag + b" IDLE\r\n")
            try:
                self._until_continuation(lines, tag)
                renew_at = time.monotonic() + self.renew
                while (line := lines.next(renew_at)) is not None:
                    self._untagged(line)
            except _Stopped:
                pass
            imap.send(b"DONE\r\n")
            self._until_tagged(lines, tag)
            if self._stopping.is_set():
                return

    def _until_continuation(self, lines: _Lines, tag: bytes) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            line = lines.next(deadline)
            if line is None:
                raise imaplib.IMAP4.abort("no answer to IDLE within 30 s")
            if line.startswith(b"+"):
                return
            if line.startswith(tag + b" "):
                raise imaplib.IMAP4.error(f"IDLE: {line.decode(errors='replace')}")
            self._untagged(line)

    def _until_tagged(self, lines: _Lines, tag: bytes) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            line = lines.next(deadline, stoppable=False)
            if line is None:
                raise imaplib.IMAP4.abort("no answer to DONE within 30 s")
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].upper().startswith(b"OK"):
                    raise imaplib.IMAP4.error(f"IDLE: {line.decode(errors='replace')}")
                return
            self._untagged(line)

    def _untagged(self, line: bytes) -> None:
        if line.upper().startswith(b"* BYE"):
            raise imaplib.IMAP4.abort(line.decode(errors="replace"))
        if _EXISTS.match(line):
            log.debug("mailbox %s: new mail in INBOX (IDLE)", self.box.name)
            self.on_mail()


__all__ = ["IDLE_RENEW", "InboxWatcher", "offers_idle", "watches_inbox"]
