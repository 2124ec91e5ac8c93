"""What a fleet plan compiles into: one part per cluster, one global part, rules split where the data is.

The money itself is tested end to end on real engines in ``test_fleet_e2e.py``;
here: which rules land where, that each part's rules read only what its
evaluator has, and that every engine gets the global rules in the form it
loads (checked with that engine's tool where it runs here).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
import yaml

from costplan.core import conventions as c
from costplan.generators import generate_all
from costplan.generators.prometheus import engine, rules_files
from costplan.generators.prometheus.groups import rule_groups
from costplan.plan import fleet
from costplan.plan.model import Metrics
from tests import vmserver
from tests.conftest import PLAN
from tests.promserver import PROMTOOL

RAW = re.compile(r"(?<![\w:])(authorized_calls|limited_calls|authorized_hits|kube_\w+|vllm:\w+|gen_ai_\w+)")


@pytest.fixture(scope="module")
def fleet_plan():
    from costplan.plan.load import load_plan

    return load_plan(PLAN, "fleet")


def test_each_part_is_a_directory_with_its_own_kustomization(fleet_plan):
    from costplan.output.serialise import render_environment

    files = render_environment(generate_all(fleet_plan), fleet_plan.name, "fleet")
    assert "kustomization.yaml" not in files, "no kustomization may apply every cluster's objects to one cluster"
    for part in ("clusters/eu-west", "clusters/us-east", "global"):
        resources = yaml.safe_load(files[f"{part}/kustomization.yaml"].split("\n", 3)[-1])["resources"]
        assert resources and all(f"{part}/{r}" in files for r in resources), part
    kinds = {path.split("/")[2] for path in files if path.startswith("clusters/eu-west/")}
    assert {"kuadrant", "prometheus", "opencost", "monitoring"} <= kinds
    assert not {"grafana", "reports"} & kinds, "dashboards and reports read the global view"
    assert {"grafana", "reports", "prometheus"} <= {p.split("/")[1] for p in files if p.startswith("global/")}


def test_every_cluster_rule_reads_local_series_and_carries_its_cluster(fleet_plan):
    for cluster in fleet_plan.clusters:
        part = fleet.cluster_plan(fleet_plan, cluster)
        groups = rule_groups(part)
        assert [g["name"] for g in groups] == [c.GROUP_PRICES, c.GROUP_USAGE, c.GROUP_HOURLY, c.GROUP_ALERTS]
        recorded = {r.get("record") for g in groups for r in g["rules"]}
        assert c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY in recorded
        assert not {c.METRIC_USAGE_REQUESTS_HOURLY, c.METRIC_SPEND_HOURLY, c.METRIC_BUDGET_SPEND} & recorded
        for group in groups:
            for rule in group["rules"]:
                assert rule["labels"][c.LABEL_CLUSTER] == cluster.name, rule


def test_us_east_serves_only_its_models(fleet_plan):
    us_east = fleet.cluster_plan(fleet_plan, fleet_plan.clusters[1])
    assert {m.name for m in us_east.models} == {"claude-sonnet", "deepseek-chat", "gpt-4o-mini", "llama3-8b"}
    text = yaml.safe_dump(rule_groups(us_east))
    assert "vllm:" not in text and "qwen3-0-6b" not in text


def test_the_global_rules_read_no_raw_series_and_the_clusters_hours_only_once_they_are_over(fleet_plan):
    groups = rule_groups(fleet.global_plan(fleet_plan))
    assert [g["name"] for g in groups] == [c.GROUP_PRICES, c.GROUP_HOURLY, c.GROUP_SPEND, c.GROUP_ALERTS]
    for group in groups:
        for rule in group["rules"]:
            assert not RAW.search(rule["expr"]), rule
            assert c.LABEL_CLUSTER not in rule.get("labels", {})
            for local in (c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY, c.METRIC_CLUSTER_USAGE_TOKENS_HOURLY):
                # A cluster's hourly series is read only as the value it held through the hour before the last.
                uses = len(re.findall(rf"{re.escape(local)}(?![\w:])", rule["expr"]))
                lagged = rule["expr"].count(f"last_over_time((last_over_time({local}[1h] offset 1s))[59m59s:1h])")
                assert uses == lagged, rule
    recorded = [r.get("record") for g in groups for r in g["rules"]]
    assert recorded.count(c.METRIC_USER_IDENTITY) == 0, "key Secrets are read in each cluster"


def test_per_identity_money_keeps_the_cluster_and_budgets_add_clusters_up(fleet_plan):
    rules = {r["record"]: r["expr"] for g in rule_groups(fleet.global_plan(fleet_plan)) for r in g["rules"]
             if "record" in r and r.get("labels", {}).get(c.LABEL_CHARGE) == c.CHARGE_REQUEST}
    assert "sum by (cluster, user, team, tier, model)" in rules[c.METRIC_SPEND_HOURLY]
    # The team_info copies the clusters remote-write never make the cost-center join ambiguous.
    assert "group by (team, tier, cost_center) (costplan:team_info)" in rules[c.METRIC_SPEND_HOURLY]


def test_a_plan_without_clusters_compiles_as_before(fleet_plan):
    single = dataclasses.replace(fleet_plan, clusters=(), metrics=None)
    assert {a.part for a in generate_all(single)} == {""}
    assert all(c.LABEL_CLUSTER not in r.get("labels", {}) for g in rule_groups(single) for r in g["rules"])


@pytest.mark.parametrize("kind", ["prometheus", "thanos", "mimir", "victoriametrics"])
def test_each_engine_gets_the_global_rules_the_way_it_loads_them(fleet_plan, kind, tmp_path):
    assert fleet_plan.metrics is not None
    metrics = dataclasses.replace(fleet_plan.metrics, engine=kind, namespace="observability",
                                  rule_labels={"role": "global-rules"})
    plan = fleet.global_plan(dataclasses.replace(fleet_plan, metrics=metrics))
    assert engine(plan) == kind
    artifacts = [a for a in generate_all(plan) if a.component in ("prometheus", "mimir")]
    groups = [g for doc in rules_files(plan).values() for g in doc["groups"]]
    if kind in ("prometheus", "thanos"):
        assert {a.kind for a in artifacts} == {"PrometheusRule"}
        assert all(a.namespace == "observability" and a.data["metadata"]["labels"]["role"] == "global-rules"
                   for a in artifacts)
        assert [g for a in artifacts for g in a.data["spec"]["groups"]] == groups
    elif kind == "victoriametrics":
        (configmap,) = artifacts
        assert configmap.kind == "ConfigMap" and configmap.namespace == "observability"
        files = configmap.data["data"]
        loaded = [g for text in files.values() for g in yaml.safe_load(text)["groups"]]
        assert sorted(loaded, key=lambda g: g["name"]) == sorted(groups, key=lambda g: g["name"])
        if vmserver.VMALERT is not None:
            paths = []
            for name, text in files.items():
                (tmp_path / name).write_text(text)
                paths.append(tmp_path / name)
            vmserver.dry_run(paths)
    else:
        (rules,) = artifacts
        assert not rules.is_manifest and rules.path == "mimir/costplan-llm-chargeback-fleet.yaml"
        assert rules.data == {"namespace": "costplan-llm-chargeback-fleet", "groups": groups}
    if PROMTOOL is not None and shutil.which(PROMTOOL):
        path = tmp_path / "global.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_model_defaults_to_the_prometheus_placement(fleet_plan):
    metrics = Metrics(engine="thanos", query_url="http://thanos-query:9090")
    plan = fleet.global_plan(dataclasses.replace(fleet_plan, metrics=metrics))
    rule = next(a for a in generate_all(plan) if a.kind == "PrometheusRule")
    assert rule.namespace == fleet_plan.integrations.prometheus.namespace
    assert rule.data["metadata"]["labels"]["release"] == "kube-prometheus-stack"
