"""Constant series from the plan: prices, identities, budgets, the calendar.

Money is joined against these series instead of being written into every
expression, so a price appears once, dashboards can show it, and the number
of rules grows with models × tiers, not with users. What a model costs
under a tier is decided in ``costplan.plan.pricing``; this module only writes
those numbers as series. Tier ``""`` (series without a tier label) prices
usage from sources that carry no tier and whose model no team owns.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from costplan.core import conventions as c
from costplan.core.money import format_decimal
from costplan.generators.prometheus import calendar, usage
from costplan.generators.prometheus.promql import constant, record, selector
from costplan.plan.model import Plan, Pricing, TieredVolume
from costplan.plan.pricing import (
    CHARGE_INCLUDED_TOKENS,
    CHARGE_OVERAGE,
    CHARGE_REQUEST,
    budget_period,
    effective_prices,
    owner_team,
    priced_tiers,
    volume_band_steps,
)


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
    """The constant price series of one model under one tier, from ``plan.pricing``."""
    base = {c.LABEL_MODEL: model, c.LABEL_TIER: tier} if tier else {c.LABEL_MODEL: model}
    if isinstance(pricing, TieredVolume):
        out = []
        for index, (start, price, step) in enumerate(volume_band_steps(pricing, multiplier)):
            labels = {**base, c.LABEL_BAND: str(index), c.LABEL_UNIT: pricing.unit, c.LABEL_PERIOD: pricing.period}
            out.append(constant(c.METRIC_VOLUME_BAND_START, start, labels))
            out.append(constant(c.METRIC_VOLUME_BAND_PRICE, price, labels))
            out.append(constant(c.METRIC_VOLUME_BAND_PRICE_STEP, step, labels))
        return out
    series = {
        CHARGE_REQUEST: (c.METRIC_PRICE_PER_REQUEST, {}),
        CHARGE_INCLUDED_TOKENS: (c.METRIC_INCLUDED_TOKENS_PER_REQUEST, {}),
        CHARGE_OVERAGE: (c.METRIC_PRICE_PER_OVERAGE_TOKEN, {}),
        **{t: (c.METRIC_PRICE_PER_TOKEN, {c.LABEL_TOKEN_TYPE: t}) for t in c.TOKEN_TYPES},
    }
    # GpuHourly has no terms: priced from the GPU instance's rate, see charges.gpu_model_rules.
    return [
        constant(series[term.charge][0], term.value, {**base, **series[term.charge][1]})
        for term in effective_prices(pricing, multiplier)
    ]


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
    if usage.needs_identity(plan):
        rules.append(user_identity_rule(plan))
    return rules


# Identity label -> the key-Secret annotation it is read from.
IDENTITY_ANNOTATIONS = {
    c.LABEL_USER: c.ANNOTATION_USER_ID,
    c.LABEL_TEAM: c.ANNOTATION_TEAM,
    c.LABEL_TIER: c.ANNOTATION_TIER,
    c.LABEL_COST_CENTER: c.ANNOTATION_COST_CENTER,
}


def user_identity_rule(plan: Plan) -> dict[str, Any]:
    """``costplan:user_identity{user, team, tier, cost_center}`` from the key Secrets, one rule for all users.

    kube-state-metrics exports the annotations the AuthPolicy reads identity
    from (``--metric-annotations-allowlist``, see ``ksm_annotations_allowlist``)
    as labels of ``kube_secret_annotations``; only Secrets in the key
    namespace with a user id count. Several Secrets of one user (a key being
    rotated) that agree are one identity (``max by``); a user whose Secrets
    disagree gets none, so its usage stays unattributed instead of being
    charged to a guessed team (``costplan doctor`` reports such keys).
    """
    user_label = c.KSM_SECRET_ANNOTATION_LABELS[c.ANNOTATION_USER_ID]
    secrets = selector(
        c.KSM_SECRET_ANNOTATIONS,
        {c.KSM_LABEL_NAMESPACE: plan.integrations.gateway.api_key.secret_namespace},
        **{user_label: '!=""'},
    )
    # Agreeing Secrets become one series before any relabelling, and the
    # conflict check counts the annotations themselves: only the few users
    # in conflict are relabelled for it.
    annotations = ", ".join(c.KSM_SECRET_ANNOTATION_LABELS[a] for a in IDENTITY_ANNOTATIONS.values())
    distinct = f"max by ({annotations}) ({secrets})"
    expr = distinct
    for label, annotation in IDENTITY_ANNOTATIONS.items():
        source = c.KSM_SECRET_ANNOTATION_LABELS[annotation]
        expr = f'label_replace({expr}, "{label}", "$1", "{source}", "(.*)")'
    identities = f"max by ({', '.join(IDENTITY_ANNOTATIONS)}) ({expr})"
    conflicting = (f'label_replace(count by ({user_label}) ({distinct}) > 1,'
                   f' "{c.LABEL_USER}", "$1", "{user_label}", "(.*)")')
    return record(c.METRIC_USER_IDENTITY, f"{identities} unless on({c.LABEL_USER}) {conflicting}")


def ksm_annotations_allowlist() -> str:
    """The kube-state-metrics flag that exports the key Secrets' identity annotations."""
    return f"{c.KSM_ANNOTATIONS_FLAG}=secrets=[{','.join(sorted(IDENTITY_ANNOTATIONS.values()))}]"


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
    return format_decimal(value)


def rules(plan: Plan) -> list[dict[str, Any]]:
    return price_rules(plan) + identity_rules(plan) + budget_rules(plan) + calendar.rules(plan.timezone)


