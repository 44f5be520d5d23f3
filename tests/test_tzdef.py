"""The VTIMEZONEs we write are read right by a second parser (vobject, as Radicale uses)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
import vobject

from followsync.render import vtimezone_text
from followsync.tzdef import CHECK_YEARS, _transitions, vtimezone_rules

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Adelaide",
         "Asia/Kolkata", "Pacific/Auckland", "America/Sao_Paulo", "Europe/London",
         "Asia/Kathmandu", "America/St_Johns"]
# Zones whose changes follow no "n-th weekday" rule are written as icalendar's list of changes
# (RDATE), which vobject reads wrongly; icalendar reads them right.
IRREGULAR = ["Asia/Jerusalem", "America/Santiago", "Africa/Casablanca"]
MOMENTS = [datetime(year, month, day, 9, 0) for year in (2024, 2026, 2027, 2030)
           for month, day in ((1, 15), (3, 30), (4, 6), (7, 15), (10, 3), (10, 30), (12, 31))]


def _read(zone: str, moment: datetime) -> datetime:
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + vtimezone_text(zone) +
            f"BEGIN:VEVENT\r\nUID:x\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART;TZID={zone}:{moment:%Y%m%dT%H%M%S}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    value: datetime = vobject.readOne(text).vevent.dtstart.value
    return value


@pytest.mark.parametrize("zone", ZONES)
def test_vobject_reads_our_definition_as_zoneinfo_does(zone: str) -> None:
    for moment in MOMENTS:
        read = _read(zone, moment)
        assert read.utcoffset() == moment.replace(tzinfo=ZoneInfo(zone)).utcoffset(), (zone, moment)


@pytest.mark.parametrize("zone", IRREGULAR)
def test_irregular_zones_read_right_with_icalendar(zone: str) -> None:
    import icalendar

    for moment in MOMENTS:
        text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + vtimezone_text(zone) +
                f"BEGIN:VEVENT\r\nUID:x\r\nDTSTAMP:20260101T000000Z\r\n"
                f"DTSTART;TZID={zone}:{moment:%Y%m%dT%H%M%S}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
        event = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
        assert event["DTSTART"].dt.utcoffset() == moment.replace(tzinfo=ZoneInfo(zone)).utcoffset()


def test_regular_zones_are_two_yearly_rules_and_fixed_zones_one() -> None:
    berlin = vtimezone_rules("Europe/Berlin")
    assert berlin is not None
    assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU" in berlin
    assert "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU" in berlin
    sydney = vtimezone_rules("Australia/Sydney")
    assert sydney is not None and "BYMONTH=10;BYDAY=1SU" in sydney and "BYMONTH=4;BYDAY=1SU" in sydney
    kolkata = vtimezone_rules("Asia/Kolkata")
    assert kolkata is not None and "RRULE" not in kolkata and "TZOFFSETTO:+0530" in kolkata


def test_irregular_zones_fall_back_to_a_list_of_changes() -> None:
    assert vtimezone_rules("Asia/Tehran") is None  # DST abolished in 2022
    assert "RDATE" in vtimezone_text("Asia/Tehran") or "STANDARD" in vtimezone_text("Asia/Tehran")



def _changes_day_by_day(zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta]]:
    """The reference: every UTC midnight of `year` sampled, each change narrowed to the
    minute; what `_transitions` finds sampling a week apart must be the same."""
    start = datetime(year, 1, 1, tzinfo=ZoneInfo("UTC"))
    length = (datetime(year + 1, 1, 1) - datetime(year, 1, 1)).days
    days = [start + timedelta(days=d) for d in range(length + 1)]  # to next year's Jan 1
    offsets = [day.astimezone(zone).utcoffset() or timedelta(0) for day in days]
    found = []
    for low, before, after in zip(days, offsets, offsets[1:], strict=False):
        if after != before:
            for step in (timedelta(hours=1), timedelta(minutes=1)):
                while (low + step).astimezone(zone).utcoffset() == before:
                    low += step
            found.append(((low + timedelta(minutes=1) + before).replace(tzinfo=None), after))
    return found


def test_weekly_sampling_finds_every_change_of_every_zone() -> None:
    """No zone Python knows changes its offset twice within a week in the years checked."""
    zones = sorted(available_timezones())
    assert len(zones) > 300
    for name in zones:
        zone = ZoneInfo(name)
        for year in CHECK_YEARS:
            assert [(w, a) for w, _, a, _ in _transitions(zone, year)] == \
                _changes_day_by_day(zone, year), (name, year)
