"""A local emulation of the Microsoft identity platform (Entra ID, v2.0 endpoints) and of the
parts of Microsoft Graph v1.0 that the `microsoft` target and OAuth mailboxes use, written
from Microsoft's documentation (and checked with Microsoft's own libraries, msal and
msgraph-sdk, in tests/test_msemu.py): no machine here reaches Microsoft.

Served over HTTPS with a test CA made per emulator (`.ca_path`; the server certificate is for
127.0.0.1), plus a plain-HTTP token introspection endpoint for Dovecot's oauth2 passdb
(`.introspection_url`).

Identity ({url}/{tenant}/...): the OpenID discovery document, `oauth2/v2.0/devicecode` and
`oauth2/v2.0/token` with the device_code grant (authorization_pending until the user enters
the code: a test calls `approve`, or a process POSTs otc=CODE to {url}/devicelogin, the
emulation's stand-in for the verification page (the answer names Entra's,
https://microsoft.com/devicelogin); polling faster than `interval` answers slow_down and adds 5 s, as RFC 8628
says; expired_token after `device_code_lifetime`) and the refresh_token grant (it rolls the
refresh token; the old one keeps working, as Entra's do; without `scope` it grants the
original sign-in's scopes). The response echoes `scope`. One resource per token: Graph scopes
and https://outlook.office.com/ scopes in one request answer AADSTS28000 (at the devicecode
endpoint too: where Entra refuses a mixed device-code request is not documented). Consent:
`consent="admin"` (default) as with tenant-wide admin consent, every scope works;
`consent="user"`: a refresh for a scope the user did not sign in for answers AADSTS65001.
Errors are shaped as Entra's: {"error", "error_description": "AADSTSnnn: …", "error_codes":
[nnn], "timestamp", "trace_id", "correlation_id"} (+ "suberror" where Entra sends one).
The emulation holds one mailbox (`.user`'s); a token for another user sees the same one.

Graph ({url}/v1.0/...; the routes are in ROUTES): calendars (list with $filter/$select,
create → 201 or 409 ErrorFolderExists), the default calendar, events (list with $filter over
singleValueExtendedProperties/any(...), $expand=singleValueExtendedProperties($filter=...),
$select, $top + @odata.nextLink with $skip; create → 201; get / PATCH / DELETE → 204 by
/me/events/{id} and /me/calendars/{cid}/events/{id}), calendarView and calendarView/delta
(`delta` and `delta()`, a window, `Prefer: odata.maxpagesize`, @odata.nextLink with
$skiptoken then @odata.deltaLink with $deltatoken, `@removed` entries, events created or
changed outside the window reported as removed, 410 SyncStateNotFound after
`void_delta_tokens()`, no $filter/$expand/$select/$orderby/$search on delta), and /v1.0/$batch
(at most 20 requests, dependsOn, 424 for a failed dependency).
Events carry @odata.etag = W/"<changeKey>", a changeKey that changes on every edit,
@odata.context, and Graph's fields; start/end come back as {dateTime with 7 fractional digits,
timeZone}, in UTC unless `Prefer: outlook.timezone="…"` (all-day events stay floating
midnight labelled "UTC"). Bodies come back as HTML unless
`Prefer: outlook.body-content-type="text"`. Time zones: Windows names, "UTC" and a fixed subset
of IANA names (each Windows zone's primary IANA name, from CLDR via tzlocal's table), else
400 TimeZoneNotSupportedException. All-day events must run midnight to midnight. Unknown body
properties answer 400. If-Match with a stale etag answers 412 ErrorIrresolvableConflict (on
PATCH and DELETE). Errors are {"error": {"code", "message", "innerError"}}. Every Graph call
needs an unexpired access token for Graph (401 InvalidAuthenticationToken otherwise; a token
for outlook.office.com is the wrong audience) with a calendar scope (403 otherwise). More
than `max_concurrent` (4) requests at once for one mailbox answer 429 ApplicationThrottled
("MailboxConcurrency") with Retry-After.

GUESSES (the documentation is silent; tests/test_msemu.py cannot check them either):
- transactionId: a second POST with the same transactionId in the same calendar, while the
  first event exists, answers 201 with the first event (no duplicate). The real window, scope
  and answer are undocumented.
- If-Match on DELETE is honoured (412 when stale); the docs do not say.
- exact error codes/messages for: all-day not at midnight, end before start, a dateTime with
  an offset (refused here), more than 20 batch requests, AADSTS28000's "error" field.
- delta's default page size (10 here), events' default $top (10, documented for lists).
- recurrence is stored but never expanded (calendarView treats a series as one event).

Test controls: `approve`, `decline`, `pending_codes`, `issue_tokens`, `expire_access_tokens`,
`expire_device_codes`, `revoke_refresh_tokens`, `require_consent`, `secrets`,
`token_requests`, `introspections`, `hold` and `busy` (requests in flight); "the user in
Outlook": `calendar`, `add_calendar`, `add_event`, `edit_event`, `delete_event`, `live`;
`api_requests`, `reset_log`, `void_delta_tokens`; faults: `inject(fault, at=N)` or
`faults={n: fault}` (FAULTS), counted over Graph requests (a $batch and each request inside
it count; "drop"/"drop_after" landing on a request inside a batch answers that request 503),
or `on="token"` for the token endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import html
import ipaddress
import itertools
import json
import re
import secrets as _secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from tzlocal.windows_tz import win_tz

GRAPH = "https://graph.microsoft.com"
OUTLOOK = "https://outlook.office.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
CALENDAR_SCOPES = {"calendars.readwrite", "calendars.read", "calendars.readwrite.shared",
                   "calendars.read.shared", ".default"}
IMAP_SCOPE = "imap.accessasuser.all"
FAULTS = ("drop", "drop_after", "500", "504_after", "503", "429", "412", "410", "404")
MAX_BATCH = 20
EVENT_PAGE = 10       # events' default $top
DELTA_PAGE = 10       # delta's default page size (a guess)
MAX_TOP = 1000

# ------------------------------------------------------------------ time zones
WINDOWS_ZONES: dict[str, str] = {name: iana for name, iana in win_tz.items()}
WINDOWS_ZONES["UTC"] = "Etc/UTC"
# Graph accepts a fixed list of IANA names; the emulation takes each Windows zone's primary
# (CLDR territory 001) IANA name, which includes Europe/Berlin, Europe/Paris and
# America/New_York and leaves out e.g. Europe/Amsterdam, as reported.
IANA_ZONES: frozenset[str] = frozenset(v for v in win_tz.values() if not v.startswith("Etc/"))


def zone_info(name: str) -> ZoneInfo | None:
    """The tz of a time zone name Graph accepts; None for one it refuses."""
    if name in WINDOWS_ZONES:
        return ZoneInfo(WINDOWS_ZONES[name])
    if name in IANA_ZONES:
        return ZoneInfo(name)
    return None


# ------------------------------------------------------------------ the event type
EVENT_PROPS = ("allowNewTimeProposals", "attendees", "body", "bodyPreview", "categories",
               "changeKey", "createdDateTime", "end", "hasAttachments", "hideAttendees",
               "iCalUId", "id", "importance", "isAllDay", "isCancelled", "isDraft",
               "isOnlineMeeting", "isOrganizer", "isReminderOn", "lastModifiedDateTime",
               "location", "locations", "onlineMeeting", "onlineMeetingProvider",
               "onlineMeetingUrl", "organizer", "originalEndTimeZone", "originalStart",
               "originalStartTimeZone", "recurrence", "reminderMinutesBeforeStart",
               "responseRequested", "responseStatus", "sensitivity", "seriesMasterId",
               "showAs", "start", "subject", "transactionId", "type", "webLink")
EVENT_NAVIGATION = ("attachments", "calendar", "cancelledOccurrences", "exceptionOccurrences",
                    "extensions", "instances", "multiValueExtendedProperties",
                    "singleValueExtendedProperties")
READ_ONLY = {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "iCalUId",
             "bodyPreview", "hasAttachments", "isCancelled", "isOrganizer", "isDraft",
             "seriesMasterId", "type", "webLink", "originalStart", "onlineMeeting",
             "responseStatus", "organizer"}
ENUMS = {"showAs": ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
         "importance": ("low", "normal", "high"),
         "sensitivity": ("normal", "personal", "private", "confidential")}
CALENDAR_PROPS = ("allowedOnlineMeetingProviders", "canEdit", "canShare", "canViewPrivateItems",
                  "changeKey", "color", "defaultOnlineMeetingProvider", "hexColor", "id",
                  "isDefaultCalendar", "isRemovable", "isTallyingResponses", "name", "owner")
PROP_ID_RE = re.compile(r"^(String|Integer|Boolean|SystemTime|Double|Binary|Long|Short|Float|"
                        r"Currency|CLSID) \{([0-9A-Fa-f-]{36})\} (Name \S.*|Id 0x[0-9A-Fa-f]+)$")
DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?$")

# ------------------------------------------------------------------ routes
# (method, path under /v1.0, handler, query options allowed). `{…}` is one path segment.
_LIST_Q = ("$filter", "$select", "$expand", "$top", "$skip")
_DELTA_Q = ("startDateTime", "endDateTime", "$skiptoken", "$deltatoken")
_VIEW_Q = ("startDateTime", "endDateTime", "$select", "$expand", "$top", "$skip")
ROUTES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("GET", "/me/calendars", "list_calendars", ("$filter", "$select", "$top", "$skip")),
    ("POST", "/me/calendars", "create_calendar", ()),
    ("GET", "/me/calendar", "get_calendar", ("$select",)),
    ("GET", "/me/calendars/{calendar-id}", "get_calendar", ("$select",)),
]
for _base in ("/me/calendar", "/me/calendars/{calendar-id}", "/me"):
    _events = _base + "/events"
    ROUTES += [("GET", _events, "list_events", _LIST_Q),
               ("POST", _events, "create_event", ()),
               ("GET", _events + "/{event-id}", "get_event", ("$select", "$expand")),
               ("PATCH", _events + "/{event-id}", "patch_event", ()),
               ("DELETE", _events + "/{event-id}", "delete_event", ()),
               ("GET", _base + "/calendarView", "calendar_view", _VIEW_Q),
               ("GET", _base + "/calendarView/delta", "delta", _DELTA_Q),
               ("GET", _base + "/calendarView/delta()", "delta", _DELTA_Q)]
ROUTES.append(("POST", "/$batch", "batch", ()))


def match_route(method: str, path: str) -> tuple[str, dict[str, str], tuple[str, ...]] | None:
    """(handler, path parameters, allowed query options) for a request under /v1.0."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    for verb, template, handler, allowed in ROUTES:
        want = template.strip("/").split("/")
        if verb != method or len(want) != len(parts):
            continue
        params: dict[str, str] = {}
        for w, p in zip(want, parts, strict=True):
            if w.startswith("{"):
                if not p:
                    break
                params[w[1:-1]] = p
            elif w != p:
                break
        else:
            return handler, params, allowed
    return None


class GraphError(Exception):
    """A Graph error answer."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class Calendar:
    id: str
    name: str
    is_default: bool = False
    change_key: str = ""
    generation: int = 1                      # bumped to void every delta token
    tx: dict[str, str] = field(default_factory=dict)          # transactionId → event id
    tombstones: dict[str, int] = field(default_factory=dict)  # deleted event id → seq


@dataclass
class Seen:
    """One request as the emulation saw it (never the Authorization header)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    kind: str = "graph"  # graph | batch-item | identity | introspect
    form: dict[str, str] = field(default_factory=dict)
    status: int = 0


@dataclass
class Token:
    resource: str  # GRAPH or OUTLOOK
    scopes: list[str]
    user: str
    expires: float


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    scopes: list[str]
    expires: float
    interval: int
    state: str = "pending"  # pending | approved | declined | used
    user: str = ""
    last_poll: float = 0.0
    client_info: bool = False


@dataclass
class DeltaState:
    calendar: str
    start: dt.datetime
    end: dt.datetime
    generation: int
    since: int                          # changes after this seq belong to the next round
    pending: list[str] | None = None    # a $skiptoken: ids still to give in this round
    path: str = ""


@dataclass
class Request:
    """A Graph request after routing: what a handler needs."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    user: str


# ==================================================================== the emulation
class MsEmu:
    """The emulation; `start()` serves it on 127.0.0.1 (HTTPS, threaded)."""

    def __init__(self, client_id: str = "11111111-2222-3333-4444-555555555555",
                 user: str = "me@contoso.example", token_lifetime: int = 3600,
                 interval: int = 1, device_code_lifetime: int = 900, max_concurrent: int = 4,
                 retry_after: str | None = "1", latency: float = 0.0,
                 faults: dict[int, str] | None = None, mailbox_zone: str = "UTC",
                 tenant_id: str = "9188040d-6c67-4c5b-b112-36a304b66dad",
                 consent: str = "admin") -> None:
        assert consent in ("admin", "user"), consent
        self.client_id, self.user = client_id, user
        self.token_lifetime, self.interval = token_lifetime, interval
        self.device_code_lifetime = device_code_lifetime
        self.max_concurrent, self.retry_after, self.latency = max_concurrent, retry_after, latency
        self.mailbox_zone = ZoneInfo(WINDOWS_ZONES.get(mailbox_zone, mailbox_zone))
        self.tenant_id = tenant_id
        # transactionId's de-duplication is undocumented (window, answer): tests can turn it
        # off to check that a retried create never relies on it
        self.dedupe = True
        self.discovery = True  # serve the tenant's openid-configuration
        self.lock = threading.RLock()
        self._seq = itertools.count(1)
        self.seq = 0
        self.calendars: dict[str, Calendar] = {}
        self.events: dict[str, dict[str, Any]] = {}  # id → stored event (with _calendar, _seq)
        default = Calendar(_outlook_id(), "Calendar", is_default=True, change_key=_change_key())
        self.calendars[default.id] = default
        self.access: dict[str, Token] = {}
        self.refresh: dict[str, str] = {}  # refresh token → user
        self.refresh_scopes: dict[str, list[str]] = {}  # refresh token → scopes of its grant
        # "admin": every scope is consented (tenant-wide admin consent); "user": only the
        # scopes a user signed in for (a refresh for another scope answers AADSTS65001)
        self.consent = consent
        self.consent_by_user: dict[str, set[str]] = {}  # user → consented scopes (normalised)
        self.dead_refresh: dict[str, int] = {}  # refresh token → AADSTS code
        self.revoked_code: int | None = None
        self.consent_code: int | None = None
        self.codes: dict[str, DeviceCode] = {}  # device_code → state
        self.issued: list[str] = []  # every secret ever issued
        self.requests: list[Seen] = []
        self.faults: dict[int, str] = dict(faults or {})
        self.token_faults: dict[int, str] = {}
        self.graph_number = 0
        self.token_number = 0
        self.in_flight: dict[str, int] = {}
        self.gate = threading.Event()  # cleared by `hold()`: admitted Graph requests wait
        self.gate.set()
        self._delta: dict[str, DeltaState] = {}
        self._dir: Path | None = None
        self.server: ThreadingHTTPServer | None = None
        self.plain: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- life
    def start(self) -> MsEmu:
        self._dir = Path(tempfile.mkdtemp(prefix="msemu-"))
        context = _tls_context(self._dir)

        class Handler(_Handler):
            pass

        Handler.emu = self
        self.server = _TLSServer(("127.0.0.1", 0), Handler, context)
        self.plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.plain.daemon_threads = True
        for server in (self.server, self.plain):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self.server, self.plain):
            if server is not None:
                server.shutdown()
                server.server_close()
        self.server = self.plain = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    @property
    def ca_path(self) -> str:
        assert self._dir is not None
        return str(self._dir / "ca.pem")

    @property
    def introspection_url(self) -> str:
        assert self.plain is not None
        return f"http://127.0.0.1:{self.plain.server_address[1]}/introspect"

    # ---------------------------------------------------------------- identity controls
    def approve(self, user_code: str, user: str | None = None) -> None:
        """The user entered `user_code` at the verification page and signed in (a process
        can do the same: POST {url}/devicelogin with otc=CODE). KeyError for an unknown or
        expired code."""
        with self.lock:
            code = self._by_user_code(user_code)
            if code.state != "pending" or code.expires <= time.time():
                raise KeyError(f"device code {user_code!r} is not pending")
            code.state, code.user = "approved", user or self.user

    def decline(self, user_code: str) -> None:
        with self.lock:
            self._by_user_code(user_code).state = "declined"

    def pending_codes(self) -> list[str]:
        """User codes shown to someone and not yet entered."""
        with self.lock:
            return [c.user_code for c in self.codes.values()
                    if c.state == "pending" and c.expires > time.time()]

    def expire_device_codes(self) -> None:
        with self.lock:
            for code in self.codes.values():
                code.expires = 0.0

    def issue_tokens(self, scopes: list[str] | str, user: str | None = None) -> tuple[str, str]:
        """(access, refresh), as after a sign-in for `scopes`."""
        wanted = scopes.split() if isinstance(scopes, str) else list(scopes)
        with self.lock:
            resource = _resources(wanted).pop() if _resources(wanted) else GRAPH
            self.consent_by_user.setdefault(user or self.user, set()).update(_norm(wanted))
            return (self._new_access(resource, wanted, user or self.user),
                    self._new_refresh(user or self.user, wanted))

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.access.values():
                token.expires = 0.0

    def revoke_refresh_tokens(self, code: int | None = 700082) -> None:
        """Every refresh token issued so far answers invalid_grant AADSTS`code` (700082: expired
        after 90 days of inactivity; 50173: the grant was revoked; None: revive them)."""
        with self.lock:
            if code is None:
                self.dead_refresh.clear()
            else:
                for token in self.refresh:
                    self.dead_refresh[token] = code

    def require_consent(self, code: int | None = 65001) -> None:
        """Token requests answer AADSTS`code` (65001: the user has not consented; 90094: an
        admin must consent) until called with None."""
        with self.lock:
            self.consent_code = code

    def secrets(self) -> list[str]:
        """Every token and device code issued: none may appear in followsync's output."""
        with self.lock:
            return list(self.issued)

    def token_requests(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.kind == "identity" and s.path.endswith("/token")]

    def introspections(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.kind == "introspect"]

    # ---------------------------------------------------------------- Graph controls
    def api_requests(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.kind in ("graph", "batch-item")]

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def inject(self, fault: str, at: int = 1, on: str = "graph") -> None:
        """`fault` at the `at`-th request from now (Graph requests, or `on="token"`)."""
        assert fault in FAULTS, fault
        with self.lock:
            if on == "token":
                self.token_faults[self.token_number + at] = fault
            else:
                self.faults[self.graph_number + at] = fault

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Graph requests admitted meanwhile (past auth and the concurrency limit) wait until
        the block ends: a deterministic way to have requests in flight at once."""
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    def busy(self) -> int:
        """Graph requests in flight now (all mailboxes)."""
        with self.lock:
            return sum(self.in_flight.values())

    def void_delta_tokens(self) -> None:
        with self.lock:
            for cal in self.calendars.values():
                cal.generation += 1

    def calendar(self, name: str) -> Calendar:
        """A calendar by name or id ("Calendar" is the default one)."""
        with self.lock:
            if name in self.calendars:
                return self.calendars[name]
            return next(c for c in self.calendars.values() if c.name == name)

    def add_calendar(self, name: str) -> Calendar:
        with self.lock:
            cal = Calendar(_outlook_id(), name, change_key=_change_key())
            self.calendars[cal.id] = cal
            return cal

    def add_event(self, calendar: str, body: dict[str, Any]) -> str:
        """What the user does in Outlook: an event of their own; its id."""
        with self.lock:
            _, event = self._create(self.calendar(calendar), copy.deepcopy(body))
            return str(event["id"])

    def edit_event(self, event_id: str, changes: dict[str, Any]) -> None:
        with self.lock:
            self._patch(self._event(event_id), copy.deepcopy(changes))

    def delete_event(self, event_id: str) -> None:
        with self.lock:
            self._delete(self._event(event_id))

    def live(self, calendar: str) -> list[dict[str, Any]]:
        """The calendar's events as Graph shows them (UTC), with all extended properties."""
        with self.lock:
            cal = self.calendar(calendar)
            out = []
            for event in self.events.values():
                if event["_calendar"] == cal.id:
                    shown = self._render(event, None, None)
                    shown["body"] = copy.deepcopy(event["body"])
                    shown["singleValueExtendedProperties"] = [
                        {"id": k, "value": v} for k, v in event["_props"].items()]
                    out.append(shown)
            return out

    # ---------------------------------------------------------------- identity
    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.url}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant in ("common", "organizations") else (
            self.tenant_id if tenant != "consumers" else "9188040d-6c67-4c5b-b112-36a304b66dad")
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.url}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "email"],
            "tenant_region_scope": None,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def devicecode(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        problem = self._client_problem(form)
        if problem:
            return problem
        scopes = form.get("scope", "").split()
        if len(_resources(scopes)) > 1:
            return _entra(400, "invalid_scope", 28000, _mixed(scopes))
        if not [s for s in scopes if s.lower() not in RESERVED_SCOPES]:
            scopes = [*scopes, "User.Read"]
        with self.lock:
            device = "DAQABAAEAAAD--DLA3VO7QrddgJg7Wevr" + _secrets.token_urlsafe(96)
            user_code = "".join(_secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                                for _ in range(9))
            self.issued.append(device)
            self.codes[device] = DeviceCode(device, user_code, scopes,
                                            time.time() + self.device_code_lifetime,
                                            self.interval,
                                            client_info=form.get("client_info") == "1")
        # Entra's page; the emulation's own stand-in for it is {url}/devicelogin
        verify = "https://microsoft.com/devicelogin"
        return 200, {"user_code": user_code, "device_code": device, "verification_uri": verify,
                     "expires_in": self.device_code_lifetime, "interval": self.interval,
                     "message": f"To sign in, use a web browser to open the page {verify} and "
                                f"enter the code {user_code} to authenticate."}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        problem = self._client_problem(form)
        if problem:
            return problem
        grant = form.get("grant_type", "")
        with self.lock:
            if grant in ("urn:ietf:params:oauth:grant-type:device_code", "device_code"):
                return self._device_grant(form)
            if grant == "refresh_token":
                return self._refresh_grant(form)
        return _entra(400, "unsupported_grant_type", 70003,
                      "The app requested an unsupported grant type.")

    def _client_problem(self, form: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        if form.get("client_id") != self.client_id:
            return _entra(400, "unauthorized_client", 700016,
                          f"Application with identifier '{form.get('client_id', '')}' was not "
                          "found in the directory. This can happen if the application has not "
                          "been installed by the administrator of the tenant or consented to by "
                          "any user in the tenant.")
        return None

    def _device_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = self.codes.get(form.get("device_code") or form.get("code") or "")
        now = time.time()
        if code is None or code.state == "used":
            return _entra(400, "invalid_grant", 70000,
                          "The provided value for the 'device_code' is not valid.")
        if code.expires <= now:
            return _entra(400, "expired_token", 70020,
                          "The provided value for the input parameter 'device_code' is not "
                          "valid. This device code has expired.")
        if code.state == "declined":
            return _entra(400, "authorization_declined", 70000,
                          "The user declined the authorization request.")
        too_soon = code.last_poll and now - code.last_poll < code.interval - 0.05
        code.last_poll = now
        if too_soon:
            code.interval += 5
            return _entra(400, "slow_down", 70016, "Polling too fast; slow down.")
        if code.state == "pending":
            return _entra(400, "authorization_pending", 70016,
                          "The provided request has not yet been authorized by the user. The "
                          "user must input their code.")
        if self.consent_code:
            return self._consent_error()
        mixed = form.get("scope", "").split() or code.scopes
        if len(_resources(mixed)) > 1:
            return _entra(400, "invalid_scope", 28000, _mixed(mixed))
        code.state = "used"
        self.consent_by_user.setdefault(code.user, set()).update(_norm(code.scopes))
        return 200, self._grant(code.scopes, code.user, code.client_info)

    def _refresh_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        refresh = form.get("refresh_token", "")
        if refresh not in self.refresh:
            return _entra(400, "invalid_grant", 9002313,
                          "Invalid request. Request is malformed or invalid.")
        dead = self.dead_refresh.get(refresh)
        if dead is not None:
            message = {700082: "The refresh token has expired due to inactivity. The token was "
                               "issued on 2026-01-01T00:00:00Z and was inactive for 90.00:00:00.",
                       50173: "The provided grant has expired due to it being revoked, a fresh "
                              "auth token is needed. The user might have changed or reset their "
                              "password."}.get(dead, "The refresh token is not valid.")
            return _entra(400, "invalid_grant", dead, message, suberror="bad_token")
        if self.consent_code:
            return self._consent_error()
        scopes = form.get("scope", "").split() or self.refresh_scopes[refresh]
        if len(_resources(scopes)) > 1:
            return _entra(400, "invalid_scope", 28000, _mixed(scopes))
        user = self.refresh[refresh]
        missing = _norm(scopes) - self.consent_by_user.get(user, set())
        if self.consent == "user" and missing:
            return _entra(400, "invalid_grant", 65001,
                          f"The user or administrator has not consented to use the application "
                          f"with ID '{self.client_id}'. Send an interactive authorization "
                          f"request for this user and resource ({' '.join(sorted(missing))}).",
                          suberror="consent_required")
        return 200, self._grant(scopes, user, form.get("client_info") == "1", refreshing=True)

    def _consent_error(self) -> tuple[int, dict[str, Any]]:
        code = self.consent_code or 65001
        if code == 90094:
            return _entra(400, "invalid_grant", 90094,
                          "The grant requires admin permission.", suberror="consent_required")
        return _entra(400, "invalid_grant", code,
                      f"The user or administrator has not consented to use the application "
                      f"with ID '{self.client_id}'. Send an interactive authorization request "
                      "for this user and resource.", suberror="consent_required")

    def _grant(self, scopes: list[str], user: str, client_info: bool, refreshing: bool = False
               ) -> dict[str, Any]:
        resources = _resources(scopes)
        resource = resources.pop() if resources else GRAPH
        shown = [s for s in scopes if s.lower() != "offline_access"] or ["User.Read"]
        answer: dict[str, Any] = {
            "token_type": "Bearer", "scope": " ".join(shown),
            "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime,
            "access_token": self._new_access(resource, scopes, user)}
        if refreshing or "offline_access" in [s.lower() for s in scopes]:
            answer["refresh_token"] = self._new_refresh(user, scopes)
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, user))
        if "openid" in [s.lower() for s in scopes]:
            now = int(time.time())
            claims = {"aud": self.client_id, "iss": f"{self.url}/{self.tenant_id}/v2.0",
                      "iat": now, "nbf": now, "exp": now + 3600, "name": "Test User",
                      "oid": oid, "preferred_username": user, "sub": _b64(oid.encode()),
                      "tid": self.tenant_id, "ver": "2.0"}
            answer["id_token"] = _jwt(claims)
            self.issued.append(answer["id_token"])
        if client_info:
            answer["client_info"] = _b64(json.dumps({"uid": oid, "utid": self.tenant_id}).encode())
        return answer

    def _new_access(self, resource: str, scopes: list[str], user: str) -> str:
        now = int(time.time())
        short = [_scope_name(s) for s in scopes if s.lower() not in RESERVED_SCOPES]
        claims = {"aud": GRAPH_APP_ID if resource == GRAPH else resource,
                  "iss": f"https://sts.windows.net/{self.tenant_id}/", "iat": now, "nbf": now,
                  "exp": now + self.token_lifetime, "scp": " ".join(short), "upn": user,
                  "tid": self.tenant_id, "appid": self.client_id,
                  "uti": _secrets.token_urlsafe(16)}
        token = _jwt(claims)
        self.access[token] = Token(resource, short, user, time.time() + self.token_lifetime)
        self.issued.append(token)
        return token

    def _new_refresh(self, user: str, scopes: list[str]) -> str:
        token = "1.AXkA" + _secrets.token_urlsafe(180)
        self.refresh[token] = user
        self.refresh_scopes[token] = list(scopes)
        self.issued.append(token)
        if self.revoked_code is not None:
            self.dead_refresh[token] = self.revoked_code
        return token

    def _by_user_code(self, user_code: str) -> DeviceCode:
        for code in self.codes.values():
            if code.user_code == user_code:
                return code
        raise KeyError(f"no device code {user_code!r}")

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 for Dovecot: active only for an unexpired IMAP-audience token."""
        with self.lock:
            found = self.access.get(token)
            if (found is None or found.expires <= time.time() or found.resource != OUTLOOK
                    or IMAP_SCOPE not in [s.lower() for s in found.scopes]):
                return {"active": False}
            return {"active": True, "username": found.user, "scope": " ".join(found.scopes),
                    "aud": OUTLOOK, "client_id": self.client_id, "token_type": "Bearer",
                    "exp": int(found.expires)}

    # ---------------------------------------------------------------- Graph: entry
    def authorize(self, headers: dict[str, str], method: str) -> str:
        """The mailbox user of the request's bearer token; GraphError when it is not good."""
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        realm = {"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.'
                 'microsoftonline.com/common/oauth2/authorize", client_id="' + GRAPH_APP_ID + '"'}
        if not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", realm)
        with self.lock:
            found = self.access.get(token)
        if found is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well "
                             "formed, there are no dots (.).", realm)
        if found.resource != GRAPH:
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token validation failure. Invalid audience.", realm)
        if found.expires <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Lifetime validation failed, the token is expired.", realm)
        scopes = {s.lower() for s in found.scopes}
        if not scopes & CALENDAR_SCOPES or (method != "GET" and scopes <= {
                "calendars.read", "calendars.read.shared"}):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                             "and try again.")
        return found.user

    def graph(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        """Route one authorised Graph request (the lock is held)."""
        found = match_route(request.method, request.path)
        if found is None:
            methods = {v for v, *_ in ROUTES if match_route(v, request.path)}
            if methods:
                raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not "
                                 f"allowed for the request target. Allowed: {sorted(methods)}")
            raise GraphError(400, "BadRequest", "Resource not found for the segment '"
                             f"{request.path.strip('/').split('/')[-1]}'.")
        handler, request.params, allowed = found
        for name in request.query:
            if name not in allowed:
                raise GraphError(400, "BadRequest",
                                 f"Query option '{name}' is not allowed. Make sure that it is "
                                 "supported for this request.")
        answer: tuple[int, Any, dict[str, str]] = getattr(self, "_h_" + handler)(request)
        return answer

    # ---------------------------------------------------------------- Graph: calendars
    def _cal(self, request: Request) -> Calendar:
        cid = request.params.get("calendar-id")
        if cid is None:
            return next(c for c in self.calendars.values() if c.is_default)
        cal = self.calendars.get(cid)
        if cal is None:
            raise GraphError(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
        return cal

    def _calendar_json(self, cal: Calendar) -> dict[str, Any]:
        return {"id": cal.id, "name": cal.name, "color": "auto", "hexColor": "",
                "isDefaultCalendar": cal.is_default, "changeKey": cal.change_key,
                "canShare": True, "canViewPrivateItems": True, "canEdit": True,
                "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                "defaultOnlineMeetingProvider": "teamsForBusiness",
                "isTallyingResponses": True, "isRemovable": not cal.is_default,
                "owner": {"name": "Test User", "address": self.user}}

    def _h_list_calendars(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        q = request.query
        rows = [self._calendar_json(c) for c in self.calendars.values()]
        if "$filter" in q:
            test = parse_filter(q["$filter"])
            rows = [r for r in rows if test(Scope(r))]
        select = _select(q.get("$select"), CALENDAR_PROPS, "calendar")
        rows = [_pick(r, select) for r in rows]
        context = self._context("calendars", select)
        return self._page(request, rows, context, 10)

    def _h_get_calendar(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        select = _select(request.query.get("$select"), CALENDAR_PROPS, "calendar")
        row = _pick(self._calendar_json(self._cal(request)), select)
        kind = "calendars/$entity" if "calendar-id" in request.params else "calendar/$entity"
        return 200, {"@odata.context": self._context(kind, None), **row}, {}

    def _h_create_calendar(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        body = _object(request.body)
        for key in body:
            if key not in ("name", "color", "hexColor", "@odata.type"):
                raise GraphError(400, "RequestBodyRead", _unknown_prop(key, "calendar"))
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "ErrorInvalidParameter", "Calendar name is missing.")
        if any(c.name.lower() == name.lower() for c in self.calendars.values()):
            raise GraphError(409, "ErrorFolderExists",
                             "A folder with the specified name already exists., Could not "
                             f"create folder '{name}'.")
        cal = self.add_calendar(name)
        return 201, {"@odata.context": self._context("calendars/$entity", None),
                     **self._calendar_json(cal)}, {}

    # ---------------------------------------------------------------- Graph: events
    def _event(self, event_id: str, cal: Calendar | None = None) -> dict[str, Any]:
        event = self.events.get(event_id)
        if event is None or (cal is not None and event["_calendar"] != cal.id):
            raise GraphError(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
        return event

    def _h_list_events(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        cal = self._cal(request)
        q = request.query
        select = _select(q.get("$select"), EVENT_PROPS, "event")
        expand = _expand(q.get("$expand"))
        zone, text = _prefer(request.headers)
        rows = [e for e in self.events.values() if e["_calendar"] == cal.id]
        if "$filter" in q:
            test = parse_filter(q["$filter"])
            rows = [e for e in rows if test(Scope(self._render(e, None, None), e["_props"]))]
        shown = [self._render(e, zone, text, select, expand) for e in rows]
        context = self._context("events", select)
        status, answer, headers = self._page(request, shown, context, EVENT_PAGE)
        return status, answer, {**headers, **_applied(zone, text)}

    def _h_get_event(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        event = self._event(request.params["event-id"], self._scoped_cal(request))
        zone, text = _prefer(request.headers)
        select = _select(request.query.get("$select"), EVENT_PROPS, "event")
        expand = _expand(request.query.get("$expand"))
        shown = self._render(event, zone, text, select, expand)
        return 200, {"@odata.context": self._context("events/$entity", select), **shown}, \
            _applied(zone, text)

    def _scoped_cal(self, request: Request) -> Calendar | None:
        if "calendar-id" in request.params or request.path.startswith("/me/calendar/"):
            return self._cal(request)
        return None

    def _h_create_event(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        cal = self._cal(request)
        status, event = self._create(cal, _object(request.body))
        zone, text = _prefer(request.headers)
        shown = self._render(event, zone, text)
        return status, {"@odata.context": self._context("events/$entity", None), **shown}, \
            _applied(zone, text)

    def _h_patch_event(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        event = self._event(request.params["event-id"], self._scoped_cal(request))
        self._check_match(event, request.headers)
        self._patch(event, _object(request.body))
        zone, text = _prefer(request.headers)
        shown = self._render(event, zone, text)
        return 200, {"@odata.context": self._context("events/$entity", None), **shown}, \
            _applied(zone, text)

    def _h_delete_event(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        event = self._event(request.params["event-id"], self._scoped_cal(request))
        self._check_match(event, request.headers)
        self._delete(event)
        return 204, None, {}

    def _check_match(self, event: dict[str, Any], headers: dict[str, str]) -> None:
        wanted = headers.get("if-match")
        if wanted and wanted.strip() != "*" and wanted.strip() != _etag(event):
            raise GraphError(412, "ErrorIrresolvableConflict",
                             "The send or update operation could not be performed because the "
                             "change key passed in the request does not match the current "
                             "change key for the item.")

    def _create(self, cal: Calendar, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        txid = body.get("transactionId")
        if isinstance(txid, str) and self.dedupe and cal.tx.get(txid) in self.events:
            return 201, self.events[cal.tx[txid]]
        event = _validated(body, None, self.mailbox_zone)
        now = _stamp()
        event_id = _outlook_id(long=True)
        event.update({"id": event_id, "createdDateTime": now,
                      "iCalUId": "040000008200E00074C5B7101A82E00800000000" +
                                 _secrets.token_hex(28).upper(),
                      "_calendar": cal.id})
        self.events[event_id] = event
        if isinstance(txid, str):
            cal.tx[txid] = event_id
        self._touch(event)
        return 201, event

    def _patch(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        merged = _validated(body, event, self.mailbox_zone)
        event.clear()
        event.update(merged)
        self._touch(event)

    def _delete(self, event: dict[str, Any]) -> None:
        cal = self.calendars[event["_calendar"]]
        del self.events[event["id"]]
        cal.tombstones[event["id"]] = self._next_seq()
        for txid, eid in list(cal.tx.items()):
            if eid == event["id"]:
                del cal.tx[txid]

    def _touch(self, event: dict[str, Any]) -> None:
        event["changeKey"] = _change_key()
        event["lastModifiedDateTime"] = _stamp()
        event["_seq"] = self._next_seq()

    def _next_seq(self) -> int:
        self.seq = next(self._seq)
        return self.seq

    def _render(self, event: dict[str, Any], zone: str | None, text: bool | None,
                select: list[str] | None = None, expand: Callable[[str, str], bool] | None = None
                ) -> dict[str, Any]:
        """The event as Graph shows it."""
        out: dict[str, Any] = {"@odata.etag": _etag(event), "id": event["id"]}
        full = {
            "createdDateTime": event["createdDateTime"],
            "lastModifiedDateTime": event["lastModifiedDateTime"],
            "changeKey": event["changeKey"], "categories": list(event["categories"]),
            "transactionId": event.get("transactionId"),
            "originalStartTimeZone": event["start"]["timeZone"],
            "originalEndTimeZone": event["end"]["timeZone"],
            "iCalUId": event["iCalUId"],
            "reminderMinutesBeforeStart": event["reminderMinutesBeforeStart"],
            "isReminderOn": event["isReminderOn"], "hasAttachments": False,
            "subject": event["subject"], "bodyPreview": _preview(event["body"]),
            "importance": event["importance"], "sensitivity": event["sensitivity"],
            "isAllDay": event["isAllDay"], "isCancelled": False, "isOrganizer": True,
            "responseRequested": event["responseRequested"], "seriesMasterId": None,
            "showAs": event["showAs"], "type": "singleInstance" if not event.get("recurrence")
            else "seriesMaster",
            "webLink": "https://outlook.office365.com/owa/?itemid=" + quote(event["id"], safe="")
                       + "&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None, "isOnlineMeeting": False,
            "onlineMeetingProvider": "unknown",
            "allowNewTimeProposals": event["allowNewTimeProposals"], "isDraft": False,
            "hideAttendees": event["hideAttendees"],
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": _body_as(event["body"], text),
            "start": _shown_time(event, "start", zone, self.mailbox_zone),
            "end": _shown_time(event, "end", zone, self.mailbox_zone),
            "location": event["location"], "locations": event["locations"],
            "recurrence": event.get("recurrence"), "attendees": event["attendees"],
            "organizer": {"emailAddress": {"name": "Test User", "address": self.user}},
            "onlineMeeting": None}
        for key, value in full.items():
            if select is None or key in select:
                out[key] = copy.deepcopy(value)
        if expand is not None:
            out["singleValueExtendedProperties@odata.context"] = self._context(
                f"events('{event['id']}')/singleValueExtendedProperties", None)
            out["singleValueExtendedProperties"] = [
                {"id": k, "value": v} for k, v in event["_props"].items() if expand(k, v)]
        return out

    # ---------------------------------------------------------------- Graph: views and delta
    def _h_calendar_view(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        cal = self._cal(request)
        start, end = _window(request.query)
        zone, text = _prefer(request.headers)
        select = _select(request.query.get("$select"), EVENT_PROPS, "event")
        expand = _expand(request.query.get("$expand"))
        rows = [self._render(e, zone, text, select, expand) for e in self.events.values()
                if e["_calendar"] == cal.id and self._overlaps(e, start, end)]
        status, answer, headers = self._page(request, rows, self._context("events", select),
                                             EVENT_PAGE)
        return status, answer, {**headers, **_applied(zone, text)}

    def _h_delta(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        q = request.query
        zone, text = _prefer(request.headers)
        size = _max_page(request.headers) or DELTA_PAGE
        token = q.get("$skiptoken") or q.get("$deltatoken")
        if token:
            state = self._delta.get(token)
            if state is None:
                raise GraphError(400, "ErrorInvalidUrlQuery", "The delta token is not valid.")
            cal = self.calendars.get(state.calendar)
            if cal is None or cal.generation != state.generation:
                generation = state.generation
                raise GraphError(410, "SyncStateNotFound", "The sync state generation is not "
                                 f"found; generation={generation};")
            if state.pending is not None:
                ids, since = state.pending, state.since
            else:
                ids, since = self._changed(cal, state.since), self.seq
        else:
            cal = self._cal(request)
            start, end = _window(q)
            state = DeltaState(cal.id, start, end, cal.generation, 0, path=request.path)
            ids = [e["id"] for e in sorted(self.events.values(), key=lambda e: e["_seq"])
                   if e["_calendar"] == cal.id and self._overlaps(e, start, end)]
            since = self.seq
        page, rest = ids[:size], ids[size:]
        value = []
        for event_id in page:
            event = self.events.get(event_id)
            if event is not None and event["_calendar"] == cal.id and \
                    self._overlaps(event, state.start, state.end):
                value.append({"@odata.type": "#microsoft.graph.event",
                              **self._render(event, zone, text)})
            else:
                value.append({"@odata.type": "#microsoft.graph.event", "id": event_id,
                              "@removed": {"reason": "deleted"}})
        new = _secrets.token_urlsafe(48)
        base = f"{self.url}/v1.0{state.path}"
        answer: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#Collection"
                                                    "(event)"}
        if rest:
            self._delta[new] = DeltaState(cal.id, state.start, state.end, state.generation,
                                          since, rest, state.path)
            answer["@odata.nextLink"] = f"{base}?$skiptoken={new}"
        else:
            self._delta[new] = DeltaState(cal.id, state.start, state.end, state.generation,
                                          since, None, state.path)
            answer["@odata.deltaLink"] = f"{base}?$deltatoken={new}"
        answer["value"] = value
        headers = {**_applied(zone, text)}
        if _max_page(request.headers):
            headers["Preference-Applied"] = ", ".join(
                p for p in (headers.get("Preference-Applied"), f"odata.maxpagesize={size}") if p)
        return 200, answer, headers

    def _changed(self, cal: Calendar, since: int) -> list[str]:
        changed = [(e["_seq"], e["id"]) for e in self.events.values()
                   if e["_calendar"] == cal.id and e["_seq"] > since]
        changed += [(seq, eid) for eid, seq in cal.tombstones.items() if seq > since]
        return [eid for _, eid in sorted(changed)]

    def _overlaps(self, event: dict[str, Any], start: dt.datetime, end: dt.datetime) -> bool:
        first, last = _instants(event, self.mailbox_zone)
        return first < end and (last > start or (first == last and first >= start))

    # ---------------------------------------------------------------- Graph: batch
    def _h_batch(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        raise GraphError(400, "BadRequest", "A $batch cannot be nested in a $batch.")

    # ---------------------------------------------------------------- Graph: helpers
    def _context(self, what: str, select: list[str] | None) -> str:
        user = quote(self.user, safe="")
        shape = what
        if select is not None and not what.endswith("$entity"):
            shape = f"{what}({','.join(select)})"
        return f"{self.url}/v1.0/$metadata#users('{user}')/{shape}"

    def _page(self, request: Request, rows: list[dict[str, Any]], context: str,
              default: int) -> tuple[int, Any, dict[str, str]]:
        q = request.query
        top = _int_option(q, "$top", default)
        skip = _int_option(q, "$skip", 0)
        top = max(1, min(top, MAX_TOP))
        answer: dict[str, Any] = {"@odata.context": context, "value": rows[skip:skip + top]}
        if skip + top < len(rows):
            rest = {**q, "$top": str(top), "$skip": str(skip + top)}
            answer["@odata.nextLink"] = (f"{self.url}/v1.0{request.path}?" +
                                         urlencode(rest, quote_via=quote, safe="$,'()"))
        return 200, answer, {}


# ==================================================================== event rules (pure)
def _validated(body: dict[str, Any], old: dict[str, Any] | None, mailbox: ZoneInfo
               ) -> dict[str, Any]:
    """The stored event after a create (old None) or a PATCH; GraphError when Graph would
    refuse the body."""
    for key, value in body.items():
        if key == "@odata.type":
            if value not in ("#microsoft.graph.event", "microsoft.graph.event"):
                raise GraphError(400, "RequestBodyRead", f"A type named '{value}' could not "
                                 "be resolved by the model.")
        elif key in EVENT_NAVIGATION and key != "singleValueExtendedProperties":
            raise GraphError(400, "ErrorInvalidRequest",
                             f"The emulation does not take '{key}' in a body.")
        elif key not in EVENT_PROPS and key not in EVENT_NAVIGATION:
            raise GraphError(400, "RequestBodyRead", _unknown_prop(key, "event"))
    if old is None:
        event: dict[str, Any] = {
            "subject": "", "body": {"contentType": "text", "content": ""}, "categories": [],
            "isAllDay": False, "isReminderOn": True, "reminderMinutesBeforeStart": 15,
            "importance": "normal", "sensitivity": "normal", "showAs": "busy",
            "responseRequested": True, "allowNewTimeProposals": True, "hideAttendees": False,
            "location": _location(None), "locations": [], "attendees": [], "_props": {}}
        if "start" not in body or "end" not in body:
            raise GraphError(400, "ErrorInvalidRequest",
                             "Your request can't be completed. An event needs a start and an "
                             "end.")
    else:
        event = copy.deepcopy(old)
    for key, value in body.items():
        if key in READ_ONLY or key == "@odata.type":
            continue
        if key == "transactionId" and old is not None and old.get("transactionId"):
            continue  # immutable once set
        event[key] = _checked(key, value)
    if "singleValueExtendedProperties" in body:
        event.pop("singleValueExtendedProperties")
        for prop in body["singleValueExtendedProperties"]:
            event["_props"][prop["id"]] = prop["value"]
    if "location" in body:
        event["location"] = _location(event["location"])
    _check_times(event, mailbox)
    return event


def _checked(key: str, value: Any) -> Any:
    """One property's value, normalised as Graph stores it, or a 400."""
    bad = GraphError(400, "BadRequest", f"Invalid value for property '{key}'.")
    if key == "subject":
        if value is not None and not isinstance(value, str):
            raise bad
        return value or ""
    if key == "body":
        if not isinstance(value, dict) or set(value) - {"contentType", "content",
                                                        "@odata.type"}:
            raise bad
        kind = str(value.get("contentType", "text")).lower()
        if kind not in ("text", "html") or not isinstance(value.get("content", ""), str):
            raise bad
        return {"contentType": kind, "content": value.get("content", "")}
    if key == "categories":
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise bad
        return list(value)
    if key in ("isAllDay", "isReminderOn", "responseRequested", "allowNewTimeProposals",
               "hideAttendees", "isOnlineMeeting"):
        if not isinstance(value, bool):
            raise bad
        return value
    if key == "reminderMinutesBeforeStart":
        if not isinstance(value, int) or isinstance(value, bool) or not \
                -(2**31) <= value < 2**31:
            raise bad
        return value
    if key in ENUMS:
        if value not in ENUMS[key]:
            raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{value}' "
                             f"to the expected type 'microsoft.graph.{key}'.")
        return value
    if key == "transactionId":
        if value is not None and not isinstance(value, str):
            raise bad
        return value
    if key in ("start", "end"):
        return _when(value, key)
    if key == "singleValueExtendedProperties":
        if not isinstance(value, list):
            raise bad
        for prop in value:
            if not isinstance(prop, dict) or not isinstance(prop.get("id"), str) or \
                    not PROP_ID_RE.match(prop["id"]) or not isinstance(prop.get("value"), str):
                raise GraphError(400, "ErrorInvalidProperty",
                                 "The extended property is not valid: id must be 'Type {GUID} "
                                 "Name name' and value a string.")
        return value
    if key in ("attendees", "locations") and not isinstance(value, list):
        raise bad
    return copy.deepcopy(value)


def _when(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "BadRequest", f"Invalid value for property '{key}'.")
    zone = value.get("timeZone")
    if not isinstance(zone, str) or zone_info(zone) is None:
        raise GraphError(400, "TimeZoneNotSupportedException",
                         "A valid TimeZone value must be specified. The following TimeZone "
                         f"value is not supported: '{zone or ''}'.")
    moment = _parse_local(value["dateTime"])
    if moment is None:
        raise GraphError(400, "BadRequest", f"Cannot convert the literal '{value['dateTime']}' "
                         "to the expected type 'Edm.String' (a date and time without offset).")
    return {"dateTime": _fmt(moment), "timeZone": zone}


def _check_times(event: dict[str, Any], mailbox: ZoneInfo) -> None:
    start = _parse_local(event["start"]["dateTime"])
    end = _parse_local(event["end"]["dateTime"])
    assert start is not None and end is not None
    if event["isAllDay"]:
        midnight = dt.time(0, 0)
        if start.time() != midnight or end.time() != midnight or end <= start or \
                event["start"]["timeZone"] != event["end"]["timeZone"]:
            raise GraphError(400, "ErrorInvalidRequest",
                             "Your request can't be completed. An all-day event must start "
                             "and end at midnight in the same time zone and last whole days.")
        return
    first, last = _instants(event, mailbox)
    if last < first:
        raise GraphError(400, "ErrorInvalidRequest",
                         "Your request can't be completed. The end time must not be before "
                         "the start time.")


def _instants(event: dict[str, Any], mailbox: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) as aware UTC instants; all-day dates are midnights in the mailbox's zone."""
    out = []
    for key in ("start", "end"):
        local = _parse_local(event[key]["dateTime"])
        assert local is not None
        zone = mailbox if event["isAllDay"] else zone_info(event[key]["timeZone"])
        out.append(local.replace(tzinfo=zone).astimezone(dt.UTC))
    return out[0], out[1]


def _shown_time(event: dict[str, Any], key: str, zone: str | None, mailbox: ZoneInfo
                ) -> dict[str, str]:
    local = _parse_local(event[key]["dateTime"])
    assert local is not None
    if event["isAllDay"]:
        return {"dateTime": _fmt(local), "timeZone": "UTC"}
    moment = local.replace(tzinfo=zone_info(event[key]["timeZone"]))
    target = zone or "UTC"
    shown = moment.astimezone(zone_info(target)).replace(tzinfo=None)
    return {"dateTime": _fmt(shown), "timeZone": target}


def _parse_local(text: str) -> dt.datetime | None:
    found = DATETIME_RE.match(text)
    if not found:
        return None
    day, hour, minute, second, frac = found.groups()
    try:
        base = dt.datetime.fromisoformat(f"{day}T{hour}:{minute}:{second or '00'}")
    except ValueError:
        return None
    micro = int((frac or "0").ljust(7, "0")[:6])
    return base.replace(microsecond=micro)


def _fmt(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}0"


def _stamp() -> str:
    return _fmt(dt.datetime.now(dt.UTC).replace(tzinfo=None)) + "Z"


def _window(query: dict[str, str]) -> tuple[dt.datetime, dt.datetime]:
    if "startDateTime" not in query or "endDateTime" not in query:
        raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window "
                         "specified by the query string parameters StartDateTime and "
                         "EndDateTime.")
    out = []
    for key in ("startDateTime", "endDateTime"):
        try:
            moment = dt.datetime.fromisoformat(query[key].replace("Z", "+00:00"))
        except ValueError:
            raise GraphError(400, "ErrorInvalidParameter",
                             f"The value '{query[key]}' of parameter '{key}' is invalid.") \
                from None
        out.append(moment.replace(tzinfo=moment.tzinfo or dt.UTC).astimezone(dt.UTC))
    return out[0], out[1]


def _location(value: Any) -> dict[str, Any]:
    base = {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
            "address": {}, "coordinates": {}}
    if isinstance(value, dict):
        base.update(value)
    return base


def _preview(body: dict[str, str]) -> str:
    text = body["content"]
    if body["contentType"] == "html":
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(text.split())[:255]


def _body_as(body: dict[str, str], text: bool | None) -> dict[str, str]:
    """HTML unless `Prefer: outlook.body-content-type="text"` (Graph's default for reads)."""
    if text:
        if body["contentType"] == "text":
            return dict(body)
        lines = re.sub(r"<br\s*/?>|</p>|</div>", "\n", body["content"])
        return {"contentType": "text",
                "content": html.unescape(re.sub(r"<[^>]+>", "", lines)).strip()}
    if body["contentType"] == "html":
        return dict(body)
    escaped = html.escape(body["content"]).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return {"contentType": "html",
            "content": "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/"
                       "html; charset=utf-8\">\r\n</head>\r\n<body>\r\n<div>" + escaped +
                       "</div>\r\n</body>\r\n</html>\r\n"}


def _prefer(headers: dict[str, str]) -> tuple[str | None, bool | None]:
    """(outlook.timezone, text body?) from the Prefer header(s)."""
    prefer = headers.get("prefer", "")
    zone = None
    found = re.search(r'outlook\.timezone\s*=\s*"([^"]*)"', prefer)
    if found:
        zone = found.group(1)
        if zone_info(zone) is None:
            raise GraphError(400, "TimeZoneNotSupportedException",
                             "A valid TimeZone value must be specified. The following TimeZone "
                             f"value is not supported: '{zone}'.")
    kind = re.search(r'outlook\.body-content-type\s*=\s*"?(text|html)"?', prefer, re.I)
    return zone, (kind.group(1).lower() == "text") if kind else None


def _applied(zone: str | None, text: bool | None) -> dict[str, str]:
    parts = []
    if zone:
        parts.append(f'outlook.timezone="{zone}"')
    if text is not None:
        parts.append(f'outlook.body-content-type="{"text" if text else "html"}"')
    return {"Preference-Applied": ", ".join(parts)} if parts else {}


def _max_page(headers: dict[str, str]) -> int | None:
    found = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", headers.get("prefer", ""))
    return max(1, int(found.group(1))) if found else None


def _int_option(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid {name} value.") from None
    if value < 0:
        raise GraphError(400, "BadRequest", f"Invalid {name} value.")
    return value


def _select(text: str | None, known: tuple[str, ...], kind: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise GraphError(400, "RequestBroker--ParseUri",
                             f"Could not find a property named '{name}' on type "
                             f"'microsoft.graph.{kind}'.")
    return names


def _pick(row: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return row
    return {k: v for k, v in row.items() if k in select or k in ("id", "@odata.etag")}


def _expand(text: str | None) -> Callable[[str, str], bool] | None:
    """A test for which extended properties an $expand shows; None without $expand."""
    if text is None:
        return None
    found = re.fullmatch(r"\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.+)\)\s*",
                         text, re.S)
    if not found:
        if text.strip().startswith("singleValueExtendedProperties"):
            raise GraphError(400, "ErrorInvalidRequest", "Expanding singleValueExtendedProperties"
                             " needs a $filter on id.")
        raise GraphError(400, "BadRequest", f"The emulation does not expand '{text}'.")
    test = parse_filter(found.group(1))
    return lambda pid, value: test(Scope({}, {}, {"id": pid, "value": value}))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    return body


def _unknown_prop(key: str, kind: str) -> str:
    return (f"The property '{key}' does not exist on type 'microsoft.graph.{kind}'. Make sure "
            "to only use property names that are defined by the type or mark the type as open "
            "type.")


def _etag(event: dict[str, Any]) -> str:
    return f'W/"{event["changeKey"]}"'


def _change_key() -> str:
    return "DwAAABYAAAA" + base64.b64encode(_secrets.token_bytes(21)).decode()


def _outlook_id(long: bool = False) -> str:
    raw = b"\x00\x00" + _secrets.token_bytes(61 if long else 40)  # no padding inside
    return "AAMkAG" + base64.urlsafe_b64encode(raw).decode()[8:] + "AAA="


# ==================================================================== $filter (pure)
@dataclass
class Scope:
    """What a $filter sees: the row, the extended properties, the lambda variables."""

    row: dict[str, Any]
    props: dict[str, str] = field(default_factory=dict)
    item: dict[str, Any] | None = None       # bare names (an $expand's $filter)
    names: dict[str, dict[str, Any]] = field(default_factory=dict)


_TOKEN_RE = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|"
                       r"(?P<name>[A-Za-z_$][\w$]*(?:/[A-Za-z_$][\w$]*)*)|(?P<sym>[(),:]))")
_COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")


def parse_filter(text: str) -> Callable[[Scope], bool]:
    """The OData $filter subset the emulation understands, as a test; GraphError otherwise."""
    tokens: list[tuple[str, str]] = []
    at = 0
    text = text.strip()
    while at < len(text):
        found = _TOKEN_RE.match(text, at)
        if not found or found.end() == at:
            raise _bad_filter(text)
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind)))
        at = found.end()
        while at < len(text) and text[at].isspace():
            at += 1
    parser = _Parser(tokens, text)
    test = parser.disjunction()
    if parser.at != len(tokens):
        raise _bad_filter(text)
    return test


def _bad_filter(text: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: {text}")


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens, self.text, self.at = tokens, text, 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            raise _bad_filter(self.text)
        self.at += 1
        return token

    def disjunction(self) -> Callable[[Scope], bool]:
        parts = [self.conjunction()]
        while self.peek() == ("name", "or"):
            self.take()
            parts.append(self.conjunction())
        return lambda s: any(p(s) for p in parts)

    def conjunction(self) -> Callable[[Scope], bool]:
        parts = [self.unary()]
        while self.peek() == ("name", "and"):
            self.take()
            parts.append(self.unary())
        return lambda s: all(p(s) for p in parts)

    def unary(self) -> Callable[[Scope], bool]:
        if self.peek() == ("name", "not"):
            self.take()
            inner = self.unary()
            return lambda s: not inner(s)
        if self.peek() == ("sym", "("):
            self.take()
            inner = self.disjunction()
            self.take(")")
            return inner
        kind, name = self.take()
        if kind != "name":
            raise _bad_filter(self.text)
        if name in ("startswith", "endswith", "contains"):
            self.take("(")
            path = self.take()[1]
            self.take(",")
            literal = self.literal()
            self.take(")")
            op = {"startswith": str.startswith, "endswith": str.endswith,
                  "contains": str.__contains__}[name]

            def test(scope: Scope) -> bool:
                value = _resolve(scope, path)
                return isinstance(value, str) and isinstance(literal, str) and \
                    op(value.lower(), literal.lower())
            return test
        if name.endswith("/any"):
            return self.any_clause(name[:-4])
        verb = self.take()[1]
        if verb not in _COMPARE:
            raise _bad_filter(self.text)
        wanted = self.literal()
        return lambda s: _compare(_resolve(s, name), verb, wanted, name)

    def any_clause(self, collection: str) -> Callable[[Scope], bool]:
        if collection != "singleValueExtendedProperties":
            raise GraphError(400, "BadRequest", f"The emulation does not filter on {collection}.")
        self.take("(")
        var = self.take()[1]
        self.take(":")
        inner = self.disjunction()
        self.take(")")

        def test(scope: Scope) -> bool:
            for pid, value in scope.props.items():
                names = {**scope.names, var: {"id": pid, "value": value}}
                if inner(Scope(scope.row, scope.props, scope.item, names)):
                    return True
            return False
        return test

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        raise _bad_filter(self.text)


def _resolve(scope: Scope, path: str) -> Any:
    parts = path.split("/")
    if parts[0] in scope.names:
        value: Any = scope.names[parts[0]]
        parts = parts[1:]
    elif scope.item is not None:
        value = scope.item
    else:
        value = scope.row
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _compare(value: Any, op: str, literal: Any, path: str) -> bool:
    if (path.endswith("/id") or path == "id") and isinstance(value, str) and \
            isinstance(literal, str) and PROP_ID_RE.match(value):
        value, literal = _prop_key(value), _prop_key(literal)
    if isinstance(value, str) and isinstance(literal, str):
        value, literal = value.lower(), literal.lower()
    if op == "eq":
        return bool(value == literal)
    if op == "ne":
        return bool(value != literal)
    if value is None or literal is None or type(value) is not type(literal):
        return False
    return bool({"gt": value > literal, "ge": value >= literal, "lt": value < literal,
                 "le": value <= literal}[op])


def _prop_key(pid: str) -> str:
    """An extended property id compared as Graph does: type and GUID ignore case, the name
    does not (the caller lower-cases both sides after, so mark the name's case)."""
    found = PROP_ID_RE.match(pid)
    if not found:
        return pid
    kind, guid, name = found.groups()
    return f"{kind.lower()} {{{guid.lower()}}} " + name.encode().hex()


# ==================================================================== identity helpers
def _resources(scopes: list[str]) -> set[str]:
    out = set()
    for scope in scopes:
        if scope.lower() in RESERVED_SCOPES:
            continue
        if "://" in scope:
            parts = urlsplit(scope)
            host = f"{parts.scheme}://{parts.netloc}"
            out.add(OUTLOOK if "outlook.office" in parts.netloc else host)
        else:
            out.add(GRAPH)
    return out


def _norm(scopes: list[str]) -> set[str]:
    """Scopes as consent sees them: lower case, Graph's without its prefix, no OIDC ones."""
    return {_scope_name(s).lower() if s.startswith(GRAPH + "/") else s.lower()
            for s in scopes if s.lower() not in RESERVED_SCOPES}


def _scope_name(scope: str) -> str:
    if scope.startswith(GRAPH + "/"):
        return scope[len(GRAPH) + 1:]
    if "://" in scope:
        return scope.rsplit("/", 1)[-1]
    return scope


def _mixed(scopes: list[str]) -> str:
    return ("Provided value for the input parameter scope is not valid because it contains more "
            f"than one resource. Scope {' '.join(scopes)} is not valid.")


def _entra(status: int, error: str, code: int, message: str, suberror: str | None = None
           ) -> tuple[int, dict[str, Any]]:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    answer: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: "
                             f"{correlation} Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace,
        "correlation_id": correlation, "error_uri": "https://login.microsoftonline.com/error?"
                                                    f"code={code}"}
    if suberror:
        answer["suberror"] = suberror
    return status, answer


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(claims: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": "emu"}
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                     _b64(_secrets.token_bytes(64))])


# ==================================================================== TLS
def _tls_context(folder: Path) -> ssl.SSLContext:
    """A test CA (folder/ca.pem) and a server certificate for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "msemu test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return context


class _TLSServer(ThreadingHTTPServer):
    """HTTPS; each connection's handshake runs in its own thread, not in the accept loop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(30)
            request.do_handshake()
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)


# ==================================================================== HTTP
class _Handler(BaseHTTPRequestHandler):
    emu: MsEmu
    protocol_version = "HTTP/1.1"
    # an answer is written in pieces: with Nagle's algorithm on, each costs ~40 ms of delayed
    # ACK (measured: two GETs 44 ms with it, 2 ms without), which Graph does not
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        emu = self.emu
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        shown = {k: v for k, v in headers.items() if k != "authorization"}
        secure = isinstance(self.connection, ssl.SSLSocket)
        path = parts.path
        if not secure:
            if path == "/introspect":
                self._introspect(query, raw, headers, shown)
            else:
                self._json(404, {"error": "not found"}, {})
            return
        if path.startswith("/v1.0/"):
            self._graph(path[len("/v1.0"):], query, headers, shown, raw)
            return
        seen = Seen(self.command, path, query, shown, raw, "identity")
        with emu.lock:
            emu.requests.append(seen)
        if path == "/devicelogin":
            self._devicelogin(raw)
            return
        found = re.fullmatch(r"/([^/]+)/(v2\.0/\.well-known/openid-configuration|"
                             r"oauth2/v2\.0/devicecode|oauth2/v2\.0/token)", path)
        if found is None:
            self._json(404, {"error": "not_found"}, {})
            return
        tenant, what = found.groups()
        if what.startswith("v2.0") and self.command == "GET":
            if not emu.discovery:  # a stand-in that serves only the documented paths
                self._json(404, {"error": "not_found"}, {})
                return
            self._json(200, emu.openid_configuration(tenant), {})
            return
        if self.command != "POST":
            self._json(405, {"error": "invalid_request"}, {})
            return
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        seen.form = form
        if what.endswith("token"):
            with emu.lock:
                emu.token_number += 1
                fault = emu.token_faults.pop(emu.token_number, None)
            if fault in ("drop", "drop_after"):
                if fault == "drop_after":
                    emu.token(form)
                self._drop()
                return
            if fault is not None:
                status = int(fault) if fault in ("500", "503", "429") else 500
                self._json(status, _entra(status, "temporarily_unavailable", 90033,
                                          "A transient error has occurred. Please try again.")[1],
                           {"Retry-After": emu.retry_after} if emu.retry_after else {})
                return
            status, answer = emu.token(form)
        else:
            status, answer = emu.devicecode(form)
        seen.status = status
        self._json(status, answer, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _devicelogin(self, raw: bytes) -> None:
        """The verification page: a person (or a process acting as one) enters the code."""
        if self.command == "GET":
            self._send_html(200, "<form method=post><input name=otc><input type=submit "
                                 "value=Next></form>")
            return
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        try:
            self.emu.approve(form.get("otc", "").strip().upper(), form.get("user") or None)
        except KeyError:
            self._send_html(400, "<p>That code didn't work. Check the code and try again.</p>")
            return
        self._send_html(200, "<p>You have signed in to the application on your device. You "
                             "may now close this window.</p>")

    def _send_html(self, status: int, text: str) -> None:
        body = f"<!DOCTYPE html><html><body>{text}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        self.flush_headers()

    def _introspect(self, query: dict[str, list[str]], raw: bytes, headers: dict[str, str],
                    shown: dict[str, str]) -> None:
        emu = self.emu
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        token = form.get("token") or (query.get("token") or [""])[-1]
        auth = headers.get("authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        with emu.lock:
            emu.requests.append(Seen(self.command, "/introspect", query, shown, raw,
                                     "introspect", {"token": token} if token else {}))
        self._json(200, emu.introspect(token), {})

    # ---------------------------------------------------------------- Graph over HTTP
    def _graph(self, path: str, query: dict[str, list[str]], headers: dict[str, str],
               shown: dict[str, str], raw: bytes) -> None:
        emu = self.emu
        seen = Seen(self.command, "/v1.0" + path, query, shown, raw)
        with emu.lock:
            emu.requests.append(seen)
            emu.graph_number += 1
            fault = emu.faults.pop(emu.graph_number, None)
        if fault == "drop":
            self._drop()
            return
        client_id = headers.get("client-request-id", str(uuid.uuid4()))
        extra = {"request-id": str(uuid.uuid4()), "client-request-id": client_id,
                 "OData-Version": "4.0"}
        user = None
        try:
            if fault not in (None, "drop_after", "504_after"):
                raise _fault_error(fault, emu.retry_after)
            user = emu.authorize(headers, self.command)
            with emu.lock:
                busy = emu.in_flight.get(user, 0)
                if busy >= emu.max_concurrent:
                    user = None
                    raise GraphError(429, "ApplicationThrottled", "Application is over its "
                                     "MailboxConcurrency limit.",
                                     {"Retry-After": emu.retry_after or "1"})
                emu.in_flight[user] = busy + 1
            if emu.latency:
                time.sleep(emu.latency)
            emu.gate.wait(30)
            body = self._body(raw)
            if path == "/$batch" and self.command == "POST":
                status, payload, more = self._batch(body, headers, user)
            else:
                with emu.lock:
                    status, payload, more = emu.graph(Request(
                        self.command, path, {}, {k: v[-1] for k, v in query.items()}, headers,
                        body, user))
        except GraphError as error:
            status, payload, more = error.status, _graph_error(error, extra), error.headers
        finally:
            if user is not None:
                with emu.lock:
                    emu.in_flight[user] -= 1
        if fault == "504_after":  # done, but the gateway gave up waiting for it
            error = GraphError(504, "UnknownError", "Gateway Timeout.")
            status, payload, more = 504, _graph_error(error, extra), {}
        seen.status = status
        if fault == "drop_after":
            self._drop()
            return
        self._json(status, payload, {**extra, **more})

    def _body(self, raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please "
                             "ensure Content-Type header is set and payload is of valid JSON "
                             "format.") from None

    def _batch(self, body: Any, headers: dict[str, str], user: str
               ) -> tuple[int, Any, dict[str, str]]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(requests) > MAX_BATCH:
            raise GraphError(400, "BadRequest", "Number of requests in a batch exceeds the "
                             f"maximum of {MAX_BATCH}.")
        ids = [r.get("id") if isinstance(r, dict) else None for r in requests]
        if any(not isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
            raise GraphError(400, "BadRequest", "Invalid batch payload format: each request "
                             "needs a unique id.")
        done: dict[str, int] = {}
        responses = []
        for item in requests:
            status, payload, more = self._batch_item(item, headers, user, done)
            done[item["id"]] = status
            response: dict[str, Any] = {"id": item["id"], "status": status,
                                        "headers": {"Content-Type": "application/json", **more}}
            if payload is not None:
                response["body"] = payload
            responses.append(response)
        return 200, {"responses": responses}, {}

    def _batch_item(self, item: dict[str, Any], headers: dict[str, str], user: str,
                    done: dict[str, int]) -> tuple[int, Any, dict[str, str]]:
        emu = self.emu
        url = str(item.get("url", ""))
        absolute = "://" in url
        parts = urlsplit(url if url.startswith("/") or absolute else "/" + url)
        sub_headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        seen = Seen(str(item.get("method", "")).upper(), url if absolute else "/v1.0" + parts.path,
                    parse_qs(parts.query, keep_blank_values=True), sub_headers,
                    json.dumps(item["body"]).encode() if "body" in item else b"", "batch-item")
        with emu.lock:
            emu.requests.append(seen)
            emu.graph_number += 1
            fault = emu.faults.pop(emu.graph_number, None)
        extra = {"request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
        try:
            if absolute:  # Graph wants relative URLs (msgraph-sdk-python issue 1015)
                raise GraphError(400, "BadRequest", "Resource not found for the segment "
                                 f"'{url.split('/')[0]}'.")
            depends = item.get("dependsOn") or []
            for dep in depends:
                if dep not in done:
                    raise GraphError(400, "BadRequest", f"dependsOn '{dep}' is not an earlier "
                                     "request of this batch.")
                if done[dep] >= 400:
                    raise GraphError(424, "FailedDependency", "The request failed because it "
                                     f"depends on request '{dep}', which failed.")
            if fault is not None:
                raise _fault_error("503" if fault.startswith("drop") else fault,
                                   emu.retry_after)
            if "body" in item and "content-type" not in sub_headers:
                raise GraphError(400, "BadRequest", "Content-Type header is required for a "
                                 "request with a body.")
            with emu.lock:
                status, payload, more = emu.graph(Request(
                    seen.method, parts.path, {},
                    {k: v[-1] for k, v in seen.query.items()},
                    {**{k: v for k, v in headers.items() if k in ("authorization",)},
                     **sub_headers}, item.get("body"), user))
        except GraphError as error:
            status, payload, more = error.status, _graph_error(error, extra), error.headers
        seen.status = status
        return status, payload, more

    # ---------------------------------------------------------------- plumbing
    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _json(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        kind = "application/json"
        if self.path.startswith("/v1.0/"):
            kind = ("application/json;odata.metadata=minimal;odata.streaming=true;"
                    "IEEE754Compatible=false;charset=utf-8")
        headers = {"Content-Type": kind, **extra} if payload is not None else extra
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


def _fault_error(fault: str, retry_after: str | None) -> GraphError:
    wait = {"Retry-After": retry_after} if retry_after else {}
    if fault == "429":
        return GraphError(429, "TooManyRequests", "Too many requests.", wait)
    if fault == "503":
        return GraphError(503, "ServiceUnavailable", "Service Unavailable.", wait)
    if fault == "500":
        return GraphError(500, "generalException", "An unexpected error occurred.")
    if fault == "404":  # a passing one (replication lag), whatever was asked
        return GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                          "the store.")
    if fault == "412":
        return GraphError(412, "ErrorIrresolvableConflict",
                          "The send or update operation could not be performed because the "
                          "change key passed in the request does not match the current change "
                          "key for the item.")
    if fault == "410":
        return GraphError(410, "SyncStateNotFound",
                          "The sync state generation is not found; generation=1;")
    raise AssertionError(fault)


def _graph_error(error: GraphError, extra: dict[str, str]) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "innerError": {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": extra["request-id"], "client-request-id": extra["client-request-id"]}}}


@contextlib.contextmanager
def running(**options: Any) -> Iterator[MsEmu]:
    emu = MsEmu(**options).start()
    try:
        yield emu
    finally:
        emu.stop()
