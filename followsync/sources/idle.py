"""Watching a mailbox's INBOX with IMAP IDLE (RFC 2177), so an answer reaches the calendars
within seconds instead of at the next `interval` (README "Mail").

Why it looks like this:
- One thread and one connection per mailbox; it only says "new mail" (`on_mail`): the scan
  itself stays the daemon's ordinary sync round (STATUS, then the new headers), so what
  IDLE adds is timing, never another way of reading mail. It says so also when it starts
  watching (what came before INBOX was examined raises no EXISTS), but on a reconnection
  only when INBOX changed while it was away (`asks_scan`) or an `interval` passed since it
  last asked: a connection that keeps dropping must not turn into a sync round (and a
  second login) each time.
- Python 3.11's imaplib has no IDLE (3.14's has). The connection and login are the
  scanner's (`mail.connect`: TLS rules, refused logins); IDLE itself is written here over
  the socket: `TAG IDLE`, the server's `+`, untagged lines until it is time to renew, `DONE`
  and the tagged answer. Waiting uses select() on the socket and on a wake-up socket pair,
  never a socket timeout (a timeout leaves imaplib's buffered reader unusable), so `stop`
  ends the wait at once.
- IDLE is re-issued every `renew` seconds (25 minutes; servers may drop an IDLE after 29,
  RFC 2177), and a lost connection or a BYE is reconnected after 1 s, then with a back-off
  (`reconnect_delay`). A login that works does not end the back-off: a session does once it
  lasted `SETTLED` seconds or renewed its IDLE (`failures_after`), so a server or proxy that
  drops every connection right after IDLE is not logged in to every second. The trouble is
  logged once, and once more when it is over.
  A refused login ends the watcher (`on_refused`): repeated failed logins lock accounts; the
  daemon decides when to try again. A server without IDLE ends it too (`on_no_idle`), and
  so does one that answers IDLE with NO or BAD: the interval scan is then all there is.
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
from datetime import date, timedelta
from typing import NamedTuple

from followsync.config import MailConfig
from followsync.errors import FollowsyncError
from followsync.schedule import backoff_delay
from followsync.sources.mail import Mailbox, MailError, MailLoginRefused, connect
from followsync.sources.scan import login_digest, mailbox_of

log = logging.getLogger("followsync")

IDLE_RENEW = 25 * 60.0  # seconds an IDLE lasts before it is renewed (RFC 2177: under 29 min)
ANSWER_TIMEOUT = 30.0  # seconds the server has to answer IDLE or DONE
SETTLED = 60.0  # seconds a session lasts before a drop counts as a new trouble (1 s again)
MAX_LINE = 1 << 16  # bytes of one untagged line before the connection is given up
_EXISTS = re.compile(rb"^\* \d+ EXISTS\b", re.IGNORECASE)
_TAGS = itertools.count(1)


def watches_inbox(box: MailConfig) -> bool:
    """Whether the mailbox's scan covers INBOX (the default folders do)."""
    return box.folders is None or any(f.upper() == "INBOX" for f in box.folders)


def offers_idle(capabilities: bytes) -> bool:
    """Whether a CAPABILITY answer lists IDLE."""
    return b"IDLE" in capabilities.upper().split()


class InboxMark(NamedTuple):
    """What EXAMINE INBOX said: a change means mail came (or went) while not watching."""

    exists: int | None
    uidvalidity: int | None
    uidnext: int | None


def reconnect_delay(failures: int, interval: timedelta) -> float:
    """Seconds before connecting again after `failures` troubles in a row: 1 s after the
    first (servers and NATs drop idle connections), then 30 s, 1 min, ... up to the
    mailbox's interval."""
    if failures <= 1:
        return 1.0
    return backoff_delay(failures - 1, interval).total_seconds()


def failures_after(failures: int, lasted: float, renewed: bool) -> int:
    """The troubles in a row once a session that worked for `lasted` seconds was lost: one
    that lasted `SETTLED` s or renewed its IDLE was fine (this is a new, first trouble); a
    shorter one is one more of the same (a login that works is not enough)."""
    return 1 if renewed or lasted >= SETTLED else failures + 1


def asks_scan(before: InboxMark | None, now_seen: InboxMark, asked_at: float | None,
              now: float, interval: float) -> bool:
    """Whether a session that starts watching asks for a scan: at the first one (nothing is
    known), when INBOX changed since the last session, or once `interval` seconds passed
    since the last ask (times are monotonic seconds)."""
    return before is None or asked_at is None or before != now_seen \
        or now - asked_at >= interval


def _number(data: list[bytes | None] | list[None]) -> int | None:
    """The number in an imaplib untagged response, None when absent or not a number."""
    for item in data:
        if isinstance(item, bytes) and item.strip().isdigit():
            return int(item.strip())
    return None


class _Stopped(Exception):
    """`stop` was called while waiting."""


class _IdleRefused(Exception):
    """The server answered IDLE with NO or BAD."""


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
        self._failures = 0  # troubles in a row (see failures_after)
        self._mark: InboxMark | None = None  # INBOX as the last session examined it
        self._seen = InboxMark(None, None, None)  # INBOX as this session examined it
        self._asked_at: float | None = None  # monotonic time on_mail was last called
        self._settled = False  # the current session lasted SETTLED s or renewed
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
        sessions = 0
        try:
            while not self._stopping.is_set():
                started: float | None = None
                mailbox: Mailbox | None = None
                try:
                    mailbox = mailbox_of(self.box, date(1970, 1, 1))
                    with connect(mailbox, self.box.timeout, self.ssl_context) as imap:
                        if not self._prepare(imap):
                            self.on_no_idle()
                            return
                        sessions += 1
                        started = time.monotonic()
                        self._settled = False
                        self._session(imap, sessions)
                    return  # stopped
                except _IdleRefused as exc:
                    log.debug("mailbox %s: IDLE refused: %s", self.box.name, exc)
                    self.on_no_idle()
                    return
                except MailLoginRefused as exc:
                    # what was tried, read after the refusal (a refresh may roll a token)
                    self.on_refused(login_digest(self.box, mailbox) if mailbox else "", exc)
                    return
                except FollowsyncError as exc:
                    if self._stopping.is_set():
                        return
                    self._failures = self._failures + 1 if started is None else failures_after(
                        self._failures, time.monotonic() - started, self._settled)
                    wait = reconnect_delay(self._failures, self.box.interval)
                    # the first trouble in a row is worth a line (and its end, _settle); the
                    # scans report the rest
                    log.log(logging.INFO if self._failures == 1 else logging.DEBUG,
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

    def _settle(self) -> None:
        """The session lasted: troubles before it are over (said if they were logged)."""
        if self._settled:
            return
        self._settled = True
        if self._failures > 1:
            log.info("mailbox %s: watching INBOX (IDLE) again", self.box.name)
        self._failures = 0

    def _prepare(self, imap: imaplib.IMAP4) -> bool:
        """INBOX examined (read-only, what it holds kept in `_seen`); False when the server
        offers no IDLE."""
        typ, data = imap.capability()
        words = b" ".join(d for d in data if isinstance(d, bytes))
        if typ != "OK" or not offers_idle(words):
            return False
        typ, data = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"EXAMINE INBOX: {typ}")
        self._seen = InboxMark(_number(data), _number(imap.response("UIDVALIDITY")[1]),
                               _number(imap.response("UIDNEXT")[1]))
        return True

    def _ask_scan(self) -> None:
        self._asked_at = time.monotonic()
        self.on_mail()

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
        if asks_scan(self._mark, self._seen, self._asked_at, time.monotonic(),
                     self.box.interval.total_seconds()):
            self._ask_scan()
        self._mark = self._seen
        settle_at = time.monotonic() + SETTLED
        while True:
            tag = b"FSIDLE%d" % next(_TAGS)
            imap.send(tag + b" IDLE\r\n")
            try:
                self._until_continuation(lines, tag)
                renew_at = time.monotonic() + self.renew
                while time.monotonic() < renew_at:
                    line = lines.next(renew_at if self._settled else min(renew_at, settle_at))
                    if line is not None:
                        self._untagged(line)
                    if time.monotonic() >= settle_at:
                        self._settle()
            except _Stopped:
                pass
            imap.send(b"DONE\r\n")
            self._until_tagged(lines, tag)
            if self._stopping.is_set():
                return
            self._settle()  # renewed

    def _until_continuation(self, lines: _Lines, tag: bytes) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            line = lines.next(deadline)
            if line is None:
                raise imaplib.IMAP4.abort("no answer to IDLE within 30 s")
            if line.startswith(b"+"):
                return
            if line.startswith(tag + b" "):
                raise _IdleRefused(line[len(tag) + 1:].decode(errors="replace")[:200])
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
            self._ask_scan()


__all__ = ["IDLE_RENEW", "SETTLED", "InboxMark", "InboxWatcher", "asks_scan", "failures_after",
           "offers_idle", "reconnect_delay", "watches_inbox"]
