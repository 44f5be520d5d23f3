"""The daemon and mail (README "Mail"), as a real process against a real Dovecot: a message
appended to INBOX moves the lead's calendar item within the mailbox's scan interval, and
within seconds through IDLE when the interval is an hour (a server without IDLE falls back to
the interval); a mailbox that cannot be reached is logged and retried while the calendars
keep syncing; one that refuses the login is tried once (counted in Dovecot's log) and again
only after SIGHUP or new credentials. The 6 hours' wait is `schedule.login_held`, a pure
function of the time: no test waits for it."""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from followsync import sync
from followsync.config import MailConfig, load_config
from followsync.errors import EXIT_TARGET
from followsync.schedule import login_held
from followsync.sources.idle import (
    SETTLED,
    InboxMark,
    InboxWatcher,
    asks_scan,
    failures_after,
    reconnect_delay,
)
from followsync.sync import SyncOptions
from tests.imapserver import Account, CountingProxy, Dovecot, message, running_dovecot
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


# ============================================================ a refused login (README "Mail")
def test_a_refused_login_waits_six_hours_on_the_daemons_clock() -> None:
    refused = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert login_held(refused, refused)
    assert login_held(refused, refused + timedelta(hours=5, minutes=59, seconds=59))
    assert not login_held(refused, refused + timedelta(hours=6))
    assert not login_held(refused, refused + timedelta(days=3))
    # a clock set back before the refusal does not hold the mailbox for an unknown time
    assert not login_held(refused, refused - timedelta(minutes=1))


def test_credentials_that_were_refused_are_not_tried_again_until_they_change(
        project: Project, imap_account: Account, imap_proxy: CountingProxy,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the daemon hands a sync after a refusal (`held`): with the same password (a
    password_command's output) and config entry, no connection at all; a new output of the
    command, or an edited entry, is tried at once."""
    acc = imap_account
    secret = tmp_path / "secret"
    secret.write_text("not-the-password\n")
    p = mail_project(project, monkeypatch, acc, leads=LEADS.format(day="2099-01-05"))
    p.write_config(p.config.read_text()
                   .replace(f"port: {acc.port}", f"port: {imap_proxy.port}")
                   .replace(f"password_env: {PW_ENV}", f"password_command: [cat, {secret}]"))
    now = datetime(2099, 1, 6, 10, 0, tzinfo=TZ)
    refused = sync.run(load_config(p.config), now).mailboxes[0]
    assert refused.exit_code == EXIT_TARGET and "login refused" in (refused.error or "")
    assert refused.refused is not None and "not-the-password" not in refused.refused
    held = {"inbox": refused.refused}
    imap_proxy.reset()
    again = sync.run(load_config(p.config), now, SyncOptions(held=held)).mailboxes[0]
    assert again.held and again.error is None and again.exit_code == 0
    assert "not tried: its login was refused" in again.summary()
    assert imap_proxy.commands == []  # not even a connection: nothing was sent
    # a run by hand (nothing held) always tries: exit 3 again
    assert sync.run(load_config(p.config), now).mailboxes[0].refused == refused.refused
    # an edited entry (another `since`) is tried, and refused again
    p.write_config(p.config.read_text().replace("since: 2013-01-01", "since: 2014-01-01"))
    edited = sync.run(load_config(p.config), now, SyncOptions(held=held)).mailboxes[0]
    assert edited.refused is not None and edited.refused != refused.refused
    # the password source gives another password: tried at once, and it works
    secret.write_text(acc.password + "\n")
    imap_proxy.reset()
    fixed = sync.run(load_config(p.config), now,
                     SyncOptions(held={"inbox": edited.refused})).mailboxes[0]
    assert fixed.error is None and not fixed.held and "LOGIN" in imap_proxy.verbs()
    wait_until(lambda: acc.server.refused_logins(acc.username) == 3, 10, "Dovecot's log")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"no {what} within {timeout} s"
        time.sleep(0.02)


def test_the_daemon_tries_a_refused_login_once_and_again_on_sighup_or_a_config_change(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch,
        daemons: Callable[[Project], Daemon]) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS.format(day="2099-01-05"),
                     interval="1s", targets=ics_target())
    monkeypatch.setenv(PW_ENV, "not-the-password")
    monkeypatch.setenv(PW_ENV + "_OK", acc.password)
    d = daemons(p)
    d.wait(lambda: "20990112T090000" in d.calendar(), 20, "first sync")  # calendars still sync
    d.wait(lambda: acc.server.refused_logins(acc.username) == 1, 20, "the refused login")
    held = "mailbox inbox: not tried: its login was refused"
    # three rounds at the mailbox's 1 s interval looked at it and left it alone
    d.wait(lambda: d.stderr.count(held) >= 3, 20, "three rounds that do not log in")
    assert acc.server.refused_logins(acc.username) == 1
    lines = [line for line in d.stderr.splitlines() if "login refused" in line]
    assert len(lines) == 1, d.stderr
    assert "mailbox 'inbox'" in lines[0] and "SIGHUP" in lines[0] and "6h" in lines[0]
    assert "trying again in" not in d.stderr  # no back-off retries of a refused login

    d.proc.send_signal(signal.SIGHUP)  # "try again now"
    d.wait(lambda: acc.server.refused_logins(acc.username) == 2, 20, "a login after SIGHUP")
    d.wait(lambda: d.stderr.count("login refused") == 2, 10, "its log line")
    after = d.stderr.count(held)
    d.wait(lambda: d.stderr.count(held) >= after + 3, 20, "three more rounds")
    assert acc.server.refused_logins(acc.username) == 2

    # the config names another password: tried at once, and the mailbox is scanned again
    p.write_config(p.config.read_text().replace(f"password_env: {PW_ENV}",
                                                f"password_env: {PW_ENV}_OK"))
    d.wait(lambda: acc.server.logins(acc.username) >= 1, 20, "the login with the new config")
    d.wait(lambda: re.search(r"mailbox inbox: 0 new touches", d.stderr), 10, "a scan")
    assert acc.server.refused_logins(acc.username) == 2
    assert acc.password not in d.stderr and "not-the-password" not in d.stderr


# ============================================================ IDLE (README "Mail")
def test_a_reply_reaches_the_calendar_within_seconds_through_idle(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch,
        daemons: Callable[[Project], Daemon]) -> None:
    acc = imap_account
    today = datetime.now(TZ).date()
    p = mail_project(project, monkeypatch, acc, targets=ics_target(), interval="1h",
                     leads=LEADS.format(day=today - timedelta(days=3)))
    d = daemons(p)
    first = f"DTSTART;TZID=Europe/Berlin:{today + timedelta(days=4):%Y%m%d}T090000"
    d.wait(lambda: first in d.calendar(), 20, "first sync")
    d.wait(lambda: "mailbox inbox: watching INBOX (IDLE)" in d.stderr, 20, "the IDLE watch")
    now = datetime.now(TZ)
    acc.append("INBOX", message(frm="Dana <dana@acme.example>", to=ME, subject="Re: news",
                                date=now, message_id="<idle@acme.example>"), now)
    moved = f"DTSTART;TZID=Europe/Berlin:{now.date() + timedelta(days=7):%Y%m%d}T090000"
    took = d.wait(lambda: moved in d.calendar(), 15, "calendar item moved (the interval is 1h)")
    print(f"append → calendar moved through IDLE: {took:.2f} s")
    d.proc.send_signal(signal.SIGTERM)  # ends within seconds, the watcher with it
    assert d.proc.wait(5) == 0
    assert "internal error" not in d.stderr


@pytest.fixture(scope="module")
def dovecot_without_idle() -> Iterator[Dovecot]:
    """A Dovecot that does not offer IDLE (its CAPABILITY as Dovecot's, less IDLE)."""
    yield from running_dovecot(extra="imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
                                     "ENABLE LITERAL+ NAMESPACE UIDPLUS SPECIAL-USE")


def test_a_server_without_idle_is_looked_at_every_interval(
        project: Project, dovecot_without_idle: Dovecot, monkeypatch: pytest.MonkeyPatch,
        daemons: Callable[[Project], Daemon]) -> None:
    acc = dovecot_without_idle.new_account()
    today = datetime.now(TZ).date()
    p = mail_project(project, monkeypatch, acc, targets=ics_target(), interval="2s",
                     leads=LEADS.format(day=today - timedelta(days=3)))
    d = daemons(p)
    d.wait(lambda: "mailbox inbox: the server does not offer IDLE" in d.stderr, 20,
           "the fallback's log line")
    assert "looked for every 2s" in d.stderr
    now = datetime.now(TZ)
    acc.append("INBOX", message(frm="Dana <dana@acme.example>", to=ME, subject="Re: news",
                                date=now, message_id="<noidle@acme.example>"), now)
    moved = f"DTSTART;TZID=Europe/Berlin:{now.date() + timedelta(days=7):%Y%m%d}T090000"
    d.wait(lambda: moved in d.calendar(), 2 + 10, "calendar item moved at the interval")
    assert d.stderr.count("does not offer IDLE") == 1  # said once, not at every scan


def test_the_watcher_renews_idle_and_reconnects_after_a_cut(
        imap_account: Account, imap_proxy: CountingProxy) -> None:
    acc = imap_account
    box = MailConfig(name="inbox", host=acc.host, port=imap_proxy.port, tls="none",
                     username=acc.username, password=acc.password, interval=timedelta(hours=1))
    news: list[float] = []
    ends: list[str] = []
    watcher = InboxWatcher(box, lambda: news.append(time.monotonic()),
                           on_refused=lambda digest, exc: ends.append("refused"),
                           on_no_idle=lambda: ends.append("no idle"), renew=0.3).start()
    try:
        wait_until(lambda: imap_proxy.verbs().count("IDLE") >= 3, 10, "IDLE renewed")
        assert imap_proxy.verbs().count("DONE") >= 2  # each renewal ends the one before
        assert "EXAMINE" in imap_proxy.verbs() and "SELECT" not in imap_proxy.verbs()
        assert len(news) == 1  # a scan for what came before INBOX was examined
        imap_proxy.cut()  # the connection is gone (server restart, NAT timeout)
        wait_until(lambda: imap_proxy.verbs().count("LOGIN") == 2, 10, "a reconnection")
        wait_until(lambda: imap_proxy.verbs().count("IDLE") >= 5, 10, "IDLE again")
        assert len(news) == 1  # INBOX as it was: no scan asked for (the interval's is enough)
        acc.append("INBOX", message(frm="dana@acme.example", to=ME, subject="hi"))
        wait_until(lambda: len(news) == 2, 10, "new mail seen")
    finally:
        watcher.stop()
    assert watcher.join(3), "the watcher did not end within 3 s"
    assert ends == []
    assert imap_proxy.verbs()[-2:] == ["DONE", "LOGOUT"]


def test_the_watcher_works_over_implicit_tls(dovecot_tls: Dovecot) -> None:
    """Over TLS, bytes already decrypted are invisible to select(): the watcher still sees
    each new message."""
    acc = dovecot_tls.new_account()
    box = MailConfig(name="inbox", host=acc.host, port=dovecot_tls.tls_port, tls="implicit",
                     username=acc.username, password=acc.password)
    news: list[float] = []
    watcher = InboxWatcher(box, lambda: news.append(time.monotonic()), on_refused=print,
                           on_no_idle=print,
                           ssl_context=ssl.create_default_context(cafile=dovecot_tls.cafile))
    watcher.start()
    try:
        wait_until(lambda: len(news) == 1, 10, "the watch's start (INBOX examined)")
        for n in range(3):
            acc.append("INBOX", message(frm="dana@acme.example", to=ME, subject=f"hi {n}"))
            wait_until(lambda n=n: len(news) == n + 2, 10, f"new mail {n + 1} seen")
    finally:
        watcher.stop()
    assert watcher.join(3)


def test_the_watcher_reconnects_after_the_server_says_bye(imap_account: Account) -> None:
    acc = imap_account
    box = MailConfig(name="inbox", host=acc.host, port=acc.port, tls="none",
                     username=acc.username, password=acc.password)
    news: list[float] = []
    watcher = InboxWatcher(box, lambda: news.append(time.monotonic()), on_refused=print,
                           on_no_idle=print).start()
    try:
        wait_until(lambda: len(news) == 1, 10, "the watch's start")
        acc.server.kick(acc.username)  # `* BYE Server shutting down.`
        # mail while it is away (it reconnects after 1 s): INBOX changed, a scan is asked for
        acc.append("INBOX", message(frm="dana@acme.example", to=ME, subject="hi"))
        wait_until(lambda: acc.server.logins(acc.username) == 2, 10, "a reconnection")
        wait_until(lambda: len(news) == 2, 10, "a scan asked for after reconnecting")
        acc.append("INBOX", message(frm="dana@acme.example", to=ME, subject="hi again"))
        wait_until(lambda: len(news) == 3, 10, "new mail seen")
    finally:
        watcher.stop()
    assert watcher.join(3)


def test_a_connection_cut_right_after_idle_is_retried_with_a_growing_back_off(
        imap_account: Account, imap_proxy: CountingProxy, caplog: pytest.LogCaptureFixture
        ) -> None:
    """A proxy that drops every connection as soon as IDLE started: the logins that work
    do not reset the back-off (1 s, then 30 s, ...), INBOX unchanged asks for no scan
    after the first, and the trouble is logged once (the rest at DEBUG)."""
    acc = imap_account
    imap_proxy.on_idle = "cut"
    box = MailConfig(name="inbox", host=acc.host, port=imap_proxy.port, tls="none",
                     username=acc.username, password=acc.password, interval=timedelta(hours=1))
    news: list[float] = []
    ends: list[str] = []
    caplog.set_level(logging.DEBUG, logger="followsync")
    watcher = InboxWatcher(box, lambda: news.append(time.monotonic()),
                           on_refused=lambda digest, exc: ends.append("refused"),
                           on_no_idle=lambda: ends.append("no idle")).start()
    try:
        wait_until(lambda: imap_proxy.verbs().count("LOGIN") == 2, 10, "a reconnection")
        time.sleep(4)  # without the back-off: a login and a scan every second
        assert imap_proxy.verbs().count("LOGIN") == 2  # the next one waits 30 s
        assert len(news) == 1
        assert watcher.alive and ends == []
    finally:
        watcher.stop()
    assert watcher.join(3)
    lost = [r for r in caplog.records if "connecting again" in r.getMessage()]
    assert [r.levelno for r in lost] == [logging.INFO, logging.DEBUG]
    assert "connecting again in 30 s" in lost[1].getMessage()


def test_a_server_that_refuses_idle_is_left_to_the_interval_scan(
        imap_account: Account, imap_proxy: CountingProxy) -> None:
    """IDLE answered NO (a proxy, a policy): the watcher ends like on a server without
    IDLE, instead of logging in again and again."""
    acc = imap_account
    imap_proxy.on_idle = "refuse"
    box = MailConfig(name="inbox", host=acc.host, port=imap_proxy.port, tls="none",
                     username=acc.username, password=acc.password)
    ends: list[str] = []
    watcher = InboxWatcher(box, lambda: None,
                           on_refused=lambda digest, exc: ends.append("refused"),
                           on_no_idle=lambda: ends.append("no idle")).start()
    try:
        wait_until(lambda: ends != [], 10, "the watcher's end")
    finally:
        watcher.stop()
    assert watcher.join(3)
    assert ends == ["no idle"]
    assert imap_proxy.verbs().count("LOGIN") == 1


def test_the_reconnect_back_off_grows_while_each_session_ends_at_once() -> None:
    """An hour against a server that drops each session 0.1 s after it started: a
    handful of logins (1 s, 30 s, 1 min, 2 min, 4 min, then every 5 min), not 3600."""
    interval = timedelta(minutes=5)
    now, failures, logins = 0.0, 0, []
    while now < 3600:
        logins.append(now)
        failures = failures_after(failures, lasted=0.1, renewed=False)
        now += 0.1 + reconnect_delay(failures, interval)
    waits = [round(b - a - 0.1) for a, b in itertools.pairwise(logins)]
    assert waits[:6] == [1, 30, 60, 120, 240, 300]
    assert len(logins) == 16  # 6 until the back-off reached 5 min, then 10 more


def test_a_session_that_lasted_or_renewed_resets_the_back_off() -> None:
    assert failures_after(5, lasted=SETTLED, renewed=False) == 1  # 1 s, as after a NAT cut
    assert failures_after(5, lasted=2.0, renewed=True) == 1
    assert failures_after(5, lasted=SETTLED - 1, renewed=False) == 6
    assert reconnect_delay(1, timedelta(minutes=5)) == 1.0
    assert reconnect_delay(50, timedelta(minutes=5)) == 300.0


def test_a_reconnect_asks_for_a_scan_when_inbox_changed_or_an_interval_passed() -> None:
    seen = InboxMark(exists=3, uidvalidity=7, uidnext=10)
    hour = 3600.0
    assert asks_scan(None, seen, asked_at=None, now=5.0, interval=hour)  # the first watch
    assert not asks_scan(seen, seen, asked_at=5.0, now=65.0, interval=hour)
    assert asks_scan(seen, seen, asked_at=5.0, now=5.0 + hour, interval=hour)
    assert asks_scan(seen, InboxMark(3, 7, 11), asked_at=5.0, now=6.0, interval=hour)  # new
    assert asks_scan(seen, InboxMark(4, 7, 10), asked_at=5.0, now=6.0, interval=hour)
    assert asks_scan(seen, InboxMark(3, 8, 10), asked_at=5.0, now=6.0, interval=hour)


def test_a_watch_that_works_again_says_so_once_and_ends_the_back_off(
        imap_account: Account, imap_proxy: CountingProxy, caplog: pytest.LogCaptureFixture
        ) -> None:
    """Dropped watches (the back-off reaches the 2 s interval), then a proxy that lets IDLE
    be: one INFO line when the trouble starts, one when a watch renewed, none between."""
    acc = imap_account
    imap_proxy.on_idle = "cut"
    box = MailConfig(name="inbox", host=acc.host, port=imap_proxy.port, tls="none",
                     username=acc.username, password=acc.password, interval=timedelta(seconds=2))
    caplog.set_level(logging.DEBUG, logger="followsync")
    watcher = InboxWatcher(box, lambda: None, on_refused=print, on_no_idle=print, renew=0.3)
    watcher.start()
    try:
        wait_until(lambda: imap_proxy.verbs().count("LOGIN") == 3, 10, "two reconnections")
        imap_proxy.on_idle = None
        wait_until(lambda: "watching INBOX (IDLE) again" in caplog.text, 10, "the recovery")
        logins = imap_proxy.verbs().count("LOGIN")
        # renewed twice: the first renewal is then surely done (the proxy sees a renewal's
        # IDLE before the watcher has its answer, and a cut then is a drop of a new watch)
        wait_until(lambda: imap_proxy.verbs().count("IDLE") >= logins + 3, 10, "IDLE renewed")
        imap_proxy.cut()  # a drop after a watch that lasted: 1 s again, said again
        wait_until(lambda: imap_proxy.verbs().count("LOGIN") == logins + 1, 5, "a reconnection")
    finally:
        watcher.stop()
    assert watcher.join(3)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    lost = [m for m in said if "connecting again" in m]
    # the drop after the recovery was retried after 1 s (the wait above; the back-off had
    # reached 30 s); whether its line is INFO again raced with the cut in 2 of 3 full runs
    assert 1 <= len(lost) <= 2 and all("connecting again in 1 s" in m for m in lost)
    assert sum("watching INBOX (IDLE) again" in m for m in said) == 1
