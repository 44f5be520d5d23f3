"""One fingerprint of everything an answer depends on (README, "What followsync keeps").

Every shortcut (the config cache, the lead cache, the no-op fast path, the delta basis) is
keyed by parts of one `Fingerprint`, made here: the bytes of every input file and where its
path points, the config, the zone and its rules, the day, the stored mail, and followsync's
own code and libraries. A new input joins `Fingerprint` once, and every shortcut that keys
on the whole (or on the whole but the lead files, as the delta basis does) sees it.
Only reads: no clock, nothing written.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo

_PACKAGE = Path(__file__).resolve().parent


def _digest(*chunks: bytes | str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for chunk in chunks:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        digest.update(len(data).to_bytes(8, "little"))  # (so no two lists run together)
        digest.update(data)
    return digest.hexdigest()


@functools.cache
def code() -> str:
    """followsync's own sources, byte for byte (a change without a version bump counts),
    the Python running it, and the name and version of every distribution installed where
    it looks for modules (a library upgraded under us counts; which folders those are, or
    the current folder, does not). Made once per process: the code a process runs does not
    change under it."""
    chunks: list[bytes | str] = [sys.version]
    for folder, subfolders, names in os.walk(_PACKAGE):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(names):
            if name.endswith((".py", ".yaml")):
                with open(os.path.join(folder, name), "rb") as source:
                    chunks += [os.path.relpath(os.path.join(folder, name), _PACKAGE),
                               source.read()]
    installed: set[str] = set()
    for entry in filter(None, sys.path):  # ("": the current folder, not an install)
        try:
            installed.update(name for name in os.listdir(entry)
                             if name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
    chunks.append("\n".join(sorted(installed)))
    return _digest(*chunks)


def file_part(path: Path) -> list[bytes | str]:
    """A file as an input: the path as written, where it points now (a re-pointed symlink
    counts), and its bytes (or that it is missing)."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b"\0missing"
    return [str(path), os.path.realpath(path), data]


def files(paths: Iterable[Path]) -> str:
    """The digest of these input files (see `file_part`)."""
    return _digest(*(chunk for path in paths for chunk in file_part(path)))


def _kind(path: str) -> str:
    """What is at `path`: a file, a folder, something else, or nothing."""
    try:
        found = os.stat(path).st_mode
    except OSError:
        return "missing"
    return "file" if stat.S_ISREG(found) else "folder" if stat.S_ISDIR(found) else "other"


def places(paths: Iterable[Path]) -> str:
    """Where each path points now (a path as written, made absolute but with its symlinks
    kept): its real path, and whether its folder is one (a file written there, as a target's
    is, changes nothing). A link re-pointed since changes the digest; its target's bytes
    are another part."""
    chunks: list[bytes | str] = []
    for path in paths:
        real = os.path.realpath(path)
        chunks += [str(path), real, _kind(os.path.dirname(real))]
    return _digest(*chunks)


def zone(tz: ZoneInfo) -> str:
    """The zone's name and its rules: the bytes of its definition, from the system's zone
    files or the tzdata package (a tzdata update that moves a transition counts)."""
    for base in TZPATH:
        candidate = Path(base) / tz.key
        try:
            return _digest(tz.key, candidate.read_bytes())
        except OSError:
            continue
    try:
        from importlib.resources import files as resources

        package, _, name = f"tzdata.zoneinfo/{tz.key}".rpartition("/")
        return _digest(tz.key, resources(package.replace("/", ".")).joinpath(name).read_bytes())
    except (ImportError, OSError, ValueError):
        return _digest(tz.key)


def environment() -> str:
    """What a config's defaults are taken from besides the file: the state folder's and
    the config's base folders, and the local zone (`TZ`, /etc/localtime, /etc/timezone)."""
    chunks: list[bytes | str] = [
        f"{name}={os.environ.get(name, '')}"
        for name in ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "TZ")]
    try:
        chunks.append(os.readlink("/etc/localtime"))
    except OSError:
        chunks.append("-")
    try:
        chunks.append(Path("/etc/timezone").read_bytes())
    except OSError:
        chunks.append("-")
    return _digest(*chunks)


Part = str | Callable[[], str]  # a part's digest, or how to make it (only when asked)


@dataclass(frozen=True)
class Fingerprint:
    """Named parts of everything an answer depends on; a shortcut keys on `whole`, or on
    `besides(...)` the parts it checks itself (the delta basis compares lead files slice by
    slice). A part given as a function is made only by a key that includes it: the delta's
    key never reads the lead files twice."""

    parts: dict[str, Part] = field(default_factory=dict)

    def whole(self) -> str:
        return self.besides()

    def besides(self, *names: str) -> str:
        return _digest(*(f"{name}={value if isinstance(value, str) else value()}"
                         for name, value in sorted(self.parts.items()) if name not in names))


def of_sync(config_path: Path, lead_paths: Iterable[Path], tz: ZoneInfo, today: date,
            mail: str) -> Fingerprint:
    """The fingerprint of a sync's inputs: `mail` is the stored mail touches' generation
    (State.mail_generation). The config's own values are in its file's bytes and the
    environment it was read in (and where its paths point: the Config was loaded by
    `configcache`, keyed on `of_config`)."""
    leads = tuple(lead_paths)
    return Fingerprint({
        "code": code(),
        "environment": environment(),
        "config": files([config_path]),
        "leads": lambda: files(leads),
        "zone": zone(tz),
        "day": today.isoformat(),
        "mail": mail,
    })


def of_config(config_path: Path, named: Iterable[Path]) -> Fingerprint:
    """The fingerprint of a validated config: followsync, the environment that gives
    defaults, the file (its bytes, where its path points, its mode: a `password:` in a file
    others can read is refused), and where every path it names points now (and whether its
    folder is one: a target's must be)."""
    try:
        mode = str(config_path.stat().st_mode)
    except OSError:
        mode = "-"
    return Fingerprint({
        "code": code(),
        "environment": environment(),
        "config": files([config_path]),
        "mode": mode,
        "places": places(named),
    })
