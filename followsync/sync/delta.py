"""A sync that plans only the leads whose inputs changed (README, "Large lead files").

After a clean sync the state keeps a *basis*: each lead's slice digest (leadsplit), its
status entry (for other leads' `on_other_status` triggers) and the statuses it listens to,
plus a digest of everything else a plan depends on (followsync's version, the day, the
config file, each lead file's head with `defaults:`). The next sync, when that digest is the
same, every target was left clean and says nothing of ours changed since, cuts the lead
files into slices again and compares digests: only the leads that changed, appeared or
went, plus every lead listening for a status whose entries changed, are parsed, planned,
rendered and compared with the target; the other items stay as they are and are counted.
Anything unusual (a slice that does not validate, a lead moved in the file, many changes)
answers None, and the full sync runs: it is the reference (tests/test_scale.py checks that
both write the same calendar, byte for byte).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from followsync import __version__
from followsync.config import Config
from followsync.state import State
from followsync.sync.options import SyncOptions
from followsync.sync.report import Outcome, TargetReport, target_errors

if TYPE_CHECKING:
    from followsync.leads import LeadBook, Settings
    from followsync.leadsplit import Slice
    from followsync.rules import Memory
    from followsync.sync.session import Session

NOTE = "delta-basis"
BASIS_VERSION = 2  # bump when the basis changes shape: an older one is then ignored
Entry = list[Any]  # [slice digest, status or None, status day (ISO) or None, [listens to]]


def _others_digest(config: Config, state: State, today: date, heads: dict[str, str]) -> str:
    """Everything a plan depends on besides the leads' own slices, their memories and the
    calendars: this followsync, the day, the config file, each lead file's head, the stored
    mail touches (their generation: new mail for a lead makes the next sync a full one)."""
    from followsync.render import RENDER_VERSION

    digest = hashlib.sha256(f"{__version__}|{RENDER_VERSION}|{today.isoformat()}|"
                            f"{state.mail_generation()}".encode())
    try:
        digest.update(config.path.read_bytes())
    except OSError:
        digest.update(b"\0missing")
    for path in config.lead_paths:
        digest.update(b"\0" + str(path).encode() + b"\0" + heads.get(str(path), "-").encode())
    return digest.hexdigest()


def _entry(digest: str, status: str | None, day: date | None, listens: list[str]) -> Entry:
    return [digest, status, day.isoformat() if day else None, listens]


def record(config: Config, state: State, book: LeadBook, today: date, clean: str) -> None:
    """After a clean full sync: the basis of the next delta (or none, if a file could not
    be cut into slices)."""
    from followsync.rules import status_day

    if any(str(path) not in book.layouts for path in config.lead_paths) or \
            any(lead_id not in book.digests for lead_id in book.leads):
        state.set_note(NOTE, None)
        return
    memories = state.memories()
    leads: dict[str, Entry] = {}
    for lead_id, item in book.leads.items():
        memory = memories.get(lead_id)
        day = status_day(item.lead, memory) if memory is not None else None
        leads[lead_id] = _entry(book.digests[lead_id], item.lead.status, day,
                                [name for name, _ in item.policy.on_other_status])
    names = [str(path) for path in config.lead_paths]
    heads = {name: book.layouts[name]["head_key"] for name in names}
    basis = {"v": BASIS_VERSION, "others": _others_digest(config, state, today, heads),
             "clean": clean, "order": names,
             "files": {name: book.layouts[name] for name in names}, "leads": leads}
    state.set_note(NOTE, json.dumps(basis, separators=(",", ":")))


def _entered(order: list[str], leads: dict[str, Entry]) -> dict[str, list[tuple[str, str]]]:
    """status → the (lead, day) entries in file order: what other leads' triggers see."""
    found: dict[str, list[tuple[str, str]]] = {}
    for lead_id in order:
        _, status, day, _ = leads[lead_id]
        if status and day:
            found.setdefault(status, []).append((lead_id, day))
    return found


@dataclass
class _File:
    """A lead file as this sync found it: its leads in order, the slices read anew (all of
    them, or those in the stretch a save changed), where the others stand."""

    name: str
    ids: list[str]
    fresh: dict[str, Slice]
    text_of: Callable[[int], str]
    head_text: str
    layout: dict[str, Any]


def _cut_file(name: str, data: bytes, layout: dict[str, Any] | None,
              digests: dict[str, str]) -> _File | None:
    """The file's leads: from what changed since `layout` when it can, else a whole cut."""
    from followsync.leads import _split
    from followsync.leadsplit import layout_of, resplit

    found = resplit(data, layout, digests) if layout is not None else None
    if found is not None:
        return _File(name, found.ids, found.fresh, found.text_of, found.head_text(),
                     found.layout)
    cut = _split(data)
    new_layout = layout_of(data, cut) if cut is not None else None
    if cut is None or new_layout is None:
        return None
    slices = cut.slices
    return _File(name, [p.lead_id for p in slices], {p.lead_id: p for p in slices},
                 lambda index: slices[index].text, cut.head_key, new_layout)


def run(config: Config, state: State, now: datetime, options: SyncOptions,
        clean: str) -> Outcome | None:
    """The sync of what changed since the basis, or None: the full sync must run."""
    from followsync.leads import _lead_of_slice

    if options.dry_run or options.only or options.backends:
        return None
    if any(target.type != "ics" for target in config.targets):
        # A CalDAV sync already sends only what changed (one REPORT, the PUTs); its listing
        # may also make a deleted calendar again, which the full sync must report.
        return None
    stored = state.note(NOTE)
    if stored is None:
        return None
    try:
        basis = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(basis, dict) or basis.get("v") != BASIS_VERSION or any(
            state.clean_digest(t.key) != basis["clean"] for t in config.targets):
        return None
    today = config.today(now)
    old: dict[str, Entry] = basis["leads"]
    digests = {lead_id: entry[0] for lead_id, entry in old.items()}
    files: list[_File] = []
    for path in config.lead_paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None
        found = _cut_file(str(path), data, basis["files"].get(str(path)), digests)
        if found is None:
            return None
        files.append(found)
    heads = {f.name: f.layout["head_key"] for f in files}
    if _others_digest(config, state, today, heads) != basis["others"]:
        return None
    order = [lead_id for f in files for lead_id in f.ids]
    where = {lead_id: (f, index) for f in files for index, lead_id in enumerate(f.ids)}
    if len(where) != len(order) or not order:
        return None  # a repeated id, or no lead at all: the full sync says what to do
    changed = [lead_id for f in files for lead_id, piece in f.fresh.items()
               if lead_id not in old or old[lead_id][0] != piece.digest]
    changed += [lead_id for lead_id in order if lead_id not in old and lead_id not in changed]
    removed = [lead_id for lead_id in old if lead_id not in where]
    old_order = [lead_id for name in basis["order"] for lead_id in basis["files"][name]["ids"]]
    if [i for i in order if i in old] != [i for i in old_order if i in where]:
        return None  # leads moved: the order of status triggers may change
    if len(changed) + len(removed) > 100 + len(order) // 20:
        return None
    return _sync(config, state, now, options, basis, files, where, order, old_order,
                 changed, removed, _lead_of_slice, clean)


def _defaults(file: str, head_text: str) -> Settings | None:
    from pydantic import ValidationError

    from followsync.errors import ConfigError
    from followsync.leads import LeadFile
    from followsync.yamlsrc import load

    try:
        value = load(file, head_text.encode()).value
        return LeadFile.model_validate(value).defaults if isinstance(value, dict) else None
    except (ConfigError, ValidationError):
        return None


def _sync(
    config: Config, state: State, now: datetime, options: SyncOptions, basis: dict[str, Any],
    files: list[_File], where: dict[str, tuple[_File, int]], order: list[str],
    old_order: list[str], changed: list[str], removed: list[str], lead_of: Any, clean: str,
) -> Outcome | None:
    from followsync.leads import LoadedLead, Policy
    from followsync.rules import plan_some, remember, status_day
    from followsync.sync.apply import Scope, reconcile

    today = config.today(now)
    old: dict[str, Entry] = basis["leads"]
    bases: dict[str, Policy] = {}
    loaded: dict[str, LoadedLead] = {}

    def load(lead_id: str) -> LoadedLead | None:
        file, index = where[lead_id]
        if file.name not in bases:
            defaults = _defaults(file.name, file.head_text)
            if defaults is None:
                return None
            bases[file.name] = Policy().apply(defaults)
        piece = file.fresh.get(lead_id)
        entry = lead_of(file.name, lead_id, piece.text if piece else file.text_of(index))
        if entry is None:
            return None
        loaded[lead_id] = LoadedLead(lead_id, entry[0], bases[file.name].apply(entry[0]),
                                     file.name)
        return loaded[lead_id]

    memories = state.memories(changed)
    new = {lead_id: entry for lead_id, entry in old.items() if lead_id in where}
    remembered: list[tuple[str, Memory]] = []
    memory: dict[str, Memory] = {}
    for lead_id in changed:
        item = load(lead_id)
        if item is None:
            return None  # the full sync locates the problem
        before = memories.get(lead_id)
        after = remember(before, item.lead, today)
        memory[lead_id] = after
        if after != before:
            remembered.append((lead_id, after))
        piece = where[lead_id][0].fresh.get(lead_id)
        if piece is None:
            return None
        new[lead_id] = _entry(piece.digest, item.lead.status,
                              status_day(item.lead, after),
                              [name for name, _ in item.policy.on_other_status])
    before_entered = _entered(old_order, old)
    after_entered = _entered(order, new)
    moved = {status for status in set(before_entered) | set(after_entered)
             if before_entered.get(status) != after_entered.get(status)}
    dirty = set(changed) | {lead_id for lead_id in order if moved & set(new[lead_id][3])}
    if len(dirty) > 100 + len(order) // 20:
        return None
    listeners = dirty - set(changed)
    memories.update(state.memories(listeners) if listeners else {})
    for lead_id in listeners:
        if load(lead_id) is None or lead_id not in memories:
            return None
        memory[lead_id] = memories[lead_id]
    entered: dict[str, list[tuple[int, str, date]]] = {}
    place = {lead_id: index for index, lead_id in enumerate(order)}
    for status, entries in after_entered.items():  # sorted by day, as rules wants them
        entered[status] = sorted(((place[i], i, date.fromisoformat(day)) for i, day in entries),
                                 key=lambda entry: entry[2])
    if config.mailboxes:  # the mail touches the state keeps for these leads, as in a full sync
        from followsync.leads import LeadBook
        from followsync.sync.planning import mail_touches, merge_touches

        memory = merge_touches(memory, mail_touches(config, state, LeadBook(leads=loaded)))
    plans = plan_some([(place[i], loaded[i]) for i in order if i in dirty], today, memory,
                      entered)
    scope = dirty | set(removed)
    reports: list[TargetReport] = []
    with _opened(config, state, scope, reports) as sessions:
        if sessions is None:
            return None  # something changed there: the full sync looks at everything
        with state.transaction():
            state.remember(remembered)
        for session, counts in sessions:
            with target_errors(session.report):
                reconcile(config, session, plans, state, now, options, allow_deletes=True,
                          scope=Scope(frozenset(scope), *counts))
            session.report.seconds = time.monotonic() - session.started
    outcome = Outcome(today, plans, reports)
    if all(not (r.error or r.conflicts or r.warnings) for r in reports):
        basis = {"v": BASIS_VERSION, "others": basis["others"], "clean": clean,
                 "order": [f.name for f in files],
                 "files": {f.name: f.layout for f in files}, "leads": new}
        with state.transaction():
            state.set_note(NOTE, json.dumps(basis, separators=(",", ":")))
    else:
        with state.transaction():
            state.set_note(NOTE, None)
    return outcome


@contextmanager
def _opened(
    config: Config, state: State, scope: set[str], reports: list[TargetReport]
) -> Iterator[list[tuple[Session, tuple[int, int]]] | None]:
    """Every target opened with the rows of the leads in scope only, and the counts of the
    others; None when any target says something changed since the last sync (or fails:
    the full sync reports it)."""
    from followsync.backends import open_backend
    from followsync.errors import FollowsyncError
    from followsync.model import standing
    from followsync.sync.session import Session

    sessions: list[tuple[Session, tuple[int, int]]] = []
    try:
        for target in config.targets:
            started = time.monotonic()
            try:
                backend = open_backend(target)
            except FollowsyncError:
                yield None
                return
            report = TargetReport(target.name)
            session = Session(target, backend, True, report, started)
            sessions.append((session, state.counts_besides(target.key, scope)))
            session.rows = state.rows(target.key, scope)
            # compared for the leads in scope only: a listing that needs `known` (a CalDAV
            # one tells our items from others' by it) gets all the state says the target
            # holds; one answering from its cursor (a file) just hands back the scope's
            holds = standing(session.rows) if backend.cursor_only \
                else state.standing(target.key)[0]
            try:
                listing = backend.listing(holds, state.cursor(target.key))
            except FollowsyncError:
                yield None
                return
            if not listing.unchanged or listing.warnings or listing.reset:
                yield None
                return
            session.listing = listing
            reports.append(report)
        yield sessions
    finally:
        for session, _ in sessions:
            session.backend.close()

