"""Every pattern anchors on the whole string: a trailing newline is refused wherever a pattern applies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.core.regex import end_anchored, schema_regex
from costplan.output.verify import go_regex
from costplan.plan.schema import load_schema
from tests.conftest import patched_minimal

# One valid value per pattern of the schema (a new pattern must add one here).
SAMPLES = {
    "money": "0.002",
    "kuadrantWindow": "10s",
    "promDuration": "7d",
    "goDuration": "1h30m",
    "cron": "0 6 1 * *",
    "quantity": "1Gi",
    "memoryQuantity": "512Mi",
    "cpuQuantity": "250m",
    "promMetricName": "app_requests_total",
    "promLabelName": "project",
    "/$defs/contact/properties/to": "team@example.com",
    "/properties/notifications/properties/email/properties/from": "costplan@example.com",
    "/properties/notifications/properties/email/properties/smarthost": "smtp.example.com:587",
    "/properties/guard/properties/webhookURL": "http://costplan-guard.guard.svc:8080/webhook",
    "/$defs/cluster/properties/destination/properties/server": "https://eu-west.k8s.example.com",
    "/properties/metrics/properties/queryURL": "http://vmselect.monitoring:8481/select/0/prometheus",
    "/properties/metrics/properties/tenant": "llm-platform",
}


def schema_patterns() -> dict[str, str]:
    """Anchor (or pointer) → pattern, for every ``pattern`` in the plan schema."""
    found: dict[str, str] = {}

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found[node.get("$anchor", path)] = node["pattern"]
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}/{index}")

    walk(load_schema(), "")
    return found


def test_every_schema_pattern_refuses_a_trailing_newline():
    patterns = schema_patterns()
    assert set(patterns) == set(SAMPLES), "add a sample for each new pattern"
    for anchor, pattern in patterns.items():
        assert schema_regex(pattern).search(SAMPLES[anchor]), anchor
        assert re.search(pattern, SAMPLES[anchor] + "\n"), "Python's own $ would accept it"
        assert not schema_regex(pattern).search(SAMPLES[anchor] + "\n"), anchor


@pytest.mark.parametrize(
    "patch",
    [
        ("    window: 30d", '    window: "30d\\n"'),  # a budget window (crashed the build)
        ("      user: project", '      user: "project\\n"'),  # a custom source label (dropped attribution)
        ("          window: 10s", '          window: "10s\\n"'),
        ("      price: 0.002", '      price: "0.002\\n"'),
    ],
)
def test_a_trailing_newline_in_a_patterned_value_is_a_positioned_error(tmp_path, patch):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(patch))
    for command in ("validate", "build"):
        result = CliRunner().invoke(main, [command, "-f", str(plan)], catch_exceptions=False)
        assert result.exit_code == 3, (command, result.output)
        assert "costplan.yaml:" in result.stderr and "Traceback" not in result.output


def test_crd_patterns_anchor_like_re2():
    regex = go_regex("^[a-z]+$")
    assert regex is not None and regex.search("abc") and not regex.search("abc\n")
    flagged = go_regex("^(?i)(abort|warn)?$")
    assert flagged is not None and flagged.search("WARN") and not flagged.search("warn\n")


def test_end_anchored_leaves_escaped_and_class_dollars_alone():
    assert end_anchored(r"^a\$b[$]$") == r"^a\$b[$]\Z"
    assert end_anchored("(?m)^a$") == "(?m)^a$"


def test_the_shipped_schema_is_unchanged_for_editors():
    text = (Path(__file__).resolve().parents[1] / "schemas" / "costplan.schema.json").read_text()
    assert "\\\\Z" not in text and json.loads(text)
