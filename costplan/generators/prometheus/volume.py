"""Period-to-date volumes and money for the non-linear prices.

*Included tokens* (``perRequestWithIncludedTokens``): the allowance is pooled
per user, per model, per calendar month in the plan's timezone:
``overage = max(0, tokens_mtd - requests_mtd × included_per_request)``,
charged at the overage price. All token types count towards the allowance.

*Tiered volume* (``tieredVolume``): volume is counted per team and model
over the pricing's ``period``; money = Σ_bands step_i × max(volume − start_i, 0)
where step_i is the band's price minus the previous band's (the marginal
price telescoped), so crossing a band boundary mid-hour is exact.

Both are period-to-date quantities; the spend rules turn them into hourly
money as their increase over the last hour (reset at period start).
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus.periods import period_to_date
from costplan.generators.prometheus.promql import record, selector
from costplan.plan.model import PerRequestWithIncludedTokens, Plan, TieredVolume
from costplan.plan.pricing import priced_tiers

INCLUDED_PERIOD = "month"
USER_KEY = "user, team, tier, model"
TEAM_KEY = "team, tier, model"


def _pricings(plan: Plan):
    for model in plan.models:
        for _, pricing, _ in priced_tiers(plan, model):
            yield pricing


def included_rules(plan: Plan) -> list[dict[str, Any]]:
    if not any(isinstance(p, PerRequestWithIncludedTokens) for p in _pricings(plan)):
        return []
    period = {c.LABEL_PERIOD: INCLUDED_PERIOD}
    has_allowance = f"on(model, tier) {c.METRIC_INCLUDED_TOKENS_PER_REQUEST} @ end()"
    requests = period_to_date(f"sum by ({USER_KEY}) ({c.METRIC_USAGE_REQUESTS_HOURLY} and {has_allowance})", INCLUDED_PERIOD)
    tokens = period_to_date(f"sum by ({USER_KEY}) ({c.METRIC_USAGE_TOKENS_HOURLY} and {has_allowance})", INCLUDED_PERIOD)
    allowance = (
        f"({c.METRIC_USAGE_REQUESTS_PTD} * on(model, tier) group_left() {c.METRIC_INCLUDED_TOKENS_PER_REQUEST})"
    )
    overage = f"clamp_min({c.METRIC_USAGE_TOKENS_PTD} - on({USER_KEY}, period) {allowance}, 0)"
    money = f"{c.METRIC_OVERAGE_TOKENS_PTD} * on(model, tier) group_left() {c.METRIC_PRICE_PER_OVERAGE_TOKEN}"
    return [
        record(c.METRIC_USAGE_REQUESTS_PTD, requests, period),
        record(c.METRIC_USAGE_TOKENS_PTD, tokens, period),
        record(c.METRIC_OVERAGE_TOKENS_PTD, overage),
        record(c.METRIC_CHARGE_PTD, money, {c.LABEL_CHARGE: c.CHARGE_OVERAGE}),
    ]


def volume_groups(plan: Plan) -> dict[tuple[str, str], int]:
    """(unit, period) → most bands any tiered pricing with that unit and period has."""
    groups: dict[tuple[str, str], int] = {}
    for pricing in _pricings(plan):
        if isinstance(pricing, TieredVolume):
            key = (pricing.unit, pricing.period)
            groups[key] = max(groups.get(key, 0), len(pricing.tiers))
    return dict(sorted(groups.items()))


def band(metric: str, unit: str, period: str, index: int) -> str:
    return selector(metric, {c.LABEL_BAND: str(index), c.LABEL_UNIT: unit, c.LABEL_PERIOD: period})


def tiered_rules(plan: Plan) -> list[dict[str, Any]]:
    rules = []
    for (unit, period), bands in volume_groups(plan).items():
        usage = c.METRIC_USAGE_TOKENS_HOURLY if unit == "tokens" else c.METRIC_USAGE_REQUESTS_HOURLY
        priced = f"on(model, tier) {band(c.METRIC_VOLUME_BAND_START, unit, period, 0)} @ end()"
        labels = {c.LABEL_UNIT: unit, c.LABEL_PERIOD: period}
        volume_sel = selector(c.METRIC_VOLUME_PTD, labels)
        rules.append(record(c.METRIC_VOLUME_PTD, period_to_date(f"sum by ({TEAM_KEY}) ({usage} and {priced})", period), labels))
        money_terms, marginal_terms = [], []
        for i in range(bands):
            start = f"on(model, tier) group_left(band) {band(c.METRIC_VOLUME_BAND_START, unit, period, i)}"
            step = f"on(model, tier, band) group_left() {band(c.METRIC_VOLUME_BAND_PRICE_STEP, unit, period, i)}"
            money_terms.append(f"clamp_min({volume_sel} - {start}, 0) * {step}")
            marginal_terms.append(f"({volume_sel} >= bool {start}) * {step}")
        rules.append(record(
            c.METRIC_CHARGE_PTD,
            f"sum by ({TEAM_KEY}, period) ({' or '.join(money_terms)})",
            {c.LABEL_CHARGE: c.CHARGE_VOLUME},
        ))
        rules.append(record(
            c.METRIC_VOLUME_MARGINAL_PRICE,
            f"sum by ({TEAM_KEY}, unit, period) ({' or '.join(marginal_terms)})",
        ))
    return rules


def rules(plan: Plan) -> list[dict[str, Any]]:
    return included_rules(plan) + tiered_rules(plan)
