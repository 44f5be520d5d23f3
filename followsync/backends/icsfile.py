"""A local .ics file as a target: one VCALENDAR holding our items beside anyone else's.

The file is handled as text: components without followsync's marks, VTIMEZONEs and calendar
properties are kept byte for byte, and our items are replaced in place. The file is read once,
changed in memory and written once at `commit`, only if its bytes changed, atomically (temp
file, fsync, rename, mode kept). A file that is not iCalendar is never overwritten.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from followsync.atomic import write_atomic
from followsync.backends.base import Listing
from followsync.errors import Conflict, TargetError
from followsync.marks import is_owned, uid_of
from followsync.model import Remote
from followsync.render import PRODID

_BEGIN = re.compile(r"^BEGIN:(.+)$", re.IGNORECASE)
_END = re.compile(r"^END:(.+)$", re.IGNORECASE)
_TZID = re.compile(r"^TZID(?:;[^:]*)?:(.*)$", re.IGNORECASE)
_CONTENT_LINE = re.compile(r"^[A-Za-z0-9-]+[;:]")
_ITEMS = ("VEVENT", "VTODO", "VJOURNAL")


@dataclass
class Block:
    """A top-level component of the calendar, as its raw lines."""

    name: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:20]

    @property
    def tzid(self) -> str | None:
        for line in self.lines:
            match = _TZID.match(line)
            if match:
                return match.group(1).strip()
        return None


class IcsError(ValueError):
    """The text is not an iCalendar file we can safely rewrite."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


def parse(text: str) -> list[str | Block]:
    """The VCALENDAR's own property lines and its top-level components, in file order."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines) or lines[start].strip().upper() != "BEGIN:VCALENDAR":
        raise IcsError(start + 1, "does not start with BEGIN:VCALENDAR")
    if lines[-1].strip().upper() != "END:VCALENDAR":
        raise IcsError(len(lines), "does not end with END:VCALENDAR")
    entries: list[str | Block] = []
    stack: list[str] = []
    current: Block | None = None
    for number, line in enumerate(lines[start + 1 : -1], start=start + 2):
        if line[:1] in (" ", "\t"):
            if current is not None:
                current.lines.append(line)
            elif entries and isinstance(entries[-1], str):
                entries[-1] += "\n" + line
            else:
                raise IcsError(number, "a continuation line with nothing to continue")
            continue
        if not _CONTENT_LINE.match(line):
            if not line.strip():
                raise IcsError(number, "an empty line inside the calendar")
            raise IcsError(number, f"not an iCalendar content line: {line[:40]!r}")
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            name = begin.group(1).strip().upper()
            if name == "VCALENDAR":
                raise IcsError(number, "a second VCALENDAR inside the first")
            if not stack:
                current = Block(name, [])
            stack.append(name)
        if current is None:
            entries.append(line)
            continue
        current.lines.append(line)
        if end:
            name = end.group(1).strip().upper()
            if not stack or stack[-1] != name:
                raise IcsError(number, f"END:{name} does not match BEGIN:{stack[-1] if stack else '?'}")
            stack.pop()
            if not stack:
                entries.append(current)
                current = None
    if stack:
        raise IcsError(len(lines), f"BEGIN:{stack[-1]} is never ended")
    return entries


def owned_uid(block: Block) -> str | None:
    """The UID of an item carrying followsync's mark, else None."""
    if block.name not in _ITEMS:
        return None
    text = block.text
    return uid_of(text) if is_owned(text) else None


class IcsFileBackend:
    """The whole file in memory between `listing` and `commit`."""

    immediate = False  # nothing is written before `commit` (see base.Backend)

    def __init__(self, path: Path, label: str = "") -> None:
        self.path = path
        self.label = label or str(path)
        self.newline = "\r\n"
        self.original: bytes | None = None
        self._entries: list[str | Block] | None = None
        self._owned: dict[str, Block] = {}
        self._foreign: dict[str, Block] = {}  # others' items by UID: never written, only read
        self._tzids: set[str | None] | None = None  # the VTIMEZONEs the file holds

    # reading ---------------------------------------------------------------
    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise TargetError(f"{self.path} is a folder, not an .ics file",
                              "point the target's `path:` at a file") from None
        except OSError as exc:
            raise TargetError(f"cannot read {self.path}: {exc.strerror}") from None

    def _load(self) -> list[str | Block]:
        if self._entries is not None:
            return self._entries
        data = self.original
        if data is None or not data.strip():  # absent, or empty (`touch followups.ics`)
            self._entries = ["VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN",
                             "X-WR-CALNAME:Follow-ups"]
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise TargetError(f"{self.path} is not a UTF-8 iCalendar file; "
                                  "it was left as it is") from None
            self.newline = "\r\n" if "\r\n" in text else "\n"
            try:
                self._entries = parse(text)
            except IcsError as exc:
                raise TargetError(f"{self.path}:{exc.line}: not a valid iCalendar file "
                                  f"({exc.reason}); it was left as it is",
                                  "fix or move the file, or point the target elsewhere") from None
        self._owned = {}
        self._foreign = {}
        self._tzids = None
        for entry in self._entries:
            if isinstance(entry, Block):
                uid = owned_uid(entry)
                if uid is not None:
                    self._owned[uid] = entry
                elif entry.name in _ITEMS and (other := uid_of(entry.text)):
                    self._foreign.setdefault(other, entry)
        return self._entries

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        self.original = self._read()
        digest = _digest(self.original)
        if cursor is not None and digest == cursor:
            return Listing(dict(known), cursor=digest, unchanged=True)
        entries = self._load()
        foreign = sum(1 for e in entries if isinstance(e, Block) and e.name in _ITEMS) - len(
            self._owned)
        items = {uid: Remote(uid, block.etag) for uid, block in self._owned.items()}
        # A missing or empty file was removed or replaced as a whole: that is not the user
        # deleting each item by hand, so everything is written again.
        fresh = not (self.original or b"").strip()
        return Listing(items, cursor=digest, foreign=foreign, fresh=fresh)

    def supports(self, component: str) -> bool:
        return True

    def get(self, remote: Remote) -> str:
        self._load()
        block = self._owned.get(remote.href) or self._foreign.get(remote.href)
        if block is None:
            raise Conflict(remote.href)
        return self.newline.join(["BEGIN:VCALENDAR", "VERSION:2.0", *block.lines,
                                  "END:VCALENDAR"])

    def find(self, uid: str) -> Remote | None:
        self._load()
        block = self._owned.get(uid) or self._foreign.get(uid)
        return Remote(uid, block.etag) if block else None

    # writing ---------------------------------------------------------------
    def create(self, uid: str, text: str) -> Remote:
        entries = self._load()
        if uid in self._owned or uid in self._foreign:  # one UID, one item, whoever's it is
            raise Conflict(uid)
        block = self._adopt_text(text)
        entries.append(block)
        self._owned[uid] = block
        return Remote(uid, block.etag)

    def update(self, remote: Remote, text: str) -> Remote:
        self._load()
        old = self._current(remote)
        block = self._adopt_text(text)
        old.name, old.lines = block.name, block.lines  # in place: no search of the file
        return Remote(remote.href, old.etag)

    def delete(self, remote: Remote) -> None:
        self._load()
        old = self._current(remote)
        old.lines = []  # left out when the file is written
        del self._owned[remote.href]

    def _current(self, remote: Remote) -> Block:
        block = self._owned.get(remote.href)
        if block is None or block.etag != remote.etag:
            raise Conflict(remote.href)
        return block

    def _adopt_text(self, text: str) -> Block:
        """Our rendered VCALENDAR → its item block; its time zone joins the file once."""
        entries = self._load()
        blocks = [e for e in parse(text) if isinstance(e, Block)]
        if self._tzids is None:
            self._tzids = {e.tzid for e in entries if isinstance(e, Block) and e.name == "VTIMEZONE"}
        for tz in (b for b in blocks if b.name == "VTIMEZONE"):
            if tz.tzid and tz.tzid not in self._tzids:
                self._add_timezone(tz.tzid)
                self._tzids.add(tz.tzid)
        items = [b for b in blocks if b.name in _ITEMS]
        if len(items) != 1:
            raise ValueError("a rendered item must hold exactly one component")
        return items[0]

    def _add_timezone(self, tzid: str) -> None:
        from followsync.render import vtimezone_text

        entries = self._entries
        assert entries is not None
        text = vtimezone_text(tzid)
        block = next(b for b in parse(f"BEGIN:VCALENDAR\r\n{text}END:VCALENDAR\r\n")
                     if isinstance(b, Block))
        first_block = next((i for i, e in enumerate(entries) if isinstance(e, Block)), len(entries))
        entries.insert(first_block, block)

    def commit(self) -> str | None:
        if self._entries is None:  # nothing was touched
            return _digest(self.original)
        lines = ["BEGIN:VCALENDAR"]
        for entry in self._entries:
            lines.extend(entry.lines if isinstance(entry, Block) else entry.split("\n"))
        # (a deleted item is a Block with no lines)
        lines.append("END:VCALENDAR")
        data = (self.newline.join(lines) + self.newline).encode("utf-8")
        if data != self.original:
            if self._read() != self.original:
                # a calendar app saved the file since we read it: writing would lose its change
                raise TargetError(f"{self.path} changed while followsync was updating it; it "
                                  "was left as it is", "sync again (the daemon retries by itself)")
            self._write(data)
            self.original = data
        return _digest(data)

    def _write(self, data: bytes) -> None:
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise TargetError(f"cannot write {self.path}: {exc.strerror}; the old file is kept")\
                from None

    def close(self) -> None:
        self._entries = None


def _digest(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()
