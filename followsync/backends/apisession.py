"""Keep-alive JSON requests to Google (the Calendar API and the OAuth token endpoint) and to
Microsoft Graph with a bearer token, over davhttp's session and its one retry loop.

Its own module so that signing in (`googleauth`, which posts to the token endpoint) and the
google backend (which needs `googleauth`'s tokens) both use it without importing each other.

Google asks clients to back off exponentially on 429 and 403 rateLimitExceeded /
userRateLimitExceeded (and 5xx): from about a second, doubling up to 32–64 s, with random
jitter, honouring Retry-After when given. `GOOGLE_BACKOFF` is that policy: waits of 1–2 s,
2–4 s, … up to 32–64 s (or Retry-After's), at most 8 retries and never past 5 minutes in
all; then the request fails ("Google keeps failing: HTTP 429 …") and the next sync
retries. A server not reached at all (connection refused, time-out) is retried as CalDAV's
are, for seconds: minutes of waiting would not bring it back.

Microsoft asks the same of Graph (429 with Retry-After when a mailbox is over its limits, 503
and 5xx likewise; back off exponentially where no Retry-After is given): `MICROSOFT_BACKOFF`.
One session is one connection and sends its requests one after the other, so a target never
has more than one request in flight (Outlook allows four per mailbox).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from followsync.backends.davhttp import (
    DAV_BACKOFF,
    RETRY_STATUSES,
    Backoff,
    DavSession,
    Response,
)
from followsync.errors import TargetError

RATE_REASONS = ("rateLimitExceeded", "userRateLimitExceeded")
GOOGLE_BACKOFF = Backoff(retries=8, budget=300.0, first=2.0, cap=64.0, spread=0.5)
QUICK_BACKOFF = Backoff(retries=2, budget=10.0, first=2.0, cap=64.0, spread=0.5)
MICROSOFT_BACKOFF = Backoff(retries=8, budget=300.0, first=2.0, cap=64.0, spread=0.5)
ONCE = Backoff(retries=0, budget=0.0)  # `resend=False`: a request that must not go twice


class Unanswered(TargetError):
    """A request sent with `resend=False` got no answer (it may have landed or not)."""


class Bearer(Protocol):
    """The access tokens of one target (`googleauth.Tokens`)."""

    def access(self) -> str: ...

    def refresh(self) -> str: ...


class ApiSession:
    """Keep-alive requests to one host with a bearer token: 429, 5xx and 403 rate limits
    are retried with `backoff`, network errors briefly (davhttp's loop), a 401 refreshes the
    token once. Nothing is sent to another host and no redirect is followed."""

    def __init__(self, base_url: str, tokens: Bearer | None, *, timeout: float = 30.0,
                 backoff: Backoff = GOOGLE_BACKOFF, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None, label: str = "?",
                 verify: bool | str = True, service: str = "Google",
                 retryable: Callable[[Response], bool] | None = None) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.label = label  # the target's name, for messages
        self.service = service  # whose API, for messages ("Google refused the access token")
        self.retryable = retryable or google_retryable
        self.dav = DavSession(base_url, None, None, verify=verify, timeout=timeout,
                              backoff=backoff, network=DAV_BACKOFF, sleep=sleep, clock=clock)

    @property
    def count(self) -> int:
        return self.dav.count

    def close(self) -> None:
        self.dav.close()

    def call(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, *, resend: bool = True) -> Response:
        """One request; `resend=False` sends it again only after a 429 or 503, never after
        a lost answer or another 5xx (a create that may have landed is looked for before it
        is sent again): `Unanswered`."""
        dav = self.dav
        target = urlsplit(urljoin(self.base_url, path))
        if (target.hostname, target.port) != (dav.host, dav.port):
            raise TargetError(f"refusing to send a request to another host: {target.hostname}")
        where = target.path + (f"?{target.query}" if target.query else "")
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        sent = {"User-Agent": "followsync", "Accept": "application/json", **(headers or {})}
        if isinstance(body, dict):
            sent["Content-Type"] = "application/json; charset=utf-8"
        tokens = self.tokens
        authorize = (lambda: f"Bearer {tokens.access()}") if tokens is not None else None
        retryable = self.retryable

        def send() -> Response:
            if resend:
                return dav.send(method, where, data, sent, authorize=authorize,
                                retryable=retryable)
            try:  # only answers that say it was not done are worth waiting for
                answer = dav.send(method, where, data, sent, authorize=authorize,
                                  retryable=not_done, network=ONCE)
            except TargetError as exc:
                raise Unanswered(str(exc), exc.hint) from None
            if answer.status >= 500 and not not_done(answer):  # 500, 502, 504: done or not?
                raise Unanswered(f"{self.service} answered HTTP {answer.status} to {method} "
                                 f"{target.path}", "the next sync retries")
            return answer

        response = send()
        if response.status == 401 and tokens is not None:
            tokens.refresh()  # once: a token revoked meanwhile, or a clock that is off
            response = send()
        if response.status == 401:
            raise TargetError(f"target {self.label}: {self.service} refused the access token "
                              "(HTTP 401)", f"run `followsync auth {self.label}`")
        if 300 <= response.status < 400:
            raise TargetError(f"{dav.host} redirected {target.path}; followsync does not "
                              "follow redirects", "check `endpoint:`")
        if retryable(response):
            raise TargetError(f"{self.service} keeps failing: HTTP {response.status} "
                              f"({reason(response) or 'no reason given'}) for {method} "
                              f"{target.path}", "the next sync retries")
        return response


def error_message(response: Response) -> str:
    """The `error.message` of a JSON error answer (Google's and Graph's shape), or ""."""
    try:
        return str(json.loads(response.body or b"{}")["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return ""


def json_object(response: Response, service: str) -> dict[str, Any]:
    """An answer's JSON object; anything else is the service's TargetError."""
    try:
        data = json.loads(response.body or b"{}")
    except ValueError:
        raise TargetError(f"{service}'s answer is not JSON (HTTP {response.status})") from None
    if not isinstance(data, dict):
        raise TargetError(f"{service}'s answer is not a JSON object")
    return data


def not_done(response: Response) -> bool:
    """429 and 503: the request was refused before it was carried out (throttled, busy), so
    even a create is safe to send again; a 500, 502 or 504 may come after it was done."""
    return response.status in (429, 503)


def google_retryable(response: Response) -> bool:
    """5xx, 429, and Google's 403 rate limits: worth sending again after a wait."""
    return response.status in RETRY_STATUSES or (
        response.status == 403 and reason(response) in RATE_REASONS)


retryable = google_retryable  # (the name other modules knew)


def microsoft_retryable(response: Response) -> bool:
    """429, 503 and the other 5xx Graph answers when busy: worth sending again."""
    return response.status in RETRY_STATUSES


def reason(response: Response) -> str:
    """Google's short reason for an error ("rateLimitExceeded"), or ""."""
    try:
        error = json.loads(response.body or b"{}").get("error", {})
        errors = error.get("errors") or [{}]
        code = error.get("code")  # Graph: {"error": {"code": "ErrorItemNotFound", ...}}
        return str(errors[0].get("reason") or error.get("status") or
                   (code if isinstance(code, str) else "") or "")[:60]
    except (ValueError, AttributeError, TypeError):
        return ""
