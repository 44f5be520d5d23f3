"""Secrets and files (issue 6, item 6): `password_command` is never run through a shell, no
secret appears in any output at any verbosity (whatever the password's source, whatever
happens), the state dir is private, and a password in a config others can read is refused.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from followsync.cli import main
from tests.hostile_server import HostileServer
from tests.project import Project, caldav_target, cli
from tests.servers import CalendarInfo

NOW = "2026-03-02T10:00"
LEADS = "version: 1\nleads:\n  dana: {name: Dana, last_contact: 2026-02-01}\n"


def write(folder: Path, target: str, mode: int = 0o600, state: str = "state") -> Path:
    project = Project(folder, NOW)
    project.write_leads(LEADS)
    return project.write_config(targets=target, state_dir=state, mode=mode)


def run(config: Path, *args: str) -> tuple[int, str]:
    code, out, err = cli(config, *args, now=NOW)
    return code, out + err


def phone_target(url: str, user: str, source: str, calendar: str = "") -> str:
    return caldav_target(url, calendar=calendar, username=user, timeout=5,
                         password_source=source)


# ------------------------------------------------------------------- password_command
@pytest.fixture
def catcher() -> Iterator[HostileServer]:
    """A server answering 401 to everything: it shows which password was sent."""
    with HostileServer("unauthorized") as server:
        yield server


def sent_password(server: HostileServer) -> str:
    """The password sent with the one request (Basic goes with it to a loopback server)."""
    (request,) = server.seen()
    scheme, token = request.headers["authorization"].split(" ", 1)
    assert scheme == "Basic"
    return base64.b64decode(token).decode().split(":", 1)[1]


def test_password_command_is_not_run_through_a_shell(tmp_path: Path,
                                                     catcher: HostileServer) -> None:
    """`;`, `$(...)`, backticks, `|`, `>`, `&&` and `$VAR` are plain words: the command is
    split like a shell would split words (quotes work), then run directly."""
    made = [tmp_path / f"pwned{i}" for i in range(5)]
    command = (f"echo 'pa ss' $(touch {made[0]}) `touch {made[1]}` ; touch {made[2]} | "
               f"tee {made[3]} > {made[4]} && $HOME")
    config = write(tmp_path, phone_target(catcher.url, "alice",
                                           f'    password_command: "{command}"\n'))
    code, text = run(config, "sync")
    assert code == 3 and "authentication refused" in text, text
    for path in made:
        assert not path.exists(), f"{path.name} was created: a shell ran the command"
    assert sent_password(catcher) == (
        f"pa ss $(touch {made[0]}) `touch {made[1]}` ; touch {made[2]} | tee {made[3]} "
        f"> {made[4]} && $HOME")
    assert "pa ss" not in text


def test_password_command_as_a_list_is_run_as_is(tmp_path: Path,
                                                 catcher: HostileServer) -> None:
    config = write(tmp_path, phone_target(catcher.url, "alice",
                                           '    password_command: [printf, "%s", "a;b $(c)"]\n'))
    code, _ = run(config, "sync")
    assert code == 3
    assert sent_password(catcher) == "a;b $(c)"


def test_a_failing_password_command_never_shows_its_stdout(tmp_path: Path,
                                                           catcher: HostileServer) -> None:
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\necho TopSecret-out\necho 'no such entry' >&2\nexit 7\n")
    script.chmod(0o700)
    config = write(tmp_path, phone_target(catcher.url, "alice",
                                           f"    password_command: {script}\n"))
    code, text = run(config, "-vv", "sync")
    assert code == 3
    # its last stderr line says why (tests/test_credentials_messages.py); stdout never shows
    assert 'password_command for target "phone" failed (exit 7): no such entry' in text
    assert "TopSecret" not in text
    assert catcher.seen() == []  # nothing was sent without a password


# --------------------------------------------------------------- no secret in any output
SECRET_SOURCES = ["password_command", "password_env", "password"]


def source_lines(kind: str, secret: str, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "password_command":
        script = folder / "pw.sh"
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{secret}'\n")
        script.chmod(0o700)
        return f"    password_command: {script}\n"
    if kind == "password_env":
        return "    password_env: FOLLOWSYNC_TEST_SECRET\n"
    return f'    password: "{secret}"\n'


def everything_shown(config: Path, expect: int, *commands: list[str]) -> list[str]:
    """What each command printed (`sync` and `calendars` must exit `expect`), and every file
    of the state: the places a secret must never appear."""
    texts = []
    for args in commands:
        code, text = run(config, *args)
        if args[-1] in ("sync", "calendars"):
            assert code == expect, (args, text)
        texts.append(text)
    texts += [path.read_bytes().decode("latin-1")
              for path in (config.parent / "state").rglob("*") if path.is_file()]
    return texts


def forms(user: str, secret: str) -> list[str]:
    """The secret as it could leak: itself, and inside a Basic Authorization header."""
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return [secret, token, token[:-4]]


def scan(texts: list[str], secret_forms: list[str]) -> None:
    for text in texts:
        for form in secret_forms:
            assert form not in text, f"a secret in the output: ...{text[:300]}"


@pytest.mark.parametrize("kind", SECRET_SOURCES)
def test_no_secret_in_any_output_against_a_real_server(
        kind: str, radicale_calendar: CalendarInfo, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command, at -vv and at the default level, with the right password, a wrong
    one, and the server gone: the password shows nowhere, nor in the state files."""
    cal = radicale_calendar
    texts = []
    for secret, expect in ((cal.password or "", 0), ("Wr0ng-Pa55-" + kind, 3)):
        folder = tmp_path / f"{expect}"
        monkeypatch.setenv("FOLLOWSYNC_TEST_SECRET", secret)
        config = write(folder, phone_target(cal.url, cal.username or "", source_lines(
            kind, secret, folder), calendar=cal.calendar_name))
        texts += everything_shown(config, expect, ["-vv", "sync"], ["sync"], ["-vv", "plan"],
                                  ["-v", "calendars"], ["calendars"], ["-vv", "validate"],
                                  ["-vv", "agenda", "--json"])
        scan(texts, forms(cal.username or "", secret))
    # the server is gone: retries, errors and all
    folder = tmp_path / "gone"
    monkeypatch.setenv("FOLLOWSYNC_TEST_SECRET", cal.password or "")
    config = write(folder, phone_target("http://127.0.0.1:9/", cal.username or "",
                                         source_lines(kind, cal.password or "", folder)))
    code, text = run(config, "-vv", "sync")
    assert code == 3 and "unreachable" in text, text
    scan([text], forms(cal.username or "", cal.password or ""))


@pytest.mark.parametrize("mode", ["redirect", "malformed", "huge_length", "entity_bomb"])
def test_no_secret_in_the_output_of_a_hostile_server_case(mode: str, tmp_path: Path) -> None:
    secret = "Pa55-hostile-" + mode
    with HostileServer("ok", "127.0.0.2") as other, \
            HostileServer(mode, location=other.url) as server:
        config = write(tmp_path, phone_target(server.url, "alice",
                                               f'    password: "{secret}"\n'))
        code, text = run(config, "-vv", "sync")
        assert code == 3, text
        scan([text], forms("alice", secret))
        assert other.seen() == []


def test_no_digest_secret_in_any_output(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Against a Digest server (Baïkal's default): neither the password, nor the HA1 (the
    password's stand-in), nor any Authorization header sent shows in any output, at any
    verbosity, with the right password and a wrong one."""
    import hashlib

    from tests.digestproxy import DIGEST_PASSWORD, DIGEST_USER, start_digest_proxy
    from tests.servers import drop_calendar, fresh_calendar

    radicale_server = request.getfixturevalue("radicale_server")
    proxy = start_digest_proxy(radicale_server, algorithms=("SHA-256", "MD5"))
    request.addfinalizer(proxy.stop)
    cal = fresh_calendar(radicale_server)
    try:
        texts: list[str] = []
        secrets: list[str] = []
        firsts: list[int] = []  # where each config's (state folder's) requests start
        for secret, expect in ((DIGEST_PASSWORD, 0), ("Wr0ng-D1gest-Pa55", 3)):
            firsts.append(len(proxy.authorizations))
            folder = tmp_path / f"{expect}"
            config = write(folder, phone_target(proxy.url_for(cal.url), DIGEST_USER,
                                                f'    password: "{secret}"\n',
                                                calendar=cal.calendar_name))
            texts += everything_shown(config, expect, ["-vv", "sync"], ["sync"],
                                      ["-vv", "calendars"], ["-vv", "plan"])
            for name in ("md5", "sha256"):
                secrets.append(hashlib.new(
                    name, f"{DIGEST_USER}:{proxy.realm}:{secret}".encode()).hexdigest())
            secrets += forms(DIGEST_USER, secret)
        # Basic only with the very first request of each config to this (loopback) server,
        # before it asked for Digest (kept in that config's state folder); never after
        sent = proxy.authorizations
        first = [sent[i] for i in firsts]
        rest = [a for i, a in enumerate(sent) if i not in firsts]
        assert all(a.startswith("Basic ") for a in first), sent
        assert rest and all(a.startswith("Digest ") for a in rest), sent
        secrets += first
        for header in rest:
            secrets += [header, header.split("response=", 1)[1].split(",", 1)[0].strip('"')]
        scan(texts, secrets)
    finally:
        drop_calendar(cal)


# --------------------------------------------------------------------- files and modes
def test_the_state_dir_is_created_private(tmp_path: Path) -> None:
    config = write(tmp_path, "  - {name: file, type: ics, path: out.ics}\n",
                   state="deep/er/state")
    old = os.umask(0o022)
    try:
        code, text = run(config, "sync")
    finally:
        os.umask(old)
    assert code == 0, text
    state = tmp_path / "deep" / "er" / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "lock").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o750, 0o701])
def test_a_state_dir_others_may_enter_is_refused_and_left_as_it_is(
        tmp_path: Path, mode: int) -> None:
    """README, "What followsync keeps": the state folder is 0700, refused otherwise, before
    anything is read from it or written to it (and not quietly made private: someone may
    have changed it meanwhile)."""
    config = write(tmp_path, "  - {name: file, type: ics, path: out.ics}\n")
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    for command in ("sync", "plan", "agenda"):
        code, text = run(config, command)
        assert code == 1, (command, text)
        assert f"cannot use the state folder {state}: others may read or enter it " \
               f"(mode {mode:04o}; it must be 0700)" in text
        assert f"hint: run `chmod 700 {state}`" in text
    assert stat.S_IMODE(state.stat().st_mode) == mode
    assert list(state.iterdir()) == [] and not (tmp_path / "out.ics").exists()
    state.chmod(0o700)
    assert run(config, "sync")[0] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "  - {name: file, type: ics, path: out.ics}\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    code, text = run(config, "sync")
    assert code == 1
    assert f"cannot use the state folder {state}: it belongs to another user (uid 65534)" in text
    assert f"chown {os.geteuid()} {state}" in text
    assert list(state.iterdir()) == [] and not (tmp_path / "out.ics").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_a_password_in_a_config_others_can_read_is_refused(mode: int, tmp_path: Path,
                                                           catcher: HostileServer) -> None:
    secret = "In-The-Config-42"
    config = write(tmp_path, phone_target(catcher.url, "alice", f'    password: "{secret}"\n'),
                   mode=mode)
    for args in (["sync"], ["-vv", "validate"], ["plan"]):
        code, text = run(config, *args)
        assert code == 1, (args, text)
        assert "has a password in a config file others can read" in text
        assert f"chmod 600 {config}" in text
        scan([text], forms("alice", secret))
    assert catcher.seen() == []  # refused before anything was sent


def test_a_password_in_a_private_config_works_with_a_warning(
        tmp_path: Path, catcher: HostileServer) -> None:
    secret = "In-The-Config-43"
    config = write(tmp_path, phone_target(catcher.url, "alice", f'    password: "{secret}"\n'))
    code, text = run(config, "sync")
    assert code == 3  # the catcher refuses it, but it was used
    assert "the password is written in the config" in text
    assert sent_password(catcher) == secret
    scan([text], forms("alice", secret))


def test_validate_warns_when_a_password_env_variable_is_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd the daemon sees only its unit's environment: a variable set in the
    user's shell alone is a common trap, so `validate` says so (a warning, exit 0)."""
    config = write(tmp_path, phone_target("https://dav.example/", "alice",
                                           "    password_env: FOLLOWSYNC_TEST_UNSET\n"))
    monkeypatch.delenv("FOLLOWSYNC_TEST_UNSET", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "validate"])
    assert code == 0
    assert out.getvalue().startswith("ok: ")
    assert err.getvalue() == (
        "warning: target 'phone': $FOLLOWSYNC_TEST_UNSET (password_env) is not set here; the "
        "daemon run by systemd needs it set in its unit (README, \"Running as a service\")\n")
    monkeypatch.setenv("FOLLOWSYNC_TEST_UNSET", "x")
    assert run(config, "validate") == (0, f"ok: {config} and 1 lead in {tmp_path / 'leads.yaml'}\n")


def test_a_missing_keyring_package_says_how_to_install_it_from_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # import keyring → ImportError
    config = write(tmp_path, phone_target("http://127.0.0.1:9/", "alice", "    keyring: true\n"))
    code, text = run(config, "sync")
    assert code == 3
    assert "pipx install --force '.[caldav,keyring]'" in text
    assert "followsync[" not in text


def test_no_google_token_or_secret_in_any_output(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A google target (against tests/googleemu.py): signed in, with expired access tokens,
    with a dead refresh token (invalid_grant), and with the endpoint gone — the client secret,
    the tokens and the authorization code show in no output at any verbosity, nor in the
    state database (the token file in the state folder holds them, mode 0600)."""
    import json

    from tests.googleemu import GoogleEmu
    from tests.test_google_cli import sign_in

    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    emu = GoogleEmu().start()
    try:
        (tmp_path / "client.json").write_text(json.dumps({"installed": {
            "client_id": emu.client_id, "client_secret": emu.client_secret}}))
        target = ("  - name: work\n    type: google\n    calendar: Follow-ups\n"
                  f"    client_secret: client.json\n    endpoint: {emu.url}\n    timeout: 5\n")
        config = write(tmp_path, target)
        texts = []
        code, text = sign_in(config, emu)
        assert code == 0, text
        texts.append(text)
        commands = (["-vv", "sync"], ["sync"], ["-vv", "plan"], ["-v", "calendars"],
                    ["calendars"], ["-vv", "validate"], ["-vv", "agenda", "--json"])
        for setup in ("fine", "expired", "invalid_grant"):
            if setup == "expired":
                emu.expire_access_tokens()
            if setup == "invalid_grant":
                emu.expire_access_tokens()
                emu.invalid_grant = True
            for args in commands:
                code, text = run(config, *args)
                if args[-1] in ("sync", "calendars"):
                    assert code == (3 if setup == "invalid_grant" else 0), (setup, args, text)
                texts.append(text)
        token_file = tmp_path / "state" / "google-work.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file() and path != token_file:
                texts.append(path.read_bytes().decode("latin-1"))
        secrets = emu.secrets()
    finally:
        emu.stop()
    emu.invalid_grant = False
    code, text = run(config, "-vv", "sync")  # the endpoint is gone
    assert code == 3, text
    texts.append(text)
    assert len(secrets) >= 4
    scan(texts, secrets)
