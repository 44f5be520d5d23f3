"""followsync.notify: sd_notify datagrams, to a socket the test binds like systemd would."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from followsync.notify import Notifier, one_line, socket_address, watchdog_seconds


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound at a file path, as $NOTIFY_SOCKET would name it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_abstract_names_start_with_a_nul_byte() -> None:
    assert socket_address("@followsync/notify") == b"\0followsync/notify"
    assert socket_address("/run/user/1000/systemd/notify") == "/run/user/1000/systemd/notify"


def test_each_call_is_one_datagram_of_key_value_lines(listener: tuple[str, socket.socket]) -> None:
    name, sock = listener
    notifier = Notifier(name)
    assert notifier.enabled
    assert notifier.ready("first sync started")
    assert received(sock) == ["READY=1", "STATUS=first sync started"]
    assert notifier.status("file: 1 created,\n0 updated")
    assert received(sock) == ["STATUS=file: 1 created, 0 updated"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    notifier.close()


def test_reloading_carries_the_monotonic_clock(listener: tuple[str, socket.socket]) -> None:
    name, sock = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(name).reloading()
    first, second = received(sock)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_namespace_socket() -> None:
    name = f"followsync-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.enabled
    assert notifier.watchdog() is False  # no exception: systemd may have gone away


@pytest.mark.parametrize(("environ", "expected"), [
    ({"WATCHDOG_USEC": "60000000"}, 30.0),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str],
                                                     expected: float | None) -> None:
    assert watchdog_seconds(environ) == expected


def test_status_is_one_bounded_line() -> None:
    assert one_line("a\nb\tc") == "a b c"
    long = one_line("x" * 1000, limit=50)
    assert len(long) == 50
    assert long.endswith("…")
