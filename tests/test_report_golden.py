"""The report's files, byte for byte, for a month of realistic series in a real Prometheus.

``tests/report_data.py`` writes a month of spend and usage series as the
hourly rules record them (every hour repeated at each evaluation of the next
hour, missed evaluations, missing hours, nine-decimal amounts); they are
backfilled into the Debian ``prometheus`` with ``promtool tsdb
create-blocks-from openmetrics``. ``costplan report --output-dir`` then
writes every view and format, compared with ``tests/golden/report/``.

The golden files were written by the report as it was before its queries
were batched, so any change to how the report reads Prometheus must keep
every byte: the same money to the last decimal, the same rows, the same
order. Cases: the bundled plan (UTC) for March 2025; a custom range with
sub-hour ends; the same plan in Europe/Berlin for March 2025 (a 23-hour day
on 30 March). Refresh with ``COSTPLAN_UPDATE_GOLDEN=1`` only for an
intended change, and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.chargeback import report_command
from tests import promserver, report_data
from tests.conftest import PLAN, ROOT
from tests.promserver import PROMETHEUS, PROMTOOL

pytestmark = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=promserver.MISSING)

GOLDEN = ROOT / "tests" / "golden" / "report"
UPDATE = os.environ.get("COSTPLAN_UPDATE_GOLDEN") == "1"


def berlin_plan(directory: Path) -> Path:
    text = PLAN.read_text(encoding="utf-8")
    assert "  timezone: UTC\n" in text
    path = directory / "costplan.yaml"
    path.write_text(text.replace("  timezone: UTC\n", "  timezone: Europe/Berlin\n"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    server = promserver.PrometheusServer(work, work / "data")
    promserver.backfill_openmetrics(report_data.openmetrics(), server.data_dir, work, timeout=300)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


CASES = {
    "utc-2025-03": ("utc", ["--month", "2025-03"]),
    "utc-range": ("utc", ["--start", "2025-03-09T22:30:00Z", "--end", "2025-03-12T05:10:00Z"]),
    "berlin-2025-03": ("berlin", ["--month", "2025-03"]),
}


def report_files(url: str, plan: Path, args: list[str], out: Path, extra: list[str] = ()) -> dict[str, bytes]:
    result = CliRunner().invoke(report_command, ["-f", str(plan), "--prometheus-url", url, *args, "-o", str(out),
                                                 *extra])
    assert result.exit_code == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("case", sorted(CASES))
def test_report_files_match_golden(prometheus_url, tmp_path, case):
    which, args = CASES[case]
    plan = PLAN if which == "utc" else berlin_plan(tmp_path)
    files = report_files(prometheus_url, plan, args, tmp_path / "out")
    golden = GOLDEN / case
    if UPDATE:
        golden.mkdir(parents=True, exist_ok=True)
        for old in golden.iterdir():
            old.unlink()
        for name, body in files.items():
            (golden / name).write_bytes(body)
    expected = {p.name: p.read_bytes() for p in sorted(golden.iterdir())} if golden.is_dir() else {}
    assert expected, f"no golden files in {golden}: run with COSTPLAN_UPDATE_GOLDEN=1"
    assert sorted(files) == sorted(expected)
    for name in expected:
        assert files[name] == expected[name], f"{case}/{name} differs from the golden file"
