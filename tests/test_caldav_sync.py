"""followsync syncing to REAL CalDAV servers (Radicale, Xandikos) through a fault proxy.

Request counts, conditional writes, recovery after a lost state, calendar-side edits, faults
and secrets: the whole `followsync sync` path, run in-process, against real servers.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followsync.cli import main
from tests.davproject import FOREIGN, NOW, PASSWORD_ENV, DavProject, lead_block
from tests.faultproxy import Fault, FaultProxy, method_is, path_matches
from tests.servers import CalendarInfo, Server, drop_calendar, fresh_calendar, start_server


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    started = start_server(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture()
def calendar(server: Server) -> Iterator[CalendarInfo]:
    info = fresh_calendar(server)
    try:
        yield info
    finally:
        drop_calendar(info)


@pytest.fixture()
def proxy(server: Server) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as running:
        yield running


@pytest.fixture()
def setup(tmp_path: Path, calendar: CalendarInfo, proxy: FaultProxy,
          monkeypatch: pytest.MonkeyPatch) -> DavProject:
    if calendar.password:
        monkeypatch.setenv(PASSWORD_ENV, calendar.password)
    return DavProject(tmp_path, calendar, proxy)


def test_first_sync_then_noop_costs_one_request(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(5)))
    code, out = setup.sync()
    assert code == 0, out
    assert "5 created" in out
    assert len(setup.ours()) == 5
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0, out
    assert "0 created, 0 updated, 0 deleted, 5 unchanged" in out
    assert setup.proxy.count() == 1, setup.proxy.seen()  # Basic goes with it: no 401 first
    assert setup.proxy.count("PUT") == 0


def test_one_changed_lead_is_one_put(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(4)))
    assert setup.sync()[0] == 0
    before = setup.ours()
    setup.write_leads_of(*(lead_block(f"lead-{i}", day=10 if i == 2 else 1) for i in range(4)))
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0, out
    assert "1 updated" in out
    assert setup.proxy.count("PUT") == 1
    assert setup.proxy.count() - setup.proxy.count("PUT") <= 2, setup.proxy.seen()
    after = setup.ours()
    assert after.keys() == before.keys()
    changed = [uid for uid in after if after[uid] != before[uid]]
    assert changed == ["followsync-lead-2-cadence-phone"]
    assert b"SEQUENCE:1" in after[changed[0]]
    assert b"DTSTART;TZID=Europe/Berlin:20261210T093000" in after[changed[0]]


def test_lost_state_is_rebuilt_without_rewriting(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    assert setup.sync()[0] == 0
    before = setup.ours()
    shutil.rmtree(setup.tmp / "state")
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0, out
    assert "0 created, 0 updated, 0 deleted, 3 unchanged" in out
    assert setup.proxy.count("PUT") == 0 and setup.proxy.count("DELETE") == 0
    assert setup.ours() == before


def test_foreign_items_are_never_touched(setup: DavProject, capsys: Any) -> None:
    status, _ = setup.cal.put_raw("dentist.ics", FOREIGN)
    assert status in (201, 204)
    _, foreign_before, etag_before = setup.cal.get_raw("dentist.ics")
    setup.write_leads_of(lead_block("a"), lead_block("b"))
    assert setup.sync()[0] == 0
    setup.write_leads_of(lead_block("a", day=5))
    code, out = setup.sync()
    assert code == 0, out
    assert "1 deleted" in out
    status, foreign_after, etag_after = setup.cal.get_raw("dentist.ics")
    assert status == 200
    assert (foreign_after, etag_after) == (foreign_before, etag_before)
    assert set(setup.ours()) == {"followsync-a-cadence-phone"}


def test_calendar_edit_is_kept_until_the_lead_changes(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(lead_block("a"))
    assert setup.sync()[0] == 0
    (href,) = [h for h in setup.cal.hrefs()]
    _, body, etag = setup.cal.get_raw(href)
    moved = body.replace(b"T093000", b"T160000")
    status, _ = setup.cal.put_raw(href, moved, {"If-Match": etag or ""})
    assert status in (200, 201, 204)
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0, out
    assert "1 calendar edit kept" in out
    assert setup.proxy.count("PUT") == 0
    assert b"T160000" in setup.ours()["followsync-a-cadence-phone"]
    setup.write_leads_of(lead_block("a", day=12))  # the lead file changes that follow-up
    code, out = setup.sync()
    assert code == 0, out
    assert "1 updated" in out
    assert b"DTSTART;TZID=Europe/Berlin:20261212T093000" in setup.ours()[
        "followsync-a-cadence-phone"]


def test_deleted_in_calendar_is_not_recreated_until_the_lead_changes(
        setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(lead_block("a"))
    assert setup.sync()[0] == 0
    (href,) = [h for h in setup.cal.hrefs()]
    assert setup.cal.delete_raw(href) in (200, 204)
    code, out = setup.sync()
    assert code == 0, out
    assert setup.ours() == {}
    code, out = setup.sync()
    assert setup.ours() == {}
    setup.write_leads_of(lead_block("a", note="asked again"))
    code, out = setup.sync()
    assert code == 0 and "1 created" in out, out
    assert set(setup.ours()) == {"followsync-a-cadence-phone"}


def test_a_412_on_update_never_clobbers(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(lead_block("a"))
    assert setup.sync()[0] == 0
    before = setup.ours()
    setup.write_leads_of(lead_block("a", day=9))
    setup.proxy.faults = [Fault(action="status", status=412, match=method_is("PUT"), times=None)]
    code, out = setup.sync()
    assert code == 0, out
    assert "changed meanwhile" in out
    assert setup.ours() == before
    setup.proxy.faults = []
    code, out = setup.sync()
    assert code == 0 and "1 updated" in out, out


def test_server_errors_are_retried(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(lead_block("a"), lead_block("b"))
    setup.proxy.faults = [
        Fault(action="status", status=503, headers={"Retry-After": "0"}, match=method_is("PUT")),
        Fault(action="drop", match=method_is("PUT"), skip=1),
        Fault(action="status", status=500, match=method_is("REPORT", "PROPFIND")),
    ]
    code, out = setup.sync()
    assert code == 0, out
    assert len(setup.ours()) == 2


def test_unreachable_server_fails_the_target_with_exit_3(setup: DavProject, capsys: Any) -> None:
    setup.write_leads_of(lead_block("a"))
    setup.proxy.faults = [Fault(action="drop", times=None)]
    code, out = setup.sync()
    assert code == 3
    assert "phone: FAILED" not in out or "unreachable" in out
    assert re.search(r"unreachable|dropped", out), out
    assert "Traceback" not in out


def test_todo_falls_back_to_events_when_the_calendar_takes_none(
        server: Server, tmp_path: Path, proxy: FaultProxy, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cal = fresh_calendar(server, components=("VEVENT",))
    try:
        if cal.password:
            monkeypatch.setenv(PASSWORD_ENV, cal.password)
        setup = DavProject(tmp_path, cal, proxy, as_="todo")
        setup.write_leads_of(lead_block("a"))
        code, out = setup.sync()
        assert code == 0, out
        assert "to-dos" in out
        (body,) = setup.ours().values()
        assert b"BEGIN:VEVENT" in body and b"BEGIN:VTODO" not in body
    finally:
        drop_calendar(cal)


def test_mass_delete_stops_and_force_goes_on(setup: DavProject, capsys: Any) -> None:
    setup.config.write_text(setup.config.read_text().replace("max_deletes: 20", "max_deletes: 1"))
    setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(3)))
    assert setup.sync()[0] == 0
    setup.write_leads_of(lead_block("lead-0"))
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 4, out
    assert "--force" in out
    assert setup.proxy.count("DELETE") == 0 and len(setup.ours()) == 3
    code, out = setup.sync("--force")
    assert code == 0, out
    assert set(setup.ours()) == {"followsync-lead-0-cadence-phone"}


def test_wrong_password_is_one_clear_line_without_the_secret(
        server: Server, setup: DavProject, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if server.kind != "radicale":
        pytest.skip("xandikos runs without authentication here")
    secret = "wr0ng-Pa55word-xyz"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    setup.write_leads_of(lead_block("a"))
    for args in (["sync"], ["plan"], ["calendars"], ["-v", "sync"]):
        code = main(["--config", str(setup.config), "--now", NOW, *args])
        out = capsys.readouterr()
        text = out.out + out.err
        assert code == 3, (args, text)
        assert f"authentication refused for user {setup.cal.username}" in text
        assert secret not in text
        assert "Traceback" not in text


def test_the_password_never_appears_in_any_output(
        server: Server, setup: DavProject, capsys: Any, caplog: Any) -> None:
    if server.kind != "radicale":
        pytest.skip("xandikos runs without authentication here")
    secret = os.environ[PASSWORD_ENV]
    setup.write_leads_of(lead_block("a"), lead_block("b"))
    texts = []
    for args in (["-vv", "sync"], ["-v", "plan"], ["-v", "calendars"], ["-v", "sync"],
                 ["validate"], ["agenda", "--json"]):
        main(["--config", str(setup.config), "--now", NOW, *args])
        out = capsys.readouterr()
        texts.append(out.out + out.err)
    texts.append(caplog.text)
    assert all(secret not in text for text in texts)
    for path in (setup.tmp / "state").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


# --- faults anywhere in a sync: the next clean sync converges --------------------------------
FAULTS = st.lists(
    st.tuples(st.sampled_from(["drop", "drop_response", "500", "503", "412"]),
              st.integers(min_value=1, max_value=14)),
    min_size=1, max_size=3)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(faults=FAULTS, keep=st.sets(st.integers(0, 4), max_size=5),
       moved=st.sets(st.integers(0, 4), max_size=5))
def test_any_faults_then_a_clean_sync_converge(
        server: Server, tmp_path_factory: pytest.TempPathFactory, capsys: Any,
        monkeypatch: pytest.MonkeyPatch, faults: list[tuple[str, int]], keep: set[int],
        moved: set[int]) -> None:
    cal = fresh_calendar(server)
    proxy = FaultProxy(server.url).start()
    try:
        if cal.password:
            monkeypatch.setenv(PASSWORD_ENV, cal.password)
        setup = DavProject(tmp_path_factory.mktemp("conv"), cal, proxy)
        status, _ = cal.put_raw("dentist.ics", FOREIGN)
        assert status in (201, 204)
        _, foreign_before, _ = cal.get_raw("dentist.ics")
        setup.write_leads_of(*(lead_block(f"lead-{i}") for i in range(5)))
        assert setup.sync()[0] == 0
        # the lead file changes: some leads go, some move; faults hit the sync that follows
        wanted = sorted(keep)
        setup.write_leads_of(*(lead_block(f"lead-{i}", day=9 if i in moved else 1) for i in wanted),
                          lead_block("newcomer"))
        proxy.faults = [_fault(kind, k) for kind, k in faults]
        code, out = setup.sync()
        assert code in (0, 3), out
        assert "Traceback" not in out
        proxy.faults = []
        code, out = setup.sync()
        assert code == 0, out
        ours = setup.ours()  # asserts no duplicate UID
        assert set(ours) == {f"followsync-lead-{i}-cadence-phone" for i in wanted} | {
            "followsync-newcomer-cadence-phone"}
        starts = {}  # items of one day are laid end to end from 09:30 (spread), never overlap
        for i in wanted:
            day = "20261209" if i in moved else "20261201"
            found = re.search(rb"DTSTART;TZID=Europe/Berlin:(\d{8})T(\d\d)(\d\d)00",
                              ours[f"followsync-lead-{i}-cadence-phone"])
            assert found and found.group(1).decode() == day, ours
            starts[i] = (day, int(found.group(2)) * 60 + int(found.group(3)))
            assert starts[i][1] >= 9 * 60 + 30 and (starts[i][1] - 570) % 15 == 0
        assert len(set(starts.values())) == len(starts), starts
        assert cal.get_raw("dentist.ics")[1] == foreign_before
        proxy.reset()
        code, out = setup.sync()
        assert code == 0 and proxy.count() == 1, (out, proxy.seen())
    finally:
        proxy.stop()
        drop_calendar(cal)


def _fault(kind: str, k: int) -> Fault:
    if kind in ("drop", "drop_response"):
        return Fault(action=kind, skip=k - 1)
    if kind == "412":
        return Fault(action="status", status=412, match=path_matches(r"\.ics$", "PUT", "DELETE"),
                     skip=k % 3)
    return Fault(action="status", status=int(kind), headers={"Retry-After": "0"}, skip=k - 1)
