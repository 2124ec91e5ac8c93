"""End to end against a real Prometheus: backfilled spend series → `costplan report` → exact CSV totals.

A Prometheus server (the Debian ``prometheus`` binary) runs on 127.0.0.1 on a
free port with a temporary data directory filled by ``promtool tsdb
create-blocks-from openmetrics``. The series are the ones reports and
dashboards read (``conventions.OUTPUT_METRICS``), written as the spend rules
record them: hourly amounts stamped at the top of each hour. The same server
then answers every dashboard panel query once.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.chargeback.promapi import PrometheusClient
from costplan.cli.chargeback import report_command
from costplan.core import conventions as c
from costplan.generators import grafana
from costplan.output.build import compile_plan
from costplan.plan.load import load_plan
from tests import promserver
from tests.conftest import PLAN

UTC = UTC
STEP = timedelta(hours=1)
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="needs the Debian prometheus package (prometheus and promtool binaries)",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def steps(first: str, count: int) -> list[datetime]:
    start = at(first)
    return [start + i * STEP for i in range(count)]


ML = {"team": "ml-research", "user": "premiumuser1", "tier": "premium", "model": "claude-sonnet", "cost_center": "CC-1001"}
PLATFORM = {"team": "platform", "user": "batch-runner", "tier": "enterprise", "model": "mixtral-batch", "cost_center": "CC-0001"}
ML_USAGE = {k: v for k, v in ML.items() if k != "cost_center"} | {"source": "envoy-ai", "model_name": "claude-3-sonnet"}
PLATFORM_USAGE = {k: v for k, v in PLATFORM.items() if k != "cost_center"} | {"source": "vllm", "model_name": "mixtral"}
SUPPORT = {"team": "customer-support", "user": "freeuser1", "tier": "free", "model": "qwen3-0-6b", "cost_center": "CC-2040"}
DASHBOARD_TIME = at("2025-03-10T05:00:00Z")


def series() -> dict[str, list[tuple[dict, datetime, str]]]:
    """Samples per metric: (labels, timestamp, value); hourly amounts at the top of the hour."""
    spend = []
    # ml-research: 12 hours of 0.0125 on 3 March = 0.15 ...
    spend += [(ML, t, "0.0125") for t in steps("2025-03-03T01:00:00Z", 12)]
    # ... plus the hour that closes exactly at the end of March (it covers March) = 7.
    spend += [(ML, at("2025-04-01T00:00:00Z"), "7")]
    # Hours that cover February: one closing exactly at 1 March 00:00, one before.
    spend += [(ML, at("2025-02-28T23:00:00Z"), "50"), (ML, at("2025-03-01T00:00:00Z"), "100")]
    # platform: 20 hours of 0.96 on 10 March = 19.2.
    spend += [(PLATFORM, t, "0.96") for t in steps("2025-03-10T01:00:00Z", 20)]
    # customer-support: the last hour of March = 0.002 ...
    spend += [(SUPPORT, at("2025-03-31T23:00:00Z"), "0.002")]
    # ... and an hour of April, which is not March's.
    spend += [(SUPPORT, at("2025-04-01T01:00:00Z"), "3")]

    requests = [(ML_USAGE, t, "5") for t in steps("2025-03-03T01:00:00Z", 12)]
    requests += [(ML_USAGE, at("2025-03-01T00:00:00Z"), "1000")]
    requests += [(PLATFORM_USAGE, t, "24") for t in steps("2025-03-10T01:00:00Z", 20)]
    tokens = [({**ML_USAGE, "token_type": "input"}, t, "1000") for t in steps("2025-03-03T01:00:00Z", 12)]
    tokens += [({**ML_USAGE, "token_type": "output"}, t, "250") for t in steps("2025-03-03T01:00:00Z", 12)]
    tokens += [({**PLATFORM_USAGE, "token_type": "input"}, t, "40000") for t in steps("2025-03-10T01:00:00Z", 20)]

    window = steps("2025-03-10T01:00:00Z", 20)
    gpu = [({"namespace": "llm-batch", "team": "platform", "cost_center": "CC-0001", "gpu_instance": "p4d-24xlarge"},
            t, "32.7726") for t in window]
    idle = [({"node": "gpu-1", "instance_type": "g5.xlarge", "gpu_instance": "g5-xlarge"}, t, "1.006") for t in window]
    per_request = [({"model": "qwen3-0-6b"}, t, "0.002") for t in window]
    per_million = [({"model": "claude-sonnet"}, t, "6") for t in window]
    plan = load_plan(PLAN)
    utilization = []
    for budget in plan.all_budgets():
        labels = {"budget": budget.name, "period": budget.period}
        if budget.team:
            labels["team"] = budget.team
        utilization += [(labels, t, "0.25") for t in window]
    limited = [({"source": "limitador", "team": "ml-research", "tier": tier.name}, t, "0.05")
               for tier in plan.tiers for t in window]
    return {
        c.METRIC_SPEND_HOURLY: spend,
        c.METRIC_USAGE_REQUESTS_HOURLY: requests,
        c.METRIC_USAGE_TOKENS_HOURLY: tokens,
        c.METRIC_COST_PER_REQUEST: per_request,
        c.METRIC_COST_PER_MILLION_TOKENS: per_million,
        c.METRIC_GPU_COST_BY_TEAM_HOURLY: gpu,
        c.METRIC_GPU_IDLE_COST_HOURLY: idle,
        c.METRIC_BUDGET_UTILIZATION: utilization,
        c.METRIC_RATE_LIMITED_RATIO: limited,
    }


def openmetrics(data: dict[str, list[tuple[dict, datetime, str]]]) -> str:
    """OpenMetrics text for promtool: gauges, timestamps in seconds, ``# EOF``."""
    lines = []
    for metric, samples in sorted(data.items()):
        lines.append(f"# TYPE {metric} gauge")
        for labels, moment, value in sorted(samples, key=lambda s: (sorted(s[0].items()), s[1])):
            body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            lines.append(f"{metric}{{{body}}} {value} {int(moment.timestamp())}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    server = promserver.PrometheusServer(work, work / "data")
    promserver.backfill_openmetrics(openmetrics(series()), server.data_dir, work)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def run_report(url: str, *args: str):
    result = CliRunner().invoke(report_command, ["-f", str(PLAN), "--prometheus-url", url, *args])
    assert result.exit_code == 0, result.stderr
    return result


def test_march_chargeback_by_team_is_exact(prometheus_url):
    result = run_report(prometheus_url, "--month", "2025-03", "--group-by", "team")
    rows = {r["team"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    # Hand-computed: ml-research 12 x 0.0125 + 7 (the hour closing 1 April 00:00);
    # platform 20 x 0.96; customer-support 0.002. February's and April's hours excluded.
    assert {team: r["cost"] for team, r in rows.items()} == {
        "platform": "19.2000000000",
        "ml-research": "7.1500000000",
        "customer-support": "0.0020000000",
    }
    assert rows["ml-research"]["requests"] == "60"  # 12 x 5; the 1000 at 1 March 00:00 is February's
    assert rows["ml-research"]["input_tokens"] == "12000"
    assert rows["ml-research"]["output_tokens"] == "3000"
    assert rows["platform"]["requests"] == "480"  # 20 x 24
    assert rows["platform"]["cost_center"] == "CC-0001"
    assert "read 2025-03-31 (31/31)" in result.stderr


def test_all_files_and_focus_total(prometheus_url, tmp_path: Path):
    run_report(prometheus_url, "--month", "2025-03", "--output-dir", str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "chargeback-base-2025-03-by-cost-center.csv",
        "chargeback-base-2025-03-by-model.csv",
        "chargeback-base-2025-03-by-team.csv",
        "chargeback-base-2025-03-by-user.csv",
        "chargeback-base-2025-03.csv",
        "chargeback-base-2025-03.json",
        "focus-base-2025-03.csv",
    ]
    focus = list(csv.DictReader((tmp_path / "focus-base-2025-03.csv").open()))
    assert sum(Decimal(r["BilledCost"]) for r in focus) == Decimal("26.3520000000")
    # Daily charge periods: ml-research on 3 March and on 31 March (the hour closing at midnight).
    ml = sorted((r["ChargePeriodStart"], r["BilledCost"]) for r in focus if r["x_Team"] == "ml-research")
    assert ml == [("2025-03-03T00:00:00Z", "0.1500000000"), ("2025-03-31T00:00:00Z", "7.0000000000")]
    platform = next(r for r in focus if r["x_Team"] == "platform")
    assert platform["ListCost"] == "24.0000000000"  # enterprise pays 0.8 of list: 19.2 / 0.8


def test_custom_range(prometheus_url):
    result = run_report(prometheus_url, "--start", "2025-03-10T00:00:00Z", "--end", "2025-03-10T10:00:00Z",
                        "--group-by", "user")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["user"], r["cost"]) for r in rows] == [("batch-runner", "9.6000000000")]  # 10 x 0.96


def test_empty_period_is_a_clear_error(prometheus_url):
    result = CliRunner().invoke(report_command, ["-f", str(PLAN), "--prometheus-url", prometheus_url,
                                                 "--month", "2024-06"])
    assert result.exit_code == 4
    assert "has no costplan:spend:increase1h samples" in result.stderr
    assert result.stdout == ""


def test_every_dashboard_query_returns_data(prometheus_url):
    client = PrometheusClient(prometheus_url)
    model = grafana.build_dashboard(load_plan(PLAN))
    empty = []
    for title, expr in grafana.panel_queries(model):
        if not client.query(grafana.resolve_variables(expr, 3 * 3600), DASHBOARD_TIME):
            empty.append(title)
    assert empty == []


def test_generated_rules_record_the_series_outputs_read(bundled_plan):
    """Once the spend rules exist, they must record every series reports and dashboards read."""
    recorded = set()
    for artifact in compile_plan(bundled_plan()):
        if artifact.is_manifest and artifact.kind == "PrometheusRule":
            for group in artifact.data["spec"]["groups"]:
                recorded |= {rule["record"] for rule in group["rules"] if "record" in rule}
    if not recorded:
        pytest.skip("the spend-rules generator emits no recording rules yet")
    assert set(c.OUTPUT_METRICS) - recorded == set()
