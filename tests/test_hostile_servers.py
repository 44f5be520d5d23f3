"""Hostile CalDAV servers (issue 6, item 4): each answer ends the sync with exit 3 and one
clear line, in bounded time and memory, and the password never leaves for another host nor
shows in any output.

Every mode is tried with a target that names the calendar URL itself (the hot path, plain
`DavSession`) and with one that names the calendar by `calendar:` (discovery through
python-caldav, whose HTTP goes through the same session). Memory is measured in a separate
runner process that forks a child per case, so each case's peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import icalendar
import pytest

from followsync.backends.davhttp import MAX_BODY
from followsync.cli import main
from tests.faultproxy import FaultProxy
from tests.hostile_server import HostileServer, loopback_alias_works
from tests.project import Project, caldav_target
from tests.servers import CalendarInfo

NOW = "2026-03-02T10:00"
SECRET = "Hunter2-pa55-never-shown"
PASSWORD_ENV = "FOLLOWSYNC_HOSTILE_PW"
TIMEOUT = 1.0  # the target's `timeout:`
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not loopback_alias_works(), reason="no 127.0.0.2 on this host")


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SECRET)


def write_config(folder: Path, url: str, by_name: bool, timeout: float = TIMEOUT) -> Path:
    project = Project(folder, NOW)
    project.write_leads("""\
        version: 1
        leads:
          dana: {name: Dana, last_contact: 2026-02-01}
          eve: {name: Eve, last_contact: 2026-02-10}
        """)
    return project.write_config(
        targets=caldav_target(url, calendar="Follow-ups" if by_name else "", username="alice",
                              password_env=PASSWORD_ENV, timeout=timeout), mode=0o600)


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code = main(["-vv", "--config", str(config), "--now", NOW, *(args or ("sync",))])
    took = time.monotonic() - started
    out = capsys.readouterr()
    return code, out.out + out.err, took


@pytest.fixture
def other_host() -> Iterator[HostileServer]:
    """A well-behaved server on ANOTHER address: nothing may ever reach it."""
    with HostileServer("ok", "127.0.0.2") as server:
        yield server


EXPECTED = {
    "huge_stream": r"too large",
    "huge_length": r"too large \(1000000 MB\)",
    "malformed": r"not valid XML|Premature end of data|no element found",
    "entity_bomb": r"declares XML entities",
    "entity_bomb_late": r"declares XML entities",
    "redirect": r"redirected /cal/ to http://127\.0\.0\.2:\d+/cal/; followsync does not follow",
    "drip": r"is unreachable: timed out",
    "unauthorized": r"authentication refused for user alice",
}
CASES = [("huge_stream", 0), ("huge_length", 0), ("malformed", 0), ("entity_bomb", 0),
         ("entity_bomb_late", 0), ("redirect", 301), ("redirect", 302), ("redirect", 307),
         ("redirect", 308), ("unauthorized", 0)]


def _check(code: int, text: str, took: float, expected: str, server: HostileServer,
           other: HostileServer, bound: float) -> None:
    assert code == 3, text
    assert re.search(expected, text), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert SECRET not in text
    lines = [line for line in text.splitlines() if re.search(expected, line)]
    assert len(lines) == 1 and lines[0].startswith("phone: "), text  # one clear line
    assert took < bound, f"took {took:.1f} s"
    assert other.seen() == [], "a request reached another host"
    assert server.seen(), "the hostile server was never asked"
    for seen in server.seen():  # the password only ever went to the configured host
        assert seen.headers.get("host", "").startswith("127.0.0.1:")


@pytest.mark.parametrize("by_name", [False, True], ids=["calendar-url", "calendar-name"])
@pytest.mark.parametrize(("mode", "status"), CASES, ids=[f"{m}-{s}" if s else m for m, s in CASES])
def test_a_hostile_answer_is_one_clear_failure(
        mode: str, status: int, by_name: bool, tmp_path: Path, other_host: HostileServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(mode, status=status or 302, location=other_host.url) as server:
        config = write_config(tmp_path, server.url, by_name)
        code, text, took = run(config, capsys)
        _check(code, text, took, EXPECTED[mode], server, other_host, bound=10.0)
        if mode == "unauthorized":  # a 401 is final: no loop of retries or negotiations
            assert len(server.seen()) == 1, server.seen()
        if mode == "redirect":
            code, text, _ = run(config, capsys, "calendars")
            assert code == 3 and re.search(EXPECTED[mode], text), text
            assert other_host.seen() == [] and SECRET not in text


def test_a_dripping_server_is_cut_off_at_the_timeout(
        tmp_path: Path, other_host: HostileServer, capsys: pytest.CaptureFixture[str]) -> None:
    """One byte every 0.25 s never trips a 1 s socket time-out; without a deadline on the
    whole answer this sync would take 75 s per attempt. With it: 5 attempts of 1 s plus
    backoff."""
    with HostileServer("drip", drip=0.25) as server:
        config = write_config(tmp_path, server.url, by_name=False)
        code, text, took = run(config, capsys)
        _check(code, text, took, EXPECTED["drip"], server, other_host, bound=25.0)
        assert len(server.seen()) == 5  # the first try and 4 retries, each cut at 1 s
        assert took >= 5 * TIMEOUT


def test_a_dripping_server_during_discovery_is_cut_off_too(
        tmp_path: Path, other_host: HostileServer, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer("drip", drip=0.25) as server:
        config = write_config(tmp_path, server.url, by_name=True, timeout=0.5)
        code, text, took = run(config, capsys)
        _check(code, text, took, EXPECTED["drip"], server, other_host, bound=20.0)


# ------------------------------------------------------------------------- bounded memory
RUNNER = r"""
import json, os, resource, sys, time
import caldav, icalendar, pydantic  # the baseline holds every library a sync uses
from followsync.cli import main
import followsync.backends.caldav, followsync.sync
for case in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        code = main(["--config", case["config"], "--now", case["now"], "sync"])
        result = {"code": code, "took": time.monotonic() - started,
                  "grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}
        with open(case["result"], "w") as out:
            json.dump(result, out)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_hostile_answers_cost_bounded_memory(tmp_path: Path, other_host: HostileServer) -> None:
    """An endless body, an entity bomb and a huge Content-Length: the RSS of the syncing
    process grows by at most MAX_BODY (64 MB) plus a margin, however much the server sends
    (the endless stream would otherwise grow it until the machine runs out)."""
    servers = [HostileServer(mode).start() for mode in
               ("huge_stream", "huge_stream", "entity_bomb_late", "entity_bomb_late", "huge_length")]
    try:
        cases = []
        for index, server in enumerate(servers):
            by_name = index % 2 == 1
            config = write_config(tmp_path / f"case{index}", server.url, by_name, timeout=5)
            cases.append({"config": str(config), "now": NOW,
                          "result": str(tmp_path / f"result{index}.json")})
        done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, PASSWORD_ENV: SECRET})
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
        limit_kb = (MAX_BODY + 64 * 2**20) // 1024  # measured: 70 MB (url), 90 MB (name)
        for index, case in enumerate(cases):
            result: dict[str, Any] = json.loads(Path(case["result"]).read_text())
            assert result["code"] == 3, (index, done.stderr)
            assert result["took"] < 30, (index, result)
            assert result["grew_kb"] < limit_kb, (index, result)
        assert servers[0].sent > MAX_BODY  # the endless stream really went past the limit
        assert other_host.seen() == []
    finally:
        for server in servers:
            server.stop()


# ------------------------------------------------ invalid iCalendar from a real server
class ManglingProxy(FaultProxy):
    """Forwards to a real server, but breaks the iCalendar inside every GET and REPORT
    answer in the chosen way (the XML around it stays valid)."""

    def __init__(self, upstream: str, how: str) -> None:
        super().__init__(upstream)
        self.how = how

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        status, reason, out_headers, data = super()._forward(method, path, headers, body)
        if method in ("GET", "REPORT") and b"BEGIN:VCALENDAR" in data:
            data = mangle(data, self.how)
        return status, reason, out_headers, data


def mangle(data: bytes, how: str) -> bytes:
    if how == "truncated":  # every item loses its end
        return re.sub(rb"END:VEVENT\r?\n(&#13;\n)?END:VCALENDAR", b"", data)
    if how == "nested-begin":
        return data.replace(b"BEGIN:VEVENT", b"BEGIN:VEVENT\r\nBEGIN:VEVENT")
    if how == "vcard":
        return data.replace(b"BEGIN:VCALENDAR", b"BEGIN:VCARD")
    raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "nested-begin", "vcard"])
def test_invalid_icalendar_from_the_server_is_never_a_crash(
        how: str, radicale_calendar: CalendarInfo, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is lost, so the sync must read our items back (multiget, GET) to adopt
    them: each comes back broken. An unreadable item of ours is rewritten (If-Match) and the
    sync converges; nothing crashes."""
    cal = radicale_calendar
    with FaultProxy(cal.url) as clean:
        config = write_config(tmp_path, clean.url_for(cal.calendar_url), by_name=False)
        monkeypatch.setenv(PASSWORD_ENV, cal.password or "")
        code, text, _ = run(config, capsys)
        assert code == 0 and "2 created" in text, text
    shutil.rmtree(tmp_path / "state")
    with ManglingProxy(cal.url, how).start() as proxy:
        config = write_config(tmp_path, proxy.url_for(cal.calendar_url), by_name=False)
        code, text, _ = run(config, capsys)
        assert "Traceback" not in text and "internal error" not in text, text
        assert code == 0, text
        if how != "vcard":  # icalendar reads a VCARD as some component; the others fail
            assert text.count("is not valid iCalendar") == 2, text
        assert "2 updated" in text, text
        assert not cal.password or cal.password not in text
    # what the server holds now is valid and ours, one item per UID
    items = {}
    for href in cal.hrefs():
        status, body, _ = cal.get_raw(href)
        assert status == 200
        parsed = icalendar.Calendar.from_ical(body)
        (event,) = parsed.walk("VEVENT")
        assert str(event["UID"]) not in items
        items[str(event["UID"])] = event
    assert set(items) == {"followsync-dana-cadence-phone", "followsync-eve-cadence-phone"}


def test_one_deadline_thread_serves_a_session_and_ends_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline on every exchange costs no thread per request: one watchdog thread,
    started with the first request, gone after close() or after a quiet while (a session
    left unclosed); a cut (above) re-arms it."""
    import threading

    from followsync.backends import davhttp

    with HostileServer("ok") as server:
        session = davhttp.DavSession(server.url, None, None, timeout=5.0, retries=0)
        threads: set[threading.Thread | None] = set()
        for _ in range(30):
            assert session.request("PROPFIND", "/cal/", b"", {"Depth": "0"}).status == 207
            threads.add(session.watchdog._thread)
        assert len(threads) == 1 and None not in threads
        (thread,) = threads
        assert thread is not None and thread.name == "followsync-deadline"
        session.close()
        thread.join(5)
        assert not thread.is_alive()

        monkeypatch.setattr(davhttp, "IDLE_EXIT", 0.2)
        left = davhttp.DavSession(server.url, None, None, timeout=1.0, retries=0)
        assert left.request("PROPFIND", "/cal/", b"", {"Depth": "0"}).status == 207
        idle = left.watchdog._thread
        assert idle is not None
        idle.join(5)
        assert not idle.is_alive()  # never closed, and still no thread left behind
        assert left.request("PROPFIND", "/cal/", b"", {"Depth": "0"}).status == 207
        assert left.watchdog._thread is not None and left.watchdog._thread.is_alive()
        left.close()
