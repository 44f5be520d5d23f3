"""`followsync run`: sync at start, on every save, every `daemon.interval`, after each local
midnight, and sooner after a target failed; reload on SIGHUP, stop on SIGTERM/SIGINT.

Threads, and who does what:
  main      waits for signals and file events (one queue), debounces saves, reloads the
            config, pings systemd's watchdog; it never syncs, so it always answers quickly
  sync      the one worker that runs sync.run: syncs never overlap, and requests that
            arrive meanwhile are merged into one more run
  scheduler APScheduler's timers (interval, midnight, retries); its jobs only ask for syncs
  watchdog  the inotify observer; its handler only puts events on the main queue
  idle      one per mailbox whose server offers IDLE, started after a scan of it worked:
            watches INBOX (sources/idle.py) and only asks for syncs
A mailbox whose login was refused is not logged in to again (not even by its IDLE watcher)
while its credentials are those refused, until SIGHUP or LOGIN_PAUSE (schedule.login_held):
repeated failed logins lock real accounts.
The daemon holds the state dir's daemon lock for its whole life, so a second one refuses to
start; each sync takes the sync lock like `followsync sync` does, so the two take turns.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from followsync import configcache, logs, sync
from followsync.config import Config, MailConfig
from followsync.errors import EXIT_INVALID, ConfigError, FollowsyncError, LockBusy
from followsync.locks import Lock
from followsync.notify import Notifier, watchdog_seconds
from followsync.schedule import (
    LOGIN_PAUSE,
    Change,
    Debounce,
    MidnightTrigger,
    Pending,
    backoff_delay,
    classify,
    login_held,
    next_retries,
    should_report,
    watched_files,
)
from followsync.sources.idle import InboxWatcher, watches_inbox

DAEMON_LOCK = "daemon.lock"  # held for the daemon's life; "lock" is held per sync

log = logging.getLogger("followsync")
STOP_GRACE = 3.0  # seconds a running sync gets to finish after SIGTERM
EVENT_TYPES: list[type[FileSystemEvent]] = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                            FileDeletedEvent, FileClosedEvent]
Message = tuple[str, str]  # ("stop" | "reload" | "changed", detail)
Refusal = tuple[datetime, str]  # when a mailbox's login was refused, and what was tried


def serve(config_path: Path, *, verbose: int = 0, quiet: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit code."""
    logs.setup(verbose, quiet)
    try:
        config = configcache.load_config_cached(config_path)
    except ConfigError as exc:
        log.error("not started: the config cannot be loaded\n%s", exc)
        return EXIT_INVALID
    for warning in config.warnings:
        log.warning("%s", warning)
    lock = Lock(config.state_dir, DAEMON_LOCK)
    try:
        lock.acquire(wait=0, what="daemon")
    except LockBusy as exc:
        log.error("not started: %s", exc)
        return exc.exit_code
    notifier = Notifier.from_env()
    daemon = Daemon(config_path, config, lock, notifier, watchdog_seconds(os.environ))
    try:
        return daemon.serve()
    finally:
        notifier.close()
        daemon.lock.release()  # the lock it holds now (a reload may have moved it)


class SyncWorker:
    """The one thread that syncs; `request` merges into what is pending and returns at once."""

    def __init__(self, sync: Callable[[Pending], None]) -> None:
        self._sync = sync
        self._cv = threading.Condition()
        self._pending = Pending()
        self._stopping = False
        self.thread = threading.Thread(target=self._loop, name="followsync-sync", daemon=True)

    def request(self, only: str | None = None, saved: bool = False) -> None:
        with self._cv:
            self._pending = self._pending.add(only, saved)
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or bool(self._pending.runs()))
                if self._stopping:
                    return
                pending, self._pending = self._pending, Pending()
            self._sync(pending)

    def stop(self, grace: float) -> bool:
        """Ask the worker to end after the sync it is running; True if it did within grace."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self.thread.is_alive():
            self.thread.join(grace)
        return not self.thread.is_alive()


class _Events(FileSystemEventHandler):
    """Forwards saves of the watched files (and only those) to the main loop."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", None)]
        kind = classify(event.event_type, paths, self.daemon.watched)
        if kind is not None:
            log.debug("%s: %s", event.event_type, event.src_path)
            self.daemon.messages.put(("changed", kind))


class Daemon:
    def __init__(self, config_path: Path, config: Config, lock: Lock, notifier: Notifier,
                 ping_every: float | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.lock = lock
        self.notifier = notifier
        self.ping_every = ping_every
        self.messages: queue.SimpleQueue[Message] = queue.SimpleQueue()  # safe in signal handlers
        self.watched: dict[Path, Change] = {}
        self.worker = SyncWorker(self._sync)
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        self.observer: Any = None
        self._failures: dict[str, int] = {}
        self._mail_failures: dict[str, int] = {}  # mailbox → failed scans in a row
        self._mail_wait: dict[str, float] = {}  # mailbox → monotonic time of its next try
        # mailbox → its refused login (credentials_digest: never the password itself)
        self._refused: dict[str, Refusal] = {}
        self._watchers: dict[str, InboxWatcher] = {}  # mailbox → its IDLE watcher
        self._no_idle: set[str] = set()  # mailboxes whose server offers no IDLE (said once)
        self._mail_lock = threading.Lock()  # the three above: the idle threads report too
        self._stopping = False
        self._last_problem: str | None = None
        self._status = "starting"
        self._syncing = threading.Lock()  # held during sync.run

    # ------------------------------------------------------------------ life cycle
    def serve(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        self.worker.thread.start()
        self.schedule()
        self.scheduler.start()
        self.watch()
        self.worker.request()
        log.info("running: %s", self.describe())
        self.notifier.ready(f"running; first sync started ({self.describe()})")
        self._main_loop()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.messages.put(("reload", "SIGHUP") if signum == signal.SIGHUP
                          else ("stop", signal.Signals(signum).name))

    def _main_loop(self) -> None:
        debounce = Debounce()
        next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if self.ping_every is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + self.ping_every
            waits = [w for w in (debounce.wait(now), self.ping_every and next_ping - now)
                     if w is not None]
            try:
                what, detail = self.messages.get(timeout=max(0.0, min(waits)) if waits else None)
            except queue.Empty:
                what, detail = "", ""
            now = time.monotonic()
            if what == "stop":
                self._stop(detail)
                return
            if what == "reload":
                self.reload(detail)
            elif what == "changed":
                debounce.note("config" if detail == "config" else "leads", now)
            saved = debounce.take(now)
            if "config" in saved:
                self.reload("the config was saved", saved=True)
            elif saved:
                self.worker.request(saved=True)

    def _stop(self, why: str) -> None:
        log.info("stopping (%s)", why)
        self.notifier.stopping()
        with self._mail_lock:
            self._stopping = True
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for watcher in watchers:
            watcher.stop()
        if self.observer is not None:
            self.observer.stop()
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + STOP_GRACE
        for watcher in watchers:  # each says DONE and logs out; never waited on for long
            watcher.join(max(0.0, deadline - time.monotonic()))
        if not self.worker.stop(STOP_GRACE):
            log.warning("a sync was still running after %.0f s; it is cut short (the next "
                        "sync finishes its work)", STOP_GRACE)

    # ------------------------------------------------------------------ configuration
    def describe(self) -> str:
        c = self.config
        watching = ", ".join(sorted(p.name for p in self.watched)) or "nothing"
        return (f"every {span(c.interval)} and after midnight ({c.timezone.key}); "
                f"watching {watching}; targets {', '.join(t.name for t in c.targets)}"
                + "".join(f"; mail {b.name} every {span(b.interval)}" for b in c.mailboxes))

    def schedule(self) -> None:
        """(Re)create the timed jobs for the current config."""
        interval = self.config.interval
        self.scheduler.add_job(
            self.worker.request, IntervalTrigger(seconds=interval.total_seconds(), timezone=UTC),
            id="interval", name="full reconcile", replace_existing=True,
            misfire_grace_time=max(1, int(interval.total_seconds())))
        self.scheduler.add_job(
            self.worker.request, MidnightTrigger(self.config.timezone), id="midnight",
            name="after midnight", replace_existing=True, misfire_grace_time=12 * 3600)
        # Each mailbox is looked at every `interval` (README "Mail"): a sync round, which
        # scans first and takes the no-op path when nothing new came.
        boxes = {f"mail:{box.name}": box for box in self.config.mailboxes}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("mail:") and job.id not in boxes:
                job.remove()
        for job_id, box in boxes.items():
            seconds = box.interval.total_seconds()
            self.scheduler.add_job(
                self.worker.request, IntervalTrigger(seconds=seconds, timezone=UTC),
                id=job_id, name=f"look for mail in {box.name}", replace_existing=True,
                misfire_grace_time=max(1, int(seconds)))

    def watch(self) -> None:
        """(Re)watch the folders of the config and the lead files."""
        self.watched = watched_files(self.config_path, self.config.lead_paths) \
            if self.config.watch else {}
        if self.observer is None and self.watched:
            self.observer = Observer()
            self.observer.daemon = True
            self.observer.start()
        if self.observer is None:
            return
        self.observer.unschedule_all()
        for folder in sorted({p.parent for p in self.watched}):
            if not folder.is_dir():
                log.warning("cannot watch %s: no such folder (saves there are synced at the "
                            "next interval)", folder)
                continue
            self.observer.schedule(_Events(self), str(folder), recursive=False,
                                   event_filter=EVENT_TYPES)

    def reload(self, why: str, saved: bool = False) -> None:
        """Load the config again; a config that does not load leaves the running one as is."""
        self.notifier.reloading()
        log.info("reloading %s (%s)", self.config_path, why)
        try:
            new = configcache.load_config_cached(self.config_path)
            if new.state_dir != self.config.state_dir:
                self._move_lock(new)
            else:
                self.config = new
        except FollowsyncError as exc:
            log.error("the config was not reloaded; going on with the one loaded before\n%s",
                      exc)
        else:
            for warning in new.warnings:
                log.warning("%s", warning)
            self.schedule()
            self.watch()
            self._rewatch_mail()
            log.info("reloaded: %s", self.describe())
        if why == "SIGHUP":  # the user's way to say "try the login again now"
            with self._mail_lock:
                again, self._refused = sorted(self._refused), {}
            for name in again:
                log.info("mailbox %s: trying its login again (SIGHUP)", name)
        self.worker.request(saved=saved)
        self.notifier.ready(self._status)

    def _move_lock(self, new: Config) -> None:
        """Switch to a config with another state dir, and to that dir's lock."""
        lock = Lock(new.state_dir, DAEMON_LOCK)
        lock.acquire(wait=0, what="daemon")  # LockBusy: another followsync uses it
        with self._syncing:  # not under a running sync of the old state
            old, self.lock, self.config = self.lock, lock, new
            old.release()

    # ------------------------------------------------------------------ syncing
    def _sync(self, pending: Pending) -> None:
        """One round on the worker thread: never raises, whatever the files or servers do."""
        try:
            self._sync_round(pending)
        finally:
            give_back_memory()

    def _sync_round(self, pending: Pending) -> None:
        config = self.config
        for only in pending.runs():
            if only is not None and only not in {t.name for t in config.targets}:
                continue
            try:
                with self._syncing:
                    outcome = sync.run(config, datetime.now(config.timezone),
                                       sync.SyncOptions(only=only, scan=self._scan(only),
                                                        held=self._held()))
            except ConfigError as exc:
                self._problem(str(exc), pending.saved)
                return
            except FollowsyncError as exc:
                self._problem(str(exc), pending.saved, "sync failed")
                return
            except Exception as exc:  # a bug: keep serving, say how to get the details
                log.debug("traceback of the failed sync", exc_info=True)
                self._problem(f"internal error: {type(exc).__name__}: {exc} (this is a bug; "
                              "run with -v for details and report it)", pending.saved,
                              "sync failed")
                return
            self._last_problem = None
            self._report(outcome, config)

    def _scan(self, only: str | None) -> frozenset[str]:
        """The mailboxes a sync round scans: none for a retry of one target; else those not
        waiting for a retry after failing (README "Mail")."""
        if only is not None:
            return frozenset()
        now = time.monotonic()
        return frozenset(box.name for box in self.config.mailboxes
                         if self._mail_wait.get(box.name, 0.0) <= now)

    def _held(self) -> dict[str, str]:
        """The mailboxes not to log in to with the credentials their server refused: those
        refused less than LOGIN_PAUSE ago (README "Mail")."""
        now = datetime.now(UTC)
        with self._mail_lock:
            return {name: tried for name, (at, tried) in self._refused.items()
                    if login_held(at, now)}

    def _report_mail(self, outcome: sync.Outcome, config: Config) -> None:
        """Log each scanned mailbox; one that failed waits (backing off, at most its
        interval) before it is tried again, the calendars syncing meanwhile; one that
        refused the login waits for new credentials (`_login_refused`)."""
        for report in outcome.mailboxes:
            box = next((b for b in config.mailboxes if b.name == report.name), None)
            if report.held:  # said when it was refused; not at every round
                log.debug("%s", report.summary())
                continue
            if report.refused is not None:
                self._login_refused(report.name, report.refused,
                                    f"{report.error}; hint: {report.hint}" if report.hint
                                    else f"{report.error}")
                continue
            if report.error is None:  # a scan with nothing new is not worth a line
                log.log(logging.INFO if report.found else logging.DEBUG, "%s", report.summary())
                self._mail_failures.pop(report.name, None)
                self._mail_wait.pop(report.name, None)
                with self._mail_lock:
                    self._refused.pop(report.name, None)
                if box is not None:
                    self._watch_inbox(box)
                continue
            log.error("%s", report.summary() + (f"\n  hint: {report.hint}" if report.hint
                                                 else ""))
            count = self._mail_failures.get(report.name, 0) + 1
            self._mail_failures[report.name] = count
            delay = backoff_delay(count, box.interval if box else config.interval)
            self._mail_wait[report.name] = time.monotonic() + delay.total_seconds()
            if self.scheduler.running:
                log.info("mailbox %s: trying again in %s", report.name, span(delay))
                self.scheduler.add_job(self.worker.request, "date",
                                       run_date=datetime.now(UTC) + delay,
                                       id=f"retry-mail:{report.name}", replace_existing=True,
                                       misfire_grace_time=None)

    def _login_refused(self, name: str, tried: str, why: str) -> None:
        """A mailbox's server refused its login (a scan's, or its IDLE watcher's): one line
        saying so and what to do; no retries until the credentials change (see `_held`)."""
        with self._mail_lock:
            self._refused[name] = (datetime.now(UTC), tried)
            watcher = self._watchers.pop(name, None)
        if watcher is not None:
            watcher.stop()
        self._mail_failures.pop(name, None)
        self._mail_wait.pop(name, None)
        if self.scheduler.running:
            with contextlib.suppress(JobLookupError):  # a back-off retry of an earlier failure
                self.scheduler.remove_job(f"retry-mail:{name}")
        box = next((b for b in self.config.mailboxes if b.name == name), None)
        what = "its password" if box is None or box.auth == "password" else \
            f"its sign-in (followsync auth {name})"
        log.error("%s; not logging in to it again (repeated failed logins lock accounts) until "
                  "%s or its entry in the config changes, the daemon is told to "
                  "reload (SIGHUP: systemctl --user reload followsync), or in %s",
                  why.replace("\n", " "), what, span(LOGIN_PAUSE))

    # ------------------------------------------------------------------ IDLE
    def _watch_inbox(self, box: MailConfig) -> None:
        """Watch the mailbox's INBOX with IDLE, once a scan of it worked (so the watcher's
        login is one that worked); a running watcher for the same entry is kept."""
        if not watches_inbox(box):
            return
        with self._mail_lock:
            current = self._watchers.get(box.name)
            if self._stopping or box.name in self._no_idle or box.name in self._refused or (
                    current is not None and current.alive and current.box == box):
                return
            watcher = InboxWatcher(box, self._new_mail,
                                   on_refused=lambda tried, exc: self._login_refused(
                                       box.name, tried, f"{exc.message}; hint: {exc.hint}"),
                                   on_no_idle=lambda: self._without_idle(box))
            self._watchers[box.name] = watcher
        if current is not None:
            current.stop()
        watcher.start()

    def _new_mail(self) -> None:
        """An IDLE watcher saw new mail: a sync round scans it (requests merge)."""
        self.worker.request()

    def _without_idle(self, box: MailConfig) -> None:
        with self._mail_lock:
            self._no_idle.add(box.name)
            self._watchers.pop(box.name, None)
        log.info("mailbox %s: the server does not offer IDLE; new mail is looked for every %s",
                 box.name, span(box.interval))

    def _rewatch_mail(self) -> None:
        """After a reload: watchers of mailboxes whose entry changed or went are stopped
        (the next scan that works starts them again); a server's IDLE is asked for again."""
        boxes = {box.name: box for box in self.config.mailboxes}
        with self._mail_lock:
            self._no_idle.clear()
            gone = [w for name, w in self._watchers.items() if boxes.get(name) != w.box]
            self._watchers = {n: w for n, w in self._watchers.items() if w not in gone}
        for watcher in gone:
            watcher.stop()

    def _problem(self, text: str, saved: bool, what: str = "lead files not loaded") -> None:
        if should_report(text, self._last_problem, saved):
            log.error("%s; the calendars are left as they are\n%s", what, text)
        else:
            log.debug("still: %s", text.splitlines()[0])
        self._last_problem = text
        self._set_status(f"{what}: {text.splitlines()[0] if text else ''}")

    def _report(self, outcome: sync.Outcome, config: Config) -> None:
        self._report_mail(outcome, config)
        for report in outcome.targets:
            for warning in report.warnings:
                log.warning("%s", warning)
            if report.error:
                log.error("%s", report.summary() + (f"\n  hint: {report.hint}"
                                                    if report.hint else ""))
            else:
                log.info("%s", report.summary())
        retryable = {r.name: r.retryable for r in outcome.targets}
        self._failures, retries = next_retries(self._failures, retryable, config.interval)
        for name in retryable:
            if not self.scheduler.running:  # stopping: no more timers
                break
            if name in retries:
                delay = retries[name]
                log.info("%s: retrying in %s", name, span(delay))
                self.scheduler.add_job(self.worker.request, "date", args=[name],
                                       run_date=datetime.now(UTC) + delay, id=f"retry:{name}",
                                       replace_existing=True, misfire_grace_time=None)
            else:
                with contextlib.suppress(JobLookupError):  # no retry was pending
                    self.scheduler.remove_job(f"retry:{name}")
        stamp = datetime.now(config.timezone).strftime("%H:%M")
        self._set_status(f"last sync {stamp}: " + "; ".join(r.summary() for r in outcome.targets))

    def _set_status(self, text: str) -> None:
        self._status = text
        self.notifier.status(text)


def give_back_memory() -> None:
    """Return the heap a sync freed to the OS (glibc keeps it otherwise), so a daemon that
    runs for weeks stays at the size of one sync, not of the largest burst it ever saw."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def span(delay: timedelta) -> str:
    """A length as the config writes it: 30s, 2m, 15m, 1h, 1d."""
    total = int(delay.total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if total >= size and total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}s"
