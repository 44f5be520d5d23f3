"""Finding (and making) the calendar named in a target without python-caldav: the short
path for servers that follow RFC 4791 / RFC 6638 plainly (README "Calendar providers").

    PROPFIND url (Depth 0)        the URL itself a calendar of that name? its principal,
                                  maybe its calendar-home-set
    PROPFIND principal (Depth 0)  the calendar-home-set, when the URL's answer had none
    PROPFIND home set (Depth 1)   every calendar's display name and components
    MKCALENDAR home/<uuid>/       when missing: display name and components at once

A first sync then costs three or four small requests, not python-caldav's import (a third of
a first sync's client CPU) and its eight. Whenever an answer is not what this path expects
(no principal, no home set, a status other than 207, a refused MKCALENDAR) it raises
`Unsure` and the caller asks python-caldav, which knows many servers' quirks. What would fail
there the same way is final and passes through: the session's errors (authentication,
network, redirects, another host) and an answer that is not XML or declares entities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from followsync.backends import davxml as x
from followsync.backends.davhttp import DavSession

log = logging.getLogger("followsync")


@dataclass(frozen=True)
class Found:
    """A calendar's URL, and its components when the answer that found it named them."""

    url: str
    components: tuple[str, ...] | None = None


class Unsure(Exception):
    """The short path cannot tell; python-caldav's discovery decides."""


def find_calendar(session: DavSession, url: str, name: str, components: tuple[str, ...],
                  create: bool, label: str) -> Found | None:
    """The calendar displayed as `name`: at `url` itself, or in the principal's home set;
    made there with `components` when missing if `create`, else None."""
    here = _propfind(session, url, x.WHERE, 0)
    mine = _answer_for(here, url)
    if mine.get("calendar") and mine.get("name") == name:
        return Found(_absolute(session, url), mine.get("components") or components)
    homes: list[str] = mine.get("homes") or []
    if not homes:
        principal = (mine.get("principal") or [None])[0]
        if principal is None:
            raise Unsure(f"{url} names no current-user-principal")
        homes = _answer_for(_propfind(session, principal, x.WHERE, 0), principal).get(
            "homes") or []
        if not homes:
            raise Unsure(f"{principal} names no calendar-home-set")
    for home in homes:
        for href, props in _propfind(session, home, x.CALENDARS, 1).items():
            if props.get("calendar") and props.get("name") == name:
                return Found(_absolute(session, href), props.get("components") or components)
    if not create:
        return None
    import uuid  # here: only a calendar being made needs it

    home = _absolute(session, homes[0])
    made = (home if home.endswith("/") else home + "/") + f"{uuid.uuid4()}/"
    log.warning("%s: creating calendar %r", label, name)
    response = session.request("MKCALENDAR", made, x.mkcalendar_request(components, name))
    if response.status != 201:
        raise Unsure(f"MKCALENDAR {made} with a display name: HTTP {response.status}")
    return Found(made, components)


def _propfind(session: DavSession, href: str, body: str, depth: int
              ) -> dict[str, dict[str, Any]]:
    response = session.request("PROPFIND", href, body, {"Depth": str(depth)})
    if response.status != 207:
        raise Unsure(f"PROPFIND {href}: HTTP {response.status}")
    try:
        return x.parse_props(response.body, session.url(href))
    except x.Missing as exc:  # 207 with a 404 inside
        raise Unsure(str(exc)) from None


def _answer_for(answer: dict[str, dict[str, Any]], href: str) -> dict[str, Any]:
    """The props of the response about `href` itself (the only one, for Depth 0)."""
    path = urlsplit(href).path.rstrip("/")
    for found, props in answer.items():
        if found.rstrip("/") == path:
            return props
    return next(iter(answer.values())) if len(answer) == 1 else {}


def _absolute(session: DavSession, href: str) -> str:
    return session.url(href)
