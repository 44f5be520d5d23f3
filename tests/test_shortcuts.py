"""The shortcuts (README, "What followsync keeps"): the config cache, the lead cache, the no-op
fast path and the delta basis all key on one fingerprint (followsync/fingerprint.py), live in
`state_dir`, cannot run code, and never change an answer: a sync with every shortcut kept
answers what a sync with none would."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import followsync.configcache as cc
import followsync.fingerprint as fingerprint
import followsync.leadcache as leadcache
from followsync.sync import delta, fastpath
from tests.project import Project, make_project

LEADS = """\
version: 1
defaults:
  cadence: [1w, 2w]
  at: "09:00"
leads:
  {a}-one:
    name: {A} One
    last_contact: 2026-11-20
  {a}-two:
    name: {A} Two
    last_contact: 2026-11-25
"""
SUMMARY = re.compile(r"^(\S+): (\d+) created, (\d+) updated, (\d+) deleted, (\d+) unchanged")
PLANNED = re.compile(r"^(\S+): (\d+) to create, (\d+) to update, (\d+) to delete, (\d+) unchanged")


def leads(name: str) -> str:
    return LEADS.format(a=name, A=name.title())


def counts(pattern: re.Pattern[str], out: str) -> tuple[int, ...]:
    """The first summary line's counts: created, updated, deleted, unchanged."""
    for line in out.splitlines():
        found = pattern.match(line)
        if found:
            return tuple(int(n) for n in found.groups()[1:])
    raise AssertionError(f"no summary in {out!r}")


def sync(project: Project, now: str | None = None) -> tuple[int, ...]:
    code, out, err = project.run("sync", now=now)
    assert code == 0, out + err
    return counts(SUMMARY, out)


def plan(project: Project, now: str | None = None) -> tuple[int, ...]:
    code, out, err = project.run("plan", now=now)
    assert code == 0, out + err
    return counts(PLANNED, out)


# --- defect 3: a re-pointed symlink -----------------------------------------------------------
def test_a_re_pointed_lead_file_link_is_synced_as_plan_sees_it(tmp_path: Path) -> None:
    project = make_project(tmp_path.resolve() / "p")
    project.write_leads(leads("ann"), name="a.yaml")
    project.write_leads(leads("bob"), name="b.yaml")
    project.leads.symlink_to("a.yaml")
    assert sync(project) == (2, 0, 0, 0)
    assert sync(project) == (0, 0, 0, 2)  # (the shortcuts are made and used)
    project.leads.unlink()
    project.leads.symlink_to("b.yaml")
    assert plan(project) == (2, 0, 2, 0)
    assert sync(project) == (2, 0, 2, 0)
    assert b"Bob One" in project.ics.read_bytes() and b"Ann One" not in project.ics.read_bytes()


def test_a_re_pointed_folder_link_in_the_config_is_seen(tmp_path: Path) -> None:
    """A path the config names through a linked folder: where the link points now counts."""
    project = make_project(tmp_path.resolve() / "p")
    project.write_config(leads="data/leads.yaml")
    for name in ("ann", "bob"):
        (project / name).mkdir()
        (project / name / "leads.yaml").write_text(leads(name))
    (project / "data").symlink_to("ann")
    assert sync(project) == (2, 0, 0, 0)
    assert sync(project) == (0, 0, 0, 2)
    (project / "data").unlink()
    (project / "data").symlink_to("bob")
    assert sync(project) == (2, 0, 2, 0)


# --- defect 4: the zone from the environment --------------------------------------------------
def test_a_change_of_tz_without_timezone_in_the_config_moves_the_items(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path.resolve() / "p", leads=leads("ann"), timezone=None)
    monkeypatch.setenv("TZ", "Europe/Berlin")
    now = "2026-12-01T08:00+01:00"
    assert sync(project, now) == (2, 0, 0, 0)
    assert sync(project, now) == (0, 0, 0, 2)
    monkeypatch.setenv("TZ", "America/New_York")
    assert plan(project, now) == (0, 2, 0, 0)
    assert sync(project, now) == (0, 2, 0, 0)
    assert b"TZID=America/New_York" in project.ics.read_bytes()
    assert b"TZID=Europe/Berlin" not in project.ics.read_bytes()


# --- defect 5: followsync's own code ----------------------------------------------------------
def test_a_change_of_code_without_a_version_bump_uses_no_shortcut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validations: list[Path]) -> None:
    project = make_project(tmp_path.resolve() / "p", leads=leads("ann"))
    sync(project)
    sync(project)
    validations.clear()
    answers: list[object] = []
    for module, name in ((fastpath, "nothing_changed"), (delta, "find")):
        real = getattr(module, name)

        def spy(*args: object, _real: object = real, **kwargs: object) -> object:
            answer = _real(*args, **kwargs)  # type: ignore[operator]
            answers.append(answer)
            return answer

        monkeypatch.setattr(module, name, spy)
    import followsync.sync as sync_package

    monkeypatch.setattr(sync_package, "nothing_changed", fastpath.nothing_changed)
    assert sync(project) == (0, 0, 0, 2)
    assert validations == [] and answers[0] is not None  # (the shortcuts are used)
    answers.clear()
    monkeypatch.setattr(fingerprint, "code", lambda: "another followsync")
    assert sync(project) == (0, 0, 0, 2)
    assert len(validations) == 1  # the config cache missed
    assert answers == [None, None]  # neither the fast path nor the delta answered


# --- one loader -------------------------------------------------------------------------------
def test_plan_and_sync_load_the_config_the_same_way(
        tmp_path: Path, validations: list[Path]) -> None:
    project = make_project(tmp_path.resolve() / "p", leads=leads("ann"))
    sync(project)  # (makes the state folder: the shortcut is kept from the next command on)
    sync(project)
    validations.clear()
    for command in ("plan", "sync", "validate", "agenda"):
        code, out, err = project.run(command)
        assert code == 0, out + err
    assert validations == []  # every command read the one cached Config


# --- done when: a damaged or planted shortcut changes no answer, and runs nothing -------------
COMMANDS = ("validate", "plan", "agenda", "sync")
TIMING = re.compile(r" \(\d+\.\d\d s\)")
FUZZ_LEADS = leads("ann") + """\
  cat-three:
    name: Cat Three
    status: offer
    log:
      - 2026-11-10 wrote
"""


@dataclass
class Saved:
    """A project as a sync left it (its shortcuts made), to put back before each run."""

    project: Project
    copy: Path

    def restore(self) -> None:
        shutil.rmtree(self.project.dir)
        shutil.copytree(self.copy, self.project.dir, symlinks=True)

    def answers(self) -> tuple[list[tuple[int, str]], bytes]:
        """What every command says (timings aside), and the calendar after the sync."""
        said = []
        for command in COMMANDS:
            code, out, err = self.project.run(command)
            said.append((code, TIMING.sub("", out + err)))
        return said, self.project.ics.read_bytes()


def shortcut_files(project: Project) -> list[Path]:
    folder = project.state / "shortcuts"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def drop_every_shortcut(project: Project) -> None:
    """The shortcuts gone: the shortcut files, the delta basis, the fast path's marks."""
    shutil.rmtree(project.state / "shortcuts", ignore_errors=True)
    db = sqlite3.connect(project.state / "state.sqlite")
    with db:
        db.execute("DELETE FROM meta WHERE key LIKE 'note:%' OR key LIKE 'clean:%'")
    db.close()


def edit_note(project: Project, change: Callable[[str], str]) -> None:
    db = sqlite3.connect(project.state / "state.sqlite")
    with db:
        [(value,)] = db.execute("SELECT value FROM meta WHERE key='note:delta-basis'")
        db.execute("UPDATE meta SET value=? WHERE key='note:delta-basis'", (change(value),))
    db.close()


@pytest.fixture(params=["no-op", "one lead edited"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Saved:
    """A project synced twice (every shortcut made), then left as is or with one lead
    edited (the delta's case)."""
    project = make_project(tmp_path.resolve() / "p", leads=FUZZ_LEADS)
    for _ in range(2):
        assert project.run("sync")[0] == 0
    assert shortcut_files(project) and project.state.joinpath("state.sqlite").exists()
    if request.param == "one lead edited":
        project.edit("last_contact: 2026-11-25", "last_contact: 2026-11-28")
    copy = tmp_path / "saved"
    shutil.copytree(project.dir, copy, symlinks=True)
    return Saved(project, copy)


def reference(saved: Saved) -> tuple[list[tuple[int, str]], bytes]:
    saved.restore()
    drop_every_shortcut(saved.project)
    return saved.answers()


def test_no_command_answers_otherwise_with_every_shortcut_deleted(saved: Saved) -> None:
    saved.restore()
    with_shortcuts = saved.answers()
    assert with_shortcuts == reference(saved)
    assert with_shortcuts[0][3][0] == 0


def damaged(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Truncations and byte flips of `data`: at its ends, and at `count` random places."""
    places = {0, 1, len(data) // 2, len(data) - 1} | {rng.randrange(len(data))
                                                       for _ in range(count)}
    cuts = [data[:n] for n in sorted(places)]
    flips = [data[:n] + bytes([data[n] ^ rng.choice((1, 0x20, 0x80, 0xFF))]) + data[n + 1:]
             for n in sorted(places)]
    return cuts + flips


def test_a_damaged_shortcut_changes_no_answer(saved: Saved) -> None:
    expected = reference(saved)
    rng = random.Random(18)
    saved.restore()
    files = shortcut_files(saved.project)
    cases: list[tuple[str, Callable[[], None]]] = []
    for file in files:
        data = file.read_bytes()
        for bad in damaged(data, rng, 6):
            cases.append((f"{file.name} {len(bad)} bytes",
                          lambda file=file, bad=bad: file.write_bytes(bad)))
    note = sqlite3.connect(saved.project.state / "state.sqlite").execute(
        "SELECT value FROM meta WHERE key='note:delta-basis'").fetchone()[0]
    for bad in damaged(note.encode(), rng, 6):
        text = bad.decode(errors="replace")
        cases.append((f"basis {len(text)}", lambda text=text: edit_note(
            saved.project, lambda _: text)))
    assert len(cases) > 30
    for what, corrupt in cases:
        saved.restore()
        corrupt()
        assert saved.answers() == expected, what


PAYLOAD = "import pathlib; pathlib.Path({marker!r}).write_text('ran')"


class Planted:
    """A pickle that would run code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (PAYLOAD.format(marker=str(self.marker)),)


def planted_json(kept: bytes, payload: object) -> bytes:
    """A config shortcut whose checksum and key are right, but whose Config is `payload`."""
    data = json.loads(kept.partition(b"\n")[2])
    data["config"] = payload
    body = json.dumps(data).encode()
    return f"{cc.FORMAT} {hashlib.blake2b(body, digest_size=16).hexdigest()}\n".encode() + body


def test_a_planted_shortcut_runs_nothing_and_changes_no_answer(
        saved: Saved, tmp_path: Path) -> None:
    expected = reference(saved)
    marker = tmp_path / "ran"
    saved.restore()
    [kept] = [p for p in shortcut_files(saved.project) if p.name.startswith("config-")]
    good = json.loads(kept.read_bytes().partition(b"\n")[2])["config"]
    wrong_type = json.loads(json.dumps(good))
    wrong_type["Config"]["max_deletes"] = "x"
    reduce_style = [
        {"__reduce__": ["builtins.exec", [PAYLOAD.format(marker=str(marker))]]},
        {"Config": {**good["Config"], "path": {"py/object": "os.system", "args": ["true"]}}},
        {"builtins.exec": PAYLOAD.format(marker=str(marker))},
        wrong_type,
    ]
    pickled = pickle.dumps(Planted(marker))
    plantings: list[Callable[[], None]] = [
        lambda: [p.write_bytes(pickled) for p in shortcut_files(saved.project)],
        lambda: (saved.project.state / "shortcuts" / "leads.pickle").write_bytes(pickled),
        lambda: edit_note(saved.project, lambda _: pickled.hex()),
        *[lambda payload=payload: kept.write_bytes(planted_json(kept.read_bytes(), payload))
          for payload in reduce_style],
    ]
    # (where, and by which name, the config cache was kept before: a pickle, no longer read)
    old = tmp_path / "xdg-cache" / "followsync"
    for plant in plantings:
        saved.restore()
        old.mkdir(parents=True, exist_ok=True)
        older = hashlib.sha256(str(saved.project.config.resolve()).encode()).hexdigest()[:32]
        for name in (f"{older}.pickle", cc.shortcut_path(old, saved.project.config).name):
            (old / name).write_bytes(pickled)
        plant()
        assert saved.answers() == expected
        assert not marker.exists()


# --- the delta basis: a lead that moves to the next lead file ---------------------------------
def test_a_lead_moved_to_the_next_lead_file_takes_its_defaults(tmp_path: Path) -> None:
    """The last lead of a.yaml moved, text unchanged, to the top of b.yaml: the order of all
    leads and every slice are as they were, but the lead now has b.yaml's `defaults:`. `sync`
    moves its item as `plan` says (it once said "unchanged" until the next day)."""
    project = make_project(tmp_path.resolve() / "p")
    project.write_config(leads="[a.yaml, b.yaml]")
    head = "version: 1\ndefaults:\n  cadence: [{gap}]\nleads:\n"
    one = "  {i}:\n    name: {I} Lee\n    last_contact: 2026-11-28\n"
    a, b = (one.format(i=i, I=i.title()) for i in ("ann", "bob"))
    (project.dir / "a.yaml").write_text(head.format(gap="1w") + a + b)
    (project.dir / "b.yaml").write_text(head.format(gap="4w") + one.format(i="cy", I="Cy"))
    assert sync(project) == (3, 0, 0, 0)
    assert sync(project) == (0, 0, 0, 3)
    (project.dir / "a.yaml").write_text(head.format(gap="1w") + a)
    (project.dir / "b.yaml").write_text(head.format(gap="4w") + b
                                         + one.format(i="cy", I="Cy"))
    assert plan(project) == (0, 1, 0, 2)
    assert sync(project) == (0, 1, 0, 2)
    assert plan(project) == (0, 0, 0, 3)


# --- the lead addresses the mail scan keeps in the state --------------------------------------
def test_a_damaged_address_map_in_the_state_is_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lead file's addresses, kept for the mail scan, are a shortcut too: odd contents
    (here a list where a map was) are read as a miss, never exit 70 (it was
    "AttributeError: 'list' object has no attribute 'items'")."""
    project = make_project(tmp_path.resolve() / "p", leads=leads("ann").replace(
        "    name: Ann One\n", "    name: Ann One\n    email: ann@example.org\n"))
    monkeypatch.setenv("FS_TEST_MAIL", "secret")
    project.write_config(extra="""\
        mail:
          - {name: box, host: 127.0.0.1, port: 1, tls: none, username: me,
             password_env: FS_TEST_MAIL, me: [me@example.org]}
        """)
    first = project.run("sync")
    with sqlite3.connect(project.dir / "state" / "state.sqlite") as db:
        kept = db.execute("SELECT value FROM meta WHERE key='mail-addresses'").fetchone()
        assert kept is not None and "ann@example.org" in kept[0]
        db.execute("UPDATE meta SET value=? WHERE key='mail-addresses'",
                   (json.dumps({"files": json.loads(kept[0])["files"], "map": []}),))
    again = project.run("sync")
    assert again[0] == first[0] != 70, again


# --- a refused state folder: no shortcut read or written there either -------------------------
def test_a_refused_state_folder_gets_no_shortcut_from_validate(tmp_path: Path) -> None:
    project = make_project(tmp_path.resolve() / "p", leads=leads("ann"))
    sync(project)
    shortcuts = project.dir / "state" / "shortcuts"
    shutil.rmtree(shortcuts)
    (project.dir / "state").chmod(0o755)
    project.write_leads(leads("bob"))
    code, out, err = project.run("validate")
    assert code == 0, out + err
    leadcache.flush()  # (what a process does at exit)
    assert not shortcuts.exists()  # (it was made again inside the refused folder)
    code, out, err = project.run("sync")
    assert code == 1 and "chmod 700" in err, out + err
