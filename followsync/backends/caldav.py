"""A CalDAV calendar as a target.

The hot path speaks plain WebDAV through `DavSession`: a no-op sync is one sync-collection
REPORT (RFC 6578) with the token kept in the state, a change is one PUT with If-Match (or
If-None-Match: * for a new item), a removal one DELETE with If-Match. Finding the calendar
(by display name under the principal, creating it when missing) and listing calendars use
python-caldav, imported only then. Items are stored at `<uid>.ics`, so an item whose state was
lost is found again without searching by UID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from followsync.backends.base import Listing
from followsync.backends.davhttp import DavSession, Response
from followsync.config import Target
from followsync.errors import ComponentRefused, Conflict, TargetError
from followsync.marks import is_owned, uid_of
from followsync.model import Remote

log = logging.getLogger("followsync")
T = TypeVar("T")
NS = {"d": "DAV:", "c": "urn:ietf:params:xml:ns:caldav", "cs": "http://calendarserver.org/ns/"}
MULTIGET_BATCH = 100
_PROPFIND = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/">
 <d:prop><d:getetag/><d:resourcetype/><d:sync-token/><cs:getctag/><d:displayname/>
 <c:supported-calendar-component-set/></d:prop>
</d:propfind>"""
_SYNC = """<?xml version="1.0" encoding="utf-8"?>
<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token>
<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"""
_MULTIGET = """<?xml version="1.0" encoding="utf-8"?>
<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
<d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>"""
_MKCALENDAR = """<?xml version="1.0" encoding="utf-8"?>
<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>
<c:supported-calendar-component-set>{comps}</c:supported-calendar-component-set>
</d:prop></d:set></c:mkcalendar>"""
_BY_UID = """<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR">
<c:comp-filter name="{comp}"><c:prop-filter name="UID">
<c:text-match collation="i;octet">{uid}</c:text-match></c:prop-filter></c:comp-filter>
</c:comp-filter></c:filter></c:calendar-query>"""


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


def password_for(target: Target) -> str | None:
    """The target's password from the command, the environment, the keyring or the file."""
    if target.password_command:
        command = target.password_command
        argv = list(command) if isinstance(command, tuple) else shlex.split(command)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise TargetError(f"target {target.name}: password_command not found: {argv[0]}")\
                from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"target {target.name}: password_command took longer than 30 s")\
                from None
        if done.returncode != 0:
            raise TargetError(f"target {target.name}: password_command failed "
                              f"(exit {done.returncode})",
                              "run it by hand to see why; its output is never shown here")
        return done.stdout.decode("utf-8", errors="replace").rstrip("\r\n")
    if target.password_env:
        value = os.environ.get(target.password_env)
        if value is None:
            raise TargetError(f"target {target.name}: ${target.password_env} is not set",
                              "set it in the service's environment (see README)")
        return value
    if target.keyring:
        try:
            import keyring
        except ImportError:
            raise TargetError("keyring: true needs the keyring package",
                              "followsync is not on the package index: from its checkout, "
                              "pipx install --force '.[caldav,keyring]'") from None
        value = keyring.get_password("followsync", f"{target.username}@{target.url}")
        if value is None:
            raise TargetError(f"target {target.name}: no password in the keyring for "
                              f"{target.username}@{target.url}",
                              f"keyring set followsync {target.username}@{target.url}")
        return str(value)
    return target.password


class CaldavBackend:
    """One CalDAV calendar; state-aware listing, conditional writes."""

    immediate = True  # every write reaches the server at once (see base.Backend)

    def __init__(self, target: Target, session: DavSession | None = None,
                 readonly: bool = False) -> None:
        assert target.url is not None
        self.target = target
        self.readonly = readonly  # for `plan`: no calendar is created
        self.label = target.name
        self._password: str | None = None
        self.session = session or DavSession(target.url, target.username,
                                             self._secret(), verify=target.verify,
                                             timeout=target.timeout)
        self.cursor: Cursor | None = None
        self._wrote: dict[str, str | None] = {}  # href → ETag written (None: deleted)

    def _secret(self) -> str | None:
        if self._password is None:
            self._password = password_for(self.target)
        return self._password

    # finding the calendar ----------------------------------------------------
    def _calendar(self, cursor: Cursor | None) -> Cursor | None:
        """The calendar to sync; None when it does not exist and this backend is readonly."""
        if cursor is not None:
            return cursor
        url = self.discover()
        if url is None:
            return None
        answer = self._propfind(url, depth=0)
        if not answer:
            raise TargetError(f"{url} did not answer a PROPFIND")
        props = next(iter(answer.values()))
        if not props.get("calendar"):
            raise TargetError(f"{url} is not a calendar", "use `followsync calendars` to list them")
        return Cursor(url, props.get("components") or ("VEVENT", "VTODO"), None)

    def discover(self) -> str | None:
        """The calendar URL: `url` itself when it is a calendar and no name is given, else the
        calendar named `calendar` under the principal (created if missing, unless readonly:
        then None)."""
        target = self.target
        assert target.url is not None
        if not target.calendar:
            return target.url if target.url.endswith("/") else target.url + "/"
        return self._retrying(self._find_or_make)

    def _retrying(self, work: Callable[[], T]) -> T:
        """python-caldav does not retry: do it here for network errors, 5xx and 429."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return work()
            except TargetError:
                raise
            except Exception as exc:
                if attempt > self.session.retries or not _transient(exc):
                    raise _library_error(exc, self.target, self._password) from None
                self.session.pause(attempt, None, f"discovery: {type(exc).__name__}")

    def _find_or_make(self) -> str | None:
        target = self.target
        client = self._client()
        try:
            principal = client.get_principal()
            for calendar in principal.get_calendars():
                if (calendar.get_display_name() or "") == target.calendar:
                    return str(calendar.url)
            if self.readonly:
                return None
            components = ["VEVENT", "VTODO"]
            log.warning("%s: creating calendar %r", target.name, target.calendar)
            made = principal.make_calendar(name=target.calendar,
                                           supported_calendar_component_set=components)
            return str(made.url)
        finally:
            client.close()

    def calendars(self) -> list[dict[str, Any]]:
        """Every calendar the account sees: name, URL, components."""
        return self._retrying(self._list_calendars)

    def _list_calendars(self) -> list[dict[str, Any]]:
        client = self._client()
        try:
            principal = client.get_principal()
            found = []
            for calendar in principal.get_calendars():
                try:
                    components = list(calendar.get_supported_components())
                except Exception:
                    components = []
                found.append({"name": calendar.get_display_name() or "", "url": str(calendar.url),
                              "components": components})
            return found
        finally:
            client.close()

    def _client(self) -> Any:
        try:
            import caldav
        except ImportError:
            raise TargetError("CalDAV targets need the caldav package",
                              "followsync is not on the package index: from its checkout, "
                              "pipx install --force '.[caldav]'") from None
        target = self.target
        client: Any = caldav.DAVClient
        made = client(
            url=target.url, username=target.username, password=self._secret(),
            ssl_verify_cert=target.verify, timeout=max(1, int(target.timeout)),
            auth_type="basic" if target.username else None, enable_rfc6764=False)
        # Its HTTP goes through our session, under the hot path's rules: no redirect is
        # followed, nothing is sent to another host, answers are bounded in size and time.
        with contextlib.suppress(Exception):
            made.session.close()
        made.session = _ViaSession(self.session)
        return made

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
        except _Missing:
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
            url = self._retrying(self._find_existing)
            if url is not None:
                note = f"{what} was deleted on the server; found it again at {url}"
                found = Cursor(url, gone.components, None)
            elif self.readonly:
                return Listing({}, fresh=True, reset=True, note=f"{what} was deleted on the "
                               "server; a sync creates it again")
            else:
                url = self.discover()
                assert url is not None
                note = f"{what} was deleted on the server; created it again"
                found = Cursor(url, ("VEVENT", "VTODO"), None)
        elif self.readonly:
            return Listing({}, fresh=True, reset=True, note=f"{what} was deleted on the "
                           "server; a sync creates it again there")
        else:
            log.warning("%s: creating calendar %s again", self.label, gone.url)
            comps = "".join(f'<c:comp name="{c}"/>' for c in gone.components)
            response = self.session.request("MKCALENDAR", gone.url,
                                            _MKCALENDAR.format(comps=comps))
            _expect(response, (201,), "MKCALENDAR", gone.url)
            note = f"{what} was deleted on the server; created it again"
            found = Cursor(gone.url, gone.components, None)
        self.cursor = found
        listing = self._full_listing(found, {})
        return Listing(listing.items, cursor=listing.cursor, fresh=True, foreign=listing.foreign,
                       reset=True, note=note)

    def _find_existing(self) -> str | None:
        """The calendar named `calendar` under the principal, if there is one."""
        readonly, self.readonly = self.readonly, True
        try:
            return self._find_or_make()
        finally:
            self.readonly = readonly

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
        body = _SYNC.format(token=_xml_escape(found.token or ""))
        response = self.session.request("REPORT", found.url, body, {"Depth": "0"})
        if response.status in (403, 409, 412, 400, 404, 410):
            log.info("%s: sync token refused (HTTP %s); listing everything", self.label,
                     response.status)
            return None
        _expect(response, (207,), "REPORT sync-collection", found.url)
        root = _parse_xml(response.body, found.url)
        token_el = root.find("d:sync-token", NS)
        token = token_el.text if token_el is not None else None
        items = dict(known)
        unknown: dict[str, str] = {}
        changed = False
        for resp in root.findall("d:response", NS):
            href = _href(resp)
            if href is None:
                continue
            status = resp.find("d:status", NS)
            etag = _first_text(resp, ".//d:getetag")
            uid = by_href.get(href)
            if (status is not None and " 404 " in f"{status.text} ") or etag is None:
                if uid is not None:
                    items.pop(uid, None)
                    changed = True
                continue
            if uid is not None:
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
        body = _MULTIGET.format(hrefs="".join(f"<d:href>{_xml_escape(h)}</d:href>" for h in hrefs))
        response = self.session.request("REPORT", self.cursor.url, body, {"Depth": "1"})
        _expect(response, (207,), "REPORT calendar-multiget", self.cursor.url)
        result: dict[str, tuple[str | None, str]] = {}
        for resp in _parse_xml(response.body, self.cursor.url).findall("d:response", NS):
            href = _href(resp)
            data = _first_text(resp, ".//c:calendar-data")
            if href is not None and data is not None:
                result[href] = (_first_text(resp, ".//d:getetag"), data)
        return result

    def _propfind(self, url: str, depth: int) -> dict[str, dict[str, Any]]:
        response = self.session.request("PROPFIND", url, _PROPFIND, {"Depth": str(depth)})
        if response.status in (404, 410):
            raise _Missing(f"no calendar at {url} (HTTP {response.status})",
                           "use `followsync calendars` to list the calendars")
        _expect(response, (207,), "PROPFIND", url)
        found: dict[str, dict[str, Any]] = {}
        base = urlsplit(url).path.rstrip("/")
        for resp in _parse_xml(response.body, url).findall("d:response", NS):
            href = _href(resp)
            if href is None:
                continue
            gone = resp.find("d:status", NS)  # Xandikos answers 207 with a 404 inside
            if href.rstrip("/") == base and gone is not None and \
                    any(f" {code} " in f"{gone.text} " for code in (404, 410)):
                raise _Missing(f"no calendar at {url} (HTTP 404)",
                               "use `followsync calendars` to list the calendars")
            props: dict[str, Any] = {}
            for propstat in resp.findall("d:propstat", NS):
                status = propstat.find("d:status", NS)
                if status is not None and " 200 " not in f"{status.text} ":
                    continue
                prop = propstat.find("d:prop", NS)
                if prop is None:
                    continue
                etag = prop.find("d:getetag", NS)
                if etag is not None and etag.text:
                    props["etag"] = etag.text
                token = prop.find("d:sync-token", NS)
                if token is not None and token.text:
                    props["token"] = token.text
                kind = prop.find("d:resourcetype", NS)
                if kind is not None and kind.find("c:calendar", NS) is not None:
                    props["calendar"] = True
                comps = prop.find("c:supported-calendar-component-set", NS)
                if comps is not None:
                    names = tuple(c.get("name", "").upper() for c in comps.findall("c:comp", NS))
                    if names:
                        props["components"] = names
            found[href] = props
        return found

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
        response = self.session.request("PROPFIND", href, _PROPFIND, {"Depth": "0"})
        if response.status == 207:
            for props in self._parse_props(response, href).values():
                if props.get("etag"):
                    return Remote(urlsplit(self.session.url(href)).path, props["etag"])
        for comp in ("VEVENT", "VTODO"):
            body = _BY_UID.format(comp=comp, uid=_xml_escape(uid))
            response = self.session.request("REPORT", self.cursor.url, body, {"Depth": "1"})
            if response.status != 207:
                continue
            for resp in _parse_xml(response.body, self.cursor.url).findall("d:response", NS):
                found_href, etag = _href(resp), _first_text(resp, ".//d:getetag")
                if found_href and etag:
                    return Remote(found_href, etag)
        return None

    def _parse_props(self, response: Response, url: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for resp in _parse_xml(response.body, url).findall("d:response", NS):
            href = _href(resp)
            if href is not None:
                found[href] = {"etag": _first_text(resp, ".//d:getetag")}
        return found

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
        answer = self.session.request("PROPFIND", href, _PROPFIND, {"Depth": "0"})
        _expect(answer, (207,), "PROPFIND", href)
        for props in self._parse_props(answer, href).values():
            if props.get("etag"):
                return Remote(path, props["etag"])
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
        body = _SYNC.format(token=_xml_escape(found.token or ""))
        try:
            response = self.session.request("REPORT", found.url, body, {"Depth": "0"})
        except TargetError:
            return None
        if response.status != 207:
            return None
        try:
            root = _parse_xml(response.body, found.url)
        except TargetError:
            return None
        for resp in root.findall("d:response", NS):
            href = _href(resp)
            if href is None:
                continue
            status = resp.find("d:status", NS)
            gone = (status is not None and " 404 " in f"{status.text} ") or \
                _first_text(resp, ".//d:getetag") is None
            seen = None if gone else _first_text(resp, ".//d:getetag")
            if href not in self._wrote or self._wrote[href] != seen:
                return None
        return _first_text(root, "d:sync-token")

    def close(self) -> None:
        self.session.close()


class _Missing(TargetError):
    """No calendar (HTTP 404 or 410) at a URL."""


class _ViaSession:
    """Stands in for python-caldav's niquests Session: every request goes through the
    backend's DavSession (retries, no redirects, same host only, MAX_BODY, deadline)."""

    def __init__(self, session: DavSession) -> None:
        self.session = session

    def request(self, method: str, url: str, data: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, **_ignored: Any) -> _LibraryResponse:
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        response = self.session.request(method, url, data or b"", sent)
        if _declares(response.body):
            raise TargetError(f"the server's answer from {url} declares XML entities; refused")
        return _LibraryResponse(response, url)

    def close(self) -> None:
        """The backend closes its session itself (discovery and syncing share it)."""


class _LibraryResponse:
    """What python-caldav reads from a niquests Response."""

    def __init__(self, response: Response, url: str) -> None:
        from niquests.structures import CaseInsensitiveDict

        self.status_code = response.status
        self.headers = CaseInsensitiveDict(dict(response.headers))
        self.content = response.body
        self.text = response.body.decode("utf-8", errors="replace")
        self.reason = ""
        self.url = url
        self.ok = response.status < 400


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


_SPACE = re.compile(rb"\s*")


def _declares(body: bytes) -> bool:
    """Whether a declaration (<!DOCTYPE, <!ENTITY, ...) comes before the root element."""
    at = 0
    while True:
        at = _SPACE.match(body, at).end()  # type: ignore[union-attr]
        if body.startswith(b"<!--", at):
            end = body.find(b"-->", at + 4)
        elif body.startswith(b"<?", at):
            end = body.find(b"?>", at + 2)
        else:
            return body.startswith(b"<!", at)
        if end < 0:
            return False
        at = end + 3 if body[end] == ord("-") else end + 2


def _parse_xml(body: bytes, url: str) -> ET.Element:
    # Any declaration (DOCTYPE, ENTITY) before the root element is refused, however much
    # whitespace, comment or processing instruction comes first: no entity is ever expanded.
    # (Text inside elements, CDATA included, may say "<!DOCTYPE" freely.)
    if _declares(body):
        raise TargetError(f"the server's answer from {url} declares XML entities; refused")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise TargetError(f"the server's answer from {url} is not valid XML ({exc})") from None


def _href(resp: ET.Element) -> str | None:
    href = resp.find("d:href", NS)
    if href is None or not href.text:
        return None
    text = href.text.strip()
    path = urlsplit(text).path if "://" in text else text
    return quote(unquote(path), safe="/@-_.~%+:,;=!$&'()*")


def _first_text(element: ET.Element, path: str) -> str | None:
    found = element.find(path, NS)
    return found.text if found is not None and found.text else None


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _transient(exc: Exception) -> bool:
    """Whether a python-caldav / niquests error is worth retrying."""
    status = str(getattr(exc, "status", "") or "")
    text = str(exc)[:300]
    if status.startswith("5") or status == "429" or any(
            f"{code} " in text or f"'{code}" in text for code in (500, 502, 503, 504, 429)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout",
                         "OSError", "RemoteDisconnected", "ProtocolError"})


def _library_error(exc: Exception, target: Target, secret: str | None = None) -> TargetError:
    """python-caldav's exceptions as one clear line (never with a password in it)."""
    name = type(exc).__name__
    status = getattr(exc, "status", None) or ""
    if "Authorization" in name or str(status) == "401":
        return TargetError(f"authentication refused for user {target.username} at {target.url}",
                           "check username and password (iCloud and Fastmail need an "
                           "app-specific password)")
    if "NotFound" in name or str(status) == "404":
        return TargetError(f"nothing found at {target.url} (HTTP 404)",
                           "use the server's CalDAV URL; see the README's provider notes")
    if _transient(exc):
        return TargetError(f"{target.url} is unreachable or failing: {name}",
                           "the next sync retries")
    reason = str(exc).splitlines()[0][:200] if str(exc) else name
    for hidden in (secret, target.password):
        if hidden:
            reason = reason.replace(hidden, "***")
    return TargetError(f"{target.url}: {reason}")
