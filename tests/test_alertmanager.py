"""Alert routing, checked by the real Alertmanager tools.

``amtool check-config`` must accept every generated plain configuration, and
``amtool config routes test`` says which receivers an alert with given
labels reaches: that is the behaviour the route tree exists for. The
AlertmanagerConfig objects are validated against the operator's CRD schema.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costplan.cli import main
from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators import alertmanager
from costplan.generators.alertmanager.plain import PlainConfigUnsupported
from costplan.output.verify import ManifestValidator
from costplan.plan.load import load_plan
from tests.conftest import PLAN, ROOT

BUDGETS = ROOT / "tests" / "plans" / "budgets.yaml"
AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="needs amtool (Debian package prometheus-alertmanager)")


def write_config(tmp_path: Path, plan) -> Path:
    path = tmp_path / "alertmanager.yaml"
    path.write_text(dump_yaml(alertmanager.plain_config(plan)))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=30)


def receivers_for(config: Path, **labels: str) -> list[str]:
    result = amtool("config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.strip().split(","))


@needs_amtool
@pytest.mark.parametrize("source", [BUDGETS, PLAN], ids=["budgets", "bundled"])
def test_every_generated_plain_configuration_passes_amtool(tmp_path, source):
    config = write_config(tmp_path, load_plan(source, None))
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_amtool
def test_a_teams_alerts_reach_its_contacts_and_budget_alerts_also_reach_the_guard(tmp_path):
    config = write_config(tmp_path, load_plan(BUDGETS, None))
    threshold = {"alertname": c.ALERT_BUDGET_THRESHOLD, "budget": "monthly", "period": "month"}
    assert receivers_for(config, team="research", **threshold) == ["costplan-guard", "team-research"]
    assert receivers_for(config, team="support", **threshold) == ["costplan-guard", "team-support"]
    # The forecast and the anomaly alerts are the team's, not the guard's.
    assert receivers_for(config, team="research", alertname=c.ALERT_BUDGET_FORECAST) == ["team-research"]
    assert receivers_for(config, team="support", alertname=c.ALERT_SPEND_ANOMALY) == ["team-support"]
    # A team without contacts, and alerts that are nobody's, go nowhere.
    assert receivers_for(config, team="ops", alertname=c.ALERT_SPEND_ANOMALY) == ["costplan-none"]
    assert receivers_for(config, alertname=c.ALERT_SOURCE_ABSENT, source="limitador") == ["costplan-none"]
    # One team's alert never reaches another team.
    assert "team-support" not in receivers_for(config, team="research", alertname=c.ALERT_SPEND_ANOMALY)


def test_secrets_become_files_and_never_inline_values():
    config = alertmanager.plain_config(load_plan(BUDGETS, None))
    research = next(r for r in config["receivers"] if r["name"] == "team-research")
    assert research["slack_configs"] == [
        {"api_url_file": "/etc/alertmanager/secrets/research-slack/url", "channel": "#research", "send_resolved": True}
    ]
    assert research["pagerduty_configs"] == [
        {"routing_key_file": "/etc/alertmanager/secrets/research-pagerduty/routingKey", "send_resolved": True}
    ]
    assert research["email_configs"] == [{"send_resolved": True, "to": "research@example.com"}]
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp/password"
    guard = next(r for r in config["receivers"] if r["name"] == c.GUARD_NAME)
    assert guard["webhook_configs"] == [
        {"send_resolved": True, "url": "http://costplan-guard.monitoring.svc:8080/webhook"}
    ]


def test_alertmanager_configs_validate_against_the_operators_schema(crd_schema_location):
    validator = ManifestValidator(schema_locations=[crd_schema_location], strict=True)
    objects = alertmanager.alertmanager_configs(load_plan(BUDGETS, None))
    assert [o["metadata"]["name"] for o in objects] == ["acme-guard", "acme-team-research", "acme-team-support"]
    for obj in objects:
        assert validator.validate(obj) == []
        assert obj["metadata"]["namespace"] == "monitoring"
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    research = objects[1]["spec"]
    assert research["route"]["matchers"] == [
        {"matchType": "=~", "name": "alertname",
         "value": f"{c.ALERT_BUDGET_THRESHOLD}|{c.ALERT_BUDGET_FORECAST}|{c.ALERT_SPEND_ANOMALY}"},
        {"matchType": "=", "name": "team", "value": "research"},
    ]
    receiver = research["receivers"][0]
    assert receiver["slackConfigs"][0]["apiURL"] == {"key": "url", "name": "research-slack"}
    assert receiver["pagerdutyConfigs"][0]["routingKey"] == {"key": "routingKey", "name": "research-pagerduty"}
    assert receiver["emailConfigs"][0]["authPassword"] == {"key": "password", "name": "smtp"}


def test_a_secret_webhook_url_is_refused_by_the_plain_format_but_kept_as_a_secret_in_the_crd(tmp_path):
    text = BUDGETS.read_text().replace(
        "      - type: slack\n        secret:\n          secretName: support-slack\n          key: webhook\n",
        "      - type: webhook\n        secret:\n          secretName: support-hook\n",
    )
    path = tmp_path / "costplan.yaml"
    path.write_text(text)
    plan = load_plan(path, None)
    with pytest.raises(PlainConfigUnsupported, match="no file form for webhook URLs"):
        alertmanager.plain_config(plan)
    support = next(o for o in alertmanager.alertmanager_configs(plan) if o["metadata"]["name"] == "acme-team-support")
    assert support["spec"]["receivers"][0]["webhookConfigs"] == [
        {"sendResolved": True, "urlSecret": {"key": "url", "name": "support-hook"}}
    ]
    result = CliRunner().invoke(main, ["build", "-f", str(path), "--format", "alertmanager"])
    assert result.exit_code != 0 and "no file form for webhook URLs" in result.output
    assert "Traceback" not in result.output


@needs_amtool
def test_build_format_alertmanager_writes_the_file_amtool_accepts(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "-f", str(BUDGETS), "--format", "alertmanager", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = out / "base" / "alertmanager" / "alertmanager.yaml"
    assert amtool("check-config", str(written)).returncode == 0
    assert yaml.safe_load(written.read_text()) == alertmanager.plain_config(load_plan(BUDGETS, None))
