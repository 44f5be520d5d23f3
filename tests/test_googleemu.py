"""The emulation (tests/googleemu.py) checked with Google's own client libraries.

google-api-python-client builds its requests from the Calendar API's discovery document that
it ships (`static_discovery=True`), so a request it makes is one the real API's schema
describes, and its answers must parse; google-auth-oauthlib's InstalledAppFlow runs the
loopback sign-in against the emulation's auth and token endpoints; google-auth refreshes a
token there. What these libraries do not check (status codes for the documented failures:
409, 410, 412, 400) is asserted from the documentation, through the library's HttpError.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.googleemu import GoogleEmu

discovery = pytest.importorskip("googleapiclient.discovery")
errors = pytest.importorskip("googleapiclient.errors")
credentials_mod = pytest.importorskip("google.oauth2.credentials")


@pytest.fixture
def emu() -> Iterator[GoogleEmu]:
    made = GoogleEmu().start()
    try:
        yield made
    finally:
        made.stop()


def service(emu: GoogleEmu) -> Any:
    refresh, access = emu.issue_tokens()
    creds = credentials_mod.Credentials(token=access, refresh_token=refresh,
                                        token_uri=emu.url + "/token",
                                        client_id=emu.client_id,
                                        client_secret=emu.client_secret)
    return discovery.build("calendar", "v3", credentials=creds, static_discovery=True,
                           cache_discovery=False,
                           client_options={"api_endpoint": emu.url + "/calendar/v3/"})


def timed(event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": "Dana Whitfield: follow up", "description": "why",
        "start": {"dateTime": "2031-01-06T09:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2031-01-06T09:15:00", "timeZone": "Europe/Berlin"},
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 0},
                                                         {"method": "popup",
                                                          "minutes": 1440}]},
        "extendedProperties": {"private": {"followsync_uid": "followsync-x",
                                           "followsync_lead": "dana"}},
        "transparency": "transparent", **extra}
    if event_id:
        body["id"] = event_id
    return body


def status_of(call: Any) -> int:
    with pytest.raises(errors.HttpError) as caught:
        call.execute()
    return int(caught.value.resp.status)


def test_the_calls_the_target_relies_on_are_accepted_and_parse(emu: GoogleEmu) -> None:
    api = service(emu)
    calendars = api.calendarList().list().execute()
    assert [c["id"] for c in calendars["items"]] == ["me@example.com"]
    made = api.calendars().insert(body={"summary": "Follow-ups"}).execute()
    cal = made["id"]
    assert cal in [c["id"] for c in api.calendarList().list().execute()["items"]]

    first = api.events().insert(calendarId=cal, body=timed("a0b1c2d3e4")).execute()
    assert first["id"] == "a0b1c2d3e4" and first["etag"]
    assert first["start"] == {"dateTime": "2031-01-06T09:00:00+01:00",
                              "timeZone": "Europe/Berlin"}
    got = api.events().get(calendarId=cal, eventId="a0b1c2d3e4").execute()
    assert got["extendedProperties"]["private"]["followsync_lead"] == "dana"
    assert got["reminders"]["overrides"][1]["minutes"] == 1440

    listed = api.events().list(calendarId=cal, maxResults=2500).execute()
    token = listed["nextSyncToken"]
    assert [e["id"] for e in listed["items"]] == ["a0b1c2d3e4"]
    again = api.events().list(calendarId=cal, syncToken=token).execute()
    assert again["items"] == [] and again["nextSyncToken"]

    # a conditional update through the library's own request object
    update = api.events().update(calendarId=cal, eventId="a0b1c2d3e4",
                                 body=timed(summary="moved"))
    update.headers["If-Match"] = first["etag"]
    second = update.execute()
    assert second["etag"] != first["etag"]
    stale = api.events().update(calendarId=cal, eventId="a0b1c2d3e4", body=timed())
    stale.headers["If-Match"] = first["etag"]
    assert status_of(stale) == 412
    patch = api.events().patch(calendarId=cal, eventId="a0b1c2d3e4", body={"summary": "p"})
    patch.headers["If-Match"] = second["etag"]
    third = patch.execute()
    assert third["summary"] == "p" and third["start"] == first["start"]

    changes = api.events().list(calendarId=cal, syncToken=again["nextSyncToken"]).execute()
    assert [e["etag"] for e in changes["items"]] == [third["etag"]]

    stale_delete = api.events().delete(calendarId=cal, eventId="a0b1c2d3e4")
    stale_delete.headers["If-Match"] = first["etag"]
    assert status_of(stale_delete) == 412
    delete = api.events().delete(calendarId=cal, eventId="a0b1c2d3e4")
    delete.headers["If-Match"] = third["etag"]
    delete.execute()
    gone = api.events().list(calendarId=cal, syncToken=changes["nextSyncToken"]).execute()
    assert [(e["id"], e["status"]) for e in gone["items"]] == [("a0b1c2d3e4", "cancelled")]
    assert api.events().list(calendarId=cal).execute()["items"] == []  # showDeleted: false
    assert api.events().get(calendarId=cal, eventId="a0b1c2d3e4").execute()["status"] == \
        "cancelled"
    # a deleted event's id stays taken; deleting it again is 410
    assert status_of(api.events().insert(calendarId=cal, body=timed("a0b1c2d3e4"))) == 409
    assert status_of(api.events().delete(calendarId=cal, eventId="a0b1c2d3e4")) == 410


def test_documented_refusals(emu: GoogleEmu) -> None:
    api = service(emu)
    ins = api.events().insert
    assert status_of(ins(calendarId="primary", body=timed("UPPER0"))) == 400  # not base32hex
    assert status_of(ins(calendarId="primary", body=timed("abcw1"))) == 400   # w is not in a-v
    assert status_of(ins(calendarId="primary", body=timed("abc"))) == 400     # under 5
    six = [{"method": "popup", "minutes": m} for m in range(6)]
    assert status_of(ins(calendarId="primary", body=timed(
        reminders={"useDefault": False, "overrides": six}))) == 400
    assert status_of(ins(calendarId="primary", body=timed(
        start={"dateTime": "2031-01-06T09:00:00"}))) == 400  # no offset, no timeZone
    allday = ins(calendarId="primary", body=timed(
        start={"date": "2031-01-06"}, end={"date": "2031-01-07"})).execute()
    assert allday["start"] == {"date": "2031-01-06"}
    filtered = api.events().list(calendarId="primary",
                                 privateExtendedProperty="followsync_lead=dana").execute()
    assert [e["id"] for e in filtered["items"]] == [allday["id"]]
    assert "nextSyncToken" not in filtered
    none = api.events().list(calendarId="primary",
                             privateExtendedProperty="followsync_lead=nobody").execute()
    assert none["items"] == []
    token = api.events().list(calendarId="primary").execute()["nextSyncToken"]
    emu.void_sync_tokens()
    assert status_of(api.events().list(calendarId="primary", syncToken=token)) == 410
    assert status_of(api.events().list(calendarId="primary", syncToken=token,
                                       privateExtendedProperty="a=b")) == 400


def test_paging_gives_every_event_once_and_the_token_on_the_last_page(emu: GoogleEmu) -> None:
    api = service(emu)
    for n in range(7):
        api.events().insert(calendarId="primary", body=timed(f"page{n:02d}")).execute()
    seen: list[str] = []
    request = api.events().list(calendarId="primary", maxResults=3)
    pages = []
    while request is not None:
        page = request.execute()
        pages.append(page)
        seen += [e["id"] for e in page["items"]]
        request = api.events().list_next(request, page)
    assert sorted(seen) == [f"page{n:02d}" for n in range(7)]
    assert len(pages) == 3
    assert all("nextSyncToken" not in p for p in pages[:-1]) and pages[-1]["nextSyncToken"]


def test_an_expired_access_token_is_refreshed_by_google_auth(emu: GoogleEmu) -> None:
    from google.auth.transport.requests import Request

    api = service(emu)
    emu.expire_access_tokens()
    # the library refreshes on 401 and retries
    assert api.calendarList().list().execute()["items"]
    assert any(s.path == "/token" for s in emu.requests)
    refresh, _ = emu.issue_tokens()
    creds = credentials_mod.Credentials(token=None, refresh_token=refresh,
                                        token_uri=emu.url + "/token", client_id=emu.client_id,
                                        client_secret=emu.client_secret)
    creds.refresh(Request())
    assert creds.token and creds.valid
    emu.invalid_grant = True
    from google.auth.exceptions import RefreshError

    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(Request())


def test_installed_app_flow_signs_in_through_the_loopback(
        emu: GoogleEmu, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulation is plain http
    flow_mod = pytest.importorskip("google_auth_oauthlib.flow")
    config = {"installed": {"client_id": emu.client_id, "client_secret": emu.client_secret,
                            "auth_uri": emu.url + "/o/oauth2/auth",
                            "token_uri": emu.url + "/token",
                            "redirect_uris": ["http://localhost"]}}
    flow = flow_mod.InstalledAppFlow.from_client_config(
        config, ["https://www.googleapis.com/auth/calendar"])
    browser_done = threading.Event()

    def browser() -> None:
        """Reads the printed URL and follows the redirects like a browser would."""
        for _ in range(200):
            found = re.search(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)",
                              capsys.readouterr().out)
            if found:
                urllib.request.urlopen(found.group(1), timeout=10).read()
                browser_done.set()
                return
            browser_done.wait(0.05)

    thread = threading.Thread(target=browser, daemon=True)
    thread.start()
    creds = flow.run_local_server(host="127.0.0.1", port=0, open_browser=False,
                                  authorization_prompt_message="URL: {url}",
                                  timeout_seconds=20)
    thread.join(5)
    assert browser_done.is_set()
    assert creds.token and creds.refresh_token
    assert creds.refresh_token in emu.refresh_tokens
    auth = next(s for s in emu.requests if s.path == "/o/oauth2/auth")
    assert auth.query["code_challenge_method"] == ["S256"]  # the library uses PKCE
