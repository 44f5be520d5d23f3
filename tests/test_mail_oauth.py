"""OAuth mailboxes (README "Mail", `auth: microsoft` and `auth: google`): IMAP with XOAUTH2
against Debian's Dovecot whose oauth2 passdb asks an emulator's introspection endpoint
(tests/googleemu.py for Gmail, tests/msemu.py for Outlook), and accepts no password at all.

Proved here, end to end through the CLI: mail touches arrive; an access token the server no
longer accepts is refreshed once and the login goes on; a sign-in the provider revoked is
exit 3 for that mailbox with the calendars still synced and `followsync auth NAME` named;
the daemon does not log in again with a refused sign-in until a new one; no token or secret
shows in any output, at any verbosity."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from followsync import googleauth, sync
from followsync.config import load_config
from followsync.errors import EXIT_TARGET
from followsync.msauth import IMAP_SCOPES
from followsync.sources.mail import Mailbox, MailError, MailLoginRefused, connect, xoauth2
from followsync.sources.scan import mailbox_of
from followsync.sync import SyncOptions
from tests.googleemu import GoogleEmu
from tests.googleemu import running as google_running
from tests.imapserver import (
    Account,
    CountingProxy,
    Dovecot,
    DovecotMissing,
    free_port,
    start_dovecot,
)
from tests.mailproject import ME, TZ, mail_from
from tests.msemu import MsEmu
from tests.msemu import running as ms_running
from tests.project import Project

LEADS = """\
version: 1
defaults: {cadence: [1mo, 2mo, 3mo], give_up_after: 3}
leads:
  dana:
    name: Dana Whitfield
    org: Acme Corp
    email: dana@acme.example
"""
DANA = "Dana Whitfield <dana@acme.example>"
GMAIL_SCOPE = "https://mail.google.com/"
ROOT = Path(__file__).resolve().parent.parent


def unfolded(project: Project) -> str:
    return project.ics.read_text().replace("\n ", "")


def google_logins(emu: GoogleEmu) -> int:
    """Logins Dovecot was asked for: each asks the introspection endpoint once (Dovecot logs
    an oauth2 refusal as "user disabled", without a count of attempts)."""
    return len([r for r in emu.requests if r.path == "/introspect"])


# ============================================================ Gmail: auth: google
@pytest.fixture
def gmail(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GoogleEmu, Dovecot]]:
    """googleemu, and a TLS Dovecot that takes only XOAUTH2/OAUTHBEARER tokens the
    emulator says are active and hold Gmail's scope (as Gmail's IMAP does)."""
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    with google_running() as emu:
        try:
            server = start_dovecot(tls=True, oauth2=emu.url + "/introspect",
                                   oauth2_scope=GMAIL_SCOPE)
        except DovecotMissing as exc:
            pytest.skip(str(exc))
        monkeypatch.setenv("SSL_CERT_FILE", server.cafile)  # the mailbox trusts it
        try:
            yield emu, server
        finally:
            server.stop()


def gmail_account(emu: GoogleEmu, server: Dovecot) -> Account:
    """The test's own way in (to append mail): a token of its own with the mail scope."""
    return server.new_account(user=emu.primary,
                              token=lambda: emu.issue_tokens(GMAIL_SCOPE)[1])


def gmail_project(project: Project, emu: GoogleEmu, server: Dovecot, *, extra: str = ""
                  ) -> Project:
    (project.dir / "client.json").write_text(json.dumps({"installed": {
        "client_id": emu.client_id, "client_secret": emu.client_secret}}))
    project.write_leads(LEADS)
    project.write_config(project.config.read_text() + f"""\
mail:
  - name: gmail
    host: 127.0.0.1
    port: {server.tls_port}
    username: {emu.primary}
    auth: google
    client_secret: client.json
    endpoint: {emu.url}
    me: [{ME}]
    since: 2013-01-01
{extra}""")
    return project


def browser(emu: GoogleEmu) -> Callable[[str], None]:
    """`say` for googleauth.sign_in: this test is the user, who opens the printed URL (the
    emulator redirects to followsync's loopback port at once)."""
    def say(text: str) -> None:
        found = re.search(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)", text)
        assert found is not None, text

        def open_it() -> None:
            with urllib.request.urlopen(found.group(1), timeout=10) as page:
                page.read()

        threading.Thread(target=open_it, daemon=True).start()
    return say


def google_sign_in(project: Project, emu: GoogleEmu, name: str = "gmail") -> str:
    """What `followsync auth gmail` does for an `auth: google` mailbox."""
    box = next(b for b in load_config(project.config).mailboxes if b.name == name)
    said: list[str] = []
    user = browser(emu)

    def say(text: str) -> None:
        said.append(text)
        user(text)

    where = googleauth.sign_in(googleauth.settings_for(box), open_browser=False, say=say)
    return where + "\n".join(said)


def test_gmail_mail_touches_arrive_over_xoauth2(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    emu, server = gmail
    acc = gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    said = google_sign_in(p, emu)
    assert "scope=https%3A%2F%2Fmail.google.com%2F" in said  # the mail scope, nothing more
    assert "calendar" not in said.split("scope=", 1)[1].split("&", 1)[0]
    assert (p.state / "google-mail-gmail.json").exists()  # a token file of its own
    assert not (p.state / "google-gmail.json").exists()
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
    code, out, err = p.run("sync", verbose=2)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("mailbox gmail: 1 new touch"), out
    assert "DTSTART;TZID=Europe/Berlin:20261220T090000" in unfolded(p)  # 11-20 + 1mo
    assert server.logins(emu.primary) >= 2  # the test's append, then followsync's scan
    for secret in emu.secrets():
        assert secret not in out + err


def test_followsync_auth_signs_a_gmail_mailbox_in_with_the_mail_scope(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    """`followsync auth gmail --no-browser` as a process (this test is the browser) on a
    fixed `auth_port:`, then a sync reads the mail; no secret in any output."""
    emu, server = gmail
    acc = gmail_account(emu, server)
    port = free_port()
    p = gmail_project(project, emu, server, extra=f"    auth_port: {port}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "followsync", "-vv", "--config", str(p.config), "auth", "gmail",
         "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)", line)
        if found:
            assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2F" in found.group(1)
            assert "scope=https%3A%2F%2Fmail.google.com%2F&" in found.group(1)
            with urllib.request.urlopen(found.group(1), timeout=10) as page:
                assert b"Signed in" in page.read()
            break
    out, err = process.communicate(timeout=30)
    said = "".join(seen) + out + err
    assert process.returncode == 0, said
    assert "gmail: signed in" in said and "mailbox gmail" in said
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
    code, sync_out, sync_err = p.run("sync", verbose=2)
    assert code == 0 and "mailbox gmail: 1 new touch" in sync_out, sync_out + sync_err
    for secret in emu.secrets():
        assert secret not in said + sync_out + sync_err


def test_gmail_an_expired_access_token_is_refreshed_and_the_login_goes_on(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    emu, server = gmail
    acc = gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    google_sign_in(p, emu)
    assert p.run("sync")[0] == 0
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
    emu.expire_access_tokens()  # the kept token still looks valid to followsync
    before = len([r for r in emu.requests if r.path == "/token"])
    logins = google_logins(emu)
    code, out, err = p.run("sync", verbose=2)
    assert code == 0, out + err
    assert "mailbox gmail: 1 new touch" in out
    assert len([r for r in emu.requests if r.path == "/token"]) == before + 1  # one refresh
    assert google_logins(emu) == logins + 2  # the stale token, then the fresh one
    for secret in emu.secrets():
        assert secret not in out + err


def test_gmail_a_revoked_sign_in_is_exit_3_and_the_calendar_is_still_synced(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    emu, server = gmail
    gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    google_sign_in(p, emu)
    assert p.run("sync")[0] == 0
    emu.expire_access_tokens()
    emu.invalid_grant = True  # the user removed followsync's access
    p.edit("    org: Acme Corp", "    org: Acme Inc")
    code, out, err = p.run("sync", verbose=2)
    assert code == EXIT_TARGET, out + err
    assert "mailbox gmail: FAILED" in err and "followsync auth gmail" in err
    assert "file: 1 created" in out or "file: 0 created, 1 updated" in out
    assert "Acme Inc" in unfolded(p)
    for secret in emu.secrets():
        assert secret not in out + err


def test_a_mailbox_never_signed_in_is_exit_3_naming_the_command_without_a_login(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    emu, server = gmail
    gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    logins = google_logins(emu)
    code, out, err = p.run("sync")
    assert code == EXIT_TARGET
    assert "(127.0.0.1:" in err and "): not signed in to Google" in err  # said once
    assert "followsync auth gmail" in err and "mailbox gmail: mailbox gmail" not in err
    assert google_logins(emu) == logins  # nothing was sent to the server
    assert "file: 1 created" in out  # the calendars are still synced


def test_gmail_a_token_without_the_mail_scope_is_refused(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    """A calendar sign-in's token is not a mail one: the server refuses it (after one
    refresh, which keeps the calendar scope), exit 3 naming `followsync auth gmail`."""
    emu, server = gmail
    gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    box = load_config(p.config).mailboxes[0]
    settings = googleauth.settings_for(box)
    refresh, access = emu.issue_tokens()  # the calendar scope
    store = googleauth.TokenStore(settings, emu.client_id)
    store.keep_refresh(refresh)
    store.keep_access(access, 3600)
    logins = google_logins(emu)
    code, out, err = p.run("sync")
    assert code == EXIT_TARGET
    assert "the OAuth sign-in was refused" in err and "followsync auth gmail" in err
    assert "IMAP may be disabled" not in err  # Microsoft's hint only
    assert google_logins(emu) == logins + 2  # the kept token, then a refreshed one
    for secret in emu.secrets():
        assert secret not in out + err


def test_a_password_login_fails_on_the_oauth_only_server(
        gmail: tuple[GoogleEmu, Dovecot]) -> None:
    emu, server = gmail
    acc = gmail_account(emu, server)
    imap = imaplib.IMAP4(server.host, server.port, timeout=10)
    try:
        assert "AUTH=XOAUTH2" in imap.capabilities and "AUTH=PLAIN" not in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(acc.username, acc.password)
        with pytest.raises(imaplib.IMAP4.error):
            imap.authenticate("PLAIN", lambda _: f"\0{acc.username}\0{acc.password}".encode())
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


class FakeTokens:
    """A TokenSource handing out given tokens, counting refreshes."""

    def __init__(self, access: str, fresh: str) -> None:
        self.kept, self.fresh, self.refreshes = access, fresh, 0

    def access(self) -> str:
        return self.kept

    def refresh(self) -> str:
        self.refreshes += 1
        self.kept = self.fresh
        return self.fresh


def test_a_refused_token_is_refreshed_once_then_the_login_is_refused(
        gmail: tuple[GoogleEmu, Dovecot]) -> None:
    """Dovecot answers a bad token Gmail's way (a base64 JSON continuation, then NO):
    the scan answers it, refreshes once, and after a second refusal gives up with
    MailLoginRefused whose text holds no token."""
    emu, server = gmail
    gmail_account(emu, server)
    tokens = FakeTokens("ya29.dead-1", "ya29.dead-2")
    logins = google_logins(emu)
    box = Mailbox("gmail", server.host, emu.primary, "", port=server.tls_port,
                  auth="google", tokens=tokens)
    with pytest.raises(MailLoginRefused) as caught, connect(box, 10, None):
        pass
    assert tokens.refreshes == 1
    text = f"{caught.value.message} {caught.value.hint}"
    assert "ya29.dead" not in text and "followsync auth gmail" in text
    assert "AUTHENTICATIONFAILED" in text or "Authentication failed" in text
    assert google_logins(emu) == logins + 2
    # a good token after a refusal: logged in on the same connection
    good = FakeTokens("ya29.dead-3", emu.issue_tokens(GMAIL_SCOPE)[1])
    ok = Mailbox("gmail", server.host, emu.primary, "", port=server.tls_port, auth="google",
                 tokens=good)
    with connect(ok, 10, None) as imap:
        assert imap.state == "AUTH"
    assert good.refreshes == 1


def test_the_xoauth2_string_is_the_documented_one() -> None:
    # Google's and Microsoft's documentation: user=…^Aauth=Bearer …^A^A (before base64)
    assert xoauth2("me@x.example", "tok") == b"user=me@x.example\x01auth=Bearer tok\x01\x01"


def test_an_oauth_mailbox_never_resolves_a_password(
        project: Project, gmail: tuple[GoogleEmu, Dovecot],
        monkeypatch: pytest.MonkeyPatch) -> None:
    emu, server = gmail
    p = gmail_project(project, emu, server)

    def no(*_args: object) -> str:
        raise AssertionError("a password was looked for")

    monkeypatch.setattr("followsync.credentials.password_for", no)
    box = load_config(p.config).mailboxes[0]
    mailbox = mailbox_of(box, datetime(2026, 1, 1).date())
    assert mailbox.password == "" and mailbox.tokens is not None


# ============================================================ the daemon's `held`
def test_a_refused_sign_in_is_held_until_a_new_sign_in(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    """What the daemon hands a sync after a refusal (`held`): the same kept sign-in is not
    tried again (no connection, no token request); a new `followsync auth` is tried at
    once, and works."""
    emu, server = gmail
    acc = gmail_account(emu, server)
    p = gmail_project(project, emu, server)
    proxy = CountingProxy(server.host, server.tls_port).start()
    try:
        p.write_config(p.config.read_text().replace(f"port: {server.tls_port}",
                                                    f"port: {proxy.port}"))
        google_sign_in(p, emu)
        emu.expire_access_tokens()
        emu.invalid_grant = True
        now = datetime(2026, 12, 1, 10, 0, tzinfo=TZ)
        refused = sync.run(load_config(p.config), now).mailboxes[0]
        assert refused.exit_code == EXIT_TARGET and refused.refused is not None
        assert "followsync auth gmail" in f"{refused.error} {refused.hint}"
        for secret in emu.secrets():
            assert secret not in refused.refused
        held = {"gmail": refused.refused}
        proxy.reset()
        tokens_before = len([r for r in emu.requests if r.path == "/token"])
        again = sync.run(load_config(p.config), now, SyncOptions(held=held)).mailboxes[0]
        assert again.held and again.error is None and again.exit_code == 0
        assert "not tried" in again.summary() and "followsync auth gmail" in again.summary()
        assert proxy.commands == []  # not even a connection
        assert len([r for r in emu.requests if r.path == "/token"]) == tokens_before
        # the user signs in again: tried at once, and the mail is read
        emu.invalid_grant = False
        mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
        google_sign_in(p, emu)
        fixed = sync.run(load_config(p.config), now, SyncOptions(held=held)).mailboxes[0]
        assert fixed.error is None and not fixed.held and len(fixed.found) == 1
    finally:
        proxy.stop()


def test_the_held_digest_of_a_sign_in_changes_only_with_a_new_sign_in(
        project: Project, gmail: tuple[GoogleEmu, Dovecot]) -> None:
    from followsync.sources.scan import login_digest

    emu, server = gmail
    p = gmail_project(project, emu, server)
    box = load_config(p.config).mailboxes[0]
    google_sign_in(p, emu)
    first = login_digest(box, mailbox_of(box, datetime(2026, 1, 1).date()))
    assert first == login_digest(box, mailbox_of(box, datetime(2026, 1, 1).date()))
    kept = googleauth.TokenStore(googleauth.settings_for(box), emu.client_id)
    kept.keep_access("ya29.another-access", 3600)  # a refresh: the same sign-in
    assert login_digest(box, mailbox_of(box, datetime(2026, 1, 1).date())) == first
    google_sign_in(p, emu)
    assert login_digest(box, mailbox_of(box, datetime(2026, 1, 1).date())) != first


# ============================================================ Outlook: auth: microsoft
@pytest.fixture
def outlook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MsEmu, Dovecot]]:
    """msemu (Entra ID's token endpoint, and an introspection endpoint that takes only
    unexpired tokens for Exchange's IMAP), and a TLS Dovecot checking tokens with it."""
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    # the config's `verify:` must be what counts for the sign-in (set on test machines too)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with ms_running() as emu:
        try:
            server = start_dovecot(tls=True, oauth2=emu.introspection_url)
        except DovecotMissing as exc:
            pytest.skip(str(exc))
        monkeypatch.setenv("SSL_CERT_FILE", server.cafile)  # the mailbox trusts Dovecot
        try:
            yield emu, server
        finally:
            server.stop()


def outlook_account(emu: MsEmu, server: Dovecot) -> Account:
    return server.new_account(user=emu.user, token=lambda: emu.issue_tokens(IMAP_SCOPES)[0])


def outlook_project(project: Project, emu: MsEmu, server: Dovecot, *,
                    username: str | None = None, port: int | None = None) -> Project:
    project.write_leads(LEADS)
    project.write_config(project.config.read_text() + f"""\
mail:
  - name: outlook
    host: 127.0.0.1
    port: {port or server.tls_port}
    username: {username or emu.user}
    auth: microsoft
    client_id: {emu.client_id}
    endpoint: {emu.url}
    verify: {emu.ca_path}
    timeout: 10
    me: [{ME}]
    since: 2013-01-01
""")
    return project


def ms_sign_in(project: Project, emu: MsEmu, name: str = "outlook") -> str:
    """`followsync auth NAME` as a process (helper B's device flow); this test is the user
    who enters the code it prints (emu.approve) while it polls."""
    process = subprocess.Popen(
        [sys.executable, "-m", "followsync", "-vv", "--config", str(project.config), "auth",
         name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"enter the code (\S+)", line)
        if found:
            emu.approve(found.group(1))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(seen) + out + err
    return "".join(seen) + out + err


def ms_tokens_kept(project: Project, emu: MsEmu, user: str | None = None) -> None:
    """A sign-in written where msauth keeps it, without the device flow."""
    from followsync import msauth

    box = load_config(project.config).mailboxes[0]
    access, refresh = emu.issue_tokens(IMAP_SCOPES, user)
    store = msauth.store_for(msauth.settings_for(box))
    store.keep_refresh(refresh)
    store.keep_access(access, 3600, "imap_")


def test_outlook_mail_touches_arrive_over_xoauth2(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    emu, server = outlook
    acc = outlook_account(emu, server)
    p = outlook_project(project, emu, server)
    said = ms_sign_in(p, emu)
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
    logins = len(emu.introspections())
    code, out, err = p.run("sync", verbose=2)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("mailbox outlook: 1 new touch"), out
    assert "DTSTART;TZID=Europe/Berlin:20261220T090000" in unfolded(p)
    assert len(emu.introspections()) == logins + 1  # one login, with the kept token
    for secret in emu.secrets():
        assert secret not in out + err + said


def test_outlook_an_expired_access_token_is_refreshed_and_the_login_goes_on(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    emu, server = outlook
    acc = outlook_account(emu, server)
    p = outlook_project(project, emu, server)
    ms_tokens_kept(p, emu)
    assert p.run("sync")[0] == 0
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
    emu.expire_access_tokens()  # followsync's copy still looks valid for the hour
    tokens, logins = len(emu.token_requests()), len(emu.introspections())
    code, out, err = p.run("sync", verbose=2)
    assert code == 0, out + err
    assert "mailbox outlook: 1 new touch" in out
    assert len(emu.token_requests()) == tokens + 1  # one refresh
    assert len(emu.introspections()) == logins + 2  # the stale token, then the fresh one
    for secret in emu.secrets():
        assert secret not in out + err


def test_outlook_a_revoked_sign_in_is_exit_3_and_the_calendar_is_still_synced(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    emu, server = outlook
    outlook_account(emu, server)
    p = outlook_project(project, emu, server)
    ms_tokens_kept(p, emu)
    assert p.run("sync")[0] == 0
    emu.expire_access_tokens()
    emu.revoke_refresh_tokens(700082)  # 90 days unused
    p.edit("    org: Acme Corp", "    org: Acme Inc")
    code, out, err = p.run("sync", verbose=2)
    assert code == EXIT_TARGET, out + err
    assert "mailbox outlook: FAILED" in err and "followsync auth outlook" in err
    assert "file: 0 created, 1 updated" in out
    assert "Acme Inc" in unfolded(p)
    for secret in emu.secrets():
        assert secret not in out + err


def test_outlook_a_token_for_another_account_is_refused_with_the_admin_hint(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    """The server refuses the token (here: it is another account's; on Outlook also when
    the administrator disabled IMAP for the mailbox): one refresh, refused again, exit 3
    with both ways out."""
    emu, server = outlook
    outlook_account(emu, server)
    server.new_account(user="other@contoso.example")
    p = outlook_project(project, emu, server, username="other@contoso.example")
    ms_tokens_kept(p, emu)  # signed in as me@contoso.example
    tokens, logins = len(emu.token_requests()), len(emu.introspections())
    code, out, err = p.run("sync")
    assert code == EXIT_TARGET
    assert "the OAuth sign-in was refused for 'other@contoso.example'" in err
    assert "followsync auth outlook" in err and "IMAP may be disabled" in err
    assert len(emu.token_requests()) == tokens + 1
    assert len(emu.introspections()) == logins + 2
    for secret in emu.secrets():
        assert secret not in out + err


class FakeOutlook:
    """Outlook's IMAP as seen from a client on a refusal: implicit TLS, AUTH=XOAUTH2, and
    `NO AUTHENTICATE failed.` straight after the client's response, with no detail."""

    def __init__(self, cert: Path, key: Path, challenge: bytes = b"") -> None:
        self.challenge = challenge  # sent with the refusal (Gmail's way), as given
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.responses: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            raw, _ = self.listener.accept()
            with self.context.wrap_socket(raw, server_side=True) as conn:
                reader = conn.makefile("rb")
                conn.sendall(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n")
                for line in reader:
                    tag, _, command = line.decode().strip().partition(" ")
                    verb = command.split(" ")[0].upper()
                    if verb == "CAPABILITY":
                        conn.sendall(b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 "
                                     b"SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE "
                                     b"LITERAL+\r\n" + f"{tag} OK CAPABILITY completed.\r\n"
                                     .encode())
                    elif verb == "AUTHENTICATE":
                        conn.sendall(b"+ \r\n")
                        self.responses.append(reader.readline().strip())
                        if self.challenge:
                            conn.sendall(b"+ " + self.challenge + b"\r\n")
                            reader.readline()
                        conn.sendall(f"{tag} NO AUTHENTICATE failed.\r\n".encode())
                    elif verb == "LOGOUT":
                        conn.sendall(f"* BYE\r\n{tag} OK LOGOUT completed.\r\n".encode())
                        return
                    else:
                        conn.sendall(f"{tag} BAD Command Error. 12\r\n".encode())

    def close(self) -> None:
        self.listener.close()


def test_outlooks_bare_refusal_is_refreshed_once_then_refused_with_the_admin_hint(
        outlook: tuple[MsEmu, Dovecot]) -> None:
    _emu, server = outlook
    fake = FakeOutlook(server.base / "cert.pem", server.base / "key.pem")
    tokens = FakeTokens("eyJ.stale", "eyJ.fresh")
    box = Mailbox("outlook", "127.0.0.1", "me@contoso.example", "", port=fake.port,
                  auth="microsoft", tokens=tokens)
    try:
        with pytest.raises(MailLoginRefused) as caught, connect(box, 10, None):
            pass
    finally:
        fake.close()
    assert tokens.refreshes == 1
    sent = [base64.b64decode(r) for r in fake.responses]
    assert sent == [xoauth2("me@contoso.example", "eyJ.stale"),
                    xoauth2("me@contoso.example", "eyJ.fresh")]
    text = f"{caught.value.message} {caught.value.hint}"
    assert "AUTHENTICATE failed." in text and "eyJ." not in text
    assert "followsync auth outlook" in text and "IMAP may be disabled" in text


# ============================================================ the daemon (a real process)
def test_the_daemon_does_not_retry_a_refused_sign_in_until_a_new_one(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    """`followsync run`: a revoked sign-in is tried once (one login, one refresh), then left
    alone round after round (no login, no token request) with one line naming `followsync
    auth outlook`; the calendars keep syncing; `followsync auth outlook` run meanwhile is
    noticed at the next round and the mail is read. No token in the log (-v)."""
    from tests.test_mail_daemon import Daemon

    emu, server = outlook
    acc = outlook_account(emu, server)
    p = outlook_project(project, emu, server)
    p.write_config(p.config.read_text().replace("    since: 2013-01-01\n",
                                                "    since: 2013-01-01\n    interval: 1s\n"))
    ms_tokens_kept(p, emu)
    emu.expire_access_tokens()
    emu.revoke_refresh_tokens(700082)
    tokens, logins = len(emu.token_requests()), len(emu.introspections())
    d = Daemon(p)
    try:
        d.wait(lambda: "not logging in to it again" in d.stderr, 20, "the refusal")
        held = "mailbox outlook: not tried: its login was refused"
        d.wait(lambda: d.stderr.count(held) >= 3, 20, "three rounds that do not log in")
        assert len(emu.token_requests()) == tokens + 1  # the one refresh, refused
        assert len(emu.introspections()) == logins + 1  # the one login, refused
        lines = [line for line in d.stderr.splitlines() if "not logging in to it again" in line]
        assert len(lines) == 1, d.stderr
        assert "followsync auth outlook" in lines[0] and "SIGHUP" in lines[0]
        assert "trying again in" not in d.stderr
        assert "BEGIN:VEVENT" in d.calendar()  # the calendars still sync
        # the user signs in again while the daemon runs: tried at the next round
        mail_from(acc, DANA, "2026-11-20", "Re: the marketing role")
        said = ms_sign_in(p, emu)
        d.wait(lambda: "mailbox outlook: 1 new touch" in d.stderr, 20, "a scan after sign-in")
        for secret in emu.secrets():
            assert secret not in d.stderr + said
    finally:
        d.stop()


def test_the_idle_watcher_logs_in_with_the_sign_in_and_a_refusal_is_reported_once(
        project: Project, outlook: tuple[MsEmu, Dovecot]) -> None:
    """The daemon's IDLE watch of INBOX (sources/idle.py) logs in as the scans do: it sees
    new mail; once the sign-in is revoked, the next login is refused and reported (with
    what was tried, never a token), and the watcher ends instead of retrying."""
    from followsync.sources.idle import InboxWatcher
    from followsync.sources.scan import login_digest
    from tests.imapserver import message
    from tests.test_mail_daemon import wait_until

    emu, server = outlook
    acc = outlook_account(emu, server)
    p = outlook_project(project, emu, server)
    ms_tokens_kept(p, emu)
    box = load_config(p.config).mailboxes[0]
    news: list[int] = []
    refused: list[tuple[str, str]] = []
    watcher = InboxWatcher(box, lambda: news.append(1),
                           on_refused=lambda tried, exc: refused.append((tried, exc.hint)),
                           on_no_idle=lambda: None)
    watcher.start()
    try:
        wait_until(lambda: len(news) == 1, 10, "the watch's start (INBOX examined)")
        acc.append("INBOX", message(frm="dana@acme.example", to=ME, subject="hi"))
        wait_until(lambda: len(news) == 2, 10, "new mail seen")
        emu.expire_access_tokens()
        emu.revoke_refresh_tokens(700082)
        server.kick(emu.user)  # the session ends; the watcher logs in again
        wait_until(lambda: len(refused) == 1, 20, "the refused login reported")
    finally:
        watcher.stop()
    assert watcher.join(3)
    tried, hint = refused[0]
    assert tried == login_digest(box, mailbox_of(box, datetime(2026, 1, 1).date()))
    assert "followsync auth outlook" in hint
    for secret in emu.secrets():
        assert secret not in tried + hint


@pytest.mark.parametrize("challenge", [
    b"%%% not base64 %%%",
    base64.b64encode(b"[" * 100_000),  # JSON nested past the recursion limit
    base64.b64encode(b"\xff\xfe not text"),
    base64.b64encode(b'{"status": {"deep": [1, 2]}, "schemes": 7}'),
], ids=["not-base64", "deep-json", "not-utf8", "odd-json"])
def test_a_hostile_refusal_is_a_failure_never_a_traceback(
        outlook: tuple[MsEmu, Dovecot], challenge: bytes) -> None:
    _emu, server = outlook
    fake = FakeOutlook(server.base / "cert.pem", server.base / "key.pem", challenge)
    tokens = FakeTokens("eyJ.stale", "eyJ.fresh")
    box = Mailbox("outlook", "127.0.0.1", "me@contoso.example", "", port=fake.port,
                  auth="microsoft", tokens=tokens)
    try:
        with pytest.raises(MailError) as caught, connect(box, 10, None):
            pass
    finally:
        fake.close()
    text = f"{caught.value.message} {caught.value.hint}"
    assert "eyJ." not in text and len(text) < 2000


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client", "invalid_grant"])
def test_googles_refusal_of_the_client_or_the_grant_is_held_as_a_refused_login(
        error: str) -> None:
    """Asking Google again will not change these: the daemon holds the mailbox as for a
    refused password, until the sign-in or the config changes."""
    from followsync.errors import SignInRefused
    from followsync.googleauth import token_error

    refused = token_error("gmail", 401, {"error": error}, who="mailbox gmail")
    assert isinstance(refused, SignInRefused), refused
    assert not isinstance(token_error("gmail", 500, {"error": "server_error"}), SignInRefused)
