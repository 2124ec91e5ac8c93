"""Evaluation cost of the spend rules per identity mode as users and teams grow, next to naive rules.

For each identity mode and each number of users (10 users per team, so teams
grow alongside), builds a plan shaped like the bundled one
(``generate_plan.make_plan``) and one synthetic usage counter per user,
sampled every 30 s (the interval costplan's ServiceMonitor and PodMonitors
scrape at; 3 calls a minute; ``--restarting`` of the counters restart from 0
half an hour before the backfill ends). ``--history`` minutes (default 25
hours, so that the naive rule's 24-hour window is as full as on a server
that has run for a day) are backfilled with ``promtool tsdb
create-blocks-from openmetrics``, one input per 2-hour block; then one local
Prometheus over those blocks scrapes the same series live from an exporter
in this process (``honor_labels``: the scraped samples continue the
backfilled series, which is checked), evaluating the plan's rule groups and,
beside them, the naive seed rule
``sum(increase(<counter>[24h])) by (user, group) * 0.002`` on the very same
series. After ``--settle`` seconds of scraping (the 5-minute rate windows
fill), every group is evaluated every ``--interval``; after each group has
run ``--cycles`` times, each group's ``evaluationTime`` (``/api/v1/rules``)
is read once per interval and the median kept. Printed: seconds per cycle
per group, the plan's total and its ratio to the naive rule measured in the
same Prometheus at the same time; then the same per minute of a server that
runs each group at the interval the build gives it (the hourly group every
5 minutes, the others every minute) and the naive rule at Prometheus'
default evaluation interval (1 minute): the load a Prometheus carries.
(``promtool test rules`` caps a query at 10,000 samples, too few for
thousands of users.)

Identity modes:

* ``telemetry``: Limitador counters labelled user, team, tier by the
  TelemetryPolicy (the bundled plan);
* ``legacy``: the custom Limitador image, counters labelled ``user`` only
  (team and tier joined from ``costplan:user_identity``, whose
  ``kube_secret_annotations`` input is backfilled and scraped too, one per
  user);
* ``model-owner``: vLLM, counters with a model and no user (one series per
  pod); team and tier from the model's owner;
* ``litellm``: LiteLLM's counters labelled user and team.

    python benchmarks/rules_scaling.py --modes telemetry legacy --users 500 5000
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from generate_plan import make_plan  # noqa: E402

from costplan.core import conventions as c  # noqa: E402
from costplan.generators.kuadrant.monitors import SCRAPE_INTERVAL  # noqa: E402
from costplan.generators.kuadrant.secrets import key_secret_annotations  # noqa: E402
from costplan.generators.prometheus.groups import rule_groups  # noqa: E402
from costplan.plan.load import load_plan  # noqa: E402
from costplan.plan.model import Plan  # noqa: E402

USERS_PER_TEAM = 10
MODES = ("telemetry", "legacy", "model-owner", "litellm")
NAIVE_GROUP = "naive"
LEGACY_IMAGE = "ghcr.io/nerdalert/limitador@sha256:" + "0" * 64


def plan_document(mode: str, users: int) -> dict[str, Any]:
    """The plan of ``mode`` with ``users`` users, 10 per team (4 models: limitador, envoy, vLLM, envoy)."""
    plan = make_plan(teams=max(1, users // USERS_PER_TEAM), users_per_team=USERS_PER_TEAM, models=4)
    if mode == "legacy":
        limitador = plan["integrations"]["gateway"].setdefault("limitador", {})
        limitador.update({"metrics": "legacyImage", "image": LEGACY_IMAGE})
    elif mode == "litellm":
        for source in plan["usageSources"]:
            if source["name"] == "limitador":
                source["type"] = "litellm"
    return plan


def load(mode: str, users: int, work: Path) -> Plan:
    path = work / f"{mode}-{users}.yaml"
    path.write_text(yaml.safe_dump(plan_document(mode, users), sort_keys=False))
    return load_plan(path, None)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def counters(mode: str, plan: Plan) -> tuple[str, list[dict[str, str]]]:
    """The usage counter of ``mode`` and the labels of its series, one per user."""
    by_model = {m.usage_source: m.model_name for m in plan.models}
    out = []
    for index, (team, user) in enumerate(plan.users()):
        tier = user.tier or team.tier
        if mode == "telemetry":
            out.append({"user": user.id, "team": team.name, "tier": tier, "limitador_namespace": "llm/route"})
        elif mode == "legacy":
            out.append({"user": user.id, "limitador_namespace": "llm/route"})
        elif mode == "model-owner":
            out.append({"model_name": by_model["vllm"], "pod": f"vllm-{index}", "finished_reason": "stop"})
        else:
            out.append({"model": by_model["limitador"], "user": user.id, "team_alias": team.name,
                        "hashed_api_key": f"h{index}"})
    metric = {
        "telemetry": "authorized_calls", "legacy": "authorized_calls",
        "model-owner": "vllm:request_success_total", "litellm": "litellm_requests_metric_total",
    }[mode]
    return metric, out


def key_secrets(plan: Plan) -> list[dict[str, str]]:
    """``kube_secret_annotations`` of every user's key Secret, as kube-state-metrics labels it."""
    namespace = plan.integrations.gateway.api_key.secret_namespace
    out = []
    for team, user in plan.users():
        labels = {"namespace": namespace, "secret": user.api_key.secret_name}
        for annotation, value in key_secret_annotations(team, user).items():
            if annotation in c.KSM_SECRET_ANNOTATION_LABELS:
                labels[c.KSM_SECRET_ANNOTATION_LABELS[annotation]] = value
        out.append(labels)
    return out


Value = Callable[[int, int], int]  # (series index, seconds since the first sample) -> sample value

def seconds(duration: str) -> float:
    """``30s``, ``1m``, ``5m``, ``1h`` in seconds (the forms rule groups use)."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


STEP = int(seconds(SCRAPE_INTERVAL))
"""Seconds between samples: the interval costplan's ServiceMonitor and PodMonitors scrape at."""
JOB = "usage"
BLOCK = 2 * 3600
"""promtool's block length: it parses its whole input once per block, so the backfill writes one input per block."""


def openmetrics(families: dict[str, tuple[list[dict[str, str]], Value]], first: int, times: range,
                out: Path) -> None:
    """Every family's series at ``times`` (seconds timestamps), ``first`` being the first sample's."""
    with out.open("w") as stream:
        for name, (series, value) in families.items():
            stream.write(f"# TYPE {name} {'gauge' if name.startswith('kube_') else 'unknown'}\n")
            for index, labels in enumerate(series):
                text = _labels(labels)
                stream.writelines(f"{name}{{{text}}} {value(index, t - first)} {t}\n" for t in times)
        stream.write("# EOF\n")


def exposition(families: dict[str, tuple[list[dict[str, str]], Value]], since_first: int) -> bytes:
    """The families as a scrape sees them ``since_first`` seconds after the first sample (text format)."""
    lines = [f"{name}{{{_labels(labels)}}} {value(index, since_first)}\n"
             for name, (series, value) in families.items() for index, labels in enumerate(series)]
    return "".join(lines).encode()


def counter_value(history: int, restarting: float) -> Value:
    """3 calls a minute; every ``1/restarting``-th series restarts from 0 half an hour before the backfill ends.

    The restart falls in the last closed hour of every evaluation in the
    first half hour after the backfill (and in the decrease window after
    that), so the hourly rules' step-by-step path has that share of series.
    """
    every = round(1 / restarting) if restarting > 0 else 0
    restart = history - 1800

    def value(index: int, elapsed: int) -> int:
        if every and index % every == 0 and elapsed >= restart:
            return (elapsed - restart) // 20
        return elapsed // 20

    return value


def naive_rules(metric: str) -> list[dict[str, str]]:
    return [{"record": "naive:spend", "expr": f"sum(increase({metric}[24h])) by (user, group) * 0.002"}]


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as response:
        return json.load(response)["data"]


def _group_times(port: int) -> dict[str, tuple[float, str]]:
    return {g["name"]: (g["evaluationTime"], g["lastEvaluation"]) for g in _get(port, "/api/v1/rules")["groups"]}


def backfill(families: dict[str, tuple[list[dict[str, str]], Value]], first: int, end: int, work: Path) -> Path:
    """The families' samples every ``STEP`` from ``first`` up to ``end`` as TSDB blocks in ``work/data``.

    One promtool input per block, converted while the next is written:
    promtool reads its whole input once per block it writes.
    """
    data = work / "data"
    running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def finish_one() -> None:
        process, path = running.pop(0)
        if process.wait() != 0:
            raise RuntimeError(f"promtool tsdb create-blocks-from openmetrics {path} failed")
        path.unlink()

    for low in range(first - first % BLOCK, end, BLOCK):
        times = range(max(first, low + (first - low) % STEP), min(end, low + BLOCK), STEP)
        if not times:
            continue
        path = work / f"in-{low}.om"
        openmetrics(families, first, times, path)  # written while the previous block converts
        if len(running) == 2:
            finish_one()
        running.append((subprocess.Popen(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path))
    while running:
        finish_one()
    return data


class Exporter:
    """Serves the families' current values on ``/metrics``, the counters going on from the backfill.

    Its address is known before the samples are (the backfilled series carry
    the ``instance`` label a scrape of it gives); ``first`` is the first
    backfilled sample's time.
    """

    def __init__(self) -> None:
        self.families: dict[str, tuple[list[dict[str, str]], Value]] = {}
        self.first = 0
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(exporter.families, int(time.time()) - exporter.first)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def prometheus(work: Path, data: Path, groups: list[dict[str, Any]], port: int, target: int) -> Iterator[int]:
    """A Prometheus over ``data`` scraping ``target`` every ``STEP`` and evaluating ``groups``; yields its port.

    ``honor_labels`` keeps the exposed ``job`` and ``instance``, so the
    scraped samples continue the backfilled series.
    """
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # rule files of large plans are megabytes
    (work / "rules.yaml").write_text(yaml.dump({"groups": groups}, Dumper=dumper, sort_keys=False))
    config = {"rule_files": [str(work / "rules.yaml")],
              "scrape_configs": [{"job_name": JOB, "scrape_interval": f"{STEP}s", "scrape_timeout": f"{STEP}s",
                                  "honor_labels": True, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # still compacting a large backfill
            server.kill()
            server.wait()


def group_costs(port: int, interval: int, cycles: int, patience: int = 600) -> tuple[dict[str, float], int]:
    """Each group's median ``evaluationTime`` over ``cycles`` evaluations after a warm-up one; and the cycles seen.

    Read once per interval; an evaluation is counted once (by its
    ``lastEvaluation``). The first evaluation warms caches: left out.
    """
    readings: dict[str, list[float]] = {}
    seen: dict[str, set[str]] = {}
    deadline = time.monotonic() + max(patience, interval * (cycles + 3) * 4)
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            times = _group_times(port)
        except OSError:
            continue
        for name, (seconds, last) in times.items():
            if last.startswith("0001") or last in seen.setdefault(name, set()):
                continue
            seen[name].add(last)
            readings.setdefault(name, []).append(seconds)
        if times and all(len(readings.get(name, ())) > cycles for name in times):
            break
    costs = {name: statistics.median(values[1:] or values) for name, values in readings.items()}
    return costs, min((len(v) for v in readings.values()), default=0)


def costliest_rules(port: int, count: int) -> list[dict[str, Any]]:
    """The ``count`` rules whose last evaluation took longest: where a group's time goes."""
    found = [{"group": g["name"], "rule": r["name"], "ms": round(r["evaluationTime"] * 1000, 1)}
             for g in _get(port, "/api/v1/rules")["groups"] for r in g["rules"]]
    return sorted(found, key=lambda r: (-r["ms"], r["group"], r["rule"]))[:count]


def measure(mode: str, plan: Plan, work: Path, interval: int, cycles: int, port: int, history: int,
            restarting: float, settle: int, top: int = 0) -> dict[str, Any]:
    metric, series = counters(mode, plan)
    families: dict[str, tuple[list[dict[str, str]], Value]] = {
        metric: (series, counter_value(history * 60, restarting))}
    if mode == "legacy":
        families["kube_secret_annotations"] = (key_secrets(plan), lambda i, t: 1)
    generated = rule_groups(plan)
    intervals = {g["name"]: seconds(g["interval"]) for g in generated}
    groups = [{**g, "interval": f"{interval}s"} for g in generated]
    groups.append({"name": NAIVE_GROUP, "interval": f"{interval}s", "rules": naive_rules(metric)})
    with Exporter() as live:
        scraped = {"job": JOB, "instance": f"127.0.0.1:{live.port}"}
        families = {name: ([{**labels, **scraped} for labels in found], value)
                    for name, (found, value) in families.items()}
        started = time.monotonic()
        end = int(time.time())
        first = end - history * 60
        data = backfill(families, first, end, work)
        backfilled = time.monotonic() - started
        live.families, live.first = families, first
        with prometheus(work, data, groups, port, live.port):
            time.sleep(settle)  # the rate windows fill with scraped samples
            costs, seen = group_costs(port, interval, cycles)
            costliest = costliest_rules(port, top) if top else []
            result = _get(port, "/api/v1/query?query=" + urllib.parse.quote(f"count({c.METRIC_SPEND_RATE})"))
            priced = int(float(result["result"][0]["value"][1])) if result["result"] else 0
            identities = 1 if mode == "model-owner" else len(plan.users())  # model-owner: the model's owner
            if priced != identities:
                raise RuntimeError(f"{c.METRIC_SPEND_RATE}: {priced} identities priced, {identities} expected")
            query = urllib.parse.quote(f"count(count_over_time({metric}[{history}m]))")
            stored = _get(port, f"/api/v1/query?query={query}")["result"]
            if not stored or int(float(stored[0]["value"][1])) != len(series):  # scrapes continued the backfill
                raise RuntimeError(f"{metric}: {stored} series stored, {len(series)} expected")
    rules = sum(len(g["rules"]) for g in groups) - 1
    return {"costs": costs, "rules": rules, "priced_series": priced, "backfill_s": backfilled, "cycles": seen,
            "intervals": intervals, "costliest": costliest}


NAIVE_INTERVAL = 60.0
"""Prometheus' default ``evaluation_interval``: where the naive rule would run (it names none)."""


def per_minute(costs: dict[str, float], intervals: dict[str, float]) -> float:
    """Seconds of evaluation per minute of a server running each group at its generated interval."""
    return sum(cost * 60 / intervals[name] for name, cost in costs.items())


def rows(modes: list[str], sizes: list[int], interval: int, cycles: int, port: int, history: int,
         restarting: float, settle: int, top: int = 0) -> Iterator[dict[str, Any]]:
    for mode in modes:
        for users in sizes:
            with tempfile.TemporaryDirectory(prefix="costplan-rules-") as tmp:
                plan = load(mode, users, Path(tmp))
                found = measure(mode, plan, Path(tmp), interval, cycles, port, history, restarting, settle, top)
            yield {"mode": mode, "users": len(plan.users()), "teams": len(plan.teams), **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--users", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--interval", type=int, default=20, help="seconds between evaluations of every group")
    parser.add_argument("--cycles", type=int, default=3, help="evaluations measured per group (after one warm-up)")
    parser.add_argument("--port", type=int, default=19190)
    parser.add_argument("--history", type=int, default=25 * 60, help="minutes of counter samples backfilled")
    parser.add_argument("--restarting", type=float, default=0.01, help="share of counters that restart")
    parser.add_argument("--settle", type=int, default=300,
                        help="seconds of scraping before the first measured cycle (fills the 5-minute rate windows)")
    parser.add_argument("--top", type=int, default=0, help="print this many costliest rules per run on stderr")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    out = []
    print("| mode | users | teams | rules | naive ms | costplan ms (all groups) | ratio | hourly ms | usage ms |"
          " other groups ms | ms per minute (naive) | ms per minute (costplan) | ratio per minute |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows(args.modes, args.users, args.interval, args.cycles, args.port, args.history, args.restarting,
                    args.settle, args.top):
        out.append(row)
        for rule in row["costliest"]:
            print(f"{row['mode']} {row['users']}: {rule['ms']} ms {rule['group']} {rule['rule']}", file=sys.stderr)
        costs = dict(row["costs"])
        naive = costs.pop(NAIVE_GROUP, float("nan"))
        total = sum(costs.values())
        hourly = sum(v for k, v in costs.items() if k.startswith(c.GROUP_HOURLY))
        usage = sum(v for k, v in costs.items() if k == c.GROUP_USAGE)
        print(f"| {row['mode']} | {row['users']:,} | {row['teams']:,} | {row['rules']:,} | {naive * 1000:.0f} |"
              f" {total * 1000:.0f} | {total / naive:.2f} | {hourly * 1000:.0f} | {usage * 1000:.0f} |"
              f" {(total - hourly - usage) * 1000:.0f} |", end="")
        minute, naive_minute = per_minute(costs, row["intervals"]), naive * 60 / NAIVE_INTERVAL
        print(f" {naive_minute * 1000:.0f} | {minute * 1000:.0f} | {minute / naive_minute:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
