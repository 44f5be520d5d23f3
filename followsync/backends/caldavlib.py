"""Finding calendars: first the short path of `davfind` (plain RFC 4791 / RFC 6638, three or
four requests), and when that cannot tell, python-caldav (imported only here, only then),
its HTTP carried by our DavSession: no redirect is followed, nothing is sent to another
host, answers are bounded in size and time, and transient failures are retried.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from followsync.backends.davfind import Found, Unsure, find_calendar
from followsync.backends.davhttp import DavSession, Response
from followsync.backends.davxml import declares
from followsync.config import Target
from followsync.credentials import auth_refused
from followsync.errors import TargetError

log = logging.getLogger("followsync")
T = TypeVar("T")
COMPONENTS = ("VEVENT", "VTODO")  # what a calendar followsync makes takes


class Discovery:
    """The calendars an account sees, found (and made) through python-caldav."""

    def __init__(self, target: Target, session: DavSession, secret: Callable[[], str | None]
                 ) -> None:
        self.target, self.session, self.secret = target, session, secret

    def find(self, create: bool) -> Found | None:
        """The calendar named `target.calendar` (the URL itself, or under the principal);
        made when missing if `create`, else None. The short path first; python-caldav when
        it cannot tell."""
        target = self.target
        assert target.url is not None and target.calendar
        try:
            return find_calendar(self.session, target.url, target.calendar, COMPONENTS,
                                 create, target.name)
        except Unsure as why:
            log.info("%s: %s; finding the calendar with python-caldav", target.name, why)
        url = self._retrying(lambda: self._find_or_make(create))
        return None if url is None else Found(url)

    def calendars(self) -> list[dict[str, Any]]:
        """Every calendar the account sees: name, URL, components."""
        return self._retrying(self._list_calendars)

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
                    raise _library_error(exc, self.target, self.secret()) from None
                self.session.pause(attempt, None, f"discovery: {type(exc).__name__}")

    def _find_or_make(self, create: bool) -> str | None:
        target = self.target
        client = self._client()
        try:
            principal = client.get_principal()
            for calendar in principal.get_calendars():
                if (calendar.get_display_name() or "") == target.calendar:
                    return str(calendar.url)
            if not create:
                return None
            log.warning("%s: creating calendar %r", target.name, target.calendar)
            made = principal.make_calendar(name=target.calendar,
                                           supported_calendar_component_set=list(COMPONENTS))
            return str(made.url)
        finally:
            client.close()

    def _list_calendars(self) -> list[dict[str, Any]]:
        client = self._client()
        try:
            found = []
            for calendar in client.get_principal().get_calendars():
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
            url=target.url, username=target.username, password=self.secret(),
            ssl_verify_cert=target.verify, timeout=max(1, int(target.timeout)),
            auth_type="basic" if target.username else None, enable_rfc6764=False)
        with contextlib.suppress(Exception):
            made.session.close()
        made.session = _ViaSession(self.session)
        return made


class _ViaSession:
    """Stands in for python-caldav's niquests Session: every request goes through the
    backend's DavSession (retries, no redirects, same host only, MAX_BODY, deadline)."""

    def __init__(self, session: DavSession) -> None:
        self.session = session

    def request(self, method: str, url: str, data: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, **_ignored: Any) -> _LibraryResponse:
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        response = self.session.request(method, url, data or b"", sent)
        if declares(response.body):
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
        return auth_refused(f"user {target.username}", str(target.url))
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
