"""The ordered registry of generators, one module per target.

Each module exposes ``generate(plan: Plan) -> list[Artifact]`` and is a pure
function of the plan. Order here is only the order of the stream on stdout;
files are sorted by path when written.
"""

from __future__ import annotations

from collections.abc import Callable

from costplan.core.artifacts import Artifact
from costplan.generators import (
    alertmanager,
    argocd,
    common,
    grafana,
    guard,
    kuadrant,
    opencost,
    prometheus,
    reports,
)
from costplan.plan.model import Plan

GENERATORS: tuple[tuple[str, Callable[[Plan], list[Artifact]]], ...] = (
    ("common", common.generate),
    ("kuadrant", kuadrant.generate),
    ("prometheus", prometheus.generate),
    ("opencost", opencost.generate),
    ("grafana", grafana.generate),
    ("reports", reports.generate),
    ("alertmanager", alertmanager.generate),
    ("guard", guard.generate),
    ("argocd", argocd.generate),
)


def generate_all(plan: Plan) -> list[Artifact]:
    """Run every generator; the result is the environment's whole output."""
    artifacts: list[Artifact] = []
    for _, generate in GENERATORS:
        artifacts.extend(generate(plan))
    if not plan.install.create_namespaces:
        return artifacts  # the components' namespaces must exist: `costplan apply` names any that do not
    return artifacts + common.component_namespaces(plan, artifacts)
