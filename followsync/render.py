"""PURE: a follow-up → the iCalendar item the calendar shows (SPEC §3).

Each item is rendered as a standalone VCALENDAR (what a CalDAV resource is); the .ics target
merges them into one file. `input_hash` lets a sync skip rendering anything whose inputs have
not changed, and `normalise` compares items while ignoring what servers and clocks rewrite.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from followsync import __version__
from followsync.rules import FollowUp

RENDER_VERSION = "1"  # bump when the output changes, so every item is rewritten once
TZ_FIRST_YEAR, TZ_LAST_YEAR = 2000, 2045  # the span of a VTIMEZONE written as a list of changes
PRODID = f"-//followsync//followsync {__version__}//EN"
CATEGORY = "followsync"
LEAD_MARK = "X-FOLLOWSYNC-LEAD"
RULE_MARK = "X-FOLLOWSYNC-RULE"
VOLATILE = {"DTSTAMP", "LAST-MODIFIED", "SEQUENCE", "PRODID", "CREATED"}
Kind = Literal["event", "todo"]


def uid_for(target: str, lead_id: str, rule: str) -> str:
    """Stable per target, lead and rule: a moved or re-worded follow-up keeps its UID.

    The target is part of it because some servers (Cyrus, iCloud) refuse one UID in two
    calendars of the same account. Lead ids, one-off ids and statuses may contain '-', so
    every rule but `cadence` carries a digest of the exact (target, lead, rule): without it
    lead `dana` with one-off `acme-cadence` and lead `dana-once-acme` would share a UID.
    """
    readable = f"followsync-{lead_id}-{_slug(rule)}-{target}".lower()
    if rule == "cadence":
        return readable
    digest = hashlib.sha256(f"{target}\0{lead_id}\0{rule}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "x"


def input_hash(item: FollowUp, kind: Kind, zone: str, uid: str) -> str:
    """A digest of everything that shapes the rendered item (but not the clock)."""
    text = repr((RENDER_VERSION, uid, kind, zone, item))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def source_hash(item: FollowUp, kind: Kind, zone: str, uid: str) -> str:
    """Like `input_hash`, but blind to the daily overdue roll: it changes only when the lead
    file (or a calendar touch) changes the follow-up. Calendar edits are kept until then."""
    if item.overdue_days:
        item = replace(item, due=_was(item), overdue_days=0)
    return input_hash(item, kind, zone, uid)


def summary(item: FollowUp) -> str:
    """`Follow up: Dana Whitfield (Acme Corp) — Ask about the role`, overdue ones say so."""
    person = item.person
    who = f"{person.name} ({person.org})" if person.org else person.name
    text = f"Follow up: {who} — {item.action}"
    if item.overdue_days:
        days = item.overdue_days
        text += f" (overdue {days} day{'s' if days != 1 else ''})"
    return _one_line(text)


def _was(item: FollowUp) -> date:
    """The date a rolled item was really due."""
    return item.due - timedelta(days=item.overdue_days)


def description(item: FollowUp) -> str:
    """The action, why it is due then, and everything needed to act on it."""
    person = item.person
    lines = [item.action, "", f"Why this date: {item.reason}"]
    if item.overdue_days:
        lines.append(f"Overdue: was due {_was(item).isoformat()}.")
    if item.unanswered is not None:  # a cadence item says so even when none is unanswered
        n = item.unanswered
        lines.append(f"Unanswered so far: {n} follow-up{'s' if n != 1 else ''}.")
    lines.append("")
    if person.role and person.org:
        lines.append(f"{person.role}, {person.org}")
    elif person.role or person.org:
        lines.append(person.role or person.org or "")
    for label, value in (("Email", person.email), ("Phone", person.phone),
                         ("Link", person.url), ("Status", person.status)):
        if value:
            lines.append(f"{label}: {value}")
    if person.notes:
        lines += ["", "Notes:", person.notes.strip()]
    return "\n".join(line.rstrip() for line in lines).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render(
    item: FollowUp, *, uid: str, kind: Kind, zone: ZoneInfo, stamp: datetime, sequence: int = 0
) -> str:
    """The item as a standalone VCALENDAR text (CRLF line ends, folded at 75 octets)."""
    from icalendar import Alarm, Calendar, Event, Todo

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    comp = Todo() if kind == "todo" else Event()
    comp.add("uid", uid)
    comp.add("dtstamp", stamp.astimezone(ZoneInfo("UTC")).replace(microsecond=0))
    comp.add("sequence", sequence)
    comp.add("summary", summary(item))
    comp.add("description", description(item))
    comp.add("categories", [CATEGORY])
    start: date | datetime
    if item.at is None:
        start, end = item.due, item.due + timedelta(days=1)
    else:
        start = datetime.combine(item.due, item.at, tzinfo=zone)
        end = start + item.duration.as_timedelta()
    if kind == "todo":
        comp.add("dtstart", start)
        comp.add("due", start)
        comp.add("status", "NEEDS-ACTION")
    else:
        comp.add("dtstart", start)
        comp.add("dtend", end)
        comp.add("transp", "TRANSPARENT")
    comp.add(LEAD_MARK, item.lead_id)
    comp.add(RULE_MARK, item.rule)
    for before in item.alarms:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", summary(item))
        alarm.add("trigger", -before.as_timedelta())
        comp.add_component(alarm)
    cal.add_component(comp)
    text = str(cal.to_ical().decode("utf-8"))
    if item.at is not None and zone.key != "UTC":
        # The zone's definition is built once and spliced in as text: building it per item
        # tripled the cost of rendering.
        head, sep, rest = text.partition(f"BEGIN:{comp.name}\r\n")
        text = head + vtimezone_text(zone.key) + sep + rest
    return text


@lru_cache(maxsize=64)
def vtimezone_text(zone: str) -> str:
    """One VTIMEZONE per zone for every item and file, so readers that keep the first
    definition of a TZID (vobject, servers merging a collection) read every item right.
    Yearly rules where the zone has them (see tzdef), else icalendar's list of changes."""
    from icalendar import Timezone

    from followsync.tzdef import vtimezone_rules

    rules = vtimezone_rules(zone)
    if rules is not None:
        return rules

    tz = Timezone.from_tzid(zone, first_date=date(TZ_FIRST_YEAR, 1, 1),
                            last_date=date(TZ_LAST_YEAR, 1, 1))
    return str(tz.to_ical().decode("utf-8"))


def normalise(text: str) -> str:
    """A canonical form for comparing items: volatile properties, VTIMEZONEs and trailing
    spaces (Radicale strips them) removed, parameters and properties sorted."""
    from icalendar import Calendar

    cal = Calendar.from_ical(text)
    out: list[str] = []
    for comp in cal.walk():
        if comp.name in ("VCALENDAR", "VTIMEZONE", "STANDARD", "DAYLIGHT"):
            continue
        props = []
        for name, value in comp.property_items(recursive=False):
            if name in VOLATILE or name in ("BEGIN", "END"):
                continue
            props.append(f"{name}{_params(value)}:{_strip_spaces(value)}")
        out.append(f"{comp.name}\n" + "\n".join(sorted(props)))
    return "\n\n".join(out)


def _params(value: object) -> str:
    params = getattr(value, "params", None) or {}
    return "".join(f";{key.upper()}={params[key]}" for key in sorted(params))


def _strip_spaces(value: object) -> str:
    raw = value.to_ical() if hasattr(value, "to_ical") else value
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return re.sub(r"[ \t]+(\\n|$)", r"\1", text)
