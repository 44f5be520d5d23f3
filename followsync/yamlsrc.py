"""Safe YAML loading that remembers where every value came from.

PyYAML's own constructors follow YAML 1.1 (`on:` becomes True, `09:00` becomes 540) and
silently keep the last of two duplicate keys. We compose the node tree with the fast libyaml
parser and build plain values ourselves: keys are always strings, only `true`/`false`, `null`,
and plain numbers are typed (YAML 1.2 core), everything else stays a string for the models to
parse. The node tree is kept so an error at any path can be reported as FILE:LINE:COL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from followsync.errors import ConfigError, Problem

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml is in every PyYAML wheel
    _Loader = yaml.SafeLoader

MAX_NODES = 2_000_000  # stops alias bombs ("billion laughs") long before memory runs out
MAX_DEPTH = 200
PathItem = str | int
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$")
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass
class Source:
    """A loaded YAML document: its plain value and the node tree to locate paths in it."""

    file: str
    value: Any
    root: yaml.Node | None

    def where(self, path: Sequence[PathItem], key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at `path`, or of its key when `key` is true.

        A path that goes further than the document (a missing key) stops at the deepest node
        that exists, which is where the user has to add it.
        """
        node = self.root
        if node is None:
            return (1, 1)
        mark = node.start_mark
        for item in path:
            found = _child(node, item)
            if found is None:
                break
            key_node, node = found
            mark = key_node.start_mark if key and item == path[-1] else node.start_mark
        return (mark.line + 1, mark.column + 1)

    def problem(
        self, path: Sequence[PathItem], message: str, hint: str = "", key: bool = False
    ) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message, hint)


def _child(node: yaml.Node, item: PathItem) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in reversed(list(_merged_pairs(node))):
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(item):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
        return node.value[item], node.value[item]
    return None


def _merged_pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's pairs with YAML merge keys (`<<: *base`) expanded, own keys last."""
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    own: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and not key_node.style:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    pairs.extend(_merged_pairs(source))
        else:
            own.append((key_node, value_node))
    return pairs + own


class _Builder:
    """Builds plain Python values from nodes, collecting problems instead of stopping."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            mark = node.start_mark
            what = "too deeply nested" if depth > MAX_DEPTH else "too large (alias expansion?)"
            raise ConfigError([Problem(self.file, mark.line + 1, mark.column + 1,
                                       f"the document is {what}",
                                       "a lead file is a flat list of leads; remove the nesting")])
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, depth + 1) for child in node.value]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        raise AssertionError(f"unknown YAML node {node!r}")  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        own_keys: dict[str, yaml.Node] = {}
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and not key_node.style:
                continue
            mark = key_node.start_mark
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1,
                                             "a key must be a plain word, not a list or mapping"))
                continue
            name = key_node.value
            if name in own_keys:
                first = own_keys[name].start_mark
                self.problems.append(Problem(
                    self.file, mark.line + 1, mark.column + 1,
                    f"duplicate key {name!r} (first at line {first.line + 1})",
                    "YAML would silently keep only the last one; merge them or rename one"))
                continue
            own_keys[name] = key_node
        for key_node, value_node in _merged_pairs(node):
            if isinstance(key_node, yaml.ScalarNode):
                result[key_node.value] = self.build(value_node, depth + 1)
        return result


def _scalar(node: yaml.ScalarNode) -> Any:
    text: str = node.value
    if node.style:  # quoted, literal or folded: always a string
        return text
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    return lines[line][col : col + 1] if 0 <= line < len(lines) else ""


def load(file: str, data: bytes) -> Source:
    """Parse YAML bytes; every syntax or structure problem becomes a ConfigError."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([Problem(file, line, col, "the file is not UTF-8 text",
                                   "save it as UTF-8 (not a binary or UTF-16 file)")]) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError([Problem(file, line, 1, "the file contains a NUL byte",
                                   "is this really the lead file? save it as plain text")])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        hint = "check the indentation and that every ':' in a value is inside quotes"
        if (mark and _char_at(text, mark.line, mark.column) == "\t") or "'\\t'" in message:
            message = "YAML syntax error: a tab character where YAML allows only spaces"
            hint = "YAML does not allow tabs for indentation; use spaces"
        raise ConfigError([Problem(file, line, col, message, hint)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, 1, 1, "the document is too deeply nested")]) from None
    if root is None:
        return Source(file, None, None)
    builder = _Builder(file)
    try:
        value = builder.build(root)
    except RecursionError:
        raise ConfigError([Problem(file, 1, 1, "the document is too deeply nested")]) from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return Source(file, value, root)
