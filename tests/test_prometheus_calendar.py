"""Calendar periods with promtool: month boundaries (UTC and Berlin) and the
EU daylight-saving rule expressed in PromQL.

promtool starts at 1970-01-01 00:00 UTC (a Thursday); these tests evaluate
hourly, the step of the period-to-date sums, so a month takes ~750 steps.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from costplan.generators.prometheus import calendar
from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

MONTH_PTD = 'costplan:spend_by_team:period_to_date{team="ml-research", period="month"}'
LABELS = '{__name__="costplan:spend_by_team:period_to_date", team="ml-research", cost_center="CC-1001", period="month"}'


def run(groups: list[dict[str, Any]], series: list[tuple[str, str]], exprs: list[dict[str, Any]]) -> None:
    test = {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "promql_expr_test": exprs,
    }
    result = promtool.test_rules(groups, {"evaluation_interval": "1h", "tests": [test]})
    assert result.ok, result.output


# premiumuser1: 500 calls a minute × 0.002 = 1 USD a minute, 60 USD per hour, for 32 days.
STEADY = [('authorized_calls{user="premiumuser1", team="ml-research", tier="premium"}', "0+500x46200")]


def test_month_to_date_restarts_exactly_at_the_utc_month_boundary(bundled_plan):
    run(rule_groups(bundled_plan(None)), STEADY, [
        # Jan 31 23:00: hours 01:00 … 743:00 of January closed: 743 × 60 = 44580
        {"expr": MONTH_PTD, "eval_time": "743h", "exp_samples": [{"labels": LABELS, "value": 44580}]},
        # Feb 1 03:00: only February's three hours: 3 × 60 = 180, nothing from January
        {"expr": MONTH_PTD, "eval_time": "747h", "exp_samples": [{"labels": LABELS, "value": 180}]},
    ])


def test_month_to_date_follows_berlin_midnight(bundled_plan):
    # prod: Europe/Berlin, UTC+1 in winter: February starts Jan 31 23:00 UTC (743h).
    run(rule_groups(bundled_plan("prod")), STEADY, [
        # Jan 31 22:00 UTC: January (from Dec 31 23:00 UTC) has closed hours 1 … 742: 742 × 60 = 44520
        {"expr": MONTH_PTD, "eval_time": "742h", "exp_samples": [{"labels": LABELS, "value": 44520}]},
        # Feb 1 03:00 UTC = 04:00 Berlin: the hours closing at 00:00 … 03:00 UTC: 4 × 60 = 240
        {"expr": MONTH_PTD, "eval_time": "747h", "exp_samples": [{"labels": LABELS, "value": 240}]},
    ])


def test_eu_daylight_saving_offsets_and_period_starts():
    groups = [{"name": "calendar", "interval": "1h", "rules": calendar.rules("Europe/Berlin")}]
    offset = "costplan:timezone_offset_seconds"
    start = 'costplan:period_start_seconds{period="%s"}'
    end = 'costplan:period_end_seconds{period="%s"}'

    def at(query: str, when: str, value: int, labels: str) -> dict[str, Any]:
        return {"expr": query, "eval_time": when, "exp_samples": [{"labels": labels, "value": value}]}

    run(groups, [], [
        # 1970-03-29 is the last Sunday of March: CET until 01:00 UTC, then CEST.
        at(offset, "87d", 3600, offset),
        at(offset, "87d1h", 7200, offset),
        # 1970-10-25 is the last Sunday of October: CEST until 01:00 UTC, then CET.
        at(offset, "297d", 7200, offset),
        at(offset, "297d1h", 3600, offset),
        # Sunday 1970-03-29 12:00 UTC (CEST): the week began Monday 03-23 00:00 CET = 03-22 23:00 UTC
        at(start % "week", "87d12h", 6994800, '{__name__="costplan:period_start_seconds", period="week"}'),
        # 1970-04-15: April began 04-01 00:00 CEST = 03-31 22:00 UTC
        at(start % "month", "104d", 7768800, '{__name__="costplan:period_start_seconds", period="month"}'),
        # Sunday 1970-10-25 12:00 UTC (CET): the day began 00:00 CEST = 10-24 22:00 UTC
        at(start % "day", "297d12h", 25653600, '{__name__="costplan:period_start_seconds", period="day"}'),
        # 1970-10-15: October ends 11-01 00:00 CET = 10-31 23:00 UTC
        at(end % "month", "287d", 26262000, '{__name__="costplan:period_end_seconds", period="month"}'),
    ])
