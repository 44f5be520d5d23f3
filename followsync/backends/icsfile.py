"""A local .ics file as a target: one VCALENDAR holding our items beside anyone else's.

The file is handled as text: components without followsync's marks, VTIMEZONEs and calendar
properties are kept byte for byte, and our items are replaced in place. The file is read once,
changed in memory and written once at `commit`, only if its bytes changed, atomically (temp
file, fsync, rename, mode kept). A file that is not iCalendar is never overwritten.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
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
    """A top-level component of the calendar: its raw lines, kept as one text joined by
    "\n" ("" once deleted): a list of lines per item took about three times the memory."""

    name: str
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n") if self.text else []

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
    current: list[str] | None = None  # the lines of the top-level component being read
    current_name = ""
    for number, line in enumerate(lines[start + 1 : -1], start=start + 2):
        if line[:1] in (" ", "\t"):
            if current is not None:
                current.append(line)
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
                current, current_name = [], name
            stack.append(name)
        if current is None:
            entries.append(line)
            continue
        current.append(line)
        if end:
            name = end.group(1).strip().upper()
            if not stack or stack[-1] != name:
                raise IcsError(number, f"END:{name} does not match BEGIN:{stack[-1] if stack else '?'}")
            stack.pop()
            if not stack:
                entries.append(Block(current_name, "\n".join(current)))
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
    cursor_only = True  # an unchanged digest says all (see base.Backend)

    def __init__(self, path: Path, label: str = "") -> None:
        self.path = path
        self.label = label or str(path)
        self.newline = "\r\n"
        self.original: bytes | bytearray | None = None  # as read, or as written last
        self._written: str | None = None  # the digest of what `commit` wrote, if not kept
        self._read_digest = ""  # the digest of `original` as `listing` read it
        self._entries: list[str | Block] | None = None
        self._owned: dict[str, Block] = {}
        self._foreign: dict[str, Block] = {}  # others' items by UID: never written, only read
        self._tzids: set[str | None] | None = None  # the VTIMEZONEs the file holds
        # Writes to a file exactly as we wrote it last (listing: unchanged) are kept as
        # splices of its bytes, not applied to a parse of the whole file (see `_Splices`).
        self._splices: _Splices | None = None

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
        splices, self._splices = self._splices, None
        data = self.original
        if not data or data.isspace():  # absent, or empty (`touch followups.ics`)
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
        if splices is not None:  # what was spliced so far, done again the slow way
            for uid, remote, text in splices.done:
                if remote is None:
                    self.create(uid, text)
                elif text:
                    self.update(remote, text)
                else:
                    self.delete(remote)
        return self._entries

    def listing(self, known: Mapping[str, Remote], cursor: str | None) -> Listing:
        self.original = self._read()
        self._written = None
        digest = self._read_digest = _digest(self.original)
        if cursor is not None and digest == cursor:
            if self.original and not self.original.isspace():
                self._splices = _Splices(bytes(self.original))
            return Listing(dict(known), cursor=digest, unchanged=True)
        entries = self._load()
        foreign = sum(1 for e in entries if isinstance(e, Block) and e.name in _ITEMS) - len(
            self._owned)
        items = {uid: Remote(uid, block.etag) for uid, block in self._owned.items()}
        # A missing or empty file was removed or replaced as a whole: that is not the user
        # deleting each item by hand, so everything is written again.
        fresh = not self.original or self.original.isspace()  # (strip() copies 25 MB)
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
        if self._splices is not None:
            found = self._splices.create(uid, text)
            if found is not None:
                return found
        entries = self._load()
        if uid in self._owned or uid in self._foreign:  # one UID, one item, whoever's it is
            raise Conflict(uid)
        block = self._adopt_text(text)
        entries.append(block)
        self._owned[uid] = block
        return Remote(uid, block.etag)

    def update(self, remote: Remote, text: str) -> Remote:
        if self._splices is not None:
            found = self._splices.replace(remote, text)
            if found is not None:
                return found
        self._load()
        old = self._current(remote)
        block = self._adopt_text(text)
        old.name, old.text = block.name, block.text  # in place: no search of the file
        return Remote(remote.href, old.etag)

    def delete(self, remote: Remote) -> None:
        if self._splices is not None and self._splices.replace(remote, "") is not None:
            return
        self._load()
        old = self._current(remote)
        old.text = ""  # left out when the file is written
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
        if self._splices is not None and self._entries is None:
            parts = self._splices.parts()  # (written as parts too: never joined in memory)
            digest = hashlib.sha256()
            for part in parts:
                digest.update(part)
            if digest.hexdigest() == self._last_digest():
                return digest.hexdigest()
            self._unchanged_since_read()
            self._write(iter(parts))
            self.original, self._written = None, digest.hexdigest()
            return self._written
        if self._entries is None:  # nothing was touched
            return _digest(self.original)
        # The entries are encoded chunk by chunk, twice (to know whether the file changes,
        # then to write it), never joined: the file of 50,000 leads is 60 MB, and a first
        # sync already holds every item's text.
        digest = hashlib.sha256()
        for chunk in self._chunks():
            digest.update(chunk)
        found = digest.hexdigest()
        if found != self._last_digest():
            self._unchanged_since_read()
            self._write(self._chunks())
            self.original = None  # (not kept: `_unchanged_since_read` goes by the digest)
            self._written = found
        return found

    def _last_digest(self) -> str:
        """The digest of the file as read by `listing`, or as `commit` wrote it last."""
        return self._written or self._read_digest or _digest(self.original)

    def _chunks(self) -> Iterator[bytes]:
        """The file's bytes: every line joined by the file's newline."""
        assert self._entries is not None
        nl = self.newline
        end = nl.encode()
        yield b"BEGIN:VCALENDAR" + end
        for entry in self._entries:
            text = entry.text if isinstance(entry, Block) else entry
            if text:  # (a deleted item is a Block with no text)
                yield (text if nl == "\n" else text.replace("\n", nl)).encode() + end
        yield b"END:VCALENDAR" + end

    def _unchanged_since_read(self) -> None:
        """A calendar app that saved the file since we read it (or wrote it last): writing
        would lose its change."""
        now = self._read()
        if (now != self.original) if self._written is None else (_digest(now) != self._written):
            raise TargetError(f"{self.path} changed while followsync was updating it; it "
                              "was left as it is", "sync again (the daemon retries by itself)")

    def _write(self, data: bytes | bytearray | Iterator[bytes | memoryview]) -> None:
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise TargetError(f"cannot write {self.path}: {exc.strerror}; the old file is kept")\
                from None

    def close(self) -> None:
        self._entries = None
        self._splices = None
        self.original = None  # (the sync goes on with this object: 60 MB at 50,000 leads)


class _Splices:
    """Writes to a file that is byte for byte as followsync wrote it, kept as byte ranges to
    replace instead of a parse of the whole file: a sync that changes 1 item of 10,000 reads
    and writes the file once and parses nothing but that item. The result is exactly what
    parsing, changing and writing the file gives (tests/test_scale.py): our own items are
    found by their UID line (folded as `render` folds it), which `render` writes right after
    BEGIN. Anything else (a time zone the file lacks, a doubt) answers None, and the
    backend parses the file and does again, the slow way, what was spliced so far.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.nl = b"\r\n" if b"\r\n" in data else b"\n"
        self.cuts: dict[int, tuple[int, bytes]] = {}  # start → (end, new bytes)
        self.added: list[bytes] = []
        self.done: list[tuple[str, Remote | None, str]] = []  # (uid, remote, text) in order
        self.end = data.rfind(b"END:VCALENDAR" + self.nl)
        if self.end < 0 or self.end + len(b"END:VCALENDAR") + len(self.nl) != len(data) or \
                (self.end and data[self.end - len(self.nl):self.end] != self.nl):
            self.end = -1

    def _item(self, text: str) -> tuple[Block, str | None] | None:
        """Our rendered item's block, and the TZID its VTIMEZONE names (if any)."""
        blocks = [e for e in parse(text) if isinstance(e, Block)]
        items = [b for b in blocks if b.name in _ITEMS]
        zones = [b.tzid for b in blocks if b.name == "VTIMEZONE"]
        if len(items) != 1 or len(zones) > 1:
            return None
        return items[0], (zones[0] if zones else None)

    def _has_zone(self, tzid: str) -> bool:
        nl = self.nl
        at = self.data.find(nl + b"BEGIN:VTIMEZONE" + nl)
        while at >= 0:
            stop = self.data.find(nl + b"END:VTIMEZONE" + nl, at)
            if stop < 0:
                return False
            text = self.data[at + len(nl):stop + len(nl) + len(b"END:VTIMEZONE")].decode()
            if Block("VTIMEZONE", text.replace(nl.decode(), "\n")).tzid == tzid:
                return True
            at = self.data.find(nl + b"BEGIN:VTIMEZONE" + nl, stop)
        return False

    def create(self, uid: str, text: str) -> Remote | None:
        found = self._item(text)
        if self.end < 0 or found is None or self._find(uid) != (-1, -1):
            return None
        block, tzid = found
        if tzid and not self._has_zone(tzid):
            return None
        self.added.append(block.text.replace("\n", self.nl.decode()).encode() + self.nl)
        self.done.append((uid, None, text))
        return Remote(uid, block.etag)

    def replace(self, remote: Remote, text: str) -> Remote | None:
        """An update (`text`) or a delete (no text) of one of our items."""
        start, end = self._find(remote.href)
        if start < 0 or start in self.cuts:
            return None
        old = self.data[start:end - len(self.nl)].decode()
        if not is_owned(old) or Block("", old.replace(self.nl.decode(), "\n")).etag != remote.etag:
            return None
        if text:
            found = self._item(text)
            if found is None or (found[1] and not self._has_zone(found[1])):
                return None
            new = found[0].text.replace("\n", self.nl.decode()).encode() + self.nl
            etag = found[0].etag
        else:
            new, etag = b"", remote.etag
        self.cuts[start] = (end, new)
        self.done.append((remote.href, remote, text))
        return Remote(remote.href, etag)

    def _find(self, uid: str) -> tuple[int, int]:
        """(start, end) of the item whose UID line is `uid`, end after its last newline;
        (-1, -1) when there is none, (-2, -2) on a doubt (two such lines, another shape)."""
        from followsync.render import _fold, _text

        nl = self.nl
        line = _fold("UID:" + _text(uid)).split("\r\n")  # a long UID is folded, as rendered
        needle = nl + nl.join(part.encode() for part in line) + nl
        at = self.data.find(needle)
        if at < 0:
            return -1, -1
        if self.data.find(needle, at + 1) >= 0:
            return -2, -2
        begin = self.data.rfind(nl + b"BEGIN:", 0, at + 1)
        line_end = self.data.find(nl, begin + len(nl))
        name = self.data[begin + len(nl) + len(b"BEGIN:"):line_end]
        if begin < 0 or line_end != at or name.decode() not in _ITEMS:
            return -2, -2
        stop = self.data.find(nl + b"END:" + name + nl, at)
        if stop < 0:
            return -2, -2
        return begin + len(nl), stop + len(nl) + len(b"END:") + len(name) + len(nl)

    def parts(self) -> list[bytes | memoryview]:
        """The file after the splices, in order: views of the old bytes between new ones."""
        view = memoryview(self.data)
        parts: list[bytes | memoryview] = []
        at = 0
        for start in sorted(self.cuts):
            end, new = self.cuts[start]
            parts += [view[at:start], new]
            at = end
        if self.added:
            parts += [view[at:self.end], *self.added]
            at = self.end
        parts.append(view[at:])
        return parts


def _digest(data: bytes | bytearray | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()
