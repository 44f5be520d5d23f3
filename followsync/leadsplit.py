"""A lead file cut into one text slice per lead, without parsing the YAML.

In the usual layout (README, "The lead file") `leads:` is a top-level key and every lead
starts on a line `  lead-id:` at one fixed indentation; everything more indented below it,
up to the next such line, is that lead. So a lead's slice can be found with a line scan, and
a save that changed one lead changes one slice: only that one needs parsing and validating
again (see leadcache). Anything unusual (tabs, other line breaks, `leads:` written another
way, a line at an odd indentation) gives None, and the caller parses the whole file as
before; `leads.load_leads` also checks each slice's parse against the split, and falls back
on any doubt, so the split never decides what a file means.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

_LEADS_AT = re.compile(r"\nleads:[ ]*(?:#[^\n]*)?\r?\n")
# The patterns start with a literal newline, which the regex engine finds fast (a `^` in
# MULTILINE mode is tried at every character of a 4 MB file).
_CONTENT = re.compile(r"\n( *)[^ \r\n#]")  # the next line that is not blank or a comment
_TOP_LEVEL = re.compile(r"\n[^ \r\n#]")
_LEAD_KEY = re.compile(r"( +)([a-z0-9][a-z0-9._-]*):(?: [^\n]*|\r?)")
_ODD_LINE_START = re.compile(r"\n(?: *\t|---|\.\.\.|%)")


def _odd(text: str) -> bool:
    """Line breaks YAML counts and str.split does not, BOMs, tabs in indentation, document
    markers and directives: such files are read whole."""
    if any(c in text for c in "\x85\u2028\u2029\ufeff"):
        return True
    if "\r" in text and re.search("\r(?!\n)", text):
        return True
    return bool(_ODD_LINE_START.search("\n" + text))


class Slice(NamedTuple):
    """One lead's lines: its key line is line `line` (0-based) of the file. (A tuple: made
    10,000 times on every save of a big file.)"""

    lead_id: str
    line: int
    text: str
    digest: str  # what the lead cache is keyed by: the slice's own text, not where it stands


@dataclass(frozen=True)
class Split:
    """The file without its leads (their lines left blank, so every mark stays where it
    was), the line of `leads:`, and the leads' slices in file order."""

    head: str
    leads_line: int
    slices: list[Slice]
    head_key: str  # the head without the blank lines: what the defaults' digest is made of
    indent: int = 2  # the leads' keys' indentation
    first: int = 0  # the first lead's offset in the file's UTF-8 bytes


def split(text: str) -> Split | None:
    """The file's head and lead slices, or None when the layout is not the usual one.

    Regular expressions over the whole text, not a loop over its lines: this runs on every
    save of a file of 10,000 leads."""
    if _odd(text):
        return None
    found = list(_LEADS_AT.finditer("\n" + text))
    if len(found) != 1:
        return None
    start = found[0].end() - 1  # just after the newline ending `leads:`
    first = _CONTENT.search(text, start - 1)
    if first is None:
        return None
    indent = len(first.group(1))
    if not indent:
        return None  # `leads:` with nothing under it
    top = _TOP_LEVEL.search(text, start - 1)
    end = top.start() + 1 if top is not None else len(text)
    if indent > 1 and re.compile(f"\\n {{1,{indent - 1}}}[^ \\r\\n#]").search(
            text, start - 1, end):
        return None  # a line less indented than the leads and not at the top level
    starts: list[tuple[int, str]] = []
    for key in re.compile(f"\\n( {{{indent}}}[^ \\r\\n#][^\\n]*)").finditer(text, start - 1, end):
        match = _LEAD_KEY.fullmatch(key.group(1))
        if match is None:
            return None
        starts.append((key.start() + 1, match.group(2)))
    leads_line = text.count("\n", 0, found[0].start())  # (the match starts 1 char early)
    line = leads_line + 1 + text.count("\n", start, starts[0][0])
    slices = []
    blake2b = hashlib.blake2b
    stops = [offset for offset, _ in starts[1:]] + [end]
    for (offset, lead_id), stop in zip(starts, stops, strict=True):
        piece = text[offset:stop]
        if piece[-1:] != "\n":
            piece += "\n"
        slices.append(Slice(lead_id, line, piece,
                            blake2b(piece.encode(), digest_size=16).hexdigest()))
        line += piece.count("\n")
    before, after = text[:starts[0][0]], text[end:]
    blank = "\n" * text.count("\n", starts[0][0], end)
    # the key leaves out the blank lines and comments above the first lead
    return Split(before + blank + after, leads_line, slices, text[:start] + after, indent,
                 len(before.encode()))


def _leads_in(text: str, indent: int) -> list[tuple[int, str]] | None:
    """The (offset, id) of each lead in a run of lead lines at this indentation, which must
    start with a lead's key line; None for anything else (a top-level line, an odd one)."""
    first = _LEAD_KEY.match(text)
    if _odd(text) or (text and (first is None or len(first.group(1)) != indent)):
        return None  # (lines before the first key would belong to the lead before)
    if re.compile(f"\\n {{0,{indent - 1}}}[^ \\r\\n#]").search("\n" + text):
        return None  # a line less indented than the leads (or at the top level)
    found: list[tuple[int, str]] = []
    for key in re.compile(f"\\n( {{{indent}}}[^ \\r\\n#][^\\n]*)").finditer("\n" + text):
        match = _LEAD_KEY.fullmatch(key.group(1))
        if match is None or len(match.group(1)) != indent:
            return None
        found.append((key.start(), match.group(2)))
    return found


# ------------------------------------------------------------------ what a save changed
BLOCK = 16384
_BOM = b"\xef\xbb\xbf"


def _hash(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _blocks(data: bytes, head: list[str] | None = None,
            tail: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Digests of the file's whole BLOCKs counted from its start, and from its end; `head`
    and `tail`: the first ones of each, already known (`resplit` found them unchanged)."""
    size = len(data)
    view = memoryview(data)
    head, tail = list(head or ()), list(tail or ())
    return ([*head, *(_hash(view[i:i + BLOCK])
                      for i in range(len(head) * BLOCK, size - BLOCK + 1, BLOCK))],
            [*tail, *(_hash(view[size - i - BLOCK:size - i])
                      for i in range(len(tail) * BLOCK, size - BLOCK + 1, BLOCK))])


def layout_of(data: bytes, parts: Split) -> dict[str, Any] | None:
    """Where each lead of the file stands, in bytes, with digests to find what the next save
    changed without cutting the whole file again (`resplit`); plain JSON data."""
    if data.startswith(_BOM):
        return None
    offsets, at = [], parts.first
    for piece in parts.slices:
        offsets.append(at)
        at += len(piece.text.encode())
    end = min(at, len(data))
    head, tail = _blocks(data)
    return {"size": len(data), "blocks": head, "tail_blocks": tail, "start": parts.first,
            "end": end, "indent": parts.indent, "head": _hash(data[:parts.first]),
            "tail": _hash(data[end:]), "head_key": _hash(parts.head_key.encode()),
            "ids": [piece.lead_id for piece in parts.slices], "offsets": offsets}


@dataclass
class Resplit:
    """The file's leads after a save, found from the layout before it: the ids in order,
    the slices of the leads in the changed stretch (their text and digest), the others as
    they were (at `offsets`), and the new layout."""

    ids: list[str]
    fresh: dict[str, Slice]
    layout: dict[str, Any]
    data: bytes

    def text_of(self, index: int) -> str:
        offsets, end = self.layout["offsets"], self.layout["end"]
        stop = offsets[index + 1] if index + 1 < len(offsets) else end
        text = self.data[offsets[index]:stop].decode()
        return text if text.endswith("\n") else text + "\n"

    def head_text(self) -> str:
        """The file without its leads (what `defaults:` is read from)."""
        return (self.data[:self.layout["start"]] + self.data[self.layout["end"]:]).decode()


def resplit(data: bytes, old: dict[str, Any], digests: dict[str, str]) -> Resplit | None:
    """The leads of `data`, a new version of the file `old` describes (`layout_of`), with
    `digests` the slice digest of each lead then: the same as `split` would find (tests/
    test_scale.py), at the cost of what changed. None when the change reaches the file's
    head or tail (`defaults:`...) or anything is unusual: the caller cuts the whole file."""
    if data.startswith(_BOM):
        return None
    size, n_old = len(data), old["size"]
    delta = size - n_old
    view = memoryview(data)
    same_head = 0  # whole blocks equal from the start, then from the end
    for i, digest in enumerate(old["blocks"]):
        if (i + 1) * BLOCK > size or _hash(view[i * BLOCK:(i + 1) * BLOCK]) != digest:
            break
        same_head = (i + 1) * BLOCK
    same_tail = 0
    for i, digest in enumerate(old["tail_blocks"]):
        if (i + 1) * BLOCK > size or _hash(view[size - (i + 1) * BLOCK:size - i * BLOCK]) != digest:
            break
        same_tail = (i + 1) * BLOCK
    start, end = old["start"], old["end"]
    tail_len = n_old - end
    if size - tail_len < start:
        return None
    if start > same_head and _hash(view[:start]) != old["head"]:
        return None
    if tail_len > same_tail and _hash(view[size - tail_len:]) != old["tail"]:
        return None
    ids, offsets = old["ids"], old["offsets"]
    count = len(ids)

    def stop(i: int) -> int:
        return int(offsets[i + 1] if i + 1 < count else end)

    first = 0  # the leads before `first` are as they were, where they were
    while first < count and stop(first) <= same_head:
        first += 1
    while first < count and stop(first) <= size and \
            _hash(view[offsets[first]:stop(first)]) == digests[ids[first]]:
        first += 1
    chunk_start = offsets[first] if first < count else end
    last = count - 1  # and those after `last` too, moved by `delta`
    while last >= first and offsets[last] + delta > chunk_start and \
            data[offsets[last] + delta - 1:offsets[last] + delta] == b"\n" and (
            offsets[last] >= n_old - same_tail
            or _hash(view[offsets[last] + delta:stop(last) + delta]) == digests[ids[last]]):
        last -= 1
    chunk_end = (offsets[last + 1] if last + 1 < count else end) + delta
    if chunk_end < chunk_start or (chunk_start < chunk_end < size
                                   and data[chunk_end - 1:chunk_end] != b"\n"):
        return None
    try:
        text = data[chunk_start:chunk_end].decode()
    except UnicodeDecodeError:
        return None
    found = _leads_in(text, old["indent"])
    if found is None:
        return None
    fresh: dict[str, Slice] = {}
    new_offsets: list[int] = []
    stops = [offset for offset, _ in found[1:]] + [len(text)] if found else []
    at = chunk_start
    for (offset, lead_id), stop_at in zip(found, stops, strict=True):
        piece = text[offset:stop_at]
        raw = piece.encode()
        new_offsets.append(at)
        at += len(raw)
        if piece[-1:] != "\n":
            piece += "\n"
            raw += b"\n"
        fresh[lead_id] = Slice(lead_id, -1, piece, _hash(raw))
    new_ids = [*ids[:first], *(lead_id for _, lead_id in found), *ids[last + 1:]]
    new_offsets = [*offsets[:first], *new_offsets, *(o + delta for o in offsets[last + 1:])]
    head, tail = _blocks(data, old["blocks"][:same_head // BLOCK],
                         old["tail_blocks"][:same_tail // BLOCK])
    layout = {**old, "size": size, "blocks": head, "tail_blocks": tail, "end": end + delta,
              "ids": new_ids, "offsets": new_offsets}
    return Resplit(new_ids, fresh, layout, data)

