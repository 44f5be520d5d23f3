"""The mail touch scanner against a real Dovecot (tests/imapserver.py): what is a touch, what is
not, incremental scans, and that the user's mailbox is never changed."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.errors import EXIT_TARGET
from followsync.sources import Bookmark, FoundTouch, ScanResult
from followsync.sources.mail import Mailbox, MailError, MailLoginRefused, MailSource, scan_mailbox
from tests.imapserver import Account, CountingProxy, Dovecot, message

TZ = ZoneInfo("Europe/Berlin")
ME = "me@here.org"
LEADS = {"ann@x.org": "ann", "dana@corp.example": "dana", "dana.w@home.example": "dana"}
SINCE = date(2026, 1, 1)
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def mailbox(account: Account, **changes: object) -> Mailbox:
    fields: dict[str, object] = dict(
        name="inbox", host=account.host, port=account.port, tls="none",
        username=account.username, password=account.password, me=(ME,), since=SINCE)
    fields.update(changes)
    return Mailbox(**fields)  # type: ignore[arg-type]


@dataclass
class Store:
    """What the state would keep between scans: bookmarks and the keys of known touches.
    Every scan also proves that no flag of any message changed."""

    account: Account
    bookmarks: dict[str, Bookmark] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    touches: list[FoundTouch] = field(default_factory=list)

    def scan(self, leads: Mapping[str, str] = LEADS, **changes: object) -> ScanResult:
        before = self.account.all_flags()
        result = MailSource(mailbox(self.account, **changes)).scan(
            leads, self.bookmarks, self.known, TZ)
        assert self.account.all_flags() == before, "a scan changed a message's flags"
        self.bookmarks = dict(result.bookmarks)
        self.known |= {t.key for t in result.touches}
        self.touches.extend(result.touches)
        return result


def scratch(account: Account, known: Collection[str] = ()) -> ScanResult:
    return scan_mailbox(mailbox(account), LEADS, {}, known, TZ)


def brief(touches: Collection[FoundTouch]) -> set[tuple[str, str, str]]:
    return {(t.lead, t.by, t.subject) for t in touches}


# ----------------------------------------------------------------- what is a touch
def test_me_and_them_in_inbox_sent_and_all_mail_are_one_touch_per_message(
        imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("Sent")
    acc.create_folder("All Mail")
    answer = message(frm="Ann Example <ann@x.org>", to=ME, subject="Re: the role",
                     date=T0, message_id="<answer@x.org>")
    mine = message(frm=f"Me <{ME}>", to="ann@x.org", subject="the role",
                   date=T0 - timedelta(days=2), message_id="<ask@here.org>")
    acc.append("INBOX", answer, T0, flags=[r"\Seen"])
    acc.append("All Mail", answer, T0)
    acc.append("Sent", mine, T0 - timedelta(days=2), flags=[r"\Seen"])
    acc.append("All Mail", mine, T0 - timedelta(days=2))

    store = Store(acc)
    result = store.scan()

    assert result.folders == ("INBOX", "Sent", "All Mail")
    assert [(t.lead, t.by, t.key, t.subject, t.folder) for t in result.touches] == [
        ("ann", "me", "<ask@here.org>", "the role", "Sent"),
        ("ann", "them", "<answer@x.org>", "Re: the role", "INBOX"),
    ]
    assert result.touches[1].when == T0.astimezone(TZ)
    assert result.touches[1].when.tzinfo == TZ
    assert set(result.bookmarks) == {"INBOX", "Sent", "All Mail"}
    assert all(b.last_uid >= 1 for b in result.bookmarks.values())
    # the same messages again: nothing new
    assert store.scan().touches == ()


def test_cc_display_names_and_case_differences_match(imap_account: Account) -> None:
    acc = imap_account
    acc.append("INBOX", message(frm=f'"Me, myself" <{ME.upper()}>',
                                to='"Someone Else" <other@y.org>',
                                cc='"Ann (work)" <Ann@X.Org>', subject="cc", date=T0,
                                message_id="<cc@here>"), T0)
    acc.append("INBOX", message(frm='"Dana W." <DANA.W@Home.Example>', to=ME, subject="home",
                                date=T0, message_id="<home@dana>"), T0)
    touches = Store(acc).scan().touches
    assert brief(touches) == {("ann", "me", "cc"), ("dana", "them", "home")}


def test_one_message_to_two_leads_is_a_touch_for_each(imap_account: Account) -> None:
    imap_account.append("INBOX", message(
        frm=ME, to=["ann@x.org", "dana@corp.example"], cc="dana.w@home.example",
        subject="both", date=T0, message_id="<both@here>"), T0)
    touches = Store(imap_account).scan().touches
    assert sorted((t.lead, t.by) for t in touches) == [("ann", "me"), ("dana", "me")]


def test_addresses_match_exactly_never_as_substrings(imap_account: Account) -> None:
    acc = imap_account
    for n, (frm, to) in enumerate([("joann@x.org", ME), (ME, "joann@x.org"),
                                   ("ann@x.org.evil.example", ME), (ME, "ann@x.org.evil"),
                                   ("Ann <ann@sub.x.org>", ME), ('"ann@x.org" <spoof@y.org>', ME),
                                   (ME, '"ann@x.org" <other@y.org>'),
                                   ("ann@x.org", "friend@y.org")]):
        acc.append("INBOX", message(frm=frm, to=to, subject=f"m{n}", date=T0,
                                    message_id=f"<m{n}@t>"), T0)
    touches = Store(acc).scan().touches
    # only the last: from a lead (to someone else, e.g. a Bcc) is still from the lead
    assert brief(touches) == {("ann", "them", "m7")}


def test_lists_robots_and_crowds_are_not_touches(imap_account: Account) -> None:
    acc = imap_account
    crowd = [f"p{i}@y.org" for i in range(20)]
    cases = {
        "list": dict(frm="ann@x.org", to=ME, extra={"List-Id": "<jobs.lists.example>"}),
        "ooo": dict(frm="ann@x.org", to=ME, extra={"Auto-Submitted": "auto-replied"}),
        "bulk": dict(frm="ann@x.org", to=ME, extra={"Precedence": "bulk"}),
        "junk": dict(frm="ann@x.org", to=ME, extra={"Precedence": "junk"}),
        "crowd": dict(frm=ME, to=crowd, cc="ann@x.org"),  # 21 recipients
        "human": dict(frm="ann@x.org", to=ME, extra={"Auto-Submitted": "no"}),
        "twenty": dict(frm=ME, to=crowd[:19], cc="ann@x.org"),  # 20 recipients
    }
    for subject, kw in cases.items():
        acc.append("INBOX", message(subject=subject, date=T0, message_id=f"<{subject}@t>",
                                    **kw), T0)  # type: ignore[arg-type]
    assert brief(Store(acc).scan().touches) == {("ann", "them", "human"), ("ann", "me", "twenty")}


def test_missing_or_future_date_header_uses_the_servers_date(imap_account: Account) -> None:
    acc = imap_account
    arrived = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)
    cases = {
        "no-date": None,
        "future": arrived + timedelta(days=30),
        "garbage": "not a date at all",
        "slightly-ahead": arrived + timedelta(hours=20),  # clock skew within a day: kept
        "filed-late": arrived - timedelta(days=5),  # a copy filed later keeps its Date
    }
    for subject, sent in cases.items():
        acc.append("INBOX", message(frm="ann@x.org", to=ME, subject=subject, date=sent,
                                    message_id=f"<{subject}@t>"), arrived)
    when = {t.subject: t.when for t in Store(acc).scan().touches}
    assert when == {
        "no-date": arrived.astimezone(TZ),
        "future": arrived.astimezone(TZ),
        "garbage": arrived.astimezone(TZ),
        "slightly-ahead": (arrived + timedelta(hours=20)).astimezone(TZ),
        "filed-late": (arrived - timedelta(days=5)).astimezone(TZ),
    }


def test_messages_without_message_id_are_deduplicated_across_folders(
        imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("All Mail")
    raw = message(frm="ann@x.org", to=ME, subject="no id", date=T0, message_id="")
    acc.append("INBOX", raw, T0)
    acc.append("All Mail", raw, T0 + timedelta(hours=3))  # a later INTERNALDATE
    other = message(frm="ann@x.org", to=ME, subject="no id either", date=T0, message_id="")
    acc.append("INBOX", other, T0)
    touches = Store(acc).scan().touches
    assert sorted(t.subject for t in touches) == ["no id", "no id either"]
    assert len({t.key for t in touches}) == 2


def test_first_scan_starts_at_since(imap_account: Account) -> None:
    acc = imap_account
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="old", date=T0,
                                message_id="<old@t>"), datetime(2025, 6, 1, tzinfo=UTC))
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="new", date=T0,
                                message_id="<new@t>"), T0)
    store = Store(acc)
    assert brief(store.scan().touches) == {("ann", "them", "new")}
    # the old one is behind the bookmark now: never read again
    assert store.scan(since=date(2020, 1, 1)).touches == ()


def test_encoded_subjects_are_decoded(imap_account: Account) -> None:
    imap_account.append("INBOX", message(
        frm="ann@x.org", to=ME, subject="=?utf-8?q?Re=3A_caf=C3=A9_=E2=98=95?=", date=T0,
        message_id="<enc@t>"), T0)
    assert [t.subject for t in Store(imap_account).scan().touches] == ["Re: café ☕"]


# ----------------------------------------------------------------- folders
def test_sent_is_found_by_name_when_no_folder_is_flagged(imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("Sent Items")
    acc.create_folder("Archive")
    acc.append("Sent Items", message(frm=ME, to="ann@x.org", subject="out", date=T0,
                                     message_id="<out@t>"), T0)
    acc.append("Archive", message(frm=ME, to="ann@x.org", subject="archived", date=T0,
                                  message_id="<arch@t>"), T0)
    result = Store(acc).scan()
    assert result.folders == ("INBOX", "Sent Items")
    assert brief(result.touches) == {("ann", "me", "out")}


def test_configured_folders_are_scanned_as_given(imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("Archive")
    acc.append("Archive", message(frm=ME, to="ann@x.org", subject="archived", date=T0,
                                  message_id="<arch@t>"), T0)
    result = Store(acc).scan(folders=("Archive",))
    assert result.folders == ("Archive",)
    assert brief(result.touches) == {("ann", "me", "archived")}
    with pytest.raises(MailError, match="Nope"):
        Store(acc).scan(folders=("INBOX", "Nope"))


# ----------------------------------------------------------------- incremental
def test_new_mail_after_a_scan_is_found_and_nothing_else(imap_account: Account) -> None:
    acc = imap_account
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="one", date=T0,
                                message_id="<1@t>"), T0)
    store = Store(acc)
    store.scan()
    acc.append("INBOX", message(frm="dana@corp.example", to=ME, subject="two", date=T0,
                                message_id="<2@t>"), T0)
    result = store.scan()
    assert brief(result.touches) == {("dana", "them", "two")}
    assert result.fetched == 1
    assert result.bookmarks["INBOX"].last_uid == 2


def test_changed_uidvalidity_rescans_without_duplicates(imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("Sent")
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="in", date=T0,
                                message_id="<in@t>"), T0)
    acc.append("Sent", message(frm=ME, to="ann@x.org", subject="out", date=T0,
                               message_id="<out@t>"), T0)
    store = Store(acc)
    first = store.scan()
    acc.recreate_folder("INBOX")
    acc.recreate_folder("Sent")
    acc.append("Sent", message(frm=ME, to="dana@corp.example", subject="later", date=T0,
                               message_id="<later@t>"), T0)
    second = store.scan()
    assert brief(second.touches) == {("dana", "me", "later")}
    for folder in ("INBOX", "Sent"):
        assert second.bookmarks[folder].uidvalidity != first.bookmarks[folder].uidvalidity
    assert second.fetched == 3  # both folders read again from `since`
    assert store.scan().touches == ()


def test_a_lost_state_is_rebuilt_with_the_same_touches(imap_account: Account) -> None:
    acc = imap_account
    acc.create_folder("Sent")
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="a", date=T0,
                                message_id="<a@t>"), T0)
    store = Store(acc)
    store.scan()
    acc.append("Sent", message(frm=ME, to="ann@x.org", subject="b", date=T0,
                               message_id="<b@t>"), T0)
    store.scan()
    rebuilt = Store(acc).scan()
    assert sorted(rebuilt.touches) == sorted(store.touches)
    assert rebuilt.bookmarks == store.bookmarks


def test_a_scan_with_nothing_new_is_one_status_per_folder(
        dovecot: Dovecot, imap_proxy: CountingProxy) -> None:
    acc = dovecot.new_account()
    acc.create_folder("Sent")
    acc.create_folder("All Mail")
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="a", date=T0,
                                message_id="<a@t>"), T0)
    store = Store(acc)
    store.scan(port=imap_proxy.port)
    imap_proxy.reset()
    assert store.scan(port=imap_proxy.port).touches == ()
    folder_verbs = [v for v in imap_proxy.verbs() if v not in ("CAPABILITY", "LOGIN", "LOGOUT")]
    assert folder_verbs == ["LIST", "STATUS", "STATUS", "STATUS"], imap_proxy.commands
    # with the folders configured, not even the LIST
    store.scan(port=imap_proxy.port, folders=("INBOX", "Sent", "All Mail"))
    imap_proxy.reset()
    store.scan(port=imap_proxy.port, folders=("INBOX", "Sent", "All Mail"))
    assert [v for v in imap_proxy.verbs() if v not in ("CAPABILITY", "LOGIN", "LOGOUT")] == [
        "STATUS"] * 3


def test_the_scanner_only_examines_and_peeks(dovecot: Dovecot, imap_proxy: CountingProxy) -> None:
    acc = dovecot.new_account()
    acc.create_folder("Sent")
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="a", date=T0,
                                message_id="<a@t>"), T0)
    Store(acc).scan(port=imap_proxy.port)
    verbs = set(imap_proxy.verbs())
    assert verbs <= {"CAPABILITY", "LOGIN", "LIST", "STATUS", "EXAMINE", "UID SEARCH",
                     "UID FETCH", "LOGOUT"}, imap_proxy.commands
    fetches = [c for c in imap_proxy.commands if c.upper().startswith("UID FETCH")]
    assert fetches and all("BODY.PEEK[HEADER.FIELDS" in c and "BODY[" not in c for c in fetches)


# ----------------------------------------------------------------- errors
def test_a_wrong_password_is_exit_3_without_the_secret(imap_account: Account) -> None:
    secret = "hunter2-wrong-Secret"
    with pytest.raises(MailLoginRefused) as caught:
        scan_mailbox(mailbox(imap_account, password=secret), LEADS, {}, (), TZ)
    error = caught.value
    assert error.exit_code == EXIT_TARGET == 3
    text = f"{error}\n{error!r}\n{error.hint}\n{error.args}"
    assert secret not in text
    assert imap_account.username in str(error)
    assert secret not in repr(mailbox(imap_account, password=secret))


def test_an_unreachable_server_is_exit_3(dovecot: Dovecot) -> None:
    from tests.imapserver import free_port

    acc = dovecot.new_account()
    with pytest.raises(MailError, match="cannot connect") as caught:
        scan_mailbox(mailbox(acc, port=free_port()), LEADS, {}, (), TZ, timeout=5)
    assert caught.value.exit_code == EXIT_TARGET


def test_no_tls_is_refused_for_a_host_off_this_machine() -> None:
    box = Mailbox(name="m", host="imap.example.com", port=143, tls="none", username=ME,
                  password="pw")
    with pytest.raises(MailError, match="clear text") as caught:
        scan_mailbox(box, LEADS, {}, (), TZ, timeout=1)
    assert "pw" not in str(caught.value)


def test_starttls_is_required_when_asked(imap_account: Account) -> None:
    # the test Dovecot has ssl = no, so it offers no STARTTLS: never fall back to clear text
    with pytest.raises(MailError, match="STARTTLS"):
        scan_mailbox(mailbox(imap_account, tls="starttls"), LEADS, {}, (), TZ)


def test_implicit_tls_to_a_plain_server_fails_cleanly(imap_account: Account) -> None:
    with pytest.raises(MailError, match="TLS"):
        scan_mailbox(mailbox(imap_account, tls="implicit"), LEADS, {}, (), TZ, timeout=5)


def test_my_addresses_default_to_the_username() -> None:
    assert Mailbox(name="m", host="h", username="Me@Here.org", password="p").my_addresses == {
        "me@here.org"}
    assert Mailbox(name="m", host="h", username="me", password="p").my_addresses == frozenset()
    assert Mailbox(name="m", host="h", username="u", password="p",
                   me=("A@b.c", " d@e.f ")).my_addresses == {"a@b.c", "d@e.f"}
    assert Mailbox(name="m", host="h", username="u", password="p").effective_port == 993
    assert Mailbox(name="m", host="h", username="u", password="p",
                   tls="starttls").effective_port == 143


# ----------------------------------------------------------------- property
POOL = [
    message(frm="ann@x.org", to=ME, subject="p0", date=T0, message_id="<p0@t>"),
    message(frm=ME, to="ann@x.org", subject="p1", date=T0 + timedelta(hours=1),
            message_id="<p1@t>"),
    message(frm=ME, to=["dana@corp.example", "ann@x.org"], subject="p2",
            date=T0 + timedelta(hours=2), message_id="<p2@t>"),
    message(frm="dana.w@home.example", to=ME, subject="p3", date=None, message_id="<p3@t>"),
    message(frm="dana@corp.example", to=ME, subject="p4", date=T0, message_id=""),
    message(frm="ann@x.org", to=ME, subject="p5", date=T0, message_id="<p5@t>",
            extra={"List-Id": "<l.example>"}),
    message(frm="joann@x.org", to=ME, subject="p6", date=T0, message_id="<p6@t>"),
]
FOLDERS = ["INBOX", "Sent", "All Mail"]
operation = st.one_of(
    st.tuples(st.just("append"), st.integers(0, len(POOL) - 1), st.sampled_from(FOLDERS)),
    st.tuples(st.just("recreate"), st.just(0), st.sampled_from(FOLDERS)),
    st.tuples(st.just("scan"), st.just(0), st.just("")),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(operation, min_size=1, max_size=8))
def test_any_interleaving_gives_the_touches_of_one_scan_from_scratch(
        dovecot: Dovecot, ops: list[tuple[str, int, str]]) -> None:
    acc = dovecot.new_account()
    for folder in FOLDERS[1:]:
        acc.create_folder(folder)
    store = Store(acc)
    for kind, index, folder in ops:
        if kind == "append":
            # one INTERNALDATE per message, whichever folder holds it
            acc.append(folder, POOL[index], T0 + timedelta(minutes=index))
        elif kind == "recreate":
            acc.recreate_folder(folder)
        else:
            store.scan()
    store.scan()
    incremental = [(t.lead, t.by, t.key, t.when, t.subject) for t in store.touches]
    assert len(incremental) == len(set(incremental)), "a touch was reported twice"
    fresh = {(t.lead, t.by, t.key, t.when, t.subject) for t in scratch(acc).touches}
    assert set(incremental) == fresh


# ----------------------------------------------------------------- address parsing
# the fast address reader agrees with the strict one: tests/test_mail_edge.py (a display name
# that looks like an address is not one, so `getaddresses` is no longer the reference)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 30_000), min_size=1, max_size=3000))
def test_uid_sets_cover_exactly_the_uids_within_the_line_limit(uids: set[int]) -> None:
    from followsync.sources.mail import MAX_SET, _uid_sets

    covered: list[int] = []
    for uid_set in _uid_sets(sorted(uids)):
        assert len(uid_set) <= MAX_SET
        for part in uid_set.split(","):
            low, _, high = part.partition(":")
            covered.extend(range(int(low), int(high or low) + 1))
    assert covered == sorted(uids)


# ----------------------------------------------------------------- TLS
def tls_touch(acc: Account) -> None:
    acc.append("INBOX", message(frm="ann@x.org", to=ME, subject="over tls", date=T0,
                                message_id="<tls@t>"), T0)


def test_implicit_tls_and_starttls_with_a_trusted_certificate(dovecot_tls: Dovecot) -> None:
    import ssl

    acc = dovecot_tls.new_account()
    tls_touch(acc)
    trusted = ssl.create_default_context(cafile=dovecot_tls.cafile)
    for tls, port in (("implicit", dovecot_tls.tls_port), ("starttls", dovecot_tls.port)):
        source = MailSource(mailbox(acc, tls=tls, port=port), ssl_context=trusted)
        assert brief(source.scan(LEADS, {}, (), TZ).touches) == {("ann", "them", "over tls")}


def test_an_untrusted_certificate_is_refused(dovecot_tls: Dovecot) -> None:
    acc = dovecot_tls.new_account()
    tls_touch(acc)
    for tls, port in (("implicit", dovecot_tls.tls_port), ("starttls", dovecot_tls.port)):
        with pytest.raises(MailError, match="certificate") as caught:
            scan_mailbox(mailbox(acc, tls=tls, port=port), LEADS, {}, (), TZ, timeout=10)
        assert caught.value.exit_code == EXIT_TARGET
        assert acc.password not in str(caught.value)


def test_folder_names_outside_ascii(imap_account: Account) -> None:
    from followsync.sources.mail import decode_folder, encode_folder

    for name in ("Éléments envoyés", "Sent & Co", "送信済み", "a/b ü", "Plain"):
        assert decode_folder(encode_folder(name)) == name
    assert encode_folder("Éléments envoyés") == "&AMk-l&AOk-ments envoy&AOk-s"
    acc = imap_account
    acc.create_folder("Éléments envoyés")
    acc.append("Éléments envoyés", message(frm=ME, to="ann@x.org", subject="envoyé", date=T0,
                                           message_id="<fr@t>"), T0)
    found = Store(acc).scan(folders=("INBOX", "Éléments envoyés")).touches
    assert [(t.folder, t.subject) for t in found] == [("Éléments envoyés", "envoyé")]


def test_internaldate_is_read_with_its_offset() -> None:
    from followsync.sources.mail import _internaldate

    assert _internaldate(b" 5-Jan-2026 08:00:00 -0130") == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert _internaldate(b"05-Jan-2026 08:00:00 +0545") == datetime(2026, 1, 5, 2, 15, tzinfo=UTC)
    assert _internaldate(b"31-Feb-2026 08:00:00 +0000") is None
    assert _internaldate(b"05-Foo-2026 08:00:00 +0000") is None


def test_a_password_outside_ascii_logs_in(dovecot: Dovecot) -> None:
    acc = dovecot.new_account(password="pässwörd-✓")  # sent with AUTHENTICATE PLAIN, UTF-8
    result = scan_mailbox(mailbox(acc, password="pässwörd-✓"), LEADS, {}, (), TZ)
    assert result.folders == ("INBOX",)
    with pytest.raises(MailLoginRefused):
        scan_mailbox(mailbox(acc, password="pässwörd-x"), LEADS, {}, (), TZ)
