"""A throw-away VictoriaMetrics on 127.0.0.1 and vmalert runs, for engine tests.

VictoriaMetrics is started with ``-search.disableCache`` (so imported history
is visible to the next query) and ``-search.latencyOffset=0s`` (by default it
hides the last 30s of samples from queries, which would make "now" differ
from Prometheus). Samples come in through ``/api/v1/import/prometheus``: the
Prometheus text format with millisecond timestamps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.promserver import free_port, run

VICTORIA_METRICS = shutil.which("victoria-metrics")
VMALERT = shutil.which("vmalert")
MISSING = "needs the victoria-metrics and vmalert binaries (Debian package victoria-metrics)"
READY_TIMEOUT = 20  # seconds for the server to answer /health
IMPORT_TIMEOUT = 120  # seconds for an import or a flush: a month of a report's series is large


def dry_run(rule_files: Sequence[Path]) -> str:
    """``vmalert -dryRun``: parse and validate rule files without a datasource."""
    assert VMALERT is not None, MISSING
    return run([VMALERT, "-dryRun", *(f"-rule={p}" for p in rule_files)])


class VMServer:
    def __init__(self, url: str) -> None:
        self.url = url

    def import_prometheus(self, text: str) -> None:
        """Import Prometheus exposition text; each line may end with a millisecond timestamp."""
        req = urllib.request.Request(f"{self.url}/api/v1/import/prometheus", data=text.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=IMPORT_TIMEOUT) as resp:
            assert resp.status == 204, resp.status
        # Freshly ingested rows become searchable about a second later; flush them now.
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=IMPORT_TIMEOUT):
            pass

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]


@contextmanager
def vm_server(tmp: Path, flags: Sequence[str] = ()) -> Iterator[VMServer]:
    """The server on a free port; ``flags`` are added to the test defaults (a benchmark's query limits)."""
    assert VICTORIA_METRICS is not None, MISSING
    port = free_port()
    log_path = tmp / "victoria.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            VICTORIA_METRICS,
            f"-storageDataPath={tmp / 'vmdata'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-search.disableCache",
            "-search.latencyOffset=0s",
            "-retentionPeriod=100y",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"victoria-metrics did not become ready: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield VMServer(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
