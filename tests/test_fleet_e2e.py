"""A fleet end to end on real engines: two clusters' Prometheus, one VictoriaMetrics, vmalert, `costplan report`.

1. A fleet plan (clusters ``a`` and ``b``, the global engine VictoriaMetrics):
   team research has users in both clusters and one monthly budget of
   0.02 USD (thresholds 80 % and 100 %); team support only uses ``a``.
2. Each cluster is its own Prometheus: its raw Limitador counters are
   backfilled, and the rules of its part of the build (``clusters/<name>/``)
   are evaluated over them layer by layer with promtool, as its Prometheus
   would (see ``tests/promserver.py``). Every series they record carries
   ``cluster`` from the rules themselves.
3. The clusters' recorded series reach VictoriaMetrics with ``vmctl
   prometheus`` from each cluster's blocks. (A Prometheus remote-writes
   only what it ingests live, never backfilled history;
   ``test_remote_write_carries_the_cluster_label`` shows the live path
   with a real remote write.)
4. ``vmalert`` replays the global part's rule files over the same hours
   against VictoriaMetrics, writing every result back to it, one
   evaluation time per query (``-replay.maxDatapointsPerQuery=1``) so each
   rule sees what a live vmalert sees at that time.
5. ``costplan report`` reads VictoriaMetrics.

Hand-computed money (0.002 USD per request):

* cluster a: alice 3 requests in 00:00-01:00 and 3 in 01:00-02:00 = 0.012;
  carol (support) 4 in 00:00-01:00 = 0.008;
* cluster b: bob 2 in 00:00-01:00 and 3 in 01:00-02:00 = 0.010.

research spends 0.012 in a and 0.010 in b: 0.022 in all, over both
thresholds (0.016 and 0.02) though neither cluster alone reaches even the
first. The global view bills one hour behind the clusters: the hour
01:00-02:00 is in the clusters' series from 02:00 and in the global money
from 03:00, so the budget alerts fire from 03:00 and not before.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.core import conventions as c
from costplan.generators.prometheus import rules_files
from costplan.plan import fleet
from costplan.plan.load import load_plan
from tests import promserver, vmserver
from tests.promserver import PROMETHEUS, PROMTOOL, PrometheusServer

VMCTL = shutil.which("vmctl")
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=promserver.MISSING),
    pytest.mark.skipif(vmserver.VICTORIA_METRICS is None or vmserver.VMALERT is None or VMCTL is None,
                       reason=vmserver.MISSING),
]

START = datetime(2025, 3, 3, 0, tzinfo=UTC)
END = datetime(2025, 3, 3, 4, 30, tzinfo=UTC)
MINUTE_MS = 60_000

PLAN_YAML = """\
apiVersion: costplan.dev/v1alpha1
kind: CostPlan
metadata:
  name: fleet
  currency: USD
  timezone: UTC
integrations:
  gateway:
    namespace: llm
    targetRef:
      kind: Gateway
      name: gw
  prometheus:
    url: http://prometheus.invalid:9090
    namespace: monitoring
  secrets:
    backend: none
usageSources:
  - name: limitador
    type: kuadrant-limitador
models:
  - name: small
    modelName: Qwen/Qwen3-0.6B
    provider: self-hosted
    usageSource: limitador
    pricing:
      type: perRequest
      price: 0.002
tiers:
  - name: free
  - name: premium
teams:
  - name: research
    costCenter: CC-1
    tier: free
    users:
      - id: alice
      - id: bob
    budgets:
      - name: monthly
        amount: 0.02
        period: month
        thresholds: [80, 100]
  - name: support
    costCenter: CC-2
    tier: premium
    users:
      - id: carol
clusters:
  - name: a
  - name: b
metrics:
  engine: victoriametrics
  queryURL: http://victoria-metrics.invalid:8428
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def calls(user: str, team: str, tier: str) -> dict[str, str]:
    """``authorized_calls`` labels as the TelemetryPolicy sets them."""
    return {"limitador_namespace": "llm/gw", c.LABEL_USER: user, c.LABEL_TEAM: team, c.LABEL_TIER: tier}


USAGE = {
    "a": [
        (calls("alice", "research", "free"), [(at("2025-03-03T00:10"), 3), (at("2025-03-03T01:20"), 3)]),
        (calls("carol", "support", "premium"), [(at("2025-03-03T00:30"), 4)]),
    ],
    "b": [
        (calls("bob", "research", "free"), [(at("2025-03-03T00:40"), 2), (at("2025-03-03T01:50"), 3)]),
    ],
}


def openmetrics(cluster: str) -> str:
    first = int(START.timestamp() * 1000) + 7_000  # scrapes 7 s into each minute
    times = [first + i * MINUTE_MS for i in range(int((END - START) / timedelta(minutes=1)) + 1)]
    lines = ["# TYPE authorized_calls counter"]
    for labels, events in USAGE[cluster]:
        body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for ts in times:
            minute = datetime.fromtimestamp(ts // MINUTE_MS * 60, UTC)
            value = sum(n for when, n in events if when <= minute)
            lines.append(f"authorized_calls{{{body}}} {value} {promserver.seconds(ts)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def evaluate_cluster(work: Path, name: str, files: dict[str, dict]) -> Path:
    """The cluster's Prometheus: raw counters plus every recorded series of its part; its data directory."""
    server = PrometheusServer(work, work / "data")
    promserver.backfill_openmetrics(openmetrics(name), server.data_dir, work)
    server.start()
    try:
        for file_name, doc in files.items():
            group = doc["groups"][0]
            for layer in promserver.rule_layers(group):
                blocks = promserver.backfill_rules(server, file_name, promserver.group_file(group, layer),
                                                   START, END, group["interval"])
                assert blocks > 0, f"cluster {name}: {group['name']} recorded nothing"
    finally:
        server.stop()
    return server.data_dir


def import_into(vm: vmserver.VMServer, data_dir: Path) -> None:
    """The cluster's recorded costplan series into VictoriaMetrics, as its own migration tool reads them."""
    assert VMCTL is not None
    # vmctl draws progress bars and insists on a terminal for them: give it one.
    controller, terminal = pty.openpty()
    try:
        finished = subprocess.run(
            [VMCTL, "prometheus", "-s", f"--prom-snapshot={data_dir}", "--prom-filter-label=__name__",
             "--prom-filter-label-value=costplan:.*", f"--vm-addr={vm.url}", "--vm-disable-progress-bar"],
            stdin=terminal, stdout=terminal, stderr=terminal, timeout=120, check=False)
    finally:
        os.close(terminal)
        output = _drain(controller)
    assert finished.returncode == 0, output[-3000:]
    with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10):
        pass


def _drain(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # the terminal's other end is closed: all is read
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def replay_global(vm: vmserver.VMServer, groups: list[dict], work: Path) -> None:
    """vmalert replays the global groups, layer by layer, each layer's results searchable before the next.

    Within a layer no rule reads another (``promserver.rule_layers``); a
    later layer reads earlier ones, as a live group's rules read the rules
    above them. vmalert's own ``-replay.rulesDelay`` is a fixed pause, while
    VictoriaMetrics makes new series searchable on its own schedule, so the
    test flushes VictoriaMetrics after each layer instead of guessing a delay.
    """
    assert vmserver.VMALERT is not None
    log = work / "vmalert.log"
    for group in groups:
        layers = promserver.rule_layers(group)
        # Replay writes ALERTS series, which carry labels only; vmalert's replay mode
        # refuses the `query` template function the budget alerts' text uses
        # (app/vmalert/rule/alerting.go, execRange), so the annotations are left out here.
        alerting = [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"] if "alert" in rule]
        for index, rules in enumerate([*layers, alerting] if alerting else layers):
            path = work / f"{group['name']}-{index}.rules.yaml"
            path.write_text(yaml.safe_dump({"groups": [{**group, "rules": rules}]}, sort_keys=False))
            with log.open("a") as out:
                finished = subprocess.run(
                    [vmserver.VMALERT, f"-rule={path}", f"-datasource.url={vm.url}", f"-remoteWrite.url={vm.url}",
                     "-remoteWrite.flushInterval=100ms", f"-replay.timeFrom={promserver.rfc3339(START)}",
                     f"-replay.timeTo={promserver.rfc3339(END)}", "-replay.maxDatapointsPerQuery=1",
                     "-replay.rulesDelay=0s", "-replay.disableProgressBar", "-httpListenAddr=127.0.0.1:0"],
                    stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)
            assert finished.returncode == 0, log.read_text()[-3000:]
            with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10):
                pass
    text = log.read_text()
    assert "replay failed" not in text, text[-3000:]


@pytest.fixture(scope="module")
def fleet_view(tmp_path_factory):
    """(VictoriaMetrics, plan path) after the clusters' rules, the import and the global replay."""
    work = tmp_path_factory.mktemp("fleet")
    plan_path = work / "costplan.yaml"
    plan_path.write_text(PLAN_YAML)
    plan = load_plan(plan_path)
    parts = dict(fleet.parts(plan))
    with vmserver.vm_server(work) as vm:
        for cluster in plan.clusters:
            cluster_work = work / cluster.name
            cluster_work.mkdir()
            data_dir = evaluate_cluster(cluster_work, cluster.name, rules_files(parts[fleet.cluster_part(cluster)]))
            import_into(vm, data_dir)
        # The global groups in evaluation order: constants, the hourly money, then what reads it.
        groups = [doc["groups"][0] for doc in rules_files(parts[fleet.GLOBAL_PART]).values()]
        assert [g["name"] for g in groups] == [c.GROUP_PRICES, c.GROUP_HOURLY, c.GROUP_SPEND, c.GROUP_ALERTS]
        replay_global(vm, groups, work)
        yield vm, plan_path


def values(vm: vmserver.VMServer, expr: str, moment: datetime, key: tuple[str, ...]) -> dict[tuple[str, ...], Decimal]:
    return {tuple(s["metric"].get(k, "") for k in key): Decimal(s["value"][1]).quantize(Decimal("0.0000001"))
            for s in vm.query(expr, moment.timestamp())}


def test_each_cluster_bills_its_own_hours_one_hour_later_in_the_global_view(fleet_view):
    vm, _ = fleet_view
    spend = f"sum by (cluster, team) ({c.METRIC_SPEND_HOURLY})"
    key = ("cluster", "team")
    # The hour 00:00-01:00, in the global money from 02:00 to 03:00.
    assert values(vm, spend, at("2025-03-03T02:30"), key) == {
        ("a", "research"): Decimal("0.0060000"), ("a", "support"): Decimal("0.0080000"),
        ("b", "research"): Decimal("0.0040000"),
    }
    # 01:00-02:00 from 03:00.
    assert values(vm, spend, at("2025-03-03T03:30"), key) == {
        ("a", "research"): Decimal("0.0060000"), ("a", "support"): Decimal("0.0000000"),
        ("b", "research"): Decimal("0.0060000"),
    }
    # At 02:30 the clusters already hold 01:00-02:00; the global view does not yet.
    usage = f"sum by (cluster) ({c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY})"
    assert values(vm, usage, at("2025-03-03T02:30"), ("cluster",)) == {
        ("a",): Decimal("3.0000000"), ("b",): Decimal("3.0000000")}


def test_one_budget_adds_up_every_cluster(fleet_view):
    vm, _ = fleet_view
    budget = f'{c.METRIC_BUDGET_SPEND}{{team="research", budget="monthly"}}'
    assert values(vm, budget, at("2025-03-03T02:30"), ("team",)) == {("research",): Decimal("0.0100000")}
    assert values(vm, budget, at("2025-03-03T04:00"), ("team",)) == {("research",): Decimal("0.0220000")}
    by_cluster = (f'sum by (cluster) (sum_over_time((last_over_time({c.METRIC_SPEND_HOURLY}{{team="research"}}'
                  f'[1h] offset 1s))[3h:1h]))')
    per_cluster = values(vm, by_cluster, at("2025-03-03T04:00"), ("cluster",))
    assert per_cluster == {("a",): Decimal("0.0120000"), ("b",): Decimal("0.0100000")}
    assert all(amount < Decimal("0.016") for amount in per_cluster.values()), "neither cluster alone reaches 80 %"


def _firing(vm: vmserver.VMServer, moment: datetime) -> set[tuple[str, str]]:
    expr = f'ALERTS{{alertname="{c.ALERT_BUDGET_THRESHOLD}", alertstate="firing"}}'
    return {(s["metric"].get("team", ""), s["metric"]["threshold"]) for s in vm.query(expr, moment.timestamp())}


def test_the_global_budget_alert_fires_on_the_sum(fleet_view):
    vm, _ = fleet_view
    assert _firing(vm, at("2025-03-03T02:55")) == set()
    assert _firing(vm, at("2025-03-03T03:10")) == {("research", "80"), ("research", "100")}
    assert _firing(vm, at("2025-03-03T04:20")) == {("research", "80"), ("research", "100")}


def test_report_on_the_global_view_splits_each_team_by_cluster(fleet_view):
    vm, plan_path = fleet_view
    result = CliRunner().invoke(main, ["report", "-f", str(plan_path), "--prometheus-url", vm.url,
                                       "--month", "2025-03", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    teams = {t["team"]: t for t in report["byTeam"]}
    assert Decimal(teams["research"]["cost"]) == Decimal("0.022")
    assert {(x["cluster"], Decimal(x["cost"])) for x in teams["research"]["clusters"]} == {
        ("a", Decimal("0.012")), ("b", Decimal("0.010"))}
    assert {(x["cluster"], Decimal(x["cost"])) for x in teams["support"]["clusters"]} == {("a", Decimal("0.008"))}
    assert {(x["cluster"], Decimal(x["cost"])) for x in report["byCluster"]} == {
        ("a", Decimal("0.020")), ("b", Decimal("0.010"))}
    assert Decimal(report["total"]) == Decimal("0.030")


def test_remote_write_carries_the_cluster_label(tmp_path):
    """A cluster's Prometheus, live, remote-writing its part's constants into VictoriaMetrics.

    Its external labels add what a series lacks (``region``) and never
    replace the ``cluster`` the rules set, whatever the Prometheus calls itself.
    """
    plan_path = tmp_path / "costplan.yaml"
    plan_path.write_text(PLAN_YAML)
    part = dict(fleet.parts(load_plan(plan_path)))["clusters/a"]
    prices = rules_files(part)[f"{c.GROUP_PRICES}.rules.yaml"]
    prices["groups"][0]["interval"] = "1s"
    with vmserver.vm_server(tmp_path) as vm:
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prices))
        server = PrometheusServer(tmp_path, tmp_path / "data")
        server.config.write_text(yaml.safe_dump({
            "global": {"evaluation_interval": "1s",
                       "external_labels": {"region": "eu-west-1", "cluster": "prometheus-eu-1"}},
            "rule_files": [str(tmp_path / "rules.yaml")],
            "remote_write": [{"url": f"{vm.url}/api/v1/write",
                              "queue_config": {"batch_send_deadline": "1s", "max_backoff": "1s"}}],
        }))
        server.start()
        try:
            deadline = time.monotonic() + 60
            found: list[dict] = []
            while time.monotonic() < deadline and not found:
                with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10):
                    pass
                found = vm.query(f'{c.METRIC_MODEL_INFO}{{model="small"}}')
                time.sleep(0.5)
        finally:
            server.stop()
    assert found, "nothing arrived through remote write"
    labels = found[0]["metric"]
    assert (labels["cluster"], labels["region"], labels["model_name"]) == ("a", "eu-west-1", "Qwen/Qwen3-0.6B")


def test_vmalert_and_promtool_accept_the_same_global_rules(tmp_path):
    plan_path = tmp_path / "costplan.yaml"
    plan_path.write_text(PLAN_YAML)
    files = rules_files(dict(fleet.parts(load_plan(plan_path)))[fleet.GLOBAL_PART])
    paths = []
    for name, doc in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(tmp_path / name)
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", *map(str, paths)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"SUCCESS: \d+ rules found", checked.stdout)
    vmserver.dry_run(paths)
