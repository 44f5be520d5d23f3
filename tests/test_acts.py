"""One act is one touch, and status triggers fire for what they mean (README, "When is a
follow-up due?", issue 17 points 2 and 3): the rules on their own, then end to end through
the CLI with a real Dovecot mailbox."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import pytest
import yaml

from followsync.leads import MailTouch, Touch
from followsync.rules import LeadPlan, Memory, remember, touches
from tests.imapserver import Account
from tests.mailproject import mail_project, mail_to
from tests.oldstate import ITEMS_4, LEADS_3, TOUCHES_4, old_state
from tests.project import Project, leads_text, plan_text

D = date.fromisoformat
T = datetime.fromisoformat
TRIGGERS = {
    "cadence": ["1mo", "2mo", "3mo"],
    "on_status": {"interviewed": {"after": "1d", "do": "Send {name} a thank-you note"}},
    "on_other_status": {"offer": {"after": "0d", "do": "Tell {name} about the offer"}},
}


def doc(leads: dict[str, dict[str, Any]]) -> str:
    return yaml.safe_dump({"version": 1, "defaults": TRIGGERS, "leads": leads}, sort_keys=False)


def mail(day: str, clock: str, by: str = "me", subject: str = "intro") -> MailTouch:
    return MailTouch(date=D(day), at=T(f"{day}T{clock}"), by=by,
                     note=f"mail {subject}", subject=subject)


def rules_of(result: LeadPlan) -> list[str]:
    return [f.rule for f in result.follow_ups]


def seen_changing(text: str, lead_id: str, before: str | None, now: str,
                  others: dict[str, Memory] | None = None) -> dict[str, Memory]:
    """The memories after a sync at `now` saw `lead_id`'s status change from `before`."""
    moment = T(now)
    memory = dict(others or {})
    for item in leads_text(text):
        if item.id == lead_id:
            old = Memory(first_seen=D("2026-01-01"), status=before)
            memory[lead_id] = remember(old, item.lead, moment.date(), moment)
    return memory


# --- point 2: status triggers ----------------------------------------------------------------

def test_the_thank_you_note_is_due_after_an_interview_logged_that_day() -> None:
    """`status: interviewed` with last_contact on the interview day: the note is asked for."""
    text = doc({"dana": {"name": "Dana", "last_contact": "2026-05-06", "status": "interviewed"}})
    memory = seen_changing(text, "dana", "applied", "2026-05-06T18:30")
    assert memory["dana"].status_changed == T("2026-05-06T18:30")
    [result] = plan_text(text, D("2026-05-06"), memory)
    [note] = [f for f in result.follow_ups if f.rule == "status-interviewed"]
    assert (note.due, note.action) == (D("2026-05-07"), "Send Dana a thank-you note")
    assert note.reason == "entered status 'interviewed' on 2026-05-06 + 1d"


@pytest.mark.parametrize(("entry", "pending"), [
    ("2026-05-06 sent the note", True),          # a date-only line of that day: not later
    ("2026-05-06 18:00 sent the note", True),    # before the change was seen
    ("2026-05-06 19:10 sent the note", False),   # after it
    ({"date": "2026-05-06", "at": "19:10", "by": "them", "note": "thanked me"}, True),
    ({"date": "2026-05-06", "by": "me", "rule": "status-interviewed"}, False),  # done --rule
    ({"date": "2026-05-05", "by": "me", "rule": "status-interviewed"}, True),   # before the day
    ({"date": "2026-05-07", "by": "me", "rule": "cadence"}, False),  # (a later touch anyway)
])
def test_what_completes_a_status_trigger(entry: Any, pending: bool) -> None:
    text = doc({"dana": {"name": "Dana", "last_contact": "2026-05-06", "status": "interviewed",
                         "log": [entry]}})
    memory = seen_changing(text, "dana", "applied", "2026-05-06T18:30")
    [result] = plan_text(text, D("2026-05-06"), memory)
    assert ("status-interviewed" in rules_of(result)) is pending


def test_an_offer_reaches_the_leads_in_conversation_and_only_my_act_completes_it() -> None:
    """Ann's offer is seen at 15:00. Bea, touched that morning, is told; Cid's reply later
    that day does not tell Cid; Dan, added after the offer and never contacted, is reached
    out to, not told about an offer; Eve, told at 16:00, is done."""
    text = doc({
        "ann": {"name": "Ann", "last_contact": "2026-05-01", "status": "offer"},
        "bea": {"name": "Bea", "log": ["2026-05-06 10:00 called"]},
        "cid": {"name": "Cid", "log": ["2026-05-06 wrote",
                                       {"date": "2026-05-06", "at": "17:00", "by": "them"}]},
        "dan": {"name": "Dan"},
        "eve": {"name": "Eve", "log": ["2026-05-02 wrote", "2026-05-06 16:00 told her"]},
    })
    memory = seen_changing(text, "ann", "interviewed", "2026-05-06T15:00")
    plans = {p.lead_id: p for p in plan_text(text, D("2026-05-06"), memory)}
    assert rules_of(plans["bea"]) == ["cadence", "status-offer-ann"]
    assert rules_of(plans["cid"]) == ["cadence", "status-offer-ann"]
    assert rules_of(plans["dan"]) == ["cadence"]
    assert plans["dan"].follow_ups[0].reason.startswith("new lead: reach out")
    assert rules_of(plans["eve"]) == ["cadence"]
    # the offer's own lead is not told about its own offer
    assert rules_of(plans["ann"]) == ["cadence"]


def test_a_mail_later_that_day_tells_them() -> None:
    text = doc({"ann": {"name": "Ann", "last_contact": "2026-05-01", "status": "offer"},
                "bea": {"name": "Bea", "email": "bea@x.example", "log": ["2026-05-06 called"]}})
    memory = seen_changing(text, "ann", "waiting", "2026-05-06T15:00")
    memory["bea"] = Memory(first_seen=D("2026-05-01"))
    before = {p.lead_id: p for p in plan_text(text, D("2026-05-06"), memory)}
    assert "status-offer-ann" in rules_of(before["bea"])
    for clock, pending in (("14:59", True), ("15:01", False)):
        told = dict(memory, bea=Memory(first_seen=D("2026-05-01"),
                                       touches=(mail("2026-05-06", clock, subject="offer"),)))
        plans = {p.lead_id: p for p in plan_text(text, D("2026-05-06"), told)}
        assert ("status-offer-ann" in rules_of(plans["bea"])) is pending, clock


def test_a_status_change_from_an_older_state_is_the_start_of_its_day() -> None:
    """A state written before times were kept holds a date: the start of that day."""
    text = doc({"dana": {"name": "Dana", "last_contact": "2026-05-01", "status": "interviewed",
                         "log": ["2026-05-06 09:00 sent it"]}})
    old = {"dana": Memory(first_seen=D("2026-01-01"), status="interviewed",
                          status_changed=D("2026-05-06"))}
    [result] = plan_text(text, D("2026-05-06"), old)
    assert rules_of(result) == ["cadence"]
    old["dana"] = Memory(first_seen=D("2026-01-01"), status="interviewed",
                         status_changed=D("2026-05-07"))
    [result] = plan_text(text, D("2026-05-06"), old)
    assert "status-interviewed" in rules_of(result)


def test_a_to_do_ticked_off_completes_its_own_rule_on_the_day_of_the_change() -> None:
    """An `after: 0d` trigger's to-do ticked off the same day (a date-only completion)."""
    text = doc({"ann": {"name": "Ann", "last_contact": "2026-05-01", "status": "offer"},
                "bea": {"name": "Bea", "last_contact": "2026-05-01"}})
    memory = seen_changing(text, "ann", "waiting", "2026-05-06T15:00")
    ticked = Touch(date=D("2026-05-06"), note="completed in the calendar (phone)",
                   rule="status-offer-ann")
    memory["bea"] = Memory(first_seen=D("2026-05-01"), touches=(ticked,))
    plans = {p.lead_id: p for p in plan_text(text, D("2026-05-06"), memory)}
    assert rules_of(plans["bea"]) == ["cadence"]


# --- point 3: one act, one touch --------------------------------------------------------------

def _unanswered(log: list[Any], mails: tuple[MailTouch, ...], last: str = "2026-11-01"
                ) -> tuple[int, list[Touch]]:
    text = doc({"dana": {"name": "Dana", "email": "dana@x.example", "last_contact": last,
                         "log": log}})
    [item] = leads_text(text)
    memory = {"dana": Memory(first_seen=D("2026-01-01"), touches=mails)}
    [result] = plan_text(text, D("2026-11-16"), memory)
    return result.unanswered, touches(item.lead, mails)


def test_a_logged_mail_found_in_the_mailbox_is_one_touch() -> None:
    count, found = _unanswered(["2026-11-16 intro email"], (mail("2026-11-16", "10:12"),))
    assert count == 1
    assert [t.at for t in found] == [None, T("2026-11-16T10:12")]  # the pair: the mail's time


def test_done_with_its_time_and_the_mail_are_one_touch() -> None:
    count, _ = _unanswered(["2026-11-16 10:30 sent the intro"], (mail("2026-11-16", "10:12"),))
    assert count == 1


def test_two_mails_are_two_touches_and_each_pairs_once() -> None:
    two = (mail("2026-11-16", "10:12"), mail("2026-11-16", "16:00", subject="again"))
    assert _unanswered(["2026-11-16 intro email"], two)[0] == 2
    assert _unanswered(["2026-11-16 a", "2026-11-16 b"], two)[0] == 2
    assert _unanswered(["2026-11-16 a", "2026-11-16 b", "2026-11-16 c"], two)[0] == 3
    # another day, another act
    assert _unanswered(["2026-11-15 intro email"], two[:1])[0] == 2


def test_only_the_same_direction_pairs() -> None:
    reply = (mail("2026-11-16", "10:12", by="them", subject="Re: intro"),)
    count, found = _unanswered(["2026-11-16 intro email",
                                {"date": "2026-11-16", "by": "them", "note": "she replied"}],
                               reply)
    assert count == 0
    assert [t.by for t in found] == ["both", "me", "them"]
    # a call (`both`) and a mail that day are two acts
    count, found = _unanswered([{"date": "2026-11-16", "by": "both", "note": "call"}],
                               (mail("2026-11-16", "10:12"),))
    assert (count, [t.by for t in found]) == (1, ["both", "both", "me"])


def test_a_ticked_to_do_and_the_mail_sent_for_it_are_one_touch() -> None:
    ticked = Touch(date=D("2026-11-16"), note="completed in the calendar (phone)",
                   rule="cadence")
    text = doc({"dana": {"name": "Dana", "email": "dana@x.example",
                         "last_contact": "2026-11-01"}})
    memory = {"dana": Memory(first_seen=D("2026-01-01"),
                             touches=(ticked, mail("2026-11-16", "10:12")))}
    [result] = plan_text(text, D("2026-11-16"), memory)
    assert result.unanswered == 1


def test_touches_are_ordered_by_their_time() -> None:
    """A reply at 14:00 logged by hand comes after my mail of 10:00 that day."""
    count, found = _unanswered([{"date": "2026-11-16", "at": "14:00", "by": "them"}],
                               (mail("2026-11-16", "10:00"),))
    assert count == 0
    assert [t.by for t in found] == ["both", "me", "them"]


# --- end to end: log + Sent mail through the CLI -------------------------------------------

LEADS = """\
version: 1
defaults: {cadence: [1mo, 2mo, 3mo]}
leads:
  dana:
    name: Dana Whitfield
    email: dana@acme.example
    last_contact: 2026-11-01
    log: ["2026-11-16 intro email"]
"""


def test_logged_and_sent_is_one_follow_up(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    p = mail_project(project, monkeypatch, imap_account, leads=LEADS)
    mail_to(imap_account, "dana@acme.example", "2026-11-16", "Intro", "11:20")
    assert p.run("sync", now="2026-11-17T08:00")[0] == 0
    code, out, err = p.run("agenda", "--json", "--days", "400", now="2026-11-17T08:00")
    assert code == 0, err
    [item] = [i for i in json.loads(out)["upcoming"] if i["rule"] == "cadence"]
    assert item["due"] == "2027-01-16", item  # 2nd follow-up: + 2mo, not the 3rd's 3mo
    # `done` after sending it: still one act
    code, out, err = p.run("done", "dana", "--note", "sent the intro", now="2026-11-16T11:25")
    assert code == 0, err
    assert "- 2026-11-16 11:25 sent the intro" in out
    assert p.run("sync", now="2026-11-17T08:05")[0] == 0
    code, out, err = p.run("agenda", "--json", "--days", "400", now="2026-11-17T08:05")
    [item] = [i for i in json.loads(out)["upcoming"] if i["rule"] == "cadence"]
    # two entries and one mail: two acts (the intro, and one more), never three
    assert item["due"] == "2027-02-16", item


# --- the state keeps the moment of a status change ------------------------------------------

def test_a_schema_4_state_loads_and_keeps_status_changes_with_their_time(tmp_path: Any) -> None:
    """An older state (a date-only status change, calendar touches without a rule) loads as
    it was; a change seen now is kept with its time, a ticked to-do with its rule."""

    from followsync.state import SCHEMA_VERSION, State

    old_state(tmp_path, 4, LEADS_3, TOUCHES_4,
              "INSERT INTO leads VALUES ('dana', '2026-11-01', 'offer', '2026-11-20');",
              "INSERT INTO touches VALUES ('t', 'u1', 'dana', '2026-11-21', 'completed');")
    state = State(tmp_path)
    try:
        memory = state.memories()["dana"]
        assert memory.status_changed == D("2026-11-20")
        assert memory.touches == (Touch(date=D("2026-11-21"), note="completed"),)
        version = state.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 5
        changed = Memory(first_seen=D("2026-11-01"), status="won",
                         status_changed=T("2026-11-22T09:14:05"))
        with state.transaction():
            state.remember([("dana", changed)])
            state.add_touch("t", "u2", "dana", Touch(date=D("2026-11-22"), note="completed",
                                                     rule="status-offer-ann"))
    finally:
        state.close()
    state = State(tmp_path)
    try:
        memory = state.memories()["dana"]
        assert memory.status_changed == T("2026-11-22T09:14:05")
        assert memory.touches[-1].rule == "status-offer-ann"
    finally:
        state.close()


# --- end to end: a status change seen by a sync, and done after it ---------------------------

STATUS_LEADS = """\
version: 1
defaults:
  on_status: {interviewed: {after: 1d, do: "Send {name} a thank-you note"}}
  on_other_status: {offer: {after: 0d, do: "Tell {name} about the offer"}}
leads:
  dana: {name: Dana, status: applied, log: ["2026-05-01 applied"]}
  ann: {name: Ann, status: waiting, log: ["2026-05-01 wrote"]}
"""


def pending(p: Project, now: str) -> list[str]:
    code, out, err = p.run("agenda", "--json", "--days", "60", now=now)
    assert code == 0, err
    data = json.loads(out)
    return sorted(f"{i['lead']} {i['rule']}" for i in data["overdue"] + data["upcoming"])


def test_an_interview_logged_on_its_day_asks_for_the_note_until_done(project: Project) -> None:
    p = project
    p.write_config()
    p.write_leads(STATUS_LEADS)
    assert p.run("sync", now="2026-05-05T09:00")[0] == 0
    # the interview: logged with the status, on its day
    p.edit("dana: {name: Dana, status: applied, log: [\"2026-05-01 applied\"]}",
           "dana: {name: Dana, status: interviewed, last_contact: 2026-05-06, "
           "log: [\"2026-05-01 applied\"]}")
    assert p.run("sync", now="2026-05-06T18:30")[0] == 0
    assert pending(p, "2026-05-06T18:35") == ["ann cadence", "dana cadence",
                                              "dana status-interviewed"]
    assert "Send Dana a thank-you note" in p.ics.read_text()
    # the next morning it is still there; `done` now is later than the change: done
    assert pending(p, "2026-05-07T08:00")[-1] == "dana status-interviewed"
    code, out, err = p.run("done", "dana", "--note", "sent the note", now="2026-05-07T08:05")
    assert code == 0 and "- 2026-05-07 08:05 sent the note" in out, (out, err)
    assert p.run("sync", now="2026-05-07T08:10")[0] == 0
    assert pending(p, "2026-05-07T08:10") == ["ann cadence", "dana cadence"]
    assert "thank-you" not in p.ics.read_text()


def test_an_offer_tells_the_lead_i_spoke_to_that_morning(project: Project) -> None:
    p = project
    p.write_config()
    p.write_leads(STATUS_LEADS)
    assert p.run("sync", now="2026-05-05T09:00")[0] == 0
    assert p.run("done", "ann", "--note", "called", now="2026-05-06T09:30")[0] == 0
    p.edit("status: applied", "status: offer")
    assert p.run("sync", now="2026-05-06T15:00")[0] == 0
    assert "ann status-offer-dana" in pending(p, "2026-05-06T15:05")
    # her reply later that day does not tell her about my offer
    assert p.run("done", "ann", "--by", "them", "--note", "she wrote",
                 now="2026-05-06T17:00")[0] == 0
    assert p.run("sync", now="2026-05-06T17:05")[0] == 0
    assert "ann status-offer-dana" in pending(p, "2026-05-06T17:05")
    assert "Tell Ann about the offer" in p.ics.read_text()


def test_a_trigger_to_do_ticked_off_on_the_day_of_the_change_stays_done(tmp_path: Any) -> None:
    """`after: 0d`: the offer's to-do is due the day of the change, and ticked off that day
    (a completion has a date, no time: not later than the change): its rule marks it done,
    kept in the state, in every later sync."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from followsync import sync
    from followsync.backends.memory import MemoryBackend
    from followsync.config import load_config
    from followsync.marks import uid_of
    from followsync.render import uid_for
    from followsync.sync import SyncOptions
    from tests.project import config_text, ics_target

    zone = ZoneInfo("Europe/Berlin")
    (tmp_path / "leads.yaml").write_text(STATUS_LEADS)
    (tmp_path / "config.yaml").write_text(config_text(ics_target("a.ics", "phone", as_="todo")))
    config = load_config(tmp_path / "config.yaml")
    phone = MemoryBackend()

    def run(now: str) -> list[str]:
        """The follow-ups pending after a sync at `now`."""
        when = datetime.fromisoformat(now).replace(tzinfo=zone)
        outcome = sync.run(config, when, SyncOptions(backends={"phone": phone}))
        assert outcome.exit_code == 0
        return [f"{f.lead_id} {f.rule}" for p in outcome.plans for f in p.follow_ups]

    def rules() -> list[str]:
        return sorted(text.split("X-FOLLOWSYNC-RULE:")[1].split("\r\n")[0]
                      for _, text in phone.items.values())

    run("2026-05-05T09:00")
    (tmp_path / "leads.yaml").write_text(STATUS_LEADS.replace("status: applied", "status: offer"))
    run("2026-05-06T15:00")
    assert rules() == ["cadence", "cadence", "status-offer-dana"]
    uid = uid_for("phone", "ann", "status-offer-dana")
    for href, (_etag, text) in list(phone.items.items()):
        if uid_of(text) == uid:
            stamp = datetime(2026, 5, 6, 16, 0, tzinfo=zone).astimezone(UTC)
            phone.put_foreign(href, text.replace(
                "STATUS:NEEDS-ACTION", f"STATUS:COMPLETED\r\nCOMPLETED:{stamp:%Y%m%dT%H%M%SZ}"))
    run("2026-05-06T16:05")
    for now in ("2026-05-07T08:00", "2026-05-08T08:00"):
        assert "ann status-offer-dana" not in run(now), now
        open_items = [text for _, text in phone.items.values()
                      if "STATUS:COMPLETED" not in text]
        assert not any("status-offer-dana" in text for text in open_items), now


# --- review of the moments: a pair, an older state, the same minute -------------------------

def test_a_mail_sent_before_the_change_and_logged_after_it_completes_the_trigger() -> None:
    """The status is seen at 10:04:02; the note is logged at 10:05 and its Sent mail is dated
    10:03. Log line and mail are one act (counted once), and for the trigger it counts at the
    later of its two moments: done, with the mailbox as without it."""
    text = doc({"dana": {"name": "Dana", "email": "dana@x.example", "status": "interviewed",
                         "last_contact": "2026-11-20",
                         "log": ["2026-12-07 10:05 sent the thank-you note"]}})
    memory = seen_changing(text, "dana", "applied", "2026-12-07T10:04:02")
    [alone] = plan_text(text, D("2026-12-07"), memory)
    sent = mail("2026-12-07", "10:03:00", subject="Thanks!")
    with_mail = {"dana": replace(memory["dana"], touches=(sent,))}
    [both] = plan_text(text, D("2026-12-07"), with_mail)
    assert rules_of(alone) == rules_of(both) == ["cadence"]
    assert both.unanswered == alone.unanswered == 1  # one act, not two
    assert both.last_touch == sent  # the pair takes the mail's time for ordering


def test_a_change_kept_by_an_older_state_is_done_by_a_touch_that_day() -> None:
    """An older followsync kept the change's day only and counted a touch on that day as
    done: a date-only log line, or its to-do ticked off (no rule), still completes it."""
    text = doc({"dana": {"name": "Dana", "last_contact": "2026-11-20", "status": "interviewed",
                         "log": ["2026-12-02 sent the note"]}})
    old = Memory(first_seen=D("2026-11-01"), status="interviewed",
                 status_changed=D("2026-12-02"))
    [logged] = plan_text(text, D("2026-12-03"), {"dana": old})
    assert rules_of(logged) == ["cadence"]
    plain = doc({"dana": {"name": "Dana", "last_contact": "2026-11-20",
                          "status": "interviewed"}})
    ticked = replace(old, touches=(Touch(date=D("2026-12-02"), note="completed"),))
    [done] = plan_text(plain, D("2026-12-03"), {"dana": ticked})
    assert rules_of(done) == ["cadence"]
    [before] = plan_text(plain, D("2026-12-03"), {"dana": replace(
        old, touches=(Touch(date=D("2026-12-01"), note="completed"),))})
    assert "status-interviewed" in rules_of(before)  # the day before the change: not done


def test_an_older_state_s_ticked_to_do_gets_the_rule_of_its_item(tmp_path: Any) -> None:
    """The upgrade fills the rule of a to-do ticked off before it from its item's row."""
    from followsync.state import State

    old_state(tmp_path, 4, ITEMS_4, LEADS_3, TOUCHES_4,
              "INSERT INTO leads VALUES ('dana', '2026-11-01', 'interviewed', '2026-12-02');",
              "INSERT INTO items (target, uid, href, etag, hash, gone, lead, rule) VALUES "
              "('t', 'u1', 'h1', 'e', 'x', 1, 'dana', 'status-interviewed');",
              "INSERT INTO touches VALUES ('t', 'u1', 'dana', '2026-12-02', 'completed');",
              "INSERT INTO touches VALUES ('t', 'u9', 'dana', '2026-12-03', 'completed');")
    state = State(tmp_path)
    try:
        touched = state.memories()["dana"].touches
    finally:
        state.close()
    assert [t.rule for t in touched] == ["status-interviewed", None]


def test_a_touch_in_the_minute_the_change_was_seen_completes_it() -> None:
    """The change seen at 10:00:30 is kept as 10:00 (`done` writes minutes): a touch at 10:00
    is done after it; a date-only line of that day still is not."""
    for entry, pending in (("2026-12-07 10:00 sent the note", False),
                           ("2026-12-07 09:59 sent the note", True),
                           ("2026-12-07 sent the note", True)):
        text = doc({"dana": {"name": "Dana", "last_contact": "2026-11-20",
                             "status": "interviewed", "log": [entry]}})
        memory = seen_changing(text, "dana", "applied", "2026-12-07T10:00:30")
        assert memory["dana"].status_changed == T("2026-12-07T10:00")
        [result] = plan_text(text, D("2026-12-07"), memory)
        assert ("status-interviewed" in rules_of(result)) is pending, entry


def test_done_in_the_minute_of_the_sync_that_saw_the_change(project: Project) -> None:
    p = project
    p.write_config()
    p.write_leads(STATUS_LEADS)
    assert p.run("sync", now="2026-05-07T08:00")[0] == 0
    p.edit("status: applied", "status: interviewed")
    assert p.run("sync", now="2026-05-07T10:00:30")[0] == 0
    assert "dana status-interviewed" in pending(p, "2026-05-07T10:00:40")
    assert p.run("done", "dana", "--note", "sent the note", now="2026-05-07T10:00:50")[0] == 0
    assert p.run("sync", now="2026-05-07T10:01:10")[0] == 0
    assert "dana status-interviewed" not in pending(p, "2026-05-07T10:01:10")
    assert "thank-you" not in p.ics.read_text()


def test_a_change_kept_by_an_older_state_is_the_same_in_a_sync_of_one_lead(
        project: Project) -> None:
    """After the upgrade, a sync of the one lead edited (sync.delta) reads Ann's offer, kept
    by its day alone, as the full sync does: Bea, told that day, stays told."""
    p = project
    p.write_config()
    p.write_leads("version: 1\ndefaults:\n"
                  "  on_other_status: {offer: {after: 0d, do: \"Tell {name} about the offer\"}}\n"
                  "leads:\n"
                  "  ann: {name: Ann, status: offer, log: [\"2026-11-20 wrote\"]}\n"
                  "  bea: {name: Bea, log: [\"2026-11-20 wrote\", \"2026-12-02 told her\"]}\n")
    p.state.mkdir(mode=0o700)
    old_state(p.state, 4, LEADS_3, TOUCHES_4,
              "INSERT INTO leads VALUES ('ann', '2026-11-01', 'offer', '2026-12-02');",
              "INSERT INTO leads VALUES ('bea', '2026-11-01', NULL, NULL);")
    assert p.run("sync", now="2026-12-03T08:00")[0] == 0
    assert "Tell Bea" not in p.ics.read_text()
    p.edit("told her", "told her about it")
    assert p.run("sync", now="2026-12-03T08:05")[0] == 0
    assert "Tell Bea" not in p.ics.read_text()
    assert "bea status-offer-ann" not in pending(p, "2026-12-03T08:05")
