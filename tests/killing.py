"""What the crash and concurrency tests share: a proxy that holds a chosen request while
the client is killed, a project syncing through it, and checks of what a calendar holds."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from tests.faultproxy import FaultProxy
from tests.forkrunner import Child
from tests.project import Project, caldav_target
from tests.servers import CalendarInfo, Server

PASSWORD_ENV = "FOLLOWSYNC_CRASH_PW"
NOW = "2026-11-12T10:00"


def noted_leads(leads: list[tuple[str, str]]) -> str:
    """Leads as (id, date of the last note I sent); cadence 2w, reminders at 09:30."""
    body = "".join(f"  {lead}:\n    name: Person {lead}\n    org: Org {lead}\n"
                   f"    log:\n      - {day} sent a note\n" for lead, day in leads)
    return f'version: 1\ndefaults:\n  cadence: [2w, 1mo]\n  at: "09:30"\nleads:\n{body}'


class KillProxy(FaultProxy):
    """Holds request number `kill_at` of the current run (numbering restarts at `arm`)
    before forwarding it, or after the server applied it, until `release`."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.kill_at: int | None = None
        self.when = "before"
        self.reached = threading.Event()
        self.gate = threading.Event()
        self._mine = threading.local()

    def start(self) -> KillProxy:
        super().start()
        assert self._server is not None
        # the answer to a held request goes to a killed client: that is expected, not news
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return self

    def arm(self, k: int | None, when: str = "before") -> None:
        self.reset()
        self.kill_at, self.when = k, when
        self.reached.clear()
        self.gate.clear()

    def release(self) -> None:
        self.kill_at = None
        self.gate.set()

    def _admit(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        request = super()._admit(method, path, headers, body)
        self._mine.number = request.number
        return request

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        hit = self.kill_at is not None and getattr(self._mine, "number", None) == self.kill_at
        if hit and self.when == "before":
            self.reached.set()
            self.gate.wait(60)
            raise OSError("held, then dropped: the client was killed")  # never forwarded
        answer = super()._forward(method, path, headers, body)
        if hit:  # the server has applied it; the client will never hear back
            self.reached.set()
            self.gate.wait(60)
        return answer


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_reached(proxy: KillProxy, child: Child, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.reached.wait(0.01):
            return True
        if zombie(child.pid):  # the run ended before request k
            return proxy.reached.is_set()
    return False


def told(marker: Path) -> str:
    """The first complete line the child wrote to `marker`, or ''."""
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return ""
    return text.split("\n", 1)[0].split()[0] if "\n" in text else ""


class Dav(Project):
    """A project syncing to one calendar through a kill proxy: by the calendar's URL, or by
    its display name (discovery, and MKCALENDAR when it is missing)."""

    def __init__(self, tmp: Path, server: Server, proxy: KillProxy, *, url: str = "",
                 name: str = "") -> None:
        super().__init__(tmp, NOW)
        self.tmp, self.server, self.proxy = tmp, server, proxy
        where = caldav_target(proxy.url_for(url), username=server.username or "",
                              password_env=PASSWORD_ENV) if url else \
            caldav_target(proxy.url, calendar=name, username=server.username or "",
                          password_env=PASSWORD_ENV)
        self.write_config(targets=where, mode=0o600)
        self.env = {PASSWORD_ENV: server.password or ""}

    def sync_argv(self, now: str = NOW) -> list[str]:
        return self.argv("sync", now=now)

    def sync(self, now: str = NOW) -> tuple[int, str]:
        return self.output("sync", now=now)


def ours(cal: CalendarInfo) -> tuple[dict[str, bytes], int]:
    """UID → body of every item with followsync's mark (asserting each UID once), and the
    number of items in the calendar."""
    found: dict[str, bytes] = {}
    hrefs = cal.hrefs()
    for href in hrefs:
        status, body, _ = cal.get_raw(href)
        assert status == 200
        if b"X-FOLLOWSYNC-LEAD" in body:
            uid = re.search(rb"^UID:(.*?)\r?$", body, re.M)
            assert uid is not None
            key = uid.group(1).decode()
            assert key not in found, f"duplicate UID {key}"
            found[key] = body
    return found, len(hrefs)


def assert_holds(cal: CalendarInfo, expected: dict[str, str], foreign: bytes | None,
                 where: object = None) -> None:
    """Exactly the expected items (lead → local start), plus the foreign one untouched."""
    found, total = ours(cal)
    assert set(found) == {f"followsync-{lead}-cadence-phone" for lead in expected}, where
    for lead, start in expected.items():
        assert f"DTSTART;TZID=Europe/Berlin:{start}".encode() in \
            found[f"followsync-{lead}-cadence-phone"], (lead, start, where)
    assert total == len(expected) + (foreign is not None), where
    if foreign is not None:
        assert cal.get_raw("dentist.ics")[1] == foreign, where
