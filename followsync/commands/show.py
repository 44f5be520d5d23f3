"""How `plan` and `sync` present their outcome: one line per action or per target."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, assert_never

if TYPE_CHECKING:  # a summary needs neither the diff nor the rules
    from datetime import tzinfo

    from followsync import diff as d
    from followsync.leads import LeadBook
    from followsync.sources import FoundTouch
    from followsync.sources.scan import MailReport
    from followsync.sync.report import Outcome, TargetReport
from followsync.errors import EXIT_OK

log = logging.getLogger("followsync")


def _when(want: d.Want) -> str:
    item = want.item
    when = item.due.isoformat() + (f" {item.at.strftime('%H:%M')}" if item.at else " all day")
    return f"{when} {want.kind}"


def describe(action: d.Action) -> str | None:
    """One line for a planned action; None for bookkeeping the user need not see. Every
    action type is named: a new one fails mypy (assert_never) until it has its line."""
    from followsync import diff as d

    match action:
        case d.Create(want=w):
            return f"  create  {w.item.lead_id} {w.item.rule}: {_when(w)} — {w.item.reason}"
        case d.Update(want=w):
            return f"  update  {w.item.lead_id} {w.item.rule}: {_when(w)} — {w.item.reason}"
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


def print_plan(outcome: Outcome, say: Callable[[str], None]) -> None:
    for report in outcome.targets:
        _report_problems(report)
        lines = [line for line in map(describe, report.actions) if line]
        if report.error and report.retryable:  # a safety stop still shows the plan
            continue
        say(report.summary(planned=True))
        for note in report.notes:
            say(f"  {note}")
        for line in lines:
            say(line)


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
