"""A fleet plan: build against its floor, rules per part, evaluation per cycle in the engines.

Usage: ``python benchmarks/fleet_bench.py [--clusters 20] [--runs 3] [--scales 1,10] [--skip-eval]``.

The plan is ``generate_plan.make_plan`` (1 = 500 teams, 5,000 users, 100
models) with ``clusters`` identical clusters (every cluster serves every
team and model) and a VictoriaMetrics global engine (``add_fleet``). One
run reports:

* **build**: ``costplan build -o`` of the 1x fleet plan in a fresh process
  (wall time, peak RSS from ``wait4``), against its floor: the very objects
  that build writes dumped with libyaml alone (``yaml_floor.py``), in turn,
  A B A B, median of the pair-by-pair ratios (as ``build_floor.py``);
* **rules**: the rule count of one cluster's part (all are the same but for
  their ``cluster`` label, which is checked) and of the global part, at 1x,
  at 1x teams with 10x users (asserted identical, count and text, to 1x:
  rules follow teams, models and tiers, never users) and at 10x;
* **evaluation**: seconds per cycle, per group, at each scale:

  - one cluster's rules in a real Prometheus over 70 minutes of backfilled
    Limitador counters (``authorized_calls`` with the TelemetryPolicy's
    user, team, tier labels, one sample a minute, as ``rules_scaling.py``)
    of the users whose traffic that cluster carries: each user reaches
    ``--spread`` clusters (default 1: a user's gateway is in one region),
    so one cluster sees users x spread / clusters of them; group
    ``evaluationTime`` from ``/api/v1/rules``, median after a warm-up cycle;
  - the global rules in vmalert, live (``-datasource.url`` and
    ``-remoteWrite.url`` both the same VictoriaMetrics), over what every
    cluster records, imported directly in the shape the cluster rules record
    it (``cluster``, ``source``, ``model_name``, ``model``, ``team``,
    ``tier``, ``user``; tokens with ``token_type``): per identity and cluster
    ``costplan:cluster_usage_{requests,tokens}:increase1h`` every 5 minutes
    for 135 minutes (the global hourly group bills the hour before the last
    closed one) and ``costplan:usage_{requests,tokens,limited_requests}:rate5m``
    every minute for 15 minutes, each continued an hour ahead (samples with
    future timestamps are read once their time comes, so inputs do not go
    stale during a long run, as a live remote write would keep them); per-iteration time from vmalert's
    ``vmalert_iteration_duration_seconds`` (sum / count after a warm-up
    iteration). GPU series are not generated (the GPU rules run over
    nothing).

Every group runs every ``--interval`` seconds (the 1m/5m of the plan are
overridden so a cycle of each is seen quickly). Afterwards the engines are
asked how many identities have usage and spend, so a benchmark over empty
results cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from build_floor import objects_of, timed_pairs  # noqa: E402
from generate_plan import add_fleet, make_plan  # noqa: E402
from rules_scaling import Value, backfill, counters, group_costs, prometheus  # noqa: E402

from costplan.core import conventions as c  # noqa: E402
from costplan.generators.prometheus.groups import rule_groups  # noqa: E402
from costplan.plan import fleet  # noqa: E402
from costplan.plan.load import load_plan  # noqa: E402
from costplan.plan.model import Plan  # noqa: E402
from tests.promserver import free_port  # noqa: E402
from tests.vmserver import vm_server  # noqa: E402

BASE_TEAMS = 500
USERS_PER_TEAM = 10
MODELS = 100
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# The Limitador source's identity series the global rules read, as a cluster records them.
HOURLY_FAMILIES = (c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY, c.METRIC_CLUSTER_USAGE_TOKENS_HOURLY)
RATE_FAMILIES = ("costplan:usage_requests:rate5m", "costplan:usage_tokens:rate5m",
                 "costplan:usage_limited_requests:rate5m")


def write_fleet(directory: Path, teams: int, users_per_team: int, clusters: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "costplan.yaml"
    document = add_fleet(make_plan(teams, users_per_team, MODELS), clusters)
    path.write_text(yaml.dump(document, Dumper=DUMPER, sort_keys=False))
    return path


def parts_of(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    return {part: rule_groups(variant) for part, variant in fleet.parts(plan)}


def count(groups: list[dict[str, Any]]) -> int:
    return sum(len(g["rules"]) for g in groups)


def without_cluster(groups: list[dict[str, Any]]) -> str:
    """A cluster part's rules with its own name blanked, to compare clusters' parts."""
    text = yaml.dump(groups, Dumper=DUMPER, sort_keys=True)
    return re.sub(r"cluster: cluster-\d+", "cluster: X", text)


def rule_rows(plans: dict[str, Plan]) -> list[dict[str, Any]]:
    """Rules of one cluster part and of the global part per plan; clusters' parts checked alike."""
    rows = []
    texts: dict[str, dict[str, str]] = {}
    for label, plan in plans.items():
        parts = parts_of(plan)
        clusters = [groups for part, groups in parts.items() if part != fleet.GLOBAL_PART]
        shapes = {without_cluster(groups) for groups in clusters}
        assert len(shapes) == 1, f"{label}: cluster parts differ beyond their name"
        texts[label] = {"cluster": shapes.pop(), "global": yaml.dump(parts[fleet.GLOBAL_PART], Dumper=DUMPER)}
        rows.append({"plan": label, "teams": len(plan.teams), "users": len(plan.users()), "clusters": len(clusters),
                     "cluster_rules": count(clusters[0]), "global_rules": count(parts[fleet.GLOBAL_PART]),
                     "cluster_groups": len(clusters[0]), "global_groups": len(parts[fleet.GLOBAL_PART])})
    if "1x" in texts and "1x teams, 10x users" in texts:
        assert texts["1x"] == texts["1x teams, 10x users"], "rules changed with users at the same teams"
    return rows


# -- build -----------------------------------------------------------------------------------------


def measure_build(plan_path: Path, runs: int) -> dict[str, float]:
    work = plan_path.parent
    pickled = objects_of(plan_path, [None], work / "objects.pickle")
    out_a, out_b = work / "out-build", work / "out-floor"
    build_cmd = [sys.executable, "-m", "costplan", "-q", "build", "-f", str(plan_path), "-o", str(out_a)]
    floor_cmd = [sys.executable, str(HERE / "yaml_floor.py"), str(pickled), str(out_b)]
    found = timed_pairs(build_cmd, floor_cmd, runs, fresh=[out_b])
    files = [p for p in out_a.rglob("*") if p.is_file()]
    return {**found, "files": len(files), "mib_out": sum(p.stat().st_size for p in files) / 2**20}


# -- evaluation: one cluster in Prometheus ---------------------------------------------------------


def reached(index: int, clusters: int, spread: int) -> list[int]:
    """The clusters user number ``index`` sends traffic through."""
    return sorted({(index + step) % clusters for step in range(spread)})


def _prom_query(port: int, expr: str) -> int:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(f'count({expr})')}"
    with urllib.request.urlopen(url, timeout=120) as response:
        result = json.load(response)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _with_interval(groups: list[dict[str, Any]], interval: int) -> list[dict[str, Any]]:
    return [{**g, "interval": f"{interval}s"} for g in groups]


def cluster_eval(plan: Plan, clusters: int, spread: int, work: Path, interval: int, cycles: int) -> dict[str, Any]:
    variant = fleet.cluster_plan(plan, plan.clusters[0])
    metric, series = counters("telemetry", variant)
    mine = [labels for index, labels in enumerate(series) if 0 in reached(index, clusters, spread)]
    families: dict[str, tuple[list[dict[str, str]], Value]] = {metric: (mine, lambda i, m: 3 * m)}
    started = time.monotonic()
    data = backfill(families, 70, work)
    backfilled = time.monotonic() - started
    groups = _with_interval(rule_groups(variant), interval)
    with prometheus(work, data, groups, free_port()) as port:
        costs, seen = group_costs(port, interval, cycles)
        usage = _prom_query(port, "costplan:usage_requests:rate5m")
        hourly = _prom_query(port, c.METRIC_CLUSTER_USAGE_REQUESTS_HOURLY)
    return {"users": len(mine), "rules": count(groups), "costs": costs, "backfill_s": backfilled,
            "identities_rate5m": usage, "identities_hourly": hourly, "cycles": max(0, seen - 1)}


# -- evaluation: the global part in vmalert over VictoriaMetrics -----------------------------------


def identity_labels(plan: Plan, clusters: int, spread: int) -> list[dict[str, str]]:
    """Every (identity, cluster) the Limitador model's usage is recorded for, with the recorded labels."""
    limitador = next(m for m in plan.models if m.usage_source == "limitador")
    out = []
    for index, (team, user) in enumerate(plan.users()):
        for cluster in reached(index, clusters, spread):
            out.append({"cluster": plan.clusters[cluster].name, "source": "limitador",
                        "model_name": limitador.model_name, "model": limitador.name,
                        "team": team.name, "tier": user.tier or team.tier, "user": user.id})
    return out


def _jsonl(name: str, labels: dict[str, str], now_ms: int, every_s: int, before: int, after: int,
           value: float) -> str:
    """One series: ``before`` samples up to now and ``after`` more ahead, so a long run never sees it go stale."""
    timestamps = [now_ms + step * every_s * 1000 for step in range(-before + 1, after + 1)]
    return json.dumps({"metric": {"__name__": name, **labels}, "values": [value] * len(timestamps),
                       "timestamps": timestamps}) + "\n"


def import_global_inputs(url: str, identities: list[dict[str, str]], batch: int = 5000) -> None:
    """The clusters' recorded usage, via ``/api/v1/import`` (JSON lines, one series a line)."""
    now_ms = int(time.time() * 1000)
    lines: list[str] = []

    def flush() -> None:
        if not lines:
            return
        request = urllib.request.Request(f"{url}/api/v1/import", data="".join(lines).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=600) as response:
            assert response.status == 204, response.status
        lines.clear()

    for labels in identities:
        limited = {k: v for k, v in labels.items() if k not in ("model_name", "model")}
        lines.append(_jsonl(HOURLY_FAMILIES[0], labels, now_ms, 300, 28, 12, 180.0))
        lines.append(_jsonl(HOURLY_FAMILIES[1], {**labels, "token_type": "total"}, now_ms, 300, 28, 12, 90_000.0))
        lines.append(_jsonl(RATE_FAMILIES[0], labels, now_ms, 60, 16, 60, 0.05))
        lines.append(_jsonl(RATE_FAMILIES[1], {**labels, "token_type": "total"}, now_ms, 60, 16, 60, 25.0))
        lines.append(_jsonl(RATE_FAMILIES[2], limited, now_ms, 60, 16, 60, 0.001))
        if len(lines) >= batch:
            flush()
    flush()
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=60):
        pass


def _vm_count(url: str, expr: str) -> int:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(f'count({expr})')}",
                                timeout=300) as response:
        result = json.load(response)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _iterations(port: int) -> dict[str, tuple[float, float]]:
    """``vmalert_iteration_duration_seconds`` per group: (sum, count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        match = re.match(r'vmalert_iteration_duration_seconds_(sum|count)\{(.*)\} (\S+)$', line)
        if match:
            group = re.search(r'group="([^"]*)"', match.group(2))
            if group:
                slot = out.setdefault(group.group(1), [0.0, 0.0])
                slot[0 if match.group(1) == "sum" else 1] = float(match.group(3))
    return {name: (v[0], v[1]) for name, v in out.items()}


def global_eval(plan: Plan, clusters: int, spread: int, work: Path, interval: int, cycles: int) -> dict[str, Any]:
    variant = fleet.global_plan(plan)
    groups = _with_interval(rule_groups(variant), interval)
    rules_dir = work / "rules"
    rules_dir.mkdir()
    for group in groups:
        (rules_dir / f"{group['name']}.yaml").write_text(yaml.dump({"groups": [group]}, Dumper=DUMPER, sort_keys=False))
    identities = identity_labels(plan, clusters, spread)
    with vm_server(work) as vm:
        started = time.monotonic()
        import_global_inputs(vm.url, identities)
        imported = time.monotonic() - started
        port = free_port()
        alert = subprocess.Popen(
            ["vmalert", f"-rule={rules_dir}/*.yaml", f"-datasource.url={vm.url}", f"-remoteWrite.url={vm.url}",
             f"-evaluationInterval={interval}s", f"-httpListenAddr=127.0.0.1:{port}",
             f"-notifier.url=http://127.0.0.1:{free_port()}", "-remoteWrite.maxQueueSize=10000000"],
            stdout=subprocess.DEVNULL, stderr=(work / "vmalert.log").open("w"),
        )
        try:
            names = [g["name"] for g in groups]
            first: dict[str, tuple[float, float]] = {}
            last: dict[str, tuple[float, float]] = {}
            deadline = time.monotonic() + max(900, interval * (cycles + 3) * 4)
            while time.monotonic() < deadline:
                time.sleep(interval / 2)
                try:
                    now = _iterations(port)
                except OSError:
                    if alert.poll() is not None:
                        raise SystemExit(f"vmalert exited:\n{(work / 'vmalert.log').read_text()[-3000:]}") from None
                    continue
                for name in names:
                    # The first iteration of each group warms caches and lacks the constants: left out.
                    if name not in first and now.get(name, (0, 0))[1] >= 1:
                        first[name] = now[name]
                last = now
                if all(name in first and last[name][1] - first[name][1] >= cycles for name in names):
                    break
            costs = {name: (last[name][0] - first[name][0]) / (last[name][1] - first[name][1])
                     for name in names if name in first and last[name][1] > first[name][1]}
            done = min((last[name][1] - first[name][1] for name in names if name in first), default=0)
            # Results reach VictoriaMetrics through remote write (flushed every 5s): wait for them.
            found = {}
            wait_until = time.monotonic() + max(60, 3 * interval)
            while True:
                time.sleep(6)
                found = {
                    "identities_billed": _vm_count(vm.url, "costplan:usage_requests:increase1h"),
                    "identities_spend": _vm_count(vm.url, 'costplan:spend:rate5m{user!=""}'),
                }
                if all(found.values()) or time.monotonic() > wait_until:
                    break
        finally:
            alert.terminate()
            alert.wait(timeout=60)
    return {"identities": len(identities), "rules": count(groups), "costs": costs, "import_s": imported,
            "cycles": int(done), **found}


def by_family(costs: dict[str, float]) -> str:
    """Seconds per cycle by group, a group's shards (``costplan-prices-2``, ...) summed, the slowest in brackets."""
    families: dict[str, list[float]] = {}
    for name, seconds in costs.items():
        families.setdefault(re.sub(r"-\d+$", "", name), []).append(seconds)
    return ", ".join(
        f"{name} {sum(v):.2f} s" + (f" ({len(v)} shards, slowest {max(v):.2f} s)" if len(v) > 1 else "")
        for name, v in sorted(families.items())
    )


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--teams", type=int, default=BASE_TEAMS, help="teams at 1x (10 users each)")
    parser.add_argument("--scales", default="1,10", help="1 = 500 teams, 5,000 users (10 a team)")
    parser.add_argument("--runs", type=int, default=3, help="build / floor pairs")
    parser.add_argument("--spread", type=int, default=1, help="clusters each user's traffic goes through")
    parser.add_argument("--interval", type=int, default=20, help="seconds between evaluations of every group")
    parser.add_argument("--cycles", type=int, default=3, help="evaluations measured per group (after a warm-up)")
    parser.add_argument("--global-scales", default="1",
                        help="scales at which the global part is evaluated in vmalert (10x took over 15 minutes)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    results: dict[str, Any] = {"clusters": args.clusters, "spread": args.spread}
    with tempfile.TemporaryDirectory(prefix="costplan-fleet-") as tmp:
        work = Path(tmp)
        sizes = {"1x": (args.teams, USERS_PER_TEAM), "1x teams, 10x users": (args.teams, USERS_PER_TEAM * 10)}
        sizes.update({f"{s:g}x": (int(args.teams * s), USERS_PER_TEAM) for s in scales if s != 1})
        paths = {label: write_fleet(work / f"plan-{i}", teams, upt, args.clusters)
                 for i, (label, (teams, upt)) in enumerate(sizes.items())}
        plans = {label: load_plan(path, None) for label, path in paths.items()}

        if not args.skip_build:
            build = measure_build(paths["1x"], args.runs)
            results["build"] = build
            print(f"## build: {args.clusters} clusters x {args.teams} teams x {args.teams * USERS_PER_TEAM:,} users,"
                  f" {MODELS} models (medians of {args.runs} pairs)")
            print("| build s | floor s | build / floor | peak MiB | files | MiB out |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: |")
            print(f"| {build['build_s']:.2f} | {build['floor_s']:.2f} | {build['ratio']:.2f} | {build['peak_mib']:.0f} |"
                  f" {build['files']:,} | {build['mib_out']:.1f} |\n", flush=True)

        rows = rule_rows(plans)
        results["rules"] = rows
        print("## rules per part (every cluster part alike but for its name; 10x users at 1x teams: identical)")
        print("| plan | teams | users | one cluster's part: rules (groups) | global part: rules (groups) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['plan']} | {r['teams']:,} | {r['users']:,} | {r['cluster_rules']:,} ({r['cluster_groups']}) |"
                  f" {r['global_rules']:,} ({r['global_groups']}) |")
        print(flush=True)

        if args.skip_eval:
            return
        evals = []
        print(f"## evaluation per cycle (every group every {args.interval}s; median/mean of {args.cycles} cycles"
              f" after a warm-up; each user in {args.spread} of {args.clusters} clusters)")
        print("| plan | part | engine | series in | rules | seconds per cycle (all groups) | cycles | per group (s) |"
              " identities with usage / spend |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
        global_scales = {float(s) for s in args.global_scales.split(",")}
        for scale in [1.0, *(s for s in scales if s != 1)]:
            label = f"{scale:g}x"
            plan = plans[label]
            part = work / f"eval-{label}-cluster"
            part.mkdir()
            one = cluster_eval(plan, args.clusters, args.spread, part, args.interval, args.cycles)
            shutil.rmtree(part, ignore_errors=True)
            measured = [("one cluster", "Prometheus", one, f"{one['users']:,} users' counters",
                         f"{one['identities_hourly']:,} / -")]
            every = None
            if scale in global_scales:
                part = work / f"eval-{label}-global"
                part.mkdir()
                every = global_eval(plan, args.clusters, args.spread, part, args.interval, args.cycles)
                shutil.rmtree(part, ignore_errors=True)
                measured.append(("global", "vmalert + VictoriaMetrics", every,
                                 f"{every['identities']:,} identities x 5",
                                 f"{every['identities_billed']:,} / {every['identities_spend']:,}"))
            evals.append({"plan": label, "cluster": one, "global": every})
            for name, engine, r, inputs, found in measured:
                print(f"| {label} | {name} | {engine} | {inputs} | {r['rules']:,} | {sum(r['costs'].values()):.3f} |"
                      f" {r['cycles']} | {by_family(r['costs'])} | {found} |", flush=True)
            if every is None:
                print(f"| {label} | global | vmalert + VictoriaMetrics | not measured (--global-scales"
                      f" {args.global_scales}; at 10x it takes over 15 minutes on a 2-core machine) | | | | | |",
                      flush=True)
        results["evaluation"] = evals
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
