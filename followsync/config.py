"""The config file (README, "The config file") → a frozen Config with absolute paths and a real time zone."""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from followsync.durations import DURATION_FORM, Duration, parse_date, parse_duration
from followsync.errors import ConfigError, Problem
from followsync.model import Kind, TargetType, Tls
from followsync.validation import (
    DATE_HINT,
    DurationT,
    Invalid,
    OneOrList,
    Text,
    one_as_list,
    validate,
)
from followsync.yamlsrc import Source, load

TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TargetModel(_Model):
    """One calendar to keep in step: a CalDAV calendar, a local .ics file or a Google
    calendar."""

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    type: TargetType
    as_: Kind | None = Field(default=None, alias="as")
    path: Text | None = None
    url: Text | None = None
    calendar: Text | None = None
    username: Text | None = None
    password: Text | None = None
    password_command: Text | list[Text] | None = None
    password_env: Text | None = None
    keyring: bool = False
    verify: bool | Text = True
    timeout: Annotated[float, Field(gt=0)] = 30.0
    client_secret: Text | None = None
    auth_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    endpoint: Text | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> TargetModel:
        google_only = [k for k in ("client_secret", "auth_port", "endpoint")
                       if getattr(self, k) is not None]
        if self.type != "google" and google_only:
            raise Invalid(f"a {self.type} target does not take {', '.join(google_only)}",
                          "those are for `type: google` targets")
        if self.type == "google":
            return self._google_fields()
        if self.type == "ics":
            if not self.path:
                raise Invalid("an ics target needs `path:`",
                              "add `path: followups.ics` (the .ics file to write)")
            extra = [k for k in ("url", "calendar", "username", "password", "password_command",
                                 "password_env") if getattr(self, k)]
            if extra:
                raise Invalid(f"an ics target does not take {', '.join(extra)}",
                              "remove them, or use `type: caldav` for a CalDAV calendar")
        else:
            if not self.url:
                raise Invalid("a caldav target needs `url:`",
                              "add the server, principal or calendar URL, e.g. "
                              "`url: https://dav.example.com/`")
            secrets = [k for k in ("password", "password_command", "password_env")
                       if getattr(self, k)] + (["keyring"] if self.keyring else [])
            if len(secrets) > 1:
                raise Invalid(f"give only one of {', '.join(secrets)}",
                              "keep one way to get the password and remove the others")
        return self

    def _google_fields(self) -> TargetModel:
        extra = [k for k in ("path", "url", "username", "password", "password_command",
                             "password_env") if getattr(self, k)] + \
            (["keyring"] if self.keyring else [])
        if extra:
            raise Invalid(f"a google target does not take {', '.join(extra)}",
                          "it signs in with `followsync auth NAME` (see README, \"Google "
                          "Calendar\")")
        if not self.calendar:
            raise Invalid("a google target needs `calendar:`",
                          "the calendar's name (created if missing), or `primary`")
        if not self.client_secret:
            raise Invalid("a google target needs `client_secret:`",
                          "the JSON file of your own \"Desktop app\" OAuth client (see "
                          "README, \"Google Calendar\")")
        if self.as_ == "todo":
            raise Invalid("a google target takes events only",
                          "remove `as: todo` (Google Calendar has no to-dos with a time)")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise Invalid(f"endpoint {self.endpoint!r} is not an http(s) URL",
                          "e.g. `endpoint: http://127.0.0.1:9000`, or remove it to use Google")
        return self


def _since(value: Any) -> Any:
    """`since:` is a date (`2026-01-01`) or how far back from today (`365d`, `6mo`)."""
    if isinstance(value, date | Duration):
        return value
    if isinstance(value, str) and value.strip()[:1].isdigit() and "-" in value:
        try:
            return parse_date(value)
        except ValueError as exc:
            raise Invalid(str(exc).split("; expected", 1)[0], DATE_HINT) from None
    back = "write a date (YYYY-MM-DD) or how far back: 365d, 6mo, 1y"
    try:
        found = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        found = None
    if found is None:
        raise Invalid(f"not a date or a duration: {value!r}", back)
    if found.unit == "m":
        raise Invalid(f"{str(found)!r} is less than a day",
                      f"`{found}` is minutes: did you mean `{found.amount}mo`? {back}")
    if found.unit == "h":
        raise Invalid(f"{str(found)!r} is less than a day", back)
    return found


_SECONDS = re.compile(r"^\s*(\d{1,6})\s*s\s*$")
MIN_MAIL_INTERVAL = timedelta(seconds=1)


def _interval(value: Any) -> Any:
    """How often the daemon looks for mail: a duration, or seconds (`30s`) for tests and
    impatient users; at least one second."""
    if isinstance(value, str) and (found := _SECONDS.match(value)):
        seconds = int(found.group(1))
        if seconds < 1:
            raise Invalid(f"{value.strip()!r} is too short", "look at most once a second: 1s")
        return timedelta(seconds=seconds)
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise Invalid(f"not a duration: {value!r}", f"write {DURATION_FORM}, or seconds: 30s")
    try:
        length = parse_duration(value).as_timedelta()
    except ValueError as exc:
        raise Invalid(str(exc).split("; expected", 1)[0],
                      f"write {DURATION_FORM}, or seconds: 30s") from None
    if length < MIN_MAIL_INTERVAL:
        raise Invalid(f"{value.strip()!r} is too short", "look at most once a second: 1s")
    return length


SinceT = Annotated[date | Duration, BeforeValidator(_since), WithJsonSchema(
    {"type": "string", "description": "a date (YYYY-MM-DD) or a duration back from today"})]
IntervalT = Annotated[timedelta, BeforeValidator(_interval), WithJsonSchema(
    {"type": "string", "pattern": r"^\d+(s|m|h|d|w|mo|y)$"})]


class MailModel(_Model):
    """One mailbox where touches are found (README "Mail")."""

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    host: Annotated[Text, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: Tls = "implicit"
    username: Annotated[Text, Field(min_length=1)]
    password: Text | None = None
    password_command: Text | list[Text] | None = None
    password_env: Text | None = None
    keyring: bool = False
    me: Annotated[list[Text], BeforeValidator(one_as_list), OneOrList] | None = None
    folders: Annotated[list[Text], Field(min_length=1), BeforeValidator(one_as_list),
                       OneOrList] | None = None
    since: SinceT = Duration(365, "d")
    interval: IntervalT = timedelta(minutes=5)
    timeout: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("me")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if "@" not in address:
                raise Invalid(f"{address!r} is not a mail address",
                              "list your own addresses, e.g. `me: [me@example.com]`")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> MailModel:
        secrets = [k for k in ("password", "password_command", "password_env")
                   if getattr(self, k)] + (["keyring"] if self.keyring else [])
        if len(secrets) > 1:
            raise Invalid(f"give only one of {', '.join(secrets)}",
                          "keep one way to get the password and remove the others")
        if not secrets:
            raise Invalid(f"mailbox {self.name!r} needs a password",
                          "add `password_command: pass show mail/...` (or password_env, "
                          "keyring: true); Gmail, Fastmail and iCloud need an app password")
        if self.tls == "none":
            from followsync.hosts import is_loopback

            if not is_loopback(self.host):
                raise Invalid(f"tls: none would send the password in clear text to {self.host}",
                              "use tls: implicit (port 993) or tls: starttls (port 143); "
                              "none is only for a server on this machine (127.0.0.1)")
        return self


class DaemonModel(_Model):
    interval: DurationT = Duration(15, "m")
    watch: bool = True


class SafetyModel(_Model):
    max_deletes: Annotated[int, Field(ge=0)] = 20


class ConfigModel(_Model):
    leads: Text | Annotated[list[Text], Field(min_length=1)] = "leads.yaml"
    timezone: Text | None = None
    state_dir: Text | None = None
    targets: list[TargetModel] | None = None
    mail: list[MailModel] = []
    daemon: DaemonModel = DaemonModel()
    safety: SafetyModel = SafetyModel()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
                raise Invalid(f"unknown time zone {value!r}",
                              f"did you mean {close[0]!r}?" if close else
                              "use an IANA name such as Europe/Berlin or America/New_York")\
                    from None
        return value

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, value: list[TargetModel] | None) -> list[TargetModel] | None:
        names = [t.name for t in value or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise Invalid(f"target names must be unique: {', '.join(dupes)}",
                          "rename one; the name keeps each target's state apart")
        return value

    @field_validator("mail")
    @classmethod
    def _unique_mailboxes(cls, value: list[MailModel]) -> list[MailModel]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise Invalid(f"mailbox names must be unique: {', '.join(dupes)}",
                          "rename one; the name keeps each mailbox's state apart")
        return value


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
    # a google target keeps its tokens in the state folder and makes calendars in this zone
    state_dir: Path | None = None
    zone: str = "UTC"

    @property
    def key(self) -> str:
        where = str(self.path) if self.type == "ics" else f"{self.url}#{self.calendar or ''}"
        if self.type == "google":
            where = f"{self.endpoint or 'google'}#{self.calendar}"
        return f"{self.name}|{self.type}|{where}"

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
    source = load(shown, data)
    if source.value is not None and not isinstance(source.value, dict):
        raise ConfigError([source.problem((), "the config is a mapping of `key: value` lines",
                                          'see the README, section "The config file"')])
    model = validate(ConfigModel, source)
    return _resolve(path, model, source)


def _resolve(path: Path, model: ConfigModel, source: Source) -> Config:
    base = path.parent.resolve()

    def at(value: str) -> Path:
        return (base / Path(value).expanduser()).resolve()

    lead_list = [model.leads] if isinstance(model.leads, str) else list(model.leads)
    lead_where = [source.where(("leads",) if isinstance(model.leads, str) else ("leads", i))
                  for i in range(len(lead_list))]
    warnings: list[str] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for value, (line, col) in zip(lead_list, lead_where, strict=True):
        if at(value) in seen:
            problems.append(Problem(str(path), line, col, f"{value} is listed twice in `leads:`",
                                    "remove one of them"))
        seen.add(at(value))
    zone = ZoneInfo(model.timezone) if model.timezone else system_zone()
    state_dir = at(model.state_dir) if model.state_dir else default_state_dir()
    targets = []
    for index, tm in enumerate(model.targets or [TargetModel(name="file", type="ics",
                                                              path="followups.ics")]):
        if tm.password:
            mode = path.stat().st_mode
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                problems.append(source.problem(
                    ("targets", index, "password"),
                    f"target {tm.name!r} has a password in a config file others can read",
                    f"run `chmod 600 {path}`, or better use password_command or password_env"))
            else:
                warnings.append(f"target {tm.name!r}: the password is written in the config; "
                                "password_command or password_env keep it out of the file")
        if tm.path and model.targets is not None and not at(tm.path).parent.is_dir():
            # a typo here would otherwise become a new folder somewhere (as root: anywhere)
            folder = at(tm.path).parent
            problems.append(source.problem(
                ("targets", index, "path"),
                f"the folder of the ics target {tm.name!r} "
                f"{'is a file' if folder.exists() else 'does not exist'}: {folder}",
                "check `path:` for a typo, or create the folder first (followsync does not "
                "create it)"))
        if tm.client_secret and not at(tm.client_secret).is_file():
            problems.append(source.problem(
                ("targets", index, "client_secret"),
                f"the client_secret file of target {tm.name!r} does not exist: "
                f"{at(tm.client_secret)}",
                "download your \"Desktop app\" OAuth client's JSON from the Google Cloud "
                "console (README, \"Google Calendar\")"))
        command = tm.password_command
        targets.append(Target(
            name=tm.name, type=tm.type, kind=tm.as_,
            path=at(tm.path) if tm.path else None,
            url=tm.url, calendar=tm.calendar, username=tm.username, password=tm.password,
            password_command=tuple(command) if isinstance(command, list) else command,
            password_env=tm.password_env, keyring=tm.keyring,
            verify=at(tm.verify).as_posix() if isinstance(tm.verify, str) else tm.verify,
            timeout=tm.timeout,
            client_secret=at(tm.client_secret) if tm.client_secret else None,
            auth_port=tm.auth_port, endpoint=tm.endpoint, state_dir=state_dir, zone=zone.key,
        ))
    mailboxes = []
    for index, mm in enumerate(model.mail):
        if mm.password:
            if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
                problems.append(source.problem(
                    ("mail", index, "password"),
                    f"mailbox {mm.name!r} has a password in a config file others can read",
                    f"run `chmod 600 {path}`, or better use password_command or password_env"))
            else:
                warnings.append(f"mailbox {mm.name!r}: the password is written in the config; "
                                "password_command or password_env keep it out of the file")
        command = mm.password_command
        mailboxes.append(MailConfig(
            name=mm.name, host=mm.host.strip(), username=mm.username, port=mm.port, tls=mm.tls,
            password=mm.password,
            password_command=tuple(command) if isinstance(command, list) else command,
            password_env=mm.password_env, keyring=mm.keyring,
            me=tuple(a.strip().lower() for a in mm.me or ()),
            folders=tuple(mm.folders) if mm.folders is not None else None,
            since=mm.since, interval=mm.interval, timeout=mm.timeout))
    if problems:
        raise ConfigError(problems)
    interval = model.daemon.interval.as_timedelta()
    return Config(
        path=path,
        lead_paths=tuple(at(p) for p in lead_list),
        timezone=zone,
        state_dir=state_dir,
        targets=tuple(targets),
        interval=interval if interval > timedelta(0) else timedelta(minutes=15),
        watch=model.daemon.watch,
        max_deletes=model.safety.max_deletes,
        warnings=tuple(warnings),
        lead_origins=tuple((at(p), str(path), line, col)
                           for p, (line, col) in zip(lead_list, lead_where, strict=True)),
        mailboxes=tuple(mailboxes),
    )
