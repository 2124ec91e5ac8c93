"""A build against its floor: ``costplan build`` next to dumping the same objects with libyaml alone.

Usage: ``python benchmarks/build_floor.py [--scales 1,10] [--runs 5] [--jobs 1,auto]``.

For each plan size (1 = 500 teams, 5,000 users, 100 models; with dev,
staging and prod overlays) two modes are timed: one environment (``-e
prod``) and ``--all-envs``. Each mode runs the build and the floor
(``yaml_floor.py`` on the very objects that build writes) in turn, A B A B,
each in a fresh process, and reports the medians, the median of the
pair-by-pair ratios build / floor (robust against a machine whose speed
drifts) and the build's peak memory (max RSS, its rendering processes
included). Each is timed with one rendering process (``--jobs 1``) and with
the build's default (the processors available, at most 4).

costplan's modules are byte-compiled first, as ``pip install`` does: with
``PYTHONDONTWRITEBYTECODE`` set (as in many CI images and the report
image) a checkout would otherwise compile its sources again in every run,
which no installed costplan does.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generate_plan import make_plan  # noqa: E402

from costplan.output import parallel  # noqa: E402
from costplan.output.build import build  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OVERLAYS = {
    "dev": {"integrations": {"prometheus": {"url": "http://prometheus.monitoring-dev.svc:9090"}}},
    "staging": {"budgets": [{"name": "company-monthly", "amount": 5_000_000}]},
    "prod": {"metadata": {"cluster": "llm-prod"}},
}


def write_plan(directory: Path, scale: float) -> Path:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    (directory / "environments").mkdir(parents=True)
    plan = directory / "costplan.yaml"
    plan.write_text(yaml.dump(make_plan(int(500 * scale), 10, 100), Dumper=dumper, sort_keys=False))
    for name, overlay in OVERLAYS.items():
        (directory / "environments" / f"{name}.yaml").write_text(yaml.dump(overlay, Dumper=dumper))
    return plan


def objects_of(plan: Path, environments: list[str | None], target: Path) -> Path:
    """What the build writes, as plain data, pickled for the floor, made in a process of its own.

    Linux carries a parent's peak RSS over into its children's ``ru_maxrss``
    (fork, then exec), so a benchmark process that built a large plan itself
    would report its own size as every later build's peak memory.
    """
    command = [sys.executable, __file__, "--objects", str(plan), ",".join(e or "" for e in environments), str(target)]
    subprocess.run(command, check=True)
    return target


def _write_objects(plan: Path, environments: list[str | None], target: Path) -> Path:
    result = build(plan, environments)
    objects = [
        (f"{env}/{a.path}", yaml.safe_load(yaml.dump(a.data, Dumper=yaml.CSafeDumper)) if not isinstance(a.data, str) else a.data)
        for env, artifacts in result.environments.items()
        for a in artifacts
    ]
    target.write_bytes(pickle.dumps(objects))
    return target


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak MiB of one run in a fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024


def timed_pairs(build_cmd: list[str], floor_cmd: list[str], runs: int, fresh: list[Path]) -> dict[str, float]:
    """Build and floor in turn, ``runs`` pairs after a warm-up build; medians, the pairs' median ratio, peak MiB.

    The directories in ``fresh`` are removed before each pair.
    """
    timed(build_cmd)  # warm-up: page cache, pyc files
    builds, floors, ratios, peaks = [], [], [], []
    for _ in range(runs):
        for directory in fresh:
            shutil.rmtree(directory, ignore_errors=True)
        b, peak = timed(build_cmd)
        f, _ = timed(floor_cmd)
        builds.append(b)
        floors.append(f)
        ratios.append(b / f)
        peaks.append(peak)
    return {"build_s": statistics.median(builds), "floor_s": statistics.median(floors),
            "ratio": statistics.median(ratios), "peak_mib": max(peaks)}


def main() -> None:
    if sys.argv[1:2] == ["--objects"]:
        _write_objects(Path(sys.argv[2]), [e or None for e in sys.argv[3].split(",")], Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", default="1,auto",
                        help="Build processes to time, comma-separated: a number, or auto (the build's default)")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "costplan")], check=True)
    print(f"{'scale':>5} {'mode':>9} {'jobs':>5} {'build s':>8} {'floor s':>8} {'ratio':>6} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (float(s) for s in args.scales.split(",")):
            work = Path(tmp) / f"scale-{scale:g}"
            plan = write_plan(work, scale)
            for mode, envs, flags in (("prod", ["prod"], ["-e", "prod"]), ("all-envs", list(OVERLAYS), ["--all-envs"])):
                pickled = objects_of(plan, sorted(envs), work / f"{mode}.pickle")
                out_a, out_b = work / f"out-{mode}", work / f"floor-{mode}"
                floor_cmd = [sys.executable, str(HERE / "yaml_floor.py"), str(pickled), str(out_b)]
                for jobs in args.jobs.split(","):
                    build_cmd = [sys.executable, "-m", "costplan", "-q", "build", "-f", str(plan), *flags,
                                 "-o", str(out_a), *([] if jobs == "auto" else ["--jobs", jobs])]
                    # Both write into a directory that does not exist yet (a build
                    # over its previous output would also delete that, untimed here).
                    found = timed_pairs(build_cmd, floor_cmd, args.runs, fresh=[out_a, out_b])
                    shown = jobs if jobs != "auto" else str(parallel.default_jobs())
                    print(
                        f"{scale:>5g} {mode:>9} {shown:>5} {found['build_s']:>8.2f} "
                        f"{found['floor_s']:>8.2f} {found['ratio']:>6.2f} {found['peak_mib']:>9.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
