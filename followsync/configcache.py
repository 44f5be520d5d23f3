"""The validated config, remembered between runs, so that a `followsync sync` with nothing to
do needs neither pydantic nor the config's validation (the fast path of README "Commands").

The cache lives in $XDG_CACHE_HOME/followsync (default ~/.cache/followsync), one file per
config path. It is used only when everything the validation read is as it was: the config's
bytes and mode, the environment and files that give defaults (state folder, time zone), and
this followsync's version and config code; an .ics target's folder must still exist. Anything
else (a missing cache, a damaged one, an older followsync's) means: validate as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from pathlib import Path

from followsync import __version__
from followsync.config import Config, load_config

_CODE = tuple(Path(__file__).with_name(name)
              for name in ("config.py", "configmodel.py", "model.py", "validation.py"))


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "followsync"


def _key(path: Path, data: bytes) -> str:
    """Everything a validation of this config depends on, digested."""
    digest = hashlib.sha256(f"{__version__}\0{path.resolve()}\0".encode())
    digest.update(data)
    digest.update(f"\0{path.stat().st_mode}\0".encode())
    for name in ("HOME", "XDG_STATE_HOME", "TZ"):
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    for source in (*_CODE, Path("/etc/timezone")):
        with contextlib.suppress(OSError):
            digest.update(source.read_bytes())
    with contextlib.suppress(OSError):
        digest.update(os.readlink("/etc/localtime").encode())
    return digest.hexdigest()


def _still_valid(config: Config) -> bool:
    """What validation checked on the disk besides the config itself still holds."""
    return all(t.path is None or t.path.parent.is_dir() for t in config.targets)


def _holds_a_password(config: Config) -> bool:
    """A config with a `password:` is never written to the cache: no secret in a second
    file."""
    return any(t.password for t in config.targets) or \
        any(m.password for m in config.mailboxes)


def load_config_cached(path: Path) -> Config:
    """`load_config(path)`, from the cache when nothing it depends on changed."""
    try:
        data = path.read_bytes()
        key = _key(path, data)
    except OSError:
        return load_config(path)  # it reports the problem
    where = cache_folder() / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
                              + ".pickle")
    with contextlib.suppress(Exception):  # no cache, another version's, damaged: validate
        stored_key, config = pickle.loads(where.read_bytes())
        if stored_key == key and isinstance(config, Config) and _still_valid(config):
            return config
    config = load_config(path)
    if not _holds_a_password(config):
        with contextlib.suppress(OSError):
            from followsync.atomic import write_atomic

            where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(where, pickle.dumps((key, config)))
    return config
