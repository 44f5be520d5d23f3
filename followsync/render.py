"""PURE: a follow-up → the iCalendar item the calendar shows (README, "What appears
in the calendar").

Each item is rendered as a standalone VCALENDAR (what a CalDAV resource is); the .ics target
merges them into one file. `input_hash` lets a sync skip rendering anything whose inputs have
not changed, and `normalise` compares items while ignoring what servers and clocks rewrite.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from followsync import __version__
from followsync.marks import LEAD_MARK, RULE_MARK
from followsync.model import Kind

if TYPE_CHECKING:  # the rules (and pydantic) load only when something is rendered
    from followsync.durations import Duration
    from followsync.rules import FollowUp

RENDER_VERSION = "2"  # bump when the output changes, so every item is rewritten once
TZ_FIRST_YEAR, TZ_LAST_YEAR = 2000, 2045  # the span of a VTIMEZONE written as a list of changes
PRODID = f"-//followsync//followsync {__version__}//EN"
CATEGORY = "followsync"
VOLATILE = {"DTSTAMP", "LAST-MODIFIED", "SEQUENCE", "PRODID", "CREATED"}


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
    if item.person.reply:  # not in Person's repr: items without mail keep their hashes
        text += f"|{item.person.reply}"
    if not item.spread:  # (not in the repr either: the default keeps the hashes as they were)
        text += "|not spread"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def source_hash(item: FollowUp, kind: Kind, zone: str, uid: str) -> str:
    """Like `input_hash`, but blind to the daily overdue roll: it changes only when the lead
    file (or a calendar touch) changes the follow-up. Calendar edits are kept until then."""
    if item.overdue_days:
        item = replace(item, due=_was(item), overdue_days=0)
    return input_hash(item, kind, zone, uid)


def summary(item: FollowUp) -> str:
    """`Dana Whitfield: ask about the role`, short enough for a month view (the name first,
    once); overdue ones say so after the action: `Dana Whitfield: follow up (3 days overdue)`."""
    text = item.title
    if item.overdue_days:
        days = item.overdue_days
        text += f" ({days} day{'s' if days != 1 else ''} overdue)"
    return _one_line(text)


def _was(item: FollowUp) -> date:
    """The date a rolled item was really due."""
    return item.due - timedelta(days=item.overdue_days)


def description(item: FollowUp) -> str:
    """The action, why it is due then, and everything needed to act on it (the title is
    short; this is where the full text, the person's org and role and the reason go)."""
    person = item.person
    action = item.action.strip()
    lines = [action[:1].upper() + action[1:], "", f"Why this date: {item.reason}"]
    if item.overdue_days:
        lines.append(f"Overdue: was due {_was(item).isoformat()}.")
    if item.unanswered is not None:  # a cadence item says so even when none is unanswered
        n = item.unanswered
        lines.append(f"Unanswered so far: {n} follow-up{'s' if n != 1 else ''}.")
    lines += ["", person.name]
    if person.role and person.org:
        lines.append(f"{person.role}, {person.org}")
    elif person.role or person.org:
        lines.append(person.role or person.org or "")
    if person.email:
        lines.append(f"Email: {person.email}")
    if person.reply:  # readable, then the link alone on its line (apps make it clickable)
        lines += [f"Reply: {person.reply.text()}", person.reply.link()]
    for label, value in (("Phone", person.phone), ("Link", person.url), ("Status", person.status)):
        if value:
            lines.append(f"{label}: {value}")
    if person.notes:
        lines += ["", "Notes:", person.notes.strip()]
    return "\n".join(line.rstrip() for line in lines).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render(
    item: FollowUp, *, uid: str, kind: Kind, zone: ZoneInfo, stamp: datetime, sequence: int = 0,
    now: datetime | None = None,
) -> str:
    """The item as a standalone VCALENDAR text (CRLF line ends, folded at 75 octets).

    `now` is the moment the item is written: an alarm whose moment is before it is left out
    (a calendar app rings every past alarm at once). None writes every alarm. The content
    hashes never see `now`, so an alarm passing never makes an item be written again.

    Written line by line rather than through icalendar's object model, which cost ~1-2 ms an
    item (most of a first upload's client CPU); tests read every shape back with icalendar
    and vobject.
    """
    name = "VTODO" if kind == "todo" else "VEVENT"
    title = _text(summary(item))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{_text(PRODID)}"]
    if item.at is not None and zone.key != "UTC":
        lines.append(vtimezone_text(zone.key).rstrip("\r\n"))
    lines += [f"BEGIN:{name}", f"UID:{_text(uid)}",
              f"DTSTAMP:{stamp.astimezone(UTC).replace(microsecond=0):%Y%m%dT%H%M%SZ}",
              f"SEQUENCE:{sequence}", f"SUMMARY:{title}", f"DESCRIPTION:{_text(description(item))}",
              f"CATEGORIES:{CATEGORY}"]
    moment = datetime.combine(item.due, item.at or time(0), tzinfo=zone)
    if item.at is None:
        start = f";VALUE=DATE:{item.due:%Y%m%d}"
        end = f";VALUE=DATE:{item.due + timedelta(days=1):%Y%m%d}"
    else:
        start, end = _when(moment, zone), _when(moment + item.duration.as_timedelta(), zone)
    if kind == "todo":
        lines += [f"DTSTART{start}", f"DUE{start}", "STATUS:NEEDS-ACTION"]
    else:
        lines += [f"DTSTART{start}", f"DTEND{end}", "TRANSP:TRANSPARENT"]
    lines += [f"{LEAD_MARK}:{_text(item.lead_id)}", f"{RULE_MARK}:{_text(item.rule)}"]
    for before in alarms_ahead(item.alarms, moment, now):
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", f"DESCRIPTION:{title}",
                  f"TRIGGER:{_duration(-before.as_timedelta())}", "END:VALARM"]
    lines += [f"END:{name}", "END:VCALENDAR"]
    return "".join(_fold(line) + "\r\n" for line in lines)


def alarms_ahead(
    alarms: tuple[Duration, ...], start: datetime, now: datetime | None
) -> list[Duration]:
    """The alarms whose moment (`start` less the alarm) is not before `now` (all if None).
    Compared as instants, so a DST change between them counts right."""
    if now is None:
        return list(alarms)
    return [before for before in alarms
            if (start - before.as_timedelta()).astimezone(UTC) >= now.astimezone(UTC)]


UTC = ZoneInfo("UTC")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _text(value: str) -> str:
    """An iCalendar TEXT value (RFC 5545 3.3.11): escaped, without control characters."""
    value = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\n", "\\n"))


def _when(moment: datetime, zone: ZoneInfo) -> str:
    """`;TZID=zone:local` (or UTC with Z) for a DATE-TIME property."""
    if zone.key == "UTC":
        return f":{moment:%Y%m%dT%H%M%S}Z"
    tzid = f'"{zone.key}"' if any(c in zone.key for c in ':;,') else zone.key
    return f";TZID={tzid}:{moment:%Y%m%dT%H%M%S}"


def _duration(delta: timedelta) -> str:
    """An iCalendar DURATION: -P1D, -PT15M, PT0S."""
    sign = "-" if delta < timedelta(0) else ""
    seconds = int(abs(delta).total_seconds())
    if seconds == 0:
        return "PT0S"
    days, rest = divmod(seconds, 86400)
    if rest == 0:
        return f"{sign}P{days // 7}W" if days % 7 == 0 else f"{sign}P{days}D"
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (
        f"{secs}S" if secs else "")
    return f"{sign}P{f'{days}D' if days else ''}T{clock}"


def _fold(line: str) -> str:
    """Fold a content line at 75 octets without splitting a UTF-8 character (RFC 5545 3.1)."""
    if "\r\n" in line:  # an already folded block (a VTIMEZONE)
        return line
    data = line.encode()
    if len(data) <= 75:
        return line
    parts: list[bytes] = []
    start, limit = 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # never cut inside a character
            end -= 1
        parts.append(data[start:end])
        start, limit = end, 74  # continuation lines start with a space
    parts.append(data[start:])
    return b"\r\n ".join(parts).decode()


@lru_cache(maxsize=64)
def vtimezone_text(zone: str) -> str:
    """One VTIMEZONE per zone for every item and file, so readers that keep the first
    definition of a TZID (vobject, servers merging a collection) read every item right.
    Yearly rules where the zone has them (see tzdef), else icalendar's list of changes."""
    from followsync.tzdef import vtimezone_rules

    rules = vtimezone_rules(zone)
    if rules is not None:
        return rules
    from icalendar import Timezone  # (only here: importing it costs a one-change sync 40 ms)

    tz = Timezone.from_tzid(zone, first_date=date(TZ_FIRST_YEAR, 1, 1),
                            last_date=date(TZ_LAST_YEAR, 1, 1))
    return str(tz.to_ical().decode("utf-8"))


def normalise(text: str, now: datetime | None = None) -> str:
    """A canonical form for comparing items: volatile properties, VTIMEZONEs and trailing
    spaces (Radicale strips them) removed, parameters and properties sorted. With `now`,
    alarms whose moment is before it are left out too: an item written before one of its
    alarms passed is the same as the item written after (see `render`)."""
    from icalendar import Calendar

    cal = Calendar.from_ical(text)
    out: list[str] = []
    passed = _passed_alarms(cal, now) if now is not None else set()
    for comp in cal.walk():
        if comp.name in ("VCALENDAR", "VTIMEZONE", "STANDARD", "DAYLIGHT") or id(comp) in passed:
            continue
        props = []
        for name, value in comp.property_items(recursive=False):
            if name in VOLATILE or name in ("BEGIN", "END"):
                continue
            props.append(f"{name}{_params(value)}:{_strip_spaces(value)}")
        out.append(f"{comp.name}\n" + "\n".join(sorted(props)))
    return "\n\n".join(out)


def _passed_alarms(cal: Any, now: datetime) -> set[int]:
    """The ids of the VALARMs (relative to the start, as followsync writes them) whose
    moment is before `now`; a date start counts from midnight in `now`'s zone."""
    passed: set[int] = set()
    for item in cal.walk():
        if item.name not in ("VEVENT", "VTODO") or "DTSTART" not in item:
            continue
        start = item.decoded("DTSTART")
        if not isinstance(start, datetime):
            start = datetime.combine(start, time(0), tzinfo=now.tzinfo)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=now.tzinfo)
        for alarm in item.subcomponents:
            if alarm.name != "VALARM" or "TRIGGER" not in alarm:
                continue
            try:
                trigger = alarm.decoded("TRIGGER")
            except (ValueError, TypeError):
                continue
            moment = start + trigger if isinstance(trigger, timedelta) else trigger
            if isinstance(moment, datetime) and moment.tzinfo is not None and moment < now:
                passed.add(id(alarm))
    return passed


def _params(value: object) -> str:
    params = getattr(value, "params", None) or {}
    return "".join(f";{key.upper()}={params[key]}" for key in sorted(params))


def _strip_spaces(value: object) -> str:
    raw = value.to_ical() if hasattr(value, "to_ical") else value
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return re.sub(r"[ \t]+(\\n|$)", r"\1", text)
