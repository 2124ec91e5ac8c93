"""A throw-away Prometheus on 127.0.0.1 and promtool backfills, for end-to-end tests.

``promtool tsdb create-blocks-from rules`` evaluates every rule of a file
against a running server, each rule on its own: a rule that reads a series
recorded by an earlier rule of the same group would see nothing. Rules are
therefore backfilled in *layers* (``rule_layers``): every layer only reads
series already in the server's TSDB, and the server is restarted after each
layer so it loads the new blocks.

promtool evaluates a group at the timestamps a live Prometheus would use:
multiples of the interval plus an offset hashed from the group's name and
file name. ``evaluation_offset_ms`` measures that offset, so callers can
write input samples that fall exactly on the evaluation times.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
MISSING = "needs the prometheus and promtool binaries (Debian package prometheus)"
COMMAND_TIMEOUT = 30  # seconds per promtool run
READY_TIMEOUT = 20  # seconds for the server to answer /-/ready
BLOCK = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # a block directory is named by its ULID
DUMP_LINE = re.compile(r"^\{(?P<labels>.*)\} (?P<value>\S+) (?P<ts>\d+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: Sequence[str], cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a command; on failure raise with its output (promtool explains itself on stderr)."""
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def seconds(ms: int) -> str:
    """OpenMetrics timestamp (seconds) that promtool reads back as exactly ``ms``.

    promtool truncates ``seconds * 1000`` to an integer; half a millisecond
    more keeps binary rounding from landing one millisecond early.
    """
    return f"{ms // 1000}.{ms % 1000:03d}5"


def backfill_openmetrics(text: str, data_dir: Path, work: Path, timeout: float = COMMAND_TIMEOUT) -> None:
    """promtool writes one block per two hours of samples: a month takes it about a minute."""
    source = work / "input.om"
    source.write_text(text)
    run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data_dir)], timeout=timeout)


class PrometheusServer:
    """``prometheus`` on a free loopback port over ``data_dir``; restartable on the same data."""

    def __init__(self, work: Path, data_dir: Path):
        self.work = work
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = work / "prometheus.yml"
        self.config.write_text("global:\n  evaluation_interval: 1m\n")
        self.log_path = work / "prometheus.log"
        self.process: subprocess.Popen | None = None
        self.flags: list[str] = []  # more command-line flags (e.g. query limits for benchmarks)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        try:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.data_dir}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=3650d", *self.flags],
                stdout=log, stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: flushes and releases the data directory lock
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def add_blocks(self, blocks_dir: Path) -> int:
        """Move the blocks promtool wrote into the data directory (server stopped); how many."""
        moved = 0
        for block in sorted(blocks_dir.iterdir()):
            if block.is_dir() and BLOCK.match(block.name):
                shutil.move(str(block), str(self.data_dir / block.name))
                moved += 1
        return moved


def referenced(expr: str, name: str) -> bool:
    return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr) is not None


def rule_layers(group: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The group's recording rules split so each layer reads only earlier layers.

    A rule goes one layer after the latest earlier rule of the group whose
    series it reads, so every rule sees what it would see in a live
    Prometheus, where a group's rules run in order at one timestamp.
    Alerting rules are left out (promtool does not backfill them).
    """
    layers: list[list[dict[str, Any]]] = []
    placed: list[tuple[str, int]] = []  # (record name, layer) of earlier rules
    for rule in group["rules"]:
        if "record" not in rule:
            continue
        layer = max((depth + 1 for name, depth in placed if referenced(rule["expr"], name)), default=0)
        while len(layers) <= layer:
            layers.append([])
        layers[layer].append(rule)
        placed.append((rule["record"], layer))
    return layers


def needed_rules(groups: list[dict[str, Any]], targets: set[str]) -> list[dict[str, Any]]:
    """The groups cut down to the rules that ``targets`` depend on, transitively (empty groups dropped)."""
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    needed = set(targets)
    while True:
        more = {name for group in groups for rule in group["rules"] if rule.get("record") in needed
                for name in recorded if referenced(rule["expr"], name)} - needed
        if not more:
            break
        needed |= more
    out = []
    for group in groups:
        rules = [rule for rule in group["rules"] if rule.get("record") in needed]
        if rules:
            out.append({**group, "rules": rules})
    return out


def group_file(group: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"groups": [{"name": group["name"], "interval": group["interval"], "rules": rules}]},
                          sort_keys=False)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def backfill_rules(server: PrometheusServer, file_name: str, text: str, start: datetime, end: datetime,
                   interval: str) -> int:
    """Evaluate one rules file against the running server over ``[start, end]``; load the result.

    The file is written to ``server.work / file_name`` and passed by that
    relative name, so the evaluation offset depends only on ``file_name``
    and the group's name. Restarts the server; returns the blocks added.
    """
    (server.work / file_name).write_text(text)
    output = server.work / "rule-blocks"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir()
    run([PROMTOOL, "tsdb", "create-blocks-from", "rules", f"--start={rfc3339(start)}", f"--end={rfc3339(end)}",
         f"--url={server.url}", f"--eval-interval={interval}", f"--output-dir={output.name}", "--quiet", file_name],
        cwd=server.work)
    server.stop()
    moved = server.add_blocks(output)
    server.start()
    return moved


def dump(data_dir: Path) -> list[tuple[str, str, int]]:
    """``(labels, value, timestamp ms)`` of every sample in a TSDB directory."""
    (data_dir / "wal").mkdir(exist_ok=True)  # promtool tsdb dump insists on one
    samples = []
    for line in run([PROMTOOL, "tsdb", "dump", str(data_dir)]).splitlines():
        match = DUMP_LINE.match(line)
        if match:
            samples.append((match["labels"], match["value"], int(match["ts"])))
    return samples


def evaluation_offset_ms(server: PrometheusServer, group: dict[str, Any], file_name: str, start: datetime) -> int:
    """Where in each interval promtool (and Prometheus) evaluates ``group`` from ``file_name``.

    The offset is a hash of the group's name and file name only, so a probe
    group of the same name in a file of the same name tells it.
    """
    probe = {"groups": [{"name": group["name"], "interval": group["interval"],
                         "rules": [{"record": "probe", "expr": "vector(1)"}]}]}
    probe_dir = server.work / "probe"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / file_name).write_text(yaml.safe_dump(probe))
    output = probe_dir / "blocks"
    shutil.rmtree(output, ignore_errors=True)
    end = datetime.fromtimestamp(start.timestamp() + 600, start.tzinfo)
    run([PROMTOOL, "tsdb", "create-blocks-from", "rules", f"--start={rfc3339(start)}", f"--end={rfc3339(end)}",
         f"--url={server.url}", f"--output-dir={output.name}", "--quiet", file_name], cwd=probe_dir)
    interval_ms = int(_duration_seconds(group["interval"]) * 1000)
    stamps = {ts % interval_ms for _, _, ts in dump(output)}
    if len(stamps) != 1:
        raise RuntimeError(f"promtool evaluated group {group['name']} at varying offsets: {sorted(stamps)}")
    return stamps.pop()


def _duration_seconds(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", text))
