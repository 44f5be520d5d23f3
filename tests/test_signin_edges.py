"""Edges of the Microsoft and Google sign-ins and OAuth mailboxes: whose account a sign-in
covers, refusals the daemon holds, names shared by a target and a mailbox, plan writing
nothing, the install hint."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from followsync.cli import main
from followsync.config import load_config
from followsync.errors import ConfigError, TargetError
from followsync.msauth import MicrosoftSettings, explain, sign_in, store_for
from followsync.sources.mail import Mailbox, MailLoginRefused, _token
from tests.msemu import MsEmu
from tests.test_msauth import approving, emu, settings  # noqa: F401  (the fixture)

ALICE, BOB = "alice@contoso.example", "bob@fabrikam.example"


def test_a_sign_in_as_another_account_does_not_take_over_a_target_signed_in_before(
        emu: MsEmu, tmp_path: Path) -> None:  # noqa: F811
    """Two microsoft targets of the same app registration (tenant common: one for a work
    account, one for a personal one). Signing in the second as its account must not
    re-point the first, already signed in as another account, to that account's calendar."""
    work = settings(tmp_path, emu)
    home = MicrosoftSettings("home", emu.client_id, tmp_path / "state", endpoint=emu.url,
                             verify=emu.ca_path, timeout=5)
    sign_in(work, [home], approving(emu, ALICE))
    sign_in(home, [work], approving(emu, BOB))
    assert store_for(home).read()["username"] == BOB
    assert store_for(work).read()["username"] == ALICE  # is BOB: work now writes to Bob's


def test_a_mailbox_sign_in_does_not_take_over_a_target_of_another_account(
        emu: MsEmu, tmp_path: Path) -> None:  # noqa: F811
    target = settings(tmp_path, emu)
    box = MicrosoftSettings("bobmail", emu.client_id, tmp_path / "state", endpoint=emu.url,
                            verify=emu.ca_path, timeout=5, kind="mailbox", username=BOB)
    sign_in(target, [], approving(emu, ALICE))
    done = sign_in(box, [target], approving(emu, BOB))
    assert store_for(target).read()["username"] == ALICE
    assert [s.name for s, _ in done.left] == ["work"]


CLIENT = {"installed": {"client_id": "cid.apps.googleusercontent.com",
                        "client_secret": "s3cret", "auth_uri": "http://127.0.0.1:1/auth",
                        "token_uri": "http://127.0.0.1:1/token"}}


def google_config(folder: Path, target: str, mailbox: str) -> Path:
    (folder / "client.json").write_text(json.dumps(CLIENT))
    (folder / "leads.yaml").write_text("version: 1\nleads: {}\n")
    config = folder / "config.yaml"
    config.write_text(
        "leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\ntargets:\n"
        f"  - name: {target}\n    type: google\n    calendar: Follow-ups\n"
        "    client_secret: client.json\n"
        f"mail:\n  - name: {mailbox}\n    host: imap.gmail.com\n    username: me@gmail.com\n"
        "    auth: google\n    client_secret: client.json\n")
    return config


def test_a_google_target_and_an_oauth_mailbox_keep_their_tokens_in_different_files(
        tmp_path: Path) -> None:
    """Target `mail-work` and mailbox `work`: both were kept in google-mail-work.json (the
    calendar token and the mail token overwrite each other)."""
    from followsync import googleauth

    try:
        config = load_config(google_config(tmp_path, "mail-work", "work"))
    except ConfigError:
        return  # refused: fine too
    target = googleauth.settings_for(config.targets[0])
    box = googleauth.settings_for(config.mailboxes[0])
    paths = {googleauth.TokenStore(s, "cid").path for s in (target, box)}
    assert len(paths) == 2, paths


def test_a_mailbox_named_as_a_target_can_still_be_signed_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google target `gmail` and `auth: google` mailbox `gmail` (the config takes it):
    `followsync auth gmail` signs in the target only, and the mailbox's own error says to
    run that same command. Either the config refuses the pair, or the mailbox is reachable."""
    from followsync import googleauth

    reached: list[str] = []

    def fake(settings: Any, **_: Any) -> str:
        reached.append(settings.scope)
        return "somewhere"

    monkeypatch.setattr(googleauth, "sign_in", fake)
    config = google_config(tmp_path, "gmail", "gmail")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["--config", str(config), "auth", "gmail", "--no-browser"])
    assert code == 1 or googleauth.MAIL_SCOPE in reached, (code, reached)


@pytest.mark.parametrize("answer", [
    {"error": "invalid_grant", "error_codes": [53003], "suberror": "",
     "error_description": "AADSTS53003: Access has been blocked by Conditional Access."},
    {"error": "invalid_client", "error_codes": [7000218],
     "error_description": "AADSTS7000218: The request body must contain client_assertion."},
])
def test_a_token_request_microsoft_refuses_holds_the_mailbox(answer: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """SPEC §8/issue 19: a token refused → the daemon waits as for a refused password. A
    refusal whose hint is not `followsync auth NAME` came out as a MailError, retried with
    back-off every few minutes for ever."""
    box = MicrosoftSettings("outlook", "11111111-2222-3333-4444-555555555555", tmp_path,
                            kind="mailbox", username=ALICE)
    mailbox = Mailbox(name="outlook", host="outlook.office365.com", username=ALICE,
                      password="", auth="microsoft")

    def fetch() -> str:
        raise explain(box, answer, "imap")

    with pytest.raises(TargetError) as caught:
        _token(fetch, mailbox, "mailbox 'outlook'")
    assert isinstance(caught.value, MailLoginRefused), caught.value


def test_without_msal_the_hint_installs_from_the_checkout(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """README: followsync is not on PyPI; `pip install 'followsync[microsoft]'` finds nothing
    (or someone else's package)."""
    import sys

    from followsync.msauth import INSTALL, _application

    monkeypatch.setitem(sys.modules, "msal", None)
    with pytest.raises(TargetError) as caught:
        _application(MicrosoftSettings("work", "11111111-2222-3333-4444-555555555555", tmp_path))
    assert "'followsync[" not in caught.value.hint and "'.[microsoft]'" in INSTALL


def test_a_mailbox_whose_username_changed_is_covered_by_a_sign_in_as_its_new_account(
        emu: MsEmu, tmp_path: Path) -> None:  # noqa: F811
    """(Guards the fix above: a mailbox's `username` says which account is its.)"""
    target = settings(tmp_path, emu)
    old = MicrosoftSettings("outlook", emu.client_id, tmp_path / "state", endpoint=emu.url,
                            verify=emu.ca_path, timeout=5, kind="mailbox", username=ALICE)
    sign_in(old, [], approving(emu, ALICE))
    new = MicrosoftSettings("outlook", emu.client_id, tmp_path / "state", endpoint=emu.url,
                            verify=emu.ca_path, timeout=5, kind="mailbox", username=BOB)
    sign_in(target, [new], approving(emu, BOB))
    assert store_for(new).read()["username"] == BOB


def test_plan_of_a_target_not_signed_in_leaves_nothing_in_the_state_folder(
        tmp_path: Path) -> None:
    """SPEC §4: `plan` writes nothing anywhere; a readonly token look-up made a .lock file."""
    from followsync.msauth import Tokens

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = MicrosoftSettings("work", "11111111-2222-3333-4444-555555555555", state)
    with pytest.raises(TargetError):
        Tokens(target, "graph", readonly=True).access()
    assert list(state.iterdir()) == []
