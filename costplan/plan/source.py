"""Reading YAML with positions.

Every mapping and sequence the loader builds remembers, for each key or item,
the file, line and column it came from (``Located``). The environment merge
carries these positions along, so a validation error on a merged value
points into whichever file supplied it.

Duplicate keys are errors (PyYAML silently keeps the last one), and numbers
with a fraction become ``Decimal`` built from the scalar's own text, so money
is exact from the first byte.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from costplan.core.diagnostics import Diagnostic

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Position(NamedTuple):
    """1-based line and column in a file (a tuple: millions are made for large plans)."""

    file: str
    line: int
    column: int


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


class _ScalarLoader(_BaseLoader):  # type: ignore[misc, valid-type]
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
        # .inf / .nan: keep YAML's meaning; validation rejects them as money.
        return loader.construct_yaml_float(node)


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
    diagnostics = [_with_pointer(d, data) if d.check_id == "duplicate-key" else d for d in diagnostics]
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
        self.filename = filename
        self.diagnostics = diagnostics

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem="nested too deeply (a recursive alias?)", problem_mark=node.start_mark)
        kind = type(node)
        if kind is yaml.ScalarNode:
            return node.value if node.tag == _STR_TAG else self.loader.construct_object(node)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, depth)
        assert isinstance(node, yaml.MappingNode)
        return self._mapping(node, depth)

    def _sequence(self, node: yaml.SequenceNode, depth: int) -> LList:
        name = self.filename
        result = LList(self.build(child, depth + 1) for child in node.value)
        result.position = Position(name, node.start_mark.line + 1, node.start_mark.column + 1)
        result.item_positions = [
            Position(name, child.start_mark.line + 1, child.start_mark.column + 1) for child in node.value
        ]
        return result

    def _mapping(self, node: yaml.MappingNode, depth: int) -> LDict:
        name = self.filename
        if self.has_merge_keys and any(key.tag == _MERGE_TAG for key, _ in node.value):
            self.loader.flatten_mapping(node)
        result = LDict()
        result.position = Position(name, node.start_mark.line + 1, node.start_mark.column + 1)
        key_positions, value_positions = result.key_positions, result.value_positions
        for key_node, value_node in node.value:
            key = self.build(key_node, depth + 1)
            if not isinstance(key, (str, int, bool)) or isinstance(key, Decimal):
                key = str(key)
            mark = key_node.start_mark
            key_pos = Position(name, mark.line + 1, mark.column + 1)
            if key in result:
                first = key_positions[key]
                self.diagnostics.append(
                    Diagnostic(
                        name, key_pos.line, key_pos.column, "",
                        f"duplicate key {key!r} (first defined at line {first.line})", "duplicate-key",
                    )
                )
            result[key] = self.build(value_node, depth + 1)
            key_positions[key] = key_pos
            mark = value_node.start_mark
            value_positions[key] = Position(name, mark.line + 1, mark.column + 1)
        return result


def _with_pointer(diagnostic: Diagnostic, data: Any) -> Diagnostic:
    """Give a duplicate-key diagnostic the pointer of the key (the loader knows only its position)."""
    from dataclasses import replace

    where = (diagnostic.line, diagnostic.column)

    def search(node: Any, path: list[Any]) -> list[Any] | None:
        if isinstance(node, LDict):
            for key, position in node.key_positions.items():
                if (position.line, position.column) == where:
                    return path + [key]
            children = list(node.items())
        elif isinstance(node, LList):
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


def load_yaml_file(path: Path, display_name: str | None = None) -> LoadedFile:
    """Read and parse a file; unreadable files become diagnostics, not exceptions."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedFile(name, None, [Diagnostic(name, 1, 1, "", "file not found", "file-missing")])
    except (OSError, UnicodeDecodeError) as exc:
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
