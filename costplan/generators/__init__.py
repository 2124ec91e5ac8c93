"""The ordered registry of generators, one module per target.

Each module exposes ``generate(plan: Plan) -> list[Artifact]`` and is a pure
function of the plan. Order here is only the order of the stream on stdout;
files are sorted by path when written.
"""

from __future__ import annotations

import dataclasses
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
from costplan.plan import fleet
from costplan.plan.model import SCOPE_CLUSTER, SCOPE_GLOBAL, SCOPE_SINGLE, Plan

# Where each generator runs in a fleet: in every cluster's part (the gateway,
# its keys, the local cost engine, the guard that acts on local keys), in the
# global part (dashboards, reports and alert routing read the global view), or
# both (the rules split themselves by ``plan.scope``). A single-cluster plan
# runs them all.
BOTH = frozenset({SCOPE_SINGLE, SCOPE_CLUSTER, SCOPE_GLOBAL})
CLUSTER = frozenset({SCOPE_SINGLE, SCOPE_CLUSTER})
GLOBAL = frozenset({SCOPE_SINGLE, SCOPE_GLOBAL})

GENERATORS: tuple[tuple[str, Callable[[Plan], list[Artifact]], frozenset[str]], ...] = (
    ("common", common.generate, BOTH),
    ("kuadrant", kuadrant.generate, CLUSTER),
    ("prometheus", prometheus.generate, BOTH),
    ("opencost", opencost.generate, CLUSTER),
    ("grafana", grafana.generate, GLOBAL),
    ("reports", reports.generate, GLOBAL),
    ("alertmanager", alertmanager.generate, GLOBAL),
    ("guard", guard.generate, CLUSTER),
    ("argocd", argocd.generate, GLOBAL),
)


def generate_all(plan: Plan) -> list[Artifact]:
    """Run every generator; the result is the environment's whole output.

    A fleet plan compiles each of its parts (``plan.fleet.parts``) into a
    directory of its own: ``clusters/<name>/`` and ``global/``.
    """
    if plan.is_fleet and plan.scope == SCOPE_SINGLE:
        return [
            dataclasses.replace(artifact, part=part)
            for part, variant in fleet.parts(plan)
            for artifact in generate_all(variant)
        ]
    artifacts: list[Artifact] = []
    for _, generate, scopes in GENERATORS:
        if plan.scope in scopes:
            artifacts.extend(generate(plan))
    if not plan.install.create_namespaces:
        return artifacts  # the components' namespaces must exist: `costplan apply` names any that do not
    return artifacts + common.component_namespaces(plan, artifacts)
