"""A fresh cluster: every object's namespace exists before the object, in either order.

Argo CD syncs by wave (Namespaces first within a wave) and creates no
namespace for the environment's Application (``CreateNamespace=true`` only
creates an Application's own destination namespace, and this one has none);
``costplan apply`` applies by stage, then wave. Both orders are replayed
against the API-server fake, which refuses an object whose namespace does
not exist, starting from a cluster with no namespace at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from costplan.core import conventions as c
from costplan.install import apply
from costplan.install.objects import group_kind, key_of, order_key, sync_wave
from costplan.output import build as build_stage
from tests.conftest import PLAN
from tests.test_apply import FakeCluster

ENVIRONMENTS = ("dev", "prod", "staging")


def objects(environment: str) -> list[dict[str, Any]]:
    result = build_stage.build(PLAN, [environment])
    return apply.desired_objects(result.environments[environment])


def fresh_cluster(bodies: list[dict[str, Any]]) -> FakeCluster:
    """No namespace at all; every CRD the objects need is installed."""
    kinds = {group_kind(key_of(b).group, key_of(b).kind) for b in bodies}
    return FakeCluster(namespaces=(), crds=kinds)


def argocd_order(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=lambda b: (sync_wave(b), b["kind"] != "Namespace"))


def costplan_order(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=lambda b: order_key(key_of(b), b))


@pytest.mark.parametrize("order", [argocd_order, costplan_order], ids=["argocd", "costplan-apply"])
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_namespace_exists_before_its_objects(environment, order):
    bodies = objects(environment)
    cluster = fresh_cluster(bodies)
    for body in order(bodies):
        cluster.apply_as("costplan", body)  # raises on a missing namespace


def test_component_namespaces_are_never_deleted_with_the_build():
    """Kuadrant's, Prometheus's, OpenCost's namespaces are theirs: costplan only makes sure they exist."""
    bodies = objects("prod")
    namespaces = {b["metadata"]["name"]: b for b in bodies if b["kind"] == "Namespace"}
    opencost = namespaces["opencost"]["metadata"]["annotations"]
    assert opencost[c.ANNOTATION_SYNC_OPTIONS] == "Prune=false"
    assert opencost[c.ANNOTATION_KEEP] == "true"
    assert opencost[c.ANNOTATION_SYNC_WAVE] == "-10"
    # Team namespaces stay costplan's own, labelled for cost attribution.
    assert c.ANNOTATION_KEEP not in namespaces["ml-research"]["metadata"].get("annotations", {})
    assert {"kuadrant-system", "monitoring", "opencost", "argocd"} <= set(namespaces)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_costplan_apply_succeeds_on_a_cluster_without_any_namespace(environment, monkeypatch):
    """The ApplySet parent lives in the Prometheus namespace: it must exist before the parent is written."""
    from click.testing import CliRunner

    from costplan.cli import cluster as cli_cluster

    bodies = objects(environment)
    cluster = fresh_cluster(bodies)
    monkeypatch.setattr(cli_cluster, "connect", lambda *args: cluster)
    result = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(PLAN), "-e", environment],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert all(cluster.get(b["apiVersion"], b["kind"], b["metadata"]["name"], b["metadata"].get("namespace"))
               for b in bodies)


def test_a_price_change_reminds_that_opencost_reads_prices_at_start(monkeypatch):
    from click.testing import CliRunner

    from costplan.cli import cluster as cli_cluster

    bodies = objects("prod")
    cluster = fresh_cluster(bodies)
    monkeypatch.setattr(cli_cluster, "connect", lambda *args: cluster)
    first = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(PLAN), "-e", "prod"], catch_exceptions=False)
    assert first.exit_code == 0 and "note:" not in first.stderr
    # Someone changed the CSV prices on the cluster: the next apply puts them back.
    csv = next(b for b in bodies if b["kind"] == "ConfigMap" and b["metadata"]["name"] == "costplan-gpu-pricing")
    cluster.apply_as("costplan", {**csv, "data": {"pricing.csv": "EndTimestamp\n"}})
    again = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(PLAN), "-e", "prod"], catch_exceptions=False)
    assert again.exit_code == 0, again.stderr
    assert "note: the cost engine reads prices at start: kubectl -n opencost rollout restart deployment/opencost" in again.stderr
