"""What applying a plan would do to a cluster, computed without touching it.

``plan_changes(desired, live, inventory)`` compares the objects a build
wants with what the cluster holds and returns an ordered list of
``Change``s. It does no I/O: ``costplan diff``, ``costplan apply --check``
and ``costplan apply`` all start from the same list and differ only in what
they do with it, so what a diff promises is exactly what an apply executes.

Pruning follows the ApplySet convention (KEP-3659): a parent object records
which group-kinds and namespaces its members live in, and every member is
labelled ``applyset.kubernetes.io/part-of=<id>``. Only live objects that
carry this set's label are ever pruned, so objects created by hand or by
another tool are never touched.
"""

from __future__ import annotations

import base64
import copy
import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml

# Names live in the contract module; re-exported here for the apply code.
LABEL_APPLYSET_ID = c.LABEL_APPLYSET_ID
LABEL_APPLYSET_PART_OF = c.LABEL_APPLYSET_PART_OF
ANNOTATION_APPLYSET_TOOLING = c.ANNOTATION_APPLYSET_TOOLING
ANNOTATION_APPLYSET_GROUP_KINDS = c.ANNOTATION_APPLYSET_GROUP_KINDS
ANNOTATION_APPLYSET_NAMESPACES = c.ANNOTATION_APPLYSET_NAMESPACES
TOOLING_NAME = c.MANAGED_BY_VALUE
ANNOTATION_KEEP = c.ANNOTATION_KEEP

ACTION_CREATE = "create"
ACTION_UPDATE = "update"
ACTION_UNCHANGED = "unchanged"
ACTION_PRUNE = "prune"

# Fields the API server owns or that change on every write: hidden in diffs
# and ignored when deciding whether anything changed.
_HIDDEN_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Apply order: namespaces and CRDs, then config and RBAC, then workloads,
# then custom resources (which may need all of the above). Prune reverses it.
_STAGE_FOUNDATION = {"Namespace", "CustomResourceDefinition"}
_STAGE_CONFIG = {
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
}
_STAGE_WORKLOADS = {"CronJob", "Job", "Deployment", "StatefulSet", "DaemonSet"}
_BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}


class ObjectKey(NamedTuple):
    """Identity of an object: group (not version, which may differ), kind, namespace, name."""

    group: str
    kind: str
    namespace: str | None
    name: str

    @property
    def group_kind(self) -> str:
        return group_kind(self.group, self.kind)

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


def api_group(api_version: str) -> str:
    """``monitoring.coreos.com/v1`` → ``monitoring.coreos.com``; ``v1`` → ``""`` (core)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def group_kind(group: str, kind: str) -> str:
    """ApplySet spelling of a group-kind: ``Kind.group``, or ``Kind`` for the core group."""
    return f"{kind}.{group}" if group else kind


def split_group_kind(text: str) -> tuple[str, str]:
    """``CronJob.batch`` → ``("batch", "CronJob")``; ``ConfigMap`` → ``("", "ConfigMap")``."""
    kind, _, group = text.partition(".")
    return group, kind


def is_builtin_group(group: str) -> bool:
    """Groups the API server serves itself; anything else needs a CRD."""
    return group in _BUILTIN_GROUPS or group.endswith(".k8s.io")


def key_of(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(api_group(str(obj.get("apiVersion", ""))), str(obj.get("kind", "")),
                     meta.get("namespace") or None, str(meta.get("name", "")))


def applyset_id(name: str, namespace: str, kind: str = "ConfigMap", group: str = "") -> str:
    """The ApplySet id of a parent: ``applyset-<base64url(sha256(name.namespace.Kind.group))>-v1``.

    Tools recompute it from the parent's identity and refuse a parent whose
    label disagrees, so two sets can never adopt each other's members.
    """
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"


@dataclass(frozen=True)
class Inventory:
    """What the ApplySet parent says about its members (empty before the first apply)."""

    id: str
    group_kinds: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()


def with_applyset_label(obj: Mapping[str, Any], set_id: str) -> dict[str, Any]:
    """A copy of ``obj`` labelled as a member of the ApplySet ``set_id``.

    Added at apply time only, so build output and golden files do not depend
    on where (or whether) the plan is applied.
    """
    result = copy.deepcopy(dict(obj))
    meta = dict(result.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    labels[LABEL_APPLYSET_PART_OF] = set_id
    meta["labels"] = dict(sorted(labels.items()))
    result["metadata"] = meta
    return result


def stage(kind: str, group: str) -> int:
    if kind in _STAGE_FOUNDATION:
        return 0
    if kind in _STAGE_CONFIG and is_builtin_group(group):
        return 1
    if kind in _STAGE_WORKLOADS and is_builtin_group(group):
        return 2
    return 3


def sync_wave(obj: Mapping[str, Any] | None) -> int:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(c.ANNOTATION_SYNC_WAVE, 0))
    except (TypeError, ValueError):
        return 0


def order_key(key: ObjectKey, obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """Stage, then Argo CD sync wave, then kind, namespace and name."""
    return (stage(key.kind, key.group), sync_wave(obj), key.kind, key.namespace or "", key.name)


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


def normalise(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The object as reviewed: server bookkeeping and ``status`` removed."""
    if obj is None:
        return None
    result = copy.deepcopy(dict(obj))
    result.pop("status", None)
    meta = dict(result.get("metadata") or {})
    for name in _HIDDEN_METADATA:
        meta.pop(name, None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    if not meta.get("labels"):
        meta.pop("labels", None)
    result["metadata"] = meta
    return result


def merged(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Offline estimate of an apply: desired fields over live ones, lists replaced whole.

    Used only where the server could not answer a dry run (a namespace that
    does not exist yet); the server's own answer is preferred because it
    also removes fields costplan no longer sets and applies defaults.
    """
    if live is None:
        return copy.deepcopy(dict(desired))
    result = copy.deepcopy(dict(live))
    for name, value in desired.items():
        if isinstance(value, Mapping) and isinstance(result.get(name), Mapping):
            result[name] = merged(result[name], value)
        else:
            result[name] = copy.deepcopy(value)
    return result


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
    return str(annotations.get(ANNOTATION_KEEP, "")).lower() == "true"


def plan_changes(
    desired: Iterable[Mapping[str, Any]],
    live: Mapping[ObjectKey, Mapping[str, Any] | None],
    inventory: Inventory,
    predicted: Mapping[ObjectKey, Mapping[str, Any]] | None = None,
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
        elif before == after:
            action = ACTION_UNCHANGED
        else:
            action = ACTION_UPDATE
        diff = "" if action == ACTION_UNCHANGED else unified_diff(key, before, after)
        applies.append((order_key(key, body), Change(action, key, dict(body), before, after, diff,
                                                     api_version=str(body.get("apiVersion", "")))))
    prunes: list[tuple[tuple[Any, ...], Change]] = []
    for key, obj in live.items():
        if key in wanted or obj is None:
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_APPLYSET_PART_OF) != inventory.id or key.group_kind not in inventory.group_kinds:
            continue
        before = normalise(obj)
        prunes.append((order_key(key, obj), Change(ACTION_PRUNE, key, None, before, None,
                                                   unified_diff(key, before, None), keep=_kept(obj),
                                                   api_version=str(obj.get("apiVersion", "")))))
    ordered = [change for _, change in sorted(applies, key=lambda item: item[0])]
    ordered += [change for _, change in sorted(prunes, key=lambda item: item[0], reverse=True)]
    return ordered


def parent_metadata(
    inventory: Inventory, parent_namespace: str, tooling_version: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations of the ApplySet parent for ``inventory``."""
    labels = {LABEL_APPLYSET_ID: inventory.id, c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}
    annotations = {
        ANNOTATION_APPLYSET_TOOLING: f"{TOOLING_NAME}/{tooling_version}",
        ANNOTATION_APPLYSET_GROUP_KINDS: ",".join(sorted(inventory.group_kinds)),
    }
    extra = sorted(ns for ns in inventory.namespaces if ns and ns != parent_namespace)
    if extra:
        annotations[ANNOTATION_APPLYSET_NAMESPACES] = ",".join(extra)
    return labels, annotations


def inventory_of(set_id: str, keys: Iterable[ObjectKey]) -> Inventory:
    """The inventory naming exactly the group-kinds and namespaces of ``keys``."""
    keys = list(keys)
    return Inventory(set_id, frozenset(k.group_kind for k in keys),
                     frozenset(k.namespace for k in keys if k.namespace))


def parent_inventory(parent: Mapping[str, Any] | None, set_id: str) -> Inventory:
    """What an existing parent records (empty when there is no parent yet)."""
    if parent is None:
        return Inventory(set_id)
    meta = parent.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    kinds = [k.strip() for k in str(annotations.get(ANNOTATION_APPLYSET_GROUP_KINDS, "")).split(",") if k.strip()]
    namespaces = [n.strip() for n in str(annotations.get(ANNOTATION_APPLYSET_NAMESPACES, "")).split(",") if n.strip()]
    if meta.get("namespace"):
        namespaces.append(meta["namespace"])
    return Inventory(set_id, frozenset(kinds), frozenset(namespaces))


def parent_problem(parent: Mapping[str, Any] | None, set_id: str) -> str | None:
    """Why an existing object cannot serve as this ApplySet's parent, or ``None``.

    A parent written by another tool, or one whose id label does not match
    its own identity, would let costplan prune objects it never applied.
    """
    if parent is None:
        return None
    meta = parent.get("metadata") or {}
    labels = meta.get("labels") or {}
    tooling = str((meta.get("annotations") or {}).get(ANNOTATION_APPLYSET_TOOLING, ""))
    where = f"ConfigMap/{meta.get('namespace')}/{meta.get('name')}"
    if tooling and tooling.split("/", 1)[0] != TOOLING_NAME:
        return f"{where} is an ApplySet parent managed by {tooling!r}, not costplan; refusing to use it"
    found = labels.get(LABEL_APPLYSET_ID)
    if found is None:
        return f"{where} exists but is not an ApplySet parent (no {LABEL_APPLYSET_ID} label); refusing to adopt it"
    if found != set_id:
        return f"{where} has ApplySet id {found!r}, expected {set_id!r}; refusing to use it"
    return None


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

    def line(self) -> str:
        return (f"RECAP: ok={self.ok} changed={self.changed} created={self.created} "
                f"pruned={self.pruned} failed={self.failed} skipped={self.skipped}")
