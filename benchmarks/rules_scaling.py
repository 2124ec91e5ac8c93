"""Rule count and evaluation cost of the spend rules as users grow.

Builds the bundled plan (or an environment) with N users spread over its
teams, prints the rule count, backfills 70 minutes of synthetic Limitador
counters (one per user) with ``promtool tsdb create-blocks-from openmetrics``,
runs a local Prometheus with the rules every 10 s and reports each group's
``evaluationTime`` from ``/api/v1/rules``. (``promtool test rules`` caps a
query at 10,000 samples, too few for thousands of users.)

    python benchmarks/rules_scaling.py --env staging --users 500 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from costplan.generators.prometheus.groups import rule_groups
from costplan.generators.prometheus.usage import effective_type
from costplan.plan.load import load_plan
from costplan.plan.model import ApiKeyRef, Plan, User

ROOT = Path(__file__).resolve().parents[1]


def with_users(plan: Plan, total: int) -> Plan:
    per_team = max(1, total // len(plan.teams))
    teams = tuple(
        dataclasses.replace(team, users=tuple(
            User(id=f"{team.name}-u{i}", display_name=None, api_key=ApiKeyRef(secret_name=f"k-{team.name}-{i}"))
            for i in range(per_team)
        ))
        for team in plan.teams
    )
    return dataclasses.replace(plan, teams=teams)


def series(plan: Plan) -> list[dict[str, str]]:
    legacy = any(effective_type(plan, s) == "limitador-legacy" for s in plan.usage_sources)
    out = []
    for team, user in plan.users():
        if legacy:
            name = f'authorized_calls_with_user_and_group{{user="{user.id}", group="{team.tier}"}}'
        else:
            name = f'authorized_calls{{user="{user.id}", team="{team.name}", tier="{team.tier}"}}'
        out.append({"series": name, "values": "0+3x120"})
    return out


def openmetrics(plan: Plan, now: int, minutes: int) -> str:
    """Counters for every user, one sample a minute, ending now (seconds timestamps)."""
    legacy = any(effective_type(plan, s) == "limitador-legacy" for s in plan.usage_sources)
    name = "authorized_calls_with_user_and_group" if legacy else "authorized_calls"
    lines = [f"# TYPE {name} counter"]
    for minute in range(minutes):
        ts = now - (minutes - minute) * 60
        for team, user in plan.users():
            labels = f'user="{user.id}",group="{team.tier}"' if legacy else (
                f'user="{user.id}",team="{team.name}",tier="{team.tier}"')
            lines.append(f"{name}{{{labels}}} {3 * minute} {ts}")  # Limitador: no _total
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def measure(plan: Plan, work: Path, port: int = 19190, settle: float = 40.0) -> tuple[int, dict[str, float]]:
    """Backfill counters, run Prometheus with the rules every 10 s, read each group's evaluation time."""
    groups = [{**g, "interval": "10s"} for g in rule_groups(plan)]
    count = sum(len(g["rules"]) for g in groups)
    data = work / "data"
    (work / "in.om").write_text(openmetrics(plan, int(time.time()), 70))
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "in.om"), str(data)],
                   check=True, capture_output=True)
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (work / "prometheus.yml").write_text(yaml.safe_dump({"rule_files": [str(work / "rules.yaml")]}))
    server = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules") as response:
            payload = json.load(response)
        # Evaluation time means nothing if the spend rules found no usage.
        query = urllib.parse.quote("count(costplan:spend_by_user:rate5m)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={query}") as response:
            result = json.load(response)["data"]["result"]
        spending_users = int(float(result[0]["value"][1])) if result else 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    costs = {g["name"]: g["evaluationTime"] for g in payload["data"]["groups"]}
    return count, costs, spending_users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--users", type=int, nargs="+", default=[500, 5000])
    args = parser.parse_args()
    base = load_plan(ROOT / "costplan.yaml", args.env)
    counts = set()
    for users in args.users:
        plan = with_users(base, users)
        with tempfile.TemporaryDirectory(prefix="costplan-bench-") as tmp:
            count, costs, spending_users = measure(plan, Path(tmp))
        counts.add(count)
        total = sum(costs.values())
        detail = ", ".join(f"{name.removeprefix('costplan-')} {seconds * 1000:.1f} ms" for name, seconds in costs.items())
        print(
            f"users={len(plan.users())} spending={spending_users} rules={count} "
            f"evaluation={total * 1000:.1f} ms ({detail})"
        )
    print("rule count flat across user counts:", len(counts) == 1)


if __name__ == "__main__":
    main()
