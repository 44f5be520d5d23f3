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
from typing import NamedTuple

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
    return Split(before + blank + after, leads_line, slices, text[:start] + after)
