"""HTTP Digest authentication (Baïkal's default): the challenge parser and hashes against
the RFC examples, then whole syncs through a Digest-demanding proxy (tests/digestproxy.py)
in front of real Radicale and Xandikos servers.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from followsync.backends.digest import (
    Authenticator,
    Challenge,
    Remembered,
    choose,
    digest_header,
    digest_response,
    parse_challenges,
)
from followsync.cli import main
from followsync.errors import TargetError
from tests.digestproxy import DIGEST_PASSWORD, DIGEST_USER, DigestProxy, digest_proxy
from tests.servers import CalendarInfo, Server, drop_calendar, fresh_calendar

# ------------------------------------------------------------------ RFC examples
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", '
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc7616_section_3_9_1_sha256_and_md5() -> None:
    sha256, md5 = parse_challenges(RFC7616_CHALLENGE)
    assert (sha256.algorithm, md5.algorithm) == ("SHA-256", "MD5")
    assert sha256.qops == ["auth", "auth-int"]
    for challenge, expected in (
            (sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
            (md5, "8ca523f5e9506fed4657c9700eebdbec")):
        assert digest_response(challenge, "Mufasa", "Circle of Life", "GET",
                               "/dir/index.html", nc=1, cnonce=RFC7616_CNONCE) == (
            "auth", expected)
    header = digest_header(sha256, "Mufasa", "Circle of Life", "GET", "/dir/index.html",
                           nc=1, cnonce=RFC7616_CNONCE)
    assert header == (
        'Digest username="Mufasa", realm="http-auth@example.org", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", uri="/dir/index.html", '
        'algorithm=SHA-256, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", qop=auth, nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}"')


def test_rfc2617_section_3_5_md5_without_algorithm() -> None:
    (challenge,) = parse_challenges(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    assert digest_response(challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html",
                           nc=1, cnonce="0a4f113b") == ("auth", "6629fae49393a05397450978507c4ef1")
    assert "algorithm" not in digest_header(challenge, "Mufasa", "x", "GET", "/", nc=1,
                                            cnonce="c")  # not in the challenge: not echoed


@pytest.mark.skipif("sha512_256" not in hashlib.algorithms_available, reason="no SHA-512/256")
def test_rfc7616_section_3_9_2_userhash_and_non_ascii_user() -> None:
    """The values are those of RFC 7616 erratum 4897 (the RFC's printed example is wrong)."""
    challenge = Challenge("digest", {
        "realm": "api@example.org", "qop": "auth", "algorithm": "SHA-512-256",
        "nonce": "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
        "opaque": "HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", "charset": "UTF-8",
        "userhash": "true"})
    header = digest_header(challenge, "J\u00e4s\u00f8n Doe", "Secret, or not?", "GET",
                           "/doe.json", nc=1, cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v")
    assert 'username="793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"' \
        in header and "userhash=true" in header
    assert 'response="3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"' \
        in header
    challenge.params.pop("userhash")
    assert "username*=UTF-8''J%C3%A4s%C3%B8n%20Doe" in digest_header(
        challenge, "J\u00e4s\u00f8n Doe", "p", "GET", "/", nc=1, cnonce="c")


def test_rfc2069_style_without_qop_and_sess_variants() -> None:
    (legacy,) = parse_challenges('Digest realm="r", nonce="n"')
    qop, response = digest_response(legacy, "u", "p", "GET", "/x", nc=1, cnonce="c")
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    assert (qop, response) == ("", md5(f"{md5('u:r:p')}:n:{md5('GET:/x')}"))
    header = digest_header(legacy, "u", "p", "GET", "/x", nc=1, cnonce="c")
    assert "nc=" not in header and "cnonce=" not in header and "qop=" not in header
    (sess,) = parse_challenges('Digest realm="r", nonce="n", qop=auth, algorithm=sha-256-SESS')
    assert sess.algorithm == "SHA-256-sess"
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    ha1 = sha(f"{sha('u:r:p')}:n:c")
    assert digest_response(sess, "u", "p", "PUT", "/x", nc=2, cnonce="c") == (
        "auth", sha(f"{ha1}:n:00000002:c:auth:{sha('PUT:/x')}"))


def test_parsing_several_challenges_quotes_and_token68() -> None:
    found = parse_challenges(
        'Negotiate YIIB==, Basic realm="a \\"quoted\\", realm", '
        'Digest realm="r",nonce="n" , qop="auth", stale=TRUE, Bearer')
    assert [c.scheme for c in found] == ["negotiate", "basic", "digest", "bearer"]
    assert found[0].token68 == "YIIB=="
    assert found[1].params == {"realm": 'a "quoted", realm'}
    assert found[2].params["nonce"] == "n" and found[2].stale
    assert parse_challenges("") == [] and parse_challenges(", ,") == []


def test_choice_prefers_sha256_then_md5_then_basic() -> None:
    both = parse_challenges('Basic realm="r", Digest realm="r", nonce="1", algorithm=MD5, '
                            'Digest realm="r", nonce="2", algorithm=SHA-256')
    assert choose(both) == both[2]
    assert choose(both[:2]) == both[1]
    assert choose(both[:1]) == both[0]
    unusable = parse_challenges('Digest realm="r", nonce="1", algorithm=SHA-1, Bearer, '
                                'Digest realm="r", algorithm=MD5')  # no nonce
    assert choose(unusable) is None


def test_the_authenticator_sends_nothing_before_a_challenge_and_counts_nonces() -> None:
    auth = Authenticator("u", "p")
    assert auth.header("GET", "/") is None
    assert auth.challenged('Digest realm="r", nonce="n1", qop="auth", algorithm=MD5')
    assert auth.scheme == "Digest MD5"
    first, second = auth.header("GET", "/a"), auth.header("GET", "/b")
    assert first and "nc=00000001" in first and second and "nc=00000002" in second
    assert "p" not in repr(auth)
    # a 401 to credentials is final ...
    assert not auth.challenged('Digest realm="r", nonce="n2", qop="auth", algorithm=MD5')
    # ... unless the nonce was only stale: a new nonce, the count starts again
    assert auth.challenged('Digest realm="r", nonce="n3", qop="auth", stale=true')
    third = auth.header("GET", "/c")
    assert third and 'nonce="n3"' in third and "nc=00000001" in third
    assert not Authenticator(None, None).challenged('Basic realm="r"')
    with pytest.raises(TargetError, match=r"cannot answer \(Bearer, Negotiate\)"):
        Authenticator("u", "p").challenged("Bearer, Negotiate")


def test_a_digest_server_never_gets_basic() -> None:
    auth = Authenticator("u", "p")
    assert auth.challenged('Digest realm="r", nonce="n", qop="auth", Basic realm="r"')
    header = auth.header("GET", "/")
    assert header is not None and header.startswith("Digest ")


def test_over_tls_basic_goes_first_until_the_server_asks_for_digest() -> None:
    auth = Authenticator("u", "p", preemptive_basic=True)
    first = auth.header("GET", "/")
    assert first is not None and first.startswith("Basic ") and auth.scheme is None
    assert auth.challenged('Digest realm="r", nonce="n", qop="auth"')  # Basic was not it
    for _ in range(3):
        header = auth.header("GET", "/")
        assert header is not None and header.startswith("Digest ")
    refused = Authenticator("u", "p", preemptive_basic=True)
    assert not refused.challenged('Basic realm="r"')  # Basic was sent: the password is wrong


def test_a_server_that_asked_for_digest_is_refused_basic_later() -> None:
    """A 401 asking for Basic (or for nothing) after Digest: a man in the middle's trick to
    read the password in clear; refused with a clear error, nothing sent."""
    for later in ('Basic realm="r"', "", "Bearer"):
        auth = Authenticator("u", "S3cret-pw", server="http://dav.example.com")
        assert auth.challenged('Digest realm="r", nonce="n", qop="auth"')
        auth.header("GET", "/")
        with pytest.raises(TargetError, match="asked for Digest") as caught:
            auth.challenged(later)
        assert "dav.example.com" in caught.value.message
        assert "S3cret" not in caught.value.message + caught.value.hint
        assert auth.challenge is not None and auth.challenge.scheme == "digest"
    # so is a server remembered from an earlier run (no challenge of its own yet)
    remembered = Authenticator("u", "p", preemptive_basic=True, remembered=Remembered(None, 0))
    assert remembered.header("GET", "/") is None
    with pytest.raises(TargetError, match="asked for Digest"):
        remembered.challenged('Basic realm="r"')
    assert remembered.challenged('Digest realm="r", nonce="n", qop="auth", Basic realm="r"')


def test_a_kept_challenge_is_answered_at_once_and_renewed_once_if_refused() -> None:
    (kept,) = parse_challenges('Digest realm="r", nonce="old", qop="auth", algorithm=SHA-256')
    auth = Authenticator("u", "p", remembered=Remembered(kept, 41))
    first = auth.header("GET", "/")
    assert first and 'nonce="old"' in first and "nc=0000002a" in first
    # refused (the server forgot the nonce, no stale flag): a new nonce once ...
    assert auth.challenged('Digest realm="r", nonce="new", qop="auth", algorithm=SHA-256')
    second = auth.header("GET", "/")
    assert second and 'nonce="new"' in second and "nc=00000001" in second
    # ... and a refusal of the fresh one is final (the password is wrong)
    assert not auth.challenged('Digest realm="r", nonce="newer", qop="auth"')


def test_the_kept_challenge_file_is_private_safe_and_only_a_shortcut(tmp_path: Path) -> None:
    """http-auth.json: JSON, 0600, no password and no HA1; anything that does not read back
    cleanly (or is not the user's own private file) is ignored, never an error."""
    from followsync.backends import authmemory

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (kept,) = parse_challenges('Digest realm="r", nonce="n1", opaque="o", qop="auth", '
                               'algorithm=MD5, stale=true, domain="/x"')
    authmemory.keep(state, "http://h:1", Remembered(kept, 7))
    path = state / authmemory.FILE
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    assert "stale" not in text and ha1 not in text
    back = authmemory.recall(state, "http://h:1")
    assert back is not None and back.nc == 7 and back.challenge is not None
    assert back.challenge.params == {"realm": "r", "nonce": "n1", "opaque": "o", "qop": "auth",
                                     "algorithm": "MD5"}
    assert authmemory.recall(state, "http://other:1") is None
    good = path.read_bytes()
    for broken in (good[:len(good) // 2], b"\xff\xfe", b"[]", b'{"servers": []}',
                   good.replace(b'"nc": 7', b'"nc": "7"'), good.replace(b"7", b"1e999"),
                   good.replace(b'"n1"', b"5")):
        path.write_bytes(broken)
        found = authmemory.recall(state, "http://h:1")
        assert found is None or (found.challenge is None and found.nc == 0), broken
    path.write_bytes(good)
    path.chmod(0o666)  # writable by others: not trusted
    assert authmemory.recall(state, "http://h:1") is None
    path.unlink()
    (tmp_path / "elsewhere.json").write_bytes(good)
    path.symlink_to(tmp_path / "elsewhere.json")
    assert authmemory.recall(state, "http://h:1") is None
    authmemory.keep(state, "http://h:1", Remembered(kept, 8))  # not through the link
    assert (tmp_path / "elsewhere.json").read_bytes() == good
    authmemory.keep(tmp_path / "missing", "http://h:1", Remembered(kept, 8))
    assert not (tmp_path / "missing").exists()  # a state folder is never made here


# ------------------------------------------------------- through the proxy, real servers
_ = digest_proxy  # the fixture, used by name
NOW = "2026-11-12T10:00"
PASSWORD_ENV = "FOLLOWSYNC_TEST_DIGEST_PASSWORD"


@pytest.fixture(params=["radicale", "xandikos"])
def server(request: pytest.FixtureRequest) -> Server:
    found: Server = request.getfixturevalue(f"{request.param}_server")
    return found


@pytest.fixture
def calendar(server: Server) -> Iterator[CalendarInfo]:
    info = fresh_calendar(server)
    try:
        yield info
    finally:
        drop_calendar(info)


def lead_block(lead_id: str, day: int = 1) -> str:
    return f"  {lead_id}:\n    name: Person {lead_id}\n    log:\n      - 2026-11-{day:02d} note\n"


class Digested:
    """A config pointing at a calendar (by display name) through a DigestProxy."""

    def __init__(self, tmp: Path, cal: CalendarInfo, proxy: DigestProxy,
                 monkeypatch: pytest.MonkeyPatch, password: str = DIGEST_PASSWORD,
                 calendar_name: str | None = None, verify: str | None = None) -> None:
        self.tmp, self.proxy = tmp, proxy
        self.leads = tmp / "leads.yaml"
        self.config = tmp / "config.yaml"
        monkeypatch.setenv(PASSWORD_ENV, password)
        self.config.write_text(
            "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
            "targets:\n  - name: phone\n    type: caldav\n"
            f"    url: {proxy.url_for(cal.url)}\n"
            f"    calendar: {calendar_name or cal.calendar_name}\n    as: event\n"
            f"    username: {DIGEST_USER}\n    password_env: {PASSWORD_ENV}\n    timeout: 10\n"
            + (f"    verify: {verify}\n" if verify else ""))
        self.config.chmod(0o600)

    def write_leads(self, *blocks: str) -> None:
        self.leads.write_text("version: 1\ndefaults:\n  cadence: [2w]\n  at: \"09:30\"\n"
                              "leads:\n" + "".join(blocks))

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
        code = main(["--config", str(self.config), "--now", NOW, *args])
        out = capsys.readouterr()
        return code, out.out + out.err


def answered(proxy: DigestProxy) -> list[str]:
    """The methods of the requests that got past the authentication."""
    return [seen.method for seen in proxy.seen() if seen.status != 401]


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",), ("SHA-256-sess",)],
                         ids=["sha256-and-md5", "md5", "sha256-sess"])
def test_a_digest_server_syncs_creates_updates_deletes_and_noop_is_cheap(
        algorithms: tuple[str, ...], server: Server, calendar: CalendarInfo, tmp_path: Path,
        digest_proxy: Callable[..., DigestProxy], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    proxy = digest_proxy(server, algorithms=algorithms)
    setup = Digested(tmp_path, calendar, proxy, monkeypatch)
    setup.write_leads(*(lead_block(f"lead-{i}") for i in range(3)))
    code, out = setup.run(capsys, "-vv", "sync")
    assert code == 0, out
    assert "3 created" in out
    assert len(calendar.hrefs()) == 3
    # the very first request to a server on this machine carries Basic (the server has not
    # said anything yet); its 401 asks for Digest, and from then on discovery and the sync
    # path answer with the best Digest on offer, never Basic again
    assert proxy.challenges == 1, proxy.seen()
    first, *rest = proxy.authorizations
    assert first.startswith("Basic ")
    assert rest and all(a.startswith("Digest ") and f"algorithm={algorithms[0]}," in a
                        for a in rest)
    assert DIGEST_PASSWORD not in out
    # a no-op: one REPORT, answering the challenge the last run kept (the state folder's
    # http-auth.json: its nonce, the next nonce count), so no 401 first
    proxy.reset()
    code, out = setup.run(capsys, "sync")
    assert code == 0, out
    assert "0 created, 0 updated, 0 deleted, 3 unchanged" in out
    assert answered(proxy) == ["REPORT"], proxy.seen()
    assert len(proxy.seen()) == 1 and proxy.challenges == 1
    # an update (PUT with If-Match) and a removal (DELETE with If-Match), same nonce
    setup.write_leads(lead_block("lead-0", day=5), lead_block("lead-1"))
    proxy.reset()
    code, out = setup.run(capsys, "sync")
    assert code == 0, out
    assert "1 updated" in out and "1 deleted" in out, out
    writes = [s for s in proxy.seen() if s.method in ("PUT", "DELETE")]
    assert [s.status for s in writes if s.method == "PUT"] in ([200], [201], [204])
    assert all(s.headers.get("if-match") for s in writes), writes
    assert sum(1 for s in proxy.seen() if s.status == 401) == 0, proxy.seen()  # kept nonce
    assert len(calendar.hrefs()) == 2


def test_a_calendar_is_created_and_listed_through_digest(
        server: Server, tmp_path: Path, digest_proxy: Callable[..., DigestProxy],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """MKCALENDAR (discovery's short path) and `followsync calendars` (python-caldav) go
    through our session."""
    proxy = digest_proxy(server)
    cal = fresh_calendar(server)
    name = f"digest-made-{cal.calendar_name[-8:]}"
    made: list[object] = []
    try:
        setup = Digested(tmp_path, cal, proxy, monkeypatch, calendar_name=name)
        setup.write_leads(lead_block("a"))
        code, out = setup.run(capsys, "sync")
        assert code == 0, out
        assert "MKCALENDAR" in answered(proxy), proxy.seen()
        code, out = setup.run(capsys, "calendars")
        assert code == 0, out
        assert name in out and cal.calendar_name in out
        made = [c for c in server.client().get_principal().get_calendars()
                if c.get_display_name() == name]
        assert len(made) == 1
    finally:
        drop_calendar(cal)
        for calendar in made:
            calendar.delete()  # type: ignore[attr-defined]


def test_a_stale_nonce_is_answered_again_without_failing(
        server: Server, calendar: CalendarInfo, tmp_path: Path,
        digest_proxy: Callable[..., DigestProxy], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A nonce good for two requests only: the sync meets stale=true again and again, takes
    the new nonce each time (nonce count from 1) and finishes."""
    proxy = digest_proxy(server, nonce_uses=2)
    setup = Digested(tmp_path, calendar, proxy, monkeypatch)
    setup.write_leads(*(lead_block(f"lead-{i}") for i in range(4)))
    code, out = setup.run(capsys, "sync")
    assert code == 0, out
    assert "4 created" in out
    stale = [s for s in proxy.seen() if s.fault == "challenge-stale"]
    assert len(stale) >= 2, proxy.seen()
    # only the very first request (Basic, before the server said anything) was refused
    assert [i for i, s in enumerate(proxy.seen()) if s.fault == "challenge-bad"] in ([], [0]), \
        proxy.seen()
    proxy.reset()
    proxy.expire_nonces()
    code, out = setup.run(capsys, "sync")
    assert code == 0 and "4 unchanged" in out, out


def test_a_wrong_password_is_exit_3_without_a_secret(
        server: Server, calendar: CalendarInfo, tmp_path: Path,
        digest_proxy: Callable[..., DigestProxy], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    proxy = digest_proxy(server)
    wrong = "Wr0ng-D1gest-Pa55"
    setup = Digested(tmp_path, calendar, proxy, monkeypatch, password=wrong)
    setup.write_leads(lead_block("a"))
    for args in (["-vv", "sync"], ["calendars"]):
        proxy.reset()
        code, out = setup.run(capsys, *args)
        assert code == 3, out
        assert f"authentication refused for user {DIGEST_USER}" in out
        assert "Traceback" not in out
        # one request to learn how (the very first one carries Basic), one with the (wrong)
        # Digest answer: no loop
        assert [s.fault for s in proxy.seen()] in (["challenge-missing", "challenge-bad"],
                                                   ["challenge-bad", "challenge-bad"])
        ha1 = hashlib.sha256(f"{DIGEST_USER}:BaikalDAV:{wrong}".encode()).hexdigest()
        for secret in (wrong, ha1, *proxy.authorizations):
            assert secret not in out


def test_legacy_digest_without_qop(
        xandikos_server: Server, tmp_path: Path, digest_proxy: Callable[..., DigestProxy],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cal = fresh_calendar(xandikos_server)
    try:
        proxy = digest_proxy(xandikos_server, algorithms=("MD5",), qop=None)
        setup = Digested(tmp_path, cal, proxy, monkeypatch)
        setup.write_leads(lead_block("a"), lead_block("b"))
        code, out = setup.run(capsys, "sync")
        assert code == 0 and "2 created" in out, out
        assert all("qop" not in a for a in proxy.authorizations)
    finally:
        drop_calendar(cal)


# ------------------------------------------- the proxy itself, checked by other clients
def test_the_proxy_accepts_independent_clients_and_refuses_wrong_answers(
        xandikos_server: Server, digest_proxy: Callable[..., DigestProxy]) -> None:
    """Python's urllib (MD5) and niquests (SHA-256) get through; a wrong password, a
    replayed nonce count and Basic (not offered) do not."""
    import http.client
    import urllib.request

    import niquests
    from niquests.auth import HTTPDigestAuth

    md5 = digest_proxy(xandikos_server, algorithms=("MD5",))
    url = md5.url_for(xandikos_server.principal_url)
    handler = urllib.request.HTTPDigestAuthHandler()
    handler.add_password("BaikalDAV", md5.origin, DIGEST_USER, DIGEST_PASSWORD)
    with urllib.request.build_opener(handler).open(
            urllib.request.Request(url, method="PROPFIND", headers={"Depth": "0"})) as answer:
        assert answer.status == 207
    sha = digest_proxy(xandikos_server, algorithms=("SHA-256",))
    url = sha.url_for(xandikos_server.principal_url)
    assert niquests.request("PROPFIND", url, headers={"Depth": "0"}, auth=HTTPDigestAuth(
        DIGEST_USER, DIGEST_PASSWORD)).status_code == 207
    assert niquests.request("PROPFIND", url, headers={"Depth": "0"}, auth=HTTPDigestAuth(
        DIGEST_USER, "wrong")).status_code == 401
    assert niquests.request("PROPFIND", url, headers={"Depth": "0"}, auth=(
        DIGEST_USER, DIGEST_PASSWORD)).status_code == 401  # Basic
    # the first accepted Authorization sent again (same nonce count): a replay, refused
    accepted = sha.authorizations[0]
    assert "nc=00000001" in accepted
    conn = http.client.HTTPConnection("127.0.0.1", sha.port, timeout=10)
    try:
        conn.request("PROPFIND", url.split(sha.origin, 1)[1],
                     headers={"Depth": "0", "Authorization": accepted})
        replay = conn.getresponse()
        replay.read()
    finally:
        conn.close()
    assert replay.status == 401
    assert [s.fault for s in sha.seen()][-1] == "challenge-bad"


# ------------------------------------------------------------------------ over HTTPS
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (also the CA file to trust)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("offers_basic", [False, True], ids=["digest-only", "basic-too"])
def test_over_https_basic_goes_first_and_digest_takes_over(
        offers_basic: bool, certificate: tuple[str, str], xandikos_server: Server,
        tmp_path: Path, digest_proxy: Callable[..., DigestProxy],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Over TLS the first request carries Basic: some servers (Cyrus, so Fastmail) answer an
    anonymous request with 207 instead of asking for a login. A server taking Basic costs no
    401 at all; a Digest-only one gets Basic on its very first contact only: followsync
    remembers that it asked for Digest, and later runs send only Digest."""
    cal = fresh_calendar(xandikos_server)
    try:
        proxy = digest_proxy(xandikos_server, basic=offers_basic, tls=certificate)
        setup = Digested(tmp_path, cal, proxy, monkeypatch, verify=certificate[0])
        setup.write_leads(lead_block("a"), lead_block("b"))
        assert setup.run(capsys, "sync")[0] == 0
        proxy.reset()
        proxy.authorizations.clear()
        code, out = setup.run(capsys, "sync")
        assert code == 0 and "2 unchanged" in out, out
        assert answered(proxy) == ["REPORT"], proxy.seen()
        schemes = [a.split(" ", 1)[0] for a in proxy.authorizations]
        if offers_basic:
            assert schemes == ["Basic"] and proxy.challenges == 0, proxy.seen()
        else:
            assert schemes == ["Digest"], proxy.seen()
            assert [s.fault for s in proxy.seen()] == [None]  # the kept nonce: no 401
    finally:
        drop_calendar(cal)


@pytest.mark.parametrize(("url", "basic_first"), [
    ("https://dav.example.com/", True),     # encrypted: Basic with the first request
    ("http://127.0.0.1:5232/", True),       # this machine: nothing crosses a network
    ("http://localhost:5232/", True),
    ("http://[::1]:5232/", True),
    ("http://dav.example.com/", False),     # clear text over a network: wait for the 401
    ("http://192.0.2.7:5232/", False),
])
def test_when_basic_goes_with_the_first_request(url: str, basic_first: bool,
                                                tmp_path: Path) -> None:
    """The policy itself (no request is sent): a no-op sync to a loopback or HTTPS server
    is one request, and a password never crosses a network in clear before the server asked
    for it; a server that asked for Digest once (kept in the state folder) never gets Basic
    again."""
    from followsync.backends.davhttp import DavSession

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    header = DavSession(url, "alice", "s3cret", state_dir=state).auth.header("REPORT", "/")
    assert (header is not None and header.startswith("Basic ")) is basic_first
    asked = DavSession(url, "alice", "s3cret", state_dir=state)
    asked.auth.challenged('Digest realm="r", nonce="n", qop="auth"')
    asked.auth.header("REPORT", "/")
    asked.close()
    again = DavSession(url, "alice", "s3cret", state_dir=state)
    header = again.auth.header("REPORT", "/")
    assert header is not None and header.startswith("Digest ") and "nc=00000002" in header


def test_a_no_op_is_one_request_and_a_server_remembered_as_digest_never_gets_basic(
        radicale_server: Server, tmp_path: Path, digest_proxy: Callable[..., DigestProxy],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Across runs: the kept nonce makes a no-op one request; a nonce the server dropped
    costs one 401 (then one request again); and once the server (or someone in between)
    asks for Basic instead, the sync fails for that target, naming it, without sending the
    password."""
    cal = fresh_calendar(radicale_server)
    try:
        proxy = digest_proxy(radicale_server)
        setup = Digested(tmp_path, cal, proxy, monkeypatch)
        setup.write_leads(lead_block("a"), lead_block("b"))
        assert setup.run(capsys, "sync")[0] == 0
        assert (tmp_path / "state" / "http-auth.json").stat().st_mode & 0o777 == 0o600
        for _ in range(2):
            proxy.reset()
            code, out = setup.run(capsys, "sync")
            assert code == 0 and "2 unchanged" in out, out
            assert [(s.method, s.fault) for s in proxy.seen()] == [("REPORT", None)]
        proxy.reset()
        proxy.expire_nonces()
        code, out = setup.run(capsys, "sync")
        assert code == 0 and "2 unchanged" in out, out
        assert [s.fault for s in proxy.seen()] == ["challenge-stale", None]
        proxy.reset()
        assert setup.run(capsys, "sync")[0] == 0 and len(proxy.seen()) == 1
        # now the server asks for Basic only
        proxy.algorithms, proxy.basic = (), True
        proxy.reset()
        proxy.authorizations.clear()
        code, out = setup.run(capsys, "sync")
        assert code == 3, out
        assert "phone: " in out and "asked for Digest" in out and proxy.origin in out, out
        assert "Traceback" not in out and DIGEST_PASSWORD not in out
        assert not [a for a in proxy.authorizations if not a.startswith("Digest ")], \
            proxy.authorizations
        assert len(proxy.seen()) <= 2
    finally:
        drop_calendar(cal)
