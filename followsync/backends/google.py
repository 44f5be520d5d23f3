"""A Google calendar as a target, through the Calendar API v3 over plain keep-alive HTTP.

Why not google-api-python-client: importing it costs more than a whole no-op sync to a CalDAV
server (see bench/google_noop.py); the few calls needed are plain JSON.

- Identity: each item's event id is derived from its UID (base32hex of a SHA-256), so an
  insert is safe to retry (a second one answers 409). Google keeps a deleted event's id taken
  for ever: a re-created item gets a generation suffix (`…g1`, `…g2`).
- Ownership: `extendedProperties.private` holds followsync_uid, followsync_lead and
  followsync_rule; only events carrying followsync_lead and followsync_uid are ever changed.
- What an event cannot hold (CATEGORIES, the X-FOLLOWSYNC marks, alarms beyond Google's five)
  is kept in private properties too, so `get` gives back iCalendar text that compares equal
  to what was written — while SUMMARY, DESCRIPTION, DTSTART/DTEND and the reminders are read
  from the event itself, so an event moved or edited in Google reads as edited.
- Conditional writes: If-Match with the event's ETag (412 = Conflict).
- Listing: events.list with the sync token kept in the cursor; a no-op is one request. A void
  token (410) lists everything again.
- HTTP: `apisession.ApiSession` (davhttp's session and retry loop): 403 rateLimitExceeded /
  userRateLimitExceeded, 429 and 5xx are retried with Google's exponential back-off; a 401
  refreshes the access token once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from followsync.backends import eventtext
from followsync.backends.apisession import (
    GOOGLE_BACKOFF,
    QUICK_BACKOFF,
    ApiSession,
    error_message,
    json_object,
    reason,
)
from followsync.backends.base import Listing, relocated
from followsync.backends.davhttp import Response
from followsync.errors import Conflict, TargetError
from followsync.googleauth import GoogleSettings, Tokens
from followsync.marks import uid_of
from followsync.model import Remote

log = logging.getLogger("followsync")
PAGE = 2500  # events per list page (Google's maximum)
MAX_REMINDERS = 5
MAX_MINUTES = 40320  # four weeks: Google's limit for a reminder
CHUNK = 1000  # characters per private property value (Google allows 1024)
GENERATIONS = 50
OWN = ("followsync_uid", "followsync_lead")


# ============================================================================ HTTP
def _json(response: Response) -> dict[str, Any]:
    return json_object(response, "Google")


# ============================================================================ the target
@dataclass(frozen=True)
class Cursor:
    calendar: str
    token: str | None

    def dump(self) -> str:
        return json.dumps({"calendar": self.calendar, "token": self.token})

    @staticmethod
    def load(text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return Cursor(str(data["calendar"]), data.get("token"))
        except (ValueError, KeyError, TypeError):
            return None


class _Missing(TargetError):
    """The calendar is gone (404)."""


class GoogleBackend:
    """One Google calendar; events only."""

    immediate = True  # every write reaches Google at once; the engine commits state often
    cursor_only = False  # `known` tells our events from the sync token's changes

    def __init__(self, settings: GoogleSettings, readonly: bool = False,
                 tokens: Tokens | None = None, session: ApiSession | None = None) -> None:
        self.settings = settings
        self.label = settings.name
        self.readonly = readonly  # for `plan`: no calendar is created
        self.tokens = tokens or Tokens(settings, readonly=readonly)
        # a readonly look (`plan`, the sync's "nothing changed?" check before the sync
        # proper) backs off briefly: it is not worth minutes, and the sync after it waits
        # as long as Google asks
        self.session = session or ApiSession(
            settings.api_base, self.tokens, timeout=settings.timeout, label=settings.name,
            backoff=QUICK_BACKOFF if readonly else GOOGLE_BACKOFF)
        self.cursor: Cursor | None = None
        self._events: dict[str, dict[str, Any]] = {}  # id → the event as last seen
        self._taken: set[str] = set()  # UIDs seen in the calendar this session
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ calendars
    def calendars(self) -> list[dict[str, Any]]:
        """Every calendar of the account: name, id, access role."""
        found = []
        page: str | None = None
        while True:
            query = {"maxResults": "250", **({"pageToken": page} if page else {})}
            response = self.session.call("GET", "users/me/calendarList?" + urlencode(query))
            _expect(response, "list the calendars")
            data = _json(response)
            for entry in data.get("items", []):
                found.append({"name": entry.get("summaryOverride") or entry.get("summary", ""),
                              "id": entry.get("id", ""), "primary": bool(entry.get("primary")),
                              "access": entry.get("accessRole", ""),
                              "components": ["VEVENT"]})
            page = data.get("nextPageToken")
            if not page:
                return found

    def _find_calendar(self, create: bool) -> str | None:
        name = self.settings.calendar
        if name == "primary":
            return "primary"
        for entry in self.calendars():
            if entry["name"] == name and entry["access"] in ("owner", "writer"):
                return str(entry["id"])
        if not create:
            return None
        log.warning("%s: creating Google calendar %r", self.label, name)
        response = self.session.call("POST", "calendars",
                                     {"summary": name, "timeZone": self.settings.zone})
        _expect(response, f"create the calendar {name!r}")
        return str(_json(response)["id"])

    # ------------------------------------------------------------------ reading
    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        remembered = Cursor.load(cursor)
        if remembered is None:
            found = self._find_calendar(create=not self.readonly)
            if found is None:
                return Listing({}, fresh=True, note=f"calendar {self.settings.calendar!r} does "
                               "not exist yet; a sync creates it")
            remembered = Cursor(found, None)
        self.cursor = remembered
        try:
            if remembered.token:
                changes = self._changes(remembered, known)
                if changes is not None:
                    return changes
                log.info("%s: Google voided the sync token; listing everything", self.label)
            return self._full(remembered.calendar)
        except _Missing:
            if cursor is None or remembered.calendar == "primary":
                raise
            return self._relocate()

    def _relocate(self) -> Listing:
        """The calendar synced last time was deleted in Google: find it again by name or
        make it again; every item is then written anew."""
        return relocated(f"calendar {self.settings.calendar!r}", "Google",
                         self._find_calendar(create=False), self.readonly, self._made,
                         self._full)

    def _made(self) -> str:
        made = self._find_calendar(create=True)
        assert made is not None  # (create=True finds or makes it)
        return made

    def _events_path(self, calendar: str, event_id: str | None = None) -> str:
        path = f"calendars/{quote(calendar, safe='')}/events"
        return path + (f"/{quote(event_id, safe='')}" if event_id else "")

    def _list(self, calendar: str, query: dict[str, str]
              ) -> tuple[list[dict[str, Any]], str | None] | None:
        """Every page of events.list; None when the sync token is void (410)."""
        events: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            sent = {"maxResults": str(PAGE), **query, **({"pageToken": page} if page else {})}
            response = self.session.call("GET", self._events_path(calendar) + "?" +
                                         urlencode(sent))
            if response.status == 410 and "syncToken" in query:
                return None
            if response.status == 404:
                raise _Missing(f"target {self.label}: the calendar {calendar} is not there "
                               "(HTTP 404)", "use `followsync calendars` to list them")
            _expect(response, "list the events")
            data = _json(response)
            events += [e for e in data.get("items", []) if isinstance(e, dict) and e.get("id")]
            page = data.get("nextPageToken")
            if not page:
                return events, data.get("nextSyncToken")

    def _full(self, calendar: str) -> Listing:
        listed = self._list(calendar, {})
        assert listed is not None
        events, token = listed
        items: dict[str, Remote] = {}
        foreign = 0
        for event in events:
            self._events[event["id"]] = event
            uid = _owner_uid(event)
            if uid is not None:
                items[uid] = Remote(event["id"], event.get("etag", ""))
                self._taken.add(uid)
            else:
                foreign += 1
                if event.get("iCalUID"):
                    self._taken.add(str(event["iCalUID"]))
        self.cursor = Cursor(calendar, token)
        return Listing(items, cursor=self.cursor.dump(), foreign=foreign)

    def _changes(self, found: Cursor, known: Mapping[str, Remote]) -> Listing | None:
        listed = self._list(found.calendar, {"syncToken": found.token or ""})
        if listed is None:
            return None
        events, token = listed
        items = dict(known)
        self._taken.update(known)
        by_id = {remote.href: uid for uid, remote in known.items()}
        changed = False
        foreign = 0
        for event in events:
            event_id = event["id"]
            if event.get("status") == "cancelled":
                self._events.pop(event_id, None)
                uid = by_id.get(event_id)
                if uid is not None and items.get(uid, Remote("", "")).href == event_id:
                    del items[uid]
                    changed = True
                continue
            self._events[event_id] = event
            uid = _owner_uid(event)
            if uid is None:
                foreign += 1
                if event.get("iCalUID"):
                    self._taken.add(str(event["iCalUID"]))
                continue
            remote = Remote(event_id, event.get("etag", ""))
            self._taken.add(uid)
            if items.get(uid) != remote:
                items[uid] = remote
                changed = True
        self.cursor = Cursor(found.calendar, token or found.token)
        return Listing(items, cursor=self.cursor.dump(), unchanged=not changed,
                       foreign=foreign)

    def supports(self, component: str) -> bool:
        return component == "VEVENT"

    def get(self, remote: Remote) -> str:
        event = self._events.get(remote.href)
        if event is None or event.get("etag") != remote.etag:
            event = self._fetch(remote.href)
        if event is None or event.get("status") == "cancelled":
            raise Conflict(remote.href)
        return from_event(event)

    def _fetch(self, event_id: str) -> dict[str, Any] | None:
        assert self.cursor is not None
        response = self.session.call("GET", self._events_path(self.cursor.calendar, event_id))
        if response.status in (404, 410):
            return None
        _expect(response, "read an event")
        event = _json(response)
        self._events[event_id] = event
        return event

    def find(self, uid: str) -> Remote | None:
        assert self.cursor is not None
        for query in ({"privateExtendedProperty": f"followsync_uid={uid}"}, {"iCalUID": uid}):
            listed = self._list(self.cursor.calendar, query)
            assert listed is not None
            for event in listed[0]:
                if event.get("status") == "cancelled":
                    continue
                if "iCalUID" in query or _owner_uid(event) == uid:
                    self._events[event["id"]] = event
                    return Remote(event["id"], event.get("etag", ""))
        return None

    # ------------------------------------------------------------------ writing
    def create(self, uid: str, text: str) -> Remote:
        assert self.cursor is not None
        if uid in self._taken:
            raise Conflict(uid)
        body = self._body(uid, text)
        for generation in range(GENERATIONS):
            event_id = event_id_for(uid, generation)
            response = self.session.call("POST", self._events_path(self.cursor.calendar),
                                         {**body, "id": event_id})
            if response.status == 409:
                there = self._fetch(event_id)
                if there is not None and there.get("status") == "cancelled":
                    continue  # a deleted event keeps its id: the next generation
                raise Conflict(uid)
            _expect(response, "create an event")
            return self._wrote(uid, _json(response))
        raise TargetError(f"target {self.label}: {uid} was deleted and re-created "
                          f"{GENERATIONS} times; no event id left")

    def update(self, remote: Remote, text: str) -> Remote:
        assert self.cursor is not None
        uid = uid_of(text) or remote.href
        response = self.session.call("PUT", self._events_path(self.cursor.calendar, remote.href),
                                     self._body(uid, text), {"If-Match": remote.etag})
        if response.status in (404, 409, 410, 412):
            raise Conflict(remote.href)
        _expect(response, "update an event")
        event = _json(response)
        if event.get("status") == "cancelled":
            raise Conflict(remote.href)
        return self._wrote(uid, event)

    def delete(self, remote: Remote) -> None:
        assert self.cursor is not None
        response = self.session.call("DELETE",
                                     self._events_path(self.cursor.calendar, remote.href),
                                     None, {"If-Match": remote.etag})
        if response.status == 412:
            raise Conflict(remote.href)
        if response.status not in (404, 410):  # already gone: what we wanted
            _expect(response, "delete an event")
        gone = self._events.pop(remote.href, None)
        uid = _owner_uid(gone) if gone else None
        if uid:
            self._taken.discard(uid)

    def _body(self, uid: str, text: str) -> dict[str, Any]:
        body, dropped = to_event(uid, text, self.settings.zone)
        if dropped and uid not in self._warned:
            self._warned.add(uid)
            log.warning("%s: %s has more alarms than Google Calendar's five reminders; the "
                        "first five are set", self.label, uid)
        return body

    def _wrote(self, uid: str, event: dict[str, Any]) -> Remote:
        self._events[event["id"]] = event
        self._taken.add(uid)
        return Remote(event["id"], event.get("etag", ""))

    def commit(self) -> str | None:
        return self.cursor.dump() if self.cursor else None

    def close(self) -> None:
        self.session.close()


def _expect(response: Response, what: str) -> None:
    if 200 <= response.status < 300:
        return
    detail = error_message(response) or reason(response) or "no reason given"
    if response.status == 403:
        raise TargetError(f"Google refused to {what} (HTTP 403: {detail})",
                          "check that the Calendar API is enabled in your Cloud project and "
                          "that the calendar is yours")
    raise TargetError(f"Google could not {what}: HTTP {response.status} ({detail})")


# ============================================================================ conversion
def event_id_for(uid: str, generation: int = 0) -> str:
    """A valid event id (base32hex, 32 characters) from the UID; `gN` after a deletion."""
    base = base64.b32hexencode(hashlib.sha256(uid.encode()).digest()[:20]).decode().lower()
    return base if generation == 0 else f"{base}g{generation}"


def _owner_uid(event: dict[str, Any]) -> str | None:
    private = (event.get("extendedProperties") or {}).get("private") or {}
    if all(private.get(key) for key in OWN):
        return str(private["followsync_uid"])
    return None


def to_event(uid: str, text: str, zone: str = "UTC") -> tuple[dict[str, Any], bool]:
    """An event resource for iCalendar text; True when alarms beyond five were not set."""
    parts = eventtext.parse(uid, text, "Google Calendar")
    private: dict[str, str] = {"followsync_uid": uid}
    if parts.lead is not None:
        private["followsync_lead"] = parts.lead
    if parts.rule is not None:
        private["followsync_rule"] = parts.rule
    if parts.sequence is not None:
        private["followsync_seq"] = str(parts.sequence)
    body: dict[str, Any] = {"summary": parts.summary}
    if parts.description is not None:
        body["description"] = parts.description
    start = parts.start
    body["start"], utc = _when(start, zone)
    if utc:
        private["followsync_utc"] = "1"
    if parts.end_prop is not None:
        body["end"], _ = _when(parts.end_prop, zone)
    else:
        body["end"], _ = _when_value(parts.end, start, zone)
    if parts.transp is not None:
        private["followsync_transp"] = "1"
        body["transparency"] = "transparent" if parts.transp == "TRANSPARENT" else "opaque"
    overrides: list[dict[str, Any]] = []
    extra: list[str] = []
    for alarm in parts.alarms:
        minutes = eventtext.minutes_before(alarm, start.dt, MAX_MINUTES)
        if minutes is None or len(overrides) == MAX_REMINDERS:
            extra.append(alarm.to_ical().decode())
            continue
        method = "email" if str(alarm.get("ACTION", "")).upper() == "EMAIL" else "popup"
        overrides.append({"method": method, "minutes": minutes})
    _chunks(private, "followsync_ical", "\n".join(parts.rest))
    _chunks(private, "followsync_alarms", "".join(extra))
    body["reminders"] = {"useDefault": False, "overrides": overrides}
    body["extendedProperties"] = {"private": private}
    return body, bool(extra)


def _chunks(private: dict[str, str], key: str, text: str) -> None:
    for n, at in enumerate(range(0, len(text), CHUNK)):
        private[f"{key}{n}"] = text[at:at + CHUNK]


def _unchunk(private: Mapping[str, str], key: str) -> str:
    parts = []
    n = 0
    while f"{key}{n}" in private:
        parts.append(private[f"{key}{n}"])
        n += 1
    return "".join(parts)


def _when(prop: Any, zone: str) -> tuple[dict[str, str], bool]:
    return _when_value(prop.dt, prop, zone)


def _when_value(value: Any, prop: Any, zone: str) -> tuple[dict[str, str], bool]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}, False
    if value.tzinfo is None:
        return {"dateTime": value.isoformat(timespec="seconds"), "timeZone": zone}, False
    tzid = getattr(prop, "params", {}).get("TZID")  # none: a UTC time ("Z")
    if tzid:
        try:
            ZoneInfo(str(tzid))
            return {"dateTime": value.replace(tzinfo=None).isoformat(timespec="seconds"),
                    "timeZone": str(tzid)}, False
        except (KeyError, ValueError):
            pass
    moment = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"dateTime": moment, "timeZone": "UTC"}, True


def from_event(event: dict[str, Any]) -> str:
    """The iCalendar text of an event: what Google shows, plus what only followsync keeps."""
    private = (event.get("extendedProperties") or {}).get("private") or {}
    uid = _owner_uid(event) or str(event.get("iCalUID") or event.get("id"))
    utc = private.get("followsync_utc") == "1"
    lines = eventtext.head("google", uid, eventtext.stamp(event.get("updated")),
                           private.get("followsync_seq", event.get("sequence", 0)))
    lines.append("SUMMARY:" + eventtext.text_value(event.get("summary", "")))
    if event.get("description") is not None:
        lines.append("DESCRIPTION:" + eventtext.text_value(event["description"]))
    lines.append("DTSTART" + _ical_time(event.get("start") or {}, utc))
    lines.append("DTEND" + _ical_time(event.get("end") or {}, utc))
    transparency = event.get("transparency", "opaque")
    if private.get("followsync_transp") == "1" or transparency == "transparent":
        lines.append(f"TRANSP:{'TRANSPARENT' if transparency == 'transparent' else 'OPAQUE'}")
    rest = _unchunk(private, "followsync_ical")
    if rest:
        lines += rest.split("\n")
    reminders = event.get("reminders") or {}
    for override in (reminders.get("overrides") or []) if not reminders.get("useDefault") \
            else []:
        action = "EMAIL" if override.get("method") == "email" else "DISPLAY"
        lines += eventtext.alarm_lines(action, event.get("summary", ""),
                                       int(override.get("minutes", 0)))
    return eventtext.finish(lines, _unchunk(private, "followsync_alarms"))


def _ical_time(when: dict[str, Any], utc: bool) -> str:
    if when.get("date"):
        return f";VALUE=DATE:{when['date'].replace('-', '')}"
    moment = datetime.fromisoformat(str(when.get("dateTime", "")).replace("Z", "+00:00"))
    zone = when.get("timeZone")
    if utc or not zone:
        return ":" + moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        local = moment.astimezone(ZoneInfo(zone)) if moment.tzinfo else moment
    except (KeyError, ValueError):
        return ":" + moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f";TZID={zone}:{local.strftime('%Y%m%dT%H%M%S')}"
