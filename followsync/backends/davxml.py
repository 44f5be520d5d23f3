"""The WebDAV/CalDAV XML followsync speaks: request bodies, and answers parsed safely.

No answer is parsed with a declaration before its root element (DOCTYPE, ENTITY): no entity
is ever expanded. A sync-collection answer is read in one place (`parse_sync`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from followsync.errors import TargetError

NS = {"d": "DAV:", "c": "urn:ietf:params:xml:ns:caldav", "cs": "http://calendarserver.org/ns/"}
PROPFIND = """<?xml version="1.0" encoding="utf-8"?>
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
<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>{name}
<c:supported-calendar-component-set>{comps}</c:supported-calendar-component-set>
</d:prop></d:set></c:mkcalendar>"""
# discovery (RFC 5397, RFC 4791 6.2.1): where the principal and its calendars are
WHERE = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>
<d:current-user-principal/><c:calendar-home-set/><d:resourcetype/><d:displayname/>
<c:supported-calendar-component-set/></d:prop></d:propfind>"""
CALENDARS = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>
<d:resourcetype/><d:displayname/><c:supported-calendar-component-set/></d:prop></d:propfind>"""
_BY_UID = """<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR">
<c:comp-filter name="{comp}"><c:prop-filter name="UID">
<c:text-match collation="i;octet">{uid}</c:text-match></c:prop-filter></c:comp-filter>
</c:comp-filter></c:filter></c:calendar-query>"""


def sync_request(token: str) -> str:
    """A sync-collection REPORT (RFC 6578) for the changes since `token`."""
    return _SYNC.format(token=escape(token))


def multiget_request(hrefs: list[str]) -> str:
    return _MULTIGET.format(hrefs="".join(f"<d:href>{escape(h)}</d:href>" for h in hrefs))


def mkcalendar_request(components: tuple[str, ...], name: str | None = None) -> str:
    """A MKCALENDAR body setting the components (and the display name, when given)."""
    named = f"<d:displayname>{escape(name)}</d:displayname>" if name is not None else ""
    return _MKCALENDAR.format(name=named,
                              comps="".join(f'<c:comp name="{c}"/>' for c in components))


def uid_query(component: str, uid: str) -> str:
    """A calendar-query for the items of one component type with this UID."""
    return _BY_UID.format(comp=component, uid=escape(uid))


@dataclass(frozen=True)
class SyncAnswer:
    """A sync-collection answer: the new token and each changed href with its ETag (None:
    the item is gone)."""

    token: str | None
    changes: tuple[tuple[str, str | None], ...]


def parse_sync(body: bytes, url: str) -> SyncAnswer:
    root = parse_xml(body, url)
    changes = []
    for resp in root.findall("d:response", NS):
        href = href_of(resp)
        if href is None:
            continue
        status = resp.find("d:status", NS)
        etag = first_text(resp, ".//d:getetag")
        gone = status is not None and " 404 " in f"{status.text} "
        changes.append((href, None if gone else etag))
    return SyncAnswer(first_text(root, "d:sync-token"), tuple(changes))


def parse_props(body: bytes, url: str) -> dict[str, dict[str, Any]]:
    """A PROPFIND answer: href → the props followsync reads (etag, token, calendar,
    components), from the propstats that say 200. Raises Missing when the collection at
    `url` itself is reported gone (Xandikos answers 207 with a 404 inside)."""
    found: dict[str, dict[str, Any]] = {}
    base = urlsplit(url).path.rstrip("/")
    for resp in parse_xml(body, url).findall("d:response", NS):
        href = href_of(resp)
        if href is None:
            continue
        gone = resp.find("d:status", NS)
        if href.rstrip("/") == base and gone is not None and \
                any(f" {code} " in f"{gone.text} " for code in (404, 410)):
            raise Missing(f"no calendar at {url} (HTTP 404)",
                          "use `followsync calendars` to list the calendars")
        props: dict[str, Any] = {}
        for propstat in resp.findall("d:propstat", NS):
            status = propstat.find("d:status", NS)
            if status is not None and " 200 " not in f"{status.text} ":
                continue
            prop = propstat.find("d:prop", NS)
            if prop is not None:
                props.update(_props(prop))
        found[href] = props
    return found


def _props(prop: ET.Element) -> dict[str, Any]:
    props: dict[str, Any] = {}
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
    name = prop.find("d:displayname", NS)
    if name is not None:
        props["name"] = name.text or ""
    for key, tag in (("principal", "d:current-user-principal"), ("homes", "c:calendar-home-set")):
        holder = prop.find(tag, NS)
        if holder is not None:
            hrefs = [h.text.strip() for h in holder.findall("d:href", NS)
                     if h.text and h.text.strip()]
            if hrefs:
                props[key] = hrefs
    return props


def parse_etags(body: bytes, url: str) -> dict[str, str | None]:
    """href → ETag of each response (a Depth 0 PROPFIND, a calendar-query)."""
    return {href: first_text(resp, ".//d:getetag")
            for resp in parse_xml(body, url).findall("d:response", NS)
            if (href := href_of(resp)) is not None}


def parse_multiget(body: bytes, url: str) -> dict[str, tuple[str | None, str]]:
    """href → (ETag, calendar data) of a calendar-multiget answer."""
    result: dict[str, tuple[str | None, str]] = {}
    for resp in parse_xml(body, url).findall("d:response", NS):
        href = href_of(resp)
        data = first_text(resp, ".//c:calendar-data")
        if href is not None and data is not None:
            result[href] = (first_text(resp, ".//d:getetag"), data)
    return result


class Missing(TargetError):
    """No calendar (HTTP 404 or 410) at a URL."""


_SPACE = re.compile(rb"\s*")


def declares(body: bytes) -> bool:
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


def parse_xml(body: bytes, url: str) -> ET.Element:
    # Any declaration (DOCTYPE, ENTITY) before the root element is refused, however much
    # whitespace, comment or processing instruction comes first: no entity is ever expanded.
    # (Text inside elements, CDATA included, may say "<!DOCTYPE" freely.)
    if declares(body):
        raise TargetError(f"the server's answer from {url} declares XML entities; refused")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise TargetError(f"the server's answer from {url} is not valid XML ({exc})") from None


def href_of(resp: ET.Element) -> str | None:
    href = resp.find("d:href", NS)
    if href is None or not href.text:
        return None
    text = href.text.strip()
    path = urlsplit(text).path if "://" in text else text
    return quote(unquote(path), safe="/@-_.~%+:,;=!$&'()*")


def first_text(element: ET.Element, path: str) -> str | None:
    found = element.find(path, NS)
    return found.text if found is not None and found.text else None


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
