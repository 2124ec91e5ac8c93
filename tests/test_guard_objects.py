"""What ``costplan build`` emits to run the guard: least privilege, one writer, scraped, reachable."""

from __future__ import annotations

import json

from costplan.core import conventions as c
from costplan.generators import guard
from costplan.plan.enforcement import from_document, guard_config
from costplan.plan.load import load_plan
from tests.conftest import PLAN, ROOT

BUDGETS = ROOT / "tests" / "plans" / "budgets.yaml"


def objects(plan) -> dict[str, dict]:
    return {a.data["kind"]: a.data for a in guard.generate(plan)}


def test_the_role_grants_get_and_patch_on_exactly_the_enforced_keys():
    plan = load_plan(BUDGETS, None)
    role = objects(plan)["Role"]
    assert role["metadata"]["namespace"] == plan.integrations.gateway.api_key.secret_namespace
    assert role["rules"] == [
        # ops has no enforcing budget: its key is not in the list.
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["apikey-alice", "apikey-bob", "apikey-carol"],
         "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = objects(plan)["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": c.GUARD_NAME, "namespace": "monitoring"}]


def test_the_deployment_runs_one_guard_from_its_configmap_with_the_report_image():
    plan = load_plan(BUDGETS, None)
    found = objects(plan)
    spec = found["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == plan.reports.image
    assert container["args"][:3] == ["guard", "--config", "/etc/costplan-guard/guard.json"]
    assert container["livenessProbe"]["httpGet"]["path"] == c.GUARD_LIVENESS_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == c.GUARD_READINESS_PATH
    document = json.loads(found["ConfigMap"]["data"]["guard.json"])
    assert from_document(document) == guard_config(plan)


def test_service_monitor_network_policy_and_service_select_the_guard_pods():
    found = objects(load_plan(BUDGETS, None))
    pods = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (found["Service"]["spec"]["selector"], found["ServiceMonitor"]["spec"]["selector"]["matchLabels"],
                     found["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]):
        assert selector.items() <= pods.items()
    assert found["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == c.GUARD_METRICS_PATH
    policy = found["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": c.GUARD_PORT, "protocol": "TCP"}]


def test_plans_whose_budgets_do_not_enforce_get_no_guard():
    assert guard.generate(load_plan(PLAN, None)) == []


FLEET = (
    "clusters:\n  - name: eu\n  - name: us\n"
    "metrics:\n  engine: mimir\n  queryURL: https://mimir.example.com:8443/prometheus\n  tenant: finance\n"
    "  bearerTokenSecret:\n    secretName: metrics-reader\n    key: token\n"
)


def fleet_cluster_plan(tmp_path):
    from costplan.plan import fleet

    path = tmp_path / "costplan.yaml"
    path.write_text(BUDGETS.read_text(encoding="utf-8") + FLEET, encoding="utf-8")
    plan = load_plan(path, None)
    return fleet.cluster_plan(plan, plan.clusters[0])


def test_a_fleet_guard_queries_the_global_engine_with_its_tenant_and_mounted_token(tmp_path):
    plan = fleet_cluster_plan(tmp_path)
    found = objects(plan)
    document = json.loads(found["ConfigMap"]["data"]["guard.json"])
    assert document["prometheusURL"] == "https://mimir.example.com:8443/prometheus"
    assert document["tenant"] == "finance"
    assert document["bearerTokenFile"] == f"{c.METRICS_TOKEN_DIR}/{c.METRICS_TOKEN_FILE}"
    assert from_document(document) == guard_config(plan)
    pod = found["Deployment"]["spec"]["template"]["spec"]
    assert {"name": c.METRICS_TOKEN_VOLUME, "mountPath": c.METRICS_TOKEN_DIR, "readOnly": True} in \
        pod["containers"][0]["volumeMounts"]
    assert {"name": c.METRICS_TOKEN_VOLUME, "secret": {"secretName": "metrics-reader",
            "items": [{"key": "token", "path": c.METRICS_TOKEN_FILE}]}} in pod["volumes"]
    # The global engine is on another cluster: its port is open for egress.
    assert {"ports": [{"port": 8443, "protocol": "TCP"}]} in found["NetworkPolicy"]["spec"]["egress"]


def test_a_single_cluster_guard_document_has_no_tenant_or_token():
    document = json.loads(objects(load_plan(BUDGETS, None))["ConfigMap"]["data"]["guard.json"])
    assert "tenant" not in document and "bearerTokenFile" not in document


def test_the_guard_sends_the_documents_tenant_and_token(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from costplan.cli import guard as cli_guard
    from costplan.core.errors import ExternalFailure
    from costplan.plan.enforcement import to_document

    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    config = guard_config(fleet_cluster_plan(tmp_path))
    document = {**to_document(config), "bearerTokenFile": str(token)}
    path = tmp_path / "guard.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    seen = {}

    def prometheus(url, headers, timezone):
        seen["url"], seen["headers"] = url, headers()
        raise ExternalFailure("stop here")

    monkeypatch.setattr(cli_guard, "Prometheus", prometheus)
    result = CliRunner().invoke(cli_guard.guard_command, ["--config", str(path), "--once"])
    assert "stop here" in result.stderr and "s3cret" not in result.output + result.stderr
    assert seen == {"url": "https://mimir.example.com:8443/prometheus",
                    "headers": {"X-Scope-OrgID": "finance", "Authorization": "Bearer s3cret"}}
