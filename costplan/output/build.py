"""The compile: every environment's plan through the generators, all or nothing.

``build`` is what ``costplan build``, ``impact`` and ``diff``/``apply`` share:
validate every asked-for environment first, then run the generator registry,
so no caller ever sees half an output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from costplan.core.artifacts import Artifact, file
from costplan.core.diagnostics import Diagnostic
from costplan.core.errors import PlanInvalid
from costplan.generators import alertmanager, generate_all
from costplan.generators.prometheus import rules_files
from costplan.plan import fleet
from costplan.plan.load import ParsedFiles, load_plan
from costplan.plan.model import Plan


def compile_plan(plan: Plan) -> list[Artifact]:
    """Every artifact for one environment, from the generator registry."""
    return generate_all(plan)


@dataclass
class BuildResult:
    """Artifacts per environment, in the order the environments were asked for."""

    plan_name: str
    environments: dict[str, list[Artifact]]
    plans: dict[str, Plan] = field(default_factory=dict)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a compile.

    A compile makes millions of short-lived objects and almost no reference
    cycles; with the collector running, large plans spend a third of their
    time rescanning them. Memory is returned by reference counting anyway.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def build(plan_path: Path | str, environments: list[str | None]) -> BuildResult:
    """Validate and compile each environment; all problems of all environments at once.

    Nothing is generated unless every environment is valid, so a build never
    produces half an output.
    """
    with paused_gc():
        return _build(plan_path, environments)


def _build(plan_path: Path | str, environments: list[str | None]) -> BuildResult:
    plans: list[Plan] = []
    problems: list[Diagnostic] = []
    parsed: ParsedFiles = {}  # the base plan is read once for every environment
    for environment in environments:
        try:
            plans.append(load_plan(Path(plan_path), environment, parsed))
        except PlanInvalid as invalid:
            problems.extend(invalid.diagnostics)
    parsed.clear()  # the documents with positions: the largest thing a build holds, no longer needed
    if problems:
        raise PlanInvalid(problems)
    result = BuildResult(plan_name=plans[0].name if plans else "", environments={})
    for plan in plans:
        result.environments[plan.environment] = compile_plan(plan)
        result.plans[plan.environment] = plan
    return result


def alertmanager_artifacts(plan: Plan) -> list[Artifact]:
    """The alert routing as a plain Alertmanager configuration, for setups without the operator."""
    return alertmanager.plain_artifacts(plan)


def rules_artifacts(plan: Plan) -> list[Artifact]:
    """The spend rules as plain Prometheus rule files, for setups without the operator.

    A fleet gets each part's files in its own directory: ``clusters/<name>/``
    for that cluster's Prometheus, ``global/`` for the global engine.
    """
    return [
        dataclasses.replace(file("prometheus", name, groups), part=part)
        for part, variant in rule_parts(plan)
        for name, groups in sorted(rules_files(variant).items())
    ]


def rule_parts(plan: Plan) -> list[tuple[str, Plan]]:
    """(directory, plan) of every part that evaluates rules: the plan itself, or a fleet's parts."""
    return fleet.parts(plan) if plan.is_fleet else [("", plan)]
