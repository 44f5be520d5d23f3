"""A followsync project whose config has a `mail:` section pointing at a test Dovecot account
(tests/imapserver.py), and the mail a test appends to it."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.imapserver import Account, message
from tests.project import ICS_TARGET, Project, config_text

ME = "me@here.example"
TZ = ZoneInfo("Europe/Berlin")
PW_ENV = "FOLLOWSYNC_TEST_MAILPW"


def mail_entry(account: Account, name: str = "inbox", *, password_env: str = PW_ENV,
               folders: str = "", since: str = "2013-01-01", interval: str = "") -> str:
    """One entry of `mail:` (block style) for `account` over plain IMAP on loopback."""
    lines = [f"  - name: {name}", f"    host: {account.host}", f"    port: {account.port}",
             "    tls: none", f"    username: {account.username}",
             f"    password_env: {password_env}", f"    me: [{ME}]", f"    since: {since}"]
    lines += [f"    folders: {folders}"] if folders else []
    lines += [f"    interval: {interval}"] if interval else []
    return "\n".join(lines) + "\n"


def mail_project(project: Project, monkeypatch: pytest.MonkeyPatch, *accounts: Account,
                 leads: str, targets: str = ICS_TARGET, **entry: str) -> Project:
    """`project` with lead file `leads` and a mailbox per account (named inbox, inbox2, ...);
    the accounts' password (one for all) in $FOLLOWSYNC_TEST_MAILPW."""
    monkeypatch.setenv(PW_ENV, accounts[0].password)
    boxes = "".join(mail_entry(acc, "inbox" if i == 0 else f"inbox{i + 1}", **entry)
                    for i, acc in enumerate(accounts))
    project.write_leads(leads)
    project.write_config(config_text(targets, extra="mail:\n" + boxes))
    return project


def at(day: str, clock: str = "10:00") -> datetime:
    """A local time in the config's zone."""
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=TZ)


def mail_from(account: Account, who: str, day: str, subject: str, clock: str = "10:00",
              folder: str = "INBOX", msgid: str | None = None) -> None:
    """`who` wrote to me on `day` (appended with that date)."""
    when = at(day, clock)
    account.append(folder, message(frm=who, to=ME, subject=subject, date=when,
                                   message_id=msgid or f"<{day}.{clock}.{zlib.crc32(who.encode())}@t>"),
                   when)


def mail_to(account: Account, who: str, day: str, subject: str, clock: str = "10:00",
            folder: str = "Sent", msgid: str | None = None) -> None:
    """I wrote to `who` on `day` (appended to `folder`, created when missing)."""
    if folder not in account.folders():
        account.create_folder(folder)
    when = at(day, clock)
    account.append(folder, message(frm=f"Me <{ME}>", to=who, subject=subject, date=when,
                                   message_id=msgid or f"<{day}.{clock}.me.{zlib.crc32(who.encode())}@t>"),
                   when + timedelta(seconds=1), flags=[r"\Seen"])
