"""``costplan doctor`` against a real cluster (``COSTPLAN_TEST_KUBECONFIG``), else skipped.

The operator sets policy status on a real cluster, so only what holds
everywhere is asserted: after ``costplan apply`` the build's kinds are
served, every check prints one line with a known status, and the exit code
follows the worst of them.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from costplan.cli import cluster as cli_cluster
from tests.test_apply_cluster import KUBECONFIG, SKIP_REASON, harness  # noqa: F401  (the real-cluster fixture)

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason=SKIP_REASON)


def test_doctor_reports_every_check_after_apply(harness) -> None:  # noqa: F811
    harness.write_plan()
    assert harness.cli("apply").exit_code == 0
    result = CliRunner().invoke(cli_cluster.doctor_command,
                                ["-f", str(harness.plan_path), *harness.cli_args(), "--no-prometheus"],
                                catch_exceptions=False)
    lines = result.output.strip().splitlines()
    statuses = [line.split()[0] for line in lines]
    assert lines and set(statuses) <= {"ok", "warn", "fail"}
    assert lines[0].startswith("ok   crds:"), result.output
    expected = 4 if "fail" in statuses else 1 if "warn" in statuses else 0
    assert result.exit_code == expected
