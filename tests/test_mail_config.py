"""The `mail:` section of the config (README "Mail"): every mistake as FILE:LINE:COL with a
hint, all at once, exit 1 and nothing written; credentials as for CalDAV targets."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from followsync.config import load_config
from followsync.durations import Duration
from tests.project import Project

LEADS = "version: 1\nleads:\n  dana: {name: Dana, email: dana@acme.example}\n"
HEAD = "leads: leads.yaml\nstate_dir: state\ntargets:\n  - {name: file, type: ics, path: out.ics}\n"

# (id, the `mail:` section, expected stderr with {C} for the config's path; line numbers
# count the 4 lines of HEAD)
CASES = [
    ("unknown-key", """\
        mail:
          - name: inbox
            hots: imap.example.com
            username: me@example.com
            password_env: MAILPW
        """, """\
        {C}:6:5: missing required key 'host' in mail.1
          hint: add `host: ...`
        {C}:7:5: unknown key 'hots'
          hint: did you mean 'host'?
        """),
    ("bad-tls", """\
        mail:
          - {name: inbox, host: imap.example.com, tls: startls, username: me, password_env: P}
        """, """\
        {C}:6:48: mail.1.tls: got 'startls'; expected 'implicit', 'starttls' or 'none'
          hint: did you mean 'starttls'?
        """),
    ("tls-none-to-a-remote-host", """\
        mail:
          - {name: inbox, host: imap.example.com, tls: none, username: me, password_env: P}
        """, """\
        {C}:6:5: mail.1: tls: none would send the password in clear text to imap.example.com
          hint: use tls: implicit (port 993) or tls: starttls (port 143); none is only for a \
server on this machine (127.0.0.1)
        """),
    ("no-password", """\
        mail:
          - {name: inbox, host: imap.example.com, username: me}
        """, """\
        {C}:6:5: mail.1: mailbox 'inbox' needs a password
          hint: add `password_command: pass show mail/...` (or password_env, keyring: true); \
Gmail, Fastmail and iCloud need an app password
        """),
    ("two-passwords", """\
        mail:
          - {name: inbox, host: h.example, username: me, password_env: P, keyring: true}
        """, """\
        {C}:6:5: mail.1: give only one of password_env, keyring
          hint: keep one way to get the password and remove the others
        """),
    ("since-in-minutes-and-a-bad-interval", """\
        mail:
          - name: inbox
            host: imap.example.com
            username: me
            password_env: P
            since: 12m
            interval: often
        """, """\
        {C}:10:12: mail.1.since: '12m' is less than a day
          hint: `12m` is minutes: did you mean `12mo`? write a date (YYYY-MM-DD) or how far \
back: 365d, 6mo, 1y
        {C}:11:15: mail.1.interval: not a duration: 'often'
          hint: write an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y, or seconds: 30s
        """),
    ("bad-date-port-and-me", """\
        mail:
          - name: inbox
            host: imap.example.com
            port: 99999
            username: me
            password_env: P
            since: 2026-13-01
          - name: other
            host: imap.example.com
            username: me
            password_env: P
            me: [me-at-home]
        """, """\
        {C}:8:11: mail.1.port: 99999 is too large
          hint: write a number of at most 65535
        {C}:11:12: mail.1.since: not a valid date: '2026-13-01' (month must be in 1..12)
          hint: write YYYY-MM-DD, e.g. 2026-01-06
        {C}:16:9: mail.2.me: 'me-at-home' is not a mail address
          hint: list your own addresses, e.g. `me: [me@example.com]`
        """),
    ("two-mailboxes-one-name", """\
        mail:
          - {name: inbox, host: a.example, username: me, password_env: P}
          - {name: inbox, host: b.example, username: me, password_env: P}
        """, """\
        {C}:6:3: mail: mailbox names must be unique: inbox
          hint: rename one; the name keeps each mailbox's state apart
        """),
    # OAuth mailboxes (`auth: microsoft | google`): a sign-in, never a password
    ("oauth-with-a-password", """\
        mail:
          - {name: o, host: outlook.office365.com, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555, password_env: P}
        """, """\
        {C}:6:5: mail.1: mailbox 'o' signs in with `auth: microsoft` and takes no password_env
          hint: remove password_env; run `followsync auth o`
        """),
    ("microsoft-without-client-id-and-a-bad-one", """\
        mail:
          - {name: o, host: outlook.office365.com, username: me@c.example, auth: microsoft}
          - name: p
            host: outlook.office365.com
            username: me@c.example
            auth: microsoft
            client_id: my-app
        """, """\
        {C}:6:5: mail.1: a Microsoft sign-in needs `client_id:`
          hint: the Application (client) ID of your own app registration (see README, \
"Microsoft 365 and Outlook.com")
        {C}:7:5: mail.2: client_id 'my-app' is not an application id
          hint: copy the "Application (client) ID" (like 11111111-2222-3333-4444-555555555555) \
from the app's Overview page
        """),
    ("microsoft-with-a-client-secret", """\
        mail:
          - {name: o, host: outlook.office365.com, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555, client_secret: c.json}
        """, """\
        {C}:6:5: mail.1: `auth: microsoft` takes no client_secret
          hint: a Microsoft sign-in needs only `client_id:` (a public client)
        """),
    ("auth-port-only-for-google", """\
        mail:
          - {name: o, host: outlook.office365.com, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555, auth_port: 8765}
          - {name: p, host: imap.x.example, username: me, password_env: P, auth_port: 8765}
        """, """\
        {C}:6:5: mail.1: `auth: microsoft` takes no auth_port
          hint: its sign-in is a device code entered in any browser: followsync listens on no \
port
        {C}:8:5: mail.2: mailbox 'p' logs in with a password and does not take auth_port
          hint: add `auth: microsoft` or `auth: google` to sign in with OAuth instead
        """),
    ("microsoft-over-http-and-a-bad-tenant", """\
        mail:
          - {name: o, host: outlook.office365.com, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555, endpoint: "http://127.0.0.1:9"}
          - {name: p, host: outlook.office365.com, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555, tenant: a b}
        """, """\
        {C}:6:5: mail.1: endpoint 'http://127.0.0.1:9' is not an https URL
          hint: Microsoft's sign-in needs https, e.g. `endpoint: https://127.0.0.1:9443`; or \
remove it to use Microsoft
        {C}:8:5: mail.2: tenant 'a b' is not a tenant
          hint: common, organizations, consumers, a tenant id or a domain like \
contoso.onmicrosoft.com
        """),
    ("oauth-without-tls", """\
        mail:
          - {name: o, host: 127.0.0.1, tls: none, username: me@c.example, auth: microsoft,
             client_id: 11111111-2222-3333-4444-555555555555}
        """, """\
        {C}:6:5: mail.1: an OAuth mailbox is reached over TLS
          hint: use tls: implicit (port 993) or tls: starttls (port 143)
        """),
    ("google-with-a-client-id-or-without-a-client-secret", """\
        mail:
          - {name: g, host: imap.gmail.com, username: me@gmail.example, auth: google,
             client_id: x, client_secret: c.json}
          - {name: h, host: imap.gmail.com, username: me@gmail.example, auth: google}
        """, """\
        {C}:6:5: mail.1: `auth: google` takes no client_id or tenant
          hint: it needs `client_secret:` (your "Desktop app" OAuth client's JSON), see \
README, "Google Calendar"
        {C}:8:5: mail.2: `auth: google` needs `client_secret:`
          hint: the JSON file of your own "Desktop app" OAuth client (see README, "Google \
Calendar")
        """),
    ("google-with-verify", """\
        mail:
          - {name: g, host: imap.gmail.com, username: me@gmail.example, auth: google,
             client_secret: c.json, verify: ca.pem}
        """, """\
        {C}:6:5: mail.1: `auth: google` takes no verify
          hint: Google's sign-in uses the system's certificates; remove `verify:`
        """),
    ("google-client-secret-missing", """\
        mail:
          - name: g
            host: imap.gmail.com
            username: me@gmail.example
            auth: google
            client_secret: missing.json
        """, """\
        {C}:10:20: the client_secret file of mailbox 'g' does not exist: {D}/missing.json
          hint: download your "Desktop app" OAuth client's JSON from the Google Cloud console \
(README, "Google Calendar")
        """),
    ("a-password-mailbox-with-oauth-keys", """\
        mail:
          - {name: p, host: imap.x.example, username: me, password_env: P,
             client_id: 11111111-2222-3333-4444-555555555555, verify: ca.pem}
        """, """\
        {C}:6:5: mail.1: mailbox 'p' logs in with a password and does not take client_id, verify
          hint: add `auth: microsoft` or `auth: google` to sign in with OAuth instead
        """),
    ("auth-misspelt", """\
        mail:
          - {name: p, host: imap.x.example, username: me, password_env: P, auth: microsft}
        """, """\
        {C}:6:74: mail.1.auth: got 'microsft'; expected 'password', 'microsoft' or 'google'
          hint: did you mean 'microsoft'?
        """),
    ("mail-is-a-mapping", """\
        mail: {name: inbox}
        """, """\
        {C}:5:7: mail: expected a list, got a mapping
          hint: write a list: [a, b] or one '- item' per line
        """),
]


@pytest.fixture
def synced(project: Project) -> Project:
    project.write_leads(LEADS)
    project.write_config(HEAD)
    assert project.run("sync")[0] == 0
    return project


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_mail_section(synced: Project, text: str, expected: str) -> None:
    synced.write_config(HEAD + textwrap.dedent(text))
    before = synced.snapshot()
    state = (synced.state / "state.sqlite").read_bytes()
    want = textwrap.dedent(expected).replace("{C}", str(synced.config)) \
        .replace("{D}", str(synced.dir))
    for command in ("validate", "plan", "sync", "mail"):
        code, out, err = synced.run(command)
        assert (code, out) == (1, ""), (command, err)
        assert err == want, command
    assert synced.snapshot() == before
    assert (synced.state / "state.sqlite").read_bytes() == state


def test_defaults_and_forms(project: Project) -> None:
    project.write_config(HEAD + textwrap.dedent("""\
        mail:
          - {name: a, host: imap.example.com, username: me@example.com, password_env: P}
          - name: b
            host: 127.0.0.1
            port: 1143
            tls: none
            username: me
            password_command: [pass, show, mail]
            me: ME@Example.com
            folders: INBOX
            since: 2026-01-01
            interval: 30s
          - {name: c, host: h.example, username: u, password_env: P, since: 6mo, interval: 1h}
        """))
    a, b, c = load_config(project.config).mailboxes
    assert (a.port, a.tls, a.folders, a.me, a.since, a.interval) == (
        None, "implicit", None, (), Duration(365, "d"), timedelta(minutes=5))
    assert (b.port, b.tls, b.folders, b.me, b.since, b.interval) == (
        1143, "none", ("INBOX",), ("me@example.com",), date(2026, 1, 1), timedelta(seconds=30))
    assert b.password_command == ("pass", "show", "mail")
    assert c.since_day(date(2026, 12, 1)) == date(2026, 6, 1)
    assert a.since_day(date(2026, 12, 1)) == date(2025, 12, 1)
    assert c.interval == timedelta(hours=1)


def test_a_mail_password_in_a_config_others_can_read_is_refused(project: Project) -> None:
    project.write_leads(LEADS)
    project.write_config(HEAD + "mail:\n  - {name: inbox, host: h.example, username: me, "
                                "password: s3cr3t-mail}\n")
    project.config.chmod(0o644)
    code, out, err = project.run("validate")
    assert (code, out) == (1, "")
    assert err == (f"{project.config}:6:60: mailbox 'inbox' has a password in a config file "
                   "others can read\n"
                   f"  hint: run `chmod 600 {project.config}`, or better use password_command "
                   "or password_env\n")
    project.config.chmod(0o600)
    code, out, err = project.run("validate")
    assert code == 0, err
    assert "mailbox 'inbox': the password is written in the config" in err
    assert "s3cr3t" not in out + err


def test_validate_warns_about_an_unset_password_env(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_TEST_MAILPW", raising=False)
    project.write_leads(LEADS)
    project.write_config(HEAD + "mail:\n  - {name: inbox, host: h.example, username: me, "
                                "password_env: FS_TEST_MAILPW}\n")
    code, _, err = project.run("validate")
    assert code == 0
    assert "mailbox 'inbox': $FS_TEST_MAILPW (password_env) is not set here" in err


def test_the_readme_mail_example_loads(project: Project) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Mail\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    project.write_config(HEAD + example)
    (box,) = load_config(project.config).mailboxes
    assert (box.name, box.port, box.tls, box.folders) == ("inbox", 993, "implicit",
                                                         ("INBOX", "Sent"))
    assert box.me == ("me@example.com", "me@old.example")
