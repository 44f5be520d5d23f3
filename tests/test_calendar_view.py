"""The calendar as it is looked at (README "What appears in the calendar"): follow-ups of one
time laid end to end (`spread`), no alarm that has already passed, and a readable reply link.
Every output is read back with icalendar and with vobject (an independent parser)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject

from tests.imapserver import Account, message
from tests.mailproject import ME, mail_from, mail_project, mail_to
from tests.mailproject import at as at_local
from tests.project import Project, caldav_target
from tests.servers import CalendarInfo

BERLIN = ZoneInfo("Europe/Berlin")


def items(text: str) -> dict[str, dict[str, Any]]:
    """lead id → start, alarm triggers and TRANSP of its one item, read with icalendar, and
    checked against what vobject reads."""
    found: dict[str, dict[str, Any]] = {}
    for comp in icalendar.Calendar.from_ical(text).walk():
        if comp.name not in ("VEVENT", "VTODO"):
            continue
        lead = str(comp["X-FOLLOWSYNC-LEAD"])
        found[lead] = {
            "start": comp.decoded("dtstart"),
            "end": comp.decoded("dtend") if "DTEND" in comp else None,
            "alarms": sorted(c.decoded("trigger") for c in comp.subcomponents
                             if c.name == "VALARM"),
            "transp": str(comp.get("TRANSP", "")),
            "description": str(comp.get("DESCRIPTION", "")),
        }
    seen: dict[str, dict[str, Any]] = {}
    for cal in vobject.readComponents(text):
        for comp in cal.getChildren():
            if comp.name in ("VEVENT", "VTODO"):
                lead = comp.contents["x-followsync-lead"][0].value
                seen[lead] = {"start": comp.dtstart.value, "alarms": sorted(
                    a.trigger.value for a in comp.contents.get("valarm", []))}
    assert {k: (v["start"], v["alarms"]) for k, v in found.items()} == \
        {k: (v["start"], v["alarms"]) for k, v in seen.items()}
    return found


# --- point 7: past alarms ---------------------------------------------------------------

ALARM_LEADS = """\
version: 1
defaults:
  alarms: [0m, 1d]
leads:
  ann: {name: Ann Lee}
  bob: {name: Bob Roe, next: 2026-12-05}
  cy: {name: Cy Dee, next: 2026-12-09}
"""


def test_an_item_written_at_eight_for_nine_today_has_no_alarm_of_yesterday(
        project: Project) -> None:
    project.write_config()
    project.write_leads(ALARM_LEADS)
    code, _out, err = project.run("sync", now="2026-12-01T08:00")
    assert code == 0, err
    found = items(project.ics.read_text())
    assert found["ann"]["start"] == datetime(2026, 12, 1, 9, tzinfo=BERLIN)
    assert found["ann"]["alarms"] == [timedelta(0)]  # "1 day before" was yesterday
    assert found["bob"]["alarms"] == [timedelta(days=-1), timedelta(0)]


def _block(text: str, lead: str) -> str:
    """The VEVENT or VTODO of a lead, as written (DTSTAMP and SEQUENCE included)."""
    return next(b for b in text.split("BEGIN:V")[1:] if f"X-FOLLOWSYNC-LEAD:{lead}" in b)


def test_an_item_is_not_rewritten_because_an_alarm_has_passed(project: Project) -> None:
    project.write_config()
    project.write_leads(ALARM_LEADS)
    assert project.run("sync", now="2026-12-01T08:00")[0] == 0
    bob = _block(project.ics.read_text(), "bob")
    # bob's "1 day before" rang on the 4th at 09:00; cy's change and ann's roll make a sync
    project.edit("cy: {name: Cy Dee, next: 2026-12-09}", "cy: {name: Cy Dee, next: 2026-12-10}")
    code, out, err = project.run("sync", now="2026-12-04T10:00")
    assert code == 0, err
    assert "0 created, 2 updated, 0 deleted, 1 unchanged" in out, out  # ann rolled, cy
    text = project.ics.read_text()
    assert _block(text, "bob") == bob  # not written again: its DTSTAMP is the first sync's
    assert items(text)["bob"]["alarms"] == [timedelta(days=-1), timedelta(0)]
    assert items(text)["ann"]["alarms"] == []  # rolled to 09:00 today, written at 10:00


def test_a_lost_state_finds_an_item_whose_alarm_has_passed_as_it_should_be(
        project: Project) -> None:
    """The items are compared with what a sync would write now: an alarm whose moment has
    passed since is no difference (the item is not written again, nor taken for an edit)."""
    project.write_config()
    project.write_leads(ALARM_LEADS.replace("  ann: {name: Ann Lee}\n", ""))
    assert project.run("sync", now="2026-12-01T08:00")[0] == 0
    bob = _block(project.ics.read_text(), "bob")
    for path in project.state.iterdir():  # (the shortcuts folder too)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    code, out, err = project.run("sync", now="2026-12-04T10:00")  # bob's "1 day before" rang
    assert code == 0, err
    assert "0 created, 0 updated, 0 deleted, 2 unchanged" in out, out
    assert _block(project.ics.read_text(), "bob") == bob


# --- point 8: the reply link, threaded and readable; agenda's mail kept short ----------------

MAIL_LEADS = """\
version: 1
leads:
  dana: {name: Dana Whitfield, org: Acme Corp, email: [dana@acme.example, dana.w@home.example]}
  ann: {name: Ann Lee, email: ann@x.example, last_contact: 2026-11-01}
"""


def test_the_reply_link_answers_in_the_thread_and_reads_plainly(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    p = mail_project(project, monkeypatch, imap_account, leads=MAIL_LEADS)
    mail_to(imap_account, "Dana W <dana@acme.example>", "2026-11-25", "the marketing role",
            "09:00", msgid="<first@me.example>")
    mail_from(imap_account, "dana.w@home.example", "2026-11-26", "Re: the marketing role & more",
              "17:30", msgid="<answer.42@acme.example>")
    code, _out, err = p.run("sync")
    assert code == 0, err
    desc = items(p.ics.read_text())["dana"]["description"]
    lines = desc.splitlines()
    at = lines.index('Reply: to dana@acme.example, "Re: the marketing role & more"')
    link = lines[at + 1]
    assert link.startswith("mailto:dana@acme.example?"), desc
    query = parse_qs(urlsplit(link).query)
    assert query == {"subject": ["Re: the marketing role & more"],
                     "in-reply-to": ["<answer.42@acme.example>"]}
    assert "%" not in lines[at]
    assert "Reply" not in items(p.ics.read_text())["ann"]["description"]


def test_a_mail_without_a_message_id_gives_a_link_without_in_reply_to(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    p = mail_project(project, monkeypatch, imap_account, leads=MAIL_LEADS)
    imap_account.append("INBOX", message(frm="dana@acme.example", to=ME, subject="hello",
                                         date=at_local("2026-11-26", "10:00"), message_id=""),
                        at_local("2026-11-26", "10:00"))
    code, _out, err = p.run("sync")
    assert code == 0, err
    desc = items(p.ics.read_text())["dana"]["description"]
    link = next(line for line in desc.splitlines() if line.startswith("mailto:"))
    assert parse_qs(urlsplit(link).query) == {"subject": ["Re: hello"]}


def test_agenda_shows_the_follow_ups_first_and_one_line_of_mail_per_lead(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    leads = "version: 1\nleads:\n" + "".join(
        f"  l{i}: {{name: Person {i}, email: p{i}@x.example, last_contact: 2026-11-2{i % 3}}}\n"
        for i in range(8))
    p = mail_project(project, monkeypatch, imap_account, leads=leads)
    for i in range(8):
        for k in range(3):  # 24 mails in the last 30 days
            mail_from(imap_account, f"p{i}@x.example", f"2026-11-{10 + k + i:02d}",
                      f"note {k} of {i}", f"1{k}:00")
    assert p.run("mail")[0] == 0
    code, out, err = p.run("agenda")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] in ("Overdue", "Upcoming"), out
    mail = lines[lines.index(next(x for x in lines if x.startswith("Mail"))):]
    assert mail[0] == "Mail (last 30 days; the latest per lead, `agenda --mail` for all 24)"
    assert len(mail) <= 7, out  # the header, five leads, "and 3 more"
    assert mail[1].startswith("  Thu 2026-11-19 12:00  Person 7") and "(+2 more)" in mail[1]
    assert mail[-1] == "  ... and 3 more leads (`agenda --mail`)"
    code, full, _ = p.run("agenda", "--mail")
    assert code == 0
    assert len(full.split("Mail (last 30 days)\n")[1].splitlines()) == 24  # every mail
    code, data, _ = p.run("agenda", "--json")
    assert len(json.loads(data)["from_mail"]) == 24  # --json lists every mail, as before


# --- point 6: follow-ups of one time laid end to end (spread) ----------------------------

SEVEN = "version: 1\nleads:\n" + "".join(f"  p{i}: {{name: Person {i}}}\n" for i in range(7))
MONDAY = "2026-12-07T08:00"


def starts(project: Project) -> dict[str, Any]:
    return {lead: item["start"] for lead, item in items(project.ics.read_text()).items()}


def nine(minutes: int, day: int = 7) -> datetime:
    return datetime(2026, 12, day, 9, tzinfo=BERLIN) + timedelta(minutes=minutes)


def plan_times(project: Project, now: str) -> dict[str, str]:
    """lead → `YYYY-MM-DD HH:MM` of what `plan` says a sync would write for it."""
    code, out, err = project.run("plan", now=now)
    assert code == 0, err
    found = {}
    for line in out.splitlines():
        hit = re.search(r" (\S+) cadence: (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) ", line)
        if hit:
            found[hit.group(1)] = hit.group(2)
    return found


def test_seven_new_leads_on_a_monday_are_laid_end_to_end(project: Project) -> None:
    project.write_config()
    project.write_leads(SEVEN)
    planned = plan_times(project, MONDAY)
    code, _out, err = project.run("sync", now=MONDAY)
    assert code == 0, err
    found = items(project.ics.read_text())
    assert {lead: item["start"] for lead, item in found.items()} == {
        f"p{i}": nine(15 * i) for i in range(7)}  # in the order of the lead file
    assert all(item["end"] - item["start"] == timedelta(minutes=15) for item in found.values())
    assert all(item["transp"] == "TRANSPARENT" for item in found.values())
    assert planned == {lead: f"{start:%Y-%m-%d %H:%M}" for lead, start in starts(project).items()}


def test_spread_false_keeps_them_at_their_time(project: Project) -> None:
    project.write_config()
    project.write_leads(SEVEN.replace("leads:\n", "defaults: {spread: false}\nleads:\n"))
    assert project.run("sync", now=MONDAY)[0] == 0
    assert set(starts(project).values()) == {nine(0)}


def deltas(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each sync from now on planned some leads only (True) or every lead (`plan`
    always plans every lead: not counted)."""
    from followsync import sync

    taken: list[bool] = []
    real = sync._planned

    def spy(*args: Any, **kwargs: Any) -> Any:
        planned = real(*args, **kwargs)
        if not args[3].dry_run:
            taken.append(planned.scope is not None)
        return planned

    monkeypatch.setattr(sync, "_planned", spy)
    return taken


def test_a_touch_moves_one_item_and_the_others_keep_their_slots(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write_config()
    project.write_leads(SEVEN)
    assert project.run("sync", now=MONDAY)[0] == 0
    before = project.ics.read_text()
    taken = deltas(monkeypatch)
    project.edit("p2: {name: Person 2}", "p2: {name: Person 2, last_contact: 2026-12-07}")
    code, out, err = project.run("sync", now="2026-12-07T08:05")
    assert code == 0, err
    assert taken == [True]  # the delta (the same day, one lead changed)
    assert "0 created, 1 updated, 0 deleted, 6 unchanged" in out, out
    after = project.ics.read_text()
    for lead in ("p0", "p1", "p3", "p4", "p5", "p6"):  # not written again
        assert _block(after, lead) == _block(before, lead)
    assert starts(project)["p2"] == nine(0, day=14)  # + 1w
    # a new lead takes the first free slot: the one p2 left
    project.edit("  p6: {name: Person 6}\n", "  p6: {name: Person 6}\n  p7: {name: Person 7}\n")
    planned = plan_times(project, "2026-12-07T08:10")
    code, out, err = project.run("sync", now="2026-12-07T08:10")
    assert code == 0, err
    assert "1 created, 0 updated, 0 deleted, 7 unchanged" in out, out
    assert starts(project)["p7"] == nine(30)
    assert planned["p7"] == "2026-12-07 09:30"
    assert taken == [True, True]


def test_an_item_moved_by_hand_keeps_its_time_and_takes_no_slot(project: Project) -> None:
    project.write_config()
    project.write_leads(SEVEN)
    assert project.run("sync", now=MONDAY)[0] == 0
    text = project.ics.read_text()
    moved = _block(text, "p1").replace("T091500", "T140000").replace("T093000", "T141500")
    project.ics.write_text(text.replace(_block(text, "p1"), moved))
    assert project.run("sync", now="2026-12-07T08:05")[0] == 0
    project.edit("  p6: {name: Person 6}\n", "  p6: {name: Person 6}\n  p7: {name: Person 7}\n")
    assert project.run("sync", now="2026-12-07T08:10")[0] == 0
    found = starts(project)
    assert found["p1"] == datetime(2026, 12, 7, 14, tzinfo=BERLIN)  # kept where it was put
    assert found["p7"] == nine(15)  # the slot it left is free
    assert len(set(found.values())) == 8
    # the lead file changes that follow-up: its version wins, in the first free slot
    project.edit("p1: {name: Person 1}", "p1: {name: Person One}")
    assert project.run("sync", now="2026-12-07T08:15")[0] == 0
    assert starts(project)["p1"] == nine(105)


def test_timed_to_dos_are_spread_and_all_day_items_are_not(project: Project) -> None:
    project.write_config()
    leads = "version: 1\nleads:\n" + "".join(
        f"  t{i}: {{name: T {i}, as: todo}}\n  d{i}: {{name: D {i}, all_day: true}}\n"
        for i in range(3))
    project.write_leads(leads)
    assert project.run("sync", now=MONDAY)[0] == 0
    found = starts(project)
    assert [found[f"t{i}"] for i in range(3)] == [nine(0), nine(15), nine(30)]
    assert {found[f"d{i}"] for i in range(3)} == {datetime(2026, 12, 7).date()}


def test_the_next_day_the_overdue_items_are_laid_again_from_nine(project: Project) -> None:
    project.write_config()
    project.write_leads(SEVEN.replace("  p6: {name: Person 6}\n",
                                      "  p6: {name: Person 6, next: 2026-12-08}\n"))
    assert project.run("sync", now=MONDAY)[0] == 0
    assert starts(project)["p6"] == nine(0, day=8)
    code, out, err = project.run("sync", now="2026-12-08T00:05")
    assert code == 0, err
    assert "0 created, 6 updated, 0 deleted, 1 unchanged" in out, out
    found = starts(project)  # p6 is due today at 09:00: it keeps it; the six rolled follow it
    assert found["p6"] == nine(0, day=8)
    assert [found[f"p{i}"] for i in range(6)] == [nine(15 * (i + 1), day=8) for i in range(6)]


def test_on_radicale_a_touch_moves_one_item_and_the_others_keep_their_slots(
        project: Project, make_dav_calendar: Callable[..., CalendarInfo],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cal = make_dav_calendar("radicale")
    monkeypatch.setenv("FOLLOWSYNC_TEST_VIEW_PW", cal.password or "")
    project.write_config(targets=caldav_target(cal.calendar_url, "phone",
                                               calendar=cal.calendar_name,
                                               username=cal.username or "",
                                               password_env="FOLLOWSYNC_TEST_VIEW_PW"))
    project.write_leads(SEVEN)

    def on_server() -> dict[str, tuple[bytes, dict[str, Any]]]:
        found = {}
        for href in cal.hrefs():
            status, body, _ = cal.get_raw(href)
            assert status == 200
            [(lead, item)] = items(body.decode()).items()
            found[lead] = (body, item)
        return found

    planned = plan_times(project, MONDAY)
    assert project.run("sync", now=MONDAY)[0] == 0
    before = on_server()
    assert {lead: item["start"] for lead, (_, item) in before.items()} == {
        f"p{i}": nine(15 * i) for i in range(7)}
    assert planned == {lead: f"{item['start']:%Y-%m-%d %H:%M}"
                       for lead, (_, item) in before.items()}
    assert all(item["transp"] == "TRANSPARENT" for _, item in before.values())
    project.edit("p2: {name: Person 2}", "p2: {name: Person 2, last_contact: 2026-12-07}")
    code, out, err = project.run("sync", now="2026-12-07T08:05")
    assert code == 0, err
    assert "0 created, 1 updated, 0 deleted, 6 unchanged" in out, out
    after = on_server()
    assert after["p2"][1]["start"] == nine(0, day=14)
    for lead in ("p0", "p1", "p3", "p4", "p5", "p6"):
        assert after[lead][0] == before[lead][0]  # the very same bytes: not written again
    project.edit("  p6: {name: Person 6}\n", "  p6: {name: Person 6}\n  p7: {name: Person 7}\n")
    assert project.run("sync", now="2026-12-07T08:10")[0] == 0
    assert on_server()["p7"][1]["start"] == nine(30)  # the slot p2 left


def test_agenda_shows_each_item_at_the_time_it_was_laid(project: Project) -> None:
    project.write_config()
    project.write_leads(SEVEN)
    assert project.run("sync", now=MONDAY)[0] == 0
    code, out, err = project.run("agenda", "--json", now=MONDAY)
    assert code == 0, err
    data = json.loads(out)
    assert [(i["lead"], i["at"], i["moved_in_calendar"]) for i in data["upcoming"]] == [
        (f"p{i}", f"{nine(15 * i):%H:%M}", False) for i in range(7)]
    code, out, _ = project.run("agenda", now=MONDAY)
    assert "Mon 2026-12-07 10:30  Person 6" in out, out
    assert "moved in the calendar" not in out
