"""The daemon and mail (README "Mail"), as a real process against a real Dovecot: a message
appended to INBOX moves the lead's calendar item within the mailbox's scan interval; a
mailbox that cannot be reached is logged and retried while the calendars keep syncing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.imapserver import Account, CountingProxy, message
from tests.mailproject import ME, PW_ENV, TZ, mail_project
from tests.project import Project, ics_target

LEADS = """\
version: 1
leads:
  dana: {{name: Dana Whitfield, email: dana@acme.example, last_contact: {day}}}
"""
ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 1.0  # seconds: the mailbox's `interval` in these tests


class Daemon:
    """`followsync run` on a project, stderr in a file."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.err_path = project.dir / "daemon-stderr.txt"
        self._err = open(self.err_path, "wb")  # noqa: SIM115  (closed in stop)
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "FOLLOWSYNC_NOW", "FOLLOWSYNC_CONFIG")}
        env["PYTHONPATH"] = str(ROOT)  # this checkout's followsync
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "followsync", "-v", "--config", str(project.config), "run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err, env=env,
            cwd=project.dir)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def calendar(self) -> str:
        try:
            return self.project.ics.read_text().replace("\n ", "")
        except FileNotFoundError:
            return ""

    def wait(self, condition: Callable[[], object], timeout: float, what: str) -> float:
        """Seconds until `condition` held (polled); fails after `timeout`."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no {what} within {timeout} s\n{self.stderr}")
            assert self.proc.poll() is None, f"the daemon ended\n{self.stderr}"
            time.sleep(0.02)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


@pytest.fixture
def daemons() -> Iterator[Callable[[Project], Daemon]]:
    started: list[Daemon] = []

    def start(project: Project) -> Daemon:
        started.append(Daemon(project))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def test_a_message_appended_moves_the_calendar_item_within_the_interval(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch,
        daemons: Callable[[Project], Daemon]) -> None:
    # The daemon follows the real clock, and so does a mail's date (one far in the future
    # is dated by its arrival): dates here are relative to today.
    acc = imap_account
    today = datetime.now(TZ).date()
    p = mail_project(project, monkeypatch, acc, targets=ics_target(), interval="1s",
                     leads=LEADS.format(day=today - timedelta(days=3)))
    d = daemons(p)
    first = f"DTSTART;TZID=Europe/Berlin:{today + timedelta(days=4):%Y%m%d}T090000"
    d.wait(lambda: first in d.calendar(), 20, "first sync")  # last_contact + 1w
    now = datetime.now(TZ)
    acc.append("INBOX", message(frm="Dana <dana@acme.example>", to=ME, subject="Re: news",
                                date=now, message_id="<news@acme.example>"), now)
    moved = f"DTSTART;TZID=Europe/Berlin:{now.date() + timedelta(days=7):%Y%m%d}T090000"
    took = d.wait(lambda: moved in d.calendar(), INTERVAL + 10, "calendar item moved")
    assert "mailto:dana@acme.example?subject=Re%3A%20news" in d.calendar()
    # the log line is written once the sync round ends, which may be just after the file
    d.wait(lambda: re.search(r"mailbox inbox: 1 new touch ", d.stderr) is not None, 10,
           "the scan's log line")
    print(f"append → calendar moved: {took:.2f} s")  # the bench measures it under no load


def test_a_mailbox_that_goes_down_is_retried_and_the_calendars_keep_syncing(
        project: Project, imap_account: Account, imap_proxy: CountingProxy,
        monkeypatch: pytest.MonkeyPatch, daemons: Callable[[Project], Daemon]) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS.format(day="2099-01-05"),
                     interval="1s", targets=ics_target())
    p.write_config(p.config.read_text().replace(f"port: {acc.port}", f"port: {imap_proxy.port}"))
    d = daemons(p)
    d.wait(lambda: "20990112T090000" in d.calendar(), 20, "first sync")
    d.wait(lambda: "STATUS" in imap_proxy.verbs(), 10, "a scan through the proxy")
    imap_proxy.stop()  # the server is gone
    d.wait(lambda: "mailbox inbox: FAILED: mailbox 'inbox'" in d.stderr, 10, "the failure")
    assert "cannot connect" in d.stderr or "connection lost" in d.stderr
    p.edit("last_contact: 2099-01-05", "last_contact: 2099-01-06")  # the calendars still sync
    d.wait(lambda: "20990113T090000" in d.calendar(), 10, "a sync after the save")
    d.wait(lambda: len(re.findall(r"mailbox inbox: FAILED", d.stderr)) >= 2, 10, "a retry")
    assert re.search(r"mailbox inbox: trying again in 1s", d.stderr)
    assert d.proc.poll() is None
    assert acc.password not in d.stderr and os.environ[PW_ENV] not in d.stderr
    assert Path(p.dir).exists()
