"""The scope of a sync: which leads it plans (README, "Large lead files").

After a clean sync the state keeps a *basis*: each lead's slice digest (leadsplit), its
status entry (for other leads' `on_other_status` triggers), the statuses it listens to and
its mail addresses (two leads may not share one: a save that makes them means every lead
is planned, and the whole book's reading reports the file) (kept as a few columns in file
order, `_Leads`: they are read and written on every save), plus a digest of everything else
a plan depends on (followsync's version, the day, the config file, each lead file's head
with `defaults:`). The next sync, when that digest is the same and every target was left
clean, cuts the lead files into slices again and compares digests (`find`): the leads that
changed, appeared or went, plus every lead listening for a status whose entries changed
(`settle`), are the scope; the leads whose items changed in a calendar join it
(`Scoped.widen`, from sync.session). Anything unusual answers None: every lead is planned,
the reference (tests/test_scale.py checks that both write the same calendar).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from followsync.config import Config
from followsync.state import State
from followsync.sync.options import SyncOptions

if TYPE_CHECKING:
    from followsync.leads import LeadBook, LoadedLead, Policy, Settings, Touch
    from followsync.leadsplit import Slice
    from followsync.rules import LeadPlan, Memory
    from followsync.sync.session import Session

NOTE = "delta-basis"
BASIS_VERSION = 6  # bump when the basis changes shape: an older one is then ignored
# (the state keeps each item's slot: a state from before has none, and a full sync lays
# every item once before a delta lays some around the others; 6: a status change an older
# state kept by its day alone is a date, no longer the start of that day)
Entry = tuple[str, "str | None", "str | None", tuple[str, ...], str]
# (slice digest, status or None, status moment (ISO date-time, or a date kept by an older
# followsync) or None, the statuses it listens to, its addresses lower-cased, one a line:
# two leads may not share one)
Entered = dict[str, list[tuple[str, str]]]  # status → (lead, moment) in file order


def _others_digest(config: Config, state: State, today: date, heads: dict[str, str]) -> str:
    """Everything a plan depends on besides the leads' own slices, their memories and the
    calendars: the sync's fingerprint but its lead files (fingerprint.of_sync: followsync,
    the environment, the day, the config file, the zone, the stored mail touches' generation:
    new mail for a lead makes the next sync a full one), and each lead file's head."""
    from followsync.fingerprint import of_sync

    besides = of_sync(config.path, config.lead_paths, config.timezone, today,
                      state.mail_generation()).besides("leads")
    digest = hashlib.sha256(besides.encode())
    for path in config.lead_paths:
        digest.update(b"\0" + str(path).encode() + b"\0" + heads.get(str(path), "-").encode())
    return digest.hexdigest()


def _moment(text: str) -> date:
    """A stored status moment: a date-time, or a date alone (rules.status_day)."""
    return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)


def _entry(digest: str, status: str | None, day: date | None, listens: list[str],
           addresses: tuple[str, ...]) -> Entry:
    return digest, status, day.isoformat() if day else None, tuple(listens), \
        "\n".join(addresses)


@dataclass
class _Leads:
    """Each lead's Entry as columns in file order: JSON of five lists of 50,000 reads and
    writes several times faster than of 50,000 small lists (or a dict of them), and a save
    that changed one lead replaces one value of each."""

    ids: list[str]
    digests: list[str]
    status: list[str | None]
    day: list[str | None]
    listens: list[int]  # an index into `lists`: most leads listen to the same statuses
    lists: list[tuple[str, ...]]
    emails: list[str]  # each lead's addresses, one a line ("" for none)

    @classmethod
    def of(cls, entries: list[tuple[str, Entry]]) -> _Leads:
        found = cls([], [], [], [], [], [], [])
        for lead_id, entry in entries:
            found.append(lead_id, entry)
        return found

    @classmethod
    def read(cls, data: Any, ids: list[str]) -> _Leads | None:
        """The columns stored for these leads, or None if they do not fit."""
        try:
            found = cls(ids, data["digests"], data["status"], data["day"], data["listens"],
                        [tuple(names) for names in data["lists"]], data["emails"])
        except (KeyError, TypeError):
            return None
        if any(len(column) != len(ids) for column in
               (found.digests, found.status, found.day, found.listens, found.emails)):
            return None
        try:  # (min and max: 50,000 checks at C speed; a str among them raises TypeError)
            if found.listens and (min(found.listens) < 0 or
                                  max(found.listens) >= len(found.lists)):
                return None
        except TypeError:
            return None
        return found

    def stored(self) -> dict[str, Any]:
        return {"digests": self.digests, "status": self.status, "day": self.day,
                "listens": self.listens, "lists": self.lists, "emails": self.emails}

    def _list(self, names: tuple[str, ...]) -> int:
        try:
            return self.lists.index(names)
        except ValueError:
            self.lists.append(names)
            return len(self.lists) - 1

    def append(self, lead_id: str, entry: Entry) -> None:
        self.ids.append(lead_id)
        self.digests.append(entry[0])
        self.status.append(entry[1])
        self.day.append(entry[2])
        self.listens.append(self._list(entry[3]))
        self.emails.append(entry[4])

    def shared_address(self) -> bool:
        """Whether two leads share an address (a lead file error: the full sync says where).
        One join and split at C speed: this runs on every save of a file of 50,000 leads."""
        listed = "\n".join(filter(None, self.emails)).split("\n")
        return len(set(listed)) != len(listed) if listed != [""] else False

    def entered(self) -> Entered:
        """status → the (lead, day) entries in file order: what other leads' triggers see."""
        found: Entered = {}
        for lead_id, status, day in zip(self.ids, self.status, self.day, strict=True):
            if status and day:
                found.setdefault(status, []).append((lead_id, day))
        return found

    def listening(self, statuses: set[str]) -> set[str]:
        """The leads listening for any of these statuses."""
        hits = {k for k, names in enumerate(self.lists) if statuses & set(names)}
        return {lead_id for lead_id, k in zip(self.ids, self.listens, strict=True)
                if k in hits} if hits else set()

    def updated(self, order: list[str], place: dict[str, int],
                changed: dict[str, Entry]) -> _Leads:
        """The columns for the leads now in `order` (at `place`), `changed` ones anew."""
        if order == self.ids:  # the usual save: the same leads, some edited
            found = _Leads(list(order), list(self.digests), list(self.status),
                           list(self.day), list(self.listens), list(self.lists),
                           list(self.emails))
            for lead_id, entry in changed.items():
                k = place[lead_id]
                found.digests[k], found.status[k], found.day[k] = entry[:3]
                found.listens[k] = found._list(entry[3])
                found.emails[k] = entry[4]
            return found
        index = {lead_id: k for k, lead_id in enumerate(self.ids)}
        found = _Leads([], [], [], [], [], list(self.lists), [])
        for lead_id in order:
            if lead_id in changed:
                found.append(lead_id, changed[lead_id])
            else:
                k = index[lead_id]
                found.append(lead_id, (self.digests[k], self.status[k], self.day[k],
                                       self.lists[self.listens[k]], self.emails[k]))
        return found


def basis_of(config: Config, state: State, book: LeadBook, today: date, clean: str) -> str | None:
    """After a clean full sync, the basis of the next delta, as text (or None, if a file
    could not be cut into slices). The full sync makes it as soon as the plans are made,
    before it writes the calendars (its peak of memory), and keeps it after."""
    from followsync.rules import status_day

    if any(str(path) not in book.layouts for path in config.lead_paths) or \
            any(lead_id not in book.digests for lead_id in book.leads):
        return None
    names = [str(path) for path in config.lead_paths]
    order = [lead_id for name in names for lead_id in book.layouts[name]["ids"]]
    if len(order) != len(book.leads) or any(lead_id not in book.leads for lead_id in order):
        return None  # (a lead in two files: the full sync says so each time)
    memories = state.memories()
    entries: list[tuple[str, Entry]] = []
    for lead_id in order:
        item = book.leads[lead_id]
        memory = memories.get(lead_id)
        day = status_day(item.lead, memory) if memory is not None else None
        entries.append((lead_id, _entry(book.digests[lead_id], item.lead.status, day,
                                        [name for name, _ in item.policy.on_other_status],
                                        item.lead.addresses())))
    del memories
    heads = {name: book.layouts[name]["head_key"] for name in names}
    return _text({"v": BASIS_VERSION, "others": _others_digest(config, state, today, heads),
                  "clean": clean, "order": names,
                  "files": {name: book.layouts[name] for name in names}}, _Leads.of(entries))


def _text(basis: dict[str, Any], leads: _Leads) -> str:
    return json.dumps({**basis, "leads": leads.stored()}, separators=(",", ":"))


def _after(before: Entered, gone: set[str], changed: dict[str, Entry],
           place: dict[str, int]) -> Entered:
    """The status entries once the `gone` leads' were dropped and the `changed` leads' (now
    at `place` in the files) put in: the same as reading every lead's entry again."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for status, entries in before.items():
        found[status] = [(place[i], i, day) for i, day in entries if i not in gone]
    for lead_id, (_, now_in, day, *_) in changed.items():
        if now_in and day:
            found.setdefault(now_in, []).append((place[lead_id], lead_id, day))
    return {status: [(i, day) for _, i, day in sorted(entries)]
            for status, entries in found.items() if entries}


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


@dataclass
class Found:
    """What the lead files say changed since the basis: the leads that changed (or
    appeared) and went, and the files as cut now."""

    basis: dict[str, Any]
    files: list[_File]
    where: dict[str, tuple[_File, int]]  # lead → its file and place there
    order: list[str]  # every lead, in file order
    old: _Leads  # the basis's columns
    changed: list[str]
    removed: list[str]
    clean: str  # the digest of this sync's inputs (fastpath.inputs_digest)


def find(config: Config, state: State, options: SyncOptions, today: date,
         clean: str) -> Found | None:
    """What changed in the lead files since the last clean sync, or None: plan every lead
    (no basis, another day, config or `defaults:`, a lead moved, many changes, `plan`...)."""
    if options.dry_run or options.only or options.backends:
        return None
    basis = _basis(config, state)
    if basis is None:
        return None
    try:
        old_order = [lead_id for name in basis["order"] for lead_id in basis["files"][name]["ids"]]
    except (KeyError, TypeError):
        return None
    old = _Leads.read(basis["leads"], old_order)
    if old is None:
        return None
    files = _cut_files(config, basis, dict(zip(old.ids, old.digests, strict=True)))
    if files is None:
        return None
    heads = {f.name: f.layout["head_key"] for f in files}
    if _others_digest(config, state, today, heads) != basis["others"]:
        return None
    return _found(basis, files, old, clean)


def _basis(config: Config, state: State) -> dict[str, Any] | None:
    """The basis the last clean sync of every target kept, if it can serve."""
    stored = state.note(NOTE)
    if stored is None:
        return None
    try:
        basis = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(basis, dict) or basis.get("v") != BASIS_VERSION or any(
            state.clean_digest(t.key) != basis.get("clean") for t in config.targets):
        return None
    return basis


def _cut_files(config: Config, basis: dict[str, Any], digests: dict[str, str]
               ) -> list[_File] | None:
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
    return files


def _found(basis: dict[str, Any], files: list[_File], old: _Leads, clean: str) -> Found | None:
    """The leads that changed, appeared and went; None when leads moved (the order of status
    triggers may change), an id repeats, no lead is left, or too many changed."""
    digests = dict(zip(old.ids, old.digests, strict=True))
    order = [lead_id for f in files for lead_id in f.ids]
    where = {lead_id: (f, index) for f in files for index, lead_id in enumerate(f.ids)}
    if len(where) != len(order) or not order:
        return None  # a repeated id, or no lead at all: the full sync says what to do
    changed = [lead_id for f in files for lead_id, piece in f.fresh.items()
               if digests.get(lead_id) != piece.digest]
    changed += [lead_id for lead_id in order if lead_id not in digests and lead_id not in changed]
    removed = [lead_id for lead_id in old.ids if lead_id not in where]
    if len(old.ids) != len(digests) or (order != old.ids and [
            i for i in order if i in digests] != [i for i in old.ids if i in where]):
        return None
    if _left_its_file(basis, where):
        return None
    if too_many(len(changed) + len(removed), len(order)):
        return None
    return Found(basis, files, where, order, old, changed, removed, clean)


def _left_its_file(basis: dict[str, Any], where: dict[str, tuple[_File, int]]) -> bool:
    """Whether a lead now stands in another file than at the basis (moved from the end of
    one file to the top of the next, its text and the order of all leads the same): it
    takes that file's `defaults:`, so it is planned again — by the full sync."""
    if len(basis["order"]) < 2:
        return False
    before = {lead_id: name for name in basis["order"] for lead_id in basis["files"][name]["ids"]}
    return any(before.get(lead_id, file.name) != file.name
               for lead_id, (file, _) in where.items())


def too_many(scope: int, leads: int) -> bool:
    """Whether a scope is so large that planning every lead costs about the same."""
    return scope > 100 + leads // 20


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


@dataclass
class Scoped:
    """The leads a sync plans (those that changed, and those listening for a status whose
    entries changed, and those whose items changed in a calendar), loaded, with their
    memories and the status entries every lead's triggers see."""

    found: Found
    today: date
    place: dict[str, int]
    memory: dict[str, Memory]
    remembered: list[tuple[str, Memory]]  # the memories this sync changed
    leads_after: _Leads
    entered: dict[str, list[tuple[int, str, date]]]
    planned: set[str]
    loaded: dict[str, LoadedLead] = field(default_factory=dict)
    bases: dict[str, Policy] = field(default_factory=dict)

    @property
    def leads(self) -> frozenset[str]:
        """Whose items this sync compares: the planned leads and the ones that went."""
        return frozenset(self.planned | set(self.found.removed))

    def load(self, lead_id: str) -> LoadedLead | None:
        """A lead read from its slice alone (None on any doubt: the full sync locates it)."""
        from followsync.leads import LoadedLead, Policy, _lead_of_slice

        file, index = self.found.where[lead_id]
        if file.name not in self.bases:
            defaults = _defaults(file.name, file.head_text)
            if defaults is None:
                return None
            self.bases[file.name] = Policy().apply(defaults)
        piece = file.fresh.get(lead_id)
        entry = _lead_of_slice(file.name, lead_id, piece.text if piece else file.text_of(index))
        if entry is None:
            return None
        self.loaded[lead_id] = LoadedLead(lead_id, entry[0],
                                          self.bases[file.name].apply(entry[0]), file.name)
        return self.loaded[lead_id]

    def widen(self, state: State, leads: Collection[str]) -> bool:
        """Plan these leads too, as they are remembered (their entries stay: touches do not
        move a status); False when one cannot be (then every lead is planned)."""
        more = {lead_id for lead_id in leads if lead_id not in self.planned}
        if not more:
            return True
        if any(lead_id not in self.found.where for lead_id in more) or \
                too_many(len(self.planned | more), len(self.found.order)):
            return False
        memories = state.memories(more)
        for lead_id in more:
            if self.load(lead_id) is None or lead_id not in memories:
                return False
            self.memory[lead_id] = memories[lead_id]
        self.planned |= more
        return True

    def plan(self, config: Config, state: State, touches: list[tuple[str, Touch]]
             ) -> list[LeadPlan]:
        """The planned leads' plans, with the touches found in the calendars and the mail
        touches the state keeps for them, as in a full sync."""
        from followsync.rules import plan_some
        from followsync.sync.planning import merge_touches

        memory = merge_touches(self.memory, touches)
        if config.mailboxes:
            from followsync.leads import LeadBook
            from followsync.sync.planning import mail_touches

            memory = merge_touches(memory, mail_touches(
                config, state, LeadBook(leads={i: self.loaded[i] for i in self.planned})))
        return plan_some([(self.place[i], self.loaded[i]) for i in self.found.order
                          if i in self.planned], self.today, memory, self.entered)

    def basis(self) -> str:
        """The basis of the next sync, once this one is clean."""
        found = self.found
        basis = {"v": BASIS_VERSION, "others": found.basis["others"], "clean": found.clean,
                 "order": [f.name for f in found.files],
                 "files": {f.name: f.layout for f in found.files}}
        return _text(basis, self.leads_after)


def settle(config: Config, state: State, found: Found, now: datetime) -> Scoped | None:
    """Load the leads that changed, and every lead listening for a status whose entries
    they changed; None when one cannot be read alone or they are too many."""
    from followsync.rules import status_key
    from followsync.sync.planning import local_now

    today = config.today(now)
    place = {lead_id: index for index, lead_id in enumerate(found.order)}
    scoped = Scoped(found, today, place, {}, [], found.old, {}, set(found.changed))
    new = _changed_entries(scoped, state, today, local_now(config, now))
    if new is None:
        return None
    scoped.leads_after = found.old.updated(found.order, place, new)
    if scoped.leads_after.shared_address():
        return None  # two leads share an address: the full sync refuses the file, located
    before = found.old.entered()
    after = _after(before, set(found.changed) | set(found.removed), new, place)
    moved = {status for status in set(before) | set(after) if before.get(status) != after.get(status)}
    listeners = {lead_id for lead_id in found.old.listening(moved) if lead_id in found.where}
    listeners |= {lead_id for lead_id, entry in new.items() if moved & set(entry[3])}
    for status, entries in after.items():  # sorted by moment, as rules wants them
        scoped.entered[status] = sorted(((place[i], i, _moment(day)) for i, day in entries),
                                        key=lambda entry: status_key(entry[2]))
    return scoped if scoped.widen(state, listeners) else None


def _changed_entries(scoped: Scoped, state: State, today: date, seen: datetime
                     ) -> dict[str, Entry] | None:
    """The changed leads loaded and remembered (a status change dated now); their entries."""
    from followsync.rules import remember, status_day

    memories = state.memories(scoped.found.changed)
    new: dict[str, Entry] = {}
    for lead_id in scoped.found.changed:
        item = scoped.load(lead_id)
        piece = scoped.found.where[lead_id][0].fresh.get(lead_id)
        if item is None or piece is None:
            return None  # the full sync locates the problem
        before = memories.get(lead_id)
        after = remember(before, item.lead, today, seen)
        scoped.memory[lead_id] = after
        if after != before:
            scoped.remembered.append((lead_id, after))
        new[lead_id] = _entry(piece.digest, item.lead.status, status_day(item.lead, after),
                              [name for name, _ in item.policy.on_other_status],
                              item.lead.addresses())
    return new


def clash(config: Config, state: State, sessions: list[Session], plans: list[LeadPlan],
          scope: Collection[str]) -> bool:
    """Whether, in some target, an item of these leads can no longer keep its slot because
    another lead's item holds it: the full sync gives it to the first in the lead files,
    which may be the other (that this sync does not plan)."""
    from followsync.sync.planning import laid_wants, taken_besides

    for session in sessions:
        target = session.target
        taken = taken_besides(state, target.key, scope, plans)
        if taken and laid_wants(plans, target, config.timezone.key,
                                session.backend.supports("VTODO"), session.rows, taken).clash:
            return True
    return False
