"""`followsync mail` against a real Dovecot: it scans every mailbox (read-only), keeps the
touches in the state and lists them per lead; a mailbox that fails is exit 3 with no secret
in any output, and the others are still scanned."""

from __future__ import annotations

import pytest

from tests.imapserver import Account
from tests.mailproject import mail_from, mail_project, mail_to
from tests.project import Project

LEADS = """\
version: 1
leads:
  dana:
    name: Dana Whitfield
    email: [dana@acme.example, dana.w@home.example]
  ann: {name: Ann Lee, email: ann@x.example}
  bob: {name: Bob Stone}
"""


def test_mail_lists_what_each_scan_found_and_changes_no_flag(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_to(acc, "Dana W <DANA@acme.example>", "2026-11-20", "the marketing role", "09:00")
    mail_from(acc, "Dana Whitfield <dana.w@home.example>", "2026-11-21", "Re: the marketing role",
              "17:30")
    mail_from(acc, "joann@x.example", "2026-11-22", "not Ann")
    flags = acc.all_flags()
    code, out, err = p.run("mail")
    assert (code, err) == (0, ""), err
    assert out.splitlines()[1:] == [
        "Dana Whitfield (dana)",
        "  2026-11-20 09:00  you wrote   the marketing role",
        "  2026-11-21 17:30  they wrote  Re: the marketing role",
    ]
    assert out.startswith("mailbox inbox: 2 new touches (2 folders, ")
    mail_from(acc, "Ann Lee <ann@x.example>", "2026-11-25", "hello again")
    code, out, _ = p.run("mail")
    assert out.splitlines()[1:] == ["Ann Lee (ann)", "  2026-11-25 10:00  they wrote  hello again"]
    code, out, _ = p.run("mail")
    assert out.startswith("mailbox inbox: 0 new touches") and len(out.splitlines()) == 1
    code, out, _ = p.run("mail", "--all")
    assert out.splitlines()[1:] == [
        "Dana Whitfield (dana)",
        "  2026-11-20 09:00  you wrote   the marketing role",
        "  2026-11-21 17:30  they wrote  Re: the marketing role",
        "Ann Lee (ann)",
        "  2026-11-25 10:00  they wrote  hello again",
    ]
    after = acc.all_flags()
    assert {f: {u: x - {r"\Recent"} for u, x in m.items() if u in flags[f]}
            for f, m in after.items()} == {f: {u: x - {r"\Recent"} for u, x in m.items()}
                                           for f, m in flags.items()}
    assert not any(r"\Seen" in x for x in after["INBOX"].values())  # nothing read


def test_since_looks_further_back_once_and_an_added_address_finds_older_mail(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS, since="2026-06-01")
    mail_from(acc, "dana@acme.example", "2026-03-02", "old news")
    mail_from(acc, "bob@stone.example", "2026-11-02", "from Bob")
    mail_from(acc, "dana@acme.example", "2026-11-03", "new news")
    code, out, _ = p.run("mail")
    assert out.splitlines()[1:] == ["Dana Whitfield (dana)",
                                    "  2026-11-03 10:00  they wrote  new news"]
    code, out, _ = p.run("mail", "--since", "2026-01-01")
    assert out.splitlines()[1:] == ["Dana Whitfield (dana)",
                                    "  2026-03-02 10:00  they wrote  old news"]
    assert p.run("mail", "--since", "2026-01-01")[1].startswith("mailbox inbox: 0 new")
    p.edit("  bob: {name: Bob Stone}", "  bob: {name: Bob Stone, email: bob@stone.example}")
    code, out, _ = p.run("mail")
    assert out.splitlines()[1:] == ["Bob Stone (bob)", "  2026-11-02 10:00  they wrote  from Bob"]
    code, out, _ = p.run("--now", "2026-12-01T08:00", "mail", "--since", "2026-13-01")
    assert code == 2


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_a_refused_login_is_exit_3_without_the_secret_and_others_are_still_scanned(
        project: Project, imap_account: Account, dovecot: object,
        monkeypatch: pytest.MonkeyPatch, verbose: int) -> None:
    good = imap_account
    bad = good.server.new_account(password="the-right-one")
    p = mail_project(project, monkeypatch, bad, good, leads=LEADS)
    head, tail = p.config.read_text().split("  - name: inbox2", 1)
    p.write_config(head + "  - name: inbox2" + tail.replace("_MAILPW", "_MAILPW2"))
    monkeypatch.setenv("FOLLOWSYNC_TEST_MAILPW", "W0ng-s3cret-pw")
    monkeypatch.setenv("FOLLOWSYNC_TEST_MAILPW2", good.password)
    good_pw = good.password
    mail_from(good, "ann@x.example", "2026-11-25", "hello")
    code, out, err = p.run("mail", verbose=verbose)
    assert code == 3
    assert "mailbox inbox: FAILED: mailbox 'inbox' (127.0.0.1:" in err
    assert f"login refused for {bad.username!r}" in err
    assert "hint: check the username and password" in err
    assert "Ann Lee (ann)" in out and "mailbox inbox2: 1 new touch " in out
    for secret in ("W0ng-s3cret-pw", "the-right-one", good_pw):
        assert secret not in out + err
    code, out, err = p.run("sync", verbose=verbose)
    for secret in ("W0ng-s3cret-pw", "the-right-one", good_pw):
        assert secret not in out + err


def test_mail_without_a_mail_section_is_a_usage_error(project: Project) -> None:
    project.write_leads(LEADS)
    project.write_config()
    code, _, err = project.run("mail")
    assert code == 2
    assert "has no `mail:` section" in err
