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
from costplan.core.forking import Pending
from costplan.generators import alertmanager, generate_all
from costplan.generators.prometheus import rules_files
from costplan.plan import fleet
from costplan.plan.load import ParsedFiles, load_plan_checking_aside
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
    invalid = False
    # Per environment, in order: its problems, or its checks still running.
    outcomes: list[list[Diagnostic] | Pending[list[Diagnostic]]] = []
    parsed: ParsedFiles = {}  # the base plan is read once for every environment
    for environment in environments:
        try:
            plan, checked = load_plan_checking_aside(Path(plan_path), environment, parsed)
        except PlanInvalid as rejected:
            outcomes.append(rejected.diagnostics)
            invalid = True
            continue
        plans.append(plan)
        outcomes.append(checked)
    parsed.clear()  # the documents with positions: the largest thing a build holds, no longer needed
    result = BuildResult(plan_name=plans[0].name if plans else "", environments={})
    failure: Exception | None = None
    if not invalid:
        # The semantic checks run beside the generators; what is generated is
        # kept only if they find nothing (a generator may fail on a plan they reject).
        try:
            for plan in plans:
                result.environments[plan.environment] = compile_plan(plan)
                result.plans[plan.environment] = plan
        except Exception as exc:  # noqa: BLE001 - raised below unless the checks explain it
            failure = exc
    # Every environment's checks are waited for: all problems are reported at once.
    problems = [d for outcome in outcomes for d in (outcome if isinstance(outcome, list) else outcome())]
    if problems:
        raise PlanInvalid(problems)
    if failure is not None:
        raise failure
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
