"""Large plans: every object still fits the API server, and rules follow teams, not users."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json

import pytest
import yaml

from costplan.core.canonical_yaml import dump_yaml
from costplan.core.errors import PlanInvalid
from costplan.generators import grafana, reports
from costplan.output import build as build_stage
from costplan.output import verify
from costplan.plan.load import load_plan
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("generate_plan", ROOT / "benchmarks" / "generate_plan.py")
generate_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_plan)


@pytest.fixture(scope="module")
def large_build(tmp_path_factory) -> build_stage.BuildResult:
    directory = tmp_path_factory.mktemp("large")
    plan = generate_plan.make_plan(teams=1200, users_per_team=2, models=20)
    (directory / "costplan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return build_stage.build(directory / "costplan.yaml", [None])


def test_every_object_of_a_large_plan_fits_the_api_server(large_build):
    artifacts = large_build.environments["base"]
    problems = verify.ManifestValidator().validate_all(artifacts)
    assert [p.render() for p in problems if p.severity == "error" or p.check_id == "size"] == []
    sizes = {a.path: len(dump_yaml(a.data)) for a in artifacts if a.is_manifest}
    assert max(sizes.values()) < 1024 * 1024


def test_groups_that_grow_with_teams_are_split_into_uniquely_named_objects(large_build):
    rules = [a for a in large_build.environments["base"] if a.kind == "PrometheusRule"]
    names = [a.name for a in rules]
    assert len(names) == len(set(names))
    assert {"costplan-alerts", "costplan-prices", "costplan-prices-2"} <= set(names)
    assert "costplan-alerts-2" not in names  # budget alerts are joins: they do not grow with teams
    group_names = [g["name"] for a in rules for g in a.data["spec"]["groups"]]
    assert len(group_names) == len(set(group_names))


def test_many_budgets_share_one_top_budgets_panel(large_build):
    plan = large_build.plans["base"]
    dashboard = grafana.build_dashboard(plan)
    panels = [p for p in dashboard["panels"] if p.get("type") in ("gauge", "bargauge")]
    assert [p["title"] for p in panels if "budget" in p["title"].lower()] == [
        f"Most used budgets (top {grafana.MAX_BUDGET_GAUGES})"
    ]


def _fleet_rules(tmp_path, users_per_team: int) -> dict[str, list[dict]]:
    from costplan.generators.prometheus.groups import rule_groups
    from costplan.plan import fleet
    from costplan.plan.load import load_plan

    plan = generate_plan.add_fleet(generate_plan.make_plan(teams=5, users_per_team=users_per_team, models=4), 2)
    path = tmp_path / f"fleet-{users_per_team}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return {part: rule_groups(variant) for part, variant in fleet.parts(load_plan(path, None))}


def test_fleet_rules_do_not_grow_with_users(tmp_path):
    """Ten times the users, same teams and models: every part's rules are the same, count and text."""
    small, large = _fleet_rules(tmp_path, 10), _fleet_rules(tmp_path, 100)
    assert sorted(small) == ["clusters/cluster-00", "clusters/cluster-01", "global"]
    for part in small:
        assert sum(len(g["rules"]) for g in small[part]) > 0
        assert yaml.safe_dump(large[part]) == yaml.safe_dump(small[part]), part


def test_vmalert_rules_are_split_into_configmaps_that_fit(tmp_path, monkeypatch):
    """Rule files are packed in order into as many ConfigMaps as their size needs, none of them lost."""
    from costplan.generators import prometheus
    from costplan.plan import fleet
    from costplan.plan.load import load_plan

    document = generate_plan.add_fleet(generate_plan.make_plan(teams=5, users_per_team=2, models=4), 2)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    plan = fleet.global_plan(load_plan(path, None))
    files = {name: dump_yaml(groups) for name, groups in prometheus.rules_files(plan).items()}
    assert [c["metadata"]["name"] for c in prometheus.vmalert_configmaps(plan)] == ["costplan-vmalert-rules"]
    monkeypatch.setattr(prometheus, "CONFIGMAP_BYTES", max(len(text) for text in files.values()))
    configmaps = prometheus.vmalert_configmaps(plan)
    assert len(configmaps) > 1
    assert [c["metadata"]["name"] for c in configmaps][:2] == ["costplan-vmalert-rules", "costplan-vmalert-rules-2"]
    assert {k: v for c in configmaps for k, v in c["data"].items()} == files
    assert all(sum(map(len, c["data"].values())) <= prometheus.CONFIGMAP_BYTES for c in configmaps)
# --- the largest benchmark plan (10x: 5,000 teams, 50,000 users) -------------

# Client-side apply copies the whole object into the last-applied-configuration
# annotation, and the API server allows 262,144 bytes of annotations: every
# object must fit with a margin (a fifth) for its own labels and annotations.
ANNOTATION_LIMIT = 262_144
COMFORTABLE = int(ANNOTATION_LIMIT * 0.8)


def _compact_json_size(data: object) -> int:
    """Bytes of the object as kubectl writes it into last-applied-configuration."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode())


@pytest.mark.slow
@pytest.mark.parametrize("identity", ["telemetry", "legacyImage"])
def test_every_object_of_the_largest_benchmark_plan_fits_client_side_apply(tmp_path, identity):
    plan = generate_plan.make_plan(teams=5000, users_per_team=10, models=100)
    if identity == "legacyImage":
        limitador = plan["integrations"]["gateway"].setdefault("limitador", {})
        limitador.update({"metrics": "legacyImage", "image": "ghcr.io/nerdalert/limitador@sha256:" + "0" * 64})
    (tmp_path / "costplan.yaml").write_text(yaml.dump(plan, Dumper=yaml.CSafeDumper, sort_keys=False))
    artifacts = build_stage.build(tmp_path / "costplan.yaml", [None]).environments["base"]
    sizes = {a.path: _compact_json_size(a.data) for a in artifacts if a.is_manifest}
    assert {path: size for path, size in sizes.items() if size >= COMFORTABLE} == {}
    # The plan copy of the report jobs is compressed and still loads back.
    config = next(a.data for a in artifacts if a.kind == "ConfigMap" and a.name == reports.PLAN_CONFIGMAP)
    assert "costplan.yaml" in config["binaryData"]
    (tmp_path / "shipped.yaml").write_bytes(base64.b64decode(config["binaryData"]["costplan.yaml"]))
    assert len(load_plan(tmp_path / "shipped.yaml", None).teams) == 5000


def test_a_gzip_compressed_plan_loads_and_a_truncated_one_is_a_diagnostic(tmp_path):
    text = (ROOT / "costplan.yaml").read_bytes()
    (tmp_path / "costplan.yaml").write_bytes(gzip.compress(text, mtime=0))
    assert load_plan(tmp_path / "costplan.yaml", None) == load_plan(ROOT / "costplan.yaml", None)
    (tmp_path / "costplan.yaml").write_bytes(gzip.compress(text, mtime=0)[:200])
    with pytest.raises(PlanInvalid) as raised:
        load_plan(tmp_path / "costplan.yaml", None)
    assert [d.check_id for d in raised.value.diagnostics] == ["file-unreadable"]
