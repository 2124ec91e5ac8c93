"""``validate``, ``build``, ``schema``, ``envs``: the plan and what it compiles to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from costplan.cli.console import Console, console, guarded, report_findings
from costplan.cli.options import all_envs_option, env_option, environments, plan_option
from costplan.core.canonical_yaml import dump_yaml
from costplan.core.diagnostics import Diagnostic, sort_diagnostics
from costplan.core.errors import OutputInvalid, PlanInvalid, ToolMissing, UsageProblem
from costplan.output import build as build_stage
from costplan.output import parallel, verify
from costplan.output import serialise as output
from costplan.output.build import BuildResult
from costplan.plan.load import environments_dir, list_environments, load_document, validate_document


@click.command()
@plan_option
@env_option
@all_envs_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@guarded
def validate(plan_path: Path, environment: str | None, all_envs: bool, output_format: str) -> None:
    """Check the plan (and overlays) against the schema and semantic rules.

    Every problem is reported at once as FILE:LINE:COLUMN: /POINTER: MESSAGE [CHECK].
    Exit 0 when valid, 3 when not.
    """
    diagnostics: list[Diagnostic] = []
    checked = environments(plan_path, environment, all_envs)
    for env in checked:
        diagnostics.extend(validate_document(load_document(plan_path, env)))
    diagnostics = sort_diagnostics(diagnostics)
    if any(d.is_error for d in diagnostics):
        raise PlanInvalid(diagnostics)
    if diagnostics:
        report_findings(diagnostics, output_format)
    elif output_format == "json":
        click.echo('{\n  "valid": true,\n  "diagnostics": []\n}')
    names = [env for env in checked if env is not None]
    console().info(f"{plan_path}: valid" + (f" (environments: {', '.join(names)})" if names else ""))


@click.command()
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
    type=click.Choice(["manifests", "rules", "alertmanager"]),
    default="manifests",
    show_default=True,
    help="manifests: everything for the cluster; rules: the spend rules as plain Prometheus rule files; "
    "alertmanager: the alert routing as a plain Alertmanager configuration.",
)
@click.option("--check-rules", is_flag=True, help="Also run 'promtool check rules' on the spend rules.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1, max=parallel.MAX_JOBS),
    envvar=parallel.JOBS_VARIABLE,
    default=None,
    help="Processes that turn objects into YAML (default: the processors available, at most "
    f"{parallel.MAX_JOBS}); the files are the same with any number.",
)
@guarded
def build(**options: Any) -> None:
    """Compile the plan into manifests, validated before anything is written."""
    with build_stage.paused_gc():
        _build(**options)


def _build(
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
    jobs: int | None,
) -> None:
    out = console()
    envs = environments(plan_path, environment, all_envs)
    locations = verify.split_locations(schema_locations)
    result = build_stage.build(plan_path, envs)
    try:
        validator = verify.ManifestValidator(
            kubernetes_version=kubernetes_version, schema_locations=locations, strict=strict_schemas
        )
    except ValueError as exc:
        raise UsageProblem(str(exc)) from exc
    several = len(result.environments) > 1  # then identical objects are validated and dumped once

    def verify_output() -> None:
        """Every generated object checked; an error stops the build before anything is written."""
        problems = [
            (env, p) for env, artifacts in result.environments.items() for p in validator.validate_all(artifacts, several)
        ]
        _report_output_problems(out, problems, locations, written=output_format == "manifests")
        if any(p.is_error for _, p in problems):
            raise OutputInvalid("generated output failed validation; nothing was written")
        if check_rules:
            _promtool_check(out, result)

    # Manifests are verified while the first environment is being rendered
    # (rendering is pure; only writing waits for the verdict); the plain
    # formats replace the artifacts, so theirs are verified first.
    pending: Callable[[], None] | None = verify_output
    if output_format in ("rules", "alertmanager"):
        verify_output()
        pending = None
        plain = build_stage.rules_artifacts if output_format == "rules" else build_stage.alertmanager_artifacts
        result.environments = {env: plain(plan) for env, plan in result.plans.items()}
        if output_dir is None:
            for env, artifacts in result.environments.items():
                for artifact in artifacts:
                    click.echo(f"# Source: {env}/{artifact.path}\n" + dump_yaml(artifact.data), nl=False)
            return
    dumped: dict[bytes, str] | None = {} if several else None
    count = sum(len(a) for a in result.environments.values())
    files: dict[str, str] = {}
    for env, artifacts in result.environments.items():
        rendered = output.render_environment(
            artifacts, result.plan_name, env, dumped, kustomize=output_format == "manifests",
            jobs=jobs or parallel.default_jobs(), meanwhile=pending,
        )
        pending = None
        files.update((f"{env}/{path}", text) for path, text in rendered.items())
        if output_dir is not None:
            # Written from text from here on: an environment's objects go as soon as they
            # are text, so a large build never holds every environment's objects and texts at once.
            result.environments[env] = []
    if pending is not None:  # no environment to render
        pending()
    if output_dir is None:
        click.echo(output.render_stream(result.environments, result.plan_name), nl=False)
        return
    protected = (plan_path, environments_dir(plan_path))
    if all_envs:
        output.write_tree(files, output_dir, protected=protected, marked=list(result.environments))
    else:
        env = next(iter(result.environments))
        prefix = f"{env}/"
        output.write_tree({k[len(prefix):]: v for k, v in files.items()}, output_dir / env, protected=protected)
    out.info(f"wrote {count} artifacts for {', '.join(result.environments)} to {output_dir}")
    if use_kubeconform:
        _kubeconform(out, output_dir, locations, kubernetes_version)


def _report_output_problems(
    out: Console, problems: list[tuple[str, Diagnostic]], locations: Sequence[str] = (), written: bool = True
) -> None:
    """Errors one per line; unvalidated custom kinds as one summary unless -v (none when they are not written)."""
    unchecked = [(env, p) for env, p in problems if p.check_id == "missing-schema"] if written else []
    problems = problems if written else [(env, p) for env, p in problems if p.check_id != "missing-schema"]
    for env, problem in problems:
        line = f"{env}/{problem.render()}"
        if problem.is_error:
            out.error(line)
        elif problem.check_id != "missing-schema":
            out.info(f"warning: {line}")
        else:
            out.detail(f"warning: {line}")
    if unchecked and not any(p.is_error for _, p in unchecked):
        kinds = sorted({p.message.split(" (")[0].removeprefix("no schema for ") for _, p in unchecked})
        if locations:
            hint = (
                f"the schema location(s) {', '.join(locations)} hold no schema for them; check the path and that it "
                "uses the CRDs-catalog layout {{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
            )
        else:
            hint = (
                "to check them, pass --schema-location (or set COSTPLAN_SCHEMA_LOCATION) to CRD schemas: "
                "the CRDs-catalog (github.com/datreeio/CRDs-catalog) or your own cluster's (see the README)"
            )
        out.info(f"warning: {len(unchecked)} custom resources not validated, no schema for: {', '.join(kinds)}; {hint}")


def _promtool_check(out: Console, result: BuildResult) -> None:
    """promtool is the authority on PromQL: every environment's rules must pass it."""
    from costplan.generators.prometheus.groups import rule_groups
    from costplan.output import promtool

    for env, plan in result.plans.items():
        for part, variant in build_stage.rule_parts(plan):
            where = f"{env}/{part}" if part else env
            try:
                checked = promtool.check_rules(rule_groups(variant))
            except promtool.PromtoolMissing as exc:
                raise ToolMissing(f"cannot check rules: {exc}") from exc
            if not checked.ok:
                out.error(checked.output.strip())
                raise OutputInvalid(f"{where}: promtool rejected the spend rules; nothing was written")
            out.detail(f"{where}: promtool check rules: ok")


def _kubeconform(out: Console, directory: Path, locations: list[str], kubernetes_version: str) -> None:
    try:
        problems = verify.run_kubeconform(directory, locations, kubernetes_version)
    except verify.KubeconformUnavailable as exc:
        raise ToolMissing(f"cannot run kubeconform: {exc}") from exc
    for problem in problems:
        out.error(problem.render())
    if any(p.is_error for p in problems):
        raise OutputInvalid("kubeconform found problems")
    out.info("kubeconform: all manifests valid")


@click.command()
@guarded
def schema() -> None:
    """Print the plan's JSON Schema (for editors and CI)."""
    from costplan.plan.schema import schema_text

    click.echo(schema_text(), nl=False)


@click.command()
@plan_option
@guarded
def envs(plan_path: Path) -> None:
    """List the environments found in environments/ beside the plan."""
    if not plan_path.is_file():
        raise UsageProblem(f"{plan_path}: file not found")
    for name in list_environments(plan_path):
        click.echo(name)
