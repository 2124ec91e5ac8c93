"""Period-to-date spend per team and overall, budgets, utilisation, forecast.

Period-to-date values describe the period of the last closed hour
(``periods``): in the first hour of a period, the one that just ended,
complete. The forecast is period-to-date spend plus the last 24 closed
hours' average spend rate over the time left in that period (calendar
periods only; nothing is left once it has ended).
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus.periods import period_to_date
from costplan.generators.prometheus.promql import record, selector
from costplan.plan.model import Plan
from costplan.plan.pricing import budget_period

BUDGET_KEY = "team, budget, period"


def _same(series: str) -> str:
    return series


def budget_periods(plan: Plan) -> list[str]:
    return sorted({budget_period(b) for b in plan.all_budgets()})


def rules(plan: Plan) -> list[dict[str, Any]]:
    periods = budget_periods(plan)
    if not periods:
        return []
    team_hourly = c.spend_rollup("team", c.WINDOW_HOUR)
    out = [
        record(c.METRIC_SPEND_PTD_BY_TEAM, period_to_date(_same, team_hourly, period), {c.LABEL_PERIOD: period})
        for period in periods
    ]
    out.append(record(c.METRIC_SPEND_PTD, f"sum by (period) ({c.METRIC_SPEND_PTD_BY_TEAM})"))
    amount = c.METRIC_BUDGET_AMOUNT
    spend = (
        f'{amount}{{team!=""}} * 0 + on(team, period) group_left() {c.METRIC_SPEND_PTD_BY_TEAM}'
        f' or {amount}{{team=""}} * 0 + on(period) group_left() {c.METRIC_SPEND_PTD}'
        f" or {amount} * 0"
    )
    out.append(record(c.METRIC_BUDGET_SPEND, spend))
    out.append(record(c.METRIC_BUDGET_UTILIZATION, f"{c.METRIC_BUDGET_SPEND} / on({BUDGET_KEY}) ({amount} > 0)"))
    daily = c.spend_rollup("team", c.WINDOW_DAY)
    for period in periods:
        if period not in c.PERIODS:
            continue
        # The period the spend describes (the last closed hour's); none left once it has ended.
        end = selector(c.METRIC_BILLING_PERIOD_END, {c.LABEL_PERIOD: period})
        left = f"scalar(clamp_min({end} - time(), 0))"
        spent = selector(c.METRIC_BUDGET_SPEND, {c.LABEL_PERIOD: period})
        team_spent = f'{c.METRIC_BUDGET_SPEND}{{period="{period}", team!=""}}'
        all_spent = f'{c.METRIC_BUDGET_SPEND}{{period="{period}", team=""}}'
        forecast = (
            f"{team_spent} + on(team) group_left() ({daily} / 86400 * {left})"
            f" or {all_spent} + on() group_left() (sum({daily}) / 86400 * {left})"
            f" or {spent}"
        )
        out.append(record(c.METRIC_BUDGET_FORECAST, forecast, {c.LABEL_PERIOD: period}))
    return out
