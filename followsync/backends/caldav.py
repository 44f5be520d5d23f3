"""A CalDAV calendar as a target.

The hot path speaks plain WebDAV through `DavSession`: a no-op sync is one sync-collection
REPORT (RFC 6578) with the token kept in the state, a change is one PUT with If-Match (or
If-None-Match: * for a new item), a removal one DELETE with If-Match. Finding the calendar
(by display name under the principal, creating it when missing) takes `davfind`'s short
path, python-caldav only when that cannot tell; listing calendars uses python-caldav. Items
are stored at `<uid>.ics`, so an item whose state was lost is found again without searching
by UID.

Here: the sync-token logic and the conditional writes. The XML is in `davxml`, the HTTP in
`davhttp`, finding calendars in `davfind` (short path) and `caldavlib` (python-caldav),
secrets in `credentials`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from followsync.backends import davxml as x
from followsync.backends.base import Listing
from followsync.backends.caldavlib import COMPONENTS, Discovery
from followsync.backends.davfind import Found
from followsync.backends.davhttp import DavSession, Response
from followsync.backends.davxml import Missing
from followsync.config import Target
from followsync.credentials import password_for
from followsync.errors import ComponentRefused, Conflict, TargetError
from followsync.marks import is_owned, uid_of
from followsync.model import Remote

log = logging.getLogger("followsync")
MULTIGET_BATCH = 100


@dataclass(frozen=True)
class Cursor:
    """What a sync remembers about the calendar: where it is, what it takes, its token."""

    url: str
    components: tuple[str, ...]
    token: str | None

    def dump(self) -> str:
        return json.dumps({"url": self.url, "components": list(self.components),
                           "token": self.token})

    @staticmethod
    def load(text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return Cursor(data["url"], tuple(data["components"]), data.get("token"))
        except (ValueError, KeyError, TypeError):
            return None


class CaldavBackend:
    """One CalDAV calendar; state-aware listing, conditional writes."""

    immediate = True  # every write reaches the server at once (see base.Backend)
    cursor_only = False  # `known` tells our items from others' (see base.Backend)

    def __init__(self, target: Target, session: DavSession | None = None,
                 readonly: bool = False) -> None:
        assert target.url is not None
        self.target = target
        self.readonly = readonly  # for `plan`: no calendar is created
        self.label = target.name
        self._password: str | None = None
        self.session = session or DavSession(target.url, target.username,
                                             self._secret(), verify=target.verify,
                                             timeout=target.timeout,
                                             state_dir=target.state_dir)
        self.cursor: Cursor | None = None
        self._wrote: dict[str, str | None] = {}  # href → ETag written (None: deleted)
        self.discovery = Discovery(target, self.session, self._secret)

    def _secret(self) -> str | None:
        if self._password is None:
            self._password = password_for(self.target)
        return self._password

    # finding the calendar ----------------------------------------------------
    def _calendar(self, cursor: Cursor | None) -> Cursor | None:
        """The calendar to sync; None when it does not exist and this backend is readonly."""
        if cursor is not None:
            return cursor
        found = self.discover()
        if found is None:
            return None
        url = found.url
        if found.components is not None:  # the answer that found it said what it is
            return Cursor(url, found.components, None)
        answer = self._propfind(url, depth=0)
        if not answer:
            raise TargetError(f"{url} did not answer a PROPFIND")
        props = next(iter(answer.values()))
        if not props.get("calendar"):
            raise TargetError(f"{url} is not a calendar", "use `followsync calendars` to list them")
        return Cursor(url, props.get("components") or COMPONENTS, None)

    def discover(self) -> Found | None:
        """The calendar: `url` itself when no name is given, else the calendar named
        `calendar` (`url` itself, or under the principal; created if missing, unless
        readonly: then None)."""
        target = self.target
        assert target.url is not None
        if not target.calendar:
            return Found(target.url if target.url.endswith("/") else target.url + "/")
        return self.discovery.find(create=not self.readonly)

    def calendars(self) -> list[dict[str, Any]]:
        """Every calendar the account sees: name, URL, components."""
        return self.discovery.calendars()

    # reading -----------------------------------------------------------------
    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        remembered = Cursor.load(cursor)
        found = self._calendar(remembered)
        if found is None:  # readonly, and the calendar does not exist yet
            return Listing({}, fresh=True, note=f"calendar {self.target.calendar!r} does not "
                           "exist yet; a sync creates it")
        self.cursor = found
        by_href = {remote.href: uid for uid, remote in known.items()}
        try:
            if found.token:
                changes = self._sync_changes(found, known, by_href)
                if changes is not None:
                    return changes
            return self._full_listing(found, by_href)
        except Missing:
            if remembered is None:  # never synced there: a wrong URL, not a deleted calendar
                raise
            return self._relocate(remembered)

    def _relocate(self, gone: Cursor) -> Listing:
        """The calendar synced last time is gone (deleted on the server): find it again by
        name, or make it again — by name under the principal, or at the configured URL when
        that URL is the calendar itself. Every item is then written anew (see README,
        "Calendar providers")."""
        name = self.target.calendar
        what = f"calendar {name!r}" if name else f"the calendar at {gone.url}"
        if name:
            again = self.discovery.find(create=False)
            if again is not None:
                note = f"{what} was deleted on the server; found it again at {again.url}"
                found = Cursor(again.url, gone.components, None)
            elif self.readonly:
                return Listing({}, fresh=True, reset=True, note=f"{what} was deleted on the "
                               "server; a sync creates it again")
            else:
                made = self.discover()
                assert made is not None
                note = f"{what} was deleted on the server; created it again"
                found = Cursor(made.url, made.components or COMPONENTS, None)
        elif self.readonly:
            return Listing({}, fresh=True, reset=True, note=f"{what} was deleted on the "
                           "server; a sync creates it again there")
        else:
            log.warning("%s: creating calendar %s again", self.label, gone.url)
            response = self.session.request("MKCALENDAR", gone.url,
                                            x.mkcalendar_request(gone.components))
            _expect(response, (201,), "MKCALENDAR", gone.url)
            note = f"{what} was deleted on the server; created it again"
            found = Cursor(gone.url, gone.components, None)
        self.cursor = found
        listing = self._full_listing(found, {})
        return Listing(listing.items, cursor=listing.cursor, fresh=True, foreign=listing.foreign,
                       reset=True, note=note)

    def _full_listing(self, found: Cursor, by_href: Mapping[str, str]) -> Listing:
        """Every item's ETag (one PROPFIND), fetching the ones the state does not know."""
        answer = self._propfind(found.url, depth=1)
        base = urlsplit(found.url).path
        token: str | None = None
        items: dict[str, Remote] = {}
        unknown: dict[str, str] = {}
        for href, props in answer.items():
            if href.rstrip("/") == base.rstrip("/"):
                token = props.get("token")
                found = Cursor(found.url, props.get("components") or found.components, None)
                continue
            etag = props.get("etag")
            if not etag or not href.endswith(".ics"):
                continue
            uid = by_href.get(href)
            if uid is not None:
                items[uid] = Remote(href, etag)
            else:
                unknown[href] = etag
        owned, foreign = self._owned(unknown)
        items.update(owned)
        self.cursor = Cursor(found.url, found.components, token)
        return Listing(items, cursor=self.cursor.dump(), foreign=foreign)

    def _sync_changes(
        self, found: Cursor, known: Mapping[str, Remote], by_href: dict[str, str]
    ) -> Listing | None:
        """What changed since the token; None when the token is no longer valid."""
        response = self.session.request("REPORT", found.url, x.sync_request(found.token or ""),
                                        {"Depth": "0"})
        if response.status in (403, 409, 412, 400, 404, 410):
            log.info("%s: sync token refused (HTTP %s); listing everything", self.label,
                     response.status)
            return None
        _expect(response, (207,), "REPORT sync-collection", found.url)
        answer = x.parse_sync(response.body, found.url)
        token = answer.token
        items = dict(known)
        unknown: dict[str, str] = {}
        changed = False
        for href, etag in answer.changes:
            uid = by_href.get(href)
            if etag is None:
                if uid is not None:
                    items.pop(uid, None)
                    changed = True
            elif uid is not None:
                if items.get(uid) != Remote(href, etag):
                    items[uid] = Remote(href, etag)
                    changed = True
            elif href.endswith(".ics"):
                unknown[href] = etag
        owned, foreign = self._owned(unknown)
        if owned:
            items.update(owned)
            changed = True
        if len(owned) + foreign < len(unknown):
            token = None  # an item changed since was not read: keep asking from the old token
        self.cursor = Cursor(found.url, found.components, token or found.token)
        return Listing(items, cursor=self.cursor.dump(), unchanged=not changed, foreign=foreign)

    def _owned(self, unknown: dict[str, str]) -> tuple[dict[str, Remote], int]:
        """Fetch items we have no record of and keep those carrying followsync's marks."""
        owned: dict[str, Remote] = {}
        foreign = 0
        hrefs = sorted(unknown)
        assert self.cursor is not None
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            batch = hrefs[start : start + MULTIGET_BATCH]
            for href, (etag, text) in self._multiget(batch).items():
                uid = uid_of(text)
                if uid and is_owned(text):
                    owned[uid] = Remote(href, etag or unknown[href])
                else:
                    foreign += 1
        return owned, foreign

    def _multiget(self, hrefs: list[str]) -> dict[str, tuple[str | None, str]]:
        assert self.cursor is not None
        response = self.session.request("REPORT", self.cursor.url, x.multiget_request(hrefs),
                                        {"Depth": "1"})
        _expect(response, (207,), "REPORT calendar-multiget", self.cursor.url)
        return x.parse_multiget(response.body, self.cursor.url)

    def _propfind(self, url: str, depth: int) -> dict[str, dict[str, Any]]:
        response = self.session.request("PROPFIND", url, x.PROPFIND, {"Depth": str(depth)})
        if response.status in (404, 410):
            raise Missing(f"no calendar at {url} (HTTP {response.status})",
                          "use `followsync calendars` to list the calendars")
        _expect(response, (207,), "PROPFIND", url)
        return x.parse_props(response.body, url)

    def supports(self, component: str) -> bool:
        return self.cursor is None or component in self.cursor.components

    def get(self, remote: Remote) -> str:
        response = self.session.request("GET", remote.href, b"", {"Accept": "text/calendar"})
        if response.status == 404:
            raise Conflict(remote.href)
        _expect(response, (200,), "GET", remote.href)
        return response.body.decode("utf-8", errors="replace")

    def find(self, uid: str) -> Remote | None:
        assert self.cursor is not None
        href = self._href_for(uid)
        response = self.session.request("PROPFIND", href, x.PROPFIND, {"Depth": "0"})
        if response.status == 207:
            for etag in x.parse_etags(response.body, href).values():
                if etag:
                    return Remote(urlsplit(self.session.url(href)).path, etag)
        for comp in ("VEVENT", "VTODO"):
            response = self.session.request("REPORT", self.cursor.url, x.uid_query(comp, uid),
                                            {"Depth": "1"})
            if response.status != 207:
                continue
            for found_href, etag in x.parse_etags(response.body, self.cursor.url).items():
                if etag:
                    return Remote(found_href, etag)
        return None

    # writing -----------------------------------------------------------------
    def _href_for(self, uid: str) -> str:
        assert self.cursor is not None
        return urljoin(self.cursor.url, quote(uid, safe="@-_.") + ".ics")

    def create(self, uid: str, text: str) -> Remote:
        href = self._href_for(uid)
        response = self._put(href, text, {"If-None-Match": "*"})
        if response.status in (412, 409):
            raise Conflict(uid)
        if response.status in (403, 415) and _refuses_component(response, text):
            assert self.cursor is not None
            self.cursor = Cursor(self.cursor.url,
                                 tuple(c for c in self.cursor.components if c != "VTODO"),
                                 self.cursor.token)
            raise ComponentRefused(f"{self.label}: the calendar refused a to-do (VTODO)")
        _expect(response, (201, 204, 200), "PUT", href)
        return self._note(self._written(href, response))

    def update(self, remote: Remote, text: str) -> Remote:
        response = self._put(remote.href, text, {"If-Match": remote.etag})
        if response.status in (412, 404, 409):
            raise Conflict(remote.href)
        _expect(response, (200, 201, 204), "PUT", remote.href)
        return self._note(self._written(remote.href, response))

    def delete(self, remote: Remote) -> None:
        response = self.session.request("DELETE", remote.href, b"", {"If-Match": remote.etag})
        if response.status == 412:
            raise Conflict(remote.href)
        if response.status != 404:
            _expect(response, (200, 204), "DELETE", remote.href)
        self._wrote[remote.href] = None

    def _note(self, remote: Remote) -> Remote:
        self._wrote[remote.href] = remote.etag
        return remote

    def _put(self, href: str, text: str, headers: dict[str, str]) -> Response:
        return self.session.request("PUT", href, text.encode("utf-8"),
                                    {"Content-Type": "text/calendar; charset=utf-8", **headers})

    def _written(self, href: str, response: Response) -> Remote:
        path = urlsplit(self.session.url(href)).path
        etag = response.header("ETag")
        if etag and not etag.startswith("W/"):
            return Remote(path, etag)
        answer = self.session.request("PROPFIND", href, x.PROPFIND, {"Depth": "0"})
        _expect(answer, (207,), "PROPFIND", href)
        for found in x.parse_etags(answer.body, href).values():
            if found:
                return Remote(path, found)
        raise TargetError(f"the server gave no ETag for {href}")

    def commit(self) -> str | None:
        """The cursor for the next sync. After writes, move the token past them — but only if
        the changes since the old token are exactly ours, so nobody else's edit is skipped.
        (Some servers' tokens name content: after a create and a delete by someone else, the
        old token would say "nothing changed".)"""
        if self.cursor is None:
            return None
        if self._wrote and self.cursor.token:
            newer = self._token_after_own_writes(self.cursor)
            if newer:
                self.cursor = Cursor(self.cursor.url, self.cursor.components, newer)
        self._wrote = {}
        return self.cursor.dump()

    def _token_after_own_writes(self, found: Cursor) -> str | None:
        try:
            response = self.session.request("REPORT", found.url,
                                            x.sync_request(found.token or ""), {"Depth": "0"})
            if response.status != 207:
                return None
            answer = x.parse_sync(response.body, found.url)
        except TargetError:
            return None
        for href, etag in answer.changes:
            if href not in self._wrote or self._wrote[href] != etag:
                return None
        return answer.token

    def close(self) -> None:
        self.session.close()


def _expect(response: Response, ok: tuple[int, ...], what: str, url: str) -> None:
    if response.status in ok:
        return
    if response.status == 403:
        raise TargetError(f"the server refused {what} on {url} (HTTP 403: not allowed)",
                          "check the user's rights on this calendar")
    if response.status == 404:
        raise TargetError(f"not found: {url} (HTTP 404)")
    raise TargetError(f"{what} {url} failed: HTTP {response.status}")


def _refuses_component(response: Response, text: str) -> bool:
    """A refusal of a VTODO because of its type (RFC 4791 supported-calendar-component)."""
    return "BEGIN:VTODO" in text and (b"supported-calendar-component" in response.body
                                      or b"VTODO" in response.body or response.status == 415)
