"""Table tests for the follow-up rules (README, "When is a follow-up due?")."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
import yaml

from followsync.durations import Duration, parse_duration
from followsync.errors import ConfigError
from followsync.leads import Touch, expand
from followsync.rules import (
    FollowUp,
    LeadPlan,
    Memory,
    ordinal,
    remember,
    touches,
    unanswered_count,
)
from tests.project import leads_text, plan_text

D = date.fromisoformat
BEFORE_ALL = D("2000-01-01")  # a `today` before every date used here: nothing rolls


def doc(leads: dict[str, dict[str, Any]], defaults: dict[str, Any] | None = None) -> str:
    """A lead file as YAML text."""
    body: dict[str, Any] = {"version": 1, "leads": leads}
    if defaults is not None:
        body["defaults"] = defaults
    return yaml.safe_dump(body, allow_unicode=True, sort_keys=False)


def lead_plan(
    lead: dict[str, Any], today: date = BEFORE_ALL, defaults: dict[str, Any] | None = None,
    memory: Memory | None = None,
) -> LeadPlan:
    """The plan of one lead `dana` (name Dana unless given)."""
    text = doc({"dana": {"name": "Dana", **lead}}, defaults)
    [result] = plan_text(text, today, {"dana": memory} if memory else None)
    return result


def by_rule(result: LeadPlan) -> dict[str, FollowUp]:
    rules = [item.rule for item in result.follow_ups]
    assert len(rules) == len(set(rules)), rules
    return {item.rule: item for item in result.follow_ups}


def cadence_due(result: LeadPlan) -> date | None:
    found = by_rule(result).get("cadence")
    return found.due if found else None


def me_touches(day: str, count: int) -> list[str]:
    return [f"{day} note{i + 1}" for i in range(count)]


# --- the specification's worked example, verbatim -------------------------------------------------

WORKED = """\
version: 1
defaults:
  cadence: [1mo, 2mo, 3mo]
  give_up_after: 3
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    last_contact: 2013-05-03
"""


@pytest.mark.parametrize(
    ("extra", "due", "unanswered", "reason"),
    [
        ("", D("2013-06-03"), 0, "1st follow-up: last touch 2013-05-03 (last contact) + 1mo"),
        ("    log:\n      - 2013-06-03 emailed\n",
         D("2013-08-03"), 1, "2nd follow-up: 1 unanswered (2013-06-03 emailed) since "
                             "2013-05-03 (last contact); last touch 2013-06-03 + 2mo"),
        ("    log:\n      - 2013-06-03 emailed\n      - 2013-08-05 emailed\n",
         D("2013-11-05"), 2, "3rd follow-up: 2 unanswered (2013-06-03 emailed, 2013-08-05 "
                             "emailed) since 2013-05-03 (last contact); last touch 2013-08-05 "
                             "+ 3mo"),
        ("    log:\n      - 2013-06-03 emailed\n      - 2013-08-05 emailed\n"
         "      - {date: 2013-08-10, by: them, note: replied}\n",
         D("2013-09-10"), 0, "1st follow-up: last touch 2013-08-10 (replied) + 1mo"),
        ("    status: hired\n    log:\n      - 2013-06-03 emailed\n      - 2013-08-05 emailed\n"
         "      - {date: 2013-08-10, by: them, note: replied}\n", None, 0, None),
    ],
    ids=["last-contact", "emailed-once", "emailed-twice", "they-replied", "hired"],
)
def test_spec_worked_example(extra: str, due: date | None, unanswered: int,
                             reason: str | None) -> None:
    [result] = plan_text(WORKED + extra, D("2013-01-01"))
    assert result.unanswered == unanswered
    if due is None:
        assert result.closed is True
        assert result.follow_ups == ()
        return
    [item] = result.follow_ups
    assert (item.rule, item.due, item.at, item.overdue_days) == ("cadence", due, time(9), 0)
    assert item.unanswered == unanswered
    assert item.reason == reason
    assert (item.action, item.title) == ("follow up", "Dana Whitfield: follow up")
    assert result.cold is False


# --- touches, anchor, unanswered -------------------------------------------------------------

@pytest.mark.parametrize(
    ("lead", "notes", "unanswered"),
    [
        ({"last_contact": "2020-01-10", "log": ["2020-01-10 b"]}, ["last contact", "b"], 1),
        ({"log": ["2020-01-10 b"], "last_contact": "2020-01-10"}, ["last contact", "b"], 1),
        ({"log": [{"date": "2020-01-10", "by": "them", "note": "a"}, "2020-01-10 b"]},
         ["a", "b"], 1),
        ({"log": ["2020-01-10 b", {"date": "2020-01-10", "by": "them", "note": "a"}]},
         ["b", "a"], 0),
        ({"last_contact": "2020-02-01", "log": ["2020-03-01 late", "2020-01-01 early"]},
         ["early", "last contact", "late"], 1),
        ({"last_contact": "2020-01-10",
          "log": [{"date": "2020-01-10", "by": "them", "note": "a"}, "2020-01-09 before"]},
         ["before", "last contact", "a"], 0),
        ({"log": ["2020-01-10 z", "2020-01-10 y", "2020-01-10 x"]}, ["z", "y", "x"], 3),
    ],
)
def test_touch_order(lead: dict[str, Any], notes: list[str], unanswered: int) -> None:
    [item] = leads_text(doc({"dana": {"name": "Dana", **lead}}))
    ordered = touches(item.lead)
    assert [t.note for t in ordered] == notes
    result = lead_plan(lead)
    assert result.unanswered == unanswered
    assert result.last_touch is not None and result.last_touch.note == notes[-1]


def test_last_contact_is_a_touch_by_both() -> None:
    [item] = leads_text(doc({"dana": {"name": "Dana", "last_contact": "2020-01-10"}}))
    assert touches(item.lead) == [Touch(date=D("2020-01-10"), by="both", note="last contact")]


def test_log_line_is_a_touch_by_me_and_mapping_defaults_to_me() -> None:
    [item] = leads_text(doc({"dana": {"name": "Dana", "log": [
        "2020-01-10 emailed: thanks again", {"date": "2020-01-11"}, "2020-01-12"]}}))
    assert touches(item.lead) == [
        Touch(date=D("2020-01-10"), by="me", note="emailed: thanks again"),
        Touch(date=D("2020-01-11"), by="me", note=""),
        Touch(date=D("2020-01-12"), by="me", note=""),
    ]


@pytest.mark.parametrize(
    ("lead", "due"),
    [
        ({"log": ["2020-01-20 x", "2020-01-05 y"]}, D("2020-01-27")),
        ({"last_contact": "2020-02-01", "log": ["2020-01-05 y"]}, D("2020-02-08")),
        ({"last_contact": "2020-01-01", "log": [{"date": "2020-03-01", "by": "them"}]},
         D("2020-03-08")),
        ({"last_contact": "2020-03-01", "log": [{"date": "2020-01-01", "by": "both"}]},
         D("2020-03-08")),
    ],
)
def test_anchor_is_the_latest_touch_of_any_kind(lead: dict[str, Any], due: date) -> None:
    assert cadence_due(lead_plan({"cadence": ["1w"], **lead})) == due


@pytest.mark.parametrize(
    ("sequence", "count"),
    [
        ("", 0), ("me", 1), ("me me me", 3), ("them", 0), ("both", 0), ("me them", 0),
        ("them me", 1), ("both me me", 2), ("me me both me", 1), ("me them me both", 0),
        ("them me them me me", 2),
    ],
)
def test_unanswered_count(sequence: str, count: int) -> None:
    ordered = [Touch(date=D("2020-01-01"), by=by) for by in sequence.split()]
    assert unanswered_count(ordered) == count


# --- cadence back-off, give up ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("unanswered", "due", "reason"),
    [
        (0, D("2020-02-08"), "1st follow-up: last touch 2020-02-01 (last contact) + 1w"),
        (1, D("2020-02-15"), "2nd follow-up: 1 unanswered (2020-02-01 note1) since 2020-02-01 "
                             "(last contact); last touch 2020-02-01 + 2w"),
        (2, D("2020-03-01"), "3rd follow-up: 2 unanswered (2020-02-01 note1, 2020-02-01 note2) "
                             "since 2020-02-01 (last contact); last touch 2020-02-01 + 1mo"),
        (3, D("2020-03-01"), "4th follow-up: 3 unanswered (2020-02-01 note1, 2020-02-01 note2, "
                             "2020-02-01 note3) since 2020-02-01 (last contact); last touch "
                             "2020-02-01 + 1mo"),
        # more than three: the first (where the count starts) and the last two
        (5, D("2020-03-01"), "6th follow-up: 5 unanswered (2020-02-01 note1, …, 2020-02-01 "
                             "note4, 2020-02-01 note5) since 2020-02-01 (last contact); last "
                             "touch 2020-02-01 + 1mo"),
        *[(n, D("2020-03-01"), f"{nth} follow-up: {n} unanswered (2020-02-01 note1, …, "
                               f"2020-02-01 note{n - 1}, 2020-02-01 note{n}) since 2020-02-01 "
                               "(last contact); last touch 2020-02-01 + 1mo")
          for n, nth in ((10, "11th"), (20, "21st"), (21, "22nd"), (22, "23rd"))],
    ],
)
def test_cadence_backs_off_and_the_last_gap_repeats(
    unanswered: int, due: date, reason: str
) -> None:
    result = lead_plan({"last_contact": "2020-02-01", "log": me_touches("2020-02-01", unanswered)},
                       defaults={"cadence": ["1w", "2w", "1mo"]})
    [item] = result.follow_ups
    assert (item.due, item.unanswered, item.reason) == (due, unanswered, reason)
    assert result.unanswered == unanswered


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"),
     (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st"), (111, "111th"), (112, "112th")],
)
def test_ordinal(n: int, text: str) -> None:
    assert ordinal(n) == text


def test_default_cadence_is_1w_2w_1mo() -> None:
    dues = [cadence_due(lead_plan({"last_contact": "2020-01-31",
                                   "log": me_touches("2020-01-31", n)})) for n in range(4)]
    assert dues == [D("2020-02-07"), D("2020-02-14"), D("2020-02-29"), D("2020-02-29")]


@pytest.mark.parametrize(
    ("defaults", "lead", "unanswered", "cold"),
    [
        ({"give_up_after": 2}, {}, 1, False),
        ({"give_up_after": 2}, {}, 2, True),
        ({"give_up_after": 2}, {}, 3, True),
        ({"give_up_after": 1}, {}, 1, True),
        ({}, {}, 10, False),
        ({"give_up_after": None}, {}, 10, False),
        ({"give_up_after": 2}, {"give_up_after": None}, 5, False),
        ({"give_up_after": 2}, {"give_up_after": 4}, 3, False),
        ({}, {"give_up_after": 3}, 3, True),
    ],
)
def test_give_up_after(defaults: dict[str, Any], lead: dict[str, Any], unanswered: int,
                       cold: bool) -> None:
    result = lead_plan({"last_contact": "2020-02-01",
                        "log": me_touches("2020-02-02", unanswered), **lead}, defaults=defaults)
    assert result.cold is cold
    assert result.unanswered == unanswered
    assert ("cadence" in by_rule(result)) is (not cold)


def test_a_reply_warms_a_cold_lead() -> None:
    log = [*me_touches("2020-02-02", 3), {"date": "2020-03-01", "by": "them", "note": "hi"}]
    result = lead_plan({"log": log, "cadence": ["1w"]}, defaults={"give_up_after": 3})
    assert (result.cold, result.unanswered, cadence_due(result)) == (False, 0, D("2020-03-08"))


@pytest.mark.parametrize(
    ("next_date", "due"),
    [("2020-05-01", D("2020-05-01")), ("2020-02-03", D("2020-02-03")),
     ("2020-02-02", None), ("2020-01-01", None)],
)
def test_next_applies_to_a_cold_lead_only_while_later_than_the_anchor(
    next_date: str, due: date | None
) -> None:
    result = lead_plan({"log": me_touches("2020-02-02", 3), "next": next_date},
                       defaults={"give_up_after": 3})
    assert result.cold is True
    assert cadence_due(result) == due
    if due is not None:
        assert by_rule(result)["cadence"].reason == f"hand-set next date {next_date}"


def test_a_cold_lead_keeps_its_one_offs() -> None:
    result = lead_plan({"log": me_touches("2020-02-02", 3),
                        "follow_ups": [{"on": "2020-06-01", "do": "Ask again"}]},
                       defaults={"give_up_after": 3})
    assert result.cold is True
    assert list(by_rule(result)) == ["once-2020-06-01"]


def test_the_reason_names_the_unanswered_touches_and_what_answered_last() -> None:
    """`plan`'s reason says what the cadence counted (README "When is a follow-up due?"):
    the unanswered touches, since which answer, then the anchor and the gap; a long note is
    cut; nothing in it depends on today (it is in the item's DESCRIPTION)."""
    log = [{"date": "2026-11-10", "by": "them", "note": "replied: send the portfolio"},
           "2026-11-12 emailed the portfolio, the references and a long cover letter",
           "2026-11-18"]
    cadence = {"cadence": ["1w", "2w", "1mo"]}
    item = by_rule(lead_plan({"log": log}, defaults=cadence))["cadence"]
    assert item.reason == ("3rd follow-up: 2 unanswered (2026-11-12 emailed the portfolio, the "
                           "references and a long…, 2026-11-18) since their reply 2026-11-10; "
                           "last touch 2026-11-18 + 1mo")
    never = by_rule(lead_plan({"log": ["2026-11-18 emailed"]}))["cadence"]
    assert never.reason == ("2nd follow-up: 1 unanswered (2026-11-18 emailed), no answer yet; "
                            "last touch 2026-11-18 + 2w")
    met = by_rule(lead_plan({"log": [{"date": "2026-11-10", "by": "both"}, "2026-11-18 emailed"]}))
    assert met["cadence"].reason == ("2nd follow-up: 1 unanswered (2026-11-18 emailed) since "
                                     "2026-11-10 (two-way); last touch 2026-11-18 + 2w")
    later = by_rule(lead_plan({"log": log}, defaults=cadence, today=D("2027-03-01")))["cadence"]
    assert later.overdue_days > 0 and later.reason == item.reason  # a roll leaves it as it is


# --- next, snooze ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lead", "due", "reason"),
    [
        ({"next": "2020-03-01"}, D("2020-03-01"), "hand-set next date 2020-03-01"),
        # later than the anchor but earlier than the cadence: it still replaces the due date
        ({"next": "2020-01-03"}, D("2020-01-03"), "hand-set next date 2020-01-03"),
        # not later than the anchor: consumed
        ({"next": "2020-01-01"}, D("2020-01-08"),
         "1st follow-up: last touch 2020-01-01 (last contact) + 1w"),
        ({"next": "2019-12-01"}, D("2020-01-08"),
         "1st follow-up: last touch 2020-01-01 (last contact) + 1w"),
        # a touch after it consumes it
        ({"next": "2020-01-05", "log": ["2020-01-06 called"]}, D("2020-01-20"),
         "2nd follow-up: 1 unanswered (2020-01-06 called) since 2020-01-01 (last contact); "
         "last touch 2020-01-06 + 2w"),
        # a touch on its day consumes it too
        ({"next": "2020-01-05", "log": ["2020-01-05 called"]}, D("2020-01-19"),
         "2nd follow-up: 1 unanswered (2020-01-05 called) since 2020-01-01 (last contact); "
         "last touch 2020-01-05 + 2w"),
        # a touch before it does not
        ({"next": "2020-01-05", "log": ["2020-01-04 called"]}, D("2020-01-05"),
         "hand-set next date 2020-01-05"),
    ],
)
def test_next(lead: dict[str, Any], due: date, reason: str) -> None:
    result = lead_plan({"last_contact": "2020-01-01", **lead},
                       defaults={"cadence": ["1w", "2w"]})
    item = by_rule(result)["cadence"]
    assert (item.due, item.reason) == (due, reason)


@pytest.mark.parametrize(
    ("lead", "due", "snoozed"),
    [
        ({"snooze_until": "2020-02-01"}, D("2020-02-01"), True),
        ({"snooze_until": "2020-01-05"}, D("2020-01-08"), False),
        ({"snooze_until": "2020-01-08"}, D("2020-01-08"), False),
        ({"snooze_until": "2020-01-09"}, D("2020-01-09"), True),
        ({"next": "2020-03-01", "snooze_until": "2020-04-01"}, D("2020-04-01"), True),
        ({"next": "2020-03-01", "snooze_until": "2020-02-01"}, D("2020-03-01"), False),
    ],
)
def test_snooze_until_pushes_the_due_date(lead: dict[str, Any], due: date, snoozed: bool) -> None:
    item = by_rule(lead_plan({"last_contact": "2020-01-01", "cadence": ["1w"], **lead}))["cadence"]
    assert item.due == due
    assert item.reason.endswith(f", snoozed until {due.isoformat()}") is snoozed


def test_snooze_does_not_move_one_offs_or_wake_a_cold_lead() -> None:
    result = lead_plan({"log": me_touches("2020-01-01", 2), "snooze_until": "2020-05-01",
                        "follow_ups": [{"on": "2020-02-01", "do": "x"}]},
                       defaults={"give_up_after": 2})
    assert {r: f.due for r, f in by_rule(result).items()} == {"once-2020-02-01": D("2020-02-01")}


# --- leads with no touches -------------------------------------------------------------------

def test_new_lead_is_due_the_day_it_is_first_seen() -> None:
    result = lead_plan({}, today=D("2021-04-05"))
    item = by_rule(result)["cadence"]
    assert (item.due, item.overdue_days) == (D("2021-04-05"), 0)
    assert item.reason == "new lead: reach out (first seen 2021-04-05)"
    assert (result.unanswered, result.last_touch, result.cold) == (0, None, False)


def test_new_lead_first_seen_is_taken_from_memory() -> None:
    seen = Memory(first_seen=D("2021-04-01"))
    item = by_rule(lead_plan({}, today=D("2021-04-01"), memory=seen))["cadence"]
    assert item.due == D("2021-04-01")
    kept = by_rule(lead_plan({}, today=D("2021-04-05"), memory=seen,
                             defaults={"overdue": "keep"}))["cadence"]
    assert (kept.due, kept.overdue_days) == (D("2021-04-01"), 0)
    rolled = by_rule(lead_plan({}, today=D("2021-04-05"), memory=seen))["cadence"]
    assert (rolled.due, rolled.overdue_days) == (D("2021-04-05"), 4)


@pytest.mark.parametrize("next_date", ["2021-06-01", "2021-04-06"])
def test_new_lead_with_next_is_due_on_next(next_date: str) -> None:
    item = by_rule(lead_plan({"next": next_date}, today=D("2021-04-05")))["cadence"]
    assert item.due == D(next_date)


def test_new_lead_is_not_cold_even_with_give_up_after() -> None:
    result = lead_plan({}, today=D("2021-04-05"), defaults={"give_up_after": 1})
    assert result.cold is False and cadence_due(result) == D("2021-04-05")


# --- one-offs --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("touch", "one_off", "pending"),
    [
        ("2020-01-31", {}, True),
        ("2020-02-01", {}, False),
        ("2020-02-02", {}, False),
        (None, {}, True),
        ("2020-01-01", {"done": True}, False),
        ("2020-01-01", {"done": False}, True),
    ],
)
def test_one_off_is_done_by_a_touch_on_or_after_it_or_done_true(
    touch: str | None, one_off: dict[str, Any], pending: bool
) -> None:
    lead: dict[str, Any] = {"follow_ups": [{"on": "2020-02-01", "do": "Ask {name}", **one_off}]}
    if touch:
        lead["log"] = [{"date": touch, "by": "them"}]
    found = by_rule(lead_plan(lead)).get("once-2020-02-01")
    assert (found is not None) is pending
    if found:
        assert (found.due, found.action) == (D("2020-02-01"), "Ask Dana")
        assert found.reason == "one-off follow-up set for 2020-02-01"
        assert found.unanswered is None


def test_last_contact_on_the_day_marks_a_one_off_done() -> None:
    result = lead_plan({"last_contact": "2020-02-01",
                        "follow_ups": [{"on": "2020-02-01", "do": "x"}]})
    assert list(by_rule(result)) == ["cadence"]


def test_one_offs_are_identified_by_id_else_by_date() -> None:
    result = lead_plan({"last_contact": "2020-01-01", "follow_ups": [
        {"on": "2020-02-01", "do": "a", "id": "budget"},
        {"on": "2020-02-01", "do": "b", "id": "intro"},
        {"on": "2020-03-01", "do": "c"},
    ]})
    assert {r: f.action for r, f in by_rule(result).items() if r != "cadence"} == {
        "once-budget": "a", "once-intro": "b", "once-2020-03-01": "c"}


def test_two_one_offs_on_one_date_need_ids() -> None:
    text = doc({"dana": {"name": "Dana", "follow_ups": [
        {"on": "2020-02-01", "do": "a"}, {"on": "2020-02-01", "do": "b"}]}})
    with pytest.raises(ConfigError) as caught:
        leads_text(text)
    assert "two follow_ups share '2020-02-01'" in str(caught.value.problems[0].message)


def test_editing_one_off_text_keeps_its_rule() -> None:
    rules = [list(by_rule(lead_plan({"follow_ups": [{"on": "2020-02-01", "do": text}]})))
             for text in ("first wording", "second wording")]
    assert rules[0] == rules[1] == ["cadence", "once-2020-02-01"]


@pytest.mark.parametrize(
    ("defaults", "one_off", "at"),
    [
        ({}, {}, time(9)),
        ({}, {"at": "10:00"}, time(10)),
        ({"at": "07:45"}, {}, time(7, 45)),
        ({}, {"all_day": True}, None),
        ({"all_day": True}, {}, None),
        ({"all_day": True}, {"at": "10:00"}, time(10)),
        ({"all_day": True}, {"at": "10:00", "all_day": True}, None),
    ],
)
def test_one_off_time_of_day(defaults: dict[str, Any], one_off: dict[str, Any],
                             at: time | None) -> None:
    result = lead_plan({"follow_ups": [{"on": "2020-02-01", "do": "x", **one_off}]},
                       defaults=defaults)
    assert by_rule(result)["once-2020-02-01"].at == at


def test_yaml_11_words_stay_strings() -> None:
    """`on:` is a key, and `yes`/`no` are text, not booleans (README, "The lead file")."""
    text = ("leads:\n  dana:\n    name: no\n    status: yes\n    org: on\n"
            "    follow_ups:\n      - {on: 2020-02-01, do: off}\n")
    [item] = leads_text(text)
    assert (item.lead.name, item.lead.status, item.lead.org) == ("no", "yes", "on")
    assert item.lead.follow_ups[0].on == D("2020-02-01")
    assert item.lead.follow_ups[0].do == "off"


# --- closed statuses -------------------------------------------------------------------------

FULL_LEAD: dict[str, Any] = {
    "last_contact": "2020-01-01", "next": "2020-05-01",
    "follow_ups": [{"on": "2020-03-01", "do": "x"}],
}


@pytest.mark.parametrize("status", ["closed", "hired", "declined", "lost", "won", "dead"])
def test_default_closed_statuses_end_every_follow_up(status: str) -> None:
    result = lead_plan({**FULL_LEAD, "status": status})
    assert (result.closed, result.follow_ups) == (True, ())


@pytest.mark.parametrize(
    ("defaults", "lead", "closed"),
    [
        ({}, {"status": "waiting"}, False),
        ({}, {"status": "rejected", "closed": ["rejected"]}, True),
        ({}, {"status": "hired", "closed": ["rejected"]}, False),
        ({"closed": ["paused"]}, {"status": "paused"}, True),
        ({"closed": ["paused"]}, {"status": "lost"}, False),
        ({"closed": ["paused"]}, {"status": "lost", "closed": ["lost"]}, True),
        ({}, {}, False),
    ],
)
def test_closed_list_per_file_and_per_lead(defaults: dict[str, Any], lead: dict[str, Any],
                                           closed: bool) -> None:
    result = lead_plan({**FULL_LEAD, **lead}, defaults=defaults)
    assert result.closed is closed
    assert len(result.follow_ups) == (0 if closed else 2)


def test_closed_lead_gets_no_status_trigger_follow_ups() -> None:
    defaults = {"on_status": {"won": {"after": "1d", "do": "Celebrate"}},
                "on_other_status": {"offer": {"do": "Tell {name}"}}}
    text = doc({"a": {"name": "A", "status": "won", "status_since": "2020-03-01"},
                "b": {"name": "B", "status": "offer", "status_since": "2020-03-01"},
                "c": {"name": "C", "status": "dead"}}, defaults)
    plans = {p.lead_id: p for p in plan_text(text, BEFORE_ALL)}
    assert plans["a"].follow_ups == () and plans["c"].follow_ups == ()
    assert list(by_rule(plans["b"])) == ["cadence"]


# --- overdue ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("overdue", "today", "due", "days"),
    [
        ("roll", D("2020-01-20"), D("2020-01-20"), 12),
        ("roll", D("2020-01-09"), D("2020-01-09"), 1),
        ("roll", D("2020-01-08"), D("2020-01-08"), 0),
        ("roll", D("2020-01-02"), D("2020-01-08"), 0),
        ("keep", D("2020-01-20"), D("2020-01-08"), 0),
        ("keep", D("2021-01-20"), D("2020-01-08"), 0),
    ],
)
def test_overdue_roll_or_keep(overdue: str, today: date, due: date, days: int) -> None:
    result = lead_plan({"last_contact": "2020-01-01", "cadence": ["1w"], "at": "18:00",
                        "follow_ups": [{"on": "2020-01-08", "do": "x"}]},
                       today=today, defaults={"overdue": overdue})
    assert [item.rule for item in result.follow_ups] == ["cadence", "once-2020-01-08"]
    for item in result.follow_ups:
        assert (item.due, item.overdue_days, item.at) == (due, days, time(18))


def test_lead_overdue_overrides_the_default() -> None:
    result = lead_plan({"last_contact": "2020-01-01", "cadence": ["1w"], "overdue": "roll"},
                       today=D("2020-01-10"), defaults={"overdue": "keep"})
    assert (result.follow_ups[0].due, result.follow_ups[0].overdue_days) == (D("2020-01-10"), 2)


# --- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("cadence", "anchor", "due"),
    [
        ("1mo", "2013-01-31", "2013-02-28"),
        ("1mo", "2024-01-31", "2024-02-29"),
        ("1mo", "2013-03-31", "2013-04-30"),
        ("2mo", "2013-12-31", "2014-02-28"),
        ("1y", "2024-02-29", "2025-02-28"),
        ("4y", "2024-02-29", "2028-02-29"),
        ("12mo", "2024-02-29", "2025-02-28"),
        ("6w", "2013-05-03", "2013-06-14"),
        ("3d", "2013-12-30", "2014-01-02"),
    ],
)
def test_calendar_durations_in_the_cadence(cadence: str, anchor: str, due: str) -> None:
    assert cadence_due(lead_plan({"last_contact": anchor, "cadence": [cadence]})) == D(due)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("0m", "2020-01-01", "2020-01-01"),
        ("1m", "2020-01-01", "2020-01-02"),
        ("30m", "2020-01-01", "2020-01-02"),
        ("1440m", "2020-01-01", "2020-01-02"),
        ("1441m", "2020-01-01", "2020-01-03"),
        ("24h", "2020-01-01", "2020-01-02"),
        ("25h", "2020-01-01", "2020-01-03"),
        ("0d", "2020-01-01", "2020-01-01"),
        ("2w", "2020-12-25", "2021-01-08"),
        ("1mo", "2023-01-31", "2023-02-28"),
        ("1y", "2020-02-29", "2021-02-28"),
    ],
)
def test_duration_after(text: str, start: str, end: str) -> None:
    assert parse_duration(text).after(D(start)) == D(end)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("15m", Duration(15, "m")), (" 2h ", Duration(2, "h")), ("1mo", Duration(1, "mo")),
     ("3 w", Duration(3, "w")), ("1y", Duration(1, "y"))],
)
def test_parse_duration(text: str, parsed: Duration) -> None:
    assert parse_duration(text) == parsed
    assert str(parsed) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "m", "1", "1x", "-1d", "1.5h", "1 month", "2 mo s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not a duration: .*expected an integer and a unit"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("longest", "too_long"),
    [("100y", "101y"), ("1200mo", "1201mo"), ("5217w", "5218w"), ("36525d", "36526d"),
     ("876600h", "876601h")],
)
def test_durations_are_at_most_100_years(longest: str, too_long: str) -> None:
    assert parse_duration(longest).after(D("2020-01-01")) <= D("2120-01-02")
    with pytest.raises(ValueError, match=r"^too long a duration: .*\(at most 100 years\)"):
        parse_duration(too_long)


@pytest.mark.parametrize("cadence", ["999999y", "999999w", "99999mo"])
def test_an_absurd_cadence_is_a_located_error_not_a_crash(cadence: str) -> None:
    text = f"leads:\n  a: {{name: A, last_contact: 2020-01-01, cadence: [{cadence}]}}\n"
    with pytest.raises(ConfigError) as caught:
        leads_text(text)
    [problem] = caught.value.problems
    assert (problem.line, problem.col) == (2, 52)
    assert "too long a duration" in problem.message


# --- status triggers -------------------------------------------------------------------------

TRIGGERS: dict[str, Any] = {
    "on_status": {"interviewed": {"after": "1d", "do": "Thank {name}", "at": "08:30"}},
    "on_other_status": {"offer": {"after": "0d", "do": "Tell {name} about the offer"}},
}


def test_on_status_with_status_since_fires() -> None:
    result = lead_plan({"last_contact": "2020-03-01", "status": "interviewed",
                        "status_since": "2020-03-10"}, defaults=TRIGGERS)
    item = by_rule(result)["status-interviewed"]
    assert (item.due, item.at, item.action) == (D("2020-03-11"), time(8, 30), "Thank Dana")
    assert item.reason == "entered status 'interviewed' on 2020-03-10 + 1d"


def test_a_lead_seen_first_does_not_fire_its_current_status() -> None:
    lead = {"last_contact": "2020-03-01", "status": "interviewed"}
    assert list(by_rule(lead_plan(lead, today=D("2020-03-10"), defaults=TRIGGERS))) == ["cadence"]


def test_remember() -> None:
    [item] = leads_text(doc({"dana": {"name": "Dana", "status": "interviewed"}}))
    first = remember(None, item.lead, D("2020-03-01"))
    assert first == Memory(first_seen=D("2020-03-01"), status="interviewed", status_changed=None)
    assert remember(first, item.lead, D("2020-03-05")) is first
    before = Memory(first_seen=D("2020-01-01"), status="waiting")
    assert remember(before, item.lead, D("2020-03-10")) == Memory(
        first_seen=D("2020-01-01"), status="interviewed", status_changed=D("2020-03-10"))


def test_a_remembered_status_change_fires_on_the_day_seen() -> None:
    lead = {"last_contact": "2020-03-01", "status": "interviewed"}
    [item] = leads_text(doc({"dana": {"name": "Dana", **lead}}, TRIGGERS))
    before = Memory(first_seen=D("2020-01-01"), status="waiting")
    memory = remember(before, item.lead, D("2020-03-10"))
    result = lead_plan(lead, today=D("2020-03-10"), defaults=TRIGGERS, memory=memory)
    trigger = by_rule(result)["status-interviewed"]
    assert (trigger.due, trigger.overdue_days) == (D("2020-03-11"), 0)
    # the next day the change is still remembered with its date
    later = lead_plan(lead, today=D("2020-03-11"), defaults=TRIGGERS,
                      memory=remember(memory, item.lead, D("2020-03-11")))
    assert by_rule(later)["status-interviewed"].due == D("2020-03-11")


@pytest.mark.parametrize(
    ("touch", "pending"),
    [("2020-03-09", True), ("2020-03-10", True), ("2020-03-10 00:01", False),
     ("2020-03-12", False), ({"date": "2020-03-12", "by": "them"}, True),
     ({"date": "2020-03-12", "by": "both"}, False)],
)
def test_status_trigger_is_done_by_a_later_touch_of_mine(touch: Any, pending: bool) -> None:
    """status_since: the change is at the start of that day; a date-only line of that day is
    not later, and a touch by them never does the user's act."""
    result = lead_plan({"log": [touch], "status": "interviewed", "status_since": "2020-03-10"},
                       defaults=TRIGGERS)
    assert ("status-interviewed" in by_rule(result)) is pending


def test_status_since_wins_over_memory() -> None:
    memory = Memory(first_seen=D("2020-01-01"), status="interviewed",
                    status_changed=D("2020-03-20"))
    result = lead_plan({"status": "interviewed", "status_since": "2020-03-10"},
                       defaults=TRIGGERS, memory=memory)
    assert by_rule(result)["status-interviewed"].due == D("2020-03-11")


def test_a_status_without_trigger_fires_nothing() -> None:
    result = lead_plan({"status": "waiting", "status_since": "2020-03-10"}, defaults=TRIGGERS)
    assert list(by_rule(result)) == ["cadence"]


def test_on_other_status_gives_every_other_open_lead_a_one_off() -> None:
    text = doc({
        "ann": {"name": "Ann", "status": "offer", "status_since": "2020-03-10",
                "last_contact": "2020-03-01"},
        "bea": {"name": "Bea", "last_contact": "2020-03-01"},
        "cid": {"name": "Cid", "last_contact": "2020-03-01", "status": "hired"},
        "dan": {"name": "Dan", "last_contact": "2020-03-01", "log": ["2020-03-10 wrote"]},
        "eve": {"name": "Eve", "last_contact": "2020-03-01", "log": ["2020-03-09 wrote"]},
        "fay": {"name": "Fay", "last_contact": "2020-03-01", "log": ["2020-03-10 10:00 wrote"]},
        "gus": {"name": "Gus"},
    }, TRIGGERS)
    plans = {p.lead_id: p for p in plan_text(text, BEFORE_ALL)}
    assert list(by_rule(plans["ann"])) == ["cadence"]
    assert plans["cid"].follow_ups == ()
    assert list(by_rule(plans["fay"])) == ["cadence"]  # told later that day: done
    assert list(by_rule(plans["gus"])) == ["cadence"]  # never contacted: reach out instead
    for lead_id, name in (("bea", "Bea"), ("dan", "Dan"), ("eve", "Eve")):
        item = by_rule(plans[lead_id])["status-offer-ann"]
        assert (item.due, item.at, item.lead_id) == (D("2020-03-10"), time(9), lead_id)
        assert item.action == f"Tell {name} about the offer"
        assert item.reason == "ann entered status 'offer' on 2020-03-10 + 0d"


def test_on_other_status_needs_a_known_status_change() -> None:
    text = doc({"ann": {"name": "Ann", "status": "offer"},
                "bea": {"name": "Bea", "last_contact": "2020-03-01"}}, TRIGGERS)
    plans = {p.lead_id: p for p in plan_text(text, D("2020-03-10"))}
    assert list(by_rule(plans["bea"])) == ["cadence"]
    memory = {"ann": Memory(first_seen=D("2020-01-01"), status="offer",
                            status_changed=D("2020-03-10"))}
    plans = {p.lead_id: p for p in plan_text(text, D("2020-03-10"), memory)}
    assert by_rule(plans["bea"])["status-offer-ann"].due == D("2020-03-10")


def test_stale_memory_of_another_status_fires_nothing() -> None:
    memory = Memory(first_seen=D("2020-01-01"), status="waiting", status_changed=D("2020-03-01"))
    result = lead_plan({"status": "interviewed"}, today=D("2020-03-10"), defaults=TRIGGERS,
                       memory=memory)
    assert "status-interviewed" not in by_rule(result)


@pytest.mark.parametrize(
    ("defaults", "trigger", "at"),
    [
        ({}, {}, time(9)),
        ({}, {"at": "08:30"}, time(8, 30)),
        ({"at": "11:00"}, {}, time(11)),
        ({"all_day": True}, {}, None),
        # an explicit time on the trigger makes a timed item, as it does on a one-off
        ({"all_day": True}, {"at": "08:30"}, time(8, 30)),
    ],
)
def test_status_trigger_time_of_day(defaults: dict[str, Any], trigger: dict[str, Any],
                                    at: time | None) -> None:
    defaults = {**defaults, "on_status": {"applied": {"do": "Ask", **trigger}}}
    result = lead_plan({"status": "applied", "status_since": "2020-03-10"}, defaults=defaults)
    assert by_rule(result)["status-applied"].at == at


def test_overdue_status_trigger_rolls() -> None:
    result = lead_plan({"status": "interviewed", "status_since": "2020-03-10"},
                       today=D("2020-03-15"), defaults=TRIGGERS)
    item = by_rule(result)["status-interviewed"]
    assert (item.due, item.overdue_days, item.at) == (D("2020-03-15"), 4, time(8, 30))


def test_lead_on_status_merges_with_the_defaults() -> None:
    result = lead_plan({"status": "applied", "status_since": "2020-03-10",
                        "on_status": {"applied": {"after": "10d", "do": "Ask"}}},
                       defaults=TRIGGERS)
    assert by_rule(result)["status-applied"].due == D("2020-03-20")
    [item] = leads_text(doc({"dana": {"name": "Dana",
                                      "on_status": {"applied": {"do": "Ask"}}}}, TRIGGERS))
    assert [name for name, _ in item.policy.on_status] == ["applied", "interviewed"]


# --- policy details carried into each follow-up ----------------------------------------------

def test_policy_is_carried_into_the_follow_up() -> None:
    defaults = {"as": "todo", "alarms": ["0m", "1d"], "duration": "30m", "at": "10:15",
                "action": "Write to {name} at {org} ({role}, {email})"}
    result = lead_plan({"org": "Acme", "role": "CEO", "email": "d@a.example",
                        "last_contact": "2020-01-01", "cadence": ["1w"]}, defaults=defaults)
    [item] = result.follow_ups
    assert item.kind == "todo"
    assert item.alarms == (Duration(0, "m"), Duration(1, "d"))
    assert item.duration == Duration(30, "m")
    assert item.at == time(10, 15)
    assert item.action == "Write to Dana at Acme (CEO, d@a.example)"
    assert item.person.org == "Acme" and item.person.email == "d@a.example"


@pytest.mark.parametrize(
    ("defaults", "lead", "at"),
    [
        ({}, {}, time(9)),
        ({"all_day": True}, {}, None),
        ({"all_day": True}, {"at": "11:00"}, time(11)),
        ({"at": "11:00"}, {"all_day": True}, None),
        ({"all_day": True, "at": "11:00"}, {}, None),
    ],
)
def test_all_day_and_at(defaults: dict[str, Any], lead: dict[str, Any], at: time | None) -> None:
    result = lead_plan({"last_contact": "2020-01-01", **lead}, defaults=defaults)
    assert by_rule(result)["cadence"].at == at


def test_default_policy() -> None:
    [item] = lead_plan({"last_contact": "2020-01-01"}).follow_ups
    assert (item.kind, item.at, item.duration, item.alarms) == (
        "event", time(9), Duration(15, "m"), (Duration(0, "m"),))


def test_expand_fills_in_one_pass() -> None:
    [item] = leads_text(doc({"dana": {"name": "{org}", "org": "{role}", "role": "CEO"}}))
    assert expand("{name} / {org} / {role} / {email}", item.lead) == "{org} / {role} / CEO / "


# --- titles: the name first and once, then the action ----------------------------------------

@pytest.mark.parametrize(
    ("defaults", "lead", "title"),
    [
        ({}, {}, "Dana Whitfield: follow up"),
        ({"action": "ask about the marketing role"}, {},
         "Dana Whitfield: ask about the marketing role"),
        # an action that names the person already is not prefixed with the name again
        ({"action": "Follow up with {name}"}, {}, "Follow up with Dana Whitfield"),
        ({"action": "send {name} a thank-you note"}, {}, "Send Dana Whitfield a thank-you note"),
        ({"action": "call dana whitfield"}, {}, "Call dana whitfield"),
        ({"title": "{action} ({name}, {org})"}, {}, "Follow up (Dana Whitfield, Acme Corp)"),
        ({"title": "{org} — {name}: {action}"}, {"action": "send {name} the deck"},
         "Acme Corp — send Dana Whitfield the deck"),
        ({}, {"title": "{name} ({role}): {action}"}, "Dana Whitfield (President): follow up"),
        # {action} is filled in once: braces in the action stay as written
        ({"title": "{role}: {action}"}, {"action": "ask about {org}"},
         "President: ask about Acme Corp"),
    ],
)
def test_title(defaults: dict[str, Any], lead: dict[str, Any], title: str) -> None:
    text = doc({"dana": {"name": "Dana Whitfield", "org": "Acme Corp", "role": "President",
                         "last_contact": "2020-01-01", **lead}}, defaults)
    [result] = plan_text(text, BEFORE_ALL)
    assert by_rule(result)["cadence"].title == title


def test_one_off_and_status_trigger_titles_carry_their_own_action() -> None:
    defaults = {"on_status": {"interviewed": {"after": "1d", "do": "send a thank-you note"}}}
    result = lead_plan({"name": "Grace Lin", "status": "interviewed",
                        "status_since": "2026-11-26", "last_contact": "2026-11-24",
                        "follow_ups": [{"on": "2027-01-11", "do": "Ask {name} about the budget"}]},
                       defaults=defaults)
    titles = {rule: item.title for rule, item in by_rule(result).items()}
    assert titles == {"cadence": "Grace Lin: follow up",
                      "status-interviewed": "Grace Lin: send a thank-you note",
                      "once-2027-01-11": "Ask Grace Lin about the budget"}


# --- days: the weekdays a follow-up may fall on ----------------------------------------------

WEEKDAYS_ONLY = {"days": ["mon", "tue", "wed", "thu", "fri"]}


@pytest.mark.parametrize(
    ("anchor", "gap", "days", "due", "moved"),
    [
        # 2013-05-03 + 4w = Fri 2013-05-31: allowed, not moved
        ("2013-05-03", "4w", ["mon", "tue", "wed", "thu", "fri"], "2013-05-31", ""),
        # 2013-05-01 + 1mo = Sat 2013-06-01 → Mon 2013-06-03
        ("2013-05-01", "1mo", ["mon", "tue", "wed", "thu", "fri"], "2013-06-03",
         " = Sat 2013-06-01, moved to Mon 2013-06-03 (days: mon-fri)"),
        ("2013-05-02", "1mo", ["MON", "Tue", "wed", "thu", "fri"], "2013-06-03",
         " = Sun 2013-06-02, moved to Mon 2013-06-03 (days: mon-fri)"),
        # Thu → the next Tuesday, across the week's end
        ("2013-05-30", "0d", ["tue"], "2013-06-04",
         " = Thu 2013-05-30, moved to Tue 2013-06-04 (days: tue)"),
        ("2013-05-30", "0d", ["mon", "wed", "fri"], "2013-05-31",
         " = Thu 2013-05-30, moved to Fri 2013-05-31 (days: mon, wed, fri)"),
        ("2013-05-30", "0d", ["sat", "sun", "mon", "tue", "wed"], "2013-06-01",
         " = Thu 2013-05-30, moved to Sat 2013-06-01 (days: mon-wed, sat, sun)"),
    ],
)
def test_days_move_a_cadence_date_to_the_next_allowed_day(
    anchor: str, gap: str, days: list[str], due: str, moved: str
) -> None:
    result = lead_plan({"last_contact": anchor, "cadence": [gap]}, defaults={"days": days})
    item = by_rule(result)["cadence"]
    assert item.due == D(due)
    assert item.reason == f"1st follow-up: last touch {anchor} (last contact) + {gap}{moved}"


def test_days_accept_one_day_without_a_list_and_a_lead_overrides_them() -> None:
    result = lead_plan({"last_contact": "2013-05-01", "cadence": "1mo", "days": "mon"},
                       defaults=WEEKDAYS_ONLY)
    assert cadence_due(result) == D("2013-06-03")
    result = lead_plan({"last_contact": "2013-05-01", "cadence": ["1mo"],
                        "days": ["sat", "sun"]}, defaults=WEEKDAYS_ONLY)
    assert cadence_due(result) == D("2013-06-01")


def test_days_move_a_snoozed_date_and_a_new_lead_but_never_a_promise() -> None:
    snoozed = lead_plan({"last_contact": "2013-05-01", "cadence": ["1w"],
                         "snooze_until": "2013-06-01"}, defaults=WEEKDAYS_ONLY)
    item = by_rule(snoozed)["cadence"]
    assert item.due == D("2013-06-03")
    assert item.reason.endswith("snoozed until 2013-06-01 = Sat 2013-06-01, moved to "
                                "Mon 2013-06-03 (days: mon-fri)")
    # a new lead first seen on a Saturday is due on Monday
    saturday = D("2013-06-01")
    [new] = plan_text(doc({"dana": {"name": "Dana"}}, WEEKDAYS_ONLY), saturday)
    assert cadence_due(new) == D("2013-06-03")
    # promises: a hand-set next and a one-off's date stay on their Saturday
    promised = lead_plan({"last_contact": "2013-05-01", "next": "2013-06-01",
                          "follow_ups": [{"on": "2013-06-08", "do": "call"}]},
                         defaults=WEEKDAYS_ONLY)
    items = by_rule(promised)
    assert (items["cadence"].due, items["once-2013-06-08"].due) == (
        D("2013-06-01"), D("2013-06-08"))
    assert "moved" not in items["cadence"].reason + items["once-2013-06-08"].reason


def test_days_move_a_status_trigger_follow_up() -> None:
    defaults = {**WEEKDAYS_ONLY,
                "on_status": {"interviewed": {"after": "1d", "do": "send a thank-you note"}}}
    result = lead_plan({"status": "interviewed", "status_since": "2013-05-31"},
                       defaults=defaults)
    item = by_rule(result)["status-interviewed"]
    assert item.due == D("2013-06-03")
    assert item.reason == ("entered status 'interviewed' on 2013-05-31 + 1d = Sat 2013-06-01, "
                           "moved to Mon 2013-06-03 (days: mon-fri)")


@pytest.mark.parametrize(
    ("today", "rule", "due", "overdue_days"),
    [
        # cadence due Mon 2013-06-03; on Sat 06-08 it rolls to Mon 06-10, 7 days late then
        ("2013-06-08", "cadence", "2013-06-10", 7),
        ("2013-06-09", "cadence", "2013-06-10", 7),  # the same on Sunday: nothing rewritten
        ("2013-06-10", "cadence", "2013-06-10", 7),
        ("2013-06-11", "cadence", "2013-06-11", 8),
        # a promise (a one-off due Tue 06-04) rolls to today, even on a Saturday
        ("2013-06-08", "once-2013-06-04", "2013-06-08", 4),
    ],
)
def test_an_overdue_item_rolls_to_an_allowed_day_unless_it_is_a_promise(
    today: str, rule: str, due: str, overdue_days: int
) -> None:
    result = lead_plan({"last_contact": "2013-05-03", "cadence": ["1mo"],
                        "follow_ups": [{"on": "2013-06-04", "do": "call"}]},
                       today=D(today), defaults=WEEKDAYS_ONLY)
    item = by_rule(result)[rule]
    assert (item.due, item.overdue_days) == (D(due), overdue_days)


def test_days_default_to_every_day() -> None:
    result = lead_plan({"last_contact": "2013-05-01", "cadence": ["1mo"]})
    assert cadence_due(result) == D("2013-06-01")


# --- gaps are whole days; one value where a list is expected ---------------------------------

@pytest.mark.parametrize("gap", ["1m", "30m", "1h", "24h"])
def test_a_gap_below_a_day_is_refused(gap: str) -> None:
    for settings in ({"cadence": ["1w", gap]},
                     {"on_status": {"offer": {"after": gap, "do": "x"}}},
                     {"on_other_status": {"offer": {"after": gap, "do": "x"}}}):
        with pytest.raises(ConfigError) as caught:
            leads_text(doc({"dana": {"name": "Dana", **settings}}))
        [problem] = caught.value.problems
        assert problem.message.endswith(f"'{gap}' is less than a day")
        assert "whole days" in problem.hint


def test_minutes_and_hours_stay_valid_for_alarms_and_duration() -> None:
    [item] = lead_plan({"last_contact": "2020-01-01", "alarms": ["0m", "2h"],
                        "duration": "30m"}).follow_ups
    assert (item.alarms, item.duration) == ((Duration(0, "m"), Duration(2, "h")),
                                            Duration(30, "m"))


@pytest.mark.parametrize("zero", ["0m", "0h", 0])
def test_a_zero_gap_in_any_unit_is_zero_days(zero: Any) -> None:
    defaults = {"on_status": {"offer": {"after": zero, "do": "x"}}}
    result = lead_plan({"status": "offer", "status_since": "2013-06-03"}, defaults=defaults)
    assert by_rule(result)["status-offer"].due == D("2013-06-03")


def test_one_value_where_a_list_is_expected_is_a_list_of_one() -> None:
    [item] = lead_plan({"last_contact": "2013-05-03", "cadence": "3w", "alarms": "1d"}
                       ).follow_ups
    assert (item.due, item.alarms) == (D("2013-05-24"), (Duration(1, "d"),))
