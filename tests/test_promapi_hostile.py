"""A hostile or broken Prometheus: every bad answer is a one-line error, never a crash or a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from costplan.chargeback.promapi import PrometheusClient, PrometheusError
from costplan.cli.app import main
from costplan.core.errors import ExitCode
from tests.conftest import patched_minimal

AT = datetime(2025, 3, 1, tzinfo=UTC)
Behaviour = Callable[[socket.socket], None]


def http_answer(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{headers}\r\n").encode() + body


def answering(data: bytes) -> Behaviour:
    def behave(conn: socket.socket) -> None:
        conn.sendall(data)
    return behave


def read_request(conn: socket.socket) -> None:
    """Read the whole request (closing with unread bytes would reset the connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


@pytest.fixture()
def server() -> Iterator[Callable[[Behaviour], str]]:
    """``server(behaviour)`` → the URL of a socket server that reads a request, then runs ``behaviour``."""
    listeners: list[socket.socket] = []

    def start(behaviour: Behaviour) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)

        def loop() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    try:
                        read_request(conn)
                        behaviour(conn)
                    except OSError:
                        pass

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


def vector(result: str) -> bytes:
    return ('{"status":"success","data":{"resultType":"vector","result":' + result + "}}").encode()


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[]", "did not answer with Prometheus API JSON"),
        (b'{"status":"success"}', "without a data object"),
        (b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "not an instant vector"),
        (vector('{"a":1}'), "not a list"),
        (vector('[{"metric":{"team":1},"value":[1,"2"]}]'), "labels are not strings"),
        (vector('[{"metric":{},"value":"2"}]'), "the value is not"),
        (vector('[{"metric":{},"value":[1,2]}]'), "the value is not"),
        (vector('[{"metric":{},"value":[1,"abc"]}]'), "not a number"),
        (vector('[{"metric":{},"value":[1,"1e22"]}]'), "implausibly large"),
        (b'{"status":"error","errorType":"bad_data","error":"x\\ny"}', "bad_data: x\\ny"),
        (b'{"status":' + b"[" * 100000 + b"]" * 100000 + b"}", "did not answer with Prometheus API JSON"),
    ],
)
def test_wrong_shapes_and_values_are_one_line_errors(server, body, message):
    url = server(answering(http_answer(body)))
    with pytest.raises(PrometheusError) as caught:
        PrometheusClient(url, timeout=5).query("up", AT)
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_nan_and_infinity_are_dropped_not_errors(server):
    url = server(answering(http_answer(vector('[{"metric":{},"value":[1,"NaN"]},{"metric":{},"value":[1,"+Inf"]}]'))))
    assert PrometheusClient(url, timeout=5).query("up", AT) == []


@pytest.mark.parametrize(
    "raw, message",
    [
        (http_answer(b'{"status":"success","data"')[:-3] + b"", "truncated"),
        (b"HTTP/1.1 abc\r\n\r\n", "broken HTTP answer"),
        (b"garbage\r\n\r\n", "broken HTTP answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n{}", "broken HTTP answer"),
        (b"", "broken HTTP answer"),
    ],
)
def test_broken_http_is_a_one_line_error(server, raw, message):
    if message == "truncated":
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\""
    url = server(answering(raw))
    with pytest.raises(PrometheusError) as caught:
        PrometheusClient(url, timeout=5).query("up", AT)
    assert message in caught.value.message


def test_a_very_large_answer_is_refused(server):
    declared = server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{"))
    with pytest.raises(PrometheusError, match="answered more than"):
        PrometheusClient(declared, timeout=5, max_bytes=1024 * 1024).query("up", AT)

    def stream(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for _ in range(40):
            conn.sendall(b" " * 65536)

    streamed = server(stream)
    with pytest.raises(PrometheusError, match="answered more than"):
        PrometheusClient(streamed, timeout=5, max_bytes=1024 * 1024).query("up", AT)


def test_timeout_bounds_the_whole_query_not_each_read(server):
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.2)

    url = server(drip)
    began = time.monotonic()
    with pytest.raises(PrometheusError, match="did not answer within 1s"):
        PrometheusClient(url, timeout=1).query("up", AT)
    assert time.monotonic() - began < 2.5


def test_redirects_to_another_host_are_refused_same_host_followed(server):
    target = server(answering(http_answer(vector('[{"metric":{"team":"a"},"value":[1,"2.5"]}]'))))
    port = target.rsplit(":", 1)[1]
    moved = server(answering(http_answer(b"", "307 Temporary Redirect", f"Location: http://localhost:{port}/api/v1/query\r\n")))
    with pytest.raises(PrometheusError, match="another host; refused"):
        PrometheusClient(moved, timeout=5).query("up", AT)
    other_port = server(answering(http_answer(b"", "308 Permanent Redirect", f"Location: {target}/api/v1/query\r\n")))
    with pytest.raises(PrometheusError, match="another host"):
        PrometheusClient(other_port, timeout=5).query("up", AT)  # another port is another origin
    answers = [http_answer(b"", "301 Moved Permanently", "Location: /prometheus/api/v1/query\r\n"),
               http_answer(vector('[{"metric":{"team":"a"},"value":[1,"2.5"]}]'))]
    same_origin = server(lambda conn: conn.sendall(answers.pop(0)))
    [sample] = PrometheusClient(same_origin, timeout=5).query("up", AT)
    assert str(sample.value) == "2.5" and not answers


def test_report_refuses_negative_spend_and_huge_values_with_exit_4(server, tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal())
    for value, message in (("-5", "negative spend"), ("1e22", "implausibly large")):
        labels = '{"team":"research","user":"alice","model":"small","costplan_series":"spend"}'
        body = vector(f'[{{"metric":{labels},"value":[1,"{value}"]}}]')
        url = server(lambda conn, body=body: conn.sendall(http_answer(body)))
        result = CliRunner().invoke(main, ["report", "-f", str(plan), "--start", "2025-03-01", "--end", "2025-03-02",
                                           "--prometheus-url", url], catch_exceptions=False)
        assert result.exit_code == ExitCode.EXTERNAL, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0]
        assert result.stdout == "" and "Traceback" not in result.output
