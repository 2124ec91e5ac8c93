"""Canonical YAML text: the one way costplan writes YAML.

Byte-stable output is what makes GitOps diffs honest: keys sorted, block
style throughout, multi-line strings (PromQL, dashboard JSON) as literal
blocks, ``Decimal`` written exactly. The build output, the plan copy inside
the report ConfigMap and the installer's diffs all use ``dump_yaml`` so they
never disagree on a byte.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import yaml

from costplan.core.money import format_decimal

_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class CanonicalDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """SafeDumper (libyaml when present) with exact decimals and literal blocks."""


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
