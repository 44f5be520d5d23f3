"""A deliberately hostile "CalDAV server" for tests: threaded, loopback only.

    with HostileServer("redirect", location="http://127.0.0.2:PORT/cal/") as server:
        ... point a caldav target at server.url ...
        assert server.requests  # what it received, with headers

Every request is answered according to `mode` (whatever the method):
- "huge_stream":   207, chunked, an endless stream of XML (until the client hangs up)
- "huge_length":   207 with `Content-Length: 10**12`, then a trickle (never that much)
- "malformed":     207 with XML that never closes its elements
- "entity_bomb":   207 with a "billion laughs" DOCTYPE at the start of the body
- "entity_bomb_late": the same DOCTYPE after a 5,000-byte comment (past any "look at the
                   first 4 kB" check)
- "redirect":      `status` (301/302/307/308) with `Location: location`
- "drip":          207 whose headers and body come one byte every `drip` seconds
- "unauthorized":  401 with `WWW-Authenticate: Basic` for every request
- "ok":            a tiny well-formed 207 (for the "other host" of a redirect test)

Each request is recorded as Received(method, path, headers) before it is answered.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
MODES = ("huge_stream", "huge_length", "malformed", "entity_bomb", "entity_bomb_late",
         "redirect", "drip", "unauthorized", "ok")

_MULTISTATUS_HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:">'
_ONE_RESPONSE = (b"<d:response><d:href>/cal/item.ics</d:href><d:propstat><d:prop>"
                 b'<d:getetag>"x"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status>'
                 b"</d:propstat></d:response>\n")
_OK = (_MULTISTATUS_HEAD + b"<d:response><d:href>/cal/</d:href><d:propstat><d:prop>"
       b"<d:resourcetype><d:collection/></d:resourcetype></d:prop>"
       b"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>")
_BOMB_DTD = (b'<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
             + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else
                                                        b"&lol;") * 10) for i in range(1, 10))
             + b"]>\n")
_BOMB_BODY = b'<d:multistatus xmlns:d="DAV:"><d:response><d:href>&lol9;</d:href></d:response>' \
             b"</d:multistatus>"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str] = field(repr=False)  # lower-cased names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hostile: HostileServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def _answer(self) -> None:
        hostile = self.server.hostile
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        hostile._record(Received(self.command, self.path,
                                 {k.lower(): v for k, v in self.headers.items()}))
        try:
            getattr(self, f"_{hostile.mode}")(hostile)
        except OSError:  # the client hung up: that is what a good client does here
            self.close_connection = True

    # --- the modes ---------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _huge_stream(self, hostile: HostileServer) -> None:
        self.send_response(207)
        self.send_header("Content-Type", "application/xml; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = _ONE_RESPONSE * (65536 // len(_ONE_RESPONSE))
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(_MULTISTATUS_HEAD), _MULTISTATUS_HEAD))
        while not hostile.stopping.is_set():
            self.wfile.write(frame)
            hostile.sent += len(chunk)
        self.close_connection = True

    def _huge_length(self, hostile: HostileServer) -> None:
        self.send_response(207)
        self.send_header("Content-Type", "application/xml; charset=utf-8")
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.write(_MULTISTATUS_HEAD)
        self.wfile.flush()
        while not hostile.stopping.wait(0.05):
            self.wfile.write(_ONE_RESPONSE)
            self.wfile.flush()
        self.close_connection = True

    def _malformed(self, hostile: HostileServer) -> None:
        self._send(207, _MULTISTATUS_HEAD + b"<d:response><d:href>/cal/a.ics</d:href><d:propstat>")

    def _entity_bomb(self, hostile: HostileServer) -> None:
        self._send(207, b'<?xml version="1.0"?>\n' + _BOMB_DTD + _BOMB_BODY)

    def _entity_bomb_late(self, hostile: HostileServer) -> None:
        padding = b"<!-- " + b"x" * 5000 + b" -->\n"
        self._send(207, b'<?xml version="1.0"?>\n' + padding + _BOMB_DTD + _BOMB_BODY)

    def _redirect(self, hostile: HostileServer) -> None:
        self._send(hostile.status, b"", {"Location": hostile.location})

    def _drip(self, hostile: HostileServer) -> None:
        raw = (b"HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(_OK), _OK))
        for i in range(len(raw)):
            if hostile.stopping.wait(hostile.drip):
                break
            self.wfile.write(raw[i : i + 1])
            self.wfile.flush()
        self.close_connection = True

    def _unauthorized(self, hostile: HostileServer) -> None:
        self._send(401, b"", {"WWW-Authenticate": 'Basic realm="hostile"'})

    def _ok(self, hostile: HostileServer) -> None:
        self._send(207, _OK)


class HostileServer:
    """One hostile server on `host` (a 127.0.0.x address) and a free port."""

    def __init__(self, mode: str, host: str = "127.0.0.1", *, status: int = 302,
                 location: str = "", drip: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if host not in LOOPBACK:
            raise ValueError("the hostile server listens on loopback addresses only")
        self.mode, self.host = mode, host
        self.status, self.location, self.drip = status, location, drip
        self.requests: list[Received] = []
        self.sent = 0  # body bytes pushed by huge_stream
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: _Server | None = None

    def start(self) -> HostileServer:
        server = _Server((self.host, 0), _Handler)
        server.hostile = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"hostile-{self.mode}", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() it first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/cal/"

    def _record(self, seen: Received) -> None:
        with self._lock:
            self.requests.append(seen)

    def seen(self) -> list[Received]:
        with self._lock:
            return list(self.requests)


def loopback_alias_works(host: str = "127.0.0.2") -> bool:
    """Whether this machine answers on another 127.0.0.x address (Linux does by default)."""
    with contextlib.suppress(OSError), socket.socket() as sock:
        sock.bind((host, 0))
        return True
    return False


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
