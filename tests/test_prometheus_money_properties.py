"""Property runs: random traffic through the generated rules must bill exactly the calls made.

Each seed draws, per user: a scrape interval (15 s to 2 min) and an offset
within it relative to the rule evaluations, when the series is born (its
first value at least 1), how many calls each scrape shows, and restarts at
random scrapes (half of them the first scrape after a full hour, where a
window-edge difference would see the counter's whole previous life). The
rule groups are handed to promtool in a seed-shuffled order, and each hour
is read at a random minute of the hour after it. Every user's money in
every clock hour must equal its calls × price exactly (after the 1e-9
rounding the promtool tests use), so it is never negative and hours add up.

Seeds are fixed, so a failure names the seed that reproduces it; one seed
runs in the fast tier, the rest are marked slow.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from decimal import Decimal

import pytest

from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool
from costplan.plan.model import Plan

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

BASE_SECONDS = 15  # input series resolution: every scrape time is a multiple of it
HOURS = 3
PRICE = Decimal("0.002")  # qwen3-0-6b per request, multiplier 1 for both tiers
USERS = {  # user -> (team, tier, cost center) in the bundled plan
    "premiumuser1": ("ml-research", "premium", "CC-1001"),
    "premiumuser2": ("ml-research", "premium", "CC-1001"),
    "freeuser1": ("customer-support", "free", "CC-2040"),
}
FAST_SEEDS = [1]
SLOW_SEEDS = [2, 3, 4, 5, 6, 7, 8, 9]


@dataclass
class Traffic:
    values: list[int | None]  # counter value at each BASE_SECONDS slot; None = no scrape
    per_hour: list[int]  # calls first shown by a scrape in each clock hour
    born: int  # seconds: the series' first sample


def traffic(rng: random.Random) -> Traffic:
    slots = HOURS * 3600 // BASE_SECONDS + 1
    every = rng.choice([1, 2, 4, 8])  # 15 s, 30 s, 1 min, 2 min
    offset = rng.randrange(every)
    born = rng.randrange(0, slots // 2)
    restarts = set()
    for _ in range(rng.randrange(0, 4)):
        if rng.random() < 0.5:  # the first scrape after a full hour
            hour = rng.randrange(1, HOURS) * 3600 // BASE_SECONDS
            restarts.add(next(s for s in range(hour + 1, slots) if s % every == offset))
        else:
            restarts.add(rng.randrange(born + 1, slots))
    values: list[int | None] = [None] * slots
    per_hour = [0] * HOURS
    counter = 0
    first = True
    for slot in range(born, slots):
        if slot % every != offset:
            continue
        calls = rng.randrange(1, 5) if first else rng.choice([0, 0, 1, 2, 7])
        counter = calls if slot in restarts else counter + calls
        values[slot] = counter
        first = False
        if slot == 0:
            continue  # shown at 00:00: the hour before the window
        per_hour[(slot * BASE_SECONDS - 1) // 3600] += calls
    first_sample = next(slot for slot, value in enumerate(values) if value is not None)
    return Traffic(values, per_hour, first_sample * BASE_SECONDS)


def series_values(values: list[int | None]) -> str:
    return " ".join("_" if v is None else str(v) for v in values)


def run(plan: Plan, seed: int) -> None:
    rng = random.Random(seed)
    users = rng.sample(sorted(USERS), rng.randrange(1, len(USERS) + 1))
    series, expected = [], {}
    for user in users:
        team, tier, cost_center = USERS[user]
        drawn = traffic(rng)
        series.append({
            "series": f'authorized_calls{{user="{user}", team="{team}", tier="{tier}", limitador_namespace="llm/qwen"}}',
            "values": series_values(drawn.values),
        })
        expected[user] = (team, tier, cost_center, drawn)
    tests = []
    for hour in range(1, HOURS + 1):
        minute = rng.randrange(0, 60) if hour < HOURS else 0
        samples = [
            {"labels": f'{{user="{user}", team="{team}", tier="{tier}", cost_center="{cc}"}}',
             "value": float(PRICE * drawn.per_hour[hour - 1])}
            for user, (team, tier, cc, drawn) in sorted(expected.items())
            if drawn.born <= hour * 3600  # no series before its first sample
        ]
        tests.append({
            "expr": "round(costplan:spend_by_user:increase1h * 1000000000) / 1000000000",
            "eval_time": f"{hour * 60 + minute}m",
            "exp_samples": samples,
        })
    groups = rule_groups(plan)
    rng.shuffle(groups)
    result = promtool.test_rules(groups, {"evaluation_interval": "1m", "tests": [{
        "interval": f"{BASE_SECONDS}s", "input_series": series, "promql_expr_test": tests,
    }]})
    assert result.ok, f"seed {seed}: {result.output}"


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_random_traffic_bills_exactly_the_calls_made(bundled_plan, seed):
    run(bundled_plan(None), seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_random_traffic_bills_exactly_the_calls_made_more_seeds(bundled_plan, seed):
    run(bundled_plan(None), seed)

