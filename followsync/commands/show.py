"""How `plan` and `sync` present their outcome: one line per action or per target."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, assert_never

if TYPE_CHECKING:  # a summary needs neither the diff nor the rules
    from collections.abc import Collection
    from datetime import date, tzinfo

    from followsync import diff as d
    from followsync.leads import LeadBook
    from followsync.rules import FollowUp, LeadPlan
    from followsync.sources import FoundTouch
    from followsync.sources.scan import MailReport
    from followsync.sync.report import Outcome, TargetReport
from followsync.errors import EXIT_OK

log = logging.getLogger("followsync")


def _day(item: FollowUp) -> str:
    return item.due.isoformat() + (f" {item.at.strftime('%H:%M')}" if item.at else " all day")


def _when(want: d.Want) -> str:
    return f"{_day(want.item)} {want.kind}"


def why(item: FollowUp, today: date | None) -> str:
    """The reason for an item's date as `plan` gives it: the rules' reason, and for an
    overdue item the date it was due (README "plan"). The rules' reason never names today
    (it is in the item's DESCRIPTION, which must not change from day to day)."""
    if today is None:
        return item.reason
    if item.overdue_days:
        from datetime import timedelta

        from followsync.rules import day_text

        was = item.due - timedelta(days=item.overdue_days)
        shown = "today" if item.due == today else day_text(item.due)  # (a day not in `days`)
        return f"{item.reason}; due {was.isoformat()}, overdue: shown {shown}"
    if item.due < today:
        return f"{item.reason}; overdue, kept on its date (overdue: keep)"
    return item.reason


def describe(action: d.Action, today: date | None = None) -> str | None:
    """One line for a planned action; None for bookkeeping the user need not see. Every
    action type is named: a new one fails mypy (assert_never) until it has its line."""
    from followsync import diff as d

    match action:
        case d.Create(want=w):
            return f"  create  {w.item.lead_id} {w.item.rule}: {_when(w)} — {why(w.item, today)}"
        case d.Update(want=w):
            return f"  update  {w.item.lead_id} {w.item.rule}: {_when(w)} — {why(w.item, today)}"
        case d.Adopt(want=w):
            return f"  check   {w.item.lead_id} {w.item.rule}: found in the calendar, not in " \
                   "the state; compared and updated if needed"
        case d.Delete(uid=uid, row=row):
            who = f"{row.lead} {row.rule}" if row else uid
            return f"  delete  {who}: no longer due (done, closed, or removed from the lead file)"
        case d.Accept(want=w):
            return f"  keep    {w.item.lead_id} {w.item.rule}: edited in the calendar; kept " \
                   "until the lead file changes it"
        case d.Gone(want=w):
            return f"  skip    {w.item.lead_id} {w.item.rule}: deleted in the calendar; not " \
                   "recreated until the lead file changes it"
        case d.Forget() | d.Same() | d.Missed() | d.Restamp():
            return None
        case _:
            assert_never(action)


def _report_problems(report: TargetReport) -> None:
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.error:
        log.error("%s", report.problem())


def _lead_of(action: d.Action) -> str | None:
    """The lead an action is about (for `plan LEAD...`), if it says."""
    from followsync import diff as d

    if isinstance(action, d.Delete):
        return action.row.lead if action.row else None
    if isinstance(action, d.Create | d.Update | d.Adopt | d.Accept | d.Gone):
        return action.want.item.lead_id
    return None


def print_plan(outcome: Outcome, say: Callable[[str], None], *, show_all: bool = False,
               leads: Collection[str] = (), unscanned: Collection[str] = ()) -> None:
    """`plan`: per target what a sync would do (of `leads` only, when given), each with
    its reason; `show_all`: then every pending follow-up. `unscanned`: the mailboxes never
    scanned, whose mail the dates do not count yet."""
    for name in unscanned:
        say(f"mailbox {name}: not scanned yet: its mail is not counted in these dates (the "
            "next sync reads it; plan never scans)")
    for report in outcome.targets:
        _report_problems(report)
        lines = [describe(action, outcome.today) for action in report.actions
                 if not leads or _lead_of(action) in leads]
        if report.error and report.retryable:  # a safety stop still shows the plan
            continue
        say(report.summary(planned=True))
        for note in report.notes:
            say(f"  {note}")
        for line in lines:
            if line:
                say(line)
    if show_all:
        _print_pending(outcome, say, leads)


def _print_pending(outcome: Outcome, say: Callable[[str], None], leads: Collection[str]) -> None:
    """Every pending follow-up (of `leads`, when given) in file order, each with its date
    and reason; a lead named that has none says why."""
    plans = [p for p in outcome.plans if not leads or p.lead_id in leads]
    if leads:  # in the order given
        order = list(leads)
        plans.sort(key=lambda lead_plan: order.index(lead_plan.lead_id))
    count = sum(len(p.follow_ups) for p in plans)
    of = f" of {', '.join(leads)}" if leads else ""
    say(f"pending follow-ups{of} ({count}):")
    laid: dict[tuple[str, str], dt.time] = {}
    for report in reversed(outcome.targets):  # the first target's time, where they differ
        laid.update(report.laid)
    for lead_plan in plans:
        for item in sorted(lead_plan.follow_ups, key=lambda f: (f.due, f.rule)):
            start = laid.get((item.lead_id, item.rule))
            shown = _day(item if start is None else replace(item, at=start))
            say(f"  {item.lead_id} {item.rule}: {shown} — {why(item, outcome.today)}")
        if leads and not lead_plan.follow_ups:
            say(f"  {lead_plan.lead_id}: none: {_none_why(lead_plan)}")


def _none_why(lead_plan: LeadPlan) -> str:
    if lead_plan.closed:
        return f"its status {lead_plan.person.status!r} is closed"
    if lead_plan.cold:
        return f"gone cold after {lead_plan.unanswered} unanswered (give_up_after)"
    return "nothing is due"


def print_outcome(outcome: Outcome, say: Callable[[str], None]) -> None:
    report_mail(outcome.mailboxes, say)
    for report in outcome.targets:
        _report_problems(report)
        if not report.error:
            say(report.summary())


class Progress:
    """A one-line progress counter on a terminal, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

    def __call__(self, target: str, done: int, total: int) -> None:
        now = time.monotonic()
        if total < 20 or (now - self.last < 0.1 and done != total):
            return
        self.last = now
        sys.stderr.write(f"\r{target}: {done}/{total} written")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def report_mail(reports: list[MailReport], say: Callable[[str], None]) -> int:
    """One line per mailbox (a failed one on stderr, with its hint); the exit code."""
    code = EXIT_OK
    for report in reports:
        if report.error:
            log.error("%s", report.summary())
            if report.hint:
                log.error("  hint: %s", report.hint)
            code = max(code, report.exit_code)
        else:
            say(report.summary())
    return code


def print_mail(reports: list[MailReport], book: LeadBook, zone: tzinfo,
               say: Callable[[str], None], known: list[FoundTouch] | None = None) -> int:
    """`followsync mail`: per mailbox a summary, then per lead (in file order) the touches
    found, oldest first: when, who wrote, subject. `known`: list those instead."""
    code = report_mail(reports, say)
    touches = known if known is not None else [t for r in reports for t in r.found]
    by_lead: dict[str, list[FoundTouch]] = {}
    for touch in sorted(set(touches)):
        by_lead.setdefault(touch.lead, []).append(touch)
    for lead_id, item in book.leads.items():
        found = by_lead.get(lead_id)
        if not found:
            continue
        say(f"{item.lead.name} ({lead_id})")
        for touch in found:
            when = touch.when.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            who = "you wrote " if touch.by == "me" else "they wrote"
            say(f"  {when}  {who}  {touch.subject or '(no subject)'}")
    return code
