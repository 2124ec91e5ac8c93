"""``costplan report`` for one month against a real Prometheus, beside one query returning the same totals.

For each user count: writes one month (and a day either side) of hourly
spend and usage series, as the hourly rules record them, for N users (10 a
team, one model each, every user spending every hour: the worst case),
backfills them with ``promtool tsdb create-blocks-from openmetrics`` and
starts the Debian ``prometheus`` on them. Then, in the same run:

* **one query**: a single instant query over the whole month returning
  what the report totals (spend, requests and tokens per identity:
  ``report.day_query`` over the month), timed from request to the last byte
  of the answer (best of three), and the same for spend alone
  (``report.spend_query``);
* **report**: ``costplan report --month 2025-03 --output-dir`` in a child
  process, reading a plan with the series' teams (``report_plan``): wall
  time, peak RSS (``ru_maxrss`` of the report process alone, from
  ``wait4``), the number of queries it sent (its last progress line) and
  its CPU time (user + system): the client's share of the wall time, the
  rest is waiting for the server.

``--profile`` runs the report a second time under ``cProfile`` and writes the
30 functions with the most cumulative time to stderr. Only the main thread
is profiled: folding answers into rows and shaping the files; the answers
are read and parsed in the query threads.

``--engine victoriametrics`` imports the same month into the Debian
``victoria-metrics`` server instead (``/api/v1/import/prometheus``, two
hours at a time) and times the same things there. A single query that does
not finish within ``QUERY_TIMEOUT`` (a month of 50,000 users is more than
one Prometheus answers at once) is reported as such, and the report still
runs.

The series have one sample an hour (a live Prometheus records each hour at
every evaluation of the next one, 12 times with a 5-minute interval): the
server reads 12 times fewer samples than it would live, for both sides.

    python benchmarks/report_bench.py --users 5000 50000
    python benchmarks/report_bench.py --users 500 --profile
    python benchmarks/report_bench.py --engine victoriametrics --users 5000 50000
"""

from __future__ import annotations

import argparse
import http.client
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from costplan.chargeback import report
from costplan.core import conventions as c
from costplan.plan.load import load_plan

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from generate_plan import make_plan  # noqa: E402

from tests.promserver import PrometheusServer  # noqa: E402
from tests.vmserver import vm_server  # noqa: E402

FIRST = datetime(2025, 2, 28, 0, tzinfo=UTC)
LAST = datetime(2025, 4, 1, 2, tzinfo=UTC)
MONTH = report.Period(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC), "2025-03")


BLOCK_HOURS = 2  # promtool's block length
QUERY_TIMEOUT = 600  # seconds for one query, as the server's own --query.timeout


def blocks_of_samples(users: int, millis: bool = False) -> Iterator[tuple[str, int]]:
    """Every user's spend, requests and input/output tokens, one sample an hour, two hours at a time.

    Each piece is complete OpenMetrics (its own ``# TYPE`` lines and
    ``# EOF``, timestamps in seconds) for promtool, or the Prometheus text
    format with millisecond timestamps for VictoriaMetrics' import; with its
    sample count.
    """
    plan = load_plan(ROOT / "costplan.yaml")
    models = [m.name for m in plan.models]
    tiers = [t.name for t in plan.tiers]
    identities = [
        f'team="team-{u // 10:05d}",user="user-{u:06d}",tier="{tiers[(u // 10) % len(tiers)]}",'
        f'model="{models[u % len(models)]}"'
        for u in range(users)
    ]
    families = (
        (c.METRIC_SPEND_HOURLY, [(lambda u: f',cost_center="CC-{u // 10:05d}"',
                                  lambda u, h: f"0.{(u * 7 + h) % 9973 + 1:06d}")]),
        (c.METRIC_USAGE_REQUESTS_HOURLY, [(lambda u: ',source="limitador"', lambda u, h: str((u + h) % 97 + 1))]),
        (c.METRIC_USAGE_TOKENS_HOURLY, [
            (lambda u: ',source="envoy-ai",token_type="input"', lambda u, h: str((u * 3 + h) % 9001 + 1)),
            (lambda u: ',source="envoy-ai",token_type="output"', lambda u, h: str((u + 5 * h) % 901 + 1)),
        ]),
    )
    heads = {(metric, i): [f"{metric}{{{labels}{extra(u)}}} " for u, labels in enumerate(identities)]
             for metric, kinds in families for i, (extra, _) in enumerate(kinds)}
    hours = int((LAST - FIRST) / timedelta(hours=1)) + 1
    for block in range(0, hours, BLOCK_HOURS):
        lines: list[str] = []
        for metric, kinds in families:
            if not millis:
                lines.append(f"# TYPE {metric} gauge\n")
            for i, (_, value) in enumerate(kinds):
                for u, head in enumerate(heads[(metric, i)]):
                    for h in range(block, min(block + BLOCK_HOURS, hours)):
                        stamp = int((FIRST + timedelta(hours=h)).timestamp()) + 30
                        lines.append(f"{head}{value(u, h)} {stamp * 1000 if millis else stamp}\n")
        count = len(lines) - (0 if millis else len(families))
        if not millis:
            lines.append("# EOF\n")
        yield "".join(lines), count


PROMTOOLS_IN_FLIGHT = 2  # promtool runs writing blocks while the next piece is generated


def backfill(data: Path, work: Path, users: int) -> int:
    """The month into promtool's blocks; the sample count.

    ``promtool tsdb create-blocks-from openmetrics`` reads its whole input
    once per two-hour block it writes, so a month in one file is read about
    370 times; one file per block is read once. A few promtool runs write
    their blocks side by side (each block is its own directory).
    """
    count = 0
    running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def finish(run: subprocess.Popen[bytes], chunk: Path) -> None:
        _, errors = run.communicate()
        if run.returncode != 0:
            raise RuntimeError(f"promtool failed: {errors.decode()[-2000:]}")
        chunk.unlink()

    for index, (text, samples) in enumerate(blocks_of_samples(users)):
        if len(running) >= PROMTOOLS_IN_FLIGHT:
            finish(*running.pop(0))
        chunk = work / f"block-{index:04d}.om"
        chunk.write_text(text)
        count += samples
        running.append((subprocess.Popen(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(chunk), str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), chunk))
    for run, chunk in running:
        finish(run, chunk)
    return count


def import_victoria(url: str, users: int) -> int:
    """The month into VictoriaMetrics through ``/api/v1/import/prometheus``, flushed; the sample count."""
    count = 0
    for text, samples in blocks_of_samples(users, millis=True):
        request = urllib.request.Request(f"{url}/api/v1/import/prometheus", data=text.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=600):
            pass
        count += samples
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=600):
        pass
    return count


def settled(url: str, quiet: float = 30.0, limit: float = 1800.0) -> int:
    """Wait until the server's startup compaction of the backfilled blocks is over; the blocks left.

    Prometheus merges the two-hour blocks into larger ones after it starts;
    measuring during that would time the compaction too.
    """
    def blocks() -> tuple[int, int]:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            text = response.read().decode()
        loaded = re.search(r"^prometheus_tsdb_blocks_loaded (\S+)$", text, re.M)
        runs = re.search(r"^prometheus_tsdb_compactions_total (\S+)$", text, re.M)
        return int(float(loaded.group(1))) if loaded else -1, int(float(runs.group(1))) if runs else -1

    deadline = time.monotonic() + limit
    last, since = blocks(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(5)
        now = blocks()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last[0]


def timed_query(url: str, expr: str, at: datetime) -> tuple[float, int]:
    body = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/query", data=body),
                                timeout=QUERY_TIMEOUT) as response:
        answer = response.read()
    elapsed = time.perf_counter() - started
    if b'"status":"success"' not in answer:
        raise RuntimeError(answer[:500].decode())
    return elapsed, answer.count(b'"metric"')


def report_plan(directory: Path, users: int) -> Path:
    """The plan the report reads: the bundled one with the series' teams (10 users each) and cost centers.

    The usage series carry no ``cost_center`` (the report takes it from the
    plan's team), so the teams must be the plan's, as they are in a real
    cluster, or each identity would split into a spend row and a usage row.
    """
    plan = make_plan(teams=max(1, users // 10), users_per_team=10, models=1)
    bundled = yaml.load((ROOT / "costplan.yaml").read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    plan["models"], plan["usageSources"] = bundled["models"], bundled["usageSources"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "costplan.yaml"
    path.write_text(yaml.dump(plan, Dumper=yaml.CSafeDumper, sort_keys=False), encoding="utf-8")
    return path


def report_command(plan: Path, url: str, out: Path) -> list[str]:
    return ["-m", "costplan", "report", "-f", str(plan), "--month", "2025-03",
            "--prometheus-url", url, "--output-dir", str(out), "--timeout", "600"]


def run_report(plan: Path, url: str, out: Path) -> tuple[float, float, float, int, str]:
    """Wall time, peak RSS (MiB), CPU time (user + system), queries and total of one report run.

    The peak and CPU are the report process's own (``wait4`` on its pid):
    ``RUSAGE_CHILDREN`` would fold in every child this process waited for
    before, promtool's backfill among them.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *report_command(plan, url, out)], stdout=subprocess.DEVNULL,
                                 stderr=stderr, env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        messages = stderr.read().decode("utf-8", "replace")
    if child.returncode != 0:
        raise RuntimeError(messages[-2000:])
    cpu = usage.ru_utime + usage.ru_stime
    queries = re.search(r"(\d+) quer(?:y|ies)$", messages, re.M)
    total = re.search(r"^total (\S+)", messages, re.M)
    return elapsed, usage.ru_maxrss / 1024, cpu, int(queries.group(1)) if queries else -1, total.group(1) if total else "?"


def profile_report(plan: Path, url: str, out: Path, stats: Path) -> None:
    """The report once more under ``cProfile``; the top 30 by cumulative time on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(stats), *report_command(plan, url, out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    pstats.Stats(str(stats), stream=sys.stderr).sort_stats("cumulative").print_stats(30)


def victoria_settled(url: str, quiet: float = 30.0, limit: float = 1800.0) -> None:
    """Wait until VictoriaMetrics has no background merge running for ``quiet`` seconds."""
    def merging() -> float:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            text = response.read().decode()
        return sum(float(v) for v in re.findall(r"^vm_active_merges\{[^}]*\} (\S+)$", text, re.M))

    deadline = time.monotonic() + limit
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(5)
        if merging():
            since = time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


@contextmanager
def prepared_server(engine: str, work: Path, users: int) -> Iterator[tuple[str, int, str]]:
    """A server holding the month: its URL, the sample count and what its storage looks like."""
    if engine == "victoriametrics":
        with vm_server(work, ["-search.maxUniqueTimeseries=10000000", "-search.maxQueryDuration=10m",
                              "-search.maxSamplesPerQuery=10000000000"]) as vm:
            samples = import_victoria(vm.url, users)
            victoria_settled(vm.url)
            yield vm.url, samples, "merges settled"
        return
    samples = backfill(work / "data", work, users)
    server = PrometheusServer(work, work / "data")
    server.flags = ["--query.max-samples=1000000000", "--query.timeout=10m"]
    server.start()
    try:
        yield server.url, samples, f"{settled(server.url)} blocks after compaction"
    finally:
        server.stop()


def bench(users: int, engine: str = "prometheus", profile: bool = False, repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="costplan-report-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        with prepared_server(engine, work, users) as (url, samples, storage):
            prepared = time.perf_counter() - started
            at = report.read_time(MONTH.end)
            combined = report.day_query(MONTH.start, MONTH.end)
            spend = report.spend_query(MONTH.start, MONTH.end)
            one = spend_only = float("nan")
            series = -1
            try:
                timed_query(url, combined, at)  # warm the page cache for both sides
                one = min(timed_query(url, combined, at)[0] for _ in range(repeat))
                spend_only, series = min(timed_query(url, spend, at) for _ in range(repeat))
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException) as exc:
                # A server that cannot answer the month at once (time, memory) still answers its days.
                print(f"  single query over the month did not finish: {exc}", file=sys.stderr)
            plan = report_plan(work / "plan", users)
            elapsed, peak, cpu, queries, total = run_report(plan, url, work / "out")
            focus = work / "out" / "focus-base-2025-03.csv"
            rows, focus_bytes = sum(1 for _ in focus.open()) - 1, focus.stat().st_size
            if profile:
                profile_report(plan, url, work / "profiled", work / "report.pstats")
    print(f"{engine} users={users} samples={samples} (prepared in {prepared:.0f} s, {storage}) "
          f"spend series={series}")
    print(f"  one query (spend+requests+tokens, month): {one:.2f} s; spend alone: {spend_only:.2f} s"
          + (f" (did not finish within {QUERY_TIMEOUT} s)" if one != one else ""))
    print(f"  costplan report: {elapsed:.2f} s, peak RSS {peak:.0f} MiB, {queries} queries, {rows} FOCUS rows, "
          f"total {total}; FOCUS file {focus_bytes / 1e6:.1f} MB")
    print(f"  report CPU (client): {cpu:.2f} s, {cpu / elapsed:.0%} of its wall time")
    print(f"  ratio report / one query: {elapsed / one:.2f}; report / spend-only query: {elapsed / spend_only:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--engine", choices=["prometheus", "victoriametrics"], default="prometheus",
                        help="The server holding the month: Debian's prometheus (promtool backfill) or "
                             "victoria-metrics (imported over HTTP).")
    parser.add_argument("--repeat", type=int, default=3, help="Single queries timed (the best is kept).")
    parser.add_argument("--profile", action="store_true",
                        help="Profile a second report run; the top 30 functions on stderr.")
    args = parser.parse_args()
    for users in args.users:
        bench(users, args.engine, args.profile, args.repeat)


if __name__ == "__main__":
    main()
