"""The same series in VictoriaMetrics give the same report as in Prometheus, byte for byte.

The month of ``tests/report_data.py`` is imported into the Debian
``victoria-metrics`` single-node server (``/api/v1/import/prometheus``, the
text format with millisecond timestamps) and ``costplan report`` runs
against it; its files are compared with the golden files
``tests/test_report_golden.py`` checks against Prometheus. What the report's
queries rely on, and VictoriaMetrics does the same way here: an instant
query's subquery steps are multiples of the step (``[86399s:1h]`` at a full
hour reads the 24 hours before it), ``last_over_time(m[1h] offset 1s)``
sees the samples of the hour before the step only, and data of 2025 is
kept (``-retentionPeriod=100y``: the default of one month would drop it).
The server is ``tests/vmserver.py``'s, the one the engine tests use.

A fleet's series (``cluster`` labels) give per-cluster rows whose team
totals are the single-cluster totals' exact sums.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.chargeback import report_command
from tests import report_data
from tests.conftest import PLAN
from tests.test_report_golden import CASES, GOLDEN, berlin_plan
from tests.vmserver import MISSING, VICTORIA_METRICS, vm_server

pytestmark = pytest.mark.skipif(VICTORIA_METRICS is None, reason=MISSING)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory) -> Iterator[str]:
    with vm_server(tmp_path_factory.mktemp("victoria")) as server:
        server.import_prometheus(report_data.prometheus_text())
        yield server.url


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[str]:
    with vm_server(tmp_path_factory.mktemp("victoria-fleet")) as server:
        server.import_prometheus(report_data.prometheus_text(clusters=True))
        yield server.url


def report_files(url: str, plan: Path, args: list[str], out: Path) -> dict[str, bytes]:
    result = CliRunner().invoke(report_command, ["-f", str(plan), "--prometheus-url", url, *args, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("case", sorted(CASES))
def test_victoriametrics_gives_prometheus_report(victoria, tmp_path, case):
    which, args = CASES[case]
    plan = PLAN if which == "utc" else berlin_plan(tmp_path)
    files = report_files(victoria, plan, args, tmp_path / "out")
    expected = {p.name: p.read_bytes() for p in sorted((GOLDEN / case).iterdir())}
    assert sorted(files) == sorted(expected)
    for name in expected:
        assert files[name] == expected[name], f"{case}/{name}: VictoriaMetrics and Prometheus disagree"


def test_a_fleet_report_splits_teams_by_cluster(fleet, tmp_path):
    files = report_files(fleet, PLAN, ["--month", "2025-03"], tmp_path / "out")
    by_team = list(csv.DictReader(io.StringIO(files["chargeback-base-2025-03-by-team.csv"].decode())))
    assert {(r["team"], r["cluster"]) for r in by_team} == {
        ("ml-research", "a"), ("ml-research", "b"), ("customer-support", "b"), ("platform", "a"),
        ("ghost-team", "a"), ("", "a")}
    by_cluster = list(csv.DictReader(io.StringIO(files["chargeback-base-2025-03-by-cluster.csv"].decode())))
    detail = list(csv.DictReader(io.StringIO(files["chargeback-base-2025-03.csv"].decode())))
    total = sum(Decimal(r["cost"]) for r in detail)
    assert sum(Decimal(r["cost"]) for r in by_team) == total == sum(Decimal(r["cost"]) for r in by_cluster)
    # Each team's lines are its clusters; their sum is the team in the JSON view, exactly.
    document = json.loads(files["chargeback-base-2025-03.json"])
    for line in document["byTeam"]:
        assert sum(Decimal(s["cost"]) for s in line["clusters"]) == Decimal(line["cost"])
    assert Decimal(document["total"]) == total
    focus = list(csv.DictReader(io.StringIO(files["focus-base-2025-03.csv"].decode())))
    assert {r["x_Cluster"] for r in focus} == {"a", "b"}
