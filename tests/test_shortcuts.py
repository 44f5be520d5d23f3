"""The shortcuts (README, "What followsync keeps"): the config cache, the lead cache, the no-op
fast path and the delta basis all key on one fingerprint (followsync/fingerprint.py), live in
`state_dir`, cannot run code, and never change an answer: a sync with every shortcut kept
answers what a sync with none would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import followsync.config as config_module
import followsync.configcache as cc
import followsync.fingerprint as fingerprint
from followsync.config import Config
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


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every validation of the config the config cache falls back to."""
    seen: list[Path] = []
    real = cc.load_config

    def counting(path: Path) -> Config:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(cc, "load_config", counting)
    monkeypatch.setattr(config_module, "load_config", counting)
    return seen


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
    for module, name in ((fastpath, "nothing_changed"), (delta, "run")):
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
