"""Signing in to Google (OAuth 2.0 for installed apps) and keeping the tokens.

The user brings their own OAuth client (a "Desktop app" client JSON file, `client_secret:`):
a secret shipped in followsync would break Google's terms and share one quota. `followsync
auth` runs the loopback flow with PKCE: the consent URL is printed (and opened where a browser
is), Google redirects to http://127.0.0.1:PORT/ where followsync listens (`auth_port` fixes
the port for SSH forwarding). The refresh token goes to the keyring when one works, else to a
mode-0600 file in the state folder; the short-lived access token is cached in that file too,
so a no-op sync costs one API request and no token request. No token or secret is ever
logged or shown.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from followsync.backends.apisession import ApiSession
from followsync.errors import SignInRefused, TargetError
from followsync.tokenstore import KeptTokens, slug

if TYPE_CHECKING:
    from followsync.config import MailConfig, Target

log = logging.getLogger("followsync")
SCOPE = "https://www.googleapis.com/auth/calendar"  # list and create calendars, write events
MAIL_SCOPE = "https://mail.google.com/"  # IMAP (XOAUTH2) for an `auth: google` mailbox
GOOGLE_AUTH = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GOOGLE_API = "https://www.googleapis.com"


@dataclass(frozen=True)
class GoogleSettings:
    """What a `google` target needs (from the config)."""

    name: str
    calendar: str
    client_secret: Path
    state_dir: Path
    endpoint: str | None = None
    auth_port: int | None = None
    timeout: float = 30.0
    zone: str = "UTC"  # for a calendar followsync creates
    scope: str = SCOPE  # MAIL_SCOPE for a mailbox (a sign-in, and a token file, of its own)

    @property
    def mail(self) -> bool:
        return self.scope == MAIL_SCOPE

    @property
    def who(self) -> str:
        return f"{'mailbox' if self.mail else 'target'} {self.name}"

    @property
    def token_file(self) -> str:
        return f"google-{'mail-' if self.mail else ''}{slug(self.name)}.json"

    @property
    def api_base(self) -> str:
        return (self.endpoint or GOOGLE_API).rstrip("/") + "/calendar/v3/"

    def __repr__(self) -> str:
        return f"GoogleSettings(name={self.name!r})"


def settings_for(target: Target | MailConfig) -> GoogleSettings:
    """What the google backend and `followsync auth` need from a `type: google` target, or
    an `auth: google` mailbox (the mail scope, its own sign-in)."""
    from followsync.config import MailConfig, default_state_dir

    if isinstance(target, MailConfig):
        assert target.client_secret is not None
        return GoogleSettings(target.name, "", target.client_secret,
                              target.state_dir or default_state_dir(), endpoint=target.endpoint,
                              auth_port=target.auth_port, timeout=target.timeout,
                              scope=MAIL_SCOPE)
    assert target.client_secret is not None and target.calendar is not None
    return GoogleSettings(target.name, target.calendar, target.client_secret,
                          target.state_dir or default_state_dir(), endpoint=target.endpoint,
                          auth_port=target.auth_port, timeout=target.timeout,
                          zone=target.zone)


@dataclass(frozen=True)
class Client:
    """The user's OAuth client, from the JSON file Google's console gives."""

    client_id: str
    client_secret: str
    auth_uri: str
    token_uri: str

    def __repr__(self) -> str:  # never show the secret
        return f"Client({self.client_id!r})"


def auth_command(name: str) -> str:
    return f"followsync auth {name}"


def load_client(settings: GoogleSettings) -> Client:
    """Read the client JSON ("installed" or "web" section); {endpoint} replaces Google's URLs."""
    path = settings.client_secret
    how = ("create a \"Desktop app\" OAuth client in the Google Cloud console and download "
           "its JSON (README, \"Google Calendar\")")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"{settings.who}: client_secret file not found: {path}",
                          how) from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"{settings.who}: cannot read the client_secret file {path} "
                          f"({type(exc).__name__})", how) from None
    section = data.get("installed") or data.get("web") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not section.get("client_id") \
            or not section.get("client_secret"):
        raise TargetError(f"{settings.who}: {path} is not an OAuth client file "
                          "(no installed.client_id / client_secret)", how)
    auth_uri = str(section.get("auth_uri") or GOOGLE_AUTH)
    token_uri = str(section.get("token_uri") or GOOGLE_TOKEN)
    if settings.endpoint:
        base = settings.endpoint.rstrip("/")
        auth_uri, token_uri = base + "/o/oauth2/auth", base + "/token"
    return Client(str(section["client_id"]), str(section["client_secret"]), auth_uri, token_uri)


# ======================================================================== keeping tokens
class TokenStore(KeptTokens):
    """The refresh token (keyring, else the file) and the cached access token (the file,
    `google-NAME.json`, mode 0600, in the state folder): `tokenstore.KeptTokens`."""

    def __init__(self, settings: GoogleSettings, client_id: str, readonly: bool = False) -> None:
        mail = ":mail" if settings.mail else ""
        super().__init__(settings.state_dir / settings.token_file,
                         {"client_id": client_id}, f"google{mail}:{settings.name}:{client_id}",
                         settings.who, readonly)
        self.settings, self.client_id = settings, client_id


# ======================================================================== token requests
class Tokens:
    """Bearer tokens for one target: the cached one while it lasts, else a refresh."""

    def __init__(self, settings: GoogleSettings, readonly: bool = False,
                 post: Callable[[str, dict[str, str]], tuple[int, dict[str, Any]]] | None = None
                 ) -> None:
        self.settings, self.readonly = settings, readonly
        self._client: Client | None = None
        self._store: TokenStore | None = None
        self._access: str | None = None
        self._post = post or self._http_post
        self.refreshes = 0

    def client(self) -> Client:
        if self._client is None:
            self._client = load_client(self.settings)
        return self._client

    def store(self) -> TokenStore:
        if self._store is None:
            self._store = TokenStore(self.settings, self.client().client_id, self.readonly)
        return self._store

    def access(self) -> str:
        if self._access is None:
            self._access = self.store().cached_access() or self.refresh()
        return self._access

    def refresh(self) -> str:
        """A new access token from the refresh token (invalid_grant: sign in again)."""
        name = self.settings.name
        refresh = self.store().refresh_token()
        if refresh is None:
            raise TargetError(f"{self.settings.who}: not signed in to Google",
                              f"run `{auth_command(name)}`")
        client = self.client()
        status, answer = self._post(client.token_uri, {
            "grant_type": "refresh_token", "refresh_token": refresh,
            "client_id": client.client_id, "client_secret": client.client_secret})
        self.refreshes += 1
        if status == 200 and isinstance(answer.get("access_token"), str):
            token = answer["access_token"]
            self.store().keep_access(token, float(answer.get("expires_in") or 3600))
            if isinstance(answer.get("refresh_token"), str):
                self.store().keep_refresh(answer["refresh_token"])
            self._access = token
            return str(token)
        raise token_error(name, status, answer, self.settings.who)

    def _http_post(self, url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return post_form(url, form, self.settings.timeout)


def token_error(name: str, status: int, answer: dict[str, Any], who: str | None = None
                ) -> TargetError:
    """A token endpoint's refusal as one line and what to do (never with a token in it)."""
    who = who or f"target {name}"
    error = str(answer.get("error") or f"HTTP {status}")[:60]
    if error == "invalid_grant":
        return SignInRefused(
            f"{who}: Google no longer accepts the sign-in (invalid_grant)",
            f"run `{auth_command(name)}` again. If your OAuth app is in \"Testing\" status, "
            "Google ends its sign-ins after 7 days: publish it (Google Cloud console → Google Auth "
            "Platform → Audience → Publish app) and sign in once more")
    if error in ("invalid_client", "unauthorized_client"):  # (asking again will not help)
        return SignInRefused(f"{who}: Google refused the OAuth client ({error})",
                           "check the client_secret file; Google shows a client's secret only "
                           "once, so if it is lost create a new \"Desktop app\" client (Google "
                           "Auth Platform → Clients) and download its JSON")
    return TargetError(f"{who}: the token request failed ({error})",
                       "the next sync retries")


def post_form(url: str, form: dict[str, str], timeout: float) -> tuple[int, dict[str, Any]]:
    """POST a form to a token endpoint (retrying network errors and 5xx); (status, JSON)."""
    session = ApiSession(url, None, timeout=timeout)
    try:
        response = session.call("POST", url, urlencode(form).encode(), {
            "Content-Type": "application/x-www-form-urlencoded"})
    finally:
        session.close()
    try:
        answer = json.loads(response.body or b"{}")
    except ValueError:
        answer = {}
    return response.status, answer if isinstance(answer, dict) else {}


# ======================================================================== signing in
def sign_in(settings: GoogleSettings, *, open_browser: bool, say: Callable[[str], None],
            wait: float = 300.0) -> str:
    """The loopback flow; stores the tokens and returns where the refresh token went."""
    name = settings.name
    client = load_client(settings)
    verifier = secrets.token_urlsafe(64)[:96]  # 43–128 characters (RFC 7636)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).decode().rstrip("=")
    state = secrets.token_urlsafe(16)
    got: dict[str, str] = {}
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the query holds the code: never logged

        def do_GET(self) -> None:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if "code" not in query and "error" not in query:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not arrived.is_set():
                got.update(query)
                arrived.set()
            ok = "code" in query and query.get("state") == state
            page = (b"<html><body><p>Signed in to followsync. You can close this tab.</p>"
                    if ok else b"<html><body><p>Sign-in failed; see the terminal.</p>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    try:
        server = HTTPServer(("127.0.0.1", settings.auth_port or 0), Handler)
    except OSError as exc:
        raise TargetError(f"{settings.who}: cannot listen on 127.0.0.1:{settings.auth_port} "
                          f"({exc.strerror or type(exc).__name__})",
                          "free the port or choose another `auth_port:`") from None
    port = server.server_address[1]
    redirect = f"http://127.0.0.1:{port}/"
    url = client.auth_uri + "?" + urlencode({
        "client_id": client.client_id, "redirect_uri": redirect, "response_type": "code",
        "scope": settings.scope, "state": state, "code_challenge": challenge,
        "code_challenge_method": "S256", "access_type": "offline", "prompt": "consent"})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        say(f"Sign in to Google for {settings.who}: open this URL in a browser\n\n  {url}\n\n"
            f"Waiting for Google's answer on {redirect} (over SSH: "
            f"ssh -L {port}:127.0.0.1:{port} THIS-HOST, then open the URL on your computer).")
        if open_browser:
            with contextlib.suppress(Exception):
                import webbrowser

                webbrowser.open(url)
        if not arrived.wait(wait):
            raise TargetError(f"{settings.who}: no answer from the browser within "
                              f"{wait:g} s", f"run `{auth_command(name)}` again")
    finally:
        server.shutdown()
        server.server_close()
    if got.get("state") != state:
        raise TargetError(f"{settings.who}: the sign-in answer did not match this sign-in",
                          f"run `{auth_command(name)}` again")
    if "error" in got:
        raise TargetError(f"{settings.who}: Google refused the sign-in "
                          f"({got['error'][:60]})", f"run `{auth_command(name)}` again "
                          f"and allow access to {'mail' if settings.mail else 'the calendar'}")
    status, answer = post_form(client.token_uri, {
        "grant_type": "authorization_code", "code": got["code"], "code_verifier": verifier,
        "redirect_uri": redirect, "client_id": client.client_id,
        "client_secret": client.client_secret}, settings.timeout)
    if status != 200 or not isinstance(answer.get("access_token"), str):
        raise token_error(name, status, answer, settings.who)
    if not isinstance(answer.get("refresh_token"), str):
        raise TargetError(f"{settings.who}: Google gave no refresh token",
                          "remove followsync's access at https://myaccount.google.com/"
                          f"permissions, then run `{auth_command(name)}` again")
    store = TokenStore(settings, client.client_id)
    where = store.keep_refresh(answer["refresh_token"])
    store.keep_access(answer["access_token"], float(answer.get("expires_in") or 3600))
    return where
