"""`followsync done LEAD [--on DATE] [--by me|them|both] [--note TEXT]` (README, "Commands"; issue 5).

It logs a touch in the lead file and changes nothing else: every test byte-compares the file
outside the new entry (the new file minus the inserted text is the old file, exactly), reads
the new entry back as exactly that touch, and checks that every other value in the file is
unchanged and that `validate` still passes.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import pytest

import followsync.leadedit
from followsync.errors import FollowsyncError
from followsync.leadedit import log_touch
from followsync.leads import LeadFile, Touch, parse_lead_file
from tests.project import Project

NOW = "2026-05-04T10:00"  # a Monday
TODAY = date(2026, 5, 4)
AT_NOW = datetime(2026, 5, 4, 10, 0)  # `done` without --on writes the time too

# Comments everywhere, blank lines, block and flow styles, quoting, block scalars.
LEADS = """\
# followsync leads   -- a comment before everything
version: 1   # the version

defaults:   # the defaults
  cadence: [1w, 2w]   # gaps
  # a comment inside defaults
  at: "09:30"
  on_status: {interviewed: {after: 1d, do: "Thank {name}"}}

leads:
  # ---- a block log with comments between entries and a folded note ----
  dana:   # Dana
    name: Dana Whitfield   # her name
    org: "Acme: Corp #1"
    log:   # her log
      # oldest first
      - 2026-04-01 emailed: thanks again   # trailing comment
      - {date: 2026-04-03, by: them, note: "replied: later"}

      # a comment between entries
      - date: 2026-04-10
        by: both
        note: >
          a folded
          note

    # a comment after the log
    next: 2026-06-01   # hand-set

  flowlog:
    name: Flow Log
    log: [2026-04-02 hi, {date: 2026-04-03, by: them}]   # a flow log
    status: waiting

  emptylog:
    name: Empty
    log: []   # nothing yet

  multiflow:
    name: Multi
    log: [
      2026-04-02 one,   # c1
      2026-04-03 two,   # c2, and a trailing comma
    ]

  flowlead: {name: "Flow, Lead", org: Acme,  # a lead written as a flow mapping
    role: CTO}

  nolog:
    name: No Log
    notes: |
      line one

      line three

    # trailing comment of nolog

  keepnotes:
    name: Keep
    notes: |+
      kept


  nolog2:
    name: No Log Two
    follow_ups:
      - on: 2026-06-01
        do: "Ask: again"   # c
      - {on: 2026-07-01, do: later}
  zeroindent:
    name: Zero
    log:
    - 2026-04-05 z
    - 2026-04-06 zz
  "quoted.lead":
    name: Quoted
    tags: [a, b]
  plainmulti:
    name: Plain
    notes: this is a
      multi line plain scalar
  last:
    name: Last One
    log:
      - 2026-04-01 first   # no newline at the end of the file"""

LAST_WITHOUT_LOG = LEADS.rsplit("  last:", 1)[0] + "  last:\n    name: Last One   # no log, no newline"

LEAD_IDS = ["dana", "flowlog", "emptylog", "multiflow", "flowlead", "nolog", "keepnotes",
            "nolog2", "zeroindent", "quoted.lead", "plainmulti", "last"]
# how many lines the entry adds: a block log gets one, a new `log:` two, a flow list none
NEW_LINES = {"dana": 1, "flowlog": 0, "emptylog": 0, "multiflow": 0, "flowlead": 0,
             "nolog": 2, "keepnotes": 2, "nolog2": 2, "zeroindent": 1, "quoted.lead": 2,
             "plainmulti": 2, "last": 1}
NOTES = ["", "emailed: thanks", "re #42 and 'single' \"double\" quotes", "Grüße — ünïcödé 🎉",
         "ends with a colon:", "- starts with a dash", "{braces} [brackets], commas",
         "a: b # c", "back\\slash", "null", "true", "2026-01-01", "  spaced   out  "]


def encode(text: str, variant: str) -> bytes:
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    return (b"\xef\xbb\xbf" if "bom" in variant else b"") + text.encode()


@pytest.fixture
def proj(tmp_path: Path) -> Project:
    made = Project(tmp_path, NOW)
    made.write_config()
    return made


def inserted(old: bytes, new: bytes) -> bytes:
    """The bytes `new` has in one place beyond `old`; fails if any byte of `old` changed."""
    assert len(new) > len(old)
    head = 0
    while head < len(old) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < len(old) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    assert head + tail == len(old), "the old file is not kept byte for byte around the entry"
    assert new[:head] + new[len(new) - tail:] == old
    return new[head:len(new) - tail]


def parsed(data: bytes) -> LeadFile:
    return parse_lead_file("leads.yaml", data)[0]


def assert_only_touch_added(old: bytes, new: bytes, lead_id: str, touch: Touch) -> None:
    """The lead's log gained exactly `touch` at its end; every other value is as it was."""
    before, after = parsed(old), parsed(new)
    assert before.leads is not None and after.leads is not None
    assert list(after.leads[lead_id].log) == [*before.leads[lead_id].log, touch]
    rest_after = dict(after.leads)
    rest_after[lead_id] = rest_after[lead_id].model_copy(update={"log": before.leads[lead_id].log})
    assert rest_after == before.leads
    assert after.defaults == before.defaults
    assert list(after.leads) == list(before.leads)  # order kept


def assert_line_ends(old: bytes, new: bytes, lead_id: str) -> None:
    crlf = b"\r\n" in old
    assert new.count(b"\n") - old.count(b"\n") == NEW_LINES[lead_id] + (
        1 if lead_id == "last" and not old.endswith(b"\n") else 0)
    if crlf:
        assert new.count(b"\n") == new.count(b"\r\n"), "a bare LF in a CRLF file"
    else:
        assert b"\r" not in new
    assert new.startswith(b"\xef\xbb\xbf") == old.startswith(b"\xef\xbb\xbf")
    assert new.count(b"\xef\xbb\xbf") == old.count(b"\xef\xbb\xbf")


# --- the matrix: every layout x every encoding, through the CLI ------------------------------
@pytest.mark.parametrize("variant", ["lf", "crlf", "bom", "bom-crlf"])
@pytest.mark.parametrize("lead_id", LEAD_IDS)
def test_done_adds_only_the_entry(proj: Project, variant: str, lead_id: str) -> None:
    index = LEAD_IDS.index(lead_id) + ["lf", "crlf", "bom", "bom-crlf"].index(variant)
    note = NOTES[index % len(NOTES)]
    by = ("me", "them", "both")[index % 3]
    old = encode(LEADS, variant)
    proj.leads.write_bytes(old)
    code, out = proj.output("done", lead_id, "--on", "2026-05-02", "--by", by, "--note", note)
    assert code == 0, out
    new = proj.leads.read_bytes()
    touch = Touch(date=date(2026, 5, 2), by=by, note=" ".join(note.split()))
    added = inserted(old, new)
    entry = out.rsplit(": - ", 1)[1].strip()
    assert entry.encode() in added  # what it says it wrote is what it wrote
    assert_only_touch_added(old, new, lead_id, touch)
    assert_line_ends(old, new, lead_id)
    code, out = proj.output("validate")
    assert code == 0, out


@pytest.mark.parametrize("note", NOTES)
def test_any_note_reads_back_exactly(proj: Project, note: str) -> None:
    """Notes with `: `, `#`, quotes, unicode, YAML words, in a block log, a flow log and a new
    `log:`, one after the other in the same file."""
    proj.leads.write_bytes(LEADS.encode())
    for lead_id, by in (("dana", "me"), ("flowlog", "them"), ("nolog", "both"), ("dana", "me")):
        old = proj.leads.read_bytes()
        code, out = proj.output("done", lead_id, "--by", by, "--note", note)
        assert code == 0, out
        new = proj.leads.read_bytes()
        inserted(old, new)
        assert_only_touch_added(old, new, lead_id, Touch(date=TODAY, at=AT_NOW, by=by,
                                                         note=" ".join(note.split())))
    assert proj.output("validate")[0] == 0


@pytest.mark.parametrize("variant", ["lf", "crlf"])
def test_last_lead_without_log_and_without_final_newline(proj: Project, variant: str) -> None:
    old = encode(LAST_WITHOUT_LOG, variant)
    assert not old.endswith(b"\n")
    proj.leads.write_bytes(old)
    code, out = proj.output("done", "last", "--note", "called: left a message")
    assert code == 0, out
    new = proj.leads.read_bytes()
    added = inserted(old, new)
    newline = b"\r\n" if variant == "crlf" else b"\n"
    assert added.startswith(newline) and added.endswith(newline)
    assert new.count(b"\n") - old.count(b"\n") == 3  # the old last line's end, `log:`, the entry
    assert_only_touch_added(old, new, "last", Touch(date=TODAY, at=AT_NOW,
                                                    note="called: left a message"))
    assert proj.output("validate")[0] == 0


def test_defaults_are_today_in_the_config_zone_and_by_me(proj: Project) -> None:
    proj.leads.write_bytes(LEADS.encode())
    old = proj.leads.read_bytes()
    # 23:30 UTC on May 4 is already May 5 in Berlin
    code, out = proj.output("done", "dana", now="2026-05-04T23:30+00:00")
    assert code == 0, out
    assert_only_touch_added(old, proj.leads.read_bytes(), "dana",
                            Touch(date=date(2026, 5, 5), at=datetime(2026, 5, 5, 1, 30),
                                  by="me", note=""))


def test_repeated_done_keeps_appending_in_order(proj: Project) -> None:
    proj.leads.write_bytes(LEADS.encode())
    original = parsed(proj.leads.read_bytes())
    touches = [Touch(date=date(2026, 5, day), by=by, note=f"n{day}")
               for day, by in ((1, "me"), (2, "them"), (3, "both"), (4, "me"))]
    for touch in touches:
        code, out = proj.output("done", "multiflow", "--on", touch.date.isoformat(), "--by",
                             touch.by, "--note", touch.note)
        assert code == 0, out
    assert original.leads is not None
    after = parsed(proj.leads.read_bytes())
    assert after.leads is not None
    assert list(after.leads["multiflow"].log) == [*original.leads["multiflow"].log, *touches]


# --- refusals: nothing is written ---------------------------------------------------------
def test_unknown_lead_is_a_usage_error_with_a_suggestion(proj: Project) -> None:
    proj.leads.write_bytes(LEADS.encode())
    before = proj.leads.read_bytes()
    code, out = proj.output("done", "dnaa", "--note", "x")
    assert code == 2, out
    assert "did you mean 'dana'" in out
    assert "Traceback" not in out
    assert proj.leads.read_bytes() == before


def test_invalid_lead_file_exits_1_and_is_not_touched(proj: Project) -> None:
    broken = LEADS.replace("    name: No Log\n", "    name: No Log\n    cadence: [soon]\n")
    proj.leads.write_bytes(broken.encode())
    stat_before = proj.leads.stat()
    code, out = proj.output("done", "dana", "--note", "x")
    assert code == 1, out
    assert "leads.yaml:" in out and "cadence" in out
    assert proj.leads.read_bytes() == broken.encode()
    assert proj.leads.stat().st_mtime_ns == stat_before.st_mtime_ns
    assert proj.leads.stat().st_ino == stat_before.st_ino


@pytest.mark.parametrize("on", ["2026-02-30", "tomorrow", "2026/05/01", "05-01-2026"])
def test_invalid_on_is_a_usage_error(proj: Project, on: str) -> None:
    proj.leads.write_bytes(LEADS.encode())
    code, out = proj.output("done", "dana", "--on", on)
    assert code == 2, out
    assert "--on" in out
    assert proj.leads.read_bytes() == LEADS.encode()


def test_a_file_changed_between_read_and_write_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "leads.yaml"
    path.write_bytes(LEADS.encode())
    theirs = LEADS.replace("    name: Zero\n", "    name: Zero Saved In The Editor\n").encode()
    real_plan = followsync.leadedit.plan_edit

    def editor_saves_meanwhile(*args: object, **kwargs: object) -> object:
        path.write_bytes(theirs)  # the user saves in the editor while `done` works
        return real_plan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(followsync.leadedit, "plan_edit", editor_saves_meanwhile)
    writes: list[Path] = []
    monkeypatch.setattr(followsync.leadedit, "write_atomic",
                        lambda p, data: writes.append(p))
    with pytest.raises(FollowsyncError, match="changed while followsync was editing it"):
        log_touch(path, "dana", Touch(date=TODAY, note="x"))
    assert writes == []
    assert path.read_bytes() == theirs  # their save stands


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
        proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    proj.leads.write_bytes(LEADS.encode())

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    code, out = proj.output("done", "dana", "--note", "x")
    assert code == 1, out
    assert "No space left on device" in out and "left as it was" in out
    assert proj.leads.read_bytes() == LEADS.encode()
    assert sorted(p.name for p in proj.dir.iterdir()) == ["config.yaml", "leads.yaml"]


def test_the_write_is_atomic_and_keeps_the_mode(proj: Project) -> None:
    proj.leads.write_bytes(LEADS.encode())
    proj.leads.chmod(0o640)
    inode = proj.leads.stat().st_ino
    code, out = proj.output("done", "dana", "--note", "x")
    assert code == 0, out
    stat = proj.leads.stat()
    assert stat.st_mode & 0o7777 == 0o640
    assert stat.st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in proj.dir.iterdir()) == ["config.yaml", "leads.yaml"]


def test_an_edit_that_would_break_the_file_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: whatever the insertion does, a result that does not parse back to the
    same file plus the touch is never written (and is not blamed on the user's file)."""
    path = tmp_path / "leads.yaml"
    path.write_bytes(LEADS.encode())
    monkeypatch.setattr(followsync.leadedit, "entry_text", lambda touch: "- : [broken")
    with pytest.raises(FollowsyncError, match="could not add the entry") as caught:
        log_touch(path, "dana", Touch(date=TODAY, note="x"))
    assert caught.value.exit_code == 1
    assert path.read_bytes() == LEADS.encode()


# --- a sync picks it up ---------------------------------------------------------------------
def test_sync_after_done_moves_the_follow_up(proj: Project) -> None:
    import icalendar

    proj.leads.write_text("version: 1\ndefaults: {cadence: [1w, 2w], at: '09:30'}\nleads:\n"
                          "  dana:\n    name: Dana   # keep me\n    log:\n"
                          "      - 2026-04-30 sent the CV\n")
    assert proj.output("sync")[0] == 0

    def start() -> str:
        cal = icalendar.Calendar.from_ical(proj.ics.read_bytes())
        (event,) = [c for c in cal.walk("VEVENT")]
        assert str(event["UID"]) == "followsync-dana-cadence-file"
        return event.decoded("DTSTART").strftime("%Y-%m-%d %H:%M")

    assert start() == "2026-05-14 09:30"  # one unanswered touch: + 2w
    code, out = proj.output("done", "dana", "--by", "them", "--note", "replied: call next week")
    assert code == 0, out
    code, out = proj.output("sync")
    assert code == 0 and "1 updated" in out, out
    assert start() == "2026-05-11 09:30"  # their reply today resets the cadence: + 1w
    assert "# keep me" in proj.leads.read_text()


def test_a_lead_shared_through_a_yaml_alias_is_refused_not_logged_twice(proj: Project) -> None:
    """`dana2: *dana` is the same node: an entry for one would land in both."""
    text = ("version: 1\nleads:\n  dana: &d\n    name: Dana\n    log:\n      - 2026-04-01 a\n"
            "  dana2: *d\n")
    proj.leads.write_text(text)
    code, out = proj.output("done", "dana2", "--note", "x")
    assert code == 1, out
    assert "could not add the entry" in out and "nothing was written" in out
    assert proj.leads.read_text() == text


def test_the_lead_is_found_in_the_second_lead_file(proj: Project) -> None:
    other = proj.dir / "more-leads.yaml"
    proj.config.write_text(proj.config.read_text().replace(
        "leads: leads.yaml", "leads: [leads.yaml, more-leads.yaml]"))
    proj.leads.write_bytes(LEADS.encode())
    second = "version: 1\nleads:\n  zed:   # in the second file\n    name: Zed\n"
    other.write_text(second)
    code, out = proj.output("done", "zed", "--by", "them", "--note", "wrote back")
    assert code == 0, out
    assert str(other) in out
    assert proj.leads.read_bytes() == LEADS.encode()
    new = other.read_bytes()
    assert inserted(second.encode(), new) == b"    log:\n      - {date: 2026-05-04, " \
        b'at: "10:00", by: them, note: "wrote back"}\n'
    assert proj.output("validate")[0] == 0


# --- done --rule: one follow-up marked done ---------------------------------------------------
RULE_LEADS = """\
version: 1
defaults:
  on_status: {interviewed: {after: 1d, do: "Thank {name}"}}
leads:
  dana:   # Dana
    name: Dana
    status: interviewed
    status_since: 2026-05-03
    last_contact: 2026-05-03   # the interview
"""


def pending_rules(proj: Project) -> list[str]:
    import json

    code, out = proj.output("agenda", "--json", "--days", "60")
    assert code == 0, out
    data = json.loads(out)
    return sorted(i["rule"] for i in data["overdue"] + data["upcoming"] if i["lead"] == "dana")


def test_done_rule_marks_that_follow_up_done(proj: Project) -> None:
    proj.leads.write_text(RULE_LEADS)
    assert pending_rules(proj) == ["cadence", "status-interviewed"]
    old = proj.leads.read_bytes()
    code, out = proj.output("done", "dana", "--rule", "status-interviewed", "--on", "2026-05-03",
                            "--note", "thanked her")
    assert code == 0, out
    assert inserted(old, proj.leads.read_bytes()) == (
        b'    log:\n      - {date: 2026-05-03, by: me, rule: "status-interviewed", '
        b'note: "thanked her"}\n')
    assert_only_touch_added(old, proj.leads.read_bytes(), "dana", Touch(
        date=date(2026, 5, 3), note="thanked her", rule="status-interviewed"))
    assert pending_rules(proj) == ["cadence"]  # a date-only touch that day: done by its rule


def test_done_rule_not_pending_is_a_usage_error_listing_the_pending_ones(proj: Project) -> None:
    proj.leads.write_text(RULE_LEADS)
    code, out = proj.output("done", "dana", "--rule", "status-interviewd")
    assert code == 2, out
    assert "dana has no pending follow-up 'status-interviewd'" in out
    assert "did you mean 'status-interviewed'?" in out
    assert "pending for dana: cadence, status-interviewed" in out
    code, out = proj.output("done", "dana", "--rule", "status-offer-ann")
    assert code == 2, out
    assert proj.leads.read_text() == RULE_LEADS
    # once done, the rule is no longer pending
    assert proj.output("done", "dana", "--rule", "status-interviewed")[0] == 0
    code, out = proj.output("done", "dana", "--rule", "status-interviewed")
    assert code == 2 and "pending for dana: cadence" in out, out
