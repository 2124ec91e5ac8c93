"""Every command's failure modes end in the exit code the README documents, without a traceback.

One table: command line, how the world is set up, the expected ``ExitCode``.
The README's exit-code table is checked against ``ExitCode`` too, so the
documentation, the contract and the behaviour cannot drift apart.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.app import COMMANDS, main
from costplan.core.errors import ExitCode
from costplan.generators import BOTH, GENERATORS
from tests.conftest import ROOT


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled plan with its environments, a broken copy, and no kubeconfig anywhere."""
    shutil.copy(ROOT / "costplan.yaml", tmp_path / "costplan.yaml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    broken = (ROOT / "costplan.yaml").read_text(encoding="utf-8").replace("tier: free", "tier: gold", 1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "costplan.yaml").write_text(broken, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("COSTPLAN_ENV", raising=False)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def prometheus_with_wrong_gpu_prices() -> Iterator[str]:
    """A Prometheus API answering every query with one GPU node priced at 1 per GPU-hour."""
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"node": "n1", "instance_type": "p4d.24xlarge"}, "value": [0, "1"]},
    ]}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _raise_in_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(plan):
        raise KeyError("a generator bug")

    monkeypatch.setattr("costplan.generators.GENERATORS", (*GENERATORS, ("broken", broken, BOTH)))


def _emit_invalid_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from costplan.core.artifacts import manifest

    def bad(plan):
        return [manifest("common", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name"}})]

    monkeypatch.setattr("costplan.generators.GENERATORS", (*GENERATORS, ("bad", bad, BOTH)))


UNREACHABLE = f"http://127.0.0.1:{closed_port()}"

CASES = [
    # (id, arguments, setup, expected)
    ("validate-ok", ["validate"], None, ExitCode.OK),
    ("validate-invalid", ["validate", "-f", "broken/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("validate-invalid-json", ["validate", "-f", "broken/costplan.yaml", "--format", "json"], None, ExitCode.PLAN_INVALID),
    ("validate-unknown-env", ["validate", "-e", "nope"], None, ExitCode.USAGE),
    ("validate-bad-option", ["validate", "--no-such-option"], None, ExitCode.USAGE),
    ("build-invalid", ["build", "-f", "broken/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("build-unknown-env", ["build", "-e", "nope"], None, ExitCode.USAGE),
    ("build-env-and-all", ["build", "-e", "dev", "--all-envs"], None, ExitCode.USAGE),
    ("build-unknown-k8s-version", ["build", "--kubernetes-version", "0.1"], None, ExitCode.USAGE),
    ("build-generator-bug", ["build"], _raise_in_generator, ExitCode.OUTPUT_INVALID),
    ("build-output-invalid", ["build"], _emit_invalid_object, ExitCode.OUTPUT_INVALID),
    ("schema", ["schema"], None, ExitCode.OK),
    ("envs", ["envs"], None, ExitCode.OK),
    ("report-invalid", ["report", "-f", "broken/costplan.yaml", "--month", "2025-03"], None, ExitCode.PLAN_INVALID),
    ("report-unknown-env", ["report", "-e", "nope", "--month", "2025-03"], None, ExitCode.USAGE),
    ("report-bad-month", ["report", "--month", "October"], None, ExitCode.USAGE),
    ("report-unreachable", ["report", "--month", "2025-03", "--prometheus-url", UNREACHABLE], None, ExitCode.EXTERNAL),
    ("report-bad-tenant", ["report", "--month", "2025-03", "--tenant", "a tenant"], None, ExitCode.USAGE),
    ("report-credentials-twice", ["report", "--month", "2025-03", "--prometheus-url", "http://u:p@127.0.0.1:9",
                                  "--bearer-token-file", "token"], None, ExitCode.USAGE),
    ("report-no-token-file", ["report", "--month", "2025-03", "--prometheus-url", UNREACHABLE,
                              "--bearer-token-file", "no-such-token"], None, ExitCode.EXTERNAL),
    ("gpu-invalid", ["check-gpu-prices", "-f", "broken/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("gpu-unknown-env", ["check-gpu-prices", "-e", "nope"], None, ExitCode.USAGE),
    ("gpu-unreachable", ["check-gpu-prices", "--prometheus-url", UNREACHABLE], None, ExitCode.EXTERNAL),
    ("gpu-mismatch", ["check-gpu-prices", "--prometheus-url", "{prometheus}"], None, ExitCode.EXTERNAL),
    ("diff-invalid", ["diff", "-f", "broken/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("diff-needs-env", ["diff"], None, ExitCode.USAGE),
    ("diff-unknown-env", ["diff", "-e", "nope"], None, ExitCode.USAGE),
    ("diff-no-cluster", ["diff", "-e", "dev"], None, ExitCode.EXTERNAL),
    ("apply-no-cluster", ["apply", "-e", "dev"], None, ExitCode.EXTERNAL),
    ("apply-check-no-cluster", ["apply", "--check", "-e", "dev"], None, ExitCode.EXTERNAL),
    ("apply-fleet-needs-a-part", ["apply", "-e", "fleet"], None, ExitCode.USAGE),
    ("diff-fleet-needs-a-part", ["diff", "-e", "fleet"], None, ExitCode.USAGE),
    ("apply-fleet-unknown-cluster", ["apply", "-e", "fleet", "--cluster", "nope"], None, ExitCode.USAGE),
    ("apply-cluster-without-fleet", ["apply", "-e", "dev", "--cluster", "eu-west"], None, ExitCode.USAGE),
    ("apply-fleet-no-cluster", ["apply", "-e", "fleet", "--cluster", "eu-west"], None, ExitCode.EXTERNAL),
    ("apply-fleet-all-no-context", ["apply", "-e", "fleet", "--all-clusters"], None, ExitCode.EXTERNAL),
    ("doctor-invalid", ["doctor", "-f", "broken/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("doctor-unknown-env", ["doctor", "-e", "nope"], None, ExitCode.USAGE),
    ("doctor-no-cluster", ["doctor", "-e", "dev", "--prometheus-url", UNREACHABLE], None, ExitCode.EXTERNAL),
    ("doctor-fleet-needs-a-cluster", ["doctor", "-e", "fleet"], None, ExitCode.USAGE),
    ("doctor-fleet-unknown-cluster", ["doctor", "-e", "fleet", "--cluster", "nope"], None, ExitCode.USAGE),
    ("guard-invalid", ["guard", "-f", "broken/costplan.yaml", "--once"], None, ExitCode.PLAN_INVALID),
    ("guard-no-cluster", ["guard", "--once"], None, ExitCode.EXTERNAL),
    ("budget-bad-until", ["budget", "override", "ml-research", "--until", "someday"], None, ExitCode.USAGE),
    ("budget-invalid", ["budget", "override", "ml-research", "--clear", "-f", "broken/costplan.yaml"], None,
     ExitCode.PLAN_INVALID),
    ("impact-same", ["impact", "--base", "costplan.yaml", "--exit-code"], None, ExitCode.OK),
    ("impact-changed", ["impact", "--base", "broken/costplan.yaml", "--exit-code"], None, ExitCode.PLAN_INVALID),
    ("impact-missing-base", ["impact", "--base", "nowhere/costplan.yaml"], None, ExitCode.PLAN_INVALID),
    ("impact-bad-usage", ["impact", "--base", "costplan.yaml", "--usage-json", "costplan.yaml"], None, ExitCode.USAGE),
]


@pytest.mark.parametrize(("arguments", "setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_failure_mode_has_its_documented_exit_code(
    workspace, monkeypatch, prometheus_with_wrong_gpu_prices, arguments, setup, expected
):
    if setup is not None:
        setup(monkeypatch)
    arguments = [a.replace("{prometheus}", prometheus_with_wrong_gpu_prices) for a in arguments]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == expected, (result.stdout, result.stderr)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if expected not in (ExitCode.OK, ExitCode.CHANGED) and "--format" not in arguments:
        assert result.stdout == "", "failures print data on stdout only with --format json"
        assert result.stderr.strip(), "every failure says why on stderr"


def test_impact_exit_code_reports_a_change(workspace):
    head = (workspace / "costplan.yaml").read_text(encoding="utf-8")
    (workspace / "base").mkdir()
    (workspace / "base" / "costplan.yaml").write_text(head.replace("amount: ", "amount: 1", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["impact", "--base", "base/costplan.yaml", "--no-manifests", "--exit-code"])
    assert result.exit_code == ExitCode.CHANGED, result.stderr


def test_every_command_is_in_the_table():
    assert set(COMMANDS) == {c[1][0] for c in CASES}


def test_a_generator_bug_is_one_line_not_a_traceback(workspace, monkeypatch):
    _raise_in_generator(monkeypatch)
    result = CliRunner().invoke(main, ["build"])
    assert result.stderr.strip().splitlines()[-1].startswith("error: costplan failed (KeyError)")


def test_the_readme_exit_code_table_is_the_contract():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d) \|", section, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}


def _readme_table(after: str) -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(after, 1)[1]
    table = section.split("| check id | meaning |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, flags=re.M))


def test_the_readme_check_tables_are_the_registry():
    from costplan.core.diagnostics import OUTPUT_CHECKS, PLAN_CHECKS

    assert _readme_table("### `costplan validate`") == set(PLAN_CHECKS)
    assert _readme_table("Findings about generated objects") == set(OUTPUT_CHECKS)
