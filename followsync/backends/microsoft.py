"""An Outlook calendar (Microsoft 365, Outlook.com) as a target, through Microsoft Graph v1.0
over plain keep-alive HTTP (`apisession`; no msal, requests or msgraph-sdk: a no-op sync
imports none of them).

- Calendar: found by name in GET /me/calendars (every page), `default` is GET /me/calendar;
  made with POST /me/calendars when missing (never by a readonly backend: `plan`, the fast
  path); 409 ErrorFolderExists (a create whose answer was lost, another client) lists again
  and adopts it. A calendar deleted in Outlook is found again or made again, and every item is
  written anew (`Listing.reset`).
- Identity and ownership: Graph chooses event ids, so the state's rows are the id map
  (Remote.href = the Graph id, Remote.etag = @odata.etag). Each event of ours carries two
  hidden single-value extended properties under followsync's GUID: `followsync` = the UID
  (every UID starts "followsync-"; the mark is searchable, so a lost state is adopted with no
  duplicates) and `followsync-data` = JSON of what Outlook cannot hold (lead, rule, sequence,
  the other iCalendar properties, every alarm's text, the original TZID). Only events whose
  mark is a followsync UID and whose data names a lead are ours; nothing else is ever
  changed. `get` gives back text equal (`render.normalise`) to what was written, while the
  subject, body, start, end, reminder and free/busy are read from the event itself: an event
  moved or edited in Outlook reads as edited.
- Times: sent in UTC ("timeZone": "UTC"), so a start is exact across every DST change and
  Graph never refuses a zone (it takes Windows names and only some IANA ones); the item's
  TZID is kept in the data and the start read back in it. Outlook shows the event at the
  right local time; its form names UTC as the event's zone. All-day items are isAllDay with
  midnight-to-midnight dates, read back as DATE values.
- Reminders: Outlook keeps one per event: the earliest alarm (the most minutes before the
  start) sets reminderMinutesBeforeStart (isReminderOn false without alarms); the others stay
  in the data (so the text reads back whole) and are named in one warning per sync. A
  reminder changed in Outlook reads back as that alarm changed.
- Listing: the cursor is JSON {calendar id, deltaLink, window, ids we deleted}. A full listing
  is a calendarView/delta round over the window (every page, to the deltaLink; it counts
  others' events) plus a query of the events whose mark starts with "followsync-" (every
  page, $expand of both properties), which finds ours in and outside the window. The
  incremental listing GETs the deltaLink: a known id with a new ETag is changed; an
  `@removed` known id is read (404: deleted in Outlook; still there: moved out of the window,
  kept with its ETag); an unknown id is someone else's unless it carries the `followsync`
  category (set on every event of ours when it is created: delta pages hold no extended
  properties) and its mark says ours (a few are read one by one, more by one marks query),
  so an event of ours restored in Outlook is seen, and a meeting changed in a shared
  calendar costs nothing. A no-op sync is that one request. 410 / SyncStateNotFound lists in full again.
- The window: from the 1st of January of last year to the 1st of January five years on,
  from the sync's day (`today`, which tests set with --now). Follow-ups are never further
  back (overdue ones move to today) and seldom further ahead. It slides on the 1st of
  January: a new delta round, matched by marks, so nothing is duplicated. Events of ours
  outside the window are found by the marks query of every full listing; between full
  listings, Graph reports an event changed outside the window as removed, which is read as
  above, so a move or deletion made in Outlook is seen there too. Not seen between full
  listings: others' events outside the window (never needed).
- Writes: POST /me/calendars/{id}/events (201) with a transactionId (a digest of the UID and
  the text, which holds the sync's DTSTAMP: the same write retried carries the same id, a
  later re-creation another), sent once: a lost answer is followed by a look for the mark
  before anything is sent again (the re-read contract: Conflict, then `find`). PATCH and
  DELETE /me/events/{id} carry If-Match; 412 (or 404) is Conflict.
- HTTP: one keep-alive connection, one request at a time (never more than Outlook's four
  per mailbox); 429, 503 and 5xx are retried as Retry-After says, else with exponential
  back-off (`apisession.MICROSOFT_BACKOFF`); a 401 refreshes the access token once.
- `$batch` is not used. It would only serve a first upload (a no-op is one request, a
  usual sync a few); Outlook runs at most four of a batch's requests at once and counts
  each against the mailbox's limits; a batch answers 200 while its parts fail one by one
  (412, 429: each to be retried on its own). Over one keep-alive connection a create
  costs one round trip; the emulation cannot say what Microsoft's latency makes of that
  (bench/microsoft_noop.py measures a first upload on this machine only).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from followsync.backends.apisession import (
    MICROSOFT_BACKOFF,
    QUICK_BACKOFF,
    ApiSession,
    Bearer,
    Unanswered,
    error_message,
    json_object,
    microsoft_retryable,
    reason,
)
from followsync.backends.base import Listing, relocated
from followsync.backends.davhttp import Response
from followsync.errors import Conflict, TargetError
from followsync.marks import uid_of
from followsync.model import Remote
from followsync.msauth import MicrosoftSettings

if TYPE_CHECKING:
    from followsync.backends.eventtext import Parts

log = logging.getLogger("followsync")
GUID = "{6f1b3c2e-8d4a-4e57-9b1f-2c7a5e0d9f43}"  # followsync's property set (never change)
MARK = f"String {GUID} Name followsync"
DATA = f"String {GUID} Name followsync-data"
PREFIX = "followsync-"  # every UID of ours starts so (render.uid_for)
PAGE = 200  # events per page asked for (Prefer: odata.maxpagesize, $top)
FEW = 4  # unknown ids read one by one; more: one marks query
CATEGORY = "followsync"  # Outlook's category on every event of ours (README)
MAX_PAGES = 5000  # a listing longer than this (a million events) is a server going round
MAX_MINUTES = 40320  # four weeks: a reminder further ahead stays an alarm in the data
READ = {"Prefer": 'outlook.timezone="UTC", outlook.body-content-type="text"'}
EXPAND = f"singleValueExtendedProperties($filter=id eq '{MARK}' or id eq '{DATA}')"
DEFAULT = "default"


# ============================================================================ HTTP
def _json(response: Response) -> dict[str, Any]:
    return json_object(response, "Microsoft")


def _entries(data: Mapping[str, Any]) -> list[Any]:
    value = data.get("value")
    if value is None:
        return []
    if not isinstance(value, list):
        raise TargetError("Microsoft's answer holds no list of entries")
    return value


def _expect(response: Response, what: str) -> None:
    if 200 <= response.status < 300:
        return
    detail = ": ".join(x for x in (reason(response), error_message(response)) if x) or \
        "no reason given"
    if response.status == 403:
        raise TargetError(f"Microsoft refused to {what} (HTTP 403: {detail})",
                          "check that the calendar is yours and that the sign-in granted "
                          "Calendars.ReadWrite")
    raise TargetError(f"Microsoft could not {what}: HTTP {response.status} ({detail})")


def _id_of(response: Response) -> str:
    """The id Graph's answer names."""
    found = _json(response).get("id")
    if not isinstance(found, str) or not found:
        raise TargetError("Microsoft's answer names no calendar")
    return found


def _void(response: Response) -> bool:
    """A delta link Graph no longer knows (410 Gone, SyncStateNotFound)."""
    return response.status == 410 or reason(response) in ("SyncStateNotFound",
                                                           "syncStateNotFound")


# ============================================================================ the cursor
def window_of(today: date) -> tuple[date, date]:
    """The delta window for a sync on `today` (module docstring)."""
    return date(today.year - 1, 1, 1), date(today.year + 5, 1, 1)


@dataclass(frozen=True)
class Cursor:
    calendar: str
    delta: str | None = None  # the deltaLink of the last round
    window: str = ""  # "start/end" the round covers
    deleted: tuple[str, ...] = ()  # ids we deleted since: their @removed is no news

    def dump(self) -> str:
        return json.dumps({"calendar": self.calendar, "delta": self.delta,
                           "window": self.window, "deleted": list(self.deleted)})

    @staticmethod
    def load(text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            deleted = tuple(str(x) for x in data.get("deleted") or ())
            delta = data.get("delta")
            return Cursor(str(data["calendar"]), str(delta) if delta else None,
                          str(data.get("window") or ""), deleted)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class _Missing(TargetError):
    """The calendar is gone (404)."""


@dataclass
class _Seen:
    """What one listing learnt: events by id, and the UIDs of ours."""

    items: dict[str, Remote] = field(default_factory=dict)
    changed: bool = False
    foreign: int = 0


class MicrosoftBackend:
    """One Outlook calendar; events only."""

    immediate = True  # every write reaches Outlook at once; the engine commits state often
    cursor_only = False  # `known` tells our events from the delta's changes

    def __init__(self, settings: MicrosoftSettings, readonly: bool = False,
                 tokens: Bearer | None = None, session: ApiSession | None = None,
                 today: date | None = None) -> None:
        self.settings = settings
        self.label = settings.name
        self.readonly = readonly  # `plan` and the fast path: no calendar is created
        if tokens is None:
            from followsync.msauth import Tokens

            tokens = Tokens(settings, "graph", readonly)
        self.tokens = tokens
        self.session = session or ApiSession(
            settings.graph_base, tokens, timeout=settings.timeout, label=settings.name,
            backoff=QUICK_BACKOFF if readonly else MICROSOFT_BACKOFF,
            verify=settings.verify, service="Microsoft", retryable=microsoft_retryable)
        self.today = today or date.today()
        self.cursor: Cursor | None = None
        self._events: dict[str, dict[str, Any]] = {}  # id → the event as last read whole
        self._taken: set[str] = set()  # UIDs marked on events of this calendar
        self._deleted: list[str] = []  # ids deleted this session (for the next cursor)
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ calendars
    def calendars(self) -> list[dict[str, Any]]:
        """Every calendar of the mailbox: name, id, whether it may be written."""
        found: list[dict[str, Any]] = []
        for entry in self._pages("me/calendars?" + urlencode(
                {"$select": "id,name,canEdit,isDefaultCalendar"}), "list the calendars"):
            found.append({"name": str(entry.get("name") or ""), "id": str(entry.get("id")),
                          "access": "owner" if entry.get("canEdit") else "reader",
                          "default": bool(entry.get("isDefaultCalendar")),
                          "components": ["VEVENT"]})
        return found

    def _find_calendar(self, create: bool) -> str | None:
        name = self.settings.calendar or DEFAULT
        if name == DEFAULT:
            response = self.session.call("GET", "me/calendar?$select=id,name")
            _expect(response, "read the default calendar")
            return _id_of(response)
        found = [e for e in self.calendars() if e["access"] == "owner"]
        for entry in sorted(found, key=lambda e: e["name"] != name):  # the exact name first
            if str(entry["name"]).casefold() == name.casefold():  # (Outlook refuses a second
                return str(entry["id"])  # name differing only in case)
        if not create:
            return None
        log.warning("%s: creating Outlook calendar %r", self.label, name)
        response = self.session.call("POST", "me/calendars", {"name": name})
        if response.status == 409:  # ErrorFolderExists: made meanwhile, or our lost answer
            return self._find_calendar(create=False) or self._refuse_existing(name)
        _expect(response, f"create the calendar {name!r}")
        return _id_of(response)

    def _refuse_existing(self, name: str) -> str:
        raise TargetError(f"Microsoft says a calendar {name!r} exists, but it is not one "
                          "this account may write", "use `followsync calendars` to list them")

    def _pages(self, path: str, what: str, headers: Mapping[str, str] | None = None
               ) -> Iterable[dict[str, Any]]:
        """Every entry of a collection, following @odata.nextLink."""
        url: str | None = path
        for _page in range(MAX_PAGES):
            if url is None:
                return
            response = self.session.call("GET", url, None, headers)
            if response.status == 404:
                raise _Missing(f"target {self.label}: the calendar is not there (HTTP 404)",
                               "use `followsync calendars` to list them")
            _expect(response, what)
            data = _json(response)
            yield from (e for e in _entries(data) if isinstance(e, dict))
            following = data.get("@odata.nextLink")
            url = str(following) if following else None
        raise TargetError(f"Microsoft's list of {what.removeprefix('list the ')} does not end")

    # ------------------------------------------------------------------ listing
    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        start, end = window_of(self.today)
        window = f"{start.isoformat()}/{end.isoformat()}"
        remembered = Cursor.load(cursor)
        if remembered is None:
            found = self._find_calendar(create=not self.readonly)
            if found is None:
                return Listing({}, fresh=True, note=f"calendar {self.settings.calendar!r} does "
                               "not exist yet; a sync creates it")
            remembered = Cursor(found)
        self.cursor = remembered
        try:
            if remembered.delta and remembered.window == window:
                changes = self._changes(remembered, known)
                if changes is not None:
                    return changes
                log.info("%s: Microsoft voided the delta link; listing everything", self.label)
            elif remembered.delta:
                log.info("%s: the delta window moved to %s; listing everything", self.label,
                         window)
            return self._full(remembered.calendar, window, known)
        except _Missing:
            if cursor is None or (self.settings.calendar or DEFAULT) == DEFAULT:
                raise
            return self._relocate(window, remembered.calendar, known)

    def _relocate(self, window: str, gone: str, known: Mapping[str, Remote]) -> Listing:
        """The calendar synced last time was deleted in Outlook: find it again by name or
        make it again; every item is then written anew."""
        found = self._find_calendar(create=False)
        if found is not None and found == gone:  # a passing 404: the same calendar is there
            return self._full(found, window, known)
        return relocated(f"calendar {self.settings.calendar!r}", "Outlook", found,
                         self.readonly, self._made, lambda calendar: self._full(calendar,
                                                                                window))

    def _made(self) -> str:
        made = self._find_calendar(create=True)
        assert made is not None  # (create=True finds or makes it)
        return made

    def _delta(self, url: str) -> tuple[list[dict[str, Any]], str] | None:
        """Every page of a delta round from `url`; None when the link is void (410)."""
        entries: list[dict[str, Any]] = []
        headers = {"Prefer": f"odata.maxpagesize={PAGE}, " + READ["Prefer"]}
        stored = url
        for _page in range(MAX_PAGES):
            response = self.session.call("GET", url, None, headers)
            if _void(response) or (response.status == 400 and url == stored and
                                   "$deltatoken=" in url.lower()):
                return None  # (a 400 on a kept link: a token Graph no longer reads)
            if response.status == 404:
                raise _Missing(f"target {self.label}: the calendar is not there (HTTP 404)",
                               "use `followsync calendars` to list them")
            _expect(response, "list the events")
            data = _json(response)
            entries += [e for e in _entries(data) if isinstance(e, dict) and e.get("id")]
            following, done = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
            if done:
                return entries, str(done)
            if not following:
                raise TargetError("Microsoft's delta answer has neither a next nor a delta link")
            url = str(following)
        raise TargetError("Microsoft's list of changes does not end")

    def _first_delta(self, calendar: str, window: str) -> str:
        start, _, end = window.partition("/")
        query = urlencode({"startDateTime": f"{start}T00:00:00Z",
                           "endDateTime": f"{end}T00:00:00Z"})
        return f"{self._calendar_path(calendar)}/calendarView/delta?{query}"

    def _calendar_path(self, calendar: str) -> str:
        return f"me/calendars/{quote(calendar, safe='')}"

    def _marked(self, calendar: str, test: str) -> list[dict[str, Any]]:
        """Every event of the calendar whose mark passes `test` (an OData condition on
        `ep/value`), with both properties."""
        query = urlencode({
            "$filter": f"singleValueExtendedProperties/any(ep: ep/id eq '{MARK}' and {test})",
            "$expand": EXPAND, "$top": str(PAGE)}, quote_via=quote)
        return list(self._pages(f"{self._calendar_path(calendar)}/events?{query}",
                                "list the events of followsync", READ))

    def _ours(self, calendar: str) -> list[dict[str, Any]]:
        return self._marked(calendar, f"startswith(ep/value,'{PREFIX}')")

    def _full(self, calendar: str, window: str,
              known: Mapping[str, Remote] | None = None) -> Listing:
        delta = self._delta(self._first_delta(calendar, window))
        if delta is None:
            raise TargetError("Microsoft refused a new delta round (HTTP 410)",
                              "the next sync retries")
        entries, link = delta
        seen = _Seen()
        prefer = {remote.href for remote in (known or {}).values()}  # not a copy of one
        ids = self._take(self._ours(calendar), seen, prefer)
        seen.foreign = len({e["id"] for e in entries if "@removed" not in e} - ids)
        self.cursor = Cursor(calendar, link, window)
        return Listing(seen.items, cursor=self.cursor.dump(), foreign=seen.foreign)

    def _take(self, events: Iterable[dict[str, Any]], seen: _Seen,
              prefer: set[str] | frozenset[str] = frozenset()) -> set[str]:
        """Record events read whole: ours go into `seen.items`; the ids of ours. Of two
        events with one mark (a copy made in Outlook), one in `prefer` is ours."""
        ids = set()
        for event in sorted(events, key=lambda e: (str(e.get("id")) not in prefer,
                                                   str(e.get("id")))):
            mark = _mark(event)
            if mark is None or not isinstance(event.get("id"), str):
                continue
            self._events[str(event["id"])] = event
            self._taken.add(mark)
            uid = _owner_uid(event)
            if uid is None or (uid in seen.items and seen.items[uid].href != event["id"]):
                continue  # marked without data, or a second event with our UID: not touched
            ids.add(str(event["id"]))
            remote = Remote(str(event["id"]), _etag_of(event))
            if seen.items.get(uid) != remote:
                seen.items[uid], seen.changed = remote, True
        return ids

    def _changes(self, found: Cursor, known: Mapping[str, Remote]) -> Listing | None:
        assert found.delta is not None
        delta = self._delta(found.delta)
        if delta is None:
            return None
        entries, link = delta
        latest = {str(e["id"]): e for e in entries}  # a replayed entry: the last one counts
        seen = _Seen(dict(known))
        self._taken.update(known)
        by_id = {remote.href: uid for uid, remote in known.items()}
        ours_removed: list[str] = []
        unknown: list[str] = []  # others' events, or ours restored or copied in Outlook
        others: list[str] = []  # events without the `followsync` category: not ours
        mine = set(found.deleted)
        for event_id, entry in latest.items():
            uid = by_id.get(event_id)
            if uid is None:  # (removed and unknown: nothing of ours to list)
                if event_id not in mine and "@removed" not in entry:
                    (unknown if _may_be_ours(entry) else others).append(event_id)
            elif "@removed" in entry or not _etag_of(entry):  # (partial: read its ETag)
                ours_removed.append(event_id)
            elif seen.items[uid].etag != _etag_of(entry):
                seen.items[uid] = Remote(event_id, _etag_of(entry))
                seen.changed = True
        for event_id in ours_removed:  # deleted in Outlook, moved out of the window, partial
            event = self._fetch(event_id)
            uid = by_id[event_id]
            if event is None or _owner_uid(event) != uid:
                del seen.items[uid]
                self._taken.discard(uid)  # gone: a create of it is no conflict
                seen.changed = True
            else:
                self._take([event], seen)
        adopted = self._take(self._look_at(found.calendar, unknown), seen)
        seen.foreign = len(others) + sum(1 for i in unknown if i not in adopted)
        self.cursor = Cursor(found.calendar, link, found.window)
        return Listing(seen.items, cursor=self.cursor.dump(), unchanged=not seen.changed,
                       foreign=seen.foreign)

    def _look_at(self, calendar: str, ids: list[str]) -> list[dict[str, Any]]:
        """The events of ours among ids the state does not know (others' events, or ours
        restored in Outlook): a few read one by one, more by one marks query."""
        if not ids:
            return []
        if len(ids) <= FEW:
            return [e for e in (self._fetch(i) for i in ids) if e is not None]
        wanted = set(ids)
        return [e for e in self._ours(calendar) if e.get("id") in wanted]

    def supports(self, component: str) -> bool:
        return component == "VEVENT"

    # ------------------------------------------------------------------ reading
    def get(self, remote: Remote) -> str:
        event = self._events.get(remote.href)
        if event is None or _etag_of(event) != remote.etag:
            event = self._fetch(remote.href)
        if event is None:
            raise Conflict(remote.href)
        try:
            return from_event(event, self.settings.zone)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError):
            raise TargetError(f"Microsoft's event {remote.href[:40]}… cannot be read") from None

    def _fetch(self, event_id: str) -> dict[str, Any] | None:
        response = self.session.call("GET", self._event_path(event_id) + "?" + urlencode(
            {"$expand": EXPAND}, quote_via=quote), None, READ)
        if response.status == 404 or (response.status == 400 and reason(response) ==
                                      "ErrorInvalidIdMalformed"):
            return None  # (a 410 is no answer about an event: an error, as any other)
        _expect(response, "read an event")
        event = _json(response)
        if not event.get("id"):
            return None
        self._events[str(event["id"])] = event
        return event

    def _event_path(self, event_id: str) -> str:
        return f"me/events/{quote(event_id, safe='')}"

    def find(self, uid: str) -> Remote | None:
        assert self.cursor is not None
        escaped = uid.replace("'", "''")
        for event in self._marked(self.cursor.calendar, f"ep/value eq '{escaped}'"):
            if _mark(event) == uid:  # (Graph compares values ignoring case)
                self._events[str(event["id"])] = event
                self._taken.add(uid)
                return Remote(str(event["id"]), _etag_of(event))
        return None

    # ------------------------------------------------------------------ writing
    def create(self, uid: str, text: str) -> Remote:
        assert self.cursor is not None
        if uid in self._taken:
            raise Conflict(uid)
        body = {**self._body(uid, text), "transactionId": transaction_id(uid, text)}
        path = f"{self._calendar_path(self.cursor.calendar)}/events"
        try:
            response = self.session.call("POST", path, body, READ, resend=False)
        except Unanswered:
            if self.find(uid) is not None:
                raise Conflict(uid) from None  # it landed: the engine re-reads it
            response = self.session.call("POST", path, body, READ)  # (same transactionId)
        if response.status in (409, 412):  # (Graph's 412s come without If-Match too)
            raise Conflict(uid)
        _expect(response, "create an event")
        return self._wrote(uid, _json(response), body)

    def update(self, remote: Remote, text: str) -> Remote:
        if not remote.etag:  # an If-Match must never be empty (an unchecked overwrite)
            raise Conflict(remote.href)
        uid = uid_of(text) or remote.href
        body = self._body(uid, text, warn=False)
        # the categories the user gave our event in Outlook (a colour) stay; unseen: untouched
        there = (self._events.get(remote.href) or {}).get("categories")
        if isinstance(there, list):
            body["categories"] = [CATEGORY] + [c for c in there if isinstance(c, str)
                                               and c.strip().lower() != CATEGORY]
        else:
            del body["categories"]
        response = self.session.call("PATCH", self._event_path(remote.href), body,
                                     {**READ, "If-Match": remote.etag})
        if response.status in (404, 409, 410, 412):
            raise Conflict(remote.href)
        _expect(response, "update an event")
        return self._wrote(uid, _json(response), body)

    def delete(self, remote: Remote) -> None:
        if not remote.etag:
            raise Conflict(remote.href)
        response = self.session.call("DELETE", self._event_path(remote.href), None,
                                     {"If-Match": remote.etag})
        if response.status == 412:
            raise Conflict(remote.href)
        if response.status not in (404, 410):  # already gone: what we wanted
            _expect(response, "delete an event")
        self._deleted.append(remote.href)
        gone = self._events.pop(remote.href, None)
        uid = _mark(gone) if gone else None
        if uid:
            self._taken.discard(uid)

    def _body(self, uid: str, text: str, warn: bool = True) -> dict[str, Any]:
        """The event for `text`; the alarms Outlook cannot keep are named once: when the
        event is made (not each day an overdue one is rewritten), once a sync."""
        body, unset = to_event(uid, text, self.settings.zone)
        fresh = [name for name in unset if name not in self._warned] if warn else []
        if fresh:
            self._warned.update(fresh)
            log.warning("%s: Outlook keeps one reminder per event: the earliest alarm is "
                        "set, not %s", self.label, ", ".join(fresh))
        return body

    def _wrote(self, uid: str, event: dict[str, Any], body: dict[str, Any]) -> Remote:
        if not event.get("id"):
            raise TargetError("Microsoft's answer to a write names no event")
        # the answer holds the event as stored; the properties are as sent
        event = {**event, "singleValueExtendedProperties":
                 body["singleValueExtendedProperties"]}
        if _readable(event):
            self._events[str(event["id"])] = event
        else:
            self._events.pop(str(event["id"]), None)
        self._taken.add(uid)
        return Remote(str(event["id"]), _etag_of(event))

    def commit(self) -> str | None:
        if self.cursor is None:
            return None
        if self._deleted:
            kept = tuple(dict.fromkeys(self.cursor.deleted + tuple(self._deleted)))[-500:]
            self.cursor = Cursor(self.cursor.calendar, self.cursor.delta, self.cursor.window,
                                 kept)
            self._deleted = []
        return self.cursor.dump()

    def close(self) -> None:
        self.session.close()


# ============================================================================ conversion
def _etag_of(event: Mapping[str, Any]) -> str:
    """An event's ETag: `@odata.etag`, else its changeKey (what the ETag is made of); "" when
    a partial entry has neither (then the event is read: an If-Match must never be empty)."""
    etag, key = event.get("@odata.etag"), event.get("changeKey")
    if isinstance(etag, str) and etag:
        return etag
    return f'W/"{key}"' if isinstance(key, str) and key else ""


def _may_be_ours(entry: Mapping[str, Any]) -> bool:
    """An unknown id in a delta worth reading: it carries the `followsync` category (every
    event of ours gets it when created, a copy or a restored one keeps it). Delta pages hold
    no extended properties, so without this every meeting changed in a shared calendar
    would cost a request."""
    categories = entry.get("categories")
    return isinstance(categories, list) and any(
        isinstance(c, str) and c.strip().lower() == CATEGORY for c in categories)


def transaction_id(uid: str, text: str) -> str:
    """The same write retried carries the same id; another write (a later DTSTAMP) not."""
    return "followsync-" + hashlib.sha256(f"{uid}\0{text}".encode()).hexdigest()[:40]


def _properties(event: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    props = event.get("singleValueExtendedProperties")
    for prop in props if isinstance(props, list) else []:
        if isinstance(prop, dict) and isinstance(prop.get("value"), str):
            found[str(prop.get("id", "")).lower()] = prop["value"]
    return found


def _mark(event: Mapping[str, Any] | None) -> str | None:
    """The event's UID mark when it is a followsync UID."""
    value = _properties(event or {}).get(MARK.lower())
    return value if value and value.startswith(PREFIX) else None


def _data(event: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(_properties(event).get(DATA.lower()) or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _owner_uid(event: Mapping[str, Any]) -> str | None:
    """The UID of an event of ours: a followsync mark and data naming a lead."""
    uid = _mark(event)
    return uid if uid is not None and isinstance(_data(event).get("lead"), str) else None


def _readable(event: Mapping[str, Any]) -> bool:
    """Whether a write's answer reads back as a GET would (text body, UTC times)."""
    body, start, end = (event.get(name) or {} for name in ("body", "start", "end"))
    if not all(isinstance(part, dict) for part in (body, start, end)):
        return False  # (a hostile answer: read again, where it is a target error)
    return str(body.get("contentType", "text")).lower() == "text" and all(
        str(when.get("timeZone", "UTC")) == "UTC" for when in (start, end))


def to_event(uid: str, text: str, zone: str = "UTC") -> tuple[dict[str, Any], list[str]]:
    """A Graph event for iCalendar text, and the alarms Outlook's one reminder leaves out
    (named, for the warning)."""
    from followsync.backends import eventtext  # (not on a no-op: only to convert)

    parts = eventtext.parse(uid, text, "Outlook")
    data: dict[str, Any] = {"v": 1, "lead": parts.lead, "rule": parts.rule,
                            "seq": parts.sequence, "desc": parts.description is not None,
                            "rest": parts.rest}
    start = parts.start.dt
    body: dict[str, Any] = {"subject": parts.summary,
                            "body": {"contentType": "text", "content": parts.description or ""},
                            "categories": [CATEGORY]}
    if isinstance(start, datetime):
        tzid = parts.start.params.get("TZID")
        data["tzid"] = str(tzid) if tzid and start.tzinfo is not None else None
        data["floating"] = start.tzinfo is None
        body["start"] = _utc(start, zone)
        body["end"] = _utc(parts.end, zone)
        body["isAllDay"] = False
    else:
        body["start"] = {"dateTime": f"{start.isoformat()}T00:00:00", "timeZone": "UTC"}
        end = parts.end.date() if isinstance(parts.end, datetime) else parts.end
        body["end"] = {"dateTime": f"{end.isoformat()}T00:00:00", "timeZone": "UTC"}
        body["isAllDay"] = True
    if parts.transp is not None:
        data["transp"] = True
        body["showAs"] = "free" if parts.transp == "TRANSPARENT" else "busy"
    body.update(_reminder(parts, start, data))
    unset = [_alarm_name(a, start) for n, a in enumerate(parts.alarms)
             if n != (data["reminder"] or [None])[0]]
    body["singleValueExtendedProperties"] = [
        {"id": MARK, "value": uid},
        {"id": DATA, "value": json.dumps(data, ensure_ascii=False, separators=(",", ":"))}]
    return body, unset


def _reminder(parts: Parts, start: date | datetime, data: dict[str, Any]
              ) -> dict[str, Any]:
    """Outlook's one reminder: the earliest alarm (most minutes before the start)."""
    from followsync.backends import eventtext  # (not on a no-op: only to convert)

    data["alarms"] = [a.to_ical().decode() for a in parts.alarms]
    best: tuple[int, int] | None = None
    for n, alarm in enumerate(parts.alarms):
        minutes = eventtext.minutes_before(alarm, start, MAX_MINUTES)
        if minutes is not None and (best is None or minutes > best[1]):
            best = (n, minutes)
    data["reminder"] = list(best) if best else None
    if best is None:
        return {"isReminderOn": False}
    return {"isReminderOn": True, "reminderMinutesBeforeStart": best[1]}


def _alarm_name(alarm: Any, start: date | datetime) -> str:
    from followsync.backends import eventtext

    minutes = eventtext.minutes_before(alarm, start, 10**9)
    if minutes is None:
        return "an alarm not relative to the start"
    if minutes == 0:
        return "the alarm at the start"
    for size, unit in ((10080, "week"), (1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return f"the alarm {count} {unit}{'s' if count != 1 else ''} before"
    return f"the alarm {minutes} minutes before"  # (unreachable: 1 divides every minute)


def _utc(value: date | datetime, zone: str) -> dict[str, str]:
    moment = value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())
    if moment.tzinfo is None:  # floating: in the config's zone
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _moment(when: Mapping[str, Any]) -> datetime:
    """A Graph dateTimeTimeZone as an aware moment (UTC unless it names an IANA zone)."""

    text = str(when.get("dateTime", ""))
    moment = datetime.fromisoformat(text.partition(".")[0].replace("Z", ""))
    zone = str(when.get("timeZone") or "UTC")
    try:
        tz = ZoneInfo(zone) if zone not in ("UTC", "tzone://Microsoft/Utc") else UTC
    except (KeyError, ValueError):
        tz = UTC
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _ical_time(when: Mapping[str, Any], all_day: bool, data: Mapping[str, Any],
               zone: str) -> str:
    if all_day:
        return f";VALUE=DATE:{str(when.get('dateTime', ''))[:10].replace('-', '')}"
    moment = _moment(when)
    tzid = data.get("tzid")
    if isinstance(tzid, str) and tzid:
        try:
            local = moment.astimezone(ZoneInfo(tzid))
            quoted = f'"{tzid}"' if any(c in tzid for c in ':;,') else tzid
            return f";TZID={quoted}:{local.strftime('%Y%m%dT%H%M%S')}"
        except (KeyError, ValueError):
            pass
    if data.get("floating"):
        return ":" + moment.astimezone(ZoneInfo(zone)).strftime("%Y%m%dT%H%M%S")
    return ":" + moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def from_event(event: Mapping[str, Any], zone: str = "UTC") -> str:
    """The iCalendar text of an event: what Outlook shows, plus what only followsync keeps."""
    from followsync.backends import eventtext  # (not on a no-op: only to convert)

    data = _data(event)
    uid = _mark(event) or str(event.get("iCalUId") or event.get("id"))
    subject = str(event.get("subject") or "")
    lines = eventtext.head("microsoft", uid, eventtext.stamp(event.get("lastModifiedDateTime")),
                           data.get("seq") if isinstance(data.get("seq"), int) else 0)
    lines.append("SUMMARY:" + eventtext.text_value(subject))
    body = event.get("body")
    content = str((body if isinstance(body, dict) else {}).get("content") or "")
    content = content.replace("\r\n", "\n")
    if content or data.get("desc"):
        lines.append("DESCRIPTION:" + eventtext.text_value(content))
    all_day = bool(event.get("isAllDay"))
    try:
        lines.append("DTSTART" + _ical_time(event.get("start") or {}, all_day, data, zone))
        lines.append("DTEND" + _ical_time(event.get("end") or {}, all_day, data, zone))
    except ValueError:
        raise TargetError(f"Microsoft's event {event.get('id')} has no readable time") from None
    free = event.get("showAs") == "free"
    if data.get("transp") or free:
        lines.append(f"TRANSP:{'TRANSPARENT' if free else 'OPAQUE'}")
    lines += [line for line in data.get("rest") or [] if _one_line(line)]
    return eventtext.finish(lines, _alarms(event, data, subject))


def _one_line(line: object) -> bool:
    """A content line kept in the data: one line, nothing that opens or closes a part."""
    return isinstance(line, str) and not any(c in line for c in "\r\n") and \
        not line.upper().startswith(("BEGIN:", "END:"))


def _one_alarm(text: object) -> bool:
    """An alarm's text kept in the data: one VALARM, nothing else."""
    if not isinstance(text, str):
        return False
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    return len(lines) >= 2 and lines[0] == "BEGIN:VALARM" and lines[-1] == "END:VALARM" and \
        all(line and not line.upper().startswith(("BEGIN:", "END:")) for line in lines[1:-1])


def _alarms(event: Mapping[str, Any], data: Mapping[str, Any], subject: str) -> str:
    """The alarms as written, the one Outlook keeps as its reminder now says."""
    from followsync.backends import eventtext  # (not on a no-op: only to convert)

    on = event.get("isReminderOn") is True
    minutes = event.get("reminderMinutesBeforeStart")
    minutes = minutes if isinstance(minutes, int) and 0 <= minutes <= 10**7 else 0
    kept = [a for a in data.get("alarms") or [] if _one_alarm(a)]
    chosen = data.get("reminder")
    index, was = chosen if isinstance(chosen, list) and len(chosen) == 2 else (None, None)
    made = "".join(eventtext.fold(line) + "\r\n"
                   for line in eventtext.alarm_lines("DISPLAY", subject, minutes))
    out = []
    for n, raw in enumerate(kept):
        if n != index:
            out.append(raw)
        elif on:  # as written while Outlook's reminder is as set, else as Outlook says
            out.append(raw if was == minutes else made)
    if on and index is None:  # a reminder turned on in Outlook
        out.append(made)
    return "".join(out)
