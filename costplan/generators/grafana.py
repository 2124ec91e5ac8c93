"""Generator: the Grafana cost dashboard, as sidecar ConfigMaps or GrafanaDashboard CRs.

One dashboard per environment, built with grafana-foundation-sdk so the JSON
follows Grafana's own schema (``schemaVersion`` 41 with the pinned SDK).
Every query reads only series from the contract in ``conventions``
(``OUTPUT_METRICS``), so the dashboard keeps working as long as the spend
rules keep their names, and a test proves it.

Determinism: the JSON is serialised with sorted keys and a fixed indent,
the uid is derived from the plan name and environment, and panels follow
plan order. Budget gauges are one panel per budget because each budget has
its own thresholds.

Range figures sum the spend rules' hourly series over an hourly subquery
spanning the dashboard range (``[$__range:1h]``), the way the budget rules
and ``costplan report`` sum them; time series show the hourly series as is. The default time range is
"this month so far", so the headline figure is month-to-date spend.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    gauge,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name, promql_string
from costplan.generators.common import WAVE_CONFIG, metadata
from costplan.generators.prometheus.periods import closed_hour
from costplan.plan.model import IDLE_SEPARATE, Budget, Plan

COMPONENT = "grafana"
DATASOURCE_VAR = "datasource"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VAR}}}")
# Grafana's unit ids for currencies it knows; others get a suffix unit.
GRAFANA_CURRENCY_UNITS = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "INR", "BRL", "PLN"}
THRESHOLD_COLORS = ("yellow", "orange", "red", "dark-red", "purple")
TOP_USERS = 10
# Beyond this many budgets, one gauge each would make an unusable (and, in a
# ConfigMap, too large) dashboard: show the most used budgets in one panel.
MAX_BUDGET_GAUGES = 24
HOUR = "1h"

# Filters every usage/spend panel applies from the dashboard variables.
IDENTITY_FILTER = f'{c.LABEL_TEAM}=~"$team",{c.LABEL_TIER}=~"$tier"'
TEAM_FILTER = f'{c.LABEL_TEAM}=~"$team"'


def dashboard_uid(plan: Plan) -> str:
    """Stable per plan and environment; Grafana allows at most 40 characters."""
    return object_name("costplan", plan.name, plan.environment, max_length=40)


def currency_unit(currency: str) -> str:
    return f"currency{currency}" if currency in GRAFANA_CURRENCY_UNITS else f"suffix: {currency}"


def _number(value: Decimal) -> int | float:
    """A threshold for display: Grafana stores them as JSON numbers."""
    return int(value) if value == value.to_integral_value() else float(value)


def _query(expr: str, *, legend: str | None = None, instant: bool = False, table_format: bool = False, ref: str = "A"):
    query = prometheus.Dataquery().expr(expr).ref_id(ref)
    if legend:
        query = query.legend_format(legend)
    if instant:
        query = query.instant()
    else:
        query = query.range()
    if table_format:
        query = query.format(pm.PromQueryFormat.TABLE)
    return query


def _range_sum(metric: str, selector: str) -> str:
    """An hourly series summed over the dashboard range, as the budget rules sum it (closed hours)."""
    sel = f"{{{selector}}}" if selector else ""
    return f"sum_over_time({closed_hour(metric + sel)}[$__range:{c.OUTPUT_STEP}])"


# --------------------------------------------------------------------------
# Queries: one function per panel so tests can read them by name.
# --------------------------------------------------------------------------


def spend_total_query() -> str:
    return f"sum({_range_sum(c.METRIC_SPEND_HOURLY, IDENTITY_FILTER)})"


def spend_by_team_query() -> str:
    return f"sum by ({c.LABEL_TEAM}) ({_range_sum(c.METRIC_SPEND_HOURLY, IDENTITY_FILTER)})"


def spend_by_charge_query() -> str:
    """The split of spend: requests, tokens, overage, volume and the teams' GPU cost (``charge``)."""
    return f"sum by ({c.LABEL_CHARGE}) ({_range_sum(c.METRIC_SPEND_HOURLY, IDENTITY_FILTER)})"


def hourly_spend_by_team_query() -> str:
    return f"sum by ({c.LABEL_TEAM}) ({c.METRIC_SPEND_HOURLY}{{{IDENTITY_FILTER}}})"


def model_spend_query() -> str:
    return f"sum by ({c.LABEL_MODEL}) ({_range_sum(c.METRIC_SPEND_HOURLY, IDENTITY_FILTER)})"


def cost_per_request_query() -> str:
    return f"max by ({c.LABEL_MODEL}) ({c.METRIC_COST_PER_REQUEST})"


def cost_per_million_tokens_query() -> str:
    return f"max by ({c.LABEL_MODEL}) ({c.METRIC_COST_PER_MILLION_TOKENS})"


def top_users_query() -> str:
    inner = f"sum by ({c.LABEL_USER}, {c.LABEL_TEAM}) ({_range_sum(c.METRIC_SPEND_HOURLY, IDENTITY_FILTER)})"
    return f"topk({TOP_USERS}, {inner})"


def budget_used_query(budget: Budget) -> str:
    """Percent of a budget used in its current period (global budgets have no team label)."""
    selector = f"{c.LABEL_TEAM}={promql_string(budget.team or '')},{c.LABEL_BUDGET}={promql_string(budget.name)}"
    return f"100 * max({c.METRIC_BUDGET_UTILIZATION}{{{selector}}})"


def top_budgets_query() -> str:
    """Percent used of the most used budgets, for plans with many budgets."""
    inner = f"100 * max by ({c.LABEL_TEAM}, {c.LABEL_BUDGET}) ({c.METRIC_BUDGET_UTILIZATION}{{{TEAM_FILTER}}})"
    return f"topk({MAX_BUDGET_GAUGES}, {inner})"


def gpu_spend_query() -> str:
    return f"sum by ({c.LABEL_TEAM}) ({c.METRIC_GPU_COST_BY_TEAM_HOURLY}{{{TEAM_FILTER}}})"


def gpu_idle_spend_query() -> str:
    return f"sum by ({c.LABEL_GPU_INSTANCE}) ({c.METRIC_GPU_IDLE_COST_HOURLY})"


def gpu_spend_total_query() -> str:
    return f"sum({_range_sum(c.METRIC_GPU_COST_BY_TEAM_HOURLY, TEAM_FILTER)})"


def gpu_idle_spend_total_query() -> str:
    return f"sum({_range_sum(c.METRIC_GPU_IDLE_COST_HOURLY, '')})"


def gpu_idle_unallocated_query() -> str:
    """Idle GPU cost no team was charged (``gpuIdleCost`` shares it): all idle less the teams' shares."""
    shared = f'sum({_range_sum(c.METRIC_SPEND_HOURLY, f"{c.LABEL_CHARGE}={promql_string(c.CHARGE_GPU_IDLE)}")})'
    return f"clamp_min({gpu_idle_spend_total_query()} - ({shared} or vector(0)), 0)"


def rate_limited_query() -> str:
    return f'max by ({c.LABEL_TIER}) ({c.METRIC_RATE_LIMITED_RATIO}{{{c.LABEL_TIER}=~"$tier"}})'


# --------------------------------------------------------------------------
# Dashboard
# --------------------------------------------------------------------------


def _idle_target(plan: Plan) -> Any:
    """Idle GPUs beside the charges: all of them, or (when teams share them) what no team was charged."""
    if plan.gpu_idle_cost.share == IDLE_SEPARATE:
        return _query(gpu_idle_spend_total_query(), legend="idle GPUs (no team)", instant=True, ref="B")
    return _query(gpu_idle_unallocated_query(), legend="idle GPUs no team uses", instant=True, ref="B")


def _variables(plan: Plan) -> list[Any]:
    def custom(name: str, label: str, values: list[str]):
        return (
            dashboard.CustomVariable(name)
            .label(label)
            .values(",".join(values))
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )

    return [
        dashboard.DatasourceVariable(DATASOURCE_VAR).label("Prometheus").type("prometheus"),
        # One value: shows which environment's plan this dashboard was built from.
        dashboard.CustomVariable("environment").label("Environment").values(plan.environment),
        custom("team", "Team", [t.name for t in plan.teams]),
        custom("tier", "Tier", [t.name for t in plan.tiers]),
    ]


def _thresholds(budget: Budget) -> Any:
    steps = [dm.Threshold(value=None, color="green")]
    for index, threshold in enumerate(budget.thresholds):
        color = THRESHOLD_COLORS[min(index + max(0, 3 - len(budget.thresholds)), len(THRESHOLD_COLORS) - 1)]
        steps.append(dm.Threshold(value=_number(threshold), color=color))
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def _most_common_thresholds(plan: Plan) -> Budget:
    """A stand-in budget carrying the thresholds most budgets use (ties: the first seen)."""
    counts: dict[tuple[Decimal, ...], int] = {}
    for budget in plan.all_budgets():
        counts[budget.thresholds] = counts.get(budget.thresholds, 0) + 1
    thresholds = max(counts, key=lambda t: counts[t])
    return Budget(name="", amount=Decimal(0), period="month", thresholds=thresholds)


def _budget_title(budget: Budget) -> str:
    owner = budget.team or "all teams"
    return f"{owner}: {budget.name} ({budget.window or budget.period})"


def build_dashboard(plan: Plan) -> dict[str, Any]:
    """The dashboard model as plain JSON data."""
    money = currency_unit(plan.currency)
    builder = (
        dashboard.Dashboard(f"LLM costs: {plan.name} ({plan.environment})")
        .uid(dashboard_uid(plan))
        .tags(["costplan", "llm", "chargeback", plan.environment])
        .description(f"Generated by costplan from plan {plan.name}, environment {plan.environment}. Do not edit.")
        .editable()
        .timezone(plan.timezone)
        .time("now/M", "now")
        .refresh("5m")
    )
    for variable in _variables(plan):
        builder = builder.with_variable(variable)

    builder = builder.with_row(dashboard.Row("Spend"))
    builder = builder.with_panel(
        stat.Panel()
        .title("Spend in range (default: month to date)")
        .datasource(DATASOURCE)
        .unit(money)
        .decimals(2)
        .span(6)
        .height(6)
        .with_target(_query(spend_total_query(), instant=True))
    )
    builder = builder.with_panel(
        piechart.Panel()
        .title("Spend by team")
        .datasource(DATASOURCE)
        .unit(money)
        .span(6)
        .height(6)
        .with_target(_query(spend_by_team_query(), legend="{{team}}", instant=True))
    )
    builder = builder.with_panel(
        piechart.Panel()
        .title("Spend by charge (requests, tokens, GPUs) and idle GPUs")
        .datasource(DATASOURCE)
        .unit(money)
        .span(6)
        .height(6)
        .with_target(_query(spend_by_charge_query(), legend="{{charge}}", instant=True))
        .with_target(_idle_target(plan))
    )
    builder = builder.with_panel(
        timeseries.Panel()
        .title("Spend per hour by team")
        .datasource(DATASOURCE)
        .unit(money)
        .span(6)
        .height(6)
        .interval(HOUR)
        .with_target(_query(hourly_spend_by_team_query(), legend="{{team}}"))
    )
    builder = builder.with_panel(
        table.Panel()
        .title("Unit cost by model")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .with_target(_query(model_spend_query(), legend="spend", instant=True, table_format=True, ref="A"))
        .with_target(_query(cost_per_request_query(), legend="per request", instant=True, table_format=True, ref="B"))
        .with_target(
            _query(cost_per_million_tokens_query(), legend="per 1M tokens", instant=True, table_format=True, ref="C")
        )
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    )
    builder = builder.with_panel(
        bargauge.Panel()
        .title(f"Top {TOP_USERS} users")
        .datasource(DATASOURCE)
        .unit(money)
        .span(12)
        .height(8)
        .with_target(_query(top_users_query(), legend="{{user}} ({{team}})", instant=True))
    )

    builder = builder.with_row(dashboard.Row("Budgets"))
    budgets = plan.all_budgets()
    if len(budgets) > MAX_BUDGET_GAUGES:
        budgets = ()
        builder = builder.with_panel(
            bargauge.Panel()
            .title(f"Most used budgets (top {MAX_BUDGET_GAUGES})")
            .datasource(DATASOURCE)
            .unit("percent")
            .min(0)
            .max(100)
            .span(24)
            .height(12)
            .thresholds(_thresholds(_most_common_thresholds(plan)))
            .with_target(_query(top_budgets_query(), legend="{{team}}: {{budget}}", instant=True))
        )
    for budget in budgets:
        top = max([Decimal(100), *budget.thresholds])
        builder = builder.with_panel(
            gauge.Panel()
            .title(_budget_title(budget))
            .datasource(DATASOURCE)
            .unit("percent")
            .min(0)
            .max(_number(top))
            .span(4)
            .height(6)
            .thresholds(_thresholds(budget))
            .with_target(_query(budget_used_query(budget), instant=True))
        )

    builder = builder.with_row(dashboard.Row("GPUs and limits"))
    builder = builder.with_panel(
        stat.Panel()
        .title("GPU spend in range")
        .datasource(DATASOURCE)
        .unit(money)
        .span(6)
        .height(6)
        .with_target(_query(gpu_spend_total_query(), instant=True))
    )
    builder = builder.with_panel(
        stat.Panel()
        .title("Idle GPU spend in range")
        .datasource(DATASOURCE)
        .unit(money)
        .span(6)
        .height(6)
        .with_target(_query(gpu_idle_spend_total_query(), instant=True))
    )
    builder = builder.with_panel(
        timeseries.Panel()
        .title("GPU spend per hour by team")
        .datasource(DATASOURCE)
        .unit(money)
        .span(12)
        .height(6)
        .interval(HOUR)
        .with_target(_query(gpu_spend_query(), legend="{{team}}"))
    )
    builder = builder.with_panel(
        timeseries.Panel()
        .title("Idle GPU spend per hour by instance type")
        .datasource(DATASOURCE)
        .unit(money)
        .span(12)
        .height(6)
        .interval(HOUR)
        .with_target(_query(gpu_idle_spend_query(), legend="{{gpu_instance}}"))
    )
    builder = builder.with_panel(
        timeseries.Panel()
        .title("Rate-limited requests by tier")
        .datasource(DATASOURCE)
        .unit("percentunit")
        .min(0)
        .span(12)
        .height(6)
        .with_target(_query(rate_limited_query(), legend="{{tier}}"))
    )
    # Round-trip through the SDK's encoder: plain dicts, lists and numbers.
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def dashboard_json(plan: Plan) -> str:
    """Deterministic text: sorted keys, fixed indent, trailing newline."""
    return json.dumps(build_dashboard(plan), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def resolve_variables(expr: str, range_seconds: int) -> str:
    """A panel query as Grafana sends it with every variable at "All".

    Used to check panel queries outside Grafana (parse them, run them).
    """
    return (
        expr.replace("$__range", f"{range_seconds}s")
        .replace("$team", ".*")
        .replace("$tier", ".*")
    )


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every query of a dashboard model."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in model.get("panels", [])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def generate(plan: Plan) -> list[Artifact]:
    grafana = plan.integrations.grafana
    uid = dashboard_uid(plan)
    name = object_name("costplan-dashboard", plan.environment)
    text = dashboard_json(plan)
    if grafana.mode == "operator":
        obj = {
            "apiVersion": "grafana.integreatly.org/v1beta1",
            "kind": "GrafanaDashboard",
            "metadata": metadata(plan, COMPONENT, name, grafana.namespace, wave=WAVE_CONFIG),
            "spec": {
                "instanceSelector": {"matchLabels": dict(grafana.instance_selector)},
                "folder": grafana.folder,
                "uid": uid,
                "json": text,
            },
        }
    else:
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                plan,
                COMPONENT,
                name,
                grafana.namespace,
                labels=grafana.sidecar_label,
                # The Grafana sidecar's conventional folder annotation.
                annotations={"grafana_folder": grafana.folder},
                wave=WAVE_CONFIG,
            ),
            "data": {f"{uid}.json": text},
        }
    return [manifest(COMPONENT, obj)]
