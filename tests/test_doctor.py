"""``costplan doctor`` against the API-server fake (and a real cluster with COSTPLAN_TEST_KUBECONFIG).

The cluster side runs through the same harness as ``costplan apply``: the
in-process fake, and the official client over HTTP to the fake API server.
Prometheus answers are given per query, as Prometheus would return them.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from costplan.chargeback.promapi import Sample
from costplan.cli import cluster as cli_cluster
from costplan.core import conventions as c
from costplan.generators.kuadrant import secrets as key_secrets
from costplan.install import doctor
from costplan.plan.load import load_plan
from tests.test_apply import ApiServer, Harness, harness  # noqa: F401  (the harness fixture)


def install(h: Harness) -> Any:
    """Apply the plan, let the operator accept and enforce it, create every key Secret."""
    h.write_plan()
    assert h.cli("apply").exit_code == 0
    plan = load_plan(h.plan_path, None)
    for gk in sorted(getattr(h.cluster, "crds", None) or h.backend.crds):
        h.apply_as("apiextensions", ApiServer._crd(gk))
    for obj in h.manifests():
        if obj["kind"] in doctor.POLICY_KINDS:
            status = {"conditions": [{"type": t, "status": "True", "reason": t, "message": "ok"}
                                     for t in ("Accepted", "Enforced")]}
            h.apply_as("kuadrant-operator", {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                                             "metadata": {"name": obj["metadata"]["name"],
                                                          "namespace": obj["metadata"]["namespace"]},
                                             "status": status})
    namespace = plan.integrations.gateway.api_key.secret_namespace
    h.apply_as("setup", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for team, user in plan.users():
        h.apply_as("keys", {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": user.api_key.secret_name, "namespace": namespace,
                                         "labels": key_secrets.key_secret_labels(),
                                         "annotations": key_secrets.key_secret_annotations(team, user)},
                            "data": {"api_key": "c2VjcmV0LWtleQ=="}})
    return plan


def run_doctor(h: Harness, *args: str):
    from click.testing import CliRunner

    runner = CliRunner()
    return runner.invoke(cli_cluster.doctor_command, ["-f", str(h.plan_path), *h.cli_args(), *args],
                         catch_exceptions=False)


def test_a_healthy_install_is_all_ok(harness: Harness) -> None:  # noqa: F811
    install(harness)
    result = run_doctor(harness, "--no-prometheus")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines and all(line.startswith("ok ") for line in lines), result.output
    checks = {line.split()[1].rstrip(":") for line in lines}
    assert {"crds", "policies", "limits", "key-secrets"} <= checks
    assert "c2VjcmV0LWtleQ" not in result.output and "secret-key" not in result.output


def test_a_key_secret_without_its_tier_fails_with_the_fix(harness: Harness) -> None:  # noqa: F811
    plan = install(harness)
    team, user = plan.users()[0]
    annotations = key_secrets.key_secret_annotations(team, user)
    annotations.pop(c.ANNOTATION_TIER)
    namespace = plan.integrations.gateway.api_key.secret_namespace
    harness.apply_as("keys", {"apiVersion": "v1", "kind": "Secret",
                              "metadata": {"name": user.api_key.secret_name, "namespace": namespace,
                                           "labels": key_secrets.key_secret_labels(),
                                           "annotations": annotations}}, force=True)
    # Server-side apply of the same manager drops the annotation it no longer sends.
    result = run_doctor(harness, "--no-prometheus", "--format", "json")
    findings = json.loads(result.output)
    failed = [f for f in findings if f["status"] == "fail"]
    assert result.exit_code == 4
    assert len(failed) == 1 and failed[0]["check"] == "key-secrets"
    assert user.id in failed[0]["message"] and c.ANNOTATION_TIER in failed[0]["message"]
    assert failed[0]["fix"]


def test_a_policy_the_operator_did_not_enforce_fails(harness: Harness) -> None:  # noqa: F811
    install(harness)
    rlp = next(o for o in harness.manifests() if o["kind"] == "RateLimitPolicy")
    harness.apply_as("kuadrant-operator", {
        "apiVersion": rlp["apiVersion"], "kind": "RateLimitPolicy",
        "metadata": {"name": rlp["metadata"]["name"], "namespace": rlp["metadata"]["namespace"]},
        "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok"},
                                  {"type": "Enforced", "status": "False", "reason": "Unknown",
                                   "message": "limitador not ready"}]}})
    result = run_doctor(harness, "--no-prometheus")
    assert result.exit_code == 4
    bad = [line for line in result.output.splitlines() if line.startswith("fail")]
    assert bad == [line for line in bad if "RateLimitPolicy" in line and "not Enforced" in line and "limitador not ready" in line]
    assert len(bad) == 1


def test_usage_without_identity_labels_and_unpriced_gpus_fail(harness: Harness, monkeypatch) -> None:  # noqa: F811
    plan = install(harness)

    def query(expr: str) -> list[Sample]:
        if "authorized_calls" in expr:  # Limitador series without user, team, tier: no TelemetryPolicy effect
            return [Sample({"user": "", "team": "", "tier": ""}, Decimal(3))]
        if "node_gpu_hourly_cost" in expr:
            return []
        return [Sample({"__name__": "x"}, Decimal(1))]

    monkeypatch.setattr(cli_cluster, "prometheus_query", lambda url, timeout: query)
    result = run_doctor(harness, "--format", "json")
    findings = {(f["check"], f["status"]) for f in json.loads(result.output)}
    assert ("usage", "fail") in findings
    if plan.gpu_instances and plan.integrations.cost_engine.type != "none":
        assert ("gpu-prices", "fail") in findings
    assert result.exit_code == 4


def test_worst_status_decides():
    assert doctor.worst([]) == "ok"
    assert doctor.worst([doctor.Finding("a", "ok", ""), doctor.Finding("b", "warn", "")]) == "warn"
    assert doctor.worst([doctor.Finding("a", "fail", ""), doctor.Finding("b", "warn", "")]) == "fail"


def test_crd_serving_another_version_fails():
    class Cluster:
        def missing_crds(self, kinds):
            return []

        def get(self, api_version, kind, name, namespace):
            return {"spec": {"versions": [{"name": "v1beta3", "served": True}]}}

    objects = [{"apiVersion": "kuadrant.io/v1", "kind": "AuthPolicy", "metadata": {"name": "a", "namespace": "n"}}]
    [finding] = doctor.check_crds(Cluster(), objects)
    assert finding.status == "fail" and "serves v1beta3" in finding.message and "writes v1" in finding.message


@pytest.mark.parametrize("kind, plural", [("AuthPolicy", "authpolicies"), ("Limitador", "limitadors"),
                                          ("ServiceMonitor", "servicemonitors")])
def test_plural(kind, plural):
    assert doctor.plural(kind) == plural


def test_gpu_prices_off_the_plan_fail_with_the_engine_restart_fix(bundled_plan):
    from costplan.chargeback.gpu_check import GPU_PRICE_QUERY, check_gpu_prices

    plan = bundled_plan("prod")
    # g5.xlarge at the plan's rate; p4d.24xlarge 730 times too cheap (monthly prices read as hourly).
    samples = [Sample({"node": "a", "instance_type": "g5.xlarge"}, Decimal("1.006")),
               Sample({"node": "b", "instance_type": "p4d.24xlarge"}, Decimal("0.005611747"))]
    [finding] = doctor.check_gpu_prices(plan, lambda expr: samples if expr == GPU_PRICE_QUERY else [],
                                        check_gpu_prices, GPU_PRICE_QUERY)
    assert finding.status == "fail" and "node b" in finding.message and "restart" in finding.fix
