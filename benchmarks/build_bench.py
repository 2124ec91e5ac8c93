"""Build time, peak memory, artifacts and rule count for large generated plans.

Usage: ``python benchmarks/build_bench.py [--scales 1,10] [--users-per-team 10,100]``.

Each plan is built in a fresh subprocess (``costplan build -o``), so peak
memory (max RSS) is that build's alone. Two sweeps:

* ``--scales``: teams and users grow together (1 = 500 teams, 5,000 users);
* ``--users-per-team``: 500 teams, users per team grows — the recording-rule
  count must stay flat, because rules follow tiers, models, teams and
  sources, never users.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_plan import make_plan  # noqa: E402

BASE_TEAMS = 500
MODELS = 100


def measure(teams: int, users_per_team: int, work: Path) -> dict[str, float]:
    directory = work / f"plan-{teams}-{users_per_team}"
    directory.mkdir(parents=True)
    plan = directory / "costplan.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    plan.write_text(yaml.dump(make_plan(teams, users_per_team, MODELS), Dumper=dumper, sort_keys=False))
    out = directory / "out"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "costplan", "-q", "build", "-f", str(plan), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"build failed for {teams} teams x {users_per_team} users:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far
    files = [p for p in out.rglob("*.yaml") if p.name != "kustomization.yaml"]
    rules = sum(1 for p in files for line in p.read_text().splitlines() if line.lstrip().startswith("record: "))
    return {
        "teams": teams,
        "users": teams * users_per_team,
        "seconds": elapsed,
        "peak_mib": peak / 1024,
        "artifacts": len(files),
        "mib_out": sum(p.stat().st_size for p in files) / 2**20,
        "rules": rules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10", help="plan sizes, 1 = 500 teams and 5,000 users")
    parser.add_argument("--users-per-team", default="10,100", help="users per team at 500 teams")
    args = parser.parse_args()
    runs = [(int(BASE_TEAMS * float(s)), 10) for s in args.scales.split(",")]
    runs += [(BASE_TEAMS, int(u)) for u in args.users_per_team.split(",") if (BASE_TEAMS, int(u)) not in runs]
    print(f"{'teams':>6} {'users':>7} {'seconds':>8} {'peak MiB':>9} {'artifacts':>9} {'MiB out':>8} {'rules':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for teams, users_per_team in runs:
            r = measure(teams, users_per_team, Path(tmp))
            print(
                f"{r['teams']:>6} {r['users']:>7} {r['seconds']:>8.2f} {r['peak_mib']:>9.1f} "
                f"{r['artifacts']:>9} {r['mib_out']:>8.2f} {r['rules']:>6}",
                flush=True,
            )


if __name__ == "__main__":
    main()
