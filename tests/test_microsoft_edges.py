# ruff: noqa: F811  (fixtures imported from test_microsoft)
"""Edges of the microsoft target: a follow-up deleted in Outlook made again, hostile JSON, a
copy made in Outlook, stamps, others' events changing, calendars whatever the case."""

from __future__ import annotations

from pathlib import Path

from tests.msemu import MsEmu
from tests.test_backend_contract import item, new_uid
from tests.test_microsoft import (  # noqa: F401  (fixtures)
    LEADS,
    backend,
    create,
    emu,
    ours,
    project,
    run,
    settings_for,
    signed_in,
    sync,
)


def test_an_event_deleted_in_outlook_can_be_created_again(emu: MsEmu, tmp_path: Path) -> None:
    """The listing says the item is gone; the contract says create conflicts only when the
    UID exists. The lead file changed that follow-up: it must come back (SPEC §3)."""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    known, cursor = sync(emu, settings, known, cursor)
    emu.delete_event(ours(emu)[uid]["id"])
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    assert uid not in listing.items
    b.create(uid, item(uid))
    b.close()
    assert set(ours(emu)) == {uid}


def test_a_follow_up_deleted_in_outlook_comes_back_when_the_lead_file_changes_it(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    assert run(config, "sync")[0] == 0
    run(config, "sync")
    dana = next(e for e in ours(emu).values() if e["subject"].startswith("Dana"))
    emu.delete_event(dana["id"])
    (tmp_path / "leads.yaml").write_text(LEADS.replace("2030-11-01", "2030-11-15"))
    for _ in range(3):
        code, out = run(config, "sync")
        assert code == 0, out
    assert any(e["subject"].startswith("Dana") for e in ours(emu).values()), out


# ---------------------------------------------------------------- hostile answers
import json  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from followsync.backends.microsoft import MicrosoftBackend  # noqa: E402
from followsync.errors import TargetError  # noqa: E402
from followsync.msauth import MicrosoftSettings  # noqa: E402
from tests.test_backend_contract import FixedBearer  # noqa: E402
from tests.test_microsoft import TODAY  # noqa: E402

LINK = "https://127.0.0.1:1/v1.0/me/calendars/c/calendarView/delta?$deltatoken=1"
CURSOR = json.dumps({"calendar": "c", "delta": LINK, "window": "2029-01-01/2035-01-01"})


class Answers:
    """A server answering each request with the next of `pages` (an ApiSession's stand-in)."""

    def __init__(self, *pages: Any) -> None:
        self.pages = list(pages)

    def call(self, method: str, path: str, body: Any = None, headers: Any = None,
             **_: Any) -> Any:
        from followsync.backends.davhttp import Response

        return Response(200 if method != "POST" else 201, {},
                        json.dumps(self.pages.pop(0)).encode())

    def close(self) -> None:
        pass


def stub(tmp_path: Path, *pages: Any) -> MicrosoftBackend:
    settings = MicrosoftSettings("work", "c", tmp_path, endpoint="https://127.0.0.1:1",
                                 calendar="Follow-ups")
    return MicrosoftBackend(settings, tokens=FixedBearer("t"), session=Answers(*pages),  # type: ignore[arg-type]
                            today=TODAY)


@pytest.mark.parametrize("value", [7, True, 1.5])
def test_a_delta_page_whose_value_is_no_list_is_a_target_error(tmp_path: Path,
                                                               value: Any) -> None:
    b = stub(tmp_path, {"value": value, "@odata.deltaLink": LINK})
    with pytest.raises(TargetError):
        b.listing({}, CURSOR)


def test_a_marked_event_whose_properties_are_no_list_is_no_traceback(tmp_path: Path) -> None:
    b = stub(tmp_path, {"value": [], "@odata.deltaLink": LINK},
             {"value": [{"id": "e1", "singleValueExtendedProperties": 3}]})
    try:
        b.listing({}, json.dumps({"calendar": "c"}))
    except TargetError:
        pass


def test_a_write_answer_with_odd_times_or_body_is_no_traceback(tmp_path: Path) -> None:
    uid = new_uid()
    b = stub(tmp_path, {"value": [], "@odata.deltaLink": LINK}, {"value": []},
             {"id": "e1", "@odata.etag": 'W/"1"', "start": "soon", "body": ["x"]})
    b.listing({}, json.dumps({"calendar": "c"}))
    try:
        b.create(uid, item(uid))
    except TargetError:
        pass


# ---------------------------------------------------------------- the shared conversion
@pytest.mark.parametrize("updated", ["2031-01-06T09:15:00.000Z",  # Google's `updated`
                                     "2031-01-06T09:15:00.1234567Z"])  # Graph's
def test_a_stamp_with_a_fraction_and_a_z_is_read(updated: str) -> None:
    """Before the refactor google._stamp read Google's `updated` (fraction and Z); the shared
    eventtext.stamp counts the offset's digits as the fraction's and gives the epoch."""
    from followsync.backends import eventtext

    assert eventtext.stamp(updated) == "20310106T091500Z"


# ---------------------------------------------------------------- a copy made in Outlook
def copy_of(emu: MsEmu, event: dict[str, Any], day: str) -> str:
    """What Outlook's copy of an event does: a new event with its extended properties
    (MAPI named properties travel with a copy), here on another day."""
    keys = ("subject", "body", "isAllDay", "isReminderOn", "showAs",
            "singleValueExtendedProperties")
    body = {k: event[k] for k in keys}
    body["start"] = {"dateTime": f"{day}T09:00:00", "timeZone": "UTC"}
    body["end"] = {"dateTime": f"{day}T09:15:00", "timeZone": "UTC"}
    while True:  # (the copy's id sorts first, as one in two do)
        made = emu.add_event("Follow-ups", body)
        if made < event["id"]:
            return made
        emu.delete_event(made)


def test_a_full_listing_keeps_the_event_the_state_knows_not_a_copy_made_in_outlook(
        emu: MsEmu, tmp_path: Path) -> None:
    """The user copied a follow-up in Outlook (to another day, as a note to self). The
    incremental listing ignores the copy; a full one (delta link void, the window sliding
    on 1 January) must do the same, not switch to the copy (then the original, ours, is
    never updated nor deleted again: a stale follow-up left in the calendar for good)."""
    settings = settings_for(emu, tmp_path)
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    known, cursor = sync(emu, settings, known, cursor)
    original = next(e for e in emu.live("Follow-ups"))
    copy_of(emu, original, "2031-03-03")
    known, cursor = sync(emu, settings, known, cursor)
    assert known[uid].href == original["id"]  # incremental: the copy is not ours
    emu.void_delta_tokens()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    b.close()
    assert listing.items[uid].href == original["id"]


def test_calendars_marks_the_calendar_a_sync_uses_whatever_its_case(
        emu: MsEmu, signed_in: MsEmu, tmp_path: Path) -> None:
    """The backend finds `follow-ups` as Outlook's `Follow-ups` (names ignore case); the
    listing must not say it does not exist and will be made."""
    emu.add_calendar("Follow-ups")
    config = project(tmp_path, emu, calendar="follow-ups")
    code, out = run(config, "calendars")
    assert code == 0, out
    assert "does not exist yet" not in out, out
    assert "* Follow-ups" in out, out


@pytest.mark.parametrize("edits", [1, 3, 6])
def test_a_sync_where_only_the_users_own_events_changed_is_one_request(
        emu: MsEmu, tmp_path: Path, edits: int) -> None:
    """`calendar: default` shares the calendar with the user's meetings: they change all the
    time. Nothing of ours changed, so the sync is a no-op (SPEC §8: one request). Today each
    changed foreign event costs a GET (up to four), more cost a paged marks query."""
    settings = settings_for(emu, tmp_path)
    uids = [new_uid(str(n)) for n in range(3)]
    known, cursor = sync(emu, settings, {}, None, create(*uids))
    known, cursor = sync(emu, settings, known, cursor)
    for n in range(edits):
        emu.add_event("Follow-ups", {"subject": f"Meeting {n}", "start": {
            "dateTime": "2031-01-07T10:00:00", "timeZone": "UTC"}, "end": {
            "dateTime": "2031-01-07T11:00:00", "timeZone": "UTC"}})
    emu.reset_log()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    b.close()
    assert listing.unchanged and listing.items == known
    assert len(emu.api_requests()) == 1, [(s.method, s.path) for s in emu.api_requests()]


def test_a_foreign_event_deleted_in_outlook_costs_no_request(emu: MsEmu,
                                                              tmp_path: Path) -> None:
    """An unknown id reported removed cannot be an event of ours to list: no GET for it."""
    settings = settings_for(emu, tmp_path)
    emu.add_calendar("Follow-ups")
    foreign = emu.add_event("Follow-ups", {"subject": "Meeting", "start": {
        "dateTime": "2031-01-07T10:00:00", "timeZone": "UTC"}, "end": {
        "dateTime": "2031-01-07T11:00:00", "timeZone": "UTC"}})
    uid = new_uid()
    known, cursor = sync(emu, settings, {}, None, create(uid))
    known, cursor = sync(emu, settings, known, cursor)
    emu.delete_event(foreign)
    emu.reset_log()
    b = backend(emu, settings)
    listing = b.listing(known, cursor)
    b.close()
    assert listing.unchanged and listing.items == known
    assert len(emu.api_requests()) == 1, [(s.method, s.path) for s in emu.api_requests()]
