"""Kubernetes objects as the installer sees them: identity, apply order, comparable form.

Objects are keyed by group (not version), kind, namespace and name; applied
in stages (namespaces and CRDs, config and RBAC, workloads, custom
resources, each by Argo CD sync wave); and compared after hiding what the
API server owns, so ``diff`` and ``apply`` agree on what "unchanged" means.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

from costplan.core import conventions as c

# Fields the API server owns or that change on every write: hidden in diffs
# and ignored when deciding whether anything changed.
_HIDDEN_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")


_LAST_APPLIED = c.ANNOTATION_LAST_APPLIED


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
