"""Secrets for targets and mailboxes: password_command, password_env, the
keyring, or the password in the config — in that order (README, "The config file").

A secret is never logged or shown: errors name where it was looked for, not what was found.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import unicodedata
from collections.abc import Mapping
from typing import Protocol

from followsync.errors import TargetError

COMMAND_TIMEOUT = 30  # seconds a password_command may take


class Secured(Protocol):
    """What a config entry that logs in says about its secret."""

    @property
    def who(self) -> str: ...  # "target NAME" or "mailbox NAME", for messages
    @property
    def username(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def password_command(self) -> tuple[str, ...] | str | None: ...
    @property
    def password_env(self) -> str | None: ...
    @property
    def keyring(self) -> bool: ...


def password_for(entry: Secured) -> str | None:
    """The entry's password from the command, the environment, the keyring or the file."""
    if entry.password_command:
        return _from_command(entry.who, entry.password_command)
    if entry.password_env:
        value = os.environ.get(entry.password_env)
        if value is None:
            raise TargetError(f"{entry.who}: ${entry.password_env} is not set",
                              unset_hint(entry.password_env, os.environ))
        return value
    if entry.keyring:
        return _from_keyring(entry.who, f"{entry.username}@{entry.url}")
    return entry.password


def _from_command(name: str, command: tuple[str, ...] | str) -> str:
    argv = list(command) if isinstance(command, tuple) else shlex.split(command)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise TargetError(f"{name}: password_command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise TargetError(f"{name}: password_command took longer than "
                          f"{COMMAND_TIMEOUT} s") from None
    if done.returncode != 0:
        kind, _, label = name.partition(" ")
        said = last_line(done.stderr, secrets=done.stdout)
        raise TargetError(f'password_command for {kind} "{label}" failed (exit '
                          f"{done.returncode})" + (f": {said}" if said else ""),
                          "run it by hand to see the whole message (what it prints on stdout "
                          "is never shown)")
    return done.stdout.decode("utf-8", errors="replace").rstrip("\r\n")


def last_line(stderr: bytes, *, secrets: bytes, width: int = 200) -> str:
    """The last non-empty line a failing command wrote on stderr, safe to show: every line
    of its stdout (where a password would be) replaced by ***, no control characters, at
    most `width` characters."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    text = lines[-1]
    hidden = sorted({ln.strip() for ln in secrets.decode("utf-8", "replace").splitlines()
                     if ln.strip()}, key=len, reverse=True)
    for secret in hidden:
        text = text.replace(secret, "***")
    text = "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)
    return text if len(text) <= width else text[:width - 1] + "…"


SYSTEMD_MARKS = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")


def unset_hint(variable: str, environ: Mapping[str, str]) -> str:
    """How to set a password_env variable where followsync runs: a systemd unit (it sets
    one of SYSTEMD_MARKS for its services) sees only the unit's environment; a shell, what
    was exported in it."""
    if any(environ.get(mark) for mark in SYSTEMD_MARKS):
        return (f"followsync runs under systemd here, which passes only the unit's "
                f"environment: add Environment={variable}=... with `systemctl --user edit "
                f"followsync`, or EnvironmentFile= naming a file only you can read that holds "
                f"{variable}=..., then restart it (README, \"Running as a service\")")
    return (f"export {variable}=... in this shell before running followsync (or use "
            "password_command, e.g. pass show ...)")


def _from_keyring(name: str, account: str) -> str:
    try:
        import keyring
    except ImportError:
        raise TargetError("keyring: true needs the keyring package",
                          "followsync is not on the package index: from its checkout, "
                          "pipx install --force '.[caldav,keyring]'") from None
    value = keyring.get_password("followsync", account)
    if value is None:
        raise TargetError(f"{name}: no password in the keyring for {account}",
                          f"keyring set followsync {account}")
    return str(value)


def auth_refused(who: str, url: str) -> TargetError:
    """The one message for a server that refused our credentials (`who`: "user NAME", or
    "no user name given")."""
    return TargetError(f"authentication refused for {who} at {url}",
                       "check username and password (iCloud and Fastmail need an "
                       "app-specific password)")
