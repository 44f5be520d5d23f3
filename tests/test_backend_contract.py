"""The contract every backend (memory, .ics file, CalDAV on real servers) must pass.

Each test runs once per backend kind through a `Harness`: `open()` gives the backend of one
sync session (listing → reads/writes → commit → close, as the engine uses it), and the
`other_*` methods play "another calendar app" writing to the same calendar directly
(the MemoryBackend's dict, the .ics file's text, raw HTTP to the CalDAV server).

CalDAV params run against REAL Radicale and Xandikos processes (tests/servers.py), a fresh
calendar per test. The google param runs against the local emulation of Google's Calendar API
(tests/googleemu.py, itself checked with Google's client libraries in tests/test_googleemu.py);
Google takes events only, so its harness writes events where the others write to-dos.
The microsoft param runs against the emulation of Microsoft Graph (tests/msemu.py, checked
with msal and msgraph-sdk in tests/test_msemu.py); Outlook takes events only too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followsync.backends.base import Backend, Listing
from followsync.backends.icsfile import IcsFileBackend
from followsync.backends.memory import MemoryBackend
from followsync.errors import Conflict, TargetError
from followsync.marks import is_owned, uid_of
from followsync.model import Remote
from followsync.render import normalise
from tests.servers import CalendarInfo

# radicale-digest: Radicale behind a proxy demanding HTTP Digest (tests/digestproxy.py);
# google: the google target against the emulation of Google's API (tests/googleemu.py)
KINDS = ["memory", "ics", "radicale", "xandikos", "radicale-digest", "google", "microsoft"]
CRLF = "\r\n"


# ============================================================================ item texts
def item(uid: str, summary: str = "Follow up: Dana Whitfield (Acme Corp) — ping", *,
         owned: bool = True, comp: str = "VEVENT", lead: str = "dana-acme",
         rule: str = "cadence", day: date = date(2031, 1, 6), description: str = "",
         sequence: int = 0) -> str:
    """A standalone VCALENDAR with one item; `owned` items carry followsync's marks."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//followsync//tests//EN",
             f"BEGIN:{comp}", f"UID:{uid}", "DTSTAMP:20300101T000000Z", f"SEQUENCE:{sequence}",
             f"DTSTART:{day:%Y%m%d}T090000Z"]
    if comp == "VTODO":
        lines += [f"DUE:{day:%Y%m%d}T090000Z", "STATUS:NEEDS-ACTION"]
    else:
        lines += [f"DTEND:{day:%Y%m%d}T091500Z", "TRANSP:TRANSPARENT"]
    lines.append(f"SUMMARY:{summary}")
    if description:
        lines.append(f"DESCRIPTION:{description}")
    if owned:
        lines += ["CATEGORIES:followsync", f"X-FOLLOWSYNC-LEAD:{lead}",
                  f"X-FOLLOWSYNC-RULE:{rule}"]
    lines += [f"END:{comp}", "END:VCALENDAR"]
    return CRLF.join(_fold(line) for line in lines) + CRLF


def _fold(line: str) -> str:
    """Fold at 75 octets without splitting a UTF-8 character."""
    out, current = [], b""
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > (75 if not out else 74):
            out.append(current.decode())
            current = b""
        current += encoded
    out.append(current.decode())
    return (CRLF + " ").join(out)


def foreign(uid: str, summary: str = "Dentist", **kwargs: Any) -> str:
    return item(uid, summary, owned=False, **kwargs)


def rendered_item(uid: str, kind: str = "event", action: str = "Ask about the role") -> str:
    """A real rendered follow-up: timed, with TZID + VTIMEZONE, two alarms, long DESCRIPTION."""
    from followsync.durations import Duration
    from followsync.render import render
    from followsync.rules import FollowUp, Person

    person = Person("Dana Whitfield", "Acme Corp", "President", "dana@acme.example",
                    "+1 555 0100", "https://www.linkedin.com/in/example", "waiting",
                    "Offered to “make” a marketing position once the budget allows. " * 3)
    follow_up = FollowUp("dana-acme", "cadence", date(2031, 1, 6), time(9, 0),
                         Duration(15, "m"), (Duration(0, "m"), Duration(1, "d")),
                         "todo" if kind == "todo" else "event", action,
                         f"Dana Whitfield: {action}",
                         "2nd follow-up: last touch 2030-11-06 (emailed thanks) + 2mo",
                         person, 0, 1)
    return render(follow_up, uid=uid, kind=kind,  # type: ignore[arg-type]
                  zone=ZoneInfo("Europe/Berlin"), stamp=datetime(2030, 12, 1, tzinfo=UTC))


def new_uid(tag: str = "") -> str:
    return f"followsync-dana-acme-{tag or 'cadence'}-{uuid.uuid4().hex[:10]}"


_UID_RE = re.compile(r"^UID(?:;[^:\r\n]*)?:(.*?)\r?$", re.MULTILINE)


def _uid_in(text: str) -> str | None:
    """The UID, found without followsync's own helpers."""
    found = _UID_RE.search(re.sub(r"\r?\n[ \t]", "", text))
    return found.group(1).strip() if found else None


# ============================================================================ harnesses
class Harness:
    kind: str
    todos = True  # the calendar takes VTODO items

    def open(self) -> Backend:  # one sync session's backend
        raise NotImplementedError

    def other_put(self, uid: str, text: str) -> None:
        """Another app writes an item (replacing the one with that UID, if any)."""
        raise NotImplementedError

    def other_delete(self, uid: str) -> None:
        raise NotImplementedError

    def other_raw(self) -> dict[str, bytes]:
        """UID → the item's stored bytes, as another app would read them."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryHarness(Harness):
    kind = "memory"

    def __init__(self, components: tuple[str, ...] = ("VEVENT", "VTODO")) -> None:
        self.backend = MemoryBackend(components)

    def open(self) -> Backend:
        return self.backend

    def _href(self, uid: str) -> str | None:
        return next((h for h, (_, t) in self.backend.items.items() if _uid_in(t) == uid), None)

    def other_put(self, uid: str, text: str) -> None:
        self.backend.put_foreign(self._href(uid) or f"other-{uid}.ics", text)

    def other_delete(self, uid: str) -> None:
        href = self._href(uid)
        assert href is not None
        del self.backend.items[href]

    def other_raw(self) -> dict[str, bytes]:
        return {str(_uid_in(t)): t.encode() for _, t in self.backend.items.values()}


class IcsHarness(Harness):
    """The other app edits the file as text; a tiny splitter of its own (not icsfile.parse)."""

    kind = "ics"
    HEAD = ("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Other App//EN",
            "X-WR-CALNAME:Mine", "BEGIN:VTIMEZONE", "TZID:Europe/Paris", "BEGIN:STANDARD",
            "DTSTART:19701025T030000", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100",
            "END:STANDARD", "END:VTIMEZONE")

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> Backend:
        return IcsFileBackend(self.path, label="t")

    def _split(self) -> tuple[list[str], list[list[str]], list[str]]:
        """(calendar lines before the first item, items as line lists, closing lines)."""
        if not self.path.exists():
            return [line + CRLF for line in self.HEAD], [], ["END:VCALENDAR" + CRLF]
        lines = self.path.read_bytes().decode().splitlines(keepends=True)
        head: list[str] = []
        items: list[list[str]] = []
        tail: list[str] = []
        depth, current = 0, None
        for line in lines:
            bare = line.rstrip("\r\n").upper()
            if bare == "END:VCALENDAR":
                tail.append(line)
                continue
            if depth == 0 and bare in ("BEGIN:VEVENT", "BEGIN:VTODO", "BEGIN:VJOURNAL"):
                current = []
                items.append(current)
            if bare.startswith("BEGIN:") and bare != "BEGIN:VCALENDAR":
                depth += 1
            if bare.startswith("END:"):
                depth -= 1
            (current if current is not None else head if not items else tail).append(line)
            if depth == 0:
                current = None
        return head, items, tail

    def _write(self, head: list[str], items: list[list[str]], tail: list[str]) -> None:
        self.path.write_bytes("".join(head + [x for i in items for x in i] + tail).encode())

    def other_put(self, uid: str, text: str) -> None:
        head, items, tail = self._split()
        body = text.splitlines(keepends=True)
        start = next(i for i, x in enumerate(body) if x.startswith(("BEGIN:VEVENT",
                                                                       "BEGIN:VTODO")))
        end = max(i for i, x in enumerate(body) if x.startswith(("END:VEVENT", "END:VTODO")))
        block = body[start:end + 1]
        for index, existing in enumerate(items):
            if _uid_in("".join(existing)) == uid:
                items[index] = block
                break
        else:
            items.append(block)
        self._write(head, items, tail)

    def other_delete(self, uid: str) -> None:
        head, items, tail = self._split()
        kept = [i for i in items if _uid_in("".join(i)) != uid]
        assert len(kept) == len(items) - 1
        self._write(head, kept, tail)

    def other_raw(self) -> dict[str, bytes]:
        return {str(_uid_in("".join(i))): "".join(i).encode() for i in self._split()[1]}


class CaldavHarness(Harness):
    def __init__(self, info: CalendarInfo, url: str | None = None) -> None:
        from followsync.backends.caldav import CaldavBackend

        self.kind = info.kind
        self.info = info
        self.target = info.target(url=url)
        self._make = CaldavBackend
        self.opened: list[Any] = []

    def open(self) -> Backend:
        backend = self._make(self.target)
        self.opened.append(backend)
        return backend  # type: ignore[no-any-return]

    def _by_uid(self) -> dict[str, tuple[str, bytes]]:
        found = {}
        for href in self.info.hrefs():
            status, body, _ = self.info.get_raw(href)
            assert status == 200, (status, href)
            found[str(_uid_in(body.decode()))] = (href, body)
        return found

    def other_put(self, uid: str, text: str) -> None:
        href = self._by_uid().get(uid, (f"other-app-{uuid.uuid4().hex[:8]}.ics", b""))[0]
        status, _ = self.info.put_raw(href, text)
        assert status in (200, 201, 204), status

    def other_delete(self, uid: str) -> None:
        href = self._by_uid()[uid][0]
        assert self.info.delete_raw(href) in (200, 204)

    def other_raw(self) -> dict[str, bytes]:
        return {uid: body for uid, (_, body) in self._by_uid().items()}

    def close(self) -> None:
        for backend in self.opened:
            backend.close()


class GoogleHarness(Harness):
    """The other app is Google Calendar's own UI or another API client: it writes the
    emulation's events directly (a foreign item is an event with that iCalUID and no
    followsync properties; an owned one carries them, as a restore or a second followsync
    would write)."""

    kind = "google"
    todos = False

    def __init__(self, tmp_path: Path) -> None:
        import json as _json
        import os

        from followsync.backends.google import GoogleBackend
        from followsync.googleauth import GoogleSettings, TokenStore
        from tests.googleemu import GoogleEmu

        os.environ["FOLLOWSYNC_NO_KEYRING"] = "1"
        self.emu = GoogleEmu().start()
        client = tmp_path / "client.json"
        client.write_text(_json.dumps({"installed": {
            "client_id": self.emu.client_id, "client_secret": self.emu.client_secret}}))
        self.settings = GoogleSettings("t", "Follow-ups", client, tmp_path / "state",
                                       endpoint=self.emu.url)
        refresh, _ = self.emu.issue_tokens()
        TokenStore(self.settings, self.emu.client_id).keep_refresh(refresh)
        self.calendar = self.emu.add_calendar("Follow-ups").id
        self._make = GoogleBackend
        self.opened: list[Any] = []

    def open(self) -> Backend:
        backend = self._make(self.settings)
        self.opened.append(backend)
        return backend  # type: ignore[no-any-return]

    def _by_uid(self) -> dict[str, dict[str, Any]]:
        found = {}
        for event in self.emu.live(self.calendar):
            private = (event.get("extendedProperties") or {}).get("private") or {}
            found[private.get("followsync_uid") or event["iCalUID"]] = event
        return found

    def other_put(self, uid: str, text: str) -> None:
        import json as _json

        from followsync.backends.google import to_event

        if text.lstrip().startswith("{"):  # restored from other_raw's bytes
            self.emu.put_event(self.calendar, _json.loads(text))
            return
        if "BEGIN:VTODO" in text:  # Google has no to-dos: the other app writes an event
            text = re.sub(r"(?m)^(DUE|STATUS):.*\r?\n", "", text).replace("VTODO", "VEVENT")
        body, _ = to_event(uid, text)
        if not is_owned(text):
            body["extendedProperties"] = {}
            body["iCalUID"] = uid
        existing = self._by_uid().get(uid)
        self.emu.put_event(self.calendar, body, existing["id"] if existing else None)

    def other_delete(self, uid: str) -> None:
        self.emu.delete_event(self.calendar, self._by_uid()[uid]["id"])

    def other_raw(self) -> dict[str, bytes]:
        import json as _json

        keys = ("summary", "description", "start", "end", "reminders", "extendedProperties",
                "transparency", "etag", "status")
        return {uid: _json.dumps({k: e[k] for k in keys if k in e}, sort_keys=True,
                                 ensure_ascii=False).encode()
                for uid, e in self._by_uid().items()}

    def close(self) -> None:
        for backend in self.opened:
            backend.close()
        self.emu.stop()


class FixedBearer:
    """An access token issued by an emulation, handed out as is (apisession.Bearer)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def access(self) -> str:
        return self.token

    def refresh(self) -> str:
        return self.token


class MicrosoftHarness(Harness):
    """The other app is Outlook or another Graph client: it writes the emulation's events
    directly. An event carries a UID only through followsync's mark, so another app's item
    "with that UID" is an event with the mark and no followsync data (as a second tool
    reusing the property would write); an owned one carries both, as a restore would."""

    kind = "microsoft"
    todos = False
    TODAY = date(2030, 12, 1)  # the sync's day: 2031's items lie in the delta window

    def __init__(self, tmp_path: Path) -> None:
        from followsync.backends.microsoft import MicrosoftBackend
        from followsync.msauth import MicrosoftSettings
        from tests.msemu import MsEmu

        self.emu = MsEmu().start()
        self.settings = MicrosoftSettings(
            name="t", client_id=self.emu.client_id, state_dir=tmp_path / "state",
            endpoint=self.emu.url, verify=self.emu.ca_path, calendar="Follow-ups",
            zone="Europe/Berlin")
        self.tokens = FixedBearer(self.emu.issue_tokens(["Calendars.ReadWrite"])[0])
        self.calendar = self.emu.add_calendar("Follow-ups").id
        self._make = MicrosoftBackend
        self.opened: list[Any] = []

    def open(self) -> Backend:
        backend = self._make(self.settings, tokens=self.tokens, today=self.TODAY)
        self.opened.append(backend)
        return backend  # type: ignore[no-any-return]

    def _by_uid(self) -> dict[str, dict[str, Any]]:
        from followsync.backends.microsoft import MARK

        found = {}
        for event in self.emu.live(self.calendar):
            props = {p["id"]: p["value"] for p in event["singleValueExtendedProperties"]}
            found[props.get(MARK) or event["iCalUId"]] = event
        return found

    def other_put(self, uid: str, text: str) -> None:
        import json as _json

        from followsync.backends.microsoft import MARK, to_event

        existing = self._by_uid().get(uid)
        if text.lstrip().startswith("{"):  # restored from other_raw's bytes
            body = {k: v for k, v in _json.loads(text).items() if k != "@odata.etag"}
        else:
            if "BEGIN:VTODO" in text:  # Outlook keeps no to-dos here: the other app's event
                text = re.sub(r"(?m)^(DUE|STATUS):.*\r?\n", "", text).replace("VTODO",
                                                                                "VEVENT")
            body, _ = to_event(uid, text)
            if not is_owned(text):
                body["singleValueExtendedProperties"] = [{"id": MARK, "value": uid}]
        if existing:
            self.emu.edit_event(existing["id"], body)
        else:
            self.emu.add_event(self.calendar, body)

    def other_delete(self, uid: str) -> None:
        self.emu.delete_event(self._by_uid()[uid]["id"])

    def other_raw(self) -> dict[str, bytes]:
        import json as _json

        keys = ("subject", "body", "start", "end", "isAllDay", "isReminderOn",
                "reminderMinutesBeforeStart", "showAs", "categories",
                "singleValueExtendedProperties", "@odata.etag")
        return {uid: _json.dumps({k: e[k] for k in keys if k in e}, sort_keys=True,
                                 ensure_ascii=False).encode()
                for uid, e in self._by_uid().items()}

    def close(self) -> None:
        for backend in self.opened:
            backend.close()
        self.emu.stop()


def make_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                 components: tuple[str, ...] = ("VEVENT", "VTODO"),
                 url_form: str = "root") -> Harness:
    if kind == "memory":
        return MemoryHarness(components)
    if kind == "ics":
        return IcsHarness(tmp_path / "calendar.ics")
    if kind == "google":
        return GoogleHarness(tmp_path)
    if kind == "microsoft":
        return MicrosoftHarness(tmp_path)
    pytest.importorskip("followsync.backends.caldav")
    maker = request.getfixturevalue("make_dav_calendar")
    base = kind.removesuffix("-digest")
    info: CalendarInfo = maker(base, components)
    url = {"root": info.url, "principal": info.principal_url,
           "calendar": info.calendar_url}[url_form]
    if base == kind:
        return CaldavHarness(info, url)
    from tests.digestproxy import DIGEST_PASSWORD, DIGEST_USER, start_digest_proxy

    proxy = start_digest_proxy(info.server)
    request.addfinalizer(proxy.stop)
    made = CaldavHarness(info, proxy.url_for(url))
    made.target = dataclasses.replace(made.target, username=DIGEST_USER,
                                      password=DIGEST_PASSWORD)
    return made


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(request.param, request, tmp_path)
    try:
        yield made
    finally:
        made.close()


def known_bug(*kinds: str, reason: str) -> Callable[[pytest.FixtureRequest], None]:
    """Mark the running param xfail(strict) when it is one of `kinds` (a bug reported to the
    lead: once fixed, the XPASS fails the run so the mark gets removed)."""
    def apply(request: pytest.FixtureRequest) -> None:
        if request.node.callspec.params.get("harness") in kinds:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    return apply


# ============================================================================ session helpers
def session(h: Harness, known: dict[str, Remote] | None = None,
            cursor: str | None = None) -> tuple[Backend, Listing]:
    backend = h.open()
    return backend, backend.listing(known or {}, cursor)


def finish(backend: Backend) -> str | None:
    cursor = backend.commit()
    backend.close()
    return cursor


def listed(h: Harness) -> Listing:
    """A full listing in a fresh session (no state, no cursor)."""
    backend, listing = session(h)
    finish(backend)
    return listing


def add_foreign(h: Harness, summary: str = "Team lunch") -> str:
    uid = new_uid("foreign")
    h.other_put(uid, foreign(uid, summary))
    return uid


def todo(h: Harness) -> str:
    """The component of a to-do item: VTODO, or VEVENT where the calendar takes events only."""
    return "VTODO" if h.todos else "VEVENT"


def assert_remote(remote: Remote) -> None:
    assert isinstance(remote, Remote)
    assert isinstance(remote.href, str) and remote.href
    assert isinstance(remote.etag, str) and remote.etag


# ============================================================================ the contract
def test_empty_calendar_lists_nothing(harness: Harness) -> None:
    backend, listing = session(harness)
    assert listing.items == {}
    assert listing.unchanged is False
    assert listing.foreign == 0
    assert backend.supports("VEVENT") is True
    assert backend.find(new_uid()) is None
    finish(backend)


def test_create_then_listing_shows_the_uid_with_its_etag(harness: Harness) -> None:
    uid_a, uid_b = new_uid("a"), new_uid("b")
    backend, _ = session(harness)
    remote_a = backend.create(uid_a, item(uid_a))
    remote_b = backend.create(uid_b, item(uid_b, comp=todo(harness), rule="once-x"))
    assert_remote(remote_a)
    assert_remote(remote_b)
    assert remote_a.href != remote_b.href
    finish(backend)
    # what create returned is exactly what the next sync lists: else every sync sees a change
    assert listed(harness).items == {uid_a: remote_a, uid_b: remote_b}


def test_create_of_an_existing_uid_raises_conflict(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    remote = backend.create(uid, item(uid, "first"))
    with pytest.raises(Conflict):
        backend.create(uid, item(uid, "second, same session"))
    finish(backend)
    backend, listing = session(harness)
    assert listing.items == {uid: remote}
    with pytest.raises(Conflict):
        backend.create(uid, item(uid, "third, next session"))
    finish(backend)
    assert listed(harness).items == {uid: remote}
    assert "first" in harness.other_raw()[uid].decode()


def test_create_over_a_foreign_item_with_that_uid_conflicts_and_find_locates_it(
        harness: Harness) -> None:
    uid = new_uid()
    harness.other_put(uid, foreign(uid, "Lunch with Dana (the other app's)"))
    before = harness.other_raw()
    backend, listing = session(harness)
    assert listing.items == {}
    with pytest.raises(Conflict):
        backend.create(uid, item(uid))
    found = backend.find(uid)
    assert found is not None
    text = backend.get(found)
    assert uid_of(text) == uid and not is_owned(text)  # the engine then leaves it alone
    finish(backend)
    assert harness.other_raw() == before
    assert listed(harness).items == {}


def test_get_returns_the_text(harness: Harness) -> None:
    uid = new_uid()
    long = "Notes: " + "ünïcødé — “quoted” 日本語 " * 12  # folded lines, multibyte characters
    text = item(uid, "Follow up: Zoë Ørsted (Ü Corp) — ask about the rôle", description=long)
    backend, _ = session(harness)
    remote = backend.create(uid, text)
    got = backend.get(remote)
    assert isinstance(got, str)
    assert uid_of(got) == uid and is_owned(got)
    assert normalise(got) == normalise(text)
    finish(backend)
    backend, listing = session(harness)
    assert normalise(backend.get(listing.items[uid])) == normalise(text)
    finish(backend)


@pytest.mark.parametrize("kind", ["event", "todo"])
def test_a_rendered_item_round_trips(harness: Harness, kind: str) -> None:
    if kind == "todo" and not harness.todos:
        pytest.skip("this calendar takes events only")
    uid = new_uid(kind)
    text = rendered_item(uid, kind)
    backend, _ = session(harness)
    remote = backend.create(uid, text)
    finish(backend)
    backend, listing = session(harness)
    assert listing.items == {uid: remote}
    got = backend.get(remote)
    finish(backend)
    assert normalise(got) == normalise(text)
    assert "X-FOLLOWSYNC-RULE:cadence" in got.replace("\r\n", "\n")


def test_update_with_the_current_etag_works_and_changes_the_etag(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    first = backend.create(uid, item(uid, "before"))
    finish(backend)
    backend, listing = session(harness)
    assert listing.items[uid] == first
    second = backend.update(first, item(uid, "after", sequence=1))
    assert_remote(second)
    assert second.href == first.href
    assert second.etag != first.etag
    assert "after" in backend.get(second)
    third = backend.update(second, item(uid, "after again", sequence=2))  # same session, again
    assert third.etag not in (first.etag, second.etag)
    finish(backend)
    assert listed(harness).items == {uid: third}
    assert "after again" in harness.other_raw()[uid].decode()


def test_update_with_a_stale_etag_raises_conflict_and_changes_nothing(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    first = backend.create(uid, item(uid, "v1"))
    second = backend.update(first, item(uid, "v2", sequence=1))
    with pytest.raises(Conflict):
        backend.update(first, item(uid, "v3 from a stale etag", sequence=2))
    assert "v2" in backend.get(second)
    finish(backend)
    assert listed(harness).items == {uid: second}
    raw = harness.other_raw()[uid].decode()
    assert "v2" in raw and "v3" not in raw


def test_update_and_delete_after_another_app_edited_the_item_conflict(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    first = backend.create(uid, item(uid, "ours"))
    finish(backend)
    harness.other_put(uid, item(uid, "moved in the calendar app", day=date(2031, 2, 1)))
    edited = harness.other_raw()[uid]
    backend, listing = session(harness, {uid: first})
    assert listing.items[uid].etag != first.etag
    with pytest.raises(Conflict):
        backend.update(first, item(uid, "ours, overwriting", sequence=1))
    with pytest.raises(Conflict):
        backend.delete(first)
    finish(backend)
    assert harness.other_raw()[uid] == edited


def test_delete_with_a_stale_etag_raises_conflict_and_changes_nothing(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    first = backend.create(uid, item(uid, "v1"))
    second = backend.update(first, item(uid, "v2", sequence=1))
    with pytest.raises(Conflict):
        backend.delete(first)
    assert backend.find(uid) == second
    finish(backend)
    assert listed(harness).items == {uid: second}
    assert "v2" in harness.other_raw()[uid].decode()


def test_delete_works(harness: Harness) -> None:
    keep, drop = new_uid("keep"), new_uid("drop")
    backend, _ = session(harness)
    kept = backend.create(keep, item(keep))
    dropped = backend.create(drop, item(drop))
    finish(backend)
    backend, _ = session(harness, {keep: kept, drop: dropped})
    backend.delete(dropped)
    assert backend.find(drop) is None
    finish(backend)
    assert listed(harness).items == {keep: kept}
    assert set(harness.other_raw()) == {keep}


def test_writes_to_an_item_deleted_by_another_app_do_not_bring_it_back(
        harness: Harness) -> None:
    """Update → Conflict. Delete → Conflict or success (a 404 is "already gone"); either way
    nothing is recreated."""
    uid = new_uid()
    backend, _ = session(harness)
    remote = backend.create(uid, item(uid))
    cursor = finish(backend)
    harness.other_delete(uid)  # on Radicale the calendar is back in its first state
    backend, listing = session(harness, {uid: remote}, cursor)
    assert uid not in listing.items
    assert listing.unchanged is False
    with pytest.raises(Conflict):
        backend.update(remote, item(uid, "resurrected?", sequence=1))
    try:
        backend.delete(remote)
    except Conflict:
        pass
    assert backend.find(uid) is None
    finish(backend)
    assert listed(harness).items == {}
    assert harness.other_raw() == {}


def test_foreign_items_are_never_listed_and_never_touched(harness: Harness) -> None:
    plain, half, task = new_uid("plain"), new_uid("half"), new_uid("task")
    harness.other_put(plain, foreign(plain, "Dentist"))
    # followsync's category and rule but no X-FOLLOWSYNC-LEAD: still not ours
    harness.other_put(half, foreign(half, "Looks like ours").replace(
        "END:VEVENT", "CATEGORIES:followsync\r\nX-FOLLOWSYNC-RULE:cadence\r\nEND:VEVENT"))
    harness.other_put(task, foreign(task, "Buy milk", comp="VTODO"))
    before = harness.other_raw()
    assert set(before) == {plain, half, task}

    a, b = new_uid("a"), new_uid("b")
    backend, listing = session(harness)
    assert listing.items == {}
    assert listing.foreign == 3
    ra = backend.create(a, item(a))
    rb = backend.create(b, item(b))
    ra = backend.update(ra, item(a, "changed", sequence=1))
    backend.delete(rb)
    assert backend.find(b) is None
    cursor = finish(backend)
    backend, listing = session(harness, {a: ra}, cursor)
    assert listing.items == {a: ra}
    backend.get(ra)
    finish(backend)
    assert listed(harness).items == {a: ra}
    after = harness.other_raw()
    assert {uid: after[uid] for uid in before} == before  # byte for byte
    assert set(after) == {plain, half, task, a}


def test_an_item_another_app_adds_during_a_session_survives_the_commit(
        harness: Harness) -> None:
    mine, theirs = new_uid("mine"), new_uid("theirs")
    backend, _ = session(harness)
    harness.other_put(theirs, foreign(theirs, "Saved by the calendar app mid-sync"))
    saved = harness.other_raw()[theirs]
    try:
        backend.create(mine, item(mine))
        finish(backend)
    except (Conflict, TargetError):
        pass  # refusing to commit is fine too; losing their event is not
    assert harness.other_raw().get(theirs) == saved


def test_a_no_op_listing_with_the_cursor_reports_unchanged_or_the_same_items(
        harness: Harness) -> None:
    a, b = new_uid("a"), new_uid("b")
    add_foreign(harness)
    backend, _ = session(harness)
    known = {a: backend.create(a, item(a)), b: backend.create(b, item(b, comp=todo(harness)))}
    cursor = finish(backend)
    for _ in range(2):
        backend, listing = session(harness, known, cursor)
        assert listing.items == known, "a no-op listing must still give every item"
        assert listing.unchanged or listing.items == known
        cursor = finish(backend)
        assert cursor is None or isinstance(cursor, str)


def test_a_listing_with_the_cursor_sees_what_changed_behind_our_back(harness: Harness) -> None:
    a, b, c, d = (new_uid(x) for x in "abcd")
    backend, _ = session(harness)
    known = {uid: backend.create(uid, item(uid, rule=f"once-{uid[-4:]}")) for uid in (a, b, c)}
    cursor = finish(backend)
    harness.other_put(a, item(a, "edited in the app", rule=f"once-{a[-4:]}"))
    harness.other_delete(b)
    add_foreign(harness)
    harness.other_put(d, item(d, "ours, restored from a backup"))
    backend, listing = session(harness, known, cursor)
    finish(backend)
    assert listing.unchanged is False
    assert set(listing.items) == {a, c, d}
    assert listing.items[a].etag != known[a].etag
    assert listing.items[c] == known[c]
    assert listed(harness).items == listing.items


def test_an_item_we_deleted_that_comes_back_is_listed_again(harness: Harness) -> None:
    """Restored from a backup byte for byte: some servers' sync tokens name the content, so
    the calendar's state (and token) is the one seen before our delete."""
    uid = new_uid()
    backend, _ = session(harness)
    remote = backend.create(uid, item(uid))
    cursor = finish(backend)
    saved = harness.other_raw()[uid]
    backend, listing = session(harness, {uid: remote}, cursor)
    backend.delete(listing.items[uid])
    cursor = finish(backend)
    harness.other_put(uid, saved.decode() if not isinstance(harness, IcsHarness)
                      else item(uid))
    backend, listing = session(harness, {}, cursor)
    finish(backend)
    assert set(listing.items) == {uid}
    assert listing.unchanged is False


# Statuses are free words (README, "The lead file") and `on_status` keys are not restricted, so a
# `status-<status>` rule gives UIDs with spaces, accents, slashes, % + &.
ODD_STATUSES = {"space": "on hold", "accent": "entrevistó", "slash": "yes/no",
                "percent": "50%+1 & co"}


@pytest.mark.parametrize("status", list(ODD_STATUSES.values()), ids=list(ODD_STATUSES))
def test_uids_with_spaces_accents_and_slashes(harness: Harness, status: str) -> None:
    from followsync.render import uid_for

    rule = f"status-{status}"
    uid = uid_for("phone", "dana", rule)
    backend, _ = session(harness)
    first = backend.create(uid, item(uid, rule=rule))
    assert backend.find(uid) == first
    cursor = finish(backend)
    assert set(harness.other_raw()) == {uid}
    assert listed(harness).items == {uid: first}
    backend, listing = session(harness, {uid: first}, cursor)
    assert listing.items == {uid: first}
    assert uid_of(backend.get(first)) == uid
    second = backend.update(first, item(uid, "v2", sequence=1))
    assert backend.find(uid) == second
    with pytest.raises(Conflict):
        backend.create(uid, item(uid, "again"))
    cursor = finish(backend)
    backend, listing = session(harness, {uid: second}, cursor)
    assert listing.items == {uid: second}
    backend.delete(second)
    finish(backend)
    assert listed(harness).items == {}
    assert harness.other_raw() == {}


def test_our_items_at_odd_hrefs_written_by_another_app_are_handled(harness: Harness) -> None:
    """Another client (a restore, a second followsync) may store our items at any href."""
    uid = new_uid("restored")
    if isinstance(harness, CaldavHarness):
        for name in ("Restored%20item%20%C3%A9.ics", "abc@host.example.ics"):
            status, _ = harness.info.put_raw(name, item(uid + name[:3], rule="once-" + name[:3]))
            assert status in (201, 204), status
        uids = {uid + "Res", uid + "abc"}
    else:
        for tag in ("Res", "abc"):
            harness.other_put(uid + tag, item(uid + tag, rule="once-" + tag))
        uids = {uid + "Res", uid + "abc"}
    backend, listing = session(harness)
    assert set(listing.items) == uids
    for found_uid, remote in listing.items.items():
        assert uid_of(backend.get(remote)) == found_uid
        assert backend.find(found_uid) == remote
        with pytest.raises(Conflict):  # its UID is taken, though not at the href we'd pick
            backend.create(found_uid, item(found_uid, "a duplicate?"))
        updated = backend.update(remote, item(found_uid, "rewritten", sequence=1))
        assert updated.href == remote.href
    cursor = finish(backend)
    backend, listing = session(harness, {}, cursor)
    assert set(listing.items) == uids or listing.unchanged
    for remote in listed(harness).items.values():
        backend.delete(remote)
    finish(backend)
    assert harness.other_raw() == {}


def test_find_locates_an_item(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    remote = backend.create(uid, item(uid))
    assert backend.find(uid) == remote
    finish(backend)
    backend, _ = session(harness)
    assert backend.find(uid) == remote
    assert backend.find(new_uid("missing")) is None
    updated = backend.update(remote, item(uid, "v2", sequence=1))
    assert backend.find(uid) == updated
    finish(backend)


def test_reads_write_nothing(harness: Harness) -> None:
    uid = new_uid()
    add_foreign(harness)
    backend, _ = session(harness)
    remote = backend.create(uid, item(uid))
    finish(backend)
    before = harness.other_raw()
    stamp = harness.path.stat().st_mtime_ns if isinstance(harness, IcsHarness) else None
    backend, listing = session(harness, {uid: remote})
    backend.get(listing.items[uid])
    backend.find(uid)
    backend.supports("VTODO")
    finish(backend)
    assert harness.other_raw() == before
    if isinstance(harness, IcsHarness):
        assert harness.path.stat().st_mtime_ns == stamp, "a no-op commit rewrote the file"
    if isinstance(harness, MemoryHarness):
        assert harness.backend.writes == 1


def test_commit_makes_the_writes_durable(harness: Harness) -> None:
    uid = new_uid()
    backend, _ = session(harness)
    remote = backend.create(uid, rendered_item(uid))
    if isinstance(harness, IcsHarness):
        assert not harness.path.exists(), "the .ics file is written at commit, not before"
    cursor = backend.commit()
    assert cursor is None or isinstance(cursor, str)
    backend.close()
    if isinstance(harness, IcsHarness):
        from icalendar import Calendar

        data = harness.path.read_bytes()
        cal = Calendar.from_ical(data)
        assert [str(c["uid"]) for c in cal.walk("VEVENT")] == [uid]
        assert len(cal.walk("VTIMEZONE")) == 1
        assert data.endswith(b"END:VCALENDAR\r\n")
    assert listed(harness).items == {uid: remote}
    assert set(harness.other_raw()) == {uid}


def test_supports_says_what_the_calendar_takes(request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    for kind in ("memory", "radicale", "xandikos", "google", "microsoft"):
        try:
            h = make_harness(kind, request, tmp_path, components=("VEVENT",))
        except pytest.skip.Exception:
            continue
        try:
            backend, _ = session(h)
            assert backend.supports("VEVENT") is True, kind
            assert backend.supports("VTODO") is False, kind
            finish(backend)
        finally:
            h.close()


# ============================================================================ CalDAV only
@pytest.mark.parametrize("server", ["radicale", "xandikos"])
@pytest.mark.parametrize("url_form", ["root", "principal", "calendar"])
def test_caldav_target_url_may_be_the_server_the_principal_or_the_calendar(
        request: pytest.FixtureRequest, tmp_path: Path, server: str, url_form: str) -> None:
    h = make_harness(server, request, tmp_path, url_form=url_form)
    assert isinstance(h, CaldavHarness)
    try:
        uid = new_uid()
        backend, listing = session(h)
        assert listing.items == {}
        remote = backend.create(uid, item(uid))
        finish(backend)
        assert h.info.path in remote.href or h.info.calendar_url.endswith(remote.href)
        assert set(h.other_raw()) == {uid}
    finally:
        h.close()


@pytest.mark.parametrize("server", ["radicale", "xandikos"])
def test_caldav_no_op_listing_fetches_no_item_bodies(
        request: pytest.FixtureRequest, fault_proxy: Callable[..., Any], server: str) -> None:
    """A no-op sync must be cheap (README, "Calendar providers"). Through a counting proxy:
    after a first sync, the next listing with the cursor must not GET or multiget any item."""
    pytest.importorskip("followsync.backends.caldav")
    from followsync.backends.caldav import CaldavBackend

    info: CalendarInfo = request.getfixturevalue("make_dav_calendar")(server)
    proxy = fault_proxy(info)
    target = info.target(url=proxy.url)
    uids = [new_uid(str(n)) for n in range(3)]
    backend = CaldavBackend(target)
    backend.listing({}, None)
    known = {uid: backend.create(uid, item(uid)) for uid in uids}
    cursor = backend.commit()
    backend.close()

    proxy.reset()
    backend = CaldavBackend(target)
    listing = backend.listing(known, cursor)
    backend.commit()
    backend.close()
    seen = proxy.seen()
    assert listing.items == known
    assert proxy.count("GET") == 0, seen
    assert proxy.count("PUT") == proxy.count("DELETE") == 0, seen
    assert len(seen) <= 2, seen
    request.node.user_properties.append(("no-op requests", [(s.method, s.path) for s in seen]))


def test_radicale_strict_preconditions_accepts_followsyncs_writes(
        request: pytest.FixtureRequest) -> None:
    """strict_preconditions: a PUT over an existing item without If-Match is a 412, so this
    passes only if every update carries its precondition."""
    pytest.importorskip("followsync.backends.caldav")
    info: CalendarInfo = request.getfixturevalue("radicale_strict_calendar")
    status, _ = info.put_raw("probe.ics", foreign("probe"))
    assert status == 201
    assert info.put_raw("probe.ics", foreign("probe", "again"))[0] == 412  # strict indeed
    h = CaldavHarness(info)
    try:
        uid = new_uid()
        backend, _ = session(h)
        first = backend.create(uid, item(uid))
        second = backend.update(first, item(uid, "v2", sequence=1))
        backend.delete(second)
        finish(backend)
        assert set(h.other_raw()) == {"probe"}
    finally:
        h.close()


def test_item_helper_folds_and_digests_stably() -> None:
    """The helpers above: long lines fold at 75 octets, texts are deterministic."""
    text = item("u", "x" * 200 + "é" * 50)
    assert all(len(line.encode()) <= 75 for line in text.split(CRLF))
    assert hashlib.sha256(text.encode()).digest() == hashlib.sha256(
        item("u", "x" * 200 + "é" * 50).encode()).digest()
    assert _uid_in(text) == "u" and is_owned(text) and not is_owned(foreign("u"))
