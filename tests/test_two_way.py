"""Two-way sync against a REAL Radicale (issue 5; README, "The lead file"
status triggers and "What appears in the calendar" edits).

One config, three targets: `phone` (a Radicale calendar, `as: todo`), `desk` (another Radicale
calendar, `as: event`) and `file` (an .ics file, `as: event`). Another calendar app is played
with raw CalDAV requests (GET, then PUT with If-Match, or DELETE) straight to the server.
Time is an input: every command runs with `--now`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import icalendar
import pytest

from followsync.render import uid_for
from tests.faultproxy import Fault, FaultProxy, ProxyRequest
from tests.project import Project, caldav_target, ics_target
from tests.servers import CalendarInfo, Server

PASSWORD_ENV = "FOLLOWSYNC_TEST_TWO_WAY_PASSWORD"
DAY1, DAY2, DAY3, DAY4 = ("2026-11-18T10:00", "2026-11-19T10:00", "2026-11-20T10:00",
                          "2026-11-21T10:00")

LEADS = """\
version: 1
defaults:
  cadence: [1w, 2w, 1mo]
  at: "09:30"
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


@dataclass
class Item:
    href: str
    etag: str
    body: bytes

    @property
    def component(self) -> Any:
        cal = icalendar.Calendar.from_ical(self.body)
        (comp,) = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
        return comp


def when(comp: Any) -> str:
    """An item's start (a to-do's DUE) as 'YYYY-MM-DD HH:MM' local time."""
    value = comp.decoded("DUE" if comp.name == "VTODO" else "DTSTART")
    return str(value.strftime("%Y-%m-%d %H:%M"))


class TwoWay(Project):
    """The config and lead file in tmp; the two Radicale calendars; the .ics file."""

    def __init__(self, tmp: Path, phone: CalendarInfo, desk: CalendarInfo, proxy: FaultProxy
                 ) -> None:
        super().__init__(tmp)
        self.tmp, self.phone, self.desk, self.proxy = tmp, phone, desk, proxy

        def caldav(name: str, cal: CalendarInfo, kind: str) -> str:
            return caldav_target(proxy.url_for(cal.url), name, calendar=cal.calendar_name,
                                 as_=kind, username=cal.username or "",
                                 password_env=PASSWORD_ENV)

        self.write_config(targets=caldav("phone", phone, "todo") + caldav("desk", desk, "event")
                          + ics_target("followups.ics", as_="event"),
                          mode=0o600)
        self.write_leads(LEADS)

    @property
    def ics(self) -> Path:
        return self.dir / "followups.ics"

    def sync(self, now: str) -> dict[str, str]:
        """Sync; the one-line summary per target, by target name."""
        code, out = self.output("sync", now=now)
        assert code == 0, out
        assert "Traceback" not in out
        return {line.split(":", 1)[0]: line for line in out.splitlines() if ": " in line}

    def settled(self, now: str) -> None:
        """Planning from scratch finds nothing to do (`plan` always loads and plans; a `sync`
        may skip that when the files, the day and the calendars are as last time), and a
        sync then writes nothing."""
        code, out = self.output("plan", now=now)
        assert code == 0, out
        summaries = [line for line in out.splitlines() if not line.startswith(" ")]
        assert len(summaries) == 3, out
        for line in summaries:
            assert "0 to create, 0 to update, 0 to delete" in line, out
        for name, line in self.sync(now).items():
            assert "0 created, 0 updated, 0 deleted" in line, (name, line)

    def ours(self, cal: CalendarInfo) -> dict[str, Item]:
        """UID → the item, for every item with followsync's marks (fails on a duplicate UID)."""
        found: dict[str, Item] = {}
        for href in cal.hrefs():
            status, body, etag = cal.get_raw(href)
            assert status == 200
            if b"X-FOLLOWSYNC-LEAD" in body:
                match = re.search(rb"^UID:(.*?)\r?$", body, re.M)
                assert match
                uid = match.group(1).decode()
                assert uid not in found, f"duplicate UID {uid}"
                found[uid] = Item(href, etag or "", body)
        return found

    def file_items(self) -> dict[str, Any]:
        cal = icalendar.Calendar.from_ical(self.ics.read_bytes())
        found: dict[str, Any] = {}
        for comp in cal.walk():
            if comp.name in ("VEVENT", "VTODO"):
                uid = str(comp["UID"])
                assert uid not in found, f"duplicate UID {uid}"
                found[uid] = comp
        return found

    def starts(self) -> dict[str, dict[str, str]]:
        """target → lead/rule → start, over all three targets (the same follow-ups in each)."""
        result: dict[str, dict[str, str]] = {}
        for name, comps in (("phone", [i.component for i in self.ours(self.phone).values()]),
                            ("desk", [i.component for i in self.ours(self.desk).values()]),
                            ("file", list(self.file_items().values()))):
            result[name] = {f"{c['X-FOLLOWSYNC-LEAD']} {c['X-FOLLOWSYNC-RULE']}": when(c)
                            for c in comps}
        return result

    def agenda_json(self, now: str) -> dict[str, Any]:
        code, out = self.output("agenda", "--json", now=now)
        assert code == 0, out
        result: dict[str, Any] = json.loads(out)
        return result


def uid(target: str, lead: str, rule: str) -> str:
    return uid_for(target, lead, rule)


def complete(cal: CalendarInfo, item: Item, completed_utc: str) -> bytes:
    """Tick a to-do off as a calendar app does: STATUS:COMPLETED + COMPLETED, PUT If-Match."""
    assert b"STATUS:NEEDS-ACTION" in item.body
    body = item.body.replace(b"STATUS:NEEDS-ACTION",
                             b"STATUS:COMPLETED\r\nCOMPLETED:" + completed_utc.encode())
    status, _ = cal.put_raw(item.href, body, {"If-Match": item.etag})
    assert status in (200, 201, 204), status
    return body


def move(cal: CalendarInfo, item: Item, old: bytes, new: bytes) -> bytes:
    """Drag an event to another time: DTSTART/DTEND changed, PUT If-Match."""
    assert old in item.body
    body = item.body.replace(old, new)
    status, _ = cal.put_raw(item.href, body, {"If-Match": item.etag})
    assert status in (200, 201, 204), status
    return body


@pytest.fixture
def two_way(tmp_path: Path, make_dav_calendar: Callable[..., CalendarInfo],
            fault_proxy: Callable[[Server | CalendarInfo | str], FaultProxy],
            radicale_server: Server, monkeypatch: pytest.MonkeyPatch) -> TwoWay:
    phone = make_dav_calendar("radicale")
    desk = make_dav_calendar("radicale", components=("VEVENT",))
    assert phone.password
    monkeypatch.setenv(PASSWORD_ENV, phone.password)
    return TwoWay(tmp_path, phone, desk, fault_proxy(radicale_server))


# --- to-dos completed in a calendar ------------------------------------------------------
def test_completed_todos_move_the_next_follow_up_everywhere(two_way: TwoWay) -> None:
    w = two_way
    w.sync(DAY1)
    first = w.starts()
    expected = {"dana cadence": "2026-11-24 09:30",  # one unanswered touch: 11-10 + 2w
                "sam cadence": "2026-11-18 09:30",  # 11-05 + 1w, overdue: rolled to today
                "sam once-2026-11-18": "2026-11-18 09:30"}
    assert first == {"phone": expected, "desk": expected, "file": expected}
    phone = w.ours(w.phone)
    for one in phone.values():
        assert one.component["STATUS"] == "NEEDS-ACTION"

    # On the phone: Dana's to-do ticked off just after midnight Berlin time on 11-20 (23:00
    # UTC the day before), Sam's one-off ticked off on 11-20 too.
    complete(w.phone, phone[uid("phone", "dana", "cadence")], "20261119T230000Z")
    complete(w.phone, phone[uid("phone", "sam", "once-2026-11-18")], "20261120T083000Z")
    lines = w.sync(DAY3)
    assert "1 deleted" in lines["desk"] and "1 deleted" in lines["file"], lines

    after = w.starts()
    expected = {"dana cadence": "2026-12-20 09:30",  # 2 unanswered (11-10, 11-20) + 1mo
                "sam cadence": "2026-12-04 09:30"}  # 1 unanswered (11-20) + 2w; one-off done
    assert after == {"phone": expected, "desk": expected, "file": expected}
    phone = w.ours(w.phone)
    assert set(phone) == {uid("phone", "dana", "cadence"), uid("phone", "sam", "cadence")}
    for one in phone.values():  # the same to-do, rewritten for the next follow-up
        assert one.component["STATUS"] == "NEEDS-ACTION"
        assert "COMPLETED" not in one.component
        assert int(one.component["SEQUENCE"]) >= 1

    # the touches are remembered, shown by `agenda`, and never counted twice
    w.settled(DAY3)
    assert w.starts() == after
    agenda = w.agenda_json(DAY3)
    assert sorted((t["lead"], t["date"], t["by"]) for t in agenda["from_calendar"]) == [
        ("dana", "2026-11-20", "me"), ("sam", "2026-11-20", "me")]
    assert all(t["note"] == "completed in the calendar (phone)" for t in agenda["from_calendar"])
    code, text = w.output("agenda", now=DAY3)
    assert code == 0, text
    assert "Ticked off in a calendar" in text
    assert re.search(r"Fri 2026-11-20\s+Dana Whitfield \(Acme\)\s+completed in the calendar",
                     text), text
    assert w.leads.read_text() == LEADS  # the lead file is never written by a sync


def test_two_todos_of_one_lead_ticked_off_the_same_day_count_once(two_way: TwoWay) -> None:
    """Sam's cadence to-do and his one-off, both ticked off on 11-20: whatever the count, the
    sync that sees them and every sync after it must agree (else the item moves twice)."""
    w = two_way
    w.sync(DAY1)
    phone = w.ours(w.phone)
    complete(w.phone, phone[uid("phone", "sam", "cadence")], "20261120T080000Z")
    complete(w.phone, phone[uid("phone", "sam", "once-2026-11-18")], "20261120T081500Z")
    w.sync(DAY3)
    seen = w.starts()
    assert seen["desk"]["sam cadence"] == "2026-12-04 09:30"  # one touch by me: + 2w
    w.settled(DAY3)
    assert w.starts() == seen
    w.sync(DAY4)  # a new day: a full sync, nothing overdue, so nothing moves
    assert w.starts() == seen
    agenda = w.agenda_json(DAY4)
    assert [(t["lead"], t["date"]) for t in agenda["from_calendar"]] == [("sam", "2026-11-20")]


# --- events moved or deleted in a calendar -------------------------------------------------
def test_a_moved_event_stays_through_syncs_and_the_overdue_roll(two_way: TwoWay) -> None:
    w = two_way
    w.sync(DAY1)
    key = uid("desk", "sam", "cadence")
    item = w.ours(w.desk)[key]
    assert when(item.component) == "2026-11-18 09:30"  # overdue, rolled to today
    moved = move(w.desk, item, b"20261118T093000", b"20261118T160000")
    moved = w.ours(w.desk)[key].body

    lines = w.sync(DAY1)
    assert "1 calendar edit kept" in lines["desk"], lines
    assert w.ours(w.desk)[key].body == moved
    w.proxy.reset()
    w.sync(DAY2)  # the next day: everything overdue rolls, but not the moved event
    assert w.ours(w.desk)[key].body == moved
    starts = w.starts()
    assert starts["file"]["sam cadence"] == starts["phone"]["sam cadence"] == "2026-11-19 09:30"
    assert starts["desk"]["sam cadence"] == "2026-11-18 16:00"
    puts = [s.path for s in w.proxy.seen() if s.method == "PUT"]
    assert not any(p.endswith(item.href.rsplit("/", 1)[1]) for p in puts), puts  # not rewritten
    assert any(w.desk.path in p for p in puts), puts  # while the desk's other item rolled
    w.sync(DAY3)
    assert w.ours(w.desk)[key].body == moved

    # the lead file changes that follow-up: followsync's date wins, same UID, next SEQUENCE
    w.edit("    last_contact: 2026-11-05\n", "    last_contact: 2026-11-19\n")
    w.sync(DAY3)
    after = w.ours(w.desk)
    assert key in after
    comp = after[key].component
    assert when(comp) == "2026-11-26 09:30"  # 11-19 + 1w
    assert int(comp["SEQUENCE"]) >= 1
    assert sum(1 for k in after if "sam-cadence" in k) == 1


def test_a_deleted_item_is_not_recreated_until_the_lead_changes(two_way: TwoWay) -> None:
    w = two_way
    w.sync(DAY1)
    key = uid("desk", "sam", "cadence")
    item = w.ours(w.desk)[key]
    assert w.desk.delete_raw(item.href) in (200, 204)
    lines = w.sync(DAY1)
    assert "1 calendar edit kept" in lines["desk"], lines
    assert key not in w.ours(w.desk)
    w.sync(DAY2)  # the roll does not bring it back
    w.sync(DAY3)
    assert key not in w.ours(w.desk)
    assert w.starts()["file"]["sam cadence"] == "2026-11-20 09:30"  # elsewhere it rolls on
    assert uid("desk", "sam", "once-2026-11-18") in w.ours(w.desk)

    w.edit("    last_contact: 2026-11-05\n", "    last_contact: 2026-11-19\n")
    lines = w.sync(DAY3)
    assert "1 created" in lines["desk"], lines
    back = w.ours(w.desk)
    assert when(back[key].component) == "2026-11-26 09:30"
    w.settled(DAY3)


def test_a_412_is_re_read_and_a_completion_made_meanwhile_is_not_lost(two_way: TwoWay) -> None:
    """The user ticks the to-do off on the phone just while followsync rewrites it (the lead
    file changed): the server answers 412, followsync re-reads, keeps its hands off, and the
    next sync takes the completion in as a touch."""
    w = two_way
    w.sync(DAY1)
    key = uid("phone", "dana", "cadence")
    item = w.ours(w.phone)[key]
    users: list[bytes] = []

    def user_ticks_it_off_first(req: ProxyRequest) -> bool:
        if req.method == "PUT" and item.href in req.path and not users:
            complete(w.phone, item, "20261118T120000Z")  # straight to Radicale
            users.append(w.phone.get_raw(item.href)[1])
        return False  # then our PUT goes through, with its now stale If-Match

    w.edit("      - 2026-11-10 sent the CV\n", "      - 2026-11-10 sent the CV and a letter\n")
    w.proxy.reset()
    w.proxy.faults = [Fault(action="delay", delay=0.0, match=user_ticks_it_off_first, times=None)]
    code, out = w.output("sync", now=DAY1)
    assert code == 0, out
    assert users, "the PUT to the to-do never came"
    assert "changed meanwhile" in out
    put = [s for s in w.proxy.seen() if s.method == "PUT" and item.href in s.path]
    assert [s.status for s in put] == [412]  # one try, with If-Match, refused
    assert put[0].headers.get("if-match") == item.etag
    after_put = w.proxy.seen()[w.proxy.seen().index(put[0]) + 1:]
    assert any(s.method in ("GET", "REPORT", "PROPFIND") for s in after_put)  # re-read
    assert w.ours(w.phone)[key].body == users[0]  # the user's completion stands
    assert w.ours(w.phone)[key].component["STATUS"] == "COMPLETED"

    w.proxy.faults = []
    w.sync(DAY1)
    todo = w.ours(w.phone)[key].component
    assert todo["STATUS"] == "NEEDS-ACTION"
    assert when(todo) == "2026-12-18 09:30"  # 2 unanswered (11-10, 11-18) + 1mo
    assert w.starts()["desk"]["dana cadence"] == "2026-12-18 09:30"
    assert [t["date"] for t in w.agenda_json(DAY1)["from_calendar"]] == ["2026-11-18"]


# --- status triggers -----------------------------------------------------------------------
STATUS_LEADS = """\
version: 1
defaults:
  cadence: [2w]
  at: "09:30"
  spread: false
  on_status:
    interviewed: {after: 1d, do: "Send {name} a thank-you note"}
  on_other_status:
    offer: {after: 0d, do: "Tell {name} you have an offer in hand"}
leads:
  ann: {name: Ann, status: waiting, last_contact: 2026-11-10}
  ben: {name: Ben, status: interviewed, status_since: 2026-11-16, last_contact: 2026-11-10}
  cat: {name: Cat, status: waiting, last_contact: 2026-11-10}
  dan: {name: Dan, status: hired, last_contact: 2026-11-10}
  eve: {name: Eve, status: interviewed, last_contact: 2026-11-10}
"""


def rules(w: TwoWay) -> dict[str, dict[str, str]]:
    starts = w.starts()
    assert starts["phone"] == starts["desk"] == starts["file"], starts
    return starts["file"]


def test_status_triggers_through_the_cli(two_way: TwoWay) -> None:
    w = two_way
    w.leads.write_text(STATUS_LEADS)
    w.sync(DAY1)
    first = rules(w)
    # status_since fires on the first sync (due 11-17, overdue: rolled to today); eve is
    # interviewed too but seen for the first time without status_since: no trigger
    assert first["ben status-interviewed"] == "2026-11-18 09:30"
    assert {k for k in first if "status" in k} == {"ben status-interviewed"}
    assert not any(k.startswith("dan ") for k in first)  # closed: nothing at all

    # between two syncs ann gets an offer and cat is interviewed; fay is new, interviewed
    text = w.leads.read_text()
    text = text.replace("ann: {name: Ann, status: waiting", "ann: {name: Ann, status: offer")
    text = text.replace("cat: {name: Cat, status: waiting", "cat: {name: Cat, status: interviewed")
    text += "  fay: {name: Fay, status: interviewed, last_contact: 2026-11-10}\n"
    w.leads.write_text(text)
    w.sync(DAY2)
    second = rules(w)
    offers = {k: v for k, v in second.items() if "status-offer" in k}
    # every OTHER open lead, the new one included; not ann herself, not dan (closed)
    assert offers == {f"{lead} status-offer-ann": "2026-11-19 09:30"
                      for lead in ("ben", "cat", "eve", "fay")}
    thanks = {k: v for k, v in second.items() if "status-interviewed" in k}
    assert thanks == {"ben status-interviewed": "2026-11-19 09:30",  # still overdue: rolled
                      "cat status-interviewed": "2026-11-20 09:30"}  # changed 11-19 + 1d
    desk = w.ours(w.desk)
    summary = str(desk[uid("desk", "ben", "status-offer-ann")].component["SUMMARY"])
    assert summary == "Tell Ben you have an offer in hand"  # names Ben: no "Ben: " before it

    # done once a touch is logged on or after the day: cat on 11-20 ends both of hers; ben's
    # touch on 11-18 ends his thank-you (since 11-16) but not the offer news (11-19)
    assert w.output("done", "cat", "--on", "2026-11-20", "--note", "sent thanks", now=DAY3)[0] == 0
    assert w.output("done", "ben", "--on", "2026-11-18", "--by", "both", now=DAY3)[0] == 0
    w.sync(DAY3)
    third = rules(w)
    assert {k for k in third if "status" in k} == {
        "ben status-offer-ann", "eve status-offer-ann", "fay status-offer-ann"}
    assert third["ben status-offer-ann"] == "2026-11-20 09:30"  # rolled
    # a later sync with nothing new changes nothing: the status change stays dated 11-19
    w.settled(DAY3)
    assert rules(w) == third


def test_completing_a_status_trigger_todo_ends_it(two_way: TwoWay) -> None:
    w = two_way
    w.leads.write_text(STATUS_LEADS)
    w.sync(DAY1)
    key = uid("phone", "ben", "status-interviewed")
    complete(w.phone, w.ours(w.phone)[key], "20261118T110000Z")
    w.sync(DAY1)
    final = rules(w)
    assert "ben status-interviewed" not in final
    assert final["ben cadence"] == "2026-12-02 09:30"  # 11-18 + 2w
    assert {(t["lead"], t["date"]) for t in w.agenda_json(DAY1)["from_calendar"]} == {
        ("ben", "2026-11-18")}


def test_moving_a_todo_keeps_it_and_completion_later_still_counts(two_way: TwoWay) -> None:
    """A to-do moved on the phone stays moved; ticking it off later is still a touch."""
    w = two_way
    w.sync(DAY1)
    key = uid("phone", "dana", "cadence")
    item = w.ours(w.phone)[key]
    move(w.phone, item, b"20261124T093000", b"20261125T120000")
    lines = w.sync(DAY2)
    assert "1 calendar edit kept" in lines["phone"], lines
    moved = w.ours(w.phone)[key]
    assert when(moved.component) == "2026-11-25 12:00"
    assert w.starts()["desk"]["dana cadence"] == "2026-11-24 09:30"  # only the phone's moved
    complete(w.phone, moved, "20261121T090000Z")
    w.sync(DAY4)
    assert rules(w)["dana cadence"] == "2026-12-21 09:30"  # 11-21 + 1mo


def test_a_schema_2_state_gains_the_moved_column(tmp_path: Path) -> None:
    """A state written before calendar moves were remembered opens and keeps its rows."""
    import sqlite3

    from followsync.state import State

    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '2');
        CREATE TABLE items (
            target TEXT NOT NULL, uid TEXT NOT NULL, href TEXT NOT NULL, etag TEXT NOT NULL,
            hash TEXT NOT NULL, sequence INTEGER NOT NULL DEFAULT 0,
            gone INTEGER NOT NULL DEFAULT 0, lead TEXT NOT NULL, rule TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '', edited INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (target, uid));
        INSERT INTO items VALUES ('t', 'u1', 'h', 'e', 'x', 0, 0, 'dana', 'cadence', 's', 1);
    """)
    db.commit()
    db.close()
    state = State(tmp_path)
    try:
        assert state.rows("t")["u1"].moved == ""
        assert state.moves() == {}
        state.put("t", replace(state.rows("t")["u1"], moved="2026-12-08T10:30"))
        assert state.moves() == {("dana", "cadence"): "2026-12-08T10:30"}
    finally:
        state.close()
