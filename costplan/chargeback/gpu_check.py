"""Does the cost engine price GPUs at the plan's rates?

OpenCost (or Kubecost) exports ``node_gpu_hourly_cost`` per node; a plan
whose GPU prices never reached the engine shows up here before it shows up
in an invoice.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from costplan.chargeback.promapi import Sample
from costplan.core import conventions as c
from costplan.core.errors import ExternalFailure
from costplan.plan.model import Plan


class GpuPricesDisagree(ExternalFailure):
    """The cost engine prices a GPU node off the plan's rate, or prices none."""


# OpenCost keeps prices as float64 and the plan's per-GPU rate may not be a
# finite binary fraction; anything closer than this is the same price.
GPU_PRICE_TOLERANCE = Decimal("0.0001")
GPU_PRICE_QUERY = f"avg by (node, instance_type) ({c.ENGINE_METRIC_NODE_GPU_HOURLY_COST})"


def check_gpu_prices(plan: Plan, samples: Iterable[Sample]) -> tuple[list[str], list[str]]:
    """``(problems, notes)``: nodes of the plan's instance types priced off the plan.

    ``node_gpu_hourly_cost`` is per GPU and hour, so it is compared with
    ``hourly_rate / gpusPerNode``. Nodes of instance types the plan does not
    know are only noted. No node of any plan instance type is a problem:
    then nothing proves the rates apply (no scrape, or no GPU label).
    """
    expected = {g.instance_type: g.hourly_rate_per_gpu for g in plan.gpu_instances}
    problems: list[str] = []
    notes: list[str] = []
    matched = 0
    for sample in sorted(samples, key=lambda s: (s.labels.get("node", ""), s.labels.get("instance_type", ""))):
        node = sample.labels.get("node", "?")
        instance_type = sample.labels.get("instance_type", "")
        if instance_type not in expected:
            notes.append(f"node {node}: instance type {instance_type or '(none)'} is not in the plan; not checked")
            continue
        matched += 1
        want = expected[instance_type]
        if abs(sample.value - want) > GPU_PRICE_TOLERANCE:
            hint = ""
            if sample.value and abs(sample.value * 730 - want) <= GPU_PRICE_TOLERANCE * 730:
                hint = " (730 times too low: the engine reads monthly prices; check cost_engine.imageTag)"
            problems.append(
                f"node {node} ({instance_type}): node_gpu_hourly_cost is {sample.value.normalize():f}, "
                f"the plan says {want.normalize():f} per GPU-hour{hint}"
            )
    if matched == 0:
        problems.append(
            f"no {c.ENGINE_METRIC_NODE_GPU_HOURLY_COST} for any GPU instance type of the plan "
            f"({', '.join(sorted(expected)) or 'none'}): is the cost engine scraped?"
        )
    return problems, notes


