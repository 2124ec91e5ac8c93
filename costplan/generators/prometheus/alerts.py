"""Alerts: budget thresholds, forecasts, anomalies, rate limiting, unit cost,
and usage sources that stopped reporting.

Budget rules are one per budget and threshold (they grow with teams, not
users) so each annotation can state its amounts exactly; ``$value`` is
printed with two decimals followed by the plan's currency.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.money import format_decimal
from costplan.generators.prometheus.promql import number, selector, template_text
from costplan.generators.prometheus.usage import models_of, primary_selector
from costplan.plan.model import Budget, Plan
from costplan.plan.pricing import budget_period

VALUE = '{{ $value | printf "%.2f" }}'
# The alerts' ``for`` durations are plan settings (``alerts.*For``); the
# budget threshold's default 0m: spend only grows within a period, waiting
# only delays the alert.
# Money is compared with thresholds after rounding to this many currency units:
# float sums of exact amounts (three users summing to exactly 80) come out a
# few units in the 15th digit off, and must reach the threshold they equal.
# It is far below any priced unit the report shows and far above float noise
# for amounts up to billions.
COMPARE_QUANTUM = "0.000000001"


def compared(money: str) -> str:
    """``money`` rounded for a threshold comparison (see ``COMPARE_QUANTUM``)."""
    return f"round({money}, {COMPARE_QUANTUM})"


def _alert(name: str, expr: str, duration: str, severity: str, labels: dict[str, str],
           summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": dict(sorted({**labels, c.LABEL_SEVERITY: severity}.items())),
        "annotations": {"description": description, "summary": summary},
    }


def _whose(budget: Budget) -> str:
    return f"Team {template_text(budget.team)}" if budget.team else "The company"


def _budget_selector(budget: Budget, metric: str) -> str:
    return selector(metric, {
        c.LABEL_BUDGET: budget.name,
        c.LABEL_PERIOD: budget_period(budget),
        c.LABEL_TEAM: budget.team or "",
    })


def _budget_labels(budget: Budget) -> dict[str, str]:
    """The series' own labels, repeated so each rule is distinct to linters."""
    labels = {c.LABEL_BUDGET: budget.name, c.LABEL_PERIOD: budget_period(budget)}
    if budget.team:
        labels[c.LABEL_TEAM] = budget.team
    return labels


def budget_alerts(plan: Plan) -> list[dict[str, Any]]:
    out = []
    cur = template_text(plan.currency)
    for budget in plan.all_budgets():
        name = template_text(budget.name)
        total = f"{format_decimal(budget.amount)} {cur}"
        spend = _budget_selector(budget, c.METRIC_BUDGET_SPEND)
        for threshold in budget.thresholds:
            amount = budget.amount * threshold / 100
            percent = format_decimal(threshold)
            out.append(_alert(
                c.ALERT_BUDGET_THRESHOLD, f"{compared(spend)} >= {number(amount)}", plan.alerts.budget_threshold_for,
                "critical" if threshold >= 100 else "warning",
                {**_budget_labels(budget), c.LABEL_THRESHOLD: percent},
                f"{_whose(budget)} reached {percent}% of budget {name}",
                f"{_whose(budget)} has spent {VALUE} {cur} of budget {name} ({total} per "
                f"{template_text(budget_period(budget))}); the {percent}% threshold is {format_decimal(amount)} {cur}.",
            ))
        if budget.period in c.PERIODS:
            forecast = _budget_selector(budget, c.METRIC_BUDGET_FORECAST)
            out.append(_alert(
                c.ALERT_BUDGET_FORECAST,
                f"{compared(forecast)} > {number(budget.amount)} and {compared(spend)} < {number(budget.amount)}",
                plan.alerts.budget_forecast_for, "warning", _budget_labels(budget),
                f"{_whose(budget)} is on course to exceed budget {name}",
                f"At the last 24 hours' rate, {_whose(budget).lower() if not budget.team else _whose(budget)} "
                f"will spend {VALUE} {cur} by the end of the {budget.period}, over its budget {name} of {total}.",
            ))
    return out


def trend_alerts(plan: Plan) -> list[dict[str, Any]]:
    cur = template_text(plan.currency)
    hourly = c.spend_rollup("team", c.WINDOW_HOUR)
    daily = c.spend_rollup("team", c.WINDOW_DAY)
    factor = number(plan.alerts.anomaly_factor)
    ratio = number(plan.alerts.rate_limited_ratio)
    # Only once a full day of hourly points exists: a young series (a new
    # team, or the first day after deployment) would be compared with an
    # average diluted by hours that were never recorded.
    history = f"count_over_time({hourly}[23h59m59s:1h]) >= 24"
    out = [
        _alert(
            c.ALERT_SPEND_ANOMALY, f"{hourly} > {factor} * ({daily} / 24) and {daily} > 0 and {history}",
            plan.alerts.spend_anomaly_for, "warning", {},
            "Spend spike for team {{ $labels.team }}",
            f"Team {{{{ $labels.team }}}} spent {VALUE} {cur} in the last hour, more than {factor} times its "
            "average hourly spend over the last 24 hours.",
        ),
        _alert(
            c.ALERT_RATE_LIMITED, f"{c.METRIC_RATE_LIMITED_RATIO} > {ratio}", plan.alerts.rate_limit_pressure_for, "warning", {},
            "Requests of team {{ $labels.team }} (tier {{ $labels.tier }}) are being rate limited",
            f"{{{{ $value | humanizePercentage }}}} limited per authorized request (alert above {ratio}) "
            "for team {{ $labels.team }} in tier {{ $labels.tier }}.",
        ),
    ]
    if plan.alerts.cost_per_request_p95 is not None:
        limit = number(plan.alerts.cost_per_request_p95)
        out.append(_alert(
            c.ALERT_COST_PER_REQUEST, f"{c.METRIC_COST_PER_REQUEST_P95} > {limit}", plan.alerts.cost_per_request_for, "warning", {},
            "Cost per request of model {{ $labels.model }} is high",
            f"p95 cost per request of model {{{{ $labels.model }}}} over the last hour is "
            f'{{{{ $value | printf "%.4f" }}}} {cur}, above {limit} {cur}.',
        ))
    return out


def source_absent_alerts(plan: Plan) -> list[dict[str, Any]]:
    """A usage source that stopped reporting: read where its raw series are (each cluster of a fleet)."""
    out = []
    for source in plan.usage_sources:
        if not models_of(plan, source):
            continue
        window = plan.alerts.source_absent_for
        out.append(_alert(
            c.ALERT_SOURCE_ABSENT, f"absent_over_time({primary_selector(plan, source)}[{window}])", "0m", "warning",
            {c.LABEL_SOURCE: source.name},
            f"Usage source {template_text(source.name)} stopped reporting",
            f"No samples of usage source {template_text(source.name)} for {window}: its models are not being charged.",
        ))
    return out


def rules(plan: Plan) -> list[dict[str, Any]]:
    return budget_alerts(plan) + trend_alerts(plan) + source_absent_alerts(plan)
