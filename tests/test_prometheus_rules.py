"""Fast checks of the generated rules: promtool check, CRD schema, contract,
determinism, escaping, and a rule count that does not grow with users."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest

from costplan.core import conventions as c
from costplan.generators import prometheus
from costplan.generators.prometheus.groups import rule_groups
from costplan.output import promtool
from costplan.plan.model import ApiKeyRef, Plan, User
from tests.conftest import CRD_SCHEMAS, needs_reference

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("dev", "prod", "staging")

ALL_ENVS = (None, *ENVIRONMENTS)
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def rules_of(plan: Plan) -> list[dict]:
    return [rule for group in rule_groups(plan) for rule in group["rules"]]


def with_users(plan: Plan, per_team: int) -> Plan:
    teams = tuple(
        dataclasses.replace(team, users=tuple(
            User(id=f"{team.name}-user-{i}", display_name=None, api_key=ApiKeyRef(secret_name=f"k-{team.name}-{i}"))
            for i in range(per_team)
        ))
        for team in plan.teams
    )
    return dataclasses.replace(plan, teams=teams)


@needs_promtool
@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_every_environment_passes_promtool_check_rules(bundled_plan, env):
    result = promtool.check_rules(rule_groups(bundled_plan(env)))
    assert result.ok, result.output
    assert "SUCCESS" in result.output


@needs_reference
def test_prometheus_rules_validate_against_the_crd_schema(bundled_plan):
    schema = json.loads((CRD_SCHEMAS / "monitoring.coreos.com" / "prometheusrule_v1.json").read_text())
    for env in ALL_ENVS:
        for obj in prometheus.prometheus_rules(bundled_plan(env)):
            errors = list(jsonschema.Draft7Validator(schema).iter_errors(obj))
            assert not errors, [e.message for e in errors]


def test_rules_land_in_the_prometheus_namespace_with_rule_labels(bundled_plan):
    plan = bundled_plan("dev")
    objects = prometheus.prometheus_rules(plan)
    assert [o["metadata"]["name"] for o in objects] == [
        "costplan-prices", "costplan-usage", "costplan-hourly", "costplan-spend", "costplan-alerts",
    ]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "monitoring-dev"
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert obj["spec"]["groups"][0]["interval"] in ("1m", "5m")


def test_rules_files_hold_the_same_groups(bundled_plan):
    plan = bundled_plan(None)
    files = prometheus.rules_files(plan)
    assert sorted(files) == sorted(f"{g['name']}.rules.yaml" for g in rule_groups(plan))
    assert [doc["groups"][0] for doc in files.values()] == rule_groups(plan)


def test_output_is_deterministic(bundled_plan):
    assert rule_groups(bundled_plan("prod")) == rule_groups(bundled_plan("prod"))
    assert repr(rule_groups(bundled_plan("prod"))) == repr(rule_groups(bundled_plan("prod")))


def test_money_literals_are_exact_decimals(bundled_plan):
    text = repr(rule_groups(bundled_plan(None)))
    assert not re.search(r"\d[eE][+-]?\d", text)
    # claude-sonnet input: 3 per million = 0.000003 per token, written out
    assert "vector(0.000003)" in text
    # g5-xlarge: 1.006 per hour for one GPU
    assert "vector(1.006)" in text


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_rule_count_is_flat_when_users_grow_tenfold(bundled_plan, env):
    plan = bundled_plan(env)
    few, many = with_users(plan, 50), with_users(plan, 500)
    assert len(rules_of(few)) == len(rules_of(many)) == len(rules_of(plan))


@needs_promtool
def test_hostile_user_ids_cannot_change_the_promql(bundled_plan):
    plan = bundled_plan("staging")  # user ids end up in regex matchers
    team = dataclasses.replace(plan.teams[0], users=(
        User(id='x"} or vector(1) or {a="', display_name=None, api_key=ApiKeyRef(secret_name="k1")),
        User(id="a.b|c\\d", display_name=None, api_key=ApiKeyRef(secret_name="k2")),
    ))
    plan = dataclasses.replace(plan, teams=(team, *plan.teams[1:]))
    result = promtool.check_rules(rule_groups(plan))
    assert result.ok, result.output
    assert "or vector(1) or" not in repr([r["expr"] for r in rules_of(plan)]).replace('\\\\"', "")


def test_budget_alerts_are_a_few_rules_whatever_the_number_of_budgets(bundled_plan):
    """One threshold rule per severity and one forecast rule; the amounts come from the joined constants."""
    plan = bundled_plan(None)
    budget_alerts = (c.ALERT_BUDGET_THRESHOLD, c.ALERT_BUDGET_FORECAST)
    alerts = [r for r in rules_of(plan) if r.get("alert") in budget_alerts]
    assert [(r["alert"], r["labels"]) for r in alerts] == [
        (c.ALERT_BUDGET_THRESHOLD, {"severity": "warning"}),
        (c.ALERT_BUDGET_THRESHOLD, {"severity": "critical"}),
        (c.ALERT_BUDGET_FORECAST, {"severity": "warning"}),
    ]
    assert len(plan.all_budgets()) > 3
    warning = alerts[0]
    assert f"group_right {c.METRIC_BUDGET_THRESHOLD_AMOUNT}{{threshold=~" in warning["expr"]
    assert '{{ $value | printf "%.2f" }} USD' in warning["annotations"]["description"]
    assert f'query (printf "{c.METRIC_BUDGET_AMOUNT}{{' in warning["annotations"]["description"]
    assert warning["for"] == "0m"
    # Twice the teams, twice the budgets: the same rules.
    doubled = dataclasses.replace(plan, teams=plan.teams + tuple(
        dataclasses.replace(t, name=f"{t.name}-2", namespaces=(), users=()) for t in plan.teams))
    assert len(doubled.all_budgets()) > len(plan.all_budgets())
    assert [r for r in rules_of(doubled) if r.get("alert") in budget_alerts] == alerts


def _contract_names() -> set[str]:
    names = {v for k, v in vars(c).items() if k.startswith("METRIC_") and isinstance(v, str) and v != c.METRIC_PREFIX}
    for by in c.ROLLUPS:
        for window in (c.WINDOW_RATE, c.WINDOW_HOUR, c.WINDOW_DAY):
            names.add(c.spend_rollup(by, window))
    return names


def test_every_recorded_metric_is_in_the_contract(bundled_plan):
    recorded = {r["record"] for env in ALL_ENVS for r in rules_of(bundled_plan(env)) if "record" in r}
    assert recorded <= _contract_names(), recorded - _contract_names()
    assert all(name.startswith(c.METRIC_PREFIX) for name in recorded)


def test_readme_metric_contract_matches_conventions():
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    start, end = "<!-- metric-contract:start -->", "<!-- metric-contract:end -->"
    if start not in text or end not in text:
        pytest.skip("README has no metric-contract table yet")
    table = text.split(start, 1)[1].split(end, 1)[0]
    documented = set(re.findall(r"^\|\s*`(costplan:[^`]+)`", table, flags=re.M))
    assert documented == _contract_names()
