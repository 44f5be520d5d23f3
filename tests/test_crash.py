"""Crash safety (issue 6, item 1): a `followsync sync` (or `done`) killed with SIGKILL at any
point, followed by a normal sync, converges to exactly the desired items: no duplicate UID,
no foreign item lost or changed, a state database that opens cleanly, and a sync after that
which has nothing left to do.

CalDAV: a real Radicale behind a proxy that holds the k-th request of the killed sync, for
every k, either BEFORE it reaches the server or AFTER the server applied it (its answer never
reaches the client); the test kills the process while the request is held. The request
sequences (and so the number of kill points) are counted by an unkilled run first.

.ics and `done`: the process writes through a slowed-down disk and is killed at random
moments of the write (and of the whole run): the file is then exactly the old bytes or
exactly the new ones, never torn.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from followsync.cli import main
from followsync.state import State
from tests.forkrunner import ForkRunner
from tests.killing import (
    NOW,
    PASSWORD_ENV,
    Dav,
    KillProxy,
    assert_holds,
    noted_leads,
    told,
    wait_reached,
    zombie,
)
from tests.project import config_text
from tests.servers import CalendarInfo, Server, drop_calendar, fresh_calendar

FOREIGN = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Someone else//EN\r\nBEGIN:VEVENT\r\n"
           "UID:dentist-1\r\nDTSTAMP:20261101T120000Z\r\nDTSTART:20261203T140000Z\r\n"
           "DTEND:20261203T150000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
KILL_POINTS: dict[str, int] = {}  # scenario → kill points exercised (for the report)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkRunner]:
    with ForkRunner(tmp_path_factory.mktemp("children")) as running:
        yield running


# =========================================================================== CalDAV


def state_is_sound(folder: Path) -> None:
    """The state database passes SQLite's integrity check and opens as a State."""
    path = folder / "state.sqlite"
    if not path.exists():
        return
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    State(folder).close()


def calendars(server: Server) -> dict[str, str]:
    """Path → display name of every calendar under the principal (one PROPFIND)."""
    probe = CalendarInfo(server.kind, server.url, server.principal_url, server.principal_url,
                         "", server.username, server.password, None, server)
    body = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:displayname/>'
            "</d:prop></d:propfind>")
    status, _, data = probe.http("PROPFIND", server.principal_path, body, {"Depth": "1"})
    assert status == 207
    found = {}
    for response in re.findall(rb"<(?:\w+:)?response\b.*?</(?:\w+:)?response>", data, re.S):
        href = re.search(rb"<(?:\w+:)?href>(.*?)</", response, re.S)
        name = re.search(rb"<(?:\w+:)?displayname>(.*?)</", response, re.S)
        if href and href.group(1).decode().rstrip("/") != server.principal_path.rstrip("/"):
            found[href.group(1).decode()] = name.group(1).decode() if name else ""
    return found


def calendar_at(server: Server, path: str) -> CalendarInfo:
    return CalendarInfo(server.kind, server.url, server.principal_url,
                        f"{server.url.rstrip('/')}{path}", "", server.username,
                        server.password, None, server)


WRITES = {"PUT", "DELETE", "MKCALENDAR", "PROPPATCH", "MKCOL"}
Scenario = Callable[[int | None, str], list[str]]


def run_kill_points(scenario: Scenario, name: str) -> int:
    """An unkilled run gives the request sequence; then one kill BEFORE each request and
    one AFTER each request that writes (after a read, the server is as before the next
    request, which is already a kill point)."""
    sequence = scenario(None, "")
    assert sequence, "the sync sent no request"
    points = [(k, "before") for k in range(1, len(sequence) + 1)] + \
        [(k, "after") for k, method in enumerate(sequence, 1) if method in WRITES]
    for k, when in points:
        scenario(k, when)
    KILL_POINTS[name] = len(points)
    print(f"{name}: {len(sequence)} requests {sequence}, {len(points)} kill points")
    return len(points)


def killed_then_synced(runner: ForkRunner, dav: Dav, k: int, when: str, now: str
                       ) -> tuple[int, str]:
    """Run the sync as a process, SIGKILL it while the proxy holds request k, check the
    state database, then sync normally (in-process): its exit code and output."""
    child = runner.start(dav.sync_argv(now), env=dav.env)
    assert wait_reached(dav.proxy, child), (k, when, child.output())
    assert runner.kill(child).killed, (k, when)
    dav.proxy.release()
    state_is_sound(dav.tmp / "state")
    return dav.sync(now)


def test_kill_anywhere_in_a_sync_with_creates_updates_and_deletes(
        radicale_server: Server, runner: ForkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """4 leads synced; then 2 move (updates), 2 go (deletes), 2 come (creates), beside a
    foreign event. The sync of that change is killed at each of its requests."""
    server = radicale_server
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    before = [("a", "2026-11-01"), ("b", "2026-11-01"), ("c", "2026-11-01"), ("d", "2026-11-01")]
    after = [("a", "2026-11-05"), ("b", "2026-11-06"), ("e", "2026-11-01"), ("f", "2026-11-01")]
    # one unanswered note each: the second gap of the cadence, 1mo
    # (e and f share 12-01 09:30: f is laid after e, and must be there after any kill too)
    expected = {"a": "20261205T093000", "b": "20261206T093000", "e": "20261201T093000",
                "f": "20261201T094500"}

    def scenario(k: int | None, when: str) -> list[str]:
        cal = fresh_calendar(server)
        folder = tmp_path / f"k{k}-{when}"
        folder.mkdir()
        with KillProxy(server.url) as proxy:
            try:
                dav = Dav(folder, server, proxy, url=cal.calendar_url)
                assert cal.put_raw("dentist.ics", FOREIGN)[0] in (201, 204)
                foreign = cal.get_raw("dentist.ics")[1]
                dav.leads.write_text(noted_leads(before))
                assert dav.sync()[0] == 0
                dav.leads.write_text(noted_leads(after))
                proxy.arm(k, when)
                if k is None:
                    code, out = dav.sync()
                    assert code == 0, out
                    assert_holds(cal, expected, foreign)
                    return [seen.method for seen in proxy.seen()]
                code, out = killed_then_synced(runner, dav, k, when, NOW)
                assert code == 0, (k, when, out)
                assert_holds(cal, expected, foreign, (k, when))
                state_is_sound(folder / "state")
                proxy.arm(None)
                code, out = dav.sync()
                assert (code, proxy.count()) == (0, 1), (k, when, out, proxy.seen())
                assert "0 created, 0 updated, 0 deleted, 4 unchanged (" in out, (k, when, out)
                return []
            finally:
                proxy.release()
                drop_calendar(cal)

    assert run_kill_points(scenario, "caldav: creates, updates and deletes") >= 14


def test_kill_anywhere_in_a_first_sync_that_creates_the_calendar(
        radicale_server: Server, runner: ForkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The very first sync: discovery, MKCALENDAR of a calendar that does not exist yet,
    then the uploads. Afterwards there is ONE new calendar, of that name, with the items."""
    server = radicale_server
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    leads = [("a", "2026-11-01"), ("b", "2026-11-02")]
    expected = {"a": "20261201T093000", "b": "20261202T093000"}

    def scenario(k: int | None, when: str) -> list[str]:
        name = f"Follow-ups {uuid.uuid4().hex[:8]}"
        folder = tmp_path / f"k{k}-{when}"
        folder.mkdir()
        existing = calendars(server)
        with KillProxy(server.url) as proxy:
            try:
                dav = Dav(folder, server, proxy, name=name)
                dav.leads.write_text(noted_leads(leads))
                proxy.arm(k, when)
                if k is None:
                    code, out = dav.sync()
                    assert code == 0, out
                    sequence = [seen.method for seen in proxy.seen()]
                else:
                    code, out = killed_then_synced(runner, dav, k, when, NOW)
                    assert code == 0, (k, when, out)
                made = {path: shown for path, shown in calendars(server).items()
                        if path not in existing}
                assert list(made.values()) == [name], (k, when, made)  # one, and named
                assert_holds(calendar_at(server, next(iter(made))), expected, None, (k, when))
                proxy.arm(None)
                code, out = dav.sync()
                assert (code, proxy.count()) == (0, 1), (k, when, out, proxy.seen())
                return sequence if k is None else []
            finally:
                proxy.release()
                for path in set(calendars(server)) - set(existing):
                    drop_calendar(calendar_at(server, path))

    assert run_kill_points(scenario, "caldav: first sync with MKCALENDAR") >= 10


def test_kill_anywhere_in_a_daily_roll_then_the_next_days_still_roll(
        radicale_server: Server, runner: ForkRunner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Overdue items move to today every day. The day-2 sync (two updates whose only cause
    is the date) is killed; day 2 converges, and on day 3 both items still move: a write
    that landed unrecorded must not be mistaken for the user editing the item."""
    server = radicale_server
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    leads = [("a", "2026-10-01"), ("b", "2026-10-02")]
    day1, day2, day3 = "2026-11-12T10:00", "2026-11-13T10:00", "2026-11-14T10:00"

    def on(day: str) -> dict[str, str]:
        return {"a": f"{day}T093000", "b": f"{day}T094500"}  # (b laid after a: spread)

    def scenario(k: int | None, when: str) -> list[str]:
        cal = fresh_calendar(server)
        folder = tmp_path / f"k{k}-{when}"
        folder.mkdir()
        with KillProxy(server.url) as proxy:
            try:
                dav = Dav(folder, server, proxy, url=cal.calendar_url)
                dav.leads.write_text(noted_leads(leads))
                assert dav.sync(now=day1)[0] == 0
                assert_holds(cal, on("20261112"), None)
                proxy.arm(k, when)
                if k is None:
                    assert dav.sync(now=day2)[0] == 0
                    return [seen.method for seen in proxy.seen()]
                code, out = killed_then_synced(runner, dav, k, when, day2)
                assert code == 0 and "kept" not in out, (k, when, out)
                assert_holds(cal, on("20261113"), None, (k, when))
                code, out = dav.sync(now=day3)
                assert code == 0 and "2 updated" in out, (k, when, out)
                assert_holds(cal, on("20261114"), None, (k, when))
                return []
            finally:
                proxy.release()
                drop_calendar(cal)

    assert run_kill_points(scenario, "caldav: daily roll") >= 6


# ============================================================================ .ics file
ICS_CONFIG = config_text()
FOREIGN_ICS_EVENT = ("BEGIN:VEVENT\r\nUID:dentist-1\r\nDTSTAMP:20261101T120000Z\r\n"
                     "DTSTART:20261203T140000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\n")


def _uids(data: bytes) -> set[str]:
    from followsync.backends.icsfile import Block, parse

    return {line.split(":", 1)[1] for entry in parse(data.decode())
            if isinstance(entry, Block) for line in entry.lines if line.startswith("UID:")}


def _killed_runs(runner: ForkRunner, folder: Path, argv: list[str], target: Path, runs: int,
                 reset: Callable[[], None], rng: random.Random) -> tuple[list[bytes], int, int]:
    """`runs` runs of argv, each SIGKILLed: two in three at a random moment of the first
    file write (the slowed disk tells when it starts), the others at a random moment of the
    whole run. Returns what the target held after each, and how many runs were killed
    inside the write and at all."""
    full = _timed_run(runner, folder, argv, reset)
    during = killed = 0
    results: list[bytes] = []
    for run in range(runs):
        reset()
        marker = folder / f"marker-{run}"
        child = runner.start(argv, slow_write=True, marker=marker)
        if run % 3 == 2:
            time.sleep(rng.uniform(0, full))
        else:
            deadline = time.monotonic() + 20
            while not told(marker) and not zombie(child.pid) and time.monotonic() < deadline:
                time.sleep(0.001)
            size = int(told(marker) or 0)
            time.sleep(rng.uniform(0, size / 1024 * 0.001))  # inside the slowed write
            during += 1
        runner.kill(child)
        killed += child.killed
        results.append(target.read_bytes() if target.exists() else b"")
    return results, during, killed


def _timed_run(runner: ForkRunner, folder: Path, argv: list[str], reset: Callable[[], None]
               ) -> float:
    reset()
    started = time.monotonic()
    child = runner.wait(runner.start(argv, slow_write=True, marker=folder / "marker-timing"))
    assert child.code == 0, child.output()
    return time.monotonic() - started


def _temp_litter(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def test_an_ics_file_killed_during_its_write_is_the_old_or_the_new_one(
        runner: ForkRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path
    (folder / "config.yaml").write_text(ICS_CONFIG)
    leads = folder / "leads.yaml"
    ics = folder / "out.ics"
    old_set = [(f"old{i}", "2026-11-01") for i in range(30)]
    new_set = [(f"old{i}", "2026-11-05") for i in range(0, 30, 2)] + \
        [(f"new{i}", "2026-11-02") for i in range(30)]
    leads.write_text(noted_leads(old_set))
    argv = ["--config", str(folder / "config.yaml"), "--now", NOW, "sync"]
    assert main(argv) == 0
    text = ics.read_bytes().replace(b"END:VCALENDAR\r\n",
                                    FOREIGN_ICS_EVENT.encode() + b"END:VCALENDAR\r\n")
    ics.write_bytes(text)
    assert main(argv) == 0
    old_bytes = ics.read_bytes()
    snapshot = folder / "snapshot"
    shutil.copytree(folder / "state", snapshot)
    leads.write_text(noted_leads(new_set))
    capsys.readouterr()

    def reset() -> None:
        ics.write_bytes(old_bytes)
        shutil.rmtree(folder / "state")
        shutil.copytree(snapshot, folder / "state")

    # the new file, as an unkilled run writes it
    reset()
    assert main(argv) == 0
    new_bytes = ics.read_bytes()
    assert new_bytes != old_bytes and b"UID:dentist-1" in new_bytes
    capsys.readouterr()

    rng = random.Random(6)
    runs = 30
    results, during, killed = _killed_runs(runner, folder, argv, ics, runs, reset, rng)
    kinds = {"old": 0, "new": 0}
    for data in results:
        assert data in (old_bytes, new_bytes), "a torn or foreign file after a kill"
        kinds["old" if data == old_bytes else "new"] += 1
    assert killed >= runs * 0.8  # nearly every run was really killed before it finished
    assert kinds["old"] >= runs // 2  # most kills landed during the write (old file kept)
    KILL_POINTS["ics: random kills (during the write / anywhere)"] = runs
    print(f"ics: {runs} runs, {during} killed inside the write, {killed} killed, {kinds}")

    # a kill inside the write leaves its temp file behind (SIGKILL skips all cleanup):
    # the next write removes such leftovers once they are old, never a fresh one
    litter = _temp_litter(folder, "out.ics")
    assert litter, "no kill landed inside a write"
    fresh = folder / ".out.ics.fresh.tmp"
    fresh.write_bytes(b"another writer, just now")
    for path in litter:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    ics.write_bytes(old_bytes)
    assert main(argv) == 0
    assert _temp_litter(folder, "out.ics") == [fresh]
    fresh.unlink()

    # and after every kind of kill, a normal sync converges to the new file exactly
    for data in {old_bytes, new_bytes}:
        reset()
        ics.write_bytes(data)
        assert main(argv) == 0
        assert ics.read_bytes() == new_bytes
        assert _uids(new_bytes) == {f"followsync-{lead}-cadence-file" for lead, _ in new_set} | \
            {"dentist-1"}
        state_is_sound(folder / "state")


def test_an_ics_sync_killed_after_the_rename_converges_on_the_next_days(
        runner: ForkRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed right after the new file replaced the old one, before the state was saved:
    the items it wrote are ours, not edits by the user, so the next day they still roll."""
    folder = tmp_path
    (folder / "config.yaml").write_text(ICS_CONFIG)
    (folder / "leads.yaml").write_text(noted_leads([("a", "2026-10-01"), ("b", "2026-10-02")]))
    ics = folder / "out.ics"

    def argv(now: str) -> list[str]:
        return ["--config", str(folder / "config.yaml"), "--now", now, "sync"]

    assert main(argv("2026-11-12T10:00")) == 0
    # day 2, killed while it pauses right after renaming the new file into place
    marker = folder / "renamed"
    child = runner.start(argv("2026-11-13T10:00"), pause_after_replace=30.0, marker=marker)
    deadline = time.monotonic() + 20
    while not told(marker):
        assert time.monotonic() < deadline and not zombie(child.pid), child.output()
        time.sleep(0.005)
    assert b"DTSTART;TZID=Europe/Berlin:20261113T093000" in ics.read_bytes()
    assert b"DTSTART;TZID=Europe/Berlin:20261113T094500" in ics.read_bytes()  # (spread)
    assert runner.kill(child).killed
    state_is_sound(folder / "state")
    capsys.readouterr()
    assert main(argv("2026-11-13T10:00")) == 0
    out = capsys.readouterr().out
    assert "kept" not in out, out
    assert main(argv("2026-11-14T10:00")) == 0
    out = capsys.readouterr().out
    assert "2 updated" in out, out
    assert b"DTSTART;TZID=Europe/Berlin:20261114T093000" in ics.read_bytes()
    assert b"DTSTART;TZID=Europe/Berlin:20261114T094500" in ics.read_bytes()


# ============================================================================ `done`
def test_done_killed_during_its_write_leaves_the_old_or_the_new_lead_file(
        runner: ForkRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path
    (folder / "config.yaml").write_text(ICS_CONFIG)
    leads = folder / "leads.yaml"
    # a big lead file, so the slowed write takes a while
    text = "# my leads\n" + noted_leads([(f"lead{i}", "2026-11-01") for i in range(60)])
    leads.write_text(text)
    old_bytes = leads.read_bytes()
    argv = ["--config", str(folder / "config.yaml"), "--now", NOW, "done", "lead7",
            "--note", "called: she'll think about it"]
    assert main(argv) == 0
    new_bytes = leads.read_bytes()
    assert new_bytes != old_bytes
    capsys.readouterr()

    def reset() -> None:
        leads.write_bytes(old_bytes)
        for litter in _temp_litter(folder, "leads.yaml"):
            litter.unlink()

    rng = random.Random(7)
    runs = 20
    results, during, killed = _killed_runs(runner, folder, argv, leads, runs, reset, rng)
    for data in results:
        assert data in (old_bytes, new_bytes), "a torn lead file after a kill"
    assert killed >= runs * 0.8
    assert sum(data == old_bytes for data in results) >= runs // 2
    print(f"done: {runs} runs, {during} killed inside the write, {killed} killed")
    KILL_POINTS["done: random kills"] = runs
    # whatever the kill left, the file loads and `done` works again
    assert main(["--config", str(folder / "config.yaml"), "validate"]) == 0
