"""The one place where I/O meets the core: load → plan → list → diff → apply → remember.

Everything it decides comes from the pure modules; here we only read files, talk to targets,
keep the state and count what happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from followsync import __version__
from followsync.backends.base import Backend, Listing, Remote, is_owned
from followsync.config import Config, Target
from followsync.errors import (
    EXIT_OK,
    EXIT_SAFETY,
    EXIT_TARGET,
    ComponentRefused,
    Conflict,
    FollowsyncError,
    SafetyStop,
)
from followsync.gcpause import paused_gc
from followsync.state import Lock, Row, State

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from followsync import diff as d
    from followsync.googleauth import GoogleSettings
    from followsync.leads import LeadBook, Touch
    from followsync.rules import LeadPlan, Memory

# The core (pydantic models, rules, diff, rendering) is imported by the functions that use it:
# a no-op sync (_nothing_changed) finishes without loading any of it.

log = logging.getLogger("followsync")
Progress = Callable[[str, int, int], None]
_SEQUENCE = re.compile(r"^SEQUENCE:(\d+)", re.MULTILINE)
STATE_BATCH = 50  # commit the state this often while writing to a server


@dataclass
class TargetReport:
    """What one target's sync did (or, for `plan`, would do)."""

    name: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    kept: int = 0  # user edits and deletions respected
    conflicts: int = 0
    seconds: float = 0.0
    error: str | None = None
    hint: str = ""
    exit_code: int = EXIT_OK
    actions: tuple[d.Action, ...] = ()
    warnings: list[str] = field(default_factory=list)

    checked: int = 0  # `plan` only: items found without a state row, compared by the sync
    notes: list[str] = field(default_factory=list)  # `plan` only: what a sync would do first

    def count(self, tally: d.Tally) -> None:
        """Take the counts of `diff.tally`: `plan` and `sync` count with that one function."""
        self.created, self.updated, self.deleted = tally.created, tally.updated, tally.deleted
        self.unchanged, self.kept, self.checked = tally.unchanged, tally.kept, tally.checked
        self.conflicts = tally.conflicts

    def counts(self, planned: bool = False) -> str:
        """The counts in words, for a sync's summary or (planned) for `plan`'s header."""
        if planned:
            text = (f"{self.created} to create, {self.updated} to update, "
                    f"{self.deleted} to delete, {self.unchanged} unchanged")
        else:
            text = (f"{self.created} created, {self.updated} updated, "
                    f"{self.deleted} deleted, {self.unchanged} unchanged")
        if self.checked:
            text += f", {self.checked} to check"
        if self.kept:
            text += f", {self.kept} calendar {'edit' if self.kept == 1 else 'edits'} kept"
        if self.conflicts:
            text += f", {self.conflicts} changed meanwhile (left for the next sync)"
        return text

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: FAILED: {self.error}"
        return f"{self.name}: {self.counts()} ({self.seconds:.2f} s)"


@dataclass
class Outcome:
    """A whole sync or plan: the plans the rules made and a report per target."""

    today: date
    plans: list[LeadPlan]
    targets: list[TargetReport]
    touches: list[Touch] = field(default_factory=list)  # to-dos completed in a calendar

    @property
    def exit_code(self) -> int:
        return max([EXIT_OK, *(t.exit_code for t in self.targets)])


def open_backend(target: Target, config: Config, readonly: bool = False) -> Backend:
    """The backend for a target (the CalDAV one is imported only when used); a readonly one
    (for `plan`) creates no calendar."""
    if target.type == "ics":
        from followsync.backends.icsfile import IcsFileBackend

        assert target.path is not None
        return IcsFileBackend(target.path, label=target.name)
    if target.type == "google":
        from followsync.backends.google import GoogleBackend

        return GoogleBackend(google_settings(target, config), readonly=readonly)
    from followsync.backends.caldav import CaldavBackend

    return CaldavBackend(target, readonly=readonly)


def google_settings(target: Target, config: Config) -> GoogleSettings:
    """What the google backend and `followsync auth` need from a `type: google` target."""
    from followsync.googleauth import GoogleSettings

    assert target.client_secret is not None and target.calendar is not None
    return GoogleSettings(target.name, target.calendar, target.client_secret, config.state_dir,
                          endpoint=target.endpoint, auth_port=target.auth_port,
                          timeout=target.timeout, zone=str(config.timezone))


def today_in(config: Config, now: datetime) -> date:
    return now.astimezone(config.timezone).date()


def make_plans(
    book: LeadBook, today: date, known: dict[str, Memory]
) -> tuple[list[LeadPlan], list[tuple[str, Memory]]]:
    """The rules' answer for every lead, and the lead memories that changed."""
    from followsync.rules import plan, remember

    memory: dict[str, Memory] = {}
    changed: list[tuple[str, Memory]] = []
    for lead_id, item in book.leads.items():
        before = known.get(lead_id)
        after = remember(before, item.lead, today)
        memory[lead_id] = after
        if after != before:
            changed.append((lead_id, after))
    return plan(book.leads.values(), today, memory), changed


def wants_for(
    plans: Iterable[LeadPlan], target: Target, zone: str, todo_ok: bool = True
) -> dict[str, d.Want]:
    """The items a target should hold, by UID."""
    from followsync import diff as d
    from followsync.render import input_hash, source_hash, uid_for

    wants: dict[str, d.Want] = {}
    for lead_plan in plans:
        for item in lead_plan.follow_ups:
            kind = target.kind or item.kind
            if kind == "todo" and not todo_ok:
                kind = "event"
            uid = uid_for(target.name, item.lead_id, item.rule)
            digest = input_hash(item, kind, zone, uid)
            source = source_hash(item, kind, zone, uid) if item.overdue_days else digest
            wants[uid] = d.Want(uid, item, kind, digest, source)
    return wants


def run(
    config: Config, now: datetime, *, dry_run: bool = False, force: bool = False,
    only: str | None = None, progress: Progress | None = None,
    backends: dict[str, Backend] | None = None,
) -> Outcome:
    """One reconcile (or, with dry_run, a plan) of every target. ConfigError leaves all as is."""
    today = today_in(config, now)
    digest = inputs_digest(config, today)
    lock = Lock(config.state_dir)
    if not dry_run:
        with _state_folder_errors(config.state_dir):
            lock.acquire()
    try:
        state = open_state(config.state_dir, readonly=dry_run)
        try:
            if not dry_run and not backends:
                quick = _nothing_changed(config, state, today, digest, only)
                if quick is not None:
                    return quick
            from followsync.leads import load_leads

            with paused_gc():  # see gcpause: planning 10,000 leads makes millions of objects
                book = load_leads(list(config.lead_paths), named_at=config.lead_named_at)
                outcome = _run_locked(config, book, state, now, today, dry_run=dry_run,
                                      force=force, only=only, progress=progress,
                                      backends=backends or {})
            if not dry_run:
                _remember_clean(config, state, outcome, digest)
            return outcome
        finally:
            state.close()
    finally:
        lock.release()


def inputs_digest(config: Config, today: date) -> str:
    """A digest of everything a plan depends on besides the state and the calendars: the
    config and lead files' bytes, the day, and this followsync's version."""
    from followsync.render import RENDER_VERSION

    digest = hashlib.sha256(f"{__version__}|{RENDER_VERSION}|{today.isoformat()}".encode())
    for path in (config.path, *config.lead_paths):
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
        digest.update(b"\0" + str(path).encode())
    return digest.hexdigest()


def _nothing_changed(
    config: Config, state: State, today: date, digest: str, only: str | None
) -> Outcome | None:
    """The no-op sync, cheaply: when the files and the day are as at the last clean sync of
    every target and each target reports no change since (one request for CalDAV, a digest
    of the file for .ics), nothing can have changed — no need to load and plan 10,000 leads.
    None means: do the full sync."""
    targets = [t for t in config.targets if not only or t.name == only]
    if not targets or any(state.clean_digest(t.key) != digest for t in targets):
        return None
    reports = []
    newer: list[tuple[str, str]] = []
    for target in targets:
        started = time.monotonic()
        rows = state.rows(target.key)
        known = _known(rows)
        cursor = state.cursor(target.key)
        try:
            backend = open_backend(target, config, readonly=True)  # a full sync makes things
            try:
                listing = backend.listing(known, cursor)
            finally:
                backend.close()
        except FollowsyncError:
            return None  # the full sync reports it properly
        if not listing.unchanged or listing.warnings or listing.reset:
            return None
        if listing.cursor and listing.cursor != cursor:
            # Only others' items changed since the cursor (the listing says none of ours
            # did): keep the newer one, or every no-op would fetch those changes again.
            newer.append((target.key, listing.cursor))
        # the deletions made in the calendar that stand count as kept, as in a full sync
        reports.append(TargetReport(target.name, unchanged=len(known),
                                    kept=len(rows) - len(known),
                                    seconds=time.monotonic() - started))
    if newer:
        with state.transaction():
            for key, cursor in newer:
                state.set_cursor(key, cursor)
    return Outcome(today, [], reports)


def _remember_clean(config: Config, state: State, outcome: Outcome, digest: str) -> None:
    """Mark the targets that are now exactly as planned, for `_nothing_changed`."""
    with state.transaction():
        for report in outcome.targets:
            target = next(t for t in config.targets if t.name == report.name)
            clean = not (report.error or report.conflicts or report.warnings)
            state.set_clean_digest(target.key, digest if clean else None)


@dataclass
class _Open:
    """A target being synced: its backend, what the state and the target hold."""

    target: Target
    backend: Backend
    own: bool
    report: TargetReport
    started: float
    listing: Listing | None = None
    rows: dict[str, Row] = field(default_factory=dict)  # the state's rows as at `listing`


def _run_locked(
    config: Config, book: LeadBook, state: State, now: datetime, today: date, *,
    dry_run: bool, force: bool, only: str | None, progress: Progress | None,
    backends: dict[str, Backend],
) -> Outcome:
    """List every target, take in to-dos completed there, plan, then reconcile each target."""
    opened: list[_Open] = []
    reports: list[TargetReport] = []
    touches: list[tuple[str, str, str, Touch]] = []
    try:
        for target in config.targets:
            if only and target.name != only:
                continue
            report = TargetReport(target.name)
            reports.append(report)
            started = time.monotonic()
            with _target_errors(report):
                backend = backends.get(target.name) or open_backend(target, config,
                                                                      readonly=dry_run)
                one = _Open(target, backend, target.name not in backends, report, started)
                opened.append(one)
                one.listing = _list(one, state)
                touches.extend(_completions(one, state, config, today))
            report.seconds = time.monotonic() - started
        memories = state.memories()
        for _key, _uid, lead, touch in touches:
            if lead in memories:
                known = memories[lead]
                if touch not in known.touches:
                    memories[lead] = replace(known, touches=(*known.touches, touch))
        plans, changed = make_plans(book, today, memories)
        if not dry_run:
            with state.transaction():
                state.remember(changed)
                for target_key, uid, lead, touch in touches:
                    state.add_touch(target_key, uid, lead, touch)
        for one in opened:
            if one.listing is None:
                continue
            with _target_errors(one.report):
                _reconcile(config, one, plans, state, now, dry_run=dry_run, force=force,
                           allow_deletes=bool(book.leads), progress=progress)
            one.report.seconds = time.monotonic() - one.started
        return Outcome(today, plans, reports, touches=[t for *_, t in touches])
    finally:
        for one in opened:
            if one.own:
                one.backend.close()


@contextlib.contextmanager
def _target_errors(report: TargetReport) -> Iterator[None]:
    """A target's failure is its own: reported, and the other targets go on."""
    try:
        yield
    except SafetyStop as exc:
        report.error, report.hint, report.exit_code = exc.message, exc.hint, EXIT_SAFETY
    except FollowsyncError as exc:
        report.error, report.hint, report.exit_code = exc.message, exc.hint, EXIT_TARGET


def _known(rows: dict[str, Row]) -> dict[str, Remote]:
    """What the state says a target holds (items deleted by hand excluded)."""
    return {uid: Remote(r.href, r.etag) for uid, r in rows.items() if not r.gone}


def _list(one: _Open, state: State) -> Listing:
    one.rows = state.rows(one.target.key)
    listing = one.backend.listing(_known(one.rows), state.cursor(one.target.key))
    one.report.warnings.extend(listing.warnings)
    if listing.reset:  # the rows describe a calendar that is gone: none of them applies
        one.rows = {}
    return listing


def _completions(
    one: _Open, state: State, config: Config, today: date
) -> list[tuple[str, str, str, Touch]]:
    """To-dos of ours ticked off in the calendar since we wrote them: touches by me."""
    from followsync.leads import Touch
    from followsync.readback import completed_on

    assert one.listing is not None
    found = []
    for uid, remote in one.listing.items.items():
        row = one.rows.get(uid)
        if row is None or row.gone or row.etag == remote.etag:
            continue
        try:
            text = one.backend.get(remote)
        except Conflict:
            continue
        day = completed_on(text, config.timezone, today)
        if day is not None:
            note = f"completed in the calendar ({one.target.name})"
            found.append((one.target.key, uid, row.lead, Touch(date=day, by="me", note=note)))
    return found


@contextlib.contextmanager
def _state_folder_errors(folder: Path) -> Iterator[None]:
    """A state folder that cannot be used (a file, no permission, a damaged database) is a
    user's problem with a hint, not a crash."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise FollowsyncError(f"the state database {folder / 'state.sqlite'} is damaged ({exc})",
                              "move it away; the next sync rebuilds it from the calendars")\
            from None
    except OSError as exc:
        why = "it is a file" if folder.exists() and not folder.is_dir() else exc.strerror
        raise FollowsyncError(f"cannot use the state folder {folder}: {why}",
                              "check `state_dir:` in the config") from None


def open_state(folder: Path, readonly: bool = False) -> State:
    """The state in `folder`; see `_state_folder_errors` for what can go wrong."""
    with _state_folder_errors(folder):
        return State(folder, readonly=readonly)


def _reconcile(
    config: Config, one: _Open, plans: list[LeadPlan], state: State, now: datetime, *,
    dry_run: bool, force: bool, allow_deletes: bool, progress: Progress | None,
) -> None:
    try:
        _reconcile_once(config, one, plans, state, now, dry_run=dry_run, force=force,
                        allow_deletes=allow_deletes, progress=progress)
    except ComponentRefused as exc:
        # The server said no to a VTODO: the backend now reports no VTODO support, so a
        # second pass writes events; what the first pass wrote is in the state.
        log.warning("%s; writing events instead", exc.message)
        report = one.report
        report.warnings.append(f"{one.target.name}: to-dos refused by the server; "
                               "events written instead")
        report.created = report.updated = report.deleted = report.unchanged = 0
        one.listing = _list(one, state)
        _reconcile_once(config, one, plans, state, now, dry_run=dry_run, force=force,
                        allow_deletes=allow_deletes, progress=progress)


def _reconcile_once(
    config: Config, one: _Open, plans: list[LeadPlan], state: State, now: datetime, *,
    dry_run: bool, force: bool, allow_deletes: bool, progress: Progress | None,
) -> None:
    from followsync import diff as d

    target, backend, report, listing = one.target, one.backend, one.report, one.listing
    assert listing is not None
    rows = one.rows
    if listing.fresh:  # the whole target was emptied or is new: nothing "deleted by hand"
        rows = {uid: row for uid, row in rows.items() if not row.gone}
    todo_ok = backend.supports("VTODO")
    wants = wants_for(plans, target, config.timezone.key, todo_ok)
    if not todo_ok and any(w.item.kind == "todo" or target.kind == "todo"
                           for w in wants.values()):
        report.warnings.append(f"{target.name}: the calendar does not take to-dos (VTODO); "
                               "writing events instead")
    if listing.note:
        report.notes.append(listing.note)
    if listing.reset and not dry_run:
        with state.transaction():  # forget the old calendar's items, moves and deletions
            state.forget_all(target.key)
            state.set_cursor(target.key, listing.cursor)
    result = d.diff(wants, listing.items, rows, allow_deletes=allow_deletes)
    report.actions = result.actions
    report.count(d.tally(result.actions, result.unchanged))  # a sync counts again what it did
    if not allow_deletes and any(uid not in wants for uid in listing.items):
        report.warnings.append(f"{target.name}: the lead files hold no leads; nothing is deleted")
    if result.deletes > config.max_deletes and not force:
        raise SafetyStop(
            f"this sync would delete {result.deletes} items from {target.name} "
            f"(safety.max_deletes is {config.max_deletes}); nothing was changed there",
            "check the lead file; if the deletions are right, run `followsync sync --force`")
    if dry_run:
        return
    _apply(target, state, now, backend, report, result, config, progress)
    if listing.reset:
        written = report.created + report.updated
        log.warning("%s: %s and uploaded %d %s", target.name, listing.note, written,
                    "item" if written == 1 else "items")


def _same(there: str, ours: str, target: str, href: str, quiet: bool = False) -> bool:
    """Whether an item read from a target says what we would write. An item that is not
    valid iCalendar (a broken server or app) is not the same: ours replaces it."""
    from followsync.render import normalise

    try:
        return normalise(there) == normalise(ours)
    except Exception as exc:  # icalendar raises ValueError, and worse on some input
        if quiet:
            return False
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        log.warning("%s: %s is not valid iCalendar (%s); followsync's version replaces it",
                    target, href, why)
        return False


def _apply(
    target: Target, state: State, now: datetime, backend: Backend, report: TargetReport,
    result: d.Diff, config: Config, progress: Progress | None,
) -> None:
    from followsync import diff as d
    from followsync.render import render

    key = target.key
    zone = config.timezone
    writes = [a for a in result.actions if isinstance(a, d.Create | d.Update | d.Adopt | d.Delete)]
    done = 0
    outcomes: list[d.Action] = []  # what each action came to, counted by diff.tally

    def text_for(want: d.Want, sequence: int) -> str:
        return render(want.item, uid=want.uid, kind=want.kind, zone=zone, stamp=now,
                      sequence=sequence)

    def row_for(want: d.Want, remote: Remote, sequence: int) -> Row:
        return Row(want.uid, remote.href, remote.etag, want.hash, sequence,
                   want.item.lead_id, want.item.rule, source=want.source)

    def update(want: d.Want, remote: Remote, sequence: int) -> None:
        text = text_for(want, sequence)
        try:
            written = backend.update(remote, text)
            state.put(key, row_for(want, written, sequence))
            outcomes.append(d.Update(want, written, None))
        except Conflict:
            # Re-read: a retried PUT that had already landed looks like this too.
            now_there = backend.find(want.uid)
            if now_there is not None and _same(backend.get(now_there), text, target.name,
                                               now_there.href):
                state.put(key, row_for(want, now_there, sequence))
                outcomes.append(d.Update(want, now_there, None))
                return
            outcomes.append(d.Missed(want.uid))
            log.warning("%s: %s changed in the calendar meanwhile; left as it is", target.name,
                        want.uid)

    def adopt(want: d.Want, remote: Remote) -> None:
        text = backend.get(remote)
        if not is_owned(text):
            report.warnings.append(f"{target.name}: {want.uid} exists without followsync's "
                                   "marks; it is left alone")
            return
        found = _SEQUENCE.search(text.replace("\r\n", "\n"))
        sequence = int(found.group(1)) if found else 0
        if _same(text, text_for(want, sequence), target.name, remote.href):
            state.put(key, row_for(want, remote, sequence))
            outcomes.append(d.Same(want.uid))
        else:
            update(want, remote, sequence + 1)

    def landed(action: d.Accept) -> bool:
        """Whether an item that changed since the state's ETag is what this sync would
        write: then it is a write of ours that landed but was never recorded (the process
        was killed after the server or the file had it), not the user's edit."""
        try:
            there = backend.get(action.remote)
        except Conflict:
            return False
        return _same(there, text_for(action.want, action.row.sequence + 1), target.name,
                     action.remote.href, quiet=True)

    state.db.execute("BEGIN")
    try:
        for action in result.actions:
            if isinstance(action, d.Create):
                try:
                    remote = backend.create(action.want.uid, text_for(action.want, 0))
                    state.put(key, row_for(action.want, remote, 0))
                    outcomes.append(action)
                except Conflict:
                    found = backend.find(action.want.uid)
                    if found is None:  # refused, yet not there: a lost race; try next time
                        outcomes.append(d.Missed(action.want.uid))
                        log.warning("%s: %s could not be created (changed meanwhile); left "
                                    "for the next sync", target.name, action.want.uid)
                    else:
                        adopt(action.want, found)
            elif isinstance(action, d.Update):
                sequence = (action.row.sequence if action.row else 0) + 1
                update(action.want, action.remote, sequence)
            elif isinstance(action, d.Adopt):
                adopt(action.want, action.remote)
            elif isinstance(action, d.Delete):
                try:
                    backend.delete(action.remote)
                    state.forget(key, action.uid)
                    outcomes.append(action)
                except Conflict:
                    outcomes.append(d.Missed(action.uid))
                    log.warning("%s: %s changed in the calendar meanwhile; not deleted",
                                target.name, action.uid)
            elif isinstance(action, d.Accept):
                if landed(action):  # our own write, kept out of the state by a crash
                    state.put(key, row_for(action.want, action.remote, action.row.sequence + 1))
                    outcomes.append(d.Same(action.want.uid))
                else:
                    state.put(key, replace(action.row, etag=action.remote.etag, edited=True,
                                           moved=_placed(backend, action.remote, zone)))
                    outcomes.append(action)
            elif isinstance(action, d.Gone):
                if not action.row.gone:
                    state.put(key, replace(action.row, gone=True))
                outcomes.append(action)
            elif isinstance(action, d.Forget):
                state.forget(key, action.uid)
            if isinstance(action, d.Create | d.Update | d.Adopt | d.Delete):
                done += 1
                if progress is not None:
                    progress(target.name, done, len(writes))
                if getattr(backend, "immediate", False) and done % STATE_BATCH == 0:
                    state.db.execute("COMMIT")
                    state.db.execute("BEGIN")
        state.set_cursor(key, backend.commit())
        state.db.execute("COMMIT")
        report.count(d.tally(outcomes, result.unchanged))
    except BaseException:
        report.count(d.tally(outcomes, result.unchanged))  # what was done before it failed
        if getattr(backend, "immediate", False):
            state.db.execute("COMMIT")  # what reached the server is remembered
        else:
            state.db.execute("ROLLBACK")
        raise


def _placed(backend: Backend, remote: Remote, zone: ZoneInfo) -> str:
    """Where the user put an item they edited in the calendar (`agenda` shows it there)."""
    from followsync.readback import placed_at

    try:
        return placed_at(backend.get(remote), zone)
    except Conflict:
        return ""


TargetKind = Literal["ics", "caldav", "google"]
