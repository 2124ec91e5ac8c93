"""What applying a plan would do to a cluster, computed without touching it.

``plan_changes(desired, live, inventory)`` compares the objects a build
wants with what the cluster holds and returns an ordered list of
``Change``s. It does no I/O: ``costplan diff``, ``costplan apply --check``
and ``costplan apply`` all start from the same list and differ only in what
they do with it, so what a diff promises is exactly what an apply executes.

Pruning follows the ApplySet convention (see ``applyset``): only live objects
that carry this set's label are ever pruned.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml
from costplan.install.applyset import Inventory
from costplan.install.objects import (
    _LAST_APPLIED,
    ObjectKey,
    key_of,
    merged,
    normalise,
    order_key,
)

ACTION_CREATE = "create"


ACTION_UPDATE = "update"


ACTION_UNCHANGED = "unchanged"


ACTION_PRUNE = "prune"


@dataclass
class Change:
    """One object's fate: ``create``, ``update``, ``unchanged`` or ``prune``.

    ``body`` is what would be sent (server-side apply body; ``None`` for a
    prune), ``before``/``after`` the normalised object before and after, and
    ``diff`` a unified diff between them (Secret values masked).
    """

    action: str
    key: ObjectKey
    body: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    diff: str = ""
    keep: bool = False
    api_version: str = ""

    @property
    def pending(self) -> bool:
        return self.action != ACTION_UNCHANGED and not self.keep


def _mask_secret(before: dict[str, Any] | None, after: dict[str, Any] | None):
    """Replace Secret values by markers that show *whether* a value changed, never the value."""

    def masked(obj: dict[str, Any] | None, other: dict[str, Any] | None, marker_changed: str):
        if obj is None:
            return None
        obj = copy.deepcopy(obj)
        for section in ("data", "stringData"):
            values = obj.get(section)
            if not isinstance(values, Mapping):
                continue
            theirs = ((other or {}).get(section) or {}) if other is not None else {}
            obj[section] = {
                k: ("***" if other is not None and theirs.get(k) == v else marker_changed)
                for k, v in sorted(values.items())
            }
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if _LAST_APPLIED in annotations:
            annotations[_LAST_APPLIED] = "***"
        return obj

    return masked(before, after, "*** (before)"), masked(after, before, "*** (after)")


def unified_diff(key: ObjectKey, before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """A stable unified diff of two normalised objects, as canonical YAML."""
    if key.kind == "Secret" and not key.group:
        before, after = _mask_secret(before, after)
    old = dump_yaml(before).splitlines(keepends=True) if before is not None else []
    new = dump_yaml(after).splitlines(keepends=True) if after is not None else []
    label = str(key)
    lines = difflib.unified_diff(
        old, new, fromfile=f"live/{label}" if before is not None else "/dev/null",
        tofile=f"plan/{label}" if after is not None else "/dev/null", n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _kept(obj: Mapping[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(c.ANNOTATION_KEEP, "")).lower() == "true"


def plan_changes(
    desired: Iterable[Mapping[str, Any]],
    live: Mapping[ObjectKey, Mapping[str, Any] | None],
    inventory: Inventory,
    predicted: Mapping[ObjectKey, Mapping[str, Any]] | None = None,
    unsure: frozenset[ObjectKey] | set[ObjectKey] = frozenset(),
    diffs: bool = True,
) -> list[Change]:
    """Every change applying ``desired`` would make, in execution order.

    Args:
        desired: apply bodies (already labelled with the ApplySet id).
        live: the cluster's current object per key (``None`` when absent),
            for every desired key and every listed member of the ApplySet.
        inventory: the ApplySet; only live objects labelled with its id and
            of one of its group-kinds are pruned.
        predicted: the object as the server's dry-run apply returned it, per
            key; without an entry, ``merged(live, body)`` stands in.
        unsure: keys whose apply is sent without a dry run; the offline
            estimate cannot tell that nothing changes (it keeps fields
            costplan stopped setting), so they count as updates until the
            real apply's answer says otherwise.
        diffs: compute each change's unified diff (only worth its time when
            it is shown).

    Returns:
        Creates and updates (and unchanged objects, so the recap can count
        them) in apply order, then prunes in the reverse order.
    """
    predicted = predicted or {}
    applies: list[tuple[tuple[Any, ...], Change]] = []
    wanted: set[ObjectKey] = set()
    for body in desired:
        key = key_of(body)
        wanted.add(key)
        current = live.get(key)
        future = predicted.get(key)
        if future is None:
            future = merged(current, body)
        before = normalise(current)
        after = normalise(future)
        if current is None:
            action = ACTION_CREATE
        elif before == after and key not in unsure:
            action = ACTION_UNCHANGED
        else:
            action = ACTION_UPDATE
        diff = "" if action == ACTION_UNCHANGED or not diffs else unified_diff(key, before, after)
        applies.append((order_key(key, body), Change(action, key, dict(body), before, after, diff,
                                                     api_version=str(body.get("apiVersion", "")))))
    prunes: list[tuple[tuple[Any, ...], Change]] = []
    for key, obj in live.items():
        if key in wanted or obj is None:
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(c.LABEL_APPLYSET_PART_OF) != inventory.id or key.group_kind not in inventory.group_kinds:
            continue
        before = normalise(obj)
        prunes.append((order_key(key, obj), Change(ACTION_PRUNE, key, None, before, None,
                                                   unified_diff(key, before, None) if diffs else "",
                                                   keep=_kept(obj),
                                                   api_version=str(obj.get("apiVersion", "")))))
    ordered = [change for _, change in sorted(applies, key=lambda item: item[0])]
    ordered += [change for _, change in sorted(prunes, key=lambda item: item[0], reverse=True)]
    return ordered


@dataclass
class Recap:
    """Counts for the closing ``RECAP`` line."""

    ok: int = 0
    changed: int = 0
    created: int = 0
    pruned: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    ready: int | None = None  # set by ``apply --wait``
    not_ready: int = 0

    def line(self) -> str:
        waited = f" ready={self.ready} not_ready={self.not_ready}" if self.ready is not None else ""
        return (f"RECAP: ok={self.ok} changed={self.changed} created={self.created} "
                f"pruned={self.pruned} failed={self.failed} skipped={self.skipped}{waited}")
