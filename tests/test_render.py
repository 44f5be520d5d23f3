"""Rendering follow-ups as iCalendar items (README, "What appears in the calendar"), checked with two independent parsers."""
# ruff: noqa: E501  (SPEC_EXAMPLE below is the SPEC's lead file verbatim, long comments and all)

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject

from followsync.durations import Duration
from followsync.render import (
    CATEGORY,
    description,
    input_hash,
    normalise,
    render,
    summary,
    uid_for,
)
from followsync.rules import FollowUp, Person
from tests.project import plan_text

D = date.fromisoformat
BERLIN = ZoneInfo("Europe/Berlin")
STAMP = datetime(2013, 5, 1, 12, 30, 15, tzinfo=UTC)

DANA = Person(
    name="Dana Whitfield", org="Acme Corp", role="President", email="dana@acme.example",
    phone="+1 555 0100", url="https://www.linkedin.com/in/example", status="waiting",
    notes='Offered to "make" a marketing position once the budget allows.\n',
)


def follow_up(**changes: Any) -> FollowUp:
    base = FollowUp(
        lead_id="dana-acme", rule="cadence", due=D("2013-08-03"), at=time(9),
        duration=Duration(15, "m"), alarms=(Duration(0, "m"),), kind="event",
        action="Budget year started: ask about the marketing role",
        title="Dana Whitfield: Budget year started: ask about the marketing role",
        reason="2nd follow-up: last touch 2013-06-03 (emailed thanks) + 2mo",
        person=DANA, overdue_days=0, unanswered=1,
    )
    return replace(base, **changes)


def rendered(item: FollowUp | None = None, *, kind: str | None = None,
             zone: ZoneInfo = BERLIN, uid: str = "followsync-dana-acme-cadence-phone",
             stamp: datetime = STAMP, sequence: int = 0) -> str:
    item = item or follow_up()
    return render(item, uid=uid, kind=kind or item.kind, zone=zone,  # type: ignore[arg-type]
                  stamp=stamp, sequence=sequence)


def component(text: str) -> icalendar.cal.Component:
    cal = icalendar.Calendar.from_ical(text)
    [found] = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
    return found


# vobject keeps the first VTIMEZONE it reads for a TZID for the rest of the process. Each of
# our items is a standalone object carrying its own VTIMEZONE (RFC 5545), so each is read with
# that cache cleared: vobject must then build the zone from this item's VTIMEZONE alone.
_VOBJECT_TZIDS: dict[str, Any] = vars(vobject.icalendar)["__tzidMap"]


def vobject_component(text: str) -> Any:
    for line in unfolded(text).split("\r\n"):
        if line.startswith("TZID:"):
            _VOBJECT_TZIDS.pop(line.removeprefix("TZID:"), None)
    cal = vobject.readOne(text)
    found = [c for c in cal.getChildren() if c.name in ("VEVENT", "VTODO")]
    assert len(found) == 1
    return found[0]


def unfolded(text: str) -> str:
    return text.replace("\r\n ", "")


# --- item kinds and dates --------------------------------------------------------------------

def test_event_is_a_vevent_with_a_tzid_start_end_and_vtimezone() -> None:
    text = rendered()
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
    assert "\r\nVERSION:2.0\r\n" in text
    assert text.count("BEGIN:VEVENT") == 1 and "BEGIN:VTODO" not in text
    assert "\r\nDTSTART;TZID=Europe/Berlin:20130803T090000\r\n" in text
    assert "\r\nDTEND;TZID=Europe/Berlin:20130803T091500\r\n" in text
    assert text.count("BEGIN:VTIMEZONE") == 1 and "\r\nTZID:Europe/Berlin\r\n" in text
    assert text.index("BEGIN:VTIMEZONE") < text.index("BEGIN:VEVENT")
    comp = component(text)
    assert comp.decoded("dtstart") == datetime(2013, 8, 3, 9, tzinfo=BERLIN)
    assert comp.decoded("dtend") - comp.decoded("dtstart") == timedelta(minutes=15)
    assert str(comp["transp"]) == "TRANSPARENT"


def test_todo_is_a_vtodo_with_due() -> None:
    text = rendered(kind="todo")
    assert text.count("BEGIN:VTODO") == 1 and "BEGIN:VEVENT" not in text
    assert "\r\nDUE;TZID=Europe/Berlin:20130803T090000\r\n" in text
    assert "DTEND" not in text
    comp = component(text)
    assert comp.decoded("due") == datetime(2013, 8, 3, 9, tzinfo=BERLIN)
    assert comp.decoded("dtstart") <= comp.decoded("due")
    assert str(comp["status"]) == "NEEDS-ACTION"
    assert "BEGIN:VTIMEZONE" in text


def test_the_kind_argument_wins_over_the_follow_ups_kind() -> None:
    assert "BEGIN:VTODO" in rendered(follow_up(kind="event"), kind="todo")
    assert "BEGIN:VEVENT" in rendered(follow_up(kind="todo"), kind="event")


@pytest.mark.parametrize("kind", ["event", "todo"])
def test_all_day_items_use_date_values_and_no_vtimezone(kind: str) -> None:
    text = rendered(follow_up(at=None), kind=kind)
    assert "\r\nDTSTART;VALUE=DATE:20130803\r\n" in text
    if kind == "event":
        assert "\r\nDTEND;VALUE=DATE:20130804\r\n" in text
    else:
        assert "\r\nDUE;VALUE=DATE:20130803\r\n" in text
    assert "TZID" not in text and "VTIMEZONE" not in text
    assert component(text).decoded("dtstart") == D("2013-08-03")


def test_utc_zone_uses_z_times_and_no_vtimezone() -> None:
    text = rendered(zone=ZoneInfo("UTC"))
    assert "\r\nDTSTART:20130803T090000Z\r\n" in text
    assert "VTIMEZONE" not in text and "TZID" not in text


@pytest.mark.parametrize(("duration", "end"), [
    (Duration(15, "m"), "20130803T091500"), (Duration(2, "h"), "20130803T110000"),
    (Duration(1, "d"), "20130804T090000"),
])
def test_event_length(duration: Duration, end: str) -> None:
    assert f"\r\nDTEND;TZID=Europe/Berlin:{end}\r\n" in rendered(follow_up(duration=duration))


# --- alarms, marks ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("alarms", "triggers"),
    [
        ((), []),
        ((Duration(0, "m"),), [timedelta(0)]),
        ((Duration(0, "m"), Duration(1, "d")), [timedelta(0), timedelta(days=-1)]),
        ((Duration(30, "m"), Duration(2, "h"), Duration(1, "w")),
         [timedelta(minutes=-30), timedelta(hours=-2), timedelta(weeks=-1)]),
    ],
)
@pytest.mark.parametrize("kind", ["event", "todo"])
def test_one_display_alarm_per_alarm_entry(
    alarms: tuple[Duration, ...], triggers: list[timedelta], kind: str
) -> None:
    text = rendered(follow_up(alarms=alarms), kind=kind)
    comp = component(text)
    found = [c for c in comp.subcomponents if c.name == "VALARM"]
    assert [c.decoded("trigger") for c in found] == triggers
    assert all(str(c["action"]) == "DISPLAY" for c in found)
    assert all(str(c["description"]) == summary(follow_up()) for c in found)
    assert text.count("BEGIN:VALARM") == len(alarms)
    parsed = vobject_component(text)
    assert [a.trigger.value for a in parsed.contents.get("valarm", [])] == triggers


@pytest.mark.parametrize("kind", ["event", "todo"])
def test_marks_and_category(kind: str) -> None:
    text = rendered(follow_up(rule="once-budget"), kind=kind)
    assert "\r\nX-FOLLOWSYNC-LEAD:dana-acme\r\n" in text
    assert "\r\nX-FOLLOWSYNC-RULE:once-budget\r\n" in text
    comp = component(text)
    assert CATEGORY == "followsync"
    assert "followsync" in comp["categories"].cats
    parsed = vobject_component(text)
    assert parsed.contents["x-followsync-lead"][0].value == "dana-acme"
    assert parsed.contents["x-followsync-rule"][0].value == "once-budget"
    assert "followsync" in parsed.categories.value


# --- text ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({}, "Dana Whitfield: Budget year started: ask about the marketing role"),
        ({"title": "Dana Whitfield: call"}, "Dana Whitfield: call"),
        ({"title": "Dana Whitfield: follow up", "overdue_days": 1, "due": D("2013-08-04")},
         "Dana Whitfield: follow up (1 day overdue)"),
        ({"title": "Dana Whitfield: follow up", "overdue_days": 3, "due": D("2013-08-06")},
         "Dana Whitfield: follow up (3 days overdue)"),
        ({"title": "Dana Whitfield: call\n  them\tnow"}, "Dana Whitfield: call them now"),
    ],
)
def test_summary(changes: dict[str, Any], text: str) -> None:
    item = follow_up(**changes)
    assert summary(item) == text
    comp = component(rendered(item))
    assert str(comp["summary"]) == text
    # the alarm pops up with the same readable title
    assert [str(a["description"]) for a in comp.subcomponents] == [text]


def test_description_in_full() -> None:
    expected = (
        "Budget year started: ask about the marketing role\n"
        "\n"
        "Why this date: 2nd follow-up: last touch 2013-06-03 (emailed thanks) + 2mo\n"
        "Unanswered so far: 1 follow-up.\n"
        "\n"
        "Dana Whitfield\n"
        "President, Acme Corp\n"
        "Email: dana@acme.example\n"
        "Phone: +1 555 0100\n"
        "Link: https://www.linkedin.com/in/example\n"
        "Status: waiting\n"
        "\n"
        "Notes:\n"
        'Offered to "make" a marketing position once the budget allows.'
    )
    assert description(follow_up()) == expected
    assert str(component(rendered())["description"]) == expected
    assert vobject_component(rendered()).description.value == expected


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        ({"unanswered": 3}, ["Unanswered so far: 3 follow-ups."], ["Overdue"]),
        ({"unanswered": 0}, ["Unanswered so far: 0 follow-ups."], []),
        ({"unanswered": None, "rule": "once-budget"}, [], ["Unanswered"]),
        ({"overdue_days": 5, "due": D("2013-08-08")}, ["Overdue: was due 2013-08-03."], []),
        ({"person": Person("Dana", org="Acme")}, ["\n\nDana\nAcme"], ["Email", "Notes", "Status"]),
        ({"person": Person("Dana", role="CEO")}, ["\n\nDana\nCEO"], ["Link"]),
    ],
)
def test_description_parts(changes: dict[str, Any], present: list[str], absent: list[str]) -> None:
    text = description(follow_up(**changes))
    assert text.startswith("Budget year started: ask about the marketing role\n\nWhy this date: ")
    for part in present:
        assert part in text
    for part in absent:
        assert part not in text


def test_description_starts_with_the_action_with_a_capital() -> None:
    item = follow_up(action="ask about the role", title="Dana Whitfield: ask about the role")
    assert description(item).startswith("Ask about the role\n\nWhy this date: ")


def test_description_from_a_planned_lead() -> None:
    text = """\
defaults: {cadence: [1mo, 2mo, 3mo]}
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    email: dana@acme.example
    notes: Met at the fair.
    last_contact: 2013-05-03
    log: ["2013-06-03 emailed thanks"]
"""
    [result] = plan_text(text, D("2013-01-01"))
    [item] = result.follow_ups
    desc = description(item)
    assert ("Why this date: 2nd follow-up: 1 unanswered (2013-06-03 emailed thanks) since "
            "2013-05-03 (last contact); last touch 2013-06-03 + 2mo") in desc
    assert "Unanswered so far: 1 follow-up." in desc
    assert "Email: dana@acme.example" in desc and desc.endswith("Notes:\nMet at the fair.")


# --- determinism, UIDs, hashes ---------------------------------------------------------------

def test_rendering_is_deterministic() -> None:
    assert rendered() == rendered()
    assert rendered(follow_up(at=None)) == rendered(follow_up(at=None))


def test_only_the_stamp_and_sequence_differ_between_syncs() -> None:
    first = rendered()
    second = rendered(stamp=STAMP + timedelta(days=3), sequence=4)
    assert first != second
    changed = set(first.split("\r\n")) ^ set(second.split("\r\n"))
    assert {line.split(":")[0] for line in changed} == {"DTSTAMP", "SEQUENCE"}
    assert normalise(first) == normalise(second)
    assert "\r\nDTSTAMP:20130501T123015Z\r\n" in first and "\r\nSEQUENCE:4\r\n" in second


def test_stamp_in_another_zone_is_written_in_utc() -> None:
    text = rendered(stamp=datetime(2013, 5, 1, 14, 30, 15, 999, tzinfo=BERLIN))
    assert "\r\nDTSTAMP:20130501T123015Z\r\n" in text


def test_normalise_sees_content_changes_and_ignores_vtimezone_and_trailing_spaces() -> None:
    base = rendered()
    assert normalise(base) != normalise(rendered(follow_up(action="Call")))
    assert normalise(base) != normalise(rendered(follow_up(due=D("2013-08-04"))))
    start, end = base.index("BEGIN:VTIMEZONE"), base.index("END:VTIMEZONE\r\n")
    assert normalise(base) == normalise(base[:start] + base[end + len("END:VTIMEZONE\r\n"):])
    spaced = rendered(follow_up(person=replace(DANA, notes="one   \ntwo")))
    assert "one\\ntwo" in normalise(spaced)
    assert normalise(spaced) == normalise(spaced.replace("one   \\n", "one\\n"))


def test_uid_for() -> None:
    assert uid_for("phone", "dana-acme", "cadence") == "followsync-dana-acme-cadence-phone"
    assert uid_for("Phone", "dana-acme", "once-budget") == "followsync-dana-acme-once-budget-phone-86d404b3"
    assert uid_for("phone", "dana", "cadence") != uid_for("file", "dana", "cadence")
    assert uid_for("phone", "dana", "cadence") != uid_for("phone", "dana", "once-2014-01-06")


def test_uids_of_different_leads_never_collide() -> None:
    text = """\
leads:
  dana:
    name: Dana
    follow_ups: [{on: 2020-02-01, id: acme-cadence, do: x}]
  dana-once-acme:
    name: Other Dana
"""
    items = [f for p in plan_text(text, D("2020-01-01")) for f in p.follow_ups]
    assert len(items) == 3
    uids = [uid_for("phone", f.lead_id, f.rule) for f in items]
    assert len(set(uids)) == len(uids), uids


def test_uid_stays_while_the_follow_up_moves_or_is_reworded() -> None:
    lead = """\
leads:
  dana-acme:
    name: Dana
    last_contact: 2013-05-03
    follow_ups: [{{on: 2014-01-06, do: "{text}"}}]
{log}"""
    versions = [
        lead.format(text="Ask about the role", log=""),
        lead.format(text="Ask about the marketing role", log=""),
        lead.format(text="Ask about the marketing role",
                    log='    log: ["2013-06-03 emailed"]\n'),
    ]
    seen: list[dict[str, tuple[str, date, str]]] = []
    for text in versions:
        [result] = plan_text(text, D("2013-01-01"))
        uids = {}
        for item in result.follow_ups:
            uid = uid_for("phone", item.lead_id, item.rule)
            comp = component(rendered(item, uid=uid))
            assert str(comp["uid"]) == uid
            uids[item.rule] = (uid, item.due, item.action)
        seen.append(uids)
    assert [sorted(s) for s in seen] == [["cadence", "once-2014-01-06"]] * 3
    for rule in ("cadence", "once-2014-01-06"):
        assert len({s[rule][0] for s in seen}) == 1
    assert seen[0]["once-2014-01-06"][2] != seen[1]["once-2014-01-06"][2]
    assert seen[1]["cadence"][1] != seen[2]["cadence"][1]


def test_input_hash() -> None:
    uid = "followsync-dana-acme-cadence-phone"
    base = input_hash(follow_up(), "event", "Europe/Berlin", uid)
    assert base == input_hash(follow_up(), "event", "Europe/Berlin", uid)
    assert len(base) == 32 and int(base, 16) >= 0
    others = {
        input_hash(follow_up(due=D("2013-08-04")), "event", "Europe/Berlin", uid),
        input_hash(follow_up(action="Call"), "event", "Europe/Berlin", uid),
        input_hash(follow_up(person=replace(DANA, phone=None)), "event", "Europe/Berlin", uid),
        input_hash(follow_up(alarms=()), "event", "Europe/Berlin", uid),
        input_hash(follow_up(), "todo", "Europe/Berlin", uid),
        input_hash(follow_up(), "event", "Europe/Paris", uid),
        input_hash(follow_up(), "event", "Europe/Berlin", uid + "x"),
    }
    assert base not in others and len(others) == 7


# --- folding and parsing back ----------------------------------------------------------------

NAMES = ["Zoë Ünlü-Łukasiewicz", "😀 Dana 🎉 Whitfield 👩🏽‍💻", "李小龍 王 ✓ Ærø", "x" * 80 + "é" * 40]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pad", range(4))
def test_lines_are_folded_at_75_octets_without_splitting_characters(name: str, pad: int) -> None:
    person = Person(name="p" * pad + name, org="Société Générale 🏦", notes="Ça va? " * 30 + "🙂")
    item = follow_up(person=person, action="Écrire à " + name)
    text = rendered(item)
    raw = text.encode("utf-8")
    assert raw.endswith(b"\r\n")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 75, line
        line.decode("utf-8")  # a split character would not decode
    assert "\n" not in text.replace("\r\n", "")
    assert summary(item) in unfolded(text)
    assert str(component(text)["summary"]) == summary(item)
    assert vobject_component(text).summary.value == summary(item)
    assert vobject_component(text).description.value == description(item)


@pytest.mark.parametrize("kind", ["event", "todo"])
@pytest.mark.parametrize("at", [time(9), None])
def test_icalendar_and_vobject_agree(kind: str, at: time | None) -> None:
    item = follow_up(at=at, person=replace(DANA, name="Zoë 😀 Whitfield"))
    text = rendered(item, kind=kind, uid="followsync-dana-acme-cadence-phone")
    a = component(text)
    b = vobject_component(text)
    assert str(a["uid"]) == b.uid.value == "followsync-dana-acme-cadence-phone"
    assert str(a["summary"]) == b.summary.value == summary(item)
    start_a, start_b = a.decoded("dtstart"), b.dtstart.value
    if at is None:
        assert start_a == start_b == D("2013-08-03")
    else:
        assert start_a == start_b == datetime(2013, 8, 3, 9, tzinfo=BERLIN)
        assert start_a.utcoffset() == start_b.utcoffset() == timedelta(hours=2)
    if kind == "todo":
        assert a.decoded("due") == b.due.value == start_a


# --- DST -------------------------------------------------------------------------------------

TRANSITIONS = [
    ("Europe/Berlin", D("2026-03-29")),
    ("Europe/Berlin", D("2026-10-25")),
    ("America/New_York", D("2026-03-08")),
    ("America/New_York", D("2026-11-01")),
    ("Australia/Sydney", D("2026-04-05")),  # southern hemisphere: DST ends in April
    ("Australia/Sydney", D("2026-10-04")),  # and starts in October
]


def starts(text: str, kind: str) -> list[datetime]:
    """DTSTART as read by icalendar and by vobject (which uses the VTIMEZONE itself)."""
    a = component(text).decoded("dtstart")
    b = vobject_component(text).dtstart.value
    assert not isinstance(b.tzinfo, ZoneInfo)  # vobject read the item's own VTIMEZONE
    assert vobject_component(text).name == ("VTODO" if kind == "todo" else "VEVENT")
    return [a, b]


@pytest.mark.parametrize(("zone", "change"), TRANSITIONS)
@pytest.mark.parametrize("kind", ["event", "todo"])
def test_reminders_stay_at_nine_local_across_dst(zone: str, change: date, kind: str) -> None:
    tz = ZoneInfo(zone)
    offsets: dict[int, set[timedelta]] = {}
    for shift in (-1, 0, 1):
        day = change + timedelta(days=shift)
        text = rendered(follow_up(due=day), zone=tz, kind=kind)
        assert f"DTSTART;TZID={zone}:{day:%Y%m%d}T090000" in text
        assert f"TZID:{zone}" in text
        for start in starts(text, kind):
            local = start.astimezone(tz)
            assert (local.date(), local.hour, local.minute) == (day, 9, 0)
            offsets.setdefault(shift, set()).add(start.utcoffset())  # type: ignore[arg-type]
    assert all(len(found) == 1 for found in offsets.values()), offsets
    # the 09:00 on the day of a change is already on the new side of it
    assert offsets[-1] != offsets[0] == offsets[1]
    expected = {shift: {datetime.combine(change + timedelta(days=shift), time(9), tz).utcoffset()}
                for shift in (-1, 0, 1)}
    assert offsets == expected


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Sydney"])
def test_vtimezone_covers_items_late_in_the_year(zone: str) -> None:
    tz = ZoneInfo(zone)
    for day in (D("2026-01-01"), D("2026-07-01"), D("2026-12-31")):
        text = rendered(follow_up(due=day), zone=tz)
        for start in starts(text, "event"):
            assert start.astimezone(tz).hour == 9
            assert start.utcoffset() == datetime.combine(day, time(9), tz).utcoffset()


# --- the specification's lead file, verbatim, through the rules and into the calendar ---------------

SPEC_EXAMPLE = """\
# yaml-language-server: $schema=./followsync.schema.json   (written by `followsync schema`)
version: 1
defaults:                       # every key optional; a lead may override any of them
  cadence: [1mo, 2mo, 3mo]      # gaps between follow-ups that get no answer (default [1w, 2w, 1mo])
  give_up_after: 4              # stop chasing after this many unanswered follow-ups (null = never; default null)
  at: "09:00"                   # local time of the reminder (default 09:00); or all_day: true
  duration: 15m                 # length of the calendar event (default 15m)
  alarms: [0m, 1d]              # alarms before the start; [] = none (default [0m])
  as: event                     # event (VEVENT) or todo (VTODO) (default event)
  overdue: roll                 # roll: an overdue follow-up moves to today every day; keep: it stays (default roll)
  days: [mon, tue, wed, thu, fri]   # days a follow-up may fall on; a due date on another day moves
                                    # to the next allowed day (default: every day)
  closed: [closed, hired, declined, lost, won, dead]   # statuses that end all follow-ups (this default list)
  action: "Follow up with {name}"                      # default action text; {name} {org} {role} {email} expand
  on_status:                    # when a lead ENTERS a status: a one-off follow-up
    interviewed: {after: 1d, do: "Send {name} a thank-you note"}
  on_other_status:              # when ANY OTHER lead enters a status: every open lead gets one
    offer: {after: 0d, do: "Tell {name} you have an offer in hand and its deadline"}
leads:
  dana-acme:                    # the lead's id: [a-z0-9][a-z0-9._-]*, unique, never reused
    name: Dana Whitfield        # required
    org: Acme Corp
    role: President
    email: dana@acme.example    # or a list: [dana@acme.example, dana.w@gmail.example]
    phone: "+1 555 0100"
    url: https://www.linkedin.com/in/example
    tags: [marketing, referral]
    status: waiting             # free word; statuses in `closed` end the follow-ups
    notes: |
      Offered to "make" a marketing position once the budget allows.
    last_contact: 2013-05-03    # shorthand for a two-way touch on that date
    log:                        # touches, in any order
      - 2013-06-03 emailed: thanks again, still very interested   # "DATE text" = a touch by me
      - {date: 2013-06-20, by: them, note: "replied: check back after the budget"}
    next: 2014-01-06            # hand-set date of the next follow-up (overrides the cadence once)
    snooze_until: 2013-09-01    # no cadence follow-up before this date
    cadence: [6w, 2mo]          # per-lead override of any default
    follow_ups:                 # one-off follow-ups on fixed dates
      - {on: 2014-01-06, do: "Budget year started: ask about the marketing role", at: "10:00"}
"""


def test_spec_example_lead_file() -> None:
    [result] = plan_text(SPEC_EXAMPLE, D("2013-07-01"))
    assert (result.closed, result.cold, result.unanswered) == (False, False, 0)
    assert [t.note for t in [result.last_touch] if t] == ["replied: check back after the budget"]
    items = {f.rule: f for f in result.follow_ups}
    assert sorted(items) == ["cadence", "once-2014-01-06"]
    cadence, once = items["cadence"], items["once-2014-01-06"]
    assert (cadence.due, cadence.at, cadence.reason) == (
        D("2014-01-06"), time(9), "hand-set next date 2014-01-06")
    assert (once.due, once.at) == (D("2014-01-06"), time(10))
    text = rendered(once, uid=uid_for("phone", "dana-acme", once.rule))
    comp = component(text)
    assert str(comp["summary"]) == ("Dana Whitfield: Budget year started: ask about the "
                                    "marketing role")
    # the example's action names the person already: the name is not put in front again
    assert str(component(rendered(cadence))["summary"]) == "Follow up with Dana Whitfield"
    assert "\r\nDTSTART;TZID=Europe/Berlin:20140106T100000\r\n" in text
    assert "\r\nDTEND;TZID=Europe/Berlin:20140106T101500\r\n" in text
    assert [a.decoded("trigger") for a in comp.subcomponents] == [timedelta(0), timedelta(-1)]
    desc = str(comp["description"])
    for part in ("Why this date: one-off follow-up set for 2014-01-06", "President, Acme Corp",
                 "Email: dana@acme.example", "Phone: +1 555 0100",
                 "Link: https://www.linkedin.com/in/example", "Status: waiting",
                 'Notes:\nOffered to "make" a marketing position once the budget allows.'):
        assert part in desc
    assert "Unanswered" not in desc
    assert "Unanswered so far: 0 follow-ups." in description(cadence)


def test_spec_example_without_next_is_snoozed() -> None:
    text = SPEC_EXAMPLE.replace("    next: 2014-01-06", "    # next removed")
    [result] = plan_text(text, D("2013-07-01"))
    cadence = {f.rule: f for f in result.follow_ups}["cadence"]
    # snoozed to Sunday 2013-09-01; `days: [mon, tue, wed, thu, fri]` moves it to Monday
    assert cadence.due == D("2013-09-02")
    assert cadence.reason == ("1st follow-up: last touch 2013-06-20 (replied: check back after "
                              "the budget) + 6w, snoozed until 2013-09-01 = Sun 2013-09-01, "
                              "moved to Mon 2013-09-02 (days: mon-fri)")


# --- past alarms (README "What appears in the calendar": no alarm whose moment has passed) --

@pytest.mark.parametrize("kind", ["event", "todo"])
@pytest.mark.parametrize(("now", "left"), [
    (datetime(2013, 8, 2, 8, 0, tzinfo=BERLIN), [timedelta(0), timedelta(days=-1)]),
    (datetime(2013, 8, 2, 9, 0, tzinfo=BERLIN), [timedelta(0), timedelta(days=-1)]),  # rings now
    (datetime(2013, 8, 3, 8, 0, tzinfo=BERLIN), [timedelta(0)]),  # 08:00 for 09:00 today
    (datetime(2013, 8, 3, 7, 1, tzinfo=UTC), []),  # 09:00 Berlin (07:00 UTC) has passed
])
def test_an_alarm_whose_moment_has_passed_is_not_written(
        kind: str, now: datetime, left: list[timedelta]) -> None:
    item = follow_up(alarms=(Duration(0, "m"), Duration(1, "d")))
    text = render(item, uid="u", kind=kind, zone=BERLIN, stamp=now, now=now)  # type: ignore[arg-type]
    found = [c for c in component(text).subcomponents if c.name == "VALARM"]
    assert [c.decoded("trigger") for c in found] == left
    parsed = vobject_component(text)
    assert [a.trigger.value for a in parsed.contents.get("valarm", [])] == left


def test_an_all_day_items_alarms_count_from_the_start_of_its_day() -> None:
    item = follow_up(at=None, alarms=(Duration(0, "m"), Duration(1, "d")))
    morning = datetime(2013, 8, 3, 8, 0, tzinfo=BERLIN)
    text = render(item, uid="u", kind="event", zone=BERLIN, stamp=morning, now=morning)
    assert "BEGIN:VALARM" not in text
    eve = datetime(2013, 8, 2, 20, 0, tzinfo=BERLIN)
    text = render(item, uid="u", kind="event", zone=BERLIN, stamp=eve, now=eve)
    assert [c.decoded("trigger") for c in component(text).subcomponents
            if c.name == "VALARM"] == [timedelta(0)]


def test_the_content_hash_does_not_change_with_time() -> None:
    """An item is never rewritten only because one of its alarms has passed: the hash that
    decides a rewrite has no clock in it."""
    item = follow_up(alarms=(Duration(0, "m"), Duration(1, "d")))
    assert input_hash(item, "event", "Europe/Berlin", "u") == input_hash(
        replace(item), "event", "Europe/Berlin", "u")
    early = render(item, uid="u", kind="event", zone=BERLIN, stamp=STAMP,
                   now=datetime(2013, 8, 1, tzinfo=BERLIN))
    late = render(item, uid="u", kind="event", zone=BERLIN, stamp=STAMP,
                  now=datetime(2013, 8, 3, 8, tzinfo=BERLIN))
    assert early.count("BEGIN:VALARM") == 2 and late.count("BEGIN:VALARM") == 1


@pytest.mark.parametrize("at", [time(9), None])
def test_normalise_at_a_moment_leaves_out_the_alarms_passed_by_then(at: time | None) -> None:
    item = follow_up(at=at, alarms=(Duration(0, "m"), Duration(1, "d")))
    early = render(item, uid="u", kind="event", zone=BERLIN, stamp=STAMP,
                   now=datetime(2013, 8, 1, tzinfo=BERLIN))
    late_now = datetime(2013, 8, 2, 12, tzinfo=BERLIN)  # after "1 day before", before the start
    late = render(item, uid="u", kind="event", zone=BERLIN, stamp=STAMP, now=late_now)
    assert normalise(early) != normalise(late)
    assert normalise(early, late_now) == normalise(late, late_now)
    assert normalise(early, late_now) != normalise(
        rendered(replace(item, alarms=(Duration(1, "d"),))), late_now)  # the 0m one counts
