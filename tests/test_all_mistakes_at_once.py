"""Schema errors do not hide semantic errors: one run reports every mistake where the plan can be read."""

from __future__ import annotations

from click.testing import CliRunner

from costplan.cli.app import main
from tests.conftest import patched_minimal

SEVEN = (
    ("  currency: USD", "  currency: XYZ"),  # currency (semantic)
    ("  timezone: UTC", "  timezone: Mars/Olympus"),  # timezone (semantic)
    ("    tier: free\n", "    tier: gold\n"),  # unknown-reference (semantic)
    ("[80, 100]", "[100, 80]"),  # thresholds-order (semantic)
    ("      - id: carol", "      - id: carol\n        nmae: x"),  # unknown-key (schema)
    ("    amount: 1000", "    amount: lots"),  # schema: not money
    ("    window: 30d", "    window: 1y"),  # budget-window (semantic)
)


def test_seven_mistakes_are_seven_findings_in_one_run(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(*SEVEN))
    result = CliRunner().invoke(main, ["validate", "-f", str(plan)], catch_exceptions=False)
    assert result.exit_code == 3
    checks = sorted(line.rsplit("[", 1)[1].rstrip("]") for line in result.stderr.splitlines() if line.endswith("]"))
    assert checks == sorted(["currency", "timezone", "unknown-reference", "thresholds-order", "unknown-key",
                             "money", "budget-window"]), result.stderr


def test_a_plan_out_of_shape_does_not_crash_the_checks(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(("teams:\n  - name: research", "teams: 7\nx:\n  - name: research")))
    result = CliRunner().invoke(main, ["validate", "-f", str(plan)], catch_exceptions=False)
    assert result.exit_code == 3 and "Traceback" not in result.output and "costplan failed" not in result.output
