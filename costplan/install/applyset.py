"""ApplySets (KEP-3659): which objects this plan applied, so pruning is safe.

A parent ConfigMap records which group-kinds and namespaces its members live
in, and every member is labelled ``applyset.kubernetes.io/part-of=<id>``.
Only live objects that carry this set's label are ever pruned, so objects
created by hand or by another tool are never touched. This module is the one
home of the ApplySet rules: ids, parent metadata, inventories, labels.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from costplan.core import conventions as c
from costplan.install.objects import ObjectKey


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
    labels[c.LABEL_APPLYSET_PART_OF] = set_id
    meta["labels"] = dict(sorted(labels.items()))
    result["metadata"] = meta
    return result


def parent_metadata(
    inventory: Inventory, parent_namespace: str, tooling_version: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations of the ApplySet parent for ``inventory``."""
    labels = {c.LABEL_APPLYSET_ID: inventory.id, c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}
    annotations = {
        c.ANNOTATION_APPLYSET_TOOLING: f"{c.MANAGED_BY_VALUE}/{tooling_version}",
        c.ANNOTATION_APPLYSET_GROUP_KINDS: ",".join(sorted(inventory.group_kinds)),
    }
    extra = sorted(ns for ns in inventory.namespaces if ns and ns != parent_namespace)
    if extra:
        annotations[c.ANNOTATION_APPLYSET_NAMESPACES] = ",".join(extra)
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
    kinds = [k.strip() for k in str(annotations.get(c.ANNOTATION_APPLYSET_GROUP_KINDS, "")).split(",") if k.strip()]
    namespaces = [n.strip() for n in str(annotations.get(c.ANNOTATION_APPLYSET_NAMESPACES, "")).split(",") if n.strip()]
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
    tooling = str((meta.get("annotations") or {}).get(c.ANNOTATION_APPLYSET_TOOLING, ""))
    where = f"ConfigMap/{meta.get('namespace')}/{meta.get('name')}"
    if tooling and tooling.split("/", 1)[0] != c.MANAGED_BY_VALUE:
        return f"{where} is an ApplySet parent managed by {tooling!r}, not costplan; refusing to use it"
    found = labels.get(c.LABEL_APPLYSET_ID)
    if found is None:
        return f"{where} exists but is not an ApplySet parent (no {c.LABEL_APPLYSET_ID} label); refusing to adopt it"
    if found != set_id:
        return f"{where} has ApplySet id {found!r}, expected {set_id!r}; refusing to use it"
    return None


@dataclass(frozen=True)
class ApplySet:
    """The parent ConfigMap that records what this plan and environment applied."""

    name: str
    namespace: str

    @property
    def id(self) -> str:
        return applyset_id(self.name, self.namespace, "ConfigMap", "")

    def __str__(self) -> str:
        return f"ConfigMap/{self.namespace}/{self.name}"


def applyset_for(plan_name: str, environment: str, namespace: str, part: str = "") -> ApplySet:
    """One ApplySet per plan and environment: ``costplan-<plan>-<env>``; in a fleet, one per part.

    A fleet part (``clusters/<name>`` or ``global``) gets
    ``costplan-<plan>-<env>-clusters-<name>`` / ``costplan-<plan>-<env>-global``
    (a cluster named ``global`` cannot collide): its own id, so its prune
    sees only its own members even when two parts share an API server (the
    global part on a member cluster).
    """
    suffix = part.replace("/", "-")
    name = f"costplan-{plan_name}-{environment}" + (f"-{suffix}" if suffix else "")
    return ApplySet(name, namespace)


def parent_body(applyset: ApplySet, inventory: Inventory, tooling_version: str) -> dict[str, Any]:
    labels, annotations = parent_metadata(inventory, applyset.namespace, tooling_version)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": applyset.name,
            "namespace": applyset.namespace,
            "labels": dict(sorted(labels.items())),
            "annotations": dict(sorted(annotations.items())),
        },
    }


def union(*inventories: Inventory) -> Inventory:
    """Every group-kind and namespace any of the inventories names."""
    return Inventory(
        inventories[0].id,
        frozenset().union(*(i.group_kinds for i in inventories)),
        frozenset().union(*(i.namespaces for i in inventories)),
    )
