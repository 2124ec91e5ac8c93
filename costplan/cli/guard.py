"""``guard`` and ``budget override``: budget actions enforced on the key Secrets.

``costplan guard`` runs the reconcile loop (or one pass with ``--once``, for
a CronJob) from the plan or from the guard document the cluster's ConfigMap
holds. Transitions are logged as one JSON object per line on stderr; with
``--once`` the pass's summary is one JSON object on stdout.
``costplan budget override TEAM --until TIME`` writes the override
annotation on the team's key Secrets: the guard leaves them normal until then.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import click

from costplan.cli.console import console, guarded
from costplan.cli.options import job_env_option, known_environment, plan_option, query_endpoint, query_options
from costplan.core import conventions as c
from costplan.core.errors import ExternalFailure, UsageProblem
from costplan.guard import decide
from costplan.guard.clients import KubeSecrets, Prometheus
from costplan.guard.controller import Controller, Reconciler
from costplan.plan.enforcement import GuardConfig, from_document, guard_config
from costplan.plan.load import load_plan

kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(dir_okay=False),
    help="Kubeconfig file (default: in-cluster, then $KUBECONFIG or ~/.kube/config).",
)
context_option = click.option("--context", help="Kubeconfig context (default: the current context).")


def _config(plan_path: Path, environment: str | None, config_path: Path | None) -> GuardConfig:
    if config_path is not None:
        try:
            return from_document(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise UsageProblem(f"{config_path}: not a guard document ({exc})") from exc
    known_environment(plan_path, environment)
    return guard_config(load_plan(plan_path, environment))


def _connect(namespace: str, kubeconfig: str | None, context: str | None) -> KubeSecrets:
    try:
        return KubeSecrets(namespace, kubeconfig=kubeconfig, context=context)
    except ConnectionError as exc:
        raise ExternalFailure(str(exc)) from exc


def _log(record: dict[str, Any]) -> None:
    click.echo(json.dumps(record, sort_keys=True), err=True)


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise UsageProblem(f"--listen {value!r}: expected HOST:PORT")
    return host or "0.0.0.0", int(port)


@click.command("guard")
@plan_option
@job_env_option
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The guard document (guard.json of the costplan-guard ConfigMap) instead of the plan.")
@query_options
@kubeconfig_option
@context_option
@click.option("--period", type=float, help="Seconds between reconciles (default: guard.period of the plan).")
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="HOST:PORT of /webhook, /healthz, /readyz and /metrics.")
@click.option("--once", is_flag=True, help="One reconcile, its summary as JSON on stdout, then exit.")
@click.option("--dry-run", is_flag=True, help="Decide and log transitions, write nothing.")
@guarded
def guard_command(plan_path: Path, environment: str | None, config_path: Path | None, prometheus_url: str | None,
                  tenant: str | None, bearer_token_file: str | None, kubeconfig: str | None, context: str | None,
                  period: float | None, listen: str, once: bool, dry_run: bool) -> None:
    """Keep every key Secret's budget state where the plan's actions put it."""
    config = _config(plan_path, environment, config_path)
    endpoint = query_endpoint(prometheus_url or config.prometheus_url, tenant or config.tenant,
                              bearer_token_file or config.bearer_token_file)
    reconciler = Reconciler(config, Prometheus(endpoint.url, headers=endpoint.headers, timezone=config.timezone),
                            _connect(config.secret_namespace, kubeconfig, context), log=_log, dry_run=dry_run)
    if once:
        outcome = reconciler.reconcile()
        click.echo(json.dumps({
            "apiCalls": outcome.api_calls, "held": outcome.held, "keys": outcome.keys, "patched": outcome.patched,
            "prometheusUp": outcome.prometheus_up, "skippedForeign": outcome.skipped_foreign,
            "skippedMissing": outcome.skipped_missing, "states": outcome.states, "transitions": outcome.transitions,
        }, sort_keys=True))
        return
    controller = Controller(reconciler, float(period or config.period_seconds), _listen(listen))
    controller.serve()
    host, port = controller.address
    console().info(f"guard for plan {config.plan}: {len(config.keys())} keys, every {controller.period:g}s, "
                   f"listening on {host}:{port}{' (dry run)' if dry_run else ''}")

    def stop(*_: Any) -> None:  # SIGTERM from the kubelet: finish the pass, then exit
        controller.stop.set()
        controller.wake.set()

    signal.signal(signal.SIGTERM, stop)
    try:
        controller.run()
    except KeyboardInterrupt:
        pass
    finally:
        controller.shutdown()


@click.group("budget")
def budget_group() -> None:
    """Manual control over budget actions."""


@budget_group.command("override")
@click.argument("team")
@click.option("--until", "until_text",
              help="RFC 3339 time with offset until which the team's keys stay released, e.g. 2025-07-01T00:00:00+02:00.")
@click.option("--clear", is_flag=True, help="Remove the override instead (the guard re-applies the actions).")
@plan_option
@job_env_option
@kubeconfig_option
@context_option
@guarded
def override_command(team: str, until_text: str | None, clear: bool, plan_path: Path, environment: str | None,
                     kubeconfig: str | None, context: str | None) -> None:
    """Release TEAM's keys until a time, whatever their spend (an annotation on each key Secret)."""
    until = None if until_text is None else decide.parse_time(until_text)
    if until is None and not clear:
        raise click.BadParameter("expected an RFC 3339 time with an offset (Z or +hh:mm)", param_hint="--until")
    config = _config(plan_path, environment, None)
    found = next((t for t in config.teams if t.name == team), None)
    if found is None:
        known = ", ".join(t.name for t in config.teams) or "none"
        raise UsageProblem(f"team {team!r} has no budget that throttles or blocks (teams that do: {known})")
    kube = _connect(config.secret_namespace, kubeconfig, context)
    value = None if clear or until is None else until.isoformat()
    changed = 0
    for key in found.keys:
        secret = kube.get(key)
        if secret is None or not decide.owned(secret, config):
            continue
        kube.patch(key, {"metadata": {"annotations": {c.ANNOTATION_BUDGET_OVERRIDE: value}}},
                   field_manager=c.OVERRIDE_FIELD_MANAGER)
        changed += 1
    what = "cleared the override of" if value is None else f"released until {value}"
    console().info(f"{what} {changed} key(s) of team {team}")
    if changed == 0:
        raise ExternalFailure(f"no key Secret of team {team} found in namespace {config.secret_namespace}")
