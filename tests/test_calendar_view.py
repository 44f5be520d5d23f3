"""The calendar as it is looked at (README "What appears in the calendar"): follow-ups of one
time laid end to end (`spread`), no alarm that has already passed, and a readable reply link.
Every output is read back with icalendar and with vobject (an independent parser)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import vobject

from tests.project import Project

BERLIN = ZoneInfo("Europe/Berlin")


def items(text: str) -> dict[str, dict[str, Any]]:
    """lead id → start, alarm triggers and TRANSP of its one item, read with icalendar, and
    checked against what vobject reads."""
    found: dict[str, dict[str, Any]] = {}
    for comp in icalendar.Calendar.from_ical(text).walk():
        if comp.name not in ("VEVENT", "VTODO"):
            continue
        lead = str(comp["X-FOLLOWSYNC-LEAD"])
        found[lead] = {
            "start": comp.decoded("dtstart"),
            "end": comp.decoded("dtend") if "DTEND" in comp else None,
            "alarms": sorted(c.decoded("trigger") for c in comp.subcomponents
                             if c.name == "VALARM"),
            "transp": str(comp.get("TRANSP", "")),
            "description": str(comp.get("DESCRIPTION", "")),
        }
    seen: dict[str, dict[str, Any]] = {}
    for cal in vobject.readComponents(text):
        for comp in cal.getChildren():
            if comp.name in ("VEVENT", "VTODO"):
                lead = comp.contents["x-followsync-lead"][0].value
                seen[lead] = {"start": comp.dtstart.value, "alarms": sorted(
                    a.trigger.value for a in comp.contents.get("valarm", []))}
    assert {k: (v["start"], v["alarms"]) for k, v in found.items()} == \
        {k: (v["start"], v["alarms"]) for k, v in seen.items()}
    return found


# --- point 7: past alarms ---------------------------------------------------------------

ALARM_LEADS = """\
version: 1
defaults:
  alarms: [0m, 1d]
leads:
  ann: {name: Ann Lee}
  bob: {name: Bob Roe, next: 2026-12-05}
  cy: {name: Cy Dee, next: 2026-12-09}
"""


def test_an_item_written_at_eight_for_nine_today_has_no_alarm_of_yesterday(
        project: Project) -> None:
    project.write_config()
    project.write_leads(ALARM_LEADS)
    code, _out, err = project.run("sync", now="2026-12-01T08:00")
    assert code == 0, err
    found = items(project.ics.read_text())
    assert found["ann"]["start"] == datetime(2026, 12, 1, 9, tzinfo=BERLIN)
    assert found["ann"]["alarms"] == [timedelta(0)]  # "1 day before" was yesterday
    assert found["bob"]["alarms"] == [timedelta(days=-1), timedelta(0)]


def _block(text: str, lead: str) -> str:
    """The VEVENT or VTODO of a lead, as written (DTSTAMP and SEQUENCE included)."""
    return next(b for b in text.split("BEGIN:V")[1:] if f"X-FOLLOWSYNC-LEAD:{lead}" in b)


def test_an_item_is_not_rewritten_because_an_alarm_has_passed(project: Project) -> None:
    project.write_config()
    project.write_leads(ALARM_LEADS)
    assert project.run("sync", now="2026-12-01T08:00")[0] == 0
    bob = _block(project.ics.read_text(), "bob")
    # bob's "1 day before" rang on the 4th at 09:00; cy's change and ann's roll make a sync
    project.edit("cy: {name: Cy Dee, next: 2026-12-09}", "cy: {name: Cy Dee, next: 2026-12-10}")
    code, out, err = project.run("sync", now="2026-12-04T10:00")
    assert code == 0, err
    assert "0 created, 2 updated, 0 deleted, 1 unchanged" in out, out  # ann rolled, cy
    text = project.ics.read_text()
    assert _block(text, "bob") == bob  # not written again: its DTSTAMP is the first sync's
    assert items(text)["bob"]["alarms"] == [timedelta(days=-1), timedelta(0)]
    assert items(text)["ann"]["alarms"] == []  # rolled to 09:00 today, written at 10:00
