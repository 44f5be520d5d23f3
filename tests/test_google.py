"""The google target against the emulation (tests/googleemu.py): what the shared contract
suite does not cover — request counts, sync-token loss, re-created ids, reminders, time zones,
moves made in Google, token refresh and invalid_grant, back-off, calendars by name."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from followsync.backends.apisession import GOOGLE_BACKOFF, ApiSession
from followsync.backends.google import GoogleBackend, event_id_for, from_event
from followsync.errors import Conflict, TargetError
from followsync.googleauth import GoogleSettings, TokenStore
from followsync.model import Remote
from followsync.render import normalise
from tests.googleemu import GoogleEmu, event_path
from tests.test_backend_contract import item, new_uid, rendered_item


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleEmu]:
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    made = GoogleEmu().start()
    try:
        yield made
    finally:
        made.stop()


def settings_for(emu: GoogleEmu, tmp_path: Path, calendar: str = "Follow-ups",
                 signed_in: bool = True) -> GoogleSettings:
    client = tmp_path / "client.json"
    client.write_text(json.dumps({"installed": {"client_id": emu.client_id,
                                                "client_secret": emu.client_secret}}))
    settings = GoogleSettings("work", calendar, client, tmp_path / "state", endpoint=emu.url,
                              zone="Europe/Berlin")
    if signed_in:
        refresh, _ = emu.issue_tokens()
        TokenStore(settings, emu.client_id).keep_refresh(refresh)
    return settings


def backend(settings: GoogleSettings, readonly: bool = False) -> GoogleBackend:
    made = GoogleBackend(settings, readonly=readonly)
    made.session = ApiSession(settings.api_base, made.tokens, sleep=lambda _: None)
    return made


def sync(settings: GoogleSettings, known: dict[str, Remote], cursor: str | None,
         work: Any = None) -> tuple[dict[str, Remote], str | None]:
    b = backend(settings)
    listing = b.listing(known, cursor)
    items = dict(listing.items)
    if work:
        work(b, items)
    cursor = b.commit()
    b.close()
    return items, cursor


def test_the_calendar_is_found_by_name_or_created_but_not_by_a_readonly_backend(
        emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    b = backend(settings, readonly=True)
    listing = b.listing({}, None)
    assert listing.fresh and "does not exist yet" in listing.note
    assert [c.summary for c in emu.calendars.values()] == ["me@example.com"]
    b = backend(settings)
    b.listing({}, None)
    made = emu.calendar("Follow-ups")
    assert made.time_zone == "Europe/Berlin"
    uid = new_uid()
    b.create(uid, item(uid))
    b.close()
    b = backend(settings)  # found again by name, not created twice
    assert set(b.listing({}, None).items) == {uid}
    assert [c.summary for c in emu.calendars.values()].count("Follow-ups") == 1
    primary = backend(settings_for(emu, tmp_path, calendar="primary"))
    assert primary.listing({}, None).items == {}
    assert primary.cursor is not None and primary.cursor.calendar == "primary"


def test_a_no_op_sync_is_one_request_and_needs_no_token_request(emu: GoogleEmu,
                                                                 tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uids = [new_uid(str(n)) for n in range(3)]

    def write(b: GoogleBackend, items: dict[str, Remote]) -> None:
        for uid in uids:
            items[uid] = b.create(uid, item(uid))

    known, cursor = sync(settings, {}, None, write)
    known, cursor = sync(settings, known, cursor)  # sees its own writes once
    emu.reset_log()
    b = backend(settings)
    listing = b.listing(known, cursor)
    b.close()
    assert listing.unchanged and listing.items == known
    assert [(s.method, s.path) for s in emu.requests] == [
        ("GET", event_path(emu.calendar("Follow-ups").id))]
    assert "syncToken" in emu.requests[0].query


def test_a_void_sync_token_lists_everything_again_without_duplicates(emu: GoogleEmu,
                                                                      tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(settings, {}, None,
                         lambda b, items: items.update({uid: b.create(uid, item(uid))}))
    emu.void_sync_tokens()
    b = backend(settings)
    listing = b.listing(known, cursor)
    assert listing.items == known
    with pytest.raises(Conflict):  # listed again, so known: never a second copy
        b.create(uid, item(uid))
    b.close()
    assert len(emu.live(emu.calendar("Follow-ups").id)) == 1
    assert [s.query.get("syncToken") is not None for s in emu.api_requests()[-2:]] == [
        True, False]


def test_an_id_taken_by_a_deleted_event_gets_a_generation_suffix(emu: GoogleEmu,
                                                                  tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(settings, {}, None,
                         lambda b, items: items.update({uid: b.create(uid, item(uid))}))
    assert known[uid].href == event_id_for(uid)
    known, cursor = sync(settings, known, cursor, lambda b, items: b.delete(items.pop(uid)))
    again: dict[str, Remote] = {}
    known, cursor = sync(settings, known, cursor,
                         lambda b, items: again.update({uid: b.create(uid, item(uid))}))
    assert again[uid].href == event_id_for(uid) + "g1"
    known, cursor = sync(settings, again, cursor)
    assert known == again


def test_reminders_time_zones_and_all_day_items_round_trip(emu: GoogleEmu, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    settings = settings_for(emu, tmp_path)
    timed, allday, many = new_uid("t"), new_uid("d"), new_uid("m")
    timed_text = rendered_item(timed)
    allday_text = item(allday).replace("DTSTART:20310106T090000Z", "DTSTART;VALUE=DATE:20310106"
                                       ).replace("DTEND:20310106T091500Z",
                                                 "DTEND;VALUE=DATE:20310107")
    alarms = "".join("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Dana Whitfield: Ask about "
                     f"the role\r\nTRIGGER:-PT{n}H\r\n"
                     "END:VALARM\r\n" for n in range(1, 8))
    many_text = rendered_item(many).replace("BEGIN:VALARM", alarms + "BEGIN:VALARM", 1)
    b = backend(settings)
    b.listing({}, None)
    with caplog.at_level(logging.WARNING, logger="followsync"):
        remotes = {uid: b.create(uid, text) for uid, text in
                   ((timed, timed_text), (allday, allday_text), (many, many_text))}
    b.close()
    assert "more alarms than Google Calendar's five reminders" in caplog.text
    events = {e["extendedProperties"]["private"]["followsync_uid"]: e
              for e in emu.live(emu.calendar("Follow-ups").id)}
    assert events[timed]["start"] == {"dateTime": "2031-01-06T09:00:00+01:00",
                                      "timeZone": "Europe/Berlin"}
    assert events[timed]["reminders"] == {"useDefault": False, "overrides": [
        {"method": "popup", "minutes": 0}, {"method": "popup", "minutes": 1440}]}
    assert events[allday]["start"] == {"date": "2031-01-06"}
    assert [o["minutes"] for o in events[many]["reminders"]["overrides"]] == [
        60, 120, 180, 240, 300]
    b = backend(settings)
    b.listing({}, None)
    for uid, text in ((timed, timed_text), (allday, allday_text), (many, many_text)):
        assert normalise(b.get(remotes[uid])) == normalise(text), uid
    b.close()


def test_an_event_moved_in_google_reads_as_moved(emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    text = rendered_item(uid)
    known, cursor = sync(settings, {}, None,
                         lambda b, items: items.update({uid: b.create(uid, text)}))
    cal = emu.calendar("Follow-ups").id
    event = emu.live(cal)[0]
    event["start"] = {"dateTime": "2031-01-08T14:30:00+01:00", "timeZone": "Europe/Berlin"}
    event["end"] = {"dateTime": "2031-01-08T14:45:00+01:00", "timeZone": "Europe/Berlin"}
    emu.put_event(cal, event, event["id"])  # the user drags it in Google Calendar
    b = backend(settings)
    listing = b.listing(known, cursor)
    assert not listing.unchanged and listing.items[uid].etag != known[uid].etag
    moved = b.get(listing.items[uid])
    assert normalise(moved) != normalise(text)
    assert "DTSTART;TZID=Europe/Berlin:20310108T143000" in moved
    from zoneinfo import ZoneInfo

    from followsync.readback import placed_at

    assert placed_at(moved, ZoneInfo("Europe/Berlin")) == "2031-01-08T14:30"
    with pytest.raises(Conflict):
        b.update(known[uid], text)
    b.close()


def test_an_expired_access_token_is_refreshed_and_cached(emu: GoogleEmu,
                                                         tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    sync(settings, {}, None)
    token_requests = [s for s in emu.requests if s.path == "/token"]
    assert len(token_requests) == 1  # the first run refreshes (only a refresh token is kept)
    sync(settings, {}, None)
    assert len([s for s in emu.requests if s.path == "/token"]) == 1  # cached, still valid
    emu.expire_access_tokens()  # e.g. revoked, or the clock moved on
    sync(settings, {}, None)  # 401 → one refresh → the request again
    assert len([s for s in emu.requests if s.path == "/token"]) == 2
    state = tmp_path / "state" / "google-work.json"
    assert state.stat().st_mode & 0o777 == 0o600


def test_invalid_grant_says_what_to_do(emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    emu.invalid_grant = True
    with pytest.raises(TargetError) as caught:
        sync(settings, {}, None)
    assert caught.value.exit_code == 3
    text = f"{caught.value} {caught.value.hint}"
    assert "invalid_grant" in text and "followsync auth work" in text
    assert "Testing" in text and "7 days" in text and "publish" in text.lower()


def test_not_signed_in_names_the_command(emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path, signed_in=False)
    with pytest.raises(TargetError) as caught:
        sync(settings, {}, None)
    assert "followsync auth work" in caught.value.hint


@pytest.mark.parametrize("fault", ["403rate", "429", "500", "503", "drop", "drop_after"])
def test_rate_limits_server_errors_and_drops_are_retried(emu: GoogleEmu, tmp_path: Path,
                                                         fault: str) -> None:
    settings = settings_for(emu, tmp_path)
    _known, cursor = sync(settings, {}, None)
    uid = new_uid()
    emu.faults[emu.api_number + 2] = fault  # the insert, after the listing
    b = backend(settings)
    b.listing({}, cursor)
    try:
        remote = b.create(uid, item(uid))
    except Conflict:  # drop_after: the insert landed, its answer was lost; 409 on the retry
        assert fault == "drop_after"
        found = b.find(uid)
        assert found is not None
        remote = found
    b.close()
    assert [e["id"] for e in emu.live(emu.calendar("Follow-ups").id)] == [remote.href]


def test_a_permanent_rate_limit_is_a_target_error(emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    sync(settings, {}, None)
    for n in range(1, 10):
        emu.faults[emu.api_number + n] = "403rate"
    with pytest.raises(TargetError, match="rateLimitExceeded"):
        sync(settings, {}, None)


class FakeTime:
    """The session's sleep and clocks: a wait only moves the clock (no test sleeps)."""

    def __init__(self, wall: float = 1_900_000_000.0) -> None:
        self.now, self.wall, self.waits = 0.0, wall, list[float]()

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        self.wall += seconds


def paced(settings: GoogleSettings, fake: FakeTime, seed: int = 7) -> GoogleBackend:
    made = GoogleBackend(settings)
    made.session = ApiSession(settings.api_base, made.tokens, sleep=fake.sleep,
                              clock=lambda: fake.now, label="work")
    made.session.dav.wall = lambda: fake.wall
    made.session.dav.rand = random.Random(seed).random
    return made


@pytest.mark.parametrize("fault", ["429", "403rate"])
def test_google_rate_limits_back_off_exponentially_with_jitter_then_give_up(
        emu: GoogleEmu, tmp_path: Path, fault: str) -> None:
    """Google's advice: waits from about 1 s, doubling to 32–64 s, jittered; a bounded
    number of retries and a bounded total (a few minutes), then a clear error."""
    settings = settings_for(emu, tmp_path)
    sync(settings, {}, None)
    start = emu.api_number
    emu.faults.update({start + n: fault for n in range(1, 40)})
    fake = FakeTime()
    with pytest.raises(TargetError, match=r"Google keeps failing: HTTP (429|403) "
                       r"\(rateLimitExceeded\)") as caught:
        paced(settings, fake).listing({}, None)
    assert caught.value.hint == "the next sync retries"
    waits = fake.waits
    assert len(waits) == GOOGLE_BACKOFF.retries == 8
    assert emu.api_number - start == len(waits) + 1  # each wait, then one more request
    for n, wait in enumerate(waits):  # within [½, 1] of min(64, 2 · 2^n)
        step = min(64.0, 2.0 * 2 ** n)
        assert step / 2 <= wait <= step, (n, waits)
    assert 1.0 <= waits[0] <= 2.0 and 32.0 <= waits[-1] <= 64.0
    assert waits[:5] == sorted(waits[:5])  # growing (the doubling outgrows the jitter)
    assert len({round(w / min(64.0, 2.0 * 2 ** n), 6) for n, w in enumerate(waits)}) > 1
    assert 60.0 < sum(waits) <= GOOGLE_BACKOFF.budget == 300.0
    other = FakeTime()
    emu.faults.update({emu.api_number + n: fault for n in range(1, 40)})
    with pytest.raises(TargetError):
        paced(settings, other, seed=8).listing({}, None)
    assert other.waits != waits  # two clients that failed together do not return together


def test_google_retry_after_is_honoured_in_seconds_or_as_a_date(
        emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    sync(settings, {}, None)
    fake = FakeTime()
    emu.retry_after = "7"
    emu.faults.update({emu.api_number + 2: "429", emu.api_number + 3: "503"})
    paced(settings, fake).listing({}, None)  # calendarList, then events.list twice refused
    assert fake.waits == [7.0, 7.0]
    fake = FakeTime()
    emu.retry_after = email.utils.formatdate(fake.wall + 20, usegmt=True)
    emu.faults[emu.api_number + 2] = "429"
    paced(settings, fake).listing({}, None)
    assert len(fake.waits) == 1 and 19.0 <= fake.waits[0] <= 20.0
    # a Retry-After past the whole budget: no use waiting, the sync says so at once
    fake = FakeTime()
    emu.retry_after = "3600"
    emu.faults[emu.api_number + 2] = "429"
    with pytest.raises(TargetError, match="HTTP 429"):
        paced(settings, fake).listing({}, None)
    assert fake.waits == []


def test_google_not_reached_is_retried_for_seconds_not_minutes(
        emu: GoogleEmu, tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    sync(settings, {}, None)  # the access token is kept: no token request below
    fake = FakeTime()
    made = paced(settings, fake)
    emu.stop()
    with pytest.raises(TargetError, match="unreachable: connection refused"):
        made.listing({}, None)
    assert len(fake.waits) == 4 and sum(fake.waits) <= 4.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from followsync.backends.davhttp import DAV_BACKOFF, retry_after_seconds

    now = 1_900_000_000.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    for junk in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"):
        assert retry_after_seconds(junk, now) is None, junk
    # CalDAV's policy is as it was: 0.25 s doubling to 30 s, jitter of up to half
    assert DAV_BACKOFF.delay(1, None, now, 0.0) == 0.25
    assert DAV_BACKOFF.delay(3, None, now, 0.5) == 0.75
    assert DAV_BACKOFF.delay(20, None, now, 0.0) == 30.0
    assert GOOGLE_BACKOFF.delay(1, "7", now, 0.9) == 7.0


def test_foreign_events_read_as_foreign_text(emu: GoogleEmu, tmp_path: Path) -> None:
    event = {"summary": "Dentist", "start": {"date": "2031-01-06"},
             "end": {"date": "2031-01-07"}, "updated": "2030-01-01T00:00:00Z",
             "iCalUID": "abc@example.com"}
    text = from_event(event)
    assert "UID:abc@example.com" in text and "X-FOLLOWSYNC" not in text
    assert "DTSTART;VALUE=DATE:20310106" in text
    assert date(2031, 1, 6).isoformat() in json.dumps(event)


def test_the_refresh_token_goes_to_a_working_keyring(
        emu: GoogleEmu, tmp_path: Path, keyring_stand_in: dict[tuple[str, str], str]) -> None:
    """With a keyring backend that works, the refresh token is kept there and not in the
    file; the file keeps only the short-lived access token. (A stand-in keyring module: the
    real one would write to the desktop's keyring.)"""
    kept = keyring_stand_in
    settings = settings_for(emu, tmp_path, signed_in=False)
    refresh, _ = emu.issue_tokens()
    store = TokenStore(settings, emu.client_id)
    assert store.keep_refresh(refresh) == "the keyring"
    assert list(kept.values()) == [refresh]
    sync(settings, {}, None)
    assert refresh not in store.path.read_text()
    assert store.path.stat().st_mode & 0o777 == 0o600
    ring = sys.modules["keyring"]  # (the stand-in) with no working backend: the file
    ring.get_keyring = sys.modules["keyring.backends.fail"].Keyring  # type: ignore[attr-defined]
    assert store.keep_refresh(refresh) == str(store.path)
    assert refresh in store.path.read_text()


def test_a_calendar_deleted_in_google_is_made_again_and_filled_anew(emu: GoogleEmu,
                                                                    tmp_path: Path) -> None:
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(settings, {}, None,
                         lambda b, items: items.update({uid: b.create(uid, item(uid))}))
    old = emu.calendar("Follow-ups").id
    del emu.calendars[old]  # the user deleted the calendar in Google
    b = backend(settings, readonly=True)
    listing = b.listing(known, cursor)
    assert listing.reset and "a sync creates it again" in listing.note
    assert "Follow-ups" not in [c.summary for c in emu.calendars.values()]
    b = backend(settings)
    listing = b.listing(known, cursor)
    assert listing.reset and listing.items == {} and "created it again" in listing.note
    assert emu.calendar("Follow-ups").id != old
    b.create(uid, item(uid))
    b.close()
