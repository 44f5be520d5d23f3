"""Touch sources: places other than the lead file where followsync learns that the user and a
lead were in touch (README "Mail"). Each source is scanned incrementally from bookmarks the
caller keeps in the state, and reports touches keyed so a rescan never duplicates one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal, Protocol

Direction = Literal["me", "them"]


@dataclass(frozen=True, order=True)
class Bookmark:
    """How far a folder was read: every message with a UID up to `last_uid` was seen, as long
    as the folder's UIDVALIDITY is still `uidvalidity` (else every UID is void)."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, order=True)
class FoundTouch:
    """A message between the user and a lead. `key` identifies the message across folders and
    scans (its Message-ID, or a stand-in when it has none)."""

    when: datetime
    lead: str
    by: Direction
    key: str
    subject: str
    folder: str


@dataclass(frozen=True)
class Skipped:
    """A message between the user and a lead that is not a touch, or not all of one: a list or
    a robot, one that cannot be read, or one with an address left out (`why` says which).
    `sender` and `subject` are as the message gave them (hostile: shown escaped). `counted`:
    the message is still a touch, only an address in it was left out."""

    folder: str
    uid: int
    when: datetime | None
    sender: str
    subject: str
    why: str
    counted: bool = False


@dataclass(frozen=True)
class ScanResult:
    """What one scan found: new touches (never one whose key was already known), the
    bookmarks to keep for the next scan (one per folder scanned), and what was skipped."""

    touches: tuple[FoundTouch, ...]
    bookmarks: Mapping[str, Bookmark]
    folders: tuple[str, ...] = ()
    fetched: int = field(default=0, compare=False)
    skipped: tuple[Skipped, ...] = field(default=(), compare=False)


class TouchSource(Protocol):
    """Anything followsync can scan for touches."""

    @property
    def name(self) -> str: ...

    def scan(self, leads: Mapping[str, str], bookmarks: Mapping[str, Bookmark],
             known: Collection[str], tz: tzinfo) -> ScanResult:
        """`leads` maps each lower-cased address to its lead id; `known` holds the keys of
        touches already stored."""
        ...
