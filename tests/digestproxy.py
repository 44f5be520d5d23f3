"""A reverse proxy on 127.0.0.1 that demands HTTP Digest authentication (RFC 7616; RFC 2617
without qop on request) in front of a real server, which cannot do Digest itself (Radicale,
Xandikos). It is the server side of followsync's Digest support, written independently of
followsync's own code (stdlib parsing, its own hashing):

    with DigestProxy(server.url, "alice", "pw", upstream_auth=("alice", "s3cret")) as proxy:
        ... point the client at proxy.url_for(calendar_url) ...
        proxy.expire_nonces()       # the next request gets 401 with stale=true
        assert proxy.challenges == 1

It really checks each answer: the response hash (a wrong password is a 401), the realm, the
uri against the request line, the opaque value, that the nonce is one it issued, and that
the nonce count grows (a replayed nc is a 401). An issued nonce goes stale after
`nonce_uses` requests or when `expire_nonces()` is called: a right answer with a stale nonce
gets 401 with stale=true and a new nonce. Everything else (request records, faults) is the
FaultProxy's; the client's Authorization never reaches the upstream, which gets Basic with
`upstream_auth` (or nothing).
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faultproxy import HOST, FaultProxy, _Handler, _Server
from tests.servers import Server

HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
DIGEST_USER, DIGEST_PASSWORD = "alice", "D1gest-Only-Pa55"


def _h(algorithm: str, text: str) -> str:
    return hashlib.new(HASHES[algorithm.removesuffix("-sess")], text.encode()).hexdigest()


class _DigestHandler(_Handler):
    def _proxy(self) -> None:
        proxy: DigestProxy = self.server.proxy  # type: ignore[assignment]
        verdict = proxy.verify(self.command, self.path, self.headers.get("Authorization"))
        if verdict == "ok":
            super()._proxy()
            return
        body = self._read_body()  # read it all: the connection stays usable
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = proxy._admit(self.command, self.path, headers, body)
        proxy._record(req.seen(401, f"challenge-{verdict}"))
        self._answer(401, proxy.challenge_headers(stale=verdict == "stale"), b"")


class DigestProxy(FaultProxy):
    """A FaultProxy that first demands Digest (and, with `basic=True`, also offers Basic)."""

    def __init__(self, upstream: str, username: str, password: str, *,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), qop: str | None = "auth",
                 realm: str = "BaikalDAV", basic: bool = False, userhash: bool = False,
                 nonce_uses: int | None = None,
                 upstream_auth: tuple[str, str] | None = None,
                 tls: tuple[str, str] | None = None) -> None:
        super().__init__(upstream)
        self.tls = tls  # (certificate, key) files: the proxy speaks HTTPS
        self.username, self.password, self.realm = username, password, realm
        self.algorithms, self.qop, self.basic = algorithms, qop, basic
        self.userhash, self.nonce_uses = userhash, nonce_uses
        self.upstream_auth = upstream_auth
        self.opaque = os.urandom(8).hex()
        self.challenges = 0  # 401 answers sent
        self.authorizations: list[str] = []  # every Authorization header received
        self._nonces: dict[str, dict[str, Any]] = {}  # nonce → {"nc": last nc, "uses", "stale"}
        self._auth_lock = threading.Lock()

    def start(self) -> DigestProxy:
        server = _Server((HOST, 0), _DigestHandler)
        server.proxy = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="digestproxy", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> DigestProxy:
        return self.start() if self._server is None else self

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/"

    def expire_nonces(self) -> None:
        """Every nonce issued so far is stale from now on."""
        with self._auth_lock:
            for state in self._nonces.values():
                state["stale"] = True

    # -- the server side of RFC 7616 --
    def challenge_headers(self, stale: bool = False) -> list[tuple[str, str]]:
        nonce = base64.b64encode(os.urandom(24)).decode()
        with self._auth_lock:
            self._nonces[nonce] = {"nc": 0, "uses": 0, "stale": False}
            self.challenges += 1
        headers = []
        for algorithm in self.algorithms:
            params = [f'realm="{self.realm}"']
            if self.qop:
                params.append(f'qop="{self.qop}"')
            params += [f"algorithm={algorithm}", f'nonce="{nonce}"', f'opaque="{self.opaque}"']
            if stale:
                params.append("stale=true")
            if self.userhash:
                params.append("userhash=true")
            headers.append(("WWW-Authenticate", "Digest " + ", ".join(params)))
        if self.basic:
            headers.append(("WWW-Authenticate", f'Basic realm="{self.realm}"'))
        return headers

    def verify(self, method: str, path: str, header: str | None) -> str:
        """"ok", "stale" (a right answer with an expired nonce), "missing" or "bad"."""
        if header is not None:
            with self._auth_lock:
                self.authorizations.append(header)
        if not header:
            return "missing"
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return "ok" if self.basic and rest.strip() == expected else "bad"
        if scheme.lower() != "digest":
            return "bad"
        fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(rest))
        algorithm = fields.get("algorithm", "MD5")
        if algorithm not in self.algorithms and not (
                algorithm == "MD5" and "algorithm" not in fields and "MD5" in self.algorithms):
            return "bad"
        nonce = fields.get("nonce", "")
        with self._auth_lock:
            state = self._nonces.get(nonce)
        if state is None or fields.get("realm") != self.realm or fields.get("uri") != path \
                or fields.get("opaque") != self.opaque:
            return "bad"
        username = _h(algorithm, f"{self.username}:{self.realm}") \
            if fields.get("userhash") == "true" else self.username
        if fields.get("username") != username:
            return "bad"
        ha1 = _h(algorithm, f"{self.username}:{self.realm}:{self.password}")
        cnonce = fields.get("cnonce", "")
        if algorithm.endswith("-sess"):
            ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
        ha2 = _h(algorithm, f"{method}:{path}")
        if self.qop:
            nc_text = fields.get("nc", "")
            if fields.get("qop") != "auth" or len(nc_text) != 8 or not cnonce:
                return "bad"
            expected = _h(algorithm, f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        else:
            if "qop" in fields or "nc" in fields:
                return "bad"
            expected = _h(algorithm, f"{ha1}:{nonce}:{ha2}")
        if fields.get("response") != expected:
            return "bad"
        with self._auth_lock:
            if state["stale"] or (self.nonce_uses is not None
                                  and state["uses"] >= self.nonce_uses):
                return "stale"
            if self.qop:
                nc = int(fields["nc"], 16)
                if nc <= state["nc"]:  # a replayed (or reordered) nonce count
                    return "bad"
                state["nc"] = nc
            state["uses"] += 1
        return "ok"

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        out = {k: v for k, v in headers.items() if k != "authorization"}
        if self.upstream_auth is not None:
            user, password = self.upstream_auth
            out["authorization"] = "Basic " + base64.b64encode(
                f"{user}:{password}".encode()).decode()
        return super()._forward(method, path, out, body)


def start_digest_proxy(server: Server, **options: Any) -> DigestProxy:
    """A started DigestProxy in front of `server`, accepting DIGEST_USER / DIGEST_PASSWORD;
    towards Radicale it logs in with the server's own Basic credentials."""
    upstream = (server.username, server.password) \
        if server.username and server.password else None
    return DigestProxy(server.url, DIGEST_USER, DIGEST_PASSWORD, upstream_auth=upstream,
                       **options).start()


@pytest.fixture
def digest_proxy() -> Iterator[Callable[..., DigestProxy]]:
    """A factory: digest_proxy(server, algorithms=..., qop=..., nonce_uses=...) → a started
    DigestProxy (see start_digest_proxy), stopped after the test. A test module uses it with
    `from tests.digestproxy import digest_proxy`."""
    proxies: list[DigestProxy] = []

    def make(server: Server, **options: Any) -> DigestProxy:
        proxies.append(start_digest_proxy(server, **options))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()
