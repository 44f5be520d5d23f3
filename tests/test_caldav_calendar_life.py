"""A CalDAV calendar's life as seen from followsync, against REAL Radicale and Xandikos
through the fault proxy (which counts requests by method):

- `plan` against a calendar that does not exist yet writes nothing anywhere;
- after others change the calendar, the no-op sync is one request again;
- a calendar deleted on the server is made again and every item uploaded anew.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.davproject import FOREIGN, PASSWORD_ENV, DavProject, lead_block
from tests.faultproxy import FaultProxy
from tests.servers import CalendarInfo

WRITES = ("MKCALENDAR", "MKCOL", "PROPPATCH", "PUT", "DELETE")


@pytest.fixture()
def setup(tmp_path: Path, dav_calendar: CalendarInfo,
          fault_proxy: Callable[[Any], FaultProxy], monkeypatch: pytest.MonkeyPatch) -> DavProject:
    if dav_calendar.password:
        monkeypatch.setenv(PASSWORD_ENV, dav_calendar.password)
    return DavProject(tmp_path, dav_calendar, fault_proxy(dav_calendar.server))


def calendars_named(cal: CalendarInfo, name: str) -> list[str]:
    """The URLs of the calendars with this display name under the server's principal."""
    client = cal.server.client()
    try:
        return [str(c.url) for c in client.get_principal().get_calendars()
                if (c.get_display_name() or "") == name]
    finally:
        client.close()


@contextlib.contextmanager
def dropped_after(cal: CalendarInfo, name: str) -> Iterator[None]:
    """Remove every calendar of this name after the block (the ones followsync made)."""
    try:
        yield
    finally:
        for url in calendars_named(cal, name):
            with contextlib.suppress(Exception):
                cal.http("DELETE", url)


def state_rows(setup: DavProject) -> int:
    """Rows in every table of the state (0 when there is no state file at all)."""
    path = setup.tmp / "state" / "state.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables
                   if t != "meta")
    finally:
        db.close()


def point_at(setup: DavProject, calendar: str | None, url: str | None = None) -> None:
    """Aim the config at another calendar name (None: `url` is the calendar itself)."""
    lines = []
    for line in setup.config.read_text().splitlines():
        if line.strip().startswith("calendar:"):
            if calendar is None:
                continue
            line = f"    calendar: {calendar}"
        if url is not None and line.strip().startswith("url:"):
            line = f"    url: {url}"
        lines.append(line)
    setup.config.write_text("\n".join(lines) + "\n")


# --- plan writes nothing ---------------------------------------------------------------------
def test_plan_against_a_missing_calendar_writes_nothing(setup: DavProject) -> None:
    name = f"followsync-new-{uuid.uuid4().hex[:8]}"
    point_at(setup, name)
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    with dropped_after(setup.cal, name):
        code, out = setup.output("plan")
        assert code == 0, out
        assert f"calendar {name!r} does not exist yet; a sync creates it" in out, out
        assert "phone: 3 to create, 0 to update, 0 to delete, 0 unchanged" in out, out
        assert out.count("  create  ") == 3, out
        assert not any(setup.proxy.count(m) for m in WRITES), setup.proxy.counts()
        assert calendars_named(setup.cal, name) == []
        assert state_rows(setup) == 0
        # ... and a sync does what the plan said
        code, out = setup.sync()
        assert code == 0 and "3 created" in out, out
        assert len(calendars_named(setup.cal, name)) == 1


# --- the no-op after others' changes ---------------------------------------------------------
def test_after_a_foreign_change_the_next_noop_is_one_request(setup: DavProject) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    assert setup.sync()[0] == 0
    assert setup.cal.put_raw("dentist.ics", FOREIGN)[0] in (201, 204)  # another app adds one
    code, out = setup.sync()
    assert code == 0 and "3 unchanged" in out, out
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0 and "3 unchanged" in out, out
    assert setup.proxy.count() == 1, setup.proxy.seen()
    # another device changes the foreign item, then deletes it: the same
    _, _, etag = setup.cal.get_raw("dentist.ics")
    changed = FOREIGN.replace("SUMMARY:Dentist", "SUMMARY:Dentist (moved)")
    assert setup.cal.put_raw("dentist.ics", changed, {"If-Match": etag or ""})[0] in (200, 204)
    assert setup.sync()[0] == 0
    assert setup.cal.delete_raw("dentist.ics") in (200, 204)
    assert setup.sync()[0] == 0
    setup.proxy.reset()
    assert setup.sync()[0] == 0
    assert setup.proxy.count() == 1, setup.proxy.seen()
    # the stored token still sees an edit of ours made after it
    href = next(h for h in setup.cal.hrefs() if "lead-1" in h)
    _, body, etag = setup.cal.get_raw(href)
    moved = re.sub(rb"(DTSTART;TZID=[^:]+:\d{8})T\d{6}", rb"\1T170000", body)  # (laid: spread)
    assert setup.cal.put_raw(href, moved, {"If-Match": etag or ""})[0] in (200, 204)
    code, out = setup.sync()
    assert code == 0 and "1 calendar edit kept" in out, out


# --- a calendar deleted on the server --------------------------------------------------------
def test_a_calendar_deleted_on_the_server_is_made_again_with_every_item(
        setup: DavProject) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    assert setup.sync()[0] == 0
    gone = next(h for h in setup.cal.hrefs() if "lead-0" in h)
    assert setup.cal.delete_raw(gone) in (200, 204)  # deleted by hand: remembered ...
    code, out = setup.sync()
    assert code == 0 and "1 calendar edit kept" in out, out
    name = setup.cal.calendar_name
    with dropped_after(setup.cal, name):
        assert setup.cal.http("DELETE", setup.cal.path)[0] in (200, 204)
        assert calendars_named(setup.cal, name) == []
        setup.proxy.reset()
        code, out = setup.output("plan")
        assert code == 0, out
        assert f"calendar {name!r} was deleted on the server; a sync creates it again" in out
        assert "phone: 3 to create" in out, out
        assert not any(setup.proxy.count(m) for m in WRITES), setup.proxy.counts()
        assert calendars_named(setup.cal, name) == []
        code, out = setup.sync()
        assert code == 0, out
        assert "3 created" in out, out  # ... but not for the new calendar
        assert (f"calendar {name!r} was deleted on the server; created it again and uploaded "
                "3 items") in out, out
        (url,) = calendars_named(setup.cal, name)
        setup.cal.calendar_url = url
        assert len(setup.ours()) == 3
        setup.proxy.reset()
        code, out = setup.sync()
        assert code == 0 and "0 created, 0 updated, 0 deleted, 3 unchanged" in out, out
        assert setup.proxy.count() == 1, setup.proxy.seen()


def test_a_deleted_calendar_named_by_its_url_is_made_again_there(
        setup: DavProject) -> None:
    point_at(setup, None, setup.proxy.url_for(setup.cal.calendar_url))
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(2)))
    assert setup.sync()[0] == 0
    assert len(setup.ours()) == 2
    assert setup.cal.http("DELETE", setup.cal.path)[0] in (200, 204)
    code, out = setup.sync()
    assert code == 0 and "2 created" in out, out
    assert "was deleted on the server; created it again and uploaded 2 items" in out, out
    assert len(setup.ours()) == 2  # at the same URL
    assert setup.proxy.count("MKCALENDAR") == 1


def test_a_wrong_calendar_url_is_never_created(setup: DavProject) -> None:
    """Only a calendar followsync synced before is made again: a typo stays an error."""
    typo = setup.cal.calendar_url.rstrip("/") + "-typo/"
    point_at(setup, None, setup.proxy.url_for(typo))
    setup.write_leads_of(lead_block("a"))
    code, out = setup.sync()
    assert code == 3 and f"no calendar at {setup.proxy.url_for(typo)}" in out, out
    assert setup.proxy.count("MKCALENDAR") == 0


def test_a_lost_state_then_plan_and_sync_count_alike(setup: DavProject) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    assert setup.sync()[0] == 0
    shutil.rmtree(setup.tmp / "state")
    code, out = setup.output("plan")
    assert code == 0, out
    assert "phone: 0 to create, 0 to update, 0 to delete, 0 unchanged, 3 to check" in out, out
    assert out.count("  check   ") == 3
    code, out = setup.sync()
    assert code == 0 and "0 created, 0 updated, 0 deleted, 3 unchanged (" in out, out
