"""A first sync's burst of new items goes over two connections side by side (README "Calendar
providers"), against REAL Radicale and Xandikos through the fault proxy: a dropped
connection, a lost answer, 5xx and 412 in the middle of the burst lose nothing, duplicate
nothing and are reported as a one-by-one sync reports them; a sync stopped by a failing
server records what landed, and the next one sends only the rest.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.davproject import PASSWORD_ENV, DavProject, lead_block
from tests.faultproxy import Fault, FaultProxy, ProxyRequest, method_is

N = 12  # more than backends.caldav.PARALLEL_MIN: sent side by side


@pytest.fixture()
def setup(tmp_path: Path, dav_calendar: Any, fault_proxy: Callable[[Any], FaultProxy],
          monkeypatch: pytest.MonkeyPatch) -> DavProject:
    if dav_calendar.password:
        monkeypatch.setenv(PASSWORD_ENV, dav_calendar.password)
    project = DavProject(tmp_path, dav_calendar, fault_proxy(dav_calendar.server))
    project.write_leads_of(*(lead_block(f"lead-{i:02d}") for i in range(N)))
    return project


def uids() -> set[str]:
    return {f"followsync-lead-{i:02d}-cadence-phone" for i in range(N)}


def settled(setup: DavProject) -> None:
    """Every item there exactly once (ours() asserts no duplicate UID), and the state knows
    them all: the next sync is one request."""
    assert set(setup.ours()) == uids()
    setup.proxy.reset()
    setup.proxy.faults = []
    code, out = setup.sync()
    assert code == 0, out
    assert f"0 created, 0 updated, 0 deleted, {N} unchanged" in out, out
    assert setup.proxy.count() == 1, setup.proxy.seen()


def test_the_burst_goes_over_two_connections(setup: DavProject) -> None:
    """The first PUT is held for a while; the other connection goes on meanwhile."""
    held = threading.Event()

    def first_put(req: ProxyRequest) -> bool:
        if req.method == "PUT" and not held.is_set():
            held.set()
            return True
        return False

    setup.proxy.faults = [Fault(action="delay", delay=1.0, match=first_put)]
    code, out = setup.sync()
    assert code == 0, out
    assert f"{N} created" in out
    puts = [s for s in setup.proxy.seen() if s.method == "PUT"]
    assert len(puts) == N
    assert all(s.headers.get("if-none-match") == "*" for s in puts)
    held_one = next(s for s in puts if s.fault == "delay")
    assert puts.index(held_one) > 0  # others were answered while it was held
    settled(setup)


@pytest.mark.parametrize("fault", [
    Fault(action="drop", match=method_is("PUT"), skip=3),
    Fault(action="drop_response", match=method_is("PUT"), skip=4),
    Fault(action="status", status=503, headers={"Retry-After": "0"}, match=method_is("PUT"),
          skip=2, times=3),
], ids=["drop", "drop_response", "503"])
def test_a_fault_in_the_burst_loses_nothing(setup: DavProject, fault: Fault) -> None:
    setup.proxy.faults = [fault]
    code, out = setup.sync()
    assert code == 0, out
    # a PUT whose answer was lost is sent again; meeting itself (412 on Radicale) it is read
    # back and counted as there already, "unchanged", as in a one-by-one sync
    counts = re.search(r"(\d+) created, 0 updated, 0 deleted, (\d+) unchanged", out)
    assert counts and int(counts[1]) + int(counts[2]) == N, out
    assert int(counts[2]) <= (1 if fault.action == "drop_response" else 0), out
    assert fault.fired >= 1
    settled(setup)


def test_a_412_in_the_burst_is_reported_and_sent_next_time(setup: DavProject) -> None:
    setup.proxy.faults = [Fault(action="status", status=412, match=method_is("PUT"), skip=5)]
    code, out = setup.sync()
    assert code == 0, out
    assert f"{N - 1} created" in out, out
    assert "could not be created" in out, out
    assert len(setup.ours()) == N - 1
    setup.proxy.faults = []
    code, out = setup.sync()
    assert code == 0 and "1 created" in out, out
    settled(setup)


def test_a_sync_stopped_by_the_server_records_what_landed(setup: DavProject) -> None:
    setup.proxy.faults = [Fault(action="status", status=500, match=method_is("PUT"), skip=6,
                                times=None)]
    code, out = setup.sync()
    assert code == 3, out
    landed = setup.ours()
    assert 6 <= len(landed) < N
    setup.proxy.faults = []
    setup.proxy.reset()
    code, out = setup.sync()
    assert code == 0, out
    # only the missing ones are sent again (what landed is in the state, or adopted)
    assert setup.proxy.count("PUT") == N - len(landed), setup.proxy.seen()
    settled(setup)
