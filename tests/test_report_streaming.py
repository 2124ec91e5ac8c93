"""The report window by window: the same files as from all rows at once, and nothing left behind when it fails.

``costplan report`` holds one window's rows at a time: each day is summed
into the period's lines and its FOCUS lines are written to a partial file
as it arrives, renamed once every query has answered. These tests run the
command against a small HTTP server answering the day queries (the query
format itself is proven against a real Prometheus in ``test_report_e2e``).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from costplan.chargeback import report
from costplan.chargeback.promapi import PrometheusClient
from costplan.cli.app import main
from costplan.core.errors import ExitCode
from costplan.plan.load import load_plan
from tests.conftest import PLAN

START, END = "2025-03-01", "2025-03-04"  # three days in the bundled plan's timezone (UTC)
ML = {"team": "ml-research", "user": "premiumuser1", "tier": "premium", "model": "claude-sonnet"}
PLATFORM = {"team": "platform", "user": "batch-runner", "tier": "enterprise", "model": "mixtral-batch"}
# Label values arrive from Prometheus as any string: a comma, a quote and a formula must survive the FOCUS lines.
ODD = {"team": "platform", "user": '=1+2, o"neil', "tier": "enterprise", "model": "mixtral-batch"}


def samples(day: int) -> list[tuple[str, dict[str, str], str]]:
    """Day 0: two identities; day 1: a third appears (tokens only for one); day 2: one identity alone."""
    if day == 0:
        return [("spend", ML, "1.25"), ("requests", ML, "10"), ("tokens", {**ML, "token_type": "input"}, "700"),
                ("tokens", {**ML, "token_type": "output"}, "300"), ("spend", PLATFORM, "0.1000000004")]
    if day == 1:
        return [("spend", ML, "2.5"), ("spend", ODD, "3"), ("requests", ODD, "4"), ("spend", PLATFORM, "0.2")]
    return [("spend", PLATFORM, "0.0000000006")]


def answer(day: int) -> bytes:
    result = [{"metric": {"costplan_series": kind, **labels}, "value": [1, value]} for kind, labels, value in samples(day)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@pytest.fixture()
def prometheus() -> Iterator[Callable[[int | None], str]]:
    """``prometheus(failing_day)`` → the URL of a server answering each day's query (``failing_day`` with HTTP 503)."""
    servers: list[ThreadingHTTPServer] = []
    plan = load_plan(PLAN)
    tz = ZoneInfo(plan.timezone)
    days = report.windows(report.range_period(START, END, tz), tz)
    lag = report.billing_lag_hours(plan)
    day_of = {report.read_time(end, lag).timestamp(): index for index, (_, end) in enumerate(days)}

    def start(failing_day: int | None) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                day = day_of[float(form["time"][0])]
                status, body = (503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}') \
                    if day == failing_day else (200, answer(day))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run(url: str, *args: str):
    return CliRunner().invoke(
        main, ["report", "-f", str(PLAN), "--prometheus-url", url, "--start", START, "--end", END, *args],
    )


def test_window_by_window_is_the_report_of_all_rows_at_once(prometheus):
    url = prometheus(None)
    plan = load_plan(PLAN)
    period = report.range_period(START, END, ZoneInfo(plan.timezone))
    rows = report.collect(PrometheusClient(url), plan, period)
    assert len(rows) == 6

    focus = io.StringIO()
    sums = report.gather(PrometheusClient(url), plan, period, focus)

    assert focus.getvalue() == report.focus_csv(plan, rows)
    assert dict(report.view_files(plan, period, sums)) == {
        name: text for name, text in report.output_files(plan, period, rows).items() if not name.startswith("focus-")
    }
    # Hand-computed: 1.25 + 2.5 + 3 + (0.1000000004 + 0.2 + 0.0000000006, each rounded to 10 places first).
    assert str(sums.total) == "7.0500000010"
    assert sums.row_count == 6


def test_focus_lines_keep_odd_names_whole_and_neutralised(prometheus):
    url = prometheus(None)
    result = run(url, "--format", "focus")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [(row["ChargePeriodStart"], row["x_User"], row["BilledCost"]) for row in table] == [
        ("2025-03-01T00:00:00Z", "premiumuser1", "1.2500000000"),  # by day, then team, user, ...
        ("2025-03-01T00:00:00Z", "batch-runner", "0.1000000004"),
        ("2025-03-02T00:00:00Z", "premiumuser1", "2.5000000000"),
        ("2025-03-02T00:00:00Z", "'=1+2, o\"neil", "3.0000000000"),  # neutralised for spreadsheets
        ("2025-03-02T00:00:00Z", "batch-runner", "0.2000000000"),
        ("2025-03-03T00:00:00Z", "batch-runner", "0.0000000006"),
    ]
    odd = table[3]
    assert json.loads(odd["Tags"])["user"] == '=1+2, o"neil'
    assert (odd["x_Requests"], odd["ConsumedQuantity"], odd["ConsumedUnit"]) == ("4", "4", "Requests")
    ml = table[0]
    assert (ml["x_InputTokens"], ml["x_OutputTokens"], ml["ConsumedQuantity"], ml["ConsumedUnit"]) == (
        "700", "300", "1000", "Tokens")
    assert all(len(row) == len(report.FOCUS_COLUMNS) for row in csv.reader(io.StringIO(result.stdout, newline="")))


def test_files_are_in_place_whole_with_ordinary_permissions(prometheus, tmp_path: Path):
    url = prometheus(None)
    out = tmp_path / "reports"
    result = run(url, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted([
        *(name for name, _ in report.view_files(load_plan(PLAN), report.range_period(START, END, ZoneInfo("UTC")),
                                                 report.PeriodSums())),
        "focus-base-20250301T000000Z-20250304T000000Z.csv",
    ])
    umask = os.umask(0o022)
    os.umask(umask)
    assert {oct(path.stat().st_mode & 0o777) for path in out.iterdir()} == {oct(0o666 & ~umask)}
    assert (out / "focus-base-20250301T000000Z-20250304T000000Z.csv").read_text() == run(url, "--format", "focus").stdout


@pytest.mark.parametrize("failing_day", [0, 2])
def test_a_failed_query_leaves_the_directory_as_it_was(prometheus, tmp_path: Path, failing_day: int):
    url = prometheus(failing_day)
    existing = tmp_path / "existing"
    existing.mkdir()
    kept = existing / "notes.txt"
    kept.write_text("not costplan's\n")
    last_month = existing / "focus-base-20250301T000000Z-20250304T000000Z.csv"
    last_month.write_text("an earlier report\n")
    fresh = tmp_path / "fresh" / "reports"

    for target in (existing, fresh):
        result = run(url, "--output-dir", str(target))
        assert result.exit_code == ExitCode.EXTERNAL, result.output
        assert "HTTP 503" in result.output
        assert "Traceback" not in result.output

    assert sorted(path.name for path in existing.iterdir()) == ["focus-base-20250301T000000Z-20250304T000000Z.csv",
                                                                "notes.txt"]
    assert kept.read_text() == "not costplan's\n"
    assert last_month.read_text() == "an earlier report\n"
    assert not fresh.exists()


def test_stdout_gets_nothing_when_a_later_query_fails(prometheus):
    result = run(prometheus(2), "--format", "focus")
    assert result.exit_code == ExitCode.EXTERNAL
    assert result.stdout == ""


def test_report_collect_order_is_the_focus_order(prometheus):
    """``each_window`` yields each day's rows sorted by identity, days in order: what ``FocusLines`` needs."""
    url = prometheus(None)
    plan = load_plan(PLAN)
    period = report.range_period(START, END, ZoneInfo(plan.timezone))
    windows = list(report.each_window(PrometheusClient(url), plan, period))
    identity: Callable[[report.UsageRow], tuple[datetime, tuple[str, ...]]] = lambda row: (  # noqa: E731
        row.start, tuple(getattr(row, label) for label in report.ROW_LABELS))
    flat = [row for rows in windows for row in rows]
    assert [len(rows) for rows in windows] == [2, 3, 1]
    assert flat == sorted(flat, key=identity)


class _DiskFull:
    """A temporary file on a full volume: it opens, but every write fails as ``write(2)`` does with ENOSPC."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, getattr(inner, "name", "")

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> _DiskFull:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


def test_a_full_volume_is_a_clear_error_and_leaves_the_directory_as_it_was(prometheus, tmp_path: Path, monkeypatch):
    # The report CronJob writes to a PVC; a month that does not fit must say so, not claim a costplan bug.
    url = prometheus(None)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("not costplan's\n")
    fresh = tmp_path / "fresh"
    named = tempfile.NamedTemporaryFile
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", lambda *a, **k: _DiskFull(named(*a, **k)))
    for target in (existing, fresh):
        result = run(url, "--output-dir", str(target))
        assert result.exit_code == ExitCode.USAGE, result.output
        assert f"error: cannot write the report to {target}: No space left on device" in result.output
        assert "bug" not in result.output and "Traceback" not in result.output
    assert [path.name for path in existing.iterdir()] == ["notes.txt"]  # no partial file left behind
    assert not fresh.exists()

    spooled = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: _DiskFull(spooled(*a, **k)))
    result = run(url, "--format", "focus")
    assert result.exit_code == ExitCode.USAGE
    assert "cannot hold the FOCUS export in a temporary file: No space left on device" in result.output
    assert result.stdout == ""
