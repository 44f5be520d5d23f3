"""Mail at the edge (README "Mail"), against a real Dovecot (tests/imapserver.py): one odd
message never stops a scan or a sync, it is skipped and listed by `followsync mail -v`; robots
and out-of-office replies are not touches; an address is the addr-spec only; two messages are
never one touch unless they are one message."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followsync.sources import ScanResult
from followsync.sources.mail import Mailbox, scan_mailbox
from tests.imapserver import Account, CountingProxy, Dovecot, message
from tests.mailproject import ME as PROJECT_ME
from tests.mailproject import mail_project
from tests.project import Project

TZ = ZoneInfo("Europe/Berlin")
ME = "me@here.org"
LEADS = {"ann@x.org": "ann", "dana@acme.example": "dana"}
ARRIVED = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)


def scan(account: Account, leads: dict[str, str] = LEADS, **changes: object) -> ScanResult:
    fields: dict[str, object] = dict(
        name="inbox", host=account.host, port=account.port, tls="none",
        username=account.username, password=account.password, me=(ME,),
        since=datetime(2026, 1, 1).date())
    fields.update(changes)
    return scan_mailbox(Mailbox(**fields), leads, {}, (), TZ)  # type: ignore[arg-type]


def raw(*headers: str | bytes) -> bytes:
    """A message made of exactly these header lines (bytes pass as they are)."""
    lines = [h if isinstance(h, bytes) else h.encode() for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\nA body.\r\n"


def from_ann(subject: str, *more: str | bytes) -> bytes:
    return raw("From: Ann <ann@x.org>", f"To: {ME}", f"Subject: {subject}", *more)


def skipped(result: ScanResult) -> dict[str, str]:
    return {s.subject: s.why for s in result.skipped}


# ----------------------------------------------------------------- point 9: odd messages
def test_odd_dates_are_replaced_by_the_arrival_date_and_the_scan_goes_on(
        imap_account: Account) -> None:
    acc = imap_account
    cases = {
        "year-9999": "Date: Fri, 31 Dec 9999 23:59:59 -1200",
        "year-huge": "Date: Fri, 31 Dec 99999999999 23:59:59 -1200",  # OverflowError
        "year-999": "Date: Mon, 1 Jan 0999 00:00:00 +0000",  # outside followsync's years
        "garbage": "Date: next Tuesday, probably",
        "future": f"Date: {(ARRIVED + timedelta(days=30)).strftime('%a, %d %b %Y %H:%M:%S +0000')}",
        "no-date": "X-Nothing: here",
    }
    for subject, date_line in cases.items():
        acc.append("INBOX", from_ann(subject, date_line, f"Message-ID: <{subject}@t>"), ARRIVED)
    acc.append("INBOX", from_ann("fine", "Date: Tue, 03 Nov 2026 10:00:00 +0000",
                                 "Message-ID: <fine@t>"), ARRIVED)
    result = scan(acc)
    when = {t.subject: t.when for t in result.touches}
    assert when == {**{s: ARRIVED.astimezone(TZ) for s in cases},
                    "fine": datetime(2026, 11, 3, 10, 0, tzinfo=UTC).astimezone(TZ)}
    assert result.skipped == ()


def test_messages_that_cannot_be_read_are_skipped_and_counted(
        imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    date = "Date: Tue, 03 Nov 2026 10:00:00 +0000"
    acc.append_many("INBOX", [
        (raw('From: "ann@x.org', f"To: {ME}", "Subject: broken-from", date), ARRIVED),
        (raw("From: ann@x.org <<ann@x.org>", f"To: {ME}", "Subject: broken-from-2", date),
         ARRIVED),
        (raw("From: ann@x.org", f"To: <<<{ME}, Bob <bob@y.org", "Subject: broken-to", date,
             "Message-ID: <bt@t>"), ARRIVED),
        (raw(f"From: {ME}", "To: Ann <<ann@x.org>", "Subject: to-broken", date), ARRIVED),
        (raw(b"From: J\xf6rg Ann <ann@x.org>", f"To: {ME}".encode(),
             b"Subject: latin-1 \xe9t\xe9", date.encode(), b"Message-ID: <l1@t>"), ARRIVED),
        (raw(b"From: \xff\xfe <ann@x.org>", f"To: {ME}".encode(), b"Subject: bad-utf8 \xc3",
             date.encode(), b"Message-ID: <b8@t>"), ARRIVED),
        (from_ann("boom", date, "Message-ID: <boom@t>"), ARRIVED),
        (from_ann("after", date, "Message-ID: <after@t>"), ARRIVED),
    ])
    from followsync.sources import mail

    real = mail.decode_subject

    def exploding(fields: dict[str, list[str]]) -> str:
        if fields.get("subject") == ["boom"]:
            raise OverflowError("date value out of range")
        return real(fields)

    monkeypatch.setattr(mail, "decode_subject", exploding)
    result = scan(acc)
    assert sorted(t.subject for t in result.touches) == [
        "after", "bad-utf8 Ã", "broken-to", "latin-1 été"]
    why = {s.subject: s.why for s in result.skipped}
    assert set(why) == {"broken-from", "broken-from-2", "broken-to", "to-broken", "boom"}
    assert why["to-broken"] == "To/Cc: 'Ann <<ann@x.org>' is not an address"
    assert why["broken-from"].startswith("From is not an address")
    assert why["broken-from-2"].startswith("From is not an address")
    assert "not an address" in why["broken-to"] and "still counts" in why["broken-to"]
    assert why["boom"] == "cannot be read (OverflowError: date value out of range)"
    boom = next(s for s in result.skipped if s.subject == "boom")
    assert (boom.folder, boom.uid) == ("INBOX", 7)
    assert result.bookmarks["INBOX"].last_uid == 8  # read past it: it never blocks again


def test_a_huge_header_is_read_in_linear_time(imap_account: Account) -> None:
    acc = imap_account
    name = "a" * 200_000  # a display name with no @ in it: no quadratic search for one
    acc.append("INBOX", raw(f"From: {name} <ann@x.org>", f"To: {ME}", "Subject: huge",
                            "Message-ID: <huge@t>", "Date: Tue, 03 Nov 2026 10:00:00 +0000",
                            "Cc: " + ", ".join(f"p{i}@y.org" for i in range(5000))), ARRIVED)
    acc.append("INBOX", raw(f"From: {name}", f"To: {ME}", "Subject: stranger"), ARRIVED)
    acc.append("INBOX", from_ann("small", "Message-ID: <small@t>"), ARRIVED)
    started = time.monotonic()
    result = scan(acc)
    assert time.monotonic() - started < 10
    assert [t.subject for t in result.touches] == ["small"]
    assert skipped(result) == {"huge": "to more than 20 recipients (5001)"}


def test_a_sync_with_odd_mail_still_syncs_the_calendars_and_mail_v_lists_what_was_skipped(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=(
        "version: 1\nleads:\n  dana: {name: Dana Whitfield, email: dana@acme.example, "
        "last_contact: 2026-11-01}\n"))
    bad = raw("From: Dana <dana@acme.example>", f"To: {PROJECT_ME}", "Subject: from the future",
              "Date: Fri, 31 Dec 99999999999 23:59:59 -1200", "Message-ID: <future@t>")
    acc.append("INBOX", bad, datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    acc.append("INBOX", raw('From: "dana@acme.example', f"To: {PROJECT_ME}",
                            "Subject: \x1b[31mred\x1b[0m", "Message-ID: <broken@t>"),
               datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
    acc.append("INBOX", raw("From: Dana <dana@acme.example>", f"To: {PROJECT_ME}",
                            "Subject: I am away", "X-Autoreply: yes", "Message-ID: <away@t>"),
               datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    odd = {  # each from Dana, arriving on the 23rd: the scan goes on past every one
        "year 9999": "Date: Fri, 31 Dec 9999 23:59:59 -1200",
        "garbage date": "Date: soon",
        "future date": "Date: Mon, 01 Feb 2027 10:00:00 +0000",
        "no date": "X-Nothing: here",
        "broken cc": "Cc: <<<nobody, Bob <bob@y.example",
        "huge header": "Cc: " + "x" * 100_000 + " <cc@y.example>",
    }
    with acc.client() as imap:
        for n, (subject, line) in enumerate(odd.items()):
            imap.append("INBOX", "", '"23-Nov-2026 09:00:00 +0000"',
                        raw("From: Dana <dana@acme.example>", f"To: {PROJECT_ME}",
                            f"Subject: {subject}", line, f"Message-ID: <odd{n}@t>"))
        imap.append("INBOX", "", '"23-Nov-2026 09:00:00 +0000"',
                    raw(b"From: D\xe4na \xff <dana@acme.example>", f"To: {PROJECT_ME}".encode(),
                        b"Subject: latin \xe9", b"Message-ID: <latin@t>"))
    code, out, err = p.run("sync")
    assert (code, err) == (0, ""), err
    assert "mailbox inbox: 8 new touches (1 folder, " in out
    assert "2 messages skipped (followsync mail -v lists them)" in out
    assert "Dana Whitfield" in p.ics.read_text()  # the calendar was synced
    listed = p.run("mail", "--all")[1].splitlines()[1:]
    assert listed[:2] == ["Dana Whitfield (dana)",
                          "  2026-11-20 10:00  they wrote  from the future"]
    assert sorted(listed[2:]) == sorted(f"  2026-11-23 10:00  they wrote  {subject}"
                                        for subject in [*odd, "latin é"])
    code, out, err = p.run("mail", "-v")
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("mailbox inbox: 2 messages skipped, 1 address left out")
    listed = lines[start + 1:start + 4]
    assert listed[0].startswith("  2026-11-21 10:00  INBOX 2  ")
    assert "From is not an address" in listed[0]
    assert "\x1b" not in out  # a hostile subject never reaches the terminal raw
    assert listed[1] == ("  2026-11-22 10:00  INBOX 3  dana@acme.example  \"I am away\": "
                         "an automatic reply (X-Autoreply)")
    assert listed[2].startswith("  2026-11-23 10:00  INBOX 8  dana@acme.example  \"broken cc\": "
                                "To/Cc: '<<<nobody, Bob <bob@y.example' is not an address, left "
                                "out (the message still counts)")
    code, out, _ = p.run("mail")
    assert "skipped" not in out  # without -v: nothing new, nothing listed


# ----------------------------------------------------------------- point 10: classification
def test_an_address_is_the_addr_spec_never_a_display_name(imap_account: Account) -> None:
    acc = imap_account
    acc.append("INBOX", raw("From: dana@acme.example <spam@evil.example>", f"To: {ME}",
                            "Subject: spoof", "Message-ID: <spoof@t>"), ARRIVED)
    acc.append("INBOX", raw(f"From: {ME}", "To: ann@x.org <other@y.org>", "Subject: to-other",
                            "Message-ID: <other@t>"), ARRIVED)
    assert scan(acc).touches == ()
    found = scan(acc, {**LEADS, "spam@evil.example": "mallory"}).touches
    assert [(t.lead, t.by, t.subject) for t in found] == [("mallory", "them", "spoof")]


def test_out_of_office_and_robot_marks(imap_account: Account) -> None:
    acc = imap_account
    cases = {
        "human-comment": ("Auto-Submitted: no (a person wrote this)", True),
        "human-plain": ("Auto-Submitted: No", True),
        "auto-comment": ("Auto-Submitted: auto-replied (vacation)", False),
        "x-autoreply": ("X-Autoreply: yes", False),
        "x-autorespond": ("X-Autorespond: On vacation", False),
        "null-return-path": ("Return-Path: <>", False),
        "null-return-path-spaced": ("Return-Path: < > (bounce)", False),
        "return-path": ("Return-Path: <ann@x.org>", True),
        "junk": ("Precedence: junk", False),
        "list-comment": ("Precedence: list (announce)", False),
    }
    for subject, (line, _) in cases.items():
        acc.append("INBOX", from_ann(subject, line, f"Message-ID: <{subject}@t>"), ARRIVED)
    result = scan(acc)
    assert sorted(t.subject for t in result.touches) == sorted(
        s for s, (_, human) in cases.items() if human)
    assert skipped(result) == {
        "auto-comment": "a robot (Auto-Submitted: auto-replied)",
        "x-autoreply": "an automatic reply (X-Autoreply)",
        "x-autorespond": "an automatic reply (X-Autorespond)",
        "null-return-path": "an automatic reply (Return-Path: <>)",
        "null-return-path-spaced": "an automatic reply (Return-Path: <>)",
        "junk": "bulk mail (Precedence: junk)",
        "list-comment": "bulk mail (Precedence: list)",
    }


def test_the_fetch_asks_for_the_out_of_office_headers(
        dovecot: Dovecot, imap_proxy: CountingProxy) -> None:
    acc = dovecot.new_account()
    acc.append("INBOX", from_ann("x", "Message-ID: <x@t>"), ARRIVED)
    scan(acc, port=imap_proxy.port)
    fetches = [c.upper() for c in imap_proxy.commands if c.upper().startswith("UID FETCH")]
    assert fetches and all(all(name in c for name in ("X-AUTOREPLY", "X-AUTORESPOND",
                                                      "RETURN-PATH")) for c in fetches)


def test_messages_without_message_id_and_date_stay_apart(imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("All Mail")
    same = raw("From: ann@x.org", f"To: {ME}", "Subject: ping")
    acc.append("INBOX", same, ARRIVED)
    acc.append("INBOX", same, ARRIVED)  # sent twice, the same second
    acc.append("INBOX", same, ARRIVED + timedelta(hours=1))
    with_id = message(frm="ann@x.org", to=ME, subject="with id", date=ARRIVED,
                      message_id="<id@t>")
    acc.append("INBOX", with_id, ARRIVED)
    acc.append("All Mail", with_id, ARRIVED + timedelta(hours=2))
    result = scan(acc)
    assert sorted(t.subject for t in result.touches) == ["ping", "ping", "ping", "with id"]
    assert len({t.key for t in result.touches}) == 4
    # a rebuilt folder (new UIDVALIDITY) gives the same keys: nothing counts twice
    keys = {t.key for t in result.touches}
    acc.recreate_folder("INBOX")
    again = scan_mailbox(Mailbox(name="inbox", host=acc.host, port=acc.port, tls="none",
                                 username=acc.username, password=acc.password, me=(ME,),
                                 since=datetime(2026, 1, 1).date()),
                         LEADS, result.bookmarks, keys, TZ)
    assert again.touches == ()


# ----------------------------------------------------------------- the address reader
@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="ab.@<> ,\"()x-_+;:\\[]", max_size=24), min_size=1,
                max_size=3))
def test_the_fast_address_reader_agrees_with_the_strict_one(values: list[str]) -> None:
    from followsync.sources.mail import _addresses, read_addresses

    expected = [a for value in values for a in read_addresses(value)[0]]
    assert _addresses(values) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_the_strict_reader_never_raises(value: str) -> None:
    from followsync.sources.mail import read_addresses

    found, bad = read_addresses(value)
    assert all("@" in a and a == a.lower() for a in found)
    assert isinstance(bad, list)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9.]{0,8}@[a-z]{1,8}\.example", fullmatch=True),
       st.from_regex(r"[a-z][a-z0-9.]{0,8}@[a-z]{1,8}\.example", fullmatch=True),
       st.sampled_from(["{n} <{a}>", '"{n}" <{a}>', "{n}  <{a}>", "(x) {n} <{a}> (y)"]))
def test_a_display_name_that_looks_like_an_address_is_not_one(
        name: str, address: str, form: str) -> None:
    from followsync.sources.mail import read_addresses

    assert read_addresses(form.format(n=name, a=address)) == ([address], [])


def test_address_reader_examples() -> None:
    from followsync.sources.mail import read_addresses

    assert read_addresses("Ann <Ann@X.org>, bob@y.org (Bob)") == (["ann@x.org", "bob@y.org"], [])
    assert read_addresses("team: a@b.c, D <d@e.f>;, g@h.i") == (["a@b.c", "d@e.f", "g@h.i"], [])
    assert read_addresses("undisclosed-recipients:;") == ([], [])
    assert read_addresses('"Lee, Ann" <ann@x.org>') == (["ann@x.org"], [])
    assert read_addresses("<@relay.example:ann@x.org>") == (["ann@x.org"], [])
    assert read_addresses('"ann"@x.org') == (["ann@x.org"], [])
    assert read_addresses("a@b@c, ann, <>, Bob <bob@y.org") == (
        [], ["a@b@c", "ann", "<>", "Bob <bob@y.org"])
    assert read_addresses("<a@b> c@d") == ([], ["<a@b> c@d"])


# ----------------------------------------------------------------- the reader, unguarded
HEADER_VALUE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["ann@x.org", "Ann <ann@x.org>", f"<{ME}>", ME, "dana@acme.example <a@b>",
                     '"ann@x.org', "<<ann@x.org>", "(c) ann@x.org (d)", "g: ann@x.org;",
                     "Fri, 31 Dec 9999 23:59:59 -1200", "Mon, 1 Jan 0001 00:00:00 +0100",
                     "31 Dec 99999999999 23:59:59", "Tue, 03 Nov 2026 10:00:00 -0000", "<>",
                     "no (x)", "auto-replied", "=?utf-8?q?=FF?=", "=?x-unknown?b?AAA?="]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["From", "To", "Cc", "Date", "Message-ID", "Subject",
                                        "Auto-Submitted", "Return-Path", "Precedence"]),
                       st.lists(HEADER_VALUE, min_size=1, max_size=2), max_size=9),
       st.binary(max_size=8), st.sampled_from([b"03-Nov-2026 18:00:00 +0000", b"",
                                               b"31-Dec-9999 23:59:59 -1200", b"junk"]))
def test_the_reader_itself_never_raises_and_dates_every_touch_in_range(
        headers: dict[str, list[str]], noise: bytes, internal: bytes) -> None:
    """Not thanks to the per-message guard: `touches` (unguarded) reads anything."""
    from followsync.sources.mail import _Matcher

    lines = [f"{name}: {value}".encode("utf-8", "surrogateescape") + noise
             for name, values in headers.items() for value in values]
    matcher = _Matcher(frozenset({ME}), LEADS, TZ)
    for touch in matcher.touches(b"\r\n".join(lines) + b"\r\n", internal, "INBOX", set(), 1):
        assert 1000 <= touch.when.year <= 8999
        assert touch.lead in LEADS.values()


def test_a_message_with_no_usable_date_at_all_is_skipped() -> None:
    """Dovecot always gives an INTERNALDATE (it clamps APPEND's to its range), so this one is
    fed to the reader as a server without one would answer."""
    from followsync.sources.mail import _Matcher

    matcher = _Matcher(frozenset({ME}), LEADS, TZ)
    for n, (date_line, internal) in enumerate([("X-No: date", b""), ("Date: soon", b"junk"),
                                               ("Date: 1 Jan 99999999999 00:00", b"")]):
        assert matcher.touches(from_ann(f"undated {n}", date_line), internal, "INBOX", set(),
                               n + 1) == []
    assert [(s.uid, s.when, s.why) for s in matcher.skipped] == [
        (n + 1, None, "no usable date (no readable Date header and no date from the server)")
        for n in range(3)]
    assert matcher.touches(from_ann("dated", "Date: Tue, 03 Nov 2026 10:00:00 +0000"), b"",
                           "INBOX", set(), 4)[0].when == datetime(2026, 11, 3, 10, tzinfo=UTC)


def test_a_host_that_is_not_found_is_said_in_words_not_a_number() -> None:
    """socket.gaierror's first argument is a number (-2): the reason names what happened."""
    import socket

    from followsync.sources.mail import _reason

    text = _reason(socket.gaierror(-2, "Name or service not known"))
    assert text.startswith("host name not found") and "-2" not in text
