"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from costplan.plan.load import list_environments

if TYPE_CHECKING:  # the HTTP client is imported by the commands that query, not by build
    from costplan.chargeback.promapi import QueryEndpoint

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PLAN = "costplan.yaml"

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
# Commands that run in jobs (report, diff, apply) also take the environment from COSTPLAN_ENV.
job_env_option = click.option(
    "-e", "--env", "environment", envvar="COSTPLAN_ENV", help="Merge environments/ENV.yaml onto the plan."
)
all_envs_option = click.option("--all-envs", is_flag=True, help="Every environment in environments/.")
prometheus_url_option = click.option(
    "--prometheus-url",
    help="Prometheus API to query: a Prometheus, Thanos Query, Mimir (.../prometheus) or VictoriaMetrics "
    "(single-node root, or cluster .../select/ACCOUNT/prometheus); default: integrations.prometheus.url of the plan.",
)
tenant_option = click.option(
    "--tenant", envvar="COSTPLAN_TENANT",
    help="Tenant ID sent as X-Scope-OrgID (Mimir, Cortex, multi-tenant Thanos) (env: COSTPLAN_TENANT).",
)
bearer_token_file_option = click.option(
    "--bearer-token-file", envvar="COSTPLAN_BEARER_TOKEN_FILE", type=click.Path(dir_okay=False),
    help="File holding a bearer token for the query API, read at every request (env: COSTPLAN_BEARER_TOKEN_FILE).",
)


def query_options(command: F) -> F:
    """``--prometheus-url``, ``--tenant`` and ``--bearer-token-file``: where and how Prometheus-API queries go."""
    return prometheus_url_option(tenant_option(bearer_token_file_option(command)))


def query_endpoint(url: str, tenant: str | None, bearer_token_file: str | None) -> QueryEndpoint:
    """The query endpoint of the options (an empty option is no option: unset environment variables in jobs)."""
    from costplan.chargeback.promapi import QueryEndpoint

    return QueryEndpoint(url, tenant or None, bearer_token_file or None)


def timeout_option(default: float, help: str) -> Callable[[F], F]:
    """``--timeout`` with a command's own default and meaning."""
    return click.option("--timeout", type=float, default=default, show_default=True, help=help)


def known_environment(plan_path: Path, environment: str | None) -> None:
    """An environment named on the command line must exist beside the plan (exit 2, not 3)."""
    if environment is not None and plan_path.is_file() and environment not in list_environments(plan_path):
        known = ", ".join(list_environments(plan_path)) or "none"
        raise click.UsageError(f"no environment {environment!r} beside {plan_path} (known: {known})")


def environments(plan_path: Path, environment: str | None, all_envs: bool) -> list[str | None]:
    """The environments a command should handle: one, the base plan, or all of them."""
    if environment and all_envs:
        raise click.UsageError("--env and --all-envs exclude each other")
    if all_envs:
        names = list_environments(plan_path)
        if not names:
            raise click.UsageError(f"no environments/*.yaml beside {plan_path}")
        return list(names)
    known_environment(plan_path, environment)
    return [environment]
