"""The validated config cache (followsync/configcache.py): used only while nothing the
validation read has changed, never holding a password."""

from __future__ import annotations

from pathlib import Path

import pytest

import followsync.configcache as cc
from followsync.config import Config
from followsync.errors import ConfigError
from tests.project import Project, caldav_target, ics_target, make_project


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every full validation the cache falls back to."""
    seen: list[Path] = []
    real = cc.load_config

    def counting(path: Path) -> Config:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(cc, "load_config", counting)
    return seen


def test_the_second_read_comes_from_the_cache(tmp_path: Path, validations: list[Path]) -> None:
    project = make_project(tmp_path / "p")
    first = cc.load_config_cached(project.config)
    second = cc.load_config_cached(project.config)
    assert second == first and len(validations) == 1


def test_an_edit_a_mode_or_the_environment_validates_again(
        tmp_path: Path, validations: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p")
    cc.load_config_cached(project.config)
    project.write_config(extra="safety: {max_deletes: 3}\n")
    assert cc.load_config_cached(project.config).max_deletes == 3
    project.config.chmod(0o600)
    cc.load_config_cached(project.config)
    monkeypatch.setenv("TZ", "America/New_York")
    cc.load_config_cached(project.config)
    assert len(validations) == 4


def test_a_target_folder_removed_since_is_reported_again(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", targets=ics_target("out/file.ics"))
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
    cc.load_config_cached(project.config)
    folder = cc.cache_folder()
    assert not folder.exists() or all(b"s3cret" not in f.read_bytes()
                                      for f in folder.iterdir())
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_damaged_cache_is_ignored(tmp_path: Path, validations: list[Path]) -> None:
    project = make_project(tmp_path / "p")
    cc.load_config_cached(project.config)
    for cached in cc.cache_folder().iterdir():
        cached.write_bytes(b"not a pickle")
    assert cc.load_config_cached(project.config) == cc.load_config(project.config)
    assert len(validations) == 3
