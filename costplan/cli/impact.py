"""``costplan impact``: the cost impact of a plan change, for pull requests."""

from __future__ import annotations

from pathlib import Path

import click

from costplan.cli.console import exit_with, guarded
from costplan.core.diagnostics import Diagnostic
from costplan.core.errors import ExitCode, PlanInvalid
from costplan.impact.compare import compare
from costplan.impact.estimate import UsageError, UsageRecord, estimate, parse_usage
from costplan.impact.manifests import manifest_diff, rendered_files
from costplan.impact.render import EnvironmentReport, render_json, render_markdown
from costplan.plan.load import list_environments, load_plan
from costplan.plan.model import Plan


def _base_path(base: Path, head: Path) -> Path:
    """``--base`` may name the plan file or the directory of a base checkout."""
    return base / head.name if base.is_dir() else base


def _environments(base: Path, head: Path, environment: str | None, all_envs: bool) -> list[str | None]:
    if environment and all_envs:
        raise click.UsageError("--env and --all-envs exclude each other")
    known = sorted(set(list_environments(base)) | set(list_environments(head)))
    if all_envs:
        if not known:
            raise click.UsageError(f"no environments/*.yaml beside {head} or {base}")
        return list(known)
    if environment is not None and (head.is_file() or base.is_file()) and environment not in known:
        raise click.UsageError(
            f"no environment {environment!r} beside {head} or {base} (known: {', '.join(known) or 'none'})"
        )
    return [environment]


def _load(path: Path, environment: str | None, problems: list[Diagnostic]) -> Plan | None:
    """The plan for one environment; ``None`` when the environment exists only on the other side."""
    if environment is not None and path.is_file() and environment not in list_environments(path):
        return None
    try:
        return load_plan(path, environment)
    except PlanInvalid as invalid:
        problems.extend(invalid.diagnostics)
        return None


@click.command("impact")
@click.option("--base", "base_path", required=True, type=click.Path(path_type=Path),
              help="The base revision's plan file, or the directory of a base checkout holding it.")
@click.option("-f", "--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              default="costplan.yaml", envvar="COSTPLAN_PLAN", show_default=True,
              help="The head revision's plan file; overlays are read from environments/ beside it.")
@click.option("-e", "--env", "environment", help="Compare this environment (plan + environments/ENV.yaml).")
@click.option("--all-envs", is_flag=True, help="Every environment beside either plan.")
@click.option("--format", "output_format", type=click.Choice(["markdown", "json"]), default="markdown",
              show_default=True, help="markdown: a pull-request comment; json: for policy gates.")
@click.option("--manifests/--no-manifests", default=True, show_default=True,
              help="Include the diff of the rendered build output per environment.")
@click.option("--usage-json", "usage_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Last month's usage per model (and team, tier): estimate the monthly cost before and after.")
@click.option("--exit-code", "exit_code", is_flag=True, help="Exit 1 when anything changes (like git diff).")
@guarded
def impact_command(
    base_path: Path,
    plan_path: Path,
    environment: str | None,
    all_envs: bool,
    output_format: str,
    manifests: bool,
    usage_file: Path | None,
    exit_code: bool,
) -> None:
    """Compare the plan with a base revision: budgets, prices, limits, members, cost.

    Prints a pull-request comment (first line: a hidden marker to update it in
    place) or JSON. "No cost impact." when nothing that affects money changed.
    Exit 0, or 1 with --exit-code when something changed; 2 usage; 3 when
    either plan is invalid.
    """
    base = _base_path(base_path, plan_path)
    envs = _environments(base, plan_path, environment, all_envs)
    records: tuple[UsageRecord, ...] | None = None
    if usage_file is not None:
        try:
            records = parse_usage(usage_file.read_text(encoding="utf-8"))
        except (UsageError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--usage-json") from exc
    problems: list[Diagnostic] = []
    pairs = [(env, _load(base, env, problems), _load(plan_path, env, problems)) for env in envs]
    if problems:
        raise PlanInvalid(problems)
    reports = []
    for env, old, new in pairs:
        impact = compare(old, new, env or "base")
        estimate_ = None if records is None else estimate(old, new, records)
        diff = manifest_diff(rendered_files(old), rendered_files(new)) if manifests and impact.changed else None
        reports.append(EnvironmentReport(impact, estimate_, diff))
    if output_format == "json":
        click.echo(render_json(reports))
    else:
        click.echo(render_markdown(reports, str(usage_file) if usage_file else None), nl=False)
    changed = any(r.impact.changed for r in reports)
    exit_with(ExitCode.CHANGED if exit_code and changed else ExitCode.OK)

