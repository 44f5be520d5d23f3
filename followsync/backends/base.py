"""The protocol every target kind implements, and what a listing of a target says.

A backend only moves items; every decision is made before, in `diff`. Writes are conditional:
`create` fails with Conflict if the UID exists, `update` and `delete` if the ETag moved on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from followsync.model import Remote


@dataclass(frozen=True)
class Listing:
    """The items with followsync's marks a target holds, by UID.

    `cursor` lets the next listing ask only for what changed (a sync-token, a ctag, a file
    digest); `unchanged` is true when the target says nothing changed since `known` was taken.
    """

    items: dict[str, Remote]
    cursor: str | None = None
    unchanged: bool = False
    fresh: bool = False  # the target is new or was emptied as a whole (an .ics file deleted)
    foreign: int = 0  # others' items seen while listing (the contract tests count them)
    warnings: list[str] = field(default_factory=list)
    # The calendar the state describes is gone (deleted on the server): the state's rows no
    # longer apply, every item is written anew. `note` says so for `plan` and the log.
    reset: bool = False
    note: str = ""


class Backend(Protocol):
    """One calendar. Methods raise TargetError for failures and Conflict for lost races.

    The re-read contract: a write that fails with Conflict may have landed all the same (an
    HTTP backend retries a PUT or DELETE whose answer was lost, and the retry then meets its
    own first attempt: 412). So a backend may retry writes only because the sync, after every
    Conflict, re-reads the item (`find`, `get`) and counts it as written when it says what
    was sent (see sync.apply.Apply.recover; tests/test_caldav_sync.py checks it through a
    proxy that drops the answer to a PUT).
    """

    label: str
    # True when every write reaches the target at once (a server): the sync then commits the
    # state every few writes and keeps what was written when it stops half-way. False when
    # nothing is written before `commit` (a file): a failed sync leaves state and file as
    # they were.
    immediate: bool
    # True when a listing whose cursor still matches answers "unchanged" from the cursor
    # alone and only hands `known` back (a file's digest): a sync that needs no items then
    # passes the few rows it compares, not the 60,000 the state holds (sync.fastpath, delta).
    cursor_only: bool

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        """Owned items by UID; `known` (from the state) and `cursor` make it cheap."""
        ...

    def supports(self, component: str) -> bool:
        """Whether the calendar takes VEVENT or VTODO items (known after `listing`)."""
        ...

    def get(self, remote: Remote) -> str:
        """The item's iCalendar text; Conflict if it is no longer there."""
        ...

    def find(self, uid: str) -> Remote | None:
        """Where an item with this UID is, if anywhere (after a Conflict)."""
        ...

    def create(self, uid: str, text: str) -> Remote:
        """Add a new item; Conflict if one with this UID exists. ComponentRefused if the
        calendar does not take the item's component (a VTODO): `supports` then says so."""
        ...

    def update(self, remote: Remote, text: str) -> Remote:
        """Replace an item if it is still at `remote.etag`; else Conflict."""
        ...

    def delete(self, remote: Remote) -> None:
        """Remove an item if it is still at `remote.etag`; else Conflict."""
        ...

    def commit(self) -> str | None:
        """Make the writes durable (the .ics file is written here); returns the new cursor."""
        ...

    def close(self) -> None:
        ...


def relocated(what: str, where: str, found: str | None, readonly: bool,
              make: Callable[[], str], full: Callable[[str], Listing]) -> Listing:
    """The calendar synced last time was deleted (in Google, in Outlook): `found` again by
    name, else made again (never when `readonly`: `plan` says so); every item is then written
    anew (`reset`: the state's rows no longer apply)."""
    if found is None and readonly:
        return Listing({}, fresh=True, reset=True,
                       note=f"{what} was deleted in {where}; a sync creates it again")
    note = f"{what} was deleted in {where}; " + ("found it again" if found else
                                                 "created it again")
    listing = full(found or make())
    return Listing(listing.items, cursor=listing.cursor, fresh=True, foreign=listing.foreign,
                   reset=True, note=note)
