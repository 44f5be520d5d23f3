"""The .ics file target through the CLI: other people's items are kept byte for byte, ours
are replaced in place, nothing is rewritten for nothing, and a file we cannot safely rewrite
is left alone (README, "The config file" and "What appears in the calendar")."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

import icalendar
import pytest

from followsync.render import uid_for
from tests.project import Project

NOW = "2026-12-01T08:00"
LEADS = """\
version: 1
defaults:
  cadence: [1w, 2w]
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    tags: [marketing]
    last_contact: 2026-11-20
  sam-beta:
    name: Sam Beta
    last_contact: 2026-11-25
    follow_ups:
      - {on: 2026-12-10, do: "Ask about the budget"}
"""
OURS = ["followsync-dana-acme-cadence-file", "followsync-sam-beta-cadence-file",
        "followsync-sam-beta-once-2026-12-10-file-510254dc"]

# Someone else's calendar: its own VTIMEZONE with odd properties, a folded line, parameters
# with quotes, an alarm, a to-do, and an event tagged `followsync` without our marks.
FOREIGN = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Someone//Else 1.0//EN
X-WR-CALNAME:Mine
X-APPLE-CALENDAR-COLOR:#FF2968
BEGIN:VTIMEZONE
TZID:America/New_York
X-LIC-LOCATION:America/New_York
BEGIN:STANDARD
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
TZNAME:EST
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700308T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
TZNAME:EDT
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:dentist-1@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=America/New_York:20261203T100000
DURATION:PT45M
SUMMARY:Dentist with a long summary line that is folded because it goes beyo
 nd seventy-five octets, as RFC 5545 asks
X-ODD-PROP;X-PARAM="a;b:c":value\\, with escapes
ATTENDEE;CN="Dr. Who";ROLE=REQ-PARTICIPANT:mailto:dr@example.com
CATEGORIES:personal
BEGIN:VALARM
ACTION:DISPLAY
TRIGGER:-PT10M
DESCRIPTION:Dentist
END:VALARM
END:VEVENT
BEGIN:VTODO
UID:todo-7@example.com
DTSTAMP:20260101T000000Z
SUMMARY:Buy milk
STATUS:NEEDS-ACTION
END:VTODO
BEGIN:VEVENT
UID:lookalike@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20261205
SUMMARY:Follow up: tagged like ours\\, but not ours
CATEGORIES:followsync
END:VEVENT
END:VCALENDAR
"""


class Proj(Project):
    """The shared project with this file's leads; `sync` gives the summary line."""

    def set_targets(self, targets: str) -> None:
        self.write_config(targets=targets)

    def sync(self, now: str = NOW) -> str:
        """One sync that must succeed; its summary line without the time taken."""
        code, out, err = self.run("sync", now=now)
        assert (code, err) == (0, ""), err
        return re.sub(r" \(\d+\.\d\d s\)$", "", out.strip())


@pytest.fixture
def proj(tmp_path: Path) -> Proj:
    made = Proj(tmp_path.resolve() / "proj", NOW)
    made.write_config()
    made.write_leads(LEADS)
    return made


def summary(created: int = 0, updated: int = 0, deleted: int = 0, unchanged: int = 0,
            name: str = "file", kept: int = 0) -> str:
    text = f"{name}: {created} created, {updated} updated, {deleted} deleted, {unchanged} unchanged"
    return text + (f", {kept} calendar edit{'' if kept == 1 else 's'} kept" if kept else "")


def blocks(text: str) -> list[str]:
    """Top-level components as raw text, in file order."""
    pattern = r"^BEGIN:(?!VCALENDAR)(\w+)\r?\n.*?^END:\1\r?\n"
    return [m.group(0) for m in re.finditer(pattern, text, re.M | re.S)]


def uids(text: str) -> list[str]:
    return [m.group(1) for b in blocks(text) if (m := re.search(r"^UID:(.*?)\r?$", b, re.M))]


def without_ours(text: str) -> str:
    """The file minus our items and the VTIMEZONE we added: what was there before us."""
    for block in blocks(text):
        if "X-FOLLOWSYNC-LEAD:" in block or re.search(r"^TZID:Europe/Berlin\r?$", block, re.M):
            text = text.replace(block, "", 1)
    return text


# --- foreign items -------------------------------------------------------------------------

@pytest.mark.parametrize("newline", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_foreign_items_are_kept_byte_for_byte(proj: Proj, newline: str) -> None:
    original = FOREIGN.replace("\n", newline)
    proj.ics.write_bytes(original.encode())
    assert proj.sync() == summary(created=3)
    text = proj.ics.read_bytes().decode()
    assert without_ours(text) == original
    assert uids(text) == ["dentist-1@example.com", "todo-7@example.com",
                          "lookalike@example.com", *OURS]
    if newline == "\n":
        assert "\r" not in text  # the file keeps its own line ends
    else:
        assert "\n" not in text.replace("\r\n", "")

    # update one of ours
    proj.edit("    org: Acme Corp\n", "    org: Acme Corporation\n")
    assert proj.sync() == summary(updated=1, unchanged=2)
    text = proj.ics.read_bytes().decode()
    assert without_ours(text) == original
    assert uids(text) == ["dentist-1@example.com", "todo-7@example.com",
                          "lookalike@example.com", *OURS]

    # delete two of ours
    text_leads = proj.leads.read_text()
    proj.leads.write_text(text_leads[: text_leads.index("  sam-beta:")])
    assert proj.sync() == summary(deleted=2, unchanged=1)
    text = proj.ics.read_bytes().decode()
    assert without_ours(text) == original
    assert uids(text) == ["dentist-1@example.com", "todo-7@example.com",
                          "lookalike@example.com", OURS[0]]


def test_our_items_are_replaced_in_place(proj: Proj) -> None:
    proj.ics.write_text(FOREIGN)
    proj.sync()
    # the user moves a foreign event after ours in their app; our order must not matter
    text = proj.ics.read_text()
    dentist = next(b for b in blocks(text) if "dentist-1" in b)
    text = text.replace(dentist, "").replace("END:VCALENDAR\n", dentist + "END:VCALENDAR\n")
    proj.ics.write_text(text)
    before = blocks(text)
    proj.edit("    name: Sam Beta\n", "    name: Sam Beta\n    role: CTO\n")
    assert proj.sync() == summary(updated=2, unchanged=1)
    after = blocks(proj.ics.read_text())
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert [uids(after[i])[0] for i in changed] == OURS[1:]
    assert all("CTO" in after[i].replace("\n ", "") for i in changed)  # unfolded


def test_a_no_op_sync_does_not_rewrite_the_file(proj: Proj) -> None:
    proj.ics.write_text(FOREIGN)
    proj.sync()
    before = proj.snapshot()
    assert proj.sync() == summary(unchanged=3)
    assert proj.snapshot() == before
    # a foreign event added by hand: read, nothing of ours changes, the file is not rewritten
    text = proj.ics.read_text().replace(
        "END:VCALENDAR\n", "BEGIN:VEVENT\nUID:new@example.com\nDTSTAMP:20260101T000000Z\n"
        "DTSTART;VALUE=DATE:20261224\nSUMMARY:Party\nEND:VEVENT\nEND:VCALENDAR\n")
    proj.ics.write_text(text)
    before = proj.snapshot()
    assert proj.sync() == summary(unchanged=3)
    assert proj.snapshot() == before


def test_the_file_mode_is_kept(proj: Proj) -> None:
    proj.sync()
    proj.ics.chmod(0o640)
    proj.edit("    org: Acme Corp\n", "    org: Acme Corporation\n")
    assert proj.sync() == summary(updated=1, unchanged=2)
    assert stat.S_IMODE(proj.ics.stat().st_mode) == 0o640
    assert [p.name for p in proj.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_new_file_follows_the_umask(proj: Proj) -> None:
    old = os.umask(0o027)
    try:
        proj.sync()
    finally:
        os.umask(old)
    assert stat.S_IMODE(proj.ics.stat().st_mode) == 0o640


def test_an_empty_file_is_filled(proj: Proj) -> None:
    proj.ics.write_bytes(b"")  # `touch followups.ics` before the first sync
    assert proj.sync() == summary(created=3)
    assert uids(proj.ics.read_text()) == OURS


# --- files we must not rewrite -------------------------------------------------------------

BAD_FILES = {
    "garbage": (b"this is my shopping list\nmilk\n", "1: not a valid iCalendar file (does not "
                "start with BEGIN:VCALENDAR)"),
    "truncated": (FOREIGN.replace("END:VCALENDAR\n", "").encode(),
                  f"{FOREIGN.count(chr(10)) - 1}: not a valid iCalendar file (does not end with "
                  "END:VCALENDAR)"),
    "cut-mid-event": (FOREIGN.split("END:VTODO")[0].encode() + b"END:VCALENDAR\n",
                      "45: not a valid iCalendar file (BEGIN:VTODO is never ended)"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00", ""),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_file_that_is_not_icalendar_is_left_alone(proj: Proj, case: str) -> None:
    data, where = BAD_FILES[case]
    proj.set_targets("  - {name: file, type: ics, path: out.ics}\n"
                     "  - {name: other, type: ics, path: other.ics}\n")
    proj.ics.write_bytes(data)
    before = proj.snapshot()
    code, out, err = proj.run("sync")
    assert code == 3
    assert re.sub(r" \(\d+\.\d\d s\)", "", out) == summary(created=3, name="other") + "\n"
    if case == "binary":
        assert err == f"file: {proj.ics} is not a UTF-8 iCalendar file; it was left as it is\n"
    else:
        assert err == (f"file: {proj.ics}:{where}; it was left as it is\n"
                       "  hint: fix or move the file, or point the target elsewhere\n")
    assert proj.snapshot() == before
    assert uids((proj.dir / "other.ics").read_text()) == [
        uid_for("other", lead, rule) for lead, rule in (
            ("dana-acme", "cadence"), ("sam-beta", "cadence"), ("sam-beta", "once-2026-12-10"))]
    # the next sync still refuses, and still syncs the other target
    code, out, _ = proj.run("sync")
    assert code == 3
    assert re.sub(r" \(\d+\.\d\d s\)", "", out) == summary(unchanged=3, name="other") + "\n"
    assert proj.snapshot() == before


def test_when_several_exit_codes_apply_the_highest_is_returned(proj: Proj) -> None:
    proj.set_targets("  - {name: file, type: ics, path: out.ics}\n"
                     "  - {name: other, type: ics, path: other.ics}\n"
                     "safety: {max_deletes: 0}\n")
    proj.sync()
    proj.ics.write_text("not a calendar\n")
    text = proj.leads.read_text()
    proj.leads.write_text(text[: text.index("  sam-beta:")])
    code, out, err = proj.run("sync")
    assert (code, out) == (4, "")
    assert err.splitlines()[0].startswith(f"file: {proj.ics}:1: not a valid iCalendar file")
    assert err.splitlines()[2] == ("other: this sync would delete 2 items from other "
                                   "(safety.max_deletes is 0); nothing was changed there")


def test_a_folder_in_place_of_the_file(proj: Proj) -> None:
    proj.ics.mkdir()
    proj.set_targets("  - {name: file, type: ics, path: out.ics}\n"
                     "  - {name: other, type: ics, path: other.ics}\n")
    code, out, err = proj.run("sync")
    assert code == 3
    assert err == (f"file: {proj.ics} is a folder, not an .ics file\n"
                   "  hint: point the target's `path:` at a file\n")
    assert re.sub(r" \(\d+\.\d\d s\)", "", out) == summary(created=3, name="other") + "\n"
    assert list(proj.ics.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(proj: Proj) -> None:
    proj.sync()
    before = proj.snapshot()
    proj.edit("    org: Acme Corp\n", "    org: Acme Corporation\n")
    proj.dir.chmod(0o555)
    try:
        code, out, err = proj.run("sync")
    finally:
        proj.dir.chmod(0o755)
    assert (code, out) == (3, "")
    assert err == f"file: cannot write {proj.ics}: Permission denied; the old file is kept\n"
    assert proj.snapshot() == before
    assert proj.sync() == summary(updated=1, unchanged=2)


@pytest.mark.parametrize("fail", ["mkstemp", "replace"])
def test_a_failed_write_keeps_the_old_file_and_is_retried(
    proj: Proj, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    """What a read-only folder does, also when the tests run as root."""
    proj.sync()
    before = proj.snapshot()
    proj.edit("    org: Acme Corp\n", "    org: Acme Corporation\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(tempfile if fail == "mkstemp" else os, fail, refuse)
        code, out, err = proj.run("sync")
    assert (code, out) == (3, "")
    assert err == f"file: cannot write {proj.ics}: Permission denied; the old file is kept\n"
    assert proj.snapshot() == before
    assert [p.name for p in proj.dir.iterdir() if p.name.endswith(".tmp")] == []
    # nothing was remembered as written: the next sync writes the change
    assert proj.sync() == summary(updated=1, unchanged=2)
    assert "Acme Corporation" in proj.ics.read_text()


def test_a_file_saved_by_another_app_during_the_sync_is_not_overwritten(
    proj: Proj, monkeypatch: pytest.MonkeyPatch
) -> None:
    from followsync.backends import icsfile

    proj.ics.write_text(FOREIGN)
    proj.sync()
    proj.edit("    org: Acme Corp\n", "    org: Acme Corporation\n")
    saved_by_app = proj.ics.read_text().replace("SUMMARY:Buy milk", "SUMMARY:Buy oat milk")
    real_listing = icsfile.IcsFileBackend.listing

    def listing_then_app_saves(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_listing(self, *args, **kwargs)
        proj.ics.write_text(saved_by_app)  # the calendar app saves between read and write
        return result

    with monkeypatch.context() as patch:
        patch.setattr(icsfile.IcsFileBackend, "listing", listing_then_app_saves)
        code, out, err = proj.run("sync")
    assert (code, out) == (3, "")
    assert err == (f"file: {proj.ics} changed while followsync was updating it; it was left "
                   "as it is\n  hint: sync again (the daemon retries by itself)\n")
    assert proj.ics.read_text() == saved_by_app
    assert proj.sync() == summary(updated=1, unchanged=2)
    text = proj.ics.read_text()
    assert "SUMMARY:Buy oat milk" in text
    assert "Acme Corporation" in text


# --- edits made in the calendar (README, "What appears in the calendar") -----------------

def _drop(text: str, uid: str) -> str:
    block = next(b for b in blocks(text) if f"UID:{uid}" in b)
    return text.replace(block, "")


def test_an_item_deleted_by_hand_is_not_recreated_until_the_lead_changes(proj: Proj) -> None:
    """diff.py: the state remembers the item as gone while its input hash stays the same."""
    proj.ics.write_text(FOREIGN)
    proj.sync()
    proj.ics.write_text(_drop(proj.ics.read_text(), OURS[2]))
    assert proj.sync() == summary(unchanged=2, kept=1)
    before = proj.snapshot()
    # while the deletion stands, every sync counts it as kept and `plan` lists it as skip
    assert proj.sync() == summary(unchanged=2, kept=1)
    assert proj.sync(now="2026-12-01T18:00") == summary(unchanged=2, kept=1)
    assert proj.snapshot() == before
    code, out, _ = proj.run("plan")
    assert code == 0
    assert out.splitlines()[:2] == [
        "file: 0 to create, 0 to update, 0 to delete, 2 unchanged, 1 calendar edit kept",
        "  skip    sam-beta once-2026-12-10: deleted in the calendar; not recreated until the "
        "lead file changes it"]
    # the lead file changes that follow-up: it comes back, under the same UID
    proj.edit('do: "Ask about the budget"', 'do: "Ask about the Q1 budget"')
    assert proj.sync() == summary(created=1, unchanged=2)
    text = proj.ics.read_text()
    assert uids(text)[-1] == OURS[2]
    assert "Ask about the Q1 budget" in text
    assert without_ours(text) == FOREIGN


def test_a_rolled_item_deleted_by_hand_stays_deleted_the_next_day(proj: Proj) -> None:
    proj.sync()
    proj.ics.write_text(_drop(proj.ics.read_text(), OURS[0]))  # dana's item is overdue
    assert proj.sync() == summary(unchanged=2, kept=1)
    proj.sync(now="2026-12-02T08:00")
    assert OURS[0] not in uids(proj.ics.read_text())


def test_an_item_edited_by_hand_is_kept_until_the_lead_changes(proj: Proj) -> None:
    proj.sync()
    text = proj.ics.read_text()
    block = next(b for b in blocks(text) if f"UID:{OURS[2]}" in b)
    moved = block.replace("DTSTART;TZID=Europe/Berlin:20261210T090000",
                          "DTSTART;TZID=Europe/Berlin:20261211T140000")
    assert moved != block
    proj.ics.write_text(text.replace(block, moved))
    assert proj.sync() == summary(unchanged=2, kept=1)
    before = proj.snapshot()
    assert proj.sync() == summary(unchanged=3)
    assert proj.snapshot() == before
    proj.edit('do: "Ask about the budget"', 'do: "Ask about the Q1 budget"')
    assert proj.sync() == summary(updated=1, unchanged=2)
    assert "20261210T090000" in next(b for b in blocks(proj.ics.read_text())
                                     if f"UID:{OURS[2]}" in b)


def test_an_item_with_our_uid_but_without_our_marks_is_never_touched(proj: Proj) -> None:
    foreign = FOREIGN.replace("UID:lookalike@example.com", f"UID:{OURS[2]}")
    proj.ics.write_text(foreign)
    warning = f"file: {OURS[2]} exists without followsync's marks; it is left alone\n"
    for created in (2, 0):
        code, out, err = proj.run("sync")
        assert (code, err) == (0, warning)
        assert re.sub(r" \(\d+\.\d\d s\)", "", out) == \
            summary(created=created, unchanged=2 - created) + "\n"
        text = proj.ics.read_text()
        assert without_ours(text) == foreign
        assert uids(text).count(OURS[2]) == 1  # never a second item with one UID


# --- reading the file back -----------------------------------------------------------------

def test_the_written_file_parses_with_icalendar_and_vobject(proj: Proj) -> None:
    proj.ics.write_text(FOREIGN)
    proj.sync()
    data = proj.ics.read_bytes()

    cal = icalendar.Calendar.from_ical(data)
    ours = {str(c["UID"]): c for c in cal.walk("VEVENT") if "X-FOLLOWSYNC-LEAD" in c}
    assert sorted(ours) == sorted(OURS)
    for uid, item in ours.items():
        lead, rule = str(item["X-FOLLOWSYNC-LEAD"]), str(item["X-FOLLOWSYNC-RULE"])
        assert uid == uid_for("file", lead, rule)
        categories = [str(c) for cats in _as_list(item["CATEGORIES"]) for c in cats.cats]
        assert "followsync" in categories
    assert {str(c["TZID"]) for c in cal.walk("VTIMEZONE")} == {"America/New_York",
                                                              "Europe/Berlin"}
    dana = ours[OURS[0]]
    assert dana.decoded("DTSTART").isoformat() == "2026-12-01T09:00:00+01:00"
    assert str(dana["DTSTART"].params["TZID"]) == "Europe/Berlin"

    vobject = pytest.importorskip("vobject")
    calendars = list(vobject.readComponents(data.decode()))
    assert len(calendars) == 1
    found = {}
    for event in calendars[0].vevent_list:
        contents = event.contents
        if "x-followsync-lead" in contents:
            found[event.uid.value] = (contents["x-followsync-lead"][0].value,
                                      contents["x-followsync-rule"][0].value,
                                      event.categories.value)
    assert found == {
        OURS[0]: ("dana-acme", "cadence", ["followsync"]),
        OURS[1]: ("sam-beta", "cadence", ["followsync"]),
        OURS[2]: ("sam-beta", "once-2026-12-10", ["followsync"]),
    }
    assert [t.summary.value for t in calendars[0].vtodo_list] == ["Buy milk"]


def _as_list(value: object) -> list:  # type: ignore[type-arg]
    return value if isinstance(value, list) else [value]


def test_todo_items(proj: Proj) -> None:
    proj.set_targets("  - {name: file, type: ics, path: out.ics, as: todo}\n")
    proj.sync()
    cal = icalendar.Calendar.from_ical(proj.ics.read_bytes())
    todos = {str(c["UID"]): c for c in cal.walk("VTODO")}
    assert sorted(todos) == sorted(OURS)
    assert todos[OURS[2]].decoded("DUE").isoformat() == "2026-12-10T09:00:00+01:00"


def test_an_atomic_write_never_creates_the_folder(tmp_path: Path) -> None:
    """The config check reports a missing folder; should it vanish after that, the write
    fails (the target's error) rather than making the folder."""
    from followsync.atomic import write_atomic

    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "gone" / "out.ics", b"x")
    assert list(tmp_path.iterdir()) == []
