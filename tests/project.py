"""The tests' one vocabulary for a followsync set-up: a config, lead files and targets in a
folder, and the CLI run on them in-process.

Every test file builds its files through `Project` (or `config_text` and the target helpers
for a config alone), so a change to the config format is made here once. The `project`
fixture in conftest gives a fresh one per test.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from followsync.cli import main
from followsync.leads import LoadedLead, Policy, parse_lead_file
from followsync.rules import LeadPlan, Memory, plan, remember

NOW = "2026-12-01T08:00"
ICS_TARGET = "  - {name: file, type: ics, path: out.ics}\n"


def config_text(targets: str = ICS_TARGET, *, timezone: str | None = "Europe/Berlin",
                state_dir: str = "state", leads: str = "leads.yaml", extra: str = "") -> str:
    """A config file's text; `targets` is the YAML list under `targets:` (see the helpers
    below), `extra` any further top-level keys."""
    zone = f"timezone: {timezone}\n" if timezone else ""
    return (f"leads: {leads}\n{zone}state_dir: {state_dir}\ntargets:\n{targets}"
            f"{textwrap.dedent(extra)}")


def ics_target(path: str = "out.ics", name: str = "file", **options: str) -> str:
    """One `type: ics` entry for `targets:` (`as_="todo"` is written `as: todo`)."""
    more = "".join(f", {key.rstrip('_')}: {value}" for key, value in options.items())
    return f"  - {{name: {name}, type: ics, path: {path}{more}}}\n"


def caldav_target(url: str, name: str = "phone", *, calendar: str = "", username: str = "",
                  password_env: str = "", password_source: str = "", as_: str = "",
                  timeout: float | None = None) -> str:
    """One `type: caldav` entry for `targets:` (block style, one key a line).
    `password_source` is a ready-made credentials block (e.g. a password_command line)."""
    lines = [f"  - name: {name}", "    type: caldav", f"    url: {url}"]
    lines += [f"    calendar: {calendar}"] if calendar else []
    lines += [f"    as: {as_}"] if as_ else []
    lines += [f"    username: {username}"] if username else []
    lines += [f"    password_env: {password_env}"] if password_env else []
    lines += [f"    timeout: {timeout}"] if timeout is not None else []
    return "\n".join(lines) + "\n" + password_source


def cli(config: Path, *args: str, now: str | None = NOW, verbose: int = 0
        ) -> tuple[int, str, str]:
    """`followsync [-v…] --config CONFIG [--now NOW] ARGS…` in-process: exit code, stdout,
    stderr."""
    argv = ["-v"] * verbose + ["--config", str(config)] + (["--now", now] if now else [])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, *args])
    return code, out.getvalue(), err.getvalue()


@dataclass
class Project:
    """A folder holding config.yaml, leads.yaml and (by default) an .ics target out.ics."""

    dir: Path
    now: str = NOW

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def leads(self) -> Path:
        return self.dir / "leads.yaml"

    @property
    def ics(self) -> Path:
        return self.dir / "out.ics"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    def __truediv__(self, name: str) -> Path:
        return self.dir / name

    def write_config(self, text: str | None = None, *, mode: int | None = None,
                     **parts: Any) -> Path:
        """The config: `text` as it is (dedented), or `config_text(**parts)`; `mode` 0o600
        for one that holds a `password:` (followsync refuses it readable by others)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text) if text is not None else config_text(**parts)
        self.config.write_text(body, encoding="utf-8")
        if mode is not None:
            self.config.chmod(mode)
        return self.config

    def write_leads(self, text: str | bytes, name: str = "leads.yaml") -> Path:
        """A lead file (text is dedented; bytes are written as they are)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / name
        if isinstance(text, str):
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        else:
            path.write_bytes(text)
        return path

    def edit(self, old: str, new: str, name: str = "leads.yaml") -> None:
        """Replace the first `old` in a lead file (which must hold it) by `new`."""
        path = self.dir / name
        text = path.read_text(encoding="utf-8")
        assert old in text, old
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def argv(self, *args: str, now: str | None = None) -> list[str]:
        """The command line for a followsync process on this project."""
        return ["--config", str(self.config), "--now", now or self.now, *args]

    def run(self, *args: str, now: str | None = None, verbose: int = 0) -> tuple[int, str, str]:
        """A followsync command in-process: exit code, stdout, stderr (`now=""`: no --now)."""
        return cli(self.config, *args, now=self.now if now is None else now, verbose=verbose)

    def output(self, *args: str, now: str | None = None, verbose: int = 0) -> tuple[int, str]:
        """A command in-process: exit code and everything it printed, stdout then stderr."""
        code, out, err = self.run(*args, now=now, verbose=verbose)
        return code, out + err

    def snapshot(self, path: Path | None = None) -> tuple[bytes, int]:
        """A file's bytes and mtime, to show that nothing was written."""
        path = path or self.ics
        return path.read_bytes(), path.stat().st_mtime_ns


def make_project(folder: Path, leads: str | bytes | None = None, now: str = NOW,
                 **config: Any) -> Project:
    """A project in `folder` with its config (`config_text(**config)`) and, if given, leads."""
    project = Project(folder, now)
    project.write_config(**config)
    if leads is not None:
        project.write_leads(leads)
    return project


# ============================================================ lead-file text → plans
# (the rules, render and property tests work on text, without files)
def leads_text(yaml_text: str, file: str = "t.yaml") -> list[LoadedLead]:
    """The leads of a lead file given as YAML text, with policies built as `load_leads` does."""
    parsed, _source = parse_lead_file(file, yaml_text.encode())
    base = Policy().apply(parsed.defaults)
    return [LoadedLead(lead_id, lead, base.apply(lead), file)
            for lead_id, lead in (parsed.leads or {}).items()]


def plan_text(yaml_text: str, today: date, memory: Mapping[str, Memory] | None = None
              ) -> list[LeadPlan]:
    """Plan a lead file given as YAML text; leads missing from `memory` are first seen today."""
    loaded = leads_text(yaml_text)
    known = dict(memory or {})
    for item in loaded:
        if item.id not in known:
            known[item.id] = remember(None, item.lead, today)
    return plan(loaded, today, known)
