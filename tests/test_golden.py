"""Golden files: the bundled plan's complete build output, reviewed as diffs.

Any change to generated output shows up here as a unified diff. When the
change is intended, refresh the files and review them like code:

    COSTPLAN_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
    git diff tests/golden/
"""

from __future__ import annotations

import difflib
import os

import pytest

from costplan.output import build as build_stage
from costplan.output import serialise as output
from tests.conftest import ENVIRONMENTS, PLAN, ROOT

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("COSTPLAN_UPDATE_GOLDEN") == "1"


def built_files(environment: str) -> dict[str, str]:
    result = build_stage.build(PLAN, [environment])
    return output.render_environment(result.environments[environment], result.plan_name, environment)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_build_output_matches_golden_files(environment):
    files = built_files(environment)
    golden_dir = GOLDEN / environment
    if UPDATE:
        output.write_tree(files, golden_dir)
    expected = {
        str(p.relative_to(golden_dir)): p.read_text(encoding="utf-8")
        for p in sorted(golden_dir.rglob("*"))
        if p.is_file() and p.name != output.OUTPUT_MARKER
    }
    assert expected, f"no golden files in {golden_dir}: run with COSTPLAN_UPDATE_GOLDEN=1"
    missing, extra = sorted(set(expected) - set(files)), sorted(set(files) - set(expected))
    assert not missing and not extra, f"files no longer generated: {missing}; new files: {extra}"
    diffs = []
    for path, text in files.items():
        if text != expected[path]:
            diffs.extend(
                difflib.unified_diff(
                    expected[path].splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"golden/{environment}/{path}",
                    f"built/{environment}/{path}",
                )
            )
    assert not diffs, "generated output changed (COSTPLAN_UPDATE_GOLDEN=1 to accept):\n" + "".join(diffs[:400])
