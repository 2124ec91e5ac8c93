"""Small things a new user meets in the first hour: clear answers, no silent success, quiet means quiet."""

from __future__ import annotations

import http.server
import json
import shutil
import threading

from click.testing import CliRunner

from costplan.cli.app import main
from tests.conftest import ROOT, patched_minimal


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_envs_of_a_missing_plan_is_an_error():
    result = run("envs", "-f", "/nonexistent.yaml")
    assert result.exit_code == 2 and "file not found" in result.stderr


def test_validate_all_envs_names_the_environments_it_checked(tmp_path):
    shutil.copy(ROOT / "costplan.yaml", tmp_path / "costplan.yaml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    result = run("validate", "-f", str(tmp_path / "costplan.yaml"), "--all-envs")
    assert result.exit_code == 0
    assert "valid (environments: dev, fleet, prod, staging)" in result.stderr


def test_a_missing_kubeconfig_file_says_file_not_found(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    result = run("diff", "-f", str(plan), "--kubeconfig", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "file not found" in result.stderr
    assert "No configuration found" not in result.output


def test_diff_of_an_invalid_plan_reports_the_plan_before_the_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(("currency: USD", "currency: XYZ")))
    result = run("diff", "-f", str(plan))
    assert result.exit_code == 3 and "[currency]" in result.stderr


def test_quiet_silences_report_progress(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    result = run("-q", "report", "-f", str(plan), "--month", "2025-03", "--prometheus-url", "http://127.0.0.1:1")
    assert result.exit_code == 4
    assert [line for line in result.stderr.splitlines() if not line.startswith("error:")] == []


def test_readme_build_example_with_check_rules_writes_files_instead_of_flooding_the_terminal():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = [line for line in readme.splitlines() if "build" in line and "--check-rules" in line
                and line.lstrip().startswith("costplan")]
    assert examples and all(" -o " in line for line in examples), examples


def test_readme_documents_every_reports_key():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "reports.image" in readme or "`image`" in readme.split("reports", 1)[1][:3000]


def test_report_total_counts_the_lines_of_the_view(tmp_path):
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"costplan_series": "spend", "team": "research", "user": user, "tier": "free", "model": "small"}, "value": [1, "1.5"]}
        for user in ("alice", "bob")]}}).encode()

    class Answer(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    try:
        result = run("report", "-f", str(plan), "--start", "2025-03-01", "--end", "2025-03-02",
                     "--prometheus-url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    # Money keeps the precision of the plan's finest unit price (seven decimals in the minimal plan).
    assert "total 3.0000000 USD: 1 team line(s) from 2 daily row(s)" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # header and the one team line


def _warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_the_custom_resource_warning_says_where_to_get_schemas(tmp_path, monkeypatch):
    monkeypatch.delenv("COSTPLAN_SCHEMA_LOCATION", raising=False)
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    [warning] = _warnings(run("build", "-f", str(plan)))
    assert "CRDs-catalog" in warning and "--schema-location" in warning
    wrong = str(tmp_path / "nowhere/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")
    [warning] = _warnings(run("build", "-f", str(plan), "--schema-location", wrong))
    assert "pass --schema-location" not in warning and "hold no schema" in warning and "nowhere" in warning
    assert _warnings(run("build", "-f", str(plan), "--format", "rules")) == [], "no kinds that are not written"


def test_an_overlay_team_name_typo_says_did_you_mean(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("teams:\n  - name: reserch\n    tier: premium\n")
    result = run("validate", "-f", str(plan), "--env", "dev")
    assert result.exit_code == 3
    assert "dev.yaml:2:5: /teams/2/name: warning: overlay adds a new item 'reserch' (did you mean 'research'?" \
        in result.stderr, result.stderr
