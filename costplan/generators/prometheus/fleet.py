"""The rules of a fleet, split where the data is.

Each cluster's Prometheus runs what reads its local raw series: the identity
constants its usage rules join, the usage normalisation (``rate5m``), the
GPU series from its kube-state-metrics, its own hourly usage
(``costplan:cluster_usage_*:increase1h``) and the absent-source alerts. Every
series it records carries ``cluster`` from the rule itself, so nothing
depends on how its remote write or external labels are set up.

The global engine (Prometheus, Thanos Ruler, Mimir's ruler, vmalert) runs
money, budgets, forecasts and alerts once, over every cluster's usage, and
reads nothing another evaluator records in the same cycle: its hourly group
works **one hour behind** the clusters. A cluster records the usage of the
hour that closed last at every evaluation of the hour after it; the global
group reads that value once that hour is over too (``lagged_hour``), when
every cluster has written it and the remote write has carried it (up to
about 55 minutes of delay change nothing). So at 10:17 a cluster holds the
usage of 09:00-10:00 and the global view bills 08:00-09:00; the global
billing calendar and the GPU hours it integrates itself are shifted by the
same hour (``LAG_HOURS``), and ``costplan report`` reads the global view
that much later. A team's budgets add its spend in every cluster; per-identity
money keeps ``cluster``, so the report splits every team by cluster.

Constants both sides record (``costplan:team_info``) are read globally
through ``group by``, so copies remote-written from the clusters never make
a join ambiguous.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus.periods import closed_hour
from costplan.generators.prometheus.promql import record
from costplan.plan.model import SCOPE_CLUSTER, SCOPE_GLOBAL, Plan

# How many hours the global part's hourly group runs behind the clusters'.
LAG_HOURS = 1

# A cluster's hourly usage series -> the name the global engine bills it under.
CLUSTER_HOURLY = {
    c.METRIC_USAGE_REQUESTS_HOURLY: c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY,
    c.METRIC_USAGE_TOKENS_HOURLY: c.METRIC_CLUSTER_USAGE_TOKENS_HOURLY,
}


def is_global(plan: Plan) -> bool:
    return plan.scope == SCOPE_GLOBAL


def is_cluster(plan: Plan) -> bool:
    return plan.scope == SCOPE_CLUSTER


def lag_hours(plan: Plan) -> int:
    """Hours the hourly money of this part lags the last closed hour (0 outside a fleet's global part)."""
    return LAG_HOURS if is_global(plan) else 0


def with_cluster(plan: Plan, labels: str) -> str:
    """A ``by`` label list that keeps ``cluster`` in the global part (per-identity money stays per cluster)."""
    return f"{c.LABEL_CLUSTER}, {labels}" if is_global(plan) else labels


def team_info(plan: Plan, matchers: str = "") -> str:
    """``costplan:team_info`` as a join's right side, one series per team even with cluster copies in the store."""
    series = f"{c.METRIC_TEAM_INFO}{matchers}"
    if not is_global(plan):
        return series
    return f"group by ({c.LABEL_TEAM}, {c.LABEL_TIER}, {c.LABEL_COST_CENTER}) ({series})"


def lagged_hour(series: str) -> str:
    """The value ``series`` held during the hour before the last full hour: its final value for that hour.

    At an evaluation in the hour starting ``S``, the one-step subquery
    evaluates at ``S`` and ``closed_hour`` there takes the last value
    recorded before ``S``: a cluster's usage of the hour ending ``S - 1h``.
    """
    return f"last_over_time(({closed_hour(series)})[59m59s:1h])"


def cluster_rules(plan: Plan, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A cluster's rules: hourly usage under its cluster name, every rule labelled with the cluster."""
    out = []
    for rule in rules:
        rule = dict(rule)
        if rule.get("record") in CLUSTER_HOURLY:
            rule["record"] = CLUSTER_HOURLY[rule["record"]]
        rule["labels"] = dict(sorted({**rule.get("labels", {}), c.LABEL_CLUSTER: plan.cluster}.items()))
        out.append(rule)
    return out


def global_usage_rules() -> list[dict[str, Any]]:
    """The clusters' hourly usage, one hour later, under the names the money rules read."""
    return [record(name, lagged_hour(local)) for name, local in CLUSTER_HOURLY.items()]
