"""JSON Schema validation of the merged plan, reported as positioned diagnostics.

``schemas/costplan.schema.json`` is the contract editors and CI share (the
plan's first line points YAML language servers at it). jsonschema's own
messages are written for programmers ("... is not valid under any of the
given schemas", whole dicts repr'd), so every error is translated here into
one short English sentence placed at the ``file:line:column`` it concerns:

* an unknown key is reported at the key itself, with a "did you mean";
* a missing key is reported at the mapping that lacks it;
* enum errors list the allowed values;
* the schema's tagged unions (pricing ``type``, budget ``period``) are
  ``if``/``then`` branches onto closed variants, so one mistake yields one
  error naming the variant, never a cascade from every alternative.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costplan.core.data import CHECKOUT_ROOT, data_dir
from costplan.core.diagnostics import Diagnostic
from costplan.core.regex import schema_regex
from costplan.plan.source import locate, pointer

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "costplan.schema.json"
_REPO_SCHEMAS = CHECKOUT_ROOT / "schemas"

# Formats behind the schema's ``$anchor`` names, in words, for pattern errors.
_FORMATS = {
    "money": "a decimal amount (e.g. 0.002 or \"0.002\")",
    "kuadrantWindow": "a Kuadrant window (number+unit parts, units h, m, s, ms, e.g. 10s, 1h30m, 24h)",
    "promDuration": "a Prometheus duration (e.g. 15m, 7d)",
    "goDuration": "a duration (e.g. 1h, 15m)",
    "cron": "a cron expression (five fields, e.g. 0 6 1 * *, or a macro such as @daily)",
    "quantity": "a storage size (e.g. 1Gi, 500Mi)",
    "memoryQuantity": "a memory size (e.g. 512Mi, 1Gi)",
    "cpuQuantity": "a CPU amount (e.g. 50m, 0.5, 2)",
    "promMetricName": "a Prometheus metric name (letters, digits, _ and :)",
    "promLabelName": "a Prometheus label name (letters, digits and _, not starting with __)",
}
# Errors in these definitions get their own check id instead of ``schema``.
_CHECK_BY_ANCHOR = {"money": "money"}
_HOURS = {"d": 24, "w": 168}


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The schema as shipped (what ``costplan schema`` prints)."""
    return read_schema_file()


def read_schema_file(repo_schemas: Path = _REPO_SCHEMAS) -> str:
    """The schema from the source tree, else from the installed package's ``_data/schemas``.

    A checkout has ``schemas/`` beside the package; a wheel carries a copy
    as package data.
    """
    return (data_dir("schemas", repo_schemas.parent) / SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """A fresh copy of the schema (callers may modify it without affecting validation)."""
    return json.loads(schema_text())


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``pattern`` as ECMA-262 means it: ``$`` is the end of the string, not a final newline."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not schema_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=1)
def _validator() -> Any:
    """jsonschema's validator of the plan schema, whose errors explain an invalid plan.

    Imported and built only for a plan the compiled validator did not pass:
    valid plans, nearly all builds, never load jsonschema. The schema file
    never changes while the process runs; compiling it once keeps
    validating every environment of a plan cheap.
    """
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})(load_schema())


@lru_cache(maxsize=1)
def _fast_validator() -> Any:
    """A compiled (Rust) validator of the same schema, or ``None`` where it cannot be had.

    Most plans are valid, and for a plan with thousands of users the
    pure-Python validator is the slowest step of a build. The compiled one
    only answers "valid or not"; every invalid plan is validated again by
    ``jsonschema``, whose errors carry the paths the diagnostics need.
    """
    try:
        import jsonschema_rs

        return jsonschema_rs.validator_for(load_schema())
    except Exception:  # not installed, or a schema construct it does not compile
        return None


def is_valid(document: Any) -> bool:
    """The fast verdict (``False`` also when there is no fast validator: then ask ``validate``)."""
    fast = _fast_validator()
    if fast is None:
        return False
    try:
        return bool(fast.is_valid(document))
    except Exception:  # a value it cannot read: let jsonschema decide
        return False


def validate(document: Any) -> list[Diagnostic]:
    """Every schema violation of ``document`` as diagnostics (empty when valid)."""
    if is_valid(document):
        return []
    validator = _validator()
    errors = list(validator.iter_errors(document))
    renames = _renames(errors)
    found: dict[tuple[str, str], Diagnostic] = {}
    for error in errors:
        for diagnostic in _diagnose(error, document, validator.schema, renames):
            found.setdefault((diagnostic.pointer, diagnostic.message), diagnostic)
    return sorted(found.values())


# --------------------------------------------------------------------------
# One jsonschema error → diagnostics
# --------------------------------------------------------------------------

Renames = dict[str, dict[Any, str]]


def _unknown_keys(error: ValidationError) -> list[Any]:
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return [key for key in error.instance if key not in allowed]


def _missing_keys(error: ValidationError) -> list[str]:
    if error.validator != "required" or not isinstance(error.instance, dict):
        return []
    return [key for key in error.validator_value if key not in error.instance]


def _renames(errors: list[ValidationError]) -> Renames:
    """Unknown keys that are most likely misspellings of a key the same mapping lacks.

    A typo (``teir:``) breaks two rules at once: ``teir`` is unknown and
    ``tier`` is missing. Pairing them gives one line, "unknown key 'teir'
    (did you mean 'tier'?)", instead of two. When a mapping has exactly one
    unknown and one missing key they are paired even if they look unalike
    (``pricePerRequest`` in a band priced per million tokens).
    """
    unknown: dict[str, list[Any]] = {}
    missing: dict[str, set[str]] = {}
    for error in errors:
        where = pointer(list(error.absolute_path))
        unknown.setdefault(where, []).extend(_unknown_keys(error))
        missing.setdefault(where, set()).update(_missing_keys(error))
    renames: Renames = {}
    for where, keys in unknown.items():
        lacking = sorted(missing.get(where, ()))
        for key in dict.fromkeys(keys):
            close = difflib.get_close_matches(str(key), lacking, n=1, cutoff=0.6)
            if close:
                renames.setdefault(where, {})[key] = close[0]
            elif len(lacking) == 1 and len(set(keys)) == 1:
                renames.setdefault(where, {})[key] = lacking[0]
    return renames


def _diagnose(
    error: ValidationError, document: Any, root: dict[str, Any], renames: Renames
) -> Iterable[Diagnostic]:
    if error.context and error.validator in ("anyOf", "oneOf"):
        # The schema avoids these, but if one appears, report the likeliest
        # branch instead of "not valid under any of the given schemas".
        from jsonschema.exceptions import best_match

        yield from _diagnose(best_match(error.context), document, root, renames)
        return
    if error.schema is False:
        yield _make(document, list(error.absolute_path), "this key is not allowed here", "unknown-key", key=True)
        return
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    where = _where(schema, root)
    check_id = _CHECK_BY_ANCHOR.get(schema.get("$anchor", ""), "schema")
    paired = renames.get(pointer(path), {})

    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in _unknown_keys(error):
            message = _unknown_key(key, allowed, where, paired.get(key))
            yield _make(document, path + [key], message, "unknown-key", key=True)
        return
    if error.validator == "required" and isinstance(error.instance, dict):
        for key in _missing_keys(error):
            if key not in paired.values():
                yield _make(document, path, f"missing required key {key!r}{where}", "schema")
        return
    if error.validator == "not" and isinstance(error.validator_value, dict):
        forbidden = error.validator_value.get("required", [])
        if len(forbidden) == 1 and isinstance(error.instance, dict):
            reason = error.validator_value.get("description") or f"{forbidden[0]!r} is not allowed here"
            yield _make(document, path + [forbidden[0]], reason, "schema", key=True)
            return
    yield _make(document, path, _message(error, schema, where), check_id)


def _make(document: Any, path: list[Any], message: str, check_id: str, *, key: bool = False) -> Diagnostic:
    where = locate(document, path, key=key)
    file, line, column = (where.file, where.line, where.column) if where else ("<plan>", 1, 1)
    return Diagnostic(file, line, column, pointer(path), message, check_id)


def _where(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """" for rolling budgets": the variant an error occurred in, when the schema names it."""
    title = schema.get("title")
    return f" for {title}" if title and schema is not root else ""


def _unknown_key(key: Any, allowed: list[str], where: str, meant: str | None) -> str:
    message = f"unknown key {_show(key)}{where}"
    close = [meant] if meant else difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    if allowed and len(allowed) <= 8:
        return f"{message} (allowed: {', '.join(allowed)})"
    return message


def _message(error: ValidationError, schema: dict[str, Any], where: str) -> str:
    value, expected = error.instance, error.validator_value
    kind = error.validator
    if kind == "enum":
        text = f"{_show(value)} is not allowed here; expected one of: {', '.join(map(str, expected))}"
        if not isinstance(value, str):
            return text
        close = difflib.get_close_matches(value, [str(e) for e in expected], n=1, cutoff=0.6)
        return f"{text} (did you mean {close[0]!r}?)" if close and close[0] != value else text
    if kind == "const":
        return f"expected {expected!r}, got {_show(value)}"
    if kind == "type":
        return _type_message(value, expected)
    if kind == "pattern":
        return _pattern_message(value, schema.get("$anchor", ""))
    if kind in ("minimum", "exclusiveMinimum"):
        if schema.get("$anchor") == "money":
            return f"an amount must not be negative, got {_show(value)}"
        relation = "at least" if kind == "minimum" else "greater than"
        return f"must be {relation} {expected}, got {_show(value)}"
    if kind in ("maximum", "exclusiveMaximum"):
        relation = "at most" if kind == "maximum" else "less than"
        return f"must be {relation} {expected}, got {_show(value)}"
    if kind == "minItems":
        return "must not be empty" if expected == 1 else f"needs at least {expected} items"
    if kind == "minProperties":
        return "must not be empty" if expected == 1 else f"needs at least {expected} keys"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "uniqueItems":
        return "items must not repeat"
    text = error.message
    return text if len(text) <= 120 else text[:117] + "..."


def _type_message(value: Any, expected: Any) -> str:
    wanted = " or ".join(str(_TYPE_WORDS.get(t, t)) for t in (expected if isinstance(expected, list) else [expected]))
    text = f"expected {wanted}, got {_kind(value)}"
    if "string" in (expected if isinstance(expected, list) else [expected]):
        if isinstance(value, bool):
            text += " (YAML reads yes/no/on/off/true/false as booleans; quote the value)"
        elif isinstance(value, (int, float, Decimal)):
            text += f" (quote it: \"{value}\")"
    return text


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing",
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, int):
        return f"the whole number {value}"
    return f"the number {value}"


def _pattern_message(value: Any, anchor: str) -> str:
    if anchor == "money" and isinstance(value, str) and value.strip().startswith("-"):
        return f"an amount must not be negative, got {_show(value)}"
    text = f"{_show(value)} is not {_FORMATS.get(anchor, 'in the expected format')}"
    if anchor == "kuadrantWindow" and isinstance(value, str):
        hint = _window_hint(value)
        if hint:
            text += f"; use {hint}"
    return text


def _window_hint(value: str) -> str | None:
    """``1d`` → ``24h``, ``1w`` → ``168h``: Kuadrant has no day or week unit."""
    number = value.rstrip("dw")
    unit = value[len(number):]
    if unit in _HOURS and number.isdigit():
        return f"{int(number) * _HOURS[unit]}h"
    return None


def _show(value: Any) -> str:
    """A short rendering of a value for a message; containers are named, not dumped."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
