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
from pathlib import Path
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


# ------------------------------------------------------------- the target's requests
def _schema_errors(value: Any, schema: dict[str, Any], schemas: dict[str, Any], where: str
                   ) -> list[str]:
    """Where `value` does not fit a discovery-document schema (unknown fields included:
    Google would silently drop them)."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        errors = []
        known = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in known:
                errors += _schema_errors(item, known[key], schemas, f"{where}.{key}")
            elif extra is not None:
                errors += _schema_errors(item, extra, schemas, f"{where}.{key}")
            else:
                errors.append(f"{where}.{key}: not in the schema")
        return errors
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [e for n, item in enumerate(value)
                for e in _schema_errors(item, schema["items"], schemas, f"{where}[{n}]")]
    expected = {"string": str, "integer": int, "boolean": bool}.get(str(kind))
    if expected is not None and not isinstance(value, expected):
        return [f"{where}: not a {kind}"]
    return []


def test_every_request_the_target_sends_fits_the_discovery_document(
        emu: GoogleEmu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target speaks plain HTTP, not through the client library: check each request it
    made in a busy session (calendars listed and created, events listed in full and with a
    token, created, read, found, updated, deleted) against the Calendar API's discovery
    document that google-api-python-client ships — method and path, query parameters, and
    every field of every body."""
    import json
    import os

    import googleapiclient.discovery_cache as cache

    from followsync.backends.google import GoogleBackend
    from followsync.googleauth import GoogleSettings, TokenStore
    from tests.test_backend_contract import item, rendered_item

    monkeypatch.setenv("FOLLOWSYNC_NO_KEYRING", "1")
    doc = json.loads((Path(cache.__file__).parent / "documents" /
                      "calendar.v3.json").read_text())
    client = tmp_path / "client.json"
    client.write_text(json.dumps({"installed": {"client_id": emu.client_id,
                                                "client_secret": emu.client_secret}}))
    settings = GoogleSettings("t", "Follow-ups", client, tmp_path / "s", endpoint=emu.url)
    TokenStore(settings, emu.client_id).keep_refresh(emu.issue_tokens()[0])
    backend = GoogleBackend(settings)
    backend.listing({}, None)
    a = backend.create("uid-a", rendered_item("uid-a"))
    b = backend.create("uid-b", item("uid-b"))
    a = backend.update(a, rendered_item("uid-a", action="Call back"))
    backend.delete(b)
    backend.create("uid-b", item("uid-b"))  # the deleted id is taken: a generation suffix
    assert backend.find("uid-a") == a and backend.find("nobody") is None
    cursor = backend.commit()
    backend.close()
    backend = GoogleBackend(settings)
    backend.listing({"uid-a": a}, cursor)
    backend.get(a)
    backend._fetch(a.href)
    backend.close()

    methods = {}
    for resource in doc["resources"].values():
        for method in resource.get("methods", {}).values():
            methods[(method["httpMethod"], method["path"])] = method
    prefix = "/" + doc["servicePath"]
    seen = emu.api_requests()
    used = set()
    for request in seen:
        path = request.path[len(prefix):]
        match = None
        for (verb, template), method in methods.items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if verb == request.method and re.match(pattern, path) and \
                    (match is None or "{" not in template):
                match = method
        assert match is not None, (request.method, path)
        used.add(match["id"])
        params = match.get("parameters", {})
        for name in request.query:
            assert params.get(name, {}).get("location") == "query", (match["id"], name)
        if request.body:
            ref = match["request"]["$ref"]
            errors = _schema_errors(json.loads(request.body), {"$ref": ref}, doc["schemas"],
                                    ref)
            assert not errors, (match["id"], errors)
        if match["id"] in ("calendar.events.update", "calendar.events.delete"):
            assert request.headers.get("if-match"), match["id"]
    assert used >= {"calendar.calendarList.list", "calendar.calendars.insert",
                    "calendar.events.list", "calendar.events.insert", "calendar.events.get",
                    "calendar.events.update", "calendar.events.delete"}, used
    assert os.environ["FOLLOWSYNC_NO_KEYRING"]
