"""The command line: the only place that prints or exits.

stdout carries data (manifests, JSON, the schema); stderr carries messages.
Exit codes (documented in the README):

    0  success
    1  differences found (diff, apply --check)
    2  usage error (bad option, unknown environment, missing tool)
    3  the plan is invalid
    4  an outside system failed: the cluster (diff, apply), Prometheus (report),
       prices that disagree with the plan (check-gpu-prices)
    5  generated output failed validation (a costplan bug or a schema mismatch)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import click

from costplan import __version__

EXIT_OK = 0
EXIT_DIFF = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_CLUSTER = 4
EXIT_OUTPUT_INVALID = 5

DEFAULT_PLAN = "costplan.yaml"


class Console:
    """Messages to stderr, at the verbosity chosen once at the root."""

    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            click.echo(message, err=True)

    def detail(self, message: str) -> None:
        if self.verbosity > 0:
            click.echo(message, err=True)

    def error(self, message: str) -> None:
        click.echo(message, err=True)


def _console(ctx: click.Context) -> Console:
    return ctx.find_object(Console) or Console()


def _fail(code: int, message: str | None = None) -> None:
    if message:
        click.echo(message, err=True)
    sys.exit(code)


plan_option = click.option(
    "-f",
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PLAN,
    envvar="COSTPLAN_PLAN",
    show_default=True,
    help="The plan file; overlays are read from environments/ beside it.",
)
env_option = click.option("-e", "--env", "environment", help="Merge environments/ENV.yaml onto the plan.")
all_envs_option = click.option("--all-envs", is_flag=True, help="Every environment in environments/.")


def _environments(plan_path: Path, environment: str | None, all_envs: bool) -> list[str | None]:
    from costplan.plan.load import list_environments

    if environment and all_envs:
        raise click.UsageError("--env and --all-envs exclude each other")
    if all_envs:
        names = list_environments(plan_path)
        if not names:
            raise click.UsageError(f"no environments/*.yaml beside {plan_path}")
        return list(names)
    if environment is not None and plan_path.is_file() and environment not in list_environments(plan_path):
        known = ", ".join(list_environments(plan_path)) or "none"
        raise click.UsageError(f"no environment {environment!r} beside {plan_path} (known: {known})")
    return [environment]


def _report_invalid(ctx: click.Context, diagnostics: Sequence[Any], output_format: str) -> None:
    from costplan.core.diagnostics import render_json, render_text

    if output_format == "json":
        click.echo(render_json(diagnostics))
    else:
        click.echo(render_text(diagnostics), err=True)
        errors = sum(1 for d in diagnostics if d.severity == "error")
        warnings = len(diagnostics) - errors
        _console(ctx).info(f"{errors} error(s), {warnings} warning(s) in the plan")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="costplan")
@click.option("-v", "--verbose", count=True, help="More messages on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compile an LLM chargeback plan (costplan.yaml) into cluster config."""
    ctx.obj = Console(-1 if quiet else verbose)


@main.command()
@plan_option
@env_option
@all_envs_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def validate(ctx: click.Context, plan_path: Path, environment: str | None, all_envs: bool, output_format: str) -> None:
    """Check the plan (and overlays) against the schema and semantic rules.

    Every problem is reported at once as FILE:LINE:COLUMN: /POINTER: MESSAGE [CHECK].
    Exit 0 when valid, 3 when not.
    """
    from costplan.core.diagnostics import sort_diagnostics
    from costplan.plan.load import load_document, validate_document

    diagnostics = []
    for env in _environments(plan_path, environment, all_envs):
        diagnostics.extend(validate_document(load_document(plan_path, env)))
    diagnostics = sort_diagnostics(diagnostics)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors or (diagnostics and output_format == "json"):
        _report_invalid(ctx, diagnostics, output_format)
        if errors:
            _fail(EXIT_INVALID)
    elif diagnostics:
        _report_invalid(ctx, diagnostics, output_format)
    if output_format == "json" and not diagnostics:
        click.echo('{\n  "valid": true,\n  "diagnostics": []\n}')
    _console(ctx).info(f"{plan_path}: valid")


@main.command()
@plan_option
@env_option
@all_envs_option
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write DIR/<env>/<component>/<kind>-<name>.yaml (atomically). Without it: YAML stream on stdout.",
)
@click.option(
    "--schema-location",
    "schema_locations",
    multiple=True,
    envvar="COSTPLAN_SCHEMA_LOCATION",
    help="Where CRD JSON schemas live, kubeconform style, e.g. "
    "'schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'. Repeatable.",
)
@click.option("--kubernetes-version", default="1.33", show_default=True, help="Schemas of this version for core kinds.")
@click.option("--strict-schemas", is_flag=True, help="A custom resource without a schema is an error.")
@click.option("--kubeconform", "use_kubeconform", is_flag=True, help="Also run kubeconform through docker.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["manifests", "rules"]),
    default="manifests",
    show_default=True,
    help="manifests: everything for the cluster; rules: the spend rules as plain Prometheus rule files.",
)
@click.option("--check-rules", is_flag=True, help="Also run 'promtool check rules' on the spend rules.")
@click.pass_context
def build(ctx: click.Context, **options: Any) -> None:
    """Compile the plan into manifests, validated before anything is written."""
    from costplan.output import build as build_stage

    with build_stage.paused_gc():
        _build(ctx, **options)


def _build(
    ctx: click.Context,
    plan_path: Path,
    environment: str | None,
    all_envs: bool,
    output_dir: Path | None,
    schema_locations: Sequence[str],
    kubernetes_version: str,
    strict_schemas: bool,
    use_kubeconform: bool,
    output_format: str,
    check_rules: bool,
) -> None:
    from costplan.core.canonical_yaml import dump_yaml
    from costplan.core.errors import PlanInvalid
    from costplan.output import build as build_stage
    from costplan.output import serialise as output
    from costplan.output import verify

    console = _console(ctx)
    envs = _environments(plan_path, environment, all_envs)
    locations = _split_locations(schema_locations)
    try:
        result = build_stage.build(plan_path, envs)
    except PlanInvalid as invalid:
        _report_invalid(ctx, invalid.diagnostics, "text")
        _fail(EXIT_INVALID)
        return
    try:
        validator = verify.ManifestValidator(
            kubernetes_version=kubernetes_version, schema_locations=locations, strict=strict_schemas
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    problems = []
    for env, artifacts in result.environments.items():
        for problem in validator.validate_all(artifacts):
            problems.append((env, problem))
    _report_output_problems(console, problems)
    if any(p.severity == "error" for _, p in problems):
        _fail(EXIT_OUTPUT_INVALID, "generated output failed validation; nothing was written")
    if check_rules:
        _promtool_check(console, result)
    if output_format == "rules":
        result.environments = {env: build_stage.rules_artifacts(plan) for env, plan in result.plans.items()}
        if output_dir is None:
            for env, artifacts in result.environments.items():
                for artifact in artifacts:
                    click.echo(f"# Source: {env}/{artifact.path}\n" + dump_yaml(artifact.data), nl=False)
            return
    files = {
        f"{env}/{path}": text
        for env, artifacts in result.environments.items()
        for path, text in output.render_environment(artifacts, result.plan_name, env).items()
    }
    if output_dir is None:
        click.echo(output.render_stream(result.environments, result.plan_name), nl=False)
        return
    if all_envs:
        output.write_tree(files, output_dir)
    else:
        env = next(iter(result.environments))
        prefix = f"{env}/"
        output.write_tree({k[len(prefix):]: v for k, v in files.items()}, output_dir / env)
    count = sum(len(a) for a in result.environments.values())
    console.info(f"wrote {count} artifacts for {', '.join(result.environments)} to {output_dir}")
    if use_kubeconform:
        _kubeconform(console, output_dir, locations, kubernetes_version)


def _report_output_problems(console: Console, problems: list[tuple[str, Any]]) -> None:
    """Errors one per line; unvalidated custom kinds as one summary unless -v."""
    unchecked = [(env, p) for env, p in problems if p.check_id == "missing-schema"]
    for env, problem in problems:
        line = f"{env}/{problem.render()}"
        if problem.severity == "error":
            console.error(line)
        elif problem.check_id != "missing-schema":
            console.info(f"warning: {line}")
        else:
            console.detail(f"warning: {line}")
    if unchecked and not any(p.severity == "error" for _, p in unchecked):
        kinds = sorted({p.message.split(" (")[0].removeprefix("no schema for ") for _, p in unchecked})
        console.info(
            f"warning: {len(unchecked)} custom resources not validated, no schema for: {', '.join(kinds)}; "
            "pass --schema-location (or set COSTPLAN_SCHEMA_LOCATION) to check them"
        )


def _promtool_check(console: Console, result: Any) -> None:
    """promtool is the authority on PromQL: every environment's rules must pass it."""
    from costplan.generators.prometheus.groups import rule_groups
    from costplan.output import promtool

    for env, plan in result.plans.items():
        try:
            checked = promtool.check_rules(rule_groups(plan))
        except promtool.PromtoolMissing as exc:
            _fail(EXIT_USAGE, f"cannot check rules: {exc}")
            return
        if not checked.ok:
            console.error(checked.output.strip())
            _fail(EXIT_OUTPUT_INVALID, f"{env}: promtool rejected the spend rules; nothing was written")
        console.detail(f"{env}: promtool check rules: ok")


def _split_locations(values: Sequence[str]) -> list[str]:
    from costplan.output.verify import split_locations

    return split_locations(values)


def _kubeconform(console: Console, directory: Path, locations: list[str], kubernetes_version: str) -> None:
    from costplan.output import verify

    try:
        problems = verify.run_kubeconform(directory, locations, kubernetes_version)
    except verify.KubeconformUnavailable as exc:
        _fail(EXIT_USAGE, f"cannot run kubeconform: {exc}")
        return
    for problem in problems:
        console.error(problem.render())
    if any(p.severity == "error" for p in problems):
        _fail(EXIT_OUTPUT_INVALID, "kubeconform found problems")
    console.info("kubeconform: all manifests valid")


@main.command()
def schema() -> None:
    """Print the plan's JSON Schema (for editors and CI)."""
    from costplan.plan.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@plan_option
def envs(plan_path: Path) -> None:
    """List the environments found in environments/ beside the plan."""
    from costplan.plan.load import list_environments

    for name in list_environments(plan_path):
        click.echo(name)


def _register_report_commands() -> None:
    from costplan.chargeback.report import check_gpu_prices_command, report_command

    main.add_command(report_command, "report")
    main.add_command(check_gpu_prices_command, "check-gpu-prices")


_register_report_commands()


def _register_cluster_commands() -> None:
    from costplan.cli.cluster import apply_command, diff_command

    main.add_command(diff_command, "diff")
    main.add_command(apply_command, "apply")


_register_cluster_commands()


def _register_impact_command() -> None:
    from costplan.cli.impact import impact_command

    main.add_command(impact_command, "impact")


_register_impact_command()
