"""Trend alerts proven with ``promtool test rules``: spend anomalies, rate-limit
pressure, cost per request and usage sources that stopped reporting.

A small plan (EUR, two teams on Limitador, one model on an application's own
counters) is compiled into the real rule groups; hand-written counters go in
and each test states, with the arithmetic in comments, when an alert must
fire, when it must stay silent, and its exact labels and annotations.
``alert_rule_test`` only lists firing alerts: a pending alert (inside its
``for``) counts as silent.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from costplan.core import conventions as c
from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool
from costplan.plan.load import load_plan
from costplan.plan.model import Plan

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

# research (premium) and support (free) call "small" through the gateway at
# 0.01 EUR a request; "tiny" is counted by an application at 0.001 EUR a
# request. rateLimitedRatio is left out: the default 0.1 applies.
PLAN = """\
apiVersion: costplan.dev/v1alpha1
kind: CostPlan
metadata:
  name: alerts
  currency: EUR
  timezone: UTC
integrations:
  gateway:
    namespace: llm
    targetRef:
      kind: Gateway
      name: gw
  prometheus:
    url: http://prometheus:9090
    namespace: monitoring
  secrets:
    backend: none
usageSources:
  - name: limitador
    type: kuadrant-limitador
  - name: apps
    type: custom
    metrics:
      requests: app_requests_total
    labels:
      model: model
      team: team
      user: project
models:
  - name: small
    modelName: Qwen/Qwen3-0.6B
    provider: self-hosted
    usageSource: limitador
    pricing:
      type: perRequest
      price: 0.01
  - name: tiny
    modelName: tiny
    provider: self-hosted
    usageSource: apps
    pricing:
      type: perRequest
      price: 0.001
tiers:
  - name: free
  - name: premium
teams:
  - name: research
    costCenter: CC-1
    tier: premium
    users:
      - id: alice
  - name: support
    costCenter: CC-2
    tier: free
    users:
      - id: carol
alerts:
  anomalyFactor: 3
  costPerRequestP95: 0.005
  sourceAbsentFor: 10m
"""

ROUTE = 'limitador_namespace="llm/chat"'
ALICE = f'user="alice", team="research", tier="premium", {ROUTE}'
CAROL = f'user="carol", team="support", tier="free", {ROUTE}'


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    path: Path = tmp_path_factory.mktemp("alerts-plan") / "costplan.yaml"
    path.write_text(PLAN, encoding="utf-8")
    return load_plan(path)


def run(plan: Plan, input_series: list[tuple[str, str]], alerts: list[dict[str, Any]]) -> None:
    test = {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in input_series],
        "alert_rule_test": alerts,
    }
    result = promtool.test_rules(rule_groups(plan), {"evaluation_interval": "1m", "tests": [test]})
    assert result.ok, result.output


def at(when: str, alertname: str, *firing: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": when, "alertname": alertname, "exp_alerts": list(firing)}


def firing(labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {
        "exp_labels": {**labels, "severity": "warning"},
        "exp_annotations": {"summary": summary, "description": description},
    }


# --------------------------------------------------------------------------
# CostplanSpendAnomaly
# --------------------------------------------------------------------------

ANOMALY = c.ALERT_SPEND_ANOMALY


def spike(team: str, cost_center: str, amount: str) -> dict[str, Any]:
    return firing(
        {"team": team, "cost_center": cost_center},
        f"Spend spike for team {team}",
        f"Team {team} spent {amount} EUR in the last hour, more than 3 times its average hourly spend "
        "over the last 24 hours.",
    )


def test_spend_anomaly_fires_on_a_spike_after_a_steady_day_and_not_for_steady_spend(plan):
    # Both teams: 1 call a minute × 0.01 = 0.60 EUR an hour for 24 hours.
    # From 24h research calls 10 a minute (6.00 EUR an hour); support stays steady.
    series = [
        (f"authorized_calls{{{ALICE}}}", "0+1x1440 1450+10x80"),
        (f"authorized_calls{{{CAROL}}}", "0+1x1530"),
    ]
    # The hourly spend is that of the clock hour that closed last. Until 25h it is 0.60 for both
    # teams, the 24-hour sum 24 × 0.60 = 14.40, the bar 3 × 14.40 / 24 = 1.80: silent.
    # At 25h research's hour 24h-25h closes: 600 calls = 6.00 EUR; the 24 closed hours
    # (ending 2h … 25h) sum to 23 × 0.60 + 6.00 = 19.80, bar 3 × 19.80 / 24 = 2.475 < 6.00.
    # for: 15m → pending from 25h, firing from 25h15m. support: 0.60 throughout.
    run(plan, series, [
        at("23h", ANOMALY),
        at("24h59m", ANOMALY),
        at("25h14m", ANOMALY),
        at("25h15m", ANOMALY, spike("research", "CC-1", "6.00")),
    ])


def test_spend_anomaly_is_silent_during_a_steady_teams_first_hours(plan):
    # Both teams spend a steady 0.60 EUR an hour from the start: nothing to report.
    series = [
        (f"authorized_calls{{{ALICE}}}", "0+1x480"),
        (f"authorized_calls{{{CAROL}}}", "0+1x480"),
    ]
    # Got: at 1h the 24-hour sum is one hour (0.60), bar 3 × 0.60 / 24 = 0.075 < 0.60,
    # so both teams are active from 1h and fire from 1h15m; at n hours the bar is
    # 0.075n, still below 0.60 at 7h (0.525); silence returns at 8h (0.60, not above).
    run(plan, series, [at("1h15m", ANOMALY), at("4h", ANOMALY), at("7h59m", ANOMALY)])


# --------------------------------------------------------------------------
# CostplanRateLimitPressure
# --------------------------------------------------------------------------

PRESSURE = c.ALERT_RATE_LIMITED


def test_rate_limit_pressure_fires_above_the_default_ratio_with_the_ratio(plan):
    series = [
        # research: 10 authorized and 2 limited a minute: 2 / 10 = 20 % > 10 %
        (f"authorized_calls{{{ALICE}}}", "0+10x40"),
        (f"limited_calls{{{ALICE}}}", "0+2x40"),
        # support: 20 authorized and 1 limited a minute: 1 / 20 = 5 % ≤ 10 %
        (f"authorized_calls{{{CAROL}}}", "0+20x40"),
        (f"limited_calls{{{CAROL}}}", "0+1x40"),
    ]
    # The 5m rates exist from 1m (two samples); research is active from 1m and,
    # with for: 15m, fires from 16m. humanizePercentage prints 0.2 as "20%".
    pressure = firing(
        {"source": "limitador", "team": "research", "tier": "premium"},
        "Requests of team research (tier premium) are being rate limited",
        "20% limited per authorized request (alert above 0.1) for team research in tier premium.",
    )
    run(plan, series, [
        at("15m", PRESSURE),
        at("16m", PRESSURE, pressure),
        at("40m", PRESSURE, pressure),
    ])


# --------------------------------------------------------------------------
# CostplanCostPerRequestHigh
# --------------------------------------------------------------------------

UNIT_COST = c.ALERT_COST_PER_REQUEST


def test_cost_per_request_fires_for_the_model_whose_p95_is_above_the_limit(plan):
    series = [
        # small: 2 requests a minute at 0.01 EUR: 0.01 EUR a request > 0.005
        (f"authorized_calls{{{ALICE}}}", "0+2x40"),
        # tiny: 3 requests a minute at 0.001 EUR: 0.001 EUR a request ≤ 0.005
        ('app_requests_total{model="tiny", team="support", project="bot"}', "0+3x40"),
    ]
    # Cost per request (5m rates) exists from 1m; its p95 over the hour is 0.01
    # from 1m, so small is active from 1m and fires from 16m (for: 15m).
    high = firing(
        {"model": "small"},
        "Cost per request of model small is high",
        "p95 cost per request of model small over the last hour is 0.0100 EUR, above 0.005 EUR.",
    )
    run(plan, series, [
        at("15m", UNIT_COST),
        at("16m", UNIT_COST, high),
        at("40m", UNIT_COST, high),
    ])


def test_cost_per_request_alert_exists_only_when_the_limit_is_set(plan):
    unset = dataclasses.replace(plan, alerts=dataclasses.replace(plan.alerts, cost_per_request_p95=None))
    names = [r.get("alert") for g in rule_groups(unset) for r in g["rules"]]
    assert UNIT_COST not in names
    assert names.count(c.ALERT_SPEND_ANOMALY) == 1


# --------------------------------------------------------------------------
# CostplanUsageSourceAbsent
# --------------------------------------------------------------------------

ABSENT = c.ALERT_SOURCE_ABSENT


def test_usage_source_absent_fires_once_its_window_has_no_samples(plan):
    series = [
        # Limitador reports until 30m, then stops.
        (f"authorized_calls{{{ALICE}}}", "0+1x30"),
        # The application keeps reporting.
        ('app_requests_total{model="tiny", team="support", project="bot"}', "0+1x60"),
    ]
    # sourceAbsentFor 10m: at 40m the window [30m, 40m] still holds the 30m
    # sample; at 41m it is empty, and for: 0m fires at once.
    gone = firing(
        {"source": "limitador"},
        "Usage source limitador stopped reporting",
        "No samples of usage source limitador for 10m: its models are not being charged.",
    )
    run(plan, series, [
        at("30m", ABSENT),
        at("40m", ABSENT),
        at("41m", ABSENT, gone),
        at("60m", ABSENT, gone),
    ])
