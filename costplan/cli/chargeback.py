"""``report`` and ``check-gpu-prices``: what was spent, and whether the cost engine agrees."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from costplan.chargeback import report as chargeback
from costplan.chargeback.gpu_check import (
    GPU_PRICE_QUERY,
    GpuPricesDisagree,
    check_gpu_prices,
)
from costplan.chargeback.promapi import PrometheusClient
from costplan.cli.console import console, guarded
from costplan.cli.options import (
    job_env_option,
    known_environment,
    plan_option,
    query_endpoint,
    query_options,
    timeout_option,
)
from costplan.core import conventions as c
from costplan.core.errors import ExternalFailure
from costplan.plan.load import load_plan


@click.command("report")
@plan_option
@job_env_option
@query_options
@click.option("--month", help="YYYY-MM, 'last' (default: the last full month) or 'current' (month to date).")
@click.option("--start", help="Start of a custom period (ISO date or time; plan timezone unless an offset is given).")
@click.option("--end", help="End of a custom period (exclusive).")
@click.option("--format", "output_format", type=click.Choice(["csv", "json", "focus"]), default="csv", show_default=True)
@click.option(
    "--group-by", type=click.Choice(sorted(chargeback.GROUPS)), default="team", show_default=True,
    help="Rows of the CSV format.",
)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write every view and format here instead of one format to stdout.")
@click.option("--webhook-url", envvar="COSTPLAN_WEBHOOK_URL", help="Also POST the JSON report here (env: COSTPLAN_WEBHOOK_URL).")
@click.option("--allow-empty", is_flag=True, help="Write an empty report when no spend series exist for the period.")
@timeout_option(60.0, "Seconds per Prometheus query.")
@guarded
def report_command(
    plan_path: Path,
    environment: str | None,
    prometheus_url: str | None,
    tenant: str | None,
    bearer_token_file: str | None,
    month: str | None,
    start: str | None,
    end: str | None,
    output_format: str,
    group_by: str,
    output_dir: Path | None,
    webhook_url: str | None,
    allow_empty: bool,
    timeout: float,
) -> None:
    """Chargeback per team, user, model and cost center for a period, from Prometheus."""
    say = console().info
    known_environment(plan_path, environment)
    try:
        plan = load_plan(plan_path, environment)
    except OSError as exc:
        raise click.UsageError(f"cannot read the plan: {exc}") from exc
    url = prometheus_url or plan.query_url
    client = PrometheusClient(query_endpoint(url, tenant or plan.query_tenant, bearer_token_file), timeout=timeout)
    if webhook_url:
        chargeback.webhook_endpoint(webhook_url)
    period = chargeback.choose_period(plan, month, start, end, datetime.now(UTC))
    say(f"chargeback {plan.name}/{plan.environment} {chargeback.utc(period.start)} .. "
        f"{chargeback.utc(period.end)} from {client.base_url}")
    rows = chargeback.collect(client, plan, period, progress=say)
    if not rows and not allow_empty:
        raise ExternalFailure(
            f"Prometheus at {client.base_url} has no {c.METRIC_SPEND_HOURLY} samples between {chargeback.utc(period.start)} and "
            f"{chargeback.utc(period.end)}; are the costplan spend rules loaded there? (--allow-empty writes an empty report)"
        )
    sums = chargeback.PeriodSums(rows)  # summed once for every view written below
    lines = len(sums.view(sums.labels(group_by)))
    say(f"total {chargeback.money(sums.total, chargeback.money_quantum(plan))} {plan.currency}: "
        f"{lines} {group_by} line(s) from {len(rows)} daily row(s), {client.queries} quer{'y' if client.queries == 1 else 'ies'}")
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in chargeback.each_output_file(plan, period, rows, sums):
            (output_dir / name).write_text(text, encoding="utf-8")
            say(f"wrote {output_dir / name}")
    elif output_format == "json":
        click.echo(chargeback.chargeback_json(plan, period, sums), nl=False)
    elif output_format == "focus":
        click.echo(chargeback.focus_csv(plan, rows), nl=False)
    else:
        click.echo(chargeback.chargeback_csv(plan, period, sums, group_by), nl=False)
    if webhook_url:
        chargeback.post_webhook(webhook_url, chargeback.chargeback_json(plan, period, sums))
        say("posted the report to the webhook")


@click.command("check-gpu-prices")
@plan_option
@job_env_option
@query_options
@timeout_option(60.0, "Seconds for the Prometheus query.")
@guarded
def check_gpu_prices_command(plan_path: Path, environment: str | None, prometheus_url: str | None, tenant: str | None,
                             bearer_token_file: str | None, timeout: float) -> None:
    """Fail (exit 4) unless the cost engine prices every GPU node at the plan's rate."""
    known_environment(plan_path, environment)
    plan = load_plan(plan_path, environment)
    url = prometheus_url or plan.query_url
    client = PrometheusClient(query_endpoint(url, tenant or plan.query_tenant, bearer_token_file), timeout=timeout)
    samples = client.query(GPU_PRICE_QUERY, datetime.now(UTC))
    problems, notes = check_gpu_prices(plan, samples)
    for line in notes:
        console().info(line)
    for line in problems:
        console().error(f"error: {line}")
    if problems:
        raise GpuPricesDisagree(f"{len(problems)} GPU price problem(s): the cost engine disagrees with the plan")
    console().info("GPU prices match the plan")
