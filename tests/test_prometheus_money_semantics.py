"""What is billed to which hour and period, proven with ``promtool test rules``.

Each scenario is one a live system produces: a counter that restarts right
at an hour's edge, a series born at its first request, a non-linear price
whose period closes, amounts that add up to exactly a budget threshold.
The money is computed by hand in the comments.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from decimal import Decimal

import pytest

from costplan.core import conventions as c
from costplan.generators.prometheus.groups import rule_groups
from costplan.plan.model import Budget, PerMillionTokens, Plan, TieredVolume
from tests.test_prometheus_money import check, expr, money, sample, with_budgets, with_model
from tests.traffic_model import key_secret_series

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

PREMIUM1 = 'authorized_calls{user="premiumuser1", team="ml-research", tier="premium"}'
PREMIUM1_SPEND = '{user="premiumuser1", team="ml-research", tier="premium", cost_center="CC-1001"}'
BY_USER = 'costplan:spend_by_user:increase1h{user="premiumuser1"}'


def hours(metric: str, count: int) -> str:
    """The ``count`` closed hours before the evaluation, read as the report reads them."""
    return f"sum_over_time(last_over_time({metric}[1h] offset 1s)[{count * 3600 - 1}s:1h])"


def test_a_restart_between_two_scrapes_at_an_hour_boundary_bills_exactly_the_requests_made(bundled_plan):
    plan = bundled_plan(None)
    # Scrapes every 2 minutes. 5 calls in the first hour (the last scrape before 01:00 shows 5);
    # Limitador restarts between the scrapes at 01:00 and 01:02; 3 calls after it.
    values = "0x25 1 2 3 4 5 1 2 3 3x40"
    check(plan, [(PREMIUM1, values)], [
        # 00:00-01:00: 5 x 0.002 = 0.01
        expr(money(BY_USER), "61m", [sample(PREMIUM1_SPEND, 0.01)]),
        # 01:00-02:00: 3 x 0.002 = 0.006 (never 3 - 5 = -2 calls)
        expr(money(BY_USER), "121m", [sample(PREMIUM1_SPEND, 0.006)]),
        expr(money(BY_USER), "179m", [sample(PREMIUM1_SPEND, 0.006)]),
    ], interval="2m")


def test_a_user_with_exactly_one_request_is_billed_one_request(bundled_plan):
    plan = bundled_plan(None)
    # The series is born at 00:30 with value 1 (its first request), as Limitador creates it.
    check(plan, [(PREMIUM1, "_x15 1x60")], [
        expr(money(BY_USER), "60m", [sample(PREMIUM1_SPEND, 0.002)]),
        # The next hour has no new request.
        expr(money(BY_USER), "120m", [sample(PREMIUM1_SPEND, 0)]),
    ], interval="2m")


def test_a_counter_that_goes_missing_and_returns_bills_its_growth_once(bundled_plan):
    plan = bundled_plan(None)
    # 4 calls by 00:20, no scrapes 00:22-00:38 (longer than the 5m lookback), 6 by 00:40.
    check(plan, [(PREMIUM1, "0 1 2 3x8 _x8 6x60")], [
        expr(money(BY_USER), "60m", [sample(PREMIUM1_SPEND, 0.012)]),  # 6 x 0.002
    ], interval="2m")


PREMIUM2 = 'authorized_calls{user="premiumuser2", team="ml-research", tier="premium"}'
PREMIUM2_SPEND = '{user="premiumuser2", team="ml-research", tier="premium", cost_center="CC-1001"}'
BY_USER2 = 'costplan:spend_by_user:increase1h{user="premiumuser2"}'


def test_restarts_inside_hours_bill_every_call_while_a_steady_counter_beside_them_is_billed_alike(bundled_plan):
    plan = bundled_plan(None)
    # Scrapes every 2 minutes; scrape k at 2k minutes, the hour 00:00-01:00 is scrapes 1-30.
    # premiumuser1: 0 → 40 by 00:40 (+2 a scrape), restarts to 3 at 00:42, 4 at 00:44 and holds;
    # restarts again to 1 at 01:22, +1 a scrape to 11 at 01:42, then holds to the end.
    restarting = "0+2x20 3 4x18 1+1x10 11x40"
    # premiumuser2 never restarts: +1 a scrape, 30 calls an hour.
    steady = "0+1x91"
    check(plan, [(PREMIUM1, restarting), (PREMIUM2, steady)], [
        # 00:00-01:00: 40 before the restart, 3 shown by the restarted counter, 1 more = 44 x 0.002
        expr(money(BY_USER), "61m", [sample(PREMIUM1_SPEND, 0.088)]),
        expr(money(BY_USER2), "61m", [sample(PREMIUM2_SPEND, 0.06)]),
        # 01:00-02:00: the second restart shows 1, then 10 more = 11 x 0.002 (never 11 - 4 + ... twice)
        expr(money(BY_USER), "121m", [sample(PREMIUM1_SPEND, 0.022)]),
        expr(money(BY_USER2), "121m", [sample(PREMIUM2_SPEND, 0.06)]),
        # 02:00-03:00: no calls, though the restarts are still in the window that looks for them.
        expr(money(BY_USER), "181m", [sample(PREMIUM1_SPEND, 0)]),
        expr(money(BY_USER2), "181m", [sample(PREMIUM2_SPEND, 0.06)]),
    ], interval="2m")


def test_a_counter_unseen_across_an_hour_edge_bills_its_growth_in_the_hour_it_returns(bundled_plan):
    plan = bundled_plan(None)
    # 26 by 00:50, no scrapes 00:52-01:18 (the hour edge inside the gap), 30 at 01:20, then holds.
    check(plan, [(PREMIUM1, "1+1x25 _x14 30x40")], [
        # 00:00-01:00: 25 (the value 1 at 00:00 belongs to the hour before) = 0.05
        expr(money(BY_USER), "61m", [sample(PREMIUM1_SPEND, 0.05)]),
        # 01:00-02:00: 30 - 26 = 4 = 0.008, never the whole 30 again
        expr(money(BY_USER), "121m", [sample(PREMIUM1_SPEND, 0.008)]),
    ], interval="2m")


def daily_tiered(plan: Plan) -> Plan:
    model = next(m for m in plan.models if m.name == "mixtral-batch")
    assert isinstance(model.pricing, TieredVolume)
    return with_model(plan, "mixtral-batch", pricing=dataclasses.replace(model.pricing, period="day"))


@pytest.mark.slow
def test_a_daily_tiered_volume_plan_bills_all_24_hours_of_each_day(bundled_plan):
    # mixtral-batch, per day: 2 / 1.5 / 1 per million from 0 / 10M / 100M tokens; platform's tier
    # enterprise x 0.8 -> 1.6 / 1.2 / 0.8. 20,000 prompt tokens a minute: 1.2M an hour, 28.8M a day.
    plan = daily_tiered(bundled_plan(None))
    prompt = 'vllm:prompt_tokens_total{model_name="mistralai/Mixtral-8x7B-Instruct-v0.1"}'
    model = 'costplan:spend_by_model:increase1h{model="mixtral-batch"}'
    # A day: 10M x 1.6 + 18.8M x 1.2 (per million) = 16 + 22.56 = 38.56
    check(plan, [(prompt, "0+20000x1510")], [
        expr(money(hours(model, 24)), "25h", [sample('{model="mixtral-batch"}', 38.56)]),
        # The hour that closes day 1 (23:00-24:00, 27.6M-28.8M): 1.2M x 1.2 = 1.44
        expr(money(model), "24h", [sample('{model="mixtral-batch"}', 1.44)]),
        # The hour that opens day 2: 1.2M x 1.6 = 1.92
        expr(money(model), "25h", [sample('{model="mixtral-batch"}', 1.92)]),
        # Volume to date in the first hour of day 2 is still day 1's, complete: 28.8M
        expr('costplan:volume:period_to_date{model="mixtral-batch"}', "24h30m", [sample(
            '{__name__="costplan:volume:period_to_date", team="platform", tier="enterprise", model="mixtral-batch", '
            'unit="tokens", period="day"}', 28800000)]),
    ])


THREE_USERS = {"alpha": 36522606, "beta": 547033, "gamma": 2930361}  # 40,000,000 tokens


def test_three_identities_summing_to_exactly_80_of_a_100_budget_fire_the_80_percent_alert(bundled_plan):
    # 2 per million tokens: 40,000,000 tokens = exactly 80.00. As floats the three amounts add up
    # to 79.99999999999999; the threshold is compared after rounding to 1e-9.
    plan = with_model(bundled_plan("dev"), "gpt-4o-mini", usage_source="apps",
                      pricing=PerMillionTokens(input=Decimal(2), output=Decimal(2)))
    plan = with_budgets(plan, "ml-research", (
        Budget(name="monthly", amount=Decimal(100), period="month", thresholds=(Decimal(80),), team="ml-research"),
    ))
    series = [
        (f'inference_tokens_prompt_total{{model="gpt-4o-mini", team="ml-research", project="{user}"}}',
         f"0x10 {tokens}x100")
        for user, tokens in THREE_USERS.items()
    ]
    alert = {
        "exp_labels": {"alertname": c.ALERT_BUDGET_THRESHOLD, "team": "ml-research", "budget": "monthly",
                       "period": "month", "threshold": "80", "severity": "warning"},
        "exp_annotations": {
            "summary": "Team ml-research reached 80% of budget monthly",
            "description": "Team ml-research has spent 80.00 USD of budget monthly (100 USD per month); "
                           "the 80% threshold is 80 USD.",
        },
    }
    check(plan, series, [
        # The float sum is below 80: only the rounding lets the alert fire.
        expr(f'{c.METRIC_BUDGET_SPEND}{{team="ml-research"}} < 80', "60m", [sample(
            f'{{__name__="{c.METRIC_BUDGET_SPEND}", team="ml-research", budget="monthly", period="month"}}',
            79.99999999999999)]),
    ], alerts=[
        {"eval_time": "55m", "alertname": c.ALERT_BUDGET_THRESHOLD, "exp_alerts": []},
        {"eval_time": "60m", "alertname": c.ALERT_BUDGET_THRESHOLD, "exp_alerts": [alert]},
    ])


def test_every_hourly_amount_reads_only_counters_constants_and_rules_above_it_in_its_group(bundled_plan):
    """Order cannot matter: the money of a closed hour is computed in one group, top to bottom."""
    plan = bundled_plan(None)
    groups = rule_groups(plan)
    hourly = next(g for g in groups if g["name"] == c.GROUP_HOURLY)
    constants = {r["record"] for g in groups if g["name"].startswith(c.GROUP_PRICES) for r in g["rules"]}
    # Per-second gauges integrated over the hour (GPU cost) are sampled on aligned minutes.
    gauges = {c.METRIC_GPU_COST_RATE, c.METRIC_GPU_IDLE_COST_RATE}
    other = {r["record"] for g in groups if g is not hourly for r in g["rules"] if "record" in r}
    above: set[str] = set()
    for rule in hourly["rules"]:
        read = set(re.findall(r"costplan:[a-z0-9_:]+", rule["expr"]))
        assert read <= above | constants | gauges, (rule["record"], read - above - constants - gauges)
        above.add(rule["record"])
    hourly_names = {r["record"] for r in hourly["rules"]}
    for group in groups:
        if group is hourly:
            continue
        for rule in group["rules"]:
            assert not rule.get("record", "").endswith(f":{c.WINDOW_HOUR}"), rule["record"]
    assert not (hourly_names & other - constants - gauges) - {c.METRIC_SPEND_RATE}


def test_alert_for_durations_are_plan_settings_so_a_short_burst_of_rate_limiting_alerts(bundled_plan):
    plan = bundled_plan(None)
    plan = dataclasses.replace(plan, alerts=dataclasses.replace(plan.alerts, rate_limit_pressure_for="2m"))
    # 10 authorized and 2 limited calls a minute for 6 minutes: 20 % > 10 %, from 1m (two samples).
    series = [(PREMIUM1, "0+10x6 60x30"),
              ('limited_calls{user="premiumuser1", team="ml-research", tier="premium"}', "0+2x6 12x30")]
    pressure = {
        "exp_labels": {"alertname": c.ALERT_RATE_LIMITED, "source": "limitador", "team": "ml-research",
                       "tier": "premium", "severity": "warning"},
        "exp_annotations": {
            "summary": "Requests of team ml-research (tier premium) are being rate limited",
            "description": "20% limited per authorized request (alert above 0.1) for team ml-research in tier premium.",
        },
    }
    groups = rule_groups(plan)
    alert = next(r for g in groups for r in g["rules"] if r.get("alert") == c.ALERT_RATE_LIMITED)
    assert alert["for"] == "2m"
    # With the default 15m this 6-minute burst never alerts; with 2m it fires from 3m.
    check(plan, series, [], alerts=[
        {"eval_time": "2m", "alertname": c.ALERT_RATE_LIMITED, "exp_alerts": []},
        {"eval_time": "3m", "alertname": c.ALERT_RATE_LIMITED, "exp_alerts": [pressure]},
    ])


def test_a_user_in_another_tier_than_the_team_is_priced_and_limited_at_its_own_tier(bundled_plan):
    from costplan.generators.kuadrant.secrets import key_secret_annotations
    from costplan.plan.model import ApiKeyRef, User

    # gpt-4o-mini: 0.001 per request; alpha is in tier enterprise (x 0.8), its team ml-research in premium (x 1).
    plan = with_model(bundled_plan(None), "gpt-4o-mini", usage_source="apps")
    alpha = User(id="alpha", display_name=None, api_key=ApiKeyRef(secret_name="apikey-alpha", remote_key=None),
                 tier="enterprise")
    teams = tuple(dataclasses.replace(t, users=(*t.users, alpha)) if t.name == "ml-research" else t
                  for t in plan.teams)
    plan = dataclasses.replace(plan, teams=teams)
    team = next(t for t in plan.teams if t.name == "ml-research")
    # The gateway reads the user's tier from its key: limits follow it.
    assert key_secret_annotations(team, alpha)["kuadrant.io/groups"] == "enterprise"
    app = 'inference_requests_total{{model="gpt-4o-mini", team="ml-research", project="{}"}}'
    # alpha's key Secret carries its tier; beta has no key Secret (the team's tier applies).
    keys = key_secret_series(plan, users=[(team, alpha)])
    check(plan, [(app.format("alpha"), "0x5 0+1x10 10x50"), (app.format("beta"), "0x5 0+1x10 10x50"), *keys], [
        expr(money("costplan:spend_by_user:increase1h"), "60m", [
            # alpha: 10 x 0.001 x 0.8 = 0.008 at tier enterprise
            sample('{user="alpha", team="ml-research", tier="enterprise", cost_center="CC-1001"}', 0.008),
            # beta (no tier of its own): 10 x 0.001 at the team's premium
            sample('{user="beta", team="ml-research", tier="premium", cost_center="CC-1001"}', 0.01),
        ]),
    ])
