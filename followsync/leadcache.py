"""Validated leads kept by the digest of their own text, so a save re-validates what changed.

A lead's validated form depends only on its slice of the file (see leadsplit) and on this
followsync: the cache of one lead file is keyed by `fingerprint.code()` (followsync's own
sources and libraries), the file's path and its head (`version:` and `defaults:`: a change
there validates everything again). It lives in memory, one per lead file (the daemon keeps
the newest between saves), and in the state folder's `shortcuts/leads-<hash of the path>.json`
(a one-shot command reads it), written when it changed, at the end of the process (after
the calendars), atomically and 0600 (names, addresses and notes are in it), and only into
a state folder that exists (a sync made it).

The file is JSON, never code (README, "What followsync keeps"): a header line (what it is,
the key, the digest of the rest) and the body, each lead as its model's name and the fields
the lead file set. It is rebuilt with an allow-list of classes the caller gives (`Codec`),
field by field, exactly as validated (tests/test_leadcache.py). Its digest only catches
damage, so each value read back is checked against what validation could have made of its
field: the declared type, and the constraints the field declares (`_check_of`). A file that
is not the user's own, not 0600, not of this key, or that does not read back cleanly in any
way, is ignored and rebuilt: it is only a shortcut. This module deals in plain data and never
imports the models (leads.py does, and passes them).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

from followsync import fingerprint
from followsync.atomic import read_private, write_private
from followsync.durations import MAX_YEAR, MIN_YEAR

log = logging.getLogger(__name__)

V = TypeVar("V")
FORMAT = "followsync lead cache 1"  # a new layout of the file: a new name here
MAX_FILE = 1 << 30  # a file larger than this was not written by us
_DATA = (str, int, float, bool, type(None))


class Codec(Generic[V]):
    """Validated pydantic models (and frozen dataclass values) as JSON-able data, and back.

    `models` and `values` are the only classes a file may name; `root` is what each entry
    must be. Encoding refuses anything it could not give back exactly (TypeError): a model
    field left unset that does not hold its default, a zone that is not a fixed offset,
    a value of another type. Decoding rebuilds a model as its validation made it (its
    fields, which of them were set, no extras) without running validation again, but
    checks every value against its field (type and declared constraints) and each model
    against `invariants` (what its validators enforce across fields): ValueError for
    anything validation could not have made."""

    def __init__(self, root: type[V], models: Iterable[type[Any]],
                 values: Iterable[type[Any]] = (),
                 invariants: Mapping[type[Any], Callable[[Any], bool]] | None = None) -> None:
        self.root = root
        models, values = list(models), list(values)
        known = frozenset((*models, *values))
        self.models = {model.__name__: _Template(model, known, (invariants or {}).get(model))
                       for model in models}
        self.values = {value.__name__: value for value in values}
        assert all(dataclasses.is_dataclass(value) for value in self.values.values())
        self._value_checks = {value: _check_of(value, known) for value in values}
        # how each type is written, by its exact type (a subclass is refused)
        self._writers: dict[type[Any], Callable[[Any], Any]] = {
            **dict.fromkeys(_DATA, _same), list: self._list, dict: self._dict,
            date: _date, datetime: _moment, time: _moment,
            **{template.model: functools.partial(template.encode, encode=self.encode)
               for template in self.models.values()},
            **{value: self._value for value in self.values.values()}}

    def encode(self, value: Any) -> Any:
        write = self._writers.get(type(value))
        if write is None:
            raise TypeError(f"no cache form for {type(value).__name__}")
        return write(value)

    def _list(self, value: list[Any]) -> list[Any]:
        return [self.encode(item) for item in value]

    def _dict(self, value: dict[Any, Any]) -> dict[str, Any]:
        if not all(type(key) is str for key in value):
            raise TypeError("a mapping with keys other than text")
        return {"$map": [[key, self.encode(item)] for key, item in value.items()]}

    def _value(self, value: Any) -> dict[str, Any]:
        return {"$v": type(value).__name__,
                "f": [self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)]}

    def decode(self, data: bytes) -> Any:
        return json.loads(data, object_hook=self._hook)

    def _hook(self, found: dict[str, Any]) -> Any:
        if len(found) == 1:
            ((tag, text),) = found.items()
            make = _TAGS.get(tag)
            if make is not None:
                return make(text)
        name = found.pop("$m", None)
        if name is not None:
            return self.models[name].build(found)
        name = found.pop("$v", None)
        if name is not None and found.keys() == {"f"}:
            value = self.values[name](*found["f"])
            if not self._value_checks[type(value)](value):
                raise ValueError(f"a {name} validation could not have made")
            return value
        raise ValueError("not a value of the cache")  # (every mapping written is tagged)


_TAGS: dict[str, Callable[[Any], Any]] = {
    "$d": date.fromisoformat, "$dt": datetime.fromisoformat, "$t": time.fromisoformat,
    "$map": dict}


def _same(value: Any) -> Any:
    return value


def _date(value: date) -> dict[str, str]:
    return {"$d": value.isoformat()}


def _moment(value: datetime | time) -> dict[str, str]:
    """A datetime or time as ISO text; one whose text would read back otherwise (a named
    zone, a fold) is refused."""
    zone = value.tzinfo
    text = value.isoformat()
    if (zone is not None and type(zone) is not timezone) or value.fold or \
            repr(type(value).fromisoformat(text)) != repr(value):
        raise TypeError(f"{value!r} does not read back as ISO text")
    return {"$dt" if type(value) is datetime else "$t": text}


class _Template:
    """How one model class is written and rebuilt: its fields, and the default each unset
    field holds after validation (pydantic gives every instance its own copy of a mutable
    default; so does `build`)."""

    def __init__(self, model: type[Any], known: frozenset[type[Any]] = frozenset(),
                 invariant: Callable[[Any], bool] | None = None) -> None:
        self.model = model
        self.names = frozenset(model.model_fields)
        # what each field may hold (what validation can make of it), and the model as a whole
        self.checks = {name: _constrained(_check_of(info.annotation, known), info.metadata)
                       for name, info in model.model_fields.items()}
        for name, check in _field_validators(model).items():
            self.checks[name] = _both(self.checks[name], check)
        if model.__pydantic_decorators__.model_validators:
            raise TypeError(f"{model.__name__}: no check for a model validator")
        self.invariant = invariant
        self.defaults: dict[str, Any] = {}  # in the order of the fields, as validation
        self.fresh: dict[str, Callable[[], Any]] = {}  # per instance: factories, copies
        self.required: set[str] = set()
        for name, info in model.model_fields.items():
            if info.default_factory is not None:
                self.fresh[name] = info.default_factory
                self.defaults[name] = None
            elif info.is_required():
                self.required.add(name)
                self.defaults[name] = None  # (given by every file: `build` checks)
            else:
                default = info.default
                self.defaults[name] = default
                if type(default) in (list, dict, set) and not default:
                    self.fresh[name] = default.copy  # (what pydantic does with `[]`)
                elif not isinstance(default, (*_DATA, date, time, tuple)) and \
                        not dataclasses.is_dataclass(default):
                    self.fresh[name] = functools.partial(copy.deepcopy, default)
        # what each field holds when the file did not set it (`encode` checks it does)
        self.unset = [(name, self.fresh[name]() if name in self.fresh else default)
                      for name, default in self.defaults.items() if name not in self.required]

    def encode(self, value: Any, encode: Callable[[Any], Any]) -> dict[str, Any]:
        given = value.__pydantic_fields_set__
        held = value.__dict__
        if value.__pydantic_extra__ or value.__pydantic_private__ or \
                len(held) != len(self.names):
            raise TypeError("a model with extra or private values")
        for name, default in self.unset:
            if name not in given:
                found = held[name]
                if found is not default and (type(found) is not type(default)
                                             or found != default):
                    raise TypeError(f"{self.model.__name__}.{name} unset but not its default")
        found = {"$m": self.model.__name__}
        for name in given:
            found[name] = encode(held[name])
        return found

    def build(self, fields: dict[str, Any]) -> Any:
        if not fields.keys() <= self.names or not self.required <= fields.keys():
            raise ValueError(f"not the fields of {self.model.__name__}")
        checks = self.checks
        for name, value in fields.items():
            if not checks[name](value):
                raise ValueError(f"{self.model.__name__}.{name}: not what validation makes")
        values = {**self.defaults, **fields}
        for name, make in self.fresh.items():
            if name not in fields:
                values[name] = make()
        # what pickle did (pydantic's __setstate__): the instance as validation left it
        built = _new(self.model)
        _set(built, "__dict__", values)
        _set(built, "__pydantic_fields_set__", set(fields))
        _set(built, "__pydantic_extra__", None)
        _set(built, "__pydantic_private__", None)
        if self.invariant is not None and not self.invariant(built):
            raise ValueError(f"a {self.model.__name__} validation could not have made")
        return built


# --- what validation can make of a field: its declared type and constraints, as checks ----
Check = Callable[[Any], bool]
_CONSTRAINTS = ("min_length", "max_length", "ge", "gt", "le", "lt", "pattern")


def _check_of(hint: Any, known: frozenset[type[Any]]) -> Check:
    """A check that a value read back is of the declared type `hint`, exactly as validation
    makes it (a bool is no int, a datetime no date); `known` are the classes of the
    allow-list (a model is checked when built, a dataclass value field by field). TypeError
    for a type it cannot check (a new model field type must be taught here)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _constrained(_check_of(args[0], known), hint.__metadata__)
    if origin in (typing.Union, types.UnionType):
        rest = tuple(_check_of(arg, known) for arg in args if arg is not type(None))
        if len(rest) < len(args):
            return _none_or(_any_of(rest))
        return _any_of(rest)
    if origin is typing.Literal:
        return _literal(args)
    if origin is list:
        return _list_of(_check_of(args[0], known))
    if origin is tuple:
        return _tuple_of(args, known)
    if origin is dict:
        return _dict_of(_check_of(args[0], known), _check_of(args[1], known))
    if hint is None or hint is type(None):
        return _is_none
    if hint is Any:
        return _anything
    if hint in (date, datetime):
        return functools.partial(_a_day, hint)
    if hint in (str, int, bool, time) or (hint in known and not dataclasses.is_dataclass(hint)):
        return functools.partial(_exactly, hint)
    if hint in known:  # a value class: its fields, each of its declared type
        hints = typing.get_type_hints(hint)
        fields = tuple((f.name, _check_of(hints[f.name], known))
                       for f in dataclasses.fields(hint))
        return functools.partial(_value_of, hint, fields)
    raise TypeError(f"no check for a value of {hint!r}")


def _constrained(check: Check, metadata: Iterable[Any]) -> Check:
    """`check` and what the metadata of an Annotated type (or a field) declares: length,
    bounds, a pattern, and validators, which must give the value back unchanged (through
    its serializer if it has one: a Duration is validated from its text)."""
    checks = [check]
    items = list(metadata)
    serialize = next((m.func for m in items if type(m).__name__ == "PlainSerializer"), None)
    for item in items:
        kind = type(item).__name__
        if kind in ("BeforeValidator", "AfterValidator"):
            made = serialize if kind == "BeforeValidator" else None
            if len(checks) == 1:  # the type, then the validator: one call (the common case)
                checks[0] = _kept(item.func, made, checks[0])
            else:
                checks.append(_kept(item.func, made))
        elif kind == "FieldInfo":
            checks.append(_constrained(_anything, item.metadata))
        elif any(getattr(item, name, None) is not None for name in _CONSTRAINTS):
            checks.extend(_bounds(item))
        elif kind != "PlainSerializer" and hasattr(item, "__get_pydantic_core_schema__"):
            raise TypeError(f"no check for {item!r}")  # (a wrap or plain validator: teach it)
    return checks[0] if len(checks) == 1 else _all_of(tuple(checks))


def _bounds(item: Any) -> list[Check]:
    found: list[Check] = []
    if getattr(item, "min_length", None) is not None:
        found.append(functools.partial(_at_least, item.min_length))
    if getattr(item, "max_length", None) is not None:
        found.append(functools.partial(_at_most, item.max_length))
    for name, holds in (("ge", _ge), ("gt", _gt), ("le", _le), ("lt", _lt)):
        if getattr(item, name, None) is not None:
            found.append(functools.partial(holds, getattr(item, name)))
    if getattr(item, "pattern", None) is not None:
        found.append(functools.partial(_matches, re.compile(item.pattern)))
    return found


def _at_least(count: int, value: Any) -> bool:
    return len(value) >= count


def _at_most(count: int, value: Any) -> bool:
    return len(value) <= count


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return pattern.search(value) is not None  # (pydantic's pattern: a search, as here)


def _field_validators(model: type[Any]) -> dict[str, Check]:
    """The model's own field validators (`@field_validator`), each as a check that it
    accepts the value unchanged."""
    found: dict[str, Check] = {}
    for name, decorator in model.__pydantic_decorators__.field_validators.items():
        validate = getattr(model, name)
        if decorator.info.mode not in ("before", "after") or \
                len(inspect.signature(validate).parameters) != 1:
            raise TypeError(f"{model.__name__}.{name}: no check for this validator")
        for field in decorator.info.fields:
            check = _kept(validate, None)
            found[field] = _both(found[field], check) if field in found else check
    return found


def _kept(validate: Callable[[Any], Any], serialize: Callable[[Any], Any] | None,
          first: Check | None = None) -> Check:
    """A check that `validate` gives a value back unchanged (from its serialized form if
    it has one), after the check `first` (the value's exact type). Values of an exact type
    that passed are remembered (dates, words and durations repeat from lead to lead)."""
    typed = isinstance(first, functools.partial)
    kind = first.args[0] if typed and first.func is _exactly else None  # type: ignore[union-attr]
    # only values of a hashable type, whose equality is their identity as a value
    remember = kind in (str, int, bool, time) or \
        (typed and first.func in (_a_day, _value_of))  # type: ignore[union-attr]
    passed: set[Any] = set()

    def check(value: Any) -> bool:
        if kind is not None:
            if type(value) is not kind:
                return False
        elif first is None or not first(value):
            return False
        if remember and value in passed:  # (the type was checked, exactly, by `first`)
            return True
        try:
            out = validate(value if serialize is None else serialize(value))
        except Exception:  # (a validator refusing it: validation could not have made it)
            return False
        if out is value or (type(out) is type(value) and repr(out) == repr(value)):
            if remember:
                if len(passed) > _REMEMBERED:
                    passed.clear()
                passed.add(value)
            return True
        return False

    def unremembered(value: Any) -> bool:  # (no type checked first: a list, a mapping)
        try:
            out = validate(value if serialize is None else serialize(value))
        except Exception:
            return False
        return out is value or (type(out) is type(value) and repr(out) == repr(value))

    return unremembered if first is None else check


_REMEMBERED = 1 << 16


# (the combinators are plain loops: a warm load of 10,000 leads runs them a million times)
def _both(first: Check, second: Check) -> Check:
    return lambda v: first(v) and second(v)


def _all_of(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 2:
        return _both(*checks)

    def check(value: Any) -> bool:
        for one in checks:  # noqa: SIM110 (a loop: a generator costs twice as much here)
            if not one(value):
                return False
        return True

    return check


def _any_of(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> bool:
        for one in checks:  # noqa: SIM110 (a loop: a generator costs twice as much here)
            if one(value):
                return True
        return False

    return check


def _none_or(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _literal(allowed: tuple[Any, ...]) -> Check:
    kinds = {(a, type(a)) for a in allowed}
    return lambda v: (v, type(v)) in kinds


def _list_of(item: Check) -> Check:
    def check(value: Any) -> bool:
        if type(value) is not list:
            return False
        for one in value:  # noqa: SIM110 (a loop: a generator costs twice as much here)
            if not item(one):
                return False
        return True

    return check


def _dict_of(key: Check, item: Check) -> Check:
    return lambda v: type(v) is dict and all(key(k) and item(x) for k, x in v.items())


def _tuple_of(args: tuple[Any, ...], known: frozenset[type[Any]]) -> Check:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _check_of(args[0], known)
        return lambda v: type(v) is tuple and all(map(item, v))
    items = tuple(_check_of(arg, known) for arg in args)
    return lambda v: type(v) is tuple and len(v) == len(items) and \
        all(check(x) for check, x in zip(items, v, strict=True))


def _is_none(value: Any) -> bool:
    return value is None


def _anything(value: Any) -> bool:
    return True


def _exactly(kind: type[Any], value: Any) -> bool:
    return type(value) is kind


def _a_day(kind: type[Any], value: Any) -> bool:
    """A date (or datetime) in the years validation accepts (date arithmetic never
    overflows within them)."""
    return type(value) is kind and MIN_YEAR <= value.year <= MAX_YEAR


def _value_of(kind: type[Any], fields: tuple[tuple[str, Check], ...], value: Any) -> bool:
    return type(value) is kind and all(check(getattr(value, name)) for name, check in fields)


def _ge(bound: Any, value: Any) -> bool:
    return bool(value >= bound)


def _gt(bound: Any, value: Any) -> bool:
    return bool(value > bound)


def _le(bound: Any, value: Any) -> bool:
    return bool(value <= bound)


def _lt(bound: Any, value: Any) -> bool:
    return bool(value < bound)


_new = object.__new__
_set = object.__setattr__


_OPEN: dict[Path, LeadCache[Any]] = {}  # one per lead file, the newest: the daemon's
_DIRTY: dict[Path, LeadCache[Any]] = {}  # to write at exit: one per lead file, the newest
_AT_EXIT: list[bool] = []


def for_file(file: Path, head: str, folder: Path | None, codec: Codec[V]) -> LeadCache[V]:
    """The cache of this lead file with this head: the one in memory, else read from
    `folder` (None: none on disk). It replaces the file's older one, in memory and in what
    is written at exit: one cache per lead file, and the newest is the one kept."""
    where = Path(os.path.realpath(file))
    fresh = LeadCache(where, head, folder, codec)
    known = _OPEN.get(where)
    if known is not None and known.key == fresh.key and known.path == fresh.path:
        return known
    if _DIRTY.get(where) is known:
        _DIRTY.pop(where, None)
    fresh.read()
    _OPEN[where] = fresh
    return fresh


class LeadCache(Generic[V]):
    """One lead file's validated leads by slice digest, for one head (see module doc)."""

    def __init__(self, file: Path, head: str, folder: Path | None, codec: Codec[V]) -> None:
        self.file = file
        self.path = None if folder is None else folder / (
            "leads-" + hashlib.blake2b(str(file).encode(), digest_size=12).hexdigest() + ".json")
        self.key = hashlib.blake2b(
            "\0".join((FORMAT, fingerprint.code(), str(file), head)).encode(),
            digest_size=16).hexdigest()
        self.codec = codec
        self.entries: dict[str, tuple[V, int]] = {}  # digest → (lead, its YAML nodes)
        self.used: set[str] = set()
        self.changed = False

    def read(self) -> None:
        """The entries of the file on disk, if it is ours and reads back cleanly; else
        none (whatever went wrong: it is only a shortcut)."""
        if self.path is None:
            return
        try:
            self.entries = self._entries(read_private(self.path, MAX_FILE))
        except Exception as exc:  # anything at all: rebuilt, never an error
            log.debug("lead cache %s not used: %s: %s", self.path, type(exc).__name__, exc)
            self.entries = {}

    def _entries(self, data: bytes | None) -> dict[str, tuple[V, int]]:
        if data is None:
            return {}
        first, _, body = data.partition(b"\n")
        header = json.loads(first)
        if header != {"format": FORMAT, "key": self.key,
                      "body": hashlib.blake2b(body, digest_size=32).hexdigest()}:
            return {}  # another followsync, file or head, or a torn body
        found = self.codec.decode(body)
        entries: dict[str, tuple[V, int]] = {}
        for digest, nodes, lead in found:
            if type(digest) is not str or type(nodes) is not int or nodes < 0 or \
                    type(lead) is not self.codec.root:
                raise ValueError("an entry of another shape")
            entries[digest] = (lead, nodes)
        return entries

    def get(self, digest: str) -> tuple[V, int] | None:
        found = self.entries.get(digest)
        if found is not None:
            self.used.add(digest)
        return found

    def put(self, digest: str, entry: tuple[V, int]) -> None:
        self.entries[digest] = entry
        self.used.add(digest)
        self.changed = True

    def write(self) -> None:
        """Keep the leads of this load only; if anything changed, write the file when the
        process ends (after the calendars: a save reaches them first; a process killed
        meanwhile just leaves the older cache)."""
        if len(self.used) != len(self.entries):
            self.entries = {d: e for d, e in self.entries.items() if d in self.used}
            self.changed = True
        self.used = set()
        if self.changed and self.path is not None and _OPEN.get(self.file) is self:
            if not _AT_EXIT:
                import atexit

                atexit.register(flush)
                _AT_EXIT.append(True)
            _DIRTY[self.file] = self

    def save(self) -> None:
        """Write the cache file now (any failure ignored: it is only a shortcut)."""
        if not self.changed or self.path is None:
            return
        self.changed = False
        try:
            body = json.dumps(list(self._encoded()), ensure_ascii=False,
                              separators=(",", ":"), check_circular=False).encode()
            header = json.dumps({"format": FORMAT, "key": self.key,
                                 "body": hashlib.blake2b(body, digest_size=32).hexdigest()})
            _own_folder(self.path.parent)
            write_private(self.path, [header.encode(), b"\n", body])
        except Exception as exc:  # a shortcut not written is no error
            log.debug("lead cache %s not written: %s: %s", self.path, type(exc).__name__, exc)


    def _encoded(self) -> Iterator[list[Any]]:
        """Each entry as written; one the codec cannot give back exactly is left out (it
        is validated again next time), the others are kept."""
        for digest, (lead, nodes) in self.entries.items():
            try:
                yield [digest, nodes, self.codec.encode(lead)]
            except (TypeError, ValueError, RecursionError) as exc:
                log.debug("lead cache: %s left out: %s", digest, exc)


def _own_folder(folder: Path) -> None:
    """`state_dir/shortcuts`, made 0700 in a state folder that exists (the state makes it,
    and checks it: `validate` or `plan` before a first sync write nothing); OSError if it
    is not a folder of this user's (nothing is written then)."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(f"{folder} is not a folder of this user's")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)


def flush() -> None:
    """Write every changed cache, the newest of each lead file (at exit; tests call it)."""
    while _DIRTY:
        _DIRTY.popitem()[1].save()
