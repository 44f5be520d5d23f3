"""How a sync is asked for: one frozen value instead of flags threaded through every step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from followsync.backends.base import Backend

Progress = Callable[[str, int, int], None]  # target name, writes done, writes planned


@dataclass(frozen=True)
class SyncOptions:
    """What `plan`, `sync` and the daemon ask of a sync."""

    dry_run: bool = False  # `plan`: decide, write nothing, take no lock
    force: bool = False  # go past safety.max_deletes
    only: str | None = None  # sync this target alone
    progress: Progress | None = None
    # Backends by target name, used instead of opening the configured ones (tests inject
    # in-RAM calendars); the sync does not close them.
    backends: Mapping[str, Backend] = field(default_factory=dict)
    # The mailboxes to scan before syncing (README "Mail"): None every one, () none (the
    # daemon leaves out those waiting for a retry). `plan` never scans.
    scan: frozenset[str] | None = None
    # Mailbox name → the credentials digest its server refused (the daemon's, README "Mail"):
    # not logged in to again while its password and config entry are the same.
    held: Mapping[str, str] = field(default_factory=dict)

    def scans(self, name: str) -> bool:
        """Whether this sync scans the mailbox called `name` first."""
        return not self.dry_run and (self.scan is None or name in self.scan)

    def wants(self, name: str) -> bool:
        """Whether this sync concerns the target called `name`."""
        return not self.only or name == self.only

    @property
    def may_skip(self) -> bool:
        """Whether the fast path may answer: a real sync of the configured targets."""
        return not self.dry_run and not self.backends
