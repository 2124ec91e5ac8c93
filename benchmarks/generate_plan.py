"""Generate a large, valid plan for benchmarks.

``python benchmarks/generate_plan.py --scale 1 -o /tmp/big`` writes
``/tmp/big/costplan.yaml`` with 500 teams, 5,000 users and 100 models at
scale 1 (users and teams grow linearly with ``--scale``; models, tiers and
GPU instances stay the size a real platform has).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "costplan.yaml"


def make_plan(teams: int, users_per_team: int, models: int) -> dict:
    """A plan shaped like the bundled one, with many teams, users and models."""
    base = yaml.load(BUNDLED.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    tiers = [t["name"] for t in base["tiers"]]
    sources = base["usageSources"]
    plan = {key: value for key, value in base.items() if key not in ("models", "teams", "budgets")}
    plan["models"] = []
    for index in range(models):
        if index % 2:
            pricing = {"type": "perMillionTokens", "input": "0.5", "output": "1.5", "cachedInput": "0.05"}
            source = "envoy-ai"
        else:
            # Limitador counts calls without a model label: one model per
            # Limitador source; the other per-request models are vLLM-served.
            pricing = {"type": "perRequest", "price": "0.002"}
            source = "limitador" if index == 0 else "vllm"
        plan["models"].append(
            {
                "name": f"model-{index:03d}",
                "modelName": f"org/model-{index:03d}",
                "provider": "openai" if index % 2 else "self-hosted",
                "usageSource": source,
                "pricing": pricing,
            }
        )
    plan["usageSources"] = sources
    plan["teams"] = []
    for t in range(teams):
        name = f"team-{t:05d}"
        plan["teams"].append(
            {
                "name": name,
                "costCenter": f"CC-{t:05d}",
                "namespaces": [name],
                "tier": tiers[t % len(tiers)],
                "users": [
                    {"id": f"user-{t:05d}-{u:03d}", "apiKey": {"secretName": f"apikey-{t:05d}-{u:03d}"}}
                    for u in range(users_per_team)
                ],
                "budgets": [{"name": "monthly", "amount": 1000 + t, "period": "month", "thresholds": [80, 100]}],
            }
        )
    plan["budgets"] = [{"name": "company-monthly", "amount": 10_000_000, "period": "month", "thresholds": [100]}]
    return plan


def add_fleet(plan: dict, clusters: int, engine: str = "victoriametrics") -> dict:
    """``plan`` as a fleet: ``clusters`` identical clusters serving every team and model, one global engine."""
    plan["clusters"] = [
        {
            "name": f"cluster-{index:02d}",
            "region": f"region-{index:02d}",
            "context": f"cluster-{index:02d}",
            "destination": {"server": f"https://cluster-{index:02d}.k8s.example.com"},
        }
        for index in range(clusters)
    ]
    plan["metrics"] = {
        "engine": engine,
        "queryURL": "http://vmselect.monitoring.svc:8481/select/0/prometheus",
        "bearerTokenSecret": {"secretName": "costplan-metrics-reader", "key": "token"},
    }
    return plan


def write_plan(directory: Path, scale: float = 1.0) -> Path:
    """``costplan.yaml`` in ``directory``: 500 teams x 10 users at scale 1."""
    directory.mkdir(parents=True, exist_ok=True)
    plan = make_plan(teams=max(1, int(500 * scale)), users_per_team=10, models=100)
    path = directory / "costplan.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(plan, Dumper=dumper, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 500 teams, 5,000 users")
    parser.add_argument("-o", "--output", type=Path, required=True, help="directory for costplan.yaml")
    args = parser.parse_args()
    print(write_plan(args.output, args.scale))


if __name__ == "__main__":
    main()
