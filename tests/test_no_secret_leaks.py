"""A secret planted wherever a user can put one is found in no output of any command.

Places: credentials in the Prometheus URL, a webhook URL (with and without
a scheme), an API key pasted where a name belongs, and an API server (or a
proxy in front of it) that echoes the request, bearer token included, in its
error body. Every command's stdout and stderr are searched for the secret.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.core.redact import printable, redact, redact_url
from tests.conftest import patched_minimal

SECRET = "Zq8Wv3Rt6Yp1Lm4Nb7Xc0Kd5"
PASTED_KEY = f"sk-proj-{SECRET}"


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result, result.stdout + result.stderr


def assert_clean(output: str) -> None:
    assert SECRET not in output, output
    assert "Traceback" not in output


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def echo_server() -> Iterator[str]:
    """An HTTP server that answers every request with 500 and the request's own headers as the body."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _echo(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"kind": "Status", "message": f"proxy error for request with headers {dict(self.headers)}"})
            data = body.encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _echo

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def empty_prometheus() -> Iterator[str]:
    """A Prometheus that answers every query with an empty instant vector."""

    class Empty(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Empty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "costplan.yaml"
    path.write_text(patched_minimal())
    return path


def test_prometheus_url_credentials_are_never_printed(plan, echo_server):
    for url in (f"http://admin:{SECRET}@127.0.0.1:{closed_port()}", echo_server.replace("//", f"//u:{SECRET}@")):
        for command in ("report", "check-gpu-prices"):
            args = [command, "-f", str(plan), "--prometheus-url", url]
            result, output = run(*args, *(["--month", "2025-03"] if command == "report" else []))
            assert result.exit_code == 4, output
            assert_clean(output)


def test_an_echoing_prometheus_does_not_leak_the_basic_credentials(plan, echo_server):
    result, output = run("report", "-f", str(plan), "--month", "2025-03",
                         "--prometheus-url", echo_server.replace("//", f"//reader:{SECRET}@"))
    assert result.exit_code == 4
    assert "HTTP 500" in output
    assert_clean(output)


@pytest.mark.parametrize(
    "webhook",
    [
        f"hooks.example.com/services/T0/B0/{SECRET}",  # no scheme
        f"https://hooks.example.com/services/T0/B0/{SECRET}",
        f"https://127.0.0.1:{closed_port()}/hook?token={SECRET}",
        f"ftp://user:{SECRET}@example.com/",
        "ECHO",
    ],
)
def test_webhook_urls_are_never_printed(plan, webhook, empty_prometheus, echo_server):
    webhook = webhook.replace("ECHO", f"{echo_server}/services/{SECRET}")
    result, output = run("report", "-f", str(plan), "--month", "2025-03", "--prometheus-url", empty_prometheus,
                         "--allow-empty", "--webhook-url", webhook)
    assert result.exit_code == (2 if webhook.startswith(("hooks", "ftp")) else 4), output
    assert_clean(output)


def test_a_key_pasted_where_a_name_belongs_is_not_echoed(tmp_path):
    path = tmp_path / "costplan.yaml"
    path.write_text(patched_minimal(("      - id: carol", f"      - id: {PASTED_KEY}"),
                                    ("secretName: apikey-bob", f"secretName: {PASTED_KEY}")))
    for args in (["validate"], ["validate", "--format", "json"], ["build"], ["impact", "--base", str(path)]):
        result, output = run(*args, "-f", str(path))
        assert result.exit_code == 3, output
        assert_clean(output)
        assert "[REDACTED]" in output


def test_an_api_server_error_body_echoing_the_token_is_redacted(plan, echo_server, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the client's discovery cache
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": echo_server}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": f"kube-{SECRET}"}}],
    }))
    for command in ("diff", "apply"):
        result, output = run(command, "-f", str(plan), "--kubeconfig", str(kubeconfig), "--timeout", "5")
        assert result.exit_code == 4, output
        assert_clean(output)


@pytest.mark.parametrize(
    "text",
    [
        f"https://user:{SECRET}@prometheus:9090/api",
        f"Authorization: Bearer {SECRET}",
        f'{{"Authorization": "Basic {SECRET}"}}',
        f"callback?token={SECRET}&x=1",
        f'{{"password": "{SECRET}"}}',
        f"key {PASTED_KEY} pasted",
        f"ghp_{SECRET}",
        SECRET,
    ],
)
def test_redact_removes_every_credential_form(text):
    assert SECRET not in redact(text)


def test_redact_keeps_ordinary_messages_and_paths():
    for text in (
        "costplan.yaml:3:4: /teams/0/users/0/apiKey/secretName: not a DNS name [k8s-name]",
        "environments/prod.yaml: /teams/1/budgets/0/window: a Prometheus duration (e.g. 15m, 7d)",
        "kuadrant/ratelimitpolicy-costplan-llm-chargeback-premium.yaml: /spec/limits [cel]",
        "TokenRateLimitPolicy, TelemetryPolicy",
    ):
        assert redact(text) == text


def test_redact_url_keeps_only_scheme_host_and_port():
    assert redact_url(f"https://u:{SECRET}@hooks.example.com:8443/a/{SECRET}?t={SECRET}") == "https://hooks.example.com:8443"
    assert SECRET not in redact_url(f"hooks.example.com/{SECRET}")


def test_printable_escapes_line_breaks_and_terminal_codes():
    assert printable("a\nb\r\x1b[31m\x85\u2028") == "a\\nb\\r\\x1b[31m\\x85\\u2028"
