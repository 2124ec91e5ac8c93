"""Canonical YAML text: the one way costplan writes YAML.

Byte-stable output is what makes GitOps diffs honest: keys sorted, block
style throughout, multi-line strings (PromQL, dashboard JSON) as literal
blocks, ``Decimal`` written exactly. The build output, the plan copy inside
the report ConfigMap and the installer's diffs all use ``dump_yaml`` so they
never disagree on a byte.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import yaml

from costplan.core.money import format_decimal

_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class QuickResolver:
    """``BaseResolver.resolve`` for scalars without rebuilding its lists on every call.

    libyaml calls back into Python to resolve the tag of every scalar it
    parses or emits (millions in a large build). The implicit resolvers of
    the class are combined once per first character, wildcard ones last, as
    ``BaseResolver.resolve`` combines them each time; the tags are the same.
    Mixed in before a PyYAML loader or dumper class.
    """

    yaml_implicit_resolvers: dict[Any, list[tuple[str, Any]]]
    yaml_path_resolvers: dict[Any, Any]
    DEFAULT_SCALAR_TAG: str

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and not self.yaml_path_resolvers:
            if implicit[0]:
                tables = type(self).__dict__.get("_implicit_by_first") or _implicit_tables(type(self))
                for tag, regexp in tables.get(value[:1], tables[None]):
                    if regexp.match(value):
                        return tag
            return self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[misc]


def _implicit_tables(cls: type) -> dict[Any, tuple[tuple[str, Any], ...]]:
    resolvers = cls.yaml_implicit_resolvers  # type: ignore[attr-defined]
    wildcard = tuple(resolvers.get(None, []))
    tables: dict[Any, tuple[tuple[str, Any], ...]] = {
        first: tuple(found) + wildcard for first, found in resolvers.items() if first is not None
    }
    tables[None] = wildcard
    cls._implicit_by_first = tables  # type: ignore[attr-defined]
    return tables


class CanonicalDumper(QuickResolver, _BaseDumper):  # type: ignore[misc, valid-type]
    """SafeDumper (libyaml when present) with exact decimals and literal blocks.

    ``represent`` and ``resolve`` are PyYAML's own, made cheap for the types
    a build emits: PyYAML looks up a representer through the type's MRO and
    tracks aliases for every value, and tries each implicit resolver's regular
    expression on every scalar; in a large build that Python work costs more
    than libyaml's emitting. The nodes (tags, styles, sorted keys, shared
    containers as anchors) and so the text are exactly PyYAML's; any other
    type goes through PyYAML's representers unchanged.
    """

    def represent(self, data: Any) -> None:
        if not self.sort_keys or self.default_flow_style is not False or self.default_style is not None:
            super().represent(data)  # the shortcut writes dump_yaml's style only
            return
        self.serialize(_node(self, data, {}))
        self.represented_objects: dict[int, Any] = {}
        self.object_keeper: list[Any] = []
        self.alias_key = None



def _node(dumper: Any, data: Any, shared: dict[int, Any]) -> Any:
    """``SafeRepresenter.represent_data`` with the representers below, for the common types.

    ``shared`` maps a container's id to its node: a dict or list met twice
    is the same node, which the serializer writes as an anchor and alias,
    as PyYAML does.
    """
    kind = type(data)
    if kind is str:
        return yaml.ScalarNode(_STR, data, style="|" if "\n" in data else None)
    if kind is dict or (isinstance(data, dict) and kind not in dumper.yaml_representers):
        node = shared.get(id(data))
        if node is None:
            pairs: list[tuple[Any, Any]] = []
            node = shared[id(data)] = yaml.MappingNode(_MAP, pairs, flow_style=False)
            items = list(data.items())
            if kind is dict:  # a subclass goes through ``represent_dict(v.items())``: PyYAML keeps its order
                try:
                    items.sort()
                except TypeError:  # keys of mixed types: PyYAML keeps them unsorted
                    items = list(data.items())
            for key, value in items:
                pairs.append((_node(dumper, key, shared), _node(dumper, value, shared)))
        return node
    if kind is list or (isinstance(data, list) and kind not in dumper.yaml_representers):
        node = shared.get(id(data))
        if node is None:
            values: list[Any] = []
            node = shared[id(data)] = yaml.SequenceNode(_SEQ, values, flow_style=False)
            values.extend(_node(dumper, item, shared) for item in data)
        return node
    if kind is bool:
        return yaml.ScalarNode(_BOOL, "true" if data else "false")
    if kind is int:
        return yaml.ScalarNode(_INT, str(data))
    if kind is Decimal:
        text = format_decimal(data)
        return yaml.ScalarNode(_FLOAT if "." in text else _INT, text)
    if data is None:
        return yaml.ScalarNode(_NULL, "null")
    return dumper.represent_data(data)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Literal blocks keep PromQL and JSON readable in review; libyaml falls back
    # to a quoted style by itself when a string cannot be a block (e.g.
    # trailing spaces), so this is always safe.
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    text = format_decimal(value)
    tag = "tag:yaml.org,2002:float" if "." in text else "tag:yaml.org,2002:int"
    return dumper.represent_scalar(tag, text)


CanonicalDumper.add_representer(str, _represent_str)
CanonicalDumper.add_representer(Decimal, _represent_decimal)
# Loader containers (LDict/LList) may reach the output through plan labels.
CanonicalDumper.add_multi_representer(dict, lambda d, v: d.represent_dict(v.items()))
CanonicalDumper.add_multi_representer(list, lambda d, v: d.represent_list(v))


def content_key(data: Any) -> str | None:
    """A cheap exact key of an object's content (C-accelerated JSON), to find identical objects.

    Two objects with the same key dump to the same YAML, so a build of many
    environments validates and dumps each distinct object once. ``None`` for
    content JSON cannot key (then nothing is shared).
    """
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_key_default)
    except (TypeError, ValueError):
        return None


def _key_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"decimal:{value}"
    raise TypeError(f"cannot key {type(value).__name__}")


def dump_yaml(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=CanonicalDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
        indent=2,
    )


def dump_yaml_shared(data: Any, dumped: dict[bytes, str]) -> str:
    """``dump_yaml(data)``, each top-level entry of a mapping dumped once per distinct content.

    In a block mapping at the top level every entry is text of its own
    (``key:`` at column 0, its value below, indented the same way whatever
    comes before or after), so the sorted entries' texts joined are the
    text of the whole. The environments of one build emit the same rules,
    policies and dashboards with other metadata: the large ``spec`` or
    ``data`` of each is dumped once. ``dumped`` maps a digest of an entry's
    key and content (``content_key``) to its text. Like the content key, this relies
    on generators never placing one container at two places (which PyYAML
    would write as an anchor and alias).
    """
    if type(data) is not dict or not data or not all(type(key) is str for key in data):
        return dump_yaml(data)
    parts = []
    for key in sorted(data):
        value = data[key]
        content = content_key(value)
        if content is None:
            return dump_yaml(data)
        # A digest, not the content itself: the memo would otherwise hold a JSON copy
        # of every object of the build.
        entry = hashlib.blake2b(f"{key}\0{content}".encode(), digest_size=20).digest()
        text = dumped.get(entry)
        if text is None:
            text = dumped[entry] = dump_yaml({key: value})
        parts.append(text)
    return "".join(parts)
