"""Pydantic field types for our YAML forms, and pydantic errors mapped to FILE:LINE:COL.

Shared by the lead file and the config so both report problems the same way.
"""

from __future__ import annotations

import difflib
import types
import typing
from datetime import date, time
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, PlainSerializer, ValidationError, WithJsonSchema
from pydantic_core import ErrorDetails

from followsync.durations import DURATION_FORM, Duration, parse_date, parse_duration, parse_time
from followsync.errors import ConfigError, Problem
from followsync.yamlsrc import Source


def _duration(value: Any) -> Any:
    if isinstance(value, Duration):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Duration(0, "m")
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}; expected {DURATION_FORM}")
    return parse_duration(value)


def _date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}; expected YYYY-MM-DD, e.g. 2026-01-06")
    return parse_date(value)


def _time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a time of day: {value!r}; expected HH:MM in quotes, e.g. \"09:00\"")
    return parse_time(value)


def _text(value: Any) -> Any:
    # An unquoted phone number or org name made only of digits is still text to the user.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


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

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], source: Source, path: tuple[str | int, ...] = ()) -> M:
    """Validate `source.value` as `model`; every error becomes a located Problem."""
    value = source.value if source.value is not None else {}
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ConfigError([to_problem(model, source, err, path) for err in exc.errors()]) from None


def to_problem(
    model: type[BaseModel], source: Source, err: ErrorDetails, prefix: tuple[str | int, ...] = ()
) -> Problem:
    """Turn one pydantic error into a user's message with a hint."""
    loc = tuple(item for item in err["loc"] if not _is_internal(item))
    full = prefix + loc
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = sorted(keys_at(model, loc[:-1]))
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
        return source.problem(full, f"unknown key {name!r}", hint, key=True)
    if kind == "missing":
        where = " ".join(str(x) for x in loc[:-1]) or "the file"
        return source.problem(full, f"missing required key {loc[-1]!r} in {where}",
                              f"add `{loc[-1]}: ...`")
    message = err["msg"].removeprefix("Value error, ")
    shown = ".".join(str(x) for x in loc)
    hint = _hint_for(kind, err)
    if kind.startswith("literal_error"):
        message = f"{shown}: got {err['input']!r}; {message[0].lower()}{message[1:]}"
    elif not message.startswith("not a") and shown:
        message = f"{shown}: {message[0].lower()}{message[1:]}"
    return source.problem(full, message, hint)


def _is_internal(item: str | int) -> bool:
    # pydantic adds names of validators or union members to loc; they are not in the file.
    return isinstance(item, str) and (item.startswith("function-") or "[" in item)


def _hint_for(kind: str, err: ErrorDetails) -> str:
    if kind in ("list_type", "tuple_type"):
        return "write a list, e.g. [1w, 2w] or one '- item' per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping of 'key: value' lines indented under this key"
    if kind.startswith("int"):
        return "write a whole number"
    if kind.startswith("bool"):
        return "write true or false"
    if kind.startswith("string"):
        return "write text (quote it if it starts with a special character)"
    return ""


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
