"""A small keep-alive HTTP session for CalDAV requests, with retries and clear errors.

The sync's hot path (one REPORT for a no-op, one PUT per change) goes through here rather
than python-caldav: it gives exact control of preconditions (If-Match / If-None-Match on
every write), never follows a redirect (a password is never sent to another host), costs no
import time, and counts requests. Discovery goes through here too (`davfind`, and
python-caldav where it falls back to it). Logging in (Basic or Digest, from the server's
challenge) is `digest.Authenticator`'s.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import math
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from followsync.backends import authmemory
from followsync.backends.digest import Authenticator, Remembered
from followsync.errors import TargetError
from followsync.hosts import is_loopback

log = logging.getLogger("followsync")
MAX_BODY = 64 * 1024 * 1024  # a server's answer larger than this is refused, not read
RETRY_STATUSES = {429, 500, 502, 503, 504}
IDLE_EXIT = 60.0  # s without a request after which a session's watchdog thread ends


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """The header's value; several of the same name joined with ", " (RFC 9110 5.3)."""
        values = [value for key, value in self.headers.items() if key.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class Backoff:
    """How a failed request is sent again: at most `retries` more times and never waiting
    past `budget` seconds from the first attempt; before attempt n+1 it waits
    min(cap, first · 2^(n-1)) seconds less a random part of up to `spread` of that (so
    clients that failed together do not come back together), or what the server's
    Retry-After says (seconds or an HTTP date). A wait that would end past the budget is not
    begun: the request fails at once, and the next sync retries."""

    retries: int = 4
    budget: float = 60.0
    first: float = 0.25
    cap: float = 30.0
    spread: float = 0.5

    def delay(self, attempt: int, retry_after: str | None, now: float, rand: float) -> float:
        """The wait before attempt `attempt + 1`; `now` is the wall clock (for an HTTP
        date), `rand` a number in [0, 1)."""
        asked = retry_after_seconds(retry_after, now)
        if asked is not None:
            return asked
        step = min(self.cap, self.first * 2.0 ** (attempt - 1))
        return step * (1.0 - self.spread * rand)


DAV_BACKOFF = Backoff()


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header (RFC 9110 10.2.3: seconds, or an HTTP date) as seconds from
    `now`; None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return float(min(int(text), 86400))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC (RFC 5322 3.3)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _failed_status(response: Response) -> bool:
    return response.status in RETRY_STATUSES


class Watchdog:
    """Cuts a connection whose exchange outlives its deadline: the socket timeout alone
    restarts with every byte, so a server dripping its answer would hold a sync for ever.

    One thread serves a session's every request (started with the first, ended by `stop`):
    a `threading.Timer` per request started a thread each time, ~0.1 ms of a first upload's
    ~1 ms per item. Arming is a lock and an assignment; the thread, asleep until the deadline
    it last saw, finds the newer one when it wakes and sleeps again."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._job: tuple[float, Callable[[], None]] | None = None
        self._thread: threading.Thread | None = None
        self._until = 0.0  # the deadline the thread sleeps until (inf: none)
        self._stopped = False

    def arm(self, seconds: float, cut: Callable[[], None]) -> None:
        with self._cond:
            deadline = time.monotonic() + seconds
            self._job = (deadline, cut)
            if self._thread is None or not self._thread.is_alive():
                self._stopped = False
                self._thread = threading.Thread(target=self._watch, name="followsync-deadline",
                                                daemon=True)
                self._thread.start()
            elif deadline < self._until:  # it would wake too late
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._job = None

    def stop(self) -> None:
        with self._cond:
            self._stopped, self._job = True, None
            self._cond.notify()
        self._thread = None

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._job is None:
                    self._until = math.inf
                    if not self._cond.wait(IDLE_EXIT) and self._job is None:
                        self._thread = None  # a session left unclosed leaves no thread
                        return
                    continue
                deadline, cut = self._job
                left = deadline - time.monotonic()
                if left > 0:
                    self._until = deadline
                    self._cond.wait(left)
                    continue
                self._job = None
                cut()


class DavSession:
    """One connection to one server; requests are retried on network errors, 5xx and 429."""

    def __init__(
        self, base_url: str, username: str | None, password: str | None, *,
        verify: bool | str = True, timeout: float = 30.0, retries: int | None = None,
        backoff: Backoff = DAV_BACKOFF, network: Backoff | None = None,
        sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"not an http(s) URL: {base_url}")
        self.base_url = base_url
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.username = username
        self.origin = f"{self.scheme}://{self.host}:{parts.port or ''}"
        # Basic goes with the first request over TLS or to this machine (a no-op sync is one
        # request), unless this server asked for Digest before (kept in the state folder):
        # then its last challenge is answered at once, never with Basic; over plain HTTP to
        # another host nothing is sent before the server's 401 says how
        self.state_dir = state_dir
        remembered = authmemory.recall(state_dir, self.origin)
        self._kept: Remembered | None = remembered
        early = self.scheme == "https" or is_loopback(self.host)
        self.auth = Authenticator(username, password, preemptive_basic=early,
                                  remembered=remembered,
                                  server=self.origin.rstrip(":"))
        self.verify, self.timeout = verify, timeout
        # `backoff` for failing answers (5xx, 429), `network` for a server not reached
        # (Google asks for minutes of back-off on the first, not worth it on the second)
        network = network or backoff
        self.backoff = backoff if retries is None else replace(backoff, retries=retries)
        self.network = network if retries is None else replace(network, retries=retries)
        # injectable, so tests never sleep: the wait, the monotonic clock the budget is
        # measured on, the wall clock (a Retry-After date) and the jitter's random numbers
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self.wall: Callable[[], float] = time.time
        self.rand: Callable[[], float] = random.random
        self.conn: http.client.HTTPConnection | None = None
        self.count = 0  # requests sent, for tests and the log
        self.watchdog = Watchdog()

    def __repr__(self) -> str:
        return f"DavSession({self.base_url!r}, user={self.username!r})"

    def url(self, href: str) -> str:
        return urljoin(self.base_url, href)

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.scheme == "https":
                context = ssl.create_default_context(
                    cafile=self.verify if isinstance(self.verify, str) else None)
                if self.verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self.conn = http.client.HTTPSConnection(self.host, self.port,
                                                        timeout=self.timeout, context=context)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        self.watchdog.stop()
        self._drop()
        self._remember()

    def _remember(self) -> None:
        """Keep what a Digest server asked for (and the nonce count) for the next run."""
        now = self.auth.remembered()
        if now is not None and now != self._kept:
            authmemory.keep(self.state_dir, self.origin, now)
            self._kept = now

    def _drop(self) -> None:
        """Forget the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self, method: str, href: str, body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request (retrying what is safe to retry); 401 and 3xx become TargetErrors."""
        target = urlsplit(self.url(href))
        if (target.hostname, target.port) != (self.host, self.port):
            raise TargetError(f"refusing to send a request to another host: {target.hostname}",
                              f"if that host is your provider's, put {self.url(href)} "
                              "in the target's `url:`")
        path = target.path + (f"?{target.query}" if target.query else "")
        data = body.encode() if isinstance(body, str) else body
        sent = {"User-Agent": "followsync", **(headers or {})}
        if data:
            sent.setdefault("Content-Type", "application/xml; charset=utf-8")
        # the first 401 of a session says how to authenticate; a later one only means
        # "stale nonce" (Digest) or a refusal; three rounds cover both
        for _round in range(3):
            response = self._retrying(method, path, data, sent)
            if response.status != 401:
                self.auth.answered()
                break
            if not self.auth.challenged(response.header("WWW-Authenticate")):
                break
            log.debug("%s asks for %s authentication", self.host, self.auth.scheme)
            if self._kept is None and self.auth.digest_only:
                self._remember()  # at once: a server that asked for Digest never gets Basic
        if response.status == 401:
            who = f"user {self.username}" if self.username else "no user name given"
            raise TargetError(f"authentication refused for {who} at {self.base_url}",
                              "check username and password (iCloud and Fastmail need an "
                              "app-specific password)")
        if 300 <= response.status < 400:
            where = response.header("Location") or "?"
            raise TargetError(f"the server redirected {path} to {where}; followsync does not "
                              "follow redirects", "put the final URL in the config")
        if response.status in RETRY_STATUSES:
            raise TargetError(f"the server keeps failing: HTTP {response.status} for "
                              f"{method} {path}", "the next sync retries")
        return response

    def send(self, method: str, path: str, data: bytes, headers: Mapping[str, str], *,
             authorize: Callable[[], str | None] | None = None,
             retryable: Callable[[Response], bool] = _failed_status,
             network: Backoff | None = None) -> Response:
        """One request, sent again on network errors (not TLS ones: a certificate does not
        mend itself) and on answers `retryable` picks (5xx and 429), as the session's
        `backoff` allows: the one retry loop of every request followsync makes (CalDAV,
        Google's API and its token endpoint). `authorize` gives each attempt its
        Authorization value (a fresh Digest nonce count, a refreshed bearer token).
        `network` replaces the session's policy for a server not reached (none: a request
        that must not be sent twice blindly)."""
        unreached = network or self.network
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            sent = dict(headers)
            authorization = authorize() if authorize is not None else None
            if authorization:
                sent["Authorization"] = authorization
            try:
                response = self._once(method, path, data, sent)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                reason = _network_reason(exc)
                if not isinstance(exc, ssl.SSLError) and self._wait(
                        unreached, attempt, started, None, f"{method} {path}: {reason}"):
                    continue
                if isinstance(exc, ssl.SSLCertVerificationError):  # reached, not trusted
                    raise TargetError(f"the certificate of {self.host} is not trusted: "
                                      f"{exc.verify_message}", "for a private server or "
                                      "proxy, give its CA file as `verify:`") from None
                raise TargetError(f"{self.host} is unreachable: {reason}",
                                  "check the URL and your connection; the next sync retries")\
                    from None
            if retryable(response) and self._wait(self.backoff, attempt, started,
                                                   response.header("Retry-After"),
                                                   f"{method} {path}: HTTP {response.status}"):
                continue
            return response

    def _retrying(self, method: str, path: str, data: bytes, headers: dict[str, str]
                  ) -> Response:
        """One CalDAV request through `send`, answering the server's authentication."""
        return self.send(method, path, data, headers,
                         authorize=lambda: self.auth.header(method, path, data))

    def _once(self, method: str, path: str, data: bytes, headers: dict[str, str]) -> Response:
        """One exchange, over within `timeout` seconds in all: the watchdog cuts the
        connection at the deadline; that is then a time-out."""
        conn = self._connect()
        self.count += 1
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        self.watchdog.arm(self.timeout, cut)
        try:
            response = self._exchange(conn, method, path, data, headers)
        except (OSError, http.client.HTTPException):
            if expired.is_set():
                raise TimeoutError(f"no full answer within {self.timeout:g} s") from None
            raise
        finally:
            self.watchdog.disarm()
        if expired.is_set():
            self._drop()
            raise TimeoutError(f"no full answer within {self.timeout:g} s")
        return response

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str, data: bytes,
                  headers: dict[str, str]) -> Response:
        conn.request(method, path, body=data or None, headers=headers)
        raw = conn.getresponse()
        length = raw.getheader("Content-Length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            self._drop()
            raise TargetError(f"the server's answer to {method} {path} is too large "
                              f"({int(length) // 1_000_000} MB)")
        pieces: list[bytes] = []
        size = 0
        while size <= MAX_BODY:  # in pieces: an endless answer costs MAX_BODY, no more
            piece = raw.read(min(1 << 20, MAX_BODY + 1 - size))
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
        if size > MAX_BODY:
            self._drop()
            raise TargetError(f"the server's answer to {method} {path} is too large")
        body = b"".join(pieces)
        if raw.getheader("Connection", "").lower() == "close":
            self._drop()
        merged: dict[str, str] = {}  # several WWW-Authenticate headers: all challenges count
        for name, value in raw.getheaders():
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return Response(raw.status, merged, body)

    @property
    def retries(self) -> int:
        """How often a request that did not reach the server is sent again."""
        return self.network.retries

    def _wait(self, policy: Backoff, attempt: int, started: float, retry_after: str | None,
              why: str) -> bool:
        """Wait before the next attempt; False (no wait) when the policy's retries or its
        time budget are used up."""
        if attempt > policy.retries:
            return False
        delay = policy.delay(attempt, retry_after, self.wall(), self.rand())
        if self.clock() - started + delay > policy.budget:
            return False
        log.info("retrying in %.1f s after %s", delay, why)
        self.sleep(delay)
        return True

    def pause(self, attempt: int, retry_after: str | None, why: str) -> None:
        """Wait as the network back-off says before attempt `attempt + 1` (for loops of
        their own, as python-caldav's discovery)."""
        delay = self.network.delay(attempt, retry_after, self.wall(), self.rand())
        log.info("retrying in %.1f s after %s", delay, why)
        self.sleep(delay)


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the connection was dropped"
    detail = getattr(exc, "strerror", None)
    return type(exc).__name__ + (f": {detail}" if detail else "")
