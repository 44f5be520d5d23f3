"""The one way a command loads the config: the validated `Config`, kept between runs as a
shortcut, so that a `followsync sync` with nothing to do needs neither pydantic nor the
config's validation (README, "What followsync keeps").

The shortcut lives in the state folder (`state_dir/shortcuts/config-….json`, 0600), as JSON
that names no class and runs no code: only the types a `Config` holds are read back (a
whitelist), and each field is checked against its type. It is used only when its key, the
config's fingerprint (fingerprint.of_config: followsync's code, the environment, the
config's bytes, mode and place, and where every path it names points now), matches, and
when the `Config` read back says it lives in the folder it was found in. The folder is only
known once the config is read: it is guessed from a `state_dir:` line (else the default),
and a wrong guess only costs a validation. Anything that does not read back cleanly (a
damaged file, an older followsync's, a folder others may write) is ignored: the config is
validated as usual, and the shortcut written again. A config holding a `password:` is never
kept (no secret in a second file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from followsync import fingerprint
from followsync.config import Config, MailConfig, Target, default_state_dir, load_config
from followsync.durations import MAX_AMOUNT, Duration

FORMAT = "followsync config 1"  # (first line; bump when the file's shape changes)
MAX_FILE = 1 << 20  # a config shortcut larger than this was not written by us
SHORTCUTS = "shortcuts"  # the state folder's subfolder of shortcuts
_STATE_DIR = re.compile(rb"^state_dir:[ \t]*(.*?)[ \t]*(?:#.*)?$", re.MULTILINE)


def load_config_cached(path: Path) -> Config:
    """`load_config(path)`, from the shortcut when it matches (see the module doc)."""
    try:
        data = path.read_bytes()
    except OSError:
        return load_config(path)  # it reports the problem
    guess = _guess_state_dir(path, data)
    with contextlib.suppress(Exception):  # anything not read back cleanly: validate
        found = _read(shortcut_path(guess, path), path, guess)
        if found is not None:
            return found
    read = fingerprint.of_config(path, ()).besides("places")  # the file as validated
    config = load_config(path)
    with contextlib.suppress(Exception):  # (a shortcut that cannot be written is no error)
        places = list(config.places)
        if fingerprint.of_config(path, ()).besides("places") == read:  # (not saved meanwhile)
            _keep(path, config, _key(path, places))
    return config


# the last config validated while its state folder was not there yet (keep_unkept)
_UNKEPT: list[tuple[Path, Config, str]] = []


def keep_unkept(config: Config) -> None:
    """Keep `config` now that a first sync made its state folder, if it was validated
    before the folder was there (and nothing else: a long process keeps nothing pending)."""
    pending = [entry for entry in _UNKEPT if entry[1] is config]
    _UNKEPT.clear()
    for path, _, key in pending:
        if config.state_dir.is_dir():
            with contextlib.suppress(Exception):
                _keep(path, config, key)


def shortcut_path(state_dir: Path, path: Path) -> Path:
    """The shortcut of the config at `path` (as given, and from here) in `state_dir`."""
    name = hashlib.blake2b(f"{path}\0{path.absolute()}".encode(), digest_size=12).hexdigest()
    return state_dir / SHORTCUTS / f"config-{name}.json"


def _guess_state_dir(path: Path, data: bytes) -> Path:
    """The state folder a config at `path` holding `data` most likely names, cheaply."""
    found = _STATE_DIR.search(data)
    if found is None or not found.group(1):
        return default_state_dir()
    value = found.group(1).decode(errors="replace")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return (path.parent.resolve() / Path(value).expanduser()).resolve()


def _key(path: Path, places: list[Path]) -> str:
    return fingerprint.of_config(path, places).whole()


def _read(where: Path, path: Path, state_dir: Path) -> Config | None:
    """The Config kept at `where` if it is whole, ours, and its key matches; else None."""
    from followsync.atomic import read_private
    from followsync.state import private_folder

    private_folder(state_dir)
    private_folder(where.parent)
    data = read_private(where, MAX_FILE)
    if data is None:
        return None  # (none, or not a private file of ours)
    head, _, body = data.partition(b"\n")
    if head.decode() != f"{FORMAT} {hashlib.blake2b(body, digest_size=16).hexdigest()}":
        return None  # (damaged, or another followsync's)
    kept = json.loads(body)
    places = [Path(_str(p)) for p in _list(kept["places"])]
    if kept["key"] != _key(path, places):
        return None
    config = decode(kept["config"])
    if not isinstance(config, Config) or config.state_dir != state_dir or \
            list(config.places) != places or not _still_valid(config):
        return None
    return dataclasses.replace(config, path=path)


def _still_valid(config: Config) -> bool:
    """What validation checked on the disk that the key does not hold: a client_secret
    is still a file."""
    return all(t.client_secret is None or t.client_secret.is_file() for t in config.targets)


def _keep(path: Path, config: Config, key: str) -> None:
    """Keep `config` under `key` in its state folder, if the folder is there and private."""
    if _holds_a_password(config):
        return
    if not config.state_dir.is_dir():
        _UNKEPT[:] = [(path, config, key)]
        return
    from followsync.atomic import write_private
    from followsync.state import private_folder

    private_folder(config.state_dir)
    folder = config.state_dir / SHORTCUTS
    folder.mkdir(mode=0o700, exist_ok=True)
    private_folder(folder)
    body = json.dumps({"key": key, "places": [str(p) for p in config.places],
                       "config": encode(config)}, separators=(",", ":")).encode()
    head = f"{FORMAT} {hashlib.blake2b(body, digest_size=16).hexdigest()}\n".encode()
    write_private(shortcut_path(config.state_dir, path), head + body)


def _holds_a_password(config: Config) -> bool:
    return any(t.password for t in config.targets) or \
        any(m.password for m in config.mailboxes)


# --- the codec: a Config as JSON, and back through a whitelist of types -----------------------
_CLASSES: dict[str, type[Any]] = {"Config": Config, "Target": Target, "MailConfig": MailConfig}


def encode(value: object) -> object:
    """`value` (a Config and what it holds) as JSON data; TypeError for anything else."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, Path):
        return {"Path": str(value)}
    if isinstance(value, ZoneInfo):
        return {"ZoneInfo": value.key}
    if isinstance(value, timedelta):
        return {"timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, date) and not isinstance(value, datetime):
        return {"date": value.isoformat()}
    if isinstance(value, Duration):
        return {"Duration": [value.amount, value.unit]}
    name = type(value).__name__
    if _CLASSES.get(name) is type(value):
        return {name: {f.name: encode(getattr(value, f.name))
                       for f in dataclasses.fields(value)}}  # type: ignore[arg-type]
    raise TypeError(f"a config cannot hold a {name}")


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not a whole number")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _timedelta(value: object) -> timedelta:
    days, seconds, micro = (_int(v) for v in _list(value))
    return timedelta(days=days, seconds=seconds, microseconds=micro)


def _duration(value: object) -> Duration:
    amount, unit = _list(value)
    count, name = _int(amount), _str(unit)
    if name not in MAX_AMOUNT or not 0 <= count <= MAX_AMOUNT[name]:
        raise ValueError("not a length of time")
    return Duration(count, name)


_DECODERS: dict[str, Callable[[object], object]] = {
    "tuple": lambda v: tuple(decode(x) for x in _list(v)),
    "Path": lambda v: Path(_str(v)),
    "ZoneInfo": lambda v: ZoneInfo(_str(v)),
    "timedelta": _timedelta,
    "date": lambda v: date.fromisoformat(_str(v)),
    "Duration": _duration,
}


def decode(data: object) -> object:
    """What `encode` made, back; only the whitelisted types, each dataclass field checked
    against its declared type (TypeError, ValueError or KeyError for anything else)."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if not isinstance(data, dict) or len(data) != 1:
        raise TypeError("not a value a config holds")
    (tag, value), = data.items()
    if tag in _DECODERS:
        return _DECODERS[tag](value)
    cls = _CLASSES[tag]
    if not isinstance(value, dict):
        raise TypeError("not a mapping")
    hints = _hints(cls)
    if set(value) != set(hints):
        raise KeyError(f"not the fields of a {tag}")
    fields = {name: decode(v) for name, v in value.items()}
    for name, v in fields.items():
        if not conforms(v, hints[name]):
            raise TypeError(f"{tag}.{name} is not a {hints[name]}")
    return cls(**fields)


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The declared type of each field of a whitelisted dataclass."""
    if cls not in _HINTS:
        names = {f.name for f in dataclasses.fields(cls)}
        _HINTS[cls] = {name: hint for name, hint in typing.get_type_hints(cls).items()
                       if name in names}
    return _HINTS[cls]


_HINTS: dict[type[Any], dict[str, Any]] = {}


def conforms(value: object, hint: Any) -> bool:
    """Whether `value` is of the declared type `hint` (the types a Config's fields use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(args) == len(value) and all(map(conforms, value, args))
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is date:
        return isinstance(value, date) and not isinstance(value, datetime)
    return isinstance(hint, type) and isinstance(value, hint)
