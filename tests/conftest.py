"""Shared pytest fixtures. Several people add to this file: only ADD, never remove others' code.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# `tests.servers` and plain `servers` (likewise faultproxy) must be ONE module, whichever way a
# test imports it: put the project root on the path and alias the short names.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
import tests.faultproxy  # noqa: E402
import tests.servers  # noqa: E402

sys.modules.setdefault("servers", tests.servers)
sys.modules.setdefault("faultproxy", tests.faultproxy)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile followsync's bytecode once, as `pip install .` does: many tests start
    followsync as a process, and where PYTHONDONTWRITEBYTECODE is set (or the checkout is an
    editable install) each start would otherwise recompile every module (~45 ms)."""
    import compileall

    compileall.compile_dir(Path(_ROOT) / "followsync", quiet=1)


# ======================================================================= real CalDAV servers
# Real Radicale / Xandikos processes on 127.0.0.1 (see tests/servers.py); one per kind per
# test session, and a FRESH calendar per test.
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.servers import (  # noqa: E402
    CalendarInfo,
    Server,
    drop_calendar,
    fresh_calendar,
    start_server,
)

# loopback traffic must never go through an HTTP proxy from the environment
_no_proxy = {p for p in os.environ.get("NO_PROXY", "").split(",") if p}
os.environ["NO_PROXY"] = ",".join(sorted(_no_proxy | {"127.0.0.1", "localhost"}))
os.environ["no_proxy"] = os.environ["NO_PROXY"]


def _session_server(tmp_path_factory: pytest.TempPathFactory, kind: str,
                    **options: object) -> Iterator[Server]:
    pytest.importorskip("caldav")
    pytest.importorskip(kind)
    root = tmp_path_factory.mktemp(f"{kind}-server")
    server = start_server(kind, root, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running Radicale (htpasswd auth: alice / s3cret-pass, owner_only rights)."""
    yield from _session_server(tmp_path_factory, "radicale")


@pytest.fixture(scope="session")
def radicale_strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Radicale with `strict_preconditions = True`: a PUT over an existing item without
    If-Match is refused with 412 (proves the client always sends preconditions)."""
    yield from _session_server(tmp_path_factory, "radicale", strict_preconditions=True)


@pytest.fixture(scope="session")
def xandikos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running Xandikos (no auth; principal /user/, default calendar
    /user/calendars/calendar/)."""
    yield from _session_server(tmp_path_factory, "xandikos")


def _calendar(server: Server, components: tuple[str, ...] = ("VEVENT", "VTODO")
              ) -> Iterator[CalendarInfo]:
    info = fresh_calendar(server, components)
    try:
        yield info
    finally:
        drop_calendar(info)


@pytest.fixture
def radicale_calendar(radicale_server: Server) -> Iterator[CalendarInfo]:
    """A fresh, empty VEVENT+VTODO calendar on the session's Radicale."""
    yield from _calendar(radicale_server)


@pytest.fixture
def radicale_strict_calendar(radicale_strict_server: Server) -> Iterator[CalendarInfo]:
    """A fresh calendar on the strict-preconditions Radicale."""
    yield from _calendar(radicale_strict_server)


@pytest.fixture
def xandikos_calendar(xandikos_server: Server) -> Iterator[CalendarInfo]:
    """A fresh, empty VEVENT+VTODO calendar on the session's Xandikos."""
    yield from _calendar(xandikos_server)


@pytest.fixture(params=["radicale", "xandikos"])
def dav_calendar(request: pytest.FixtureRequest) -> Iterator[CalendarInfo]:
    """A fresh calendar on each real server kind in turn (the test runs once per kind)."""
    server: Server = request.getfixturevalue(f"{request.param}_server")
    yield from _calendar(server)


@pytest.fixture
def make_dav_calendar(request: pytest.FixtureRequest
                      ) -> Iterator[Callable[..., CalendarInfo]]:
    """A factory: make_dav_calendar('xandikos', components=('VEVENT',)) → a fresh calendar
    (removed after the test)."""
    made: list[CalendarInfo] = []

    def make(kind: str, components: tuple[str, ...] = ("VEVENT", "VTODO"),
             name: str | None = None) -> CalendarInfo:
        server: Server = request.getfixturevalue(f"{kind}_server")
        info = fresh_calendar(server, components, name=name)
        made.append(info)
        return info

    yield make
    for info in made:
        drop_calendar(info)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[Server | CalendarInfo | str], FaultProxy]]:
    """A factory: fault_proxy(server_or_calendar_or_url) → a started FaultProxy in front of
    that server (stopped after the test). Use proxy.url_for(calendar.calendar_url)."""
    proxies: list[FaultProxy] = []

    def make(upstream: Server | CalendarInfo | str) -> FaultProxy:
        url = upstream if isinstance(upstream, str) else upstream.url
        proxy = FaultProxy(url).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def radicale_proxy(radicale_server: Server) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's Radicale."""
    with FaultProxy(radicale_server.url) as proxy:
        yield proxy


@pytest.fixture
def xandikos_proxy(xandikos_server: Server) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's Xandikos."""
    with FaultProxy(xandikos_server.url) as proxy:
        yield proxy


# ============================================================ a project (tests/project.py)
from tests.project import Project, make_project  # noqa: E402


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh folder with config.yaml (an .ics target, out.ics, Europe/Berlin, state in
    ./state) and no lead file yet; see tests/project.py for writing and running it."""
    return make_project(tmp_path.resolve() / "proj")


# --- every test: no real user's config, state or clock leaks in ---------------------------
@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FOLLOWSYNC_CONFIG", raising=False)
    monkeypatch.delenv("FOLLOWSYNC_NOW", raising=False)


@pytest.fixture(autouse=True)
def _followsync_logger() -> Iterator[None]:
    """A command run in-process sets up the `followsync` logger for a terminal (its own
    handler, no propagation): undo it, or a later test's caplog sees nothing."""
    logger = logging.getLogger("followsync")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


# ============================================================ a real Dovecot (mail tests)
# One Dovecot per test session (tests/imapserver.py), a fresh empty mailbox per test.
from tests.imapserver import Account, CountingProxy, Dovecot, running_dovecot  # noqa: E402


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A running Dovecot on 127.0.0.1 (no TLS); skipped when dovecot is not installed."""
    yield from running_dovecot()


@pytest.fixture
def imap_account(dovecot: Dovecot) -> Account:
    """A fresh user with an empty mailbox (INBOX only) on the session's Dovecot."""
    return dovecot.new_account()


@pytest.fixture
def imap_proxy(dovecot: Dovecot) -> Iterator[CountingProxy]:
    """A TCP relay in front of the session's Dovecot that records the commands a client sends."""
    proxy = CountingProxy(dovecot.host, dovecot.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[Dovecot]:
    """A second Dovecot with a self-signed certificate (`.cafile`): implicit TLS on
    `.tls_port`, STARTTLS on `.port`."""
    yield from running_dovecot(tls=True)


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every validation of the config the config cache falls back to (a hit adds none)."""
    import followsync.config as config_module
    import followsync.configcache as cc
    from followsync.config import Config

    seen: list[Path] = []
    real = cc.load_config

    def counting(path: Path) -> Config:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(cc, "load_config", counting)
    monkeypatch.setattr(config_module, "load_config", counting)
    return seen


@pytest.fixture
def keyring_stand_in(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], str]:
    """A working keyring module in place of the real one (which would write to the
    desktop's keyring): what is set there, by (service, account)."""
    import types

    kept: dict[tuple[str, str], str] = {}

    class Working:
        priority = 5

    fail = types.ModuleType("keyring.backends.fail")

    class Fail:
        priority = 0

    fail.Keyring = Fail  # type: ignore[attr-defined]
    backends = types.ModuleType("keyring.backends")
    backends.fail = fail  # type: ignore[attr-defined]
    ring = types.ModuleType("keyring")
    ring.backends = backends  # type: ignore[attr-defined]
    ring.get_keyring = Working  # type: ignore[attr-defined]
    ring.set_password = lambda s, a, v: kept.__setitem__((s, a), v)  # type: ignore[attr-defined]
    ring.get_password = lambda s, a: kept.get((s, a))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", ring)
    monkeypatch.setitem(sys.modules, "keyring.backends", backends)
    monkeypatch.setitem(sys.modules, "keyring.backends.fail", fail)
    monkeypatch.delenv("FOLLOWSYNC_NO_KEYRING", raising=False)
    return kept
