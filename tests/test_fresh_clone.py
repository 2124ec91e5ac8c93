"""A fresh clone with nothing beside it: the test command passes, reference tests skip with one reason."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_without_reference_data_the_suite_passes_and_skips_with_one_reason(tmp_path):
    missing = tmp_path / "no-reference-data"
    env = {k: v for k, v in os.environ.items() if k not in ("COSTPLAN_REQUIRE_REFERENCE", "COSTPLAN_SCHEMA_LOCATION")}
    env["COSTPLAN_REFERENCE_DATA"] = str(missing)
    files = ["tests/test_grafana.py", "tests/test_opencost.py", "tests/test_cli.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    reasons = {line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("SKIPPED")}
    assert len(reasons) == 1, reasons
    (reason,) = reasons
    assert str(missing) in reason and "COSTPLAN_REFERENCE_DATA" in reason


def test_ci_can_insist_on_the_reference_data(tmp_path):
    env = {**os.environ, "COSTPLAN_REFERENCE_DATA": str(tmp_path / "none"), "COSTPLAN_REQUIRE_REFERENCE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_names.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "reference data is missing" in result.stdout + result.stderr
