"""What a sync (or `plan`) did, per target, and the one way it is written out.

The CLI (`commands/show.py`) and the daemon's log and status line both print a target with
`TargetReport.summary`; `plan` and `sync` count with the one `diff.tally`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, time
from typing import TYPE_CHECKING

from followsync.errors import EXIT_OK, EXIT_SAFETY, EXIT_TARGET, FollowsyncError, SafetyStop

if TYPE_CHECKING:  # a no-op sync's report needs neither the diff nor the rules
    from followsync import diff as d
    from followsync.leads import Touch
    from followsync.rules import LeadPlan
    from followsync.sources.scan import MailReport


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
    exit_code: int = EXIT_OK  # what the CLI exits with for this target
    retryable: bool = False  # failed, and worth trying again soon (the daemon retries it)
    actions: tuple[d.Action, ...] = ()
    warnings: list[str] = field(default_factory=list)

    checked: int = 0  # `plan` only: items found without a state row, compared by the sync
    notes: list[str] = field(default_factory=list)  # `plan` only: what a sync would do first
    # `plan` only: (lead, rule) → the start of each item laid after others of its time (spread)
    laid: dict[tuple[str, str], time] = field(default_factory=dict)

    def count(self, tally: d.Tally) -> None:
        """Take the counts of `diff.tally`: `plan` and `sync` count with that one function."""
        self.created, self.updated, self.deleted = tally.created, tally.updated, tally.deleted
        self.unchanged, self.kept, self.checked = tally.unchanged, tally.kept, tally.checked
        self.conflicts = tally.conflicts

    def counts(self, planned: bool = False) -> str:
        """The counts in words, for a sync's summary or (planned) for `plan`'s header."""
        verbs = ("to create", "to update", "to delete") if planned else \
            ("created", "updated", "deleted")
        text = ", ".join(f"{n} {verb}" for n, verb in
                         zip((self.created, self.updated, self.deleted), verbs, strict=True))
        text += f", {self.unchanged} unchanged"
        if self.checked:
            text += f", {self.checked} to check"
        if self.kept:
            text += f", {self.kept} calendar {'edit' if self.kept == 1 else 'edits'} kept"
        if self.conflicts:
            text += f", {self.conflicts} changed meanwhile (left for the next sync)"
        return text

    def summary(self, planned: bool = False) -> str:
        """The target's one line: for the CLI, the daemon's log and its status; planned,
        `plan`'s header (what the sync would do, also when a safety limit stops it)."""
        if planned:
            return f"{self.name}: {self.counts(planned=True)}"
        if self.error:
            return f"{self.name}: FAILED: {self.error}"
        return f"{self.name}: {self.counts()} ({self.seconds:.2f} s)"

    def problem(self) -> str:
        """The failure as the user reads it: the message, then the hint."""
        text = named_once(self.name, self.error or "")
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def fail(self, exc: FollowsyncError) -> None:
        """Record a failure: a safety stop needs the user; anything else (a server down, a
        file not writable) may pass by itself, so it is worth retrying."""
        safety = isinstance(exc, SafetyStop)
        self.error, self.hint = exc.message, exc.hint
        self.exit_code = EXIT_SAFETY if safety else EXIT_TARGET
        self.retryable = not safety


@contextlib.contextmanager
def target_errors(report: TargetReport) -> Iterator[None]:
    """A target's failure is its own: reported, and the other targets go on."""
    try:
        yield
    except FollowsyncError as exc:
        report.fail(exc)


@dataclass
class Outcome:
    """A whole sync or plan: the plans the rules made and a report per target."""

    today: date
    plans: list[LeadPlan]
    targets: list[TargetReport]
    touches: list[Touch] = field(default_factory=list)  # to-dos completed in a calendar
    mailboxes: list[MailReport] = field(default_factory=list)  # scanned before the sync

    @property
    def exit_code(self) -> int:
        return max([EXIT_OK, *(t.exit_code for t in self.targets),
                    *(m.exit_code for m in self.mailboxes)])


def named_once(name: str, message: str) -> str:
    """An error about target `name` as one line naming it once: "target work: ..." stays,
    anything else gets "work: " before it (`sync`, `plan` and `calendars` alike)."""
    named = message.startswith((f"target {name}:", f"target {name} "))
    return message if named else f"{name}: {message}"
