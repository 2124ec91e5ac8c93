"""The rule groups, in evaluation order, with their intervals.

Prometheus evaluates rules within a group in order, but groups run
independently, each at its own offset. Every hourly amount and everything
derived from it is therefore in one group, ``costplan-hourly``, where each
rule reads only counters, constants and rules above it: the money does not
depend on group order or timing. It runs every 5 minutes: its values change
once an hour and it is the expensive one (hourly subqueries over a month).
Constant series are refreshed every minute so they never go stale (5m
lookback); per-second series (``rate5m``) are for dashboards and alerts.
"""

from __future__ import annotations

import json
from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus import (
    alerts,
    budgets,
    calendar,
    charges,
    fleet,
    prices,
    usage,
    volume,
)
from costplan.plan.model import PerRequestWithIncludedTokens, Plan
from costplan.plan.pricing import priced_tiers

INTERVALS = {
    c.GROUP_PRICES: "1m",
    c.GROUP_USAGE: "1m",
    c.GROUP_HOURLY: "5m",
    c.GROUP_SPEND: "1m",
    c.GROUP_ALERTS: "1m",
}


def rule_groups(plan: Plan) -> list[dict[str, Any]]:
    """The groups this plan (or this part of a fleet, ``plan.scope``) evaluates, in order."""
    if fleet.is_cluster(plan):
        content = _cluster_content(plan)
    elif fleet.is_global(plan):
        content = _global_content(plan)
    else:
        content = _single_content(plan)
    groups = []
    for name, rules in content.items():
        chunks = _shards(rules) if name in SHARDABLE else [rules]
        for index, chunk in enumerate(chunk for chunk in chunks if chunk):
            shard = name if index == 0 else f"{name}-{index + 1}"
            groups.append({"name": shard, "interval": interval(plan, name), "rules": chunk})
    return groups


# vmalert writes a recording rule's result through remote write and queries
# the store for the next rule, so a rule sees the rules above it in its
# group one evaluation later (upstream: "user shouldn't rely on chaining of
# recording rules", app/vmalert/README.md). The hourly group is a chain of
# about 14 rules, so there it runs every minute and settles within about a
# quarter of each hour, long before the hour's last evaluation, the value
# closed hours are read from.
VMALERT_HOURLY_INTERVAL = "1m"


def interval(plan: Plan, name: str) -> str:
    """How often the group ``name`` runs where this part is evaluated."""
    if name == c.GROUP_HOURLY and fleet.is_global(plan) and plan.metrics and plan.metrics.engine == "victoriametrics":
        return VMALERT_HOURLY_INTERVAL
    return INTERVALS[name]


def _money_inputs(plan: Plan) -> tuple[bool, set[str]]:
    has_included = any(
        isinstance(pricing, PerRequestWithIncludedTokens)
        for model in plan.models
        for _, pricing, _ in priced_tiers(plan, model)
    )
    return has_included, {unit for unit, _ in volume.volume_groups(plan)}


def _single_content(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    has_included, volume_units = _money_inputs(plan)
    return {
        c.GROUP_PRICES: prices.rules(plan),
        c.GROUP_USAGE: usage.rules(plan),
        # One group, in order, for all money of closed hours: each rule reads
        # only rules above it in the same evaluation, so no group's timing
        # or order can change an amount.
        c.GROUP_HOURLY: (
            calendar.billing_rules(plan.timezone)
            + usage.hourly_rules(plan)
            + volume.rules(plan)
            + charges.hourly_rules(plan, has_included, volume_units)
            + budgets.rules(plan)
        ),
        c.GROUP_SPEND: charges.rules(plan, has_included, volume_units),
        c.GROUP_ALERTS: alerts.rules(plan),
    }


def _cluster_content(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """One cluster of a fleet: what reads its raw series (see ``fleet``)."""
    local_prices = [r for r in prices.price_rules(plan) if r["record"] == c.METRIC_GPU_PRICE_PER_HOUR]
    content = {
        c.GROUP_PRICES: local_prices + prices.identity_rules(plan),
        c.GROUP_USAGE: usage.rules(plan),
        c.GROUP_HOURLY: usage.hourly_rules(plan),
        c.GROUP_ALERTS: alerts.source_absent_alerts(plan),
    }
    return {name: fleet.cluster_rules(plan, rules) for name, rules in content.items()}


def _global_content(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """The global engine of a fleet: money, budgets and alerts over every cluster, one hour behind."""
    has_included, volume_units = _money_inputs(plan)
    lag = fleet.lag_hours(plan)
    constants = [r for r in prices.price_rules(plan) if r["record"] != c.METRIC_GPU_PRICE_PER_HOUR]
    constants += [r for r in prices.identity_rules(plan) if r["record"] == c.METRIC_TEAM_INFO]
    constants += prices.budget_rules(plan) + calendar.rules(plan.timezone)
    return {
        c.GROUP_PRICES: constants,
        c.GROUP_HOURLY: (
            calendar.billing_rules(plan.timezone, lag)
            + fleet.global_usage_rules()
            + volume.rules(plan)
            + charges.hourly_rules(plan, has_included, volume_units)
            + budgets.rules(plan)
        ),
        c.GROUP_SPEND: charges.rules(plan, has_included, volume_units),
        c.GROUP_ALERTS: alerts.budget_alerts(plan) + alerts.trend_alerts(plan),
    }


# Groups whose rules never read each other's results: splitting them changes
# nothing Prometheus computes. They are the only ones that grow with teams and
# budgets (constant price and budget series; the budget alerts are a few joins); the
# usage, hourly and spend groups follow tiers, models and sources, and their
# rules read rules above them, so they are never split.
SHARDABLE = frozenset({c.GROUP_PRICES, c.GROUP_ALERTS})
# Each shard is one PrometheusRule object. Client-side apply (kubectl apply,
# Argo CD without ServerSideApply) copies the whole object into the
# last-applied-configuration annotation, and the API server allows 262,144
# bytes of annotations in total: 200,000 bytes of rules (measured with
# json.dumps' default separators, so more than the compact JSON kubectl
# writes) keep every object near 190 kB, a quarter below that limit.
SHARD_BYTES = 200_000


def _shards(rules: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive runs of rules whose serialised size stays under ``SHARD_BYTES``."""
    shards: list[list[dict[str, Any]]] = [[]]
    size = 0
    for rule in rules:
        rule_size = len(json.dumps(rule, default=str))
        if shards[-1] and size + rule_size > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(rule)
        size += rule_size
    return shards
