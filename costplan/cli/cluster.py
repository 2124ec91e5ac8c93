"""``costplan diff``, ``costplan apply`` and ``costplan doctor``: the plan, installed on a cluster.

Both commands build the plan exactly like ``costplan build`` (an invalid
plan exits 3 with its diagnostics), connect through ``cluster.py`` and hand
the manifests to ``apply.run``. Unified diffs go to stdout; one line per
object and the ``RECAP`` go to stderr. Exit codes follow ``kubectl diff``:
0 nothing would change (diff, apply --check) or applied (apply), 1 something
would change, 2 usage, 3 the plan is invalid, 4 a cluster request failed, a
CRD is missing, or an object failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from costplan.chargeback.gpu_check import GPU_PRICE_QUERY, check_gpu_prices
from costplan.chargeback.promapi import PrometheusClient, QueryEndpoint
from costplan.cli.console import console, exit_with, guarded, say
from costplan.cli.options import job_env_option, plan_option, query_endpoint, query_options, timeout_option
from costplan.core.errors import ExitCode, ExternalFailure, UsageProblem
from costplan.install import apply, doctor
from costplan.install.applyset import applyset_for
from costplan.output import build as build_stage
from costplan.plan.load import list_environments


def connect(kubeconfig: str | None, context: str | None, timeout: float) -> Any:
    """A ``Cluster`` for the kubeconfig and context given (or the usual defaults)."""
    from costplan.install.cluster import KubeCluster

    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise UsageProblem(f"--kubeconfig {kubeconfig}: file not found")
    return KubeCluster(kubeconfig=kubeconfig, context=context, timeout=timeout)


def _common(function: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        plan_option,
        job_env_option,
        click.option("--kubeconfig", type=click.Path(dir_okay=False),
                     help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."),
        click.option("--context", help="Kubeconfig context (default: the current context)."),
        click.option("--applyset-namespace",
                     help="Namespace of the ApplySet parent ConfigMap (default: the Prometheus namespace)."),
        click.option("--prune/--no-prune", default=True, show_default=True,
                     help="Delete objects of this plan and environment's ApplySet that the plan no longer has."),
        click.option("--force-conflicts", is_flag=True,
                     help="Take over fields other field managers own (server-side apply force)."),
        click.option("--create-namespaces", is_flag=True,
                     help="Create the namespaces the plan targets but does not define (monitoring, "
                          "kuadrant-system, ...) instead of failing when they are missing "
                          "(also the plan's install.createNamespaces)."),
        timeout_option(120.0, "Seconds for the whole run: connecting, discovery and every request "
                              "(a server that stops answering fails within it)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("diff")
@_common
@guarded
def diff_command(**kwargs: Any) -> None:
    """Show what `apply` would change, as unified diffs (server dry run, nothing written).

    Exit 0 when nothing would change, 1 when something would, 4 on cluster errors.
    """
    _run(mode="diff", check=False, show_diff=True, wait=None, **kwargs)


@click.command("apply")
@_common
@click.option("--check", is_flag=True,
              help="Server dry run: report what would change, change nothing (exit 1 if anything would).")
@click.option("--diff", "show_diff", is_flag=True, help="Also print a unified diff of every change on stdout.")
@click.option("--wait", type=float, default=None, metavar="SECONDS",
              help="After applying, wait up to SECONDS for Kuadrant policies to be Accepted and Enforced, "
                   "Deployments Available and CronJobs created; report each (exit 4 if any is not ready).")
@guarded
def apply_command(check: bool, show_diff: bool, **kwargs: Any) -> None:
    """Server-side apply the plan as field manager `costplan`, then prune what it no longer has.

    One line per object (ok, changed, created, pruned, skipped, failed) and a RECAP on stderr.
    """
    _run(mode="check" if check else "apply", check=check, show_diff=show_diff, **kwargs)


def _components(plan: Any) -> dict[str, str]:
    """What runs in each namespace the plan's integrations name, for a missing namespace's message."""
    i = plan.integrations
    found = {i.gateway.namespace: "the gateway (a Gateway API implementation)",
             i.gateway.limitador.namespace: "Kuadrant's Limitador (kuadrant-operator)",
             i.gateway.api_key.secret_namespace: "Kuadrant's Authorino API-key Secrets (kuadrant-operator)",
             i.grafana.namespace: "Grafana",
             i.cost_engine.namespace: f"the cost engine ({i.cost_engine.type})",
             i.prometheus.namespace: "Prometheus (the Prometheus Operator, e.g. kube-prometheus-stack)"}
    if i.argocd is not None:
        found[i.argocd.namespace] = "Argo CD"
    return found


def _environment(plan_path: Path, environment: str | None) -> str | None:
    known = list_environments(plan_path) if plan_path.is_file() else []
    if environment is None and known:
        raise click.UsageError(f"--env is required: {plan_path} has environments ({', '.join(known)})")
    if environment is not None and plan_path.is_file() and environment not in known:
        known_text = ", ".join(known) or "none"
        raise click.UsageError(f"no environment {environment!r} beside {plan_path} (known: {known_text})")
    return environment


def _run(
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
    create_namespaces: bool,
    timeout: float,
    wait: float | None,
) -> None:
    env = _environment(plan_path, environment)
    result = build_stage.build(plan_path, [env])
    env_name, artifacts = next(iter(result.environments.items()))
    plan = result.plans[env_name]
    applyset = applyset_for(plan.name, env_name, applyset_namespace or plan.integrations.prometheus.namespace)
    cluster = connect(kubeconfig, context, timeout)
    quiet = console().quiet
    for notice in getattr(cluster, "notices", ()):  # e.g. unverified TLS: once per run, not per request
        click.echo(notice, err=True)

    def err(line: str) -> None:
        if not quiet or line.startswith(("failed", "RECAP", "  ")):
            say(line)

    options = apply.Options(mode=mode, show_diff=show_diff, prune=prune, force_conflicts=force_conflicts,
                            create_namespaces=create_namespaces or plan.install.create_namespaces,
                            wait=None if check else wait)
    outcome = apply.run(cluster, apply.desired_objects(artifacts), applyset, options,
                        out=lambda text: click.echo(text, nl=False), err=err, components=_components(plan))
    if outcome.failed:
        raise ExternalFailure()
    exit_with(ExitCode.CHANGED if mode != "apply" and outcome.pending else ExitCode.OK)


def prometheus_query(endpoint: QueryEndpoint, timeout: float) -> Callable[[str], list[Any]]:
    """An instant query at the current time against ``endpoint``."""
    client = PrometheusClient(endpoint, timeout=timeout)
    return lambda expr: client.query(expr, datetime.now(UTC))


DOCTOR_EXIT = {doctor.OK: ExitCode.OK, doctor.WARN: ExitCode.CHANGED, doctor.FAIL: ExitCode.EXTERNAL}


@click.command("doctor")
@plan_option
@job_env_option
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
@click.option("--context", help="Kubeconfig context (default: the current context).")
@query_options
@click.option("--no-prometheus", is_flag=True, help="Skip the checks that query Prometheus.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per check, or a JSON list of findings on stdout.")
@timeout_option(30.0, "Seconds per request to the API server and Prometheus.")
@guarded
def doctor_command(
    plan_path: Path,
    environment: str | None,
    kubeconfig: str | None,
    context: str | None,
    prometheus_url: str | None,
    tenant: str | None,
    bearer_token_file: str | None,
    no_prometheus: bool,
    output_format: str,
    timeout: float,
) -> None:
    """Check on a live cluster what the build relies on: CRD versions, policy status, key Secrets, usage series, GPU prices.

    One ok/warn/fail line per check with the fix. Exit 0 all ok, 1 a warning, 4 a failure.
    """
    env = _environment(plan_path, environment)
    result = build_stage.build(plan_path, [env])
    env_name, artifacts = next(iter(result.environments.items()))
    plan = result.plans[env_name]
    cluster = connect(kubeconfig, context, timeout)
    query = None if no_prometheus else prometheus_query(
        query_endpoint(prometheus_url or plan.query_url, tenant or plan.query_tenant, bearer_token_file), timeout)
    findings = doctor.run(plan, apply.desired_objects(artifacts), cluster, query, (check_gpu_prices, GPU_PRICE_QUERY))
    if output_format == "json":
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2, sort_keys=True))
    else:
        for finding in findings:
            fix = f" (fix: {finding.fix})" if finding.fix and finding.status != doctor.OK else ""
            click.echo(f"{finding.status:<4} {finding.check}: {finding.message}{fix}")
    exit_with(DOCTOR_EXIT[doctor.worst(findings)])
