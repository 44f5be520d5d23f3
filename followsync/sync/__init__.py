"""The one place where I/O meets the core. A sync, in the order of its modules:

options (what was asked) → fastpath (nothing changed? done) → delta (which leads changed in
the lead files) → session (each target opened and listed; which leads changed there) →
planning (touches merged, the rules' plans) → apply (diff, then write) → report (what
happened). One path for every target: a full sync is the one whose scope is every lead.
See docs/architecture.md.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from followsync.config import Config
from followsync.gcpause import paused_gc
from followsync.state import State, lock_state, open_state, shortcuts_in
from followsync.sync.fastpath import inputs_digest, nothing_changed, remember_clean
from followsync.sync.options import SyncOptions
from followsync.sync.report import Outcome, TargetReport, target_errors

if TYPE_CHECKING:
    from followsync.leads import LeadBook
    from followsync.rules import LeadPlan
    from followsync.sources.scan import MailReport
    from followsync.sync.delta import Scoped
    from followsync.sync.session import Completion, Session

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
            outcome = _sync(config, state, now, options, digest)
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


@dataclass
class Planned:
    """What a sync decided before writing: the plans of the leads in `scope` (None: every
    lead's), the to-dos found ticked off, the basis of the next sync (None: none)."""

    plans: list[LeadPlan]
    completions: list[Completion]
    scope: frozenset[str] | None
    basis: str | None = None
    allow_deletes: bool = True  # False when the lead files hold no lead at all


def _sync(
    config: Config, state: State, now: datetime, options: SyncOptions, digest: str
) -> Outcome:
    """The one sync path: the scope (what changed in the lead files, `sync.delta`; None:
    every lead) → each target opened with the rows of that scope → the leads whose items
    changed in a calendar join it → plan → reconcile → the basis of the next sync kept.
    The collector is paused for loading and planning, not for the writes (gcpause)."""
    from followsync.sync import delta
    from followsync.sync.session import opened

    today = config.today(now)
    found = delta.find(config, state, options, today, digest)
    reports: list[TargetReport] = []
    with ExitStack() as stack:
        with paused_gc():
            scoped = delta.settle(config, state, found, now) if found is not None else None
            book = _book(config) if scoped is None else None  # (a ConfigError: nothing opened)
            sessions = stack.enter_context(opened(
                config, state, options, reports, scoped.leads if scoped else None, today))
            planned = _planned(config, state, now, options, digest, scoped, book, sessions)
        _reconcile(config, state, now, options, sessions, planned)
    if options.may_skip:  # the basis of the next sync, if this one left every target clean
        clean = all(not (r.error or r.conflicts or r.warnings) for r in reports)
        with state.transaction():
            state.set_note(delta.NOTE, planned.basis if clean else None)
    return Outcome(today, planned.plans, reports,
                   touches=[c.touch for c in planned.completions])


def _planned(
    config: Config, state: State, now: datetime, options: SyncOptions, digest: str,
    scoped: Scoped | None, book: LeadBook | None, sessions: list[Session],
) -> Planned:
    """The plans of the scope, widened by what changed in the calendars; every lead's when
    there is no scope or it cannot serve (the sessions then read every row)."""
    if scoped is not None:
        planned = _plan_scoped(config, state, scoped, sessions)
        if planned is not None:
            return planned
        for session in sessions:
            session.rescope(state, None)
    return _plan_all(config, state, now, options, digest, book or _book(config), sessions)


def _book(config: Config) -> LeadBook:
    """Every lead, from a reading of the whole files: the reference, which locates every
    error (ConfigError)."""
    from followsync.leads import load_leads

    return load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                      shortcuts=shortcuts_in(config.state_dir))


def _plan_scoped(config: Config, state: State, scoped: Scoped, sessions: list[Session]
                 ) -> Planned | None:
    """Plan the leads in scope and those whose items changed in a calendar (a user's edit,
    a to-do ticked off: a touch to merge); None when the full sync must decide."""
    from followsync.sync.delta import clash

    touched: set[str] = set()
    for session in sessions:
        leads = session.touched(state)
        if leads is None:
            return None
        touched |= leads
    if not scoped.widen(state, touched):
        return None
    for session in sessions:
        session.rescope(state, scoped.leads)
    completions = _read_changes(config, sessions, scoped.today)
    plans = scoped.plan(config, state, [(c.lead, c.touch) for c in completions])
    if clash(config, state, sessions, plans, scoped.leads):
        return None  # an item would leave its slot to another lead's: the full sync decides
    with state.transaction():
        state.remember(scoped.remembered)
        for found in completions:
            state.add_touch(found.target_key, found.uid, found.lead, found.touch)
    return Planned(plans, completions, scoped.leads, scoped.basis())


def _plan_all(
    config: Config, state: State, now: datetime, options: SyncOptions, digest: str,
    book: LeadBook, sessions: list[Session],
) -> Planned:
    """Every lead planned; the basis of the next sync made before the calendars are written
    (when this sync peaks in memory)."""
    from followsync.sync.delta import basis_of
    from followsync.sync.planning import local_now, mail_touches, plan_leads

    today = config.today(now)
    completions = _read_changes(config, sessions, today)
    plans = plan_leads(book, today, state, completions, options.dry_run,
                       mail_touches(config, state, book), local_now(config, now))
    basis = basis_of(config, state, book, today, digest) if options.may_skip else None
    return Planned(plans, completions, None, basis, allow_deletes=bool(book.leads))


def _read_changes(config: Config, sessions: list[Session], today: date) -> list[Completion]:
    """Each target's items of ours that changed there, read once; the to-dos ticked off."""
    completions: list[Completion] = []
    for session in sessions:
        with target_errors(session.report):
            completions.extend(session.read_changes(config.timezone, today))
    return completions


def _reconcile(config: Config, state: State, now: datetime, options: SyncOptions,
               sessions: list[Session], planned: Planned) -> None:
    """Each target made to hold what the plans want: the items of the leads in scope
    compared, the others counted (apply.Scope)."""
    from followsync.sync.apply import Scope, reconcile

    for session in sessions:
        with target_errors(session.report):
            scope = None if planned.scope is None else Scope(
                planned.scope, *state.counts_besides(session.target.key, planned.scope))
            reconcile(config, session, planned.plans, state, now, options,
                      allow_deletes=planned.allow_deletes, scope=scope)
        session.report.seconds = time.monotonic() - session.started
