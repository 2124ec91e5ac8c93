"""Constant series from the plan: prices, identities, budgets, the calendar.

Money is joined against these series instead of being written into every
expression, so a price appears once, dashboards can show it, and the number
of rules grows with models × tiers, not with users. A model's price for a
tier is the tier's override if it has one (used as written), else the
model's pricing × the tier's ``price_multiplier``. Tier ``""`` (series
without a tier label) gets the model's pricing unchanged: it prices usage
from sources that carry no tier and whose model no team owns.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator

from costplan.core import conventions as c
from costplan.core.money import per_unit
from costplan.generators.prometheus import calendar
from costplan.generators.prometheus.promql import constant, record
from costplan.plan.model import (
    Budget,
    GpuHourly,
    Model,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    Pricing,
    TieredVolume,
)

ONE = Decimal(1)


def priced_tiers(plan: Plan, model: Model) -> Iterator[tuple[str, Pricing, Decimal]]:
    """(tier name, pricing, multiplier) for every tier and for tier ``""``."""
    yield "", model.pricing, ONE
    for tier in plan.tiers:
        override = next((o.pricing for o in tier.price_overrides if o.model == model.name), None)
        if override is not None:
            yield tier.name, override, ONE
        else:
            yield tier.name, model.pricing, tier.price_multiplier


def budget_period(budget: Budget) -> str:
    if budget.period == "rolling":
        return c.rolling_period(budget.window or "")
    return budget.period


def owner_team(plan: Plan, model: Model):
    """The team whose namespaces include the model's namespace, if any."""
    if model.namespace is None:
        return None
    return next((t for t in plan.teams if model.namespace in t.namespaces), None)


def price_rules(plan: Plan) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for model in plan.models:
        for tier, pricing, multiplier in priced_tiers(plan, model):
            rules.extend(_pricing_rules(model.name, tier, pricing, multiplier))
    for gpu in plan.gpu_instances:
        labels = {c.LABEL_GPU_INSTANCE: gpu.name, c.LABEL_INSTANCE_TYPE: gpu.instance_type}
        rules.append(constant(c.METRIC_GPU_PRICE_PER_HOUR, gpu.hourly_rate_per_gpu, labels))
    return rules


def _pricing_rules(model: str, tier: str, pricing: Pricing, multiplier: Decimal) -> list[dict[str, Any]]:
    base = {c.LABEL_MODEL: model, c.LABEL_TIER: tier} if tier else {c.LABEL_MODEL: model}
    out = []
    if isinstance(pricing, PerRequest):
        out.append(constant(c.METRIC_PRICE_PER_REQUEST, pricing.price * multiplier, base))
    elif isinstance(pricing, PerMillionTokens):
        per_type = {
            "input": pricing.input,
            # Unpriced cached tokens cost input, unpriced reasoning tokens output.
            "cached_input": pricing.input if pricing.cached_input is None else pricing.cached_input,
            "output": pricing.output,
            "reasoning": pricing.output if pricing.reasoning is None else pricing.reasoning,
        }
        for token_type in c.TOKEN_TYPES:
            labels = {**base, c.LABEL_TOKEN_TYPE: token_type}
            out.append(constant(c.METRIC_PRICE_PER_TOKEN, per_unit(per_type[token_type]) * multiplier, labels))
    elif isinstance(pricing, PerRequestWithIncludedTokens):
        out.append(constant(c.METRIC_PRICE_PER_REQUEST, pricing.price_per_request * multiplier, base))
        out.append(constant(c.METRIC_INCLUDED_TOKENS_PER_REQUEST, pricing.included_tokens_per_request, base))
        overage = per_unit(pricing.overage_per_million_tokens) * multiplier
        out.append(constant(c.METRIC_PRICE_PER_OVERAGE_TOKEN, overage, base))
    elif isinstance(pricing, TieredVolume):
        previous = Decimal(0)
        for index, band in enumerate(pricing.tiers):
            price = (per_unit(band.price) if pricing.unit == "tokens" else band.price) * multiplier
            labels = {**base, c.LABEL_BAND: str(index), c.LABEL_UNIT: pricing.unit, c.LABEL_PERIOD: pricing.period}
            out.append(constant(c.METRIC_VOLUME_BAND_START, band.start, labels))
            out.append(constant(c.METRIC_VOLUME_BAND_PRICE, price, labels))
            # Cost = Σ step_i × max(volume − start_i, 0): the telescoped marginal form.
            out.append(constant(c.METRIC_VOLUME_BAND_PRICE_STEP, price - previous, labels))
            previous = price
    elif isinstance(pricing, GpuHourly):
        pass  # priced from the GPU instance's rate, see charges.gpu_model_rules
    return out


def identity_rules(plan: Plan) -> list[dict[str, Any]]:
    """Info series that map served model names, namespaces and teams."""
    rules = []
    for model in plan.models:
        labels = {
            c.LABEL_MODEL: model.name,
            c.LABEL_MODEL_NAME: model.model_name,
            c.LABEL_SOURCE: model.usage_source,
            c.LABEL_PROVIDER: model.provider,
        }
        rules.append(constant(c.METRIC_MODEL_INFO, 1, labels))
        owner = owner_team(plan, model)
        owner_labels = {c.LABEL_MODEL: model.name}
        if owner is not None:
            owner_labels.update({c.LABEL_TEAM: owner.name, c.LABEL_TIER: owner.tier})
        rules.append(constant(c.METRIC_MODEL_OWNER, 1, owner_labels))
    # The label-less entry lets series without a team keep flowing through joins.
    rules.append(constant(c.METRIC_TEAM_INFO, 1, {}))
    owners: dict[str, Any] = {}
    for team in plan.teams:
        labels = {c.LABEL_TEAM: team.name, c.LABEL_TIER: team.tier, c.LABEL_COST_CENTER: team.cost_center}
        rules.append(constant(c.METRIC_TEAM_INFO, 1, labels))
        for namespace in team.namespaces:
            owners.setdefault(namespace, team)
    for namespace, team in sorted(owners.items()):
        labels = {c.LABEL_NAMESPACE: namespace, c.LABEL_TEAM: team.name, c.LABEL_COST_CENTER: team.cost_center}
        rules.append(constant(c.METRIC_NAMESPACE_TEAM, 1, labels))
    return rules


def budget_rules(plan: Plan) -> list[dict[str, Any]]:
    rules = []
    for budget in plan.all_budgets():
        labels = {c.LABEL_BUDGET: budget.name, c.LABEL_PERIOD: budget_period(budget)}
        if budget.team:
            labels[c.LABEL_TEAM] = budget.team
        rules.append(constant(c.METRIC_BUDGET_AMOUNT, budget.amount, labels))
        for threshold in budget.thresholds:
            amount = budget.amount * threshold / 100
            rules.append(
                constant(
                    c.METRIC_BUDGET_THRESHOLD_AMOUNT,
                    amount,
                    {**labels, c.LABEL_THRESHOLD: _percent(threshold)},
                )
            )
    return rules


def _percent(value: Decimal) -> str:
    from costplan.core.money import format_decimal

    return format_decimal(value)


def rules(plan: Plan) -> list[dict[str, Any]]:
    return price_rules(plan) + identity_rules(plan) + budget_rules(plan) + calendar.rules(plan.timezone)


__all__ = ["rules", "priced_tiers", "owner_team", "budget_period", "record"]
