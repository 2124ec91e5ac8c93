"""The budget alerts' text as a live vmalert renders it over VictoriaMetrics.

The threshold and forecast alerts are joins whose text reads the budget's
exact amounts with the ``query`` template function when an alert fires
(``alerts.budget_alerts``). promtool renders them in
``tests/test_prometheus_money.py``; here vmalert (Debian's victoria-metrics
package), which evaluates the same rules for a fleet's global part, renders
them from constant series imported into VictoriaMetrics.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from decimal import Decimal

import pytest
import yaml

from costplan.core import conventions as c
from costplan.generators.prometheus import alerts, prices
from costplan.plan.model import Budget
from tests import vmserver
from tests.promserver import free_port
from tests.test_prometheus_money import with_budgets

pytestmark = pytest.mark.skipif(vmserver.VICTORIA_METRICS is None or vmserver.VMALERT is None,
                                reason=vmserver.MISSING)


def _exposition(rules: list[dict], now_ms: int) -> str:
    """The constant rules' series (``vector(<amount>)`` with labels) as import text, sampled over the last minute."""
    lines = []
    for rule in rules:
        value = rule["expr"].removeprefix("vector(").removesuffix(")")
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(rule.get("labels", {}).items()))
        lines += [f"{rule['record']}{{{labels}}} {value} {now_ms - 10_000 * back}" for back in range(7)]
    return "\n".join(lines) + "\n"


def test_vmalert_states_the_exact_amounts_of_each_budget(tmp_path, bundled_plan):
    plan = with_budgets(bundled_plan("dev"), "ml-research", (
        Budget(name="monthly", amount=Decimal("100.25"), period="month",
               thresholds=(Decimal(50), Decimal("87.5")), team="ml-research"),
    ))
    spend = [{"record": c.METRIC_BUDGET_SPEND, "expr": "vector(90)",
              "labels": {"team": "ml-research", "budget": "monthly", "period": "month"}}]
    rules = [r for r in alerts.budget_alerts(plan) if r["alert"] == c.ALERT_BUDGET_THRESHOLD]
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": c.GROUP_ALERTS, "interval": "1s", "rules": rules}]}))
    port = free_port()
    with vmserver.vm_server(tmp_path) as vm:
        vm.import_prometheus(_exposition(prices.budget_rules(plan) + spend, int(time.time() * 1000)))
        log = (tmp_path / "vmalert.log").open("w")
        process = subprocess.Popen(
            [vmserver.VMALERT, f"-rule={path}", f"-datasource.url={vm.url}", f"-httpListenAddr=127.0.0.1:{port}",
             f"-notifier.url=http://127.0.0.1:{free_port()}", "-evaluationInterval=1s"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            found: list[dict] = []
            deadline = time.monotonic() + 30
            while len(found) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as response:
                        found = json.load(response)["data"]["alerts"] or []  # null before the first alert
                except OSError:
                    continue
        finally:
            process.terminate()
            process.wait(timeout=10)
    texts = sorted((a["labels"]["threshold"], a["labels"]["severity"], a["annotations"]["description"]) for a in found)
    assert texts == [
        ("50", "warning", "Team ml-research has spent 90.00 USD of budget monthly (100.25 USD per month); "
                          "the 50% threshold is 50.125 USD."),
        ("87.5", "warning", "Team ml-research has spent 90.00 USD of budget monthly (100.25 USD per month); "
                            "the 87.5% threshold is 87.71875 USD."),
    ], (tmp_path / "vmalert.log").read_text()[-3000:]
