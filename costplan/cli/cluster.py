"""``costplan diff`` and ``costplan apply``: the plan, installed on a cluster.

Both commands build the plan exactly like ``costplan build`` (an invalid
plan exits 3 with its diagnostics), connect through ``cluster.py`` and hand
the manifests to ``apply.run``. Unified diffs go to stdout; one line per
object and the ``RECAP`` go to stderr. Exit codes follow ``kubectl diff``:

    0  nothing would change (diff, apply --check) / applied (apply)
    1  something would change (diff, apply --check)
    2  usage error
    3  the plan is invalid
    4  a cluster request failed, a CRD is missing, or an object failed
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

EXIT_OK = 0
EXIT_DIFF = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_CLUSTER = 4


def connect(kubeconfig: str | None, context: str | None, timeout: float) -> Any:
    """A ``Cluster`` for the kubeconfig and context given (or the usual defaults)."""
    from costplan.install.cluster import KubeCluster

    return KubeCluster(kubeconfig=kubeconfig, context=context, timeout=timeout)


def _verbosity(ctx: click.Context) -> int:
    return int(getattr(ctx.find_root().obj, "verbosity", 0) or 0)


def _common(function):
    options = [
        click.option("-f", "--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
                     default="costplan.yaml", envvar="COSTPLAN_PLAN", show_default=True,
                     help="The plan file; overlays are read from environments/ beside it."),
        click.option("-e", "--env", "environment", envvar="COSTPLAN_ENV",
                     help="Merge environments/ENV.yaml onto the plan (required when the plan has environments)."),
        click.option("--kubeconfig", type=click.Path(dir_okay=False),
                     help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."),
        click.option("--context", help="Kubeconfig context (default: the current context)."),
        click.option("--applyset-namespace",
                     help="Namespace of the ApplySet parent ConfigMap (default: the Prometheus namespace)."),
        click.option("--prune/--no-prune", default=True, show_default=True,
                     help="Delete objects of this plan and environment's ApplySet that the plan no longer has."),
        click.option("--force-conflicts", is_flag=True,
                     help="Take over fields other field managers own (server-side apply force)."),
        click.option("--timeout", type=float, default=30.0, show_default=True,
                     help="Seconds per request to the API server."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("diff")
@_common
@click.pass_context
def diff_command(ctx: click.Context, **kwargs: Any) -> None:
    """Show what `apply` would change, as unified diffs (server dry run, nothing written).

    Exit 0 when nothing would change, 1 when something would, 4 on cluster errors.
    """
    _run(ctx, mode="diff", check=False, show_diff=True, **kwargs)


@click.command("apply")
@_common
@click.option("--check", is_flag=True,
              help="Server dry run: report what would change, change nothing (exit 1 if anything would).")
@click.option("--diff", "show_diff", is_flag=True, help="Also print a unified diff of every change on stdout.")
@click.pass_context
def apply_command(ctx: click.Context, check: bool, show_diff: bool, **kwargs: Any) -> None:
    """Server-side apply the plan as field manager `costplan`, then prune what it no longer has.

    One line per object (ok, changed, created, pruned, skipped, failed) and a RECAP on stderr.
    """
    _run(ctx, mode="check" if check else "apply", check=check, show_diff=show_diff, **kwargs)


def _environment(plan_path: Path, environment: str | None) -> str | None:
    from costplan.plan.load import list_environments

    known = list_environments(plan_path) if plan_path.is_file() else []
    if environment is None and known:
        raise click.UsageError(f"--env is required: {plan_path} has environments ({', '.join(known)})")
    if environment is not None and plan_path.is_file() and environment not in known:
        known_text = ", ".join(known) or "none"
        raise click.UsageError(f"no environment {environment!r} beside {plan_path} (known: {known_text})")
    return environment


def _run(
    ctx: click.Context,
    *,
    mode: str,
    check: bool,
    show_diff: bool,
    plan_path: Path,
    environment: str | None,
    kubeconfig: str | None,
    context: str | None,
    applyset_namespace: str | None,
    prune: bool,
    force_conflicts: bool,
    timeout: float,
) -> None:
    from costplan.core.diagnostics import render_text
    from costplan.core.errors import PlanInvalid
    from costplan.install import apply
    from costplan.install.applyset import applyset_for
    from costplan.install.cluster import ClusterError
    from costplan.output import build as build_stage

    env = _environment(plan_path, environment)
    try:
        result = build_stage.build(plan_path, [env])
    except PlanInvalid as invalid:
        click.echo(render_text(invalid.diagnostics), err=True)
        sys.exit(EXIT_INVALID)
    env_name, artifacts = next(iter(result.environments.items()))
    plan = result.plans[env_name]
    applyset = applyset_for(plan.name, env_name, applyset_namespace or plan.integrations.prometheus.namespace)
    try:
        cluster = connect(kubeconfig, context, timeout)
    except ClusterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CLUSTER)
    quiet = _verbosity(ctx) < 0

    def err(line: str) -> None:
        if not quiet or line.startswith(("failed", "RECAP", "  ")):
            click.echo(line, err=True)

    options = apply.Options(mode=mode, show_diff=show_diff, prune=prune, force_conflicts=force_conflicts)
    outcome = apply.run(cluster, apply.desired_objects(artifacts), applyset, options,
                        out=lambda text: click.echo(text, nl=False), err=err)
    if outcome.failed:
        sys.exit(EXIT_CLUSTER)
    if mode != "apply" and outcome.pending:
        sys.exit(EXIT_DIFF)
    sys.exit(EXIT_OK)
