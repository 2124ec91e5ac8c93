"""Money from simulated traffic, through the generated objects and rules.

Traffic goes through ``tests.traffic_model``: the generated Kuadrant
policies decide which Limitador calls each request makes, the model turns
them into the counters Limitador would expose, and promtool runs the
generated rules over them. The same served traffic is then exposed the way
every other usage source would, and must cost what hand computation says.

The scenario: three users each send 10 requests of 100 tokens (60 in, 40
out) to qwen3-0-6b at 0.002 per request, in two bursts of 5 (minutes 10
and 11):

* freeuser1, tier free (2 requests per 10 s, a daily quota, token limits):
  2 of each burst served, 3 limited: 4 served, 6 limited;
* premiumuser1, tier premium (10 per 10 s, token limits): all 10 served;
* batch-runner, tier enterprise (no limits at all, price x 0.8): all 10 served.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

import pytest

from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool
from costplan.plan.model import Plan, Rate, UsageSource
from tests.traffic_model import Counters, KuadrantGateway, Request, key_secret_series, source_exposition

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

MODEL = "Qwen/Qwen3-0.6B"
MINUTES = 70
USERS = (("customer-support", "freeuser1"), ("ml-research", "premiumuser1"), ("platform", "batch-runner"))
BY_USER = "costplan:spend_by_user:increase1h"


def money(expr: str) -> str:
    return f"round(({expr}) * 1000000000) / 1000000000"


def sample(labels: str, value: float) -> dict[str, Any]:
    return {"labels": labels, "value": value}


def traffic(plan: Plan, times: list[int]) -> list[Request]:
    requests = []
    for team_name, user_id in USERS:
        team = plan.team(team_name)
        user = next(u for u in team.users if u.id == user_id)
        requests += [Request(at, team, user, MODEL) for at in times]
    return sorted(requests, key=lambda r: r.at)


BURSTS = [600 + i for i in range(5)] + [660 + i for i in range(5)]


def run_gateway(plan: Plan, times: list[int] = BURSTS) -> KuadrantGateway:
    gateway = KuadrantGateway(plan)
    for request in traffic(plan, times):
        gateway.handle(request)
    return gateway


def check(plan: Plan, metrics: Counters, exprs: list[dict[str, Any]], keys: bool = False) -> None:
    """``keys``: also the key Secrets' annotations, for sources whose identity is joined from them."""
    series = metrics.series(MINUTES) + (key_secret_series(plan) if keys else [])
    test = {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "promql_expr_test": exprs,
    }
    result = promtool.test_rules(rule_groups(plan), {"evaluation_interval": "1m", "tests": [test]})
    assert result.ok, result.output


def expr(query: str, at: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"expr": query, "eval_time": at, "exp_samples": samples}


FREE = '{user="freeuser1", team="customer-support", tier="free", cost_center="CC-2040"}'
PREMIUM = '{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}'
ENTERPRISE = '{user="batch-runner", team="platform", tier="enterprise", cost_center="CC-0001"}'


def served_by_user(gateway: KuadrantGateway) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in gateway.served:
        counts[r.user.id] = counts.get(r.user.id, 0) + 1
    return counts


def test_the_model_applies_the_generated_limits(bundled_plan):
    gateway = run_gateway(bundled_plan(None))
    assert served_by_user(gateway) == {"freeuser1": 4, "premiumuser1": 10, "batch-runner": 10}
    assert len(gateway.refused) == 6


def test_kuadrant_counts_every_request_once_whatever_limits_its_tier_has(bundled_plan):
    plan = bundled_plan(None)
    gateway = run_gateway(plan)
    check(plan, gateway.metrics, [
        expr(money(BY_USER), "60m", [
            sample(FREE, 0.008),        # 4 served x 0.002 (the 6 limited cost nothing)
            sample(PREMIUM, 0.02),      # 10 x 0.002, though Limitador saw each twice
            sample(ENTERPRISE, 0.016),  # 10 x 0.002 x 0.8, though the tier has no limit
        ]),
        expr("sum by (tier) (costplan:usage_requests:increase1h)", "60m", [
            sample('{tier="free"}', 4), sample('{tier="premium"}', 10), sample('{tier="enterprise"}', 10),
        ]),
        # 6 limited per 4 served, each counted once.
        expr('round(costplan:rate_limited_ratio:rate5m{tier="free"} * 1000) / 1000', "14m", [
            sample('{source="limitador", team="customer-support", tier="free"}', 1.5),
        ]),
        # cost per request is the price, not half of it.
        expr(money('costplan:cost_per_request_by_model:rate5m{model="qwen3-0-6b"}'), "14m", [
            # (4 + 10) x 0.002 + 10 x 0.0016 over 24 requests
            sample('{model="qwen3-0-6b"}', round((14 * 0.002 + 10 * 0.0016) / 24, 9)),
        ]),
    ])


def test_a_request_refused_by_the_token_limit_is_not_billed(bundled_plan):
    """Passed the request limit (counted there), then refused by the token limit's check."""
    plan = bundled_plan(None)
    free = dataclasses.replace(plan.tier("free"), request_limits=(Rate(100, "10s"),), token_limits=(Rate(250, "1h"),))
    plan = dataclasses.replace(plan, tiers=tuple(free if t.name == "free" else t for t in plan.tiers))
    gateway = run_gateway(plan, [600, 620, 640, 660, 680])
    # 0, 100, 200 tokens used before each check: served; 300 > 250: refused twice.
    assert served_by_user(gateway)["freeuser1"] == 3
    check(plan, gateway.metrics, [
        expr(money(f'{BY_USER}{{user="freeuser1"}}'), "60m", [sample(FREE, 0.006)]),
        expr('round(costplan:rate_limited_ratio:rate5m{tier="free"} * 1000) / 1000', "14m", [
            sample('{source="limitador", team="customer-support", tier="free"}', 0.667),
        ]),
    ])


def via(plan: Plan, source_type: str) -> Plan:
    """The plan with qwen3-0-6b measured by a source of ``source_type``."""
    name = f"{source_type}-source"
    sources = tuple(s for s in plan.usage_sources if s.type != source_type) + (UsageSource(name, source_type),)
    models = tuple(dataclasses.replace(m, usage_source=name) if m.name == "qwen3-0-6b" else m for m in plan.models)
    return dataclasses.replace(plan, usage_sources=sources, models=models)


@pytest.mark.parametrize("source_type", ["vllm", "llm-d", "envoy-ai-gateway", "kong-ai"])
def test_sources_without_identity_bill_the_served_requests_to_the_model_owner(bundled_plan, source_type):
    base = bundled_plan(None)
    served = run_gateway(base).served
    plan = via(base, source_type)
    metrics = Counters()
    source_exposition(source_type, served, metrics)
    check(plan, metrics, [
        # 24 served requests; no user on the series: the team owning the
        # model's namespace (platform, enterprise, x 0.8) pays.
        expr(money('costplan:spend_by_model:increase1h{model="qwen3-0-6b"}'), "60m", [
            sample('{model="qwen3-0-6b"}', 0.0384),
        ]),
        expr('sum(costplan:usage_requests:increase1h{model="qwen3-0-6b"})', "60m", [sample("{}", 24)]),
        expr('sum(costplan:usage_tokens:increase1h{model="qwen3-0-6b"})', "60m", [sample("{}", 2400)]),
    ])


def test_a_source_with_users_bills_the_same_money_as_the_gateway(bundled_plan):
    base = bundled_plan(None)
    served = run_gateway(base).served
    plan = via(base, "litellm")
    metrics = Counters()
    source_exposition("litellm", served, metrics)
    check(plan, metrics, [
        expr(money(BY_USER), "60m", [sample(FREE, 0.008), sample(PREMIUM, 0.02), sample(ENTERPRISE, 0.016)]),
    ])


def test_non_billable_responses_are_left_out_of_a_custom_source(bundled_plan):
    """kong_http_requests_total counts the 429s too; they are not billed."""
    base = bundled_plan(None)
    gateway = run_gateway(base)
    source = UsageSource(
        "kong-http", "custom", metrics={"requests": "kong_http_requests_total"}, labels={"user": "consumer"},
        non_billable={"code": ("429",)},
    )
    models = tuple(dataclasses.replace(m, usage_source="kong-http") if m.name == "qwen3-0-6b" else m for m in base.models)
    plan = dataclasses.replace(base, usage_sources=base.usage_sources + (source,), models=models)
    metrics = Counters()
    for r in gateway.served:
        metrics.add(r.at, "kong_http_requests_total", {"consumer": r.user.id, "code": "200", "service": "qwen"}, 1)
    for r in gateway.refused:
        metrics.add(r.at, "kong_http_requests_total", {"consumer": r.user.id, "code": "429", "service": "qwen"}, 1)
    check(plan, metrics, [
        expr(money(BY_USER), "60m", [sample(FREE, 0.008), sample(PREMIUM, 0.02), sample(ENTERPRISE, 0.016)]),
    ], keys=True)
