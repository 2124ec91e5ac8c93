"""Money maths proven with ``promtool test rules``.

Each test compiles the rule groups from a plan (the bundled one, an
environment, or a variant of it), feeds hand-written counters to promtool and
checks the money against values computed by hand. promtool compares floats
exactly, so money is compared after rounding to 1e-9 (``money(...)``).
"""

from __future__ import annotations

import dataclasses
import shutil
from decimal import Decimal
from typing import Any

import pytest

from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool
from costplan.plan.model import Budget, PerMillionTokens, Plan
from tests.traffic_model import key_secret_series

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def money(expr: str) -> str:
    """Round to 1e-9 so float noise (0.30000000000000004) does not fail exact comparison."""
    return f"round(({expr}) * 1000000000) / 1000000000"


def sample(labels: str, value: float | int) -> dict[str, Any]:
    return {"labels": labels, "value": value}


def check(plan: Plan, input_series: list[tuple[str, str]], exprs: list[dict[str, Any]],
          alerts: list[dict[str, Any]] | None = None, interval: str = "1m", evaluation_interval: str = "1m") -> None:
    test: dict[str, Any] = {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in input_series],
        "promql_expr_test": exprs,
    }
    if alerts:
        test["alert_rule_test"] = alerts
    result = promtool.test_rules(rule_groups(plan), {"evaluation_interval": evaluation_interval, "tests": [test]})
    assert result.ok, result.output


def expr(query: str, at: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"expr": query, "eval_time": at, "exp_samples": samples}


# The chargeback demo: premiumuser1 makes 8 calls, freeuser1 2 (and 3 are
# limited), premiumuser2 6, at 0.002 per call on qwen3-0-6b.
DEMO = {
    ("premiumuser1", "ml-research", "premium"): "0x10 0+1x8 8x100",
    ("freeuser1", "customer-support", "free"): "0x10 0+1x2 2x106",
    ("premiumuser2", "ml-research", "premium"): "0x20 0+1x6 6x92",
}
DEMO_LIMITED = "0x10 0+1x3 3x105"  # freeuser1


def test_demo_traffic_upstream_limitador(bundled_plan):
    plan = bundled_plan(None)
    series = [
        (f'authorized_calls{{user="{u}", team="{t}", tier="{tier}", limitador_namespace="llm/qwen"}}', v)
        for (u, t, tier), v in DEMO.items()
    ]
    series.append(('limited_calls{user="freeuser1", team="customer-support", tier="free"}', DEMO_LIMITED))
    by_user = "costplan:spend_by_user:increase1h"
    check(plan, series, [
        expr(money(by_user), "60m", [
            # 8 × 0.002 = 0.016; 2 × 0.002 = 0.004; 6 × 0.002 = 0.012
            sample('{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.016),
            sample('{user="freeuser1", team="customer-support", tier="free", cost_center="CC-2040"}', 0.004),
            sample('{user="premiumuser2", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.012),
        ]),
        # premium tier: 0.016 + 0.012 = 0.028
        expr(money('costplan:spend_by_tier:increase1h{tier="premium"}'), "60m", [sample('{tier="premium"}', 0.028)]),
        # every call is on qwen3-0-6b: (8 + 2 + 6) × 0.002 = 0.032
        expr(money("costplan:spend_by_model:increase1h"), "60m", [sample('{model="qwen3-0-6b"}', 0.032)]),
        # 3 limited per 2 authorized while freeuser1 was sending (5m rate window at 14m)
        expr("costplan:rate_limited_ratio:rate5m", "14m", [
            sample('{__name__="costplan:rate_limited_ratio:rate5m", source="limitador", team="customer-support", tier="free"}', 1.5),
        ]),
    ])


def rounded(expr_text: str, scale: int) -> str:
    return f"round(({expr_text}) * {scale}) / {scale}"


def with_model(plan: Plan, name: str, **changes: Any) -> Plan:
    models = tuple(dataclasses.replace(m, **changes) if m.name == name else m for m in plan.models)
    return dataclasses.replace(plan, models=models)


def with_budgets(plan: Plan, team: str, budgets: tuple[Budget, ...]) -> Plan:
    teams = tuple(dataclasses.replace(t, budgets=budgets) if t.name == team else t for t in plan.teams)
    return dataclasses.replace(plan, teams=teams)


def test_demo_traffic_custom_limitador_image_maps_users_to_teams(bundled_plan):
    """The custom image labels only ``user``; it counts a served call of a
    token-limited tier three times (ShouldRateLimit, CheckRateLimit, Report)
    and a call refused by the request limit once in ``limited_calls`` and
    ``limited_hits``. The free and premium tiers both have token limits."""
    plan = bundled_plan("staging")  # limitador.metrics: legacyImage
    thrice = {  # 3 x DEMO: 8, 2 and 6 served calls
        "premiumuser1": "0x10 0+3x8 24x100",
        "freeuser1": "0x10 0+3x2 6x106",
        "premiumuser2": "0x20 0+3x6 18x92",
    }
    series = [(f'authorized_calls{{user="{u}", model="qwen", limitador_namespace="llm/qwen"}}', v)
              for u, v in thrice.items()]
    # A user in no team: not token-limited by the plan, counted once.
    series.append(('authorized_calls{user="stranger", model="qwen", limitador_namespace="llm/qwen"}', "0x10 1x100"))
    series.append(('limited_calls{user="freeuser1", model="qwen", limitador_namespace="llm/qwen"}', DEMO_LIMITED))
    series.append(('limited_hits{user="freeuser1", model="qwen", limitador_namespace="llm/qwen"}', DEMO_LIMITED))
    # Team and tier come from the key Secrets, as kube-state-metrics exports them ("stranger" has none).
    series += key_secret_series(plan)
    check(plan, series, [
        expr(money("costplan:spend_by_team:increase1h"), "60m", [
            # premiumuser1 + premiumuser2: (8 + 6) × 0.002 = 0.028
            sample('{team="ml-research", cost_center="CC-1001"}', 0.028),
            # freeuser1: 2 × 0.002 = 0.004
            sample('{team="customer-support", cost_center="CC-2040"}', 0.004),
            # a user in no team is still charged, to no team: 1 × 0.002
            sample("{}", 0.002),
        ]),
        expr("round(costplan:rate_limited_ratio:rate5m * 1000) / 1000", "14m", [
            sample('{source="limitador", team="customer-support", tier="free"}', 1.5),
        ]),
    ])


def test_custom_limitador_image_call_refused_by_the_token_limit_is_not_billed(bundled_plan):
    plan = bundled_plan("staging")
    # 2 served (3 calls each) and 1 refused by the token check (1 call, 1
    # limited_calls, no limited_hits): (7 - 1 + 0) / 3 = 2 served.
    series = [
        ('authorized_calls{user="freeuser1", limitador_namespace="llm/qwen"}', "0x10 7x100"),
        ('limited_calls{user="freeuser1", limitador_namespace="llm/qwen"}', "0x10 1x100"),
        *key_secret_series(plan),
    ]
    check(plan, series, [
        expr(money('costplan:spend_by_user:increase1h{user="freeuser1"}'), "60m", [
            sample('{user="freeuser1", team="customer-support", tier="free", cost_center="CC-2040"}', 0.004),
        ]),
    ])


def test_custom_limitador_image_user_with_only_refused_calls_pays_nothing(bundled_plan):
    """A token-tier user with refused calls only (``limited_calls``, some also in
    ``limited_hits``, no ``authorized_calls``: 0 + 1 - 4 < 0) is charged 0,
    never a negative amount, beside a user whose 2 calls were served (3 counts each)."""
    plan = bundled_plan("staging")
    series = [
        ('limited_calls{user="freeuser1", limitador_namespace="llm/qwen"}', "0x10 4x100"),
        ('limited_hits{user="freeuser1", limitador_namespace="llm/qwen"}', "0x10 1x100"),
        ('authorized_calls{user="premiumuser1", limitador_namespace="llm/qwen"}', "0x10 6x100"),
        *key_secret_series(plan),
    ]
    check(plan, series, [
        # premiumuser1: 6 / 3 = 2 served × 0.002 = 0.004
        expr(money("costplan:spend_by_user:increase1h > 0"), "60m", [
            sample('{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.004),
        ]),
        expr("costplan:spend_by_user:increase1h < 0", "60m", []),
        expr("costplan:usage_requests:rate5m < 0", "14m", []),
    ])


def test_counter_reset_never_loses_or_refunds_money(bundled_plan):
    plan = bundled_plan(None)
    # 5 calls, the Limitador pod restarts (counter back to 0), 3 more calls.
    series = [('authorized_calls{user="premiumuser1", team="ml-research", tier="premium"}', "0x10 0+1x5 0+1x3 3x100")]
    check(plan, series, [
        # (5 + 3) × 0.002 = 0.016
        expr(money('costplan:spend_by_user:increase1h{user="premiumuser1"}'), "60m", [
            sample('{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.016),
        ]),
    ])


def test_tokens_priced_by_type_with_cached_and_reasoning(bundled_plan):
    plan = with_model(
        bundled_plan(None), "claude-sonnet",
        pricing=PerMillionTokens(input=Decimal(3), output=Decimal(15), cached_input=Decimal("0.3"), reasoning=Decimal(20)),
    )
    usage = 'gen_ai_client_token_usage_sum{{gen_ai_request_model="claude-3-sonnet", gen_ai_token_type="{}"}}'
    series = [
        (usage.format("input"), "0x5 0+100000x10 1000000x50"),  # 1,000,000 input, cached included
        (usage.format("cached_input"), "0x5 0+20000x10 200000x50"),  # 200,000 of them cached
        (usage.format("output"), "0x5 0+10000x10 100000x50"),  # 100,000 output, reasoning included
        (usage.format("reasoning"), "0x5 0+4000x10 40000x50"),  # 40,000 of them reasoning
    ]
    spend = 'costplan:spend:increase1h{charge="token", model="claude-sonnet", token_type="%s"}'
    labels = '{charge="token", model="claude-sonnet", token_type="%s"}'
    check(plan, series, [
        # (1,000,000 − 200,000) × 3 / 1e6 = 2.4
        expr(money(spend % "input"), "60m", [sample(labels % "input", 2.4)]),
        # 200,000 × 0.3 / 1e6 = 0.06
        expr(money(spend % "cached_input"), "60m", [sample(labels % "cached_input", 0.06)]),
        # (100,000 − 40,000) × 15 / 1e6 = 0.9
        expr(money(spend % "output"), "60m", [sample(labels % "output", 0.9)]),
        # 40,000 × 20 / 1e6 = 0.8
        expr(money(spend % "reasoning"), "60m", [sample(labels % "reasoning", 0.8)]),
        # 2.4 + 0.06 + 0.9 + 0.8 = 4.16; no namespace, so no team
        expr(money('costplan:spend_by_model:increase1h{model="claude-sonnet"}'), "60m", [
            sample('{model="claude-sonnet"}', 4.16),
        ]),
    ])


@pytest.mark.parametrize(("written_price", "written_money"), [(None, 0.9), (Decimal("3.75"), 1.125)])
def test_cache_writing_tokens_are_their_own_type(bundled_plan, written_price, written_money):
    """Envoy AI Gateway counts cache reads and cache writes inside input; writes are priced apart."""
    plan = with_model(
        bundled_plan(None), "claude-sonnet",
        pricing=PerMillionTokens(input=Decimal(3), output=Decimal(15), cached_input=Decimal("0.3"),
                                 cache_creation_input=written_price),
    )
    usage = 'gen_ai_client_token_usage_sum{{gen_ai_request_model="claude-3-sonnet", gen_ai_token_type="{}"}}'
    series = [
        (usage.format("input"), "0x5 0+100000x10 1000000x50"),  # 1,000,000, both cache kinds included
        (usage.format("cached_input"), "0x5 0+20000x10 200000x50"),  # 200,000 read from the cache
        (usage.format("cache_creation_input"), "0x5 0+30000x10 300000x50"),  # 300,000 written to it
        (usage.format("output"), "0x5 0+10000x10 100000x50"),
    ]
    spend = 'costplan:spend:increase1h{charge="token", model="claude-sonnet", token_type="%s"}'
    labels = '{charge="token", model="claude-sonnet", token_type="%s"}'
    check(plan, series, [
        # (1,000,000 − 200,000 − 300,000) × 3 / 1e6 = 1.5
        expr(money(spend % "input"), "60m", [sample(labels % "input", 1.5)]),
        expr(money(spend % "cached_input"), "60m", [sample(labels % "cached_input", 0.06)]),
        # 300,000 × 3 (as input when unpriced) or × 3.75 / 1e6
        expr(money(spend % "cache_creation_input"), "60m", [sample(labels % "cache_creation_input", written_money)]),
    ])


def test_included_tokens_pooled_per_user_with_overage(bundled_plan):
    # gpt-4o-mini: 0.001 per request, 2000 tokens included per request, 0.6 per million over.
    plan = with_model(bundled_plan(None), "gpt-4o-mini", usage_source="apps")
    def app(metric: str, project: str) -> str:
        return f'{metric}{{model="gpt-4o-mini", team="ml-research", project="{project}"}}'
    series = [
        # alpha: 10 requests, 40,000 + 10,000 = 50,000 tokens
        (app("inference_requests_total", "alpha"), "0x5 0+1x10 10x50"),
        (app("inference_tokens_prompt_total", "alpha"), "0x5 0+4000x10 40000x50"),
        (app("inference_tokens_generated_total", "alpha"), "0x5 0+1000x10 10000x50"),
        # beta: 10 requests, 12,000 + 3,000 = 15,000 tokens, inside its 20,000
        (app("inference_requests_total", "beta"), "0x5 0+1x10 10x50"),
        (app("inference_tokens_prompt_total", "beta"), "0x5 0+1200x10 12000x50"),
        (app("inference_tokens_generated_total", "beta"), "0x5 0+300x10 3000x50"),
    ]
    user = '{user="%s", team="ml-research", tier="premium", cost_center="CC-1001"}'
    check(plan, series, [
        # alpha: 50,000 − 10 × 2000 = 30,000 tokens over the pooled allowance
        expr('costplan:overage_tokens:period_to_date{user="alpha"}', "60m", [
            sample('{__name__="costplan:overage_tokens:period_to_date", user="alpha", team="ml-research", '
                   'tier="premium", model="gpt-4o-mini", period="month"}', 30000),
        ]),
        expr(money("costplan:spend_by_user:increase1h"), "60m", [
            # alpha: 10 × 0.001 + 30,000 × 0.6 / 1e6 = 0.01 + 0.018 = 0.028
            sample(user % "alpha", 0.028),
            # beta: 10 × 0.001 = 0.01, no overage
            sample(user % "beta", 0.01),
        ]),
        # month to date for the team: 0.028 + 0.01 = 0.038
        expr(money('costplan:spend_by_team:period_to_date{period="month"}'), "60m", [
            sample('{team="ml-research", cost_center="CC-1001", period="month"}', 0.038),
        ]),
    ])


def test_tiered_volume_crossing_two_thresholds(bundled_plan):
    # mixtral-batch: 2 / 1.5 / 1 per million from 0 / 10M / 100M tokens, run by
    # platform (owner of llm-batch), tier enterprise: × 0.8.
    plan = bundled_plan(None)
    model = 'model_name="mistralai/Mixtral-8x7B-Instruct-v0.1"'
    series = [
        (f"vllm:prompt_tokens_total{{{model}}}", "0+1000000x120 120000000x10"),  # 60M per hour
        (f"vllm:generation_tokens_total{{{model}}}", "0+250000x120 30000000x10"),  # 15M per hour
    ]
    key = 'team="platform", tier="enterprise", model="mixtral-batch"'
    check(plan, series, [
        expr(f'costplan:volume:period_to_date{{{key}}}', "120m", [
            sample(f'{{__name__="costplan:volume:period_to_date", {key}, unit="tokens", period="month"}}', 150000000),
        ]),
        # 10M × 1.6 + 90M × 1.2 + 50M × 0.8 (per million, × 0.8 applied) = 16 + 108 + 40 = 164
        expr(money('costplan:charge:period_to_date{charge="volume"}'), "120m", [
            sample(f'{{charge="volume", {key}, period="month"}}', 164),
        ]),
        # first hour, 75M: 16 + 65 × 1.2 = 94; second hour: 164 − 94 = 70
        expr(money('costplan:spend_by_model:increase1h{model="mixtral-batch"}'), "60m", [
            sample('{model="mixtral-batch"}', 94),
        ]),
        expr(money('costplan:spend_by_model:increase1h{model="mixtral-batch"}'), "120m", [
            sample('{model="mixtral-batch"}', 70),
        ]),
        # past 100M the marginal price is 1 × 0.8 per million = 0.0000008 per token
        expr(rounded("costplan:volume_marginal_price", 10**15), "120m", [
            sample(f'{{{key}, unit="tokens", period="month"}}', 0.0000008),
        ]),
    ])


def test_gpu_cost_idle_cost_and_gpu_hourly_model(bundled_plan):
    plan = bundled_plan(None)
    gpu = 'resource="nvidia_com_gpu", unit="integer"'
    series = _gpu_series(allocatable=4) + [
        # a finished pod's requests do not count
        (f'kube_pod_container_resource_requests{{namespace="ml-research", pod="done", container="c", node="n1", {gpu}}}', "1x200"),
        ('kube_pod_status_phase{namespace="ml-research", pod="done", phase="Succeeded"}', "1x200"),
    ]
    three_hours = "sum_over_time(%s[2h59m59s:1h])"
    check(plan, series, [
        # 2 GPUs × 3 h × 1.006 = 6.036
        expr(money(three_hours % 'costplan:gpu_cost_by_team:increase1h{namespace="ml-research"}'), "3h", [
            sample('{namespace="ml-research", team="ml-research", cost_center="CC-1001", gpu_instance="g5-xlarge"}', 6.036),
        ]),
        # 4 allocatable − 3 requested = 1 idle GPU × 3 h × 1.006 = 3.018
        expr(money(three_hours % "costplan:gpu_idle_cost:increase1h"), "3h", [
            sample('{node="n1", instance_type="g5.xlarge", gpu_instance="g5-xlarge"}', 3.018),
        ]),
        # llama-guard (gpuHourly, namespace llm on g5-xlarge): 1 GPU × 1 h × 1.006, charged to platform
        expr(money('costplan:spend_by_model:increase1h{model="llama-guard"}'), "2h", [
            sample('{model="llama-guard"}', 1.006),
        ]),
        # ml-research's own namespace: its 2 GPUs are its charge, 2 × 1.006 = 2.012 an hour; platform's
        # llm GPU is llama-guard's charge already, so platform has no team GPU charge.
        expr(money('costplan:spend:increase1h{charge="gpu", model=""}'), "2h", [
            sample('{charge="gpu", team="ml-research", tier="premium", cost_center="CC-1001"}', 2.012),
        ]),
        # ... and counts in the team's spend to date: 3 hours, 6.036
        expr(money('costplan:spend_by_team:period_to_date{team="ml-research", period="month"}'), "3h", [
            sample('{team="ml-research", cost_center="CC-1001", period="month"}', 6.036),
        ]),
    ])


def _heavy_user(per_minute: int, minutes: int) -> list[tuple[str, str]]:
    return [('authorized_calls{user="premiumuser1", team="ml-research", tier="premium"}', f"0+{per_minute}x{minutes}")]


def _alert(name: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": {"alertname": name, **labels}, "exp_annotations": {"summary": summary, "description": description}}


def test_budget_thresholds_fire_exactly_at_their_amount_and_forecast_warns(bundled_plan):
    plan = with_budgets(bundled_plan("dev"), "ml-research", (
        Budget(name="monthly", amount=Decimal(120), period="month", thresholds=(Decimal(50), Decimal(100)), team="ml-research"),
    ))
    # 500 calls a minute × 0.002 = 1 USD a minute: 60 USD per hour step.
    labels = {"team": "ml-research", "budget": "monthly", "period": "month"}
    half = _alert(
        "CostplanBudgetThresholdReached", {**labels, "threshold": "50", "severity": "warning"},
        "Team ml-research reached 50% of budget monthly",
        "Team ml-research has spent 60.00 USD of budget monthly (120 USD per month); the 50% threshold is 60 USD.",
    )
    full = _alert(
        "CostplanBudgetThresholdReached", {**labels, "threshold": "100", "severity": "critical"},
        "Team ml-research reached 100% of budget monthly",
        "Team ml-research has spent 120.00 USD of budget monthly (120 USD per month); the 100% threshold is 120 USD.",
    )
    half_later = _alert(half["exp_labels"]["alertname"], half["exp_labels"], half["exp_annotations"]["summary"],
                        half["exp_annotations"]["description"].replace("60.00 USD of", "120.00 USD of"))
    half_later["exp_labels"] = {k: v for k, v in half["exp_labels"].items() if k != "alertname"}
    # Forecast at 90m: 60 spent + 60 per day × (31 d − 90 min) / 1 d = 60 + 60 × 2673000 / 86400 = 1916.25
    forecast = _alert(
        "CostplanBudgetForecastExceeded", {**labels, "severity": "warning"},
        "Team ml-research is on course to exceed budget monthly",
        "At the last 24 hours' rate, Team ml-research will spend 1916.25 USD by the end of the month, "
        "over its budget monthly of 120 USD.",
    )
    # The company budget (dev: 300) sees the same spend: 1916.25 at 90m; at 150m
    # 120 spent + 120 per day × (31 d − 150 min) / 1 d = 120 + 3707.5 = 3827.5.
    company = _alert(
        "CostplanBudgetForecastExceeded", {"budget": "company-monthly", "period": "month", "severity": "warning"},
        "The company is on course to exceed budget company-monthly",
        "At the last 24 hours' rate, the company will spend %s USD by the end of the month, "
        "over its budget company-monthly of 300 USD.",
    )
    def company_at(value: str) -> dict[str, Any]:
        text = company["exp_annotations"]["description"] % value
        return {**company, "exp_annotations": {**company["exp_annotations"], "description": text}}
    check(plan, _heavy_user(500, 200), [
        expr('costplan:budget_spend{team="ml-research"}', "60m", [
            sample('{__name__="costplan:budget_spend", team="ml-research", budget="monthly", period="month"}', 60),
        ]),
    ], alerts=[
        {"eval_time": "59m", "alertname": "CostplanBudgetThresholdReached", "exp_alerts": []},
        {"eval_time": "60m", "alertname": "CostplanBudgetThresholdReached", "exp_alerts": [half]},
        {"eval_time": "119m", "alertname": "CostplanBudgetThresholdReached", "exp_alerts": [half]},
        {"eval_time": "120m", "alertname": "CostplanBudgetThresholdReached",
         "exp_alerts": [{**half_later, "exp_labels": {**half_later["exp_labels"]}}, full]},
        {"eval_time": "89m", "alertname": "CostplanBudgetForecastExceeded", "exp_alerts": []},
        {"eval_time": "90m", "alertname": "CostplanBudgetForecastExceeded", "exp_alerts": [company_at("1916.25"), forecast]},
        # ml-research spent its budget in full: its forecast alert gives way to the threshold alert
        {"eval_time": "150m", "alertname": "CostplanBudgetForecastExceeded", "exp_alerts": [company_at("3827.50")]},
    ])


def test_one_threshold_rule_serves_every_budget_and_states_exact_amounts(bundled_plan):
    """Budget alerts are one rule per severity joined with the threshold constants; the text is exact.

    ml-research: 100.25 USD a month, alerts at 50 % (50.125) and 87.5 %
    (87.71875); customer-support: 1000 USD at 80 %, and no spend. 60 USD of
    spend a closed hour (500 calls a minute × 0.002).
    """
    plan = with_budgets(bundled_plan("dev"), "ml-research", (
        Budget(name="monthly", amount=Decimal("100.25"), period="month",
               thresholds=(Decimal(50), Decimal("87.5")), team="ml-research"),
    ))
    plan = with_budgets(plan, "customer-support", (
        Budget(name="support-month", amount=Decimal(1000), period="month", thresholds=(Decimal(80),),
               team="customer-support"),
    ))
    threshold_rules = [r for g in rule_groups(plan) for r in g["rules"] if r.get("alert") == "CostplanBudgetThresholdReached"]
    assert [r["labels"]["severity"] for r in threshold_rules] == ["warning", "critical"]  # the company's 100 %
    labels = {"team": "ml-research", "budget": "monthly", "period": "month", "severity": "warning"}

    def reached(percent: str, spent: str, amount: str) -> dict[str, Any]:
        return _alert("CostplanBudgetThresholdReached", {**labels, "threshold": percent},
                      f"Team ml-research reached {percent}% of budget monthly",
                      f"Team ml-research has spent {spent} USD of budget monthly (100.25 USD per month); "
                      f"the {percent}% threshold is {amount} USD.")
    check(plan, _heavy_user(500, 200), [], alerts=[
        {"eval_time": "59m", "alertname": "CostplanBudgetThresholdReached", "exp_alerts": []},
        {"eval_time": "60m", "alertname": "CostplanBudgetThresholdReached",
         "exp_alerts": [reached("50", "60.00", "50.125")]},
        {"eval_time": "120m", "alertname": "CostplanBudgetThresholdReached",
         "exp_alerts": [reached("50", "120.00", "50.125"), reached("87.5", "120.00", "87.71875")]},
    ])


def _gpu_series(allocatable: int) -> list[tuple[str, str]]:
    """n1 (g5.xlarge, 1.006 per GPU-hour): ml-research runs 2 GPUs, platform's namespace llm 1."""
    gpu = 'resource="nvidia_com_gpu", unit="integer"'
    return [
        (f'kube_pod_container_resource_requests{{namespace="ml-research", pod="train", container="c", node="n1", {gpu}}}', "2x200"),
        ('kube_pod_status_phase{namespace="ml-research", pod="train", phase="Running"}', "1x200"),
        (f'kube_pod_container_resource_requests{{namespace="llm", pod="guard", container="c", node="n1", {gpu}}}', "1x200"),
        ('kube_pod_status_phase{namespace="llm", pod="guard", phase="Running"}', "1x200"),
        (f'kube_node_status_allocatable{{node="n1", {gpu}}}', f"{allocatable}x200"),
        ('kube_node_labels{node="n1", label_node_kubernetes_io_instance_type="g5.xlarge"}', "1x200"),
    ]


def test_idle_gpu_cost_shared_by_usage(bundled_plan):
    from costplan.plan.model import IDLE_BY_USAGE, GpuIdleCost

    plan = dataclasses.replace(bundled_plan(None), gpu_idle_cost=GpuIdleCost(share=IDLE_BY_USAGE))
    three_hours = "sum_over_time(%s[2h59m59s:1h])"
    check(plan, _gpu_series(allocatable=6), [
        # 6 allocatable − 3 requested = 3 idle GPUs × 1.006 = 3.018 an hour, shared 2 : 1 as the
        # teams' GPU use on g5-xlarge (ml-research 2 GPUs, platform's llm 1): 2.012 and 1.006.
        expr(money('costplan:spend:increase1h{charge="gpu_idle"}'), "2h", [
            sample('{charge="gpu_idle", team="ml-research", tier="premium", cost_center="CC-1001"}', 2.012),
            sample('{charge="gpu_idle", team="platform", tier="enterprise", cost_center="CC-0001"}', 1.006),
        ]),
        # The idle cost stays visible on its own: 3.018 an hour.
        expr(money("costplan:gpu_idle_cost:increase1h"), "2h", [
            sample('{node="n1", instance_type="g5.xlarge", gpu_instance="g5-xlarge"}', 3.018),
        ]),
        # ml-research over 3 hours: its own 2 GPUs 3 × 2.012 = 6.036 plus its idle share 3 × 2.012 = 6.036.
        expr(money('costplan:spend_by_team:period_to_date{team="ml-research", period="month"}'), "3h", [
            sample('{team="ml-research", cost_center="CC-1001", period="month"}', 12.072),
        ]),
        # ... and in its monthly budget (1500): 12.072 spent
        expr(money('costplan:budget_spend{team="ml-research", budget="monthly"}'), "3h", [
            sample('{team="ml-research", budget="monthly", period="month"}', 12.072),
        ]),
        expr(money(three_hours % 'costplan:spend:increase1h{charge="gpu_idle", team="platform"}'), "3h", [
            sample('{charge="gpu_idle", team="platform", tier="enterprise", cost_center="CC-0001"}', 3.018),
        ]),
        # Per second, the same split: 2.012 / 3600 for ml-research.
        expr(money('costplan:spend:rate5m{charge="gpu_idle", team="ml-research"} * 3600'), "2h", [
            sample('{charge="gpu_idle", team="ml-research", tier="premium", cost_center="CC-1001"}', 2.012),
        ]),
    ])


def test_idle_gpu_cost_of_a_type_nobody_used_stays_unallocated(bundled_plan):
    from costplan.generators.grafana import gpu_idle_unallocated_query
    from costplan.plan.model import IDLE_BY_USAGE, GpuIdleCost

    plan = dataclasses.replace(bundled_plan(None), gpu_idle_cost=GpuIdleCost(share=IDLE_BY_USAGE))
    gpu = 'resource="nvidia_com_gpu", unit="integer"'
    series = _gpu_series(allocatable=6) + [
        (f'kube_node_status_allocatable{{node="n2", {gpu}}}', "8x200"),
        ('kube_node_labels{node="n2", label_node_kubernetes_io_instance_type="p4d.24xlarge"}', "1x200"),
    ]
    check(plan, series, [
        # n2's 8 idle A100s (32.7726 an hour) are of a type no team ran: nobody is charged for them;
        # n1's idle GPUs are shared as before (2.012 + 1.006).
        expr(money('sum by (gpu_instance) (costplan:gpu_idle_cost:increase1h)'), "2h", [
            sample('{gpu_instance="g5-xlarge"}', 3.018), sample('{gpu_instance="p4d-24xlarge"}', 32.7726),
        ]),
        expr(money('sum(costplan:spend:increase1h{charge="gpu_idle"})'), "2h", [sample("{}", 3.018)]),
        # The dashboard's "idle GPUs no team uses" over two closed hours: 2 × 32.7726 = 65.5452.
        expr(money(gpu_idle_unallocated_query().replace("$__range", "1h59m59s")), "3h", [sample("{}", 65.5452)]),
    ])


def test_idle_gpu_cost_charged_to_one_team(bundled_plan):
    from costplan.plan.model import IDLE_TEAM, GpuIdleCost

    plan = dataclasses.replace(bundled_plan(None), gpu_idle_cost=GpuIdleCost(share=IDLE_TEAM, team="platform"))
    check(plan, _gpu_series(allocatable=6), [
        # all 3 idle GPUs × 1.006 = 3.018 an hour to platform; ml-research pays none of it
        expr(money('costplan:spend:increase1h{charge="gpu_idle"}'), "2h", [
            sample('{charge="gpu_idle", team="platform", tier="enterprise", cost_center="CC-0001"}', 3.018),
        ]),
    ])


def test_custom_limitador_image_identity_joined_from_key_secrets_gives_the_plans_money(bundled_plan):
    """Team, tier and cost center of the custom image's users come from one join against the key
    Secrets' annotations (kube-state-metrics), with the same money the plan's user → team mapping gives.

    qwen3-0-6b costs 0.002 a request, × 0.8 in tier enterprise; free and premium have token limits
    (a served request counted three times), enterprise has none (counted once).
    """
    from costplan.core import conventions as c
    from costplan.generators.kuadrant.secrets import key_secret_annotations
    from costplan.plan.model import ApiKeyRef, User

    plan = bundled_plan("staging")
    # alpha is in team ml-research (premium) with a tier of its own: enterprise.
    alpha = User(id="alpha", display_name=None, api_key=ApiKeyRef(secret_name="apikey-alpha"), tier="enterprise")
    teams = tuple(dataclasses.replace(t, users=(*t.users, alpha)) if t.name == "ml-research" else t
                  for t in plan.teams)
    plan = dataclasses.replace(plan, teams=teams)
    by_id = {u.id: (t, u) for t, u in plan.users()}
    calls = {
        "premiumuser1": "0x10 0+3x4 12x100",  # 4 served, 3 calls each
        "freeuser2": "0x10 0+3x3 9x100",  # 3 served
        "batch-runner": "0x10 0+1x5 5x100",  # 5 served, enterprise
        "alpha": "0x10 0+1x10 10x100",  # 10 served, its own tier enterprise
        "freeuser1": "0x10 0+1x3 3x100",  # two Secrets that disagree on its team
        "stranger": "0x10 0+1x2 2x100",  # no key Secret at all
    }
    series = [(f'authorized_calls{{user="{u}", limitador_namespace="llm/qwen"}}', v) for u, v in calls.items()]
    keys = [by_id[u] for u in ("premiumuser1", "freeuser2", "batch-runner", "alpha", "freeuser1")]
    series += key_secret_series(plan, users=keys)
    # premiumuser1's key is being rotated: a second Secret with the same identity.
    rotated = dataclasses.replace(by_id["premiumuser1"][1], api_key=ApiKeyRef(secret_name="apikey-premiumuser1-new"))
    series += key_secret_series(plan, users=[(by_id["premiumuser1"][0], rotated)])
    # freeuser1 also appears in a Secret that claims team ml-research.
    stray = dataclasses.replace(by_id["freeuser1"][1], api_key=ApiKeyRef(secret_name="apikey-stray"))
    series += key_secret_series(plan, users=[(by_id["premiumuser1"][0], stray)])
    assert key_secret_annotations(by_id["alpha"][0], alpha)[c.ANNOTATION_TIER] == "enterprise"
    by_user = "costplan:spend_by_user:increase1h"
    check(plan, series, [
        expr(money(by_user), "60m", [
            # 12 / 3 = 4 served × 0.002 = 0.008
            sample('{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.008),
            # 9 / 3 = 3 served × 0.002 = 0.006
            sample('{user="freeuser2", team="customer-support", tier="free", cost_center="CC-2040"}', 0.006),
            # 5 × 0.002 × 0.8 = 0.008
            sample('{user="batch-runner", team="platform", tier="enterprise", cost_center="CC-0001"}', 0.008),
            # 10 × 0.002 × 0.8 = 0.016, at its own tier, in its team
            sample('{user="alpha", team="ml-research", tier="enterprise", cost_center="CC-1001"}', 0.016),
            # no identity (conflicting Secrets, or none): counted once, to no team, 0.002 each
            sample('{user="freeuser1"}', 0.006),  # 3 × 0.002
            sample('{user="stranger"}', 0.004),  # 2 × 0.002
        ]),
        expr(money("costplan:spend_by_team:increase1h"), "60m", [
            sample('{team="ml-research", cost_center="CC-1001"}', 0.024),  # 0.008 + 0.016
            sample('{team="customer-support", cost_center="CC-2040"}', 0.006),
            sample('{team="platform", cost_center="CC-0001"}', 0.008),
            sample("{}", 0.01),  # 0.006 + 0.004
        ]),
        expr(money("costplan:spend_by_tier:increase1h"), "60m", [
            sample('{tier="premium"}', 0.008),
            sample('{tier="free"}', 0.006),
            sample('{tier="enterprise"}', 0.024),  # 0.008 + 0.016
            sample("{}", 0.01),
        ]),
        # One identity per user, however many agreeing Secrets; none for freeuser1.
        expr(c.METRIC_USER_IDENTITY, "60m", [
            sample(f'{{__name__="{c.METRIC_USER_IDENTITY}", user="{u}", team="{t.name}", tier="{u_.tier or t.tier}", '
                   f'cost_center="{t.cost_center}"}}', 1)
            for u, (t, u_) in sorted(by_id.items()) if u in ("premiumuser1", "freeuser2", "batch-runner", "alpha")
        ]),
    ])
