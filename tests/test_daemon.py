"""`followsync run`: the pure decisions with injected time, then the real daemon as a process.

The end-to-end tests start `python -m followsync run` with a config in a tmp folder, an .ics
target beside the lead file (so the daemon's own writes land in the watched folder) and
$NOTIFY_SOCKET pointing at a datagram socket the test binds, as systemd would. Lead dates are
in 2099, so what is written does not depend on today. Every wait is a polling deadline.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from followsync import logs
from followsync.config import load_config
from followsync.daemon import DAEMON_LOCK, Daemon, SyncWorker, span
from followsync.errors import EXIT_TARGET
from followsync.locks import Lock
from followsync.notify import Notifier
from followsync.schedule import (
    Debounce,
    MidnightTrigger,
    Pending,
    backoff_delay,
    classify,
    next_midnight,
    next_retries,
    should_report,
    watched_files,
)
from tests.project import Project, ics_target

BERLIN = ZoneInfo("Europe/Berlin")
S = timedelta(seconds=1)


# =========================================================================== pure decisions
def test_backoff_doubles_from_30_seconds_up_to_the_interval() -> None:
    interval = timedelta(minutes=15)
    delays = [backoff_delay(n, interval).total_seconds() for n in range(1, 9)]
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]
    assert backoff_delay(50, interval) == interval  # no overflow after a long outage
    assert backoff_delay(1, timedelta(minutes=1)) == 30 * S
    assert backoff_delay(3, timedelta(minutes=1)) == timedelta(minutes=1)


def test_a_failed_target_is_retried_sooner_and_forgotten_once_it_syncs() -> None:
    interval = timedelta(minutes=15)
    failures, retries = next_retries({}, {"phone": True, "file": False}, interval)
    assert failures == {"phone": 1}
    assert retries == {"phone": 30 * S}
    failures, retries = next_retries(failures, {"phone": True}, interval)
    assert (failures, retries) == ({"phone": 2}, {"phone": 60 * S})
    # a retry of another target leaves phone's count alone
    failures, retries = next_retries(failures, {"laptop": True}, interval)
    assert failures == {"phone": 2, "laptop": 1}
    failures, retries = next_retries(failures, {"phone": False}, interval)
    assert failures == {"laptop": 1}
    assert retries == {}
    # a safety stop needs the user (sync --force): no retry loop
    assert next_retries({}, {"phone": False}, interval) == ({}, {})


@pytest.mark.parametrize(("now", "expected"), [
    # an ordinary evening, and just after a midnight run
    (datetime(2027, 1, 11, 21, 0, tzinfo=BERLIN), datetime(2027, 1, 12, 0, 0, 5, tzinfo=BERLIN)),
    (datetime(2027, 1, 12, 0, 0, 5, tzinfo=BERLIN), datetime(2027, 1, 13, 0, 0, 5, tzinfo=BERLIN)),
    (datetime(2027, 1, 12, 0, 0, 2, tzinfo=BERLIN), datetime(2027, 1, 12, 0, 0, 5, tzinfo=BERLIN)),
    # the night clocks go forward (02:00 → 03:00): the next night is not skipped
    (datetime(2027, 3, 28, 0, 0, 6, tzinfo=BERLIN), datetime(2027, 3, 29, 0, 0, 5, tzinfo=BERLIN)),
    (datetime(2027, 3, 27, 23, 59, tzinfo=BERLIN), datetime(2027, 3, 28, 0, 0, 5, tzinfo=BERLIN)),
    # the night clocks go back (03:00 → 02:00)
    (datetime(2027, 10, 31, 0, 0, 6, tzinfo=BERLIN), datetime(2027, 11, 1, 0, 0, 5, tzinfo=BERLIN)),
    # a UTC `now` (APScheduler passes the scheduler's zone) gives the same instant
    (datetime(2027, 3, 27, 22, 0, tzinfo=UTC), datetime(2027, 3, 28, 0, 0, 5, tzinfo=BERLIN)),
])
def test_next_midnight_in_berlin(now: datetime, expected: datetime) -> None:
    fire = next_midnight(now, BERLIN)
    assert fire == expected
    assert fire.astimezone(BERLIN).utcoffset() == expected.utcoffset()


def test_where_dst_skips_midnight_the_day_starts_at_one() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06 00:00 does not exist
    fire = next_midnight(datetime(2026, 9, 5, 12, 0, tzinfo=santiago), santiago)
    assert fire.astimezone(santiago).replace(tzinfo=None) == datetime(2026, 9, 6, 1, 0, 5)
    assert fire.utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Santiago", "America/Havana",
                                  "Asia/Beirut", "Australia/Lord_Howe", "Pacific/Apia"])
def test_the_trigger_fires_once_every_local_day_for_a_year(zone: str) -> None:
    tz = ZoneInfo(zone)
    trigger = MidnightTrigger(tz)
    now = datetime(2026, 12, 31, 12, 0, tzinfo=tz)
    fired: list[date] = []
    previous = None
    for _ in range(366):
        fire = trigger.get_next_fire_time(previous, now)
        local = fire.astimezone(tz)
        # exactly 5 s (of real time) after the first instant of the local day
        instant = fire.astimezone(UTC)
        assert (instant - 5 * S).astimezone(tz).date() == local.date(), local
        assert (instant - 5 * S - timedelta(milliseconds=1)).astimezone(tz).date() < local.date()
        fired.append(local.date())
        previous, now = fire, fire + timedelta(milliseconds=10)
    assert fired == [date(2027, 1, 1) + timedelta(days=i) for i in range(366)]


def test_only_writes_to_the_watched_names_count(tmp_path: Path) -> None:
    config, leads = tmp_path / "config.yaml", tmp_path / "leads.yaml"
    watched = watched_files(config, [leads])
    here = str(tmp_path)
    assert classify("modified", [f"{here}/leads.yaml", None], watched) == "leads"
    assert classify("closed", [f"{here}/leads.yaml", None], watched) == "leads"
    assert classify("created", [f"{here}/leads.yaml".encode(), None], watched) == "leads"
    # an atomic writer renames its temporary file over the lead file
    assert classify("moved", [f"{here}/.leads.yaml.tmp", f"{here}/leads.yaml"], watched) == "leads"
    # vim moves the lead file away to its backup before writing the new one
    assert classify("moved", [f"{here}/leads.yaml", f"{here}/leads.yaml~"], watched) == "leads"
    assert classify("deleted", [f"{here}/leads.yaml", None], watched) == "leads"
    assert classify("modified", [f"{here}/config.yaml", None], watched) == "config"
    # reads (our own sync reads the file), other files, and the folder itself do not count
    assert classify("opened", [f"{here}/leads.yaml", None], watched) is None
    assert classify("closed_no_write", [f"{here}/leads.yaml", None], watched) is None
    assert classify("modified", [f"{here}/followups.ics", None], watched) is None
    assert classify("created", [f"{here}/.leads.yaml.swp", None], watched) is None
    assert classify("modified", [here, None], watched) is None


def test_debounce_makes_one_action_of_a_burst() -> None:
    d = Debounce(quiet=0.25, longest=1.0)
    assert d.wait(10.0) is None
    assert d.take(10.0) == frozenset()
    for t in (10.0, 10.05, 10.1):
        d.note("leads", t)
    assert d.wait(10.1) == pytest.approx(0.25)
    assert d.take(10.3) == frozenset()  # 0.2 s quiet: not yet
    assert d.take(10.35) == {"leads"}
    assert d.take(10.4) == frozenset()  # taken once
    assert d.wait(10.4) is None


def test_debounce_does_not_wait_forever_on_a_file_rewritten_constantly() -> None:
    d = Debounce(quiet=0.25, longest=1.0)
    t = 0.0
    while not d.take(t):
        d.note("leads", t)
        t = round(t + 0.1, 2)
        assert t <= 1.0
    assert t == 1.0
    d.note("leads", 2.0)
    d.note("config", 2.1)
    assert d.take(2.35) == {"leads", "config"}


def test_pending_syncs_merge() -> None:
    assert Pending().runs() == []
    assert Pending().add("phone").add("file").add("phone").runs() == ["file", "phone"]
    everything = Pending().add("phone").add(None)
    assert everything.runs() == [None]
    assert everything.add("file").runs() == [None]
    assert not everything.saved
    assert Pending().add(None, saved=True).add("x").saved


def test_a_broken_lead_file_is_reported_once_per_change() -> None:
    assert should_report("leads.yaml:3:1: bad", None, saved=False)
    assert not should_report("leads.yaml:3:1: bad", "leads.yaml:3:1: bad", saved=False)
    assert should_report("leads.yaml:3:1: bad", "leads.yaml:3:1: bad", saved=True)
    assert should_report("leads.yaml:4:1: bad", "leads.yaml:3:1: bad", saved=False)


def test_span() -> None:
    assert [span(timedelta(seconds=s)) for s in (30, 120, 900, 3600, 86400, 90)] == \
        ["30s", "2m", "15m", "1h", "1d", "90s"]


def test_requests_during_a_sync_become_one_more_sync() -> None:
    gate, started = threading.Event(), threading.Event()
    runs: list[Pending] = []

    def sync(pending: Pending) -> None:
        runs.append(pending)
        started.set()
        gate.wait(5)

    worker = SyncWorker(sync)
    worker.thread.start()
    worker.request()
    assert started.wait(5)
    for name in ("a", "b", "a"):
        worker.request(name, saved=True)
    gate.set()
    wait_for(lambda: len(runs) == 2, 5, "the second sync")
    assert worker.stop(5)
    assert runs == [Pending(True), Pending(False, frozenset({"a", "b"}), True)]


# =========================================================================== logging
def record(level: int, text: str) -> logging.LogRecord:
    return logging.LogRecord("followsync", level, __file__, 1, text, None, None)


def test_journal_lines_carry_a_priority_on_every_line() -> None:
    formatter = logs.JournalFormatter("%(message)s")
    assert formatter.format(record(logging.INFO, "file: 1 created")) == "<6>file: 1 created"
    assert formatter.format(record(logging.ERROR, "bad\nleads.yaml:3:1: x")) == \
        "<3>bad\n<3>leads.yaml:3:1: x"
    assert formatter.format(record(logging.WARNING, "w")) == "<4>w"


def test_console_lines_carry_a_short_time() -> None:
    line = logs.ConsoleFormatter("%(message)s").format(record(logging.ERROR, "bad\nnext"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d error: bad\n {9}next", line)


def test_journal_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "err", "w") as stream:
        found = os.fstat(stream.fileno())
        assert logs.to_journal({"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}, stream)
        assert not logs.to_journal({"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino + 1}"},
                                   stream)
        assert not logs.to_journal({}, stream)
        assert not logs.to_journal({"JOURNAL_STREAM": "x"}, io.StringIO())


# =========================================================================== the scheduler
def write_files(folder: Path, interval: str = "15m", watch: bool = True,
                leads: str | None = None, extra_targets: str = "") -> Path:
    """A project syncing to followups.ics (and `extra_targets`), with daemon settings."""
    project = Project(folder)
    project.write_leads(leads or lead_file(("dana", "Dana Whitfield")))
    return project.write_config(
        targets=ics_target("followups.ics") + extra_targets,
        extra=f"daemon: {{interval: {interval}, watch: {str(watch).lower()}}}\n")


def lead_file(*people: tuple[str, str]) -> str:
    lines = ["version: 1", "leads:"]
    for i, (lead_id, name) in enumerate(people):
        lines += [f"  {lead_id}:", f"    name: {name}", f"    next: 2099-01-{i + 2:02d}"]
    return "\n".join(lines) + "\n"


def test_jobs_follow_the_config_and_its_reload(tmp_path: Path) -> None:
    config_path = write_files(tmp_path, interval="15m", watch=False)
    config = load_config(config_path)
    lock = Lock(config.state_dir)
    daemon = Daemon(config_path, config, lock, Notifier(None))
    daemon.scheduler.start(paused=True)  # real jobs, none runs
    try:
        daemon.schedule()
        interval = daemon.scheduler.get_job("interval")
        assert interval.trigger.interval == timedelta(minutes=15)
        assert (interval.coalesce, interval.max_instances) == (True, 1)
        midnight = daemon.scheduler.get_job("midnight")
        now = datetime(2027, 3, 28, 0, 0, 6, tzinfo=BERLIN)
        assert midnight.trigger.get_next_fire_time(None, now) == \
            datetime(2027, 3, 29, 0, 0, 5, tzinfo=BERLIN)
        write_files(tmp_path, interval="2h", watch=False)
        daemon.reload("test")
        assert daemon.scheduler.get_job("interval").trigger.interval == timedelta(hours=2)
        assert "every 2h" in daemon.describe()
        # a config that no longer loads keeps the running one
        config_path.write_text("leads: [\n")
        daemon.reload("test")
        assert daemon.config.interval == timedelta(hours=2)
        # a failing target gets a retry job 30 s out; a later success cancels it
        from followsync.sync import Outcome, TargetReport

        failed = TargetReport("file", error="unreachable", exit_code=EXIT_TARGET, retryable=True)
        daemon._report(Outcome(date(2027, 1, 1), [], [failed]), daemon.config)
        retry = daemon.scheduler.get_job("retry:file")
        assert retry is not None
        left = retry.next_run_time - datetime.now(UTC)
        assert 25 * S < left <= 30 * S
        daemon._report(Outcome(date(2027, 1, 1), [], [TargetReport("file")]), daemon.config)
        assert daemon.scheduler.get_job("retry:file") is None
    finally:
        daemon.scheduler.shutdown(wait=False)


def test_a_reload_to_another_state_dir_moves_the_lock(tmp_path: Path) -> None:
    from followsync.errors import LockBusy

    config_path = write_files(tmp_path, watch=False)
    config = load_config(config_path)
    lock = Lock(config.state_dir, DAEMON_LOCK)
    lock.acquire(wait=0, what="daemon")
    daemon = Daemon(config_path, config, lock, Notifier(None))
    daemon.scheduler.start(paused=True)
    try:
        busy = Lock(tmp_path / "busy", DAEMON_LOCK)  # another daemon runs on that state
        busy.acquire(wait=0)
        config_path.write_text(config_path.read_text().replace("state_dir: state",
                                                               "state_dir: busy"))
        daemon.reload("test")  # another followsync holds that state: keep the running config
        assert daemon.config.state_dir == tmp_path / "state"
        busy.release()
        config_path.write_text(config_path.read_text().replace("state_dir: busy",
                                                               "state_dir: moved"))
        daemon.reload("test")
        assert daemon.config.state_dir == tmp_path / "moved"
        assert (tmp_path / "moved" / DAEMON_LOCK).read_text().startswith(f"{os.getpid()} daemon")
        with pytest.raises(LockBusy):
            Lock(tmp_path / "moved", DAEMON_LOCK).acquire(wait=0)
        free = Lock(tmp_path / "state", DAEMON_LOCK)
        free.acquire(wait=0)  # the old state dir was let go
        free.release()
    finally:
        daemon.scheduler.shutdown(wait=False)
        daemon.lock.release()


# =========================================================================== the real daemon
def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Notifications:
    """The datagram socket systemd would listen on; records every message."""

    def __init__(self) -> None:
        self.name = f"@followsync-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.settimeout(0.05)
        self.messages: list[list[str]] = []
        self.context: Callable[[], str] = str  # more to show when a wait times out

    def wait(self, field: str, timeout: float = 20.0, after: int = 0) -> int:
        """Wait for a message with a line starting with `field`, at index `after` or later;
        its index."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if any(f.startswith(field) for f in self.messages[i]):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no {field} within {timeout} s; got {self.messages}\n"
                                     f"{self.context()}")
            try:
                self.messages.append(self.sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                pass

    def close(self) -> None:
        self.sock.close()


class Running:
    """A `followsync run` process with its stderr in a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 journal: bool = False) -> None:
        self.folder = config.parent
        self.ics = self.folder / "followups.ics"
        self.err_path = self.folder / f"stderr-{uuid.uuid4().hex[:6]}.txt"
        self.notify = Notifications()
        self.notify.context = lambda: self.stderr
        self._err = open(self.err_path, "wb")  # noqa: SIM115  (closed in stop)
        base = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                             "FOLLOWSYNC_NOW", "FOLLOWSYNC_CONFIG")}
        base["NOTIFY_SOCKET"] = self.notify.name
        if journal:  # as systemd does when stderr is the journal: name its device and inode
            found = os.fstat(self._err.fileno())
            base["JOURNAL_STREAM"] = f"{found.st_dev}:{found.st_ino}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "followsync", "--config", str(config), "run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
            env={**base, **(env or {})}, cwd=self.folder)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def calendar(self) -> str:
        try:
            return self.ics.read_text().replace("\r\n ", "").replace("\r\n", "\n")
        except FileNotFoundError:
            return ""

    def wait_calendar(self, text: str, timeout: float = 2.0) -> None:
        wait_for(lambda: text in self.calendar(), timeout, f"{text!r} in the .ics\n{self.stderr}")

    def wait_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> None:
        wait_for(lambda: len(re.findall(pattern, self.stderr)) >= count, timeout,
                 f"{pattern!r} in stderr:\n{self.stderr}")

    def exit_code(self, within: float = 5.0) -> int:
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {within} s later\n{self.stderr}") from None

    def syncs(self) -> int:
        return len(re.findall(r"file: \d+ created", self.stderr))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()
        self.notify.close()


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def _start(config: Path, env: dict[str, str] | None = None, journal: bool = False) -> Running:
        running = Running(config, env, journal)
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop()


def save_in_place(path: Path, text: str) -> None:
    """Truncate and write, in two writes with a flush between (a slow editor or a script)."""
    half = len(text) // 2
    with open(path, "w") as f:
        f.write(text[:half])
        f.flush()
        f.write(text[half:])


def save_by_rename(path: Path, text: str) -> None:
    """An atomic writer: a temporary file in the same folder renamed over the file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_like_vim(path: Path, text: str) -> None:
    """vim's default on Linux: move the file to its backup, write a new one, drop the backup."""
    backup = path.with_name(path.name + "~")
    os.replace(path, backup)
    path.write_text(text)
    backup.unlink()


PEOPLE = [("dana", "Dana Whitfield"), ("grace", "Grace Lin"), ("tomas", "Tomas Reyes"),
          ("viktor", "Viktor Nagy"), ("mei", "Mei Chen")]


def test_every_kind_of_save_reaches_the_calendar_within_two_seconds(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    config = write_files(tmp_path)
    daemon = start(config)
    daemon.notify.wait("READY=1")
    daemon.wait_calendar("SUMMARY:Dana Whitfield: follow up", timeout=10)
    daemon.wait_log(r"file: 1 created")
    for count, save in enumerate((save_in_place, save_by_rename, save_like_vim), start=2):
        name = PEOPLE[count - 1][1]
        save(tmp_path / "leads.yaml", lead_file(*PEOPLE[:count]))
        daemon.wait_calendar(f"SUMMARY:{name}: follow up")
        assert daemon.calendar().count("BEGIN:VEVENT") == count
    daemon.wait_log(r"file: 1 created", count=4)
    status = daemon.notify.messages[daemon.notify.wait("STATUS=last sync")]
    assert re.fullmatch(r"STATUS=last sync \d\d:\d\d: file: 1 created, 0 updated, 0 deleted, "
                        r"\d unchanged \(\d+\.\d\d s\)", status[0])
    # a burst of writes (a script saving eight times) is one sync, not one per write
    before = daemon.syncs()
    for i in range(8):
        save_in_place(tmp_path / "leads.yaml", lead_file(*PEOPLE[:4], ("mei", f"Mei Chen {i}")))
    daemon.wait_calendar("SUMMARY:Mei Chen 7: follow up")
    # a last save whose sync is logged after every sync of the burst: then count them
    save_by_rename(tmp_path / "leads.yaml", lead_file(*PEOPLE[:4], ("mei", "Mei Chen Z")))
    daemon.wait_calendar("SUMMARY:Mei Chen Z: follow up")
    daemon.wait_log(r"file: 0 created, 1 updated")
    assert daemon.syncs() == before + 2, daemon.stderr
    assert daemon.proc.poll() is None


def test_a_broken_save_changes_nothing_and_the_fixed_save_syncs(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    config = write_files(tmp_path)
    daemon = start(config, journal=True)
    daemon.notify.wait("READY=1")
    daemon.wait_calendar("Dana Whitfield", timeout=10)
    daemon.wait_log(r"file: 1 created")
    before = daemon.ics.read_bytes()
    leads = tmp_path / "leads.yaml"
    save_in_place(leads, lead_file(*PEOPLE[:2]) + "  broken: [\n")
    daemon.wait_log(rf"{re.escape(str(leads))}:\d+:\d+: ", timeout=3)
    assert daemon.ics.read_bytes() == before
    assert daemon.proc.poll() is None
    daemon.notify.wait("STATUS=lead files not loaded")
    save_by_rename(leads, lead_file(*PEOPLE[:2]))
    daemon.wait_calendar("Grace Lin")
    daemon.wait_log(r"file: 1 created", count=2)
    # stderr is "the journal": a priority on every line, no timestamps; the problem is
    # logged once, with its FILE:LINE:COL line
    lines = daemon.stderr.splitlines()
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert "<3>lead files not loaded; the calendars are left as they are" in lines
    assert sum(line.startswith(f"<3>{leads}:") for line in lines) == 1
    assert "<6>file: 1 created, 0 updated, 0 deleted, 1 unchanged" in daemon.stderr
    assert not any(re.match(r"<\d>\d\d:\d\d:\d\d", line) for line in lines)


def test_sighup_reloads_and_sigterm_stops_cleanly(tmp_path: Path,
                                                  start: Callable[..., Running]) -> None:
    config = write_files(tmp_path, interval="15m", watch=False)
    daemon = start(config, env={"WATCHDOG_USEC": "300000"})
    ready = daemon.notify.wait("READY=1")
    daemon.wait_log("running: every 15m")
    daemon.notify.wait("WATCHDOG=1", after=ready)
    write_files(tmp_path, interval="2h", watch=False)
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = daemon.notify.wait("RELOADING=1", after=ready + 1)
    assert any(f.startswith("MONOTONIC_USEC=") for f in daemon.notify.messages[reloading])
    daemon.notify.wait("READY=1", after=reloading)
    daemon.wait_log("reloaded: every 2h")
    assert daemon.proc.poll() is None
    pings = sum(m == ["WATCHDOG=1"] for m in daemon.notify.messages)
    daemon.notify.wait("WATCHDOG=1", after=len(daemon.notify.messages))
    assert sum(m == ["WATCHDOG=1"] for m in daemon.notify.messages) > pings
    asked = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.exit_code(5) == 0, daemon.stderr
    assert time.monotonic() - asked < 5
    daemon.notify.wait("STOPPING=1", timeout=1)
    assert "stopping (SIGTERM)" in daemon.stderr


def test_a_saved_config_is_reloaded(tmp_path: Path, start: Callable[..., Running]) -> None:
    config = write_files(tmp_path, interval="15m")
    daemon = start(config)
    daemon.notify.wait("READY=1")
    daemon.wait_log("running: every 15m")
    save_by_rename(config, config.read_text().replace("15m", "1h"))
    daemon.wait_log("reloaded: every 1h", timeout=2)
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.exit_code(5) == 0, daemon.stderr


def test_a_second_daemon_on_the_same_state_refuses(tmp_path: Path,
                                                   start: Callable[..., Running]) -> None:
    config = write_files(tmp_path)
    first = start(config)
    first.notify.wait("READY=1")
    second = start(config)
    assert second.exit_code(10) == 3, second.stderr
    assert f"PID {first.proc.pid}" in second.stderr
    assert "not started" in second.stderr
    assert first.proc.poll() is None


def test_a_manual_sync_takes_turns_with_the_running_daemon(
        tmp_path: Path, start: Callable[..., Running], capsys: pytest.CaptureFixture[str]) -> None:
    from followsync.cli import main

    config = write_files(tmp_path)
    first = start(config)
    first.notify.wait("READY=1")
    assert main(["--config", str(config), "sync"]) == 0, capsys.readouterr()
    assert "unchanged" in capsys.readouterr().out
    assert first.proc.poll() is None


def test_a_config_that_cannot_be_loaded_at_start_ends_it(tmp_path: Path,
                                                         start: Callable[..., Running]) -> None:
    config = write_files(tmp_path)
    config.write_text(config.read_text().replace("daemon:", "deamon:"))
    daemon = start(config)
    assert daemon.exit_code(10) == 1, daemon.stderr
    assert "not started: the config cannot be loaded" in daemon.stderr
    assert re.search(rf"{re.escape(str(config))}:\d+:\d+: ", daemon.stderr)
    assert not daemon.notify.messages


def test_an_unreachable_server_is_retried_and_the_daemon_goes_on(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    from servers import free_port  # nothing listens there: connections are refused

    phone = (f"  - {{name: phone, type: caldav, url: 'http://127.0.0.1:{free_port()}/', "
             "calendar: Follow-ups, username: me, password_env: FOLLOWSYNC_TEST_PW}\n")
    config = write_files(tmp_path, extra_targets=phone)
    daemon = start(config, env={"FOLLOWSYNC_TEST_PW": "pw"})
    daemon.notify.wait("READY=1")
    daemon.wait_log(r"error: phone: FAILED: .*127\.0\.0\.1.*", timeout=20)
    daemon.wait_log(r"phone: retrying in 30s")
    assert "Dana Whitfield" in daemon.calendar()  # the other target was synced
    assert "file: 1 created" in daemon.stderr
    assert daemon.proc.poll() is None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.exit_code(5) == 0, daemon.stderr


def test_run_refuses_now(capsys: pytest.CaptureFixture[str]) -> None:
    from followsync.cli import main

    assert main(["--now", "2027-01-11", "run"]) == 2
    assert "the daemon follows the real clock" in capsys.readouterr().err


# =========================================================================== systemd units
UNITS = Path(__file__).resolve().parent.parent / "systemd"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def test_the_daemon_unit_is_a_hardened_notify_service() -> None:
    service = unit("followsync.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["60"]
    assert service["Restart"] == ["on-failure"]
    assert service["ExecStart"][0].endswith("followsync run")
    assert "-HUP $MAINPID" in service["ExecReload"][0]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "read-only"), ("UMask", "0077")):
        assert service[key] == [value], key
    writable = [path.lstrip("-") for path in " ".join(service["ReadWritePaths"]).split()]
    assert {"%h/.local/state/followsync", "%h/.config/followsync"} <= set(writable)
    timer = unit("followsync-sync.timer")["Timer"]
    assert timer["Persistent"] == ["true"]
    assert timer["OnCalendar"] == ["*:0/15"]
    assert timer["OnBootSec"]
    oneshot = unit("followsync-sync.service")["Service"]
    assert oneshot["Type"] == ["oneshot"]
    assert oneshot["ExecStart"][0].endswith("followsync sync")


def test_the_units_documentation_is_the_readme_the_install_steps_put_there() -> None:
    """followsync is not on the package index: `Documentation=` names the README copy that
    the README's service steps install, not a registry page that does not exist."""
    readme = (UNITS.parent / "README.md").read_text()
    for path in sorted(UNITS.iterdir()):
        assert unit(path.name)["Unit"]["Documentation"] == [
            "file:%h/.local/share/doc/followsync/README.md"], path.name
    assert "install -Dm644 README.md ~/.local/share/doc/followsync/README.md" in readme
    assert "pypi.org" not in readme + "".join(p.read_text() for p in UNITS.iterdir())
    assert "pipx install 'followsync" not in readme  # not on the index: from a checkout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    # %h/.local/bin/followsync must exist for verify: a home where it does
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "followsync").symlink_to(sys.executable)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", *sorted(str(p) for p in UNITS.iterdir())],
        env={**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True, text=True, timeout=60, check=False)
    if "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warned about
