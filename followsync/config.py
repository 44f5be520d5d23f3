"""The config file (README, "The config file") → a frozen Config with absolute paths and a
real time zone. The schema it is checked against is `configmodel` (pydantic), imported only
when a config is validated."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from followsync.durations import Duration
from followsync.errors import ConfigError, Problem
from followsync.model import Kind, MailAuth, TargetType, Tls

if TYPE_CHECKING:
    from followsync.configmodel import ConfigModel, MailModel, TargetModel
    from followsync.yamlsrc import Source


@dataclass(frozen=True)
class Target:
    """A target with paths resolved; `key` tells its state apart from other configs' targets."""

    name: str
    type: TargetType
    kind: Kind | None
    path: Path | None = None
    url: str | None = None
    calendar: str | None = None
    username: str | None = None
    password: str | None = None
    password_command: tuple[str, ...] | str | None = None
    password_env: str | None = None
    keyring: bool = False
    verify: bool | str = True
    timeout: float = 30.0
    client_secret: Path | None = None
    auth_port: int | None = None
    endpoint: str | None = None
    client_id: str | None = None  # microsoft: the user's app registration
    tenant: str = "common"  # microsoft: common | organizations | consumers | a tenant
    # the state folder: a google or microsoft target keeps its tokens there, an HTTP target what its
    # server asked for (backends/authmemory); a google target makes calendars in `zone`
    state_dir: Path | None = None
    zone: str = "UTC"

    @property
    def key(self) -> str:
        where = str(self.path) if self.type == "ics" else f"{self.url}#{self.calendar or ''}"
        if self.type == "google":
            where = f"{self.endpoint or 'google'}#{self.calendar}"
        if self.type == "microsoft":
            where = f"{self.endpoint or 'microsoft'}/{self.tenant}#{self.calendar}"
        return f"{self.name}|{self.type}|{where}"

    @property
    def who(self) -> str:
        return f"target {self.name}"

    def __repr__(self) -> str:  # never show a password, even in a debugger or a traceback
        return f"Target(name={self.name!r}, type={self.type!r})"


@dataclass(frozen=True)
class MailConfig:
    """A `mail:` entry with its defaults filled in; the password is resolved only when the
    mailbox is scanned (see followsync.sources.scan)."""

    name: str
    host: str
    username: str
    port: int | None = None
    tls: Tls = "implicit"
    password: str | None = None
    password_command: tuple[str, ...] | str | None = None
    password_env: str | None = None
    keyring: bool = False
    me: tuple[str, ...] = ()
    folders: tuple[str, ...] | None = None
    since: date | Duration = Duration(365, "d")
    interval: timedelta = timedelta(minutes=5)
    timeout: float = 30.0
    auth: MailAuth = "password"  # or an OAuth sign-in: `followsync auth NAME`
    client_id: str | None = None  # auth: microsoft
    tenant: str = "common"
    endpoint: str | None = None
    verify: bool | str = True
    client_secret: Path | None = None  # auth: google
    auth_port: int | None = None  # auth: google: the sign-in's loopback port (SSH forwarding)
    state_dir: Path | None = None  # an OAuth mailbox keeps its tokens there

    @property
    def url(self) -> str:
        """Where the mailbox is, as a URL (the keyring entry is `username@url`)."""
        return f"imap://{self.host}"

    @property
    def key(self) -> str:
        """Tells this mailbox's bookmarks apart from another account's of the same name."""
        return f"{self.name}|{self.username}@{self.host}:{self.port or ''}"

    def since_day(self, today: date) -> date:
        """The first day the first scan of a folder looks at."""
        if isinstance(self.since, Duration):
            back = today - self.since.delta()
            return back.date() if isinstance(back, datetime) else back
        return self.since

    @property
    def who(self) -> str:
        return f"mailbox {self.name}"

    def __repr__(self) -> str:  # never show a password
        return f"MailConfig(name={self.name!r}, host={self.host!r})"


@dataclass(frozen=True)
class Config:
    """Everything the config file says, ready to use."""

    path: Path
    lead_paths: tuple[Path, ...]
    timezone: ZoneInfo
    state_dir: Path
    targets: tuple[Target, ...]
    interval: timedelta
    watch: bool
    max_deletes: int
    warnings: tuple[str, ...] = ()
    # where the config names each lead file, as (config file, line, col): a missing lead
    # file is reported there, where the user has to fix it
    lead_origins: tuple[tuple[Path, str, int, int], ...] = ()
    mailboxes: tuple[MailConfig, ...] = ()
    # every path the file names, absolute as written (its links not followed): the paths
    # above are real paths, and the config cache checks where each of these points now
    places: tuple[Path, ...] = ()

    @property
    def lead_named_at(self) -> dict[Path, tuple[str, int, int]]:
        return {path: (file, line, col) for path, file, line, col in self.lead_origins}

    def today(self, now: datetime) -> date:
        """The day `now` falls on in the config's time zone: the rules' "today"."""
        return now.astimezone(self.timezone).date()


def find_config(explicit: str | None) -> Path:
    """--config, else $FOLLOWSYNC_CONFIG, else $XDG_CONFIG_HOME/followsync/config.yaml."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("FOLLOWSYNC_CONFIG"):
        return Path(os.environ["FOLLOWSYNC_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "followsync" / "config.yaml"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "followsync"


def system_zone() -> ZoneInfo:
    """The machine's zone: $TZ, /etc/timezone, the /etc/localtime link, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def load_config(path: Path) -> Config:
    """Read and check the config file; ConfigError lists every problem at once."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, 1, 1, "config file not found",
                                   "create one with `followsync init`, or pass --config PATH")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(shown, 1, 1, "the config path is a folder, not a file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(shown, 1, 1, f"cannot read the config: {exc.strerror}")]) from None
    from followsync.configmodel import ConfigModel
    from followsync.validation import validate
    from followsync.yamlsrc import load

    source = load(shown, data)
    if source.value is not None and not isinstance(source.value, dict):
        raise ConfigError([source.problem((), "the config is a mapping of `key: value` lines",
                                          'see the README, section "The config file"')])
    model = validate(ConfigModel, source)
    return _resolve(path, model, source)


def _resolve(path: Path, model: ConfigModel, source: Source) -> Config:
    """The checked model with paths made absolute and checks that need the disk; every
    problem at once."""
    from followsync.configmodel import TargetModel

    r = _Resolver(path, source)
    lead_list = [model.leads] if isinstance(model.leads, str) else list(model.leads)
    lead_where = [source.where(("leads",) if isinstance(model.leads, str) else ("leads", i))
                  for i in range(len(lead_list))]
    seen: set[Path] = set()
    for value, (line, col) in zip(lead_list, lead_where, strict=True):
        if r.at(value) in seen:
            r.problems.append(Problem(str(path), line, col, f"{value} is listed twice in "
                                      "`leads:`", "remove one of them"))
        seen.add(r.at(value))
    zone = ZoneInfo(model.timezone) if model.timezone else system_zone()
    state_dir = r.at(model.state_dir) if model.state_dir else default_state_dir()
    default = [TargetModel(name="file", type="ics", path="followups.ics")]
    targets = [r.target(index, tm, state_dir, zone, explicit=model.targets is not None)
               for index, tm in enumerate(model.targets or default)]
    mailboxes = [r.mailbox(index, mm, state_dir) for index, mm in enumerate(model.mail)]
    if r.problems:
        raise ConfigError(r.problems)
    interval = model.daemon.interval.as_timedelta()
    return Config(
        path=path,
        lead_paths=tuple(r.at(p) for p in lead_list),
        timezone=zone,
        state_dir=state_dir,
        targets=tuple(targets),
        interval=interval if interval > timedelta(0) else timedelta(minutes=15),
        watch=model.daemon.watch,
        max_deletes=model.safety.max_deletes,
        warnings=tuple(r.warnings),
        lead_origins=tuple((r.at(p), str(path), line, col)
                           for p, (line, col) in zip(lead_list, lead_where, strict=True)),
        mailboxes=tuple(mailboxes),
        places=tuple(r.places),
    )


class _Resolver:
    """What `_resolve` needs per entry: paths relative to the config, and the problems and
    warnings found so far."""

    def __init__(self, path: Path, source: Source) -> None:
        self.path, self.source, self.base = path, source, path.parent.resolve()
        self.written = path.parent.absolute()  # (links and `..` kept as written)
        self.places: list[Path] = []
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def at(self, value: str) -> Path:
        """A path the config names, as a real path (remembered as written: `places`)."""
        named = self.written / Path(value).expanduser()
        if named not in self.places:
            self.places.append(named)
        return (self.base / Path(value).expanduser()).resolve()

    def written_password(self, where: tuple[str, int], what: str) -> None:
        """A `password:` in the file: refused where others can read it, else a warning."""
        if self.path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            self.problems.append(self.source.problem(
                (*where, "password"), f"{what} has a password in a config file others can read",
                f"run `chmod 600 {self.path}`, or better use password_command or password_env"))
        else:
            self.warnings.append(f"{what}: the password is written in the config; "
                                 "password_command or password_env keep it out of the file")

    def client_secret(self, where: tuple[str, int], what: str, value: str | None) -> None:
        """A Google OAuth client's JSON file named in the config must be there."""
        if value and not self.at(value).is_file():
            self.problems.append(self.source.problem(
                (*where, "client_secret"),
                f"the client_secret file of {what} does not exist: {self.at(value)}",
                "download your \"Desktop app\" OAuth client's JSON from the Google Cloud "
                "console (README, \"Google Calendar\")"))

    def target(self, index: int, tm: TargetModel, state_dir: Path, zone: ZoneInfo,
               explicit: bool) -> Target:
        if tm.password:
            self.written_password(("targets", index), f"target {tm.name!r}")
        if tm.path and explicit and not self.at(tm.path).parent.is_dir():
            # a typo here would otherwise become a new folder somewhere (as root: anywhere)
            folder = self.at(tm.path).parent
            self.problems.append(self.source.problem(
                ("targets", index, "path"),
                f"the folder of the ics target {tm.name!r} "
                f"{'is a file' if folder.exists() else 'does not exist'}: {folder}",
                "check `path:` for a typo, or create the folder first (followsync does not "
                "create it)"))
        self.client_secret(("targets", index), f"target {tm.name!r}", tm.client_secret)
        command = tm.password_command
        return Target(
            name=tm.name, type=tm.type, kind=tm.as_,
            path=self.at(tm.path) if tm.path else None,
            url=tm.url, calendar=tm.calendar, username=tm.username, password=tm.password,
            password_command=tuple(command) if isinstance(command, list) else command,
            password_env=tm.password_env, keyring=tm.keyring,
            verify=self.at(tm.verify).as_posix() if isinstance(tm.verify, str) else tm.verify,
            timeout=tm.timeout,
            client_secret=self.at(tm.client_secret) if tm.client_secret else None,
            auth_port=tm.auth_port, endpoint=tm.endpoint, state_dir=state_dir, zone=zone.key,
            client_id=tm.client_id.strip() if tm.client_id else None,
            tenant=(tm.tenant or "common").strip(),
        )

    def mailbox(self, index: int, mm: MailModel, state_dir: Path) -> MailConfig:
        if mm.password:
            self.written_password(("mail", index), f"mailbox {mm.name!r}")
        self.client_secret(("mail", index), f"mailbox {mm.name!r}", mm.client_secret)
        command = mm.password_command
        return MailConfig(
            name=mm.name, host=mm.host.strip(), username=mm.username, port=mm.port, tls=mm.tls,
            password=mm.password,
            password_command=tuple(command) if isinstance(command, list) else command,
            password_env=mm.password_env, keyring=mm.keyring,
            me=tuple(a.strip().lower() for a in mm.me or ()),
            folders=tuple(mm.folders) if mm.folders is not None else None,
            since=mm.since, interval=mm.interval, timeout=mm.timeout,
            auth=mm.auth, client_id=mm.client_id.strip() if mm.client_id else None,
            tenant=(mm.tenant or "common").strip(), endpoint=mm.endpoint,
            verify=self.at(mm.verify).as_posix() if isinstance(mm.verify, str) else mm.verify,
            client_secret=self.at(mm.client_secret) if mm.client_secret else None,
            auth_port=mm.auth_port, state_dir=state_dir)
