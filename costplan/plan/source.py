"""Reading YAML with positions.

Every mapping and sequence the loader builds remembers, for each key or item,
the file, line and column it came from (``Located``). The environment merge
carries these positions along, so a validation error on a merged value
points into whichever file supplied it.

Duplicate keys are errors (PyYAML silently keeps the last one), and numbers
with a fraction become ``Decimal`` built from the scalar's own text, so money
is exact from the first byte.

The loader is also the one gate for what a number or a name may be, so no
later stage meets a value it cannot handle:

* a number must be finite, below ``MAX_MAGNITUDE`` and have at most
  ``MAX_SIGNIFICANT_DIGITS`` significant digits (``money`` documents why);
  YAML 1.1 forms that silently change a value (``010`` is 8, ``1:30`` is
  90, ``.inf``, ``.nan``) are errors at their position;
* a key may hold no control character, a value none but tab and newline
  (a name with a line break would forge diagnostics; NEL, DEL and C1
  characters break or silently change generated YAML);
* only regular files up to ``MAX_FILE_BYTES`` are read (a FIFO or
  ``/dev/zero`` would hang), and aliases may not expand the document to
  more than ``MAX_EXPANSION_FACTOR`` values per input byte (a few KB of
  nested aliases would otherwise expand to billions of values).
* a gzip-compressed file is read as its content (the report jobs' copy of
  a large plan), within the same size limit.
"""

from __future__ import annotations

import gc
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from costplan.core.canonical_yaml import QuickResolver
from costplan.core.diagnostics import Diagnostic
from costplan.core.money import MAX_MAGNITUDE, MAX_SIGNIFICANT_DIGITS

MAX_FILE_BYTES = 32 * 1024 * 1024
"""A plan or overlay larger than this is refused (the largest plans measured are a few MB)."""
MAX_EXPANSION_FACTOR = 10
"""Aliases may expand a document to this many values per input byte (plus a floor): more is a YAML bomb."""
_EXPANSION_FLOOR = 100_000
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_YAML11_OCTAL = re.compile(r"[-+]?0[0-9_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")
_SPECIAL_FLOAT = re.compile(r"[-+]?\.(inf|Inf|INF|nan|NaN|NAN)")

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Position(NamedTuple):
    """1-based line and column in a file (a tuple: millions are made for large plans)."""

    file: str
    line: int
    column: int


# ``Position(...)`` without the Python-level ``__new__`` of NamedTuple (millions are made).
_position = tuple.__new__


class Located:
    """Mixin for containers that know where their children came from."""

    position: Position | None = None


class LDict(dict, Located):
    """A mapping that records the position of each key and each value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_positions: dict[Any, Position] = {}
        self.value_positions: dict[Any, Position] = {}


class LList(list, Located):
    """A sequence that records the position of each item."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_positions: list[Position | None] = []


class _ScalarLoader(QuickResolver, _BaseLoader):  # type: ignore[misc, valid-type]
    """libyaml's parser and composer; PyYAML constructors only for non-string scalars.

    Numbers with a fraction become ``Decimal`` from the scalar's own text;
    timestamps stay strings (a plan has no use for datetime objects).
    Mappings and sequences are built by ``_Builder``, which keeps positions.
    """


def _construct_float(loader: Any, node: yaml.ScalarNode) -> Any:
    text = str(node.value).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        # .inf / .nan / 1:30.5: YAML's meaning, reported by ``_Builder._number``.
        return loader.construct_yaml_float(node)


def number_problem(text: str, tag: str, value: Any) -> str | None:
    """Why a YAML number cannot be a plan number, or None (see the module docstring)."""
    if tag == _INT_TAG and _YAML11_OCTAL.fullmatch(text):
        return f"{text} is read as the octal number {value} (YAML 1.1); write {text.lstrip('0') or '0'}, or quote it"
    if _SEXAGESIMAL.fullmatch(text):
        return f"{text} is read as the base-60 number {value} (YAML 1.1); write the number, or quote it"
    if _SPECIAL_FLOAT.fullmatch(text) or (isinstance(value, (float, Decimal)) and not Decimal(value).is_finite()):
        return f"{text} is not a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    # copy_abs and compare: abs() would round in the context and overflow on 1e+999999999.
    magnitude = value.copy_abs() if isinstance(value, Decimal) else Decimal(abs(value))
    if magnitude >= MAX_MAGNITUDE:
        return f"{text} is out of range: numbers in a plan are below {MAX_MAGNITUDE:,.0f}"
    digits = Decimal(value).as_tuple().digits
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        return f"{text} has {len(digits)} significant digits; at most {MAX_SIGNIFICANT_DIGITS} are exact"
    return None


_ScalarLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_ScalarLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


@dataclass
class LoadedFile:
    """A parsed file, or the diagnostics that explain why it could not be parsed."""

    path: str
    data: Any
    diagnostics: list[Diagnostic]


def load_yaml_text(text: str, filename: str) -> LoadedFile:
    """Parse one YAML document, recording positions and duplicate keys."""
    diagnostics: list[Diagnostic] = []
    loader = _ScalarLoader(text)
    # A large plan makes millions of small objects and no reference cycles;
    # the cyclic collector would rescan them all many times over (5x slower).
    collecting = gc.isenabled()
    gc.disable()
    try:
        documents = []
        while loader.check_node():
            documents.append(_Builder(loader, filename, diagnostics, text).build(loader.get_node()))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}: {problem}" if exc.context not in problem else problem
        diagnostics.append(
            Diagnostic(filename, line, column, "", f"YAML syntax error: {problem}", "yaml-syntax")
        )
        return LoadedFile(filename, None, diagnostics)
    except yaml.YAMLError as exc:
        diagnostics.append(Diagnostic(filename, 1, 1, "", f"YAML error: {exc}", "yaml-syntax"))
        return LoadedFile(filename, None, diagnostics)
    finally:
        loader.dispose()
        if collecting:
            gc.enable()
    if len(documents) > 1:
        diagnostics.append(
            Diagnostic(filename, 1, 1, "", "expected one YAML document, found several", "yaml-syntax")
        )
    data = documents[0] if documents else None
    diagnostics = [_with_pointer(d, data) if d.check_id in _POINTED else d for d in diagnostics]
    return LoadedFile(filename, data, diagnostics)


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64


class _Builder:
    """Turns the composed node tree (libyaml) into ``LDict``/``LList`` with positions.

    Walking nodes directly is about twice as fast as PyYAML's constructor
    machinery for large plans; non-string scalars still go through the
    loader's constructors (ints, booleans, null, floats as ``Decimal``).
    """

    def __init__(self, loader: Any, filename: str, diagnostics: list[Diagnostic], text: str = "<<") -> None:
        self.loader = loader
        self.has_merge_keys = "<<" in text
        # Without anchors no node is reached twice, so each node's children are
        # let go as soon as they are built: the node tree (libyaml composes all
        # of it first) then shrinks while the plan grows, instead of both
        # being whole at once (about 40% of a large plan's peak memory).
        self.releases = "&" not in text
        self.filename = filename
        self.diagnostics = diagnostics
        self.budget = MAX_EXPANSION_FACTOR * len(text) + _EXPANSION_FLOOR

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem="nested too deeply (a recursive alias?)", problem_mark=node.start_mark)
        self.budget -= 1
        if self.budget < 0:
            raise yaml.MarkedYAMLError(
                problem="aliases expand the document far beyond its size (a YAML bomb?); write the values out",
                problem_mark=node.start_mark,
            )
        kind = type(node)
        if kind is yaml.ScalarNode:
            if node.tag == _STR_TAG:
                if _VALUE_CONTROL.search(node.value):
                    self._problem(node, "a control character in a value (only tab and newline are allowed)",
                                  "control-character")
                return node.value
            value = self.loader.construct_object(node)
            if node.tag in (_INT_TAG, _FLOAT_TAG):
                problem = number_problem(str(node.value), node.tag, value)
                if problem:
                    self._problem(node, problem, "number")
            return value
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, depth)
        assert isinstance(node, yaml.MappingNode)
        return self._mapping(node, depth)

    def _children(self, node: yaml.Node) -> Iterator[Any]:
        """The node's children, each released (when ``releases``) once the caller moved past it."""
        if not self.releases:
            yield from node.value
            return
        children, node.value = node.value, []
        for index in range(len(children)):
            child, children[index] = children[index], None
            yield child

    def _sequence(self, node: yaml.SequenceNode, depth: int) -> LList:
        name = self.filename
        result = LList()
        result.position = Position(name, node.start_mark.line + 1, node.start_mark.column + 1)
        positions = result.item_positions
        for child in self._children(node):
            result.append(self.build(child, depth + 1))
            positions.append(Position(name, child.start_mark.line + 1, child.start_mark.column + 1))
        return result

    def _problem(self, node: yaml.Node, message: str, check_id: str) -> None:
        mark = node.start_mark
        self.diagnostics.append(Diagnostic(self.filename, mark.line + 1, mark.column + 1, "", message, check_id))

    def _mapping(self, node: yaml.MappingNode, depth: int) -> LDict:
        name = self.filename
        if self.has_merge_keys and any(key.tag == _MERGE_TAG for key, _ in node.value):
            self.loader.flatten_mapping(node)
        result = LDict()
        result.position = Position(name, node.start_mark.line + 1, node.start_mark.column + 1)
        key_positions, value_positions = result.key_positions, result.value_positions
        scalar, child_depth = yaml.ScalarNode, depth + 1
        for key_node, value_node in self._children(node):
            if type(key_node) is scalar and key_node.tag == _STR_TAG:
                key = key_node.value  # checked below, as a key
            else:
                key = self.build(key_node, child_depth)
                if not isinstance(key, (str, int, bool)) or isinstance(key, Decimal):
                    key = str(key)
            if isinstance(key, str) and _KEY_CONTROL.search(key):
                self._problem(key_node, "a control character (line break, escape code) in a key", "control-character")
            mark = key_node.start_mark
            key_pos = _position(Position, (name, mark.line + 1, mark.column + 1))
            if key in result:
                first = key_positions[key]
                self.diagnostics.append(
                    Diagnostic(
                        name, key_pos.line, key_pos.column, "",
                        f"duplicate key {key!r} (first defined at line {first.line})", "duplicate-key",
                    )
                )
            if type(value_node) is scalar and value_node.tag == _STR_TAG and child_depth <= _MAX_DEPTH and self.budget > 0:
                # ``build`` of a string value, inlined: most values are strings.
                self.budget -= 1
                value = value_node.value
                if _VALUE_CONTROL.search(value):
                    self._problem(value_node, "a control character in a value (only tab and newline are allowed)",
                                  "control-character")
                result[key] = value
            else:
                result[key] = self.build(value_node, child_depth)
            key_positions[key] = key_pos
            mark = value_node.start_mark
            value_positions[key] = _position(Position, (name, mark.line + 1, mark.column + 1))
        return result


_POINTED = frozenset({"duplicate-key", "number", "control-character"})


def _with_pointer(diagnostic: Diagnostic, data: Any) -> Diagnostic:
    """Give a loader diagnostic the pointer of its key or value (the loader knows only its position)."""
    from dataclasses import replace

    where = (diagnostic.line, diagnostic.column)

    def search(node: Any, path: list[Any]) -> list[Any] | None:
        if isinstance(node, LDict):
            for key, position in node.key_positions.items():
                if (position.line, position.column) == where:
                    return path + [key]
            for key, position in node.value_positions.items():
                if (position.line, position.column) == where and not isinstance(node[key], (LDict, LList)):
                    return path + [key]
            children = list(node.items())
        elif isinstance(node, LList):
            for index, item_position in enumerate(node.item_positions):
                if item_position and (item_position.line, item_position.column) == where:
                    if not isinstance(node[index], (LDict, LList)):
                        return path + [index]
            children = list(enumerate(node))
        else:
            return None
        for step, child in children:
            found = search(child, path + [step])
            if found is not None:
                return found
        return None

    path = search(data, [])
    return replace(diagnostic, pointer=pointer(path)) if path else diagnostic


GZIP_MAGIC = b"\x1f\x8b"


def gunzip(raw: bytes, max_length: int) -> bytes:
    """A gzip stream's content, at most ``max_length`` bytes (no decompression bomb fills memory).

    A plan too large for the annotation limit of one ConfigMap is shipped to
    the report jobs gzip-compressed (``generators/reports.py``); YAML never
    starts with these two bytes, so a compressed file is recognised by them.
    """
    inflater = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
    out = inflater.decompress(raw, max_length)
    if len(out) < max_length and not inflater.eof:
        raise zlib.error("truncated gzip stream")
    return out


def load_yaml_file(path: Path, display_name: str | None = None) -> LoadedFile:
    """Read and parse a file; unreadable files become diagnostics, not exceptions."""
    name = display_name or str(path)
    try:
        # stat first: opening a FIFO would block, reading /dev/zero never ends.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO or device?)"
            return LoadedFile(name, None, [Diagnostic(name, 1, 1, "", f"cannot read: {what}", "file-unreadable")])
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if raw.startswith(GZIP_MAGIC):
            raw = gunzip(raw, MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            limit = f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"
            return LoadedFile(name, None, [Diagnostic(name, 1, 1, "", f"cannot read: larger than {limit}", "file-unreadable")])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return LoadedFile(name, None, [Diagnostic(name, 1, 1, "", "file not found", "file-missing")])
    except (OSError, UnicodeDecodeError, zlib.error) as exc:
        return LoadedFile(name, None, [Diagnostic(name, 1, 1, "", f"cannot read: {exc}", "file-unreadable")])
    return load_yaml_text(text, name)


# --------------------------------------------------------------------------
# JSON pointers and positions
# --------------------------------------------------------------------------


def escape_pointer_token(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(path: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """RFC 6901 pointer for a path of keys and indexes (``""`` for the root)."""
    return "".join("/" + escape_pointer_token(p) for p in path)


def locate(document: Any, path: list[Any] | tuple[Any, ...], *, key: bool = False) -> Position | None:
    """Best position for ``path`` in ``document``.

    Walks as deep as the path exists. For the last step it returns the value's
    position (or the key's, with ``key=True``, which is where an unknown-key
    error belongs). If the path leaves the document, the deepest container
    that exists is used.
    """
    node = document
    best: Position | None = getattr(document, "position", None)
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, LDict) and step in node:
            where = node.key_positions.get(step) if (key and last) else node.value_positions.get(step)
            best = where or best
            node = node[step]
        elif isinstance(node, LList) and isinstance(step, int) and 0 <= step < len(node):
            best = (node.item_positions[step] if step < len(node.item_positions) else None) or best
            node = node[step]
        else:
            break
    return best
