"""The one place where I/O meets the core. A sync, in the order of its modules:

options (what was asked) → fastpath (nothing changed? done) → session (each target opened
and listed) → planning (touches merged, the rules' plans) → apply (diff, then write) →
report (what happened). See docs/architecture.md.
"""

from __future__ import annotations

import time
from datetime import datetime

from followsync.config import Config
from followsync.gcpause import paused_gc
from followsync.state import State, lock_state, open_state
from followsync.sync.fastpath import inputs_digest, nothing_changed, remember_clean
from followsync.sync.options import SyncOptions
from followsync.sync.report import Outcome, TargetReport, target_errors

__all__ = ["Outcome", "SyncOptions", "TargetReport", "run"]


def run(config: Config, now: datetime, options: SyncOptions | None = None) -> Outcome:
    """One reconcile (or, with dry_run, a plan) of every target. ConfigError leaves all as is."""
    options = options or SyncOptions()
    today = config.today(now)
    digest = inputs_digest(config, today)
    lock = None if options.dry_run else lock_state(config.state_dir)
    try:
        state = open_state(config.state_dir, readonly=options.dry_run)
        try:
            if options.may_skip:
                targets = [t for t in config.targets if options.wants(t.name)]
                quick = nothing_changed(config, state, today, digest, targets)
                if quick is not None:
                    return quick
            outcome = _full(config, state, now, options)
            if not options.dry_run:
                remember_clean(config, state, outcome, digest)
            return outcome
        finally:
            state.close()
    finally:
        if lock is not None:
            lock.release()


def _full(config: Config, state: State, now: datetime, options: SyncOptions) -> Outcome:
    """Load the leads, open every target, merge the touches found there, plan, reconcile."""
    from followsync.leads import load_leads
    from followsync.sync.apply import reconcile
    from followsync.sync.planning import plan_leads
    from followsync.sync.session import opened

    today = config.today(now)
    reports: list[TargetReport] = []
    with paused_gc():  # see gcpause: planning 10,000 leads makes millions of objects
        book = load_leads(list(config.lead_paths), named_at=config.lead_named_at)
        with opened(config, state, options, reports) as sessions:
            completions = []
            for session in sessions:
                with target_errors(session.report):
                    completions.extend(session.completions(config.timezone, today))
            plans = plan_leads(book, today, state, completions, options.dry_run)
            for session in sessions:
                with target_errors(session.report):
                    reconcile(config, session, plans, state, now, options,
                              allow_deletes=bool(book.leads))
                session.report.seconds = time.monotonic() - session.started
    return Outcome(today, plans, reports, touches=[c.touch for c in completions])
