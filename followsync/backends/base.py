"""The protocol every target kind implements, and helpers to read followsync's marks.

A backend only moves items; every decision is made before, in `diff`. Writes are conditional:
`create` fails with Conflict if the UID exists, `update` and `delete` if the ETag moved on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

_UNFOLD = re.compile(r"\r?\n[ \t]")
_MARK = re.compile(r"^X-FOLLOWSYNC-LEAD[;:]", re.MULTILINE)
_UID = re.compile(r"^UID(?:;[^:\r\n]*)?:(.*?)\r?$", re.MULTILINE)


@dataclass(frozen=True)
class Remote:
    """Where an item lives in a target and the version we last saw of it."""

    href: str
    etag: str


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
    foreign: int = 0
    warnings: list[str] = field(default_factory=list)
    # The calendar the state describes is gone (deleted on the server): the state's rows no
    # longer apply, every item is written anew. `note` says so for `plan` and the log.
    reset: bool = False
    note: str = ""


class Backend(Protocol):
    """One calendar. Methods raise TargetError for failures and Conflict for lost races."""

    label: str

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        """Owned items by UID; `known` (from the state) and `cursor` make it cheap."""
        ...

    def supports(self, component: str) -> bool:
        """Whether the calendar takes VEVENT or VTODO items."""
        ...

    def get(self, remote: Remote) -> str:
        """The item's iCalendar text."""
        ...

    def find(self, uid: str) -> Remote | None:
        """Where an item with this UID is, if anywhere (after a Conflict)."""
        ...

    def create(self, uid: str, text: str) -> Remote:
        """Add a new item; Conflict if one with this UID exists."""
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


def unfold(text: str) -> str:
    return _UNFOLD.sub("", text)


def is_owned(text: str) -> bool:
    """Whether an item carries followsync's mark (only those are ever changed or deleted)."""
    return bool(_MARK.search(unfold(text)))


def uid_of(text: str) -> str | None:
    match = _UID.search(unfold(text))
    return match.group(1).strip() if match else None
