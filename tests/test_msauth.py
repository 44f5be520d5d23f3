"""Signing in to Microsoft (followsync/msauth.py, `followsync auth NAME`) against the
emulation of the identity platform (tests/msemu.py), with msal itself doing the talking:
the device flow end to end with this test as the user who enters the code, the kept tokens
(keyring or a 0600 file), a no-op that makes no token request and imports no msal, refreshes
that keep the rolled refresh token, one sign-in for a target and a mailbox, and every
refusal explained with exit 3 and no token or code in any output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from followsync.cli import main
from followsync.errors import TargetError
from followsync.msauth import (
    MicrosoftSettings,
    SignIn,
    Tokens,
    settings_for,
    sign_in,
    store_for,
)
from tests.msemu import MsEmu, running

ROOT = Path(__file__).resolve().parent.parent
USER = "me@contoso.example"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[MsEmu]:
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    # requests lets this win over a session's CA file unless the session ignores the
    # environment: the config's `verify:` must be what counts (set on the test machines too)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with running() as made:
        yield made


def project(folder: Path, emu: MsEmu, *, mailbox_user: str = USER, mailbox: bool = True,
            endpoint: str | None = None) -> Path:
    """A config with a microsoft target `work` and an `auth: microsoft` mailbox `outlook` of
    the same app registration, tenant and endpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.yaml").write_text("version: 1\nleads: {}\n")
    where = (f"    client_id: {emu.client_id}\n    tenant: common\n"
             f"    endpoint: {endpoint or emu.url}\n    verify: {emu.ca_path}\n    timeout: 5\n")
    text = ("leads: leads.yaml\ntimezone: Europe/Berlin\nstate_dir: state\ntargets:\n"
            "  - name: work\n    type: microsoft\n    calendar: Follow-ups\n" + where)
    if mailbox:
        text += ("mail:\n  - name: outlook\n    host: outlook.office365.com\n"
                 f"    username: {mailbox_user}\n    auth: microsoft\n" + where)
    config = folder / "config.yaml"
    config.write_text(text)
    return config


def settings(folder: Path, emu: MsEmu, **more: Any) -> MicrosoftSettings:
    return MicrosoftSettings("work", emu.client_id, folder / "state", endpoint=emu.url,
                             verify=emu.ca_path, timeout=5, **more)


def mailbox(folder: Path, emu: MsEmu, user: str = USER) -> MicrosoftSettings:
    return MicrosoftSettings("outlook", emu.client_id, folder / "state", endpoint=emu.url,
                             verify=emu.ca_path, timeout=5, kind="mailbox", username=user)


def approving(emu: MsEmu, user: str | None = None, shown: list[str] | None = None
              ) -> Any:
    """A `say` that is also the user: it enters each code shown (as `user`)."""
    def say(text: str) -> None:
        if shown is not None:
            shown.append(text)
        found = re.search(r"enter the code (\S+)", text)
        assert found, text
        emu.approve(found.group(1), user)
    return say


# the user, as a process of its own: opens the verification page and enters the code there
# (what a browser on the user's phone does), while `followsync auth` polls
USER_ENTERS_CODE = """
import ssl, sys, urllib.parse, urllib.request
url, ca, code, user = sys.argv[1:5]
form = {"otc": code, **({"user": user} if user else {})}
context = ssl.create_default_context(cafile=ca)
urllib.request.urlopen(url + "/devicelogin", context=context, timeout=30).read()
answer = urllib.request.urlopen(urllib.request.Request(
    url + "/devicelogin", data=urllib.parse.urlencode(form).encode()), context=context,
    timeout=30)
assert b"You have signed in" in answer.read()
"""


def cli_auth(config: Path, name: str, emu: MsEmu, *args: str,
             user: str | None = None) -> tuple[int, str, str]:
    """`followsync auth NAME` as a process, and the user as another: it reads the code from
    the first's output and enters it on the verification page while the first polls."""
    process = subprocess.Popen(
        [sys.executable, "-m", "followsync", "--config", str(config), "auth", name, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # until the process ends
        seen.append(line)
        found = re.search(r"enter the code (\S+)", line)
        if found:
            subprocess.run([sys.executable, "-c", USER_ENTERS_CODE, emu.url, str(emu.ca_path),
                            found.group(1), user or ""], check=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": ""})
    out, err = process.communicate(timeout=60)
    return process.returncode, "".join(seen) + out, err


def leaked(emu: MsEmu, *texts: str) -> list[str]:
    return [s[:12] for s in emu.secrets() if any(s in t for t in texts)]


# ------------------------------------------------------------------------- end to end
def test_auth_end_to_end_covers_target_and_mailbox_then_a_no_op_asks_for_no_token(
        emu: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out, err = cli_auth(config, "work", emu, "-vv")
    assert code == 0, out + err
    assert "https://microsoft.com/devicelogin" in out
    assert f"signed in to Microsoft as {USER}" in out
    assert "target work:" in out and "mailbox outlook:" in out  # one sign-in, both names
    assert leaked(emu, out, err) == []  # no token and no device code, even with -v
    state = tmp_path / "state"
    for name in ("microsoft-target-work.json", "microsoft-mailbox-outlook.json"):
        assert (state / name).stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o077 == 0
    kept = json.loads((state / "microsoft-mailbox-outlook.json").read_text())
    assert kept["username"] == USER and kept["imap_access_token"] and kept["refresh_token"]
    # a sync's token use while the access tokens are valid: no token request, no msal
    before = len(emu.token_requests())
    probe = subprocess.run([sys.executable, "-c", PROBE, str(config)], capture_output=True,
                           text=True, timeout=60, check=False,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert probe.returncode == 0, probe.stderr
    loaded = json.loads(probe.stdout)
    assert loaded == {"tokens": 2, "heavy": []}
    assert len(emu.token_requests()) == before


PROBE = """
import json, sys
from pathlib import Path
from followsync.config import load_config
from followsync.msauth import Tokens, settings_for
config = load_config(Path(sys.argv[1]))
got = [Tokens(settings_for(config.targets[0]), "graph", readonly=True).access(),
       Tokens(settings_for(config.mailboxes[0]), "imap").access()]
print(json.dumps({"tokens": len(set(got)), "heavy": sorted(
    m for m in sys.modules if m.split(".")[0] in ("msal", "requests", "cryptography", "jwt"))}))
"""


def test_a_mailbox_signs_in_by_its_own_name_and_covers_the_target(emu: MsEmu,
                                                                    tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out, err = cli_auth(config, "outlook", emu)
    assert code == 0, out + err
    assert "mailbox outlook:" in out and "target work:" in out
    assert "mailbox outlook: its mail, over IMAP" in out


def test_a_mailbox_of_another_account_is_not_covered(emu: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu, mailbox_user="someone.else@contoso.example")
    code, out, err = cli_auth(config, "work", emu)
    assert code == 0, out + err
    assert "target work:" in out
    assert "mailbox outlook: not signed in: its username is someone.else@contoso.example" \
        in err and "followsync auth outlook" in err
    assert not (tmp_path / "state" / "microsoft-mailbox-outlook.json").exists()


def test_a_mailbox_signed_in_as_another_account_is_refused(emu: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    code, out, err = cli_auth(config, "outlook", emu, user="intruder@contoso.example")
    assert code == 3, out + err
    assert "you signed in as intruder@contoso.example" in err
    assert "followsync auth outlook" in err
    assert not list((tmp_path / "state").glob("microsoft-*.json"))


def test_auth_of_a_name_that_cannot_sign_in_lists_those_that_can(emu: MsEmu,
                                                                  tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "auth", "nope"])
    assert code == 2
    assert "work (microsoft target)" in err.getvalue()
    assert "outlook (mailbox, auth: microsoft)" in err.getvalue()


# ------------------------------------------------------------------------- tokens
def test_refresh_when_the_access_token_expired_keeps_the_rolled_refresh_token(
        emu: MsEmu, tmp_path: Path) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    store = store_for(target)
    first = store.refresh_token()
    tokens = Tokens(target, "graph")
    before = len(emu.token_requests())
    old = tokens.access()
    assert len(emu.token_requests()) == before  # cached
    emu.expire_access_tokens()  # the server no longer takes it: a 401 makes the backend ask
    new = tokens.refresh()
    assert new != old and len(emu.token_requests()) == before + 1
    rolled = store.refresh_token()
    assert rolled not in (None, first)
    assert Tokens(target, "graph").access() == new  # the next run takes the kept one
    assert len(emu.token_requests()) == before + 1


def test_an_endpoint_without_openid_configuration_signs_in_at_the_documented_paths(
        emu: MsEmu, tmp_path: Path) -> None:
    """msal reads the tenant's openid-configuration first; a proxy or test server that
    serves only {endpoint}/{tenant}/oauth2/v2.0/devicecode and .../token still works."""
    emu.discovery = False
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    emu.expire_access_tokens()
    assert Tokens(target, "graph").refresh()


def test_an_access_token_near_its_expiry_is_refreshed_before_use(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    with running(token_lifetime=30) as emu:  # under a minute left: not worth sending
        target = settings(tmp_path, emu)
        sign_in(target, [], approving(emu))
        before = len(emu.token_requests())
        Tokens(target, "graph").access()
        assert len(emu.token_requests()) == before + 1


def test_graph_and_imap_get_separate_access_tokens_from_one_refresh_token(
        emu: MsEmu, tmp_path: Path) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    graph = Tokens(target, "graph").access()
    imap = Tokens(target, "imap").access()  # not kept yet: a refresh for IMAP's scope
    assert graph != imap
    assert emu.access[graph].resource != emu.access[imap].resource
    kept = json.loads(store_for(target).path.read_text())
    assert kept["graph_access_token"] == graph and kept["imap_access_token"] == imap


def test_not_signed_in_names_the_command(emu: MsEmu, tmp_path: Path) -> None:
    with pytest.raises(TargetError) as caught:
        Tokens(settings(tmp_path, emu), "graph").access()
    assert caught.value.exit_code == 3
    assert "not signed in" in str(caught.value) and "followsync auth work" in str(caught.value)


@pytest.mark.parametrize("code", [700082, 50173])
def test_a_refresh_token_microsoft_dropped_is_exit_3_naming_auth(emu: MsEmu, tmp_path: Path,
                                                                 code: int) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    emu.revoke_refresh_tokens(code)
    with pytest.raises(TargetError) as caught:
        Tokens(target, "imap").access()
    text = str(caught.value)
    assert caught.value.exit_code == 3 and f"AADSTS{code}" in text
    assert "run `followsync auth work` again" in text
    assert ("90 days" in text) == (code == 700082)


@pytest.mark.parametrize(("code", "says"), [
    (65001, "was not given consent"), (90094, "requires an administrator's consent")])
def test_consent_refusals_say_what_to_ask_the_administrator(emu: MsEmu, tmp_path: Path,
                                                            code: int, says: str) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    emu.require_consent(code)
    with pytest.raises(TargetError) as caught:
        Tokens(target, "imap").access()
    text = str(caught.value)
    assert caught.value.exit_code == 3 and says in text and f"AADSTS{code}" in text
    assert f"grant admin consent to the app with client id {emu.client_id}" in text
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in text


def test_consent_required_at_sign_in_is_exit_3_with_the_administrators_part(
        emu: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu)
    emu.require_consent(90094)
    code, out, err = cli_auth(config, "work", emu, "-v")
    assert code == 3, out + err
    assert "administrator" in err and emu.client_id in err and "Calendars.ReadWrite" in err
    assert leaked(emu, out, err) == []


def test_a_declined_sign_in_and_a_code_not_entered_in_time(emu: MsEmu, tmp_path: Path) -> None:
    target = settings(tmp_path, emu)

    def decline(text: str) -> None:
        emu.decline(re.search(r"enter the code (\S+)", text).group(1))  # type: ignore[union-attr]

    with pytest.raises(TargetError) as caught:
        sign_in(target, [], decline)
    assert "declined" in str(caught.value) and "followsync auth work" in str(caught.value)
    with pytest.raises(TargetError) as caught:
        sign_in(target, [], lambda text: emu.expire_device_codes())
    assert "the code was not entered within 15 minutes" in str(caught.value)
    assert caught.value.exit_code == 3


def test_an_unreachable_sign_in_host_is_one_line(emu: MsEmu, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = project(tmp_path, emu, endpoint=f"https://127.0.0.1:{port}", mailbox=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), "auth", "work"])
    assert code == 3
    assert "cannot reach Microsoft's sign-in service at 127.0.0.1 (ConnectionError)" \
        in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_without_msal_the_sign_in_says_what_to_install(emu: MsEmu, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msal", None)  # import msal → ImportError
    with pytest.raises(TargetError) as caught:
        sign_in(settings(tmp_path, emu), [], approving(emu))
    assert "pipx install --force '.[microsoft]'" in str(caught.value)


# ------------------------------------------------------------------------- keeping
def test_the_refresh_token_goes_to_a_working_keyring(
        emu: MsEmu, tmp_path: Path, keyring_stand_in: dict[tuple[str, str], str]) -> None:
    """A stand-in keyring module (the real one would write to the desktop's keyring): the
    refresh token is kept there, the file keeps only access tokens, and a refresh rolls the
    keyring's copy."""
    kept = keyring_stand_in
    target, box = settings(tmp_path, emu), mailbox(tmp_path, emu)
    done = sign_in(target, [box], approving(emu))
    assert [where for _, where in done.covered] == ["the keyring", "the keyring"]
    assert len(kept) == 2 and len(set(kept.values())) == 1
    for store in (store_for(target), store_for(box)):
        assert "refresh_token" not in json.loads(store.path.read_text())
        assert store.path.stat().st_mode & 0o777 == 0o600
    first = next(iter(kept.values()))
    emu.expire_access_tokens()
    Tokens(target, "graph").refresh()
    assert kept[("followsync", store_for(target).account)] != first


def test_a_token_file_others_can_read_is_not_read_back(emu: MsEmu, tmp_path: Path) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    path = store_for(target).path
    path.chmod(0o644)
    with pytest.raises(TargetError) as caught:
        Tokens(target, "graph").access()
    assert "not signed in" in str(caught.value)


def test_a_sign_in_of_another_tenant_or_app_is_not_used(emu: MsEmu, tmp_path: Path) -> None:
    sign_in(settings(tmp_path, emu), [], approving(emu))
    with pytest.raises(TargetError):
        Tokens(settings(tmp_path, emu, tenant="organizations"), "graph").access()


def test_a_mailbox_whose_username_changed_after_the_sign_in_says_so(emu: MsEmu,
                                                                    tmp_path: Path) -> None:
    sign_in(mailbox(tmp_path, emu), [], approving(emu))
    with pytest.raises(TargetError) as caught:
        Tokens(mailbox(tmp_path, emu, "new@contoso.example"), "imap").access()
    assert f"signed in to Microsoft as {USER}, not new@contoso.example" in str(caught.value)


# ------------------------------------------------------------------------- the second code
def test_without_consent_to_imap_yet_a_second_code_is_asked_for(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Entra's incremental consent (the emulation's consent="user"): the user consented to
    the scopes of the codes they entered; a refresh for IMAP answers AADSTS65001 until a
    code for it is entered too."""
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    emu = MsEmu(consent="user").start()
    try:
        shown: list[str] = []
        done: SignIn = sign_in(settings(tmp_path, emu), [mailbox(tmp_path, emu)],
                               approving(emu, shown=shown))
        assert len(shown) == 2 and "a second code" in shown[1]
        assert [s.who for s, _ in done.covered] == ["target work", "mailbox outlook"]
        assert Tokens(mailbox(tmp_path, emu), "imap").access()
        # the second code entered by another account: the mailbox is left out, said why
        tmp = tmp_path / "again"
        emu.consent_by_user.clear()
        users = iter([USER, "other@contoso.example"])

        def say(text: str) -> None:
            emu.approve(re.search(r"enter the code (\S+)", text).group(1),  # type: ignore[union-attr]
                        next(users))

        target = MicrosoftSettings("work", emu.client_id, tmp, endpoint=emu.url,
                                   verify=emu.ca_path)
        box = MicrosoftSettings("outlook", emu.client_id, tmp, endpoint=emu.url,
                                verify=emu.ca_path, kind="mailbox", username=USER)
        done = sign_in(target, [box], say)
        assert [s.who for s, _ in done.covered] == ["target work"]
        assert "the second sign-in was other@contoso.example" in done.left[0][1]
    finally:
        emu.stop()


def test_settings_for_a_target_and_a_mailbox(emu: MsEmu, tmp_path: Path) -> None:
    from followsync.config import load_config

    config = load_config(project(tmp_path, emu))
    target, box = settings_for(config.targets[0]), settings_for(config.mailboxes[0])
    assert (target.kind, target.resource, target.calendar) == ("target", "graph", "Follow-ups")
    assert (box.kind, box.resource, box.username) == ("mailbox", "imap", USER)
    assert target.signin == box.signin
    assert target.authority == f"{emu.url}/common"


def test_an_app_microsoft_does_not_know_and_a_ca_not_trusted(emu: MsEmu, tmp_path: Path) -> None:
    wrong = MicrosoftSettings("work", "99999999-2222-3333-4444-555555555555",
                              tmp_path / "state", endpoint=emu.url, verify=emu.ca_path)
    with pytest.raises(TargetError) as caught:
        sign_in(wrong, [], approving(emu))
    assert "AADSTS700016" in str(caught.value) and "check `client_id:`" in str(caught.value)
    assert "does not know this app" in str(caught.value)  # (not "allow public client flows")
    untrusted = MicrosoftSettings("work", emu.client_id, tmp_path / "state", endpoint=emu.url)
    with pytest.raises(TargetError) as caught:
        sign_in(untrusted, [], approving(emu))
    assert "cannot reach" in str(caught.value) and "check `verify:`" in str(caught.value)


def test_the_mail_scan_sees_the_kept_sign_in_of_a_microsoft_mailbox(emu: MsEmu,
                                                                    tmp_path: Path) -> None:
    """sources.scan reads `Tokens(...).store().refresh_token()` (googleauth's shape) to
    tell a new sign-in from the one a refused login used."""
    from followsync.config import load_config
    from followsync.sources.scan import kept_sign_in

    config = load_config(project(tmp_path, emu))
    assert kept_sign_in(config.mailboxes[0]) == ""
    sign_in(settings_for(config.mailboxes[0]), [], approving(emu))
    assert kept_sign_in(config.mailboxes[0]) == \
        store_for(settings_for(config.mailboxes[0])).refresh_token() != ""


# ------------------------------------------------------------------------- with the target
SYNC_PROBE = """
import json, sys
from followsync.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("msal", "requests", "cryptography", "jwt"))}))
"""


def synced(config: Path, *extra: str) -> tuple[int, list[str], str]:
    """`followsync sync` in a fresh interpreter: exit code, the heavy modules it loaded."""
    done = subprocess.run([sys.executable, "-c", SYNC_PROBE, "--config", str(config), "--now",
                           "2030-12-01T10:00", *extra, "sync"], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    *printed, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    return result["code"], result["heavy"], "\n".join(printed) + done.stderr


def test_after_auth_a_sync_then_a_no_op_sync_asks_for_no_token_and_loads_no_msal(
        emu: MsEmu, tmp_path: Path) -> None:
    config = project(tmp_path, emu, mailbox=False)
    (tmp_path / "leads.yaml").write_text(
        "version: 1\nleads:\n  dana: {name: Dana Whitfield, last_contact: 2030-11-01}\n")
    code, out, err = cli_auth(config, "work", emu)
    assert code == 0, out + err
    code, heavy, out = synced(config)
    assert code == 0 and "1 created" in out, out
    before = len(emu.token_requests())
    code, heavy, out = synced(config)
    assert code == 0, out
    assert len(emu.token_requests()) == before  # the kept access token
    assert heavy == []  # neither msal nor requests: a no-op signs nothing
    emu.expire_access_tokens()  # Graph answers 401: one refresh (msal), then the sync
    code, heavy, out = synced(config, "-vv")
    assert code == 0, out
    assert len(emu.token_requests()) == before + 1 and "msal" in heavy
    emu.revoke_refresh_tokens(700082)
    emu.expire_access_tokens()
    code, heavy, refused = synced(config, "-vv")
    assert code == 3 and "AADSTS700082" in refused
    assert "run `followsync auth work` again" in refused
    assert leaked(emu, out, refused) == []


class SlowDown(MsEmu):
    """Answers the first poll `slow_down` (RFC 8628: 5 s more between polls from then on),
    the second `authorization_pending`, and lets the user in at the third; `polls` records
    how many seconds msal had waited at each poll (its sleeps are recorded, not slept)."""

    slept: list[float]
    polls: list[float]

    def _device_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = self.codes[form.get("device_code") or ""]
        self.polls.append(sum(self.slept))
        code.last_poll = time.time() if len(self.polls) == 1 else 0.0  # 1: too soon
        if len(self.polls) == 3:
            code.state, code.user = "approved", self.user
        return super()._device_grant(form)


@pytest.mark.filterwarnings("ignore:Attempted too soon")  # msal's: no time passes here
def test_polling_follows_the_servers_interval_and_slow_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import msal.oauth2cli.oauth2 as oauth2

    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    emu = SlowDown(interval=2)
    emu.slept, emu.polls = [], []
    monkeypatch.setattr(oauth2, "time", types.SimpleNamespace(
        time=time.time, sleep=emu.slept.append))
    emu.start()
    try:
        done = sign_in(settings(tmp_path, emu), [], lambda text: None)
    finally:
        emu.stop()
    assert done.covered
    assert emu.polls == [0, 2 + 5, 2 * (2 + 5)]  # slow_down: the interval grows by 5 s


@pytest.mark.parametrize(("fault", "says"), [
    ("503", "Microsoft's sign-in service failed"), ("drop", "cannot reach")])
def test_a_refresh_that_fails_on_the_way_says_the_next_sync_retries(
        emu: MsEmu, tmp_path: Path, fault: str, says: str) -> None:
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    kept = store_for(target).refresh_token()
    for _ in range(2):  # a dropped connection is tried once more
        emu.inject(fault, on="token")
    with pytest.raises(TargetError) as caught:
        Tokens(target, "graph").refresh()
    assert says in str(caught.value) and "the next sync tries again" in str(caught.value)
    assert store_for(target).refresh_token() == kept
    assert Tokens(target, "graph").refresh()  # and then it works


@pytest.mark.parametrize(("answer", "says", "hint"), [
    ({"error": "invalid_grant", "error_codes": [90095]}, "requires an administrator's consent",
     "grant admin consent to the app with client id"),
    ({"error": "invalid_grant", "error_codes": [50076], "suberror": "basic_action"},
     "sign in again (multi-factor", "run `followsync auth work`"),
    ({"error": "interaction_required", "error_description": "AADSTS50079: enroll"},
     "sign in again", "run `followsync auth work`"),
    ({"error": "invalid_grant", "error_codes": [53003]}, "Conditional Access",
     "ask your administrator to allow the app with client id"),
    ({"error": "invalid_client", "error_codes": [7000218]}, "refused the app registration",
     "Allow public client flows"),
    ({"error": "invalid_grant", "error_codes": [50173]}, "no longer accepts the sign-in",
     "run `followsync auth work` again"),
])
def test_each_refusal_says_what_to_do(answer: dict[str, Any], says: str, hint: str) -> None:
    from followsync.msauth import explain

    error = explain(MicrosoftSettings("work", "11111111-2222-3333-4444-555555555555",
                                      Path("/nonexistent")), answer, "graph")
    assert error.exit_code == 3 and says in str(error) and hint in str(error)


def test_a_refresh_waits_for_another_processs_refresh_and_takes_its_token(
        emu: MsEmu, tmp_path: Path) -> None:
    """The daemon's mail scan and a `followsync sync` may both find the token run out: the
    second waits on the first's lock and takes the token it kept (no second request)."""
    import fcntl
    import threading

    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    store = store_for(target)
    store.keep_access("run-out", -1.0, "graph_")
    before = len(emu.token_requests())
    got: list[str] = []
    fd = os.open(store.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other process, refreshing
        waiter = threading.Thread(target=lambda: got.append(Tokens(target, "graph").access()))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # waiting for the lock
        store.keep_access("kept-by-the-other", 3600.0, "graph_")
    finally:
        os.close(fd)  # the other process is done
    waiter.join(10)
    assert got == ["kept-by-the-other"] and len(emu.token_requests()) == before


def test_a_long_running_process_drops_the_token_it_holds_before_it_expires(
        emu: MsEmu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon keeps its Tokens: an hour on, `access` refreshes rather than send a token
    Microsoft would refuse (a 401, then the refresh)."""
    import followsync.msauth
    import followsync.tokenstore

    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    tokens = Tokens(target, "graph")
    first = tokens.access()
    before = len(emu.token_requests())
    assert tokens.access() == first and len(emu.token_requests()) == before
    later = types.SimpleNamespace(time=lambda: time.time() + 3600, monotonic=time.monotonic,
                                  sleep=time.sleep)
    monkeypatch.setattr(followsync.msauth, "time", later)
    monkeypatch.setattr(followsync.tokenstore, "time", later)
    assert tokens.access() != first
    assert len(emu.token_requests()) == before + 1


def test_imap_needing_an_administrator_leaves_the_mailbox_out_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The calendar is signed in; IMAP needs an administrator's consent (no second code:
    the user cannot give it): the mailbox is left out with what to ask for."""
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")

    class AdminForImap(MsEmu):
        def _refresh_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
            if "outlook.office.com" in form.get("scope", ""):
                self.consent_code = 90094
                try:
                    return self._consent_error()
                finally:
                    self.consent_code = None
            return super()._refresh_grant(form)

    emu = AdminForImap().start()
    try:
        shown: list[str] = []
        done = sign_in(settings(tmp_path, emu), [mailbox(tmp_path, emu)],
                       approving(emu, shown=shown))
    finally:
        emu.stop()
    assert len(shown) == 1  # no second code
    assert [s.who for s, _ in done.covered] == ["target work"]
    (box, why), = done.left
    assert box.who == "mailbox outlook" and not why.startswith("target work")
    assert "administrator" in why and "IMAP.AccessAsUser.All" in why


def test_auth_asks_for_a_second_code_through_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    with running(consent="user") as emu:
        config = project(tmp_path, emu)
        code, out, err = cli_auth(config, "work", emu, "-vv")
        assert code == 0, out + err
        assert len(re.findall(r"enter the code", out)) == 2 and "a second code" in out
        assert "target work:" in out and "mailbox outlook:" in out
        assert leaked(emu, out, err) == []


def test_a_sign_in_kept_for_another_client_id_is_named_in_the_hint(emu: MsEmu,
                                                                   tmp_path: Path) -> None:
    """A typo in `client_id:` after signing in: "not signed in" alone would puzzle; the
    hint says the kept sign-in is for another client_id."""
    target = settings(tmp_path, emu)
    sign_in(target, [], approving(emu))
    typo = MicrosoftSettings("work", "11111111-2222-3333-4444-555555555556", tmp_path / "state",
                             endpoint=emu.url, verify=emu.ca_path)
    with pytest.raises(TargetError) as caught:
        Tokens(typo, "graph").access()
    assert "not signed in" in str(caught.value)
    assert "another `client_id`" in (caught.value.hint or ""), caught.value.hint
