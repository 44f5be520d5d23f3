"""The nothing-changed shortcut: a no-op sync without loading the leads or the rules.

When the config and lead files and the day are as at the last clean sync of every target
(one digest), and each target says nothing of ours changed since (one request for CalDAV, a
digest of the file for .ics), the plan cannot differ — no need to load and plan 10,000 leads.
Imports here stay light: no pydantic model of the leads, no icalendar.
"""

from __future__ import annotations

import time
from datetime import date

from followsync.backends import open_backend
from followsync.config import Config, Target
from followsync.errors import FollowsyncError
from followsync.fingerprint import of_sync
from followsync.model import Remote
from followsync.state import State
from followsync.sync.report import Outcome, TargetReport


def inputs_digest(config: Config, today: date, mail: str = "") -> str:
    """The whole fingerprint of a sync's inputs (fingerprint.of_sync): followsync's code,
    the environment, the config and lead files and where they point, the zone and its rules,
    the day, and `mail`, the generation of the stored mail touches (State.mail_generation)."""
    return of_sync(config.path, config.lead_paths, config.timezone, today, mail).whole()


def nothing_changed(
    config: Config, state: State, today: date, digest: str, targets: list[Target]
) -> Outcome | None:
    """The no-op sync's outcome, or None: something may have changed, do the full sync."""
    if not targets or any(state.clean_digest(t.key) != digest for t in targets):
        return None
    reports = []
    newer: list[tuple[str, str]] = []
    for target in targets:
        found = _unchanged(target, state, today)
        if found is None:
            return None
        report, cursor = found
        reports.append(report)
        if cursor is not None:
            newer.append((target.key, cursor))
    if newer:
        with state.transaction():
            for key, cursor in newer:
                state.set_cursor(key, cursor)
    return Outcome(today, [], reports)


def _unchanged(target: Target, state: State, today: date
               ) -> tuple[TargetReport, str | None] | None:
    """A target whose items of ours are as the state says: its report, and a newer cursor
    to keep when only others' items changed (or every no-op would fetch those changes
    again). None when anything of ours changed, or the target says anything but "as was"."""
    started = time.monotonic()
    cursor = state.cursor(target.key)
    try:
        # (readonly: a full sync makes what is missing)
        backend = open_backend(target, readonly=True, today=today)
        try:
            if backend.cursor_only:  # (a file's digest: no need for 60,000 hrefs and ETags)
                holds: dict[str, Remote] = {}
                standing, gone = state.counts(target.key)
            else:
                holds, count = state.standing(target.key)
                standing, gone = len(holds), count - len(holds)
            listing = backend.listing(holds, cursor)
        finally:
            backend.close()
    except FollowsyncError:
        return None  # the full sync reports it properly
    if not listing.unchanged or listing.warnings or listing.reset:
        return None
    # the deletions made in the calendar that stand count as kept, as in a full sync
    report = TargetReport(target.name, unchanged=standing, kept=gone,
                          seconds=time.monotonic() - started)
    newer = listing.cursor if listing.cursor and listing.cursor != cursor else None
    return report, newer


def remember_clean(config: Config, state: State, outcome: Outcome, digest: str) -> None:
    """Mark the targets that are now exactly as planned, for `nothing_changed`."""
    with state.transaction():
        for report in outcome.targets:
            target = next(t for t in config.targets if t.name == report.name)
            clean = not (report.error or report.conflicts or report.warnings)
            state.set_clean_digest(target.key, digest if clean else None)
