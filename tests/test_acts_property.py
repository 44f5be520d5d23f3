"""A property over random weeks of use (issue 17, "Done when"): log lines with and without a
time, `done` (with and without `--rule`), mails both ways, the same act both logged and
found in the mailbox, status changes (a lead's own `interviewed`, another lead's `offer`,
seen by a sync or written as `status_since`), to-dos ticked off in a calendar, and days
passing. After each step the rules' plan is compared with what the README says, computed
here from the *acts* the user made (not from the records of them):

  * unanswered is the number of my acts after their latest answer or our latest call: one
    act never counts twice, however many places record it;
  * the cadence item is due at the latest act + the gap for that count (or, never
    contacted, on the day the lead was first seen), and rolls to today: nothing freezes;
  * every status trigger the README says fires is in the plan and no other: a trigger is
    done only by a later act of mine (or a call), or by a record naming its rule; another
    lead's `offer` reaches the leads I had an act with before it. "Later" is to the minute
    (a record with a time from the change's minute on; a date-only one on a later day); an
    act logged and also found in the mailbox counts at the later of its two records (the
    mail may be dated before the log line); a change an older state kept by its day alone
    is done by an act on or after that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.durations import Duration
from followsync.leads import LeadFile, LoadedLead, MailTouch, Policy, Touch
from followsync.rules import LeadPlan, Memory, plan

DAY0 = date(2026, 5, 4)
LEADS = ["ann", "bea", "cid", "dan"]
CADENCE = (Duration(1, "w"), Duration(2, "w"), Duration(1, "mo"))
DEFAULTS = {
    "cadence": ["1w", "2w", "1mo"],
    "on_status": {"interviewed": {"after": "1d", "do": "Thank {name}"}},
    "on_other_status": {"offer": {"after": "0d", "do": "Tell {name} about the offer"}},
}
AFTER = {"interviewed": 1, "offer": 0}


@dataclass
class Act:
    """Something the user did with a lead (or the lead did), at its true moment."""

    by: str
    moment: datetime  # where it stands among the acts (a mail's time, if there is a mail)
    seq: int
    timed: bool = True  # False: its moment is the start of the day of a date-only record
    # every record of it, (moment, with a time): a log line and the mail of the same act
    records: list[tuple[datetime, bool]] = field(default_factory=list)


@dataclass
class World:
    """The lead file, the mailbox, the calendar and the state as they stand, and the acts."""

    today: date = DAY0
    clock: datetime = datetime.combine(DAY0, time(8, 0))
    seq: int = 0
    seconds: int = 0  # mails get unique odd seconds: no two touches tie
    log: dict[str, list[Any]] = field(default_factory=lambda: {i: [] for i in LEADS})
    mails: dict[str, list[MailTouch]] = field(default_factory=lambda: {i: [] for i in LEADS})
    ticked: dict[str, list[Touch]] = field(default_factory=lambda: {i: [] for i in LEADS})
    status: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(LEADS))
    # when a sync saw the status change (a date alone: as an older followsync kept it)
    changed: dict[str, date | None] = field(default_factory=lambda: dict.fromkeys(LEADS))
    since: dict[str, date | None] = field(default_factory=lambda: dict.fromkeys(LEADS))
    last_contact: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(LEADS, False))
    acts: dict[str, list[Act]] = field(default_factory=lambda: {i: [] for i in LEADS})
    named: dict[str, dict[str, date]] = field(default_factory=lambda: {i: {} for i in LEADS})
    modes: dict[tuple[str, date, str], str] = field(default_factory=dict)

    def act(self, lead: str, by: str, moment: datetime, timed: bool = True,
            records: list[tuple[datetime, bool]] | None = None) -> None:
        self.seq += 1
        self.acts[lead].append(Act(by, moment, self.seq, timed,
                                   records if records is not None else [(moment, timed)]))

    # --- what the rules get ---------------------------------------------------------------
    def loaded(self) -> list[LoadedLead]:
        leads: dict[str, Any] = {}
        for lead in LEADS:
            body: dict[str, Any] = {"name": lead.title(), "email": f"{lead}@x.example",
                                    "log": list(self.log[lead])}
            if self.last_contact[lead]:
                body["last_contact"] = DAY0.isoformat()
            if self.status[lead]:
                body["status"] = self.status[lead]
            if self.since[lead]:
                body["status_since"] = self.since[lead].isoformat()  # type: ignore[union-attr]
            leads[lead] = body
        parsed = LeadFile.model_validate({"version": 1, "defaults": DEFAULTS, "leads": leads})
        base = Policy().apply(parsed.defaults)
        return [LoadedLead(i, lead, base.apply(lead), "t.yaml")
                for i, lead in (parsed.leads or {}).items()]

    def memory(self) -> dict[str, Memory]:
        return {lead: Memory(first_seen=DAY0, status=self.status[lead],
                             status_changed=self.changed[lead],
                             touches=(*self.ticked[lead], *self.mails[lead]))
                for lead in LEADS}

    def plans(self) -> dict[str, LeadPlan]:
        return {p.lead_id: p for p in plan(self.loaded(), self.today, self.memory())}

    # --- what the README says ---------------------------------------------------------------
    def moment_of(self, lead: str) -> date | None:
        """When the lead's status changed: the start of its `status_since` day, else the
        minute a sync saw it, or its day alone (an older state)."""
        since, changed = self.since[lead], self.changed[lead]
        if since:
            return datetime.combine(since, time.min)
        return changed.replace(second=0) if isinstance(changed, datetime) else changed

    @staticmethod
    def later(record: tuple[datetime, bool], change: date) -> bool:
        """Whether a record of an act is later than a status change (README)."""
        at, timed = record
        if not isinstance(change, datetime):
            return at.date() >= change
        return at.replace(second=0) >= change if timed else at > change

    @staticmethod
    def before(act: Act, change: date) -> bool:
        """Whether an act came before a status change (I was in conversation then)."""
        if not isinstance(change, datetime):
            return act.moment.date() < change
        return act.moment.replace(second=0) < change if act.timed else act.moment < change

    def ordered(self, lead: str) -> list[Act]:
        return sorted(self.acts[lead], key=lambda a: (a.moment, a.seq))

    def unanswered(self, lead: str) -> int:
        count = 0
        for act in self.ordered(lead):
            count = count + 1 if act.by == "me" else 0
        return count

    def cadence_due(self, lead: str) -> date:
        acts = self.ordered(lead)
        if not acts:
            return max(DAY0, self.today)
        gap = CADENCE[min(self.unanswered(lead), len(CADENCE) - 1)]
        return max(gap.after(acts[-1].moment.date()), self.today)

    def done_after(self, lead: str, rule: str, change: date) -> bool:
        mine = any(self.later(record, change) for a in self.acts[lead] if a.by != "them"
                   for record in a.records)
        return mine or self.named[lead].get(rule, date.min) >= _day(change)

    def triggers(self, lead: str) -> dict[str, date]:
        """rule → due date (rolled) of every status trigger the README says is pending."""
        if self.status[lead] == "hired":
            return {}
        found: dict[str, date] = {}
        own = self.moment_of(lead)
        if self.status[lead] == "interviewed" and own is not None and \
                not self.done_after(lead, "status-interviewed", own):
            found["status-interviewed"] = _day(own) + timedelta(days=1)
        for other in LEADS:
            moment = self.moment_of(other)
            if other == lead or self.status[other] != "offer" or moment is None:
                continue
            rule = f"status-offer-{other}"
            talking = any(self.before(a, moment) for a in self.acts[lead])
            if talking and not self.done_after(lead, rule, moment):
                found[rule] = _day(moment)
        return {rule: max(day, self.today) for rule, day in found.items()}


def _day(change: date) -> date:
    return change.date() if isinstance(change, datetime) else change


MODES = {"me": ["records", "mail", "both"], "them": ["records", "mail", "both"],
         "both": ["records"]}


def do_act(world: World, data: st.DataObject, lead: str, by: str,
           rule: str | None = None) -> None:
    """One act, recorded as the group's mode says: a record (log line, `done`, a ticked
    to-do), a mail, or both (the same act logged and found in the mailbox)."""
    day = world.today
    key = (lead, day, by)
    if key not in world.modes:
        world.modes[key] = data.draw(st.sampled_from(MODES[by]))
    mode = world.modes[key]
    earlier = data.draw(st.one_of(st.just(0), st.integers(0, 90)))  # often now: after a change
    clock = max(world.clock - timedelta(minutes=earlier),
                datetime.combine(day, time(6, 0))).replace(second=0)
    moment, timed = clock, True
    records: list[tuple[datetime, bool]] = []
    if mode in ("mail", "both"):
        world.seconds = world.seconds % 29 + 1
        # the mail of an act also logged may be dated before the log line's time
        sent = clock - timedelta(minutes=data.draw(st.integers(0, 20)) if mode == "both" else 0)
        at = max(sent, datetime.combine(day, time(6, 0))).replace(second=2 * world.seconds - 1)
        world.mails[lead].append(MailTouch(date=day, at=at, by=by,
                                           note=f"mail {world.seq}", subject="s"))
        moment = at
        records.append((at, True))
        rule = None if mode == "mail" else rule
    if mode in ("records", "both"):
        dated = by == "me" and data.draw(st.booleans())  # only my records may lack a time
        kind = data.draw(st.sampled_from(["log", "ticked"] if by == "me" else ["log"]))
        dated = dated or kind == "ticked"  # a to-do ticked off: date only, its rule
        record = (datetime.combine(day, time.min), False) if dated else (clock, True)
        records.append(record)
        if mode == "records":
            moment, timed = record
        if kind == "ticked":
            world.ticked[lead].append(Touch(date=day, note=f"ticked {world.seq}",
                                            rule=rule or "cadence"))
        elif rule is not None or by != "me":  # the mapping form (done --rule, a reply)
            entry: dict[str, Any] = {"date": day.isoformat(), "by": by, "note": f"n{world.seq}"}
            if not dated:
                entry["at"] = clock.strftime("%H:%M")
            if rule is not None:
                entry["rule"] = rule
            world.log[lead].append(entry)
        else:
            world.log[lead].append(f"{day.isoformat()} note {world.seq}" if dated else
                                   f"{day.isoformat()} {clock.strftime('%H:%M')} note")
        if rule is not None or kind == "ticked":
            name = rule or "cadence"
            world.named[lead][name] = max(world.named[lead].get(name, date.min), day)
    world.act(lead, by, moment, timed, records)


def step(world: World, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["act", "act", "act", "status", "rule", "day", "later"]))
    lead = data.draw(st.sampled_from(LEADS))
    if kind == "act":
        do_act(world, data, lead, data.draw(st.sampled_from(["me", "me", "them", "both"])))
    elif kind == "rule":  # done --rule, or its to-do ticked off, for a pending trigger
        pending = [f.rule for f in world.plans()[lead].follow_ups if f.rule.startswith("status")]
        if pending:
            do_act(world, data, lead, "me", data.draw(st.sampled_from(pending)))
    elif kind == "status":
        new = data.draw(st.sampled_from(["interviewed", "offer", "waiting", "hired"]))
        if new != world.status[lead]:
            world.status[lead] = new
            world.changed[lead] = world.clock.replace(second=15)  # a sync saw it now
            if data.draw(st.integers(0, 5)) == 0:  # an older followsync: the day alone
                world.changed[lead] = world.today
            written = data.draw(st.booleans())
            world.since[lead] = world.today if written else None
            if data.draw(st.booleans()):  # and I act on it at once (the thank-you note)
                do_act(world, data, lead, "me")
    elif kind == "day":
        world.today += timedelta(days=data.draw(st.integers(1, 9)))
        world.clock = datetime.combine(world.today, time(8, 0))
    else:
        world.clock = min(world.clock + timedelta(minutes=data.draw(st.integers(1, 300))),
                          datetime.combine(world.today, time(23, 0)))


def check(world: World) -> None:
    plans = world.plans()
    for lead in LEADS:
        result = plans[lead]
        items = {f.rule: f for f in result.follow_ups}
        for item in result.follow_ups:
            assert item.due >= world.today, item  # nothing freezes in the past
        if world.status[lead] == "hired":
            assert items == {}
            continue
        assert result.unanswered == world.unanswered(lead), (lead, world.acts[lead])
        assert items["cadence"].due == world.cadence_due(lead), (lead, items["cadence"].reason)
        status = {rule: f.due for rule, f in items.items() if rule.startswith("status-")}
        assert status == world.triggers(lead), (lead, world.acts[lead])


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_act_is_one_touch_and_triggers_fire_as_the_readme_says(data: st.DataObject) -> None:
    world = World()
    for lead in LEADS:  # some leads are in conversation from the start, others never were
        if data.draw(st.booleans()):
            world.last_contact[lead] = True
            world.act(lead, "both", datetime.combine(DAY0, time.min), timed=False)
    check(world)
    for _ in range(data.draw(st.integers(1, 25))):
        step(world, data)
        check(world)
