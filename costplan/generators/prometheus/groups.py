"""The rule groups, in evaluation order, with their intervals.

Prometheus evaluates rules within a group in order, so every group only
reads series recorded earlier in the same group or by a group before it.
Constant series are refreshed every minute so they never go stale (5m
lookback). Period-to-date groups run every 5 minutes: they change at most
once an hour and are the expensive ones (hourly subqueries over a month).
"""

from __future__ import annotations

import json
from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus import (
    alerts,
    budgets,
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
    c.GROUP_VOLUME: "5m",
    c.GROUP_SPEND: "1m",
    c.GROUP_BUDGETS: "5m",
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
        c.GROUP_VOLUME: volume.rules(plan),
        c.GROUP_SPEND: charges.rules(plan, has_included, volume_units),
        c.GROUP_BUDGETS: budgets.rules(plan),
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
# nothing Prometheus computes. They are the ones that grow with teams and
# budgets (constant price/budget series, one alert per budget threshold), and
# one PrometheusRule object must stay well under the API server's ~1.5 MiB.
SHARDABLE = frozenset({c.GROUP_PRICES, c.GROUP_ALERTS})
SHARD_BYTES = 400_000


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
