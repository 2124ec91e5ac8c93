"""`costplan impact`: the money a plan change moves, as a pull request sees it.

Base and head are copies of the bundled plan in separate directories with
small text edits, exactly what a CI job has after checking out both
revisions. Every expected amount is worked out by hand in a comment.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.impact import impact_command
from costplan.impact.compare import MARKER, compare, fraction_to_decimal, monthly_factor
from costplan.impact.estimate import estimate, parse_usage
from costplan.impact.manifests import manifest_diff
from costplan.impact.render import EnvironmentReport, render_markdown
from costplan.plan.load import load_plan
from tests.conftest import ROOT

# The bundled plan's base environment, monthly (×30 for days, ×30/7 for the 7d window):
#   ml-research 1500 + customer-support 200 + 15×30 + platform 5000 + 1200×30/7 + company 8000
#   = 15150 + 36000/7 = 142050/7 ≈ 20,292.86


def _copy(directory: Path) -> Path:
    directory.mkdir()
    shutil.copy(ROOT / "costplan.yaml", directory / "costplan.yaml")
    shutil.copytree(ROOT / "environments", directory / "environments")
    return directory / "costplan.yaml"


def _edit(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"edit target must be unique: {old!r}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


@pytest.fixture()
def plans(tmp_path: Path) -> tuple[Path, Path]:
    """(base plan, head plan): two untouched copies of the bundled plan."""
    return _copy(tmp_path / "base"), _copy(tmp_path / "head")


def run(base: Path, head: Path, *args: str):
    return CliRunner().invoke(impact_command, ["--base", str(base), "-f", str(head), *args], catch_exceptions=False)


BUDGET_RAISE = (
    ("        amount: 1500\n", "        amount: 2500\n"),  # ml-research monthly
    ("        amount: 15\n", "        amount: 20\n"),  # customer-support daily
)
PRICE_RAISE = (
    ("      input: 3\n", "      input: 3.5\n"),  # claude-sonnet, per million input tokens
    ("      price: 0.002\n", "      price: 0.0025\n"),  # qwen3-0-6b, per request
)


def test_budget_raise_gives_the_exact_headline(plans):
    base, head = plans
    _edit(head, *BUDGET_RAISE)
    result = run(base, head, "--no-manifests")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == MARKER
    # (2500 - 1500) + (20 - 15) × 30 days = 1000 + 150 = +1,150.00 per month
    assert "Monthly budget exposure **+1,150.00 USD**; changed: 2 budgets." in lines
    assert "| ml-research | monthly | month | changed | 1,500.00 | 2,500.00 | +1,000.00 | +1,000.00 |" in lines
    assert "| customer-support | daily | day | changed | 15.00 | 20.00 | +5.00 | +150.00 |" in lines
    # Totals: 142050/7 ≈ 20,292.86 before, + 1150 = 150100/7 ≈ 21,442.86 after.
    assert "Monthly exposure ≈ 20,292.86 → ≈ 21,442.86 USD (**+1,150.00 USD**; teams +1,150.00, global 0.00)¹" in lines
    assert any(line.startswith("¹ Monthly exposure is the sum") and "week × 30/7" in line for line in lines)


def test_rolling_window_budget_is_normalised_by_its_length(plans):
    base, head = plans
    _edit(head, ("        amount: 1200\n", "        amount: 1550\n"))  # platform, rolling 7d
    result = run(base, head, "--no-manifests")
    # 350 × 30/7 = 1500 exactly
    assert "Monthly budget exposure **+1,500.00 USD**; changed: 1 budget." in result.stdout
    assert "| platform | weekly-gpu-burst | rolling 7d | changed | 1,200.00 | 1,550.00 | +350.00 | +1,500.00 |" in (
        result.stdout
    )


def test_monthly_normalisation_is_exact_and_rounds_only_what_has_no_decimal_form():
    assert monthly_factor("day", None) == 30
    assert monthly_factor("week", None) == Fraction(30, 7)
    assert monthly_factor("month", None) == 1
    assert monthly_factor("rolling", "7d") == Fraction(30, 7)
    assert monthly_factor("rolling", "12h") == 60
    assert monthly_factor("rolling", "30d") == 1
    assert fraction_to_decimal(Fraction(1, 8)) == (Decimal("0.125"), True)
    # 1200 × 30/7 = 5142.857142... → cents, half-even, flagged inexact
    assert fraction_to_decimal(Fraction(1200) * Fraction(30, 7)) == (Decimal("5142.86"), False)


def test_price_change_shows_exact_per_unit_delta_with_the_tier_multiplier(plans):
    base, head = plans
    _edit(head, *PRICE_RAISE)
    result = run(base, head, "--no-manifests")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # 4 tiers ("" + 3) × (qwen3 per request, claude input, claude cache-writing
    # input, which is charged as input when the plan does not price it)
    assert "Monthly budget exposure unchanged; changed: 12 prices." in out
    # A name with Markdown emphasis characters is a code span in the comment.
    assert "| claude-sonnet | (list) | `cache_creation_input` | token | 0.000003 | 0.0000035 | +0.0000005 | +16.67% |" in out
    # claude-sonnet input, enterprise (×0.8): 3/1e6 × 0.8 = 0.0000024 → 3.5/1e6 × 0.8 = 0.0000028,
    # delta 0.0000004, 0.5/3 = +16.67 %
    assert "| claude-sonnet | enterprise | input | token | 0.0000024 | 0.0000028 | +0.0000004 | +16.67% |" in out
    # list price (no tier): 0.000003 → 0.0000035
    assert "| claude-sonnet | (list) | input | token | 0.000003 | 0.0000035 | +0.0000005 | +16.67% |" in out
    # qwen3 per request, enterprise: 0.002 × 0.8 = 0.0016 → 0.0025 × 0.8 = 0.002, +0.0004, +25 %
    assert "| qwen3-0-6b | enterprise | request | request | 0.0016 | 0.002 | +0.0004 | +25% |" in out
    assert "| qwen3-0-6b | free | request | request | 0.002 | 0.0025 | +0.0005 | +25% |" in out
    # Output tokens did not change: not listed.
    assert "| claude-sonnet | enterprise | output |" not in out


def test_removing_a_team_lists_it_and_its_budgets_in_the_headline(plans):
    base, head = plans
    text = head.read_text(encoding="utf-8")
    start = text.index("  - name: customer-support\n")
    end = text.index("  - name: platform\n")
    head.write_text(text[:start] + text[end:], encoding="utf-8")
    result = run(base, head, "--no-manifests")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # monthly 200 + daily 15 × 30 = 650 less per month
    assert "Monthly budget exposure **-650.00 USD**" in out
    assert "| customer-support | monthly | month | removed | 200.00 | — | -200.00 | -200.00 |" in out
    assert "| customer-support | daily | day | removed | 15.00 | — | -15.00 | -450.00 |" in out
    assert "- teams removed (1): customer-support" in out
    assert "- users removed (2): customer-support/freeuser1, customer-support/freeuser2" in out
    # Users by id only: no key material or key locations.
    assert "apikey-" not in out and "llm/api-keys" not in out


def test_no_change_is_one_line_and_exit_zero(plans):
    base, head = plans
    for args, expected in (([], "No cost impact.\n"), (["--format", "json"], '{\n  "changed": false\n}\n')):
        result = run(base, head, "--all-envs", "--exit-code", *args)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == expected


def test_exit_code_flag_returns_one_when_something_changed(plans):
    base, head = plans
    _edit(head, *BUDGET_RAISE)
    assert run(base, head, "--no-manifests").exit_code == 0
    assert run(base, head, "--no-manifests", "--exit-code").exit_code == 1


def test_json_has_the_same_numbers_as_strings(plans):
    base, head = plans
    _edit(head, *BUDGET_RAISE, *PRICE_RAISE)
    result = run(base, head, "--format", "json", "-e", "prod")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changed"] is True
    (env,) = doc["environments"]
    assert env["environment"] == "prod" and env["currency"] == "USD"
    # prod overrides ml-research monthly to 2500 in both revisions: only the daily budget moves,
    # (20 - 15) × 30 = 150.
    exposure = env["budgets"]["monthlyExposure"]
    assert exposure["delta"] == "150"
    assert exposure["teams"]["delta"] == "150" and exposure["global"]["delta"] == "0"
    # prod: 2500 + 200 + 450 + 5000 + 36000/7 + 750 + 12000 = 20900 + 36000/7 ≈ 26,042.86
    assert exposure["before"] == "26042.86" and exposure["exact"] is False
    (daily,) = env["budgets"]["changes"]
    assert daily == {
        "team": "customer-support", "budget": "daily", "change": "changed", "periodBefore": "day",
        "periodAfter": "day", "before": "15", "after": "20", "delta": "5", "monthlyDelta": "150",
    }
    enterprise_input = next(
        p for p in env["prices"] if (p["name"], p["tier"], p["charge"]) == ("claude-sonnet", "enterprise", "input")
    )
    assert enterprise_input == {
        "kind": "model", "name": "claude-sonnet", "tier": "enterprise", "charge": "input", "per": "token",
        "money": True, "change": "changed", "before": "0.0000024", "after": "0.0000028", "delta": "0.0000004",
        "percent": "16.67",
    }
    assert "prometheus/prometheusrule-costplan-prices.yaml" in env["manifests"]["changedFiles"]


def test_invalid_head_plan_exits_3_with_positions(plans):
    base, head = plans
    _edit(head, ("    tier: premium\n", "    tier: gold\n"))
    line = head.read_text(encoding="utf-8").splitlines().index("    tier: gold") + 1
    result = run(base, head)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert f"costplan.yaml:{line}:11: /teams/0/tier: unknown tier 'gold'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_environment_is_a_usage_error(plans):
    base, head = plans
    result = run(base, head, "-e", "nope")
    assert result.exit_code == 2
    assert "no environment 'nope'" in result.stderr


def test_manifest_diff_shows_the_changed_prometheus_rule_line(plans):
    base, head = plans
    _edit(head, *PRICE_RAISE)
    out = run(base, head, "-e", "dev").stdout
    assert "<summary>Rendered manifests: 2 files change</summary>" in out  # prices rule + plan ConfigMap
    diff = out.split("```diff\n", 1)[1].split("\n```", 1)[0]
    assert "--- a/prometheus/prometheusrule-costplan-prices.yaml" in diff
    assert "-    - expr: vector(0.0000024)" in diff.splitlines()
    assert "+    - expr: vector(0.0000028)" in diff.splitlines()
    assert "<summary>Rendered manifests" not in run(base, head, "-e", "dev", "--no-manifests").stdout


def test_manifest_diff_is_cut_with_a_note():
    before = {"a.yaml": "".join(f"line {i}\n" for i in range(100))}
    after = {"a.yaml": "".join(f"line {i} changed\n" for i in range(100))}
    diff = manifest_diff(before, after, max_lines=10)
    assert len(diff.text.splitlines()) == 10
    assert diff.truncated_lines == 2 + 1 + 200 - 10  # headers, hunk, 100 removed + 100 added
    assert diff.changed_files == ("a.yaml",)


def test_usage_estimate_is_exact(plans, tmp_path):
    base, head = plans
    _edit(head, *PRICE_RAISE)
    usage = tmp_path / "usage.json"
    usage.write_text(
        json.dumps(
            [
                {"team": "platform", "model": "claude-sonnet", "input": 1000000, "cached_input": 2000000,
                 "output": "250000.5"},
                {"team": "ml-research", "model": "gpt-4o-mini", "requests": 1000, "input": 2500000},
                {"team": "platform", "model": "mixtral-batch", "input": 20000000},
            ]
        ),
        encoding="utf-8",
    )
    # platform is enterprise (×0.8).
    # claude-sonnet before: 1e6 × 3/1e6 × 0.8 = 2.4; 2e6 × 0.3/1e6 × 0.8 = 0.48;
    #   250000.5 × 15/1e6 × 0.8 = 3.000006 → 5.880006. After: input 3.5 → 2.8 → 6.280006 (+0.4).
    # gpt-4o-mini (ml-research, premium ×1): 1000 × 0.001 = 1, tokens over the pooled
    #   1000 × 2000 allowance: 500000 × 0.6/1e6 = 0.3 → 1.3 on both sides.
    # mixtral-batch (tiered, ×0.8): 10e6 × 2/1e6 × 0.8 + 10e6 × 1.5/1e6 × 0.8 = 16 + 12 = 28 on both sides.
    # Total 35.180006 → 35.580006, +0.4.
    result = run(base, head, "--no-manifests", "--usage-json", str(usage))
    assert result.exit_code == 0, result.stderr
    out = result.stdout.splitlines()
    assert "| platform | 33.880006 | 34.280006 | +0.40 |" in out
    assert "| ml-research | 1.30 | 1.30 | 0.00 |" in out
    assert "| claude-sonnet | 5.880006 | 6.280006 | +0.40 |" in out
    assert "| mixtral-batch | 28.00 | 28.00 | 0.00 |" in out
    assert "| **total** | 35.180006 | 35.580006 | **+0.40** |" in out
    doc = json.loads(run(base, head, "--no-manifests", "--format", "json", "--usage-json", str(usage)).stdout)
    total = doc["environments"][0]["estimate"]["total"]
    assert total == {"name": "total", "before": "35.180006", "after": "35.580006", "delta": "0.4"}


def test_moving_a_team_to_another_tier_reprices_its_usage(tmp_path):
    """The comparison is pure: two Plans in, values out."""
    base_path, head_path = _copy(tmp_path / "base"), _copy(tmp_path / "head")
    _edit(head_path, ("    tier: premium\n", "    tier: enterprise\n"))  # ml-research
    base, head = load_plan(base_path), load_plan(head_path)
    impact = compare(base, head)
    assert impact.members.team_tiers == (("ml-research", "premium", "enterprise"),)
    assert not impact.prices and not impact.budgets
    records = parse_usage('{"usage": [{"team": "ml-research", "model": "gpt-4o-mini", "requests": 1000,'
                          ' "input": 2500000}]}')
    # enterprise ×0.8: 1000 × 0.0008 + 500000 × 0.00000048 = 0.8 + 0.24 = 1.04
    result = estimate(base, head, records)
    assert (result.total.before, result.total.after, result.total.delta) == (
        Decimal("1.3"), Decimal("1.04"), Decimal("-0.26"))
    markdown = render_markdown([EnvironmentReport(impact, result)], "usage.json")
    assert "- team ml-research moves from tier premium to enterprise" in markdown


def test_an_environment_new_in_head_is_all_added(tmp_path):
    head_path = _copy(tmp_path / "head")
    impact = compare(None, load_plan(head_path, "dev"), "dev")
    assert {b.status for b in impact.budgets} == {"added"}
    # dev: 100 + 20 + 5000 + 300 (daily and weekly budgets deleted by the overlay)
    assert impact.exposure.delta == 5420
    assert "ml-research" in impact.members.added["teams"]


def test_usage_file_errors_are_usage_errors(plans, tmp_path):
    base, head = plans
    usage = tmp_path / "usage.json"
    usage.write_text('[{"model": "claude-sonnet", "input": -1}]', encoding="utf-8")
    result = run(base, head, "--usage-json", str(usage))
    assert result.exit_code == 2
    assert "'input' must be a non-negative number" in result.stderr


def test_budget_actions_that_change_are_listed(plans):
    base, head = plans
    _edit(head, ("        amount: 1500\n        period: month\n        thresholds: [50, 80, 100]\n",
                 "        amount: 1500\n        period: month\n        thresholds: [50, 80, 100]\n"
                 "        actions:\n          - at: 80\n            action: throttle\n            tier: free\n"
                 "          - at: 100\n            action: block\n"))
    result = run(base, head, "--no-manifests")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Actions of ml-research/monthly: none → throttle to free at 80%, block at 100%" in lines
    # The amount did not change: the exposure does not either.
    assert "| ml-research | monthly | month | changed | 1,500.00 | 1,500.00 | 0.00 | 0.00 |" in lines
    data = json.loads(run(base, head, "--no-manifests", "--format", "json").stdout)
    (env,) = data["environments"]
    (change,) = env["budgets"]["changes"]
    assert change["actionsBefore"] == "" and change["actionsAfter"] == "throttle to free at 80%, block at 100%"
