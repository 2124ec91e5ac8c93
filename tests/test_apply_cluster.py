"""The ``test_apply.py`` scenarios against a real cluster.

Set ``COSTPLAN_TEST_KUBECONFIG`` to a kubeconfig (a kind or k3d cluster with
the Kuadrant and Prometheus Operator CRDs installed) to run them; otherwise
they are skipped. Every test uses its own plan name and namespaces (a random
suffix) and deletes them afterwards, so runs never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from costplan.install.cluster import KubeCluster

# The scenarios are imported so that pytest collects them here too, where the
# ``harness`` fixture below binds them to the real cluster.
from tests.test_apply import (
    PLAN_CRDS,
    Harness,
    test_a_conflict_reports_the_three_remedies_and_force_resolves_it,
    test_a_missing_crd_is_named_before_anything_is_applied,
    test_a_no_op_apply_sends_no_writes_and_one_list_per_kind,
    test_a_parent_written_by_another_tool_is_refused,
    test_a_price_change_changes_exactly_the_objects_it_affects,
    test_a_server_gone_mid_run_through_a_proxy,
    test_apply_wait_reports_readiness_of_policies_and_cronjobs,
    test_check_and_diff_dry_run_prunes_and_report_a_refused_delete,
    test_check_mode_changes_nothing_and_exits_1_when_changes_are_pending,
    test_commands_register_in_a_click_group,
    test_first_apply_creates_every_manifest_and_records_the_applyset,
    test_namespaces_and_config_come_before_workloads_and_custom_resources,
    test_no_prune_skips_removed_objects_and_keeps_tracking_them,
    test_removing_a_team_prunes_exactly_its_objects,
    test_second_apply_is_idempotent,
    test_secret_data_is_masked_in_diffs,
)

SCENARIOS = (
    test_first_apply_creates_every_manifest_and_records_the_applyset,
    test_second_apply_is_idempotent,
    test_a_price_change_changes_exactly_the_objects_it_affects,
    test_removing_a_team_prunes_exactly_its_objects,
    test_no_prune_skips_removed_objects_and_keeps_tracking_them,
    test_check_mode_changes_nothing_and_exits_1_when_changes_are_pending,
    test_a_conflict_reports_the_three_remedies_and_force_resolves_it,
    test_a_missing_crd_is_named_before_anything_is_applied,
    test_secret_data_is_masked_in_diffs,
    test_namespaces_and_config_come_before_workloads_and_custom_resources,
    test_a_parent_written_by_another_tool_is_refused,
    test_commands_register_in_a_click_group,
    test_a_no_op_apply_sends_no_writes_and_one_list_per_kind,
    test_check_and_diff_dry_run_prunes_and_report_a_refused_delete,
    test_apply_wait_reports_readiness_of_policies_and_cronjobs,
    test_a_server_gone_mid_run_through_a_proxy,
)

KUBECONFIG = os.environ.get("COSTPLAN_TEST_KUBECONFIG")
SKIP_REASON = "set COSTPLAN_TEST_KUBECONFIG to run against a real cluster"

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason=SKIP_REASON)


class RealHarness(Harness):
    """A real API server; namespaces made for the test and removed after it."""

    real = True

    def __init__(self, tmp_path: Path, kubeconfig: str) -> None:
        super().__init__(tmp_path, uuid.uuid4().hex[:8])
        self.kubeconfig = kubeconfig
        self.cluster = KubeCluster(kubeconfig=kubeconfig, timeout=600.0)
        for namespace in self.base_namespaces:
            self.apply_as("costplan-test", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    def cli_args(self) -> list[str]:
        return ["--kubeconfig", self.kubeconfig]

    def write_plan(self, *replacements: tuple[str, str], drop_team: str | None = None) -> Path:
        missing = self.cluster.missing_crds(PLAN_CRDS)
        if missing:
            pytest.skip(f"the cluster lacks CRDs the plan needs: {', '.join(missing)}")
        return super().write_plan(*replacements, drop_team=drop_team)

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        self.cluster.apply(body, force_conflicts=force, manager=manager)

    def cleanup(self) -> None:
        for namespace in [*self.base_namespaces, f"research-{self.suffix}"]:
            self.cluster.delete("v1", "Namespace", namespace, None)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    if not KUBECONFIG:
        pytest.skip(SKIP_REASON)
    real = RealHarness(tmp_path, KUBECONFIG)
    try:
        yield real
    finally:
        real.cleanup()


def _variant(harness: Harness, tmp_path: Path, change: Any) -> Path:
    """A copy of the test kubeconfig, its current cluster and user passed through ``change``."""
    import yaml

    config = yaml.safe_load(Path(str(KUBECONFIG)).expanduser().read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    change(cluster, user)
    path = tmp_path / "variant-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_wrong_token_is_one_line_on_a_real_cluster(harness: Harness, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from costplan.cli import cluster as cli_cluster

    def wrong(cluster: dict[str, Any], user: dict[str, Any]) -> None:
        user.clear()
        user["token"] = "not-a-valid-token"

    harness.write_plan()
    kubeconfig = _variant(harness, tmp_path, wrong)
    result = CliRunner().invoke(cli_cluster.diff_command, ["-f", str(harness.plan_path), "--kubeconfig",
                                                           str(kubeconfig)], catch_exceptions=False)
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rejected the credentials (401 Unauthorized" in lines[0], result.stderr
    assert "not-a-valid-token" not in result.stderr


def test_insecure_tls_warns_once_on_a_real_cluster(harness: Harness, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from costplan.cli import cluster as cli_cluster

    def insecure(cluster: dict[str, Any], user: dict[str, Any]) -> None:
        if not str(cluster["server"]).startswith("https:"):
            pytest.skip("the test cluster is not served over TLS")
        cluster.pop("certificate-authority-data", None)
        cluster.pop("certificate-authority", None)
        cluster["insecure-skip-tls-verify"] = True

    harness.write_plan()
    kubeconfig = _variant(harness, tmp_path, insecure)
    result = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(harness.plan_path), "--kubeconfig",
                                                            str(kubeconfig)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("is not verified") == 1
