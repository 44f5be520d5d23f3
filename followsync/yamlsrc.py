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
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError

from followsync.errors import ConfigError, Problem

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml is in every PyYAML wheel
    _Loader = yaml.SafeLoader

MAX_NODES = 2_000_000  # stops alias bombs ("billion laughs") long before memory runs out
MAX_DEPTH = 200
MAX_BYTES = 32 * 2**20  # ~80,000 leads; a bigger file is a wrong path, and would take minutes
PathItem = str | int
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$")
_NULLS = {"", "~", "null", "Null", "NULL"}
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass
class Source:
    """A loaded YAML document: its plain value and the node tree to locate paths in it."""

    file: str
    value: Any
    root: yaml.Node | None
    # per mapping node, its keys (merges expanded): locating thousands of problems in a
    # big mapping must not cost a scan of the mapping each
    _keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = field(
        default_factory=dict, repr=False, compare=False)

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
            found = self._child(node, item)
            if found is None:
                break
            key_node, node = found
            mark = key_node.start_mark if key and item == path[-1] else node.start_mark
        return (mark.line + 1, mark.column + 1)

    def _child(self, node: yaml.Node, item: PathItem) -> tuple[yaml.Node, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            return _child(node, item)
        keys = self._keys.get(id(node))
        if keys is None:
            keys = {key_node.value: (key_node, value_node)
                    for key_node, value_node in _merged_pairs(node)
                    if isinstance(key_node, yaml.ScalarNode)}
            self._keys[id(node)] = keys
        return keys.get(str(item))

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


def _merged_pairs(
    node: yaml.MappingNode, _done: dict[int, list[tuple[yaml.Node, yaml.Node]]] | None = None,
) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's pairs with YAML merge keys (`<<: *base`) expanded, own keys last.

    A key met again keeps its first place and takes its last value (what a dict built from
    all the pairs would hold), and each merged mapping is expanded once: a "merge bomb" (each
    level merging the one before ten times) costs its distinct keys, not 10**levels pairs.
    """
    done = {} if _done is None else _done
    if id(node) in done:
        return done[id(node)]
    pairs_as_written: list[tuple[yaml.Node, yaml.Node]] = node.value
    keys = {key.value if type(key) is yaml.ScalarNode else id(key) for key, _ in pairs_as_written}
    if len(keys) == len(pairs_as_written) and "<<" not in keys:
        done[id(node)] = pairs_as_written  # no merge, no repeated key: as written (the usual)
        return pairs_as_written
    done[id(node)] = []  # a mapping merged into itself adds nothing more
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    place: dict[object, int] = {}

    def add(pair: tuple[yaml.Node, yaml.Node]) -> None:
        key = pair[0].value if isinstance(pair[0], yaml.ScalarNode) else id(pair[0])
        if key in place:
            pairs[place[key]] = pair
        else:
            place[key] = len(pairs)
            pairs.append(pair)

    own: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and not key_node.style:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    for pair in _merged_pairs(source, done):
                        add(pair)
        else:
            own.append((key_node, value_node))
    for pair in own:
        add(pair)
    done[id(node)] = pairs
    return pairs


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


def _too_large(root: yaml.Node, limit: int = MAX_NODES) -> yaml.Node | None:
    """The first node whose value, with every alias expanded, holds more than `limit`
    nodes (or that contains itself), else None. Each distinct node is counted once, so a
    "billion laughs" is found at the cost of its own few lines, before anything is built."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    merged: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):  # what the builder builds: merged values
            children = [value for _, value in _merged_pairs(node, merged)]
        if children_done:
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(child)] for child in children))
            if sizes[key] > limit:
                return node
            continue
        if key in sizes:
            continue
        if key in visiting:  # an alias to one of its own ancestors: endless
            return node
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return None


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("too deeply nested")
        self.mark = mark


@dataclass
class Composed:
    """What composing saw besides the tree: an alias or anchor, how many nodes."""

    aliases: bool = False
    nodes: int = 0
    depth: int = 0


def _compose(text: str, seen: Composed | None = None) -> yaml.Node | None:
    """The node tree of a one-document stream, like `yaml.compose`, built with a loop.

    libyaml's composer recurses in C: a few hundred kB of `[[[[` or `- - - -` overflow the C
    stack and kill the process (SIGSEGV) before any Python check can run. Here nesting deeper
    than MAX_DEPTH stops at once. Tags are not resolved: the builder types scalars itself.
    """
    seen = seen if seen is not None else Composed()
    parser = _Loader(text)
    try:
        parser.get_event()  # StreamStart
        if parser.check_event(yaml.StreamEndEvent):
            return None
        document = parser.get_event()  # DocumentStart
        anchors: dict[str, yaml.Node] = {}
        stack: list[list[Any]] = []  # per open collection: [node, pending mapping key or None]
        root: yaml.Node | None = None
        while root is None:
            event = parser.get_event()
            kind = type(event)
            node: Any
            if kind is yaml.ScalarEvent:
                seen.nodes += 1
                node = yaml.ScalarNode(_STR, event.value, event.start_mark, event.end_mark,
                                       style=event.style)
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                node = stack.pop()[0]
                node.end_mark = event.end_mark
            elif kind is yaml.AliasEvent:
                seen.aliases = True
                if event.anchor not in anchors:
                    raise ComposerError(None, None, "found undefined alias", event.start_mark)
                node = anchors[event.anchor]
            elif kind is yaml.SequenceStartEvent:
                seen.nodes += 1
                node = yaml.SequenceNode(_SEQ, [], event.start_mark, None,
                                         flow_style=event.flow_style)
            elif kind is yaml.MappingStartEvent:
                seen.nodes += 1
                node = yaml.MappingNode(_MAP, [], event.start_mark, None,
                                        flow_style=event.flow_style)
            else:  # pragma: no cover - libyaml sends nothing else inside a document
                raise ComposerError(None, None, f"unexpected {event}", event.start_mark)
            if kind is yaml.ScalarEvent or kind is yaml.SequenceStartEvent or \
                    kind is yaml.MappingStartEvent:
                if event.anchor is not None:
                    seen.aliases = True
                    if event.anchor in anchors:
                        raise ComposerError("found duplicate anchor; first occurrence",
                                            anchors[event.anchor].start_mark,
                                            "second occurrence", event.start_mark)
                    anchors[event.anchor] = node
                if kind is not yaml.ScalarEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise _TooDeep(event.start_mark)
                    stack.append([node, None])
                    seen.depth = max(seen.depth, len(stack))
                    continue
            if not stack:
                root = node
                continue
            top = stack[-1]
            if type(top[0]) is yaml.SequenceNode:
                top[0].value.append(node)
            elif top[1] is None:
                top[1] = node
            else:
                top[0].value.append((top[1], node))
                top[1] = None
        parser.get_event()  # DocumentEnd
        if not parser.check_event(yaml.StreamEndEvent):
            event = parser.get_event()
            raise ComposerError("expected a single document in the stream", document.start_mark,
                                "but found another document", event.start_mark)
        return root
    finally:
        parser.dispose()


def _too_deep(file: str, mark: Any) -> ConfigError:
    """One message for nesting past MAX_DEPTH, whichever of PyYAML or we noticed it first."""
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return ConfigError([Problem(file, line, col, "the document is too deeply nested",
                                "a lead file is a flat list of leads; remove the nesting")])


def load(file: str, data: bytes, seen: Composed | None = None) -> Source:
    """Parse YAML bytes; every syntax or structure problem becomes a ConfigError.

    `seen` (optional) is told whether the document used aliases, its nodes and depth."""
    if len(data) > MAX_BYTES:
        raise ConfigError([Problem(file, 1, 1, f"the file is {len(data) / 2**20:.1f} MB; "
                                   f"followsync reads YAML files of up to {MAX_BYTES >> 20} MB",
                                   "is this the right file? (`leads:` may also list several "
                                   "lead files)")])
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
    seen = seen if seen is not None else Composed()
    try:
        root = _compose(text, seen)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if "nesting depth" in str(exc.problem):  # PyYAML >= 6.0.4 stops deep flow nesting itself
            raise _too_deep(file, mark) from None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        hint = "check the indentation and that every ':' in a value is inside quotes"
        if (mark and _char_at(text, mark.line, mark.column) == "\t") or "'\\t'" in message:
            message = "YAML syntax error: a tab character where YAML allows only spaces"
            hint = "YAML does not allow tabs for indentation; use spaces"
        raise ConfigError([Problem(file, line, col, message, hint)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: say where
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        raise ConfigError([Problem(file, line, col, f"a control character (U+{code:04X}) that "
                                   "YAML does not allow in a file",
                                   "remove it (or write it as \\uXXXX inside double quotes)")])\
            from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([Problem(file, 1, 1, f"YAML error: {first}")]) from None
    except _TooDeep as exc:
        raise _too_deep(file, exc.mark) from None
    except RecursionError:
        raise ConfigError([Problem(file, 1, 1, "the document is too deeply nested")]) from None
    if root is None:
        return Source(file, None, None)
    # Without aliases every node is in the tree once, so no subtree can hold more nodes than
    # were composed: the walk (a second pass over a big file) is needed only with aliases.
    huge = _too_large(root) if seen.aliases or seen.nodes > MAX_NODES else None
    if huge is not None:
        mark = huge.start_mark
        raise ConfigError([Problem(file, mark.line + 1, mark.column + 1,
                                   "the document is too large (alias expansion?)",
                                   "a lead file is a flat list of leads; remove the nesting")])
    builder = _Builder(file)
    try:
        value = builder.build(root)
    except RecursionError:
        raise ConfigError([Problem(file, 1, 1, "the document is too deeply nested")]) from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return Source(file, value, root)
