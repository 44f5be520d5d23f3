"""Finding the calendar by its display name, against REAL Radicale and Xandikos through the
fault proxy (README "Calendar providers"): the common RFC 4791 / RFC 6638 case takes the
short path (current-user-principal, calendar-home-set, one Depth 1 PROPFIND of the home set,
one MKCALENDAR setting the name and the components at once); anything the short path cannot
read falls back to python-caldav's discovery. The request counts are the ones the CalDAV
benchmark's first-sync goal depends on (bench/README.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.davproject import PASSWORD_ENV, DavProject, lead_block
from tests.faultproxy import Fault, FaultProxy, Seen, method_is, nth_request
from tests.servers import CalendarInfo
from tests.test_caldav_calendar_life import calendars_named, dropped_after, point_at

ROOT = Path(__file__).resolve().parent.parent
EMPTY_MULTISTATUS = b'<?xml version="1.0" encoding="utf-8"?>\n<multistatus xmlns="DAV:"/>'


@pytest.fixture()
def setup(tmp_path: Path, dav_calendar: CalendarInfo,
          fault_proxy: Callable[[Any], FaultProxy], monkeypatch: pytest.MonkeyPatch) -> DavProject:
    if dav_calendar.password:
        monkeypatch.setenv(PASSWORD_ENV, dav_calendar.password)
    project = DavProject(tmp_path, dav_calendar, fault_proxy(dav_calendar.server))
    project.write_leads_of(lead_block("ann"), lead_block("bob"))
    return project


def by_library(seen: list[Seen]) -> list[Seen]:
    """The requests python-caldav made (it names itself in User-Agent)."""
    return [s for s in seen if "caldav" in (s.headers.get("user-agent") or "")]


def test_a_calendar_is_found_by_its_name_on_the_short_path(setup: DavProject) -> None:
    code, out = setup.sync()
    assert code == 0, out
    seen = setup.proxy.seen()
    assert by_library(seen) == []
    # the server root's principal, its home set, the home set's calendars, the listing
    assert setup.proxy.counts() == {"PROPFIND": 4, "PUT": 2, "REPORT": 1}, seen
    depths = [s.headers.get("depth") for s in seen if s.method == "PROPFIND"]
    assert depths == ["0", "0", "1", "1"]
    assert len(setup.ours()) == 2


def test_a_first_sync_on_the_short_path_never_imports_python_caldav(
        setup: DavProject) -> None:
    """Its import (with niquests) was a third of a first sync's client CPU."""
    name = f"Follow-ups {uuid.uuid4().hex[:8]}"
    point_at(setup, name)
    code = ("import sys; from followsync.cli import main; code = main(sys.argv[1:]); "
            "print('caldav imported' if 'caldav' in sys.modules else 'caldav not imported'); "
            "sys.exit(code)")
    with dropped_after(setup.cal, name):
        done = subprocess.run([sys.executable, "-c", code, *setup.argv("sync")],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "caldav not imported" in done.stdout, done.stdout + done.stderr
        assert setup.proxy.count("MKCALENDAR") == 1


def test_a_missing_calendar_is_made_with_one_mkcalendar_and_found_again(
        setup: DavProject) -> None:
    name = f"Follow-ups {uuid.uuid4().hex[:8]}"
    point_at(setup, name)
    with dropped_after(setup.cal, name):
        code, out = setup.sync()
        assert code == 0, out
        assert setup.proxy.counts() == {"PROPFIND": 4, "MKCALENDAR": 1, "PUT": 2,
                                        "REPORT": 1}, setup.proxy.seen()
        assert by_library(setup.proxy.seen()) == []
        made = next(s for s in setup.proxy.seen() if s.method == "MKCALENDAR")
        for needed in (name.encode(), b"displayname", b'"VEVENT"', b'"VTODO"'):
            assert needed in made.body, made.body
        urls = calendars_named(setup.cal, name)
        assert len(urls) == 1
        client = setup.cal.server.client()
        try:
            calendar = client.calendar(url=urls[0])
            assert set(calendar.get_supported_components()) >= {"VEVENT", "VTODO"}
        finally:
            client.close()
        # the state lost: discovery runs again and finds it, no second calendar
        shutil.rmtree(setup.tmp / "state")
        setup.proxy.reset()
        code, out = setup.sync()
        assert code == 0, out
        assert setup.proxy.count("MKCALENDAR") == 0
        assert setup.proxy.count("PUT") == 0  # its items found again at their usual place
        assert calendars_named(setup.cal, name) == urls


def test_a_url_that_is_the_named_calendar_needs_no_discovery(setup: DavProject) -> None:
    point_at(setup, setup.cal.calendar_name, url=setup.proxy.url_for(setup.cal.calendar_url))
    code, out = setup.sync()
    assert code == 0, out
    seen = setup.proxy.seen()
    assert setup.proxy.counts() == {"PROPFIND": 2, "PUT": 2, "REPORT": 1}, seen
    assert all(s.path.startswith(setup.cal.path) for s in seen), seen


def test_no_current_user_principal_falls_back_to_python_caldav(setup: DavProject) -> None:
    """The first answer names no principal (as an odd server's might): python-caldav's
    discovery takes over, and the sync goes through."""
    setup.proxy.faults = [Fault(action="status", status=207, body=EMPTY_MULTISTATUS,
                                headers={"Content-Type": "application/xml"},
                                match=nth_request(1))]
    code, out = setup.sync()
    assert code == 0, out
    assert by_library(setup.proxy.seen()), setup.proxy.seen()
    assert len(setup.ours()) == 2


def test_a_refused_mkcalendar_with_a_name_falls_back_to_python_caldav(
        setup: DavProject) -> None:
    name = f"Follow-ups {uuid.uuid4().hex[:8]}"
    point_at(setup, name)
    setup.proxy.faults = [Fault(action="status", status=403, match=method_is("MKCALENDAR"))]
    with dropped_after(setup.cal, name):
        code, out = setup.sync()
        assert code == 0, out
        assert setup.proxy.count("MKCALENDAR") == 2
        assert by_library([s for s in setup.proxy.seen() if s.method == "MKCALENDAR"])
        assert len(calendars_named(setup.cal, name)) == 1


def test_a_principal_on_another_host_is_never_contacted(setup: DavProject) -> None:
    body = (b'<?xml version="1.0" encoding="utf-8"?>\n<multistatus xmlns="DAV:"><response>'
            b"<href>/</href><propstat><prop><current-user-principal>"
            b"<href>http://elsewhere.invalid/alice/</href></current-user-principal></prop>"
            b"<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>")
    setup.proxy.faults = [Fault(action="status", status=207, body=body, times=None,
                                headers={"Content-Type": "application/xml"},
                                match=method_is("PROPFIND"))]
    code, out = setup.sync()
    assert code != 0
    assert "refusing to send a request to another host" in out, out
    assert all(s.method == "PROPFIND" for s in setup.proxy.seen())
