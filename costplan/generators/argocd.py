"""Argo CD wiring: the Applications that sync the build output.

Rendered manifests are committed (the hydrated-manifests pattern): reviewers
see the real YAML in the pull request, and Argo CD applies exactly what
merged. Every Application uses server-side apply (large dashboards exceed
the client-side annotation limit) and prunes last.

A single-cluster plan gets one Application for its environment. A fleet's
global part (the cluster Argo CD runs in) gets:

* an ``ApplicationSet`` with a ``list`` generator, one element per cluster,
  whose template is the very spec of the single-cluster Application with the
  path and destination taken from the element: each cluster's directory
  (``clusters/<name>``) syncs to that cluster and nowhere else;
* one ``Application`` for the global part itself, in-cluster, under the
  environment Application's name;
* the cost engine's chart Application of each cluster (``opencost``
  ``chart_application``), named per cluster and aimed at that cluster. They
  are generated here rather than in each cluster's part: an Application is
  only read in the namespace Argo CD watches, on Argo CD's own cluster, so
  in a cluster's part it would either never be seen or, on the management
  cluster, collide by name with every other cluster's. Their values differ
  per cluster (cluster id, prices of the GPUs there), which an
  ApplicationSet template could only carry as one string per value.

The ApplicationSet uses Go templates (``goTemplate: true`` with
``missingkey=error``): a misspelt parameter fails the generation instead of
rendering an empty string, as fasttemplate's ``{{name}}`` would. Every
element carries both ``server`` and ``clusterName``, one of them empty: Argo
CD treats an empty destination field as unset and rejects only both set
(argo-cd ``util/argo/argo.go``, GetDestinationServer).
"""

from __future__ import annotations

from typing import Any

from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators import opencost
from costplan.generators.common import WAVE_CONFIG, metadata
from costplan.plan import fleet
from costplan.plan.model import SCOPE_GLOBAL, ArgoCD, Cluster, Plan

IN_CLUSTER = {"server": "https://kubernetes.default.svc"}


def application_name(plan: Plan) -> str:
    return object_name("costplan", plan.name, plan.environment)


def cluster_application_name(plan: Plan, cluster: Cluster) -> str:
    return object_name("costplan", plan.name, plan.environment, cluster.name)


def part_path(argocd: ArgoCD, plan: Plan, part: str = "") -> str:
    """The repository path Argo CD syncs: ``<argocd.path>/<env>[/<part>]``."""
    return "/".join(p for p in (argocd.path.strip("/"), plan.environment, part) if p)


def destination(cluster: Cluster) -> dict[str, str]:
    """The Argo CD destination of a cluster: its API server URL, else its Argo CD cluster name."""
    if cluster.destination_server:
        return {"server": cluster.destination_server}
    return {"name": cluster.destination_name or cluster.name}


def _sync_policy() -> dict[str, Any]:
    """Server-side apply (large objects exceed client-side apply's annotation), prune last, apply only
    what is out of sync, retry with backoff while CRDs and webhooks come up; a fresh dict per object."""
    return {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["ServerSideApply=true", "PruneLast=true", "ApplyOutOfSyncOnly=true"],
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
    }


def _application(plan: Plan, argocd: ArgoCD, name: str, path: str, target: dict[str, str]) -> dict[str, Any]:
    """The Application syncing one environment's output (or one fleet part's); the ApplicationSet's template too."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata(plan, "argocd", name, argocd.namespace, wave=WAVE_CONFIG),
        "spec": {
            "project": argocd.project,
            "source": {"repoURL": argocd.repo_url, "targetRevision": argocd.target_revision, "path": path},
            "destination": dict(target),
            "syncPolicy": _sync_policy(),
        },
    }


def application_set(plan: Plan, argocd: ArgoCD) -> dict[str, Any]:
    """One ApplicationSet syncing every cluster's part to its cluster."""
    elements = []
    for cluster in plan.clusters:
        target = destination(cluster)
        elements.append({
            "name": cluster.name,
            "region": cluster.region or "",
            "server": target.get("server", ""),
            "clusterName": target.get("name", ""),
            "application": cluster_application_name(plan, cluster),
            "path": part_path(argocd, plan, fleet.cluster_part(cluster)),
        })
    template = _application(plan, argocd, "{{.application}}", "{{.path}}",
                            {"server": "{{.server}}", "name": "{{.clusterName}}"})
    template_meta = template["metadata"]
    template_meta.pop("annotations", None)  # the set's own sync wave, not the generated Applications'
    template_meta.pop("namespace", None)  # always the ApplicationSet's own
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": metadata(plan, "argocd", application_name(plan), argocd.namespace, wave=WAVE_CONFIG),
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": elements}}],
            # Deleting the set (renaming the environment, removing Argo CD
            # wiring) must not delete every cluster's gateway policies at once.
            "syncPolicy": {"preserveResourcesOnDeletion": True},
            "template": {"metadata": template_meta, "spec": template["spec"]},
        },
    }


def generate(plan: Plan) -> list[Artifact]:
    argocd = plan.integrations.argocd
    if argocd is None:
        return []
    if plan.scope != SCOPE_GLOBAL:
        return [manifest("argocd", _application(plan, argocd, application_name(plan), part_path(argocd, plan),
                                                IN_CLUSTER))]
    artifacts = [
        manifest("argocd", application_set(plan, argocd)),
        # The environment's Application keeps its name: a plan that grows
        # from one cluster to a fleet re-points it at the global part.
        manifest("argocd", _application(plan, argocd, application_name(plan),
                                        part_path(argocd, plan, fleet.GLOBAL_PART), IN_CLUSTER)),
    ]
    for cluster in plan.clusters:
        variant = fleet.cluster_plan(plan, cluster)
        artifacts.extend(opencost.chart_applications(variant, destination(cluster)))
    return artifacts
