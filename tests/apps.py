"""What calendar apps write into an item of ours when a reminder is dismissed or snoozed, or
when they save it for their own reasons (README, "What appears in the calendar": edits). Each
function takes the item's text as the server or file holds it and returns the text the app
writes back. They follow what the apps' sources and stored items show:

- Thunderbird (CalAlarmService.dismissAlarm / snoozeAlarm): X-MOZ-LASTACK set to now (a snooze
  too), X-MOZ-SNOOZE-TIME = now + the snooze (deleted on dismiss), X-MOZ-GENERATION counted up;
  the item re-serialised (its own PRODID, new DTSTAMP/LAST-MODIFIED, lines folded and ordered
  its way).
- Apple Calendar / iCloud (RFC 9074): each VALARM gains UID and X-WR-ALARMUID; dismissing adds
  ACKNOWLEDGED:now to the alarm; snoozing acknowledges it and adds a VALARM with an absolute
  TRIGGER and RELATED-TO;RELTYPE=SNOOZE:<the alarm's UID>; X-APPLE-* lines on the item.
- Evolution keeps dismissed and snoozed reminders in its own settings (GSettings
  `reminders-snoozed`), not in the item; when it saves an item it gives each VALARM an
  X-EVOLUTION-ALARM-UID, spells the trigger `TRIGGER;VALUE=DURATION;RELATED=START:` and (older
  versions) writes TZIDs as /freeassociation.sourceforge.net/Tzfile/<zone>.
"""

from __future__ import annotations

import re
from datetime import timedelta

import icalendar

NL = "\r\n"


def _eol(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", NL)


def _reserialised(text: str) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(text)


def _item(cal: icalendar.Calendar, uid: str | None) -> icalendar.cal.Component:
    (item,) = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")
               and (uid is None or str(c["UID"]) == uid)]
    return item


def thunderbird_dismiss(text: str, now_utc: str, generation: int = 1,
                        snooze_until: str | None = None, uid: str | None = None,
                        shift: timedelta | None = None) -> str:
    """Dismiss (or, with snooze_until, snooze) the item's reminder in Thunderbird. `text` may
    be a whole .ics file (`uid` says which item): Thunderbird writes the whole file again.
    `shift`: the user also dragged the item by that much (a real edit)."""
    cal = _reserialised(text)
    cal["PRODID"] = "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN"
    item = _item(cal, uid)
    for name in ("DTSTAMP", "LAST-MODIFIED", "X-MOZ-LASTACK", "X-MOZ-GENERATION",
                 "X-MOZ-SNOOZE-TIME"):
        item.pop(name, None)
    stamp = icalendar.vDDDTypes.from_ical(now_utc)
    item.add("LAST-MODIFIED", stamp)
    item.add("DTSTAMP", stamp)
    item.add("X-MOZ-GENERATION", str(generation))
    item["X-MOZ-LASTACK"] = icalendar.vText(now_utc)
    if snooze_until:
        item["X-MOZ-SNOOZE-TIME"] = icalendar.vText(snooze_until)
    for name in ("DTSTART", "DTEND", "DUE") if shift else ():
        if name in item:
            moved = item.decoded(name) + shift
            item.pop(name)
            item.add(name, moved)
    return _eol(cal.to_ical().decode())


def _alarm_blocks(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"BEGIN:VALARM\r?\n.*?END:VALARM", text,
                                                      re.S)]


def apple_dismiss(text: str, now_utc: str, snooze_until: str | None = None) -> str:
    """Dismiss (or snooze) the reminders as Apple Calendar writes it to iCloud/CalDAV."""
    out, last, snoozes = [], 0, []
    for number, (start, end) in enumerate(_alarm_blocks(text)):
        alarm_uid = f"8297C37D-BA2D-4476-91AE-C1EAA364F8E{number}"
        block = text[start:end].replace(
            "END:VALARM", f"UID:{alarm_uid}{NL}X-WR-ALARMUID:{alarm_uid}{NL}"
            f"ACKNOWLEDGED:{now_utc}{NL}END:VALARM")
        out += [text[last:start], block]
        last = end
        if snooze_until and number == 0:
            snoozes.append(f"BEGIN:VALARM{NL}UID:DE7B5C34-83FF-47FE-BE9E-FF41AE6DD097{NL}"
                           f"X-WR-ALARMUID:DE7B5C34-83FF-47FE-BE9E-FF41AE6DD097{NL}"
                           f"TRIGGER;VALUE=DATE-TIME:{snooze_until}{NL}"
                           f"RELATED-TO;RELTYPE=SNOOZE:{alarm_uid}{NL}"
                           f"DESCRIPTION:Event reminder{NL}ACTION:DISPLAY{NL}END:VALARM{NL}")
    body = "".join(out) + text[last:]
    body = re.sub(r"^DTSTAMP:.*$", f"DTSTAMP:{now_utc}", body, count=1, flags=re.M)
    end = re.search(r"^END:(VEVENT|VTODO)", body, re.M)
    assert end
    return (body[:end.start()] + "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC" + NL
            + "".join(snoozes) + body[end.start():])


def evolution_save(text: str, old_tzid: bool = True) -> str:
    """Save the item in Evolution (nothing changed by the user)."""
    body = text
    for number, (start, _) in enumerate(reversed(_alarm_blocks(text))):
        at = start + len("BEGIN:VALARM") + len(NL)
        body = body[:at] + f"X-EVOLUTION-ALARM-UID:20261207T075636Z-{number}-1000-1-0@host{NL}" \
            + body[at:]
    body = re.sub(r"^TRIGGER:(.*)$", r"TRIGGER;VALUE=DURATION;RELATED=START:\1", body,
                  flags=re.M)
    if old_tzid:
        body = re.sub(r"TZID([=:])([A-Za-z_]+/[A-Za-z_]+)",
                      r"TZID\1/freeassociation.sourceforge.net/Tzfile/\2", body)
    return re.sub(r"^PRODID:.*$", "PRODID:-//Ximian//NONSGML Evolution Calendar//EN", body,
                  count=1, flags=re.M)
