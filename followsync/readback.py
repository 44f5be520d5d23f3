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


def placed_at(text: str, zone: ZoneInfo) -> str:
    """Where an item stands in the calendar, as the user sees it there: its local date
    ("2026-12-08") or date and time ("2026-12-08T10:30") — an event's DTSTART, a to-do's DUE
    (else DTSTART); "" if it has none or cannot be read."""
    from icalendar import Calendar

    try:
        cal = Calendar.from_ical(text)
    except Exception:  # as above: unreadable text tells nothing
        return ""
    for item in cal.walk():
        if item.name not in ("VEVENT", "VTODO"):
            continue
        prop = item.get("DUE") if item.name == "VTODO" and "DUE" in item else item.get("DTSTART")
        value = getattr(prop, "dt", None)
        if isinstance(value, datetime):
            local = (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(zone)
            return local.strftime("%Y-%m-%dT%H:%M")
        if isinstance(value, date):
            return value.isoformat()
        return ""
    return ""
