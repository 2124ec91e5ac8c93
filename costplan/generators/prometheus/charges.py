"""Money: usage joined with prices, then rolled up.

``costplan:spend:<window>`` carries one series per charge (``request``,
``token``, ``overage``, ``volume``, ``gpu``, ``gpu_idle``) and identity (``user``, ``team``,
``tier``, ``model``, ``cost_center``; ``token_type`` on token charges).
``rate5m`` is money per second, ``increase1h`` the money of the clock hour
that closed last (``periods``). Linear charges are one join with a price
series. The non-linear ones are exact in ``increase1h`` (period-to-date
money with and without the hour, ``volume``) and use the current marginal
price in ``rate5m``. GPU-hourly models cost the
GPU spend of their namespace on their GPU instance type (not multiplied by
tier: it is cost, passed through), charged to the namespace's team. The GPU
cost of a team's other namespaces is the team's own ``gpu`` charge (no user,
no model), so it counts in the team's spend, budgets and report. Idle GPU
cost is the teams' ``gpu_idle`` charge only when the plan shares it
(``gpuIdleCost``); by default it is reported on its own, billed to nobody.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.names import promql_string
from costplan.generators.prometheus import fleet
from costplan.generators.prometheus.periods import clock_hour, period_to_date
from costplan.generators.prometheus.promql import by, record, selector
from costplan.plan.model import IDLE_SEPARATE, IDLE_TEAM, GpuHourly, Plan
from costplan.plan.pricing import owner_team

USER_KEY = "user, team, tier, model"
# Gauges (GPU cost per second) are integrated over the clock hour at steps this many seconds apart.
GAUGE_STEP_SECONDS = 60


def _cost_center(expr: str, plan: Plan | None = None) -> str:
    info = fleet.team_info(plan) if plan is not None else c.METRIC_TEAM_INFO
    return f"({expr}) * on(team) group_left(cost_center) {info}"


def _spend(window: str) -> str:
    return f"{c.METRIC_PREFIX}spend:{window}"


def linear_rules(plan: Plan, window: str) -> list[dict[str, Any]]:
    requests = f"{c.METRIC_PREFIX}usage_requests:{window}"
    tokens = f"{c.METRIC_PREFIX}usage_tokens:{window}"
    key = fleet.with_cluster(plan, USER_KEY)
    return [
        record(_spend(window), _cost_center(
            f"sum by ({key}) ({requests} * on(model, tier) group_left() {c.METRIC_PRICE_PER_REQUEST})", plan
        ), {c.LABEL_CHARGE: c.CHARGE_REQUEST}),
        record(_spend(window), _cost_center(
            f"sum by ({key}, token_type) ({tokens} * on(model, tier, token_type) group_left() {c.METRIC_PRICE_PER_TOKEN})",
            plan,
        ), {c.LABEL_CHARGE: c.CHARGE_TOKEN}),
    ]


def nonlinear_rate_rules(plan: Plan, has_included: bool, volume_units: set[str]) -> list[dict[str, Any]]:
    rules = []
    if has_included:
        over = f"({c.METRIC_OVERAGE_TOKENS_PTD} > 0)"
        expr = (
            f"sum by ({USER_KEY}) ({c.METRIC_USAGE_TOKENS_RATE}) * on(model, tier) group_left() "
            f"{c.METRIC_PRICE_PER_OVERAGE_TOKEN} and on({USER_KEY}) {over}"
        )
        rules.append(record(c.METRIC_SPEND_RATE, _cost_center(expr, plan), {c.LABEL_CHARGE: c.CHARGE_OVERAGE}))
    terms = []
    for unit in sorted(volume_units):
        usage = c.METRIC_USAGE_TOKENS_RATE if unit == "tokens" else c.METRIC_USAGE_REQUESTS_RATE
        summed = f"sum by (team, tier, model) ({usage})"
        marginal = selector(c.METRIC_VOLUME_MARGINAL_PRICE, {c.LABEL_UNIT: unit})
        first = selector(c.METRIC_VOLUME_BAND_PRICE, {c.LABEL_BAND: "0", c.LABEL_UNIT: unit})
        # Before the first hour of a period is summed, the first band applies.
        terms.append(f"{summed} * on(team, tier, model) group_left() {marginal}")
        terms.append(f"{summed} * on(model, tier) group_left() {first}")
    if terms:
        expr = "(" + " or ".join(terms) + ")"
        rules.append(record(c.METRIC_SPEND_RATE, _cost_center(expr, plan), {c.LABEL_CHARGE: c.CHARGE_VOLUME}))
    return rules


def nonlinear_hourly_rule(plan: Plan) -> dict[str, Any]:
    """The last closed hour's money: period-to-date money with the hour minus without it (``volume``).

    Volume bands and included tokens count a team's (or user's) usage in
    every cluster of a fleet, so this money carries no ``cluster``.
    """
    now = f"sum without (period) ({c.METRIC_CHARGE_PTD})"
    before = f"sum without (period) ({c.METRIC_CHARGE_PTD_PREVIOUS})"
    return record(c.METRIC_SPEND_HOURLY, _cost_center(f"({now} - {before} or {now})", plan))


def _gauge_hour(rate: str, plan: Plan) -> str:
    """Money of the last closed clock hour from a per-second gauge, sampled on aligned minutes."""
    inner = f"sum_over_time({rate}[59m59s:{GAUGE_STEP_SECONDS}s]) * {GAUGE_STEP_SECONDS}"
    return clock_hour(inner, fleet.lag_hours(plan))


def gpu_model_rules(plan: Plan) -> list[dict[str, Any]]:
    rules = []
    for model in plan.models:
        if not isinstance(model.pricing, GpuHourly) or not model.namespace or not model.gpu_instance:
            continue
        cost = selector(c.METRIC_GPU_COST_RATE, {c.LABEL_NAMESPACE: model.namespace, c.LABEL_GPU_INSTANCE: model.gpu_instance})
        labels = {c.LABEL_CHARGE: c.CHARGE_GPU, c.LABEL_MODEL: model.name}
        owner = owner_team(plan, model)
        if owner is not None:
            labels.update({c.LABEL_TEAM: owner.name, c.LABEL_TIER: owner.tier, c.LABEL_COST_CENTER: owner.cost_center})
        per = f"sum by ({c.LABEL_CLUSTER}) " if fleet.is_global(plan) else "sum"
        rules.append(record(c.METRIC_SPEND_RATE, f"{per}({cost})", labels))
        hourly = f"{per}({_gauge_hour(cost, plan)})"
        rules.append(record(c.METRIC_SPEND_HOURLY, hourly, labels))
    return rules


def _gpu_model_pairs(plan: Plan) -> str | None:
    """(namespace, gpu_instance) of the GPU-hourly models, as a vector: their GPU cost is the model's charge."""
    pairs = sorted({(m.namespace, m.gpu_instance) for m in plan.models
                    if isinstance(m.pricing, GpuHourly) and m.namespace and m.gpu_instance})
    if not pairs:
        return None
    return " or ".join(
        f'label_replace(label_replace(vector(1), "namespace", {promql_string(ns)}, "", ""), '
        f'"gpu_instance", {promql_string(gpu)}, "", "")'
        for ns, gpu in pairs
    )


def team_gpu_rule(plan: Plan, window: str) -> list[dict[str, Any]]:
    """GPU cost of a team's namespaces as the team's charge (``charge="gpu"``, no user or model).

    GPUs a GPU-hourly model already charges (its namespace on its instance
    type) are left out, so no GPU-hour is charged twice.
    """
    if not plan.gpu_instances or not any(t.namespaces for t in plan.teams):
        return []
    if window == c.WINDOW_RATE:
        keys = fleet.with_cluster(plan, "namespace, gpu_instance, team, cost_center")
        cost = f'sum by ({keys}) ({c.METRIC_GPU_COST_RATE}{{team!=""}})'
    else:
        cost = f'{c.METRIC_GPU_COST_BY_TEAM_HOURLY}{{team!=""}}'
    pairs = _gpu_model_pairs(plan)
    if pairs:
        cost = f"({cost} unless on(namespace, gpu_instance) ({pairs}))"
    info = fleet.team_info(plan, '{team!=""}')
    expr = f"sum by ({fleet.with_cluster(plan, 'team, cost_center')}) ({cost}) * on(team, cost_center) group_left(tier) {info}"
    return [record(_spend(window), expr, {c.LABEL_CHARGE: c.CHARGE_GPU})]


def idle_share_rule(plan: Plan, window: str) -> list[dict[str, Any]]:
    """Idle GPU cost charged to teams (``charge="gpu_idle"``), as ``gpuIdleCost.share`` says.

    ``byUsage``: per GPU instance type, idle cost x the team's GPU cost of
    that type / all teams' GPU cost of it, in the same hour (or second, for
    ``rate5m``); a type no team used keeps its idle cost unallocated, so no
    team pays for what nobody asked for. Multiplying before dividing keeps
    whole shares exact in floating point. ``team``: all of it, to that team.
    """
    idle_cost = plan.gpu_idle_cost
    if not plan.gpu_instances or idle_cost.share == IDLE_SEPARATE:
        return []
    if window == c.WINDOW_RATE:
        used, idle = f'{c.METRIC_GPU_COST_RATE}{{team!=""}}', c.METRIC_GPU_IDLE_COST_RATE
    else:
        used, idle = f'{c.METRIC_GPU_COST_BY_TEAM_HOURLY}{{team!=""}}', c.METRIC_GPU_IDLE_COST_HOURLY
    team_info = fleet.team_info(plan, '{team!=""}')
    # In a fleet, each cluster's idle GPUs are shared among that cluster's teams.
    per = fleet.with_cluster(plan, "gpu_instance")
    on_type = f"on({per})"
    if idle_cost.share == IDLE_TEAM and idle_cost.team is not None:
        payer = promql_string(idle_cost.team)
        total_idle = f"sum by ({c.LABEL_CLUSTER}) ({idle})" if fleet.is_global(plan) else f"sum({idle})"
        expr = (f'label_replace({total_idle}, "team", {payer}, "", "") '
                f"* on(team) group_left(tier, cost_center) {team_info}")
    else:
        weights = f"sum by ({fleet.with_cluster(plan, 'team, cost_center, gpu_instance')}) ({used})"
        total = f"(sum by ({per}) ({used}) > 0)"
        idle_by_type = f"sum by ({per}) ({idle})"
        share = f"{weights} * {on_type} group_left() {idle_by_type} / {on_type} group_left() {total}"
        expr = f"sum by ({fleet.with_cluster(plan, 'team, cost_center')}) ({share}) * on(team, cost_center) group_left(tier) {team_info}"
    return [record(_spend(window), expr, {c.LABEL_CHARGE: c.CHARGE_GPU_IDLE})]


def rollup_rules(window: str) -> list[dict[str, Any]]:
    return [record(c.spend_rollup(name, window), f"sum by ({by(labels)}) ({_spend(window)})")
            for name, labels in c.ROLLUPS.items()]


def day_rules() -> list[dict[str, Any]]:
    """The last 24 closed hours: the last one and the 23 before it."""
    return [
        record(c.spend_rollup(name, c.WINDOW_DAY),
               period_to_date(lambda series: series, c.spend_rollup(name, c.WINDOW_HOUR), "rolling_24h"))
        for name in c.ROLLUPS
    ]


def unit_cost_rules(plan: Plan) -> list[dict[str, Any]]:
    by_model = c.spend_rollup("model", c.WINDOW_RATE)
    requests = f"(sum by (model) ({c.METRIC_USAGE_REQUESTS_RATE}) > 0)"
    tokens = f"(sum by (model) ({c.METRIC_USAGE_TOKENS_RATE}) > 0)"
    limited = f"sum by (source, team, tier) ({c.METRIC_USAGE_LIMITED_RATE})"
    authorized = f"sum by (source, team, tier) ({c.METRIC_USAGE_REQUESTS_RATE})"
    rules = [
        record(c.METRIC_COST_PER_REQUEST, f"{by_model} / on(model) {requests}"),
        record(c.METRIC_COST_PER_MILLION_TOKENS, f"{by_model} / on(model) {tokens} * 1000000"),
        record(c.METRIC_COST_PER_REQUEST_P95, f"quantile_over_time(0.95, {c.METRIC_COST_PER_REQUEST}[1h])"),
        # Limited over authorized; +Inf when every request was limited.
        record(c.METRIC_RATE_LIMITED_RATIO, f"{limited} / on(source, team, tier) ({authorized} or {limited} * 0)"),
    ]
    return rules


def gpu_team_rules(plan: Plan) -> list[dict[str, Any]]:
    if not plan.gpu_instances:
        return []
    team_keys = fleet.with_cluster(plan, "namespace, team, cost_center, gpu_instance")
    idle_keys = fleet.with_cluster(plan, "node, instance_type, gpu_instance")
    return [
        record(c.METRIC_GPU_COST_BY_TEAM_HOURLY, f"sum by ({team_keys}) ({_gauge_hour(c.METRIC_GPU_COST_RATE, plan)})"),
        record(c.METRIC_GPU_IDLE_COST_HOURLY,
               f"sum by ({idle_keys}) ({_gauge_hour(c.METRIC_GPU_IDLE_COST_RATE, plan)})"),
    ]


def rules(plan: Plan, has_included: bool, volume_units: set[str]) -> list[dict[str, Any]]:
    """Per-second money (group costplan-spend)."""
    out = linear_rules(plan, c.WINDOW_RATE) + nonlinear_rate_rules(plan, has_included, volume_units)
    out += [rule for rule in gpu_model_rules(plan) if rule["record"] == c.METRIC_SPEND_RATE]
    out += team_gpu_rule(plan, c.WINDOW_RATE) + idle_share_rule(plan, c.WINDOW_RATE)
    return out + rollup_rules(c.WINDOW_RATE) + unit_cost_rules(plan)


def hourly_rules(plan: Plan, has_included: bool, volume_units: set[str]) -> list[dict[str, Any]]:
    """Money of the last closed hour (group costplan-hourly, after usage and volumes)."""
    out = gpu_team_rules(plan) + linear_rules(plan, c.WINDOW_HOUR)
    if has_included or volume_units:
        out.append(nonlinear_hourly_rule(plan))
    out += [rule for rule in gpu_model_rules(plan) if rule["record"] == c.METRIC_SPEND_HOURLY]
    out += team_gpu_rule(plan, c.WINDOW_HOUR) + idle_share_rule(plan, c.WINDOW_HOUR)
    return out + rollup_rules(c.WINDOW_HOUR) + day_rules()
