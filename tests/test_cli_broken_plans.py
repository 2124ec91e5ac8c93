"""Every broken plan of the schema and check suites, through `costplan build -o`.

As a user meets them: exit 3, the expected `file:line:column: pointer`
line on stderr, nothing on stdout, no traceback, and an existing output
directory left exactly as it was.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from costplan.cli.app import main
from tests import test_checks, test_schema

CASES = (
    [(c.id, test_schema.patched(*c.patches), None, ("costplan.yaml", c.where, c.pointer)) for c in test_schema.BROKEN]
    + [(c.id, test_checks.patched(*c.patches), None, ("costplan.yaml", *c.expected[0][:2])) for c in test_checks.BROKEN]
    + [
        (c.id, test_checks.MINIMAL.read_text(), c.overlay, c.expected[:3])
        for c in test_checks.BROKEN_OVERLAYS
    ]
)


def test_there_are_at_least_thirty_distinct_broken_plans():
    assert len({case[0] for case in CASES}) >= 30


@pytest.mark.parametrize("case_id, plan, overlay, expected", CASES, ids=[c[0] for c in CASES])
def test_broken_plan_fails_the_build_cleanly(case_id, plan, overlay, expected, tmp_path, monkeypatch):
    (tmp_path / "costplan.yaml").write_text(plan, encoding="utf-8")
    args = ["build", "-f", "costplan.yaml", "-o", "out"]
    if overlay is not None:
        (tmp_path / "environments").mkdir()
        (tmp_path / "environments" / "x.yaml").write_text(overlay, encoding="utf-8")
        args += ["--env", "x"]
    previous = tmp_path / "out" / ("x" if overlay is not None else "base") / "kept.yaml"
    previous.parent.mkdir(parents=True)
    previous.write_text("previous build\n")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 3, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    file, where, pointer = expected
    assert f"{file}:{where}: {pointer or '/'}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert [str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()] == [
        str(previous.relative_to(tmp_path / "out"))
    ]
    assert previous.read_text() == "previous build\n"
