"""Alerts: budget thresholds, forecasts, anomalies, rate limiting, unit cost,
and usage sources that stopped reporting.

Budget alerts are a handful of rules whatever the number of budgets: each
compares every budget's spend with the constant series the prices group
keeps (``costplan:budget_threshold_amount``, ``costplan:budget_amount``),
joined on the budget's key, so a cycle costs one join instead of one rule
evaluation per budget and threshold. The alerts carry the same labels as the
series they compare (budget, period, team, threshold) plus a severity, and
their text states the exact amounts, read from those constant series when the
alert fires; ``$value`` (the spend) is printed with two decimals followed by
the plan's currency.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.money import format_decimal
from costplan.generators.prometheus.budgets import BUDGET_KEY
from costplan.generators.prometheus.promql import number, one_of, template_text
from costplan.generators.prometheus.usage import models_of, primary_selector
from costplan.plan.model import Plan

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


# The alert's own budget: the key its labels carry, as a PromQL selector built in the template.
_KEY_FORMAT = "budget=%q, period=%q, team=%q"
_KEY_ARGS = "$labels.budget $labels.period $labels.team"
# Amounts are printed exactly as the plan wrote them for anything up to six
# decimals: fixed-point, trailing zeros (and a bare point) removed.
_EXACT = 'printf "%.6f" | reReplaceAll "\\\\.?0+$" ""'


def _whose(article: str) -> str:
    """Template text: ``Team <team>`` for a team's budget, else ``<article> company``."""
    return f"{{{{ if $labels.team }}}}Team {{{{ $labels.team }}}}{{{{ else }}}}{article} company{{{{ end }}}}"


def _constant_of_alert(metric: str, threshold: bool = False) -> str:
    """Template text: the value of the plan constant ``metric`` of the alert's budget (and threshold), exactly.

    A Go template's ``%q`` quotes label values the way a PromQL string is
    written. Nothing is printed if the series is missing (``with``).
    """
    key, args = (f"{_KEY_FORMAT}, threshold=%q", f"{_KEY_ARGS} $labels.threshold") if threshold else (_KEY_FORMAT, _KEY_ARGS)
    return (f'{{{{ with query (printf "{metric}{{{key}}}" {args}) }}}}'
            f"{{{{ . | first | value | {_EXACT} }}}}{{{{ end }}}}")


def _threshold_alert(plan: Plan, thresholds: list[str], severity: str) -> dict[str, Any]:
    cur = template_text(plan.currency)
    amounts = f"{c.METRIC_BUDGET_THRESHOLD_AMOUNT}{{{c.LABEL_THRESHOLD}{one_of(thresholds)}}}"
    total = _constant_of_alert(c.METRIC_BUDGET_AMOUNT)
    amount = _constant_of_alert(c.METRIC_BUDGET_THRESHOLD_AMOUNT, threshold=True)
    return _alert(
        # The spend's value, the threshold series' labels (group_right keeps the many side's).
        c.ALERT_BUDGET_THRESHOLD, f"{compared(c.METRIC_BUDGET_SPEND)} >= on({BUDGET_KEY}) group_right {amounts}",
        plan.alerts.budget_threshold_for, severity, {},
        f"{_whose('The')} reached {{{{ $labels.threshold }}}}% of budget {{{{ $labels.budget }}}}",
        f"{_whose('The')} has spent {VALUE} {cur} of budget {{{{ $labels.budget }}}} ({total} {cur} per "
        f"{{{{ $labels.period }}}}); the {{{{ $labels.threshold }}}}% threshold is {amount} {cur}.",
    )


def budget_alerts(plan: Plan) -> list[dict[str, Any]]:
    """One threshold alert per severity (100 % and above is critical) and one forecast alert, for every budget."""
    budgets = plan.all_budgets()
    thresholds = {format_decimal(t): t for budget in budgets for t in budget.thresholds}
    out = []
    for severity, reached in (("warning", False), ("critical", True)):
        chosen = sorted(text for text, value in thresholds.items() if (value >= 100) == reached)
        if chosen:
            out.append(_threshold_alert(plan, chosen, severity))
    if any(budget.period in c.PERIODS for budget in budgets):
        cur = template_text(plan.currency)
        amount = f"on({BUDGET_KEY}) {c.METRIC_BUDGET_AMOUNT}"
        out.append(_alert(
            # Forecasts exist for calendar periods only (see budgets.rules).
            c.ALERT_BUDGET_FORECAST,
            f"{compared(c.METRIC_BUDGET_FORECAST)} > {amount} and {compared(c.METRIC_BUDGET_SPEND)} < {amount}",
            plan.alerts.budget_forecast_for, "warning", {},
            f"{_whose('The')} is on course to exceed budget {{{{ $labels.budget }}}}",
            f"At the last 24 hours' rate, {_whose('the')} will spend {VALUE} {cur} by the end of the "
            f"{{{{ $labels.period }}}}, over its budget {{{{ $labels.budget }}}} of "
            f"{_constant_of_alert(c.METRIC_BUDGET_AMOUNT)} {cur}.",
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
