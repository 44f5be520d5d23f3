"""Concurrent use (issue 6, item 2): two syncs on one state take turns through the state
lock (the second waits briefly, then says who holds it, by PID), never write at the same
time; `done` never waits for a sync; two `done` at once both land.

The "other" process is a real one (forked by tests/forkrunner.py) that holds the lock while
it pauses right after renaming the .ics file into place, or while a proxy holds one of its
requests to a real Radicale. The daemon's side (its own life-long lock, syncs taking turns
with it) is in test_daemon.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from followsync.cli import main
from followsync.locks import Lock
from tests.forkrunner import ROOT, Child, ForkRunner
from tests.killing import (
    PASSWORD_ENV,
    Dav,
    KillProxy,
    assert_holds,
    noted_leads,
    told,
    wait_reached,
    zombie,
)
from tests.project import Project, make_project
from tests.servers import Server, drop_calendar, fresh_calendar

NOW = "2026-11-12T10:00"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkRunner]:
    with ForkRunner(tmp_path_factory.mktemp("children")) as running:
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Two leads syncing to out.ics."""
    return make_project(tmp_path, noted_leads([("a", "2026-11-01"), ("b", "2026-11-02")]), NOW)


def argv(project: Project, *command: str, now: str = NOW) -> list[str]:
    return project.argv(*(command or ("sync",)), now=now)


def holding(runner: ForkRunner, project: Project, seconds: float) -> Child:
    """A sync process that holds the state lock for `seconds` after writing the .ics file."""
    marker = project / f"held-{time.monotonic_ns()}"
    child = runner.start(argv(project), pause_after_replace=seconds, marker=marker)
    deadline = time.monotonic() + 20
    while not told(marker):
        assert time.monotonic() < deadline and not zombie(child.pid), child.output()
        time.sleep(0.005)
    return child


def short_wait(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make a sync give up on the lock after `seconds` instead of 10 s (test time)."""
    real = Lock.acquire

    def acquire(self: Lock, wait: float = 10.0, what: str = "sync") -> None:
        real(self, min(wait, seconds), what)

    monkeypatch.setattr(Lock, "acquire", acquire)


def test_a_sync_that_cannot_get_the_lock_names_the_holder_and_writes_nothing(
        runner: ForkRunner, project: Project, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "leads.yaml").write_text(noted_leads([("a", "2026-11-03")]))
    other = holding(runner, project, 30.0)
    written = (project / "out.ics").read_bytes()
    short_wait(monkeypatch, 0.5)
    capsys.readouterr()
    started = time.monotonic()
    code = main(argv(project))
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"another followsync (PID {other.pid} sync) is using {project / 'state'}" in err
    assert "Traceback" not in err
    assert 0.5 <= took < 5
    assert (project / "out.ics").read_bytes() == written  # the waiting sync wrote nothing
    # the holder is killed: the kernel drops its lock, nothing stale is left behind
    assert runner.kill(other).killed
    assert main(argv(project)) == 0, capsys.readouterr()


def test_a_sync_waits_briefly_for_the_lock_then_goes_on(
        runner: ForkRunner, project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    other = holding(runner, project, 1.5)
    started = time.monotonic()
    code = main(argv(project))
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert runner.wait(other).code == 0, other.output()
    assert code == 0, out
    assert took >= 0.8  # it waited for the other one ...
    assert "0 created, 0 updated, 0 deleted, 2 unchanged" in out  # ... and found its work done


def test_done_does_not_wait_for_a_running_sync(
        runner: ForkRunner, project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    other = holding(runner, project, 30.0)
    started = time.monotonic()
    code = main(argv(project, "done", "a", "--by", "them", "--note", "replied"))
    took = time.monotonic() - started
    assert code == 0, capsys.readouterr()
    assert took < 3
    assert runner.kill(other).killed
    capsys.readouterr()
    # the touch reaches the calendar with the next sync: a reply on 11-12 → due 11-26
    assert main(argv(project)) == 0
    assert "1 updated" in capsys.readouterr().out
    assert b"DTSTART;TZID=Europe/Berlin:20261126T093000" in (project / "out.ics").read_bytes()


RACE = r"""
import json, os, sys, time
from followsync.cli import main
config, count = sys.argv[1], int(sys.argv[2])
start = time.time() + 1.0
children = []
for i in range(count):
    pid = os.fork()
    if pid == 0:
        out = os.open(os.devnull, os.O_WRONLY)
        os.dup2(out, 1)
        os.dup2(out, 2)
        while time.time() < start:  # all at once
            pass
        os._exit(main(["--config", config, "--now", "2026-11-12T10:00", "done", "a",
                       "--note", f"note number {i}"]))
    children.append(pid)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]))
"""


def test_many_done_at_once_all_land(project: Project) -> None:
    """Eight `followsync done` processes on one lead file at the same instant: each one
    that says it logged its entry did (before the fix, about half were silently lost)."""
    count = 8
    done = subprocess.run([sys.executable, "-c", RACE, str(project / "config.yaml"),
                           str(count)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    text = (project / "leads.yaml").read_text()
    assert codes == [0] * count
    for i in range(count):
        assert text.count(f"note number {i}\n") == 1, text
    assert main(argv(project, "validate")) == 0


def test_two_syncs_against_a_server_never_write_at_the_same_time(
        radicale_server: Server, runner: ForkRunner, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Sync A is held by the proxy at its first PUT, holding the lock; sync B starts then.
    While A is held, B sends no request at all; once A goes on and ends, B runs and finds
    nothing left to do (no duplicate, no lost write)."""
    server = radicale_server
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    cal = fresh_calendar(server)
    try:
        with KillProxy(server.url) as proxy:
            dav = Dav(tmp_path, server, proxy, url=cal.calendar_url)
            dav.leads.write_text(noted_leads([("a", "2026-11-01"), ("b", "2026-11-02")]))
            proxy.arm(2, "before")  # request 1 lists the calendar, 2 is the first PUT
            first = runner.start(dav.sync_argv(), env=dav.env)
            assert wait_reached(proxy, first), first.output()
            seen_while_held: list[int] = []

            def go_on() -> None:
                seen_while_held.append(len(proxy.seen()))
                proxy.release()

            timer = threading.Timer(1.5, go_on)
            timer.start()
            started = time.monotonic()
            code, out = dav.sync()
            took = time.monotonic() - started
            timer.join()
            assert runner.wait(first).code == 0, first.output()
            assert code == 0, out
            assert took >= 1.4
            # nothing but A's first request had been answered while A was held
            assert seen_while_held == [1], proxy.seen()
            assert "0 created, 0 updated, 0 deleted, 2 unchanged" in out, out
            assert_holds(cal, {"a": "20261201T093000", "b": "20261202T093000"}, None)
    finally:
        drop_calendar(cal)


def test_the_lock_file_is_private(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv(project)) == 0
    lock = project / "state" / "lock"
    assert lock.stat().st_mode & 0o777 == 0o600
    assert os.stat(project / "state").st_mode & 0o777 == 0o700
