"""Broken lead files and configs: the exact FILE:LINE:COL message and hint, exit code 1,
and the calendar file left exactly as it was (README, "Commands": "1 invalid config or lead file
(nothing was written)")."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tests.project import Project

NOW = "2026-12-01T08:00"
GOOD_LEADS = """\
version: 1
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    last_contact: 2026-11-20
"""


@pytest.fixture
def fs(project: Project) -> Project:
    project.write_leads(GOOD_LEADS)
    return project


@pytest.fixture
def synced(fs: Project, capsys: pytest.CaptureFixture[str]) -> tuple[Project, bytes, int]:
    """A good first sync, so a later broken file can be checked to leave the .ics alone."""
    code, _, err = fs.run("sync")
    assert code == 0, err
    return fs, fs.ics.read_bytes(), fs.ics.stat().st_mtime_ns


def assert_fails(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str], expected: str
) -> None:
    """`sync` and `validate` both exit 1 with exactly `expected` on stderr; nothing written."""
    fs, before, mtime = synced
    state = fs.dir / "state" / "state.sqlite"
    state_before = state.read_bytes()
    for command in ("sync", "validate", "plan"):
        code, out, err = fs.run(command)
        assert (code, out) == (1, ""), (command, err)
        assert err == expected, command
    assert fs.ics.read_bytes() == before
    assert fs.ics.stat().st_mtime_ns == mtime
    assert state.read_bytes() == state_before


# One lead file per case: (id, file text, expected stderr with {L} for the lead file's path).
LEAD_CASES = [
    ("typo-in-defaults", """\
        version: 1
        defaults:
          cadense: [1w]
        leads: {}
        """, """\
        {L}:3:3: unknown key 'cadense'
          hint: did you mean 'cadence'?
        """),
    ("unknown-key-in-lead", """\
        version: 1
        leads:
          dana:
            name: Dana
            emial: dana@example.com
        """, """\
        {L}:5:5: unknown key 'emial'
          hint: did you mean 'email'?
        """),
    ("unknown-key-in-defaults", """\
        version: 1
        defaults:
          colour: red
        leads: {}
        """, """\
        {L}:3:3: unknown key 'colour'
          hint: known keys: action, alarms, all_day, as, at, cadence, closed, days, duration, \
give_up_after, on_other_status, on_status, overdue, spread, title
        """),
    ("unknown-key-in-log-mapping", """\
        version: 1
        leads:
          dana:
            name: Dana
            log:
              - {date: 2026-11-03, by: them, nte: "replied"}
        """, """\
        {L}:6:38: unknown key 'nte'
          hint: did you mean 'note'?
        """),
    ("unknown-key-in-follow-up", """\
        version: 1
        leads:
          dana:
            name: Dana
            follow_ups:
              - on: 2027-01-05
                do: Ask about the budget
                wat: "10:00"
        """, """\
        {L}:8:9: unknown key 'wat'
          hint: did you mean 'at'?
        """),
    ("unknown-key-in-trigger", """\
        version: 1
        defaults:
          on_status:
            interviewed: {after: 1d, do: "Thank {name}", when: 2}
        leads: {}
        """, """\
        {L}:4:50: unknown key 'when'
          hint: known keys: after, at, do
        """),
    ("duplicate-lead-id", """\
        version: 1
        leads:
          dana:
            name: Dana
          sam:
            name: Sam
          dana:
            name: Dana again
        """, """\
        {L}:7:3: duplicate key 'dana' (first at line 3)
          hint: YAML would silently keep only the last one; merge them or rename one
        """),
    ("duplicate-key-in-lead", """\
        version: 1
        leads:
          dana:
            name: Dana
            org: Acme
            name: Dana W.
        """, """\
        {L}:6:5: duplicate key 'name' (first at line 4)
          hint: YAML would silently keep only the last one; merge them or rename one
        """),
    ("bad-duration", """\
        version: 1
        leads:
          dana:
            name: Dana
            duration: 3 weeks
        """, """\
        {L}:5:15: leads.dana.duration: not a duration: '3 weeks'
          hint: write an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y
        """),
    ("bad-duration-in-cadence", """\
        version: 1
        defaults:
          cadence: [1w, 2 weeks]
        leads: {}
        """, """\
        {L}:3:17: defaults.cadence.2: not a duration: '2 weeks'
          hint: write an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y
        """),
    ("bad-date", """\
        version: 1
        leads:
          dana:
            name: Dana
            next: 2026-13-01
        """, """\
        {L}:5:11: leads.dana.next: not a valid date: '2026-13-01' (month must be in 1..12)
          hint: write YYYY-MM-DD, e.g. 2026-01-06
        """),
    ("not-a-date", """\
        version: 1
        leads:
          dana:
            name: Dana
            snooze_until: next week
        """, """\
        {L}:5:19: leads.dana.snooze_until: not a date: 'next week'
          hint: write YYYY-MM-DD, e.g. 2026-01-06
        """),
    ("bad-time", """\
        version: 1
        leads:
          dana:
            name: Dana
            at: 25:00
        """, """\
        {L}:5:9: leads.dana.at: not a time of day: '25:00'
          hint: write HH:MM on a 24-hour clock, e.g. "09:00" or "17:30"
        """),
    ("time-as-number", """\
        version: 1
        defaults:
          at: 900
        leads: {}
        """, """\
        {L}:3:7: defaults.at: not a time of day: 900
          hint: write HH:MM on a 24-hour clock, e.g. "09:00" or "17:30"
        """),
    ("cadence-not-a-list", """\
        version: 1
        leads:
          dana:
            name: Dana
            cadence: 5
        """, """\
        {L}:5:14: leads.dana.cadence: not a duration: 5
          hint: write an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y
        """),
    ("tags-not-a-list", """\
        version: 1
        leads:
          dana:
            name: Dana
            tags: "x"
        """, """\
        {L}:5:11: leads.dana.tags: expected a list, got 'x'
          hint: write a list: [a, b] or one '- item' per line
        """),
    ("missing-name", """\
        version: 1
        leads:
          dana:
            org: Acme
        """, """\
        {L}:3:3: missing required key 'name' in leads.dana
          hint: add `name: ...`
        """),
    ("empty-name", """\
        version: 1
        leads:
          dana:
            name: ""
        """, """\
        {L}:4:11: leads.dana.name is empty
          hint: write a value
        """),
    ("bad-lead-id", """\
        version: 1
        leads:
          Dana Acme:
            name: Dana
        """, """\
        {L}:3:3: bad lead id 'Dana Acme'
          hint: use lowercase letters, digits, '.', '_' and '-', starting with a letter or \
digit, e.g. 'dana-acme'
        """),
    ("unknown-placeholder", """\
        version: 1
        defaults:
          action: "Call {nmae} at {org}"
        leads: {}
        """, """\
        {L}:3:11: defaults.action: unknown placeholder {nmae} in 'Call {nmae} at {org}'
          hint: did you mean {name}?
        """),
    ("unknown-placeholder-far-off", """\
        version: 1
        leads:
          dana:
            name: Dana
            follow_ups:
              - {on: 2027-01-05, do: "Ask {budget}"}
        """, """\
        {L}:6:30: leads.dana.follow_ups.1.do: unknown placeholder {budget} in 'Ask {budget}'
          hint: use {name}, {org}, {role} or {email}
        """),
    ("log-line-without-date", """\
        version: 1
        leads:
          dana:
            name: Dana
            log:
              - emailed her the portfolio
        """, """\
        {L}:6:9: leads.dana.log.1: not a log entry: 'emailed her the portfolio'
          hint: start it with the date, e.g. '2026-01-05 emailed her', or write \
{date: 2026-01-05, by: me|them|both, note: ...}
        """),
    ("bad-by", """\
        version: 1
        leads:
          dana:
            name: Dana
            log:
              - {date: 2026-11-03, by: they}
        """, """\
        {L}:6:32: leads.dana.log.1.by: got 'they'; expected 'me', 'them' or 'both'
          hint: did you mean 'them'?
        """),
    ("two-one-offs-same-day", """\
        version: 1
        leads:
          dana:
            name: Dana
            follow_ups:
              - {on: 2027-01-05, do: a}
              - {on: 2027-01-05, do: b}
        """, """\
        {L}:6:7: leads.dana.follow_ups: two follow_ups share '2027-01-05'
          hint: give each of them its own `id:` (lowercase letters, digits, -)
        """),
    ("give-up-after-zero", """\
        version: 1
        defaults:
          give_up_after: 0
        leads: {}
        """, """\
        {L}:3:18: defaults.give_up_after: 0 is too small
          hint: write a number of at least 1
        """),
    ("version-2", """\
        version: 2
        leads: {}
        """, """\
        {L}:1:10: version: got 2; expected 1
          hint: write 1
        """),
    ("tabs", "version: 1\nleads:\n\tdana:\n\t\tname: Dana\n", """\
        {L}:3:1: YAML syntax error: a tab character where YAML allows only spaces
          hint: YAML does not allow tabs for indentation; use spaces
        """),
    ("empty-file", "", """\
        {L}:1:1: the lead file is empty
          hint: write `version: 1` and your `leads:` (an empty list is `leads: {}`), or \
start from `followsync init`
        """),
    ("only-comments", "# my leads\n\n   # nothing yet\n", """\
        {L}:1:1: the lead file is empty
          hint: write `version: 1` and your `leads:` (an empty list is `leads: {}`), or \
start from `followsync init`
        """),
    ("not-a-mapping", "- dana\n- sam\n", """\
        {L}:1:1: a lead file is a mapping with `leads:` in it
          hint: start from `followsync init` or the README's example
        """),
    ("binary-junk", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", """\
        {L}:1:1: the file is not UTF-8 text
          hint: save it as UTF-8 (not a binary or UTF-16 file)
        """),
    ("nul-bytes", b"version: 1\nleads:\x00\x00\n", """\
        {L}:2:1: the file contains a NUL byte
          hint: is this really the lead file? save it as plain text
        """),
    ("cadence-in-minutes", """\
        version: 1
        defaults:
          cadence: [1w, 2w, 1m]
        leads: {}
        """, """\
        {L}:3:21: defaults.cadence.3: '1m' is less than a day
          hint: `1m` is one minute: did you mean `1mo`? gaps between follow-ups are whole days: \
use d, w, mo or y
        """),
    ("status-trigger-after-hours", """\
        version: 1
        defaults:
          on_status:
            interviewed: {after: 12h, do: send a thank-you note}
        leads: {}
        """, """\
        {L}:4:26: defaults.on_status.interviewed.after: '12h' is less than a day
          hint: gaps between follow-ups are whole days: use d, w, mo or y
        """),
    ("other-status-trigger-after-minutes", """\
        version: 1
        leads:
          dana:
            name: Dana
            on_other_status:
              offer: {after: 2m, do: tell her about the offer}
        """, """\
        {L}:6:22: leads.dana.on_other_status.offer.after: '2m' is less than a day
          hint: `2m` is 2 minutes: did you mean `2mo`? gaps between follow-ups are whole days: \
use d, w, mo or y
        """),
    ("bad-day-name", """\
        version: 1
        defaults:
          days: [mon, tue, wed, thurs, fri]
        leads: {}
        """, """\
        {L}:3:25: defaults.days.4: not a day of the week: 'thurs'
          hint: did you mean 'thu'? write three-letter day names: mon, tue, wed, thu, fri, sat, \
sun
        """),
    ("day-name-no-guess", """\
        version: 1
        leads:
          dana:
            name: Dana
            days: [weekdays]
        """, """\
        {L}:5:12: leads.dana.days.1: not a day of the week: 'weekdays'
          hint: write three-letter day names: mon, tue, wed, thu, fri, sat, sun
        """),
    ("no-days", """\
        version: 1
        defaults:
          days: []
        leads: {}
        """, """\
        {L}:3:9: defaults.days is empty
          hint: give at least one entry
        """),
    ("unknown-placeholder-in-title", """\
        version: 1
        defaults:
          title: "{nam} — {action}"
        leads: {}
        """, """\
        {L}:3:10: defaults.title: unknown placeholder {nam} in '{nam} — {action}'
          hint: did you mean {name}?
        """),
    ("action-placeholder-in-action", """\
        version: 1
        defaults:
          action: "{action} now"
        leads: {}
        """, """\
        {L}:3:11: defaults.action: unknown placeholder {action} in '{action} now'
          hint: use {name}, {org}, {role} or {email}
        """),
    ("missing-do-in-a-one-off", """\
        version: 1
        leads:
          dana:
            name: Dana
            follow_ups:
              - {on: 2027-01-05, do: call}
              - {on: 2027-01-06}
        """, """\
        {L}:7:9: missing required key 'do' in leads.dana.follow_ups.2
          hint: add `do: ...`
        """),
    ("email-not-an-address", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: not an email
        """, """\
        {L}:5:12: leads.dana.email: not an email address: 'not an email'
          hint: write one address, e.g. dana@acme.example, or a name and one address: \
Dana W <dana@acme.example>
        """),
    ("email-two-addresses-in-one", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: "a@x.example, b@y.example"
        """, """\
        {L}:5:12: leads.dana.email: 'a@x.example, b@y.example' is more than one address
          hint: two addresses: write a list [a@x.example, b@y.example]
        """),
    ("email-list-item-not-an-address", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: [dana@acme.example, "dana at gmail"]
        """, """\
        {L}:5:32: leads.dana.email.2: not an email address: 'dana at gmail'
          hint: write one address, e.g. dana@acme.example, or a name and one address: \
Dana W <dana@acme.example>
        """),
    ("email-address-as-display-name", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: dana@acme.example <spam@evil.example>
        """, """\
        {L}:5:12: leads.dana.email: not an email address: 'dana@acme.example <spam@evil.example>'
          hint: write one address, e.g. dana@acme.example, or a name and one address: \
Dana W <dana@acme.example>
        """),
    ("email-mailto-link", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: mailto:dana@acme.example
        """, """\
        {L}:5:12: leads.dana.email: not an email address: 'mailto:dana@acme.example'
          hint: leave out `mailto:`: write dana@acme.example
        """),
    ("email-empty-text", """\
        version: 1
        leads:
          dana:
            name: Dana
            email: ""
        """, """\
        {L}:5:12: leads.dana.email: no address
          hint: write an address, or leave out `email:`
        """),
    ("email-shared-by-two-leads", """\
        version: 1
        leads:
          hannah:
            name: Hannah Vogel
            email: Hannah Vogel <hannah@northwind.example>
          sam:
            name: Sam
            email: [sam@x.example, HANNAH@northwind.example]
        """, """\
        {L}:8:28: leads.sam.email.2: HANNAH@northwind.example is also the email of lead 'hannah'
          hint: two leads may not share an address (its mail could not tell them apart): keep \
it on 'hannah' or on 'sam', not both
        """),

]


def _expected(text: str, **paths: Path) -> str:
    text = textwrap.dedent(text)
    for name, path in paths.items():
        text = text.replace("{" + name + "}", str(path))
    return text


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in LEAD_CASES],
                         ids=[c[0] for c in LEAD_CASES])
def test_broken_lead_file(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str], text: str | bytes,
    expected: str,
) -> None:
    fs = synced[0]
    fs.write_leads(text)
    assert_fails(synced, capsys, _expected(expected, L=fs.leads))


def test_every_problem_in_one_file_is_reported_at_once(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = synced[0]
    fs.write_leads("""\
        version: 1
        defaults:
          cadense: [1w]
        leads:
          dana:
            name: Dana
            at: 25:00
            tags: "x"
            log:
              - emailed
          Bad Id:
            name: B
          nameless:
            org: X
        """)
    assert_fails(synced, capsys, _expected("""\
        {L}:3:3: unknown key 'cadense'
          hint: did you mean 'cadence'?
        {L}:7:9: leads.dana.at: not a time of day: '25:00'
          hint: write HH:MM on a 24-hour clock, e.g. "09:00" or "17:30"
        {L}:8:11: leads.dana.tags: expected a list, got 'x'
          hint: write a list: [a, b] or one '- item' per line
        {L}:10:9: leads.dana.log.1: not a log entry: 'emailed'
          hint: start it with the date, e.g. '2026-01-05 emailed her', or write \
{date: 2026-01-05, by: me|them|both, note: ...}
        {L}:11:3: bad lead id 'Bad Id'
          hint: use lowercase letters, digits, '.', '_' and '-', starting with a letter or \
digit, e.g. 'bad-id'
        {L}:13:3: missing required key 'name' in leads.nameless
          hint: add `name: ...`
        """, L=fs.leads))


def _two_lead_files(fs: Project) -> None:
    """The config of the tests below: leads.yaml and more.yaml into one .ics file."""
    fs.write_config("""\
        leads: [leads.yaml, more.yaml]
        timezone: Europe/Berlin
        state_dir: state
        targets:
          - {name: file, type: ics, path: out.ics}
        """)


def test_problems_in_config_and_two_lead_files_are_all_reported(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every lead file is checked even when the first one is broken."""
    fs = synced[0]
    _two_lead_files(fs)
    fs.write_leads("version: 1\nleads:\n  dana:\n    nam: Dana\n")
    more = fs.write_leads("version: 1\nleads:\n  sam:\n    name: Sam\n    at: 7pm\n", "more.yaml")
    assert_fails(synced, capsys, _expected("""\
        {L}:3:3: missing required key 'name' in leads.dana
          hint: add `name: ...`
        {L}:4:5: unknown key 'nam'
          hint: did you mean 'name'?
        {M}:5:9: leads.sam.at: not a time of day: '7pm'
          hint: write HH:MM on a 24-hour clock, e.g. "09:00" or "17:30"
        """, L=fs.leads, M=more))


def test_same_lead_id_in_two_lead_files(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = synced[0]
    _two_lead_files(fs)
    more = fs.write_leads("version: 1\nleads:\n  sam:\n    name: Sam\n  dana-acme:\n"
                          "    name: Another Dana\n", "more.yaml")
    assert_fails(synced, capsys, _expected("""\
        {M}:5:3: lead id 'dana-acme' is already used in {L}
          hint: lead ids must be unique across lead files
        """, L=fs.leads, M=more))


def test_an_address_shared_across_lead_files_is_an_error_at_the_second(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = synced[0]
    _two_lead_files(fs)
    fs.write_leads("version: 1\nleads:\n  dana-acme:\n    name: Dana\n"
                   "    email: Dana@Acme.example\n")
    more = fs.write_leads("version: 1\nleads:\n  sam:\n    name: Sam\n"
                          "    email: '\"Dana W\" <dana@acme.EXAMPLE>'\n", "more.yaml")
    assert_fails(synced, capsys, _expected("""\
        {M}:5:12: leads.sam.email: dana@acme.EXAMPLE is also the email of lead 'dana-acme' \
(in {L})
          hint: two leads may not share an address (its mail could not tell them apart): keep \
it on 'dana-acme' or on 'sam', not both
        """, L=fs.leads, M=more))


SHARED = """\
    version: 1
    leads:
      dana-acme:
        name: Dana Whitfield
        email: dana@acme.example
        last_contact: 2026-11-20
      sam:
        name: Sam Beta
        email: sam@beta.example
        last_contact: 2026-11-25
    """


def test_an_edit_that_shares_an_address_fails_the_quick_sync_too(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a clean sync, a save that changes one lead is synced from that lead alone (the
    delta path, README "Large lead files"): an address it now shares with another lead must
    fail that sync as it fails a full one, with nothing written."""
    project.write_leads(SHARED)
    for _ in range(2):  # the second sync leaves the basis of a quick one
        code, _, err = project.run("sync")
        assert code == 0, err
    synced = (project, project.ics.read_bytes(), project.ics.stat().st_mtime_ns)
    project.edit("sam@beta.example", "Sam <Dana@acme.example>")
    assert_fails(synced, capsys, _expected("""\
        {L}:9:12: leads.sam.email: Dana@acme.example is also the email of lead 'dana-acme'
          hint: two leads may not share an address (its mail could not tell them apart): keep \
it on 'dana-acme' or on 'sam', not both
        """, L=project.leads))
    # and once the address is unique again, the sync goes on as before
    project.edit("Sam <Dana@acme.example>", "Sam <sam@beta.example>")
    assert project.run("sync")[0] == 0


def test_yaml_syntax_error_keeps_pyyaml_line_and_column(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = synced[0]
    text = "version: 1\nleads:\n  dana: {name: [Dana}\n"
    fs.write_leads(text)
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        yaml.compose(text, Loader=yaml.SafeLoader)
    mark = raised.value.problem_mark
    assert mark is not None
    assert (mark.line + 1, mark.column + 1) == (3, 21)
    assert_fails(synced, capsys, _expected("""\
        {L}:3:21: YAML syntax error: did not find expected ',' or ']' (while parsing a flow \
sequence)
          hint: check the indentation and that every ':' in a value is inside quotes
        """, L=fs.leads))


def test_unclosed_quote_points_at_the_end_of_the_file(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = synced[0]
    fs.write_leads('version: 1\nleads:\n  dana:\n    name: "Dana\n    org: Acme\n')
    assert_fails(synced, capsys, _expected("""\
        {L}:6:1: YAML syntax error: found unexpected end of stream (while scanning a quoted \
scalar)
          hint: check the indentation and that every ':' in a value is inside quotes
        """, L=fs.leads))


# --- things that must load fine -------------------------------------------------------------

def plan_lines(fs: Project, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out, err = fs.run("plan")
    assert (code, err) == (0, "")
    return out.splitlines()


def test_bom_and_crlf_load_fine_and_lines_still_count(
    fs: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "version: 1\nleads:\n  dana:\n    name: Dana\n    last_contact: 2026-11-20\n"
    fs.write_leads(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert plan_lines(fs, capsys)[1].startswith("  create  dana cadence: 2026-12-01 09:00 event")
    fs.write_leads(b"\xef\xbb\xbf" + (text + "    colour: red\n").replace("\n", "\r\n").encode())
    code, _, err = fs.run("validate")
    assert code == 1
    assert err.splitlines()[0] == f"{fs.leads}:6:5: unknown key 'colour'"


def test_on_yes_no_keys_stay_strings(fs: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """`on:` is a key named "on" (YAML 1.1 would make it True), `no` a status word."""
    fs.write_leads("""\
        version: 1
        leads:
          dana:
            name: Dana
            status: no
            follow_ups:
              - on: 2027-01-05
                do: Ask about the budget
              - {on: 2027-01-06, do: "Second", id: yes}
        """)
    lines = plan_lines(fs, capsys)
    assert "  create  dana once-2027-01-05: 2027-01-05 09:00 event — one-off follow-up set for " \
           "2027-01-05" in lines
    assert any(line.startswith("  create  dana once-yes: 2027-01-06 09:00") for line in lines)


def test_unquoted_time_is_a_time_not_sexagesimal(
    fs: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML 1.1 reads 9:00 as 540; followsync reads the time the user wrote."""
    fs.write_leads("""\
        version: 1
        defaults:
          at: 9:30
        leads:
          dana:
            name: Dana
            last_contact: 2026-11-20
            follow_ups:
              - {on: 2027-01-05, do: x, at: 17:05}
        """)
    lines = plan_lines(fs, capsys)
    assert any(" dana cadence: 2026-12-01 09:30 event" in line for line in lines)
    assert any(" dana once-2027-01-05: 2027-01-05 17:05 event" in line for line in lines)


def test_log_line_with_a_colon_is_still_a_log_line(
    fs: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lead file example writes `- 2013-06-03 emailed: thanks again`, which YAML reads as a mapping."""
    fs.write_leads("""\
        version: 1
        defaults: {cadence: [1w]}
        leads:
          dana:
            name: Dana
            last_contact: 2026-11-01
            log:
              - 2026-11-20 emailed: thanks again, still very interested
        """)
    lines = plan_lines(fs, capsys)
    assert "  create  dana cadence: 2026-12-01 09:00 event — 2nd follow-up: 1 unanswered " \
           "(2026-11-20 emailed: thanks again, still very interested) since 2026-11-01 " \
           "(last contact); last touch 2026-11-20 + 1w; due 2026-11-27, overdue: shown " \
           "today" in lines


def test_the_lead_file_example_in_the_readme_loads(fs: Project) -> None:
    """The README's tour of the lead file ("The lead file") is a lead file that validates."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("```yaml\n", text.index("## The lead file")) + len("```yaml\n")
    fs.write_leads(text[start: text.index("```", start)])
    code, out, err = fs.run("validate")
    assert (code, err) == (0, ""), err
    assert out.startswith("ok: ")


# --- the config ----------------------------------------------------------------------------

CONFIG_CASES = [
    ("unknown-key", """\
        leads: leads.yaml
        state_dri: state
        """, """\
        {C}:2:1: unknown key 'state_dri'
          hint: did you mean 'state_dir'?
        """),
    ("unknown-key-in-target", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - name: file
            type: ics
            pth: out.ics
        """, """\
        {C}:6:5: unknown key 'pth'
          hint: did you mean 'path'?
        """),
    ("ics-target-without-path", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - name: file
            type: ics
          - {name: dav, type: caldav, calendar: Work}
        """, """\
        {C}:4:5: targets.1: an ics target needs `path:`
          hint: add `path: followups.ics` (the .ics file to write)
        {C}:6:5: targets.2: a caldav target needs `url:`
          hint: add the server, principal or calendar URL, e.g. `url: https://dav.example.com/`
        """),
    ("unknown-time-zone", """\
        leads: leads.yaml
        timezone: Europe/Berlim
        state_dir: state
        """, """\
        {C}:2:11: timezone: unknown time zone 'Europe/Berlim'
          hint: did you mean 'Europe/Berlin'?
        """),
    ("unknown-target-type", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: file, type: icss, path: out.ics}
        """, """\
        {C}:4:24: targets.1.type: got 'icss'; expected 'caldav', 'ics', 'google' or 'microsoft'
          hint: did you mean 'ics'?
        """),
    ("bad-target-name", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: my file, type: ics, path: out.ics}
        """, """\
        {C}:4:12: targets.1.name: 'my file' is not a valid name
          hint: use letters, digits, '.', '_' and '-', starting with a letter or digit, \
e.g. 'my-file'
        """),
    ("leads-is-a-mapping", """\
        leads: {file: leads.yaml}
        state_dir: state
        """, """\
        {C}:1:8: leads: expected text or a list, got a mapping
          hint: write text or a list
        """),
    ("negative-max-deletes", """\
        leads: leads.yaml
        state_dir: state
        safety: {max_deletes: -1}
        daemon: {interval: often}
        """, """\
        {C}:3:23: safety.max_deletes: -1 is too small
          hint: write a number of at least 0
        {C}:4:20: daemon.interval: not a duration: 'often'
          hint: write an integer and a unit: 30m, 2h, 3d, 2w, 1mo or 1y
        """),
    ("two-targets-one-name", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: file, type: ics, path: out.ics}
          - {name: file, type: ics, path: other.ics}
        """, """\
        {C}:4:3: targets: target names must be unique: file
          hint: rename one; the name keeps each target's state apart
        """),
    ("lead-file-listed-twice", """\
        leads: [leads.yaml, ./leads.yaml]
        state_dir: state
        """, """\
        {C}:1:21: ./leads.yaml is listed twice in `leads:`
          hint: remove one of them
        """),
    ("missing-lead-file", """\
        leads: [leads.yaml, nothere.yaml]
        state_dir: state
        """, """\
        {C}:1:21: lead file not found: {D}/nothere.yaml
          hint: check `leads:` in the config, or run `followsync init`
        """),
    ("ics-target-in-a-missing-folder", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - name: file
            type: ics
            path: nothere/sub/out.ics
        """, """\
        {C}:6:11: the folder of the ics target 'file' does not exist: {D}/nothere/sub
          hint: check `path:` for a typo, or create the folder first (followsync does not create it)
        """),
    ("ics-target-type-ical", """\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: file, type: ical, path: out.ics}
        """, """\
        {C}:4:24: targets.1.type: got 'ical'; expected 'caldav', 'ics', 'google' or 'microsoft'
          hint: did you mean 'ics'? (an .ics file; 'caldav' is a calendar on a server)
        """),
    ("config-is-a-list", """\
        - leads.yaml
        """, """\
        {C}:1:1: the config is a mapping of `key: value` lines
          hint: see the README, section "The config file"
        """),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_broken_config(
    synced: tuple[Project, bytes, int], capsys: pytest.CaptureFixture[str], text: str,
    expected: str,
) -> None:
    fs = synced[0]
    fs.write_config(text)
    assert_fails(synced, capsys, _expected(expected, C=fs.config, D=fs.dir))


@pytest.mark.parametrize("alias", ["ical", "iCalendar", "file", "ics-file", "ICS_FILE"])
def test_ics_aliases_suggest_ics(
    fs: Project, capsys: pytest.CaptureFixture[str], alias: str
) -> None:
    fs.write_config(f"""\
        leads: leads.yaml
        state_dir: state
        targets:
          - {{name: file, type: {alias}, path: out.ics}}
        """)
    code, _, err = fs.run("validate")
    assert code == 1
    assert err.splitlines()[1] == ("  hint: did you mean 'ics'? (an .ics file; 'caldav' is a "
                                   "calendar on a server)")


def test_an_ics_target_in_a_missing_folder_creates_no_folder(
    fs: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    fs.write_config("""\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: file, type: ics, path: /nonexistent-followsync-dir/dir/out.ics}
        """)
    for command in ("validate", "plan", "sync"):
        code, out, err = fs.run(command)
        assert (code, out) == (1, "")
        assert err.startswith(f"{fs.config}:4:35: the folder of the ics target 'file' does not "
                              "exist: /nonexistent-followsync-dir/dir\n"), err
    assert not Path("/nonexistent-followsync-dir").exists()
    # the default target writes followups.ics beside the config, whose folder exists
    fs.write_config("leads: leads.yaml\nstate_dir: state\n")
    assert fs.run("sync")[0] == 0
    assert (fs.config.parent / "followups.ics").exists()


def test_missing_config_file(fs: Project, capsys: pytest.CaptureFixture[str]) -> None:
    fs.config.unlink()
    code, out, err = fs.run("validate")
    assert (code, out) == (1, "")
    assert err == (f"{fs.config}:1:1: config file not found\n"
                   "  hint: create one with `followsync init`, or pass --config PATH\n")


def test_a_password_in_a_config_others_can_read_is_refused_without_showing_it(
    fs: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    fs.write_config("""\
        leads: leads.yaml
        state_dir: state
        targets:
          - {name: dav, type: caldav, url: "https://dav.example/", password: s3cr3t-value}
        """)
    fs.config.chmod(0o644)
    code, out, err = fs.run("validate")
    assert (code, out) == (1, "")
    assert err == (f"{fs.config}:4:70: target 'dav' has a password in a config file others "
                   "can read\n"
                   f"  hint: run `chmod 600 {fs.config}`, or better use password_command or "
                   "password_env\n")
    assert "s3cr3t" not in err
