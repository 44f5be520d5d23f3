"""PURE: when is each lead's next follow-up due? (README, "When is a follow-up due?")

No clock, no files: `today` and what followsync remembers of each lead are arguments, so the
rules can be tested exhaustively. The output is plain data for `render` and `agenda`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from urllib.parse import quote

from followsync.durations import Duration
from followsync.leads import Lead, LoadedLead, MailTouch, Policy, Touch, expand, title
from followsync.model import Kind

ORDINALS = {1: "st", 2: "nd", 3: "rd"}
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd."""
    suffix = "th" if n % 100 in (11, 12, 13) else ORDINALS.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class Memory:
    """What followsync remembers of a lead between runs (kept in the state)."""

    first_seen: date
    status: str | None = None
    # When the status change was first seen: a datetime (local wall time, to the minute); a
    # plain date (a state written before the time was kept) is that day as a whole: a touch
    # on or after it completes the trigger, as it did then (`status_key`). None: the status
    # is as first seen, no trigger fires.
    status_changed: date | None = None
    touches: tuple[Touch, ...] = ()  # to-dos completed in a calendar: touches by me


@dataclass(frozen=True)
class Person:
    """The lead's details that appear in every item of that lead."""

    name: str
    org: str | None = None
    role: str | None = None
    email: str | None = None
    phone: str | None = None
    url: str | None = None
    status: str | None = None
    notes: str | None = None
    # how to answer the lead's last mail thread (README "Mail"); out of repr so that the
    # items of leads without mail keep their hashes (render.input_hash adds it)
    reply: Reply | None = field(default=None, repr=False)


_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")


@dataclass(frozen=True)
class Reply:
    """An answer to the lead's last mail: to its first address, `Re:` its subject, in its
    thread (`In-Reply-To`, RFC 6068 allows any header in a mailto: link; Thunderbird's
    mailto: parser reads `in-reply-to` and makes References of it)."""

    address: str
    subject: str = ""
    message_id: str = ""

    def text(self) -> str:
        """`to dana@acme.example, "Re: the marketing role"`: the link as a person reads it."""
        return f"to {self.address}" + (f', "{self.subject}"' if self.subject else "")

    def link(self) -> str:
        """The mailto: link (every value percent-encoded)."""
        query = [("subject", self.subject)] if self.subject else []
        if _MESSAGE_ID.fullmatch(self.message_id):  # a header from outside: only a real id
            query.append(("in-reply-to", self.message_id))
        return f"mailto:{quote(self.address, safe='@')}" + (
            "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query)
            if query else "")


@dataclass(frozen=True)
class FollowUp:
    """One pending follow-up: what to do, when, and why then."""

    lead_id: str
    rule: str
    due: date
    at: time | None  # None: an all-day item
    duration: Duration
    alarms: tuple[Duration, ...]
    kind: Kind
    action: str
    title: str  # the SUMMARY, without the overdue note
    reason: str
    person: Person
    # > 0 only when rolled: how late it is on the day it is shown (today, or the next of the
    # allowed `days`), so it does not change from one day to the next before then
    overdue_days: int = 0
    unanswered: int | None = None  # cadence items only
    # laid end to end with the calendar's other items of its time (sync.planning, slots);
    # out of repr, so items keep their hashes (render.input_hash adds it when false)
    spread: bool = field(default=True, repr=False)


@dataclass(frozen=True)
class LeadPlan:
    """A lead's standing (for `agenda`) and its pending follow-ups."""

    lead_id: str
    person: Person
    closed: bool
    cold: bool
    unanswered: int
    last_touch: Touch | None
    follow_ups: tuple[FollowUp, ...]
    calendar_touches: tuple[Touch, ...] = ()  # to-dos ticked off in a calendar
    mail_touches: tuple[MailTouch, ...] = ()  # found in mail, oldest first


def remember(
    previous: Memory | None, lead: Lead, today: date, now: datetime | None = None
) -> Memory:
    """The memory after seeing `lead` today: a status change is dated the minute it is first
    seen (`now`, local wall time: minutes, as `done` writes them; without it, `today`)."""
    if previous is None:
        return Memory(first_seen=today, status=lead.status, status_changed=None)
    if lead.status != previous.status:
        return replace(previous, status=lead.status,
                       status_changed=today if now is None else _minute(now))
    return previous


def moment(day: date) -> datetime:
    """A datetime as it is; a plain date as the start of its day."""
    return day if isinstance(day, datetime) else datetime.combine(day, time.min)


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def touches(lead: Lead, calendar: tuple[Touch, ...] = ()) -> list[Touch]:
    """All touches in the README's order, one per act: by their moment (a touch without a
    time at the start of its day); at one moment `last_contact` first, then the log in file
    order, then to-dos completed in a calendar, then mail. A log entry or a ticked to-do and
    a mail of the same day and direction are one touch: the mail (`_pair`)."""
    return [touch for touch, _ in _acts(lead, calendar)]


def _acts(lead: Lead, calendar: tuple[Touch, ...]) -> list[tuple[Touch, Touch | None]]:
    """`touches`, each with the record (log entry, ticked to-do) that is the same act as
    it, if it is a mail that has one: for a status trigger the act counts at the later of
    the two (a mail sent before the change was seen, logged after it, is done after it)."""
    mail = sorted((t for t in calendar if isinstance(t, MailTouch)), key=_by_day_note)
    ticked = _ticked(calendar)
    found: list[tuple[datetime, int, int, Touch, Touch | None]] = []
    if lead.last_contact is not None:
        found.append((moment(lead.last_contact), 0, 0,
                      Touch(date=lead.last_contact, by="both", note="last contact"), None))
    records = [(1, i, t) for i, t in enumerate(lead.log)] + \
        [(2, i, t) for i, t in enumerate(ticked)]
    paired = _pair(records, mail) if mail else {}
    found.extend((t.moment(), kind, i, t, None) for kind, i, t in records
                 if (kind, i) not in paired)
    by_id = {(kind, i): t for kind, i, t in records} if paired else {}
    partner = {index: by_id[key] for key, index in paired.items()}
    found.extend((t.moment(), 3, i, t, partner.get(i)) for i, t in enumerate(mail))
    return [(t, r) for *_, t, r in sorted(found, key=lambda item: item[:3])]


def _ticked(calendar: Iterable[Touch]) -> list[Touch]:
    """The to-dos ticked off in a calendar, in an order that does not depend on how they were
    found or loaded. Two to-dos of a lead ticked off one day in one calendar are one touch
    (their rules still each mark their own follow-up done: `_named`)."""
    ticked = sorted((t for t in calendar if not isinstance(t, MailTouch)), key=_by_day_note)
    return list({(t.date, t.by, t.note): t for t in ticked[::-1]}.values())[::-1]


def _pair(records: list[tuple[int, int, Touch]], mail: list[MailTouch]
          ) -> dict[tuple[int, int], int]:
    """The records (log entries, ticked to-dos) that are the same act as a mail, each with
    that mail's index: on one day and in one direction (`me`, `them`; a `both` call or
    meeting is not a mail), the first record in time order pairs with the first mail, the
    second with the second, ..."""
    by_key: dict[tuple[date, str], list[tuple[datetime, int, int]]] = {}
    for kind, i, touch in records:
        if touch.by != "both":
            by_key.setdefault((touch.date, touch.by), []).append((touch.moment(), kind, i))
    mails: dict[tuple[date, str], list[int]] = {}
    for index, touch in enumerate(mail):
        mails.setdefault((touch.date, touch.by), []).append(index)
    paired: dict[tuple[int, int], int] = {}
    for key, indexes in mails.items():
        paired.update(((kind, i), index) for (_, kind, i), index
                      in zip(sorted(by_key.get(key, ())), indexes, strict=False))
    return paired


def _by_day_note(touch: Touch) -> tuple[date, str, str]:
    when = touch.at.time().isoformat() if isinstance(touch, MailTouch) else ""
    return touch.date, when, touch.note


def reply_link(lead: Lead, mail: tuple[MailTouch, ...]) -> Reply | None:
    """An answer to the last mail: the lead's first address, `Re: <its subject>`, its thread."""
    addresses = lead.addresses()
    if not mail or not addresses:
        return None
    last = max(mail, key=_by_day_note)
    subject = " ".join(last.subject.split())
    if subject and not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return Reply(addresses[0], subject, last.message_id.strip())


def unanswered_count(ordered: list[Touch]) -> int:
    """How many `me` touches follow the latest `them`/`both` touch."""
    count = 0
    for touch in ordered:
        count = count + 1 if touch.by == "me" else 0
    return count


def plan(
    leads: Iterable[LoadedLead], today: date, memory: Mapping[str, Memory]
) -> list[LeadPlan]:
    """Every lead's plan. `memory` must hold an entry per lead (see `remember`)."""
    loaded = list(leads)
    entered = _status_entries(loaded, memory)
    return [_plan_lead(item, today, memory[item.id], entered, index)
            for index, item in enumerate(loaded)]


# status → (file order, lead id, moment: see `status_day`), sorted by `status_key` (what
# fires is then sorted by file order)
Entered = dict[str, list[tuple[int, str, date]]]

# Where a status change and a touch stand in time, to the minute, as (moment, rank): a touch
# completes a trigger when its key is greater than the change's, and reaches another lead's
# trigger (`on_other_status`) when it is less. A timed touch (rank 1) counts from the minute
# of the change on (`done` writes minutes; a sync keeps the minute it saw); a date-only one
# (rank 0, at the start of its day) only after it, so a date-only line of the change's day
# never does; a change known only by its day (an older state, rank -1) is done by any touch
# on or after that day, as it was then.
Key = tuple[datetime, int]


def status_key(day: date) -> Key:
    """A status change's key (see `Key`)."""
    if isinstance(day, datetime):
        return _minute(day), 0
    return datetime.combine(day, time.min), -1


def _act(touch: Touch) -> Key:
    """A touch's key (see `Key`)."""
    return (_minute(touch.at), 1) if touch.at is not None else (touch.moment(), 0)


def plan_some(
    leads: Iterable[tuple[int, LoadedLead]], today: date, memory: Mapping[str, Memory],
    entered: Entered,
) -> list[LeadPlan]:
    """The plans of some leads only (by their place in the file order), with every lead's
    status entries given: what `plan` makes of these leads (see sync.delta)."""
    return [_plan_lead(item, today, memory[item.id], entered, index) for index, item in leads]


def _status_entries(leads: list[LoadedLead], memory: Mapping[str, Memory]) -> Entered:
    """The leads whose status change is known, by status (so each lead looks up only the
    statuses it has triggers for: planning stays linear in the number of leads)."""
    result: Entered = {}
    for index, item in enumerate(leads):
        day = status_day(item.lead, memory[item.id])
        if day is not None and item.lead.status:
            result.setdefault(item.lead.status, []).append((index, item.id, day))
    for entries in result.values():
        entries.sort(key=_entry_key)  # (stable: file order at one moment) see `_may_fire`
    return result


def _entry_key(entry: tuple[int, str, date]) -> Key:
    return status_key(entry[2])


def _may_fire(
    entries: list[tuple[int, str, date]], first: Key, last_act: Key | None
) -> list[tuple[int, str, date]]:
    """The status entries (sorted by `status_key`) that reach a lead whose first touch has
    the key `first` and whose latest act by me (or both) the key `last_act`: later than its
    first touch (it was in conversation then) and not done by its last act. With every lead
    listening for a status (`defaults: on_other_status`), looking at every entry for every
    lead made planning quadratic."""
    start = bisect_right(entries, first, key=_entry_key)
    if last_act is not None:
        start = max(start, bisect_left(entries, last_act, key=_entry_key))
    return entries[start:]


def status_day(lead: Lead, memory: Memory) -> date | None:
    """When the lead entered its current status, if known: the start of its `status_since`
    day (which wins), else the minute a sync first saw the change (a datetime), or its day
    alone (a plain date, kept by an older followsync: see `Key`)."""
    if lead.status_since is not None:
        return moment(lead.status_since)
    changed = memory.status_changed if memory.status == lead.status else None
    if isinstance(changed, datetime):
        return _minute(changed)
    return changed


def _day_of(day: date) -> date:
    return day.date() if isinstance(day, datetime) else day


def _named(ordered: Iterable[Touch]) -> dict[str, date]:
    """Rule → the latest day a touch named it as done (`followsync done --rule`, a to-do
    of that rule ticked off in a calendar)."""
    found: dict[str, date] = {}
    for touch in ordered:
        if touch.rule is not None and touch.date > found.get(touch.rule, date.min):
            found[touch.rule] = touch.date
    return found


def _plan_lead(
    item: LoadedLead, today: date, memory: Memory, entered: Entered, index: int
) -> LeadPlan:
    lead, policy = item.lead, item.policy
    acts = _acts(lead, memory.touches)
    ordered = [touch for touch, _ in acts]
    unanswered = unanswered_count(ordered)
    mail = tuple(sorted((t for t in memory.touches if isinstance(t, MailTouch)),
                        key=_by_day_note))
    ticked = tuple(_ticked(memory.touches))
    person = Person(lead.name, lead.org, lead.role, lead.email_text() or None, lead.phone, lead.url,
                    lead.status, lead.notes, reply_link(lead, mail))
    closed = lead.status is not None and lead.status in policy.closed
    cold = policy.give_up_after is not None and unanswered >= policy.give_up_after
    last = ordered[-1] if ordered else None
    if closed:
        return LeadPlan(item.id, person, True, cold, unanswered, last, (), ticked, mail)
    make = _Maker(item.id, lead, policy, person, today)
    found: list[FollowUp] = []
    cadence = _cadence(lead, policy, ordered, unanswered, cold, memory, make)
    if cadence is not None:
        found.append(cadence)
    latest = ordered[-1].date if ordered else None
    named = _named((*lead.log, *memory.touches))
    for one in lead.follow_ups:
        key = one.id or one.on.isoformat()
        if one.done or (latest is not None and latest >= one.on) or f"once-{key}" in named:
            continue
        all_day = one.all_day if one.all_day is not None else (
            False if one.at is not None else policy.all_day)
        found.append(make(f"once-{key}", one.on, expand(one.do, lead),
                          f"one-off follow-up set for {one.on.isoformat()}",
                          at=one.at, all_day=all_day, promise=True))
    # A status trigger asks me to act after the change: only a later touch by me (or both)
    # does it, or one naming its rule; `on_other_status` reaches the leads I was in
    # conversation with at that moment (README, "Status triggers"). An act recorded twice
    # (a log line and its mail) counts at the later of its two records.
    last_act = max((max(_act(t), _act(r)) if r is not None else _act(t)
                    for t, r in acts if t.by != "them"), default=None)
    own_day = status_day(lead, memory) if lead.status else None
    fired = [(index, item.id, name, own_day, trigger) for name, trigger in policy.on_status
             if own_day is not None and name == lead.status]
    if ordered:  # a lead never contacted gets its own "reach out" instead
        first = min(_act(t) for t in ordered)
        for name, trigger in policy.on_other_status:
            entries = entered.get(name, ())
            fired += [(index, lead_id, name, day, trigger)
                      for index, lead_id, day in (_may_fire(entries, first, last_act)
                                                  if entries else ()) if lead_id != item.id]
    for _index, lead_id, status, day, trigger in sorted(fired, key=lambda f: f[0]):
        own = lead_id == item.id
        rule = f"status-{status}" if own else f"status-{status}-{lead_id}"
        on = _day_of(day)
        if (last_act is not None and last_act > status_key(day)) or \
                named.get(rule, date.min) >= on:
            continue
        who = "" if own else f"{lead_id} "
        found.append(make(rule, trigger.after.after(on), expand(trigger.do, lead),
                          f"{who}entered status {status!r} on {on.isoformat()}"
                          f" + {trigger.after}", at=trigger.at,
                          all_day=False if trigger.at is not None else None))
    return LeadPlan(item.id, person, False, cold, unanswered, last, tuple(found), ticked, mail)


def _cadence(
    lead: Lead, policy: Policy, ordered: list[Touch], unanswered: int, cold: bool,
    memory: Memory, make: _Maker,
) -> FollowUp | None:
    action = expand(policy.action, lead)
    anchor = ordered[-1].date if ordered else None
    promise = False
    if lead.next is not None and (anchor is None or lead.next > anchor):
        due, reason = lead.next, f"hand-set next date {lead.next.isoformat()}"
        promise = True
    elif anchor is None:
        due, reason = memory.first_seen, f"new lead: reach out (first seen {memory.first_seen})"
    elif cold:
        return None
    else:
        gap = policy.cadence[min(unanswered, len(policy.cadence) - 1)]
        nth = ordinal(unanswered + 1)
        due = gap.after(anchor)
        reason = f"{nth} follow-up: {counted(ordered, unanswered)} + {gap}"
    if lead.snooze_until is not None and lead.snooze_until > due:
        due, reason = lead.snooze_until, f"{reason}, snoozed until {lead.snooze_until}"
        promise = False  # snoozing is "not before", not a date promised to anyone
    return make("cadence", due, action, reason, unanswered=unanswered, promise=promise)


NOTE_WIDTH = 50  # a touch's note in a reason is cut after this many characters


def counted(ordered: list[Touch], unanswered: int) -> str:
    """What a cadence date counted, for its reason (README "plan"): the unanswered touches
    (the first and the last two of many), since which answer, and the anchor:
    `1 unanswered (2026-11-18 emailed) since their reply 2026-11-10; last touch 2026-11-18`.
    Made of the touches alone, never of today: it is in the item's DESCRIPTION."""
    last = ordered[-1]
    if not unanswered:
        return f"last touch {last.date.isoformat()}" + (f" ({last.note})" if last.note else "")
    mine = ordered[-unanswered:]
    listed = [mine[0], None, *mine[-2:]] if len(mine) > 3 else mine
    shown = ", ".join("…" if t is None else _touch_text(t) for t in listed)
    before = ordered[-unanswered - 1] if len(ordered) > unanswered else None
    if before is None:
        since = ", no answer yet"
    elif before.by == "them":
        since = f" since their reply {before.date.isoformat()}"
    else:
        since = f" since {before.date.isoformat()} ({_cut(before.note) or 'two-way'})"
    return f"{unanswered} unanswered ({shown}){since}; last touch {last.date.isoformat()}"


def _touch_text(touch: Touch) -> str:
    note = _cut(touch.note)
    return f"{touch.date.isoformat()} {note}" if note else touch.date.isoformat()


def _cut(note: str) -> str:
    """A note on one line, cut between words after NOTE_WIDTH characters with `…`."""
    flat = " ".join(note.split())
    if len(flat) <= NOTE_WIDTH:
        return flat
    cut = flat[:NOTE_WIDTH]
    if " " in cut[NOTE_WIDTH // 2:]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def allowed_day(day: date, days: tuple[int, ...]) -> date:
    """`day`, or the first day after it whose weekday is in `days` (Monday = 0)."""
    for ahead in range(7):
        moved = day + timedelta(days=ahead)
        if moved.weekday() in days:
            return moved
    return day  # no day allowed: cannot happen, the lead file refuses an empty `days`


def day_text(day: date) -> str:
    """`Sat 2013-06-01` (English names, whatever the locale)."""
    return f"{DAY_NAMES[day.weekday()]} {day.isoformat()}"


def days_text(days: tuple[int, ...]) -> str:
    """`mon-fri`, `mon, wed, fri`, `mon-wed, sat`: the `days` setting as a user writes it."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [name.lower() for name in DAY_NAMES]
    parts = [f"{names[r[0]]}-{names[r[-1]]}" if len(r) >= 3 else ", ".join(names[d] for d in r)
             for r in runs]
    return ", ".join(parts)


class _Maker:
    """Builds FollowUps of one lead, applying the overdue rule in one place."""

    def __init__(
        self, lead_id: str, lead: Lead, policy: Policy, person: Person, today: date
    ) -> None:
        self.lead_id, self.lead, self.policy = lead_id, lead, policy
        self.person, self.today = person, today

    def __call__(
        self, rule: str, due: date, action: str, reason: str, *, at: time | None = None,
        all_day: bool | None = None, unanswered: int | None = None, promise: bool = False,
    ) -> FollowUp:
        """`promise`: a date the user set by hand (`next`, a one-off's `on`), which `days`
        never moves and an overdue roll brings to today even on a day not allowed."""
        policy = self.policy
        whole_day = policy.all_day if all_day is None else all_day
        if not promise:
            moved = allowed_day(due, policy.days)
            if moved != due:  # the reason says so; it never depends on today
                reason = (f"{reason} = {day_text(due)}, moved to {day_text(moved)} "
                          f"(days: {days_text(policy.days)})")
                due = moved
        # Only a rolled item says how late it is: a kept one stays put and unchanged.
        overdue = 0
        if policy.overdue == "roll" and due < self.today:
            shown = self.today if promise else allowed_day(self.today, policy.days)
            overdue, due = (shown - due).days, shown
        return FollowUp(
            lead_id=self.lead_id, rule=rule, due=due,
            at=None if whole_day else (at or policy.at),
            duration=policy.duration, alarms=policy.alarms, kind=policy.kind,
            action=action, title=title(policy.title, action, self.lead), reason=reason,
            person=self.person, overdue_days=overdue, unanswered=unanswered,
            spread=policy.spread,
        )
