"""``costplan diff``, ``costplan apply`` and ``costplan doctor``: the plan, installed on a cluster.

Both commands build the plan exactly like ``costplan build`` (an invalid
plan exits 3 with its diagnostics), connect through ``cluster.py`` and hand
the manifests to ``apply.run``. Unified diffs go to stdout; one line per
object and the ``RECAP`` go to stderr. Exit codes follow ``kubectl diff``:
0 nothing would change (diff, apply --check) or applied (apply), 1 something
would change, 2 usage, 3 the plan is invalid, 4 a cluster request failed, a
CRD is missing, or an object failed.

A fleet plan (``clusters[]``) is installed part by part, each part into its
own cluster and as its own ApplySet (``costplan-<plan>-<env>-<part>``), so
applying one cluster never prunes another's objects nor the global part's.
``--cluster NAME`` (repeatable) takes ``clusters/<name>/`` to that cluster's
kubeconfig context, ``--global`` takes ``global/`` to the current context,
``--all-clusters`` does every cluster in plan order, then the global part.
``--context`` overrides the context of the one part selected (with
``--all-clusters``: of the global part). Without a selector a fleet plan is
refused: applying it to one context would put every cluster's gateway
policies into one cluster. Every context is resolved before the first
write; a part that fails does not stop the next ones (each is its own
cluster), and the run exits with the worst outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
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
from costplan.plan import fleet
from costplan.plan.load import list_environments


def connect(kubeconfig: str | None, context: str | None, timeout: float) -> Any:
    """A ``Cluster`` for the kubeconfig and context given (or the usual defaults)."""
    from costplan.install.cluster import KubeCluster

    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise UsageProblem(f"--kubeconfig {kubeconfig}: file not found")
    return KubeCluster(kubeconfig=kubeconfig, context=context, timeout=timeout)


def resolve_context(kubeconfig: str | None, context: str | None) -> None:
    """Fail (exit 4, like connecting) when ``context`` is not in the kubeconfig, without connecting."""
    from costplan.install.cluster import Unreachable
    from costplan.install.kubeconfig import KubeconfigError, connection

    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise UsageProblem(f"--kubeconfig {kubeconfig}: file not found")
    try:
        connection(kubeconfig, context)
    except KubeconfigError as exc:
        raise Unreachable(f"cannot configure the cluster connection: {exc}") from exc


def _common(function: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        plan_option,
        job_env_option,
        click.option("--kubeconfig", type=click.Path(dir_okay=False),
                     help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."),
        click.option("--context", help="Kubeconfig context (default: the current context). Fleet plans: the "
                                       "context of the one --cluster, or of the global part with --global or "
                                       "--all-clusters."),
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
        click.option("--cluster", "clusters", multiple=True, metavar="NAME",
                     help="Fleet plans: the part of cluster NAME (clusters/NAME/), into its kubeconfig context "
                          "(the cluster's `context`, else its name; --context overrides). Repeatable."),
        click.option("--all-clusters", is_flag=True,
                     help="Fleet plans: every cluster's part into its own context, in plan order, then the "
                          "global part into --context (default: the current context)."),
        click.option("--global", "global_part", is_flag=True,
                     help="Fleet plans: the global part (global/: global rules, dashboards, reports, Argo CD "
                          "wiring) into --context (default: the current context)."),
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
    A fleet plan needs --cluster NAME, --all-clusters or --global.
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
    A fleet plan needs --cluster NAME, --all-clusters or --global: each part goes to its own
    cluster and prunes only its own objects.
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


@dataclass(frozen=True)
class Target:
    """One part of the build and where it goes: its artifacts, ApplySet and kubeconfig context."""

    label: str  # "" outside fleets, else "cluster eu-west" / "global"
    part: str
    plan: Any
    context: str | None


def targets(plan: Any, env_name: str, clusters: tuple[str, ...], all_clusters: bool, global_part: bool,
            context: str | None) -> list[Target]:
    """The parts a run installs, in order, or a ``UsageError`` saying how to choose them."""
    selected = bool(clusters or all_clusters or global_part)
    if not plan.is_fleet:
        if selected:
            raise click.UsageError(f"--cluster, --all-clusters and --global are for fleet plans; environment "
                                   f"{env_name!r} has no clusters[] (it is one cluster: drop the option)")
        return [Target("", "", plan, context)]
    names = [c.name for c in plan.clusters]
    listed = ", ".join(names)
    if not selected:
        raise click.UsageError(
            f"environment {env_name!r} is a fleet (clusters: {listed}): choose --cluster NAME, --all-clusters "
            "or --global; each part goes to its own cluster, never all of them into one")
    if all_clusters and clusters:
        raise click.UsageError("--all-clusters already takes every cluster: drop --cluster")
    unknown = [n for n in clusters if n not in names]
    if unknown:
        raise click.UsageError(f"no cluster {unknown[0]!r} in environment {env_name!r} (clusters: {listed})")
    chosen = [c for c in plan.clusters if all_clusters or c.name in clusters]
    with_global = all_clusters or global_part
    if context is not None and not with_global and len(chosen) > 1:
        raise click.UsageError("--context names one cluster's context: choose one --cluster with it")
    # --context is the context of the one part chosen; next to the global part, the global part's.
    cluster_context = None if with_global else context
    found = [Target(f"cluster {c.name}", fleet.cluster_part(c), fleet.cluster_plan(plan, c),
                    cluster_context or c.kube_context) for c in chosen]
    if with_global:
        found.append(Target(fleet.GLOBAL_PART, fleet.GLOBAL_PART, fleet.global_plan(plan), context))
    return found


def _server(kubeconfig: str | None, context: str | None) -> str | None:
    """The API server a context points at, ``None`` when this kubeconfig cannot say."""
    from costplan.install.kubeconfig import connection

    try:
        return connection(kubeconfig, context).host
    except Exception:  # noqa: BLE001  (a context this machine does not have shares nothing)
        return None


def refuse_shared_objects(kubeconfig: str | None, plan: Any, chosen: list[Target], artifacts: list[Any]) -> None:
    """Refuse when a chosen part and another part go to one API server and define the same objects.

    Each part is its own ApplySet, but objects are keyed by kind, namespace
    and name: two parts defining one object on one server (the global part
    applied to a member cluster, its PrometheusRules in the cluster's rule
    namespace) would overwrite each other on every run. Namespaces are
    shared freely: both parts only label them.
    """
    where = {t.part: t for t in chosen}
    every = [where.get(fleet.cluster_part(c)) or Target(f"cluster {c.name}", fleet.cluster_part(c), None,
                                                       c.kube_context) for c in plan.clusters]
    # Not chosen, the global part is taken to be where it goes by default: the current context.
    every.append(where.get(fleet.GLOBAL_PART) or Target(fleet.GLOBAL_PART, fleet.GLOBAL_PART, None, None))
    servers = {t.part: _server(kubeconfig, t.context) for t in every}
    keys: dict[str, set[str]] = {}
    for artifact in artifacts:
        if artifact.is_manifest and artifact.kind != "Namespace":
            keys.setdefault(artifact.part, set()).add(f"{artifact.kind}/{artifact.namespace}/{artifact.name}")
    for target in chosen:
        for other in every:
            server = servers[target.part]
            if other.part == target.part or server is None or servers[other.part] != server:
                continue
            shared = sorted(keys.get(target.part, set()) & keys.get(other.part, set()))
            if shared:
                fix = ("give the global engine's rules a namespace of their own (metrics.namespace)"
                       if fleet.GLOBAL_PART in (target.part, other.part)
                       else "two clusters' contexts point at one API server: check clusters[].context and --context")
                raise click.UsageError(
                    f"{target.label} and {other.label} both go to {server} and both define {len(shared)} "
                    f"object(s) ({', '.join(shared[:3])}): each would overwrite the other; {fix}")


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
    clusters: tuple[str, ...] = (),
    all_clusters: bool = False,
    global_part: bool = False,
) -> None:
    env = _environment(plan_path, environment)
    result = build_stage.build(plan_path, [env])
    env_name, artifacts = next(iter(result.environments.items()))
    plan = result.plans[env_name]
    chosen = targets(plan, env_name, tuple(clusters), all_clusters, global_part, context)
    quiet = console().quiet

    def err(line: str) -> None:
        if not quiet or line.startswith(("failed", "RECAP", "  ", "==")):
            say(line)

    if len(chosen) > 1:
        # Every context is resolved before anything is written: a misspelt
        # context of the last cluster must not leave the first ones applied.
        for target in chosen:
            resolve_context(kubeconfig, target.context)
    if plan.is_fleet:
        refuse_shared_objects(kubeconfig, plan, chosen, artifacts)
    failed = pending = False
    for target in chosen:
        part_plan = target.plan
        applyset = applyset_for(plan.name, env_name, applyset_namespace or part_plan.integrations.prometheus.namespace,
                                target.part)
        if target.label:
            err(f"== {target.label}: {target.part}/ into context {target.context or '(current)'}, "
                f"ApplySet {applyset}")
        cluster = connect(kubeconfig, target.context, timeout)  # each part's run has the whole --timeout
        for notice in getattr(cluster, "notices", ()):  # e.g. unverified TLS: once per run, not per request
            click.echo(notice, err=True)
        siblings = frozenset(
            applyset_for(plan.name, env_name, applyset.namespace, part).id
            for part in [*(fleet.cluster_part(c) for c in plan.clusters), fleet.GLOBAL_PART]
            if part != target.part
        ) if plan.is_fleet else frozenset()
        options = apply.Options(mode=mode, show_diff=show_diff, prune=prune, force_conflicts=force_conflicts,
                                create_namespaces=create_namespaces or plan.install.create_namespaces,
                                wait=None if check else wait, siblings=siblings)
        members = [a for a in artifacts if a.part == target.part]
        outcome = apply.run(cluster, apply.desired_objects(members), applyset, options,
                            out=lambda text: click.echo(text, nl=False), err=err, components=_components(part_plan))
        failed = failed or outcome.failed
        pending = pending or outcome.pending
    if failed:
        raise ExternalFailure()
    exit_with(ExitCode.CHANGED if mode != "apply" and pending else ExitCode.OK)


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
@click.option("--cluster", "cluster_name", metavar="NAME",
              help="Fleet plans: check cluster NAME's part in its kubeconfig context (--context overrides) "
                   "and query its own Prometheus (--prometheus-url overrides).")
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
    cluster_name: str | None,
    no_prometheus: bool,
    output_format: str,
    timeout: float,
) -> None:
    """Check on a live cluster what the build relies on: CRD versions, policy status, key Secrets, usage series, GPU prices.

    One ok/warn/fail line per check with the fix. Exit 0 all ok, 1 a warning, 4 a failure.
    A fleet plan is checked one cluster at a time (--cluster NAME).
    """
    env = _environment(plan_path, environment)
    result = build_stage.build(plan_path, [env])
    env_name, artifacts = next(iter(result.environments.items()))
    plan = result.plans[env_name]
    url, default_tenant = plan.query_url, plan.query_tenant
    if plan.is_fleet and cluster_name is None:
        raise click.UsageError(f"environment {env_name!r} is a fleet (clusters: "
                               f"{', '.join(c.name for c in plan.clusters)}): choose --cluster NAME")
    if cluster_name is not None and not plan.is_fleet:
        raise click.UsageError(f"--cluster is for fleet plans; environment {env_name!r} has no clusters[]")
    if plan.is_fleet:
        # A fleet is checked one cluster at a time: its objects, its key
        # Secrets, and the raw source series only its own Prometheus holds.
        (target,) = targets(plan, env_name, (str(cluster_name),), False, False, context)
        artifacts = [a for a in artifacts if a.part == target.part]
        plan, context = target.plan, target.context
        url, default_tenant = plan.integrations.prometheus.url, None
    cluster = connect(kubeconfig, context, timeout)
    query = None if no_prometheus else prometheus_query(
        query_endpoint(prometheus_url or url, tenant or default_tenant, bearer_token_file), timeout)
    findings = doctor.run(plan, apply.desired_objects(artifacts), cluster, query, (check_gpu_prices, GPU_PRICE_QUERY))
    if output_format == "json":
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2, sort_keys=True))
    else:
        for finding in findings:
            fix = f" (fix: {finding.fix})" if finding.fix and finding.status != doctor.OK else ""
            click.echo(f"{finding.status:<4} {finding.check}: {finding.message}{fix}")
    exit_with(DOCTOR_EXIT[doctor.worst(findings)])
