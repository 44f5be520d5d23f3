"""The fault proxy itself, in front of a real Radicale."""

from __future__ import annotations

import base64
import http.client
import time
from collections.abc import Iterator

import pytest

from tests.faultproxy import Fault, FaultProxy, method_is, nth_request, path_matches
from tests.servers import RADICALE_PASSWORD, RADICALE_USER, CalendarInfo

AUTH = {"Authorization": "Basic " + base64.b64encode(
    f"{RADICALE_USER}:{RADICALE_PASSWORD}".encode()).decode()}
EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
         "DTSTAMP:20300101T000000Z\r\nDTSTART:20300102T100000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
         "END:VCALENDAR\r\n")


@pytest.fixture
def proxy(radicale_calendar: CalendarInfo) -> Iterator[FaultProxy]:
    with FaultProxy(radicale_calendar.url) as started:
        yield started


def request(proxy: FaultProxy, method: str, path: str, body: str | bytes | None = None,
            headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        if own:
            conn.close()


def test_propfind_through_the_proxy_reaches_radicale(proxy: FaultProxy,
                                                     radicale_calendar: CalendarInfo) -> None:
    status, headers, body = request(proxy, "PROPFIND", radicale_calendar.path, "",
                                    {"Depth": "0"})
    assert status == 207
    assert radicale_calendar.path.encode() in body
    assert f":{radicale_calendar.server.port}".encode() not in body  # no upstream address leaks
    assert int(headers["content-length"]) == len(body)
    # without credentials the server's own 401 comes back
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("PROPFIND", radicale_calendar.path, headers={"Depth": "0"})
    assert conn.getresponse().status == 401
    conn.close()
    assert [(s.method, s.status) for s in proxy.seen()] == [("PROPFIND", 207), ("PROPFIND", 401)]


def test_python_caldav_works_through_the_proxy(proxy: FaultProxy,
                                               radicale_calendar: CalendarInfo) -> None:
    client = radicale_calendar.server.client(url=proxy.url)
    principal = client.get_principal()
    assert str(principal.url).startswith(proxy.origin)
    names = [c.get_display_name() for c in principal.get_calendars()]
    assert radicale_calendar.calendar_name in names
    assert proxy.count("PROPFIND") >= 2
    client.close()


def test_a_drop_fault_is_a_connection_error_then_clears(proxy: FaultProxy,
                                                        radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(action="drop", match=method_is("PUT"))]
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected,
                        http.client.BadStatusLine)):
        request(proxy, "PUT", radicale_calendar.path + "a.ics", EVENT.format(uid="a"))
    # the server never saw it
    assert radicale_calendar.get_raw("a.ics")[0] == 404
    status, headers, _ = request(proxy, "PUT", radicale_calendar.path + "a.ics",
                                 EVENT.format(uid="a"))
    assert status == 201 and headers.get("etag")
    assert [(s.method, s.status, s.fault) for s in proxy.seen()] == [
        ("PUT", None, "drop"), ("PUT", 201, None)]


def test_drop_response_applies_the_request_but_loses_the_answer(
        proxy: FaultProxy, radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(action="drop_response", match=path_matches(r"/b\.ics$", "PUT"))]
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected,
                        http.client.BadStatusLine)):
        request(proxy, "PUT", radicale_calendar.path + "b.ics", EVENT.format(uid="b"))
    status, body, _ = radicale_calendar.get_raw("b.ics")
    assert status == 200 and b"UID:b" in body


def test_a_500_fault_is_seen_once_then_clears(proxy: FaultProxy,
                                              radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(action="status", status=500, body=b"boom")]
    first = request(proxy, "PROPFIND", radicale_calendar.path, "", {"Depth": "0"})
    second = request(proxy, "PROPFIND", radicale_calendar.path, "", {"Depth": "0"})
    assert (first[0], first[2]) == (500, b"boom")
    assert second[0] == 207
    assert proxy.faults[0].spent


@pytest.mark.parametrize("status", [503, 429])
def test_status_faults_carry_retry_after(proxy: FaultProxy, radicale_calendar: CalendarInfo,
                                        status: int) -> None:
    proxy.faults = [Fault(status=status, headers={"Retry-After": "7"}, times=2)]
    answers = [request(proxy, "GET", radicale_calendar.path + "nope.ics") for _ in range(3)]
    assert [a[0] for a in answers] == [status, status, 404]
    assert answers[0][1]["retry-after"] == "7"


def test_412_for_a_path_pattern_every_time(proxy: FaultProxy,
                                           radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(status=412, match=path_matches(r"/locked-[^/]*\.ics$", "PUT"),
                          times=None)]
    path = radicale_calendar.path
    assert request(proxy, "PUT", path + "locked-1.ics", EVENT.format(uid="l1"))[0] == 412
    assert request(proxy, "PUT", path + "locked-1.ics", EVENT.format(uid="l1"))[0] == 412
    assert request(proxy, "PUT", path + "free-1.ics", EVENT.format(uid="f1"))[0] == 201
    assert radicale_calendar.get_raw("locked-1.ics")[0] == 404


def test_the_kth_request_and_skip(proxy: FaultProxy, radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(status=503, match=nth_request(3)),
                    Fault(status=500, match=method_is("DELETE"), skip=1)]
    path = radicale_calendar.path + "nope.ics"
    statuses = [request(proxy, method, path)[0] for method in ("GET", "GET", "GET", "GET")]
    assert statuses == [404, 404, 503, 404]
    deletes = [request(proxy, "DELETE", path)[0] for _ in range(3)]
    assert deletes == [404, 500, 404]


def test_delay(proxy: FaultProxy, radicale_calendar: CalendarInfo) -> None:
    proxy.faults = [Fault(action="delay", delay=0.3)]
    started = time.monotonic()
    status = request(proxy, "PROPFIND", radicale_calendar.path, "", {"Depth": "0"})[0]
    assert status == 207 and time.monotonic() - started >= 0.3
    started = time.monotonic()
    request(proxy, "PROPFIND", radicale_calendar.path, "", {"Depth": "0"})
    assert time.monotonic() - started < 0.3


def test_counting_and_reset(proxy: FaultProxy, radicale_calendar: CalendarInfo) -> None:
    path = radicale_calendar.path
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)  # one keep-alive
    try:
        request(proxy, "PROPFIND", path, "", {"Depth": "1"}, conn=conn)
        request(proxy, "PUT", path + "c.ics", EVENT.format(uid="c"), conn=conn)
        status, headers, body = request(proxy, "HEAD", path + "c.ics", conn=conn)
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        request(proxy, "GET", path + "c.ics", conn=conn)
        request(proxy, "DELETE", path + "c.ics", conn=conn)
    finally:
        conn.close()
    assert proxy.count() == 5
    assert proxy.counts() == {"PROPFIND": 1, "PUT": 1, "HEAD": 1, "GET": 1, "DELETE": 1}
    assert proxy.count("put") == 1
    assert [s.status for s in proxy.seen()][:4] == [207, 201, 200, 200]
    assert proxy.seen()[4].status in (200, 204)
    assert b"UID:c" in proxy.seen()[1].body
    proxy.faults = [Fault(status=500)]
    proxy.reset()
    assert proxy.count() == 0 and proxy.faults == []
    assert request(proxy, "GET", path + "c.ics")[0] == 404


def test_the_proxy_only_forwards_to_loopback() -> None:
    with pytest.raises(ValueError):
        FaultProxy("http://example.com/")
    with pytest.raises(ValueError):
        Fault(action="explode")
