"""Pieces every generator shares: object metadata, and the team namespaces.

Every object costplan writes carries the same identifying labels, so a
cluster operator (and ``costplan apply``'s pruning) can find them all with
one selector, and Argo CD orders them by sync wave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.plan.model import SCOPE_GLOBAL, Plan

# Argo CD sync waves: namespaces and config first, workloads next, then the
# custom resources that depend on both.
WAVE_NAMESPACES = -10
WAVE_CONFIG = -5
WAVE_WORKLOADS = 0
WAVE_POLICIES = 5


def metadata(
    plan: Plan,
    component: str,
    name: str,
    namespace: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    wave: int | None = None,
) -> dict[str, Any]:
    """``metadata`` for a generated object: name, namespace, standard labels."""
    all_labels = {
        c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
        c.LABEL_PART_OF: "costplan",
        c.LABEL_PLAN: plan.name,
        c.LABEL_ENVIRONMENT: plan.environment,
        c.LABEL_COMPONENT: component,
    }
    all_labels.update(labels or {})
    meta: dict[str, Any] = {"name": name, "labels": dict(sorted(all_labels.items()))}
    if namespace is not None:
        meta["namespace"] = namespace
    all_annotations = dict(annotations or {})
    if wave is not None:
        all_annotations[c.ANNOTATION_SYNC_WAVE] = str(wave)
    if all_annotations:
        meta["annotations"] = dict(sorted(all_annotations.items()))
    return meta


def generate(plan: Plan) -> list[Artifact]:
    """Team namespaces, labelled with team and cost center.

    OpenCost and Kubecost attribute cost by namespace label (a ``team``
    label on the namespace is enough), and the spend rules map namespace to
    team from the same labels. Server-side apply only owns these labels, so
    namespaces created by someone else keep everything else they have.

    A fleet's global part gets none: the labels matter where the teams'
    workloads run (each cluster's part, with the teams served there), and
    the global engine reads them from the clusters' series. Whatever global
    object lands in a namespace still gets it from ``component_namespaces``.
    """
    if plan.scope == SCOPE_GLOBAL:
        return []
    artifacts = []
    owners: dict[str, Any] = {}
    for team in plan.teams:
        for namespace in team.namespaces:
            owners.setdefault(namespace, team)
    for namespace, team in sorted(owners.items()):
        labels = {c.LABEL_TEAM: team.name, c.LABEL_COST_CENTER.replace("_", "-"): team.cost_center}
        labels.update(team.labels)
        artifacts.append(
            manifest(
                "namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": metadata(plan, "namespaces", namespace, labels=labels, wave=WAVE_NAMESPACES),
                },
            )
        )
    return artifacts


def component_namespaces(plan: Plan, artifacts: list[Artifact]) -> list[Artifact]:
    """A Namespace for every namespace an object lands in that no team owns.

    Argo CD's ``CreateNamespace=true`` creates only an Application's own
    destination namespace, and the environment's Application has none: on a
    fresh cluster an object in, say, ``opencost`` would fail the first sync.
    These Namespaces come first (wave ``WAVE_NAMESPACES``, and ``costplan
    apply``'s first stage). They belong to the components that live there
    (Kuadrant, Prometheus, OpenCost, Argo CD), so neither Argo CD
    (``Prune=false``) nor ``costplan apply`` (``costplan.dev/keep``) ever
    deletes one when it leaves the build.
    """
    owned = {a.name for a in artifacts if a.kind == "Namespace"}
    used = sorted({a.namespace for a in artifacts if a.is_manifest and a.namespace} - owned)
    annotations = {c.ANNOTATION_SYNC_OPTIONS: "Prune=false", c.ANNOTATION_KEEP: "true"}
    return [
        manifest(
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": metadata(plan, "namespaces", namespace, annotations=annotations, wave=WAVE_NAMESPACES),
            },
        )
        for namespace in used
    ]
