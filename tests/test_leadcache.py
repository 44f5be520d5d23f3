"""Issue 18: the lead cache is a shortcut that cannot lie, cannot run code and cannot stop a
command (README, "What followsync keeps").

- a lead read back from the cache file is exactly the lead validated from its slice (every
  field, which fields were set, zones, durations);
- the file lives in `state_dir/shortcuts`, 0600, and `XDG_CACHE_HOME` plays no part;
- a corrupt, planted or foreign file is ignored and rebuilt: no command exits 70, no code runs;
- one cache per lead file in a long-running process, and the newest is the one written.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from followsync import leadcache
from followsync import leads as L
from followsync.leadsplit import split
from tests.project import Project
from tests.test_daemon import Running, save_by_rename, start, write_files

__all__ = ["start"]  # (the fixture that runs a daemon)

ROOT = Path(__file__).resolve().parent.parent

LEADS = """\
version: 1
defaults:
  cadence: [2w, 1mo]
  at: "09:00"
  on_other_status:
    offer: {after: 0d, do: "tell them"}
leads:
""" + "".join(f"""\
  lead-{i}:
    name: Person {i}
    email: p{i}@example.com
    status: {"offer" if i == 3 else "waiting"}
    last_contact: 2026-11-{i + 1:02d}
    log:
      - 2026-11-{i + 1:02d} 14:10 called
      - {{date: 2026-10-0{i % 9 + 1}, by: them, note: "ok", at: "08:0{i}"}}
    follow_ups:
      - {{on: 2026-12-1{i}, do: "send the deck", at: "10:30"}}
""" for i in range(8))


@pytest.fixture(autouse=True)
def _fresh_process() -> Iterator[None]:
    """Each test starts as a fresh process would: no lead cache in memory."""
    leadcache._OPEN.clear()
    leadcache._DIRTY.clear()
    yield
    leadcache._OPEN.clear()
    leadcache._DIRTY.clear()


def exact(value: Any) -> Any:
    """Every detail of a value: `==` on models ignores which fields were set, and on aware
    datetimes ignores the offset; this does not."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, sorted(value.model_fields_set),
                [(name, exact(item)) for name, item in value.__dict__.items()],
                value.__pydantic_extra__, value.__pydantic_private__)
    if isinstance(value, datetime | time):
        return (type(value).__name__, value.isoformat(), repr(value.tzinfo), value.fold)
    if isinstance(value, list | tuple):
        return (type(value).__name__, [exact(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(key, exact(item)) for key, item in value.items()])
    return (type(value).__name__, repr(value))


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was parsed and validated from YAML (empty: every lead came from the cache)."""
    calls: list[str] = []
    batch, alone, whole = L._read_batch, L._lead_of_slice, L.parse_lead_file

    def read_batch(file: str, pieces: Any, cache: Any) -> None:
        calls.extend(piece.lead_id for piece in pieces)
        batch(file, pieces, cache)

    def lead_of_slice(file: str, lead_id: str, text: str) -> Any:
        calls.append(lead_id)
        return alone(file, lead_id, text)

    def parse(*args: Any, **kwargs: Any) -> Any:
        calls.append("whole file")
        return whole(*args, **kwargs)

    monkeypatch.setattr(L, "_read_batch", read_batch)
    monkeypatch.setattr(L, "_lead_of_slice", lead_of_slice)
    monkeypatch.setattr(L, "parse_lead_file", parse)
    return calls


def load(path: Path, folder: Path) -> L.LeadBook:
    """`load_leads` as one process does it: nothing in memory before, the cache written at
    its end."""
    leadcache._OPEN.clear()
    book = L.load_leads([path], shortcuts=folder)
    leadcache.flush()
    return book


def run(project: Project, *args: str) -> tuple[int, str]:
    """A command as one process runs it (see `load`)."""
    leadcache._OPEN.clear()
    code, out = project.output(*args)
    leadcache.flush()
    return code, out


def cache_name(lead_file: Path) -> str:
    return "leads-" + hashlib.blake2b(os.path.realpath(lead_file).encode(),
                                      digest_size=12).hexdigest()


# ------------------------------------------------------------ exact round trip
def _generated(n: int) -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import core_sync  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    text: str = core_sync.dump_leads(core_sync.make_leads(n, 7, date(2026, 12, 1)))
    return text


def _assert_read_back_exactly(text: str, path: Path, validations: list[str]) -> None:
    path.write_text(text, encoding="utf-8")
    folder = path.parent / "state" / "shortcuts"
    folder.parent.mkdir(mode=0o700)  # (as the state makes it)
    load(path, folder)  # cold: validated, and written to the cache file
    assert list(folder.iterdir()) != []
    del validations[:]
    book = load(path, folder)
    assert validations == []  # every lead from the file on disk
    parts = split(text)
    assert parts is not None
    parsed, _ = L.parse_lead_file(str(path), text.encode())
    assert list(book.leads) == list(parsed.leads or {})
    for piece in parts.slices:
        alone = L._lead_of_slice(str(path), piece.lead_id, piece.text)
        assert alone is not None
        assert exact(book.leads[piece.lead_id].lead) == exact(alone[0])
        assert exact(book.leads[piece.lead_id].lead) == exact((parsed.leads or {})[piece.lead_id])
        assert book.leads[piece.lead_id].policy == \
            L.Policy().apply(parsed.defaults).apply(alone[0])


@pytest.mark.parametrize("source", ["examples/job-search.yaml", "examples/freelancer.yaml",
                                    "generated", "touches"])
def test_a_lead_read_back_from_the_cache_file_is_the_lead_validated_from_its_slice(
        tmp_path: Path, source: str, validations: list[str]) -> None:
    text = _generated(300) if source == "generated" else LEADS if source == "touches" else \
        (ROOT / source).read_text(encoding="utf-8")
    _assert_read_back_exactly(text, tmp_path / "leads.yaml", validations)


_plain = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                               blacklist_characters="{}"), max_size=10)
_named = _plain.filter(lambda text: text.strip() != "")
_zones = st.sampled_from([None, UTC, timezone(timedelta(hours=2)),
                          timezone(timedelta(hours=-5, minutes=-30))])
_dates = st.dates(date(1990, 1, 1), date(2100, 12, 31))
_clock = st.times().map(lambda t: f"{t.hour:02d}:{t.minute:02d}")
_gaps = st.sampled_from(["0d", "1d", "2w", "3mo", "1y", 0])
_lengths = st.sampled_from(["0m", "15m", "1h", "2d", "1w", 0])


@st.composite
def _touch(draw: st.DrawFn) -> Any:
    day = draw(_dates)
    form = draw(st.integers(0, 3))  # (the lead file has no zones: YAML timestamps are text)
    if form == 0:
        return f"{day} {draw(_plain).strip()}".strip()
    if form == 1:
        return f"{day} {draw(_clock)} called"
    entry: dict[str, Any] = {"date": day, "by": draw(st.sampled_from(["me", "them", "both"]))}
    if draw(st.booleans()):
        entry["note"] = draw(_plain)
    if form == 2 or draw(st.booleans()):
        entry["at"] = draw(_clock)
    if draw(st.booleans()):
        entry["rule"] = draw(st.sampled_from(["cadence", "once-x", "status-offer"]))
    return entry


@st.composite
def _lead(draw: st.DrawFn, index: int) -> dict[str, Any]:
    lead: dict[str, Any] = {"name": draw(_named)}
    optional: dict[str, Any] = {
        "org": _plain, "role": _plain, "phone": _plain, "url": _plain, "notes": _plain,
        "status": st.sampled_from(["offer", "waiting", "won", "interviewed"]),
        "tags": st.lists(_plain, max_size=3),
        "email": st.sampled_from([f"p{index}@example.com",
                                  [f"p{index}@example.com", f"q{index}@example.org"]]),
        "status_since": _dates, "last_contact": _dates, "next": _dates, "snooze_until": _dates,
        "log": st.lists(_touch(), max_size=4),
        "follow_ups": st.lists(st.fixed_dictionaries(
            {"on": _dates, "do": _named},
            optional={"at": _clock, "all_day": st.booleans(), "done": st.booleans()}),
            max_size=3, unique_by=lambda f: f["on"]),
        "cadence": st.lists(_gaps, min_size=1, max_size=3), "give_up_after": st.integers(1, 9),
        "at": _clock, "all_day": st.booleans(), "duration": _lengths, "spread": st.booleans(),
        "alarms": st.lists(_lengths, max_size=3), "as": st.sampled_from(["event", "todo"]),
        "overdue": st.sampled_from(["roll", "keep"]),
        "days": st.lists(st.sampled_from(["mon", "tue", "sat"]), min_size=1, unique=True),
        "closed": st.lists(_named, max_size=2),
        "action": st.sampled_from(["follow up", "call {name}", "mail {email}"]),
        "title": st.sampled_from(["{name}: {action}", "{action} ({org})"]),
        "on_status": st.dictionaries(st.sampled_from(["offer", "x"]), st.fixed_dictionaries(
            {"do": _named}, optional={"after": _gaps, "at": _clock}), max_size=2),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        lead[key] = draw(optional[key])
    return lead


@st.composite
def _lead_file(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 4))
    leads = {f"l{i}": draw(_lead(i)) for i in range(count)}
    return yaml.safe_dump({"version": 1, "leads": leads}, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=10_000)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_lead_file())
def test_every_field_reads_back_from_the_cache_exactly(
        tmp_path_factory: pytest.TempPathFactory, validations: list[str], text: str) -> None:
    leadcache._OPEN.clear()
    _assert_read_back_exactly(text, tmp_path_factory.mktemp("lc") / "leads.yaml", validations)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_dates, st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30),
                                               timezones=_zones).map(
    lambda moment: moment.replace(fold=0)), _plain), max_size=4))
def test_touches_with_zones_read_back_exactly(touches: list[tuple[date, datetime, str]]) -> None:
    """The codec writes a fixed offset as it was (a named zone is refused when writing,
    never changed); reading back, a touch whose `at` a lead file could not give (a zone,
    another day than its date: only mail touches have those, and they are never cached) is
    refused, the file then ignored; one on its own day, without a zone, reads back exactly."""
    lead = L.Lead.model_validate({"name": "Z", "log": [
        {"date": day, "at": moment, "note": note} for day, moment, note in touches]})
    data = json.dumps([L.CODEC.encode(lead)]).encode()
    if all(t.at is None or (t.at.tzinfo is None and t.at.date() == t.date) for t in lead.log):
        assert exact(L.CODEC.decode(data)[0]) == exact(lead)
    else:
        with pytest.raises(ValueError):
            L.CODEC.decode(data)
    as_in_a_file = L.Lead.model_validate({"name": "Z", "log": [
        {"date": moment.date(), "at": moment.replace(tzinfo=None), "note": note}
        for _, moment, note in touches if 1000 <= moment.year <= 8999]})
    data = json.dumps([L.CODEC.encode(as_in_a_file)]).encode()
    assert exact(L.CODEC.decode(data)[0]) == exact(as_in_a_file)
    from zoneinfo import ZoneInfo

    named = L.Touch.model_validate({"date": date(2026, 1, 1), "at": datetime(
        2026, 1, 1, 9, tzinfo=ZoneInfo("Europe/Berlin"))})
    with pytest.raises(TypeError):
        L.CODEC.encode(named)


def test_a_lead_the_codec_cannot_write_is_left_out_and_the_others_kept(
        tmp_path: Path, validations: list[str]) -> None:
    path = tmp_path / "leads.yaml"
    path.write_text(LEADS, encoding="utf-8")
    folder = tmp_path / "state" / "shortcuts"
    folder.parent.mkdir(mode=0o700)
    leadcache._OPEN.clear()
    L.load_leads([path], shortcuts=folder)
    (cache,) = leadcache._OPEN.values()
    digest, (lead, nodes) = next(iter(cache.entries.items()))
    odd = lead.model_copy(update={"notes": b"bytes"})  # (no lead file makes this)
    cache.entries[digest] = (odd, nodes)
    cache.changed = True
    leadcache.flush()
    del validations[:]
    load(path, folder)
    assert validations == ["lead-0"]


# ------------------------------------------------------------ where, and who may read it
def synced(project: Project) -> Project:
    """The project with LEADS, synced once: the state folder exists."""
    project.write_leads(LEADS)
    code, out = run(project, "sync")
    assert code == 0, out
    return project


def test_the_cache_is_0600_in_the_state_folder_even_with_a_loose_umask(
        project: Project, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        synced(project)
        code, out = run(project, "validate")
    finally:
        os.umask(old)
    assert code == 0, out
    found = [p for p in tmp_path.rglob("leads-*") if p.is_file()]
    assert found == [project.state / "shortcuts" / (cache_name(project.leads) + ".json")]
    assert stat.S_IMODE(found[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(found[0].parent.stat().st_mode) == 0o700


def test_validate_and_plan_before_a_first_sync_make_no_state_folder(project: Project) -> None:
    project.write_leads(LEADS)
    for command in ("validate", "plan", "agenda"):
        assert run(project, command)[0] == 0
    assert not project.state.exists()


def test_an_unwritable_cache_home_changes_nothing(project: Project, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  validations: list[str]) -> None:
    """As under the shipped systemd units (~/.cache read-only): the second command still
    takes every lead from the cache. (A folder under a file: not writable, even by root.)"""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file" / "cache"))
    synced(project)
    del validations[:]
    code, out = run(project, "validate")
    assert code == 0 and "8 leads" in out, out
    assert validations == []


# ------------------------------------------------------------ a file that cannot be trusted
COMMANDS = ["validate", "plan", "agenda"]


def _answers(project: Project) -> dict[str, tuple[int, str]]:
    """What each command answers with no lead cache at all."""
    answers = {}
    for command in COMMANDS:
        for cached in project.dir.parent.rglob("leads-*"):
            cached.unlink()
        answers[command] = run(project, command)
        assert answers[command][0] == 0, answers[command]
    return answers


def _variants(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Truncations, flipped bytes, and huge length fields (a pickle's FRAME length at
    bytes 3-10 made `MemoryError`/`OverflowError`)."""
    size = len(data)
    for cut in sorted({0, 1, 2, 3, 11, 40, size // 3, size // 2, size - 2, size - 1}):
        yield f"cut at {cut}", data[:cut]
    yield "huge length", data[:3] + b"\xff" * 8 + data[11:]
    yield "huge length 2", data[:2] + b"\x95" + b"\x7f" + b"\xff" * 7 + data[11:]
    rnd = random.Random(18)
    for at in [*range(0, 12), *(rnd.randrange(size) for _ in range(24))]:
        yield f"flip at {at}", data[:at] + bytes([data[at] ^ (1 << rnd.randrange(8))]) + \
            data[at + 1:]
    yield "zeros", b"\0" * size
    yield "junk", bytes(rnd.randrange(256) for _ in range(size))


def test_a_corrupt_cache_file_never_stops_a_command(project: Project) -> None:
    synced(project)
    expected = _answers(project)
    run(project, "validate")
    (cached,) = [p for p in project.dir.parent.rglob("leads-*") if p.is_file()]
    pristine = cached.read_bytes()
    for number, (what, data) in enumerate(_variants(pristine)):
        command = COMMANDS[number % len(COMMANDS)]
        cached.write_bytes(data)
        cached.chmod(0o600)
        assert run(project, command) == expected[command], what


class _Payload:
    """Unpickled, it creates the marker file: the proof that a cache ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("where", ["old pickle", "new file"])
def test_a_planted_pickle_never_runs(project: Project, tmp_path: Path, where: str) -> None:
    synced(project)
    expected = _answers(project)
    marker = tmp_path / "ran"
    if where == "old pickle":  # where followsync 0.x kept its pickles
        folder = Path(os.environ["XDG_CACHE_HOME"]) / "followsync"
        name = cache_name(project.leads) + ".pickle"
    else:
        folder, name = project.state / "shortcuts", cache_name(project.leads) + ".json"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for command in COMMANDS:
        (folder / name).write_bytes(pickle.dumps(("any key", _Payload(marker))))
        (folder / name).chmod(0o600)
        assert run(project, command) == expected[command]
        assert not marker.exists()


def _respelled(cached: Path, body: bytes, key: str | None = None) -> None:
    """The cache file with another body (and key) under a header whose digest matches."""
    header = json.loads(cached.read_bytes().partition(b"\n")[0])
    header["key"] = key or header["key"]
    header["body"] = hashlib.blake2b(body, digest_size=32).hexdigest()
    cached.write_bytes(json.dumps(header).encode() + b"\n" + body)


_LEAD = {"$m": "Lead", "name": "Mallory"}
SHAPES = {
    "a mapping": {"a": 1},
    "short entries": [["d", 1]],
    "a negative count": [["d", -1, _LEAD]],
    "a count as text": [["d", "1", _LEAD]],
    "a touch for a lead": [["d", 1, {"$m": "Touch", "date": {"$d": "2026-01-01"}}]],
    "an unknown class": [["d", 1, {"$m": "Popen", "args": ["true"]}]],
    "an unknown field": [["d", 1, {**_LEAD, "colour": "red"}]],
    "no name": [["d", 1, {"$m": "Lead"}]],
    "a date of a number": [["d", 1, {**_LEAD, "last_contact": {"$d": 5}}]],
    "an unknown tag": [["d", 1, {**_LEAD, "next": {"$eval": "1"}}]],
    "a value with two tags": [["d", 1, {**_LEAD, "next": {"$d": "2026-01-01", "$t": "x"}}]],
    "an unknown value class": [["d", 1, {**_LEAD, "duration": {"$v": "Path", "f": ["/"]}}]],
}


@pytest.mark.parametrize("shape", [*SHAPES, "deep", "long number", "another key",
                                   "another format", "a torn body"])
def test_a_cache_file_of_another_shape_or_key_is_ignored_and_rebuilt(
        project: Project, shape: str, validations: list[str]) -> None:
    synced(project)
    expected = _answers(project)
    run(project, "validate")
    (cached,) = [p for p in project.dir.parent.rglob("leads-*") if p.is_file()]
    body = cached.read_bytes().partition(b"\n")[2]
    if shape in SHAPES:
        _respelled(cached, json.dumps(SHAPES[shape]).encode())
    elif shape == "deep":
        _respelled(cached, b"[" * 200_000 + b"]" * 200_000)
    elif shape == "long number":
        _respelled(cached, b"[[\"d\", 1" + b"9" * 100_000 + b", {}]]")
    elif shape == "another key":
        _respelled(cached, body, key="0" * 32)
    elif shape == "another format":
        cached.write_bytes(cached.read_bytes().replace(b"lead cache 1", b"lead cache 9", 1))
    else:
        cached.write_bytes(cached.read_bytes()[:-5] + b"]]]]]")
    for command in COMMANDS:
        assert run(project, command) == expected[command], shape
        del validations[:]
    assert run(project, "validate") == expected["validate"]
    assert validations == []  # rebuilt: read back cleanly


def _bad_duration(lead: dict[str, Any]) -> None:
    lead["duration"] = {"$v": "Duration", "f": [5, "fortnights"]}


def _first_touch(lead: dict[str, Any]) -> dict[str, Any]:
    touch: dict[str, Any] = lead["log"][0]
    return touch


# each turns every lead of a real cache file into one validation would never have made
CRAFTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "a name of a number": lambda lead: lead.update(name=5),
    "an empty name": lambda lead: lead.update(name=""),
    "a touch's date as text": lambda lead: _first_touch(lead).update(date="2026-11-01"),
    "a touch's date far out": lambda lead: _first_touch(lead).update(date={"$d": "0001-01-01"}),
    "a touch's moment with a zone": lambda lead: _first_touch(lead).update(
        at={"$dt": "2026-11-01T14:10:00+02:00"}),
    "a touch's moment on another day": lambda lead: _first_touch(lead).update(
        at={"$dt": "2026-11-09T14:10:00"}),
    "a touch by nobody": lambda lead: _first_touch(lead).update(by="nobody"),
    "a duration of an unknown unit": _bad_duration,
    "a duration of a negative count": lambda lead: lead.update(
        duration={"$v": "Duration", "f": [-5, "m"]}),
    "a duration of text": lambda lead: lead.update(duration={"$v": "Duration", "f": ["5", "m"]}),
    "a cadence of minutes": lambda lead: lead.update(
        cadence=[{"$v": "Duration", "f": [5, "m"]}]),
    "an empty cadence": lambda lead: lead.update(cadence=[]),
    "the log as a mapping": lambda lead: lead.update(
        log={"$map": [["a", lead["log"][0]]]}),
    "the email as a mapping": lambda lead: lead.update(email={"$map": [["a", "p@x.example"]]}),
    "an address that is none": lambda lead: lead.update(email=["not an address"]),
    "a weekday that is none": lambda lead: lead.update(days=["someday"]),
    "overdue of an unknown word": lambda lead: lead.update(overdue="explode"),
    "give_up_after zero": lambda lead: lead.update(give_up_after=0),
    "give_up_after true": lambda lead: lead.update(give_up_after=True),
    "an unknown placeholder": lambda lead: lead.update(action="{nope}"),
    "a follow-up id out of pattern": lambda lead: lead["follow_ups"][0].update(id="A B"),
    "two follow-ups on one day": lambda lead: lead.update(
        follow_ups=[lead["follow_ups"][0], lead["follow_ups"][0]]),
    "a trigger keyed by a number": lambda lead: lead.update(on_status={"$map": [[
        5, {"$m": "Trigger", "do": "x"}]]}),
    "a touch where a follow-up goes": lambda lead: lead.update(follow_ups=[
        _first_touch(lead)]),
}


def _full_sync(project: Project) -> tuple[int, str]:
    """A sync that loads the leads: the no-op shortcut (which reads no lead) forgotten."""
    with sqlite3.connect(project.state / "state.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key LIKE 'clean:%'")
    db.close()
    code, out = run(project, "sync")
    return code, re.sub(r"\(\d+\.\d+ s\)", "(time)", out)  # (how long it took varies)


@pytest.mark.parametrize("craft", CRAFTED)
def test_a_checksummed_cache_of_values_validation_never_makes_is_ignored_and_rebuilt(
        project: Project, craft: str, validations: list[str]) -> None:
    """The file's digest only catches damage: what it holds is checked against each
    field's declared type and constraints, and a file that fails is ignored and rebuilt."""
    synced(project)
    commands = [*COMMANDS, "sync"]
    expected = {**_answers(project), "sync": _full_sync(project)}
    assert expected["sync"][0] == 0, expected["sync"]
    (cached,) = [p for p in project.dir.parent.rglob("leads-*") if p.is_file()]
    entries = json.loads(cached.read_bytes().partition(b"\n")[2])
    for _, _, lead in entries:
        CRAFTED[craft](lead)
    body = json.dumps(entries).encode()
    for command in commands:
        _respelled(cached, body)
        answer = _full_sync(project) if command == "sync" else run(project, command)
        assert answer == expected[command], (craft, command)
        assert cached.read_bytes().partition(b"\n")[2] != body, command  # rebuilt
    del validations[:]
    assert run(project, "validate") == expected["validate"]
    assert validations == []  # the file was written again, and reads back cleanly


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_cache_file_of_another_user_is_not_read(project: Project,
                                                  validations: list[str]) -> None:
    synced(project)
    (cached,) = [p for p in project.dir.parent.rglob("leads-*") if p.is_file()]
    os.chown(cached, 65534, 65534)
    del validations[:]
    assert run(project, "validate")[0] == 0
    assert validations != []  # not read: everything validated again
    assert cached.stat().st_uid == os.geteuid()  # and replaced by one of ours


def test_a_cache_file_others_may_read_is_not_read_and_is_made_private(
        project: Project, validations: list[str]) -> None:
    synced(project)
    (cached,) = [p for p in project.dir.parent.rglob("leads-*") if p.is_file()]
    cached.chmod(0o644)
    del validations[:]
    assert run(project, "validate")[0] == 0
    assert validations != []
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600


# ------------------------------------------------------------ the daemon: one cache per file
def test_defaults_edits_in_one_process_keep_one_cache_per_file_and_write_the_newest(
        project: Project, validations: list[str]) -> None:
    """Five `defaults:` edits in one process (as the daemon lives): one cache per lead file
    is held and waiting to be written, and the one written at exit is the newest, so the
    next command takes every lead from it."""
    synced(project)
    leadcache._OPEN.clear()
    for minute in range(1, 6):
        project.edit(f'at: "09:0{minute - 1}"', f'at: "09:0{minute}"')
        code, out = project.output("validate")
        assert code == 0, out
        assert len(leadcache._OPEN) == 1
        assert len(leadcache._DIRTY) == 1
    leadcache.flush()
    del validations[:]
    assert run(project, "validate")[0] == 0
    assert validations == []


def test_the_daemon_writes_the_lead_cache_of_its_newest_defaults_at_exit(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    """The real daemon, five `defaults:` saves, SIGTERM: the next command takes every lead
    from the cache it left (the newest head's, not the oldest's)."""
    config = write_files(tmp_path, leads=LEADS)
    daemon = start(config)
    daemon.notify.wait("READY=1")
    daemon.wait_log(r"file: \d+ created")
    leads = tmp_path / "leads.yaml"
    for minute in range(1, 6):
        text = leads.read_text().replace(f'at: "09:0{minute - 1}"', f'at: "09:0{minute}"')
        save_by_rename(leads, text)
        daemon.wait_log(r"file: \d+ created", count=minute + 1)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.exit_code(10) == 0, daemon.stderr
    (cached,) = (tmp_path / "state" / "shortcuts").iterdir()
    written = cached.stat()
    # the next command, run as the daemon was (its code fingerprint counts sys.path): a hit
    # writes nothing, a miss would replace the file
    done = subprocess.run([sys.executable, "-m", "followsync", "--config", str(config),
                           "validate"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ))  # (as Running has it)
    assert done.returncode == 0, done.stderr
    assert (cached.stat().st_ino, cached.stat().st_mtime_ns) == \
        (written.st_ino, written.st_mtime_ns)
