"""The validated config cache (followsync/configcache.py): kept in the state folder, used only
while nothing the validation read has changed, never holding a password, never running code."""

from __future__ import annotations

from pathlib import Path

import pytest

import followsync.configcache as cc
from followsync.errors import ConfigError
from tests.project import Project, caldav_target, ics_target, make_project


def shortcuts(project: Project) -> list[Path]:
    folder = project.state / cc.SHORTCUTS
    return sorted(folder.iterdir()) if folder.exists() else []


def made(folder: Path, **config: str) -> Project:
    """A project whose state folder is there (the cache is kept only in one)."""
    project = make_project(folder, **config)
    project.state.mkdir(mode=0o700)
    return project


def test_the_second_read_comes_from_the_cache(tmp_path: Path, validations: list[Path]) -> None:
    project = made(tmp_path / "p")
    first = cc.load_config_cached(project.config)
    second = cc.load_config_cached(project.config)
    assert second == first and len(validations) == 1


def test_an_edit_a_mode_or_the_environment_validates_again(
        tmp_path: Path, validations: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    project = made(tmp_path / "p")
    cc.load_config_cached(project.config)
    project.write_config(extra="safety: {max_deletes: 3}\n")
    assert cc.load_config_cached(project.config).max_deletes == 3
    project.config.chmod(0o600)
    cc.load_config_cached(project.config)
    monkeypatch.setenv("TZ", "America/New_York")
    cc.load_config_cached(project.config)
    assert len(validations) == 4


def test_a_target_folder_removed_since_is_reported_again(tmp_path: Path) -> None:
    project = made(tmp_path / "p", targets=ics_target("out/file.ics"))
    (project / "out").mkdir()
    cc.load_config_cached(project.config)
    (project / "out").rmdir()
    with pytest.raises(ConfigError, match="does not exist"):
        cc.load_config_cached(project.config)


def test_a_config_with_a_password_is_never_written_to_the_cache(tmp_path: Path) -> None:
    project = Project(tmp_path / "p")
    project.write_config(targets=caldav_target("http://127.0.0.1:9/", username="me",
                                               password_source='    password: "s3cret"\n'),
                         mode=0o600)
    project.state.mkdir(mode=0o700)
    cc.load_config_cached(project.config)
    cc.load_config_cached(project.config)
    assert shortcuts(project) == []


def test_a_damaged_cache_is_ignored(tmp_path: Path, validations: list[Path]) -> None:
    project = made(tmp_path / "p")
    cc.load_config_cached(project.config)
    for cached in shortcuts(project):
        cached.write_bytes(b"not a cache")
    assert cc.load_config_cached(project.config) == cc.load_config(project.config)
    assert len(validations) == 3


def test_the_cache_is_a_private_json_file_in_the_state_folder(tmp_path: Path) -> None:
    project = made(tmp_path / "p")
    cc.load_config_cached(project.config)
    [kept] = shortcuts(project)
    assert kept.name.startswith("config-") and kept.suffix == ".json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert (project.state / cc.SHORTCUTS).stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "xdg-cache").exists()


def test_a_cache_others_may_write_is_not_used(tmp_path: Path, validations: list[Path]) -> None:
    project = made(tmp_path / "p")
    cc.load_config_cached(project.config)
    [kept] = shortcuts(project)
    kept.chmod(0o666)
    cc.load_config_cached(project.config)
    assert len(validations) == 2


def test_a_wrong_guess_of_the_state_folder_only_costs_a_validation(
        tmp_path: Path, validations: list[Path]) -> None:
    """The folder is guessed from a `state_dir:` line; a config whose state_dir is written
    otherwise (here in flow style) is validated each time, and still right."""
    project = made(tmp_path / "p")
    project.write_config("{leads: leads.yaml, timezone: Europe/Berlin, state_dir: state}\n")
    first = cc.load_config_cached(project.config)
    assert cc.load_config_cached(project.config) == first == cc.load_config(project.config)
    assert len(validations) == 3


def test_the_codec_reads_back_every_kind_of_value_a_config_holds(tmp_path: Path) -> None:
    project = made(tmp_path / "p")
    project.write_config(targets=caldav_target("http://127.0.0.1:9/", username="me",
                                               password_source="    password_command: [pass, x]\n"),
                         extra="""\
        mail:
          - {name: work, host: imap.example.org, username: me, password_env: P,
             since: 2026-01-01, me: [a@example.org]}
          - {name: old, host: imap.example.org, username: me, password_env: P, since: 3mo,
             folders: [INBOX]}
        """)
    config = cc.load_config(project.config)
    assert config.mailboxes and cc.decode(cc.encode(config)) == config


@pytest.mark.parametrize("planted", [
    {"Config": {"path": {"Path": "x"}}},  # fields missing
    {"os.system": "touch marker"},
    {"__reduce__": ["os.system", ["touch marker"]]},
    {"Duration": [3, "fortnights"]},
    {"tuple": [{"Target": {"name": 1}}]},
])
def test_the_codec_reads_only_its_own_types(planted: object) -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        cc.decode(planted)
