"""Build time, peak memory and artifact count for large generated plans.

Usage: ``python benchmarks/build_bench.py [--scales 0.1,1,10]``.

Each size is built in a fresh subprocess (``costplan build -o``), so peak
memory (max RSS) is that build's alone. Prints one line per size.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_plan import write_plan  # noqa: E402


def measure(scale: float, work: Path) -> dict[str, float]:
    plan = write_plan(work / f"plan-{scale}", scale)
    out = work / f"out-{scale}"
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "costplan", "-q", "build", "-f", str(plan), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"build failed at scale {scale}:\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    files = [p for p in out.rglob("*.yaml") if p.name != "kustomization.yaml"]
    rules = sum(p.read_text().count("\n  - record:") + p.read_text().count("\n    - record:") for p in files)
    return {
        "scale": scale,
        "users": int(500 * scale) * 10,
        "seconds": elapsed,
        "peak_mib": max(peak, before) / 1024,
        "artifacts": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "recording_rules": rules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0.1,1,10", help="comma-separated plan sizes (1 = 5,000 users)")
    args = parser.parse_args()
    print(f"{'scale':>6} {'users':>7} {'seconds':>8} {'peak MiB':>9} {'artifacts':>9} {'MiB out':>8} {'rules':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (float(s) for s in args.scales.split(",")):
            r = measure(scale, Path(tmp))
            print(
                f"{r['scale']:>6g} {r['users']:>7} {r['seconds']:>8.2f} {r['peak_mib']:>9.1f} "
                f"{r['artifacts']:>9} {r['bytes'] / 2**20:>8.2f} {r['recording_rules']:>6}"
            )


if __name__ == "__main__":
    main()
