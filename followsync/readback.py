"""PURE: what an item of ours says after someone edited it in a calendar app."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def completed_on(text: str, zone: ZoneInfo, today: date) -> date | None:
    """The local date a to-do was ticked off (its COMPLETED, else today), or None if the item
    is not a completed VTODO. Unparsable text is not a completion."""
    from icalendar import Calendar

    try:
        cal = Calendar.from_ical(text)
    except Exception:  # ValueError mostly; icalendar raises others on some broken input
        return None
    for todo in cal.walk("VTODO"):
        status = str(todo.get("STATUS", "")).upper()
        stamp = todo.get("COMPLETED")
        if status != "COMPLETED" and stamp is None:
            continue
        value = getattr(stamp, "dt", None)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(zone).date()
        if isinstance(value, date):
            return value
        return today
    return None
