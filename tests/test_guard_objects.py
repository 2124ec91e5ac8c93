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
