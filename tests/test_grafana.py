"""The cost dashboard: deterministic JSON, contract-only queries, both delivery modes."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import promql_parser
import pytest

from costplan.core import conventions as c
from costplan.generators import grafana
from tests.conftest import CRD_SCHEMAS, ENVIRONMENTS, needs_reference


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (promql-parser AST walk)."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), None
            )
            names.add(name or "<no name>")

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def dashboard_of(artifact) -> dict:
    if artifact.kind == "GrafanaDashboard":
        return json.loads(artifact.data["spec"]["json"])
    (text,) = artifact.data["data"].values()
    return json.loads(text)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_query_parses_and_reads_only_contract_metrics(bundled_plan, env):
    model = grafana.build_dashboard(bundled_plan(env))
    queries = grafana.panel_queries(model)
    assert len(queries) >= 15
    used: set[str] = set()
    for title, expr in queries:
        names = metric_names(grafana.resolve_variables(expr, 3600))
        assert names <= set(c.OUTPUT_METRICS), (title, names)
        used |= names
    # Every output series is shown, except raw usage (only the report reads it).
    assert set(c.OUTPUT_METRICS) - used == {c.METRIC_USAGE_REQUESTS_HOURLY, c.METRIC_USAGE_TOKENS_HOURLY}


def test_metric_name_check_would_catch_a_stray_metric():
    assert metric_names("sum(rate(vllm:request_success_total[5m])) / costplan:spend:increase5m") == {
        "vllm:request_success_total",
        "costplan:spend:increase5m",
    }


def test_every_target_has_a_ref_id(bundled_plan):
    model = grafana.build_dashboard(bundled_plan())
    targets = [t for p in model["panels"] for t in p.get("targets", [])]
    assert targets and all(t["refId"] for t in targets)
    for panel in model["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_json_is_deterministic_sorted_and_uid_stable(bundled_plan):
    plan = bundled_plan("prod")
    text = grafana.dashboard_json(plan)
    assert text == grafana.dashboard_json(plan)
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    model = json.loads(text)
    assert model["uid"] == "costplan-llm-chargeback-prod"
    assert model["schemaVersion"] == 41
    assert model["time"] == {"from": "now/M", "to": "now"}
    assert model["timezone"] == "Europe/Berlin"
    assert grafana.dashboard_uid(bundled_plan("dev")) != model["uid"]


def test_variables_for_datasource_environment_team_tier(bundled_plan):
    model = grafana.build_dashboard(bundled_plan("prod"))
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "environment", "team", "tier"}
    assert variables["environment"]["query"] == "prod"
    assert variables["team"]["query"] == "ml-research,customer-support,platform,search-quality"
    assert variables["tier"]["query"] == "free,premium,enterprise"
    assert variables["team"]["allValue"] == ".*"


def test_budget_gauges_use_the_plans_thresholds(bundled_plan):
    model = grafana.build_dashboard(bundled_plan())
    gauges = {p["title"]: p for p in model["panels"] if p["type"] == "gauge"}
    assert set(gauges) == {
        "ml-research: monthly (month)",
        "customer-support: monthly (month)",
        "customer-support: daily (day)",
        "platform: monthly (month)",
        "platform: weekly-gpu-burst (7d)",
        "all teams: company-monthly (month)",
    }
    steps = gauges["ml-research: monthly (month)"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 50, 80, 100]
    assert [s["color"] for s in steps] == ["green", "yellow", "orange", "red"]
    steps = gauges["platform: weekly-gpu-burst (7d)"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [(None, "green"), (100, "red")]
    company = gauges["all teams: company-monthly (month)"]["targets"][0]["expr"]
    assert 'team="",budget="company-monthly"' in company


def test_user_text_is_escaped_in_queries(bundled_plan):
    import dataclasses

    plan = bundled_plan()
    team = dataclasses.replace(plan.teams[0], budgets=(dataclasses.replace(plan.teams[0].budgets[0], name='a"b'),))
    odd = dataclasses.replace(plan, teams=(team,), budgets=())
    exprs = [e for _, e in grafana.panel_queries(grafana.build_dashboard(odd))]
    gauge_expr = next(e for e in exprs if "budget=" in e)
    assert 'budget="a\\"b"' in gauge_expr
    promql_parser.parse(gauge_expr)


@needs_reference
def test_operator_mode_emits_a_valid_grafana_dashboard(bundled_plan):
    (artifact,) = grafana.generate(bundled_plan("prod"))
    assert artifact.kind == "GrafanaDashboard"
    schema = json.loads((CRD_SCHEMAS / "grafana.integreatly.org" / "grafanadashboard_v1beta1.json").read_text())
    jsonschema.validate(artifact.data, schema)
    spec = artifact.data["spec"]
    assert spec["instanceSelector"] == {"matchLabels": {"dashboards": "grafana"}}
    assert spec["folder"] == "LLM Costs"
    assert artifact.namespace == "monitoring"
    assert dashboard_of(artifact)["uid"] == spec["uid"]


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_sidecar_mode_emits_a_labelled_configmap(bundled_plan, env):
    (artifact,) = grafana.generate(bundled_plan(env))
    assert artifact.kind == "ConfigMap"
    kubernetes_validate.validate(artifact.data, "1.33", strict=True)
    meta = artifact.data["metadata"]
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["annotations"]["grafana_folder"] == "LLM Costs"
    assert meta["namespace"] == "monitoring"
    assert list(artifact.data["data"]) == [f"costplan-llm-chargeback-{env}.json"]
    assert dashboard_of(artifact)["title"] == f"LLM costs: llm-chargeback ({env})"


def test_spend_is_split_by_charge_with_idle_gpus_beside_it(bundled_plan):
    from costplan.generators.grafana import build_dashboard, panel_queries

    split = [expr for title, expr in panel_queries(build_dashboard(bundled_plan())) if title.startswith("Spend by charge")]
    assert len(split) == 2 and "sum by (charge)" in split[0] and "costplan:spend:increase1h" in split[0]
    assert "costplan:gpu_idle_cost:increase1h" in split[1]
