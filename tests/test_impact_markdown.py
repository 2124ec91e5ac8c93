"""The pull-request comment escapes every value: no HTML, mentions, links or headings from file or usage names."""

from __future__ import annotations

import json
import re
import shutil

from click.testing import CliRunner

from costplan.cli.impact import impact_command
from costplan.impact.compare import compare
from costplan.impact.render import MARKER, EnvironmentReport, md, render_markdown
from costplan.plan.load import load_plan
from tests.conftest import ROOT

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "@octocat",
    "[click](javascript:alert(1))",
    "x\n### forged heading",
    "</details>",
    "a|b",
    "```",
    "javascript:alert(1)",
    "<!-- hidden",
]
OWN_TAGS = re.compile(r"</?(details|summary|b)>")


def outside_code(markdown: str) -> str:
    """The comment with fenced blocks and code spans removed: what GitHub would interpret."""
    text = re.sub(r"(?ms)^(`{3,})diff\n.*?^\1$", "", markdown)
    return re.sub(r"(`+)(.+?)\1", "", text)


def assert_inert(markdown: str) -> None:
    text = OWN_TAGS.sub("", outside_code(markdown.replace(MARKER, "")))
    assert "<" not in text and "@" not in text and "](" not in text and "javascript:" not in text, text
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert all(line in ("### costplan impact",) or line.startswith("#### ") for line in headings), headings
    interpreted = outside_code(markdown)
    assert interpreted.count("<details>") == interpreted.count("</details>")


def test_md_keeps_plain_names_and_fences_everything_else():
    assert md("ml-research") == "ml-research"
    assert md("claude-sonnet (list)") == "claude-sonnet (list)"
    assert md("@team") == "`@team`"
    assert md("a`b") == "``a`b``"
    assert md("a|b", table=True) == "`a\\|b`"
    assert md("x\ny") == "`x\\ny`"


def test_hostile_environment_names_are_inert(tmp_path):
    head = tmp_path / "costplan.yaml"
    shutil.copy(ROOT / "costplan.yaml", head)
    plan = load_plan(head, None)
    reports = [EnvironmentReport(compare(None, plan, name)) for name in HOSTILE]
    assert_inert(render_markdown(reports))


def test_hostile_usage_names_are_inert(tmp_path):
    base, head = tmp_path / "base", tmp_path / "head"
    for side in (base, head):
        side.mkdir()
        shutil.copy(ROOT / "costplan.yaml", side / "costplan.yaml")
    text = (head / "costplan.yaml").read_text()
    (head / "costplan.yaml").write_text(text.replace("      input: 3\n", "      input: 3.5\n", 1))
    usage = tmp_path / "@here <b>usage.json"
    usage.write_text(json.dumps([{"team": name, "model": "claude-sonnet", "input": 1000} for name in HOSTILE]))
    result = CliRunner().invoke(impact_command, ["--base", str(base / "costplan.yaml"), "-f", str(head / "costplan.yaml"),
                                                 "--no-manifests", "--usage-json", str(usage)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert_inert(result.stdout)
    header_cells = None
    for line in result.stdout.splitlines():
        if not line.startswith("| "):
            header_cells = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        header_cells = header_cells or cells
        assert cells == header_cells, f"a value split a table row: {line}"
