"""PURE: the daemon's decisions — when to sync, what a file event means, when to retry.

No clock and no threads here: every function takes the time it needs, so the tests can ask
"what happens at 23:59:59 on the night the clocks change" without waiting for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

FIRST_RETRY = timedelta(seconds=30)
AFTER_MIDNIGHT = timedelta(seconds=5)
# A mailbox that refused the login is not tried again with the same credentials for this long
# (README "Mail"): repeated failed logins lock real accounts, and a provider's lock is
# usually lifted within hours.
LOGIN_PAUSE = timedelta(hours=6)

Change = Literal["config", "leads"]
# What a save looks like to inotify, by editor: in place (modified, closed), by rename
# (moved to the name: atomic writers; moved away then created: vim's backup-and-write), or
# deleted. "opened"/"closed_no_write" are reads — our own sync reads the lead file.
COUNTED_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


def backoff_delay(failures: int, interval: timedelta) -> timedelta:
    """Wait before retrying a target that failed `failures` times in a row: 30 s, 1 min,
    2 min, ... never longer than the full-reconcile interval (which retries it anyway)."""
    delay = FIRST_RETRY * (1 << min(max(failures, 1) - 1, 30))
    return min(delay, interval)


def next_retries(
    failures: Mapping[str, int], retryable: Mapping[str, bool], interval: timedelta
) -> tuple[dict[str, int], dict[str, timedelta]]:
    """After a sync: the new failure counts and, for each target that just failed in a way
    worth retrying (TargetReport.retryable), when to retry it. A target that synced (or
    stopped on a safety limit, which needs the user) is no longer counted."""
    counts = {name: n for name, n in failures.items() if name not in retryable}
    retries = {}
    for name, again in retryable.items():
        if again:
            counts[name] = failures.get(name, 0) + 1
            retries[name] = backoff_delay(counts[name], interval)
    return counts, retries


def login_held(refused_at: datetime, now: datetime, pause: timedelta = LOGIN_PAUSE) -> bool:
    """Whether a mailbox whose login was refused at `refused_at` still waits at `now` (the
    daemon then does not log in again with the credentials that were refused). A clock set
    back before the refusal ends the wait: one more try is cheaper than a wait of unknown
    length."""
    return refused_at <= now < refused_at + pause


def next_midnight(now: datetime, zone: ZoneInfo, after: timedelta = AFTER_MIDNIGHT) -> datetime:
    """The first moment of the next local day (plus `after`), as an aware datetime.

    Where a DST change skips midnight (Santiago, Havana, Beirut) the day starts at 01:00;
    `after` is real elapsed time, so it is never folded into an hour that repeats.
    """
    day: date = now.astimezone(zone).date()
    while True:
        # fold=0 on a skipped wall time lands just after the gap: the day's first instant
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        fire = (start + after).astimezone(zone)
        if fire > now:
            return fire
        day += timedelta(days=1)


class MidnightTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """Fires just after each local midnight. APScheduler 3's CronTrigger(hour=0) skips the
    day after a spring-forward night (2027-03-28 Europe/Berlin: next fire 03-30), so the
    date arithmetic is done here, in `next_midnight`."""

    __slots__ = ("after", "zone")

    def __init__(self, zone: ZoneInfo, after: timedelta = AFTER_MIDNIGHT) -> None:
        self.zone = zone
        self.after = after

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime:
        return next_midnight(now, self.zone, self.after)

    def __str__(self) -> str:
        return f"midnight[{self.zone.key}]"


def watched_files(config_path: Path, lead_paths: Iterable[Path]) -> dict[Path, Change]:
    """The files whose saves count, by absolute path (the config last: a lead file that is
    also the config is a config change, which reloads and then syncs)."""
    watched: dict[Path, Change] = {Path(p).resolve(): "leads" for p in lead_paths}
    watched[config_path.resolve()] = "config"
    return watched


def classify(event_type: str, paths: Iterable[str | bytes | None],
             watched: Mapping[Path, Change]) -> Change | None:
    """What a file-system event in a watched folder means: a change of the config, of a
    lead file, or nothing (another file, a directory, or a mere read)."""
    if event_type not in COUNTED_EVENTS:
        return None
    found: Change | None = None
    for raw in paths:
        if not raw:
            continue
        kind = watched.get(Path(raw.decode() if isinstance(raw, bytes) else raw))
        if kind == "config":
            return kind
        found = found or kind
    return found


@dataclass
class Debounce:
    """Turns a burst of file events into one action: due once no event came for `quiet`
    seconds, or `longest` seconds after the burst's first event (a file rewritten every
    100 ms still syncs). Times are monotonic seconds, given by the caller."""

    # An editor's save is one burst of events within a few ms; the quiet time is the floor of
    # every save-to-calendar latency (bench/daemon.py: under 0.3 s with 1,000 leads).
    quiet: float = 0.15
    longest: float = 1.0
    first: float | None = None
    last: float = 0.0
    kinds: set[Change] = field(default_factory=set)

    def note(self, kind: Change, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now
        self.kinds.add(kind)

    def wait(self, now: float) -> float | None:
        """Seconds until due (0 when due now), or None when nothing is pending."""
        if self.first is None:
            return None
        return max(0.0, min(self.last + self.quiet, self.first + self.longest) - now)

    def take(self, now: float) -> frozenset[Change]:
        """The kinds of change that are due now (and forget them), else an empty set."""
        left = self.wait(now)
        if left is None or left > 0:
            return frozenset()
        kinds = frozenset(self.kinds)
        self.first, self.kinds = None, set()
        return kinds


@dataclass(frozen=True)
class Pending:
    """Syncs asked for and not yet started: every target, or some; `saved` when a save of
    a watched file asked (a lead file's errors are then reported even if unchanged)."""

    everything: bool = False
    targets: frozenset[str] = frozenset()
    saved: bool = False

    def add(self, only: str | None, saved: bool = False) -> Pending:
        if only is None or self.everything:
            return Pending(True, frozenset(), self.saved or saved)
        return Pending(False, self.targets | {only}, self.saved or saved)

    def runs(self) -> list[str | None]:
        """The engine runs that fulfil it: one of everything, or one per target."""
        if self.everything:
            return [None]
        return [*sorted(self.targets)]


def should_report(problem: str, last_reported: str | None, saved: bool) -> bool:
    """A lead file that does not load is reported once per change: on a save, or when the
    problem differs; not again at every interval while it stays broken."""
    return saved or problem != last_reported
