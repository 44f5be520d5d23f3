"""Durations (`15m`, `2w`, `1mo`) and times of day (`09:00`) as the lead file writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dateutil.relativedelta import relativedelta

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks", "mo": "months", "y": "years"}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*(mo|m|h|d|w|y)\s*$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
DURATION_FORM = "an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y"
# At most 100 years: anything longer is a typo, and would run past the last date Python knows.
MAX_AMOUNT = {"m": 52_596_000, "h": 876_600, "d": 36_525, "w": 5_217, "mo": 1_200, "y": 100}
# Dates keep clear of Python's year 1 and 9999 by more than two such durations (a due date
# plus an event's length; a start minus an alarm), so no date arithmetic can overflow.
MIN_YEAR, MAX_YEAR = 1000, 8999


@dataclass(frozen=True, order=True)
class Duration:
    """A whole number of one unit; months and years are calendar months and years."""

    amount: int
    unit: str

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def delta(self) -> timedelta | relativedelta:
        """The offset to add to a date or datetime."""
        if self.unit == "mo":
            return relativedelta(months=self.amount)
        if self.unit == "y":
            return relativedelta(years=self.amount)
        return timedelta(**{UNITS[self.unit]: self.amount})

    def after(self, day: date) -> date:
        """`day` plus this duration; minutes and hours round up to whole days (never 0 for >0)."""
        if self.unit in ("m", "h"):
            minutes = self.amount * (60 if self.unit == "h" else 1)
            return day + timedelta(days=-(-minutes // 1440))
        result = day + self.delta()
        return result.date() if isinstance(result, datetime) else result

    def as_timedelta(self) -> timedelta:
        """Exact length for event lengths and alarm offsets (a month counts as 30 days)."""
        if self.unit == "mo":
            return timedelta(days=30 * self.amount)
        if self.unit == "y":
            return timedelta(days=365 * self.amount)
        delta = self.delta()
        assert isinstance(delta, timedelta)
        return delta


def parse_duration(text: str) -> Duration:
    """Parse `2w`; raise ValueError naming the expected form."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}; expected {DURATION_FORM}")
    amount, unit = int(match.group(1)), match.group(2)
    if amount > MAX_AMOUNT[unit]:
        raise ValueError(f"too long a duration: {text!r} (at most 100 years); "
                         f"expected {DURATION_FORM}")
    return Duration(amount, unit)


def parse_time(text: str) -> time:
    """Parse `HH:MM` (24-hour clock)."""
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"not a time of day: {text!r}; expected HH:MM, e.g. 09:00 or 17:30")
    return time(int(match.group(1)), int(match.group(2)))


def parse_date(text: str) -> date:
    """Parse an ISO `YYYY-MM-DD` date."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError(f"not a date: {text!r}; expected YYYY-MM-DD, e.g. 2026-01-06")
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"not a valid date: {text!r} ({exc})") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"a date out of range: {text!r}; followsync takes years "
                         f"{MIN_YEAR} to {MAX_YEAR}")
    return day
