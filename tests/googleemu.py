"""A local emulation of the parts of Google's Calendar API v3 and OAuth 2.0 endpoints that the
`google` target uses, written from Google's documentation (and checked with Google's own client
libraries in tests/test_googleemu.py): no machine here reaches Google.

API (under {url}/calendar/v3/): calendarList.list, calendars.insert, events insert / get /
update / patch / delete / list — client-chosen ids (base32hex, 5–1024 characters; an id that
exists or existed answers 409), ETags with If-Match (412), sync tokens (deleted events come back
as "cancelled"; a void token answers 410), pageToken paging, `privateExtendedProperty` and
`iCalUID` filters, at most 5 reminder overrides, `date` vs `dateTime` + `timeZone`.
OAuth: {url}/o/oauth2/auth redirects to the loopback redirect_uri with a code; {url}/token
takes the authorization_code (with PKCE) and refresh_token grants; access tokens expire and
keep the scope they were granted. {url}/introspect answers RFC 7662 for an access token (for
Dovecot's oauth2 passdb in the XOAUTH2 tests: what Gmail's IMAP checks).
Every API call needs a valid bearer token (401 otherwise). Faults can be injected at chosen
requests; every request is recorded.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

API = "/calendar/v3"
ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
MAX_REMINDERS = 5
CALENDAR = "https://www.googleapis.com/auth/calendar"
FAULTS = ("drop", "drop_after", "500", "503", "429", "403rate", "412", "409", "410")


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str = "UTC"
    primary: bool = False
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: int = 1  # bumped to void every sync token


@dataclass
class Seen:
    """One request as the emulation saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    api: bool
    headers: dict[str, str]
    body: bytes = b""


class GoogleEmu:
    """The emulation; `start()` serves it on 127.0.0.1 at a free port (threaded)."""

    def __init__(self, client_id: str = "test-client.apps.googleusercontent.com",
                 client_secret: str = "test-secret-Zq8", token_lifetime: int = 3600) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.lock = threading.RLock()
        self.calendars: dict[str, Calendar] = {}
        self.primary = "me@example.com"
        self.calendars[self.primary] = Calendar(self.primary, self.primary, "Europe/Berlin",
                                                primary=True)
        self.codes: dict[str, dict[str, str]] = {}
        self.issued_codes: list[str] = []
        self.issued_access: list[str] = []
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token → expiry (epoch seconds)
        self.scopes: dict[str, str] = {}  # refresh or access token → the scope granted
        self.require_auth = True
        self.invalid_grant = False  # every refresh answers invalid_grant (a dead token)
        self.requests: list[Seen] = []
        self.faults: dict[int, str] = {}  # API request number (1-based) → fault
        self.retry_after: str | None = None  # sent as Retry-After with every injected fault
        self.api_number = 0
        self._seq = itertools.count(1)
        self._pages: dict[str, tuple[list[str], str | None]] = {}
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ---------------------------------------------------------------- life
    def start(self) -> GoogleEmu:
        emu = self

        class Handler(_Handler):
            pass

        Handler.emu = emu
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # ---------------------------------------------------------------- test helpers
    def issue_tokens(self, scope: str = CALENDAR) -> tuple[str, str]:
        """A refresh token and an access token, as after a sign-in."""
        refresh, access = "1//r-" + secrets.token_urlsafe(24), "ya29.a-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens.add(refresh)
            self.scopes[refresh] = self.scopes[access] = scope
            self.issued_access.append(access)
            self.access_tokens[access] = time.time() + self.token_lifetime
        return refresh, access

    def secrets(self) -> list[str]:
        """Everything that must never show in followsync's output."""
        with self.lock:
            return [self.client_secret, *self.refresh_tokens, *self.issued_access,
                    *self.issued_codes]

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def void_sync_tokens(self) -> None:
        with self.lock:
            for calendar in self.calendars.values():
                calendar.generation += 1

    def api_requests(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.requests if s.api]

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def calendar(self, name_or_id: str) -> Calendar:
        with self.lock:
            if name_or_id in self.calendars:
                return self.calendars[name_or_id]
            return next(c for c in self.calendars.values() if c.summary == name_or_id)

    def add_calendar(self, summary: str, time_zone: str = "UTC") -> Calendar:
        with self.lock:
            cal_id = secrets.token_hex(13) + "@group.calendar.google.com"
            self.calendars[cal_id] = Calendar(cal_id, summary, time_zone)
            return self.calendars[cal_id]

    def live(self, calendar: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(e) for e in self.calendar(calendar).events.values()
                    if e["status"] != "cancelled"]

    def put_event(self, calendar: str, body: dict[str, Any], event_id: str | None = None
                  ) -> dict[str, Any]:
        """What another app does: insert (no id: a new one) or replace an event."""
        with self.lock:
            cal = self.calendar(calendar)
            if event_id and event_id in cal.events:
                return copy.deepcopy(self._store(cal, event_id, body, cal.events[event_id]))
            status, answer = self._insert(cal, copy.deepcopy(body))
            assert status == 200, answer
            return answer

    def delete_event(self, calendar: str, event_id: str) -> None:
        with self.lock:
            cal = self.calendar(calendar)
            self._delete(cal, cal.events[event_id])

    # ---------------------------------------------------------------- OAuth
    def oauth_auth(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        redirect = query.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if query.get("client_id") != self.client_id:
            return 400, {}, b"Error 401: invalid_client"
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "[::1]"):
            return 400, {}, b"Error 400: invalid_request (redirect_uri must be a loopback address)"
        if query.get("response_type") != "code":
            return 400, {}, b"Error 400: unsupported_response_type"
        code = "4/0A-" + secrets.token_urlsafe(20)
        with self.lock:
            self.issued_codes.append(code)
            self.codes[code] = {"redirect_uri": redirect,
                                "challenge": query.get("code_challenge", ""),
                                "method": query.get("code_challenge_method", "plain"),
                                "scope": query.get("scope", "")}
        answer = {"code": code, "scope": query.get("scope", "")}
        if "state" in query:
            answer["state"] = query["state"]
        sep = "&" if parts.query else "?"
        return 302, {"Location": redirect + sep + urlencode(answer)}, b""

    def oauth_token(self, form: dict[str, str], basic: tuple[str, str] | None
                    ) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id") or (basic[0] if basic else "")
        secret = form.get("client_secret") or (basic[1] if basic else "")
        if client_id != self.client_id or secret != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                info = self.codes.pop(form.get("code", ""), None)
                if info is None:
                    return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
                if form.get("redirect_uri") != info["redirect_uri"]:
                    return 400, {"error": "redirect_uri_mismatch", "error_description":
                                 "Bad Request"}
                if info["challenge"]:
                    verifier = form.get("code_verifier", "")
                    made = verifier if info["method"] == "plain" else base64.urlsafe_b64encode(
                        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                    if made != info["challenge"]:
                        return 400, {"error": "invalid_grant",
                                     "error_description": "Invalid code verifier."}
                refresh, access = self.issue_tokens(info["scope"])
                return 200, {"access_token": access, "expires_in": self.token_lifetime,
                             "refresh_token": refresh, "scope": info["scope"],
                             "token_type": "Bearer"}
            if grant == "refresh_token":
                if self.invalid_grant or form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Token has been expired or revoked."}
                access = "ya29.a-" + secrets.token_urlsafe(24)
                self.issued_access.append(access)
                self.access_tokens[access] = time.time() + self.token_lifetime
                scope = self.scopes[access] = self.scopes.get(form["refresh_token"], CALENDAR)
                return 200, {"access_token": access, "expires_in": self.token_lifetime,
                             "scope": scope, "token_type": "Bearer"}
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 for an access token: active while unexpired, for `primary`."""
        with self.lock:
            expiry = self.access_tokens.get(token)
            if expiry is None or expiry < time.time():
                return {"active": False}
            return {"active": True, "username": self.primary, "scope": self.scopes.get(token, ""),
                    "client_id": self.client_id, "token_type": "Bearer"}

    # ---------------------------------------------------------------- the API
    def api(self, method: str, path: str, query: dict[str, list[str]],
            headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        parts = [unquote(p) for p in path[len(API):].strip("/").split("/")]
        one = {k: v[-1] for k, v in query.items()}
        with self.lock:
            if parts[:3] == ["users", "me", "calendarList"] and method == "GET":
                if len(parts) == 4:
                    cal = self.calendars.get(self._alias(parts[3]))
                    return (200, self._list_entry(cal), {}) if cal else _error(404, "Not Found")
                items = [self._list_entry(c) for c in self.calendars.values()]
                return 200, {"kind": "calendar#calendarList", "etag": '"p1"',
                             "nextSyncToken": "cl-" + secrets.token_hex(4), "items": items}, {}
            if parts == ["calendars"] and method == "POST":
                if not isinstance(body, dict) or not body.get("summary"):
                    return _error(400, "Missing title.", "required")
                cal = self.add_calendar(body["summary"], body.get("timeZone", "UTC"))
                return 200, {"kind": "calendar#calendar", "etag": _etag(next(self._seq)),
                             "id": cal.id, "summary": cal.summary, "timeZone": cal.time_zone}, {}
            if len(parts) >= 3 and parts[0] == "calendars" and parts[2] == "events":
                cal = self.calendars.get(self._alias(parts[1]))
                if cal is None:
                    return _error(404, "Not Found", "notFound")
                if len(parts) == 3:
                    if method == "GET":
                        return self._list(cal, one, query.get("privateExtendedProperty", []))
                    if method == "POST":
                        if not isinstance(body, dict):
                            return _error(400, "Parse Error", "parseError")
                        status, answer = self._insert(cal, body)
                        return status, answer, {}
                if len(parts) == 4:
                    return self._one(cal, method, parts[3], headers, body)
        return _error(404, "Not Found", "notFound")

    def _alias(self, cal_id: str) -> str:
        return self.primary if cal_id == "primary" else cal_id

    def _list_entry(self, cal: Calendar) -> dict[str, Any]:
        entry = {"kind": "calendar#calendarListEntry", "etag": '"e1"', "id": cal.id,
                 "summary": cal.summary, "timeZone": cal.time_zone, "accessRole": "owner",
                 "defaultReminders": [{"method": "popup", "minutes": 30}]}
        if cal.primary:
            entry["primary"] = True
        return entry

    def _one(self, cal: Calendar, method: str, event_id: str, headers: dict[str, str],
             body: Any) -> tuple[int, Any, dict[str, str]]:
        event = cal.events.get(event_id)
        if event is None:
            return _error(404, "Not Found", "notFound")
        if method == "GET":
            return 200, copy.deepcopy(event), {"ETag": event["etag"]}
        wanted = headers.get("if-match")
        if method == "DELETE":
            if event["status"] == "cancelled":
                return _error(410, "Resource has been deleted", "deleted")
            if wanted and wanted != "*" and wanted != event["etag"]:
                return _error(412, "Precondition Failed", "conditionNotMet")
            self._delete(cal, event)
            return 204, None, {}
        if method in ("PUT", "PATCH"):
            if not isinstance(body, dict):
                return _error(400, "Parse Error", "parseError")
            if wanted and wanted != "*" and wanted != event["etag"]:
                return _error(412, "Precondition Failed", "conditionNotMet")
            merged = {**event, **body} if method == "PATCH" else body
            problem = _invalid(merged)
            if problem:
                return _error(400, problem, "invalid")
            stored = self._store(cal, event_id, merged, event)
            return 200, copy.deepcopy(stored), {"ETag": stored["etag"]}
        return _error(405, "Method Not Allowed")

    def _insert(self, cal: Calendar, body: dict[str, Any]) -> tuple[int, Any]:
        event_id = body.get("id")
        if event_id is not None:
            if not isinstance(event_id, str) or not ID_RE.match(event_id):
                return _error(400, "Invalid resource id value.", "invalid")[:2]
            if event_id in cal.events:
                return _error(409, "The requested identifier already exists.", "duplicate")[:2]
        else:
            event_id = "".join(secrets.choice("abcdefghijklmnopqrstuv0123456789")
                               for _ in range(26))
        uid = body.get("iCalUID")
        if uid and any(e.get("iCalUID") == uid and e["status"] != "cancelled"
                       for e in cal.events.values()):
            return _error(409, "The requested identifier already exists.", "duplicate")[:2]
        problem = _invalid(body)
        if problem:
            return _error(400, problem, "invalid")[:2]
        now = _now()
        base = {"kind": "calendar#event", "id": event_id, "status": "confirmed",
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                "created": now, "iCalUID": uid or f"{event_id}@google.com", "sequence": 0,
                "creator": {"email": self.primary}, "organizer": {"email": cal.id,
                                                                   "self": True},
                "eventType": "default"}
        return 200, copy.deepcopy(self._store(cal, event_id, body, base))

    def _store(self, cal: Calendar, event_id: str, body: dict[str, Any],
               old: dict[str, Any]) -> dict[str, Any]:
        keep = {k: old[k] for k in ("kind", "id", "htmlLink", "created", "iCalUID", "creator",
                                    "organizer", "eventType") if k in old}
        event = {**{k: v for k, v in body.items() if k not in ("etag", "updated")}, **keep}
        event.setdefault("status", "confirmed")
        if event["status"] not in ("confirmed", "tentative", "cancelled"):
            event["status"] = "confirmed"
        event.setdefault("sequence", old.get("sequence", 0))
        if event.get("reminders") is None:
            event["reminders"] = {"useDefault": True}
        for end in ("start", "end"):
            event[end] = _normalise_time(event[end])
        seq = next(self._seq)
        event["etag"], event["updated"], event["_seq"] = _etag(seq), _now(), seq
        cal.events[event_id] = event
        return event

    def _delete(self, cal: Calendar, event: dict[str, Any]) -> None:
        seq = next(self._seq)
        event.update(status="cancelled", etag=_etag(seq), updated=_now(), _seq=seq)

    def _list(self, cal: Calendar, one: dict[str, str], private_filters: list[str]
              ) -> tuple[int, Any, dict[str, str]]:
        page = one.get("pageToken")
        if page:
            if page not in self._pages:
                return _error(400, "Invalid page token", "invalid")
            ids, token = self._pages.pop(page)
        else:
            sync = one.get("syncToken")
            since = 0
            if sync:
                for bad in ("privateExtendedProperty", "sharedExtendedProperty", "iCalUID",
                            "q", "timeMin", "timeMax", "updatedMin", "orderBy"):
                    if bad in one:
                        return _error(400, f"{bad} is not allowed with syncToken", "invalid")
                if one.get("showDeleted") == "false":
                    return _error(400, "showDeleted=false is not allowed with syncToken",
                                  "invalid")
                try:
                    generation, since_text = sync.split("-", 1)[1].split(".")
                    since = int(since_text)
                except (IndexError, ValueError):
                    return _error(400, "Invalid sync token value.", "invalid")
                if int(generation) != cal.generation:
                    return _error(410, "Sync token is no longer valid, a full sync is required.",
                                  "fullSyncRequired")
            deleted = bool(sync) or one.get("showDeleted") == "true"
            chosen = []
            private = [_split_prop(v) for v in private_filters]
            for event in sorted(cal.events.values(), key=lambda e: e["_seq"]):
                if event["_seq"] <= since:
                    continue
                if event["status"] == "cancelled" and not deleted:
                    continue
                props = event.get("extendedProperties", {}).get("private", {})
                if any(props.get(k) != v for k, v in private):
                    continue
                if "iCalUID" in one and event.get("iCalUID") != one["iCalUID"]:
                    continue
                chosen.append(event["id"])
            last = max((e["_seq"] for e in cal.events.values()), default=0)
            token = None if private or "iCalUID" in one else f"s-{cal.generation}.{last}"
            ids = chosen
        size = max(1, min(int(one.get("maxResults", "250")), 2500))
        answer: dict[str, Any] = {"kind": "calendar#events", "etag": _etag(next(self._seq)),
                                  "summary": cal.summary, "timeZone": cal.time_zone,
                                  "accessRole": "owner", "updated": _now(),
                                  "defaultReminders": [{"method": "popup", "minutes": 30}],
                                  "items": []}
        for event_id in ids[:size]:
            event = cal.events.get(event_id)
            if event is None:
                continue
            if event["status"] == "cancelled":
                answer["items"].append({"kind": "calendar#event", "etag": event["etag"],
                                        "id": event["id"], "status": "cancelled"})
            else:
                answer["items"].append(_public(event))
        rest = ids[size:]
        if rest:
            next_page = secrets.token_urlsafe(12)
            self._pages[next_page] = (rest, token)
            answer["nextPageToken"] = next_page
        elif token:
            answer["nextSyncToken"] = token
        return 200, answer, {}


# ==================================================================== validation helpers
def _error(status: int, message: str, reason: str = "") -> tuple[int, Any, dict[str, str]]:
    errors = [{"domain": "global", "reason": reason or "error", "message": message}]
    return status, {"error": {"code": status, "message": message, "errors": errors}}, {}


def _etag(seq: int) -> str:
    return f'"{3181161784712000 + seq}"'


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _split_prop(value: str) -> tuple[str, str]:
    name, _, wanted = value.partition("=")
    return name, wanted


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in event.items() if not k.startswith("_")}


def _parse_when(when: Any) -> tuple[str, datetime | date] | None:
    """('date', date) or ('dateTime', aware datetime); None when invalid."""
    if not isinstance(when, dict):
        return None
    if "date" in when and when["date"] is not None:
        if when.get("dateTime"):
            return None
        try:
            return "date", date.fromisoformat(when["date"])
        except (TypeError, ValueError):
            return None
    text = when.get("dateTime")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        zone = when.get("timeZone")
        if not zone:
            return None
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (KeyError, ValueError):
            return None
    return "dateTime", moment


def _invalid(body: dict[str, Any]) -> str | None:
    """Google's 400 message for an event resource it would refuse, or None."""
    start, end = _parse_when(body.get("start")), _parse_when(body.get("end"))
    if start is None:
        return "Missing time zone definition for start time." \
            if isinstance(body.get("start"), dict) and body["start"].get("dateTime") \
            else "Start and end times must either both be date or both be dateTime."
    if end is None:
        return "Missing end time."
    if start[0] != end[0]:
        return "Start and end times must either both be date or both be dateTime."
    if end[1] < start[1]:  # type: ignore[operator]
        return "The specified time range is empty."
    zone = body.get("start", {}).get("timeZone")
    if zone:
        try:
            ZoneInfo(zone)
        except (KeyError, ValueError):
            return "Invalid time zone definition for start time."
    reminders = body.get("reminders")
    if isinstance(reminders, dict):
        overrides = reminders.get("overrides") or []
        if reminders.get("useDefault") and overrides:
            return "Cannot specify both default reminders and overrides at the same time."
        if len(overrides) > MAX_REMINDERS:
            return "Too many reminders"
        for override in overrides:
            minutes = override.get("minutes")
            if override.get("method") not in ("email", "popup"):
                return "Invalid reminder method."
            if not isinstance(minutes, int) or not 0 <= minutes <= 40320:
                return "Invalid reminder minutes."
    props = body.get("extendedProperties", {}) or {}
    for scope in props.values():
        for key, value in (scope or {}).items():
            if len(key) > 44 or not isinstance(value, str) or len(value) > 1024:
                return "Invalid extended property."
    return None


def _normalise_time(when: dict[str, Any]) -> dict[str, Any]:
    """As Google answers: a date as given; a dateTime with its offset, the timeZone kept."""
    kind, moment = _parse_when(when)  # type: ignore[misc]
    if kind == "date":
        return {"date": moment.isoformat()}
    out = {"dateTime": moment.isoformat(timespec="seconds")}  # type: ignore[call-arg]
    if when.get("timeZone"):
        out["dateTime"] = moment.astimezone(ZoneInfo(when["timeZone"])).isoformat(  # type: ignore[union-attr]
            timespec="seconds")
        out["timeZone"] = when["timeZone"]
    if out["dateTime"].endswith("+00:00"):
        out["dateTime"] = out["dateTime"][:-6] + "Z"
    return out


# ==================================================================== HTTP
class _Handler(BaseHTTPRequestHandler):
    emu: GoogleEmu
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        emu = self.emu
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        api = parts.path.startswith(API + "/")
        with emu.lock:
            emu.requests.append(Seen(self.command, parts.path, query, api, headers, raw))
            fault = None
            if api:
                emu.api_number += 1
                fault = emu.faults.pop(emu.api_number, None)
        if fault == "drop":
            self._drop()
            return
        if api:
            status, payload, extra = self._api(parts.path, query, headers, raw, fault)
            if fault == "drop_after":
                self._drop()
                return
            if fault is not None and emu.retry_after is not None:
                extra = {**extra, "Retry-After": emu.retry_after}
            self._json(status, payload, extra)
        elif parts.path == "/o/oauth2/auth" and self.command == "GET":
            status, extra, text = emu.oauth_auth({k: v[-1] for k, v in query.items()})
            self._send(status, text, {"Content-Type": "text/plain", **extra})
        elif parts.path == "/token" and self.command == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            basic = None
            auth = headers.get("authorization", "")
            if auth.startswith("Basic "):
                user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                basic = (unquote(user), unquote(secret))
            status, payload = emu.oauth_token(form, basic)
            self._json(status, payload, {"Cache-Control": "no-store"})
        elif parts.path == "/introspect" and self.command == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            self._json(200, emu.introspect(form.get("token", "")), {})
        else:
            self._json(404, {"error": {"code": 404, "message": "Not Found"}}, {})

    def _api(self, path: str, query: dict[str, list[str]], headers: dict[str, str], raw: bytes,
             fault: str | None) -> tuple[int, Any, dict[str, str]]:
        emu = self.emu
        if fault in ("500", "503"):
            return _error(int(fault), "Backend Error", "backendError")
        if fault == "429":
            return _error(429, "Rate Limit Exceeded", "rateLimitExceeded")
        if fault == "403rate":
            return _error(403, "Rate Limit Exceeded", "rateLimitExceeded")
        if fault in ("412", "409", "410"):
            return _error(int(fault), "Injected", "injected")
        auth = headers.get("authorization", "")
        if emu.require_auth:
            token = auth[7:] if auth.startswith("Bearer ") else ""
            with emu.lock:
                expiry = emu.access_tokens.get(token)
            if expiry is None or expiry < time.time():
                status, payload, extra = _error(401, "Request had invalid authentication "
                                                "credentials.", "authError")
                return status, payload, {"WWW-Authenticate": 'Bearer realm="https://accounts.'
                                         'google.com/"', **extra}
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "Parse Error", "parseError")
        return emu.api(self.command, path, query, headers, body)

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _json(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json; charset=UTF-8", **extra}
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        # headers and body in one write: two small writes meet Nagle's algorithm and the
        # client's delayed ACK (40 ms per answer), which Google's servers do not suffer from
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


@contextlib.contextmanager
def running(**options: Any) -> Iterator[GoogleEmu]:
    emu = GoogleEmu(**options).start()
    try:
        yield emu
    finally:
        emu.stop()


def event_path(calendar_id: str, event_id: str | None = None) -> str:
    path = f"{API}/calendars/{quote(calendar_id, safe='')}/events"
    return path + (f"/{event_id}" if event_id else "")
