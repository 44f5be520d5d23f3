"""What a user is told when a password cannot be had (README "The config file"): a failing
`password_command`'s own last stderr line (never its stdout, never the password), and an
unset `password_env` explained for where followsync runs (a systemd unit or a shell)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from followsync.credentials import password_for
from followsync.errors import TargetError
from tests.imapserver import Account
from tests.mailproject import mail_project
from tests.project import Project


@dataclass(frozen=True)
class Entry:
    who: str = "mailbox inbox"
    username: str | None = "me@example.com"
    url: str | None = "imap://imap.example.com"
    password: str | None = None
    password_command: tuple[str, ...] | str | None = None
    password_env: str | None = None
    keyring: bool = False


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "pw.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o700)
    return str(path)


def failure(entry: Entry) -> TargetError:
    with pytest.raises(TargetError) as caught:
        password_for(entry)
    return caught.value


def test_a_failing_password_command_shows_its_last_stderr_line(tmp_path: Path) -> None:
    command = script(tmp_path, "echo 'gpg: starting' >&2\n"
                               "echo 'Error: mail/example is not in the password store.' >&2\n"
                               "exit 1\n")
    error = failure(Entry(password_command=command))
    assert error.message == ('password_command for mailbox "inbox" failed (exit 1): '
                             "Error: mail/example is not in the password store.")


def test_its_stdout_and_the_password_are_never_shown(tmp_path: Path) -> None:
    command = script(tmp_path, "echo Hunter2-secret\n"
                               "echo 'decryption failed for Hunter2-secret' >&2\nexit 2\n")
    error = failure(Entry(password_command=command))
    text = f"{error.message}\n{error.hint}\n{error!r}"
    assert "Hunter2" not in text
    assert error.message == ('password_command for mailbox "inbox" failed (exit 2): '
                             "decryption failed for ***")
    # only stdout, nothing on stderr: no line to show, and the password is not one
    error = failure(Entry(password_command=script(tmp_path, "echo Hunter2-secret\nexit 3\n")))
    assert error.message == 'password_command for mailbox "inbox" failed (exit 3)'
    assert "Hunter2" not in f"{error.message}\n{error.hint}"


def test_the_stderr_line_is_made_safe_for_a_terminal(tmp_path: Path) -> None:
    command = script(tmp_path, "printf 'bad \\033[31mred\\033[0m %s\\n\\n\\n' "
                               "$(head -c 600 /dev/zero | tr '\\0' x) >&2\nexit 4\n")
    error = failure(Entry(who="target phone", password_command=command))
    assert error.message.startswith('password_command for target "phone" failed (exit 4): '
                                    "bad ?[31mred?[0m xxx")
    assert "\x1b" not in error.message and len(error.message) < 300


def test_a_failing_password_command_of_a_mailbox_in_followsync_mail(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    p = mail_project(project, monkeypatch, imap_account,
                     leads="version: 1\nleads:\n  ann: {name: Ann, email: ann@x.example}\n")
    command = script(tmp_path, "echo Hunter2-secret\n"
                               "echo 'Error: mail/example is not in the password store.' >&2\n"
                               "exit 1\n")
    p.write_config(p.config.read_text().replace(
        "    password_env: FOLLOWSYNC_TEST_MAILPW\n", f"    password_command: {command}\n"))
    for verbose in (0, 2):
        code, out, err = p.run("mail", verbose=verbose)
        assert code == 3
        assert ('mailbox inbox: FAILED: password_command for mailbox "inbox" failed (exit 1): '
                "Error: mail/example is not in the password store.") in err
        assert "Hunter2" not in out + err


SYSTEMD = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")


@pytest.mark.parametrize("marker", SYSTEMD)
def test_an_unset_password_env_under_systemd_speaks_of_the_unit(
        monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    for name in SYSTEMD:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FS_TEST_PW", raising=False)
    monkeypatch.setenv(marker, "1")
    error = failure(Entry(password_env="FS_TEST_PW"))
    assert error.message == "mailbox inbox: $FS_TEST_PW is not set"
    assert "Environment=FS_TEST_PW=" in error.hint and "EnvironmentFile=" in error.hint
    assert "export" not in error.hint


def test_an_unset_password_env_in_a_shell_says_export(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SYSTEMD:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FS_TEST_PW", raising=False)
    error = failure(Entry(password_env="FS_TEST_PW"))
    assert "export FS_TEST_PW=" in error.hint
    assert "service" not in error.hint and "Environment=" not in error.hint
