"""Environment overlays: ``environments/<env>.yaml`` merged onto the plan.

Rules (also in the README):

* mappings merge deeply; a scalar or list in the overlay replaces the base;
* lists whose items are mappings with ``name`` (or ``id`` for users) merge
  item by item on that key; overlay items that match nothing are appended;
* ``$patch: delete`` in an overlay item (or as a mapping value) deletes it;
* ``$patch: replace`` in an overlay mapping replaces instead of merging.

Positions travel with the values (see ``source.LDict``), so after the merge
every value still knows which file and line it came from.
"""

from __future__ import annotations

import difflib
from typing import Any

from costplan.core.diagnostics import Diagnostic
from costplan.plan.source import LDict, LList, Position

PATCH = "$patch"
MERGE_KEYS = ("name", "id")


def _copy_dict(source: LDict) -> LDict:
    result = LDict(source)
    result.position = source.position
    result.key_positions = dict(source.key_positions)
    result.value_positions = dict(source.value_positions)
    return result


def _diag(position: Position | None, pointer: str, message: str) -> Diagnostic:
    file, line, column = (position.file, position.line, position.column) if position else ("<overlay>", 1, 1)
    return Diagnostic(file, line, column, pointer, message, "overlay")


def _patch_directive(value: Any) -> str | None:
    if isinstance(value, dict):
        directive = value.get(PATCH)
        return directive if isinstance(directive, str) else None
    return None


def _merge_key(items: list[Any]) -> str | None:
    """The key a list merges on, if every item is a mapping that has it."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def merge(base: Any, overlay: Any, diagnostics: list[Diagnostic], path: str = "") -> Any:
    """Merge ``overlay`` onto ``base``; problems go to ``diagnostics``."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return _merge_dicts(base, overlay, diagnostics, path)
    if isinstance(base, list) and isinstance(overlay, list):
        return _merge_lists(base, overlay, diagnostics, path)
    return _strip_directives(overlay, diagnostics, path)


def _merge_dicts(base: dict, overlay: dict, diagnostics: list[Diagnostic], path: str) -> LDict:
    base_l = base if isinstance(base, LDict) else LDict(base)
    over_l = overlay if isinstance(overlay, LDict) else LDict(overlay)
    if _patch_directive(over_l) == "replace":
        return _strip_directives(over_l, diagnostics, path)
    result = _copy_dict(base_l)
    for key, value in over_l.items():
        if key == PATCH:
            directive = value
            if directive not in ("merge", "replace"):
                diagnostics.append(
                    _diag(over_l.value_positions.get(key), path, f"unknown {PATCH} directive {directive!r} here")
                )
            continue
        child = f"{path}/{key}"
        if _patch_directive(value) == "delete":
            if key not in result:
                diagnostics.append(_diag(over_l.key_positions.get(key), child, f"cannot delete {key!r}: not in the plan"))
                continue
            del result[key]
            result.key_positions.pop(key, None)
            result.value_positions.pop(key, None)
            continue
        if key in result:
            result[key] = merge(result[key], value, diagnostics, child)
        else:
            result[key] = _strip_directives(value, diagnostics, child)
        key_position = over_l.key_positions.get(key) or result.key_positions.get(key)
        value_position = over_l.value_positions.get(key) or result.value_positions.get(key)
        if key_position is not None:
            result.key_positions[key] = key_position
        if value_position is not None:
            result.value_positions[key] = value_position
    return result


def _merge_lists(base: list, overlay: list, diagnostics: list[Diagnostic], path: str) -> Any:
    key = _merge_key(base)
    base_positions = getattr(base, "item_positions", [None] * len(base))
    over_positions = getattr(overlay, "item_positions", [None] * len(overlay))
    if key is None:
        return _strip_directives(overlay, diagnostics, path)
    result = LList(base)
    result.position = getattr(base, "position", None)
    result.item_positions = list(base_positions) + [None] * (len(base) - len(base_positions))
    for index, item in enumerate(overlay):
        where = over_positions[index] if index < len(over_positions) else None
        if not isinstance(item, dict) or key not in item:
            diagnostics.append(
                _diag(where, f"{path}/{index}", f"overlay items of this list need a {key!r} to merge on")
            )
            continue
        matches = [i for i, existing in enumerate(result) if existing.get(key) == item[key]]
        if _patch_directive(item) == "delete":
            if not matches:
                diagnostics.append(
                    _diag(where, f"{path}/{index}", f"cannot delete {key} {item[key]!r}: not in the plan")
                )
                continue
            del result[matches[0]]
            del result.item_positions[matches[0]]
            continue
        if matches:
            at = matches[0]
            result[at] = merge(result[at], item, diagnostics, f"{path}/{at}")
            result.item_positions[at] = where or result.item_positions[at]
        else:
            known = [str(existing.get(key)) for existing in result if isinstance(existing, dict)]
            close = difflib.get_close_matches(str(item[key]), known, n=1, cutoff=0.8)
            if close:
                # A new item whose name is one typo away from an existing one is
                # almost always that typo: say so before its missing keys are listed.
                at_key = item.key_positions.get(key) if isinstance(item, LDict) else None
                diagnostics.append(
                    Diagnostic(
                        *(_where(at_key or where)), f"{path}/{len(result)}/{key}",
                        f"overlay adds a new item {item[key]!r} (did you mean {close[0]!r}? "
                        f"overlay items merge on {key!r})", "overlay", "warning",
                    )
                )
            result.append(_strip_directives(item, diagnostics, f"{path}/{len(result)}"))
            result.item_positions.append(where)
    return result


def _where(position: Position | None) -> tuple[str, int, int]:
    return (position.file, position.line, position.column) if position else ("<overlay>", 1, 1)


def _strip_directives(value: Any, diagnostics: list[Diagnostic], path: str) -> Any:
    """Overlay values that land as-is must not carry ``$patch`` keys into the plan."""
    if isinstance(value, dict):
        if PATCH not in value:
            return value
        cleaned = _copy_dict(value if isinstance(value, LDict) else LDict(value))
        directive = cleaned.pop(PATCH)
        if directive not in ("replace", "merge"):
            diagnostics.append(
                _diag(cleaned.value_positions.get(PATCH), path, f"{PATCH}: {directive} has nothing to apply to here")
            )
        cleaned.key_positions.pop(PATCH, None)
        cleaned.value_positions.pop(PATCH, None)
        return cleaned
    return value
