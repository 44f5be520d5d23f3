"""Time (issue 6, item 5): reminders at `at` local time across DST in many zones (both
hemispheres, 30- and 45-minute offsets, a 30-minute DST shift), month-end and leap-day
arithmetic, a config zone other than the machine's, and `--now` around midnight or with an
offset that is another local date. Time is always an input (`--now`); nothing sleeps.

Every check reads the .ics file a real `sync` wrote, and the instants are computed from the
file's own VTIMEZONE (RFC 5545's rules, evaluated here: vobject misreads lists of RDATEs),
as a calendar app would, then compared with zoneinfo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from dateutil.rrule import rrulestr

from tests.project import cli, make_project

ROOT = Path(__file__).resolve().parent.parent
# zone → why it is here
ZONES = {
    "Europe/Berlin": "northern hemisphere, DST in March and October",
    "America/New_York": "northern hemisphere, other transition dates",
    "America/Santiago": "southern hemisphere, DST ends in April",
    "Australia/Adelaide": "+9:30 / +10:30: a half-hour zone with DST, southern",
    "Pacific/Chatham": "+12:45 / +13:45: a 45-minute zone with DST",
    "Australia/Lord_Howe": "DST moves the clock by 30 minutes only",
    "Asia/Kolkata": "+5:30, no DST",
    "Asia/Kathmandu": "+5:45, no DST",
}
YEAR = 2027


def project(folder: Path, zone: str | None, leads: str) -> Path:
    """A project in `zone` (None: the machine's zone) syncing to out.ics; its folder."""
    return make_project(folder, leads, timezone=zone).dir


def sync(folder: Path, now: str) -> str:
    code, _, err = cli(folder / "config.yaml", "sync", now=now)
    assert code == 0, err
    return (folder / "out.ics").read_text(encoding="utf-8")


def events(text: str) -> dict[str, datetime]:
    """UID → DTSTART as an instant (UTC), the local time resolved through the VTIMEZONE in
    the file itself, by the rules of RFC 5545 (the last onset at or before the local time
    gives the offset), not by any library's idea of the zone."""
    calendar = icalendar.Calendar.from_ical(text)
    onsets: dict[str, list[tuple[datetime, timedelta]]] = {}
    for vtimezone in calendar.walk("VTIMEZONE"):
        found = onsets.setdefault(str(vtimezone["TZID"]), [])
        for part in vtimezone.subcomponents:
            start = part["DTSTART"].dt.replace(tzinfo=None)
            offset = part["TZOFFSETTO"].td
            found.append((start, offset))
            rdates = part.get("RDATE", [])
            for group in rdates if isinstance(rdates, list) else [rdates]:
                found.extend((value.dt.replace(tzinfo=None), offset) for value in group.dts)
            if "RRULE" in part:
                rule = rrulestr(part["RRULE"].to_ical().decode(), dtstart=start)
                found.extend((when, offset) for when in rule.between(start, datetime(2100, 1, 1),
                                                                      inc=True))
    starts = {}
    for event in calendar.walk("VEVENT"):
        raw = event["DTSTART"]
        zone = raw.params["TZID"]
        local = datetime.strptime(raw.to_ical().decode(), "%Y%m%dT%H%M%S")
        offset = max((onset for onset in onsets[zone] if onset[0] <= local),
                     key=lambda onset: onset[0])[1]
        starts[str(event["UID"])] = (local - offset).replace(tzinfo=UTC)
    return starts


def transitions(zone: ZoneInfo, year: int) -> list[date]:
    """The days whose UTC offset at noon differs from the day before."""
    days = []
    day = date(year, 1, 1)
    while day.year == year:
        before = datetime.combine(day - timedelta(days=1), time(12), zone).utcoffset()
        if datetime.combine(day, time(12), zone).utcoffset() != before:
            days.append(day)
        day += timedelta(days=1)
    return days


@pytest.mark.parametrize("zone", list(ZONES))
def test_reminders_stay_at_their_local_time_across_dst(zone: str, tmp_path: Path) -> None:
    """One-offs at 09:30 the day before, of and after each transition of the year, and a
    cadence follow-up that crosses it: each at 09:30 local in the file, and at the instant
    zoneinfo gives for 09:30 local there, read through the file's VTIMEZONE."""
    tz = ZoneInfo(zone)
    changes = transitions(tz, YEAR)
    if zone.startswith("Asia/"):
        assert changes == []  # no DST: check a winter and a summer day anyway
        changes = [date(YEAR, 1, 15), date(YEAR, 7, 15)]
    else:
        assert len(changes) == 2, changes
    one_offs, cadence_leads, expected = [], [], {}
    for n, change in enumerate(changes):
        for shift in (-1, 0, 1):
            day = change + timedelta(days=shift)
            one_offs.append(f"      - {{id: t{n}s{shift + 1}, on: {day}, do: call}}\n")
            expected[f"followsync-dana-once-t{n}s{shift + 1}-file-"] = day
        # a note 3 days before the change, cadence 1w: due 4 days after it
        cadence_leads.append(f"  lead{n}:\n    name: L{n}\n    cadence: [1w]\n    log:\n"
                             f"      - {change - timedelta(days=3)} sent a note\n")
        expected[f"followsync-lead{n}-cadence-file"] = change + timedelta(days=4)
    leads = ('version: 1\ndefaults:\n  at: "09:30"\nleads:\n  dana:\n    name: Dana\n'
             "    follow_ups:\n" + "".join(one_offs)
             + "".join(cadence_leads))
    folder = project(tmp_path, zone, leads)
    text = sync(folder, f"{YEAR}-01-01T08:00")
    starts = events(text)
    unfolded = text.replace("\r\n ", "")
    for prefix, day in expected.items():
        (uid,) = [uid for uid in starts if uid.startswith(prefix)]
        assert f"DTSTART;TZID={zone}:{day:%Y%m%d}T093000" in unfolded, uid
        wanted = datetime.combine(day, time(9, 30), tz)
        assert starts[uid] == wanted.astimezone(UTC), (uid, starts[uid])
    assert f"TZID:{zone}" in text  # the file carries the zone's definition


def test_an_at_time_in_the_spring_gap_and_the_autumn_overlap(tmp_path: Path) -> None:
    """02:30 does not exist in Berlin on 2027-03-28 and happens twice on 2027-10-31: the
    item keeps its wall-clock time (the calendar app resolves it as RFC 5545 says)."""
    leads = ("version: 1\nleads:\n  dana:\n    name: Dana\n    follow_ups:\n"
             '      - {id: gap, on: 2027-03-28, do: x, at: "02:30"}\n'
             '      - {id: twice, on: 2027-10-31, do: y, at: "02:30"}\n')
    text = sync(project(tmp_path, "Europe/Berlin", leads), "2027-01-01T08:00")
    assert "DTSTART;TZID=Europe/Berlin:20270328T023000" in text
    assert "DTSTART;TZID=Europe/Berlin:20271031T023000" in text
    starts = events(text)
    assert sum(uid.startswith(("followsync-dana-once-gap-", "followsync-dana-once-twice-"))
               for uid in starts) == 2


# ------------------------------------------------------------------ calendar arithmetic
@pytest.mark.parametrize(("touch", "cadence", "due"), [
    ("2027-01-31", "1mo", "2027-02-28"),  # Jan 31 + 1 month: the last day of February
    ("2028-01-31", "1mo", "2028-02-29"),  # ... of a leap year
    ("2028-01-30", "1mo", "2028-02-29"),
    ("2027-03-31", "1mo", "2027-04-30"),
    ("2027-12-31", "2mo", "2028-02-29"),
    ("2027-08-31", "6mo", "2028-02-29"),
    ("2028-02-29", "1y", "2029-02-28"),  # Feb 29 + 1 year: Feb 28
    ("2028-02-29", "4y", "2032-02-29"),  # ... + 4 years: Feb 29 again
    ("2028-02-29", "12mo", "2029-02-28"),
    ("2028-02-28", "1d", "2028-02-29"),
    ("2027-02-28", "1d", "2027-03-01"),
    ("2027-12-31", "1d", "2028-01-01"),
    ("2027-12-25", "1w", "2028-01-01"),
])
def test_month_end_and_leap_day_arithmetic(touch: str, cadence: str, due: str,
                                           tmp_path: Path) -> None:
    leads = (f"version: 1\nleads:\n  dana:\n    name: Dana\n    cadence: [{cadence}]\n"
             f'    at: "09:00"\n    last_contact: {touch}\n')
    text = sync(project(tmp_path, "Europe/Berlin", leads), "2027-01-01T08:00")
    assert f"DTSTART;TZID=Europe/Berlin:{due.replace('-', '')}T090000" in text, text


# ------------------------------------------------------------------- zones and "now"
def test_the_config_zone_wins_over_the_machines(tmp_path: Path) -> None:
    """The process runs with TZ=Pacific/Auckland (UTC+13 in January); the config says
    America/New_York. A naive --now is New York time; items are written in New York time.
    With no `timezone:` in the config, the machine's zone is used."""
    leads = ('version: 1\ndefaults:\n  at: "09:00"\n  cadence: [1d]\nleads:\n'
             "  dana:\n    name: Dana\n    last_contact: 2027-01-10\n")

    def run(zone: str | None) -> str:
        folder = project(tmp_path / (zone or "machine").replace("/", "-"), zone, leads)
        done = subprocess.run(
            [sys.executable, "-m", "followsync", "--config", str(folder / "config.yaml"),
             "--now", "2027-01-10T20:00", "sync"], cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False, env={**os.environ, "TZ": "Pacific/Auckland"})
        assert done.returncode == 0, done.stderr
        return (folder / "out.ics").read_text()

    new_york = run("America/New_York")
    # 2027-01-10 20:00 in New York is already the 11th in Auckland; due 01-11 09:00 NY
    assert "DTSTART;TZID=America/New_York:20270111T090000" in new_york
    assert "overdue" not in new_york
    assert "DTSTAMP:20270111T010000Z" in new_york  # --now read as New York time (UTC-5)
    machine = run(None)
    assert "DTSTART;TZID=Pacific/Auckland:20270111T090000" in machine
    assert "DTSTAMP:20270110T070000Z" in machine  # --now read as Auckland time (UTC+13)


OVERDUE_LEADS = ('version: 1\ndefaults:\n  at: "09:00"\n  cadence: [1d]\nleads:\n'
                 "  dana:\n    name: Dana\n    last_contact: 2027-03-01\n")  # due 03-02


@pytest.mark.parametrize(("now", "start", "overdue"), [
    ("2027-03-02T23:59", "20270302T090000", None),  # still the 2nd: due today
    ("2027-03-03T00:01", "20270303T090000", "1 day overdue"),  # the 3rd: rolled, 1 day late
    ("2027-03-01T23:59", "20270302T090000", None),  # not yet due
    # offsets: the same instant is another local date in Berlin
    ("2027-03-02T18:30-05:00", "20270303T090000", "1 day overdue"),  # 03-03 00:30 Berlin
    ("2027-03-03T07:30+09:00", "20270302T090000", None),  # 03-02 23:30 Berlin
    ("2027-03-02T23:30Z", "20270303T090000", "1 day overdue"),  # 03-03 00:30 Berlin
])
def test_now_near_midnight_and_with_an_offset(now: str, start: str, overdue: str | None,
                                              tmp_path: Path) -> None:
    text = sync(project(tmp_path, "Europe/Berlin", OVERDUE_LEADS), now)
    assert f"DTSTART;TZID=Europe/Berlin:{start}" in text
    summary = re.search(r"^SUMMARY:(.*)$", text.replace("\r\n ", ""), re.M)
    assert summary is not None
    if overdue:
        assert overdue in summary.group(1)
    else:
        assert "overdue" not in summary.group(1)
