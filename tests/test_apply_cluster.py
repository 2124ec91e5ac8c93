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
    test_a_parent_written_by_another_tool_is_refused,
    test_a_price_change_changes_exactly_the_objects_it_affects,
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
