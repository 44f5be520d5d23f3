"""The errors meant for users: each carries its exit code (README, "Commands":
exit codes).

Anything that is not one of these is a bug and is reported as one by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_SAFETY = 4


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a user's file, located as FILE:LINE:COL (1-based)."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class FollowsyncError(Exception):
    """Base of every error shown to users without a traceback."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(FollowsyncError):
    """The config or a lead file is invalid; nothing was written. Holds every problem found."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return self.message


class UsageError(FollowsyncError):
    """The command line itself is wrong (unknown lead id, bad --now, ...)."""

    exit_code = EXIT_USAGE


class TargetError(FollowsyncError):
    """A target could not be synced; the other targets still are."""

    exit_code = EXIT_TARGET


class SignInRefused(TargetError):
    """The sign-in service refused a token request for what it is (a policy, the app
    registration, the grant): asking again will not change it, so an OAuth mailbox is not
    tried again until the sign-in or the config changes (as for a refused password)."""


class ComponentRefused(TargetError):
    """The calendar refused an item's component type (a VTODO); events will be written instead."""


class SafetyStop(FollowsyncError):
    """A sync would delete more than `safety.max_deletes`; nothing was written to that target."""

    exit_code = EXIT_SAFETY


class Conflict(Exception):
    """A conditional write failed: the item changed (or appeared) since it was read."""


class LockBusy(FollowsyncError):
    """Another followsync process holds the state lock."""

    exit_code = EXIT_TARGET
