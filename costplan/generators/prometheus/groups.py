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
    has_included = any(
        isinstance(pricing, PerRequestWithIncludedTokens)
        for model in plan.models
        for _, pricing, _ in priced_tiers(plan, model)
    )
    volume_units = {unit for unit, _ in volume.volume_groups(plan)}
    content = {
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
    groups = []
    for name, rules in content.items():
        chunks = _shards(rules) if name in SHARDABLE else [rules]
        for index, chunk in enumerate(chunk for chunk in chunks if chunk):
            shard = name if index == 0 else f"{name}-{index + 1}"
            groups.append({"name": shard, "interval": INTERVALS[name], "rules": chunk})
    return groups


# Groups whose rules never read each other's results: splitting them changes
# nothing Prometheus computes. They are the only ones that grow with teams and
# budgets (constant price/budget series, one alert per budget threshold); the
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
