"""A small threaded HTTP reverse proxy on 127.0.0.1 that forwards to a real server and can
inject faults, so tests can see how followsync copes with a flaky CalDAV server.

    proxy = FaultProxy("http://127.0.0.1:5232/").start()
    proxy.faults = [Fault(action="status", status=503, headers={"Retry-After": "1"},
                          match=method_is("PUT"), times=1)]
    ... point the client at proxy.url_for(calendar_url) ...
    assert proxy.count("PROPFIND") == 1
    proxy.stop()

Actions of a Fault (checked in list order; the first one that fires wins):
- "drop":          read the request, then close the connection without answering (the
                   upstream never sees the request);
- "drop_response": forward the request (the upstream applies it), then close the connection
                   without passing the answer on (the client cannot know it was applied);
- "status":        answer `status` with `headers` and `body` instead of forwarding;
- "delay":         wait `delay` seconds, then forward as usual (any action may also carry a
                   `delay`, applied before it).
`skip` lets that many matching requests through untouched before the fault fires; `times`
is how often it fires (None = every time). `match(req)` sees a `ProxyRequest`.

Every request is recorded in `proxy.requests` as Seen(method, path, status, fault, body,
headers); status is None for dropped connections, fault is the action of the fault that
fired (or None), body and headers are the request's.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class ProxyRequest:
    """What a fault's `match` sees."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    number: int  # 1-based count of requests the proxy received since the last reset

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def seen(self, status: int | None, fault: str | None) -> Seen:
        return Seen(self.method, self.path, status, fault, self.body, self.headers)


@dataclass
class Fault:
    action: str = "status"  # drop | drop_response | status | delay
    match: Callable[[ProxyRequest], bool] | None = None  # None: every request
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    times: int | None = 1  # how often it fires; None = forever
    skip: int = 0  # matching requests let through before it fires
    delay: float = 0.0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ("drop", "drop_response", "status", "delay"):
            raise ValueError(f"unknown fault action {self.action!r}")

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int | None  # None: the connection was dropped
    fault: str | None = None  # the action of the fault that fired, if any
    body: bytes = field(default=b"", repr=False, compare=False)  # the request body
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


# --- matchers ---------------------------------------------------------------------------
def method_is(*methods: str) -> Callable[[ProxyRequest], bool]:
    wanted = {m.upper() for m in methods}
    return lambda req: req.method in wanted


def path_matches(pattern: str, *methods: str) -> Callable[[ProxyRequest], bool]:
    """Requests whose path matches the regex (re.search), optionally only these methods."""
    regex = re.compile(pattern)
    wanted = {m.upper() for m in methods}
    return lambda req: bool(regex.search(req.path)) and (not wanted or req.method in wanted)


def nth_request(k: int) -> Callable[[ProxyRequest], bool]:
    """The k-th request the proxy receives (1-based, counted since the last reset)."""
    return lambda req: req.number == k


def body_contains(needle: bytes | str) -> Callable[[ProxyRequest], bool]:
    raw = needle.encode() if isinstance(needle, str) else needle
    return lambda req: raw in req.body


# --- the proxy --------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the client
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = proxy._admit(self.command, self.path, headers, body)
        fault = proxy._pick(req)
        action = fault.action if fault else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if action == "drop":
            proxy._record(req.seen(None, action))
            self._drop()
            return
        if action == "status":
            assert fault is not None
            proxy._record(req.seen(fault.status, action))
            self._answer(fault.status, list(fault.headers.items()), fault.body)
            return
        try:
            status, reason, out_headers, out_body = proxy._forward(self.command, self.path,
                                                                   headers, body)
        except OSError as exc:
            proxy._record(req.seen(502, "upstream-error"))
            self._answer(502, [], f"proxy: upstream failed: {exc}".encode())
            return
        if action == "drop_response":
            proxy._record(req.seen(None, action))
            self._drop()
            return
        proxy._record(req.seen(status, action))
        self._answer(status, out_headers, out_body, reason, head=self.command == "HEAD")

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes,
                reason: str | None = None, head: bool = False) -> None:
        self.send_response(status, reason)
        has_length = False
        for name, value in headers:
            low = name.lower()
            if low in HOP_BY_HOP or low in ("date", "server"):
                continue
            if low == "content-length":
                if not head:
                    continue
                has_length = True
            self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(body)))
        elif not has_length:
            self.send_header("Content-Length", "0")
        self.end_headers()
        if not head and body and status not in (204, 304):
            self.wfile.write(body)
        self.wfile.flush()


class FaultProxy:
    """A reverse proxy in front of `upstream` (an http://127.0.0.1:PORT URL)."""

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the fault proxy only forwards to a plain-HTTP loopback server")
        self.upstream_host = "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.timeout = timeout
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self._received = 0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --
    def start(self) -> FaultProxy:
        server = _Server((HOST, 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --
    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def upstream_origin(self) -> str:
        return f"http://{self.upstream_host}:{self.upstream_port}"

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url_for(self, upstream_url: str) -> str:
        """The same resource, reached through the proxy."""
        parts = urlsplit(upstream_url)
        path = parts.path or "/"
        return f"{self.origin}{path}" + (f"?{parts.query}" if parts.query else "")

    # -- what tests look at --
    def reset(self) -> None:
        """Forget the recorded requests, the request numbering and every fault."""
        with self._lock:
            self.requests = []
            self._received = 0
            self.faults = []

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.requests if method is None or s.method == method.upper())

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(s.method for s in self.requests)

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self.requests)

    def challenges(self) -> int:
        """401 answers seen. A new process sends no credentials over plain HTTP until the
        server's 401 says how (Basic or Digest), so its first request meets one."""
        with self._lock:
            return sum(1 for s in self.requests if s.status == 401)

    # -- internals used by the handler --
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _admit(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> ProxyRequest:
        with self._lock:
            self._received += 1
            number = self._received
        return ProxyRequest(method.upper(), path, headers, body, number)

    def _pick(self, req: ProxyRequest) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.spent or (fault.match is not None and not fault.match(req)):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.fired += 1
                return fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        out = {k: v for k, v in headers.items() if k not in HOP_BY_HOP and k != "host"}
        out["host"] = f"{self.upstream_host}:{self.upstream_port}"
        out["content-length"] = str(len(body))
        out.pop("expect", None)
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                          timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in out.items():
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            data = response.read()
            answer_headers = response.getheaders()
            status, reason = response.status, response.reason
        finally:
            conn.close()
        # servers build hrefs as absolute paths, but rewrite any absolute upstream URL anyway
        upstream, mine = self.upstream_origin.encode(), self.origin.encode()
        if upstream in data:
            data = data.replace(upstream, mine)
        answer_headers = [(k, v.replace(self.upstream_origin, self.origin))
                          if k.lower() in ("location", "content-location") else (k, v)
                          for k, v in answer_headers]
        return status, reason, answer_headers, data
