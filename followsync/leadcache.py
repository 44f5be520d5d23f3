"""Validated leads kept by the digest of their own text, so a save re-validates what changed.

A lead's validated form depends only on its slice of the file (see leadsplit) and on this
followsync: the cache of one lead file is keyed by followsync's version, the digest of its
own sources that read leads, and the digest of the file's head (`version:` and `defaults:`:
a change there validates everything again). It lives in memory (the daemon keeps it between
saves) and in `$XDG_CACHE_HOME/followsync/` (a one-shot command reads it), written when it
changed, at the end of the process (after the calendars). A cache file that cannot be read is
ignored: it is only ever a shortcut. (It is a pickle, in the user's own cache folder: whoever
can write there can already run code as the user.)
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from followsync import __version__

if TYPE_CHECKING:
    from followsync.leads import Lead

Entry = tuple["Lead", int]  # the validated lead, and how many YAML nodes its slice held


@functools.cache
def _code_digest() -> str:
    """The sources that decide what a slice validates to: a change of any invalidates."""
    here = Path(__file__).parent
    digest = hashlib.blake2b(__version__.encode(), digest_size=16)
    for name in ("leads.py", "validation.py", "yamlsrc.py", "leadsplit.py", "durations.py"):
        with contextlib.suppress(OSError):
            digest.update((here / name).read_bytes())
    return digest.hexdigest()


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "followsync"


_OPEN: dict[Path, LeadCache] = {}  # kept by a long-running process (the daemon)


def for_file(file: Path, head: str) -> LeadCache:
    """The cache of this lead file with this head: the one in memory, else read from disk."""
    known = _OPEN.get(file)
    fresh = LeadCache(file, head)
    if known is not None and known.key == fresh.key and known.path == fresh.path:
        return known
    fresh.read()
    _OPEN[file] = fresh
    return fresh


class LeadCache:
    """One lead file's validated leads by slice digest, for one head (see module doc)."""

    def __init__(self, file: Path, head: str, folder: Path | None = None) -> None:
        self.path = (folder or cache_folder()) / (
            "leads-" + hashlib.blake2b(str(file.resolve()).encode(),
                                       digest_size=12).hexdigest() + ".pickle")
        self.key = hashlib.blake2b(f"{_code_digest()}\0{head}".encode(),
                                   digest_size=16).hexdigest()
        self.entries: dict[str, Entry] = {}
        self.used: set[str] = set()
        self.changed = False

    def read(self) -> None:
        try:
            with self.path.open("rb") as stream:
                found: Any = pickle.load(stream)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError,
                ValueError, TypeError, IndexError):
            return
        if isinstance(found, tuple) and len(found) == 2 and found[0] == self.key:
            self.entries = found[1]

    def get(self, digest: str) -> Entry | None:
        found = self.entries.get(digest)
        if found is not None:
            self.used.add(digest)
        return found

    def put(self, digest: str, entry: Entry) -> None:
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
        if self.changed and self not in _DIRTY:
            if not _DIRTY and not _AT_EXIT:
                atexit.register(flush)
                _AT_EXIT.append(True)
            _DIRTY.append(self)

    def save(self) -> None:
        """Write the cache file now (errors ignored: it is only a shortcut)."""
        if not self.changed:
            return
        from followsync.atomic import write_atomic

        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.path, pickle.dumps((self.key, self.entries),
                                                 protocol=pickle.HIGHEST_PROTOCOL))
        self.changed = False


_DIRTY: list[LeadCache] = []
_AT_EXIT: list[bool] = []


def flush() -> None:
    """Write every changed cache (at exit; tests call it directly)."""
    while _DIRTY:
        _DIRTY.pop().save()
