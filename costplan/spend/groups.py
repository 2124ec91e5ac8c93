"""The rule groups, in evaluation order, with their intervals.

Prometheus evaluates rules within a group in order, so every group only
reads series recorded earlier in the same group or by a group before it.
Constant series are refreshed every minute so they never go stale (5m
lookback). Period-to-date groups run every 5 minutes: they change at most
once an hour and are the expensive ones (hourly subqueries over a month).
"""

from __future__ import annotations

from typing import Any

from costplan import conventions as c
from costplan.model import Plan, PerRequestWithIncludedTokens
from costplan.spend import alerts, budgets, charges, prices, usage, volume

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
        for _, pricing, _ in prices.priced_tiers(plan, model)
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
    return [
        {"name": name, "interval": INTERVALS[name], "rules": rules}
        for name, rules in content.items()
        if rules
    ]
