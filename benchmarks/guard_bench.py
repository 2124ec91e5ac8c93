"""One ``costplan guard`` reconcile over many keys: wall time and API calls.

Usage: ``python benchmarks/guard_bench.py [--keys 5000] [--teams 500]``.

The keys live in the in-repo API-server fake (``tests/guardfake.py``) and
are read and patched through the official client over HTTP, as in the
cluster. Three passes: the first moves every team over its block threshold
(one GET and one PATCH per key, one Event per transition); the second finds
nothing to change and must patch nothing; the third releases every key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from costplan.core import conventions as c  # noqa: E402
from costplan.guard.clients import KubeSecrets  # noqa: E402
from costplan.guard.controller import Reconciler  # noqa: E402
from costplan.plan.enforcement import GuardAction, GuardBudget, GuardConfig, GuardTeam  # noqa: E402
from tests.guardfake import GuardApiServer, key_secret, kubeconfig  # noqa: E402
from tests.test_apply import FakeCluster  # noqa: E402

NS = "kuadrant-system"
PLAN = "bench"


class Spend:
    def __init__(self, teams: list[str]) -> None:
        self.teams = teams
        self.value = Decimal(0)

    def budget_spend(self, at: dt.datetime) -> dict:
        return {(team, "monthly", "month"): self.value for team in self.teams}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--teams", type=int, default=500)
    args = parser.parse_args()
    per_team = args.keys // args.teams
    teams = [f"team-{i:04d}" for i in range(args.teams)]
    budget = GuardBudget("monthly", "month", Decimal(1000),
                         (GuardAction(Decimal(80), "throttle", "free"), GuardAction(Decimal(100), "block")))
    config = GuardConfig(
        plan=PLAN, timezone="UTC", currency="USD", prometheus_url="http://unused", secret_namespace=NS,
        period_seconds=Decimal(60), fail_mode="open", fail_after_seconds=Decimal(300),
        teams=tuple(GuardTeam(t, tuple(f"apikey-{t}-{u:03d}" for u in range(per_team)), (budget,)) for t in teams),
    )
    backend = FakeCluster([NS])
    labels = {c.SECRET_LABEL_APP: c.SECRET_LABEL_APP_VALUE, c.SECRET_LABEL_MANAGED_BY: c.SECRET_LABEL_MANAGED_BY_VALUE,
              c.LABEL_PLAN: PLAN}
    for team in config.teams:
        for key in team.keys:
            backend.apply_as("external-secrets", key_secret(key, NS, labels, {c.ANNOTATION_TEAM: team.name}))
    server = GuardApiServer(backend)
    with tempfile.TemporaryDirectory() as tmp:
        kube = KubeSecrets(NS, kubeconfig=str(kubeconfig(Path(tmp), server)))
        spend = Spend(teams)
        reconciler = Reconciler(config, spend, kube, clock=lambda: dt.datetime(2025, 3, 15, tzinfo=dt.UTC))
        print(f"{len(config.keys())} keys in {len(teams)} teams")
        for label, value in (("block every key", Decimal(1200)), ("no change", Decimal(1200)),
                             ("release every key", Decimal(0))):
            spend.value = value
            before = len(server.requests)
            patches = server.count("PATCH")
            started = time.perf_counter()
            outcome = reconciler.reconcile()
            took = time.perf_counter() - started
            print(f"{label:18s} {took:7.2f} s  {len(server.requests) - before:6d} API calls  "
                  f"{server.count('PATCH') - patches:5d} patches  {outcome.transitions:5d} transitions")
    server.close()


if __name__ == "__main__":
    main()
