"""The command line, called in-process (README, "Commands"): output, exit codes, what is written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import click
import icalendar
import pytest

from followsync.cli import cli, main
from followsync.errors import ConfigError
from followsync.leads import parse_lead_file
from followsync.yamlsrc import load
from tests.project import Project

NOW = "2026-12-01T08:00"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "job-search.yaml"
FREELANCER = EXAMPLE.with_name("freelancer.yaml")
LEADS = """\
version: 1
defaults:
  cadence: [1w, 2w]
  give_up_after: 2
  at: "09:00"
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    last_contact: 2026-11-20
  sam-beta:
    name: Sam Beta
    last_contact: 2026-11-25
    follow_ups:
      - {on: 2026-12-10, do: "Ask about the budget"}
  cold-one:
    name: Cole Dunn
    org: Frost Inc
    log:
      - 2026-10-01 sent CV
      - 2026-10-08 asked again
"""
SUMMARY = re.compile(r"^(\S+): (\d+) created, (\d+) updated, (\d+) deleted, (\d+) unchanged"
                     r" \(\d+\.\d\d s\)$")


@dataclass
class Proj(Project):
    """The shared project with this file's leads, an .ics target, and a summary reader."""

    capsys: pytest.CaptureFixture[str] | None = None

    def sync(self, *args: str, now: str = NOW) -> list[tuple[str, int, int, int, int]]:
        code, out, err = self.run("sync", *args, now=now)
        assert (code, err) == (0, ""), err
        return summaries(out)

    def items(self) -> dict[str, icalendar.cal.Component]:
        cal = icalendar.Calendar.from_ical(self.ics.read_bytes())
        return {str(c["UID"]): c for c in cal.walk() if c.name in ("VEVENT", "VTODO")}

    @property
    def out(self) -> pytest.CaptureFixture[str]:
        """What a direct `main([...])` call printed (the capsys of the test)."""
        assert self.capsys is not None
        return self.capsys


def summaries(out: str) -> list[tuple[str, int, int, int, int]]:
    result = []
    for line in out.splitlines():
        match = SUMMARY.match(line)
        assert match, f"not a summary line: {line!r}"
        name, *counts = match.groups()
        result.append((name, *map(int, counts)))  # type: ignore[arg-type]
    return result


@pytest.fixture
def proj(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Proj:
    made = Proj(tmp_path.resolve() / "proj", NOW, capsys)
    made.write_config()
    made.write_leads(LEADS)
    return made


# --- init ----------------------------------------------------------------------------------

def test_init_writes_a_starter_that_validates_and_syncs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new"
    assert main(["init", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[:3] == [f"wrote {folder / n}" for n in
                                    ("config.yaml", "leads.yaml", "followsync.schema.json")]
    leads = (folder / "leads.yaml").read_text()
    assert leads.splitlines()[0] == "# yaml-language-server: $schema=./followsync.schema.json"
    schema = json.loads((folder / "followsync.schema.json").read_text())
    assert {"leads", "defaults"} <= set(schema["properties"])

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["init", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"followsync: {folder / 'config.yaml'} and {folder / 'leads.yaml'} already "
                   "exist; nothing was written\n  hint: pick an empty folder: followsync init DIR\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    config = str(folder / "config.yaml")
    assert main(["--config", config, "--now", "2026-11-20T08:00", "validate"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"ok: {config} and 1 lead in {folder.resolve() / 'leads.yaml'}\n", "")
    assert main(["--config", config, "--now", "2026-11-20T08:00", "sync"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert summaries(out) == [("file", 2, 0, 0, 0)]
    assert (folder / "followups.ics").exists()
    # the starter names no state_dir: the state goes to $XDG_STATE_HOME, here inside tmp_path
    assert (tmp_path / "xdg-state" / "followsync" / "state.sqlite").exists()


def test_init_refuses_when_only_the_lead_file_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "leads.yaml").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    assert err.splitlines()[0] == (f"followsync: {tmp_path / 'leads.yaml'} already exists; "
                                   "nothing was written")
    assert (tmp_path / "leads.yaml").read_text() == "mine\n"
    assert not (tmp_path / "config.yaml").exists()


def test_init_without_a_folder_writes_where_the_config_is_looked_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "xdg-config" / "followsync"  # $XDG_CONFIG_HOME/followsync
    assert main(["init"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"wrote {folder / 'config.yaml'}", f"wrote {folder / 'leads.yaml'}",
        f"wrote {folder / 'followsync.schema.json'}",
        "next: add your leads, see what would be written, then write it:",
        f"  $EDITOR {folder / 'leads.yaml'}", "  followsync plan", "  followsync sync"]
    # the next command finds it: no "config file not found ... followsync init" loop
    assert main(["--now", "2026-11-20T08:00", "plan"]) == 0
    assert capsys.readouterr().out.startswith("file: 2 to create")
    # never overwritten, and said plainly
    (folder / "leads.yaml").write_text("mine\n")
    assert main(["init"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"followsync: {folder / 'config.yaml'} and {folder / 'leads.yaml'} already "
                   "exist; nothing was written\n  hint: followsync is already set up there: "
                   f"edit {folder / 'config.yaml'}, or start another one elsewhere with "
                   "`followsync init DIR`\n")
    assert (folder / "leads.yaml").read_text() == "mine\n"


def test_init_follows_followsync_config_and_its_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine" / "fs.yaml"
    monkeypatch.setenv("FOLLOWSYNC_CONFIG", str(config))
    assert main(["init"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote {config}"
    assert out[-2:] == ["  followsync plan", "  followsync sync"]
    assert sorted(p.name for p in config.parent.iterdir()) == [
        "followsync.schema.json", "fs.yaml", "leads.yaml"]
    assert main(["--now", "2026-11-20T08:00", "validate"]) == 0


def test_init_into_another_folder_says_to_pass_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "my dir"
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    quoted = f"'{folder / 'config.yaml'}'"
    assert out[-3:] == [f"  $EDITOR '{folder / 'leads.yaml'}'",
                        f"  followsync --config {quoted} plan",
                        f"  followsync --config {quoted} sync"]
    # the lookup folder itself, named as DIR: found without --config
    lookup = tmp_path / "xdg-config" / "followsync"
    assert main(["init", str(lookup)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["  followsync plan", "  followsync sync"]


# --- validate and plan ---------------------------------------------------------------------

def test_validate_ok_and_failing(proj: Proj) -> None:
    assert proj.run("validate") == (0, f"ok: {proj.config} and 3 leads in {proj.leads}\n", "")
    proj.edit("    org: Frost Inc\n", "    org: Frost Inc\n    orgg: x\n")
    assert proj.run("validate") == (1, "", f"{proj.leads}:19:5: unknown key 'orgg'\n"
                                           "  hint: did you mean 'org'?\n")
    assert not proj.state.exists()


def test_plan_shows_creates_with_reasons_and_writes_nothing(proj: Proj) -> None:
    code, out, err = proj.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 3 to create, 0 to update, 0 to delete, 0 unchanged",
        "  create  dana-acme cadence: 2026-12-01 09:00 event — 1st follow-up: last touch "
        "2026-11-20 (last contact) + 1w; due 2026-11-27, overdue: shown today",
        "  create  sam-beta cadence: 2026-12-02 09:00 event — 1st follow-up: last touch "
        "2026-11-25 (last contact) + 1w",
        "  create  sam-beta once-2026-12-10: 2026-12-10 09:00 event — one-off follow-up set for "
        "2026-12-10",
    ]
    assert not proj.ics.exists()
    assert not proj.state.exists()
    assert sorted(p.name for p in proj.dir.iterdir()) == ["config.yaml", "leads.yaml"]


def test_plan_after_a_sync_shows_updates_and_deletes(proj: Proj) -> None:
    proj.sync()
    before = proj.snapshot()
    proj.edit("  sam-beta:\n    name: Sam Beta\n", "  sam-beta:\n    name: Sam Beta\n"
              "    status: hired\n")
    proj.edit("    last_contact: 2026-11-20\n", "    last_contact: 2026-11-20\n    log:\n"
              "      - 2026-12-01 emailed\n")
    code, out, err = proj.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 0 to create, 1 to update, 2 to delete, 0 unchanged",
        "  update  dana-acme cadence: 2026-12-15 09:00 event — 2nd follow-up: 1 unanswered "
        "(2026-12-01 emailed) since 2026-11-20 (last contact); last touch 2026-12-01 + 2w",
        "  delete  sam-beta cadence: no longer due (done, closed, or removed from the lead file)",
        "  delete  sam-beta once-2026-12-10: no longer due (done, closed, or removed from the "
        "lead file)",
    ]
    assert proj.snapshot() == before


# --- sync ----------------------------------------------------------------------------------

def test_sync_writes_the_file_and_a_second_sync_changes_nothing(proj: Proj) -> None:
    assert proj.sync() == [("file", 3, 0, 0, 0)]
    items = proj.items()
    assert sorted(items) == ["followsync-dana-acme-cadence-file",
                             "followsync-sam-beta-cadence-file",
                             "followsync-sam-beta-once-2026-12-10-file-510254dc"]
    assert (proj.state / "state.sqlite").exists()
    before = proj.snapshot()
    assert proj.sync() == [("file", 0, 0, 0, 3)]
    assert proj.snapshot() == before
    # an hour later, nothing moved either
    assert proj.sync(now="2026-12-01T09:30") == [("file", 0, 0, 0, 3)]
    assert proj.snapshot() == before


def test_one_summary_line_per_target(proj: Proj) -> None:
    proj.write_config(targets="  - {name: file, type: ics, path: out.ics}\n"
                              "  - {name: phone, type: ics, path: phone.ics, as: todo}\n")
    assert proj.sync() == [("file", 3, 0, 0, 0), ("phone", 3, 0, 0, 0)]
    phone = icalendar.Calendar.from_ical((proj.dir / "phone.ics").read_bytes())
    assert sorted(c.name for c in phone.walk() if c.name.startswith("VT")) == \
        ["VTIMEZONE", "VTODO", "VTODO", "VTODO"]
    code, out, err = proj.run("sync", "--target", "phone")
    assert (code, err) == (0, "")
    assert summaries(out) == [("phone", 0, 0, 0, 3)]
    code, out, err = proj.run("sync", "--target", "nope")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"Error: no target named 'nope' in {proj.config}"


def test_changing_one_lead_updates_exactly_one_item_and_keeps_its_uid(proj: Proj) -> None:
    proj.sync()
    before = proj.items()
    proj.edit("    last_contact: 2026-11-20\n", "    last_contact: 2026-11-20\n    log:\n"
              "      - 2026-12-01 emailed\n")
    assert proj.sync() == [("file", 0, 1, 0, 2)]
    after = proj.items()
    assert sorted(after) == sorted(before)
    dana = after["followsync-dana-acme-cadence-file"]
    assert dana.decoded("DTSTART").isoformat() == "2026-12-15T09:00:00+01:00"
    assert int(dana["SEQUENCE"]) == 1
    for uid in ("followsync-sam-beta-cadence-file", "followsync-sam-beta-once-2026-12-10-file-510254dc"):
        assert after[uid].to_ical() == before[uid].to_ical()


def test_a_new_day_moves_only_the_rolled_overdue_item(proj: Proj) -> None:
    proj.sync()
    assert proj.sync(now="2026-12-02T08:00") == [("file", 0, 1, 0, 2)]
    dana = proj.items()["followsync-dana-acme-cadence-file"]
    # Sam's item holds 09:00 that day and keeps it: the rolled one is laid after it (spread)
    assert dana.decoded("DTSTART").isoformat() == "2026-12-02T09:15:00+01:00"
    assert str(dana["SUMMARY"]) == "Dana Whitfield: follow up (5 days overdue)"


def test_removing_a_lead_deletes_its_items(proj: Proj) -> None:
    proj.sync()
    text = proj.leads.read_text()
    proj.leads.write_text(text[: text.index("  sam-beta:")] + text[text.index("  cold-one:"):])
    assert proj.sync() == [("file", 0, 0, 2, 1)]
    assert sorted(proj.items()) == ["followsync-dana-acme-cadence-file"]


def test_safety_max_deletes_stops_then_force_goes_on(proj: Proj) -> None:
    proj.write_config(extra="safety: {max_deletes: 1}\n")
    proj.sync()
    before = proj.snapshot()
    text = proj.leads.read_text()
    proj.leads.write_text(text[: text.index("  sam-beta:")] + text[text.index("  cold-one:"):])
    stop = ("file: this sync would delete 2 items from file (safety.max_deletes is 1); nothing "
            "was changed there\n"
            "  hint: check the lead file; if the deletions are right, run `followsync sync "
            "--force`\n")
    assert proj.run("sync") == (4, "", stop)
    assert proj.snapshot() == before
    code, out, err = proj.run("plan")  # the plan shows what would stop the sync
    assert (code, err) == (4, stop)
    assert out.splitlines()[0] == "file: 0 to create, 0 to update, 2 to delete, 1 unchanged"
    assert proj.snapshot() == before
    assert proj.sync("--force") == [("file", 0, 0, 2, 1)]
    assert sorted(proj.items()) == ["followsync-dana-acme-cadence-file"]


def test_a_lead_file_with_no_leads_never_deletes(proj: Proj) -> None:
    proj.sync()
    before = proj.snapshot()
    for empty in ("version: 1\nleads: {}\n", "version: 1\nleads:\n"):
        proj.leads.write_text(empty)
        code, out, err = proj.run("sync", "--force")
        assert code == 0
        assert summaries(out) == [("file", 0, 0, 0, 0)]
        assert err == "file: the lead files hold no leads; nothing is deleted\n"
        assert proj.snapshot() == before


def test_a_state_dir_that_is_a_file_is_reported_not_a_crash(proj: Proj) -> None:
    (proj.dir / "state").write_text("not a folder\n")
    assert proj.run("sync") == (1, "", f"followsync: cannot use the state folder {proj.state}: "
                                       "it is a file\n  hint: check `state_dir:` in the config\n")
    assert not proj.ics.exists()


def test_a_damaged_state_database_is_reported_not_a_crash(proj: Proj) -> None:
    proj.state.mkdir(mode=0o700)
    (proj.state / "state.sqlite").write_bytes(b"garbage, not SQLite" * 100)
    expected = (f"followsync: the state database {proj.state / 'state.sqlite'} is damaged "
                "(file is not a database)\n"
                "  hint: move it away; the next sync rebuilds it from the calendars\n")
    for command in ("sync", "plan", "agenda"):
        assert proj.run(command) == (1, "", expected)
    assert not proj.ics.exists()


def test_the_state_is_rebuilt_from_the_calendar(proj: Proj) -> None:
    """With the state gone, items already in the file are adopted, not duplicated."""
    proj.sync()
    before = proj.snapshot()
    for path in proj.state.iterdir():  # (the shortcuts folder too)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert proj.sync() == [("file", 0, 0, 0, 3)]
    assert proj.snapshot()[0] == before[0]


def test_after_a_lost_state_plan_and_sync_count_the_same_items(proj: Proj) -> None:
    """`plan` counts what it lists (the found items are to check); `sync` then finds them
    unchanged: both count with one function (diff.tally)."""
    proj.sync()
    for path in proj.state.iterdir():  # (the shortcuts folder too)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    code, out, err = proj.run("plan")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "file: 0 to create, 0 to update, 0 to delete, 0 unchanged, 3 to check"
    assert sum(1 for line in lines if line.startswith("  check   ")) == 3
    assert proj.sync() == [("file", 0, 0, 0, 3)]


def test_sync_summary_is_singular_and_plural_right() -> None:
    from followsync.sync import TargetReport

    one = TargetReport("phone", created=1, unchanged=1, kept=1, conflicts=1)
    assert one.summary() == ("phone: 1 created, 0 updated, 0 deleted, 1 unchanged, 1 calendar "
                             "edit kept, 1 changed meanwhile (left for the next sync) (0.00 s)")
    two = TargetReport("phone", kept=2)
    assert two.summary() == ("phone: 0 created, 0 updated, 0 deleted, 0 unchanged, 2 calendar "
                             "edits kept (0.00 s)")


# --- agenda --------------------------------------------------------------------------------

def test_agenda_text(proj: Proj) -> None:
    code, out, err = proj.run("agenda")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent("""\
        Overdue
          Tue 2026-12-01 09:00  Dana Whitfield (Acme Corp)          Follow up  [4 days overdue]
        Upcoming
          Wed 2026-12-02 09:00  Sam Beta                            Follow up
          Thu 2026-12-10 09:00  Sam Beta                            Ask about the budget
        Gone cold (no answer; not chased any more)
          Cole Dunn (Frost Inc)               2 unanswered, last touch 2026-10-08
        """)
    code, out, _ = proj.run("agenda", "--days", "3")
    assert "  ... and 1 later (use --days to see further)" in out.splitlines()
    assert not proj.state.exists()


def test_agenda_json(proj: Proj) -> None:
    code, out, err = proj.run("agenda", "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == ["version", "today", "overdue", "upcoming", "cold", "later",
                          "from_calendar", "from_mail"]
    assert (data["version"], data["today"], data["later"]) == (1, "2026-12-01", 0)
    keys = ["lead", "name", "org", "rule", "due", "at", "was_due", "overdue_days", "title",
            "action",
            "reason", "as", "moved_in_calendar", "rule_due", "rule_at"]
    assert all(list(item) == keys for item in data["overdue"] + data["upcoming"])
    assert data["overdue"] == [{
        "lead": "dana-acme", "name": "Dana Whitfield", "org": "Acme Corp", "rule": "cadence",
        "due": "2026-12-01", "at": "09:00", "was_due": "2026-11-27", "overdue_days": 4,
        "title": "Dana Whitfield: follow up", "action": "follow up",
        "reason": "1st follow-up: last touch 2026-11-20 (last contact) + 1w", "as": "event",
        "moved_in_calendar": False, "rule_due": "2026-12-01", "rule_at": "09:00",
    }]
    assert [(i["lead"], i["rule"], i["due"], i["overdue_days"]) for i in data["upcoming"]] == [
        ("sam-beta", "cadence", "2026-12-02", 0), ("sam-beta", "once-2026-12-10", "2026-12-10", 0)]
    assert data["cold"] == [{"lead": "cold-one", "name": "Cole Dunn", "org": "Frost Inc",
                             "unanswered": 2, "last_touch": "2026-10-08"}]


def test_agenda_shows_an_item_where_it_was_moved_in_the_calendar(proj: Proj) -> None:
    assert proj.sync() == [("file", 3, 0, 0, 0)]
    # the user drags Dana's overdue follow-up to next Tuesday 10:30 in the calendar app
    text = proj.ics.read_text()
    old = "DTSTART;TZID=Europe/Berlin:20261201T090000"
    assert text.count(old) == 1
    proj.ics.write_text(text.replace(old, "DTSTART;TZID=Europe/Berlin:20261208T103000"))
    code, out, err = proj.run("sync")
    assert (code, err) == (0, "")
    assert "1 calendar edit kept" in out
    code, out, err = proj.run("agenda")
    assert (code, err) == (0, "")
    assert out.splitlines()[:4] == [
        "Upcoming",
        "  Wed 2026-12-02 09:00  Sam Beta                            Follow up",
        "  Tue 2026-12-08 10:30  Dana Whitfield (Acme Corp)          Follow up  "
        "[moved in the calendar; the rules say 2026-12-01 09:00]",
        "  Thu 2026-12-10 09:00  Sam Beta                            Ask about the budget",
    ]
    code, out, _ = proj.run("agenda", "--json")
    data = json.loads(out)
    assert data["overdue"] == []
    dana = data["upcoming"][1]
    assert {k: dana[k] for k in ("lead", "due", "at", "overdue_days", "moved_in_calendar",
                                 "rule_due", "rule_at", "was_due")} == {
        "lead": "dana-acme", "due": "2026-12-08", "at": "10:30", "overdue_days": 0,
        "moved_in_calendar": True, "rule_due": "2026-12-01", "rule_at": "09:00",
        "was_due": "2026-11-27"}
    assert [i["moved_in_calendar"] for i in data["upcoming"]] == [False, True, False]
    # the lead file changes that follow-up: the rules' date again, no longer marked as moved
    proj.edit("last_contact: 2026-11-20", "last_contact: 2026-11-28")
    proj.sync()
    code, out, _ = proj.run("agenda", "--json")
    dana = next(i for i in json.loads(out)["upcoming"] if i["lead"] == "dana-acme")
    assert (dana["due"], dana["moved_in_calendar"]) == ("2026-12-05", False)


def test_agenda_shortens_names_between_words_and_closes_the_parenthesis(
    proj: Proj,
) -> None:
    proj.edit("org: Acme Corp", "org: Acme Corporation of Northern Ireland")
    proj.edit("name: Cole Dunn", "name: Cole Dunn-Fairweather-Montgomery-Smythe the Third")
    code, out, _ = proj.run("agenda")
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == ("  Tue 2026-12-01 09:00  Dana Whitfield (Acme Corporation…)  Follow up"
                        "  [4 days overdue]")
    assert lines[-1] == ("  Cole Dunn-Fairweather-Montgomery…   2 unanswered, last touch "
                         "2026-10-08")


def test_now_with_an_offset_is_read_in_the_configured_zone(proj: Proj) -> None:
    code, out, _ = proj.run("agenda", "--json", now="2026-12-01T23:30:00+00:00")
    assert code == 0
    assert json.loads(out)["today"] == "2026-12-02"  # 00:30 in Berlin


# --- schema --------------------------------------------------------------------------------

def test_schema_is_json_and_accepts_the_example(proj: Proj) -> None:
    code, out, err = proj.run("schema")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert {"version", "leads", "defaults"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    for text in (EXAMPLE.read_bytes(), FREELANCER.read_bytes(), LEADS.encode()):
        value = load("leads.yaml", text).value  # read as followsync reads it (YAML 1.2-like)
        assert [e.message for e in validator.iter_errors(value)] == []
    broken = load("x", b"version: 1\nleads:\n  dana: {name: Dana, cadense: [1w]}\n").value
    assert not validator.is_valid(broken)


@pytest.mark.parametrize(("settings", "valid"), [
    ("cadence: 3w", True), ("cadence: [3w, 1mo]", True), ("alarms: 1d", True),
    ("days: [mon, Tue, WED]", True), ("days: sat", True), ('title: "{action} ({name})"', True),
    ("cadence: [1w, 1m]", False), ("cadence: 12h", False), ("days: [monday]", False),
    ("days: []", False), ("on_status: {offer: {after: 1h, do: x}}", False),
    ("on_status: {offer: {after: 0m, do: x}}", True),
])
def test_schema_follows_the_lead_file(proj: Proj, settings: str, valid: bool) -> None:
    """The schema editors use accepts what followsync accepts, and refuses what it refuses."""
    jsonschema = pytest.importorskip("jsonschema")
    _code, out, _ = proj.run("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    for text in (f"version: 1\ndefaults:\n  {settings}\nleads: {{}}\n",
                 f"version: 1\nleads:\n  dana:\n    name: Dana\n    {settings}\n"):
        value = load("x", text.encode()).value
        assert validator.is_valid(value) == valid, text
        accepted = True
        try:
            parse_lead_file("x", text.encode())
        except ConfigError:
            accepted = False
        assert accepted == valid, text


# --- global options ------------------------------------------------------------------------

def test_global_options_after_the_command_name(proj: Proj) -> None:
    """`followsync plan -v`, as the README writes it: every command takes them after its name."""
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        return (code, *proj.out.readouterr())

    config = str(proj.config)
    code, out, err = run("validate", "--config", config)
    assert (code, out, err) == (0, f"ok: {proj.config} and 3 leads in {proj.leads}\n", "")
    assert run("validate", "--config", config, "-q") == (0, "", "")
    # after the name wins over before it
    assert run("-q", "validate", "--config", config, "--no-such")[0] == 2
    code, out, _ = run("--config", "/nowhere.yaml", "plan", "--config", config, "--now", NOW,
                       "-v")
    assert code == 0 and out.startswith("file: 3 to create")
    code, out, _ = run("sync", "--config", config, "--now", NOW, "--quiet")
    assert (code, out) == (0, "")
    assert proj.ics.exists()
    code, out, _ = run("agenda", "--json", "--now", "2026-12-05", "--config", config)
    assert (code, json.loads(out)["today"]) == (0, "2026-12-05")
    code, out, _ = run("done", "sam-beta", "--config", config, "--now", "2026-12-03", "-q")
    assert (code, out) == (0, "")
    assert "2026-12-03" in proj.leads.read_text()
    code, _, err = run("calendars", "--config", config)
    assert (code, err.splitlines()[-1]) == (2, f"Error: {proj.config} has no caldav, google "
                                                "or microsoft target")
    code, _, err = run("run", "--now", NOW, "--config", config)
    assert code == 2 and "--now and $FOLLOWSYNC_NOW do not apply to `run`" in err
    code, out, _ = run("schema", "-v", "--config", config)
    assert code == 0 and json.loads(out)["type"] == "object"
    target = proj.dir / "elsewhere" / "my.yaml"
    target.parent.mkdir()
    code, out, err = run("init", "--config", str(target), "-q")
    assert (code, out, err) == (0, "", "")
    assert target.exists() and (target.parent / "leads.yaml").exists()
    for name in cli.commands:
        code, out, _ = run(name, "--help")
        assert code == 0
        for option in ("--config PATH", "--now ISO-DATETIME", "-v, --verbose", "-q, --quiet"):
            assert option in out, (name, option)


def test_invalid_now_is_a_usage_error(proj: Proj) -> None:
    code, out, err = proj.run("plan", now="garbage")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == ("Error: --now 'garbage' is not an ISO date or date-time "
                                    "(e.g. 2027-01-11 or 2027-01-11T08:30)")
    assert not proj.state.exists()


def test_quiet_prints_nothing_on_success(proj: Proj) -> None:
    code = main(["--config", str(proj.config), "--now", NOW, "--quiet", "sync"])
    assert code == 0
    assert proj.out.readouterr() == ("", "")
    assert proj.ics.exists()
    code = main(["-q", "--config", str(proj.config), "--now", NOW, "validate"])
    assert (code, *proj.out.readouterr()) == (0, "", "")


def test_quiet_still_prints_errors(proj: Proj) -> None:
    proj.edit("    org: Acme Corp\n", "    org: Acme Corp\n    orgg: x\n")
    code = main(["-q", "--config", str(proj.config), "--now", NOW, "sync"])
    out, err = proj.out.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(f"{proj.leads}:10:5: unknown key 'orgg'")


def test_environment_gives_now_and_config(
    proj: Proj, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLLOWSYNC_CONFIG", str(proj.config))
    monkeypatch.setenv("FOLLOWSYNC_NOW", "2026-12-05T10:00")
    assert main(["agenda", "--json"]) == 0
    out, err = proj.out.readouterr()
    assert err == ""
    data = json.loads(out)
    assert data["today"] == "2026-12-05"
    assert data["overdue"][0]["overdue_days"] == 8
    # --now wins over $FOLLOWSYNC_NOW
    assert main(["--now", "2026-12-03", "agenda", "--json"]) == 0
    assert json.loads(proj.out.readouterr().out)["today"] == "2026-12-03"
    monkeypatch.setenv("FOLLOWSYNC_NOW", "not a date")
    assert main(["agenda"]) == 2


def test_xdg_config_home_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = tmp_path / "xdg-config" / "followsync" / "config.yaml"
    assert main(["--now", NOW, "validate"]) == 1
    assert capsys.readouterr().err == (f"{expected}:1:1: config file not found\n"
                                       "  hint: create one with `followsync init`, or pass "
                                       "--config PATH\n")


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command 'frobnicate'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from followsync import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"followsync, version {__version__}\n"


def test_every_command_and_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert cli.commands, "no commands registered"
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), f"`{name}` has no help text"
        first = command.help.strip().splitlines()[0]
        assert first.endswith("."), f"`{name}`: the first line of its help is not a sentence"
        assert re.search(rf"^  {name}\s+\S", top, re.MULTILINE), f"`{name}` missing in --help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`{name} {param.opts[0]}` has no help text"
        assert main([name, "--help"]) == 0
        assert first in " ".join(capsys.readouterr().out.split())
    for param in cli.params:
        if isinstance(param, click.Option):
            assert param.help, f"global option {param.opts[0]} has no help text"


# --- as a program --------------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_python_dash_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "followsync", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: followsync [OPTIONS] COMMAND [ARGS]...")
    for name in ("init", "validate", "plan", "sync", "agenda", "schema"):
        assert re.search(rf"^  {name}\s", done.stdout, re.MULTILINE)


def test_help_imports_neither_pydantic_nor_icalendar() -> None:
    code = textwrap.dedent("""\
        import sys
        from followsync.cli import main
        assert main(["--help"]) == 0
        assert main(["sync", "--help"]) == 0
        heavy = sorted(m for m in ("pydantic", "icalendar", "caldav", "yaml") if m in sys.modules)
        print("HEAVY:" + ",".join(heavy), file=sys.stderr)
        """)
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "HEAVY:"


def test_a_command_runs_with_the_collector_on_and_leaves_it_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """main() does not pause the cyclic collector for a whole command: that covered a
    sync's writes too (gcpause: paused only to load and plan; tests/test_architecture.py
    checks a sync), and it stays on when the command fails."""
    import gc

    from followsync import cli as cli_module

    seen: list[bool] = []

    def command(args: list[str]) -> int:
        seen.append(gc.isenabled())
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "_run", command)
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        cli_module.main(["validate"])
    assert seen == [True]
    assert gc.isenabled()


def test_the_program_freezes_what_is_left_before_the_interpreter_exits() -> None:
    """`run` (the script and `python -m followsync`) returns main's exit code and freezes the
    objects left, so the interpreter's exit skips a last walk over all of them."""
    code = ("import gc, sys\nfrom followsync.cli import run\nsys.argv = ['followsync', "
            "'--definitely-not-an-option']\ncode = run()\nprint(code, gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.stdout.split() == ["2", "True"], done.stderr
    assert "Usage" in done.stderr or "no such option" in done.stderr


def test_the_freelancer_example_lays_a_busy_monday_end_to_end(project: Project) -> None:
    """examples/freelancer.yaml (README "Install"): twelve leads validate, and the Monday
    where six follow-ups fall due at 09:00 shows them one after another, none on another."""
    project.now = "2026-12-07T08:00"
    project.write_leads(FREELANCER.read_bytes())
    code, out = project.output("validate")
    assert code == 0 and "12 leads" in out, out
    code, out = project.output("sync")
    assert code == 0, out
    cal = icalendar.Calendar.from_ical(project.ics.read_bytes())
    monday = sorted(e.decoded("DTSTART") for e in cal.walk("VEVENT")
                    if str(e.decoded("DTSTART")).startswith("2026-12-07 "))
    assert [m.strftime("%H:%M") for m in monday] == [
        "09:00", "09:15", "09:30", "09:45", "10:00", "10:15"]
