"""A calendar app's bookkeeping is not the user's edit (README, "What appears in the
calendar": edits; issue 17). Dismissing or snoozing a reminder in Thunderbird, Apple Calendar
or Evolution rewrites the item; only a change of its time, its completion or its removal is
an edit. Pure tests of `readback` first, then the CLI on an .ics target and on a real
Radicale, where the app is played by writing exactly what it writes (tests/apps.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from followsync import readback
from followsync.durations import Duration
from followsync.render import normalise, render
from tests.apps import apple_dismiss, evolution_save, thunderbird_dismiss
from tests.faultproxy import FaultProxy
from tests.oldstate import ITEMS_4, old_state
from tests.project import Project, config_text, ics_target
from tests.servers import CalendarInfo, Server
from tests.test_architecture import PROBE, ROOT
from tests.test_render import follow_up
from tests.test_two_way import PASSWORD_ENV, Item, TwoWay, uid, when

BERLIN = ZoneInfo("Europe/Berlin")
STAMP = datetime(2026, 12, 1, 7, 0, tzinfo=ZoneInfo("UTC"))
UID = "followsync-dana-acme-cadence-file"


def ours(kind: str = "event", **changes: Any) -> str:
    fields: dict[str, Any] = {"due": date(2026, 12, 7), "at": time(9),
                              "alarms": (Duration(0, "m"), Duration(1, "d"))}
    item = follow_up(**{**fields, **changes})
    return render(item, uid=UID, kind=kind, zone=BERLIN, stamp=STAMP)  # type: ignore[arg-type]


def component(text: str) -> Any:
    (item,) = [c for c in icalendar.Calendar.from_ical(text).walk()
               if c.name in ("VEVENT", "VTODO")]
    return item


APPS = {
    "thunderbird dismiss": lambda t: thunderbird_dismiss(t, "20261207T075636Z"),
    "thunderbird snooze": lambda t: thunderbird_dismiss(t, "20261207T080000Z", 2,
                                                        snooze_until="20261207T081500Z"),
    "apple dismiss": lambda t: apple_dismiss(t, "20261207T075636Z"),
    "apple snooze": lambda t: apple_dismiss(t, "20261207T075636Z",
                                            snooze_until="20261207T081500Z"),
    "evolution save": evolution_save,
}


@pytest.mark.parametrize("kind", ["event", "todo"])
@pytest.mark.parametrize("app", sorted(APPS))
def test_what_apps_write_for_a_reminder_is_not_an_edit(app: str, kind: str) -> None:
    text = ours(kind)
    written = APPS[app](text)
    assert written != text
    component(written)  # still valid iCalendar
    before = readback.shape(text, BERLIN)
    assert before.startswith("VEVENT" if kind == "event" else "VTODO"), before
    assert readback.shape(written, BERLIN) == before
    assert not readback.edited(before, written, BERLIN)
    # and `same` (adopting or re-reading an item) sees followsync's item in it (Evolution
    # spells the TZID and the trigger its own way: such an item is rewritten once when adopted)
    if not app.startswith("evolution"):
        assert normalise(readback.without_bookkeeping(written)) == \
            normalise(readback.without_bookkeeping(text))


@pytest.mark.parametrize(("old", "new"), [
    ("DTSTART;TZID=Europe/Berlin:20261207T090000", "DTSTART;TZID=Europe/Berlin:20261207T160000"),
    ("DTEND;TZID=Europe/Berlin:20261207T091500", "DTEND;TZID=Europe/Berlin:20261207T100000"),
])
def test_a_time_change_is_an_edit_even_with_bookkeeping(old: str, new: str) -> None:
    text = ours()
    assert old in text
    moved = thunderbird_dismiss(text.replace(old, new), "20261207T075636Z")
    assert readback.edited(readback.shape(text, BERLIN), moved, BERLIN)


def test_completion_of_a_todo_is_an_edit() -> None:
    text = ours("todo")
    done = text.replace("STATUS:NEEDS-ACTION", "STATUS:COMPLETED\r\nCOMPLETED:20261207T100000Z")
    assert readback.edited(readback.shape(text, BERLIN), apple_dismiss(done, "20261207T1000Z"),
                           BERLIN)


def test_the_same_moment_in_another_spelling_is_not_a_move() -> None:
    """An app that writes the start in UTC, or the end as a DURATION, did not move it."""
    text = ours()
    utc = text.replace("DTSTART;TZID=Europe/Berlin:20261207T090000", "DTSTART:20261207T080000Z")
    utc = utc.replace("DTEND;TZID=Europe/Berlin:20261207T091500", "DURATION:PT15M")
    assert readback.shape(utc, BERLIN) == readback.shape(text, BERLIN)
    assert readback.edited("", text, BERLIN)  # not known: as before, an edit


def test_unreadable_text_has_a_shape_that_never_matches_ours() -> None:
    assert readback.shape("garbage", BERLIN) == ""
    broken = ours().replace("20261207T090000", "2026120x")
    assert readback.edited(readback.shape(ours(), BERLIN), broken, BERLIN)


@pytest.mark.parametrize("app", sorted(APPS))
def test_a_rewrite_carries_the_apps_bookkeeping_over(app: str) -> None:
    """The next day's roll rewrites the item: the app's state comes along, the UID stays the
    item's first line (the .ics splicing finds items by it), and the result is valid."""
    written = APPS[app](ours())
    kept = readback.bookkeeping(written)
    assert kept
    tomorrow = ours(due=date(2026, 12, 8), overdue_days=1)
    merged = readback.carry_over(tomorrow, kept)
    item = component(merged)
    assert merged.split("\r\n")[merged.split("\r\n").index("BEGIN:VEVENT") + 1] == f"UID:{UID}"
    def state(kept: str) -> list[str]:  # (Evolution spells the trigger its own way)
        return [line for line in kept.split("\n") if not line.startswith("TRIGGER")]

    assert state(readback.bookkeeping(merged)) == state(kept)
    assert readback.shape(merged, BERLIN) == readback.shape(tomorrow, BERLIN)
    assert normalise(readback.without_bookkeeping(merged)) == normalise(tomorrow)
    if app.startswith("thunderbird"):
        assert str(item["X-MOZ-LASTACK"]) == component(written)["X-MOZ-LASTACK"]
        assert ("X-MOZ-SNOOZE-TIME" in item) == ("snooze" in app)
        assert str(item["X-MOZ-GENERATION"]) == str(component(written)["X-MOZ-GENERATION"])
    alarms = [c for c in item.walk() if c.name == "VALARM"]
    if app.startswith("apple"):
        own = [a for a in alarms if "RELATED-TO" not in a]
        assert len(own) == 2
        assert all("ACKNOWLEDGED" in a and "UID" in a and "X-WR-ALARMUID" in a for a in own)
        snoozes = [a for a in alarms if "RELATED-TO" in a]
        assert len(snoozes) == ("snooze" in app)
        if snoozes:
            assert str(snoozes[0]["RELATED-TO"]) == str(own[0]["UID"])
        assert item["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"] == "AUTOMATIC"
    if app.startswith("evolution"):
        assert all("X-EVOLUTION-ALARM-UID" in a for a in alarms)


def test_an_alarm_that_followsync_no_longer_writes_loses_its_state() -> None:
    kept = readback.bookkeeping(apple_dismiss(ours(), "20261207T075636Z"))
    fewer = ours(due=date(2026, 12, 8), alarms=(Duration(0, "m"),))
    merged = readback.carry_over(fewer, kept)
    alarms = [c for c in component(merged).walk() if c.name == "VALARM"]
    assert len(alarms) == 1
    assert alarms[0].decoded("TRIGGER") == timedelta(0)
    assert "ACKNOWLEDGED" in alarms[0]


def test_nothing_kept_leaves_the_text_alone() -> None:
    text = ours()
    assert readback.bookkeeping(text) == ""
    assert readback.carry_over(text, "") == text


# --- the CLI on an .ics target ----------------------------------------------------------------
DAY1, DAY2, DAY3 = "2026-11-18T10:00", "2026-11-19T10:00", "2026-11-20T10:00"
LEADS = """\
version: 1
defaults:
  cadence: [1w, 2w, 1mo]
  at: "09:30"
  alarms: [0m, 1d]
  spread: false  # (the dates are checked here; test_calendar_view checks the spread)
leads:
  dana:
    name: Dana Whitfield
    org: Acme
    log:
      - 2026-11-10 sent the CV
  sam:
    name: Sam Beta
    last_contact: 2026-11-05
    follow_ups:
      - {on: 2026-11-18, do: "Ask about the budget"}
"""


def file_items(path: Path) -> dict[str, Any]:
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    return {f"{c['X-FOLLOWSYNC-LEAD']} {c['X-FOLLOWSYNC-RULE']}": c for c in cal.walk()
            if c.name in ("VEVENT", "VTODO")}


def starts(comp: Any) -> str:
    return str(comp.decoded("DUE" if comp.name == "VTODO" else "DTSTART")
               .strftime("%Y-%m-%d %H:%M"))


@pytest.fixture
def ics(project: Project) -> Project:
    project.write_config(config_text(ics_target("out.ics", as_="event")))
    project.write_leads(LEADS)
    return project


def run(p: Project, *args: str, now: str) -> str:
    code, out = p.output(*args, now=now)
    assert code == 0, out
    assert "Traceback" not in out
    return out


def loaded_by_a_sync(p: Project, now: str) -> list[str]:
    """The followsync modules a `sync` loads, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, "--config", str(p.config), "--now", now,
                           "sync"], capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stdout + done.stderr
    return list(result["loaded"])


def test_a_reminder_dismissed_in_thunderbird_does_not_freeze_an_ics_item(ics: Project) -> None:
    """Issue 17: Thunderbird rewrites the .ics file with X-MOZ-LASTACK and X-MOZ-GENERATION
    in the item (and every item folded and ordered its way): not an edit. `plan` keeps no
    calendar edit, the next day the item rolls and says how overdue it is, and the
    dismissal stays in the rewritten item."""
    p = ics
    run(p, "sync", now=DAY1)
    sam = file_items(p.ics)["sam cadence"]
    assert starts(sam) == "2026-11-18 09:30"
    assert "(6 days overdue)" in str(sam["SUMMARY"])
    p.ics.write_text(thunderbird_dismiss(p.ics.read_text(), "20261118T083000Z",
                                         uid=str(sam["UID"])), newline="")

    out = run(p, "plan", now=DAY1)
    assert "calendar edit" not in out, out
    assert "0 to create, 0 to update, 0 to delete" in out, out
    out = run(p, "sync", now=DAY1)
    assert "calendar edit" not in out and "0 updated" in out, out
    assert "X-MOZ-LASTACK:20261118T083000Z" in p.ics.read_text()
    # "nothing of ours changed" from now on: the next sync takes the no-op path (it loads
    # neither the leads nor the rules), as after any sync
    assert "followsync.leads" not in loaded_by_a_sync(p, DAY1)

    out = run(p, "sync", now=DAY2)
    assert "calendar edit" not in out, out
    sam = file_items(p.ics)["sam cadence"]
    assert starts(sam) == "2026-11-19 09:30"  # rolled to the new today
    assert "(7 days overdue)" in str(sam["SUMMARY"])
    assert str(sam["X-MOZ-LASTACK"]) == "20261118T083000Z"  # Thunderbird's state kept
    assert str(sam["X-MOZ-GENERATION"]) == "1"
    agenda = run(p, "agenda", now=DAY2)
    assert "moved in the calendar" not in agenda, agenda
    out = run(p, "plan", now=DAY2)
    assert "0 to create, 0 to update, 0 to delete" in out and "edit" not in out, out


def test_a_time_changed_in_thunderbird_is_still_kept_on_an_ics_target(ics: Project) -> None:
    p = ics
    run(p, "sync", now=DAY1)
    sam = file_items(p.ics)["sam cadence"]
    text = p.ics.read_text()
    old = "DTSTART;TZID=Europe/Berlin:20261118T093000"
    assert text.count(old) == 2  # sam's two items
    moved = thunderbird_dismiss(text, "20261118T083000Z", uid=str(sam["UID"]),
                                shift=timedelta(hours=6, minutes=30))
    p.ics.write_text(moved, newline="")
    out = run(p, "plan", now=DAY1)
    assert "1 calendar edit kept" in out, out
    run(p, "sync", now=DAY2)
    items = file_items(p.ics)
    assert starts(items["sam cadence"]) == "2026-11-18 16:00"
    assert starts(items["sam once-2026-11-18"]) == "2026-11-19 09:30"
    assert "moved in the calendar" in run(p, "agenda", now=DAY2)


# --- a real Radicale: the app writes back with PUT If-Match, as it does ------------------------
@pytest.fixture
def dav(tmp_path: Path, make_dav_calendar: Callable[..., CalendarInfo],
        fault_proxy: Callable[[Server | CalendarInfo | str], FaultProxy],
        radicale_server: Server, monkeypatch: pytest.MonkeyPatch) -> TwoWay:
    """tests/test_two_way's set-up (phone: Radicale to-dos, desk: Radicale events, file: .ics),
    every item with two alarms (0m, 1d)."""
    phone = make_dav_calendar("radicale")
    desk = make_dav_calendar("radicale", components=("VEVENT",))
    assert phone.password
    monkeypatch.setenv(PASSWORD_ENV, phone.password)
    w = TwoWay(tmp_path, phone, desk, fault_proxy(radicale_server))
    w.write_leads(LEADS)
    return w


def app_writes(cal: CalendarInfo, item: Item, change: Callable[[str], str]) -> str:
    """The app's PUT of its new text, conditional on the ETag it read."""
    body = change(item.body.decode())
    status, _ = cal.put_raw(item.href, body, {"If-Match": item.etag})
    assert status in (200, 201, 204), status
    return body


def test_reminders_dismissed_and_snoozed_on_radicale_do_not_freeze_items(dav: TwoWay) -> None:
    """Thunderbird dismisses the desk's overdue event, Apple snoozes the phone's overdue to-do,
    Evolution saves the desk's one-off: no edit anywhere. The next day every item rolls and
    says how overdue it is, with each app's state carried over; `plan` and `sync` agree.
    (At 08:00, so the 0m alarm of 09:30 is still ahead: an alarm passed is never written.)"""
    w = dav
    day1, day2 = "2026-11-18T08:00", "2026-11-19T08:00"
    w.sync(day1)
    desk, phone = w.ours(w.desk), w.ours(w.phone)
    tb_key, apple_key = uid("desk", "sam", "cadence"), uid("phone", "sam", "cadence")
    evo_key = uid("desk", "sam", "once-2026-11-18")
    app_writes(w.desk, desk[tb_key], lambda t: thunderbird_dismiss(t, "20261118T083000Z"))
    # (snoozed for a day: a snooze whose moment has passed is not carried over)
    app_writes(w.phone, phone[apple_key],
               lambda t: apple_dismiss(t, "20261118T083000Z", snooze_until="20261119T073000Z"))
    app_writes(w.desk, desk[evo_key], evolution_save)

    code, out = w.output("plan", now=day1)
    assert code == 0, out
    assert "edit" not in out, out
    for line in out.splitlines():
        if not line.startswith(" "):
            assert "0 to create, 0 to update, 0 to delete" in line, out
    lines = w.sync(day1)
    assert not any("edit" in line for line in lines.values()), lines

    lines = w.sync(day2)
    assert not any("edit" in line for line in lines.values()), lines
    desk, phone = w.ours(w.desk), w.ours(w.phone)
    tb, apple, evo = desk[tb_key].component, phone[apple_key].component, desk[evo_key].component
    assert when(tb) == when(apple) == when(evo) == "2026-11-19 09:30"
    assert "(7 days overdue)" in str(tb["SUMMARY"]) and "(7 days overdue)" in str(apple["SUMMARY"])
    assert "(1 day overdue)" in str(evo["SUMMARY"])
    assert str(tb["X-MOZ-LASTACK"]) == "20261118T083000Z"
    alarms = [a for a in apple.walk() if a.name == "VALARM"]
    snoozes = [a for a in alarms if "RELATED-TO" in a]
    assert len(alarms) == 2 and len(snoozes) == 1  # 0m (1d has passed) and Apple's snooze
    assert all("ACKNOWLEDGED" in a for a in alarms if a not in snoozes)
    assert all("X-EVOLUTION-ALARM-UID" in a for a in evo.walk() if a.name == "VALARM")
    code, text = w.output("agenda", now=day2)
    assert code == 0 and "moved in the calendar" not in text, text
    w.settled(day2)


def test_a_real_edit_still_counts_on_radicale(dav: TwoWay) -> None:
    """A time changed together with a dismissal is kept (and stays the next day); a to-do
    completed with Apple's alarm state in it is still a touch."""
    w = dav
    w.sync(DAY1)
    desk, phone = w.ours(w.desk), w.ours(w.phone)
    key = uid("desk", "dana", "cadence")  # (Sam's completion below changes Sam's cadence)
    moved = app_writes(w.desk, desk[key], lambda t: thunderbird_dismiss(
        t, "20261118T083000Z", shift=timedelta(hours=6, minutes=30)))
    once = phone[uid("phone", "sam", "once-2026-11-18")]
    app_writes(w.phone, once, lambda t: apple_dismiss(t, "20261118T083000Z").replace(
        "STATUS:NEEDS-ACTION", "STATUS:COMPLETED\r\nCOMPLETED:20261118T090000Z"))
    lines = w.sync(DAY1)
    assert "1 calendar edit kept" in lines["desk"], lines
    assert "1 deleted" in lines["desk"] and "1 deleted" in lines["file"], lines  # the touch
    etag = w.ours(w.desk)[key].etag
    w.sync(DAY2)
    after = w.ours(w.desk)
    assert after[key].etag == etag
    assert when(after[key].component) == "2026-11-24 16:00"  # not rewritten: as the app left it
    assert str(after[key].component["X-MOZ-LASTACK"]) == "20261118T083000Z"
    assert after[key].component["SUMMARY"] == icalendar.Calendar.from_ical(moved).walk(
        "VEVENT")[0]["SUMMARY"]


def test_hostile_bookkeeping_is_not_written_back() -> None:
    """What a server hands back goes into files and the state: lines that would break an
    .ics file (a bare CR, a form feed, a NUL) are not kept, nor a mountain of them."""
    text = ours().replace("END:VEVENT", "X-MOZ-LASTACK:20261207T075636Z\r\n"
                          "X-MOZ-EVIL:a\rBEGIN:VEVENT\r\nX-APPLE-BAD:x\x0cy\r\n"
                          "X-EVOLUTION-NUL:\x00\r\nEND:VEVENT")
    assert readback.bookkeeping(text) == "X-MOZ-LASTACK:20261207T075636Z"
    huge = ours().replace("END:VEVENT", "X-MOZ-BIG:" + "x" * 20_000 + "\r\nEND:VEVENT")
    assert readback.bookkeeping(huge) == ""


END = "DTEND;TZID=Europe/Berlin:20261207T091500"
START = "DTSTART;TZID=Europe/Berlin:20261207T090000"


@pytest.mark.parametrize("changes", [
    [(END, "DURATION:P99999999999D")],
    [(START, "DTSTART:99991231T235959Z"), (END, "DURATION:P1D")],
    [(END, "DTEND;TZID=Nowhere/Else:20261207T091500")],
    [(START, "DTSTART;TZID=\"a:b;c\":20261207T090000")],
])
def test_odd_times_are_an_edit_never_an_error(changes: list[tuple[str, str]]) -> None:
    text = ours()
    odd = text
    for old, new in changes:
        odd = odd.replace(old, new)
    assert odd != text
    assert readback.edited(readback.shape(text, BERLIN), odd, BERLIN)
    readback.carry_over(ours(), readback.bookkeeping(odd))


def test_a_schema_4_state_gains_shape_and_kept(tmp_path: Path) -> None:
    """A state from before bookkeeping was told from edits opens and keeps its rows; their
    shape is not known ("": a change of such an item counts as an edit, as it did) until
    followsync writes the item again."""

    from followsync.state import SCHEMA_VERSION, State

    old_state(tmp_path, 4, ITEMS_4, "INSERT INTO items VALUES ('t', 'u1', 'h', 'e', 'x', 0, 0, "
              "'dana', 'cadence', 's', 0, '');")
    state = State(tmp_path)
    try:
        row = state.rows("t")["u1"]
        assert (row.shape, row.kept) == ("", "")
        state.put("t", replace(row, shape="VEVENT a b open", kept="X-MOZ-LASTACK:1"))
        assert state.rows("t")["u1"].kept == "X-MOZ-LASTACK:1"
        version = state.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
    finally:
        state.close()


def test_items_an_older_version_froze_roll_again_after_the_upgrade(ics: Project) -> None:
    """Before state schema 5 a dismissed reminder froze the item (kept as "edited"). After
    the upgrade an item still exactly where followsync's roll put it rolls on, with the
    app's state kept; one the user really moved stays where they put it."""
    import sqlite3

    p = ics
    run(p, "sync", now=DAY1)
    items = file_items(p.ics)
    text = thunderbird_dismiss(p.ics.read_text(), "20261118T083000Z",
                               uid=str(items["sam cadence"]["UID"]))
    text = thunderbird_dismiss(text, "20261118T083500Z", generation=2,
                               uid=str(items["dana cadence"]["UID"]),
                               shift=timedelta(hours=6, minutes=30))
    p.ics.write_text(text, newline="")
    run(p, "sync", now=DAY1)
    # the state as followsync 4 left it: the items of the rewritten file "edited" (but Sam's
    # one-off, dismissed only after the upgrade, below)
    db = sqlite3.connect(p.state / "state.sqlite")
    db.executescript("""
        UPDATE items SET edited=1, moved='2026-11-18T09:30' WHERE rule != 'once-2026-11-18';
        ALTER TABLE items DROP COLUMN shape;
        ALTER TABLE items DROP COLUMN kept;
        UPDATE meta SET value='4' WHERE key='schema';
    """)
    db.commit()
    db.close()
    once = str(file_items(p.ics)["sam once-2026-11-18"]["UID"])
    p.ics.write_text(thunderbird_dismiss(p.ics.read_text(), "20261119T070000Z", uid=once),
                     newline="")

    out = run(p, "sync", now=DAY2)
    assert "1 calendar edit kept" in out, out
    items = file_items(p.ics)
    assert starts(items["sam cadence"]) == "2026-11-19 09:30"
    assert "(7 days overdue)" in str(items["sam cadence"]["SUMMARY"])
    assert str(items["sam cadence"]["X-MOZ-LASTACK"]) == "20261118T083000Z"
    assert starts(items["sam once-2026-11-18"]) == "2026-11-19 09:30"
    assert str(items["sam once-2026-11-18"]["X-MOZ-LASTACK"]) == "20261119T070000Z"
    assert starts(items["dana cadence"]) == "2026-11-24 16:00"  # moved by the user: kept
    out = run(p, "plan", now=DAY2)
    assert "0 to create, 0 to update, 0 to delete" in out, out
    assert "moved in the calendar" in run(p, "agenda", now=DAY2)  # Dana's, by the user


def test_a_snooze_whose_moment_has_passed_is_not_carried_over() -> None:
    """An app's snooze is its own alarm at a fixed moment: kept on a rewrite while it is
    ahead, dropped once passed (it would ring at once); Apple's placeholder (ACTION:NONE,
    1976) never rings and stays. Apple writes RELATED-TO without RELTYPE: still a snooze."""
    snoozed = apple_dismiss(ours(), "20261207T075636Z", snooze_until="20261207T090000Z")
    apple_form = snoozed.replace("RELATED-TO;RELTYPE=SNOOZE:", "RELATED-TO:")
    placeholder = ("BEGIN:VALARM\r\nACTION:NONE\r\nTRIGGER;VALUE=DATE-TIME:19760401T005545Z\r\n"
                   "X-APPLE-DEFAULT-ALARM:TRUE\r\nEND:VALARM\r\n")
    for text in (snoozed, apple_form):
        text = text.replace("END:VEVENT", placeholder + "END:VEVENT", 1)
        kept = readback.bookkeeping(text)
        tomorrow = ours(due=date(2026, 12, 8), overdue_days=1)

        def related(now: datetime, kept: str = kept, tomorrow: str = tomorrow) -> list[str]:
            merged = component(readback.carry_over(tomorrow, kept, now))
            return [str(a.get("ACTION")) for a in merged.walk()
                    if a.name == "VALARM" and ("RELATED-TO" in a or "X-APPLE-DEFAULT-ALARM" in a)]

        assert sorted(related(datetime(2026, 12, 7, 8, 59, tzinfo=UTC))) == ["DISPLAY", "NONE"]
        assert related(datetime(2026, 12, 7, 9, 1, tzinfo=UTC)) == ["NONE"]


# --- an upgrade from a followsync before state schema 5 (no shapes, no slots) ---------------
SPREAD_LEADS = """\
version: 1
defaults: {cadence: [1w], at: "09:00", alarms: [0m]}
leads:
  a: {name: Ann A, log: ["2026-11-30 emailed the intro"]}
  b: {name: Bob B, log: ["2026-11-30 emailed the intro"]}
"""


def as_schema_4(p: Project, sql: str = "") -> None:
    """The state as a followsync before schema 5 left it: no shapes, no slots, no rules of
    touches, and the older texts' source hashes (a reason and a reply link read otherwise)."""
    import sqlite3

    db = sqlite3.connect(p.state / "state.sqlite")
    db.executescript(f"""
        {sql}
        ALTER TABLE items DROP COLUMN shape;
        ALTER TABLE items DROP COLUMN kept;
        DROP INDEX IF EXISTS items_by_slot;
        ALTER TABLE items DROP COLUMN slot;
        ALTER TABLE touches DROP COLUMN rule;
        UPDATE meta SET value='4' WHERE key='schema';
    """)
    db.commit()
    db.close()


def test_an_upgrade_keeps_the_items_moved_and_deleted_by_hand(project: Project) -> None:
    """An item moved and one deleted by hand before the upgrade stay so: the new version's
    texts (the reason names the unanswered touches) are not the lead file changing them."""
    p = project
    p.write_leads(SPREAD_LEADS)
    run(p, "sync", now="2026-12-01T08:00")
    items = file_items(p.ics)
    text = thunderbird_dismiss(p.ics.read_text(), "20261201T073000Z", shift=timedelta(hours=5),
                               uid=str(items["a cadence"]["UID"]))
    at = text.index("X-FOLLOWSYNC-LEAD:b")  # Bob's item deleted by hand
    begin, end = text.rindex("BEGIN:VEVENT", 0, at), text.index("END:VEVENT", at) + 12
    p.ics.write_text(text[:begin] + text[end:], newline="")
    assert "2 calendar edits kept" in run(p, "sync", now="2026-12-01T09:00")
    as_schema_4(p, "UPDATE items SET source='from-an-older-followsync';")
    out = run(p, "plan", now="2026-12-01T10:00")
    assert "0 to create, 0 to update, 0 to delete" in out, out
    out = run(p, "sync", now="2026-12-01T10:00")
    assert "0 created, 0 updated, 0 deleted" in out and "2 calendar edits kept" in out, out
    items = file_items(p.ics)
    assert starts(items["a cadence"]) == "2026-12-07 14:00" and "b cadence" not in items
    p.edit('b: {name: Bob B, log: ["2026-11-30 emailed the intro"]}',
           'b: {name: Bob B, log: ["2026-11-30 emailed the intro", "2026-12-01 called"]}')
    assert "1 created" in run(p, "sync", now="2026-12-01T11:00")  # the lead file changed it


def test_after_an_upgrade_an_item_an_older_version_wrote_at_its_time_is_ours(
        project: Project) -> None:
    """An older followsync wrote every item at `at`; one an app rewrote (a dismissal) after
    the upgrade is recognised at that time, though `spread` now lays it later: it rolls on
    and takes its slot, and is not frozen as the user's edit."""
    p = project
    p.write_leads(SPREAD_LEADS)
    run(p, "sync", now="2026-12-07T08:00")
    items = file_items(p.ics)
    assert starts(items["b cadence"]) == "2026-12-07 09:15"
    text = p.ics.read_text()
    at = text.index("X-FOLLOWSYNC-LEAD:b")
    begin, end = text.rindex("BEGIN:VEVENT", 0, at), text.index("END:VEVENT", at)
    bob = text[begin:end].replace("20261207T091500", "20261207T090000").replace(
        "20261207T093000", "20261207T091500")  # b as an older version wrote it: at 09:00
    old = text[:begin] + bob + text[end:]
    p.ics.write_text(thunderbird_dismiss(old, "20261207T080000Z",
                                         uid=str(items["b cadence"]["UID"])), newline="")
    as_schema_4(p)
    out = run(p, "sync", now="2026-12-08T08:00")
    assert "edit" not in out, out
    items = file_items(p.ics)
    assert [starts(items[k]) for k in ("a cadence", "b cadence")] == [
        "2026-12-08 09:00", "2026-12-08 09:15"]
    assert "(1 day overdue)" in str(items["b cadence"]["SUMMARY"])
    assert "0 to create, 0 to update" in run(p, "plan", now="2026-12-08T08:05")


def test_plan_and_agenda_leave_an_older_state_as_it_was(project: Project) -> None:
    """`plan` writes nothing anywhere: on a state of an older schema it upgrades a copy in
    memory, so the older followsync still runs on it."""
    p = project
    p.write_leads(SPREAD_LEADS)
    run(p, "sync", now="2026-12-07T08:00")
    as_schema_4(p)
    before = (p.state / "state.sqlite").read_bytes()
    run(p, "plan", now="2026-12-07T09:00")
    run(p, "agenda", now="2026-12-07T09:00")
    assert (p.state / "state.sqlite").read_bytes() == before
