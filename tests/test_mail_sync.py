"""Mail touches flow into the rules like logged ones (README "Mail"), end to end through the
CLI against a real Dovecot: `sync` scans first, `plan` names mail in its reasons, the
calendar item links back to the thread, `agenda` lists recent mail, and a lost state is
rebuilt by scanning again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.imapserver import Account, CountingProxy
from tests.mailproject import mail_from, mail_project, mail_to
from tests.project import Project

LEADS = """\
version: 1
defaults: {cadence: [1mo, 2mo, 3mo], give_up_after: 3}
leads:
  dana:
    name: Dana Whitfield
    org: Acme Corp
    email: [dana@acme.example, dana.w@home.example]
  ann: {name: Ann Lee, email: ann@x.example, last_contact: 2026-11-01}
"""
ROOT = Path(__file__).resolve().parent.parent
DANA = "Dana Whitfield <dana@acme.example>"


def due(project: Project, lead: str = "dana", now: str | None = None) -> str:
    """`DATE HH:MM — reason` of a lead's cadence follow-up, as `agenda --json` gives it."""
    code, out, err = project.run("agenda", "--json", "--days", "400", now=now)
    assert code == 0, err
    data = json.loads(out)
    found = [i for i in data["overdue"] + data["upcoming"]
             if (i["lead"], i["rule"]) == (lead, "cadence")]
    assert len(found) == 1, out
    return f"{found[0]['due']} {found[0]['at']} — {found[0]['reason']}"


def plan_line(project: Project, lead: str = "dana", now: str | None = None) -> str:
    """`plan`'s line for a lead's cadence item."""
    code, out, err = project.run("plan", now=now)
    assert code == 0, err
    found = [line for line in out.splitlines() if f" {lead} cadence:" in line]
    assert len(found) == 1, out
    return found[0].split(": ", 1)[1]


def unfolded(project: Project) -> str:
    return project.ics.read_text().replace("\n ", "")


def test_the_worked_example_driven_entirely_by_mail(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's worked example, each touch a message with that date instead of a log
    entry: an answer resets the back-off, my unanswered mails lengthen it."""
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_from(acc, DANA, "2013-05-03", "budget", "11:00")
    assert p.run("mail", now="2013-05-04T08:00")[0] == 0
    assert plan_line(p, now="2013-05-04T08:00") == (
        '2013-06-03 09:00 event — 1st follow-up: last touch 2013-05-03 '
        '(mail from Dana Whitfield "budget") + 1mo')
    mail_to(acc, "dana@acme.example", "2013-06-03", "thanks again", "08:30")
    assert p.run("sync", now="2013-06-04T08:00")[0] == 0
    assert due(p, now="2013-06-04T08:00").startswith(
        '2013-08-03 09:00 — 2nd follow-up: 1 unanswered (2013-06-03 mail to Dana Whitfield '
        '"thanks again") since their reply 2013-05-03; last touch 2013-06-03 + 2mo')
    mail_to(acc, "dana@acme.example", "2013-08-05", "still interested", "08:30")
    assert p.run("sync", now="2013-08-06T08:00")[0] == 0
    assert due(p, now="2013-08-06T08:00").startswith("2013-11-05 09:00 — 3rd follow-up")
    mail_from(acc, "Dana <DANA.W@home.example>", "2013-08-10", "Re: still interested", "18:00")
    assert p.run("sync", now="2013-08-11T08:00")[0] == 0
    assert due(p, now="2013-08-11T08:00").startswith(
        '2013-09-10 09:00 — 1st follow-up: last touch 2013-08-10 '
        '(mail from Dana Whitfield "Re: still interested") + 1mo')
    assert "DTSTART;TZID=Europe/Berlin:20130910T090000" in unfolded(p)
    p.edit("    org: Acme Corp", "    org: Acme Corp\n    status: hired")
    code, out, _ = p.run("sync", now="2013-08-12T08:00")
    assert code == 0 and "1 deleted" in out
    assert "X-FOLLOWSYNC-LEAD:dana" not in unfolded(p)


def test_a_same_day_answer_comes_after_my_mail_by_its_time(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_from(acc, DANA, "2026-11-20", "Re: the marketing role", "17:30")  # appended first
    mail_to(acc, DANA, "2026-11-20", "the marketing role", "09:00")
    code, out, err = p.run("sync")
    assert code == 0, err
    assert out.splitlines()[0].startswith("mailbox inbox: 2 new touches")
    assert due(p).startswith("2026-12-20 09:00 — 1st follow-up: last touch 2026-11-20 "
                             '(mail from Dana Whitfield "Re: the marketing role") + 1mo')


def test_my_mail_then_their_answer_move_the_calendar_item_with_a_way_back(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    assert p.run("sync")[0] == 0  # Dana is new: reach out today
    assert "DTSTART;TZID=Europe/Berlin:20261201T090000" in unfolded(p)
    assert "mailto:" not in unfolded(p)
    mail_to(acc, "Dana W <dana@acme.example>", "2026-12-01", "the marketing role & more", "07:00")
    flags = acc.all_flags()
    code, _out, err = p.run("sync")
    assert code == 0, err
    text = unfolded(p)
    assert "DTSTART;TZID=Europe/Berlin:20270201T090000" in text  # 1 unanswered: +2mo
    link = f"mailto:dana@acme.example?subject={quote('Re: the marketing role & more')}"
    assert link in text
    ann = next(block for block in text.split("BEGIN:VEVENT")[1:] if "LEAD:ann" in block)
    assert "mailto:" not in ann
    ann_before = ann
    mail_from(acc, "dana.w@home.example", "2026-12-01", "Re: the marketing role & more", "12:00")
    assert p.run("mail", now="2026-12-01T13:00")[0] == 0
    assert plan_line(p, now="2026-12-01T13:00") == (
        '2027-01-01 09:00 event — 1st follow-up: last touch 2026-12-01 (mail from Dana '
        'Whitfield "Re: the marketing role & more") + 1mo')
    assert p.run("sync", now="2026-12-01T13:00")[1].splitlines()[1].startswith(
        "file: 0 created, 1 updated, 0 deleted, 1 unchanged")
    text = unfolded(p)
    assert "DTSTART;TZID=Europe/Berlin:20270101T090000" in text
    assert "Unanswered so far: 0 follow-ups." in text
    assert next(b for b in text.split("BEGIN:VEVENT")[1:] if "LEAD:ann" in b) == ann_before
    after = acc.all_flags()
    assert {f: {u: x - {r"\Recent"} for u, x in m.items() if u in flags.get(f, {})}
            for f, m in after.items()} == {f: {u: x - {r"\Recent"} for u, x in m.items()}
                                           for f, m in flags.items()}  # no flag changed
    assert not any(r"\Seen" in x for x in after["INBOX"].values())


def test_a_lost_state_is_rebuilt_by_scanning_again(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_to(acc, DANA, "2026-11-10", "hello")
    mail_from(acc, "ann@x.example", "2026-11-15", "news")
    assert p.run("sync")[0] == 0
    before = p.run("plan")[1]
    calendar = p.ics.read_bytes()
    shutil.rmtree(p.state)
    assert p.run("sync")[0] == 0
    assert p.run("plan")[1] == before
    assert p.ics.read_bytes() == calendar


def test_a_mailbox_that_fails_is_exit_3_and_the_calendars_are_still_synced(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_to(acc, DANA, "2026-11-10", "hello")
    assert p.run("sync")[0] == 0
    monkeypatch.setenv("FOLLOWSYNC_TEST_MAILPW", "no-longer-s3cret")
    p.edit("    org: Acme Corp", "    org: Acme Inc")
    code, out, err = p.run("sync")
    assert code == 3
    assert "mailbox inbox: FAILED: mailbox 'inbox'" in err and "login refused" in err
    assert "no-longer-s3cret" not in out + err and acc.password not in out + err
    assert "file: 0 created, 1 updated" in out
    assert "ORG:Acme Inc" in unfolded(p) or "Acme Inc" in unfolded(p)
    assert due(p).startswith("2027-01-10")  # what was known still counts


def test_agenda_lists_recent_mail(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    mail_to(acc, DANA, "2026-09-01", "long ago")
    mail_from(acc, "ann@x.example", "2026-11-28", "Re: coffee", "16:05")
    assert p.run("mail")[0] == 0
    _code, out, _ = p.run("agenda", "--json")
    data = json.loads(out)
    assert data["from_mail"] == [{"lead": "ann", "name": "Ann Lee", "date": "2026-11-28",
                                  "time": "16:05", "by": "them", "subject": "Re: coffee"}]
    assert data["from_calendar"] == []
    _code, out, _ = p.run("agenda")
    assert re.search(r"Mail \(last 30 days\)\n  Sat 2026-11-28 16:05  Ann Lee +from: Re: coffee",
                     out), out


PROBE = """
import json, sys
from followsync.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules
                  if m.startswith(("followsync.", "icalendar")))}))
"""
HEAVY = ("icalendar", "followsync.leads", "followsync.rules", "followsync.diff",
         "followsync.sync.planning", "followsync.sync.apply")


def test_a_sync_with_no_new_mail_is_one_status_per_folder_and_the_no_op_path(
        project: Project, imap_account: Account, imap_proxy: CountingProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    acc = imap_account
    p = mail_project(project, monkeypatch, acc, leads=LEADS)
    p.write_config(p.config.read_text().replace(f"port: {acc.port}", f"port: {imap_proxy.port}"))
    mail_to(acc, DANA, "2026-11-10", "hello")  # INBOX and Sent

    def probe() -> tuple[int, list[str], str]:
        done = subprocess.run([sys.executable, "-c", PROBE, *p.argv("sync")],
                              capture_output=True, text=True, check=False, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        *printed, last = done.stdout.strip().splitlines()
        result = json.loads(last)
        return result["code"], result["loaded"], "\n".join(printed) + done.stderr

    code, _, out = probe()
    assert code == 0 and "mailbox inbox: 1 new touch " in out and "2 created" in out, out
    imap_proxy.reset()
    code, loaded, out = probe()
    assert code == 0 and "mailbox inbox: 0 new touches" in out and "2 unchanged" in out, out
    assert [m for m in loaded if m.startswith(HEAVY)] == []
    verbs = imap_proxy.verbs()
    assert verbs.count("STATUS") == 2
    assert not {"EXAMINE", "SELECT", "UID FETCH", "FETCH", "STORE"} & set(verbs), verbs
