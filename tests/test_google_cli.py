"""`type: google` through the command line, against the emulation (tests/googleemu.py):
config checks, `followsync auth` end to end with another process acting as the browser,
sync / plan / calendars, invalid_grant, no secret in any output, and the fault property."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.cli import main
from tests.googleemu import FAULTS, GoogleEmu

NOW = "2026-03-02T10:00"
LEADS = """version: 1
leads:
  dana: {name: Dana Whitfield, last_contact: 2026-02-01}
  sam: {name: Sam Ortiz, last_contact: 2026-01-15, status: waiting}
  lee: {name: Lee Park, last_contact: 2026-02-20}
"""
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[GoogleEmu]:
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("FOLLOWSYNC_NOW", raising=False)
    made = GoogleEmu().start()
    try:
        yield made
    finally:
        made.stop()


def project(folder: Path, emu: GoogleEmu, extra: str = "", calendar: str = "Follow-ups"
            ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.yaml").write_text(LEADS)
    (folder / "client.json").write_text(json.dumps({"installed": {
        "client_id": emu.client_id, "client_secret": emu.client_secret,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token"}}))
    config = folder / "config.yaml"
    config.write_text("leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                      "targets:\n  - name: work\n    type: google\n"
                      f"    calendar: {calendar}\n    client_secret: client.json\n"
                      f"    endpoint: {emu.url}\n    timeout: 5\n{extra}")
    return config


def run(config: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "--now", NOW, *args])
    return code, out.getvalue() + err.getvalue()


def sign_in(config: Path, emu: GoogleEmu, *extra: str) -> tuple[int, str]:
    """`followsync auth work --no-browser` in a process; this test is the browser: it reads
    the printed URL, opens it, and follows Google's redirect to followsync's loopback port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "followsync", "--config", str(config), "auth", "work",
         "--no-browser", "-vv", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)", line)
        if found:
            with urllib.request.urlopen(found.group(1), timeout=10) as page:
                assert b"Signed in" in page.read()
            break
    out, err = process.communicate(timeout=30)
    return process.returncode, "".join(seen) + err + out


def secrets_of(emu: GoogleEmu) -> list[str]:
    return [emu.client_secret, *emu.refresh_tokens, *emu.access_tokens]


def test_config_checks_for_google_targets(emu: GoogleEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu, extra="    url: https://x.example/\n")
    code, out = run(config, "validate")
    assert code == 1 and "google target does not take url" in out
    assert re.search(r"config\.yaml:\d+:\d+:", out)
    config = project(tmp_path, emu, extra="    auth_prot: 8765\n")
    code, out = run(config, "validate")
    assert code == 1 and "did you mean 'auth_port'" in out
    (tmp_path / "client.json").unlink()
    config.write_text(config.read_text().replace("    auth_prot: 8765\n", ""))
    code, out = run(config, "validate")
    assert code == 1 and "client_secret file of target 'work' does not exist" in out
    assert re.search(r"config\.yaml:8:20:", out)
    caldav = tmp_path / "c.yaml"
    caldav.write_text("leads: leads.yaml\ntargets:\n  - name: p\n    type: caldav\n"
                      "    url: https://x.example/\n    auth_port: 8765\n")
    code, out = run(caldav, "validate")
    assert code == 1 and "does not take auth_port" in out


def test_auth_then_sync_then_a_no_op_of_one_request(emu: GoogleEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu, extra="    auth_port: 0\n".replace("0", str(_free())))
    code, out = run(config, "sync")
    assert code == 3 and "followsync auth work" in out  # not signed in yet
    code, out = sign_in(config, emu)
    assert code == 0, out
    assert "signed in" in out
    token_file = tmp_path / "state" / "google-work.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.parent.stat().st_mode & 0o077 == 0  # the state folder made private
    code, out = run(config, "plan")
    assert code == 0, out
    assert [c.summary for c in emu.calendars.values()] == ["me@example.com"]  # plan: none made
    code, out = run(config, "-vv", "sync")
    assert code == 0, out
    cal = emu.calendar("Follow-ups").id
    assert len(emu.live(cal)) == 3
    code, out = run(config, "sync")  # sees its own writes
    emu.reset_log()
    code, out = run(config, "-vv", "sync")
    assert code == 0, out
    assert len(emu.api_requests()) == 1, [(s.method, s.path) for s in emu.requests]
    assert not [s for s in emu.requests if s.path == "/token"]
    code, out = run(config, "calendars")
    assert code == 0 and "* Follow-ups" in out and "me@example.com" in out
    for secret in secrets_of(emu):
        assert secret not in out


def test_a_lasting_rate_limit_fails_the_target_cleanly_after_backing_off(
        emu: GoogleEmu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google answers 429 to everything: the sync backs off as Google asks (growing waits,
    a few minutes at most in all: no test sleeps, the waits are recorded), then reports the
    target's failure (exit 3) with a hint, never a traceback."""
    config = project(tmp_path, emu)
    refresh, _ = emu.issue_tokens()
    from followsync.googleauth import GoogleSettings, TokenStore

    TokenStore(GoogleSettings("work", "Follow-ups", tmp_path / "client.json",
                              tmp_path / "state"), emu.client_id).keep_refresh(refresh)
    assert run(config, "sync")[0] == 0
    waits: list[float] = []
    monkeypatch.setattr("followsync.backends.davhttp.time.sleep", waits.append)
    emu.faults.update({emu.api_number + n: "429" for n in range(1, 60)})
    code, out = run(config, "sync")
    assert code == 3, out
    assert "work: Google keeps failing: HTTP 429 (rateLimitExceeded)" in out, out
    assert "the next sync retries" in out and "Traceback" not in out
    # the quick look before the sync (2 short waits), then the sync's own back-off
    quick, full = waits[:2], waits[2:]
    assert len(full) == 8 and sum(quick) <= 10, waits
    assert 1 <= full[0] <= 2 and 32 <= full[-1] <= 64 and full[:5] == sorted(full[:5])
    assert sum(waits) <= 310


def test_a_deleted_and_a_moved_event_are_respected(emu: GoogleEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    refresh, _ = emu.issue_tokens()
    from followsync.googleauth import GoogleSettings, TokenStore

    TokenStore(GoogleSettings("work", "Follow-ups", tmp_path / "client.json",
                              tmp_path / "state"), emu.client_id).keep_refresh(refresh)
    assert run(config, "sync")[0] == 0
    cal = emu.calendar("Follow-ups").id
    events = sorted(emu.live(cal), key=lambda e: e["summary"])
    gone, moved = events[0], events[1]
    emu.delete_event(cal, gone["id"])
    moved["start"] = {"dateTime": "2026-03-20T15:00:00+01:00", "timeZone": "Europe/Berlin"}
    moved["end"] = {"dateTime": "2026-03-20T15:15:00+01:00", "timeZone": "Europe/Berlin"}
    emu.put_event(cal, moved, moved["id"])
    before = {e["id"]: e["etag"] for e in emu.live(cal)}
    code, out = run(config, "sync")
    assert code == 0, out
    assert {e["id"]: e["etag"] for e in emu.live(cal)} == before  # neither undone
    code, out = run(config, "agenda", "--days", "30")
    assert "2026-03-20" in out


def test_invalid_grant_is_exit_3_with_what_to_do_and_no_secret(emu: GoogleEmu,
                                                                tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out = sign_in(config, emu)
    assert code == 0, out
    emu.invalid_grant = True
    emu.expire_access_tokens()
    code, out = run(config, "-vv", "sync")
    assert code == 3
    assert "invalid_grant" in out and "followsync auth work" in out
    assert "7 days" in out and "Testing" in out
    for secret in secrets_of(emu):
        assert secret not in out


def test_the_sign_in_output_holds_no_secret(emu: GoogleEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out = sign_in(config, emu)
    assert code == 0, out
    assert "code_challenge=" in out and "client_secret" not in out
    for secret in secrets_of(emu):
        assert secret not in out
    codes = re.findall(r"code=([^&\s]+)", out)
    assert not codes  # the authorization code never shown either


def _free() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faults=st.dictionaries(st.integers(1, 12), st.sampled_from(FAULTS), max_size=4))
def test_faults_then_a_clean_sync_converge_without_duplicates(
        emu: GoogleEmu, tmp_path_factory: pytest.TempPathFactory, faults: dict[int, str]
) -> None:
    """Drops, 5xx, 412, 409, 410, 429 and rate limits at random requests of a first sync, of
    a sync after a lead changes and of one after a foreign event appears; then clean syncs
    converge: one event per follow-up, none twice, the foreign events untouched."""
    folder = tmp_path_factory.mktemp("fault")
    config = project(folder, emu, calendar=f"F-{folder.name}")
    refresh, _ = emu.issue_tokens()
    from followsync.googleauth import GoogleSettings, TokenStore

    TokenStore(GoogleSettings("work", "x", folder / "client.json", folder / "state"),
               emu.client_id).keep_refresh(refresh)
    from unittest import mock

    cal = emu.add_calendar(f"F-{folder.name}").id
    foreign = emu.put_event(cal, {"summary": "Dentist", "start": {"date": "2026-03-05"},
                                  "end": {"date": "2026-03-06"}, "iCalUID": "dentist@x"})
    with mock.patch("followsync.backends.davhttp.time.sleep"):
        base = emu.api_number
        emu.faults.update({base + n: kind for n, kind in faults.items()})
        run(config, "sync")  # calendarList, events.list, 3 inserts
        (folder / "leads.yaml").write_text(LEADS.replace("2026-02-20", "2026-02-25")
                                           .replace("  sam:", "  kim: {name: Kim Lo, "
                                                    "last_contact: 2026-02-10}\n  sam:"))
        run(config, "sync")  # events.list, an insert, an update
        run(config, "sync")
        assert not emu.faults or min(emu.faults) > emu.api_number
        emu.faults.clear()
        for _ in range(2):
            code, out = run(config, "sync")
        assert code == 0, out
    live = emu.live(cal)
    owned = [e for e in live if "followsync_uid" in
             (e.get("extendedProperties") or {}).get("private", {})]
    uids = [e["extendedProperties"]["private"]["followsync_uid"] for e in owned]
    assert len(uids) == len(set(uids)) == 4, out
    assert next(e for e in live if e["id"] == foreign["id"])["etag"] == foreign["etag"]
    emu.reset_log()
    code, out = run(config, "sync")
    assert code == 0, out
    assert len(emu.api_requests()) == 1, out  # converged: the next sync is a no-op


def test_a_no_op_after_the_access_token_expired_refreshes_once(emu: GoogleEmu,
                                                                tmp_path: Path) -> None:
    """The no-op check opens the target read-only; the refreshed access token is still kept,
    so the next no-op asks for none."""
    config = project(tmp_path, emu)
    assert sign_in(config, emu)[0] == 0
    assert run(config, "sync")[0] == 0
    assert run(config, "sync")[0] == 0
    emu.expire_access_tokens()
    emu.reset_log()
    assert run(config, "sync")[0] == 0
    assert [s.path for s in emu.requests if not s.api] == ["/token"]
    emu.reset_log()
    assert run(config, "sync")[0] == 0
    assert len(emu.requests) == len(emu.api_requests()) == 1


def test_auth_of_a_google_mailbox_asks_for_the_mail_scope(emu: GoogleEmu, tmp_path: Path
                                                          ) -> None:
    """`followsync auth NAME` for an `auth: google` mailbox (not only for targets): the
    loopback sign-in with the mail scope, kept in the mailbox's own token file."""
    config = project(tmp_path, emu)
    config.write_text(config.read_text() + "mail:\n  - name: gmail\n    host: imap.gmail.com\n"
                      "    username: me@example.com\n    auth: google\n"
                      f"    client_secret: client.json\n    endpoint: {emu.url}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "followsync", "--config", str(config), "auth", "gmail",
         "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)", line)
        if found:
            assert "scope=https%3A%2F%2Fmail.google.com%2F" in found.group(1)
            with urllib.request.urlopen(found.group(1), timeout=10) as page:
                assert b"Signed in" in page.read()
            break
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, "".join(seen) + err + out
    assert "gmail: signed in" in out
    assert (tmp_path / "state" / "google-mail-gmail.json").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "state" / "google-work.json").exists()
