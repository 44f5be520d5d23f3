"""Hostile and odd input (issue 6, item 3): each is a clear error or correct output, never a
traceback and never a hang. Ends with a fuzz test of the lead-file loader (thousands of
valid and broken files through `followsync validate`, and `plan` when they are valid).
"""

from __future__ import annotations

import errno
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.errors import ConfigError
from followsync.leads import load_leads
from followsync.render import render, uid_for
from followsync.sync.planning import make_plans
from followsync.yamlsrc import MAX_BYTES
from tests.forkrunner import ForkRunner
from tests.project import Project, config_text, ics_target, make_project
from tests.project import cli as run_cli

NOW = "2026-03-02T10:00"
CONFIG = config_text()
GOOD = b"version: 1\nleads:\n  dana:\n    name: Dana\n    last_contact: 2026-02-01\n"
LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): \S")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, GOOD, NOW)


def cli(project: Project | Path, *args: str) -> tuple[int, str, str]:
    return run_cli(project / "config.yaml", *args, now=NOW)


def assert_located(err: str, file: Path | str, lines: int | None = None) -> None:
    """Every problem is `FILE:LINE:COL: message` (hints indented under it), and points
    inside the file."""
    assert err.strip(), "no message at all"
    for line in err.splitlines():
        if line.startswith("  hint: ") or not line.strip():
            continue
        found = LOCATED.match(line)
        assert found, f"not located: {line!r}"
        assert found["file"] == str(file), line
        assert int(found["line"]) >= 1 and int(found["col"]) >= 1
        if lines is not None:
            assert int(found["line"]) <= lines + 1, line


def invalid(project: Project, data: bytes, expected: str, bound: float = 5.0) -> str:
    (project / "leads.yaml").write_bytes(data)
    started = time.monotonic()
    code, out, err = cli(project, "validate")
    took = time.monotonic() - started
    assert code == 1, err
    assert out == ""
    assert expected in err, err
    assert "Traceback" not in err and "internal error" not in err
    assert_located(err, project / "leads.yaml", data.count(b"\n") + 1)
    assert took < bound, f"took {took:.1f} s"
    return err


# ---------------------------------------------------------------------- bombs and sizes
def billion_laughs(levels: int = 9) -> bytes:
    lines = [b"version: 1", b"a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(b"a%d: &a%d [%s]" % (i, i, b", ".join([b"*a%d" % (i - 1)] * 10)))
    return b"\n".join(lines) + b"\n"


def test_an_alias_bomb_is_refused_at_once(project: Project) -> None:
    """10**10 nodes once expanded: refused where the expansion passes the limit, in well
    under a second of work (before: 2 million nodes were built first, ~5 s)."""
    err = invalid(project, billion_laughs(), "too large (alias expansion?)", bound=2.0)
    assert ":8:5: " in err  # a6 = 10**7 nodes: the first past 2 million


def test_a_merge_key_bomb_loads_without_blowing_up(project: Project) -> None:
    """Each lead merges the previous one ten times (`<<: [*a, *a, ...]`): a valid file whose
    naive expansion is 10**9 pairs. It loads in no time, with the merged values."""
    lines = [b"version: 1", b"leads:", b"  l0: &l0 {name: Dana, org: Acme}"]
    for i in range(1, 10):
        lines.append(b"  l%d: &l%d {<<: [%s]}" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 10)))
    (project / "leads.yaml").write_bytes(b"\n".join(lines) + b"\n")
    started = time.monotonic()
    code, out, err = cli(project, "validate")
    assert (code, err) == (0, "")
    assert "10 leads" in out
    assert time.monotonic() - started < 2


DEEP = {
    "flow": lambda: b"version: 1\nleads: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "flow-mapping": lambda: b"leads: " + b"{a: " * 50_000 + b"b" + b"}" * 50_000 + b"\n",
    "compact-sequences": lambda: b"leads:\n" + b"- " * 100_000 + b"x\n",
    "complex-keys": lambda: b"? " * 100_000 + b"x\n",
    "block-mappings": lambda: b"".join(b" " * i + b"k:\n" for i in range(400)) + b" " * 400 + b"v\n",
}


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_nesting_is_an_error_not_a_crash(name: str, project: Project,
                                              runner: ForkRunner) -> None:
    """libyaml composes recursively in C: ~100,000 levels overflowed the C stack and killed
    the process with SIGSEGV. Run in a child process, so a crash fails this test cleanly."""
    (project / "leads.yaml").write_bytes(DEEP[name]())
    child = runner.wait(runner.start(["--config", str(project / "config.yaml"), "validate"]))
    assert child.code == 1, (child.status, child.output()[-500:])
    assert "too deeply nested" in child.output()
    assert "remove the nesting" in child.output()  # not the indentation hint of a syntax error
    assert "YAML syntax error" not in child.output()
    assert_located(child.output(), project / "leads.yaml")


@pytest.mark.parametrize("depth", [150, 250, 999, 1001, 5000])
def test_nesting_gets_one_message_whoever_stops_it(depth: int) -> None:
    """PyYAML 6.0.4 stops flow nesting past 1,000 levels in its scanner, before our composer's
    own limit (MAX_DEPTH): the user must get the same message either way, on any PyYAML."""
    from followsync.errors import ConfigError
    from followsync.yamlsrc import MAX_DEPTH, load

    data = b"leads: " + b"[" * depth + b"]" * depth + b"\n"
    if depth < MAX_DEPTH:
        load("f.yaml", data)
        return
    with pytest.raises(ConfigError) as caught:
        load("f.yaml", data)
    (problem,) = caught.value.problems
    assert (problem.message, problem.hint) == (
        "the document is too deeply nested",
        "a lead file is a flat list of leads; remove the nesting")
    assert problem.line == 1 and problem.col > MAX_DEPTH


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkRunner]:
    with ForkRunner(tmp_path_factory.mktemp("children")) as running:
        yield running


def test_a_50_mb_file_is_refused_quickly(project: Project) -> None:
    data = GOOD + b"# " + b"x" * (50 * 2**20) + b"\n"
    err = invalid(project, data, "the file is 50.0 MB; followsync reads YAML files of up to 32 MB")
    assert ":1:1: " in err


def test_a_file_just_under_the_limit_is_read(project: Project) -> None:
    padding = MAX_BYTES - len(GOOD) - 100
    (project / "leads.yaml").write_bytes(GOOD + b"#" + b"x" * padding + b"\n")
    code, _, err = cli(project, "validate")
    assert (code, err) == (0, ""), err


def test_thousands_of_problems_are_reported_in_linear_time(project: Project) -> None:
    """A large mapping of unknown keys (say, a wrong file): every key is one located
    problem. Locating each used to scan the mapping (4,500 keys took 30 s)."""
    data = b"version: 1\n" + b"".join(b"key%d: %s\n" % (i, b"v" * 50) for i in range(15_000))
    err = invalid(project, data, "key14999", bound=15.0)
    assert err.count(" key") >= 15_000


ODD_ERRORS = [
    ("binary", random.Random(1).randbytes(4000), "not UTF-8"),
    ("utf-16", GOOD.decode().encode("utf-16"), "not UTF-8"),
    ("nul", GOOD + b"\x00\n", "NUL byte"),
    ("control-characters", b"version: 1\nleads:\n  a: {name: \"A\x07\x1b[31m\"}\n\x01", ""),
    ("empty", b"", "the lead file is empty"),
    ("only-comments", b"# just a comment\n\n   # another\n", "the lead file is empty"),
    ("only-a-bom", b"\xef\xbb\xbf", "the lead file is empty"),
    ("tabs", b"version: 1\nleads:\n\tdana:\n\t\tname: Dana\n", "a tab character"),
    ("a-list", b"- version: 1\n", "a lead file is a mapping"),
    ("a-scalar", b"just some text\n", "a lead file is a mapping"),
    ("two-documents", GOOD + b"---\n" + GOOD, "expected a single document"),
    ("undefined-alias", b"version: 1\nleads: *nowhere\n", "found undefined alias"),
    ("duplicate-anchor", b"a: &x 1\nb: &x 2\n", "found duplicate anchor"),
    ("self-reference", b"version: 1\nleads: &l {a: *l}\n", "too large"),
    ("python-tag", b"version: 1\nleads: !!python/object/apply:os.system [ls]\n", ""),
    ("year-9999", GOOD.replace(b"2026-02-01", b"9999-12-31"), "a date out of range"),
]


@pytest.mark.parametrize(("name", "data", "expected"), ODD_ERRORS, ids=[c[0] for c in ODD_ERRORS])
def test_odd_files_are_located_errors(name: str, data: bytes, expected: str,
                                      project: Project) -> None:
    invalid(project, data, expected)


ODD_VALID = [
    ("bom", b"\xef\xbb\xbf" + GOOD),
    ("crlf", GOOD.replace(b"\n", b"\r\n")),
    ("bom-crlf", b"\xef\xbb\xbf" + GOOD.replace(b"\n", b"\r\n")),
    ("no-final-newline", GOOD.rstrip(b"\n")),
    ("old-mac-cr", GOOD.replace(b"\n", b"\r")),
    ("tabs-inside-values", GOOD.replace(b"name: Dana", b"name: \"Dana\\tW\"  \t# c")),
    ("explicit-document", b"%YAML 1.2\n---\n" + GOOD + b"...\n"),
]


@pytest.mark.parametrize(("name", "data"), ODD_VALID, ids=[c[0] for c in ODD_VALID])
def test_odd_but_valid_files_sync(name: str, data: bytes, project: Project) -> None:
    (project / "leads.yaml").write_bytes(data)
    code, out, err = cli(project, "sync")
    assert (code, err) == (0, ""), err
    assert "1 created" in out
    assert b"UID:followsync-dana-cadence-file" in (project / "out.ics").read_bytes()


# ------------------------------------------------------ unicode, long text, templates
EMOJI = "👩‍👩‍👧‍👦🇩🇪✉️é中文ß\u200b😀"  # ZWJ family, flag, variation selector, CJK, ZWSP


def written_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    return data.split(b"\r\n")[:-1]


def test_unicode_in_every_text_field_is_folded_at_75_octets_on_character_bounds(
        project: Project) -> None:
    e = EMOJI
    (project / "leads.yaml").write_text(f"""\
version: 1
defaults:
  action: "Écrire à {{name}} {e}"
  on_status:
    "intervjuad {e}": {{after: 1d, do: "Tack {{name}} {e}"}}
leads:
  dana:
    name: "Dana {e * 4}"
    org: "Acme {e}"
    role: "Chef {e}"
    email: "Dana {e} <dänä.中文ß😀@exämple.中文>"
    phone: "+1 555 {e}"
    url: "https://example.com/{e}"
    tags: ["{e}", "ünï"]
    status: "intervjuad {e}"
    status_since: 2026-03-01
    notes: |
      {(e + " ") * 60}
      second line {e}
    last_contact: 2026-02-01
    follow_ups:
      - {{on: 2026-04-01, do: "Appeler {{name}} {e * 3}"}}
""", encoding="utf-8")
    code, _, err = cli(project, "sync")
    assert (code, err) == (0, ""), err
    lines = written_lines(project / "out.ics")
    for line in lines:
        assert len(line) <= 75, line  # octets
        line.decode("utf-8")  # each physical line is whole UTF-8: no character was split
    calendar = icalendar.Calendar.from_ical(b"\r\n".join(lines) + b"\r\n")
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 3  # cadence, the one-off and the status trigger
    for event in events:
        assert f"Dana {e * 4}" in str(event["SUMMARY"])
        description = str(event["DESCRIPTION"])
        for text in (f"Acme {e}", f"Chef {e}", "dänä.中文ß😀@exämple.中文", f"+1 555 {e}",
                     f"https://example.com/{e}", f"second line {e}"):
            assert text in description, text
    summaries = " ".join(str(event["SUMMARY"]) for event in events)
    assert f"Appeler Dana {e * 4} {e * 3}" in summaries
    assert f"Tack Dana {e * 4} {e}" in summaries


def test_very_long_notes(project: Project) -> None:
    notes = "".join(f"line {i}: " + "ä" * 200 + "\n" for i in range(500))  # ~100 kB
    (project / "leads.yaml").write_text(
        "version: 1\nleads:\n  dana:\n    name: Dana\n    last_contact: 2026-02-01\n"
        "    notes: |\n" + "".join(f"      {line}\n" for line in notes.splitlines()),
        encoding="utf-8")
    code, _, err = cli(project, "sync")
    assert (code, err) == (0, ""), err
    lines = written_lines(project / "out.ics")
    assert all(len(line) <= 75 for line in lines)
    for line in lines:
        line.decode("utf-8")
    (event,) = icalendar.Calendar.from_ical((project / "out.ics").read_bytes()).walk("VEVENT")
    assert notes.rstrip("\n") in str(event["DESCRIPTION"])


@pytest.mark.parametrize("name", [
    "{name}", "{org}", "Dana {email} }{", "{{name}}", "{", "}", "{nope}",
    "Dana\nX-INJECTED:1", "Dana\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil", "Dana\\nX-A:b",
    "Dana; X-B=c: d, e",
])
def test_names_with_braces_and_newlines_neither_crash_nor_inject(name: str,
                                                                 project: Project) -> None:
    """Placeholders are filled in one pass: a name holding `{email}` stays literal; a
    newline in a name is escaped text, never a new line or property of the calendar."""
    value = yaml.safe_dump(name, allow_unicode=True, default_style='"').strip()
    (project / "leads.yaml").write_text(
        "version: 1\ndefaults:\n  action: \"Ask {name} at {org} ({email})\"\nleads:\n"
        f"  dana:\n    name: {value}\n    org: {value}\n    email: \"e@x.y\"\n"
        "    last_contact: 2026-02-01\n", encoding="utf-8")
    code, _, err = cli(project, "sync")
    assert (code, err) == (0, ""), err
    data = (project / "out.ics").read_bytes()
    physical = data.split(b"\r\n")
    assert not any(line.startswith((b"X-INJECTED", b"UID:evil", b"X-A:", b"X-B")) for line in
                   physical)
    assert physical.count(b"BEGIN:VEVENT") == 1 and physical.count(b"END:VEVENT") == 1
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    assert str(event["UID"]) == "followsync-dana-cadence-file"
    shown = name.replace("\r\n", "\n")
    assert f"Ask {shown} at {shown} (e@x.y)" in str(event["DESCRIPTION"]).replace("\r\n", "\n")


# --------------------------------------------------------------------- the .ics target
@pytest.fixture
def synced(project: Project) -> tuple[Project, bytes]:
    assert cli(project, "sync")[0] == 0
    (project / "leads.yaml").write_bytes(GOOD.replace(b"2026-02-01", b"2026-03-01"))
    return project, (project / "out.ics").read_bytes()


def target_fails(project: Project, expected: str, before: bytes | None) -> str:
    code, out, err = cli(project, "sync")
    assert code == 3, (out, err)
    assert "Traceback" not in err and "internal error" not in err
    lines = [line for line in (out + err).splitlines() if expected in line]
    assert len(lines) == 1 and lines[0].startswith("file: "), out + err
    if before is not None:
        assert (project / "out.ics").read_bytes() == before
    assert [p.name for p in project.dir.iterdir() if p.name.endswith(".tmp")] == []
    return err


def test_an_ics_target_that_is_a_folder(project: Project) -> None:
    (project / "out.ics").mkdir()
    target_fails(project, "is a folder, not an .ics file", None)


def test_an_ics_target_under_a_file(project: Project) -> None:
    project.write_config(targets=ics_target("plain/out.ics"))
    (project / "plain").write_text("not a folder")
    # a config error at its `path:` (it used to fail only when the target was written)
    code, out, err = cli(project, "sync")
    assert (code, out) == (1, "")
    assert err.startswith(f"{project / 'config.yaml'}:5:35: the folder of the ics target "
                          f"'file' is a file: {project / 'plain'}\n"), err
    assert (project / "plain").read_text() == "not a folder"


def test_a_read_only_ics_target_keeps_the_old_file(synced: tuple[Project, bytes],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project, before = synced

    def read_only(src: Any, dst: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    target_fails(project, "cannot write", before)
    target_fails(project, "Read-only file system; the old file is kept", before)
    monkeypatch.undo()
    assert cli(project, "sync")[0] == 0  # the next sync writes it
    assert b"DTSTART;TZID=Europe/Berlin:20260308T090000" in (project / "out.ics").read_bytes()


def test_a_full_disk_keeps_the_old_file(synced: tuple[Project, bytes],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    project, before = synced
    real = os.fdopen

    class Full:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])  # half of it fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    target_fails(project, "No space left on device; the old file is kept", before)
    monkeypatch.undo()
    assert cli(project, "sync")[0] == 0
    assert b"DTSTART;TZID=Europe/Berlin:20260308T090000" in (project / "out.ics").read_bytes()


# ============================================================================== fuzzing
BASES = [
    GOOD.decode(),
    """\
# my leads
version: 1
defaults:
  cadence: [1mo, 2mo, 3mo]
  give_up_after: 4
  at: "09:00"
  alarms: [0m, 1d]
  action: "Follow up with {name}"
  on_status:
    interviewed: {after: 1d, do: "Send {name} a thank-you note"}
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    email: dana@acme.example
    tags: [marketing, referral]
    status: waiting
    notes: |
      Offered to "make" a marketing position.
    last_contact: 2013-05-03
    log:
      - 2013-06-03 emailed: thanks again
      - {date: 2013-06-20, by: them, note: "replied"}
    next: 2014-01-06
    snooze_until: 2013-09-01
    cadence: [6w, 2mo]
    follow_ups:
      - {on: 2014-01-06, do: "Ask about the role", at: "10:00"}
  bob: {name: Bob, last_contact: 2026-01-02, status: hired}
""",
    """\
version: 1
base: &base {cadence: [2w], at: "08:30", as: todo}
leads:
  a: {<<: *base, name: "A {org}", org: O}
  b:
    <<: *base
    name: B
    log: [2026-01-01 hi, {date: 2026-01-05, by: both}]
    follow_ups: [{id: x, on: 2026-02-01, do: "call", done: true}]
""",
]
TOKENS = ["- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "<<: *a", "!!str ", "|", ">",
          "'", '"', "#", "\t", "---", "...", "? ", "%YAML 1.2", "\r\n", "\n", "  ", "on:",
          "yes", "09:00", "24:61", "2026-13-45", "9999-12-31", "0001-01-01", "1mo", "0w",
          "999999y", "{name}", "{nope}", "null", "~", "true", "1e309", "-0", "0x10", "name:",
          "leads:", "log:", "follow_ups:", "by: them", "\ufeff", "\x00", "\x85", "\u2028",
          "😀", "\\", "@", "`", "%"]


def random_text(rng: random.Random, size: int) -> str:
    """Any characters: ASCII, controls, other planes, lone surrogates (not UTF-8 then)."""
    pick = [lambda: chr(rng.randrange(32, 127)), lambda: chr(rng.randrange(0, 32)),
            lambda: chr(rng.randrange(0x80, 0x3000)), lambda: chr(rng.randrange(0x1F300, 0x1FAFF)),
            lambda: chr(rng.randrange(0xD800, 0xE000)), lambda: chr(rng.choice([0xFEFF, 0x2028,
                                                                                 0x85, 0xFFFE]))]
    weights = [60, 8, 12, 8, 2, 4]
    return "".join(rng.choices(pick, weights)[0]() for _ in range(size))


def mutate(rng: random.Random) -> bytes:
    text = rng.choice(BASES)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])):
        kind = rng.choice(["insert", "delete", "replace", "line", "token", "token"])
        at = rng.randint(0, len(text))
        if kind == "insert":
            text = text[:at] + random_text(rng, rng.randint(1, 3)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + rng.randint(1, 40):]
        elif kind == "replace":
            text = text[:at] + random_text(rng, 1) + text[at + 1:]
        elif kind == "token":
            text = text[:at] + rng.choice(TOKENS) + text[at:]
        else:
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            op = rng.choice(["drop", "dup", "swap", "indent", "dedent"])
            if op == "drop":
                del lines[i]
            elif op == "dup":
                lines.insert(i, lines[i])
            elif op == "swap" and i + 1 < len(lines):
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
            elif op == "indent":
                lines[i] = "  " + lines[i]
            else:
                lines[i] = lines[i][2:]
            text = "\n".join(lines)
    return text.encode("utf-8", errors="surrogatepass")  # lone surrogates: not UTF-8


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid lead file with 1-6 random edits (from a seed: cheap to draw)."""
    return mutate(random.Random(draw(st.integers(0, 2**64))))


GOOD_VALUES: dict[str, list[Any]] = {
    "name": ["Dana", "Émile {org}", "李 {email}", "x" * 300, "{name}", "A\nB"],
    "org": ["Acme", None, "{role} & Co", ""], "role": ["CEO", None], "email": ["a@b.c"],
    "phone": ["+1 555"], "url": ["https://x.y/z"], "tags": [[], ["a", "b"], "solo"],
    "status": ["waiting", "hired", "interviewed", "offer", None],
    "status_since": ["2026-02-01", "2026-03-02", "8999-12-31", "1000-01-01"],
    "notes": ["n", "x\ny" * 50, None],
    "last_contact": ["2026-02-01", "2025-12-31", "2026-03-02", "2026-03-03", "1000-01-01",
                     "8999-12-31"],
    "log": [[], ["2026-02-01 mailed"], [{"date": "2026-02-20", "by": "them"}],
            ["2026-02-01 a", {"date": "2026-02-01", "by": "both", "note": "call"}],
            [{"2026-01-05 emailed": "thanks"}]],
    "next": ["2026-04-01", "2026-01-01", "8999-12-31"], "snooze_until": ["2026-05-01"],
    "cadence": [["1w"], ["1d", "2mo", "100y"], ["15m"], ["1y"], []],
    "give_up_after": [1, 3, None, 0], "at": ["09:00", "23:59", "00:00", None],
    "all_day": [True, False], "duration": ["15m", "1d", "100y", "0m"],
    "alarms": [[], ["0m", "1d"], ["100y"]], "as": ["event", "todo"],
    "overdue": ["roll", "keep"], "closed": [["hired"], []],
    "action": ["Ping {name}", "{org}{role}{email}", "{nope}"],
    "on_status": [{"interviewed": {"after": "1d", "do": "Thank {name}"}}, {}],
    "on_other_status": [{"offer": {"after": "0d", "do": "Tell {name}", "at": "08:00"}}],
    "follow_ups": [[{"on": "2026-03-10", "do": "x"}],
                   [{"on": "2026-03-10", "do": "x"}, {"on": "2026-03-10", "do": "y"}],
                   [{"on": "2026-03-01", "do": "x", "id": "one", "done": True, "all_day": True},
                    {"on": "2026-03-01", "do": "y", "id": "two", "at": "07:30"}]],
}
JUNK: list[Any] = [None, True, 0, -1, 1.5, float("nan"), float("inf"), "", "2026-02-30",
                   "25:00", "101y", "0w", "me", "{x}", [], {}, [[]], {"a": {"b": [1]}},
                   "9999-12-31", "0001-01-01", "\u2028", "😀" * 30, 10**30]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.6:
        return rng.choice(JUNK)
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice([*GOOD_VALUES, "x", "<<", "on", "yes"]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_settings(rng: random.Random, with_name: bool) -> dict[str, Any]:
    keys = rng.sample(sorted(GOOD_VALUES), rng.randrange(6))
    if with_name and "name" not in keys:
        keys.append("name")
    document = {key: rng.choice(GOOD_VALUES[key]) if rng.random() < 0.85 else
                random_value(rng) for key in keys}
    if rng.random() < 0.1:
        document[rng.choice(["nmae", "Name", "cadance", "x"])] = random_value(rng)
    return document


def random_document(rng: random.Random) -> Any:
    """A document shaped like a lead file: mostly sensible keys and values, some junk."""
    if rng.random() < 0.05:
        return random_value(rng)
    leads = {}
    for index in range(rng.randrange(5)):
        lead_id = rng.choice(["dana", "a-1", "x.y_z", "0", "Bad Id", "é", "", "a" * 40])
        leads[lead_id] = random_settings(rng, with_name=rng.random() < 0.9)
        if leads[lead_id].get("email") == "a@b.c":  # two leads may not share an address
            leads[lead_id]["email"] = f"lead{index}@b.c"
    document: dict[str, Any] = {"version": rng.choice([1, 1, 1, 2, "1"]), "leads": leads}
    if rng.random() < 0.5:
        document["defaults"] = random_settings(rng, with_name=False)
    if rng.random() < 0.05:
        document[rng.choice(["verison", "lead", "x"])] = random_value(rng)
    return document


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A random lead-file-shaped document (from a seed: hypothesis's own recursive
    strategies cost ~0.2 s an example here), dumped in block or flow style."""
    rng = random.Random(draw(st.integers(0, 2**64)))
    document = random_document(rng)
    flow = rng.choice([False, None, True])
    return yaml.dump(document, Dumper=yaml.CSafeDumper, allow_unicode=True,
                     default_flow_style=flow, sort_keys=False).encode()


FUZZ_TODAY = date(2026, 3, 2)
BERLIN = ZoneInfo("Europe/Berlin")


def check_file(folder: Path, data: bytes, counts: Counter[str]) -> None:
    """The loader in-process: a ConfigError (exit 1) whose every problem is located inside
    the file, or a lead book. A valid book must plan and render (what a sync does with it).
    One file in 25 also goes through `followsync validate`: exit 0 or 1, nothing else."""
    path = folder / "leads.yaml"
    path.write_bytes(data)
    counts["examples"] += 1
    # YAML also breaks lines at U+0085, U+2028 and U+2029; splitlines() knows them all
    lines = len(data.decode("utf-8", errors="replace").splitlines()) + 1
    try:
        book = load_leads([path])
    except ConfigError as exc:
        counts["invalid"] += 1
        assert_located(str(exc), path, lines)
        expected = 1
    else:
        counts["valid"] += 1
        plans, _ = make_plans(book, FUZZ_TODAY, {})
        for lead_plan in plans:
            for item in lead_plan.follow_ups:
                uid = uid_for("file", item.lead_id, item.rule)
                text = render(item, uid=uid, kind=item.kind, zone=BERLIN,
                              stamp=datetime(2026, 3, 2, 10, tzinfo=BERLIN))
                assert all(len(line.encode()) <= 75 for line in text.split("\r\n")), text
                counts["rendered"] += 1
        expected = 0
    if counts["examples"] % 25 == 1:
        code, _, err = cli(folder, "validate")
        assert code == expected, (code, err, data[:500])
        if code:
            assert_located(err, path, lines)
        counts["cli"] += 1


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "config.yaml").write_text(CONFIG)
    return folder


FUZZ = settings(max_examples=2500, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
# Random structures are bigger documents (about 10x slower a case): fewer of them keep the
# whole suite within its 10-minute budget on 2 cores.
FUZZ_STRUCTURED = settings(max_examples=500, deadline=None, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))
FUZZ_CASES: dict[str, Counter[str]] = {}  # per fuzz test, for docs/reliability.md


def test_fuzz_mutated_lead_files(fuzz_dir: Path) -> None:
    """Valid lead files with characters, tokens and lines inserted, deleted, replaced."""
    counts: Counter[str] = Counter()

    @FUZZ
    @given(data=mutated())
    def one(data: bytes) -> None:
        check_file(fuzz_dir, data, counts)

    one()
    FUZZ_CASES["mutated"] = counts
    print("fuzz, mutated files:", dict(counts))
    assert counts["examples"] >= 2000 and counts["valid"] >= 100 and counts["invalid"] >= 1000
    assert counts["rendered"] >= 100 and counts["cli"] >= 80


def test_fuzz_random_lead_file_structures(fuzz_dir: Path) -> None:
    """Random documents shaped like lead files (known keys, random values), dumped as YAML
    in block and flow style."""
    counts: Counter[str] = Counter()

    @FUZZ_STRUCTURED
    @given(data=structured())
    def one(data: bytes) -> None:
        check_file(fuzz_dir, data, counts)

    one()
    FUZZ_CASES["structured"] = counts
    print("fuzz, random structures:", dict(counts))
    assert counts["examples"] >= 400 and counts["valid"] >= 20 and counts["invalid"] >= 200
    # (an `email:` that is no address makes a file invalid: fewer render than other values)
    assert counts["rendered"] >= 12 and counts["cli"] >= 16
