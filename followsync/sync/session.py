"""One target opened for a sync: its backend, the state's rows, what it holds, the to-dos
ticked off there, and what to do when the calendar the state describes was deleted."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING

from followsync.backends import open_backend
from followsync.backends.base import Backend, Listing
from followsync.config import Config, Target
from followsync.errors import Conflict
from followsync.model import Remote, Row, standing
from followsync.state import State
from followsync.sync.options import SyncOptions
from followsync.sync.report import TargetReport, target_errors

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from followsync.leads import Touch

log = logging.getLogger("followsync")


@dataclass(frozen=True)
class Completion:
    """A to-do of ours ticked off in a calendar: a touch by me, kept in the state."""

    target_key: str
    uid: str
    lead: str
    touch: Touch


@dataclass(frozen=True)
class Change:
    """An item of ours that changed in the calendar, as read at `etag`: whether the user
    edited it (readback.edited), and the app's bookkeeping it holds (readback.bookkeeping)."""

    etag: str
    edited: bool
    kept: str
    shape: str = ""  # (readback.shape, for sync.apply.unfrozen)


@dataclass
class Session:
    """A target being synced: its backend, what the state and the target hold."""

    target: Target
    backend: Backend
    own: bool  # opened here, so closed here (an injected backend is the caller's)
    report: TargetReport
    started: float = field(default_factory=time.monotonic)
    listing: Listing | None = None
    rows: dict[str, Row] = field(default_factory=dict)  # the state's rows as at `listing`
    changes: dict[str, Change] = field(default_factory=dict)  # read by `read_changes`
    scope: frozenset[str] | None = None  # the leads whose rows are read (None: all)
    known: dict[str, Remote] = field(default_factory=dict)  # what `listing` was given

    def relist(self, state: State) -> Listing:
        """Read the state's rows (of the leads in scope) and list the target against them.
        A listing that tells our items from others' by what the state holds (a server's)
        is given all of it; one answering from its cursor alone (a file's) only the scope's."""
        self.rows = state.rows(self.target.key, self.scope)
        self.known = standing(self.rows) if self.scope is None or self.backend.cursor_only \
            else state.standing(self.target.key)[0]
        listing = self.backend.listing(self.known, state.cursor(self.target.key))
        self.report.warnings.extend(listing.warnings)
        if listing.reset:  # the rows describe a calendar that is gone: none of them applies
            self.rows = {}
        self.listing = listing
        return listing

    def rescope(self, state: State, scope: frozenset[str] | None) -> None:
        """The rows of other leads (None: all) against the listing made: a listing answered
        from the cursor alone holds what it was given, the standing rows (Backend)."""
        assert self.listing is not None
        self.scope = scope
        self.rows = {} if self.listing.reset else state.rows(self.target.key, scope)
        if self.backend.cursor_only and self.listing.unchanged:
            self.listing = replace(self.listing, items=standing(self.rows))

    def touched(self, state: State) -> set[str] | None:
        """The leads whose items of ours changed in the calendar since the last sync (an
        edit, a ticked to-do, a deletion): a sync of some leads plans these too. None when
        that cannot be told: the calendar was deleted or emptied, it warns, or it holds an
        item of ours the state has no row for (every lead is planned then)."""
        listing = self.listing
        assert listing is not None
        if listing.reset or listing.fresh or listing.warnings:
            return None
        if listing.unchanged:
            return set()
        known = state.standing(self.target.key)[0] if self.backend.cursor_only else self.known
        uids = {uid for uid in known.keys() | listing.items.keys()
                if known.get(uid) != listing.items.get(uid)}
        leads = state.leads_of(self.target.key, uids)
        return set(leads.values()) if len(leads) == len(uids) else None

    def read_changes(self, zone: ZoneInfo, today: date) -> list[Completion]:
        """Read once each item of ours whose ETag moved since we wrote it: what changed
        (`changes`: an edit by the user, or only a calendar app's bookkeeping), and the to-dos
        ticked off there, which are touches by me (returned). `plan` and `sync` both come
        here, so they agree on what is an edit."""
        from followsync.leads import Touch
        from followsync.readback import bookkeeping, completed_on, edited, shape

        assert self.listing is not None
        found = []
        self.changes = {}
        for uid, remote in self.listing.items.items():
            row = self.rows.get(uid)
            if row is None or row.gone or row.etag == remote.etag:
                continue
            try:
                text = self.backend.get(remote)
            except Conflict:
                continue
            self.changes[uid] = Change(remote.etag, edited(row.shape, text, zone),
                                       bookkeeping(text), "" if row.shape else shape(text, zone))
            day = completed_on(text, zone, today)
            if day is not None:
                note = f"completed in the calendar ({self.target.name})"
                # it marks its own follow-up done (a status trigger's, a one-off's) by rule
                found.append(Completion(self.target.key, uid, row.lead,
                                        Touch(date=day, by="me", note=note,
                                              rule=row.rule or None)))
        return found

    def as_read(self, rows: dict[str, Row]) -> tuple[dict[str, Row], set[str]]:
        """`rows` with the bookkeeping `read_changes` found, and the items that changed in
        bookkeeping only (diff's `bookkept`); a change read at another ETag than the
        listing's (relisted since) is left out."""
        assert self.listing is not None
        now = {uid: change for uid, change in self.changes.items()
               if uid in rows and (there := self.listing.items.get(uid)) is not None
               and there.etag == change.etag}
        if not now:
            return rows, set()
        fresh = {uid: replace(rows[uid], kept=change.kept) for uid, change in now.items()}
        return {**rows, **fresh}, {uid for uid, change in now.items() if not change.edited}

    def forget_old_calendar(self, state: State) -> None:
        """The calendar was deleted on the server (listing.reset): forget its items, moves
        and deletions; everything is written anew."""
        assert self.listing is not None
        with state.transaction():
            state.forget_all(self.target.key)
            state.set_cursor(self.target.key, self.listing.cursor)

    def say_rewritten(self) -> None:
        """After a reset: say what was uploaded again, in the log."""
        assert self.listing is not None
        written = self.report.created + self.report.updated
        log.warning("%s: %s and uploaded %d %s", self.target.name, self.listing.note, written,
                    "item" if written == 1 else "items")


@contextmanager
def opened(
    config: Config, state: State, options: SyncOptions, reports: list[TargetReport],
    scope: frozenset[str] | None = None, today: date | None = None,
) -> Iterator[list[Session]]:
    """Open and list every target the sync concerns (a report each, in `reports`), with
    the rows of the leads in `scope` (None: all); a target that fails is reported and left
    out. `today` is the sync's day (a Microsoft target's delta window follows it). Closes
    the backends opened here."""
    sessions: list[Session] = []
    try:
        for target in config.targets:
            if not options.wants(target.name):
                continue
            report = TargetReport(target.name)
            reports.append(report)
            started = time.monotonic()
            with target_errors(report):
                injected = options.backends.get(target.name)
                backend = injected or open_backend(target, readonly=options.dry_run,
                                                   today=today)
                session = Session(target, backend, injected is None, report, started,
                                  scope=scope)
                sessions.append(session)
                session.relist(state)
            report.seconds = time.monotonic() - started
        yield [s for s in sessions if s.listing is not None]
    finally:
        for session in sessions:
            if session.own:
                session.backend.close()
