"""`followsync done`: append a touch to a lead's `log`, changing nothing else in the file.

The new entry is inserted as text at the place the YAML node marks point to, so every other
byte (comments, key order, quoting, blank lines) stays as it was. The result is parsed and
checked before it is written, atomically, and only if nobody changed the file meanwhile.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from followsync.atomic import write_atomic
from followsync.errors import ConfigError, FollowsyncError, UsageError
from followsync.leads import Touch, parse_lead_file
from followsync.locks import flock_until
from followsync.yamlsrc import Source, load


@dataclass(frozen=True)
class Edit:
    """Where the new entry goes: `text` inserted at character `index`."""

    index: int
    text: str


def entry_text(touch: Touch) -> str:
    """The shortest log entry that reads back as `touch`: `DATE [HH:MM] note`, else a flow
    mapping (`{date: ..., at: "HH:MM", by: ..., rule: ..., note: ...}`)."""
    day = touch.date.isoformat()
    clock = touch.at.strftime("%H:%M") if touch.at is not None else ""
    if touch.by == "me" and touch.rule is None:
        plain = " ".join(part for part in (day, clock, touch.note) if part)
        if _reads_back(plain, touch):
            return plain
    at = f", at: \"{clock}\"" if clock else ""
    rule = f", rule: {json.dumps(touch.rule, ensure_ascii=False)}" if touch.rule else ""
    note = f", note: {json.dumps(touch.note, ensure_ascii=False)}" if touch.note else ""
    return f"{{date: {day}{at}, by: {touch.by}{rule}{note}}}"


def _reads_back(entry: str, touch: Touch) -> bool:
    text = f"version: 1\nleads:\n  x:\n    name: x\n    log:\n      - {entry}\n"
    try:
        parsed, _ = parse_lead_file("entry", text.encode())
    except ConfigError:
        return False
    leads = parsed.leads or {}
    return "x" in leads and list(leads["x"].log) == [touch]


def plan_edit(source: Source, text: str, lead_id: str, entry: str) -> Edit:
    """Where and what to insert to append `entry` to the lead's log."""
    newline = "\r\n" if "\r\n" in text else "\n"
    root = source.root
    leads = _value(root, "leads")
    lead = _value(leads, lead_id) if leads is not None else None
    if not isinstance(lead, yaml.MappingNode):
        raise UsageError(f"lead {lead_id!r} is not in {source.file}")
    log = _value(lead, "log")
    if lead.flow_style and log is None:  # `dana: {name: Dana}` gets `, log: [entry]`
        close = text.rindex("}", 0, lead.end_mark.index)
        if not lead.value:
            sep = ""
        elif _has_comma(text[_content_end(lead.value[-1][1]) : close]):
            sep = "" if text[close - 1].isspace() else " "
        else:
            sep = ", "
        return Edit(close, f"{sep}log: [{_quoted_for_flow(entry)}]")
    if isinstance(log, yaml.SequenceNode) and log.flow_style:
        close = text.rindex("]", 0, log.end_mark.index)
        if not log.value:
            sep = ""
        elif _has_comma(text[_content_end(log.value[-1]) : close]):  # `[a, b, ]`
            sep = "" if text[close - 1].isspace() else " "
        else:
            sep = ", "
        return Edit(close, f"{sep}{_quoted_for_flow(entry)}")
    if isinstance(log, yaml.SequenceNode) and log.value:
        first, last = log.value[0], log.value[-1]
        line_start = text.rfind("\n", 0, first.start_mark.index) + 1
        dash = text.rindex("-", line_start, first.start_mark.index)
        indent = text[line_start:dash]
        after = _end_of_line(text, _content_end(last))
        return Edit(after, f"{indent}- {entry}{newline}")
    if log is not None and not (isinstance(log, yaml.ScalarNode) and log.value in ("", "~", "null")):
        raise UsageError(f"the log of lead {lead_id!r} is not a list; fix it first")
    key_col = lead.value[0][0].start_mark.column
    indent = " " * key_col
    if log is not None:  # `log:` with nothing after it
        key = next(k for k, v in lead.value if v is log)
        after = _end_of_line(text, key.end_mark.index)
        return Edit(after, f"{indent}  - {entry}{newline}")
    after = _end_of_line(text, _content_end(lead))
    return Edit(after, f"{indent}log:{newline}{indent}  - {entry}{newline}")


def _content_end(node: yaml.Node) -> int:
    """Where a node's own text ends. A block collection's end mark lies at the next token,
    possibly lines further down past blank lines and comments, so use its last scalar."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode) and node.value:
        key, value = node.value[-1]
        end = _content_end(value)
        return end if end > key.end_mark.index else int(key.end_mark.index)
    if isinstance(node, yaml.SequenceNode) and node.value:
        return _content_end(node.value[-1])
    return int(node.start_mark.index)


def _has_comma(between: str) -> bool:
    """Whether the text between a flow list's last item and its `]` holds a trailing comma
    (only blanks, commas and comments can be there)."""
    return any("," in line.split("#", 1)[0] for line in between.splitlines())


def _quoted_for_flow(entry: str) -> str:
    return entry if entry.startswith("{") else json.dumps(entry, ensure_ascii=False)


def _end_of_line(text: str, index: int) -> int:
    """The index just after the newline ending the line that holds `index - 1`."""
    end = text.find("\n", max(index - 1, 0))
    return len(text) if end == -1 else end + 1


def _value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node  # type: ignore[no-any-return]
    return None


def log_touch(path: Path, lead_id: str, touch: Touch, shown: str | None = None) -> str:
    """Append the touch to the lead's log in `path`; returns the entry written."""
    with _editing(path, shown or str(path)):
        return _log_touch(path, lead_id, touch, shown)


@contextlib.contextmanager
def _editing(path: Path, name: str, wait: float = 10.0) -> Iterator[None]:
    """An exclusive lock on the lead file while it is read, edited and replaced, so two
    `followsync done` at once take turns instead of the second undoing the first (the check
    for a changed file cannot see a write that lands between it and the rename). The lock
    is on the file itself; as each edit replaces the file, a waiter that gets the lock on a
    file that is no longer the one at `path` tries again on the new one."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield  # missing or unreadable: reading it reports that properly
            return
        try:
            if not flock_until(fd, deadline, pause=0.02):
                raise FollowsyncError(f"{name} is being edited by another `followsync done`",
                                      "run the command again")
            try:
                current = os.stat(path)
            except OSError:
                current = None
            held = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == \
                    (held.st_dev, held.st_ino):
                yield
                return
        finally:
            os.close(fd)


def _log_touch(path: Path, lead_id: str, touch: Touch, shown: str | None = None) -> str:
    name = shown or str(path)
    data = path.read_bytes()
    parsed, _ = parse_lead_file(name, data)  # a broken file is reported, never edited
    before = (parsed.leads or {}).get(lead_id)
    if before is None:
        raise UsageError(f"lead {lead_id!r} is not in {name}")
    text = data.decode("utf-8-sig")
    bom = data.startswith(b"\xef\xbb\xbf")
    entry = entry_text(touch)
    edit = plan_edit(load(name, data), text, lead_id, entry)
    if edit.index > 0 and text[edit.index - 1] not in "\n[, " and not edit.text.startswith(","):
        edit = Edit(edit.index, ("\r\n" if "\r\n" in text else "\n") + edit.text)
    new_text = text[: edit.index] + edit.text + text[edit.index :]
    new_data = (b"\xef\xbb\xbf" if bom else b"") + new_text.encode("utf-8")
    try:
        after_file, _ = parse_lead_file(name, new_data)
    except ConfigError:  # the edit broke the file: say so, never blame the user's file
        after_file = None
    # the file must read back as before with the touch added to that lead, and nothing else
    # changed (an alias `other: *lead` would otherwise get the entry too)
    expected = {**(parsed.leads or {}), lead_id: before.model_copy(
        update={"log": [*before.log, touch]})}
    if after_file is None or after_file.leads != expected or \
            after_file.defaults != parsed.defaults or after_file.version != parsed.version:
        raise FollowsyncError(f"could not add the entry to {name} safely; nothing was written",
                              f"add it by hand under `log:` of {lead_id}: - {entry}")
    if path.read_bytes() != data:
        raise FollowsyncError(f"{name} changed while followsync was editing it; nothing was "
                              "written", "run the command again")
    try:
        write_atomic(path, new_data)
    except OSError as exc:
        raise FollowsyncError(f"cannot write {name}: {exc.strerror}; it was left as it was")\
            from None
    return entry


def unknown_rule(lead_id: str, rule: str, pending: list[str]) -> UsageError:
    """`done --rule` naming no follow-up of the lead that is pending now."""
    if not pending:
        return UsageError(f"{lead_id} has no pending follow-up {rule!r}",
                          f"{lead_id} has no follow-up pending; `followsync agenda` lists them")
    close = difflib.get_close_matches(rule, pending, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + \
        f"pending for {lead_id}: {', '.join(pending)}"
    return UsageError(f"{lead_id} has no pending follow-up {rule!r}", hint)


def unknown_lead(lead_id: str, known: list[str]) -> UsageError:
    close = difflib.get_close_matches(lead_id, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "`followsync agenda` lists the leads"
    return UsageError(f"no lead {lead_id!r} in the lead files", hint)
