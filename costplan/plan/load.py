"""The plan stage's entry: load → merge environment → validate → plan model.

The CLI, the tests and the benchmarks all call these functions; none of them
prints or exits. Failures are typed exceptions (``PlanInvalid``) that carry
every diagnostic at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costplan.core import forking
from costplan.core.diagnostics import Diagnostic, sort_diagnostics
from costplan.core.errors import PlanInvalid
from costplan.plan.document import from_document
from costplan.plan.merge import merge
from costplan.plan.model import Plan
from costplan.plan.source import LoadedFile, load_yaml_file

BASE_ENVIRONMENT = "base"
ENVIRONMENTS_DIR = "environments"


def display_path(path: Path) -> str:
    """How a file is named in messages: relative to the working directory if inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def environments_dir(plan_path: Path) -> Path:
    return plan_path.resolve().parent / ENVIRONMENTS_DIR


def list_environments(plan_path: Path) -> list[str]:
    """Environment names found next to the plan, sorted."""
    directory = environments_dir(plan_path)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml") if p.is_file())


@dataclass
class LoadedDocument:
    """The merged document (with positions) and what went wrong on the way."""

    environment: str
    document: Any
    diagnostics: list[Diagnostic]


ParsedFiles = dict[Path, LoadedFile]


def load_document(plan_path: Path, environment: str | None = None, parsed: ParsedFiles | None = None) -> LoadedDocument:
    """Read the plan and, if asked, merge one environment overlay onto it.

    ``parsed`` lets one build read the base plan once for all its
    environments: merging never changes the base document, it copies what it
    overlays.
    """
    if parsed is not None and plan_path in parsed:
        base = parsed[plan_path]
    else:
        base = load_yaml_file(plan_path, display_path(plan_path))
        if parsed is not None:
            parsed[plan_path] = base
    diagnostics = list(base.diagnostics)
    document = base.data
    env_name = environment or BASE_ENVIRONMENT
    if environment:
        overlay_path = environments_dir(plan_path) / f"{environment}.yaml"
        if not overlay_path.is_file():
            known = ", ".join(list_environments(plan_path)) or "none"
            diagnostics.append(
                Diagnostic(
                    display_path(overlay_path), 1, 1, "",
                    f"no environment {environment!r} (known: {known})", "file-missing",
                )
            )
        else:
            overlay = load_yaml_file(overlay_path, display_path(overlay_path))
            diagnostics.extend(overlay.diagnostics)
            if overlay.data is not None and document is not None:
                if not isinstance(overlay.data, dict):
                    diagnostics.append(
                        Diagnostic(overlay.path, 1, 1, "", "an overlay must be a mapping", "overlay")
                    )
                else:
                    document = merge(document, overlay.data, diagnostics)
    return LoadedDocument(env_name, document, diagnostics)


def validate_document(loaded: LoadedDocument) -> list[Diagnostic]:
    """Every problem in a loaded document: syntax, schema, then semantic checks."""
    return validated(loaded)[0]


def validated(loaded: LoadedDocument, schema_problems: list[Diagnostic] | None = None
              ) -> tuple[list[Diagnostic], Plan | None]:
    """Every problem in a loaded document, and its plan model when nothing is an error.

    ``schema_problems``: the document's schema check, when the caller has
    already run it (it is not run twice).

    Semantic checks rely on the schema's shape; on a document with schema
    errors they still run where the document can be read (``run_readable``),
    so one run reports every mistake rather than the schema's first. The
    model is built once, for the checks that read it and for the caller.
    """
    from costplan.plan import checks, schema  # local: keeps loading cheap for `envs`

    diagnostics = list(loaded.diagnostics)
    if loaded.document is None:
        if not diagnostics:
            diagnostics.append(Diagnostic("<plan>", 1, 1, "", "the plan is empty", "schema"))
        return sort_diagnostics(diagnostics), None
    if schema_problems is None:
        schema_problems = schema.validate(loaded.document)
    diagnostics.extend(schema_problems)
    plan = None
    if not schema_problems:
        plan = checks.model_of(loaded.document, loaded.environment)
        diagnostics.extend(checks.run_all(loaded.document, plan))
    else:
        diagnostics.extend(checks.run_readable(loaded.document, {d.pointer for d in schema_problems}))
    diagnostics = sort_diagnostics(diagnostics)
    return diagnostics, None if any(d.severity == "error" for d in diagnostics) else plan


def load_plan(plan_path: Path | str, environment: str | None = None, parsed: ParsedFiles | None = None) -> Plan:
    """A validated plan for one environment, or ``PlanInvalid`` with every problem."""
    return load_plan_from(load_document(Path(plan_path), environment, parsed))


def load_plan_checking_aside(
    plan_path: Path | str, environment: str | None = None, parsed: ParsedFiles | None = None
) -> tuple[Plan, forking.Pending[list[Diagnostic]]]:
    """``load_plan``, returning the model before the semantic checks are done; they run beside the caller.

    The build's generators need only the model, and the checks (a large
    plan's walk over every user, every reference) cost as much as the
    generators themselves: a forked child runs them while this process
    generates (``forking.start``). The function returned gives the checks'
    errors, sorted; the caller must ask for them, and act on them, before
    anything it made from the plan leaves the process: until then the plan
    is schema-valid only, and what is made from it may be wrong or fail.
    A document with any problem found before the checks (syntax, duplicate
    keys, schema, a model that cannot be built) is checked here and now, as
    ``load_plan`` does: ``PlanInvalid`` with every problem.
    """
    from costplan.plan import checks, schema

    loaded = load_document(Path(plan_path), environment, parsed)
    document = loaded.document
    plan = None
    schema_problems = None
    if document is not None and not any(d.is_error for d in loaded.diagnostics):
        schema_problems = schema.validate(document)
        if not schema_problems:
            plan = checks.model_of(document, loaded.environment)
    if plan is None:
        return load_plan_from(loaded, schema_problems), lambda: []
    model = plan

    def semantic_errors() -> list[Diagnostic]:
        return [d for d in checks.run_all(document, model) if d.is_error]

    return plan, forking.start(semantic_errors)


def load_plan_from(loaded: LoadedDocument, schema_problems: list[Diagnostic] | None = None) -> Plan:
    """The validated plan of a loaded document, or ``PlanInvalid`` with every problem (see ``validated``)."""
    diagnostics, plan = validated(loaded, schema_problems)
    problems = [d for d in diagnostics if d.severity == "error"]
    if problems:
        raise PlanInvalid(problems)
    return plan if plan is not None else from_document(loaded.document, loaded.environment)
