"""Argo CD wiring: one Application per environment that syncs its build output.

Rendered manifests are committed (the hydrated-manifests pattern): reviewers
see the real YAML in the pull request, and Argo CD applies exactly what
merged. The Application uses server-side apply (large dashboards exceed the
client-side annotation limit) and prunes last.
"""

from __future__ import annotations

from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators.common import WAVE_CONFIG, metadata
from costplan.generators.render import render_mapping
from costplan.plan.model import Plan


def application_name(plan: Plan) -> str:
    return object_name("costplan", plan.name, plan.environment)


def generate(plan: Plan) -> list[Artifact]:
    argocd = plan.integrations.argocd
    if argocd is None:
        return []
    path = "/".join(p for p in (argocd.path.strip("/"), plan.environment) if p)
    app = render_mapping(
        "argocd/application.yaml.j2",
        metadata=metadata(plan, "argocd", application_name(plan), argocd.namespace, wave=WAVE_CONFIG),
        argocd=argocd,
        path=path,
    )
    return [manifest("argocd", app)]
