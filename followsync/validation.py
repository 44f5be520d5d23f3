"""Pydantic field types for our YAML forms, and pydantic errors mapped to FILE:LINE:COL.

Shared by the lead file and the config so both report problems the same way.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from datetime import date, time
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails

from followsync.durations import DURATION_FORM, Duration, parse_date, parse_duration, parse_time
from followsync.errors import ConfigError, Problem
from followsync.yamlsrc import Source


class Invalid(ValueError):
    """A value the user wrote wrong: the message names it, the hint says what to write."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


DATE_HINT = "write YYYY-MM-DD, e.g. 2026-01-06"
TIME_HINT = 'write HH:MM on a 24-hour clock, e.g. "09:00" or "17:30"'


def _plain(exc: ValueError) -> str:
    # The parsers say what they expected; the hint says that now, so keep only the complaint.
    return str(exc).split("; expected", 1)[0]


def _duration(value: Any) -> Any:
    if isinstance(value, Duration):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Duration(0, "m")
    if not isinstance(value, str):
        raise Invalid(f"not a duration: {value!r}", f"write {DURATION_FORM}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Invalid(_plain(exc), f"write {DURATION_FORM}") from None


GAP_UNITS = "d, w, mo or y"


def _gap(value: Any) -> Any:
    """A gap between follow-ups: whole days. `1m` is a minute, almost always a typo for `1mo`
    that would silently bring a follow-up forward by a month (zero of any unit is zero)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Duration(0, "d")
    gap = _duration(value)
    if gap.unit not in ("m", "h"):
        return gap
    if gap.amount == 0:
        return Duration(0, "d")
    if gap.unit == "m":
        what = "one minute" if gap.amount == 1 else f"{gap.amount} minutes"
        raise Invalid(f"{str(gap)!r} is less than a day",
                      f"`{gap}` is {what}: did you mean `{gap.amount}mo`? gaps between "
                      f"follow-ups are whole days: use {GAP_UNITS}")
    raise Invalid(f"{str(gap)!r} is less than a day",
                  f"gaps between follow-ups are whole days: use {GAP_UNITS}")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAYS_HINT = "write three-letter day names: mon, tue, wed, thu, fri, sat, sun"


def _weekday(value: Any) -> Any:
    """`mon` ... `sun`, any case; anything else (`monday`, `Tues`, 1) is refused with a guess."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if text in WEEKDAYS:
        return text
    guess = next((day for day, full in zip(WEEKDAYS, _FULL_DAYS, strict=True)
                  if len(text) >= 3 and full.startswith(text)), None)
    if guess is None:
        close = difflib.get_close_matches(text, WEEKDAYS, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f"did you mean {guess!r}? {DAYS_HINT}" if guess else DAYS_HINT
    raise Invalid(f"not a day of the week: {value!r}", hint)


def one_as_list(value: Any) -> Any:
    """One value where a list is expected is a list of one (`cadence: 3w` is `[3w]`)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return [value]
    return value


class OneOrList:
    """JSON Schema: a list that may also be written as its single item."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        listed = handler(core)
        return {"anyOf": [listed.get("items", {}), listed]}


def _date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise Invalid(f"not a date: {value!r}", DATE_HINT)
    try:
        return parse_date(value)
    except ValueError as exc:
        raise Invalid(_plain(exc), DATE_HINT) from None


def _time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise Invalid(f"not a time of day: {value!r}", TIME_HINT)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise Invalid(_plain(exc), TIME_HINT) from None


def _text(value: Any) -> Any:
    # An unquoted phone number or org name made only of digits is still text to the user.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# a plain address (dot-atom@host name): what nearly every lead has, taken without the parser
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
EMAIL_HINT = ("write one address, e.g. dana@acme.example, or a name and one address: "
              "Dana W <dana@acme.example>")
_COUNTS = {2: "two", 3: "three"}


def _email(value: Any) -> Any:
    """One address: `Dana W <dana@acme.example>` (pasted from a mail client) is its
    addr-spec, dana@acme.example. Anything else is refused (it would match no mail, and the
    lead's answers would vanish): a list written as one text, a name alone, a `mailto:`."""
    text = _text(value)
    if not isinstance(text, str):
        raise Invalid(f"not an email address: {value!r}", EMAIL_HINT)
    text = text.strip()
    if _PLAIN_ADDRESS.fullmatch(text):
        return text
    if not text:
        raise Invalid("no address", "write an address, or leave out `email:`")
    found = _addresses(text)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        count = _COUNTS.get(len(found), str(len(found)))
        raise Invalid(f"{text!r} is more than one address",
                      f"{count} addresses: write a list [{', '.join(found)}]")
    link = _addresses(text[7:]) if text[:7].lower() == "mailto:" else []
    hint = f"leave out `mailto:`: write {link[0]}" if len(link) == 1 else EMAIL_HINT
    raise Invalid(f"not an email address: {text!r}", hint)


def _addresses(text: str) -> list[str]:
    """The addr-specs `text` holds when it is a clean address list (`Name <a@b>, c@d`, or
    plain addresses between commas, semicolons or spaces), else []: the standard library's
    RFC 5322 parser decides, and any defect it reports (a missing `>`, an address used as
    a display name without quotes, a bare word) makes the text no address at all."""
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):  # a line break, a tab
        return []
    plain = [part for part in re.split(r"[\s,;]+", text) if part]
    if plain and all(_PLAIN_ADDRESS.fullmatch(part) for part in plain):
        return plain
    from email.errors import NonASCIILocalPartDefect
    from email.headerregistry import HeaderRegistry

    try:
        header = HeaderRegistry()("to", text)
        groups, defects = header.groups, header.defects  # type: ignore[attr-defined]
    except Exception:  # the parser raises IndexError and others on odd text: not an address
        return []
    if any(group.display_name is not None for group in groups) or \
            any(not isinstance(defect, NonASCIILocalPartDefect) for defect in defects):
        return []
    found = [address for group in groups for address in group.addresses]
    if not found or any(not address.username or not address.domain for address in found):
        return []
    return [address.addr_spec for address in found]


DurationT = Annotated[
    Duration,
    BeforeValidator(_duration),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(m|h|d|w|mo|y)$",
                    "description": DURATION_FORM}),
]
DateT = Annotated[date, BeforeValidator(_date), WithJsonSchema({"type": "string", "format": "date"})]
TimeT = Annotated[
    time, BeforeValidator(_time),
    WithJsonSchema({"type": "string", "pattern": r"^([01]?\d|2[0-3]):[0-5]\d$"}),
]
Text = Annotated[str, BeforeValidator(_text)]
EmailT = Annotated[
    str, BeforeValidator(_email),
    WithJsonSchema({"type": "string", "description": "one address: dana@acme.example, or "
                    "Dana W <dana@acme.example> (taken as dana@acme.example)"}),
]
GapT = Annotated[
    Duration,
    BeforeValidator(_gap),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(d|w|mo|y)|0+(m|h))$",
                    "description": "whole days: an integer and d, w, mo or y, e.g. 3d, 2w, 1mo"}),
]
WeekdayT = Annotated[
    str,
    BeforeValidator(_weekday),
    WithJsonSchema({"type": "string", "pattern": "^(" + "|".join(
        "".join(f"[{c.upper()}{c}]" for c in day) for day in WEEKDAYS) + ")$",
        "description": "a day of the week: mon, tue, wed, thu, fri, sat or sun"}),
]

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], source: Source, path: tuple[str | int, ...] = ()) -> M:
    """Validate `source.value` as `model`; every error becomes a located Problem."""
    value = source.value if source.value is not None else {}
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
    groups: dict[tuple[str | int, ...], list[ErrorDetails]] = {}
    for err in errors:
        loc = _clean_loc(value, err["loc"], keep_last=err["type"] == "missing")
        groups.setdefault(loc, []).append({**err, "loc": loc + _key_mark(err)})
    problems: dict[Problem, None] = {}  # in order, each once (a set: no quadratic search)
    for loc, group in groups.items():
        merged = _merge_alternatives(source, path + loc, group)
        if merged is not None:
            problems[merged] = None
            continue
        for err in group:
            problems[to_problem(model, source, err, path)] = None
    raise ConfigError(list(problems))


_NOUNS = {"string_type": "text", "list_type": "a list", "bool_type": "true/false",
          "bool_parsing": "true/false", "int_type": "a whole number",
          "int_parsing": "a whole number", "float_type": "a number", "float_parsing": "a number",
          "dict_type": "a mapping", "model_type": "a mapping"}


def _merge_alternatives(
    source: Source, full: tuple[str | int, ...], group: list[ErrorDetails]
) -> Problem | None:
    """A value that fits none of a key's alternatives (text or a list, ...) is one problem."""
    if len(group) < 2 or not all(err["type"] in _NOUNS for err in group):
        return None
    nouns = list(dict.fromkeys(_NOUNS[err["type"]] for err in group))
    shown = _dotted(full)
    return source.problem(full, f"{shown}: expected {' or '.join(nouns)}, got "
                                f"{_kind_of(group[0]['input'])}",
                          f"write {' or '.join(nouns)}")


def _dotted(loc: tuple[str | int, ...]) -> str:
    """A path for a message, `leads.dana.log.1`: list entries count from 1, as people count
    them; a key with a line break or another unprintable character is quoted, so no message
    ever spans two lines."""
    return ".".join(str(x + 1) if isinstance(x, int) else x if x.isprintable() else repr(x)
                    for x in loc)


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _key_mark(err: ErrorDetails) -> tuple[str, ...]:
    return ("[key]",) if "[key]" in err["loc"] else ()


def _clean_loc(
    value: Any, loc: tuple[str | int, ...], keep_last: bool
) -> tuple[str | int, ...]:
    """The error's path in the file: pydantic's own steps (union members, validators) dropped.

    A step is kept only if the file has it, so a union member named like a type is never
    mistaken for a key; a missing key, the one step the file cannot have, is kept.
    """
    out: list[str | int] = []
    current = value
    for index, item in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(item, str) and item in current
        if _is_internal(item) and not in_dict:  # a user's key may hold "[" too: `v[ersion:`
            continue
        in_list = isinstance(current, list) and isinstance(item, int) and 0 <= item < len(current)
        if in_dict or in_list:
            current = current[item]
        elif not (keep_last and index == len(loc) - 1):
            continue
        out.append(item)
    return tuple(out)


_ICS = ("ics", "an .ics file; 'caldav' is a calendar on a server")
_CALDAV = ("caldav", "a calendar on a server; 'ics' is a local .ics file")
_GOOGLE = ("google", "Google Calendar through its API (see README, \"Google Calendar\")")
# Other names people give a choice, checked before spelling: `type: ical` is closer in
# letters to 'caldav' than to 'ics', but means an .ics file.
ALIASES: dict[str, tuple[str, str]] = {
    **{name: _ICS for name in ("ical", "icalendar", "ics-file", "icsfile", "file", "ical-file",
                               "local", "vcalendar", "ifb", "calendar-file")},
    **{name: _CALDAV for name in ("dav", "webdav", "cal-dav", "nextcloud", "radicale",
                                  "icloud", "fastmail", "baikal", "server")},
    **{name: _GOOGLE for name in ("gcal", "google-calendar", "googlecalendar", "gmail",
                                  "gsuite", "workspace")},
}


def to_problem(
    model: type[BaseModel], source: Source, err: ErrorDetails, prefix: tuple[str | int, ...] = ()
) -> Problem:
    """Turn one pydantic error into a user's message with a hint."""
    on_key = "[key]" in err["loc"]  # the mapping's key itself is wrong (a lead id)
    loc = tuple(item for item in err["loc"] if item != "[key]")  # cleaned by _clean_loc
    full = prefix + loc
    kind = err["type"]
    shown = _dotted(loc)
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = sorted(keys_at(model, loc[:-1]))
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
        return source.problem(full, f"unknown key {name!r}", hint, key=True)
    if kind == "missing":
        where = _dotted(loc[:-1])
        message = f"missing required key {loc[-1]!r}" + (f" in {where}" if where else "")
        # at the key of the mapping that lacks it (a lead's id), not at whatever it holds first
        return source.problem(full[:-1], message, f"add `{loc[-1]}: ...`", key=bool(full[:-1]))
    if kind == "string_pattern_mismatch":
        text = str(err["input"])
        if on_key:
            what = "lead id" if len(loc) == 2 and loc[0] == "leads" else "key"
            return source.problem(full, f"bad {what} {text!r}", _id_hint(err, text), key=True)
        return source.problem(full, f"{shown}: {text!r} is not a valid {loc[-1]}",
                              _id_hint(err, text))
    if kind.startswith("literal_error"):
        expected = str((err.get("ctx") or {}).get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        alias = ALIASES.get(str(err["input"]).strip().lower().replace("_", "-"))
        close = difflib.get_close_matches(str(err["input"]), choices, n=1, cutoff=0.6)
        if alias and alias[0] in choices:
            hint = f"did you mean {alias[0]!r}? ({alias[1]})"
        else:
            hint = f"did you mean {close[0]!r}?" if close else f"write {expected}"
        return source.problem(full, f"{shown}: got {err['input']!r}; expected {expected}", hint)
    if kind in ("too_short", "string_too_short"):
        return source.problem(full, f"{shown} is empty", _hint_for(kind, err))
    if kind in _NOUNS:
        return source.problem(full, f"{shown}: expected {_NOUNS[kind]}, got "
                                    f"{_kind_of(err['input'])}", _hint_for(kind, err))
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        size = "small" if kind.startswith("greater") else "large"
        return source.problem(full, f"{shown}: {err['input']!r} is too {size}",
                              _hint_for(kind, err))
    error = (err.get("ctx") or {}).get("error")
    message = str(error) if isinstance(error, Exception) else err["msg"]
    message = message.removeprefix("Value error, ")
    hint = getattr(error, "hint", "") or _hint_for(kind, err)
    if shown:
        message = f"{shown}: {message[0].lower()}{message[1:]}"
    return source.problem(full, message, hint)


def _id_hint(err: ErrorDetails, text: str) -> str:
    pattern = str((err.get("ctx") or {}).get("pattern", ""))
    upper = "A-Z" in pattern
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text if upper else text.lower()).strip("-._")
    letters = "letters" if upper else "lowercase letters"
    example = f", e.g. {slug!r}" if slug else ""
    return f"use {letters}, digits, '.', '_' and '-', starting with a letter or digit{example}"


def _is_internal(item: str | int) -> bool:
    # pydantic adds names of validators or union members to loc; they are not in the file.
    return isinstance(item, str) and (item.startswith("function-") or "[" in item)


def _hint_for(kind: str, err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    if kind in ("list_type", "tuple_type"):
        return "write a list: [a, b] or one '- item' per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping of 'key: value' lines indented under this key"
    bounds = {"greater_than_equal": ("ge", "of at least"), "greater_than": ("gt", "above"),
              "less_than_equal": ("le", "of at most"), "less_than": ("lt", "below")}
    if kind in bounds:
        name, words = bounds[kind]
        return f"write a number {words} {ctx.get(name)}"
    if kind.startswith("int"):
        return "write a whole number"
    if kind.startswith("float"):
        return "write a number"
    if kind.startswith("bool"):
        return "write true or false"
    if kind in ("too_short", "string_too_short"):
        return "give at least one entry" if isinstance(err["input"], list) else "write a value"
    if kind.startswith("string"):
        return "write text (quote it if it starts with a special character)"
    return "see the README (or `followsync schema`) for what this key takes"


def keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> set[str]:
    """The keys allowed in the mapping at `loc` inside `model` (for "did you mean")."""
    current: Any = model
    for item in loc:
        current = _unwrap_to_model(current, item)
        if current is None:
            return set()
    target = _first_model(current)
    if target is None:
        return set()
    return {f.alias or name for name, f in target.model_fields.items()}


def _unwrap_to_model(annotation: Any, item: str | int) -> Any:
    target = _first_model(annotation)
    if target is not None:
        field = next((f for n, f in target.model_fields.items() if (f.alias or n) == item), None)
        return field.annotation if field is not None else None
    bare = _strip(annotation)
    origin, args = typing.get_origin(bare), typing.get_args(bare)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _strip(annotation: Any) -> Any:
    """Remove Annotated[...] and `| None` wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) == 1:
                annotation = rest[0]
                continue
        return annotation


def _first_model(annotation: Any) -> type[BaseModel] | None:
    bare = _strip(annotation)
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        return bare
    if typing.get_origin(bare) in (typing.Union, types.UnionType):
        for arg in typing.get_args(bare):
            found = _first_model(arg)
            if found is not None:
                return found
    return None
