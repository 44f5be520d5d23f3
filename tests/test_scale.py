"""Issue 13: a sync costs what changed. The shortcuts must give exactly what the cold path gives.

- reading a lead file slice by slice (leadsplit + leadcache) gives the same leads as reading
  it whole, or steps aside (None) and lets the whole file decide, errors included;
- a sync that plans only the leads that changed writes byte for byte the .ics a cold sync
  writes (see the incremental tests below).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync import leads as L
from followsync.errors import ConfigError
from followsync.leadcache import LeadCache
from followsync.leadsplit import Slice, split
from tests.faultproxy import FaultProxy
from tests.googleemu import GoogleEmu
from tests.msemu import MsEmu
from tests.project import caldav_target
from tests.servers import CalendarInfo, Server, drop_calendar, fresh_calendar

HEAD = """\
# a lead file
version: 1

defaults:
  cadence: [2w, 1mo]
  on_other_status:
    offer: {after: 0d, do: "tell them"}

"""

_words = st.sampled_from(["Dana", "Lee", "R&D", "a: b", "#x", "*star", "&amp", "- dash",
                          "'q'", '"dq"', "line\nnext", "", "ü", "[y]", "~", "yes", "1"])
_ids = st.one_of(*[st.from_regex(r"[a-z][a-z0-9]{0,5}(-[0-9])?", fullmatch=True)] * 4,
                 st.sampled_from(["Dana", "a.b", "x_y", "9z", "dana"]))
_GOOD = ["org", "notes", "notes_block", "log", "log_flow", "status", "tags", "comment", "blank"]
_ODD = ["bad_date", "anchor", "alias", "quoted_multi", "tab", "unknown"]


@st.composite
def lead_text(draw: st.DrawFn) -> str:
    """One lead in one of many YAML shapes, sometimes broken or unusual on purpose."""
    lead_id = draw(_ids)
    indent = "  "
    inner = indent + draw(st.sampled_from(["  ", "  ", "  ", " ", "   "]))
    lines = [f"{indent}{lead_id}:"]
    if draw(st.integers(0, 12)) == 0:
        return f"{indent}{lead_id}: {{name: {json.dumps(draw(_words))}}}\n"
    lines.append(f"{inner}name: {json.dumps(draw(_words) or 'N')}")
    for key in draw(st.lists(st.sampled_from(_GOOD * 6 + _ODD), max_size=5, unique=True)):
        word = draw(_words)
        if key == "org":
            lines.append(f"{inner}org: {json.dumps(word)}")
        elif key == "notes":
            plain = draw(st.booleans()) and "\n" not in word
            lines.append(f"{inner}notes: {word if plain else json.dumps(word)}")
        elif key == "notes_block":
            lines += [f"{inner}notes: |", f"{inner}  {word.splitlines()[0] if word else 'n'}",
                      "", f"{inner}  # not a comment"]
        elif key == "log":
            lines += [f"{inner}log:", f"{inner}  - 2026-11-0{draw(st.integers(1, 9))} hi"]
        elif key == "log_flow":
            lines += [f"{inner}log: [{{date: 2026-10-01, by: them,",
                      f"{inner}  note: ok}}]"]
        elif key == "status":
            lines.append(f"{inner}status: {draw(st.sampled_from(['offer', 'waiting', 'won']))}")
        elif key == "tags":
            lines.append(f"{inner}tags: [a, b]")
        elif key == "comment":
            lines.append(draw(st.sampled_from(["# top comment", f"{inner}# inner", "  #x"])))
        elif key == "blank":
            lines.append("")
        elif key == "bad_date":
            lines.append(f"{inner}last_contact: 2026-13-01")
        elif key == "anchor":
            lines.append(f"{inner}org: &org Acme")
        elif key == "alias":
            lines.append(f"{inner}role: *org")
        elif key == "quoted_multi":
            lines += [f'{inner}role: "one', f'{indent}two: three"']
        elif key == "tab":
            lines.append(f"\t{inner}org: x")
        elif key == "unknown":
            lines.append(f"{inner}colour: red")
    return "\n".join(lines) + "\n"


@st.composite
def lead_file(draw: st.DrawFn) -> str:
    leads = draw(st.lists(lead_text(), min_size=1, max_size=6))
    tail = draw(st.sampled_from(["", "", "# the end\n", "version: 1\n", "extra: 1\n"]))
    text = HEAD + "leads:\n" + "\n".join(leads) + tail
    if draw(st.integers(0, 20)) == 0:  # a random cut or insertion: anything goes
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", ":", "\n", " ", "- ", "'"])) + text[at + 1:]
    return text


def _whole(text: str) -> tuple[L.Settings, list[tuple[str, L.Lead]]] | str:
    try:
        parsed, _ = L.parse_lead_file("leads.yaml", text.encode())
    except ConfigError as exc:
        return "error: " + "; ".join(str(p) for p in exc.problems)
    return parsed.defaults, list((parsed.leads or {}).items())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lead_file())
def test_reading_by_slices_gives_what_the_whole_file_gives(tmp_path_factory: pytest.TempPathFactory,
                                                           text: str) -> None:
    whole = _whole(text)
    parts = split(text)
    if parts is None:
        return
    folder = tmp_path_factory.mktemp("cache")
    cache = LeadCache(folder / "leads.yaml", parts.head_key, folder, L.CODEC)
    for _ in range(2):  # cold, then every lead from the cache
        quick = L._parse_by_slices("leads.yaml", parts, cache)
        if quick is not None:
            assert quick == whole, text


def test_a_big_file_is_read_by_slices_and_an_edit_reads_one_lead(tmp_path: Path) -> None:
    leads = "\n".join(f"  lead-{i}:\n    name: Lead {i}\n    notes: |\n      n{i}\n"
                      for i in range(200))
    path = tmp_path / "leads.yaml"
    path.write_text(HEAD + "leads:\n" + leads)
    first = L.load_leads([path])
    cold = L.load_leads([path])
    assert [(k, v.lead) for k, v in first.leads.items()] == \
        [(k, v.lead) for k, v in cold.leads.items()]
    parsed: list[str] = []
    real = L._read_batch

    def counting(file: str, pieces: list[Slice], cache: LeadCache) -> None:
        parsed.extend(piece.lead_id for piece in pieces)
        real(file, pieces, cache)

    path.write_text(HEAD + "leads:\n# moved down a line\n" + leads.replace("Lead 7\n", "Lead 7b\n"))
    L._read_batch = counting  # type: ignore[assignment]
    try:
        book = L.load_leads([path])
    finally:
        L._read_batch = real  # type: ignore[assignment]
    assert parsed == ["lead-7"]
    assert book.leads["lead-7"].lead.name == "Lead 7b"


def test_an_error_keeps_its_line_when_the_leads_around_it_moved(tmp_path: Path) -> None:
    leads = "".join(f"  lead-{i}:\n    name: Lead {i}\n" for i in range(50))
    path = tmp_path / "leads.yaml"
    path.write_text(HEAD + "leads:\n" + leads)
    L.load_leads([path])  # everything cached
    broken = leads.replace("  lead-30:\n    name: Lead 30\n",
                           "  lead-30:\n    name: Lead 30\n    last_contact: 2026-13-01\n")
    path.write_text(HEAD + "leads:\n\n\n# three lines more\n" + broken)
    with pytest.raises(ConfigError) as caught:
        L.load_leads([path])
    lines = (HEAD + "leads:\n\n\n# three lines more\n" + broken).splitlines()
    expected = lines.index("    last_contact: 2026-13-01") + 1
    assert [(p.line, p.col) for p in caught.value.problems] == [(expected, 19)]


# ------------------------------------------------------------ incremental sync = cold sync
_STATUSES = ["waiting", "offer", "applied", "won", None]


def _lead_yaml(lead_id: str, n: int, status: str | None, touch: int, extra: int) -> str:
    lines = [f"  {lead_id}:", f"    name: Person {lead_id.upper()} {n}"]
    if status:
        lines.append(f"    status: {status}")
    if touch:
        lines += ["    log:", f"      - 2026-{10 + touch % 2}-{10 + touch:02d} wrote"]
    if extra == 1:
        lines.append("    follow_ups: [{on: 2026-12-20, do: call}]")
    elif extra == 2:
        lines += ["    next: 2026-12-09", "    at: \"10:30\""]
    elif extra == 3:
        lines += ["    as: todo", "    all_day: true"]
    elif extra == 4:
        lines += ["    notes: |", "      a long note", "", "      # still the note"]
    return "\n".join(lines) + "\n"


_edit = st.tuples(st.sampled_from(["change", "status", "add", "remove", "touch", "move",
                                   "day", "defaults", "break", "nothing", "hand-delete",
                                   "hand-move", "hand-tick"]),
                  st.integers(0, 1000), st.sampled_from(_STATUSES), st.integers(0, 4))


def _sync(folder: Path, now: str, delta: bool) -> str:
    from datetime import datetime

    from followsync import sync
    from followsync.config import load_config
    from followsync.sync import delta as delta_module

    config = load_config(folder / "config.yaml")
    real = delta_module.find
    if not delta:  # every lead planned, as with no basis
        delta_module.find = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        outcome = sync.run(config, datetime.fromisoformat(now).replace(tzinfo=config.timezone))
    except ConfigError as exc:
        return "error: " + "; ".join(str(p) for p in exc.problems).replace(str(folder), "")
    finally:
        delta_module.find = real  # type: ignore[assignment]
    return " | ".join(f"{r.name}: {r.counts()}" for r in outcome.targets)


class _Edits:
    """A random lead file (`size` leads) and the edits a user makes to it between syncs,
    written alike into every folder given."""

    HEAD = "version: 1\ndefaults:\n  on_other_status:\n    offer: {after: 2d, do: congratulate}\n"

    def __init__(self, size: int, folders: list[Path]) -> None:
        # some ids long enough that their items' UID lines are folded
        self.leads = {(f"l{i}" if i % 3 else f"lead-with-a-rather-long-identifier-{i}"):
                      [i, _STATUSES[i % 5], i % 9, i % 5] for i in range(size)}
        self.order = list(self.leads)
        self.head, self.day, self.folders = self.HEAD, 1, folders
        self.write()

    def write(self) -> None:
        text = self.head + "leads:\n" + "\n".join(_lead_yaml(i, *self.leads[i])
                                                 for i in self.order)
        for folder in self.folders:
            (folder / "leads.yaml").write_text(text)

    def apply(self, step: int, kind: str, pick: int, status: str | None, extra: int) -> str:
        """Make one edit (`hand-delete` is the caller's: it touches the calendars); the
        moment of the next sync."""
        leads, order = self.leads, self.order
        lead_id = order[pick % len(order)] if order else ""
        if kind == "change" and order:
            leads[lead_id][3] = extra
        elif kind == "status" and order:
            leads[lead_id][1] = status
        elif kind == "touch" and order:
            leads[lead_id][2] = extra + 5
        elif kind == "add":
            new_id = f"n{step}"
            leads[new_id] = [step, status, extra, extra]
            order.insert(pick % (len(order) + 1), new_id)
        elif kind == "remove" and len(order) > 1:
            order.remove(lead_id)
        elif kind == "move" and len(order) > 1:
            order.remove(lead_id)
            order.insert((pick // 7) % (len(order) + 1), lead_id)
        elif kind == "day":
            self.day += extra
        elif kind == "defaults":
            self.head = self.head.replace("after: 2d", "after: 3d") if "2d" in self.head else \
                self.head.replace("after: 3d", "after: 2d")
        self.write()
        if kind == "break" and order:
            for folder in self.folders:
                path = folder / "leads.yaml"
                path.write_text(path.read_text().replace(f"  {lead_id}:\n",
                                                         f"  {lead_id}:\n    colour: red\n"))
        return f"2026-12-{self.day:02d}T08:00"


def _warm_and_cold(folders: list[Path], now: str) -> tuple[str, str]:
    """One sync in each folder: the first with its lead cache and the delta, the second
    cold (no lead cache, no delta), as a fresh process would be after a cache loss."""
    import shutil

    from followsync import leadcache

    warm = _sync(folders[0], now, delta=True)
    leadcache._OPEN.clear()
    shutil.rmtree(folders[1] / "state" / "shortcuts", ignore_errors=True)
    cold = _sync(folders[1], now, delta=False)
    leadcache._OPEN.clear()
    return warm, cold


def _drag(path: Path, pick: int) -> None:
    """A timed event of the file (the pick-th) moved to 14:00 that day, as an app writes it:
    its items are laid end to end (spread), and one moved by hand must take no slot."""
    import re

    if not path.exists():
        return
    data = path.read_bytes()
    blocks = [m.start() for m in re.finditer(rb"BEGIN:VEVENT\r\n", data)]
    timed = [b for b in blocks if re.match(rb"(?s)(?:(?!END:VEVENT).)*DTSTART;TZID=", data[b:])]
    if not timed:
        return
    start = timed[pick % len(timed)]
    end = data.index(b"END:VEVENT\r\n", start)
    block = re.sub(rb"(DTSTART;TZID=[^:]+:\d{8})T\d{6}", rb"\1T140000", data[start:end])
    block = re.sub(rb"(DTEND;TZID=[^:]+:\d{8})T\d{6}", rb"\1T141500", block)
    path.write_bytes(data[:start] + block + data[end:])


def _ticked(text: bytes) -> bytes | None:
    """A to-do's text as a calendar app ticks it off (None: not an open to-do)."""
    if b"BEGIN:VTODO" not in text or b"STATUS:NEEDS-ACTION" not in text:
        return None
    return text.replace(b"STATUS:NEEDS-ACTION", b"STATUS:COMPLETED\r\n"
                        b"COMPLETED:20261201T090000Z", 1)


def _tick(path: Path, pick: int) -> None:
    """The pick-th open to-do of the file ticked off, as an app writes it."""
    import re

    if not path.exists():
        return
    data = path.read_bytes()
    todos = [(m.start(), m.end()) for m in re.finditer(rb"(?s)BEGIN:VTODO\r\n.*?END:VTODO\r\n",
                                                        data) if _ticked(m.group(0))]
    if todos:
        start, end = todos[pick % len(todos)]
        path.write_bytes(data[:start] + (_ticked(data[start:end]) or b"") + data[end:])


def _moved(text: bytes) -> bytes | None:
    """A timed event's text as an app writes it when it is dragged to 14:00 (None: not a
    timed event)."""
    import re

    if b"BEGIN:VEVENT" not in text or not re.search(rb"DTSTART;TZID=[^:]+:\d{8}T", text):
        return None
    text = re.sub(rb"(DTSTART;TZID=[^:]+:\d{8})T\d{6}", rb"\1T140000", text)
    return re.sub(rb"(DTEND;TZID=[^:]+:\d{8})T\d{6}", rb"\1T141500", text)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_edit, min_size=1, max_size=8), st.integers(3, 12))
def test_an_incremental_sync_writes_what_a_cold_sync_writes(
        tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int, str | None, int]],
        size: int) -> None:
    """Random edits of a random lead file, each followed by a sync: with the delta and the
    lead cache, and without either (a cold process each time), the .ics files are the same
    bytes and the syncs report the same counts."""
    folders = [tmp_path_factory.mktemp("warm"), tmp_path_factory.mktemp("cold")]
    for folder in folders:
        (folder / "config.yaml").write_text("leads: leads.yaml\ntimezone: Europe/Berlin\n"
                                            "state_dir: state\ntargets:\n"
                                            "  - {name: file, type: ics, path: out.ics}\n")
    edits_made = _Edits(size, folders)
    for step, (kind, pick, status, extra) in enumerate([("nothing", 0, None, 0), *edits]):
        now = edits_made.apply(step, kind, pick, status, extra)
        if kind == "hand-delete":  # an item deleted in the calendar app, in both files
            for folder in folders:
                path = folder / "out.ics"
                if path.exists():
                    data = path.read_bytes()
                    start = data.find(b"BEGIN:VEVENT")
                    if start >= 0:
                        end = data.index(b"END:VEVENT\r\n", start) + len(b"END:VEVENT\r\n")
                        path.write_bytes(data[:start] + data[end:])
        if kind == "hand-move":  # an event dragged to 14:00 in the calendar app, in both files
            for folder in folders:
                _drag(folder / "out.ics", pick)
        if kind == "hand-tick":  # a to-do ticked off in the calendar app, in both files
            for folder in folders:
                _tick(folder / "out.ics", pick)
        warm, cold = _warm_and_cold(folders, now)
        assert warm == cold, (kind, step)
        files = [(f / "out.ics").read_bytes() if (f / "out.ics").exists() else b""
                 for f in folders]
        assert files[0] == files[1], (kind, step, warm)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_edit, min_size=1, max_size=6), st.integers(3, 8))
def test_an_incremental_sync_puts_on_caldav_what_a_cold_sync_puts(
        tmp_path_factory: pytest.TempPathFactory, radicale_server: Server,
        edits: list[tuple[str, int, str | None, int]], size: int) -> None:
    """The same random edits (of the lead file, and in the calendar app: an item deleted,
    an event moved, a to-do ticked off) against two calendars on a real Radicale: the
    incremental sync (what changed only) and the cold one (every lead planned) leave the same
    items (UID and text as the server gives them back) and report the same counts."""
    import os
    import re

    folders = [tmp_path_factory.mktemp("warm-dav"), tmp_path_factory.mktemp("cold-dav")]
    calendars = [fresh_calendar(radicale_server), fresh_calendar(radicale_server)]
    os.environ["FOLLOWSYNC_TEST_DAV_PASSWORD"] = radicale_server.password or ""
    try:
        for folder, cal in zip(folders, calendars, strict=True):
            target = caldav_target(cal.calendar_url, name="phone", calendar=cal.calendar_name,
                                   username=cal.username or "",
                                   password_env="FOLLOWSYNC_TEST_DAV_PASSWORD")
            (folder / "config.yaml").write_text(
                "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                "safety: {max_deletes: 1000}\ntargets:\n" + target)
        edits_made = _Edits(size, folders)

        def items(cal: CalendarInfo) -> dict[str, bytes]:
            found = {}
            for href in cal.hrefs():
                status, body, _ = cal.get_raw(href)
                assert status == 200
                uid = re.search(rb"^UID:(.*?)\r?$", body, re.M)
                assert uid, body
                found[uid.group(1).decode()] = body
            return found

        for step, (kind, pick, status, extra) in enumerate([("nothing", 0, None, 0), *edits]):
            now = edits_made.apply(step, kind, pick, status, extra)
            if kind == "hand-delete":  # the same item deleted in the calendar app, in both
                first = min(items(calendars[0]), default=None)
                for cal in calendars:
                    for href in cal.hrefs():
                        if first and f"UID:{first}".encode() in cal.get_raw(href)[1]:
                            assert cal.delete_raw(href) in (200, 204)
            if kind in ("hand-move", "hand-tick"):  # an event dragged, a to-do ticked off
                change = _moved if kind == "hand-move" else _ticked
                held = items(calendars[0])
                picked = [uid for uid in sorted(held) if change(held[uid])]
                for cal in calendars if picked else []:
                    uid = picked[pick % len(picked)]
                    for href in cal.hrefs():
                        body = cal.get_raw(href)[1]
                        if f"UID:{uid}".encode() in body:
                            assert cal.put_raw(href, change(body) or b"")[0] in (201, 204)
            warm, cold = _warm_and_cold(folders, now)
            assert warm == cold, (kind, step)
            assert items(calendars[0]) == items(calendars[1]), (kind, step, warm)
    finally:
        for cal in calendars:
            drop_calendar(cal)


def _google_hand(emu: GoogleEmu, calendars: list[str], kind: str, pick: int) -> None:
    """The same edit made in the Google Calendar app in both calendars: an event deleted,
    or dragged to 14:00 (Google keeps no to-dos: followsync writes them as events)."""
    import re

    if kind not in ("hand-delete", "hand-move") or \
            not any(c.summary == calendars[0] for c in emu.calendars.values()):
        return  # (not made before the first sync)
    events = sorted(emu.live(calendars[0]), key=lambda e: e["id"])
    if kind == "hand-delete" and events:
        for calendar in calendars:
            emu.delete_event(calendar, events[0]["id"])
    timed = [e for e in events if "dateTime" in e["start"]]
    if kind == "hand-move" and timed:
        chosen = timed[pick % len(timed)]["id"]
        for calendar in calendars:
            event = next(e for e in emu.live(calendar) if e["id"] == chosen)
            for end, at in (("start", "T14:00:00"), ("end", "T14:15:00")):
                event[end]["dateTime"] = re.sub(r"T\d\d:\d\d:\d\d", at, event[end]["dateTime"])
            emu.put_event(calendar, event, chosen)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_edit, min_size=1, max_size=6), st.integers(3, 8))
def test_an_incremental_sync_puts_in_google_what_a_cold_sync_puts(
        tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int, str | None, int]],
        size: int) -> None:
    """The same random edits against two calendars of the Google emulation
    (tests/googleemu.py): the incremental sync and the cold one leave the same events (all
    but the server's bookkeeping: etag, times of change, the calendar's own id) and report
    the same counts."""
    import json
    import os

    from followsync.googleauth import GoogleSettings, TokenStore

    os.environ["FOLLOWSYNC_NO_KEYRING"] = "1"
    emu = GoogleEmu().start()
    folders = [tmp_path_factory.mktemp("warm-google"), tmp_path_factory.mktemp("cold-google")]
    calendars = ["Warm", "Cold"]
    try:
        for folder, calendar in zip(folders, calendars, strict=True):
            (folder / "client.json").write_text(json.dumps({"installed": {
                "client_id": emu.client_id, "client_secret": emu.client_secret}}))
            TokenStore(GoogleSettings("work", calendar, folder / "client.json",
                                      folder / "state"), emu.client_id
                       ).keep_refresh(emu.issue_tokens()[0])
            (folder / "config.yaml").write_text(
                "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                "safety: {max_deletes: 1000}\ntargets:\n  - name: work\n    type: google\n"
                f"    calendar: {calendar}\n    client_secret: client.json\n"
                f"    endpoint: {emu.url}\n")
        edits_made = _Edits(size, folders)

        def events(calendar: str) -> dict[str, dict[str, Any]]:
            mine = ("etag", "updated", "created", "_seq", "organizer", "creator", "htmlLink")
            return {e["id"]: {k: v for k, v in e.items() if k not in mine}
                    for e in emu.live(calendar)}

        for step, (kind, pick, status, extra) in enumerate([("nothing", 0, None, 0), *edits]):
            now = edits_made.apply(step, kind, pick, status, extra)
            _google_hand(emu, calendars, kind, pick)
            warm, cold = _warm_and_cold(folders, now)
            assert warm == cold, (kind, step)
            assert events(calendars[0]) == events(calendars[1]), (kind, step, warm)
    finally:
        emu.stop()


def _microsoft_hand(emu: MsEmu, calendars: list[str], kind: str, pick: int) -> None:
    """The same edit made in Outlook in both calendars (events matched by followsync's mark:
    Graph gives each calendar its own ids): an event deleted, or dragged to 13:00 UTC."""
    from followsync.backends.microsoft import MARK

    if kind not in ("hand-delete", "hand-move") or \
            not any(c.name == calendars[0] for c in emu.calendars.values()):
        return  # (not made before the first sync)

    def by_mark(calendar: str) -> dict[str, dict[str, Any]]:
        return {p["value"]: e for e in emu.live(calendar)
                for p in e["singleValueExtendedProperties"] if p["id"] == MARK}

    held = by_mark(calendars[0])
    if kind == "hand-delete" and held:
        uid = min(held)
        for calendar in calendars:
            emu.delete_event(by_mark(calendar)[uid]["id"])
    timed = sorted(uid for uid, e in held.items() if not e["isAllDay"])
    if kind == "hand-move" and timed:
        uid = timed[pick % len(timed)]
        for calendar in calendars:
            event = by_mark(calendar)[uid]
            day = event["start"]["dateTime"][:10]
            emu.edit_event(event["id"], {
                "start": {"dateTime": f"{day}T13:00:00", "timeZone": "UTC"},
                "end": {"dateTime": f"{day}T13:15:00", "timeZone": "UTC"}})


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_edit, min_size=1, max_size=4), st.integers(3, 6))
def test_an_incremental_sync_puts_in_outlook_what_a_cold_sync_puts(
        tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int, str | None, int]],
        size: int) -> None:
    """The same random edits against two calendars of the Microsoft emulation
    (tests/msemu.py): the incremental sync and the cold one leave the same events (all but
    Graph's bookkeeping: ids, etags, times of change) and report the same counts."""
    from unittest import mock

    from tests.test_backend_contract import FixedBearer

    emu = MsEmu().start()
    token = FixedBearer(emu.issue_tokens(["Calendars.ReadWrite"])[0])
    folders = [tmp_path_factory.mktemp("warm-ms"), tmp_path_factory.mktemp("cold-ms")]
    calendars = ["Warm", "Cold"]
    try:
        for folder, calendar in zip(folders, calendars, strict=True):
            (folder / "config.yaml").write_text(
                "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                "safety: {max_deletes: 1000}\ntargets:\n  - name: work\n    type: microsoft\n"
                f"    calendar: {calendar}\n    client_id: {emu.client_id}\n"
                f"    endpoint: {emu.url}\n    verify: {emu.ca_path}\n")
        edits_made = _Edits(size, folders)

        def events(calendar: str) -> dict[str, dict[str, Any]]:
            graph = ("id", "@odata.etag", "changeKey", "createdDateTime", "iCalUId", "webLink",
                     "lastModifiedDateTime", "transactionId")
            found = {}
            for event in emu.live(calendar):
                props = sorted((p["id"], p["value"])
                               for p in event["singleValueExtendedProperties"])
                found[props[0][1]] = {**{k: v for k, v in event.items() if k not in graph},
                                      "singleValueExtendedProperties": props}
            return found

        with mock.patch("followsync.msauth.Tokens", lambda *a, **k: token):
            for step, (kind, pick, status, extra) in enumerate([("nothing", 0, None, 0),
                                                                *edits]):
                now = edits_made.apply(step, kind, pick, status, extra)
                _microsoft_hand(emu, calendars, kind, pick)
                warm, cold = _warm_and_cold(folders, now)
                assert warm == cold, (kind, step)
                assert events(calendars[0]) == events(calendars[1]), (kind, step, warm)
    finally:
        emu.stop()


def test_the_delta_runs_for_one_changed_lead(tmp_path: Path) -> None:
    """The shortcut is taken (a cold sync of 40 leads would parse them all)."""
    from followsync import leads as leads_module

    (tmp_path / "config.yaml").write_text("leads: leads.yaml\ntimezone: Europe/Berlin\n"
                                          "state_dir: state\ntargets:\n"
                                          "  - {name: file, type: ics, path: out.ics}\n")
    text = "version: 1\nleads:\n" + "".join(_lead_yaml(f"l{i}", i, None, 3, 0) for i in range(40))
    (tmp_path / "leads.yaml").write_text(text)
    assert "40 created" in _sync(tmp_path, "2026-12-01T08:00", delta=True)
    (tmp_path / "leads.yaml").write_text(text.replace("Person L7 7", "Person L7 seven"))
    parsed: list[str] = []
    real = leads_module._lead_of_slice

    def counting(file: str, lead_id: str, text: str) -> tuple[L.Lead, int] | None:
        parsed.append(lead_id)
        return real(file, lead_id, text)

    leads_module._lead_of_slice = counting  # type: ignore[assignment]
    try:
        result = _sync(tmp_path, "2026-12-01T08:00", delta=True)
    finally:
        leads_module._lead_of_slice = real  # type: ignore[assignment]
    assert result == "file: 0 created, 1 updated, 0 deleted, 39 unchanged"
    assert parsed == ["l7"]


def test_one_changed_lead_on_caldav_plans_and_sends_that_lead_only(
        tmp_path: Path, radicale_calendar: CalendarInfo, radicale_proxy: FaultProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CalDAV target syncs what changed as a file does: one lead edited among 40, one lead
    planned (also when someone else's event appeared there), the server asked what changed (a
    sync-collection REPORT) and sent one PUT."""
    from followsync import rules

    cal = radicale_calendar
    monkeypatch.setenv("FOLLOWSYNC_TEST_DAV_PASSWORD", cal.password or "")
    (tmp_path / "config.yaml").write_text(
        "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\ntargets:\n" +
        caldav_target(radicale_proxy.url_for(cal.calendar_url), calendar=cal.calendar_name,
                      username=cal.username or "", password_env="FOLLOWSYNC_TEST_DAV_PASSWORD"))
    text = "version: 1\nleads:\n" + "".join(_lead_yaml(f"l{i}", i, None, 3, 0) for i in range(40))
    (tmp_path / "leads.yaml").write_text(text)
    assert "40 created" in _sync(tmp_path, "2026-12-01T08:00", delta=True)
    (tmp_path / "leads.yaml").write_text(text.replace("Person L7 7", "Person L7 seven"))
    planned: list[str] = []
    real = rules._plan_lead

    def counting(item: L.LoadedLead, *args: Any) -> rules.LeadPlan:
        planned.append(item.id)
        return real(item, *args)

    monkeypatch.setattr(rules, "_plan_lead", counting)
    # someone else's event added meanwhile: read once to tell it is not ours, planned never
    assert cal.put_raw(f"{cal.path}other.ics", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//x\r\n"
                       "BEGIN:VEVENT\r\nUID:other@example.com\r\nDTSTAMP:20261130T090000Z\r\n"
                       "DTSTART:20261202T090000Z\r\nSUMMARY:lunch\r\nEND:VEVENT\r\n"
                       "END:VCALENDAR\r\n")[0] == 201
    radicale_proxy.reset()
    result = _sync(tmp_path, "2026-12-01T08:00", delta=True)
    assert result == "phone: 0 created, 1 updated, 0 deleted, 39 unchanged"
    assert planned == ["l7"]
    seen = " ; ".join(f"{s.method} {s.status}" for s in radicale_proxy.seen())
    # what changed there (sync-collection), the other event read (multiget), the one PUT,
    # the token after it (commit)
    assert radicale_proxy.counts() == {"REPORT": 3, "PUT": 1}, seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lead_file(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40),
                                       st.sampled_from(["", "x", "\n", "  new-lead:\n    name: N\n",
                                                        "\n  z9:\n    name: Z\n", "# c\n", ":"])),
                             min_size=1, max_size=3),
       st.integers(0, 3))
def test_finding_what_a_save_changed_gives_the_leads_a_whole_cut_gives(
        text: str, edits: list[tuple[int, int, str]], pad: int) -> None:
    """`resplit` (the layout before, the bytes after) finds the same leads and slice texts
    as `split` of the new file, or steps aside (None)."""
    from followsync.leadsplit import layout_of, resplit

    text = text.replace("leads:\n", "leads:\n" + "".join(
        f"  pad{i}:\n    name: {'P' * 3000}\n" for i in range(pad)), 1)  # some whole blocks
    before = split(text)
    if before is None:
        return
    data = text.encode()
    layout = layout_of(data, before)
    assert layout is not None
    new = text
    for at, length, insert in edits:
        at %= len(new) + 1
        new = new[:at] + insert + new[at + length:]
    after = split(new)
    found = resplit(new.encode(), layout, {p.lead_id: p.digest for p in before.slices})
    if found is None:
        return
    assert after is not None, new
    assert found.ids == [p.lead_id for p in after.slices]
    if len(set(found.ids)) != len(found.ids):
        return  # a repeated id: the sync reads the whole file
    for index, (lead_id, piece) in enumerate(zip(found.ids, after.slices, strict=True)):
        text_now = found.fresh[lead_id].text if lead_id in found.fresh else found.text_of(index)
        assert text_now == piece.text
        if lead_id in found.fresh:
            assert found.fresh[lead_id].digest == piece.digest
    assert found.layout == layout_of(new.encode(), after)


def _project(folder: Path, count: int) -> str:
    (folder / "config.yaml").write_text("leads: leads.yaml\ntimezone: Europe/Berlin\n"
                                        "state_dir: state\ntargets:\n"
                                        "  - {name: file, type: ics, path: out.ics}\n")
    text = "version: 1\nleads:\n" + "".join(_lead_yaml(f"l{i}", i, None, 3, 0)
                                            for i in range(count))
    (folder / "leads.yaml").write_text(text)
    return text


def _parsing(run: Callable[[], object]) -> list[str]:
    """The ids of the leads parsed from their slices while `run()` runs."""
    from followsync import leads as leads_module

    parsed: list[str] = []
    real = leads_module._lead_of_slice

    def counting(file: str, lead_id: str, text: str) -> tuple[L.Lead, int] | None:
        parsed.append(lead_id)
        return real(file, lead_id, text)

    leads_module._lead_of_slice = counting
    try:
        run()
    finally:
        leads_module._lead_of_slice = real
    return parsed


@pytest.mark.parametrize("spoil", ["older", "columns", "not json"])
def test_a_delta_basis_of_another_shape_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   spoil: str) -> None:
    """A basis an older followsync kept (version 2: a dict of per-lead lists), or one whose
    columns do not fit the leads, is never read as this one: the sync is a full one, right,
    and leaves a basis the next delta can use."""
    from followsync.state import open_state
    from followsync.sync import delta

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = _project(tmp_path, 12)
    assert "12 created" in _sync(tmp_path, "2026-12-01T08:00", delta=True)
    state = open_state(tmp_path / "state")
    basis = json.loads(state.note(delta.NOTE) or "")
    leads = basis["leads"]
    if spoil == "older":  # the shape version 2 kept, under its version number
        ids = [i for name in basis["order"] for i in basis["files"][name]["ids"]]
        basis["v"] = 2
        basis["leads"] = {i: [d, None, None, ["offer"]] for i, d in
                          zip(ids, leads["digests"], strict=True)}
        stored = json.dumps(basis)
    elif spoil == "columns":  # the right version, one digest short
        leads["digests"] = leads["digests"][:-1]
        stored = json.dumps(basis)
    else:
        stored = "{not json"
    with state.transaction():
        state.set_note(delta.NOTE, stored)
    state.close()
    text = text.replace("Person L7 7", "Person L7 seven")
    (tmp_path / "leads.yaml").write_text(text)
    parsed = _parsing(lambda: _sync(tmp_path, "2026-12-01T08:00", delta=True))
    assert parsed != ["l7"]  # a full sync: every lead from the lead cache, or all parsed
    (tmp_path / "leads.yaml").write_text(text.replace("Person L8 8", "Person L8 eight"))
    result: list[str] = []
    parsed = _parsing(lambda: result.append(_sync(tmp_path, "2026-12-01T08:00", delta=True)))
    assert result == ["file: 0 created, 1 updated, 0 deleted, 11 unchanged"]
    assert parsed == ["l8"]  # the full sync left a basis of this version


def test_a_no_op_sync_of_a_file_reads_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """An .ics file whose digest is as written last needs nothing of the state's 60,000 rows
    (their hrefs and ETags): a no-op and a one-lead sync count them from an index, and a
    deletion by hand still counts as kept."""
    from followsync.state import State

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = _project(tmp_path, 12)
    assert "12 created" in _sync(tmp_path, "2026-12-01T08:00", delta=True)
    data = (tmp_path / "out.ics").read_bytes()  # the user deletes one item in the calendar
    start = data.find(b"BEGIN:VEVENT")
    end = data.index(b"END:VEVENT\r\n", start) + len(b"END:VEVENT\r\n")
    (tmp_path / "out.ics").write_bytes(data[:start] + data[end:])
    assert "1 calendar edit kept" in _sync(tmp_path, "2026-12-01T08:00", delta=True)

    def no_rows(*args: object) -> object:
        raise AssertionError("every row read")

    real = State.rows

    def some_rows(self: State, target: str, leads: object = None) -> object:
        return no_rows() if leads is None else real(self, target, leads)  # type: ignore[arg-type]

    monkeypatch.setattr(State, "standing", no_rows)
    monkeypatch.setattr(State, "rows", some_rows)
    assert _sync(tmp_path, "2026-12-01T08:00", delta=True) == \
        "file: 0 created, 0 updated, 0 deleted, 11 unchanged, 1 calendar edit kept"
    (tmp_path / "leads.yaml").write_text(text.replace("Person L7 7", "Person L7 seven"))
    assert _sync(tmp_path, "2026-12-01T08:00", delta=True) == \
        "file: 0 created, 1 updated, 0 deleted, 10 unchanged, 1 calendar edit kept"
