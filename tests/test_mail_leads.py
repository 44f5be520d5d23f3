"""A lead's `email:` is one address or a list (README "Mail"): both load, the schema says so,
and the calendar item shows every address."""

from __future__ import annotations

from datetime import date

import pytest

from followsync.leads import schema
from tests.imapserver import Account
from tests.mailproject import mail_from, mail_project
from tests.project import Project, leads_text, plan_text

TWO = """\
version: 1
leads:
  dana:
    name: Dana Whitfield
    email: [Dana@Acme.example, dana.w@gmail.example]
    action: "write to {email}"
    last_contact: 2026-11-20
  ann: {name: Ann, email: ann@x.example}
"""


def test_email_is_one_address_or_a_list() -> None:
    dana, ann = leads_text(TWO)
    assert dana.lead.addresses() == ("dana@acme.example", "dana.w@gmail.example")
    assert ann.lead.addresses() == ("ann@x.example",)
    plans = plan_text(TWO, date(2026, 12, 1))
    item = plans[0].follow_ups[0]
    assert item.action == "write to Dana@Acme.example"  # {email}: the first address
    assert item.person.email == "Dana@Acme.example, dana.w@gmail.example"


def test_the_schema_takes_a_list_of_addresses() -> None:
    email = schema()["$defs"]["Lead"]["properties"]["email"]
    kinds = {alt.get("type") for alt in email["anyOf"]}
    assert {"string", "array"} <= kinds


def test_a_list_of_addresses_syncs_and_validates(project: Project) -> None:
    project.write_leads(TWO)
    project.write_config()
    assert project.run("validate")[0] == 0
    assert project.run("sync")[0] == 0
    text = project.ics.read_text()
    assert "Email: Dana@Acme.example\\, dana.w@gmail.example" in text.replace("\n ", "")


def test_an_empty_list_of_addresses_is_refused(project: Project) -> None:
    project.write_leads("version: 1\nleads:\n  dana: {name: Dana, email: []}\n")
    project.write_config()
    code, _, err = project.run("validate")
    assert code == 1
    assert err == (f"{project.leads}:3:29: leads.dana.email is empty\n"
                   "  hint: give at least one entry\n")


PASTED = """\
version: 1
leads:
  hannah:
    name: Hannah Vogel
    email: Hannah Vogel <Hannah@Northwind.example>
  dana:
    name: Dana Whitfield
    email: ['"dana@acme.example" <dana.w@home.example>', " dana@acme.example (work) "]
"""


def test_an_address_pasted_with_its_name_is_the_address() -> None:
    """`Name <address>` from a mail client is the address (its case kept for the calendar;
    matched ignoring case); a display name that looks like an address is not one."""
    hannah, dana = leads_text(PASTED)
    assert hannah.lead.email == ["Hannah@Northwind.example"]
    assert hannah.lead.addresses() == ("hannah@northwind.example",)
    assert dana.lead.email == ["dana.w@home.example", "dana@acme.example"]
    item = plan_text(PASTED, date(2026, 12, 1))[0].follow_ups[0]
    assert item.person.email == "Hannah@Northwind.example"


def test_mail_from_a_lead_whose_address_was_pasted_with_her_name_counts(
        project: Project, imap_account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI against Dovecot: her answer is found (before, the pasted form matched
    no mail and her answers vanished)."""
    p = mail_project(project, monkeypatch, imap_account, leads=PASTED)
    assert p.run("validate")[0] == 0
    mail_from(imap_account, "Hannah Vogel <hannah@northwind.example>", "2026-11-20",
              "Re: the role", "11:00")
    code, out, err = p.run("mail")
    assert code == 0, err
    assert "Hannah Vogel (hannah)" in out.splitlines()
    assert "they wrote  Re: the role" in out
