"""The loop end to end: real Prometheus, real Alertmanager, ``costplan guard``, key Secrets.

Part one replays a month end in the plan's timezone (Europe/Berlin, summer
time): hourly team spend is backfilled, the plan's own recording rules are
evaluated over it by promtool against the real server (layer by layer, as
``tests/promserver.py`` explains), and the guard, its clock set to each
moment in turn, reads ``costplan:budget_spend`` from that server at that
moment and patches the key Secrets through the official client against the
API-server fake. research (1000 EUR, throttle to free at 80 %, block at
100 %) spends 500 EUR in the hour to 12:00 CEST, 300 EUR to 13:00 (800 EUR:
80 %) and 250 EUR to 16:00 (1050 EUR); support spends 100 of 500 EUR.

Part two runs the notification path live: Prometheus evaluates the plan's
generated budget alert rules every second over a budget series it scrapes
from the test, fires to a real Alertmanager running the generated route
tree, which posts to the guard's webhook on 127.0.0.1. The guard's period
is an hour, so only the webhook can explain a transition within the test;
with Alertmanager stopped, the next periodic reconcile makes up for the
lost webhook.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costplan.cli import main
from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators import alertmanager
from costplan.generators.kuadrant import secrets
from costplan.generators.prometheus import rules_files
from costplan.guard import decide
from costplan.guard.clients import KubeSecrets, Prometheus
from costplan.guard.controller import Controller, Reconciler
from costplan.plan.enforcement import guard_config
from costplan.plan.load import load_plan
from tests import promserver
from tests.conftest import ROOT
from tests.guardfake import GuardApiServer, key_secret, kubeconfig
from tests.test_apply import FakeCluster

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    promserver.PROMETHEUS is None or promserver.PROMTOOL is None or ALERTMANAGER is None,
    reason="needs the Debian prometheus and prometheus-alertmanager packages",
)
BUDGETS = ROOT / "tests" / "plans" / "budgets.yaml"
NS = "kuadrant-system"
UTC = dt.UTC
INPUT = c.spend_rollup("team", c.WINDOW_HOUR)  # what period-to-date budget spend sums
DATA_START = dt.datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
DATA_END = dt.datetime(2025, 4, 1, 3, 0, tzinfo=UTC)
SPEND = {  # hourly amounts, by the end of the clock hour they cover
    "research": {"2025-03-31T10:00:00Z": "500", "2025-03-31T11:00:00Z": "300", "2025-03-31T14:00:00Z": "250",
                 "2025-03-31T23:00:00Z": "10"},
    "support": {"2025-03-31T10:00:00Z": "100"},
}
COST_CENTERS = {"research": "CC-1", "support": "CC-2"}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def openmetrics() -> str:
    lines = [f"# TYPE {INPUT} gauge"]
    # As the hourly rule records it: the closed hour's amount at every 5-minute
    # evaluation of the hour that follows.
    for team, samples in SPEND.items():
        for stamp, value in sorted(samples.items()):
            for minute in range(0, 60, 5):
                ms = int((at(stamp) + dt.timedelta(minutes=minute)).timestamp() * 1000)
                lines.append(f'{INPUT}{{cost_center="{COST_CENTERS[team]}",team="{team}"}} {value} '
                             f"{promserver.seconds(ms)}")
    return "\n".join(lines + ["# EOF"]) + "\n"


def budget_groups(plan) -> tuple[list[dict], dict[str, str]]:
    """The plan's rule groups cut down to what budget spend needs, the hourly team spend being input."""
    files = rules_files(plan)
    names = {doc["groups"][0]["name"]: name for name, doc in files.items()}
    groups = [{**g, "rules": [r for r in g["rules"] if r.get("record") != INPUT]}
              for doc in files.values() for g in doc["groups"]]
    return promserver.needed_rules(groups, {c.METRIC_BUDGET_SPEND}), names


class Cluster:
    def __init__(self, tmp_path: Path, plan) -> None:
        self.backend = FakeCluster([NS])
        self.server = GuardApiServer(self.backend)
        self.kubeconfig = kubeconfig(tmp_path, self.server)
        for team, user in plan.users():
            self.backend.apply_as("external-secrets", key_secret(
                user.api_key.secret_name, NS, secrets.owned_key_labels(plan), secrets.key_secret_annotations(team, user)))

    def state(self, name: str) -> str:
        return decide.observed(self.backend.get("v1", "Secret", name, NS)).state

    def states(self) -> dict[str, str]:
        return {name: self.state(name) for name in ("apikey-alice", "apikey-bob", "apikey-carol", "apikey-dave")}


@pytest.fixture(scope="module")
def month_end(tmp_path_factory):
    """A Prometheus holding the backfilled spend and the plan's budget rules evaluated over it."""
    work = tmp_path_factory.mktemp("month-end")
    plan = load_plan(BUDGETS, None)
    groups, names = budget_groups(plan)
    server = promserver.PrometheusServer(work, work / "data")
    promserver.backfill_openmetrics(openmetrics(), server.data_dir, work)
    server.start()
    try:
        for group in groups:
            for layer in promserver.rule_layers(group):
                promserver.backfill_rules(server, names[group["name"]], promserver.group_file(group, layer),
                                          DATA_START, DATA_END, "5m")
        yield server
    finally:
        server.stop()


def test_the_month_end_throttles_blocks_overrides_releases_and_follows_fail_mode(month_end, tmp_path):
    plan = load_plan(BUDGETS, None)
    cluster = Cluster(tmp_path, plan)
    now = [at("2025-03-31T10:30:00Z")]
    logs: list[dict] = []
    reconciler = Reconciler(guard_config(plan), Prometheus(month_end.url, timezone=plan.timezone),
                            KubeSecrets(NS, kubeconfig=str(cluster.kubeconfig)), clock=lambda: now[0], log=logs.append)
    try:
        def step(moment: str) -> dict[str, str]:
            now[0] = at(moment)
            reconciler.reconcile()
            return cluster.states()

        normal = {"apikey-alice": "normal", "apikey-bob": "normal", "apikey-carol": "normal", "apikey-dave": "normal"}
        assert step("2025-03-31T10:30:00Z") == normal  # 500 of 1000 EUR
        # 800 EUR (80 %) recorded with the hour to 13:00 CEST: throttled at the first reconcile after it.
        assert step("2025-03-31T11:30:00Z") == {**normal, "apikey-alice": "throttled", "apikey-bob": "throttled"}
        blocked = {**normal, "apikey-alice": "blocked", "apikey-bob": "blocked"}
        assert step("2025-03-31T14:30:00Z") == blocked  # 1050 EUR; support (100 of 500) untouched
        detail = json.loads(cluster.backend.get("v1", "Secret", "apikey-bob", NS)["metadata"]["annotations"][
            c.ANNOTATION_BUDGET_DETAIL])
        assert detail == {"budget": "monthly", "currency": "EUR", "error": "budget_exceeded", "limit": "1000",
                          "period": "month", "resets": "2025-04-01T00:00:00+02:00", "spent": "1050",
                          "team": "research"}
        assert cluster.server.count("PATCH", "apikey-dave") == cluster.server.count("PATCH", "apikey-carol") == 0

        result = CliRunner().invoke(main, ["budget", "override", "research", "--until", "2025-03-31T19:00:00+02:00",
                                           "-f", str(BUDGETS), "--kubeconfig", str(cluster.kubeconfig)])
        assert result.exit_code == 0, result.output
        assert step("2025-03-31T15:00:00Z") == normal  # the override holds ...
        assert step("2025-03-31T17:00:01Z") == blocked  # ... until 19:00 CEST

        # The month turns at midnight CEST (22:00 UTC): the April budget series starts from zero.
        assert step("2025-03-31T22:30:00Z") == normal
        assert step("2025-04-01T00:30:00Z") == normal  # 10 EUR of April's 1000
        assert step("2025-03-31T17:30:00Z") == blocked  # back in March, back to blocked: level-triggered

        # Prometheus goes away: keys keep their state for failAfter (2m), then failMode open releases them.
        month_end.stop()
        assert reconciler.reconcile().held  # unreachable since the last answer, at 17:30
        assert step("2025-03-31T17:31:00Z") == blocked
        assert step("2025-03-31T17:32:30Z") == normal
    finally:
        cluster.server.close()
        if month_end.process is None:
            month_end.start()
    transitions = [(line["secret"], line["from"], line["to"]) for line in logs if line["event"] == "transition"]
    assert ("apikey-alice", "normal", "throttled") in transitions
    assert ("apikey-alice", "throttled", "blocked") in transitions


# --------------------------------------------------------------------------
# Part two: Prometheus -> Alertmanager -> webhook -> guard, live
# --------------------------------------------------------------------------

class Exporter:
    """Serves the budget series Prometheus scrapes (standing in for the recording rules' output)."""

    def __init__(self) -> None:
        self.values = {"research": "100", "support": "0"}
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = "".join(
                    f'{c.METRIC_BUDGET_SPEND}{{budget="monthly",period="month",team="{team}"}} {value}\n'
                    for team, value in sorted(exporter.values.items())
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AlertmanagerServer:
    def __init__(self, work: Path, config: dict) -> None:
        self.work = work
        self.port = promserver.free_port()
        (work / "alertmanager.yml").write_text(dump_yaml(config))
        self.log = (work / "alertmanager.log").open("w")
        self.process = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _ok(f"http://127.0.0.1:{self.port}/-/ready"), 20, "alertmanager ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def alert_rules(plan) -> dict:
    """The plan's generated budget threshold alerts and the threshold amounts they join, evaluated every second."""
    groups = [g for doc in rules_files(plan).values() for g in doc["groups"]]
    amounts = [r for g in groups if g["name"].startswith(c.GROUP_PRICES) for r in g["rules"]
               if r.get("record") in (c.METRIC_BUDGET_AMOUNT, c.METRIC_BUDGET_THRESHOLD_AMOUNT)]
    assert len(amounts) == 7  # research 1000 at 50/80/100, support 500 at 90/100
    alerts = [r for g in groups if g["name"].startswith(c.GROUP_ALERTS) for r in g["rules"]
              if r.get("alert") == c.ALERT_BUDGET_THRESHOLD]
    assert len(alerts) == 2  # warning and critical, for every budget
    return {"groups": [{"name": c.GROUP_ALERTS, "interval": "1s", "rules": amounts + alerts}]}


def test_alerts_reach_the_guard_through_alertmanager_and_a_lost_webhook_is_made_up(tmp_path):
    plan = load_plan(BUDGETS, None)
    cluster = Cluster(tmp_path, plan)
    exporter = Exporter()
    prometheus = promserver.PrometheusServer(tmp_path, tmp_path / "prom-data")
    reconciler = Reconciler(guard_config(plan), Prometheus(prometheus.url),
                            KubeSecrets(NS, kubeconfig=str(cluster.kubeconfig)), log=lambda record: None)
    controller = Controller(reconciler, period=3600, listen=("127.0.0.1", 0))
    controller.serve()
    host, port = controller.address
    routed = dataclasses.replace(
        plan, teams=tuple(dataclasses.replace(t, contacts=()) for t in plan.teams),
        guard=dataclasses.replace(plan.guard, webhook_url=f"http://{host}:{port}{c.GUARD_WEBHOOK_PATH}"),
    )
    am = AlertmanagerServer(tmp_path, alertmanager.plain_config(routed))
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(alert_rules(plan), sort_keys=False))
    prometheus.config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]},
        "scrape_configs": [{"job_name": "budgets", "static_configs": [{"targets": [exporter.address]}]}],
    }))
    loop = threading.Thread(target=controller.run, daemon=True)
    try:
        prometheus.start()
        wait_for(lambda: Prometheus(prometheus.url).budget_spend(dt.datetime.now(UTC)), 20, "the first scrape")
        loop.start()
        wait_for(lambda: controller.completed >= 1, 10, "the first reconcile")
        assert set(cluster.states().values()) == {"normal"}

        exporter.values["research"] = "850"  # 85 % of 1000 EUR
        took = wait_for(lambda: cluster.state("apikey-alice") == cluster.state("apikey-bob") == "throttled", 60,
                        "throttling after 80 %")
        assert took < controller.period and reconciler.metrics.webhooks >= 1
        assert cluster.state("apikey-bob") == "throttled" and cluster.state("apikey-carol") == "normal"

        exporter.values["research"] = "1050"
        wait_for(lambda: cluster.state("apikey-alice") == cluster.state("apikey-bob") == "blocked", 60,
                 "blocking after 100 %")
        assert cluster.state("apikey-carol") == cluster.state("apikey-dave") == "normal"

        # Alertmanager goes down; spend drops (say, a refund): no webhook will come.
        am.stop()
        exporter.values["research"] = "100"
        passes = controller.completed
        time.sleep(3)
        assert controller.completed == passes and cluster.state("apikey-alice") == "blocked"
        reconciler.reconcile()  # the next periodic reconcile
        assert cluster.state("apikey-alice") == cluster.state("apikey-bob") == "normal"
    finally:
        controller.shutdown()
        loop.join(timeout=10) if loop.is_alive() else None
        am.stop()
        prometheus.stop()
        exporter.close()
        cluster.server.close()


# --------------------------------------------------------------------------
# The same month end against a real cluster (COSTPLAN_TEST_KUBECONFIG)
# --------------------------------------------------------------------------

REAL_KUBECONFIG = os.environ.get("COSTPLAN_TEST_KUBECONFIG")


@pytest.mark.skipif(not REAL_KUBECONFIG, reason="set COSTPLAN_TEST_KUBECONFIG to run against a real cluster")
def test_the_month_end_against_a_real_cluster(month_end):
    from kubernetes import client, config

    plan = load_plan(BUDGETS, None)
    namespace = f"costplan-guard-e2e-{uuid.uuid4().hex[:8]}"
    config.load_kube_config(config_file=REAL_KUBECONFIG)
    core = client.CoreV1Api()
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        for team, user in plan.users():
            body = key_secret(user.api_key.secret_name, namespace, secrets.owned_key_labels(plan),
                              secrets.key_secret_annotations(team, user))
            core.create_namespaced_secret(namespace, body)
        now = [at("2025-03-31T10:30:00Z")]
        guard = dataclasses.replace(guard_config(plan), secret_namespace=namespace)
        reconciler = Reconciler(guard, Prometheus(month_end.url, timezone=plan.timezone),
                                KubeSecrets(namespace, kubeconfig=REAL_KUBECONFIG), clock=lambda: now[0])

        def state(name: str) -> str:
            labels = core.read_namespaced_secret(name, namespace).metadata.labels or {}
            return labels.get(c.LABEL_BUDGET_STATE, "normal")

        for moment, expected in (("2025-03-31T11:30:00Z", "throttled"), ("2025-03-31T14:30:00Z", "blocked"),
                                 ("2025-03-31T22:30:00Z", "normal")):
            now[0] = at(moment)
            reconciler.reconcile()
            assert state("apikey-alice") == expected, moment
            assert state("apikey-carol") == "normal"
    finally:
        core.delete_namespace(namespace)
