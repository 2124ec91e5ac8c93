"""Naming and escaping for everything user text flows into.

Plan values become Kubernetes names, label values, PromQL string literals and
CEL string literals. Validation (``checks.py``) rejects what cannot be made
safe; these helpers make the rest safe by construction, so no input can
change the structure of generated output.
"""

from __future__ import annotations

import hashlib
import re

# All patterns are used with ``fullmatch``: ``$`` would accept a trailing
# newline, which is exactly the kind of value that must never pass.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Kubernetes label values: empty, or up to 63 chars, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_KEY_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
PROM_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
PROM_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(DNS_SUBDOMAIN.fullmatch(value))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(LABEL_VALUE.fullmatch(value))


def is_label_key(key: str) -> bool:
    """``prefix/name`` or ``name``; prefix a DNS subdomain, name a label-ish token."""
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(LABEL_KEY_NAME.fullmatch(name))


def is_prometheus_label_name(value: str) -> bool:
    return bool(PROM_LABEL_NAME.fullmatch(value)) and not value.startswith("__")


def is_prometheus_metric_name(value: str) -> bool:
    return bool(PROM_METRIC_NAME.fullmatch(value))


def object_name(*parts: str, max_length: int = 63) -> str:
    """A DNS-label object name from parts; too long → truncated plus a stable hash.

    ``object_name("costplan", "team", "ml-research")`` → ``costplan-team-ml-research``.
    """
    raw = "-".join(p for p in parts if p)
    if len(raw) <= max_length and DNS_LABEL.fullmatch(raw):
        return raw
    # Not a DNS label as written: sanitise, and add a hash of the original so
    # two different inputs can never collide on one name.
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", raw.lower())).strip("-") or "x"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    keep = max_length - len(digest) - 1
    return f"{name[:keep].rstrip('-')}-{digest}"


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go escaping: backslash, quote, newline)."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def promql_regex_literal(values: list[str]) -> str:
    """A PromQL string holding an anchored RE2 alternation that matches exactly ``values``."""
    return promql_string("|".join(re.escape(v) for v in sorted(values)))


def cel_string(value: str) -> str:
    """A CEL double-quoted string literal that means exactly ``value``.

    Printable ASCII stays as is (quote and backslash escaped); everything
    else becomes ``\\uXXXX`` or, beyond the basic plane, ``\\UXXXXXXXX``
    (CEL, unlike JSON, has no surrogate pairs).
    """
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'
