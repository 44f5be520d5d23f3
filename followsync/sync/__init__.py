"""The one place where I/O meets the core. A sync, in the order of its modules:

options (what was asked) → fastpath (nothing changed? done) → session (each target opened
and listed) → planning (touches merged, the rules' plans) → apply (diff, then write) →
report (what happened). See docs/architecture.md.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import TYPE_CHECKING

from followsync.config import Config
from followsync.gcpause import paused_gc
from followsync.state import State, lock_state, open_state
from followsync.sync.fastpath import inputs_digest, nothing_changed, remember_clean
from followsync.sync.options import SyncOptions
from followsync.sync.report import Outcome, TargetReport, target_errors

if TYPE_CHECKING:
    from followsync.sources.scan import MailReport

__all__ = ["Outcome", "SyncOptions", "TargetReport", "run"]


def run(config: Config, now: datetime, options: SyncOptions | None = None) -> Outcome:
    """One reconcile (or, with dry_run, a plan) of every target. ConfigError leaves all as is."""
    options = options or SyncOptions()
    today = config.today(now)
    lock = None if options.dry_run else lock_state(config.state_dir)
    try:
        state = open_state(config.state_dir, readonly=options.dry_run)
        try:
            mailboxes = _scan(config, state, today, options)
            # stored mail touches are an input of the plan: their generation is in the digest
            digest = inputs_digest(config, today, state.mail_generation())
            if options.may_skip:
                targets = [t for t in config.targets if options.wants(t.name)]
                quick = nothing_changed(config, state, today, digest, targets)
                if quick is not None:
                    quick.mailboxes = mailboxes
                    return quick
            from followsync.sync import delta

            with paused_gc():  # (see gcpause: the basis holds an entry per lead)
                outcome = delta.run(config, state, now, options, digest) if options.may_skip \
                    else None
            if outcome is None:
                outcome = _full(config, state, now, options, digest)
            outcome.mailboxes = mailboxes
            if not options.dry_run:
                remember_clean(config, state, outcome, digest)
            return outcome
        finally:
            state.close()
    finally:
        if lock is not None:
            lock.release()


def _scan(config: Config, state: State, today: date, options: SyncOptions) -> list[MailReport]:
    """Scan the mailboxes this sync asks for (README "Mail"): a mailbox with nothing new
    costs one STATUS per folder; one that fails is reported and the calendars still sync."""
    names = [box.name for box in config.mailboxes if options.scans(box.name)]
    if not names:
        return []
    from followsync.sources.scan import known_addresses, scan_mailboxes

    return scan_mailboxes(config, known_addresses(config, state), state, today, only=names,
                          held=options.held)


def _full(
    config: Config, state: State, now: datetime, options: SyncOptions, digest: str = ""
) -> Outcome:
    """Load the leads, open every target, merge the touches found there, plan, reconcile."""
    from followsync.leads import load_leads
    from followsync.sync.apply import reconcile
    from followsync.sync.planning import local_now, mail_touches, plan_leads
    from followsync.sync.session import opened

    today = config.today(now)
    reports: list[TargetReport] = []
    with paused_gc():  # see gcpause: planning 10,000 leads makes millions of objects
        book = load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                          shortcuts=config.state_dir / "shortcuts")
        with opened(config, state, options, reports) as sessions:
            completions = []
            for session in sessions:
                with target_errors(session.report):
                    completions.extend(session.read_changes(config.timezone, today))
            plans = plan_leads(book, today, state, completions, options.dry_run,
                               mail_touches(config, state, book), local_now(config, now))
            basis = None  # the next delta's basis, made before the calendars are written
            if options.may_skip and not options.backends:  # (when this sync peaks in memory)
                from followsync.sync.delta import basis_of

                basis = basis_of(config, state, book, today, digest)
            for session in sessions:
                with target_errors(session.report):
                    reconcile(config, session, plans, state, now, options,
                              allow_deletes=bool(book.leads))
                session.report.seconds = time.monotonic() - session.started
        if options.may_skip and not options.backends:  # the basis of the next sync's delta
            from followsync.sync.delta import NOTE

            with state.transaction():
                state.set_note(NOTE, basis)
    return Outcome(today, plans, reports, touches=[c.touch for c in completions])

