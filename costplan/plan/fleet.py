"""A fleet plan split into the parts that run where the data is.

A plan with ``clusters[]`` compiles into one part per cluster and one global
part. Each cluster's part is the plan as that cluster sees it: its name in
``cluster`` (so every series its rules record carries ``cluster``), the
models and teams it serves, its own Gateway. The global part is the whole
plan, evaluated once over every cluster's usage by the engine ``metrics``
names: money, budgets (a team has one budget across clusters), alerts,
dashboards and reports. Generators read ``plan.scope`` to know which part
they compile.
"""

from __future__ import annotations

import dataclasses

from costplan.plan.model import SCOPE_CLUSTER, SCOPE_GLOBAL, Cluster, Plan

GLOBAL_PART = "global"


def cluster_part(cluster: Cluster) -> str:
    """The output directory of a cluster's part, relative to the environment's."""
    return f"clusters/{cluster.name}"


def cluster_plan(plan: Plan, cluster: Cluster) -> Plan:
    """The plan as one cluster of the fleet compiles it."""
    models = plan.models if cluster.models is None else tuple(m for m in plan.models if m.name in cluster.models)
    teams = plan.teams if cluster.teams is None else tuple(t for t in plan.teams if t.name in cluster.teams)
    gateway = plan.integrations.gateway
    if cluster.gateway_namespace or cluster.gateway_name:
        target = dataclasses.replace(gateway.target_ref, name=cluster.gateway_name or gateway.target_ref.name)
        gateway = dataclasses.replace(gateway, namespace=cluster.gateway_namespace or gateway.namespace, target_ref=target)
    return dataclasses.replace(
        plan,
        cluster=cluster.name,
        models=models,
        teams=teams,
        integrations=dataclasses.replace(plan.integrations, gateway=gateway),
        scope=SCOPE_CLUSTER,
    )


def global_plan(plan: Plan) -> Plan:
    """The plan as the global engine's part compiles it: every cluster, every team and model."""
    return dataclasses.replace(plan, scope=SCOPE_GLOBAL)


def parts(plan: Plan) -> list[tuple[str, Plan]]:
    """(directory, plan variant) for every part of a fleet plan, clusters in plan order, then global."""
    return [(cluster_part(c), cluster_plan(plan, c)) for c in plan.clusters] + [(GLOBAL_PART, global_plan(plan))]
