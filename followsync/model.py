"""Plain value types shared by the pure core, the state and the backends.

They live here, below everything, so `diff` (pure) needs neither the state nor a backend,
and each Literal is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["event", "todo"]  # what a follow-up becomes: a VEVENT or a VTODO
TargetType = Literal["caldav", "ics", "google", "microsoft"]  # the target kinds the config accepts
Tls = Literal["implicit", "starttls", "none"]  # how a mailbox is reached (README "Mail")
MailAuth = Literal["password", "microsoft", "google"]  # how a mailbox logs in (README "Mail")


@dataclass(frozen=True)
class Remote:
    """Where an item lives in a target and the version we last saw of it."""

    href: str
    etag: str


@dataclass(frozen=True)
class Row:
    """The state of one item we wrote: `gone` means the user deleted it in the calendar."""

    uid: str
    href: str
    etag: str
    hash: str
    sequence: int
    lead: str
    rule: str
    gone: bool = False
    source: str = ""  # the follow-up as the lead file defines it (see render.source_hash)
    edited: bool = False  # changed in the calendar app; kept until the lead file changes it
    moved: str = ""  # where an edited item stands in the calendar (readback.placed_at)
    slot: str = ""  # where a spread item was laid (slots.Slot.text); "" for none
    # What the user may change of the item as followsync last wrote or accepted it
    # (readback.shape): a change of anything else is a calendar app's bookkeeping, no edit.
    shape: str = ""
    kept: str = ""  # the app's bookkeeping in the item, carried over when it is rewritten


def standing(rows: Mapping[str, Row]) -> dict[str, Remote]:
    """What the state says a target holds: its rows less the items deleted by hand."""
    return {uid: Remote(r.href, r.etag) for uid, r in rows.items() if not r.gone}
