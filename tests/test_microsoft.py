"""The microsoft target against the emulation of Graph (tests/msemu.py): what the shared
contract suite does not cover — the calendar by name, request counts, the delta link's loss
and window, moves and deletions made in Outlook, events outside the window, a lost state,
DST, all-day items, the one reminder, back-off and Retry-After, faults, and the command line
(sync, plan, calendars, max_deletes, the window sliding, the fault property)."""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import random
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.backends.apisession import MICROSOFT_BACKOFF, ApiSession, microsoft_retryable
from followsync.backends.microsoft import DATA, MARK, MicrosoftBackend, to_event, window_of
from followsync.cli import main
from followsync.errors import ComponentRefused, Conflict, TargetError
from followsync.model import Remote
from followsync.msauth import MicrosoftSettings
from followsync.render import normalise
from tests.msemu import FAULTS, MsEmu
from tests.test_backend_contract import FixedBearer, item, new_uid, rendered_item

TODAY = date(2030, 12, 1)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def emu() -> Iterator[MsEmu]:
    made = MsEmu().start()
    try:
        yield made
    finally:
        made.stop()


def settings_for(emu: MsEmu, tmp_path: Path, calendar: str = "Follow-ups") -> MicrosoftSettings:
    return MicrosoftSettings(name="work", client_id=emu.client_id, state_dir=tmp_path / "state",
                             endpoint=emu.url, verify=emu.ca_path, calendar=calendar,
                             zone="Europe/Berlin")


def bearer(emu: MsEmu) -> FixedBearer:
    return FixedBearer(emu.issue_tokens(["Calendars.ReadWrite"])[0])


def backend(emu: MsEmu, settings: MicrosoftSettings, readonly: bool = False,
            today: date = TODAY, tokens: FixedBearer | None = None) -> MicrosoftBackend:
    made = MicrosoftBackend(settings, readonly=readonly, tokens=tokens or bearer(emu),
                            today=today)
    made.session = ApiSession(settings.graph_base, made.tokens, sleep=lambda _: None,
                              verify=emu.ca_path, label=settings.name, service="Microsoft",
                              retryable=microsoft_retryable, backoff=MICROSOFT_BACKOFF)
    return made


def sync(emu: MsEmu, settings: MicrosoftSettings, known: dict[str, Remote], cursor: str | None,
         work: Any = None, today: date = TODAY) -> tuple[dict[str, Remote], str | None]:
    b = backend(emu, settings, today=today)
    listing = b.listing(known, cursor)
    items = dict(listing.items)
    if work:
        work(b, items)
    cursor = b.commit()
    b.close()
    return items, cursor


def create(*uids: str, text: Any = item) -> Any:
    def work(b: MicrosoftBackend, items: dict[str, Remote]) -> None:
        for uid in uids:
            items[uid] = b.create(uid, text(uid))
    return work


def ours(emu: MsEmu, calendar: str = "Follow-ups") -> dict[str, dict[str, Any]]:
    """The calendar's events of followsync by UID (a UID twice fails the test)."""
    found: dict[str, dict[str, Any]] = {}
    for event in emu.live(calendar):
        props = {p["id"]: p["value"] for p in event["singleValueExtendedProperties"]}
        if MARK in props:
            assert props[MARK] not in found, f"{props[MARK]} twice"
            found[props[MARK]] = event
    return found


def requests(emu: MsEmu) -> list[tuple[str, str]]:
    return [(s.method, s.path) for s in emu.api_requests()]


# ============================================================================ the calendar
def test_the_calendar_is_found_by_name_or_created_but_not_by_a_readonly_backend(
        emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    listing = backend(emu, settings, readonly=True).listing({}, None)
    assert listing.fresh and "does not exist yet" in listing.note
    assert [c.name for c in emu.calendars.values()] == ["Calendar"]
    b = backend(emu, settings)
    b.listing({}, None)
    uid = new_uid()
    b.create(uid, item(uid))
    b.close()
    assert ("POST", "/v1.0/me/calendars") in requests(emu)
    b = backend(emu, settings)  # found again by name, not made twice
    assert set(b.listing({}, None).items) == {uid}
    assert [c.name for c in emu.calendars.values()].count("Follow-ups") == 1
    other_case = backend(emu, settings_for(emu, tmp_path, calendar="follow-ups"))
    assert set(other_case.listing({}, None).items) == {uid}  # Outlook's names ignore case
    assert len(emu.calendars) == 2
    default = backend(emu, settings_for(emu, tmp_path, calendar="default"))
    assert default.listing({}, None).items == {}
    assert default.cursor is not None
    assert default.cursor.calendar == emu.calendar("Calendar").id


def test_a_calendar_create_whose_answer_was_lost_adopts_the_calendar(emu: MsEmu,
                                                                     tmp_path: Path) -> None:
    """The POST landed, its answer was lost, the retry meets 409 ErrorFolderExists: the
    calendar is listed again and adopted, never made twice."""
    settings = settings_for(emu, tmp_path)
    emu.inject("drop_after", at=2)  # GET /me/calendars, then the POST
    b = backend(emu, settings)
    b.listing({}, None)
    b.close()
    assert [c.name for c in emu.calendars.values()].count("Follow-ups") == 1
    assert b.cursor is not None and b.cursor.calendar == emu.calendar("Follow-ups").id
    assert [s.status for s in emu.api_requests() if s.method == "POST"][-1] == 409


def test_a_calendar_deleted_in_outlook_is_made_again_and_filled_anew(emu: MsEmu,
                                                                     tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    old = emu.calendar("Follow-ups").id
    for event in emu.live(old):
        emu.delete_event(event["id"])
    del emu.calendars[old]  # the user deleted the calendar in Outlook
    listing = backend(emu, settings, readonly=True).listing(known, cursor)
    assert listing.reset and "a sync creates it again" in listing.note
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert listing.reset and listing.items == {} and "created it again" in listing.note
    assert emu.calendar("Follow-ups").id != old
    b.create(uid, item(uid))
    b.close()
    assert set(ours(emu)) == {uid}


# ============================================================================ listing
def test_a_no_op_sync_is_one_request(emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uids = [new_uid(str(n)) for n in range(3)]
    known, cursor = sync(emu, settings, {}, None, create(*uids))
    known, cursor = sync(emu, settings, known, cursor)  # sees its own writes once
    emu.reset_log()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    b.close()
    assert listing.unchanged and listing.items == known
    cal = quote(emu.calendar("Follow-ups").id, safe="")
    assert [(s.method, s.path) for s in emu.api_requests()] == [
        ("GET", f"/v1.0/me/calendars/{cal}/calendarView/delta")]
    assert "$deltatoken" in emu.api_requests()[0].query


def test_deleting_costs_the_next_sync_nothing(emu: MsEmu, tmp_path: Path) -> None:
    """An event we deleted comes back in the delta as removed: not read again."""
    settings = settings_for(emu, tmp_path)
    uids = [new_uid(str(n)) for n in range(6)]
    known, cursor = sync(emu, settings, {}, None, create(*uids))
    known, cursor = sync(emu, settings, known, cursor)

    def drop(b: MicrosoftBackend, items: dict[str, Remote]) -> None:
        for uid in uids[:5]:
            b.delete(items.pop(uid))

    known, cursor = sync(emu, settings, known, cursor, drop)
    emu.reset_log()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert listing.unchanged and set(listing.items) == {uids[5]}
    assert len(emu.api_requests()) == 1, requests(emu)


def test_a_void_delta_link_lists_everything_again_without_duplicates(emu: MsEmu,
                                                                      tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    emu.void_delta_tokens()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert listing.items == known
    with pytest.raises(Conflict):  # listed again, so known: never a second copy
        b.create(uid, item(uid))
    b.close()
    assert len(emu.live("Follow-ups")) == 1
    assert [s.status for s in emu.api_requests()][-3:] == [410, 200, 200]


def test_a_lost_state_adopts_every_event_of_ours_in_and_outside_the_window(
        emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    near, far, past = new_uid("near"), new_uid("far"), new_uid("past")
    days = {near: date(2031, 1, 6), far: date(2040, 5, 1), past: date(2020, 5, 1)}
    known, _ = sync(emu, settings, {}, None,
                    create(near, far, past, text=lambda uid: item(uid, day=days[uid])))
    start, end = window_of(TODAY)
    assert not start <= days[far] < end and not start <= days[past] < end
    emu.add_event("Follow-ups", {"subject": "Dentist", "start": {
        "dateTime": "2031-01-07T10:00:00", "timeZone": "UTC"}, "end": {
        "dateTime": "2031-01-07T11:00:00", "timeZone": "UTC"}})
    b = backend(emu, settings)
    listing = b.listing({}, None)  # the state is lost: no rows, no cursor
    assert listing.items == known and listing.foreign == 1
    for uid in known:
        with pytest.raises(Conflict):
            b.create(uid, item(uid, day=days[uid]))
        assert normalise(b.get(listing.items[uid])) == normalise(item(uid, day=days[uid]))
    b.close()
    assert set(ours(emu)) == set(known)


def test_moves_and_deletions_made_in_outlook_are_seen(emu: MsEmu, tmp_path: Path) -> None:
    from followsync.readback import placed_at

    settings = settings_for(emu, tmp_path)
    moved, gone, kept = new_uid("moved"), new_uid("gone"), new_uid("kept")
    known, cursor = sync(emu, settings, {}, None, create(moved, gone, kept, text=rendered_item))
    known, cursor = sync(emu, settings, known, cursor)
    events = ours(emu)
    emu.edit_event(events[moved]["id"], {  # dragged to 14:30 Berlin time, two days later
        "start": {"dateTime": "2031-01-08T14:30:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2031-01-08T14:45:00", "timeZone": "W. Europe Standard Time"}})
    emu.delete_event(events[gone]["id"])
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert not listing.unchanged
    assert set(listing.items) == {moved, kept}
    assert listing.items[kept] == known[kept]
    assert listing.items[moved].etag != known[moved].etag
    text = b.get(listing.items[moved])
    assert "DTSTART;TZID=Europe/Berlin:20310108T143000" in text
    assert placed_at(text, BERLIN) == "2031-01-08T14:30"
    with pytest.raises(Conflict):  # If-Match: the move is not overwritten
        b.update(known[moved], rendered_item(moved))
    with pytest.raises(Conflict):
        b.update(known[gone], rendered_item(gone))
    b.close()


def test_an_event_moved_out_of_the_window_is_kept_and_edits_there_are_seen(
        emu: MsEmu, tmp_path: Path) -> None:
    """Graph reports an event changed outside the window as removed: it is read, found,
    and kept with its new ETag (never taken for a deletion)."""
    settings = settings_for(emu, tmp_path)
    uid, far = new_uid("moves"), new_uid("far")
    known, cursor = sync(emu, settings, {}, None, create(uid))
    known, cursor = sync(emu, settings, known, cursor,
                         create(far, text=lambda u: item(u, day=date(2040, 1, 1))))
    known, cursor = sync(emu, settings, known, cursor)
    events = ours(emu)
    emu.edit_event(events[uid]["id"], {
        "start": {"dateTime": "2037-01-06T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2037-01-06T09:15:00", "timeZone": "UTC"}})
    emu.edit_event(events[far]["id"], {"subject": "renamed in Outlook"})
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert set(listing.items) == {uid, far} and not listing.unchanged
    assert listing.items[uid].etag != known[uid].etag
    assert listing.items[far].etag != known[far].etag
    assert "DTSTART:20370106T090000Z" in b.get(listing.items[uid])
    assert "SUMMARY:renamed in Outlook" in b.get(listing.items[far])
    b.close()


@pytest.mark.parametrize("count", [1, 6])
def test_an_event_of_ours_restored_in_outlook_is_listed(emu: MsEmu, tmp_path: Path,
                                                        count: int) -> None:
    """Unknown ids in the delta are someone else's unless they carry the followsync
    category and their mark says ours: a few are read one by one, more with one marks
    query."""
    settings = settings_for(emu, tmp_path)
    uids = [new_uid(str(n)) for n in range(count)]
    known, cursor = sync(emu, settings, {}, None, create(*uids))
    known, cursor = sync(emu, settings, known, cursor)
    saved = ours(emu)
    for uid in uids:
        emu.delete_event(saved[uid]["id"])
    known, cursor = sync(emu, settings, known, cursor)
    assert known == {}
    for uid in uids:  # restored (a copy with a new id)
        keys = ("subject", "body", "start", "end", "isAllDay", "isReminderOn", "showAs",
                "categories", "singleValueExtendedProperties")
        emu.add_event("Follow-ups", {k: saved[uid][k] for k in keys})
    emu.add_event("Follow-ups", {"subject": "Dentist", "start": {
        "dateTime": "2031-01-07T10:00:00", "timeZone": "UTC"}, "end": {
        "dateTime": "2031-01-07T11:00:00", "timeZone": "UTC"}})
    emu.reset_log()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert set(listing.items) == set(uids) and not listing.unchanged
    assert listing.foreign == 1
    gets = [r for r in requests(emu) if r[1].startswith("/v1.0/me/events/")]
    # the dentist's appointment carries no `followsync` category: never read
    assert len(gets) == (count if count <= 4 else 0), requests(emu)


def test_the_window_follows_the_day_and_slides_without_duplicates(emu: MsEmu,
                                                                   tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    assert json.loads(cursor or "")["window"] == "2029-01-01/2035-01-01"
    same_year, _ = sync(emu, settings, known, cursor, today=date(2030, 12, 31))
    emu.reset_log()
    b = backend(emu, settings, today=date(2031, 1, 1))
    listing = b.listing(known, cursor)
    assert listing.items == known == same_year
    with pytest.raises(Conflict):
        b.create(uid, item(uid))
    cursor = b.commit()
    b.close()
    assert json.loads(cursor or "")["window"] == "2030-01-01/2036-01-01"
    delta = [s for s in emu.api_requests() if s.path.endswith("/calendarView/delta")]
    assert delta and delta[0].query["startDateTime"] == ["2030-01-01T00:00:00Z"]
    assert len(emu.live("Follow-ups")) == 1


# ============================================================================ conversion
def rendered_on(uid: str, day: date, at: time | None = time(9, 0), alarms: tuple[str, ...] = (
        "0m", "1d")) -> str:
    from followsync.durations import Duration
    from followsync.render import render
    from followsync.rules import FollowUp, Person

    person = Person("Dana Whitfield", "Acme Corp", "President", "dana@acme.example", "", "",
                    "waiting", "")
    lengths = tuple(Duration(int(a[:-1]), a[-1]) for a in alarms)  # type: ignore[arg-type]
    follow_up = FollowUp("dana-acme", "cadence", day, at, Duration(15, "m"), lengths, "event",
                         "ping", "Dana Whitfield: ping", "why", person, 0, 1)
    return render(follow_up, uid=uid, kind="event", zone=BERLIN,
                  stamp=datetime(2030, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(("day", "utc"), [
    (date(2031, 3, 28), "2031-03-28T08:00:00"),  # the Friday before the March change: CET
    (date(2031, 3, 31), "2031-03-31T07:00:00"),  # the Monday after: CEST
    (date(2031, 10, 24), "2031-10-24T07:00:00"),  # before the October change: CEST
    (date(2031, 10, 27), "2031-10-27T08:00:00")])  # after: CET
def test_a_follow_up_across_a_dst_change_lands_at_its_local_time(
        emu: MsEmu, tmp_path: Path, day: date, utc: str) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    text = rendered_on(uid, day)
    known, cursor = sync(emu, settings, {}, None, create(uid, text=lambda _: text))
    event = ours(emu)[uid]
    assert event["start"]["dateTime"].startswith(utc) and event["start"]["timeZone"] == "UTC"
    b = backend(emu, settings)
    b.listing(known, cursor)
    got = b.get(known[uid])
    assert f"DTSTART;TZID=Europe/Berlin:{day:%Y%m%d}T090000" in got
    assert normalise(got) == normalise(text)
    b.close()


def test_an_all_day_item_is_an_all_day_event_read_back_as_dates(emu: MsEmu,
                                                                tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    text = rendered_on(uid, date(2031, 3, 30), at=None)
    known, cursor = sync(emu, settings, {}, None, create(uid, text=lambda _: text))
    event = ours(emu)[uid]
    assert event["isAllDay"] is True
    assert event["start"]["dateTime"].startswith("2031-03-30T00:00:00")
    assert event["end"]["dateTime"].startswith("2031-03-31T00:00:00")
    b = backend(emu, settings)
    b.listing(known, cursor)
    got = b.get(known[uid])
    assert "DTSTART;VALUE=DATE:20310330" in got and "DTEND;VALUE=DATE:20310331" in got
    assert normalise(got) == normalise(text)
    b.close()


def test_one_reminder_the_earliest_alarm_and_one_warning_naming_the_rest(
        emu: MsEmu, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(emu, tmp_path)
    two, three, none = new_uid("two"), new_uid("three"), new_uid("none")
    texts = {two: rendered_on(two, date(2031, 1, 6)),
             three: rendered_on(three, date(2031, 1, 7), alarms=("0m", "2h", "1d")),
             none: rendered_on(none, date(2031, 1, 8), alarms=())}
    b = backend(emu, settings)
    b.listing({}, None)
    with caplog.at_level(logging.WARNING, logger="followsync"):
        remotes = {uid: b.create(uid, texts[uid]) for uid in (two, three, none)}
    b.close()
    warned = [r.getMessage() for r in caplog.records if "one reminder" in r.getMessage()]
    assert warned == [
        "work: Outlook keeps one reminder per event: the earliest alarm is set, not the "
        "alarm at the start",
        "work: Outlook keeps one reminder per event: the earliest alarm is set, not the "
        "alarm 2 hours before"], warned
    events = ours(emu)
    assert (events[two]["isReminderOn"], events[two]["reminderMinutesBeforeStart"]) == (
        True, 1440)
    assert events[three]["reminderMinutesBeforeStart"] == 1440
    assert events[none]["isReminderOn"] is False
    b = backend(emu, settings)
    b.listing({}, None)
    for uid, text in texts.items():
        assert normalise(b.get(remotes[uid])) == normalise(text), uid
    emu.edit_event(events[two]["id"], {"reminderMinutesBeforeStart": 30})
    emu.edit_event(events[none]["id"], {"isReminderOn": True,
                                        "reminderMinutesBeforeStart": 15})
    b.close()
    b = backend(emu, settings)
    listing = b.listing({}, None)
    changed = b.get(listing.items[two])
    assert "TRIGGER:-PT30M" in changed and "TRIGGER:-P1D" not in changed
    assert re.search(r"TRIGGER:(PT0S|P0D)\r", changed)  # the alarm Outlook could not keep
    assert "TRIGGER:-PT15M" in b.get(listing.items[none])
    b.close()


def test_what_outlook_is_sent(emu: MsEmu) -> None:
    uid = new_uid()
    body, unset = to_event(uid, rendered_item(uid), "Europe/Berlin")
    assert body["start"] == {"dateTime": "2031-01-06T08:00:00", "timeZone": "UTC"}
    assert body["showAs"] == "free" and body["isAllDay"] is False
    assert body["body"]["contentType"] == "text"
    assert body["body"]["content"].startswith("Ask about the role")
    props = {p["id"]: p["value"] for p in body["singleValueExtendedProperties"]}
    assert props[MARK] == uid and json.loads(props[DATA])["tzid"] == "Europe/Berlin"
    assert unset == ["the alarm at the start"]
    todo = rendered_item(uid, "todo")
    with pytest.raises(ComponentRefused):
        to_event(uid, todo)


# ============================================================================ HTTP
class FakeTime:
    """The session's sleep and clocks: a wait only moves the clock (no test sleeps)."""

    def __init__(self, wall: float = 1_900_000_000.0) -> None:
        self.now, self.wall, self.waits = 0.0, wall, list[float]()

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        self.wall += seconds


def paced(emu: MsEmu, settings: MicrosoftSettings, fake: FakeTime,
          seed: int = 7) -> MicrosoftBackend:
    made = backend(emu, settings)
    made.session = ApiSession(settings.graph_base, made.tokens, sleep=fake.sleep,
                              clock=lambda: fake.now, label="work", verify=emu.ca_path,
                              service="Microsoft", retryable=microsoft_retryable,
                              backoff=MICROSOFT_BACKOFF)
    made.session.dav.wall = lambda: fake.wall
    made.session.dav.rand = random.Random(seed).random
    return made


def test_retry_after_is_honoured_on_429_and_503(emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    sync(emu, settings, {}, None)
    fake = FakeTime()
    emu.retry_after = "7"
    emu.inject("429", at=2)
    emu.inject("503", at=3)
    paced(emu, settings, fake).listing({}, None)  # calendars, then delta twice refused
    assert fake.waits == [7.0, 7.0]
    fake = FakeTime()
    emu.retry_after = email.utils.formatdate(fake.wall + 20, usegmt=True)
    emu.inject("429", at=2)
    paced(emu, settings, fake).listing({}, None)
    assert len(fake.waits) == 1 and 19.0 <= fake.waits[0] <= 20.0
    fake = FakeTime()
    emu.retry_after = None
    for n in range(1, 40):
        emu.inject("429", at=n)
    with pytest.raises(TargetError, match=r"Microsoft keeps failing: HTTP 429") as caught:
        paced(emu, settings, fake).listing({}, None)
    assert caught.value.hint == "the next sync retries"
    assert len(fake.waits) == MICROSOFT_BACKOFF.retries
    assert 1.0 <= fake.waits[0] <= 2.0 and fake.waits[:5] == sorted(fake.waits[:5])
    assert sum(fake.waits) <= MICROSOFT_BACKOFF.budget


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop", "drop_after"])
def test_a_create_survives_a_fault_without_a_duplicate(emu: MsEmu, tmp_path: Path,
                                                       fault: str) -> None:
    settings = settings_for(emu, tmp_path)
    _known, cursor = sync(emu, settings, {}, None)
    uid = new_uid()
    b = backend(emu, settings)
    b.listing({}, cursor)
    emu.inject(fault, at=1)  # the POST
    try:
        remote = b.create(uid, item(uid))
    except Conflict:  # drop_after: it landed, its answer was lost; found by its mark
        assert fault == "drop_after"
        found = b.find(uid)
        assert found is not None
        remote = found
    b.close()
    assert [e["id"] for e in emu.live("Follow-ups")] == [remote.href]
    posts = [s for s in emu.api_requests() if s.method == "POST" and s.path.endswith("/events")]
    assert len({s.body for s in posts}) == 1  # the same transactionId every time


def test_a_412_on_a_write_is_a_conflict(emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    b = backend(emu, settings)
    b.listing(known, cursor)
    emu.inject("412", at=1)
    with pytest.raises(Conflict):
        b.update(known[uid], item(uid, "v2", sequence=1))
    emu.inject("412", at=1)
    with pytest.raises(Conflict):
        b.delete(known[uid])
    other = new_uid("other")
    emu.inject("412", at=1)  # (Graph answers 412 now and then without If-Match too)
    with pytest.raises(Conflict):
        b.create(other, item(other))
    b.close()
    assert set(ours(emu)) == {uid}


def test_a_refused_token_names_the_sign_in(emu: MsEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    b = backend(emu, settings, tokens=FixedBearer("not-a-token"))
    with pytest.raises(TargetError) as caught:
        b.listing({}, None)
    assert "Microsoft refused the access token" in str(caught.value)
    assert caught.value.hint == "run `followsync auth work`"
    assert caught.value.exit_code == 3


# ============================================================================ the command line
NOW = "2030-12-01T10:00"
LEADS = """version: 1
leads:
  dana: {name: Dana Whitfield, last_contact: 2030-11-01}
  sam: {name: Sam Ortiz, last_contact: 2030-10-15, status: waiting}
  lee: {name: Lee Park, last_contact: 2030-11-20}
"""


@pytest.fixture
def signed_in(emu: MsEmu, monkeypatch: pytest.MonkeyPatch) -> MsEmu:
    """The command line's tokens are msauth's (read from the state folder, as after
    `followsync auth`; `project` keeps them there); no test sleeps."""
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    monkeypatch.setattr("followsync.backends.davhttp.time.sleep", lambda _: None)
    monkeypatch.delenv("FOLLOWSYNC_NOW", raising=False)
    return emu


def project(folder: Path, emu: MsEmu, calendar: str = "Follow-ups", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.yaml").write_text(LEADS)
    config = folder / "config.yaml"
    config.write_text(f"leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n{extra}"
                      "targets:\n  - name: work\n    type: microsoft\n"
                      f"    calendar: {calendar}\n    client_id: {emu.client_id}\n"
                      f"    endpoint: {emu.url}\n    verify: {emu.ca_path}\n    timeout: 5\n")
    from followsync.msauth import store_for

    access, refresh = emu.issue_tokens(["Calendars.ReadWrite"])
    store_for(MicrosoftSettings("work", emu.client_id, folder / "state", endpoint=emu.url)
              ).keep(refresh, {"graph_": (access, 86400.0)})
    return config


def run(config: Path, *args: str, now: str = NOW) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "--now", now, *args])
    return code, out.getvalue() + err.getvalue()


PROBE = """
import json, sys
from followsync.cli import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted({m.split(".")[0] for m in sys.modules} & {
    "msal", "requests", "cryptography", "icalendar", "pydantic", "msgraph", "kiota"})]))
"""


def heavy_modules_of_a_sync(config: Path) -> list[str]:
    """What a `followsync sync` in a fresh interpreter loaded of the heavy libraries."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", PROBE, "--config", str(config), "--now", NOW,
                           "sync"], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(root)})
    code, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stdout + done.stderr
    return list(heavy)


def test_plan_sync_calendars_and_a_no_op_of_one_request(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out = run(config, "plan")
    assert code == 0, out
    assert [c.name for c in emu.calendars.values()] == ["Calendar"]  # plan makes none
    code, out = run(config, "sync")
    assert code == 0, out
    assert "3 created" in out
    assert len(ours(emu)) == 3
    run(config, "sync")  # sees its own writes
    emu.reset_log()
    code, out = run(config, "sync")
    assert code == 0, out
    assert len(emu.api_requests()) == 1, requests(emu)
    assert emu.api_requests()[0].path.endswith("/calendarView/delta")
    assert emu.token_requests() == []  # the access token kept by the sign-in
    assert heavy_modules_of_a_sync(config) == []
    code, out = run(config, "calendars")
    assert code == 0, out
    assert re.search(r"\* Follow-ups +owner", out) and "Calendar" in out


def test_moves_and_deletions_in_outlook_are_respected_and_max_deletes_holds(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu, extra="safety: {max_deletes: 1}\n")
    assert run(config, "sync")[0] == 0
    events = sorted(ours(emu).values(), key=lambda e: e["subject"])
    gone, moved = events[0], events[1]
    emu.delete_event(gone["id"])
    emu.edit_event(moved["id"], {
        "start": {"dateTime": "2030-12-20T14:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-12-20T14:15:00", "timeZone": "UTC"}})
    before = {e["id"]: e["@odata.etag"] for e in emu.live("Follow-ups")}
    code, out = run(config, "sync")
    assert code == 0, out
    assert {e["id"]: e["@odata.etag"] for e in emu.live("Follow-ups")} == before  # kept
    code, out = run(config, "agenda", "--days", "30")
    assert "2030-12-20" in out
    (tmp_path / "leads.yaml").write_text(LEADS.split("  sam:")[0])  # two leads go
    code, out = run(config, "sync")
    assert code != 0 and "max_deletes" in out, out
    assert {e["id"] for e in emu.live("Follow-ups")} == set(before)


def test_one_reminder_warning_per_sync_and_a_lost_state_adopts_without_duplicates(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    leads = tmp_path / "leads.yaml"
    leads.write_text(leads.read_text().replace("leads:\n", "defaults:\n  alarms: [0m, 1d]\n"
                                               "leads:\n", 1))
    code, out = run(config, "sync", now="2030-11-02T08:00")
    assert code == 0 and "3 created" in out, out
    assert out.count("Outlook keeps one reminder per event") == 1, out
    assert "the earliest alarm is set, not the alarm at the start" in out
    # the earliest alarm still ahead: a day before (for one due today: at the start)
    assert 1440 in {e["reminderMinutesBeforeStart"] for e in ours(emu).values()}
    before = {uid: e["id"] for uid, e in ours(emu).items()}
    (tmp_path / "state" / "state.sqlite").unlink()  # the state is lost (the sign-in is not)
    code, out = run(config, "sync", now="2030-11-02T08:00")
    assert code == 0 and "3 unchanged" in out, out
    assert {uid: e["id"] for uid, e in ours(emu).items()} == before  # adopted, none twice
    code, out = run(config, "sync", now="2030-11-20T08:00")  # overdue ones are rewritten
    assert code == 0 and " 0 updated" not in out, out
    assert "Outlook keeps one reminder" not in out, out  # named once: when made


def test_a_year_later_the_window_slides_without_duplicates(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    assert run(config, "sync", now="2030-12-31T10:00")[0] == 0
    first = set(ours(emu))
    code, out = run(config, "sync", now="2031-01-01T10:00")
    assert code == 0, out
    assert set(ours(emu)) == first  # the events are rewritten (overdue) but never twice
    windows = {s.query["startDateTime"][0] for s in emu.api_requests()
               if "startDateTime" in s.query}
    assert windows == {"2029-01-01T00:00:00Z", "2030-01-01T00:00:00Z"}


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faults=st.dictionaries(st.integers(1, 14), st.sampled_from(FAULTS), max_size=4))
def test_faults_then_a_clean_sync_converge_without_duplicates(
        emu: MsEmu, signed_in: MsEmu, tmp_path_factory: pytest.TempPathFactory,
        faults: dict[int, str]) -> None:
    """Drops, 5xx, 412, 429 and 410 at random requests of a first sync, of a sync after a
    lead changes and of one after a foreign event appears; then clean syncs converge: one
    event per follow-up, none twice, the foreign event untouched."""
    folder = tmp_path_factory.mktemp("fault")
    name = f"F-{folder.name}"
    config = project(folder, emu, calendar=name)
    emu.add_calendar(name)
    foreign = emu.add_event(name, {"subject": "Dentist", "isAllDay": True, "start": {
        "dateTime": "2030-12-05T00:00:00", "timeZone": "UTC"}, "end": {
        "dateTime": "2030-12-06T00:00:00", "timeZone": "UTC"}})
    etag = next(e for e in emu.live(name) if e["id"] == foreign)["@odata.etag"]
    with mock.patch("followsync.backends.davhttp.time.sleep"):
        for n, kind in faults.items():
            emu.inject(kind, at=n)
        run(config, "sync")
        (folder / "leads.yaml").write_text(LEADS.replace("2030-11-20", "2030-11-25")
                                           .replace("  sam:", "  kim: {name: Kim Lo, "
                                                    "last_contact: 2030-11-10}\n  sam:"))
        run(config, "sync")
        run(config, "sync")
        emu.faults.clear()
        for _ in range(2):
            code, out = run(config, "sync")
        assert code == 0, out
    assert len(ours(emu, name)) == 4, out  # (ours() fails on a UID twice)
    assert next(e for e in emu.live(name) if e["id"] == foreign)["@odata.etag"] == etag
    emu.reset_log()
    code, out = run(config, "sync")
    assert code == 0, out
    assert len(emu.api_requests()) == 1, out  # converged: the next sync is a no-op


def test_what_an_event_holds_is_read_as_data_never_as_structure(emu: MsEmu,
                                                                tmp_path: Path) -> None:
    """An event's properties are hostile input: lines that would open or close a part, an
    alarm with more in it, a reminder that is not a number, a body that is not an object,
    and a marked event without an id are skipped, never a traceback."""
    from followsync.backends.microsoft import from_event

    uid = new_uid()
    body, _ = to_event(uid, rendered_item(uid))
    data = json.loads(body["singleValueExtendedProperties"][1]["value"])
    data["rest"] += ["END:VEVENT\r\nBEGIN:VEVENT", "END:VEVENT", "X-OK:1"]
    data["alarms"].append("BEGIN:VALARM\r\nEND:VALARM\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\n")
    event = {**body, "id": "x", "reminderMinutesBeforeStart": "soon", "body": ["?"],
             "singleValueExtendedProperties": [
                 {"id": MARK, "value": uid}, {"id": DATA, "value": json.dumps(data)}]}
    text = from_event(event)
    assert text.count("BEGIN:VEVENT") == 1 and text.count("END:VEVENT") == 1
    assert "X-OK:1" in text and "\r\nDESCRIPTION:\r\n" in text  # (the body: none)
    settings = settings_for(emu, tmp_path)
    b = backend(emu, settings)
    b.listing({}, None)
    seen = _seen_of(b, [{**event, "id": None}, {"subject": "no mark", "id": "y"}])
    assert seen == {}
    b.close()


def _seen_of(b: MicrosoftBackend, events: list[dict[str, Any]]) -> dict[str, Remote]:
    from followsync.backends.microsoft import _Seen

    seen = _Seen()
    b._take(events, seen)
    return seen.items


class Looping:
    """A server whose every page names a next one (the same): an ApiSession's stand-in."""

    def __init__(self) -> None:
        self.count = 0

    def call(self, method: str, path: str, body: Any = None, headers: Any = None,
             **_: Any) -> Any:
        from followsync.backends.davhttp import Response

        self.count += 1
        page = {"value": [{"id": "x", "name": "Follow-ups", "canEdit": True}],
                "@odata.nextLink": "https://127.0.0.1:1/v1.0/me/calendars?$skip=1"}
        return Response(200, {}, json.dumps(page).encode())

    def close(self) -> None:
        pass


@pytest.mark.parametrize("where", ["calendars", "delta"])
def test_a_list_that_never_ends_is_a_target_error(tmp_path: Path, where: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("followsync.backends.microsoft.MAX_PAGES", 5)
    settings = MicrosoftSettings("work", "c", tmp_path, endpoint="https://127.0.0.1:1",
                                 calendar="Follow-ups")
    looping = Looping()
    b = MicrosoftBackend(settings, tokens=FixedBearer("t"), session=looping,  # type: ignore[arg-type]
                         today=TODAY)
    cursor = None if where == "calendars" else json.dumps(
        {"calendar": "x", "delta": "https://127.0.0.1:1/v1.0/d", "window": "2029-01-01/2035-01-01"})
    with pytest.raises(TargetError, match="does not end"):
        b.listing({}, cursor)
    assert looping.count == 5


def test_every_event_carries_the_followsync_category_and_a_colour_given_in_outlook_stays(
        emu: MsEmu, tmp_path: Path) -> None:
    """SPEC's CATEGORIES `followsync` is Outlook's category (what a delta page shows of an
    event, so others' events changed there cost no request); a category the user adds to
    our event in Outlook survives our next rewrite of it."""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    event = ours(emu)[uid]
    assert event["categories"] == ["followsync"]
    emu.edit_event(event["id"], {"categories": ["followsync", "Red category"]})

    def rewrite(b: MicrosoftBackend, items: dict[str, Remote]) -> None:
        b.get(items[uid])
        items[uid] = b.update(items[uid], item(uid).replace("SUMMARY:", "SUMMARY:New "))
    known, cursor = sync(emu, settings, known, cursor, rewrite)
    event = ours(emu)[uid]
    assert event["subject"].startswith("New ")
    assert event["categories"] == ["followsync", "Red category"]


@pytest.mark.parametrize("fault", ["504_after", "drop_after"])
def test_a_create_that_landed_without_an_answer_is_not_sent_again(
        emu: MsEmu, tmp_path: Path, fault: str) -> None:
    """A 504 (or a lost answer) may come after the event was made: the create is not sent
    again before followsync looked for its mark (even where Graph would not drop a repeated
    transactionId: its de-duplication is undocumented)."""
    emu.dedupe = False
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None)
    b = backend(emu, settings)
    b.listing(known, cursor)
    emu.inject(fault, at=1)
    with pytest.raises(Conflict):  # it landed: the sync re-reads it (find, get)
        b.create(uid, item(uid))
    assert b.find(uid) is not None
    b.close()
    assert len(ours(emu)) == 1


def test_a_passing_404_on_the_delta_link_keeps_the_state_and_a_deletion_in_outlook(
        emu: MsEmu, tmp_path: Path) -> None:
    """A 404 on the delta link while the calendar is still there is no deleted calendar: the
    state's rows stay (no reset), so an event the user deleted is not made again."""
    settings = settings_for(emu, tmp_path)
    uids = [new_uid("a"), new_uid("b")]
    known, cursor = sync(emu, settings, {}, None, create(*uids))
    emu.delete_event(ours(emu)[uids[0]]["id"])
    emu.inject("404", at=1)
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    b.close()
    assert not listing.reset and not listing.fresh
    assert set(listing.items) == {uids[1]}


def test_a_kept_delta_link_graph_no_longer_reads_lists_again(emu: MsEmu,
                                                              tmp_path: Path) -> None:
    """A 400 on the kept delta link (a token Graph cannot read) is a void link: everything is
    listed again, not an error every sync until the state is deleted."""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    kept = json.loads(cursor or "")
    kept["delta"] = re.sub(r"(\$deltatoken=)[^&]+", r"\1garbled", kept["delta"], flags=re.I)
    assert "garbled" in kept["delta"]
    b = backend(emu, settings)
    listing = b.listing(known, json.dumps(kept))
    b.close()
    assert set(listing.items) == {uid}


def test_an_empty_etag_is_never_sent_as_if_match(emu: MsEmu, tmp_path: Path) -> None:
    """A delta entry may be partial (no @odata.etag): its changeKey stands in, and a Remote
    without an ETag is a Conflict (re-read), never an unconditional write."""
    from followsync.backends.microsoft import _etag_of

    assert _etag_of({"changeKey": "CK1"}) == 'W/"CK1"'
    assert _etag_of({"@odata.etag": 'W/"A"', "changeKey": "B"}) == 'W/"A"'
    assert _etag_of({}) == ""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    b = backend(emu, settings)
    b.listing(known, cursor)
    emu.reset_log()
    with pytest.raises(Conflict):
        b.update(Remote(known[uid].href, ""), item(uid))
    with pytest.raises(Conflict):
        b.delete(Remote(known[uid].href, ""))
    b.close()
    assert not [r for r in requests(emu) if r[0] in ("PATCH", "DELETE")]


def test_an_error_names_its_target_once(emu: MsEmu, signed_in: MsEmu,
                                                    tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    emu.revoke_refresh_tokens()
    emu.expire_access_tokens()
    for command in ("calendars", "sync", "plan"):
        code, out = run(config, command)
        assert code == 3, out
        assert "work: target work" not in out and "target work" in out, (command, out)


def test_a_certificate_not_trusted_says_to_give_the_ca_as_verify(emu: MsEmu, signed_in: MsEmu,
                                                                   tmp_path: Path) -> None:
    """The server was reached; only its certificate is unknown: no "unreachable", no "the
    next sync retries" (it would not help)."""
    config = project(tmp_path, emu)
    config.write_text(re.sub(r"(?m)^    verify: .*\n", "", config.read_text()))
    code, out = run(config, "sync")
    assert code == 3, out
    assert "certificate of 127.0.0.1 is not trusted" in out and "`verify:`" in out, out
    assert "unreachable" not in out, out
