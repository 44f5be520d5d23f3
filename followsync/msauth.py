"""Signing in to Microsoft (Entra ID: work, school and personal accounts) and keeping the
tokens, for a `microsoft` target (Graph) and an `auth: microsoft` mailbox (IMAP XOAUTH2).

README, "Microsoft 365 and Outlook.com". The user registers their own public client
(`client_id:`); `followsync auth NAME` runs the device-code flow (a URL and a code to enter on
any device with a browser: it works over SSH and headless). Microsoft issues one resource per
access token, so Graph and IMAP each get their own, both from the one sign-in's refresh token.

What is kept (`tokenstore`): per config entry, `microsoft-target-NAME.json` or
`microsoft-mailbox-NAME.json` (0600, in the state folder) with the access tokens and their
expiry, the account signed in, and the refresh token when no keyring works. A no-op sync
reads that file once and makes no token request; msal (with the requests and cryptography
it pulls in: ~0.3 s to import) is imported only to sign in and to refresh. A refresh uses
msal's `acquire_token_by_refresh_token` on the kept refresh token and keeps the rolled one
Microsoft sends back, so followsync's own store stays the one place tokens live (msal's
token cache would be a second copy of the same secrets; its `acquire_token_silent` makes the
same two requests, the tenant's openid-configuration and the token POST, and measured no
faster: about 0.5 s in a fresh process either way, once an hour per resource). One
sign-in's entries (same app, tenant and endpoint) each keep their copy of the refresh token;
Entra keeps an old refresh token valid when it rolls it, so their chains do not interfere.
No token, device code or msal answer is ever logged or shown; the user code is shown once,
to the user who must type it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from followsync.errors import SignInRefused, TargetError
from followsync.tokenstore import EARLY, KeptTokens, slug

if TYPE_CHECKING:
    from followsync.config import MailConfig, Target

log = logging.getLogger("followsync")
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
MICROSOFT_GRAPH = "https://graph.microsoft.com"
GRAPH_SCOPES = ["Calendars.ReadWrite"]
IMAP_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
Resource = Literal["graph", "imap"]
SCOPES: dict[Resource, list[str]] = {"graph": GRAPH_SCOPES, "imap": IMAP_SCOPES}
SERVICE: dict[Resource, str] = {"graph": "its calendar, through Microsoft Graph",
                                "imap": "its mail, over IMAP"}
INSTALL = ("install the microsoft extra from your followsync checkout: pipx install --force "
           "'.[microsoft]' (with every extra you use, e.g. '.[caldav,microsoft]'; or pipx "
           "inject followsync msal); in a virtualenv: pip install '.[microsoft]'")
LOCK_WAIT = 60.0  # seconds a refresh waits for another process's refresh of the same name


@dataclass(frozen=True)
class MicrosoftSettings:
    """What a Microsoft sign-in needs (from a target's or a mailbox's config entry)."""

    name: str
    client_id: str
    state_dir: Path
    tenant: str = "common"
    endpoint: str | None = None
    verify: bool | str = True
    timeout: float = 30.0
    calendar: str | None = None  # a target's calendar: its name, or `default`
    zone: str = "UTC"  # the config's zone
    kind: Literal["target", "mailbox"] = "target"
    username: str | None = None  # a mailbox's: the account that must be signed in

    @property
    def authority(self) -> str:
        return f"{(self.endpoint or MICROSOFT_LOGIN).rstrip('/')}/{self.tenant}"

    @property
    def graph_base(self) -> str:
        return f"{(self.endpoint or MICROSOFT_GRAPH).rstrip('/')}/v1.0/"

    @property
    def who(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def resource(self) -> Resource:
        """What this entry uses the sign-in for: a target its calendar, a mailbox IMAP."""
        return "graph" if self.kind == "target" else "imap"

    @property
    def signin(self) -> tuple[str, str]:
        """Entries with the same app and authority can share one sign-in."""
        return self.client_id, self.authority.casefold()


def settings_for(entry: Target | MailConfig) -> MicrosoftSettings:
    """A target's or a mailbox's sign-in settings."""
    from followsync.config import MailConfig, default_state_dir

    if entry.client_id is None:
        raise TargetError(f"{entry.who}: no client_id",
                          "add `client_id:` (README, \"Microsoft 365 and Outlook.com\")")
    mailbox = isinstance(entry, MailConfig)
    return MicrosoftSettings(
        name=entry.name, client_id=entry.client_id,
        state_dir=entry.state_dir or default_state_dir(), tenant=entry.tenant,
        endpoint=entry.endpoint, verify=entry.verify, timeout=entry.timeout,
        calendar=None if mailbox else getattr(entry, "calendar", None),
        zone="UTC" if mailbox else getattr(entry, "zone", "UTC"),
        kind="mailbox" if mailbox else "target",
        username=entry.username if mailbox else None)


def auth_command(name: str) -> str:
    return f"followsync auth {name}"


def store_for(settings: MicrosoftSettings, readonly: bool = False) -> KeptTokens:
    """Where one config name's sign-in is kept (tokenstore: keyring or a 0600 file)."""
    kind, name = settings.kind, settings.name
    return KeptTokens(settings.state_dir / f"microsoft-{kind}-{slug(name)}.json",
                      {"client_id": settings.client_id, "authority": settings.authority},
                      f"microsoft:{kind}:{name}:{settings.client_id}@{settings.authority}",
                      settings.who, readonly)


# ======================================================================== tokens
class Tokens:
    """The access tokens of one sign-in for one resource (`backends.apisession.Bearer`):
    the kept one while it lasts (no request, no msal), else a refresh."""

    def __init__(self, settings: MicrosoftSettings, resource: Resource,
                 readonly: bool = False) -> None:
        self.settings, self.resource, self.readonly = settings, resource, readonly
        self._store = store_for(settings, readonly)
        self.prefix = f"{resource}_"
        self._access: str | None = None
        self._expires = 0.0
        self.refreshes = 0

    def store(self) -> KeptTokens:
        """Where this sign-in is kept (as googleauth.Tokens.store)."""
        return self._store

    def access(self) -> str:
        """The cached access token, else a refreshed one (also in a long-running process:
        the token held is dropped a minute before it expires)."""
        if self._access is None or self._expires - EARLY <= time.time():
            kept = self._store.read()  # the one read of a no-op
            self._check_account(kept)
            cached = self._store.cached(self.prefix, kept)
            if cached is None:
                self._access = None
                return self._renew(True)
            self._access, self._expires = cached
        return self._access

    def refresh(self) -> str:
        """A new access token from the refresh token; TargetError (exit 3) when there is
        none or Microsoft refuses it."""
        return self._renew(False)

    def _renew(self, any_kept: bool) -> str:
        """One process refreshes a name at a time; one that waited takes the token the
        other got (one that differs from ours; `any_kept`: any valid one)."""
        stale = self._access
        # readonly (plan) with no token file: nothing to refresh in place, nothing created
        create = not self.readonly or self._store.path.exists()
        with _locked(self._store.path.with_suffix(".lock"), create):
            cached = self._store.cached(self.prefix)
            if cached is not None and (any_kept or (stale is not None and cached[0] != stale)):
                self._access, self._expires = cached
                return cached[0]
            refresh = self._store.refresh_token()
            if refresh is None:
                other = " and ".join(f"`{k}`" if k == "client_id" else "tenant or endpoint"
                                     for k in self._store.differs())
                again = f"run `{auth_command(self.settings.name)}`"
                raise TargetError(f"{self.settings.who}: not signed in to Microsoft",
                                  f"the sign-in kept is for another {other}: check it in the "
                                  f"config, or {again}" if other else again)
            log.debug("%s: asking Microsoft for a new %s token", self.settings.who,
                      self.resource)
            answer = _refresh(self.settings, refresh, self.resource)
            self.refreshes += 1
            _keep(self._store, answer, self.resource)
            self._access = str(answer["access_token"])
            self._expires = time.time() + _lifetime(answer)
            return self._access

    def _check_account(self, data: dict[str, Any]) -> None:
        """A mailbox whose `username` changed since the sign-in: that token is not its."""
        wanted, kept = self.settings.username, data.get("username")
        if wanted and isinstance(kept, str) and kept.casefold() != wanted.casefold():
            raise TargetError(f"{self.settings.who}: signed in to Microsoft as {kept}, "
                              f"not {wanted}",
                              f"run `{auth_command(self.settings.name)}` and sign in as "
                              f"{wanted}")


@contextlib.contextmanager
def _locked(path: Path, create: bool = True) -> Iterator[None]:
    """An exclusive lock beside a name's token file (best effort: a folder that cannot hold
    it, a lock file not there and not to be `create`d, or a lock held for over LOCK_WAIT s,
    does not stop a refresh)."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:  # (no folder made: without one there is no sign-in to refresh)
        fd = os.open(path, flags, 0o600)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _keep(store: KeptTokens, answer: dict[str, Any], resource: Resource) -> None:
    """Keep a refresh's answer (one write): its access token (under `resource`) and the
    refresh token Microsoft rolled, when it sent one."""
    refresh = answer.get("refresh_token")
    store.keep(refresh if isinstance(refresh, str) and refresh else None,
               {f"{resource}_": (str(answer["access_token"]), _lifetime(answer))})


def _lifetime(answer: dict[str, Any]) -> float:
    try:
        return max(0.0, float(answer.get("expires_in") or 3600))
    except (TypeError, ValueError):
        return 3600.0


# ======================================================================== msal, on demand
def _application(settings: MicrosoftSettings) -> Any:
    """msal's public client for this sign-in, over a requests session of our own (its CA
    file, its timeout). Imports msal: only to sign in or refresh."""
    try:
        import msal
        import requests
    except ImportError:
        raise TargetError(f"{settings.who}: signing in to Microsoft needs the msal package",
                          INSTALL) from None

    timeout = settings.timeout

    class Session(requests.Session):
        def request(self, method: str, url: str,  # type: ignore[override]
                    *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            answer = super().request(method, url, *args, **kwargs)
            if (settings.endpoint and answer.status_code == 404 and method.upper() == "GET"
                    and url.endswith("/v2.0/.well-known/openid-configuration")):
                return _fixed_paths(settings, answer)
            return answer

    session = Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=1)  # a dropped connection: once more
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = settings.verify
    if isinstance(settings.verify, str):
        # requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE win over session.verify; a CA
        # file named in the config must be the one used
        session.trust_env = False
    with _reaching(settings):
        try:
            return msal.PublicClientApplication(
                settings.client_id, authority=settings.authority, http_client=session,
                instance_discovery=False if settings.endpoint else None)
        except ValueError:
            raise TargetError(f"{settings.who}: Microsoft does not know the tenant "
                              f"{settings.tenant!r} ({urlsplit(settings.authority).hostname})",
                              "check `tenant:` (common, organizations, consumers, or your "
                              "organisation's tenant id or domain)") from None


def _fixed_paths(settings: MicrosoftSettings, answer: Any) -> Any:
    """An `endpoint:` (a proxy, a test server) that serves the sign-in at the documented
    paths but no openid-configuration (which msal reads first): the document those paths
    make, as README "Microsoft 365 and Outlook.com" names them."""
    base = settings.authority
    answer.status_code = 200
    answer._content = json.dumps({
        "issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"}).encode()
    answer.headers["Content-Type"] = "application/json"
    return answer


@contextlib.contextmanager
def _reaching(settings: MicrosoftSettings) -> Iterator[None]:
    """A network failure talking to the sign-in host, as one line (never the request)."""
    from msal.exceptions import MsalError  # (msal is imported by then: `_application`)

    host = urlsplit(settings.authority).hostname or "?"
    try:
        yield
    except MsalError as exc:  # e.g. a 5xx: msal raises rather than answer a dict
        status = re.search(r"HTTP Error: (\d{3})", str(exc))
        raise TargetError(f"{settings.who}: Microsoft's sign-in service failed "
                          f"({'HTTP ' + status.group(1) if status else type(exc).__name__})",
                          "the next sync tries again") from None
    except OSError as exc:  # requests' errors are OSErrors too
        kind = type(exc).__name__
        hint = "check the network connection; the next sync tries again"
        if "SSL" in kind or "Certificate" in str(exc):
            hint = "check `verify:` (a CA file for a private endpoint)"
        raise TargetError(f"{settings.who}: cannot reach Microsoft's sign-in service at "
                          f"{host} ({kind})", hint) from None
    except ValueError:  # msal reads every answer as JSON
        raise TargetError(f"{settings.who}: Microsoft's sign-in service at {host} gave an "
                          "answer that is not JSON", "check `endpoint:`; the next sync tries "
                          "again") from None


def _refresh(settings: MicrosoftSettings, refresh: str, resource: Resource) -> dict[str, Any]:
    app = _application(settings)
    with _reaching(settings):
        answer = app.acquire_token_by_refresh_token(refresh, scopes=SCOPES[resource])
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise explain(settings, answer if isinstance(answer, dict) else {}, resource)
    return answer


# ======================================================================== errors
def _it(resource: Resource) -> str:
    return "the calendar (Microsoft Graph)" if resource == "graph" else "mail over IMAP"


def aadsts(answer: dict[str, Any]) -> list[int]:
    """The AADSTS codes of an error answer (`error_codes`, else read from the text)."""
    codes = answer.get("error_codes")
    if isinstance(codes, list) and all(isinstance(c, int) for c in codes) and codes:
        return list(codes)
    text = str(answer.get("error_description") or "")
    return [int(c) for c in re.findall(r"AADSTS(\d{4,7})", text)]


def explain(settings: MicrosoftSettings, answer: dict[str, Any], resource: Resource,
            *, minutes: float | None = None) -> TargetError:
    """Microsoft's refusal as one line and what to do, naming `followsync auth NAME`; never
    with a token, a code or Microsoft's description in it (which can quote the request)."""
    who, again = settings.who, f"run `{auth_command(settings.name)}`"
    error = re.sub(r"[^a-z_]", "", str(answer.get("error") or "no_answer"))[:40]
    codes = aadsts(answer)
    code = f"AADSTS{codes[0]}" if codes else error
    main = codes[0] if codes else 0
    perms = ", ".join([*SCOPES[resource], "offline_access"])
    admin = (f"ask your administrator to grant admin consent to the app with client id "
             f"{settings.client_id} for the delegated permissions {perms} (Entra admin "
             "center → Enterprise applications → the app → Permissions → Grant admin "
             f"consent), then {again}")
    if 700082 in codes:
        return SignInRefused(f"{who}: Microsoft no longer accepts the sign-in: unused for 90 "
                           f"days ({code})", f"{again} again")
    if main in (90094, 90095, 90099) or error == "admin_consent_required":
        return SignInRefused(f"{who}: your organisation requires an administrator's consent "
                           f"before followsync may use {_it(resource)} ({code})", admin)
    if 65001 in codes or error == "consent_required" or answer.get("suberror") == "consent_required":
        return SignInRefused(f"{who}: the app was not given consent for {_it(resource)} "
                           f"({code})", f"{again} and accept the permissions; if your "
                           f"organisation does not let users consent, {admin}")
    if 53003 in codes or 53000 in codes or 53001 in codes:
        return SignInRefused(f"{who}: blocked by your organisation's Conditional Access "
                           f"policy ({code})", "ask your administrator to allow the app with "
                           f"client id {settings.client_id} from this device or network")
    if main in (50076, 50079, 50158) or error == "interaction_required":
        return SignInRefused(f"{who}: Microsoft wants you to sign in again (multi-factor "
                           f"authentication or a changed policy: {code})", again)
    if error == "authorization_declined":
        return SignInRefused(f"{who}: the sign-in was declined in the browser", f"{again} and "
                           "accept the permissions")
    if error in ("expired_token", "authorization_pending", "bad_verification_code") \
            or 70019 in codes or 70016 in codes:
        within = f" within {minutes:g} minutes" if minutes else " in time"
        return SignInRefused(f"{who}: the code was not entered{within}", f"{again} again "
                           "and enter the code before it expires")
    # the specific codes first: Entra sends 700016 as unauthorized_client
    if main in (700016, 90002, 50020, 50034, 900144):
        return SignInRefused(f"{who}: Microsoft does not know this app, tenant or account "
                           f"({code})", "check `client_id:` and `tenant:` (the app must be "
                           "registered for the kind of account you sign in with)")
    if main in (7000218, 700025) or error in ("invalid_client", "unauthorized_client"):
        return SignInRefused(f"{who}: Microsoft refused the app registration ({code})",
                           "in the Entra admin center, App registrations → the app → "
                           "Authentication: set \"Allow public client flows\" to Yes; check "
                           "`client_id:`")
    if error == "invalid_grant" or main in (50173, 70008, 70043, 50132):
        return SignInRefused(f"{who}: Microsoft no longer accepts the sign-in (revoked, "
                           f"expired or the password changed: {code})", f"{again} again")
    if error in ("temporarily_unavailable", "server_error"):
        return TargetError(f"{who}: Microsoft's sign-in service failed ({code})",
                           "the next sync tries again")
    return SignInRefused(f"{who}: Microsoft refused the token request ({code})", again)


# ======================================================================== signing in
@dataclass(frozen=True)
class Account:
    """Who signed in, from the id token's claims (msal decodes them, unverified: they
    only name the account, they grant nothing)."""

    username: str
    oid: str = ""

    def same(self, other: Account) -> bool:
        if self.oid and other.oid:
            return self.oid == other.oid
        return self.username.casefold() == other.username.casefold()


def _account(answer: dict[str, Any]) -> Account:
    claims = answer.get("id_token_claims")
    claims = claims if isinstance(claims, dict) else {}
    name = claims.get("preferred_username") or claims.get("email") or claims.get("upn") or ""
    return Account(_printable(str(name))[:200], _printable(str(claims.get("oid") or ""))[:64])


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


@dataclass
class SignIn:
    """What `followsync auth` did: the entries covered, and why others were not."""

    account: Account
    covered: list[tuple[MicrosoftSettings, str]] = field(default_factory=list)  # (entry, where)
    left: list[tuple[MicrosoftSettings, str]] = field(default_factory=list)  # (entry, why)


def device_flow(app: Any, settings: MicrosoftSettings, resource: Resource,
                say: Callable[[str], None], purpose: str) -> dict[str, Any]:
    """One device-code sign-in: the URL and code shown, then msal polls at the server's
    interval (slower on `slow_down`) until the code is entered or expires."""
    with _reaching(settings):
        flow = app.initiate_device_flow(scopes=SCOPES[resource])
    code = str(flow.get("user_code") or "")
    if not re.fullmatch(r"[A-Za-z0-9-]{4,32}", code):
        raise explain(settings, flow, resource)
    url = str(flow.get("verification_uri") or flow.get("verification_url") or "")
    if not re.fullmatch(r"https://[!-~]+", url):
        raise TargetError(f"{settings.who}: Microsoft's sign-in service gave no usable URL",
                          "check `endpoint:`")
    minutes = max(1.0, round(float(flow.get("expires_in") or 900) / 60))
    say(f"{purpose}\n\n  1. open {url} in a browser (on any device)\n"
        f"  2. enter the code {code}\n\n"
        f"Waiting for you to sign in (the code works for {minutes:g} minutes; "
        "Ctrl-C stops).")
    with _reaching(settings):
        answer = app.acquire_token_by_device_flow(flow)
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise explain(settings, answer if isinstance(answer, dict) else {}, resource,
                      minutes=minutes)
    return answer


def sign_in(named: MicrosoftSettings, others: Sequence[MicrosoftSettings],
            say: Callable[[str], None]) -> SignIn:
    """`followsync auth NAME`: the device flow for `named`'s resource, then the other
    entries of the same app and authority (`others`) are covered by the same sign-in: a
    target always, a mailbox when its `username` is the account signed in. The other
    resource's token comes from the refresh token; when Microsoft wants consent for it
    first, a second code is asked for (one resource per sign-in request)."""
    app = _application(named)
    first = named.resource
    answer = device_flow(app, named, first, say,
                         f"To sign in to Microsoft for {named.who} ({SERVICE[first]}):")
    account = _account(answer)
    if named.kind == "mailbox" and not _matches(named, account):
        raise TargetError(f"{named.who}: you signed in as {account.username or '?'}, but the "
                          f"mailbox's username is {named.username}",
                          f"run `{auth_command(named.name)}` again and sign in as "
                          f"{named.username}; or, if `username:` is mistyped (or is your mail "
                          "address while you sign in with another name), correct it")
    done = SignIn(account)
    entries = [named]
    for other in others:
        kept = store_for(other).read().get("username") if other.kind == "target" else None
        if other.kind == "mailbox" and not _matches(other, account):
            done.left.append((other, f"its username is {other.username}, not "
                                     f"{account.username or 'the account signed in'}"))
        elif isinstance(kept, str) and kept and account.username \
                and kept.casefold() != account.username.casefold():
            # a target signed in before as another account (a mailbox's own `username`
            # says which account is its): this sign-in is not its to replace
            done.left.append((other, f"it stays signed in as {kept}, not "
                                     f"{account.username}"))
        else:
            entries.append(other)
    answers: dict[Resource, dict[str, Any]] = {first: answer}
    for resource in sorted({e.resource for e in entries} - {first}):
        got = _second(app, named, answer, resource, account, say)
        if isinstance(got, str):
            done.left += [(e, got) for e in entries if e.resource == resource]
            entries = [e for e in entries if e.resource != resource]
        else:
            answers[resource] = answer = got
    refresh = answer.get("refresh_token")  # the last answer's: the newest (rolled) one
    if not isinstance(refresh, str) or not refresh:
        raise TargetError(f"{named.who}: Microsoft gave no refresh token",
                          "the app registration must allow the offline_access permission")
    for entry in entries:
        where = store_for(entry).keep(refresh, {
            f"{resource}_": (str(got["access_token"]), _lifetime(got))
            for resource, got in answers.items()}, username=account.username)
        done.covered.append((entry, where))
    return done


def _matches(settings: MicrosoftSettings, account: Account) -> bool:
    return bool(settings.username) and account.username.casefold() == \
        str(settings.username).casefold()


def _second(app: Any, named: MicrosoftSettings, answer: dict[str, Any], resource: Resource,
            account: Account, say: Callable[[str], None]) -> dict[str, Any] | str:
    """The other resource's token for the same account: from the refresh token, else (the
    user has not consented to it yet) a second device code. A reason (str) when it cannot
    be had: the entries that need it are then left out, the others still signed in."""
    try:
        with _reaching(named):
            got = app.acquire_token_by_refresh_token(str(answer.get("refresh_token") or ""),
                                                     scopes=SCOPES[resource])
        if isinstance(got, dict) and isinstance(got.get("access_token"), str):
            return got
        got = got if isinstance(got, dict) else {}
        codes = aadsts(got)
        admin = bool(set(codes) & {90094, 90095, 90099})  # a user's consent will not do
        if admin or not (65001 in codes or got.get("suberror") == "consent_required"
                         or got.get("error") in ("interaction_required", "consent_required")):
            raise explain(named, got, resource)
        second = device_flow(app, named, resource, say, (
            f"Microsoft asks for consent to {_it(resource)} separately (one service per "
            "sign-in code): a second code, for the same account:"))
    except TargetError as exc:
        text = str(exc)
        return text[len(named.who) + 2:] if text.startswith(f"{named.who}: ") else text
    if not _account(second).same(account):
        return (f"the second sign-in was {_account(second).username or '?'}, not "
                f"{account.username}")
    return second
