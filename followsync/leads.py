"""The lead file (README, "The lead file"): pydantic models, loading with located errors, effective settings.

Models stay close to what the user writes; `Policy` is the flattened result of built-in
defaults, the file's `defaults:` and the lead's own overrides, which is what the rules use.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from followsync.durations import Duration
from followsync.errors import ConfigError, Problem
from followsync.gcpause import paused_gc
from followsync.leadcache import Codec, LeadCache, for_file
from followsync.leadsplit import Slice, Split, split
from followsync.model import Kind
from followsync.validation import (
    WEEKDAYS,
    DateT,
    DurationT,
    EmailT,
    GapT,
    Invalid,
    OneOrList,
    Text,
    TimeT,
    WeekdayT,
    _date,
    _time,
    one_as_list,
    validate,
)
from followsync.yamlsrc import MAX_BYTES, MAX_NODES, Composed, Source, load

LEAD_ID = r"^[a-z0-9][a-z0-9._-]*$"
PLACEHOLDERS = ("name", "org", "role", "email")
TITLE_PLACEHOLDERS = (*PLACEHOLDERS, "action")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TOUCH_LINE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})(?:\s+(.*))?$", re.DOTALL)
_CLOCK = re.compile(r"^(\d{1,2}:\d{2})(?:\s+(.*))?$", re.DOTALL)  # `HH:MM` after the date
By = Literal["me", "them", "both"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _touch_from_line(value: Any) -> Any:
    """`2013-06-03 emailed: thanks` is a touch by me on that date with that note."""
    if isinstance(value, dict) and len(value) == 1:
        # YAML reads `- 2013-06-03 emailed: thanks` as a one-key mapping; it is still a line.
        ((key, rest),) = value.items()
        if _TOUCH_LINE.match(key) and (rest is None or not isinstance(rest, dict | list)):
            value = key if rest is None else f"{key}: {_scalar_text(rest)}"
    if isinstance(value, str):
        match = _TOUCH_LINE.match(value)
        if not match:
            raise Invalid(f"not a log entry: {value!r}",
                          "start it with the date, e.g. '2026-01-05 emailed her', or write "
                          "{date: 2026-01-05, by: me|them|both, note: ...}")
        rest = (match.group(2) or "").strip()
        clock = _CLOCK.match(rest)
        entry = {"date": match.group(1), "by": "me", "note": rest}
        if clock:  # `2013-06-05 14:10 called`: a touch with its time
            entry |= {"at": clock.group(1), "note": (clock.group(2) or "").strip()}
        value = entry
    if isinstance(value, dict) and "at" in value and not isinstance(value["at"], datetime):
        value = _with_moment(value)
    return value


def _with_moment(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry's `at: HH:MM` as the moment of the touch (its date and that time): the
    rules compare touches with the moment a status changed (README, "log")."""
    clock = _time(entry["at"])  # (Invalid: not a time of day, with the hint)
    try:
        day = _date(entry.get("date"))
    except Invalid:
        return {k: v for k, v in entry.items() if k != "at"}  # the date's error is reported
    return {**entry, "at": datetime.combine(day, clock)}


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _placeholders(allowed: tuple[str, ...]) -> Any:
    """A validator refusing placeholders other than `allowed` (a typo would stay in the text)."""
    names = [f"{{{name}}}" for name in allowed]
    known = f"use {', '.join(names[:-1])} or {names[-1]}"

    def check(value: Any) -> Any:
        if isinstance(value, str):
            for name in _PLACEHOLDER.findall(value):
                if name not in allowed:
                    close = difflib.get_close_matches(name, allowed, n=1)
                    raise Invalid(f"unknown placeholder {{{name}}} in {value!r}",
                                  f"did you mean {{{close[0]}}}?" if close else known)
        return value

    return check


Template = Annotated[str, BeforeValidator(_placeholders(PLACEHOLDERS))]
TitleTemplate = Annotated[str, BeforeValidator(_placeholders(TITLE_PLACEHOLDERS))]


class Touch(_Model):
    """One contact with the lead: `me` reached out, `them` answered, `both` met or called.

    `at` is the moment of the touch when its time is known (`DATE HH:MM` in the log, `at:`
    in the mapping form, the time of a mail); without it the touch counts as the start of
    its day. `rule` names the one follow-up the touch marks done (`followsync done --rule`,
    a to-do of that rule ticked off in a calendar)."""

    date: DateT
    at: Annotated[datetime | None, WithJsonSchema(
        {"type": "string", "pattern": r"^([01]?\d|2[0-3]):[0-5]\d$",
         "description": "the time of day of the touch, HH:MM"})] = None
    by: By = "me"
    note: Text = ""
    rule: Annotated[str, Field(pattern=r"^(cadence|(once|status)-.+)$")] | None = None

    def moment(self) -> datetime:
        """When the touch happened: its time, else the start of its day."""
        return self.at if self.at is not None else datetime.combine(self.date, time.min)


class MailTouch(Touch):
    """A touch found in mail (README "Mail"): its time orders the touches of one day, its
    subject is the thread a calendar item links back to. Never part of the lead file."""

    at: datetime
    subject: str = ""
    message_id: str = ""  # `<...>` as the mail had it ("" if none): a reply is threaded on it


class _LogLineToo:
    """JSON Schema: a log entry may also be written as a `DATE text` line (editors accept it)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        line = {"type": "string", "pattern": r"^\s*\d{4}-\d{2}-\d{2}(\s|$)",
                "description": "'YYYY-MM-DD what happened': a touch by me on that date"}
        # `- 2013-06-03 emailed: thanks` is read by YAML as a one-key mapping
        colon = {"type": "object", "minProperties": 1, "maxProperties": 1,
                 "patternProperties": {r"^\s*\d{4}-\d{2}-\d{2}(\s|$)": {"type": "string"}},
                 "additionalProperties": False}
        return {"anyOf": [line, colon, handler(core)]}


LogEntry = Annotated[Touch, BeforeValidator(_touch_from_line), _LogLineToo]


class Trigger(_Model):
    """A one-off follow-up `after` a status is entered, doing `do`."""

    after: GapT = Duration(0, "d")
    do: Template
    at: TimeT | None = None


class OneOff(_Model):
    """A follow-up on a fixed date (`follow_ups:` item)."""

    on: DateT
    do: Template
    id: Annotated[str, Field(pattern=LEAD_ID)] | None = None
    at: TimeT | None = None
    all_day: bool | None = None
    done: bool = False


class Settings(_Model):
    """The keys `defaults:` holds and every lead may override; unset means inherited."""

    cadence: Annotated[list[GapT], Field(min_length=1), BeforeValidator(one_as_list),
                       OneOrList] | None = None
    give_up_after: Annotated[int, Field(ge=1)] | None = None
    at: TimeT | None = None
    all_day: bool | None = None
    duration: DurationT | None = None
    spread: bool | None = None  # same-day items at one time laid end to end (default true)
    alarms: Annotated[list[DurationT], BeforeValidator(one_as_list), OneOrList] | None = None
    as_: Kind | None = Field(default=None, alias="as")
    overdue: Literal["roll", "keep"] | None = None
    days: Annotated[list[WeekdayT], Field(min_length=1), BeforeValidator(one_as_list),
                    OneOrList] | None = None
    closed: list[Text] | None = None
    action: Template | None = None
    title: TitleTemplate | None = None
    on_status: dict[str, Trigger] | None = None
    on_other_status: dict[str, Trigger] | None = None


class Lead(Settings):
    """One person being chased."""

    name: Annotated[Text, Field(min_length=1)]
    org: Text | None = None
    role: Text | None = None
    email: Annotated[list[EmailT], Field(min_length=1), BeforeValidator(one_as_list),
                     OneOrList] | None = None  # one address or a list
    phone: Text | None = None
    url: Text | None = None
    tags: list[Text] = []
    status: Text | None = None
    status_since: DateT | None = None
    notes: Text | None = None
    last_contact: DateT | None = None
    log: list[LogEntry] = []
    next: DateT | None = None
    snooze_until: DateT | None = None
    follow_ups: list[OneOff] = []

    def addresses(self) -> tuple[str, ...]:
        """The lead's mail addresses, lower-cased (mail is matched on these, README "Mail")."""
        return tuple(dict.fromkeys(a.strip().lower() for a in self.email or [] if a.strip()))

    def email_text(self) -> str:
        """Every address as one line of text (for DESCRIPTION)."""
        return ", ".join(self.email or [])

    def first_email(self) -> str:
        """The first address ({email} in templates)."""
        return (self.email or [""])[0]

    @field_validator("follow_ups")
    @classmethod
    def _unique_one_offs(cls, items: list[OneOff]) -> list[OneOff]:
        seen: set[str] = set()
        for item in items:
            key = item.id or item.on.isoformat()
            if key in seen:
                raise Invalid(f"two follow_ups share {key!r}",
                              "give each of them its own `id:` (lowercase letters, digits, -)")
            seen.add(key)
        return items


class LeadFile(_Model):
    """The whole lead file."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True,
        json_schema_extra={"title": "followsync lead file"},
    )
    version: Literal[1] = 1
    defaults: Settings = Settings()
    leads: dict[Annotated[str, Field(pattern=LEAD_ID)], Lead] | None = None


def _touch_as_validated(touch: Touch) -> bool:
    """What `_with_moment` makes of a touch's `at`: its day's date and that time, no zone
    (the lead cache checks it of a touch read back: a zone would break every comparison)."""
    return touch.at is None or (touch.at.tzinfo is None and touch.at.date() == touch.date)


# What the lead cache may rebuild from its file (leadcache.Codec): a lead, exactly as validated.
CODEC = Codec(Lead, (Lead, Touch, OneOff, Trigger), (Duration,),
              invariants={Touch: _touch_as_validated})


@dataclass(frozen=True)
class Policy:
    """Effective settings for one lead after defaults and overrides."""

    cadence: tuple[Duration, ...] = (Duration(1, "w"), Duration(2, "w"), Duration(1, "mo"))
    give_up_after: int | None = None
    at: time = time(9, 0)
    all_day: bool = False
    duration: Duration = Duration(15, "m")
    spread: bool = True
    alarms: tuple[Duration, ...] = (Duration(0, "m"),)
    kind: Kind = "event"
    overdue: Literal["roll", "keep"] = "roll"
    days: tuple[int, ...] = tuple(range(7))  # weekdays a follow-up may fall on, Monday = 0
    closed: frozenset[str] = frozenset({"closed", "hired", "declined", "lost", "won", "dead"})
    action: str = "follow up"  # the title names the person: the action need not
    title: str = "{name}: {action}"
    on_status: tuple[tuple[str, Trigger], ...] = ()
    on_other_status: tuple[tuple[str, Trigger], ...] = ()

    def apply(self, settings: Settings) -> Policy:
        """These settings on top of this policy (only the keys the user wrote count)."""
        given = settings.model_fields_set
        changes: dict[str, Any] = {}
        for name in ("give_up_after", "overdue", "action", "title", "duration", "at"):
            if name in given:
                value = getattr(settings, name)
                if value is not None or name == "give_up_after":
                    changes[name] = value
        if "at" in given and settings.at is not None and "all_day" not in given:
            changes["all_day"] = False
        if "all_day" in given and settings.all_day is not None:
            changes["all_day"] = settings.all_day
        if settings.spread is not None:
            changes["spread"] = settings.spread
        for name in ("cadence", "alarms"):
            value = getattr(settings, name)
            if value is not None:
                changes[name] = tuple(value)
        if settings.days is not None:
            changes["days"] = tuple(sorted({WEEKDAYS.index(day) for day in settings.days}))
        if settings.as_ is not None:
            changes["kind"] = settings.as_
        if settings.closed is not None:
            changes["closed"] = frozenset(settings.closed)
        for name in ("on_status", "on_other_status"):
            value = getattr(settings, name)
            if value is not None:
                merged = dict(getattr(self, name)) | value
                changes[name] = tuple(sorted(merged.items()))
        return _replace(self, changes)


def _replace(policy: Policy, changes: dict[str, Any]) -> Policy:
    from dataclasses import replace

    return replace(policy, **changes) if changes else policy


@dataclass(frozen=True)
class LoadedLead:
    """A lead with its id, effective policy and the file it came from."""

    id: str
    lead: Lead
    policy: Policy
    file: str


@dataclass
class LeadBook:
    """Every lead of every lead file, by id, plus what is needed to locate them again."""

    leads: dict[str, LoadedLead] = field(default_factory=dict)
    # Where each lead file was cut into slices (leadsplit): its layout, and each lead's
    # slice digest; a file that could not be cut has no layout (sync.delta needs every file
    # cut). The YAML node trees are not kept: they do not outlive validation.
    layouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # leadsplit.layout_of
    digests: dict[str, str] = field(default_factory=dict)


def parse_lead_file(
    file: str, data: bytes, seen: Composed | None = None
) -> tuple[LeadFile, Source]:
    """Parse one lead file's bytes; ConfigError lists every problem found."""
    source = load(file, data, seen)
    if source.value is None:
        # An empty file is far more often a failed save than a wish to drop every lead.
        raise ConfigError([Problem(file, 1, 1, "the lead file is empty",
                                   "write `version: 1` and your `leads:` (an empty list is "
                                   "`leads: {}`), or start from `followsync init`")])
    if not isinstance(source.value, dict):
        raise ConfigError([source.problem((), "a lead file is a mapping with `leads:` in it",
                                          "start from `followsync init` or the README's example")])
    return validate(LeadFile, source), source


def load_leads(
    paths: list[Path], display: dict[Path, str] | None = None,
    named_at: Mapping[Path, tuple[str, int, int]] | None = None,
    shortcuts: Path | None = None,
) -> LeadBook:
    """Load every lead file; ids must be unique across them. All problems are reported at once.

    `named_at` says where the config names each file, so a missing one is reported there.
    `shortcuts` is the folder of the lead cache on disk (`state_dir/shortcuts`; None: the
    cache is kept in memory only).
    """
    with paused_gc():
        return _load_leads(paths, display, named_at, shortcuts)


def _load_leads(
    paths: list[Path], display: dict[Path, str] | None,
    named_at: Mapping[Path, tuple[str, int, int]] | None, shortcuts: Path | None,
) -> LeadBook:
    book = LeadBook()
    problems: list[Problem] = []
    for path in paths:
        name = (display or {}).get(path, str(path))
        origin = (named_at or {}).get(path, (name, 1, 1))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            what = "lead file not found" + (f": {name}" if origin[0] != name else "")
            problems.append(Problem(*origin, what,
                                    "check `leads:` in the config, or run `followsync init`"))
            continue
        except IsADirectoryError:
            problems.append(Problem(*origin, f"the lead file {name} is a folder",
                                    "point `leads:` in the config at a .yaml file"))
            continue
        except OSError as exc:
            problems.append(Problem(name, 1, 1, f"cannot read the lead file: {exc.strerror}",
                                    "check the file's permissions"))
            continue
        parts = _split(data)
        cache = for_file(path, parts.head_key, shortcuts, CODEC) if parts is not None else None
        if parts is not None and cache is not None:  # (also cold: see _read_batch)
            quick = _parse_by_slices(name, parts, cache)
            if quick is not None and not any(lead_id in book.leads for lead_id, _ in quick[1]):
                base = Policy().apply(quick[0])
                for lead_id, lead in quick[1]:
                    book.leads[lead_id] = LoadedLead(lead_id, lead, base.apply(lead), name)
                _cut(book, name, parts, data)
                continue
        # the whole file at once: the reference, and where every problem is located
        seen = Composed()
        try:
            parsed, source = parse_lead_file(name, data, seen)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if parts is not None and cache is not None and not seen.aliases and \
                _fill_cache(cache, parts, source, parsed):
            _cut(book, name, parts, data)
        base = Policy().apply(parsed.defaults)
        for lead_id, lead in (parsed.leads or {}).items():
            if lead_id in book.leads:
                other = book.leads[lead_id].file
                problems.append(source.problem(("leads", lead_id), f"lead id {lead_id!r} is "
                                               f"already used in {other}",
                                               "lead ids must be unique across lead files",
                                               key=True))
                continue
            book.leads[lead_id] = LoadedLead(lead_id, lead, base.apply(lead), name)
        del source, parsed  # the node tree does not outlive validation
    problems += _shared_addresses(book, paths, display)
    if problems:
        raise ConfigError(problems)
    return book


def _shared_addresses(
    book: LeadBook, paths: list[Path], display: dict[Path, str] | None
) -> list[Problem]:
    """An address on two leads (ignoring case) is an error at the second, in file order:
    its mail could not tell them apart. Checked on the leads however they were read (the
    cache, the whole file); a clash is located by reading its file again."""
    owner: dict[str, str] = {}
    clashes: list[tuple[LoadedLead, int, str]] = []  # the lead, the address's index, the first
    for item in book.leads.values():
        for index, address in enumerate(item.lead.email or ()):
            first = owner.setdefault(address.lower(), item.id)
            if first != item.id:
                clashes.append((item, index, first))
    if not clashes:
        return []
    path_of = {(display or {}).get(path, str(path)): path for path in paths}
    sources: dict[str, Source | None] = {}
    for item, _, _ in clashes:
        if item.file not in sources:
            sources[item.file] = _reread(item.file, path_of.get(item.file))
    return [_clash(item, index, book.leads[first], sources[item.file])
            for item, index, first in clashes]


def _reread(file: str, path: Path | None) -> Source | None:
    """A lead file read again (its YAML only) to locate a problem found after loading."""
    try:
        return load(file, path.read_bytes()) if path is not None else None
    except (OSError, ConfigError):
        return None


def _clash(item: LoadedLead, index: int, first: LoadedLead, source: Source | None) -> Problem:
    address = (item.lead.email or [""])[index]
    elsewhere = f" (in {first.file})" if first.file != item.file else ""
    hint = (f"two leads may not share an address (its mail could not tell them apart): keep "
            f"it on {first.id!r} or on {item.id!r}, not both")
    where: list[str | int] = ["leads", item.id, "email"]
    leads = source.value.get("leads") if source is not None and \
        isinstance(source.value, dict) else None
    lead = leads.get(item.id) if isinstance(leads, dict) else None
    if isinstance(lead, dict) and isinstance(lead.get("email"), list):
        where.append(index)  # (one address written alone is the list of one)
    shown = ".".join(str(x + 1) if isinstance(x, int) else x for x in where)
    message = f"{shown}: {address} is also the email of lead {first.id!r}{elsewhere}"
    if source is None:
        return Problem(item.file, 1, 1, message, hint)
    return source.problem(where, message, hint)


SLICE_DEPTH = 20  # deeper slices are parsed with the whole file (limits counted from there)


def _split(data: bytes) -> Split | None:
    """The file cut into lead slices (leadsplit), when it is text followsync could read."""
    if len(data) > MAX_BYTES:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return split(text) if "\x00" not in text else None


def _parse_by_slices(
    file: str, parts: Split, cache: LeadCache[Lead]
) -> tuple[Settings, list[tuple[str, Lead]]] | None:
    """The file's defaults and leads read slice by slice, each lead from the cache when its
    text was validated before; None on any doubt or problem, and the caller reads the whole
    file: the result is always what `parse_lead_file` gives (tests/test_scale.py), and every
    problem is located by reading the whole file."""
    from pydantic import ValidationError

    head_seen = Composed()
    try:
        head = load(file, parts.head.encode(), head_seen)
        if not isinstance(head.value, dict) or head.value.get("leads", 0) is not None or \
                head.where(("leads",), key=True) != (parts.leads_line + 1, 1):
            return None
        defaults = LeadFile.model_validate(head.value).defaults
    except (ConfigError, ValidationError):
        return None
    del head
    if len({piece.lead_id for piece in parts.slices}) != len(parts.slices):
        return None  # a repeated id: the whole file says where
    missing = [piece for piece in parts.slices if piece.digest not in cache.entries]
    for start in range(0, len(missing), BATCH):
        _read_batch(file, missing[start:start + BATCH], cache)
    leads: list[tuple[str, Lead]] = []
    nodes = head_seen.nodes
    for piece in parts.slices:
        digest = piece.digest
        entry = cache.get(digest)
        if entry is None:
            entry = _lead_of_slice(file, piece.lead_id, piece.text)
            if entry is None:
                return None
            cache.put(digest, entry)
        leads.append((piece.lead_id, entry[0]))
        nodes += entry[1]
    if nodes > MAX_NODES:
        return None
    cache.write()
    return defaults, leads


def _cut(book: LeadBook, name: str, parts: Split, data: bytes) -> None:
    from followsync.leadsplit import layout_of

    layout = layout_of(data, parts)
    if layout is not None:
        book.layouts[name] = layout
        book.digests.update((piece.lead_id, piece.digest) for piece in parts.slices)


def _fill_cache(cache: LeadCache[Lead], parts: Split, source: Source, parsed: LeadFile) -> bool:
    """After reading the whole file: each lead into the cache under its slice's digest, when
    the file's own nodes show the split cut it exactly there (same ids, same lines)."""
    import yaml

    found = source.root and source._child(source.root, "leads")
    if not found or found[0].start_mark.line != parts.leads_line or \
            not isinstance(found[1], yaml.MappingNode) or not parsed.leads:
        return False
    pairs = found[1].value
    if len(pairs) != len(parts.slices) or len(parsed.leads) != len(pairs):
        return False
    for (key, value), piece in zip(pairs, parts.slices, strict=True):
        if key.value != piece.lead_id or key.start_mark.line != piece.line:
            return False
        # and the slice's own mapping and key: what composing the slice alone counts
        cache.put(piece.digest, (parsed.leads[piece.lead_id], _nodes(value) + 2))
    cache.write()
    return True


BATCH = 200  # slices read as one YAML document when the cache does not know them


def _nodes(node: Any) -> int:
    """How many YAML nodes a lead's value holds (the cache keeps it for the size limit)."""
    import yaml

    count, stack = 0, [node]
    while stack:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for pair in node.value:
                stack.extend(pair)
    return count


def _read_batch(file: str, pieces: list[Slice], cache: LeadCache[Lead]) -> None:
    """Slices not in the cache, read and validated together: one parse and one validation
    instead of one each (a first read of 50,000 leads), and a small node tree at a time
    instead of the whole file's (926 MB then). On any doubt nothing is added, and each
    slice is read alone (`_lead_of_slice`)."""
    import yaml
    from pydantic import ValidationError

    ids = [piece.lead_id for piece in pieces]
    seen = Composed()
    try:
        source = load(file, "".join(piece.text for piece in pieces).encode(), seen)
    except ConfigError:
        return
    root = source.root
    if seen.aliases or seen.depth > SLICE_DEPTH or not isinstance(source.value, dict) or \
            list(source.value) != ids or not isinstance(root, yaml.MappingNode) or \
            [key.value for key, _ in root.value] != ids:
        return
    try:
        leads = LeadFile.model_validate({"leads": source.value}).leads or {}
    except ValidationError:
        return
    for (_, value), piece in zip(root.value, pieces, strict=True):
        cache.put(piece.digest, (leads[piece.lead_id], _nodes(value) + 2))  # + mapping, key


def _lead_of_slice(file: str, lead_id: str, text: str) -> tuple[Lead, int] | None:
    """One lead's slice parsed and validated alone, or None on any problem or doubt."""
    from pydantic import ValidationError

    seen = Composed()
    try:
        value = load(file, text.encode(), seen).value
    except ConfigError:
        return None
    if seen.aliases or seen.depth > SLICE_DEPTH or not isinstance(value, dict) or \
            list(value) != [lead_id]:
        return None
    try:
        leads = LeadFile.model_validate({"leads": value}).leads
    except ValidationError:
        return None
    return (leads[lead_id], seen.nodes) if leads else None


def expand(template: str, lead: Lead) -> str:
    """Fill {name} {org} {role} {email} in one pass, so text inside them is never expanded."""
    values = {"name": lead.name, "org": lead.org or "", "role": lead.role or "",
              "email": lead.first_email()}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


_SEPARATORS = " \t:;,|/\u2013\u2014-"  # what may stand between {name} and the rest
_NAME_AND_SEPARATOR = re.compile(r"\{name\}[" + re.escape(_SEPARATORS) + "]*")


def title(template: str, action: str, lead: Lead) -> str:
    """The item's title: `template` with {action} and the lead's details filled in.

    An action that already names the person ("Send Dana Whitfield the deck") is not prefixed
    with the name again: {name} and the separators after it are left out. A title that starts
    with the action starts with a capital letter.
    """
    name = lead.name.strip()
    if name and name.casefold() in action.casefold():
        template = _NAME_AND_SEPARATOR.sub("", template)
    values = {"name": lead.name, "org": lead.org or "", "role": lead.role or "",
              "email": lead.first_email(), "action": action}
    text = " ".join(_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)),
                                     template).split()).strip(_SEPARATORS)
    flat = " ".join(action.split())
    if flat and text.startswith(flat):
        text = text[:1].upper() + text[1:]
    return text or flat


def schema() -> dict[str, Any]:
    """The JSON Schema of the lead file, for editors."""
    result = LeadFile.model_json_schema(by_alias=True)
    result["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return result


__all__ = ["Lead", "LeadBook", "LeadFile", "LoadedLead", "MailTouch", "OneOff", "Policy", "Touch", "Trigger",
           "date", "expand", "load_leads", "parse_lead_file", "schema", "title"]
