"""VTIMEZONE definitions written as yearly rules (RRULE), like calendar apps write them.

icalendar's own definitions list every transition as RDATEs; vobject (and so Radicale) reads
a long list of them wrongly, putting summer items an hour off. A zone's current rules as two
RRULEs are short, read right by every parser we know, and the same for every item. Zones whose
transitions do not follow an "n-th weekday of the month" rule fall back to icalendar's form.
"""

from __future__ import annotations

import calendar as cal
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

RULE_YEAR = 2026  # the year whose rules are written; checked against the years around it
CHECK_YEARS = range(2021, 2036)
WEEK = 7  # days between samples in _transitions
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    return moment.replace(tzinfo=zone).utcoffset() or timedelta(0)


def _transitions(zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta, timedelta, str]]:
    """(local wall time just before the change, offset from, offset to, name after) in `year`.

    Sampled a week apart, then narrowed: no zone changes its offset twice within a week
    (`test_tzdef` checks every zone Python knows against day-by-day sampling)."""
    utc = ZoneInfo("UTC")
    found = []
    moment = datetime(year, 1, 1, tzinfo=utc)
    before = moment.astimezone(zone).utcoffset() or timedelta(0)
    stop = datetime(year + 1, 1, 1, tzinfo=utc)
    while moment < stop:
        ahead = min(moment + timedelta(days=WEEK), stop)
        after = ahead.astimezone(zone).utcoffset() or timedelta(0)
        if after != before:
            low = moment  # the change lies in (low, low + 1 week]: narrow it to a minute
            for step in (timedelta(days=1), timedelta(hours=1), timedelta(minutes=15),
                         timedelta(minutes=1)):
                while ((low + step).astimezone(zone).utcoffset() or timedelta(0)) == before:
                    low += step
            change = low + timedelta(minutes=1)
            wall = (change + before).replace(tzinfo=None)
            found.append((wall, before, after, change.astimezone(zone).tzname() or ""))
            before = after
        moment = ahead
    return found


def _rule(day: date) -> tuple[int, int, int]:
    """(month, weekday, n) with n = 1..4 for the n-th weekday, -1 for the last one."""
    last = day.day + 7 > cal.monthrange(day.year, day.month)[1]
    return day.month, day.weekday(), -1 if last else (day.day - 1) // 7 + 1


def _nth(year: int, month: int, weekday: int, n: int) -> date:
    days = [d for d in range(1, cal.monthrange(year, month)[1] + 1)
            if date(year, month, d).weekday() == weekday]
    return date(year, month, days[n if n == -1 else n - 1])


def _fmt(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


@lru_cache(maxsize=64)
def vtimezone_rules(tzid: str) -> str | None:
    """The zone as a VTIMEZONE with yearly rules, or None when its rules are not regular."""
    zone = ZoneInfo(tzid)
    changes = _transitions(zone, RULE_YEAR)
    around = {year: _transitions(zone, year) for year in CHECK_YEARS}
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if not changes:
        offset = _offset(zone, datetime(RULE_YEAR, 1, 1))
        name = datetime(RULE_YEAR, 1, 1, tzinfo=zone).tzname() or tzid
        if any(around.values()):
            return None
        lines += ["BEGIN:STANDARD", "DTSTART:19700101T000000", f"TZNAME:{name}",
                  f"TZOFFSETFROM:{_fmt(offset)}", f"TZOFFSETTO:{_fmt(offset)}", "END:STANDARD"]
    else:
        if len(changes) != 2:
            return None
        for wall, old, new, name in changes:
            month, weekday, n = _rule(wall.date())
            for year in CHECK_YEARS:
                if [c[0] for c in around[year]
                        if c[0].month == month and c[2] == new] != [
                        datetime.combine(_nth(year, month, weekday, n), wall.time())]:
                    return None
            first = datetime.combine(_nth(1970, month, weekday, n), wall.time())
            kind = "DAYLIGHT" if new > old else "STANDARD"
            lines += [f"BEGIN:{kind}", f"DTSTART:{first:%Y%m%dT%H%M%S}",
                      f"RRULE:FREQ=YEARLY;BYMONTH={month};BYDAY={n}{_DAYS[weekday]}",
                      f"TZNAME:{name}", f"TZOFFSETFROM:{_fmt(old)}", f"TZOFFSETTO:{_fmt(new)}",
                      f"END:{kind}"]
    lines.append("END:VTIMEZONE")
    return "\r\n".join(lines) + "\r\n"
