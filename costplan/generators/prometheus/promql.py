"""Small builders for PromQL text; every plan value goes through an escaper."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from costplan.core.money import format_decimal
from costplan.core.names import promql_regex_literal, promql_string


def selector(metric: str, matchers: Mapping[str, str] | None = None, **regex: str) -> str:
    """``metric{label="value", ...}``; values escaped, ``regex`` values taken as matcher text."""
    parts = [f"{k}={promql_string(v)}" for k, v in sorted((matchers or {}).items())]
    parts += [f"{k}{v}" for k, v in sorted(regex.items())]
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def one_of(values: list[str]) -> str:
    """Matcher text ``=~"a|b"`` matching exactly ``values``."""
    return "=~" + promql_regex_literal(values)


def none_of(values: list[str]) -> str:
    return "!~" + promql_regex_literal(values)


def number(value: Decimal | int) -> str:
    """An exact decimal literal; never an exponent."""
    return format_decimal(value)


def by(labels: tuple[str, ...] | list[str]) -> str:
    return ", ".join(labels)


def duration(seconds: int) -> str:
    """A PromQL duration: ``86399`` → ``23h59m59s``."""
    if seconds <= 0:
        raise ValueError("durations are positive")
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def parse_duration(text: str) -> int:
    """Seconds of a plan window (``7d``, ``24h``, ``1h30m``)."""
    import re

    units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([wdhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = {k: v for k, v in sorted(labels.items())}
    return rule


def constant(name: str, value: Decimal | int, labels: Mapping[str, str]) -> dict[str, Any]:
    """A constant series from the plan: ``vector(<exact value>)`` with labels."""
    return record(name, f"vector({number(value)})", labels)


def template_text(value: str) -> str:
    """Plan text safe inside an alert annotation (a Go template)."""
    return value.replace("{{", '{{ "{{" }}')
