"""PURE: desired items + what the target holds + the state → actions (plain data).

Decisions are made here, before anything is written; the sync only carries them out.
The rules (README, "What appears in the calendar" and "Safety"): only items with
followsync's marks are listed, so only those can be changed; an item edited in the calendar
app is kept until the lead file changes that follow-up; one deleted by hand is not recreated
until then; nothing unchanged is rewritten.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import assert_never

from followsync.model import Kind, Remote, Row
from followsync.rules import FollowUp


@dataclass(frozen=True)
class Want:
    """One item the target should hold."""

    uid: str
    item: FollowUp
    kind: Kind
    hash: str  # everything that shapes the item today (render.input_hash)
    source: str = ""  # the follow-up as the lead file defines it (render.source_hash)
    slot: str = ""  # where it is laid among the calendar's items (slots.Slot.text), if spread


@dataclass(frozen=True)
class Create:
    want: Want


@dataclass(frozen=True)
class Update:
    want: Want
    remote: Remote
    row: Row | None


@dataclass(frozen=True)
class Adopt:
    """The target holds an item of ours that the state does not know: compare, then decide."""

    want: Want
    remote: Remote


@dataclass(frozen=True)
class Delete:
    uid: str
    remote: Remote
    row: Row | None


@dataclass(frozen=True)
class Accept:
    """Edited in the calendar while the lead file did not change it: keep the user's version."""

    want: Want
    remote: Remote
    row: Row


@dataclass(frozen=True)
class Restamp:
    """Changed in the calendar only in an app's bookkeeping (a reminder dismissed, a new
    DTSTAMP: readback.edited says no) and otherwise as planned: nothing to write; the state
    takes the item's new ETag and the bookkeeping to carry over (`row`, as read again)."""

    want: Want
    remote: Remote
    row: Row


@dataclass(frozen=True)
class Gone:
    """Deleted in the calendar while the lead file did not change it: do not recreate."""

    want: Want
    row: Row


@dataclass(frozen=True)
class Forget:
    uid: str


@dataclass(frozen=True)
class Same:
    """What a sync made of an Adopt (or of a write of ours that had landed): the item there
    is already as planned. Only the sync (sync.apply) makes these, never `diff`."""

    uid: str


@dataclass(frozen=True)
class Missed:
    """What a sync made of a write that met a newer version (412): left for the next sync.
    Only the sync (sync.apply) makes these, never `diff`."""

    uid: str


Action = Create | Update | Adopt | Delete | Accept | Gone | Forget | Same | Missed | Restamp


@dataclass(frozen=True)
class Tally:
    """How many follow-ups each kind of action concerns; `plan` and `sync` count with the
    same function (`tally`), so their lines agree."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    kept: int = 0  # calendar edits and deletions respected
    checked: int = 0  # found without a state row: compared by the sync (plan only)
    conflicts: int = 0


def tally(actions: Iterable[Action], unchanged: int) -> Tally:
    """Count planned (or, for a sync, carried out) actions, plus the items needing none."""
    counts = dict.fromkeys(("created", "updated", "deleted", "kept", "checked", "conflicts"), 0)
    counts["unchanged"] = unchanged
    for action in actions:
        kind = counted_as(action)
        if kind is not None:
            counts[kind] += 1
    return Tally(**counts)


def counted_as(action: Action) -> str | None:
    """The Tally field an action counts in (None: bookkeeping). Every action type is named
    here: a new one fails mypy (assert_never) until it is given its place."""
    match action:
        case Create():
            return "created"
        case Update():
            return "updated"
        case Delete():
            return "deleted"
        case Adopt():
            return "checked"
        case Accept() | Gone():
            return "kept"
        case Same() | Restamp():
            return "unchanged"
        case Missed():
            return "conflicts"
        case Forget():
            return None
        case _:
            assert_never(action)


def is_write(action: Action) -> bool:
    """Whether carrying out the action writes to the target (what progress counts)."""
    match action:
        case Create() | Update() | Adopt() | Delete():
            return True
        case Accept() | Gone() | Forget() | Same() | Missed() | Restamp():
            return False
        case _:
            assert_never(action)


@dataclass(frozen=True)
class Diff:
    actions: tuple[Action, ...]
    unchanged: int

    def count(self, kind: type) -> int:
        return sum(1 for a in self.actions if isinstance(a, kind))

    @property
    def deletes(self) -> int:
        return self.count(Delete)


def diff(
    wants: Mapping[str, Want], remote: Mapping[str, Remote], rows: Mapping[str, Row],
    allow_deletes: bool = True, bookkept: Collection[str] = frozenset(),
) -> Diff:
    """The actions that make the target hold `wants`, touching nothing else.

    `row.source == want.source` means the lead file has not changed that follow-up since we
    last wrote it: then a calendar edit or deletion stands, and the daily overdue roll does
    not override it. `bookkept`: the items that changed in the calendar (their ETag moved)
    in an app's bookkeeping only (readback.edited): no edit, they are treated as ours.
    """
    actions: list[Action] = []
    unchanged = 0
    for uid, want in wants.items():
        row, have = rows.get(uid), remote.get(uid)
        same_source = row is not None and row.source == want.source
        if have is None:
            if row is not None and same_source:
                actions.append(Gone(want, row))  # newly seen, or remembered: `plan` shows it
            else:  # new, or the lead file changed it: it comes (back)
                actions.append(Create(want))
        elif row is None or row.gone:
            actions.append(Adopt(want, have))
        elif row.etag != have.etag and uid not in bookkept:  # edited in the calendar
            actions.append(Accept(want, have, row) if same_source else Update(want, have, row))
        elif row.hash == want.hash or (row.edited and same_source):
            if row.etag != have.etag:
                actions.append(Restamp(want, have, row))
            else:
                unchanged += 1
        else:
            actions.append(Update(want, have, row))
    for uid, have in remote.items():
        if uid not in wants and allow_deletes:
            actions.append(Delete(uid, have, rows.get(uid)))
    for uid in rows:
        if uid not in wants and uid not in remote:
            actions.append(Forget(uid))
    return Diff(tuple(actions), unchanged)
