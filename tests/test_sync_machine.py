"""The two-way sync contract as a state machine (README, "What appears in the calendar";
issue 5), against in-RAM calendars.

Hypothesis interleaves edits of the lead file, edits made in calendar apps (a to-do ticked
off, an item moved, an item deleted, someone else's item added), mail found in the mailbox,
new days and syncs. A small explicit model says what the calendars must hold after each sync:

  * the rules' answer (`rules.plan`) for the lead file plus the to-dos ticked off in a calendar
    (each a touch by me on its day) and the mail touches the mail scan stored, with the memory
    followsync keeps per lead (the day it was first seen, its last status and the day that
    status was first seen);
  * each cadence item's "Unanswered so far" is the number of my acts since their latest answer
    or our latest call, counted here from the acts (not by `rules`): a log line or a ticked
    to-do and a mail of one day and direction are one act, and a mail found again in another
    folder is still one;
  * minus the items the user deleted, as long as the follow-up is still what it was when
    followsync last wrote it ("changed since" is judged on the follow-up as the lead file and
    the calendar touches define it, blind to the daily overdue roll);
  * an item the user moved or ticked off keeps exactly the user's text while the follow-up is
    unchanged; otherwise an item shows followsync's own rendering of the follow-up;
  * a calendar app's bookkeeping (a reminder dismissed or snoozed in Thunderbird, Apple
    Calendar or Evolution) is no edit: such an item still rolls and is rewritten;
  * never a duplicate UID; someone else's items are never touched; and a sync right after a
    sync writes nothing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import HealthCheck, Phase, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from followsync import sync
from followsync.backends.memory import MemoryBackend
from followsync.config import load_config
from followsync.leads import MailTouch, Touch, parse_lead_file
from followsync.marks import is_owned, uid_of
from followsync.render import description, summary, uid_for
from followsync.rules import FollowUp, Memory, plan
from followsync.sources import FoundTouch
from followsync.state import open_state
from followsync.sync import SyncOptions
from tests.apps import apple_dismiss, evolution_save, thunderbird_dismiss
from tests.project import config_text, ics_target, leads_text

ZONE = ZoneInfo("Europe/Berlin")
START = date(2026, 3, 2)
DEFAULTS = """\
version: 1
defaults:
  cadence: [1w, 2w]
  give_up_after: 3
  at: "09:00"
  spread: false
  on_status:
    interviewed: {after: 1d, do: "Thank {name}"}
  on_other_status:
    offer: {after: 0d, do: "Tell {name} about the offer"}
leads:
"""
TARGETS = {"todo": "todo", "event": "event"}  # name -> as (both in-RAM calendars)
# A mailbox that is never logged in to (every sync here scans none): the mail rule stores
# what its scan would have found, as `sources.scan.scan_mailboxes` does.
MAILBOX = """\
mail:
  - {name: inbox, host: imap.invalid, username: me, password_env: FOLLOWSYNC_MACHINE_NONE,
     me: [me@here.example]}
"""
NO_SCAN = frozenset[str]()
GIVE_UP_AFTER = 3  # (DEFAULTS' give_up_after: that many unanswered, the cadence stops)
STATUSES = ["waiting", "interviewed", "offer", "closed"]
_UNANSWERED = re.compile(r"Unanswered so far: (\d+) follow-up")
_WHEN = re.compile(r"^(DTSTART|DUE|DTEND)((?:;[^:\r\n]*)?):(\d{8}T\d{6})(Z?)\r?$", re.M)


@dataclass
class LeadModel:
    """A lead as written in the lead file."""

    name: str
    status: str | None = None
    log: list[tuple[date, str, str]] = field(default_factory=list)  # (date, by, note)
    one_offs: dict[str, tuple[date, str]] = field(default_factory=dict)  # id -> (on, do)

    def yaml(self, lead_id: str) -> str:
        lines = [f"  {lead_id}:", f"    name: {self.name}", f"    email: {lead_id}@leads.example"]
        if self.status:
            lines.append(f"    status: {self.status}")
        if self.log:
            lines.append("    log:")
            lines += [f"      - {{date: {d.isoformat()}, by: {by}, note: \"{note}\"}}"
                      for d, by, note in self.log]
        if self.one_offs:
            lines.append("    follow_ups:")
            lines += [f"      - {{id: {key}, on: {on.isoformat()}, do: \"{do}\"}}"
                      for key, (on, do) in sorted(self.one_offs.items())]
        return "\n".join(lines) + "\n"


def defined(item: FollowUp) -> FollowUp:
    """The follow-up as the lead file and the calendar touches define it: the daily overdue
    roll (today's date, "overdue N days") taken out."""
    return replace(item, due=item.due - timedelta(days=item.overdue_days), overdue_days=0)


@dataclass(frozen=True)
class UserVersion:
    """An item the user changed in a calendar app: the follow-up it showed then, and the text
    the app saved."""

    shown: FollowUp
    text: str


FOREIGN = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Another App//EN\r
BEGIN:{kind}\r
UID:{uid}\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260310T140000Z\r
SUMMARY:Dentist {n}\r
END:{kind}\r
END:VCALENDAR\r
"""


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="followsync-machine-"))
        (self.dir / "config.yaml").write_text(config_text(
            "".join(ics_target(f"{name}.ics", name, as_=kind) for name, kind in TARGETS.items()),
            extra="safety: {max_deletes: 1000}\n" + MAILBOX))
        self.today = START
        self.leads: dict[str, LeadModel] = {}
        self.next_id = 0
        self._new_lead()
        self._new_lead(one_off_in=0)
        self._write_leads()
        self.config = load_config(self.dir / "config.yaml")
        self.backends = {name: MemoryBackend() for name in TARGETS}
        # what followsync remembers, as the contract defines it
        self.memory: dict[str, Memory] = {}
        self.calendar_touches: dict[str, set[Touch]] = {}
        self.mails: dict[str, list[MailTouch]] = {}  # as the sync reads them from the state
        self.found: list[FoundTouch] = []  # as the mail scan stored them
        # per target: uid -> the follow-up followsync last wrote there
        self.written: dict[str, dict[str, FollowUp]] = {t: {} for t in TARGETS}
        self.edited: dict[str, dict[str, UserVersion]] = {t: {} for t in TARGETS}
        self.deleted: dict[str, dict[str, FollowUp]] = {t: {} for t in TARGETS}
        self.ticked: dict[str, dict[str, tuple[str, date, str]]] = {t: {} for t in TARGETS}
        self.foreign: dict[str, dict[str, tuple[str, str]]] = {t: {} for t in TARGETS}

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------
    def _new_lead(self, status: str | None = None, one_off_in: int | None = None) -> str:
        lead_id = f"l{self.next_id}"
        self.next_id += 1
        lead = LeadModel(name=f"Person {lead_id}", status=status)
        if one_off_in is not None:
            lead.one_offs["a"] = (self.today + timedelta(days=one_off_in), "Ask about a")
        self.leads[lead_id] = lead
        return lead_id

    def _write_leads(self) -> None:
        text = DEFAULTS + "".join(lead.yaml(i) for i, lead in self.leads.items())
        (self.dir / "leads.yaml").write_text(text)
        self.lead_text = text

    def _now(self) -> datetime:
        return datetime.combine(self.today, time(10, 0), tzinfo=ZONE)

    def _owned(self, target: str) -> dict[str, tuple[str, str]]:
        """uid -> (href, text) of the items with followsync's marks."""
        found = {}
        for href, (_etag, text) in self.backends[target].items.items():
            if is_owned(text):
                uid = uid_of(text)
                assert uid is not None
                found[uid] = (href, text)
        return found

    def _pick(self, target: str, index: int, todo_open: bool = False) -> tuple[str, str, str]:
        owned = self._owned(target)
        choices = sorted(uid for uid, (_h, text) in owned.items()
                         if not todo_open or "STATUS:NEEDS-ACTION" in text)
        assume(choices)
        uid = choices[index % len(choices)]
        href, text = owned[uid]
        return uid, href, text

    def _user_saves(self, target: str, uid: str, href: str, text: str) -> None:
        """What a calendar app does; the model notes which follow-up the item showed."""
        self.backends[target].put_foreign(href, text)
        shown = self.edited[target][uid].shown if uid in self.edited[target] \
            else self.written[target][uid]
        self.edited[target][uid] = UserVersion(shown, text)

    # --- the lead file -----------------------------------------------------------------------
    @rule(change=st.sampled_from(["log a touch", "move a one-off", "reword a one-off",
                                  "set a status", "add a lead", "remove a lead"]),
          index=st.integers(0, 50), by=st.sampled_from(["me", "them", "both"]),
          days=st.integers(-3, 10), status=st.sampled_from(STATUSES))
    def edit_the_lead_file(self, change: str, index: int, by: str, days: int,
                           status: str) -> None:
        lead = self.leads[sorted(self.leads)[index % len(self.leads)]]
        if change == "log a touch":  # today or a few days back
            when = self.today - timedelta(days=abs(days) % 4)
            lead.log.append((when, by, f"touch {len(lead.log)}"))
        elif change in ("move a one-off", "reword a one-off"):  # the one-off keeps its id
            on, do = lead.one_offs.get("a", (self.today, "Ask about a"))
            if change == "move a one-off":
                on = self.today + timedelta(days=days)
            else:
                do = "Ask about b" if do == "Ask about a" else "Ask about a"
            lead.one_offs["a"] = (on, do)
        elif change == "set a status":  # closing a lead is one of them
            lead.status = status
        elif change == "add a lead":
            assume(len(self.leads) < 5)
            self._new_lead(status if status != "closed" else None,
                           days if days >= 0 else None)
        else:  # a lead file without leads deletes nothing: keep one
            assume(len(self.leads) > 1)
            del self.leads[sorted(self.leads)[index % len(self.leads)]]

    # --- the calendars -----------------------------------------------------------------------
    @rule(index=st.integers(0, 50))
    def tick_off_a_todo(self, index: int) -> None:
        uid, href, text = self._pick("todo", index, todo_open=True)
        stamp = datetime.combine(self.today, time(12, 0), tzinfo=ZONE).astimezone(UTC)
        done = text.replace("STATUS:NEEDS-ACTION",
                            f"STATUS:COMPLETED\r\nCOMPLETED:{stamp:%Y%m%dT%H%M%SZ}", 1)
        self._user_saves("todo", uid, href, done)
        shown = self.edited["todo"][uid].shown
        self.ticked["todo"][uid] = (shown.lead_id, self.today, shown.rule)

    @rule(calendar=st.sampled_from(sorted(TARGETS)), index=st.integers(0, 50),
          days=st.integers(-2, 5))
    def move_an_item(self, calendar: str, index: int, days: int) -> None:
        uid, href, text = self._pick(calendar, index)

        def moved(match: re.Match[str]) -> str:
            when = datetime.strptime(match.group(3), "%Y%m%dT%H%M%S") + timedelta(days=days)
            when = when.replace(hour=15, minute=45)
            return f"{match.group(1)}{match.group(2)}:{when:%Y%m%dT%H%M%S}{match.group(4)}"

        new = _WHEN.sub(moved, text)
        assume(new != text)
        self._user_saves(calendar, uid, href, new)

    @rule(calendar=st.sampled_from(sorted(TARGETS)), index=st.integers(0, 50),
          app=st.sampled_from(["thunderbird", "thunderbird snooze", "apple", "apple snooze",
                               "evolution"]))
    def dismiss_a_reminder(self, calendar: str, index: int, app: str) -> None:
        """A calendar app's bookkeeping (tests/apps.py): never an edit. The item stays ours:
        it must roll, be rewritten and be deleted as if nothing had happened (the checks of
        `_check`: a frozen item fails them the next day); an item the user had edited stays
        the user's, with the app's new text."""
        uid, href, text = self._pick(calendar, index)
        now = self._now().astimezone(UTC)
        stamp, later = f"{now:%Y%m%dT%H%M%SZ}", f"{now + timedelta(minutes=15):%Y%m%dT%H%M%SZ}"
        snooze = later if app.endswith("snooze") else None
        if app.startswith("thunderbird"):
            new = thunderbird_dismiss(text, stamp, snooze_until=snooze)
        elif app.startswith("apple"):
            new = apple_dismiss(text, stamp, snooze_until=snooze)
        else:
            new = evolution_save(text, old_tzid=False)
        self.backends[calendar].put_foreign(href, new)
        if uid in self.edited[calendar]:
            self.edited[calendar][uid] = UserVersion(self.edited[calendar][uid].shown, new)

    @rule(calendar=st.sampled_from(sorted(TARGETS)), index=st.integers(0, 50))
    def delete_an_item(self, calendar: str, index: int) -> None:
        uid, href, _text = self._pick(calendar, index)
        del self.backends[calendar].items[href]
        version = self.edited[calendar].pop(uid, None)
        self.deleted[calendar][uid] = version.shown if version else self.written[calendar][uid]
        self.ticked[calendar].pop(uid, None)  # ticked off, then deleted: no app reports it

    @rule(calendar=st.sampled_from(sorted(TARGETS)), kind=st.sampled_from(["VEVENT", "VTODO"]))
    def add_someone_elses_item(self, calendar: str, kind: str) -> None:
        n = sum(len(f) for f in self.foreign.values())
        uid = f"dentist-{n}@another.example"
        text = FOREIGN.format(kind=kind, uid=uid, n=n)
        remote = self.backends[calendar].put_foreign(f"{uid}.ics", text)
        self.foreign[calendar][remote.href] = (remote.etag, text)

    # --- the mailbox ------------------------------------------------------------------------
    @rule(index=st.integers(0, 50), by=st.sampled_from(["me", "them"]), days=st.integers(0, 3),
          minute=st.integers(0, 24 * 60 - 1),
          how=st.sampled_from(["new", "as a record", "and logged", "found again"]),
          subject=st.sampled_from(["the role", "Re: the role", "Next steps"]))
    def a_mail_arrives(self, index: int, by: str, days: int, minute: int, how: str,
                       subject: str) -> None:
        """A mail from a lead (by them) or from me to a lead (by me), stored as the mail scan
        stores what it found (`State.save_mail_scan`; no server here). The same act may be
        recorded twice: `as a record`, the mail is of the day and direction of a log line or
        a ticked to-do of a lead; `and logged`, I log today's mail in the lead file too.
        `found again`: a mail already found, found once more in another folder (one message,
        one touch)."""
        if how == "found again" and self.found:
            known = self.found[index % len(self.found)]
            self._store(replace(known, folder=f"{known.folder}/Archive"))
            return
        lead_id = sorted(self.leads)[index % len(self.leads)]
        day = self.today - timedelta(days=days)
        same = [(lead, d, b) for lead in sorted(self.leads)
                for d, _kind, _i, b in self._records(lead) if b != "both"]
        if how == "as a record" and same:
            lead_id, day, by = same[index % len(same)]
        elif how == "and logged":  # what I just did
            day, lead = self.today, self.leads[lead_id]
            lead.log.append((day, by, f"touch {len(lead.log)}"))
        # today's mail came before this morning's sync (10:00); no two mails share a second
        minute %= 10 * 60 if day >= self.today else 24 * 60
        n = len(self.found)
        local = datetime.combine(day, time(minute // 60, minute % 60, n % 60), tzinfo=ZONE)
        found = FoundTouch(local.astimezone(UTC), lead_id, "me" if by == "me" else "them",
                           f"<m{n}.{lead_id}@machine.example>", subject,
                           "INBOX" if by == "them" else "Sent")
        self._store(found)
        self.found.append(found)
        # the touch the sync reads: in local wall time (a time a clock change skips moves on)
        wall = found.when.astimezone(ZONE).replace(tzinfo=None)
        way = "from" if by == "them" else "to"
        self.mails.setdefault(lead_id, []).append(MailTouch(
            date=wall.date(), by=by, note=f'mail {way} {self.leads[lead_id].name} "{subject}"',
            at=wall, subject=subject, message_id=found.key))

    def _store(self, found: FoundTouch) -> None:
        (box,) = self.config.mailboxes
        state = open_state(self.config.state_dir)
        try:
            with state.transaction():
                state.save_mail_scan(box.key, box.name, "machine", {}, [found])
        finally:
            state.close()

    # --- time ---------------------------------------------------------------------------------
    @rule(days=st.integers(1, 9))
    def days_pass(self, days: int) -> None:
        self.today += timedelta(days=days)

    # --- the sync and what it must do -------------------------------------------------------
    @initialize()
    def first_sync(self) -> None:
        self.sync()

    @rule()
    def sync(self) -> None:
        self._write_leads()
        options = SyncOptions(backends=dict(self.backends), scan=NO_SCAN)
        outcome = sync.run(self.config, self._now(), options)
        for report in outcome.targets:
            assert report.error is None, report.error
            assert report.warnings == [], report.warnings
            assert report.conflicts == 0
        self._remember()
        self._check()
        # nothing is rewritten for nothing: a second sync right away writes nothing
        writes = {t: b.writes for t, b in self.backends.items()}
        items = {t: dict(b.items) for t, b in self.backends.items()}
        sync.run(self.config, self._now(), options)
        assert {t: b.writes for t, b in self.backends.items()} == writes
        assert {t: dict(b.items) for t, b in self.backends.items()} == items

    def _remember(self) -> None:
        """What a sync takes in: leads seen (first day, status changes) and ticked to-dos."""
        parsed, _ = parse_lead_file("leads.yaml", self.lead_text.encode())
        for lead_id, lead in (parsed.leads or {}).items():
            known = self.memory.get(lead_id)
            if known is None:
                self.memory[lead_id] = Memory(first_seen=self.today, status=lead.status)
            elif known.status != lead.status:  # seen at the moment of the sync
                self.memory[lead_id] = replace(known, status=lead.status,
                                               status_changed=self._now().replace(tzinfo=None))
        for target, ticked in self.ticked.items():
            for lead_id, day, its_rule in ticked.values():  # (a to-do marks its own rule done)
                note = f"completed in the calendar ({target})"
                self.calendar_touches.setdefault(lead_id, set()).add(
                    Touch(date=day, by="me", note=note, rule=its_rule))
            ticked.clear()

    def _rules(self) -> dict[str, FollowUp]:
        """The rules' answer for the whole history: (lead, rule) -> follow-up."""
        loaded = leads_text(self.lead_text)
        memory = {
            item.id: replace(self.memory[item.id], touches=(*sorted(
                self.calendar_touches.get(item.id, ()), key=lambda t: (t.date, t.note)),
                *self.mails.get(item.id, ())))
            for item in loaded}
        return {f"{f.lead_id} {f.rule}": f
                for p in plan(loaded, self.today, memory) for f in p.follow_ups}

    def _records(self, lead_id: str) -> list[tuple[date, int, int, str]]:
        """The lead's records of acts, in time order (all without a time): its log lines in
        file order, then the days a to-do of it was ticked off (one act a day)."""
        log = [(d, 1, i, by) for i, (d, by, _note) in enumerate(self.leads[lead_id].log)]
        days = sorted({t.date for t in self.calendar_touches.get(lead_id, ())})
        return sorted(log + [(d, 2, i, "me") for i, d in enumerate(days)])

    def _unanswered(self, lead_id: str) -> int:
        """My acts since their latest answer or our latest call (README "Mail": a record and a
        mail of one day and direction are one act; records pair with mails in time order)."""
        mails = sorted(self.mails.get(lead_id, ()), key=lambda m: m.at)
        acts: list[tuple[datetime, int, int, str]] = [
            (m.at, 3, i, m.by) for i, m in enumerate(mails)]
        recorded: dict[tuple[date, str], int] = {}
        for day, kind, i, by in self._records(lead_id):
            if by != "both":
                nth = recorded[day, by] = recorded.get((day, by), 0) + 1
                if nth <= sum(m.date == day and m.by == by for m in mails):
                    continue  # that mail is this act
            acts.append((datetime.combine(day, time.min), kind, i, by))
        count = 0
        for *_, by in sorted(acts):
            count = count + 1 if by == "me" else 0
        return count

    def _check(self) -> None:
        answer = self._rules()
        self._check_unanswered(answer)
        for target, kind in TARGETS.items():
            wanted = {uid_for(target, f.lead_id, f.rule): f for f in answer.values()}
            owned = self._owned(target)
            expected_present = set()
            for uid, item in wanted.items():
                gone = self.deleted[target].get(uid)
                if gone is not None and gone == defined(item):
                    assert uid not in owned, f"{target}: {uid} deleted by hand came back"
                    continue
                expected_present.add(uid)
                assert uid in owned, f"{target}: {uid} missing"
                _href, text = owned[uid]
                version = self.edited[target].get(uid)
                if version is not None and version.shown == defined(item):
                    assert text == version.text, f"{target}: the user's edit of {uid} was lost"
                else:
                    self._assert_rendered(text, item, kind)
            assert set(owned) == expected_present, (target, set(owned) ^ expected_present)
            # the model forgets what no longer applies, and notes what followsync wrote
            self.deleted[target] = {u: f for u, f in self.deleted[target].items()
                                    if u in wanted and f == defined(wanted[u])}
            self.edited[target] = {u: v for u, v in self.edited[target].items()
                                   if u in wanted and v.shown == defined(wanted[u])}
            self.written[target] = {u: defined(wanted[u]) for u in expected_present}

    def _check_unanswered(self, answer: dict[str, FollowUp]) -> None:
        """One act never counts twice: each open lead's cadence item says the unanswered
        count of its acts, in the rules' answer and in every calendar that holds it."""
        owned = {target: self._owned(target) for target in TARGETS}
        for lead_id, lead in self.leads.items():
            if lead.status == "closed":
                continue
            count = self._unanswered(lead_id)
            item = answer.get(f"{lead_id} cadence")
            if count >= GIVE_UP_AFTER:
                assert item is None, (lead_id, count, item)
                continue
            assert item is not None and item.unanswered == count, (lead_id, count, item)
            for target in TARGETS:  # (the text unfolded: parsing it again costs seconds)
                there = owned[target].get(uid_for(target, lead_id, "cadence"))
                if there is not None:
                    said = _UNANSWERED.findall(there[1].replace("\r\n ", ""))
                    assert said == [str(count)], (target, lead_id, count, said)

    def _assert_rendered(self, text: str, item: FollowUp, kind: str) -> None:
        cal = icalendar.Calendar.from_ical(text)
        (comp,) = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
        assert comp.name == ("VTODO" if kind == "todo" else "VEVENT")
        assert str(comp["X-FOLLOWSYNC-LEAD"]) == item.lead_id
        assert str(comp["X-FOLLOWSYNC-RULE"]) == item.rule
        assert str(comp["SUMMARY"]) == summary(item)
        assert str(comp["DESCRIPTION"]) == description(item)  # the reason, the reply link
        assert item.at is not None
        start = datetime.combine(item.due, item.at, tzinfo=ZONE)
        assert comp.decoded("DTSTART") == start
        if kind == "todo":
            assert comp.decoded("DUE") == start
            assert str(comp["STATUS"]) == "NEEDS-ACTION"

    # --- always -------------------------------------------------------------------------------
    @invariant()
    def one_item_per_uid_and_foreign_items_untouched(self) -> None:
        for target, backend in self.backends.items():
            uids = [uid_of(text) for _etag, text in backend.items.values()]
            assert len(uids) == len(set(uids)), f"{target}: duplicate UID"
            for href, (etag, text) in self.foreign[target].items():
                assert backend.items.get(href) == (etag, text), f"{target}: {href} was touched"


SyncMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=15, deadline=None,
    # no "explain" phase: tracing every line of a sync makes a failure take minutes to report
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_the_two_way_sync_contract = SyncMachine.TestCase


# --- regressions the machine's model pins down, as plain tests ------------------------------
def _run(config: Any, day: date, backends: dict[str, MemoryBackend]) -> None:
    outcome = sync.run(config, datetime.combine(day, time(10), tzinfo=ZONE),
                       SyncOptions(backends=dict(backends)))
    assert outcome.exit_code == 0


def _tick(backend: MemoryBackend, uid: str, day: date) -> None:
    for href, (_etag, text) in list(backend.items.items()):
        if uid_of(text) == uid:
            stamp = datetime.combine(day, time(12), tzinfo=ZONE).astimezone(UTC)
            backend.put_foreign(href, text.replace(
                "STATUS:NEEDS-ACTION", f"STATUS:COMPLETED\r\nCOMPLETED:{stamp:%Y%m%dT%H%M%SZ}"))
            return
    raise AssertionError(uid)


def test_touches_from_two_calendars_on_one_day_give_the_same_plan_in_every_sync(
        tmp_path: Path) -> None:
    """The cadence to-do ticked off on the same day in two to-do calendars: the sync that
    sees it and every later one must agree on the follow-up (else it is rewritten, and edits
    and deletions made in the calendars are overridden, for nothing)."""
    (tmp_path / "leads.yaml").write_text(
        DEFAULTS + "  dana:\n    name: Dana\n    last_contact: 2026-03-01\n")
    (tmp_path / "config.yaml").write_text(config_text(
        ics_target("a.ics", "phone", as_="todo") + ics_target("b.ics", "phone2", as_="todo")))
    config = load_config(tmp_path / "config.yaml")
    backends = {"phone": MemoryBackend(), "phone2": MemoryBackend()}
    _run(config, START, backends)
    for name, backend in backends.items():
        _tick(backend, uid_for(name, "dana", "cadence"), START + timedelta(days=1))
    _run(config, START + timedelta(days=1), backends)
    texts = {name: dict(b.items) for name, b in backends.items()}
    writes = {name: b.writes for name, b in backends.items()}
    assert all(len(items) == 1 for items in texts.values())  # the next follow-up, moved
    _run(config, START + timedelta(days=1), backends)
    assert {name: b.writes for name, b in backends.items()} == writes
    assert {name: dict(b.items) for name, b in backends.items()} == texts
