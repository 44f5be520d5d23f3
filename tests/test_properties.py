"""Property tests for the pure core: random valid leads through `plan` and `render`."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.durations import Duration
from followsync.leads import LeadFile, LoadedLead, Policy, Touch
from followsync.render import input_hash, normalise, render, uid_for
from followsync.rules import (
    FollowUp,
    LeadPlan,
    Memory,
    Person,
    plan,
    remember,
    status_day,
    touches,
)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=30)

START = date(2012, 1, 1)
STATUSES = ["waiting", "interviewed", "offer", "applied", "hired", "closed", "lost",
            "rejected", "on hold", "Offer", "x-y"]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]

# mostly a few crowded years (same-day touches, overdue items), sometimes far away
dates = st.one_of(st.dates(min_value=START, max_value=date(2015, 12, 31)),
                  st.dates(min_value=date(1970, 1, 1), max_value=date(2200, 12, 31)))
todays = st.one_of(st.dates(min_value=date(2011, 6, 1), max_value=date(2016, 6, 1)),
                   st.dates(min_value=date(1970, 1, 1), max_value=date(2200, 12, 31)))
units = st.sampled_from(["m", "h", "d", "w", "mo", "y"])
durations = st.builds(lambda n, u: f"{n}{u}", st.integers(0, 40), units)
gaps = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 30), st.sampled_from(["d", "w", "mo", "y"])),
    st.sampled_from(["100y", "1200mo", "5217w", "36525d", "0m", "0h"]))
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
day_sets = st.sets(st.integers(0, 6), min_size=1)  # weekday numbers, Monday = 0
days_settings = st.one_of(
    st.sampled_from([*WEEKDAYS, "Sat", "FRI"]),  # one day, without a list
    day_sets.map(lambda days: [WEEKDAYS[d].title() if d % 2 else WEEKDAYS[d] for d in days]))
times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
ids = st.builds(lambda a, b: a + b, st.sampled_from("abcx0"),
                st.text(alphabet="abcx0-._", max_size=5))
words = st.text(alphabet="aZé ü😀李,;:\\\"—-{}", min_size=1, max_size=30)
texts = st.one_of(
    st.sampled_from(["Zoë 😀 Ünlü", "李小龍", "Dana Whitfield", "a" * 90 + "é" * 30,
                     "two\nlines;, \\ \"quoted\"", "+1 555 0100", "https://x.example/a?b=c"]),
    words)
# `email:` is one address each (a name with it is dropped): text around it stresses the rest
one_address = st.sampled_from(["dana@acme.example", "Zoë 😀 Ünlü <zoe@xn--nl-via.example>",
                               '"Whitfield, Dana" <Dana.W@acme.example>', "李@例え.example",
                               "a+b@x.example (work)"])
addresses = st.one_of(one_address, st.lists(one_address, min_size=1, max_size=3))
templates = st.sampled_from(["Follow up with {name}", "Ask {name} at {org} ({role})",
                             "Write to {email}", "Call", "{name}{org}{role}{email} — ✓",
                             "follow up"])
title_templates = st.sampled_from(["{name}: {action}", "{action}", "{org} — {name}: {action}",
                                   "{action} ({name}, {role}) {email}", "✓"])
triggers = st.fixed_dictionaries(
    {"do": templates}, optional={"after": gaps, "at": times})
trigger_maps = st.dictionaries(st.sampled_from(STATUSES), triggers, max_size=3)


def touch_entries() -> st.SearchStrategy[Any]:
    as_line = st.builds(lambda d, note: f"{d.isoformat()} {note}".strip(), dates,
                        st.sampled_from(["", "emailed", "called: left a message"]))
    as_map = st.fixed_dictionaries(
        {"date": dates.map(date.isoformat)},
        optional={"by": st.sampled_from(["me", "them", "both"]), "note": words})
    return st.one_of(as_line, as_map)


one_offs = st.fixed_dictionaries(
    {"on": dates.map(date.isoformat), "do": templates},
    optional={"id": ids, "at": times, "all_day": st.booleans(), "done": st.booleans()},
)


def settings_dict(lead: bool) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "cadence": st.lists(gaps, min_size=1, max_size=4),
        "give_up_after": st.one_of(st.none(), st.integers(1, 5)),
        "at": times,
        "all_day": st.booleans(),
        "as": st.sampled_from(["event", "todo"]),
        "overdue": st.sampled_from(["roll", "keep"]),
        "closed": st.lists(st.sampled_from(STATUSES), max_size=4),
        "days": days_settings,
        "title": title_templates,
    }
    if lead:
        optional |= {
            "org": texts, "role": texts, "email": addresses, "phone": texts, "url": texts,
            "notes": texts, "status": st.sampled_from(STATUSES),
            "status_since": dates.map(date.isoformat),
            "last_contact": dates.map(date.isoformat),
            "log": st.lists(touch_entries(), max_size=5),
            "next": dates.map(date.isoformat),
            "snooze_until": dates.map(date.isoformat),
            "follow_ups": st.lists(one_offs, max_size=3,
                                   unique_by=lambda o: o.get("id") or o["on"]),
        }
        return st.fixed_dictionaries({"name": texts}, optional=optional)
    optional |= {
        "duration": durations,
        "alarms": st.lists(durations, max_size=3),
        "action": templates,
        "on_status": trigger_maps,
        "on_other_status": trigger_maps,
    }
    return st.fixed_dictionaries({}, optional=optional)


lead_files = st.builds(
    lambda defaults, leads: {"version": 1, "defaults": defaults, "leads": leads},
    settings_dict(lead=False),
    st.dictionaries(ids, settings_dict(lead=True), min_size=1, max_size=3),
)


def load(raw: dict[str, Any]) -> list[LoadedLead]:
    parsed = LeadFile.model_validate(raw)
    base = Policy().apply(parsed.defaults)
    return [LoadedLead(lead_id, lead, base.apply(lead), "t.yaml")
            for lead_id, lead in (parsed.leads or {}).items()]


previous_memories = st.one_of(
    st.none(),
    st.builds(Memory, first_seen=dates, status=st.one_of(st.none(), st.sampled_from(STATUSES)),
              status_changed=st.one_of(st.none(), dates)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[LoadedLead], date, dict[str, Memory]]:
    """Random leads, a `today`, and what followsync remembers of each lead after today's look."""
    leads = load(draw(lead_files))
    today = draw(todays)
    # a change is seen at a moment of today (or, as an older state kept it, on the day)
    seen = draw(st.one_of(st.none(), st.times().map(lambda t: datetime.combine(today, t))))
    memory = {item.id: remember(draw(previous_memories), item.lead, today, seen)
              for item in leads}
    return leads, today, memory


def first_allowed(day: date, days: tuple[int, ...]) -> date:
    """The first day on or after `day` whose weekday is allowed (written again, for the test)."""
    return next(day + timedelta(days=n) for n in range(7)
                if (day + timedelta(days=n)).weekday() in days)


def anchor_of(item: LoadedLead) -> date | None:
    ordered = touches(item.lead)
    return ordered[-1].date if ordered else None


def all_follow_ups(plans: list[LeadPlan]) -> list[FollowUp]:
    return [item for p in plans for item in p.follow_ups]


# --- planning --------------------------------------------------------------------------------

@SETTINGS
@given(scenarios())
def test_plan_never_raises_and_keeps_its_shape(scenario: Any) -> None:
    leads, today, memory = scenario
    plans = plan(leads, today, memory)
    assert [p.lead_id for p in plans] == [item.id for item in leads]
    for item, result in zip(leads, plans, strict=True):
        rules = [f.rule for f in result.follow_ups]
        assert len(rules) == len(set(rules))
        assert rules.count("cadence") <= 1
        assert result.closed == (item.lead.status in item.policy.closed)
        assert result.unanswered >= 0
        if result.cold:
            assert item.policy.give_up_after is not None
            assert result.unanswered >= item.policy.give_up_after
        for follow in result.follow_ups:
            assert follow.lead_id == item.id
            assert follow.person.name == item.lead.name
            assert follow.overdue_days >= 0
            assert (follow.unanswered is not None) == (follow.rule == "cadence")
            assert follow.kind == item.policy.kind
            assert follow.alarms == item.policy.alarms


@SETTINGS
@given(scenarios())
def test_closed_leads_have_no_items(scenario: Any) -> None:
    leads, today, memory = scenario
    closing = [replace(item, lead=item.lead.model_copy(
        update={"status": sorted(item.policy.closed)[0]}))
        for item in leads if item.policy.closed]
    memory = {item.id: remember(memory[item.id], item.lead, today) for item in closing}
    for result in plan(closing, today, memory):
        assert result.closed is True
        assert result.follow_ups == ()


@SETTINGS
@given(scenarios(), st.sampled_from(["them", "both"]), st.integers(0, 60))
def test_a_reply_as_latest_touch_resets_the_cadence(scenario: Any, by: str, later: int) -> None:
    leads, today, memory = scenario
    for item in leads:
        anchor = anchor_of(item)
        reply_day = (anchor or START) + timedelta(days=later)
        reply = Touch(date=reply_day, by=by)  # type: ignore[arg-type]
        lead = item.lead.model_copy(update={"log": [*item.lead.log, reply]})
        changed = replace(item, lead=lead)
        [result] = plan([changed], today, {item.id: memory[item.id]})
        assert result.unanswered == 0 and result.cold is False
        assert result.last_touch is not None and result.last_touch.date == reply_day
        if result.closed:
            assert result.follow_ups == ()
            continue
        expected, promise = item.policy.cadence[0].after(reply_day), False
        if lead.next is not None and lead.next > reply_day:
            expected, promise = lead.next, True
        if lead.snooze_until is not None and lead.snooze_until > expected:
            expected, promise = lead.snooze_until, False
        days = item.policy.days
        if not promise:
            expected = first_allowed(expected, days)
        overdue = 0
        if item.policy.overdue == "roll" and expected < today:
            shown = today if promise else first_allowed(today, days)
            expected, overdue = shown, (shown - expected).days
        [cadence] = [f for f in result.follow_ups if f.rule == "cadence"]
        assert (cadence.due, cadence.overdue_days, cadence.unanswered) == (expected, overdue, 0)


@SETTINGS
@given(scenarios())
def test_nothing_is_due_before_its_anchor_or_its_own_date(scenario: Any) -> None:
    leads, today, memory = scenario
    for item, result in zip(leads, plan(leads, today, memory), strict=True):
        anchor = anchor_of(item)
        one_offs = {f"once-{o.id or o.on.isoformat()}": o for o in item.lead.follow_ups}
        for follow in result.follow_ups:
            rolled = follow.overdue_days > 0
            if rolled:  # to today, or (not a promise) the first allowed day from today
                assert item.policy.overdue == "roll"
                assert today <= follow.due < today + timedelta(days=7)
            was = follow.due - timedelta(days=follow.overdue_days)
            if follow.rule == "cadence":
                if anchor is not None:
                    assert was >= anchor
                    assert follow.due >= anchor
                else:
                    own = (memory[item.id].first_seen, item.lead.snooze_until)
                    assert was in (item.lead.next, *own, *(
                        first_allowed(day, item.policy.days) for day in own if day))
            elif follow.rule.startswith("once-"):
                one = one_offs[follow.rule]
                assert was == one.on and not one.done
                assert anchor is None or anchor < one.on
            else:  # due after the change it answers; only a later act of mine would do it
                assert follow.rule.startswith("status-")
                status = {f"status-{other.lead.status}" + ("" if other.id == item.id else
                                                           f"-{other.id}"): other
                          for other in leads if other.lead.status}
                moment = status_day(status[follow.rule].lead, memory[status[follow.rule].id])
                assert moment is not None and was >= moment.date()
                assert all(t.moment() <= moment for t in touches(item.lead) if t.by != "them")


@SETTINGS
@given(scenarios())
def test_roll_puts_nothing_before_today_and_keep_ignores_today(scenario: Any) -> None:
    leads, today, memory = scenario
    plans = plan(leads, today, memory)
    for item, result in zip(leads, plans, strict=True):
        for follow in result.follow_ups:
            if item.policy.overdue == "roll":
                assert follow.due >= today
                # a rolled item was due before today; it says how late it is on its new day
                was = follow.due - timedelta(days=follow.overdue_days)
                assert (was < today) == (follow.overdue_days > 0)
            else:
                assert follow.overdue_days == 0
    keep = [replace(item, policy=replace(item.policy, overdue="keep")) for item in leads]
    first = plan(keep, today, memory)
    second = plan(keep, today + timedelta(days=400), memory)
    assert first == second


@SETTINGS
@given(scenarios(), st.sampled_from(["phone", "file", "Work Calendar"]))
def test_uids_of_one_target_are_unique(scenario: Any, target: str) -> None:
    leads, today, memory = scenario
    items = all_follow_ups(plan(leads, today, memory))
    uids = [uid_for(target, f.lead_id, f.rule) for f in items]
    assert len(uids) == len(set(uids))


# --- days ------------------------------------------------------------------------------------

def _is_promise(follow: FollowUp) -> bool:
    """A date set by hand: a one-off's `on`, or a `next` that no snooze pushed."""
    return follow.rule.startswith("once-") or (
        follow.reason.startswith("hand-set next date") and "snoozed" not in follow.reason)


@SETTINGS
@given(scenarios(), day_sets)
def test_days_move_a_follow_up_by_less_than_a_week_and_never_a_promise(
    scenario: Any, days: set[int]
) -> None:
    """With any `days`, a follow-up that is not a promise lands on an allowed day, never
    earlier than without `days` and less than 7 days later; promises are never moved."""
    leads, today, memory = scenario
    allowed = tuple(sorted(days))
    every = [replace(item, policy=replace(item.policy, days=tuple(range(7)))) for item in leads]
    some = [replace(item, policy=replace(item.policy, days=allowed)) for item in leads]
    for free, bound in zip(plan(every, today, memory), plan(some, today, memory), strict=True):
        before = {f.rule: f for f in free.follow_ups}
        after = {f.rule: f for f in bound.follow_ups}
        assert set(before) == set(after)  # `days` moves follow-ups, never adds or drops one
        for rule, follow in after.items():
            plain = before[rule]
            if _is_promise(follow):
                assert (follow.due, follow.overdue_days) == (plain.due, plain.overdue_days)
                assert follow.reason == plain.reason
                continue
            assert follow.due.weekday() in allowed
            assert plain.due <= follow.due < plain.due + timedelta(days=7)
            assert follow.title == plain.title


# --- rendering -------------------------------------------------------------------------------

@FEW
@given(scenarios(), st.sampled_from(ZONES), st.sampled_from(["event", "todo"]))
def test_rendering_is_deterministic_and_parses_back(scenario: Any, zone: str, kind: str) -> None:
    leads, today, memory = scenario
    tz = ZoneInfo(zone)
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    for follow in all_follow_ups(plan(leads, today, memory))[:6]:
        uid = uid_for("phone", follow.lead_id, follow.rule)
        text = render(follow, uid=uid, kind=kind, zone=tz, stamp=stamp)  # type: ignore[arg-type]
        again = render(follow, uid=uid, kind=kind, zone=tz, stamp=stamp)  # type: ignore[arg-type]
        assert text == again
        later = render(follow, uid=uid, kind=kind, zone=tz,  # type: ignore[arg-type]
                       stamp=stamp + timedelta(days=1), sequence=3)
        assert normalise(text) == normalise(later)
        for line in text.encode().split(b"\r\n"):
            assert len(line) <= 75
            line.decode()
        cal = icalendar.Calendar.from_ical(text)
        [comp] = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
        assert comp.name == ("VTODO" if kind == "todo" else "VEVENT")
        assert str(comp["uid"]) == uid
        assert str(comp["x-followsync-lead"]) == follow.lead_id
        assert str(comp["x-followsync-rule"]) == follow.rule
        start = comp.decoded("dtstart")
        if follow.at is None:
            assert start == follow.due
        else:
            local = start.astimezone(tz)
            assert local.date() == follow.due
            # a wall time that does not exist (spring forward) is shifted by the gap
            assert local.time() == follow.at or local.utcoffset() != datetime.combine(
                follow.due, follow.at, tz).utcoffset()
        assert len([c for c in comp.subcomponents if c.name == "VALARM"]) == len(follow.alarms)


# --- input_hash ------------------------------------------------------------------------------

def _other_values(follow: FollowUp) -> st.SearchStrategy[tuple[str, Any]]:
    choices: dict[str, st.SearchStrategy[Any]] = {
        "lead_id": st.sampled_from([follow.lead_id, follow.lead_id + "x"]),
        "rule": st.sampled_from([follow.rule, "cadence", "once-x"]),
        "due": st.sampled_from([follow.due, follow.due + timedelta(days=1)]),
        "at": st.sampled_from([follow.at, None, time(9), time(9, 1)]),
        "duration": st.sampled_from([follow.duration, Duration(15, "m"), Duration(16, "m")]),
        "alarms": st.sampled_from([follow.alarms, (), (Duration(0, "m"),)]),
        "kind": st.sampled_from(["event", "todo"]),
        "action": st.sampled_from([follow.action, follow.action + " ", "Call"]),
        "title": st.sampled_from([follow.title, follow.title + ".", "Dana: call"]),
        "reason": st.sampled_from([follow.reason, follow.reason + "."]),
        "person": st.sampled_from([follow.person, replace(follow.person, notes="n"),
                                   Person(follow.person.name)]),
        "overdue_days": st.sampled_from([follow.overdue_days, 0, 1]),
        "unanswered": st.sampled_from([follow.unanswered, None, 0, 1]),
        "spread": st.booleans(),
    }
    assert set(choices) == {f.name for f in fields(FollowUp)}
    return st.sampled_from(sorted(choices)).flatmap(
        lambda name: choices[name].map(lambda value: (name, value)))


@SETTINGS
@given(scenarios(), st.data())
def test_input_hash_changes_iff_the_follow_up_changes(scenario: Any, data: st.DataObject) -> None:
    leads, today, memory = scenario
    items = all_follow_ups(plan(leads, today, memory))
    uid, zone = "followsync-u", "Europe/Berlin"
    hashes = {input_hash(f, "event", zone, uid): f for f in items}
    assert len(hashes) == len(set(items))
    for follow in items[:4]:
        name, value = data.draw(_other_values(follow))
        changed = replace(follow, **{name: value})
        same = input_hash(changed, "event", zone, uid) == input_hash(follow, "event", zone, uid)
        assert same == (changed == follow)
