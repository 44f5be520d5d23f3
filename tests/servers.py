"""Real CalDAV servers (Radicale, Xandikos) as subprocesses on 127.0.0.1, for tests.

Nothing here is a mock: each server is the real program, started on a free loopback port with
its storage in a temporary folder, and stopped (SIGTERM, then SIGKILL) when done.

    with running_server("radicale", tmp_path) as server:
        cal = fresh_calendar(server)          # a new, empty calendar on that server
        cal.calendar.add_event(...)           # play "another calendar app"

The pytest fixtures built on this live in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
POLL_EVERY = 0.05

RADICALE_USER = "alice"
RADICALE_PASSWORD = "s3cret-pass"
XANDIKOS_PRINCIPAL = "/user/"
XANDIKOS_DEFAULT_CALENDAR = "/user/calendars/calendar/"

KINDS = ("radicale", "xandikos")


class ServerStartError(RuntimeError):
    """A server did not come up; the message holds the tail of its log."""


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1 only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One running server process."""

    kind: str  # 'radicale' | 'xandikos'
    port: int
    root: Path  # its storage and config live under here
    process: subprocess.Popen[bytes]
    log_path: Path
    username: str | None
    password: str | None
    principal_path: str
    started_in: float = 0.0  # seconds from spawn to the first answer below 500
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The server root, with a trailing slash."""
        return f"http://{HOST}:{self.port}/"

    @property
    def principal_url(self) -> str:
        return f"http://{HOST}:{self.port}{self.principal_path}"

    def client(self, url: str | None = None, **kwargs: Any) -> Any:
        """A python-caldav 3.x client for this server (plain HTTP, loopback, no discovery)."""
        import caldav

        return caldav.DAVClient(url=url or self.url, username=self.username,
                                password=self.password, enable_rfc6764=False, timeout=15,
                                **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the child's PID, then SIGKILL if it does not go."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout)


# --------------------------------------------------------------------------- starting
def _radicale_command(root: Path, port: int, strict_preconditions: bool) -> list[str]:
    storage = root / "collections"
    storage.mkdir(parents=True, exist_ok=True)
    users = root / "users"
    users.write_text(f"{RADICALE_USER}:{RADICALE_PASSWORD}\n")
    config = root / "config"
    config.write_text(
        "[server]\n"
        f"hosts = {HOST}:{port}\n"
        "delay_on_error = 0\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {users}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0\n"
        "[rights]\n"
        "type = owner_only\n"
        "[storage]\n"
        f"filesystem_folder = {storage}\n"
        f"strict_preconditions = {strict_preconditions}\n"
        "[web]\n"
        "type = none\n"
        "[logging]\n"
        "level = warning\n"
    )
    return [sys.executable, "-m", "radicale", "-C", str(config)]


def _xandikos_command(root: Path, port: int) -> list[str]:
    data = root / "data"
    state = root / "state"  # else it writes under $XDG_DATA_HOME
    data.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "xandikos", "serve", "-d", str(data), "--defaults",
            "--state-dir", str(state), "--no-detect-systemd", "-l", HOST, "-p", str(port)]


def _propfind_status(port: int, path: str = "/") -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("PROPFIND", path, body=b"", headers={"Depth": "0"})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(port: int, process: subprocess.Popen[bytes] | None = None,
               timeout: float = READY_TIMEOUT) -> float:
    """Poll PROPFIND Depth: 0 every 50 ms until a status below 500; the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        status = _propfind_status(port)
        if status is not None and status < 500:
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            raise ServerStartError(f"exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"no answer below 500 within {timeout:.0f} s (last: {status})")
        time.sleep(POLL_EVERY)


def start_server(kind: str, root: Path, *, strict_preconditions: bool = False) -> Server:
    """Start a server of `kind` with its files under `root`; it answers when this returns."""
    root.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(3):  # a port taken between free_port() and bind(): try another
        port = free_port()
        if kind == "radicale":
            command = _radicale_command(root, port, strict_preconditions)
            username, password, principal = RADICALE_USER, RADICALE_PASSWORD, \
                f"/{RADICALE_USER}/"
        elif kind == "xandikos":
            command = _xandikos_command(root, port)
            username, password, principal = None, None, XANDIKOS_PRINCIPAL
        else:
            raise ValueError(f"unknown server kind {kind!r}")
        log_path = root / f"server-{attempt}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=root, env=env)
        server = Server(kind, port, root, process, log_path, username, password, principal,
                        options={"strict_preconditions": strict_preconditions})
        try:
            server.started_in = wait_ready(port, process)
            return server
        except ServerStartError as exc:
            server.stop()
            last_error = ServerStartError(f"{kind} on {HOST}:{port}: {exc}\n{server.log_tail()}")
    assert last_error is not None
    raise last_error


@contextlib.contextmanager
def running_server(kind: str, root: Path, **options: Any) -> Iterator[Server]:
    server = start_server(kind, root, **options)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- calendars
@dataclass
class CalendarInfo:
    """A fresh calendar on a real server, and a caldav client to play "another app" with."""

    kind: str  # 'radicale' | 'xandikos'
    url: str  # the server root
    principal_url: str
    calendar_url: str
    calendar_name: str  # its display name
    username: str | None
    password: str | None  # None for xandikos (no auth)
    calendar: Any  # a ready caldav.Calendar, on its own client (not followsync's)
    server: Server
    components: tuple[str, ...] = ("VEVENT", "VTODO")

    @property
    def path(self) -> str:
        """The calendar's absolute path on the server (e.g. /alice/<uuid>/)."""
        return self.calendar_url.split(f":{self.server.port}", 1)[1]

    def target(self, url: str | None = None, name: str = "t", **kwargs: Any) -> Any:
        """A followsync caldav Target for this calendar; `url` defaults to the server root."""
        from followsync.config import Target

        return Target(name=name, type="caldav", kind=None, url=url or self.url,
                      calendar=self.calendar_name, username=self.username,
                      password=self.password, **kwargs)

    # --- raw HTTP, as another calendar app would do it (bytes in, bytes out) ---
    def http(self, method: str, href: str, body: bytes | str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request straight to the server; `href` is a name in the calendar, an absolute
        path or a full URL."""
        path = _path_of(href, self.path)
        all_headers = dict(headers or {})
        if self.username is not None:
            import base64

            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        if isinstance(body, str):
            body = body.encode()
        if body is not None and method in ("PUT", "POST"):
            all_headers.setdefault("Content-Type", "text/calendar; charset=utf-8")
        conn = http.client.HTTPConnection(HOST, self.server.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def put_raw(self, name: str, text: str | bytes, headers: dict[str, str] | None = None
                ) -> tuple[int, str | None]:
        """PUT an item at `name` (unconditionally unless headers say so): (status, etag)."""
        status, got, _ = self.http("PUT", name, text, headers)
        return status, got.get("etag")

    def get_raw(self, name: str) -> tuple[int, bytes, str | None]:
        """GET an item: (status, body, etag)."""
        status, got, body = self.http("GET", name)
        return status, body, got.get("etag")

    def delete_raw(self, name: str) -> int:
        return self.http("DELETE", name)[0]

    def hrefs(self) -> dict[str, str]:
        """Absolute path → ETag of every item in the calendar (one PROPFIND Depth: 1)."""
        import re

        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                '<d:prop><d:getetag/></d:prop></d:propfind>')
        status, _, data = self.http("PROPFIND", self.path, body,
                                    {"Depth": "1", "Content-Type": "application/xml"})
        assert status == 207, (status, data[:300])
        out: dict[str, str] = {}
        for response in re.findall(rb"<(?:\w+:)?response\b.*?</(?:\w+:)?response>", data, re.S):
            href = re.search(rb"<(?:\w+:)?href>(.*?)</(?:\w+:)?href>", response, re.S)
            etag = re.search(rb"<(?:\w+:)?getetag>(.*?)</(?:\w+:)?getetag>", response, re.S)
            if href and etag:
                path = _path_of(href.group(1).decode().strip(), self.path)
                if path.rstrip("/") != self.path.rstrip("/"):
                    out[path] = etag.group(1).decode().strip().replace("&quot;", '"')
        return out


def _path_of(href: str, calendar_path: str) -> str:
    """A name in the calendar, an absolute path or a full URL → an absolute path."""
    if href.startswith(("http://", "https://")):
        rest = href.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    if href.startswith("/"):
        return href
    return calendar_path.rstrip("/") + "/" + href


def fresh_calendar(server: Server, components: tuple[str, ...] = ("VEVENT", "VTODO"),
                   name: str | None = None) -> CalendarInfo:
    """Create a new calendar (random id and display name) under the server's principal."""
    client = server.client()
    principal = client.get_principal()
    cal_id = uuid.uuid4().hex
    display = name or f"followsync-test-{cal_id[:8]}"
    calendar = principal.make_calendar(name=display, cal_id=cal_id,
                                       supported_calendar_component_set=list(components))
    return CalendarInfo(kind=server.kind, url=server.url, principal_url=server.principal_url,
                        calendar_url=str(calendar.url), calendar_name=display,
                        username=server.username, password=server.password,
                        calendar=calendar, server=server, components=tuple(components))


def drop_calendar(info: CalendarInfo) -> None:
    """Best-effort removal after a test (keeps the principal's calendar list short)."""
    with contextlib.suppress(Exception):
        info.http("DELETE", info.path)
    with contextlib.suppress(Exception):
        info.calendar.client.close()
