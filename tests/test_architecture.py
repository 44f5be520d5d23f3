"""The shape of the code, checked: what each module may import (docs/architecture.md), the
fast path's promise (a no-op sync loads neither the leads' models nor icalendar), and one
tally for `plan` and `sync`.

An action type that a `match` does not handle cannot be ignored silently: every dispatch on
actions (diff.counted_as, diff.is_write, sync.apply.Apply.carry_out, commands.show.describe)
ends in `typing.assert_never`, so mypy (strict, run in CI) fails until the new type is handled.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followsync.config import load_config
from followsync.sync import SyncOptions, TargetReport, run
from tests.faultproxy import FaultProxy
from tests.servers import CalendarInfo

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "followsync"

# --- import rules ------------------------------------------------------------------------
# module (or package prefix) → the followsync modules it must never import, at any depth of
# the file (imports inside functions and under TYPE_CHECKING count too).
SHELL = ("followsync.state", "followsync.sync", "followsync.backends", "followsync.cli",
         "followsync.daemon", "followsync.commands", "followsync.credentials",
         "followsync.locks", "followsync.config")
PURE = ("followsync.rules", "followsync.render", "followsync.diff", "followsync.durations",
        "followsync.readback", "followsync.agenda", "followsync.tzdef", "followsync.schedule",
        "followsync.model", "followsync.marks", "followsync.slots")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(PURE, SHELL),
    # the lead file's loader is core too, though it reads files
    "followsync.leads": SHELL,
    "followsync.yamlsrc": SHELL,
    "followsync.validation": SHELL,
    # the lead file cut into slices, and the validated leads kept by slice: below leads.py
    # (which passes the cache its models), so no import circle
    "followsync.leadsplit": (*SHELL, "followsync.leads", "followsync.leadcache"),
    "followsync.leadcache": (*SHELL, "followsync.leads", "followsync.validation",
                             "followsync.yamlsrc"),
    "followsync.backends": ("followsync.sync", "followsync.state", "followsync.cli",
                            "followsync.daemon", "followsync.commands", "followsync.leads",
                            "followsync.rules", "followsync.diff"),
    "followsync.state": ("followsync.sync", "followsync.backends", "followsync.cli",
                         "followsync.daemon", "followsync.commands"),
    "followsync.credentials": ("followsync.sync", "followsync.state", "followsync.backends",
                               "followsync.cli", "followsync.daemon", "followsync.config"),
    # signing in to Google and keeping its tokens: used by the google backend and `auth`
    # (which it must not import back: the backend needs it); see also ONLY below
    "followsync.googleauth": ("followsync.sync", "followsync.state", "followsync.cli",
                              "followsync.daemon", "followsync.commands", "followsync.leads",
                              "followsync.rules", "followsync.diff",
                              "followsync.backends.google", "followsync.backends.caldav"),
    "followsync.sync": ("followsync.cli", "followsync.daemon", "followsync.commands"),
    "followsync.daemon": ("followsync.cli", "followsync.commands", "followsync.backends"),
    "followsync.commands": ("followsync.cli", "followsync.daemon", "followsync.backends",
                            "followsync.state"),
    # touches found outside the lead file (mail): they read mailboxes and keep what they
    # found in the state; the sync merges it (sources never plan, render or write calendars)
    "followsync.sources": ("followsync.sync", "followsync.backends", "followsync.cli",
                           "followsync.daemon", "followsync.commands", "followsync.rules",
                           "followsync.diff", "followsync.render", "followsync.slots"),
    # the config's shortcut: config, the fingerprint, the state folder's check; no sync
    "followsync.configcache": ("followsync.sync", "followsync.backends", "followsync.cli",
                               "followsync.daemon", "followsync.commands", "followsync.leads",
                               "followsync.rules", "followsync.diff"),
}
# the bottom layer: value types and marks import nothing of followsync
LEAVES = ("followsync.model", "followsync.marks", "followsync.errors", "followsync.gcpause",
          "followsync.fingerprint")  # (what every shortcut keys on reads, and imports nothing)
# modules held to a list: the followsync modules they may import, and no other
ONLY: dict[str, tuple[str, ...]] = {
    # Google sign-in: its errors, the target it is configured from, and the HTTP session it
    # posts to the token endpoint with (not the google backend, which imports it)
    "followsync.googleauth": ("followsync.errors", "followsync.config",
                              "followsync.backends.apisession", "followsync.tokenstore"),
    # Microsoft sign-in: the same, without the HTTP session (msal brings its own, imported
    # only to sign in or refresh)
    "followsync.msauth": ("followsync.errors", "followsync.config", "followsync.tokenstore"),
    # keeping an OAuth sign-in: a private file and the keyring
    "followsync.tokenstore": ("followsync.errors", "followsync.atomic"),
    # the session to Google's API: davhttp's session and retry loop; tokens come in as a
    # protocol, so neither googleauth nor the backend is imported
    "followsync.backends.apisession": ("followsync.errors", "followsync.backends.davhttp"),
    # what a server asked for, kept between runs: never the state (a backend's own file)
    "followsync.backends.authmemory": ("followsync.atomic", "followsync.backends.digest"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every followsync module a file imports, `from followsync import x` read as x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("followsync.")}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_modules_import_only_what_their_layer_may() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        uses = imported(path)
        for owner, banned in FORBIDDEN.items():
            if not within(name, owner):
                continue
            broken += [f"{name} imports {use}" for use in sorted(uses)
                       if any(within(use, b) and not within(use, owner) for b in banned)]
        if name in LEAVES:
            broken += [f"{name} imports {use}" for use in sorted(uses)
                       if use != "followsync.errors" or name != "followsync.errors"]
    assert broken == []


def test_modules_held_to_a_list_import_only_what_it_names() -> None:
    broken = []
    for name, allowed in ONLY.items():
        path = PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")
        broken += [f"{name} imports {use}" for use in sorted(imported(path))
                   if not any(within(use, a) for a in allowed)]
    assert broken == []


def import_graph() -> dict[str, set[str]]:
    """followsync module → the followsync modules it imports (every import statement:
    module level, inside functions, under TYPE_CHECKING); `from a import b` is a.b when
    that is a module, else a."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        uses: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                uses.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                uses.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                            else node.module for a in node.names)
        graph[name] = (uses & modules.keys()) - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_among_followsync_modules() -> None:
    """A circle (google ↔ googleauth was one) means two modules are one in all but name:
    neither can be understood, tested or imported first without the other."""
    assert circles(import_graph()) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


MAX_LINES = 60  # the longest function `followsync/sync/` may hold (docs/architecture.md)


def test_no_function_in_the_sync_is_over_60_lines() -> None:
    """The sync is read step by step: a function that does not fit on a screen hides one."""
    long = []
    for path in sorted((PACKAGE / "sync").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - start + 1
                if lines > MAX_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_the_rules_see_the_import_statements() -> None:
    """The checker itself: a function-level import and a TYPE_CHECKING one are found."""
    uses = imported(PACKAGE / "sync" / "apply.py")
    assert "followsync.diff" in uses  # imported only inside functions and under TYPE_CHECKING
    assert "followsync.render" in uses


# --- the fast path's promise ---------------------------------------------------------------
NOW = "2026-11-12T10:00"
LEADS = """\
version: 1
defaults:
  cadence: [2w, 1mo]
  at: "09:30"
leads:
  ada:
    name: Ada
    log:
      - {day} sent a note
  bo:
    name: Bo
    as: todo
    log:
      - 2026-11-01 called
"""
PASSWORD_ENV = "FOLLOWSYNC_TEST_ARCH_PASSWORD"
# What a sync loads only when something changed: pydantic (the config is read validated, from
# followsync's cache: configcache), the leads' models, the rules, the diff, the rendering
# library.
HEAVY = ("pydantic", "followsync.configmodel", "followsync.validation", "icalendar",
         "followsync.leads", "followsync.rules", "followsync.diff", "followsync.sync.planning",
         "followsync.sync.apply")
PROBE = """
import json, sys
from followsync.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("icalendar", "pydantic") or m.startswith("followsync."))}))
"""


def write_project(folder: Path, target: str, day: int = 1) -> Path:
    (folder / "leads.yaml").write_text(LEADS.format(day=f"2026-11-{day:02d}"))
    config = folder / "config.yaml"
    config.write_text("leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\n"
                      f"targets:\n{target}")
    config.chmod(0o600)
    return config


def ics_target(folder: Path) -> str:
    return f"  - name: file\n    type: ics\n    path: {folder / 'out.ics'}\n"


def dav_target(url: str, cal: CalendarInfo) -> str:
    user = f"    username: {cal.username}\n    password_env: {PASSWORD_ENV}\n" \
        if cal.username else ""
    return f"  - name: phone\n    type: caldav\n    url: {url}\n{user}"


def probe(config: Path) -> tuple[int, list[str], str]:
    """A `sync` in a fresh interpreter: exit code, modules loaded, what it printed."""
    done = subprocess.run([sys.executable, "-c", PROBE, "--config", str(config), "--now", NOW,
                           "sync"], capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    *printed, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    return result["code"], result["loaded"], "\n".join(printed) + done.stderr


def heavy(loaded: list[str]) -> list[str]:
    return [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_a_no_op_sync_of_an_ics_file_loads_neither_the_leads_nor_icalendar(
        tmp_path: Path) -> None:
    config = write_project(tmp_path, ics_target(tmp_path))
    code, loaded, out = probe(config)
    assert code == 0 and "2 created" in out, out
    # the probe sees heavy modules (a first sync needs no icalendar since render writes the
    # VTIMEZONE from tzdef's rules; it imports icalendar only for a zone without them)
    assert "followsync.leads" in loaded and "pydantic" in loaded
    code, loaded, out = probe(config)
    assert code == 0 and "2 unchanged" in out, out
    assert heavy(loaded) == []


@pytest.fixture
def dav_project(tmp_path: Path, radicale_calendar: CalendarInfo, monkeypatch: pytest.MonkeyPatch,
                radicale_proxy: FaultProxy) -> Iterator[tuple[Path, FaultProxy]]:
    if radicale_calendar.password:
        monkeypatch.setenv(PASSWORD_ENV, radicale_calendar.password)
    url = radicale_proxy.url_for(radicale_calendar.calendar_url)
    yield write_project(tmp_path, dav_target(url, radicale_calendar)), radicale_proxy


def test_a_no_op_sync_of_a_caldav_calendar_loads_neither_the_leads_nor_icalendar(
        dav_project: tuple[Path, FaultProxy]) -> None:
    config, proxy = dav_project
    code, loaded, out = probe(config)
    assert code == 0 and "2 created" in out, out
    proxy.reset()
    code, loaded, out = probe(config)
    assert code == 0 and "2 unchanged" in out, out
    assert proxy.count() == 1  # the one sync-collection REPORT
    assert heavy(loaded) == []


def test_a_broken_lead_file_is_reported_before_any_calendar_is_asked(
        dav_project: tuple[Path, FaultProxy]) -> None:
    """The one sync path reads the whole lead files before it opens a target when every
    lead is planned: an error there leaves the calendars untouched and unasked (a listing
    may make a deleted calendar again)."""
    config, proxy = dav_project
    code, _, out = probe(config)
    assert code == 0 and "2 created" in out, out
    leads = config.parent / "leads.yaml"
    leads.write_text(leads.read_text().replace("    name: Bo\n", "    name: Bo\n    colour: red\n"))
    proxy.reset()
    code, _, out = probe(config)
    assert code == 1 and "colour" in out, out
    assert proxy.count() == 0


def test_a_no_op_sync_of_a_google_calendar_loads_neither_the_leads_nor_icalendar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the emulation of Google's API (tests/googleemu.py): one API request, no token
    request, and none of the heavy modules (nor google's client libraries)."""
    from followsync.googleauth import GoogleSettings, TokenStore
    from tests.googleemu import GoogleEmu

    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    emu = GoogleEmu().start()
    try:
        (tmp_path / "client.json").write_text(json.dumps({"installed": {
            "client_id": emu.client_id, "client_secret": emu.client_secret}}))
        TokenStore(GoogleSettings("work", "F", tmp_path / "client.json", tmp_path / "state"),
                   emu.client_id).keep_refresh(emu.issue_tokens()[0])
        config = write_project(tmp_path, "  - name: work\n    type: google\n    calendar: F\n"
                               f"    client_secret: client.json\n    endpoint: {emu.url}\n")
        code, loaded, out = probe(config)
        assert code == 0 and "2 created" in out, out
        emu.reset_log()
        code, loaded, out = probe(config)
        assert code == 0 and "2 unchanged" in out, out
        assert len(emu.requests) == len(emu.api_requests()) == 1
        assert heavy(loaded) == []
        assert not [m for m in loaded if m.startswith(("googleapiclient", "google."))]
    finally:
        emu.stop()


def test_a_no_op_sync_does_not_load_pydantic_and_a_changed_config_is_validated_again(
        tmp_path: Path) -> None:
    """The config comes validated from the cache only while its bytes are as they were: a
    broken edit is reported as always (exit 1, FILE:LINE:COL)."""
    config = write_project(tmp_path, ics_target(tmp_path))
    probe(config)
    _, loaded, _ = probe(config)
    assert "pydantic" not in loaded
    config.write_text(config.read_text().replace("state_dir:", "stat_dir:"))
    code, loaded, out = probe(config)
    assert code == 1 and "unknown key 'stat_dir'" in out, out
    assert "pydantic" in loaded


# --- a retried write that had landed --------------------------------------------------------
def test_a_retried_put_that_had_landed_counts_as_written(
        dav_project: tuple[Path, FaultProxy], capsys: pytest.CaptureFixture[str]) -> None:
    """The re-read contract (backends.base.Backend): the proxy applies a PUT but loses its
    answer; davhttp sends it again, which meets its own first attempt (412). The sync reads
    the item back, sees what it sent, and counts an update — no conflict, no warning."""
    from followsync.cli import main
    from tests.faultproxy import Fault, method_is

    config, proxy = dav_project
    assert main(["--config", str(config), "--now", NOW, "sync"]) == 0
    leads = config.parent / "leads.yaml"  # ada's note moves: her follow-up changes
    leads.write_text(leads.read_text().replace("2026-11-01 sent", "2026-11-05 sent"))
    capsys.readouterr()
    proxy.reset()
    proxy.faults = [Fault(action="drop_response", match=method_is("PUT"))]
    assert main(["--config", str(config), "--now", NOW, "sync"]) == 0
    out = capsys.readouterr()
    assert "1 updated" in out.out and "changed meanwhile" not in out.out + out.err, out
    assert [s.status for s in proxy.seen() if s.method == "PUT"] == [None, 412]
    proxy.reset()
    assert main(["--config", str(config), "--now", NOW, "sync"]) == 0
    assert proxy.count() == 1  # the state holds the landed write: nothing left to do


# --- one tally ---------------------------------------------------------------------------
def _report(config: Path, dry_run: bool) -> TargetReport:
    loaded = load_config(config)
    now = datetime(2026, 11, 12, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    [report] = run(loaded, now, SyncOptions(dry_run=dry_run)).targets
    return report


def _agree(config: Path) -> None:
    planned, done = _report(config, dry_run=True), _report(config, dry_run=False)
    assert (planned.created, planned.updated, planned.deleted, planned.kept) == \
        (done.created, done.updated, done.deleted, done.kept)
    # what `plan` must check (no state row) a sync finds as planned: unchanged
    assert planned.unchanged + planned.checked == done.unchanged
    assert planned.summary(planned=True).split(": ", 1)[1].startswith(
        f"{done.created} to create, {done.updated} to update, {done.deleted} to delete")


def test_plan_and_sync_count_alike(tmp_path: Path) -> None:
    config = write_project(tmp_path, ics_target(tmp_path))
    _agree(config)  # a first sync: everything created
    text = (tmp_path / "leads.yaml").read_text()
    (tmp_path / "leads.yaml").write_text(text.replace("2026-11-01 sent", "2026-11-05 sent"))
    _agree(config)  # one update
    _agree(config)  # nothing to do
    shutil.rmtree(tmp_path / "state")
    _agree(config)  # the state lost: everything checked, found as planned


def test_the_collector_is_paused_to_plan_and_on_while_calendars_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gcpause's one policy: the leads are loaded and planned with the cyclic collector
    paused, and the writes (minutes of a first upload) run with it on, from the command line
    as in the daemon."""
    import gc

    from followsync import rules
    from followsync.cli import main
    from followsync.sync.apply import Apply

    seen: list[tuple[str, bool]] = []
    plan, create = rules.plan, Apply.create

    def planning(*args: Any, **kwargs: Any) -> Any:
        seen.append(("plan", gc.isenabled()))
        return plan(*args, **kwargs)

    def creating(self: Apply, *args: Any, **kwargs: Any) -> Any:
        seen.append(("write", gc.isenabled()))
        return create(self, *args, **kwargs)

    monkeypatch.setattr(rules, "plan", planning)
    monkeypatch.setattr(Apply, "create", creating)
    config = write_project(tmp_path, ics_target(tmp_path))
    assert gc.isenabled()
    assert main(["--config", str(config), "--now", "2026-12-01T08:00", "sync"]) == 0
    assert set(seen) == {("plan", False), ("write", True)}
    assert gc.isenabled()
