"""Queries to a global engine: tenant header, bearer token from a file, API path prefix, no token in any message.

A small HTTP server on 127.0.0.1 stands in for Mimir / Thanos Query /
VictoriaMetrics cluster: it records every request's path and headers and
answers only when the tenant and the token are the expected ones, as those
gateways do (401 otherwise, with the request's Authorization header echoed in
the body, as some proxies do). The report, check-gpu-prices and the guard's
budget query are driven through it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.chargeback.promapi import PrometheusClient, QueryEndpoint
from costplan.cli.app import main
from costplan.core import conventions as c
from costplan.core.errors import ExitCode
from costplan.guard.clients import Prometheus, PrometheusUnavailable
from tests.conftest import PLAN

TOKEN = "s3cr3t-T0KEN-7hX2qP9rL4mN8vB1"
ROTATED = "r0tated-T0KEN-Z9yX8wV7uT6sR5qP"
TENANT = "team-fleet"
PREFIX = "/select/42/prometheus"  # VictoriaMetrics cluster's query path for account 42


class Engine:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.token = TOKEN
        self.result: list[dict] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: str) -> None:
                headers = {k: v for k, v in self.headers.items()}
                engine.requests.append((self.path.split("?")[0], headers, body))
                if (self.headers.get("X-Scope-OrgID") != TENANT
                        or self.headers.get("Authorization") != f"Bearer {engine.token}"):
                    reply = f"unauthorized: Authorization: {self.headers.get('Authorization')}".encode()
                    self.send_response(401)
                else:
                    reply = json.dumps({"status": "success",
                                        "data": {"resultType": "vector", "result": engine.result}}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode())

            def do_GET(self) -> None:  # noqa: N802
                self._answer(self.path.partition("?")[2])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def engine() -> Iterator[Engine]:
    server = Engine()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def spend(value: str, **labels: str) -> dict:
    return {"metric": {"costplan_series": "spend", **labels}, "value": [1, value]}


def test_report_sends_tenant_and_token_to_the_prefixed_api(engine, token_file):
    engine.result = [spend("1.25", team="platform", user="batch-runner", tier="enterprise", model="mixtral-batch")]
    result = CliRunner().invoke(main, ["report", "-f", str(PLAN), "--prometheus-url", engine.url,
                                       "--start", "2025-03-01", "--end", "2025-03-02", "--group-by", "team"],
                                env={"COSTPLAN_TENANT": TENANT, "COSTPLAN_BEARER_TOKEN_FILE": str(token_file)})
    assert result.exit_code == 0, result.output
    assert "platform,CC-0001,0,0,0,0,0,0,1.2500000000,USD" in result.stdout
    path, headers, _ = engine.requests[0]
    assert path == f"{PREFIX}/api/v1/query"
    assert headers["X-Scope-OrgID"] == TENANT and headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in result.output


def test_the_token_is_read_at_every_request(engine, token_file):
    client = PrometheusClient(QueryEndpoint(engine.url, TENANT, str(token_file)))
    client.query("vector(1)", dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    token_file.write_text(ROTATED)  # the mounted Secret was rotated
    engine.token = ROTATED
    client.query("vector(1)", dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert [h["Authorization"] for _, h, _ in engine.requests] == [f"Bearer {TOKEN}", f"Bearer {ROTATED}"]


def test_a_refused_token_is_never_printed(engine, token_file):
    engine.token = ROTATED  # the engine wants another token: 401, echoing the one it got
    result = CliRunner().invoke(main, ["report", "-f", str(PLAN), "--prometheus-url", engine.url, "--tenant", TENANT,
                                       "--bearer-token-file", str(token_file), "--start", "2025-03-01",
                                       "--end", "2025-03-02"])
    assert result.exit_code == ExitCode.EXTERNAL
    assert "HTTP 401" in result.stderr
    assert TOKEN not in result.output and "Traceback" not in result.output


def test_a_missing_token_file_names_the_file(engine, tmp_path):
    missing = tmp_path / "no-such-token"
    result = CliRunner().invoke(main, ["check-gpu-prices", "-f", str(PLAN), "--prometheus-url", engine.url,
                                       "--tenant", TENANT, "--bearer-token-file", str(missing)])
    assert result.exit_code == ExitCode.EXTERNAL
    assert f"cannot read the --bearer-token-file {missing}" in result.stderr
    assert engine.requests == []


def test_check_gpu_prices_sends_the_headers(engine, token_file):
    result = CliRunner().invoke(main, ["check-gpu-prices", "-f", str(PLAN), "--prometheus-url", engine.url,
                                       "--tenant", TENANT, "--bearer-token-file", str(token_file)])
    assert engine.requests and engine.requests[0][1]["X-Scope-OrgID"] == TENANT
    assert engine.requests[0][1]["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in result.output


@pytest.mark.parametrize("args, message", [
    (["--tenant", "bad tenant\n"], "is not a valid tenant ID"),
    (["--prometheus-url", "http://u:pw@127.0.0.1:1", "--bearer-token-file", "/dev/null"], "use one of them"),
])
def test_option_mistakes_are_usage_errors(args, message):
    result = CliRunner().invoke(main, ["report", "-f", str(PLAN), "--start", "2025-03-01", "--end", "2025-03-02",
                                       *args])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr and "pw" not in result.stderr


def test_guard_budget_query_sends_the_headers(engine, token_file):
    engine.result = [{"metric": {c.LABEL_TEAM: "platform", c.LABEL_BUDGET: "monthly", c.LABEL_PERIOD: "monthly"},
                      "value": [1, "12.5"]}]
    endpoint = QueryEndpoint(engine.url, TENANT, str(token_file))
    spend = Prometheus(endpoint.url, headers=endpoint.headers).budget_spend(dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert {key: str(value) for key, value in spend.items()} == {("platform", "monthly", "monthly"): "12.5"}
    assert engine.requests[0][0] == f"{PREFIX}/api/v1/query"
    assert engine.requests[0][1]["Authorization"] == f"Bearer {TOKEN}"


def test_guard_treats_a_refused_token_and_a_missing_file_as_unavailable(engine, token_file, tmp_path):
    engine.token = ROTATED
    endpoint = QueryEndpoint(engine.url, TENANT, str(token_file))
    with pytest.raises(PrometheusUnavailable) as refused:
        Prometheus(endpoint.url, headers=endpoint.headers).budget_spend(dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert "HTTP 401" in str(refused.value) and TOKEN not in str(refused.value)
    gone = QueryEndpoint(engine.url, TENANT, str(tmp_path / "gone"))
    with pytest.raises(PrometheusUnavailable) as missing:
        Prometheus(gone.url, headers=gone.headers).budget_spend(dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert "cannot read the --bearer-token-file" in str(missing.value)
