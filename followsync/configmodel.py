"""The config file's schema (README, "The config file") as pydantic models: what
`config.load_config` validates a config against. Kept apart from `config` so that a sync with
nothing to do, which reads a cached Config (see configcache), never imports pydantic."""

from __future__ import annotations

import difflib
import re
from datetime import date, timedelta
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
from followsync.model import Kind, MailAuth, TargetType, Tls
from followsync.validation import (
    DATE_HINT,
    DurationT,
    Invalid,
    OneOrList,
    Text,
    one_as_list,
)

TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TargetModel(_Model):
    """One calendar to keep in step: a CalDAV calendar, a local .ics file, a Google calendar
    or an Outlook calendar (Microsoft 365, Outlook.com)."""

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
    client_id: Text | None = None
    tenant: Text | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> TargetModel:
        google_only = [k for k in ("client_secret", "auth_port") if getattr(self, k) is not None]
        if self.type != "google" and google_only:
            raise Invalid(f"a {self.type} target does not take {', '.join(google_only)}",
                          "those are for `type: google` targets")
        ms_only = [k for k in ("client_id", "tenant") if getattr(self, k) is not None]
        if self.type != "microsoft" and ms_only:
            raise Invalid(f"a {self.type} target does not take {', '.join(ms_only)}",
                          "those are for `type: microsoft` targets")
        if self.type not in ("google", "microsoft") and self.endpoint is not None:
            raise Invalid(f"a {self.type} target does not take endpoint",
                          "`endpoint:` is for `type: google` and `type: microsoft` targets")
        if self.type == "google":
            return self._google_fields()
        if self.type == "microsoft":
            return self._microsoft_fields()
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

    def _microsoft_fields(self) -> TargetModel:
        extra = [k for k in ("path", "url", "username", "password", "password_command",
                             "password_env") if getattr(self, k)] + \
            (["keyring"] if self.keyring else [])
        if extra:
            raise Invalid(f"a microsoft target does not take {', '.join(extra)}",
                          "it signs in with `followsync auth NAME` (see README, \"Microsoft "
                          "365 and Outlook.com\")")
        if not self.calendar:
            raise Invalid("a microsoft target needs `calendar:`",
                          "the calendar's name (created if missing), or `default`")
        _microsoft_sign_in(self.client_id, self.tenant, self.endpoint)
        if self.as_ == "todo":
            raise Invalid("a microsoft target takes events only",
                          "remove `as: todo` (followsync writes Outlook events, not tasks)")
        return self


def _microsoft_sign_in(client_id: str | None, tenant: str | None, endpoint: str | None) -> None:
    """What a Microsoft sign-in needs: the user's own app registration, a tenant, and an
    https endpoint (Microsoft's sign-in refuses plain http)."""
    if not client_id:
        raise Invalid("a Microsoft sign-in needs `client_id:`",
                      "the Application (client) ID of your own app registration (see README, "
                      "\"Microsoft 365 and Outlook.com\")")
    if not re.fullmatch(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}", client_id.strip()):
        raise Invalid(f"client_id {client_id!r} is not an application id",
                      "copy the \"Application (client) ID\" (like "
                      "11111111-2222-3333-4444-555555555555) from the app's Overview page")
    if tenant is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", tenant.strip()):
        raise Invalid(f"tenant {tenant!r} is not a tenant",
                      "common, organizations, consumers, a tenant id or a domain like "
                      "contoso.onmicrosoft.com")
    if endpoint is not None and not endpoint.startswith("https://"):
        raise Invalid(f"endpoint {endpoint!r} is not an https URL",
                      "Microsoft's sign-in needs https, e.g. `endpoint: https://127.0.0.1:9443`; "
                      "or remove it to use Microsoft")


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
    # OAuth (XOAUTH2) instead of a password: README "Microsoft 365 and Outlook.com"
    auth: MailAuth = "password"
    client_id: Text | None = None
    tenant: Text | None = None
    endpoint: Text | None = None
    verify: bool | Text = True
    client_secret: Text | None = None
    auth_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # auth: google

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
        if self.auth != "password":
            return self._oauth(secrets)
        oauth = [k for k in ("client_id", "tenant", "endpoint", "client_secret", "auth_port")
                 if getattr(self, k) is not None] + (["verify"] if self.verify is not True else [])
        if oauth:
            raise Invalid(f"mailbox {self.name!r} logs in with a password and does not take "
                          f"{', '.join(oauth)}",
                          "add `auth: microsoft` or `auth: google` to sign in with OAuth instead")
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

    def _oauth(self, secrets: list[str]) -> MailModel:
        """`auth: microsoft` / `auth: google`: a sign-in (`followsync auth NAME`), never a
        password, always over TLS."""
        if secrets:
            raise Invalid(f"mailbox {self.name!r} signs in with `auth: {self.auth}` and takes "
                          f"no {', '.join(secrets)}",
                          f"remove {', '.join(secrets)}; run `followsync auth {self.name}`")
        if self.tls == "none":
            raise Invalid("an OAuth mailbox is reached over TLS",
                          "use tls: implicit (port 993) or tls: starttls (port 143)")
        if self.auth == "microsoft":
            if self.client_secret is not None:
                raise Invalid("`auth: microsoft` takes no client_secret",
                              "a Microsoft sign-in needs only `client_id:` (a public client)")
            if self.auth_port is not None:
                raise Invalid("`auth: microsoft` takes no auth_port",
                              "its sign-in is a device code entered in any browser: "
                              "followsync listens on no port")
            _microsoft_sign_in(self.client_id, self.tenant, self.endpoint)
            return self
        if self.verify is not True:
            raise Invalid("`auth: google` takes no verify",
                          "Google's sign-in uses the system's certificates; remove `verify:`")
        if self.client_id is not None or self.tenant is not None:
            raise Invalid("`auth: google` takes no client_id or tenant",
                          "it needs `client_secret:` (your \"Desktop app\" OAuth client's "
                          "JSON), see README, \"Google Calendar\"")
        if not self.client_secret:
            raise Invalid("`auth: google` needs `client_secret:`",
                          "the JSON file of your own \"Desktop app\" OAuth client (see README, "
                          "\"Google Calendar\")")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise Invalid(f"endpoint {self.endpoint!r} is not an http(s) URL",
                          "remove it to use Google")
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

    @model_validator(mode="after")
    def _sign_in_names(self) -> ConfigModel:
        """`followsync auth NAME` must tell an OAuth mailbox from a target that signs in."""
        signing = {t.name for t in self.targets or [] if t.type in ("google", "microsoft")}
        both = sorted(m.name for m in self.mail if m.auth != "password" and m.name in signing)
        if both:
            raise Invalid(f"a mailbox and a target are both named {', '.join(both)}",
                          "rename one: `followsync auth NAME` signs in one of them by its name")
        google = {t.name for t in self.targets or [] if t.type == "google"}
        clash = sorted(m.name for m in self.mail if m.auth == "google"
                       and f"mail-{m.name}" in google)
        if clash:
            raise Invalid(f"mailbox {clash[0]!r} and google target 'mail-{clash[0]}' would keep "
                          f"their tokens in the same file (google-mail-{clash[0]}.json)",
                          "rename one of them")
        return self
