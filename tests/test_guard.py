"""``costplan guard``: decisions with hand-computed money, and reconciles through the official client.

The reconciles run against the in-repo API-server fake over HTTP
(``tests/guardfake.py``); spend comes from a fixed table standing in for the
``costplan:budget_spend`` query (the end-to-end test reads a real
Prometheus). Team research has a 1000 EUR monthly budget that throttles to
``free`` at 80 % (800 EUR) and blocks at 100 %; support has 500 EUR and
blocks at 100 %; ops has no enforcing budget and is never touched.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli import main
from costplan.core import conventions as c
from costplan.generators.kuadrant import secrets
from costplan.guard import decide
from costplan.guard.clients import KubeSecrets, PrometheusUnavailable
from costplan.guard.controller import Controller, Reconciler
from costplan.plan.enforcement import from_document, guard_config, period_end, to_document
from costplan.plan.load import load_plan
from tests.conftest import ROOT
from tests.guardfake import GuardApiServer, key_secret, kubeconfig
from tests.test_apply import FakeCluster

BUDGETS = ROOT / "tests" / "plans" / "budgets.yaml"
NS = "kuadrant-system"
BERLIN = dt.timezone(dt.timedelta(hours=1))
NOW = dt.datetime(2025, 12, 15, 12, 0, tzinfo=BERLIN)
MONTH = "month"


@pytest.fixture(scope="module")
def plan():
    return load_plan(BUDGETS, None)


@pytest.fixture(scope="module")
def config(plan):
    return guard_config(plan)


def spend(research: str = "0", support: str = "0") -> dict:
    return {("research", "monthly", MONTH): Decimal(research), ("support", "monthly", MONTH): Decimal(support)}


class Spend:
    """The budget query's answer, settable by the test; ``down`` raises as an unreachable Prometheus does."""

    def __init__(self, table: dict) -> None:
        self.table = table
        self.down = False
        self.asked: list[dt.datetime] = []

    def budget_spend(self, at: dt.datetime) -> dict:
        self.asked.append(at)
        if self.down:
            raise PrometheusUnavailable("connection refused")
        return dict(self.table)


# -- decisions ---------------------------------------------------------------

def test_thresholds_are_exact_decimal_comparisons(config):
    research = next(t for t in config.teams if t.name == "research")
    assert decide.team_state(config, research, spend("799.99"), NOW).state == decide.NORMAL
    throttled = decide.team_state(config, research, spend("800"), NOW)
    assert (throttled.state, throttled.tier) == (decide.THROTTLED, "free")
    assert decide.team_state(config, research, spend("999.99"), NOW).state == decide.THROTTLED
    blocked = decide.team_state(config, research, spend("1000.004"), NOW)
    assert blocked.state == decide.BLOCKED
    assert json.loads(blocked.detail) == {
        "budget": "monthly", "currency": "EUR", "error": "budget_exceeded", "limit": "1000", "period": "month",
        "resets": "2026-01-01T00:00:00+01:00", "spent": "1000", "team": "research",
    }


def test_periods_end_at_local_midnight_in_the_plans_timezone():
    summer = dt.datetime(2025, 3, 31, 21, 30, tzinfo=dt.UTC)  # 23:30 CEST on the 31st
    assert period_end("month", summer, "Europe/Berlin").isoformat() == "2025-04-01T00:00:00+02:00"
    assert period_end("day", summer, "Europe/Berlin").isoformat() == "2025-04-01T00:00:00+02:00"
    assert period_end("week", summer, "Europe/Berlin").isoformat() == "2025-04-07T00:00:00+02:00"
    assert period_end("rolling_7d", summer, "Europe/Berlin") is None


def test_notify_only_budgets_are_not_enforced_and_other_teams_are_absent(config):
    assert [t.name for t in config.teams] == ["research", "support"]
    support = config.teams[1]
    assert [a.action for a in support.budgets[0].actions] == ["block"]


def test_the_guard_document_round_trips(config):
    assert from_document(json.loads(json.dumps(to_document(config)))) == config


# -- reconciles against the API-server fake ---------------------------------

class Cluster:
    def __init__(self, tmp_path: Path, plan) -> None:
        self.backend = FakeCluster([NS])
        self.server = GuardApiServer(self.backend)
        self.kubeconfig = kubeconfig(tmp_path, self.server)
        labels = secrets.owned_key_labels(plan)
        for team, user in plan.users():
            self.backend.apply_as("external-secrets", key_secret(
                user.api_key.secret_name, NS, labels, secrets.key_secret_annotations(team, user)))
        # Same name pattern, but another plan's key, and a Secret that is no key at all.
        self.backend.apply_as("other", key_secret("apikey-stranger", NS, {**labels, c.LABEL_PLAN: "other"}, {}))
        self.backend.apply_as("other", key_secret("db-password", NS, {}, {}))

    def secret(self, name: str) -> dict:
        return self.backend.get("v1", "Secret", name, NS)

    def state(self, name: str) -> str:
        return decide.observed(self.secret(name)).state

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def cluster(tmp_path, plan):
    served = Cluster(tmp_path, plan)
    yield served
    served.close()


def reconciler(cluster: Cluster, config, source: Spend, now: list, **kwargs) -> Reconciler:
    kube = KubeSecrets(NS, kubeconfig=str(cluster.kubeconfig))
    logs: list = []
    r = Reconciler(config, source, kube, clock=lambda: now[0], log=logs.append, **kwargs)
    r.logs = logs  # type: ignore[attr-defined]
    return r


def test_throttle_block_release_with_events_and_audit_lines(cluster, config):
    now = [NOW]
    source = Spend(spend("850", "100"))
    r = reconciler(cluster, config, source, now)
    outcome = r.reconcile()
    assert outcome.transitions == 2  # alice and bob
    assert cluster.state("apikey-alice") == cluster.state("apikey-bob") == decide.THROTTLED
    assert cluster.secret("apikey-alice")["metadata"]["annotations"][c.ANNOTATION_BUDGET_TIER] == "free"
    assert cluster.state("apikey-carol") == decide.NORMAL
    reasons = [e["reason"] for e in cluster.server.events]
    assert reasons == ["BudgetThrottled", "BudgetThrottled"]
    assert cluster.server.events[0]["involvedObject"]["name"] == "apikey-alice"
    lines = [line for line in r.logs if line["event"] == "transition"]
    assert {(line["secret"], line["from"], line["to"]) for line in lines} == {
        ("apikey-alice", "normal", "throttled"), ("apikey-bob", "normal", "throttled")}

    source.table = spend("1000.01", "100")
    r.reconcile()
    blocked = cluster.secret("apikey-bob")["metadata"]
    assert blocked["labels"][c.LABEL_BUDGET_STATE] == decide.BLOCKED
    assert c.ANNOTATION_BUDGET_TIER not in blocked["annotations"]
    assert json.loads(blocked["annotations"][c.ANNOTATION_BUDGET_DETAIL])["spent"] == "1000.01"

    # The month turns: the budget series restarts from zero and the keys are released.
    now[0] = dt.datetime(2026, 1, 1, 0, 5, tzinfo=BERLIN)
    source.table = spend("0", "0")
    r.reconcile()
    released = cluster.secret("apikey-bob")["metadata"]
    assert c.LABEL_BUDGET_STATE not in released["labels"]
    assert c.ANNOTATION_BUDGET_DETAIL not in released["annotations"]
    # Everything external-secrets wrote is still there.
    assert released["annotations"][c.ANNOTATION_TIER] == "premium"
    assert released["labels"][c.SECRET_LABEL_APP] == c.SECRET_LABEL_APP_VALUE


def test_other_plans_secrets_and_unlabelled_secrets_are_never_touched(cluster, config):
    before = {name: cluster.secret(name) for name in ("apikey-stranger", "db-password", "apikey-dave")}
    reconciler(cluster, config, Spend(spend("5000", "5000")), [NOW]).reconcile()
    assert {name: cluster.secret(name) for name in before} == before
    touched = {name for _, name, _ in cluster.server.patches}
    assert touched == {"apikey-alice", "apikey-bob", "apikey-carol"}


def test_a_reconcile_with_nothing_to_change_patches_nothing(cluster, config):
    r = reconciler(cluster, config, Spend(spend("1200", "600")), [NOW])
    r.reconcile()
    patches = cluster.server.count("PATCH")
    second = r.reconcile()
    assert second.transitions == 0 and cluster.server.count("PATCH") == patches
    assert second.api_calls == 3  # one GET per owned key, nothing else


def test_dry_run_logs_transitions_but_writes_nothing(cluster, config):
    r = reconciler(cluster, config, Spend(spend("1200")), [NOW], dry_run=True)
    outcome = r.reconcile()
    assert outcome.transitions == 2 and outcome.patched == 0
    assert cluster.server.count("PATCH") == 0 and cluster.server.events == []
    assert all(line["dryRun"] for line in r.logs if line["event"] == "transition")


def test_an_override_holds_until_its_expiry(cluster, config, plan):
    result = CliRunner().invoke(main, ["budget", "override", "research", "--until", "2025-12-20T00:00:00+01:00",
                                       "-f", str(BUDGETS), "--kubeconfig", str(cluster.kubeconfig)])
    assert result.exit_code == 0, result.output
    assert cluster.secret("apikey-alice")["metadata"]["annotations"][c.ANNOTATION_BUDGET_OVERRIDE] == \
        "2025-12-20T00:00:00+01:00"
    assert c.ANNOTATION_BUDGET_OVERRIDE not in cluster.secret("apikey-carol")["metadata"]["annotations"]
    now = [NOW]
    r = reconciler(cluster, config, Spend(spend("1500", "600")), now)
    r.reconcile()
    assert cluster.state("apikey-alice") == decide.NORMAL and cluster.state("apikey-carol") == decide.BLOCKED
    now[0] = dt.datetime(2025, 12, 20, 0, 0, 1, tzinfo=BERLIN)
    r.reconcile()
    assert cluster.state("apikey-alice") == decide.BLOCKED


def test_an_override_time_without_offset_is_refused(cluster):
    result = CliRunner().invoke(main, ["budget", "override", "research", "--until", "2025-12-20T00:00:00",
                                       "-f", str(BUDGETS), "--kubeconfig", str(cluster.kubeconfig)])
    assert result.exit_code == 2 and "offset" in result.output
    assert cluster.server.count("PATCH") == 0


@pytest.mark.parametrize("mode, expected", [("open", decide.NORMAL), ("closed", decide.BLOCKED)])
def test_prometheus_outage_holds_then_follows_fail_mode(cluster, config, mode, expected):
    cfg = type(config)(**{**config.__dict__, "fail_mode": mode})
    now = [NOW]
    source = Spend(spend("850"))
    r = reconciler(cluster, cfg, source, now)
    r.reconcile()
    assert cluster.state("apikey-alice") == decide.THROTTLED
    source.down = True
    now[0] = NOW + dt.timedelta(seconds=119)  # failAfter is 2m: keys keep their state
    assert r.reconcile().held
    assert cluster.state("apikey-alice") == decide.THROTTLED
    now[0] = NOW + dt.timedelta(seconds=121)
    outcome = r.reconcile()
    assert not outcome.held and not outcome.prometheus_up
    assert cluster.state("apikey-alice") == cluster.state("apikey-carol") == expected
    if mode == "closed":
        detail = json.loads(cluster.secret("apikey-carol")["metadata"]["annotations"][c.ANNOTATION_BUDGET_DETAIL])
        assert detail["error"] == "budget_unknown"


# -- the controller's endpoints -----------------------------------------------

def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_webhook_wakes_the_loop_and_endpoints_answer(cluster, config):
    source = Spend(spend("0"))
    r = reconciler(cluster, config, source, [NOW])
    controller = Controller(r, period=3600, listen=("127.0.0.1", 0))
    controller.serve()
    host, port = controller.address
    base = f"http://{host}:{port}"
    assert get(f"{base}/readyz")[0] == 503
    import threading

    loop = threading.Thread(target=controller.run, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while controller.completed < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/readyz")[0] == 200
        source.table = spend("900")
        request = urllib.request.Request(f"{base}/webhook", data=b'{"status":"firing"}', method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        deadline = time.monotonic() + 10
        while controller.completed < 2 and time.monotonic() < deadline:  # the pass the webhook started
            time.sleep(0.02)
        assert cluster.state("apikey-alice") == decide.THROTTLED  # long before the 1h period
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert 'costplan_guard_transitions_total{state="throttled"} 2' in metrics
        assert "costplan_guard_webhooks_total 1" in metrics
        assert 'costplan_guard_keys{state="throttled"} 2' in metrics
    finally:
        controller.shutdown()
        loop.join(timeout=5)


def test_guard_once_dry_run_from_the_cli(cluster, tmp_path):
    result = CliRunner().invoke(main, ["guard", "-f", str(BUDGETS), "--kubeconfig", str(cluster.kubeconfig),
                                       "--prometheus-url", "http://127.0.0.1:9", "--once", "--dry-run"])
    # Prometheus is unreachable and failAfter (2m) has not passed: keys are held, nothing is written.
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["held"] is True and summary["patched"] == 0
    assert cluster.server.count("PATCH") == 0


def test_a_failed_pass_is_logged_without_the_api_response_and_the_loop_goes_on(cluster, config):
    from kubernetes.client.exceptions import ApiException

    class Failing(KubeSecrets):
        def get(self, name):
            self.calls += 1
            error = ApiException(status=500, reason="Internal Server Error")
            error.body = '{"data": {"api_key": "c2VjcmV0"}}'
            raise error

    r = Reconciler(config, Spend(spend("0")), Failing(NS, kubeconfig=str(cluster.kubeconfig)), clock=lambda: NOW)
    logs: list = []
    r.log = logs.append
    controller = Controller(r, period=0.01, listen=("127.0.0.1", 0))
    import threading

    loop = threading.Thread(target=controller.run, daemon=True)
    loop.start()
    deadline = time.monotonic() + 10
    while controller.completed < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    controller.shutdown()
    loop.join(timeout=5)
    assert controller.completed >= 3 and r.metrics.reconciles["failed"] >= 3
    failures = [line for line in logs if line["event"] == "reconcile_failed"]
    assert failures[0]["error"] == "ApiException: HTTP 500 Internal Server Error"
    assert all("c2VjcmV0" not in json.dumps(line) for line in logs)
