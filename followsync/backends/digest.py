"""HTTP authentication from the server's 401 challenge: Digest (RFC 7616, and RFC 2617's
no-qop form) or Basic.

Baïkal's default is Digest, and a server that asks for Digest must not get the password in
a Basic header (in clear on plain HTTP). So over plain HTTP nothing is sent before the
server says what it wants; over HTTPS Basic goes first (see `Authenticator`). After a
Digest challenge one nonce serves every later request, with an incrementing nonce count, so
a sync costs one extra round trip per process, not one per request. Nothing here logs: the
password, the HA1 and the header are secrets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from followsync.errors import TargetError

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TOKEN68 = re.compile(r"[ \t]+([A-Za-z0-9\-._~+/]+=*)(?=\s*(?:,|$))")
_EQUALS = re.compile(r"[ \t]*=[ \t]*")
_SPACE = re.compile(r"[\s,]*")

# hashlib names, best first; SHA-512-256 only where this Python's OpenSSL has it
_ALGORITHMS = {"SHA-512-256": "sha512_256", "SHA-256": "sha256", "MD5": "md5"}


def _available(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


ALGORITHMS = [alg for alg, name in _ALGORITHMS.items() if _available(name)]


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: its scheme (lower case) and parameters
    (names lower case)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def algorithm(self) -> str:
        """The Digest algorithm in canonical spelling ("SHA-256-sess"); MD5 when absent."""
        given = self.params.get("algorithm", "MD5")
        base, sess = (given[:-5], "-sess") if given.lower().endswith("-sess") else (given, "")
        for known in _ALGORITHMS:
            if known.lower() == base.lower():
                return known + sess
        return given

    @property
    def qops(self) -> list[str]:
        return [q.strip().lower() for q in self.params.get("qop", "").split(",") if q.strip()]

    @property
    def stale(self) -> bool:
        return self.params.get("stale", "").lower() == "true"


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a WWW-Authenticate value (several headers joined with ", ").
    A challenge is a scheme token then either a token68 or name=value parameters; a token
    not followed by "=" starts the next challenge. Malformed tails are dropped."""
    found: list[Challenge] = []
    at = 0
    while True:
        at = _SPACE.match(header, at).end()  # type: ignore[union-attr]
        name = _TOKEN.match(header, at)
        if name is None:
            return found
        at = name.end()
        eq = _EQUALS.match(header, at)
        if eq is not None and found:
            quoted = _QUOTED.match(header, eq.end())
            token = _TOKEN.match(header, eq.end())
            if quoted is not None:
                value, at = re.sub(r"\\(.)", r"\1", quoted.group(1)), quoted.end()
            else:
                value, at = (token.group(0), token.end()) if token else ("", eq.end())
            found[-1].params[name.group(0).lower()] = value
            continue
        token68 = _TOKEN68.match(header, at)
        found.append(Challenge(name.group(0).lower(), {},
                               token68.group(1) if token68 is not None else None))
        if token68 is not None:
            at = token68.end()


def usable(challenge: Challenge) -> bool:
    """Whether followsync can answer this challenge."""
    if challenge.scheme == "basic":
        return True
    if challenge.scheme != "digest" or "nonce" not in challenge.params:
        return False
    base = challenge.algorithm.removesuffix("-sess")
    if base not in ALGORITHMS:
        return False
    return not challenge.qops or bool({"auth", "auth-int"} & set(challenge.qops))


def choose(challenges: list[Challenge]) -> Challenge | None:
    """The best challenge we can answer: Digest by algorithm strength (SHA-512-256, SHA-256,
    MD5), then Basic; None if none is usable."""
    def rank(challenge: Challenge) -> int:
        if challenge.scheme == "basic":
            return len(ALGORITHMS)
        return ALGORITHMS.index(challenge.algorithm.removesuffix("-sess"))

    candidates = [c for c in challenges if usable(c)]
    return min(candidates, key=rank) if candidates else None


def _hasher(algorithm: str) -> Callable[[str], str]:
    name = _ALGORITHMS[algorithm.removesuffix("-sess")]
    return lambda text: hashlib.new(name, text.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(challenge: Challenge, username: str, password: str, method: str,
                    uri: str, *, nc: int, cnonce: str, body: bytes = b"") -> tuple[str, str]:
    """The qop chosen ("" for RFC 2069 style) and the `response` hash (RFC 7616 §3.4.1)."""
    h = _hasher(challenge.algorithm)
    realm, nonce = challenge.params.get("realm", ""), challenge.params["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    if challenge.algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    qop = "auth" if "auth" in challenge.qops else ("auth-int" if challenge.qops else "")
    if qop == "auth-int":
        body_hash = hashlib.new(_ALGORITHMS[challenge.algorithm.removesuffix("-sess")],
                                body).hexdigest()
        ha2 = h(f"{method}:{uri}:{body_hash}")
    else:
        ha2 = h(f"{method}:{uri}")
    if not qop:
        return qop, h(f"{ha1}:{nonce}:{ha2}")
    return qop, h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def digest_header(challenge: Challenge, username: str, password: str, method: str, uri: str,
                  *, nc: int, cnonce: str, body: bytes = b"") -> str:
    """The Authorization value answering a Digest challenge (RFC 7616 §3.4)."""
    qop, response = digest_response(challenge, username, password, method, uri, nc=nc,
                                    cnonce=cnonce, body=body)
    realm = challenge.params.get("realm", "")
    fields: list[str] = []
    if challenge.params.get("userhash", "").lower() == "true":
        fields += [f"username={_quote(_hasher(challenge.algorithm)(f'{username}:{realm}'))}",
                   "userhash=true"]
    elif username.isascii():
        fields.append(f"username={_quote(username)}")
    else:  # RFC 7616 §3.4.4: an extended parameter (RFC 5987)
        fields.append(f"username*=UTF-8''{quote(username, safe='')}")
    fields += [f"realm={_quote(realm)}", f"nonce={_quote(challenge.params['nonce'])}",
               f"uri={_quote(uri)}"]
    if "algorithm" in challenge.params:
        fields.append(f"algorithm={challenge.algorithm}")
    fields.append(f"response={_quote(response)}")
    if "opaque" in challenge.params:
        fields.append(f"opaque={_quote(challenge.params['opaque'])}")
    if qop:
        fields += [f"qop={qop}", f"nc={nc:08x}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(fields)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass(frozen=True)
class Remembered:
    """A server that asked for Digest in an earlier run (`authmemory`): its last challenge
    (None: not kept, or not usable) and the last nonce count sent with it."""

    challenge: Challenge | None
    nc: int = 0


class Authenticator:
    """The credentials of one session and what the server last asked for.

    With `preemptive_basic` (the session decides: over HTTPS or to this machine, for a server
    not known to want Digest) the first request carries Basic credentials: a no-op sync
    stays one request, and some servers, Cyrus (Fastmail) among them, answer an anonymous
    request with 207 instead of asking for a login. Otherwise nothing is sent before the
    server's 401 says how, so a Digest server on the network never sees the password in
    clear. Once the server has asked for Digest — in this run, or in an earlier one
    (`remembered`) — every request carries Digest (the same nonce, the next nonce count) and
    a 401 asking for Basic is refused with an error: a man in the middle would ask just
    that to read the password. A remembered challenge is answered at once (a no-op stays
    one request). A 401 on a request that carried what the server asked for is final, except
    Digest's stale=true, or a refusal of a remembered nonce: a new nonce, the same password."""

    def __init__(self, username: str | None, password: str | None,
                 preemptive_basic: bool = False, remembered: Remembered | None = None,
                 server: str = "the server") -> None:
        self.username, self._password, self.server = username, password, server
        self.digest_only = remembered is not None  # it asked for Digest: never Basic
        self.challenge: Challenge | None = None
        self.assumed = False  # Basic sent before the server said anything
        self.recalled = False  # the challenge is an earlier run's, not yet answered here
        self.nc = 0
        if remembered is not None and remembered.challenge is not None:
            self.challenge, self.nc, self.recalled = remembered.challenge, remembered.nc, True
        elif remembered is None and preemptive_basic:
            self.challenge, self.assumed = Challenge("basic"), True

    def __repr__(self) -> str:
        return f"Authenticator(user={self.username!r})"

    @property
    def scheme(self) -> str | None:
        """"Digest SHA-256", "Basic", or None before the server asked."""
        if self.challenge is None or self.assumed:
            return None
        if self.challenge.scheme == "basic":
            return "Basic"
        return f"Digest {self.challenge.algorithm}"

    def remembered(self) -> Remembered | None:
        """What to keep for the next run: None unless the server asked for Digest."""
        if not self.digest_only:
            return None
        digest = self.challenge if self.challenge and self.challenge.scheme == "digest" \
            else None
        return Remembered(digest, self.nc if digest else 0)

    def header(self, method: str, uri: str, body: bytes = b"") -> str | None:
        """The Authorization value for the next request (None before any challenge)."""
        if self.challenge is None or self.username is None or self._password is None:
            return None
        if self.challenge.scheme == "basic":
            return basic_header(self.username, self._password)
        self.nc += 1
        return digest_header(self.challenge, self.username, self._password, method, uri,
                             nc=self.nc, cnonce=os.urandom(16).hex(), body=body)

    def challenged(self, www_authenticate: str | None) -> bool:
        """Take in a 401's challenge; True when the request is worth sending again (with
        credentials now, or with a fresh nonce), False when the 401 is final."""
        if self.username is None or self._password is None:
            return False
        challenges = parse_challenges(www_authenticate or "")
        if self.digest_only:
            return self._digest_again(challenges)
        if not challenges:
            # a 401 without a challenge (against RFC 9110) did not ask for Digest: Basic,
            # once, as followsync always did
            if self.challenge is None:
                self.challenge, self.assumed = Challenge("basic"), False
                return True
            return False
        picked = choose(challenges)
        if picked is None:
            raise _unanswerable(challenges)
        before = self.challenge
        if before is None or (self.assumed and picked.scheme == "digest"):
            self.challenge, self.nc, self.assumed = picked, 0, False
            self.digest_only = picked.scheme == "digest"
            return True
        return False

    def _digest_again(self, challenges: list[Challenge]) -> bool:
        """A 401 from a server that asked for Digest before: only Digest is answered."""
        picked = choose([c for c in challenges if c.scheme == "digest"])
        if picked is None:
            offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges})) \
                or "no scheme at all"
            raise TargetError(
                f"{self.server} asked for Digest authentication before and now asks for "
                f"{offered}: followsync does not send it the password any other way "
                "(over plain HTTP anyone in between could read it)",
                "if the server's login was switched away from Digest on purpose, delete "
                "http-auth.json in the state folder; else check who answers at that address")
        if self.challenge is None or self.recalled or picked.stale:
            self.challenge, self.nc, self.recalled = picked, 0, False
            return True
        return False

    def answered(self) -> None:
        """The server took the last request: a remembered challenge is this run's now."""
        self.recalled = False


def _unanswerable(challenges: list[Challenge]) -> TargetError:
    schemes = ", ".join(sorted({c.scheme.capitalize() for c in challenges}))
    return TargetError(f"the server asks for authentication followsync cannot answer "
                       f"({schemes})", "set the server to Digest or Basic authentication")
