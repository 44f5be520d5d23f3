"""`followsync plan [--all] [LEAD...]` (README "Commands"): reasons a user can check. An
overdue roll says when the item was due; `--all` lists every pending follow-up with its
reason, not only changes; LEAD ids restrict it; before a mailbox was ever scanned `plan` says
its mail is not counted yet; and `plan` writes nothing anywhere."""

from __future__ import annotations

import json

import pytest

from tests.imapserver import Account
from tests.mailproject import mail_from, mail_project
from tests.project import Project

TODAY = "2026-12-07T08:00"
LEADS = """\
version: 1
defaults: {cadence: [1w, 2w, 1mo], give_up_after: 2}
leads:
  dana-acme:
    name: Dana Whitfield
    org: Acme Corp
    log:
      - {date: 2026-11-10, by: them, note: "replied: ask again in December"}
      - 2026-11-18 emailed
  sam-beta:
    name: Sam Beta
    last_contact: 2026-12-01
    follow_ups:
      - {on: 2026-12-10, do: "Ask about the budget"}
  cole:
    name: Cole Dunn
    status: hired
  vik:
    name: Viktor Nagy
    log: [2026-10-01 sent CV, 2026-10-08 asked again]
"""
DANA = ("dana-acme cadence: 2026-12-07 09:00 {kind}— 2nd follow-up: 1 unanswered (2026-11-18 "
        "emailed) since their reply 2026-11-10; last touch 2026-11-18 + 2w; due 2026-12-02, "
        "overdue: shown today")
SAM = ["sam-beta cadence: 2026-12-08 09:00 {kind}— 1st follow-up: last touch 2026-12-01 "
       "(last contact) + 1w",
       "sam-beta once-2026-12-10: 2026-12-10 09:00 {kind}— one-off follow-up set for 2026-12-10"]


def lines(*texts: str, kind: str = "") -> list[str]:
    return [text.format(kind=kind) for text in texts]


@pytest.fixture
def proj(project: Project) -> Project:
    project.now = TODAY
    project.write_leads(LEADS)
    return project


def files(project: Project) -> dict[str, bytes]:
    """Every file under the project folder, by path: to show that nothing was written."""
    return {str(p.relative_to(project.dir)): p.read_bytes()
            for p in sorted(project.dir.rglob("*")) if p.is_file()}


def test_an_overdue_roll_says_when_it_was_due(proj: Project) -> None:
    code, out, err = proj.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 3 to create, 0 to update, 0 to delete, 0 unchanged",
        *("  create  " + line for line in lines(DANA, *SAM, kind="event ")),
    ]


def test_plan_all_lists_every_pending_follow_up_after_a_sync_and_writes_nothing(
        proj: Project) -> None:
    assert proj.run("sync")[0] == 0
    before = files(proj)
    code, out, err = proj.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["file: 0 to create, 0 to update, 0 to delete, 3 unchanged"]
    code, out, err = proj.run("plan", "--all")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 0 to create, 0 to update, 0 to delete, 3 unchanged",
        "pending follow-ups (3):",
        *("  " + line for line in lines(DANA, *SAM)),
    ]
    assert files(proj) == before
    # the reason is the one `agenda --json` gives, and the due date it names is `was_due`
    code, out, _ = proj.run("agenda", "--json")
    item = json.loads(out)["overdue"][0]
    assert DANA.format(kind="").endswith(f"{item['reason']}; due {item['was_due']}, overdue: "
                                         "shown today")


def test_lead_ids_restrict_the_plan_and_say_why_a_lead_has_nothing(proj: Project) -> None:
    code, out, err = proj.run("plan", "--all", "sam-beta", "cole", "vik")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 3 to create, 0 to update, 0 to delete, 0 unchanged",
        *("  create  " + line for line in lines(*SAM, kind="event ")),  # their changes first
        "pending follow-ups of sam-beta, cole, vik (2):",
        *("  " + line for line in lines(*SAM)),
        "  cole: none: its status 'hired' is closed",
        "  vik: none: gone cold after 2 unanswered (give_up_after)",
    ]
    # without --all: only the changes of those leads
    code, out, err = proj.run("plan", "sam-beta")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 3 to create, 0 to update, 0 to delete, 0 unchanged",
        *("  create  " + line for line in lines(*SAM, kind="event ")),
    ]


def test_an_unknown_lead_id_is_a_usage_error_with_a_suggestion(proj: Project) -> None:
    code, out, err = proj.run("plan", "--all", "dana-acm")
    assert (code, out) == (2, "")
    assert "no lead 'dana-acm'" in err and "did you mean 'dana-acme'?" in err
    assert not proj.state.exists()


def test_before_a_mailbox_was_ever_scanned_plan_says_its_mail_is_not_counted(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    p = mail_project(project, monkeypatch, imap_account, leads="""\
        version: 1
        leads:
          dana: {name: Dana Whitfield, email: dana@acme.example, last_contact: 2026-11-20}
        """)
    mail_from(imap_account, "Dana Whitfield <dana@acme.example>", "2026-11-30", "Re: hello")
    code, out, err = p.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "mailbox inbox: not scanned yet: its mail is not counted in these dates (the next "
        "sync reads it; plan never scans)",
        "file: 1 to create, 0 to update, 0 to delete, 0 unchanged",
        "  create  dana cadence: 2026-12-01 09:00 event — 1st follow-up: last touch "
        "2026-11-20 (last contact) + 1w; due 2026-11-27, overdue: shown today",
    ]
    assert not p.state.exists() and not p.ics.exists()
    assert p.run("mail")[0] == 0  # scanned (no calendar written): now the mail counts
    code, out, err = p.run("plan")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "file: 1 to create, 0 to update, 0 to delete, 0 unchanged",
        "  create  dana cadence: 2026-12-07 09:00 event — 1st follow-up: last touch "
        '2026-11-30 (mail from Dana Whitfield "Re: hello") + 1w',
    ]


def test_a_roll_to_the_next_allowed_day_and_a_kept_overdue_item_say_so(project: Project) -> None:
    project.write_leads("""\
        version: 1
        leads:
          dana:
            name: Dana
            days: [mon, tue, wed, thu, fri]
            last_contact: 2026-11-25
          sam:
            name: Sam
            overdue: keep
            last_contact: 2026-11-25
        """)
    code, out, err = project.run("plan", "--all", now="2026-12-05T08:00")  # a Saturday
    assert (code, err) == (0, "")
    assert out.splitlines()[-2:] == [
        "  dana cadence: 2026-12-07 09:00 — 1st follow-up: last touch 2026-11-25 (last contact) "
        "+ 1w; due 2026-12-02, overdue: shown Mon 2026-12-07",
        "  sam cadence: 2026-12-02 09:00 — 1st follow-up: last touch 2026-11-25 (last contact) "
        "+ 1w; overdue, kept on its date (overdue: keep)",
    ]


def test_all_gives_each_item_the_time_it_is_laid_at(project: Project) -> None:
    """Items laid end to end (`spread`) are listed by `--all` at the time the create lines
    and the calendar give them, not all at `at`."""
    project.now = TODAY
    project.write_leads("version: 1\nleads:\n" + "".join(
        f"  l{n}:\n    name: Lead {n}\n" for n in range(3)))
    code, out = project.output("plan", "--all")
    assert code == 0, out
    pending = out.split("pending follow-ups (3):\n")[1].splitlines()
    assert [line.split(" — ")[0] for line in pending] == [
        "  l0 cadence: 2026-12-07 09:00", "  l1 cadence: 2026-12-07 09:15",
        "  l2 cadence: 2026-12-07 09:30"]
    assert "create  l2 cadence: 2026-12-07 09:30 event" in out
