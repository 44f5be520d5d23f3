"""Events ↔ iCalendar for the API targets (Google Calendar, Microsoft Graph): what both do
the same way — read followsync's VEVENT into the parts an API event holds, and write an
API event back as iCalendar text that compares equal (`render.normalise`) to what was sent.

Each target maps the parts onto its own JSON (google.py, microsoft.py); what its events cannot
hold (the X-FOLLOWSYNC marks, CATEGORIES, alarms beyond what it keeps) travels in hidden
properties as `rest` lines and raw alarm text, and comes back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from followsync.errors import ComponentRefused, TargetError

# properties an API event holds itself; every other one of the VEVENT is kept as a line
MAPPED = {"UID", "DTSTAMP", "SEQUENCE", "SUMMARY", "DESCRIPTION", "DTSTART", "DTEND",
          "DURATION", "TRANSP", "BEGIN", "END"}


@dataclass(frozen=True)
class Parts:
    """A followsync VEVENT taken apart (icalendar objects where a value has parameters)."""

    comp: Any  # the icalendar VEVENT
    lead: str | None
    rule: str | None
    sequence: int | None
    summary: str
    description: str | None
    start: Any  # the DTSTART property (its .dt and .params)
    end: date | datetime  # DTEND, else DTSTART + DURATION (a day for a date, else none)
    end_prop: Any  # the DTEND property, or None when the end was computed
    transp: str | None  # "TRANSPARENT" | "OPAQUE" | None (not given)
    rest: list[str]  # the other properties, as content lines
    alarms: list[Any]  # the VALARM subcomponents, in order


def parse(uid: str, text: str, service: str) -> Parts:
    """The parts of an item's single VEVENT; ComponentRefused for a to-do (API calendars
    keep events only), TargetError for text that does not parse or has no start."""
    from icalendar import Calendar

    try:
        cal = Calendar.from_ical(text)
    except Exception as exc:
        raise TargetError(f"cannot convert {uid} for {service}: {exc}") from None
    comps = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
    if not comps or comps[0].name != "VEVENT":
        raise ComponentRefused(f"{service} takes events only, not to-dos (VTODO)")
    comp: Any = comps[0]
    start = comp.get("DTSTART")
    if start is None:
        raise TargetError(f"{uid} has no DTSTART; {service} needs a start")
    end_prop = comp.get("DTEND")
    if end_prop is not None:
        end = end_prop.dt
    else:
        span = comp["DURATION"].dt if "DURATION" in comp else (
            timedelta(days=1) if not isinstance(start.dt, datetime) else timedelta(0))
        end = start.dt + span
    lead, rule = comp.get("X-FOLLOWSYNC-LEAD"), comp.get("X-FOLLOWSYNC-RULE")
    rest = [comp.content_line(name, value) for name, value in
            comp.property_items(recursive=False) if name not in MAPPED]
    return Parts(comp, str(lead) if lead is not None else None,
                 str(rule) if rule is not None else None,
                 int(comp["SEQUENCE"]) if "SEQUENCE" in comp else None,
                 str(comp.get("SUMMARY", "")),
                 str(comp["DESCRIPTION"]) if "DESCRIPTION" in comp else None,
                 start, end, end_prop,
                 str(comp["TRANSP"]).upper() if "TRANSP" in comp else None,
                 rest, [a for a in comp.subcomponents if a.name == "VALARM"])


def minutes_before(alarm: Any, start: date | datetime, most: int) -> int | None:
    """Minutes before the start for a reminder; None when a reminder of at most `most`
    minutes cannot express the alarm (after the start, relative to the end, not whole)."""
    trigger = alarm.get("TRIGGER")
    if trigger is None:
        return None
    value = trigger.dt
    if isinstance(value, timedelta):
        if str(trigger.params.get("RELATED", "START")).upper() != "START":
            return None
        before = -value
    elif isinstance(value, datetime) and isinstance(start, datetime):
        before = start - value
    else:
        return None
    seconds = before.total_seconds()
    if seconds < 0 or seconds % 60 or seconds / 60 > most:
        return None
    return int(seconds // 60)


# ------------------------------------------------------------------ writing text back
def head(service: str, uid: str, stamp: str, sequence: object) -> list[str]:
    """The first lines of an item read back from an API event (unfolded)."""
    return ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:-//followsync//{service}//EN",
            "BEGIN:VEVENT", "UID:" + text_value(uid), f"DTSTAMP:{stamp}",
            f"SEQUENCE:{sequence}"]


def text_value(value: str) -> str:
    """An iCalendar TEXT value, escaped."""
    from icalendar import vText

    return str(vText(value).to_ical().decode())


def alarm_lines(action: str, summary: str, minutes: int) -> list[str]:
    """A VALARM `minutes` before the start, as followsync writes one."""
    trigger = "PT0S" if minutes == 0 else duration(-minutes)
    return ["BEGIN:VALARM", f"ACTION:{action}", "DESCRIPTION:" + text_value(summary),
            f"TRIGGER:{trigger}", "END:VALARM"]


def finish(lines: list[str], raw_alarms: str = "") -> str:
    """The item's text: `lines` folded, then alarms kept as raw text, then the ends."""
    out = "\r\n".join(fold(line) for line in lines) + "\r\n"
    return out + raw_alarms.replace("\r\n", "\n").replace("\n", "\r\n") + \
        "END:VEVENT\r\nEND:VCALENDAR\r\n"


def fold(line: str) -> str:
    """Fold at 75 octets without splitting a UTF-8 character."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode())
        if size + width > (75 if not out else 74):
            out.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    out.append("".join(current))
    return "\r\n ".join(out)


def duration(minutes: int) -> str:
    from icalendar import vDuration

    made: Any = vDuration(timedelta(minutes=minutes))
    return str(made.to_ical().decode())


def stamp(updated: Any) -> str:
    """A DTSTAMP from an API's time of change (ISO 8601), else the epoch."""
    try:
        text = str(updated).replace("Z", "+00:00")
        if "." in text:  # Graph: seven digits of fraction; fromisoformat takes six at most
            whole, _, rest = text.partition(".")
            digits = len(rest) - len(rest.lstrip("0123456789"))  # the fraction's only
            text = whole + rest[digits:]
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    except ValueError:
        return "19700101T000000Z"
