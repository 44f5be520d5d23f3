"""Carry out one target's actions: one method per action type, one conflict recovery.

`reconcile` decides (wants → diff → the safety limit) and `Apply` writes. Every write is
conditional; when one fails with Conflict the item is read again (`recover`), which is
what makes the HTTP layer's retries of a PUT or DELETE safe (see backends.base.Backend).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, assert_never

from followsync.backends.base import Backend, Listing
from followsync.config import Config
from followsync.errors import ComponentRefused, Conflict, SafetyStop
from followsync.marks import is_owned
from followsync.model import Remote, Row
from followsync.state import UPGRADED, State
from followsync.sync.options import Progress, SyncOptions
from followsync.sync.planning import relaid, taken_besides, wants_for
from followsync.sync.report import TargetReport
from followsync.sync.session import Session

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from followsync import diff as d
    from followsync.rules import LeadPlan

log = logging.getLogger("followsync")
_SEQUENCE = re.compile(r"^SEQUENCE:(\d+)", re.MULTILINE)
STATE_BATCH = 50  # commit the state this often while writing to a server
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # (a DTSTAMP for renderings only compared)


@dataclass(frozen=True)
class Scope:
    """A sync of some leads only (its scope: sync.delta, sync._sync): the session's rows are
    theirs; the target's other items are as planned, and counted here (standing, and
    deleted by hand)."""

    leads: frozenset[str]
    unchanged: int
    kept: int


def reconcile(
    config: Config, session: Session, plans: list[LeadPlan], state: State, now: datetime,
    options: SyncOptions, allow_deletes: bool, scope: Scope | None = None,
) -> None:
    """Make the target hold what the plans want (or, for `plan`, say what that takes).

    `scope` (see Scope): the plans are those of these leads only; the target's other items
    are known to be as planned, and are counted, not compared."""
    try:
        _reconcile_once(config, session, plans, state, now, options, allow_deletes, scope)
    except ComponentRefused as exc:
        # The server said no to a VTODO: the backend now reports no VTODO support, so a
        # second pass writes events; what the first pass wrote is in the state.
        log.warning("%s; writing events instead", exc.message)
        report = session.report
        report.warnings.append(f"{session.target.name}: to-dos refused by the server; "
                               "events written instead")
        report.created = report.updated = report.deleted = report.unchanged = 0
        session.relist(state)
        _reconcile_once(config, session, plans, state, now, options, allow_deletes, scope)


def _reconcile_once(
    config: Config, session: Session, plans: list[LeadPlan], state: State, now: datetime,
    options: SyncOptions, allow_deletes: bool, scope: Scope | None = None,
) -> None:
    from followsync import diff as d

    target, report, listing = session.target, session.report, session.listing
    assert listing is not None
    rows, bookkept = session.as_read(session.rows)
    outside_unchanged = outside_kept = 0
    if scope is not None:  # the other leads' items: unchanged, or deleted by hand and kept
        rows, listing = _in_scope(rows, listing, scope)
        outside_unchanged, outside_kept = scope.unchanged, scope.kept
    if listing.fresh:  # the whole target was emptied or is new: nothing "deleted by hand"
        rows = {uid: row for uid, row in rows.items() if not row.gone}
    todo_ok = session.backend.supports("VTODO")
    taken = taken_besides(state, target.key, scope.leads, plans) if scope is not None else []
    there = _there(session, listing.items, config.timezone)
    wants = wants_for(plans, target, config.timezone.key, todo_ok, rows, taken, there)
    adjusted = _upgraded(state, target.key, rows, wants)
    adjusted, bookkept = unfrozen(wants, adjusted, bookkept, session, config.timezone)
    if adjusted is not rows:  # rows the upgrade or `unfrozen` changed: lay the items anew
        rows = adjusted
        wants = wants_for(plans, target, config.timezone.key, todo_ok, rows, taken, there)
    if options.dry_run:  # `plan --all` gives each item the time it is laid at
        report.laid = {(w.item.lead_id, w.item.rule): w.item.at for w in wants.values()
                       if w.slot and w.item.at is not None}
    if not todo_ok:
        _say_events_only(session, wants)
    if listing.note:
        report.notes.append(listing.note)
    if listing.reset and not options.dry_run:
        session.forget_old_calendar(state)
    result = d.diff(wants, listing.items, rows, allow_deletes=allow_deletes, bookkept=bookkept)
    if outside_unchanged:
        result = replace(result, unchanged=result.unchanged + outside_unchanged)
    report.actions = result.actions
    report.count(d.tally(result.actions, result.unchanged))  # a sync counts again what it did
    report.kept += outside_kept
    if not allow_deletes and any(uid not in wants for uid in listing.items):
        report.warnings.append(f"{target.name}: the lead files hold no leads; nothing is deleted")
    if result.deletes > config.max_deletes and not options.force:
        raise SafetyStop(
            f"this sync would delete {result.deletes} items from {target.name} "
            f"(safety.max_deletes is {config.max_deletes}); nothing was changed there",
            "check the lead file; if the deletions are right, run `followsync sync --force`")
    if options.dry_run:
        return
    slots = relaid(wants, rows)
    if slots:  # items laid where they are, whose rows do not say so yet (an older state)
        with state.transaction():
            state.set_slots(target.key, slots)
    Apply(target.name, target.key, state, session.backend, report, now, config.timezone,
          options.progress).run(result)
    if state.meta(UPGRADED) is not None and state.meta(f"{UPGRADED}:{target.key}") is None:
        with state.transaction():
            state.set_meta(f"{UPGRADED}:{target.key}", "1")
    report.kept += outside_kept
    if listing.reset:
        session.say_rewritten()


def _in_scope(rows: dict[str, Row], listing: Listing, scope: Scope
              ) -> tuple[dict[str, Row], Listing]:
    """The rows and the listed items of the leads in scope only."""
    rows = {uid: row for uid, row in rows.items() if row.lead in scope.leads}
    return rows, replace(listing, items={uid: remote for uid, remote in listing.items.items()
                                         if uid in rows})


def _say_events_only(session: Session, wants: dict[str, d.Want]) -> None:
    """A calendar that takes no to-dos, when some are planned: said once per sync."""
    target, report = session.target, session.report
    if not any(w.item.kind == "todo" or target.kind == "todo" for w in wants.values()):
        return
    if target.type == "google":  # events only, by design (README): a note, not a warning
        report.notes.append(f"{target.name}: Google Calendar takes events only; to-dos "
                            "are written as events")
    else:
        report.warnings.append(f"{target.name}: the calendar does not take to-dos "
                               "(VTODO); writing events instead")


def _there(session: Session, items: Mapping[str, Remote], zone: ZoneInfo) -> Callable[[str], str]:
    """Where an item of the target stands (for one the state does not know: its slot)."""
    from followsync.readback import placed_at

    def where(uid: str) -> str:
        remote = items.get(uid)
        if remote is None:
            return ""
        try:
            return placed_at(session.backend.get(remote), zone)
        except Conflict:
            return ""

    return where


def _upgraded(state: State, key: str, rows: dict[str, Row], wants: dict[str, d.Want]
              ) -> dict[str, Row]:
    """The rows of items moved or deleted by hand under a followsync before state schema 5,
    once per target: they take their follow-up's source hash as this version makes it. Its
    texts changed (a reason names the unanswered touches, the reply link), and an upgrade is
    not the lead file changing that follow-up (README "Edits made in the calendar")."""
    if state.meta(UPGRADED) is None or state.meta(f"{UPGRADED}:{key}") is not None:
        return rows
    found = {uid: replace(row, source=want.source) for uid, row in rows.items()
             if (row.edited or row.gone) and (want := wants.get(uid)) is not None
             and row.source != want.source}
    return {**rows, **found} if found else rows


def unfrozen(wants: dict[str, d.Want], rows: dict[str, Row], bookkept: set[str],
             session: Session, zone: ZoneInfo) -> tuple[dict[str, Row], set[str]]:
    """Items written by a followsync before state schema 5, which knew no shapes (row.shape
    ""), that changed in the calendar — or that it took for the user's edit when an app
    wrote its bookkeeping into them (the migration has those read again: State._migrate).
    One that stands exactly where followsync's own overdue roll put it on one of the days
    since it was due was not moved by the user: its row loses the edit and learns its
    shape, and it is treated as ours (it rolls on). Only such rows cost renderings."""
    from followsync.readback import shape
    from followsync.render import render
    from followsync.slots import Slot

    found: dict[str, Row] = {}
    for uid, change in session.changes.items():
        row, want = rows.get(uid), wants.get(uid)
        if row is None or want is None or row.shape or not change.edited \
                or row.source != want.source or not change.shape:
            continue
        laid = Slot.parse(want.slot)  # (an older followsync wrote every item at its `at`)
        item = replace(want.item, at=laid.base) if laid is not None else want.item
        was = item.due - timedelta(days=item.overdue_days)
        ours = {shape(render(replace(item, due=was + timedelta(days=n), overdue_days=n),
                             uid=uid, kind=want.kind, zone=zone, stamp=_EPOCH), zone)
                for n in range(min(item.overdue_days, 366) + 1)}
        if change.shape in ours:
            found[uid] = replace(row, edited=False, moved="", shape=change.shape)
    if not found:
        return rows, bookkept
    return {**rows, **found}, bookkept | set(found)


def same(there: str, ours: str, target: str, href: str, quiet: bool = False,
         now: datetime | None = None) -> bool:
    """Whether an item read from a target says what we would write, a calendar app's
    bookkeeping (readback.without_bookkeeping) and alarms that have passed by `now` aside.
    An item that is not valid iCalendar (a broken server or app) is not the same: ours
    replaces it."""
    from followsync.readback import without_bookkeeping
    from followsync.render import normalise

    try:
        return normalise(without_bookkeeping(there), now) == \
            normalise(without_bookkeeping(ours), now)
    except Exception as exc:  # icalendar raises ValueError, and worse on some input
        if quiet:
            return False
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        log.warning("%s: %s is not valid iCalendar (%s); followsync's version replaces it",
                    target, href, why)
        return False


@dataclass
class Apply:
    """One target's actions carried out, in one state transaction."""

    name: str
    key: str  # the target's key in the state
    state: State
    backend: Backend
    report: TargetReport
    now: datetime
    zone: ZoneInfo
    progress: Progress | None = None
    outcomes: list[d.Action] = field(default_factory=list)  # counted by diff.tally
    writes: int = 0

    def run(self, result: d.Diff) -> None:
        """Every action, then the backend's commit; the report counts what was done, also
        when it stops half-way (an immediate backend's writes then stay in the state)."""
        from followsync import diff as d

        total = sum(1 for a in result.actions if d.is_write(a))
        try:
            with self.state.transaction(keep_on_error=self.backend.immediate):
                for action in result.actions:
                    self.carry_out(action)
                    if d.is_write(action):
                        self._wrote(total)
                self.state.set_cursor(self.key, self.backend.commit())
        finally:
            self.report.count(d.tally(self.outcomes, result.unchanged))

    def _wrote(self, total: int) -> None:
        self.writes += 1
        if self.progress is not None:
            self.progress(self.name, self.writes, total)
        if self.backend.immediate and self.writes % STATE_BATCH == 0:
            self.state.checkpoint()

    def carry_out(self, action: d.Action) -> None:
        """One action. A new action type fails mypy here until it is handled (assert_never)."""
        from followsync import diff as d

        match action:
            case d.Create():
                self.create(action)
            case d.Update():
                self.update(action.want, action.remote, (action.row.sequence if action.row
                                                         else 0) + 1,
                            action.row.kept if action.row else "")
            case d.Adopt():
                self.adopt(action.want, action.remote)
            case d.Delete():
                self.delete(action)
            case d.Accept():
                self.accept(action)
            case d.Gone():
                self.gone(action)
            case d.Restamp():
                self.state.put(self.key, replace(action.row, etag=action.remote.etag))
                self.outcomes.append(action)
            case d.Forget():
                self.state.forget(self.key, action.uid)
            case d.Same() | d.Missed():
                raise AssertionError(f"{action} is an outcome, never planned")
            case _:
                assert_never(action)

    # --- one method per action -------------------------------------------------------
    def create(self, action: d.Create) -> None:

        want = action.want
        try:
            text = self.text(want, 0)
            remote = self.backend.create(want.uid, text)
        except Conflict:
            found = self.backend.find(want.uid)
            if found is None:  # refused, yet not there: a lost race; try next time
                self.missed(want.uid, "could not be created (changed meanwhile); left for the "
                            "next sync")
            else:  # there already: ours from a retried PUT or a lost state, or someone's
                self.adopt(want, found)
            return
        self.record(want, remote, 0, text)
        self.outcomes.append(action)

    def update(self, want: d.Want, remote: Remote, sequence: int, kept: str = "") -> None:
        """Rewrite an item; `kept`, a calendar app's bookkeeping read from it, comes along
        (readback.carry_over), so a reminder dismissed there does not ring again."""
        from followsync import diff as d
        from followsync.readback import carry_over

        text = carry_over(self.text(want, sequence), kept, self.now)
        try:
            written = self.backend.update(remote, text)
        except Conflict:
            landed = self.recover(want.uid, text)
            if landed is None:
                self.missed(want.uid, "changed in the calendar meanwhile; left as it is")
                return
            written = landed
        self.record(want, written, sequence, text, kept)
        self.outcomes.append(d.Update(want, written, None))

    def adopt(self, want: d.Want, remote: Remote) -> None:
        """An item of ours the state does not know: record it if it is as planned, else
        rewrite it (an item without followsync's mark is someone else's: left alone)."""
        from followsync import diff as d
        from followsync.readback import bookkeeping

        text = self.backend.get(remote)
        if not is_owned(text):
            self.report.warnings.append(f"{self.name}: {want.uid} exists without followsync's "
                                        "marks; it is left alone")
            return
        found = _SEQUENCE.search(text.replace("\r\n", "\n"))
        sequence = int(found.group(1)) if found else 0
        kept = bookkeeping(text)
        if same(text, self.text(want, sequence), self.name, remote.href, now=self.now):
            self.record(want, remote, sequence, text, kept)
            self.outcomes.append(d.Same(want.uid))
        else:
            self.update(want, remote, sequence + 1, kept)

    def delete(self, action: d.Delete) -> None:
        try:
            self.backend.delete(action.remote)
        except Conflict:
            self.missed(action.uid, "changed in the calendar meanwhile; not deleted")
            return
        self.state.forget(self.key, action.uid)
        self.outcomes.append(action)

    def accept(self, action: d.Accept) -> None:
        """Keep the user's edit — unless the item is what this sync would write: then it is
        a write of ours that landed but was never recorded (the process was killed after
        the server or the file had it)."""
        from followsync import diff as d
        from followsync.readback import placed_at, shape

        sequence = action.row.sequence + 1
        try:
            there = self.backend.get(action.remote)
        except Conflict:
            there = ""
        ours = self.text(action.want, sequence)
        if there and same(there, ours, self.name, action.remote.href, quiet=True,
                         now=self.now):
            self.record(action.want, action.remote, sequence, there, action.row.kept)
            self.outcomes.append(d.Same(action.want.uid))
            return
        self.state.put(self.key, replace(action.row, etag=action.remote.etag, edited=True,
                                         moved=placed_at(there, self.zone) if there else "",
                                         shape=shape(there, self.zone) if there else ""))
        self.outcomes.append(action)

    def gone(self, action: d.Gone) -> None:
        if not action.row.gone:
            self.state.put(self.key, replace(action.row, gone=True))
        self.outcomes.append(action)

    # --- helpers -----------------------------------------------------------------
    def recover(self, uid: str, text: str) -> Remote | None:
        """After a Conflict: where the item stands if it says what we sent — our own write
        that landed (a retried PUT meets its first attempt) — else None."""
        found = self.backend.find(uid)
        if found is not None and same(self.backend.get(found), text, self.name, found.href,
                                      now=self.now):
            return found
        return None

    def text(self, want: d.Want, sequence: int) -> str:
        from followsync.render import render

        return render(want.item, uid=want.uid, kind=want.kind, zone=self.zone, stamp=self.now,
                      sequence=sequence, now=self.now)

    def record(self, want: d.Want, remote: Remote, sequence: int, text: str, kept: str = ""
               ) -> None:
        """The state row of an item as written (or found as planned): `text`, what it says,
        gives the shape a user's edit is told by."""
        from followsync.readback import shape

        self.state.put(self.key, Row(want.uid, remote.href, remote.etag, want.hash, sequence,
                                     want.item.lead_id, want.item.rule, source=want.source,
                                     slot=want.slot, shape=shape(text, self.zone), kept=kept))

    def missed(self, uid: str, why: str) -> None:
        from followsync import diff as d

        self.outcomes.append(d.Missed(uid))
        log.warning("%s: %s %s", self.name, uid, why)
