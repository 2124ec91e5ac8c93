"""costplan apply/diff against kubectl --server-side, side by side on the same objects.

Usage::

    python benchmarks/apply_bench.py [--kubeconfig FILE] [--teams 500] [--rounds 3]

The generated plan (``generate_plan.make_plan``; 500 teams give about 520
objects, most of them team namespaces) is built once and written as one
multi-document YAML file per tool and round, every namespace suffixed so the
two tools never touch each other's objects. For each round, each tool runs,
as a fresh process reading that file:

* **first apply**: ``kubectl apply --server-side`` / ``costplan``'s apply;
* **no-op apply**: the same again, nothing to change;
* **diff**: ``kubectl diff --server-side`` / ``costplan``'s diff, nothing to show.

The costplan side runs ``apply.run`` (``--run-costplan``) on the same
objects as JSON, standing in for the objects its CLI holds in memory after
the build (about 0.1 s for this plan, not counted; kubectl reads the YAML
file). Both sides pay for process start, connecting and discovery. The medians over the rounds and their ratios are printed, with
the requests each costplan step sent.

With ``--kubeconfig`` the API server is real (the plan's CRDs must be
installed; kinds the cluster lacks are left out and named). Without it, the
in-repo API-server fake from ``tests/test_apply.py`` serves both tools: its
ratios show what request counts and concurrency save, not a real server's
latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from generate_plan import make_plan  # noqa: E402

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MANAGER = "bench-kubectl"


def plan_objects(teams: int, work: Path) -> list[dict[str, Any]]:
    from costplan.install import apply
    from costplan.output import build as build_stage

    plan = work / "costplan.yaml"
    plan.write_text(yaml.dump(make_plan(teams, 2, 10), Dumper=_DUMPER, sort_keys=False))
    result = build_stage.build(plan, [None])
    return apply.desired_objects(next(iter(result.environments.values())))


def suffixed(objects: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """The same objects in their own namespaces (``<namespace>-<suffix>``)."""
    result = []
    for obj in objects:
        obj = json.loads(json.dumps(obj))
        meta = obj["metadata"]
        if obj["kind"] == "Namespace" and obj["apiVersion"] == "v1":
            meta["name"] = f"{meta['name']}-{suffix}"
        elif meta.get("namespace"):
            meta["namespace"] = f"{meta['namespace']}-{suffix}"
        result.append(obj)
    return result


def run_costplan(mode: str, manifests: str, kubeconfig: str, parent_namespace: str) -> None:
    """The costplan side of one step, in its own process: read the file, connect, run, print request counts."""
    from costplan.install import apply
    from costplan.install.applyset import ApplySet
    from costplan.install.cluster import KubeCluster

    sent: Counter[str] = Counter()
    original = KubeCluster.request

    def counted(self: Any, method: str, path: str, query: Any = None, *args: Any, **kwargs: Any) -> Any:
        dry = bool(query and query.get("dryRun"))
        sent[f"{method}{' dry-run' if dry else ''}"] += 1
        return original(self, method, path, query, *args, **kwargs)

    KubeCluster.request = counted  # type: ignore[method-assign]
    with open(manifests, encoding="utf-8") as stream:
        objects = json.load(stream)
    cluster = KubeCluster(kubeconfig=kubeconfig, timeout=600.0)
    lines: list[str] = []
    outcome = apply.run(cluster, objects, ApplySet("costplan-bench", parent_namespace),
                        apply.Options(mode=mode), lambda _: None, lines.append)
    if outcome.failed:
        sys.stderr.write("\n".join(lines[-20:]) + "\n")
        raise SystemExit(4)
    print(json.dumps({"recap": lines[-1], "requests": dict(sorted(sent.items()))}))


def fake_server(objects: list[dict[str, Any]], work: Path) -> tuple[Any, str]:
    """The in-repo API-server fake, taught every kind of the plan."""
    from costplan.install.objects import is_builtin_group
    from tests.test_apply import CLUSTER_SCOPED, ApiServer, FakeCluster, write_kubeconfig

    backend = FakeCluster()
    server = ApiServer(backend, token=None)  # kubectl sends no bearer token over plain HTTP
    for obj in objects:
        group, _, version = obj["apiVersion"].rpartition("/")
        served = server.resources.setdefault((group, version), [])
        if obj["kind"] not in {k for _, k, _ in served}:
            served.append((obj["kind"].lower() + "s", obj["kind"], obj["kind"] not in CLUSTER_SCOPED))
        if not is_builtin_group(group):
            backend.crds.add(f"{obj['kind']}.{group}")
    return server, str(write_kubeconfig(work / "kubeconfig", server.url))


def prepare(kubeconfig: str, objects: list[dict[str, Any]]) -> None:
    """Create the namespaces the objects need but do not create themselves (as another manager)."""
    from costplan.install.cluster import KubeCluster

    cluster = KubeCluster(kubeconfig=kubeconfig, timeout=600.0)
    created = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    for namespace in sorted({o["metadata"].get("namespace") for o in objects} - created - {None}):
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                      manager="bench-setup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="a real cluster (default: the in-repo API-server fake)")
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run-costplan", nargs=4, metavar=("MODE", "FILE", "KUBECONFIG", "NAMESPACE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_costplan:
        run_costplan(*args.run_costplan)
        return
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is needed on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        objects = plan_objects(args.teams, work)
        server = None
        if args.kubeconfig:
            kubeconfig = args.kubeconfig
            where = "a real API server"
        else:
            server, kubeconfig = fake_server(objects, work)
            where = "the in-repo API-server fake"
        print(f"{len(objects)} objects, {args.rounds} round(s), against {where}", flush=True)
        times: dict[tuple[str, str], list[float]] = {}
        requests: dict[str, str] = {}
        env = {**os.environ, "KUBECACHEDIR": str(work / "kube-cache")}
        for round_ in range(args.rounds):
            for tool in ("kubectl", "costplan"):
                mine = suffixed(objects, f"{tool[:2]}{round_}-{os.getpid()}")
                path = work / f"{tool}-{round_}.yaml"
                path.write_text(yaml.dump_all(mine, Dumper=_DUMPER, sort_keys=True))
                (work / f"{tool}-{round_}.json").write_text(json.dumps(mine))
                prepare(kubeconfig, mine)
                parent_ns = next(o["metadata"]["namespace"] for o in mine if o["kind"] == "PrometheusRule")
                for step in ("first apply", "no-op apply", "diff"):
                    if tool == "kubectl":
                        verb = ["diff"] if step == "diff" else ["apply", "--validate=false"]
                        command = [kubectl, "--kubeconfig", kubeconfig, *verb, "--server-side",
                                   f"--field-manager={MANAGER}", "-f", str(path)]
                        elapsed, _ = subprocess_timed(command, env, ok=(0, 1) if step == "diff" else (0,))
                    else:
                        mode = "diff" if step == "diff" else "apply"
                        command = [sys.executable, __file__, "--run-costplan", mode,
                                   str(path.with_suffix(".json")), kubeconfig, parent_ns]
                        elapsed, out = subprocess_timed(command, env)
                        requests[step] = out.strip()
                    times.setdefault((tool, step), []).append(elapsed)
                    print(f"  round {round_ + 1} {tool:8} {step:12} {elapsed:7.2f} s", flush=True)
        if server is not None:
            server.close()
    print(f"\n{'step':12} {'kubectl s':>10} {'costplan s':>11} {'ratio':>6}  costplan requests")
    for step in ("first apply", "no-op apply", "diff"):
        k = statistics.median(times[("kubectl", step)])
        c = statistics.median(times[("costplan", step)])
        print(f"{step:12} {k:10.2f} {c:11.2f} {c / k:6.2f}  {json.loads(requests[step])['requests']}")


def subprocess_timed(command: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(command[:5])} ... exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


if __name__ == "__main__":
    main()
