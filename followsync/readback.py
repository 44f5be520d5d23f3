"""PURE: what an item of ours says after someone edited it in a calendar app."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from followsync.marks import unfold


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


# --- a calendar app's bookkeeping (README, "What appears in the calendar": edits) -------------
#
# Only a change of an item's time (DTSTART/DUE/DTEND, or DURATION), its completion or its
# removal is the user's edit. Everything else a calendar app writes into an item is its own
# bookkeeping: Thunderbird's X-MOZ-LASTACK / X-MOZ-SNOOZE-TIME* / X-MOZ-GENERATION when a
# reminder is dismissed or snoozed; RFC 9074's ACKNOWLEDGED, alarm UIDs and snooze alarms
# (RELATED-TO;RELTYPE=SNOOZE), as Apple Calendar writes them with X-WR-ALARMUID and
# X-APPLE-*; Evolution's X-EVOLUTION-ALARM-UID; a new DTSTAMP, LAST-MODIFIED or SEQUENCE;
# lines folded or properties ordered another way. `shape` is what a user may edit; a
# change elsewhere is "nothing of ours changed", and `bookkeeping` / `carry_over` keep the
# app's state when followsync rewrites the item. Text only, no icalendar: `shape` runs on
# every item followsync writes.

_APP_PREFIXES = ("X-MOZ-", "X-APPLE-", "X-EVOLUTION-")
_ALARM_STATE = frozenset({"ACKNOWLEDGED", "UID", "X-WR-ALARMUID"})
_ITEMS = ("VEVENT", "VTODO")
_CONTENT_LINE = re.compile(r"[A-Za-z0-9-]+[;:]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
KEPT_LIMIT = 16_384  # an app's bookkeeping larger than this is not kept (a hostile server)
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?")
_DURATION = re.compile(r"([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_UTC = UTC
_HEAD = re.compile(r'(?:[^:"]|"[^"]*")*')
# (for `shape`, which runs on every item written: str.find, and regular expressions that
# find lines; never one that looks for an END from each BEGIN: a server's text is hostile, and
# that costs the square of its length)
_ITEM_LINE = re.compile(r"^(?:BEGIN:(VEVENT|VTODO)[ \t]*\r?$|END:(VEVENT|VTODO))", re.M | re.I)
_BEGIN_END_LINE = re.compile(r"^(BEGIN|END):([^\n]*)", re.M | re.I)
_WHEN_LINE = re.compile(r"^(?:DTSTART|DTEND|DUE|DURATION|STATUS|COMPLETED)[;:].*$",
                        re.M | re.I)


def _lines(text: str) -> list[str]:
    """The logical (unfolded) content lines of an iCalendar text."""
    return [line for line in unfold(text.replace("\r\n", "\n")).split("\n") if line.strip()]


def _split(line: str) -> tuple[str, dict[str, str], str]:
    """A content line → (NAME, {PARAM: value}, value); quoted parameter values may hold ':'
    and ';'. Never raises: a line without ':' is a name with an empty value."""
    head, _, value = line.partition(":")
    if '"' in head:  # a quoted parameter value may hold ':'
        found = _HEAD.match(line)
        head = found.group(0) if found else head
        value = line[len(head) + 1:]
    parts = re.findall(r'(?:[^;"]|"[^"]*")+', head)
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, _, raw = part.partition("=")
        params[key.strip().upper()] = raw.strip().strip('"')
    return (parts[0].strip().upper() if parts else ""), params, value


_NAME = re.compile(r"[^;:]*")


def _name(line: str) -> str:
    found = _NAME.match(line)
    return found.group(0).strip().upper() if found else ""


@dataclass
class _Item:
    """The first VEVENT or VTODO of a text: its own lines, and its alarms' lines."""

    name: str = ""
    props: list[str] = field(default_factory=list)
    alarms: list[list[str]] = field(default_factory=list)


def _item(lines: list[str]) -> _Item:
    found = _Item()
    depth, alarm = 0, None  # depth inside the item: 1 its own lines, 2+ a subcomponent
    for line in lines:
        upper = line.upper()
        if not found.name:
            if upper.startswith("BEGIN:") and upper[6:].strip() in _ITEMS:
                found.name, depth = upper[6:].strip(), 1
            continue
        if upper.startswith("BEGIN:"):
            depth += 1
            if depth == 2 and upper[6:].strip() == "VALARM":
                alarm = [line]
                found.alarms.append(alarm)
            elif alarm is not None:
                alarm.append(line)
            continue
        if upper.startswith("END:"):
            depth -= 1
            if depth == 0:
                break
            if alarm is not None:
                alarm.append(line)
                if depth == 1:
                    alarm = None
            continue
        if depth == 1:
            found.props.append(line)
        elif alarm is not None:
            alarm.append(line)
    return found


@lru_cache(maxsize=64)
def _zone_named(tzid: str) -> ZoneInfo | None:
    """The zone a TZID names: an IANA name, or one behind a prefix
    (`/freeassociation.sourceforge.net/Tzfile/Europe/Berlin`, `/mozilla.org/…/Europe/Berlin`)."""
    parts = tzid.strip().strip("/").split("/")
    for start in range(len(parts)):
        try:
            return ZoneInfo("/".join(parts[start:]))
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
            continue
    return None


def _moment(params: dict[str, str], value: str, zone: ZoneInfo) -> date | datetime | str:
    """A DATE or DATE-TIME value as a date or an aware datetime; the raw text when it
    cannot be read (then only the same text compares equal)."""
    match = _STAMP.fullmatch(value.strip())
    if match is None:
        return f"?{value.strip()}"
    y, mo, d, h, mi, s, z = match.groups()
    try:
        if h is None or params.get("VALUE", "").upper() == "DATE":
            return date(int(y), int(mo), int(d))
        tzid = params.get("TZID")
        where = _UTC if z else (_zone_named(tzid) if tzid else zone)
        if where is None:
            return f"{value.strip()}@{tzid}"
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=where)
    except ValueError:
        return f"?{value.strip()}"


def _length(value: str) -> timedelta | None:
    match = _DURATION.fullmatch(value.strip().upper())
    if match is None or value.strip().upper() in ("P", "-P", "+P", "PT"):
        return None
    sign, weeks, days, hours, minutes, seconds = match.groups()
    try:
        length = timedelta(weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
                           minutes=int(minutes or 0), seconds=int(seconds or 0))
    except OverflowError:  # P99999999999D from a hostile server
        return None
    return -length if sign == "-" else length


def _text_of(moment: date | datetime | str) -> str:
    if isinstance(moment, (datetime, date)):  # (isoformat: strftime is slow)
        return (moment.astimezone(_UTC) if isinstance(moment, datetime) else moment).isoformat()
    return moment


def _item_text(text: str) -> tuple[str, str] | None:
    """The first VEVENT or VTODO's name and the text between its BEGIN and END lines (found
    with str.find: this runs on every item followsync writes)."""
    starts = [(at, name) for name in _ITEMS
              if (at := text.find(f"BEGIN:{name}")) >= 0 and text[at - 1:at] in ("", "\n")]
    if not starts:  # lower case, or something odd: the slow way
        return _item_any_case(text)
    at, name = min(starts)
    stop = text.find(f"\nEND:{name}", at)
    return (name, text[at + len(name) + 6:stop if stop >= 0 else len(text)])


def _item_any_case(text: str) -> tuple[str, str] | None:
    """`_item_text` in any case: the first VEVENT or VTODO begun (its BEGIN line alone on
    its line) that an END line of its kind follows, and the text between them; one pass."""
    begun: dict[str, int] = {}  # kind → where the text after its first BEGIN line starts
    ended: dict[str, int] = {}  # kind → where the first END after that begins
    for found in _ITEM_LINE.finditer(text):
        kind = (found.group(1) or found.group(2)).upper()
        if found.group(1):
            begun.setdefault(kind, found.end())
        elif kind in begun and kind not in ended:
            ended[kind] = found.start()
            if all(begun[other] > begun[kind] or other in ended for other in begun):
                break  # no earlier item is still open
    if not ended:
        return None
    kind = min(ended, key=begun.__getitem__)
    return kind, text[begun[kind]:ended[kind]]


def _subcomponent_name(rest: str) -> str:
    """The name a BEGIN or END line gives (what follows its ':'), lower case: without its
    trailing blanks and CR; "" when it names nothing (empty, or a CR inside)."""
    rest = rest[:-1] if rest.endswith("\r") else rest
    name = rest.rstrip(" \t") or rest[:1]  # (blanks alone: the first one is the name)
    return "" if "\r" in name else name.lower()


def _without_subcomponents(body: str) -> str:
    """`body` less every subcomponent (a BEGIN line to the first END line of its name after
    it), in any case: each line is looked at once, each END found by bisection."""
    lines = [(found.start(), found.end(), found.group(1).upper() == "BEGIN",
              _subcomponent_name(found.group(2))) for found in _BEGIN_END_LINE.finditer(body)]
    ends: dict[str, list[int]] = {}
    for index, (_, _, begin, name) in enumerate(lines):
        if not begin and name:
            ends.setdefault(name, []).append(index)
    out, kept, index = [], 0, 0
    while index < len(lines):
        start, _, begin, name = lines[index]
        after = ends.get(name, []) if begin and name else []
        at = bisect_right(after, index)
        if at == len(after):
            index += 1
            continue
        out.append(body[kept:start])
        index = after[at] + 1
        kept = lines[after[at]][1]
    out.append(body[kept:])
    return "".join(out)


def _own_part(body: str) -> str:
    """An item's text without its subcomponents (VALARMs, which may hold a DURATION too);
    `body` starts with the newline after the item's BEGIN line."""
    if "BEGIN:" not in body:
        return _without_subcomponents(body) if "BEGIN:" in body.upper() else body
    out, at = [], 0
    while (begin := body.find("\nBEGIN:", at)) >= 0:
        line_end = body.find("\n", begin + 1)
        if line_end < 0:
            break
        end = body.find(f"\nEND:{body[begin + 7:line_end].strip()}", line_end)
        out.append(body[at:begin])
        if end < 0:
            return "".join(out)
        stop = body.find("\n", end + 1)
        at = stop if stop >= 0 else len(body)
    out.append(body[at:])
    return "".join(out)


def shape(text: str, zone: ZoneInfo) -> str:
    """What a user may change of an item, as one comparable string: the component, its start,
    its end (an event) or due (a to-do), and whether it is open, completed or cancelled.
    Times compare as moments (a TZID rewritten to UTC is no move), DURATION as the end it
    makes. "" when the text holds no event or to-do; "?" when its times cannot be reckoned
    (so it is an edit, never an error)."""
    try:
        return _shape(text, zone)
    except (OverflowError, ValueError):  # year 9999 plus a day, and the like
        return "?"


def _shape(text: str, zone: ZoneInfo) -> str:
    found = _item_text(text)
    if found is None:
        return ""
    kind, body = found
    own = unfold(_own_part(body))
    props: dict[str, tuple[dict[str, str], str]] = {}
    for line in _WHEN_LINE.findall(own):
        name, params, value = _split(line.rstrip("\r"))
        props.setdefault(name, (params, value))
    start = _moment(*props["DTSTART"], zone) if "DTSTART" in props else None
    closing = "DUE" if kind == "VTODO" else "DTEND"
    end: date | datetime | str | None = None
    if closing in props:
        end = _moment(*props[closing], zone)
    elif "DURATION" in props and isinstance(start, date):
        length = _length(props["DURATION"][1])
        end = start + length if length is not None else f"?{props['DURATION'][1]}"
    elif kind == "VEVENT" and isinstance(start, date):  # RFC 5545 3.6.1
        end = start if isinstance(start, datetime) else start + timedelta(days=1)
    status = props.get("STATUS", ({}, ""))[1].strip().upper()
    state = ("completed" if status == "COMPLETED" or "COMPLETED" in props
             else "cancelled" if status == "CANCELLED" else "open")
    return " ".join((kind, _text_of(start) if start is not None else "-",
                     _text_of(end) if end is not None else "-", state))


def edited(before: str, text: str, zone: ZoneInfo) -> bool:
    """Whether an item that changed in a calendar was edited by the user: its `shape` is not
    the one followsync last saw (`before`; "" — not known — counts as an edit)."""
    return not before or shape(text, zone) != before


def _is_app_property(name: str) -> bool:
    return name.startswith(_APP_PREFIXES)


def _is_app_alarm(lines: list[str]) -> bool:
    """An alarm the app made itself: a snooze (RFC 9074 RELATED-TO;RELTYPE=SNOOZE, or Apple's
    RELATED-TO without RELTYPE: followsync's alarms relate to nothing) or Apple's default
    alarm (X-APPLE-DEFAULT-ALARM:TRUE)."""
    for line in lines:
        name, params, value = _split(line)
        if name == "RELATED-TO" and params.get("RELTYPE", "SNOOZE").upper() == "SNOOZE":
            return True
        if name in ("X-APPLE-DEFAULT-ALARM", "X-APPLE-LOCAL-DEFAULT-ALARM") and \
                value.strip().upper() == "TRUE":
            return True
    return False


def _rang(lines: list[str], now: datetime | None) -> bool:
    """An app's alarm at a fixed moment (a snooze) that `now` has passed: written again, it
    would ring at once (README: no alarm whose moment has passed). ACTION:NONE (Apple's
    placeholder) never rings."""
    if now is None:
        return False
    moment = None
    for line in lines:
        name, params, value = _split(line)
        if name == "ACTION" and value.strip().upper() == "NONE":
            return False
        if name == "TRIGGER" and params.get("VALUE", "").upper() == "DATE-TIME":
            try:
                moment = datetime.strptime(value.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                return False
    return moment is not None and moment < now


def _alarm_key(lines: list[str]) -> str:
    """Which of followsync's alarms an alarm is: its ACTION and TRIGGER (a relative trigger
    as its length and what it is related to, however the app spells it)."""
    action, trigger = "", ""
    for line in lines:
        name, params, value = _split(line)
        if name == "ACTION":
            action = value.strip().upper()
        elif name == "TRIGGER":
            length = _length(value)
            related = params.get("RELATED", "START").upper()
            trigger = f"{related}{length.total_seconds():+.0f}" if length is not None \
                else value.strip().upper()
    return f"{action} {trigger}"


def _alarm_state(lines: list[str]) -> list[str]:
    return [line for line in lines if _name(line) in _ALARM_STATE or _is_app_property(_name(line))]


def bookkeeping(text: str) -> str:
    """The app's bookkeeping in an item, kept so that followsync's next write of it carries
    it over (`carry_over`): the item's X-MOZ-*/X-APPLE-*/X-EVOLUTION-* lines, each alarm's
    state (ACKNOWLEDGED, UID, X-WR-ALARMUID, the app's X- lines; with the ACTION and TRIGGER
    that say which alarm it is) and the alarms the app made (snoozes, Apple's default
    alarm) whole. "" when there is none."""
    item = _item(_lines(text))
    out = [line for line in item.props if _is_app_property(_name(line)) and _sound(line)]
    for alarm in item.alarms:
        inner = alarm[1:-1]
        if _is_app_alarm(inner):
            out += alarm if all(map(_sound, alarm)) else []
            continue
        state = [line for line in _alarm_state(inner) if _sound(line)]
        if state:
            out += ["BEGIN:VALARM", *[line for line in inner
                                      if _name(line) in ("ACTION", "TRIGGER") and _sound(line)],
                    *state, "END:VALARM"]
    kept = "\n".join(out)
    return kept if len(kept) <= KEPT_LIMIT else ""


def _sound(line: str) -> bool:
    """A content line safe to write back into an item: a name, then ';' or ':', and no
    control character (an app's or a server's text is hostile; this one goes into files)."""
    return bool(_CONTENT_LINE.match(line)) and not _CONTROL.search(line) and \
        len(line.splitlines()) == 1


def without_bookkeeping(text: str) -> str:
    """The item with the app's bookkeeping taken out (what `same` compares): the lines
    `bookkeeping` keeps, and the alarms the app made."""
    out: list[str] = []
    alarm: list[str] | None = None
    depth = 0
    for line in _lines(text):
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            if upper[6:].strip() == "VALARM":
                alarm = [line]
                continue
        elif upper.startswith("END:"):
            depth -= 1
            if alarm is not None and upper[4:].strip() == "VALARM":
                alarm.append(line)
                if not _is_app_alarm(alarm[1:-1]):
                    state = set(_alarm_state(alarm))  # (once: an alarm may be long)
                    out += [alarm[0], *[x for x in alarm[1:-1] if x not in state], alarm[-1]]
                alarm = None
                continue
        if alarm is not None:
            alarm.append(line)
        elif not _is_app_property(_name(line)):
            out.append(line)
    return "\r\n".join(out) + "\r\n"


def carry_over(ours: str, kept: str, now: datetime | None = None) -> str:
    """followsync's rendered item with the app's bookkeeping (`bookkeeping`) put back: the
    item's lines after followsync's own (the UID stays first), each alarm's state into
    followsync's alarm with the same ACTION and TRIGGER (one whose alarm is gone is
    dropped), the app's own alarms at the end, less a snooze whose moment `now` has passed.
    `ours` is otherwise left byte for byte.

    An acknowledgement is a moment: Thunderbird rings a past alarm only if it is later than
    X-MOZ-LASTACK, and an RFC 9074 client one later than ACKNOWLEDGED; a future alarm always
    rings. So one dismissed for the old date never silences the new date's alarm, and the
    alarms that were already past when it was dismissed do not ring again."""
    if not kept:
        return ours
    from followsync.render import _fold

    saved = _item(["BEGIN:VEVENT", *kept.split("\n"), "END:VEVENT"])
    states: dict[str, list[str]] = {}
    whole: list[str] = []
    for alarm in saved.alarms:
        if _is_app_alarm(alarm[1:-1]):
            if not _rang(alarm[1:-1], now):
                whole += alarm
        else:
            states.setdefault(_alarm_key(alarm[1:-1]), _alarm_state(alarm[1:-1]))
    nl = "\r\n" if "\r\n" in ours else "\n"
    physical = ours.split(nl)
    out: list[str] = []
    depth, alarm_at, placed = 0, -1, False
    for line in physical:
        upper = line.upper()
        if depth == 1 and not placed and (upper == "BEGIN:VALARM" or upper.startswith("END:")):
            out += [_fold(x) for x in saved.props]
            placed = True
        if upper.startswith("BEGIN:") and (depth or upper[6:] in _ITEMS):
            depth += 1
            if depth == 2 and upper == "BEGIN:VALARM":
                alarm_at = len(out)
        elif upper.startswith("END:") and depth:
            if depth == 2 and upper == "END:VALARM" and alarm_at >= 0:
                lines = _lines(nl.join(out[alarm_at + 1:]))
                have = {x for x in lines if _name(x) in _ALARM_STATE}
                out += [_fold(x) for x in states.get(_alarm_key(lines), []) if x not in have]
                alarm_at = -1
            elif depth == 1:
                out += [_fold(x) for x in whole]
            depth -= 1
        out.append(line)
    return nl.join(out)
