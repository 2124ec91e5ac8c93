"""``report`` and ``check-gpu-prices``: what was spent, and whether the cost engine agrees."""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

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
from costplan.output.serialise import OutputUnwritable
from costplan.plan.load import load_plan
from costplan.plan.model import Plan


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
    if output_dir is not None:
        sums = _report_files(client, plan, period, group_by, output_dir, allow_empty)
    elif output_format == "focus":
        sums = _focus_to_stdout(client, plan, period, group_by, allow_empty)
    else:
        sums = _gathered(client, plan, period, group_by, allow_empty)
        if output_format == "json":
            click.echo(chargeback.chargeback_json(plan, period, sums), nl=False)
        else:
            click.echo(chargeback.chargeback_csv(plan, period, sums, group_by), nl=False)
    if webhook_url:
        chargeback.post_webhook(webhook_url, chargeback.chargeback_json(plan, period, sums))
        say("posted the report to the webhook")


def _focus_to_stdout(
    client: PrometheusClient, plan: Plan, period: chargeback.Period, group_by: str, allow_empty: bool
) -> chargeback.PeriodSums:
    """The FOCUS export on stdout once every query has answered (spooled to a temporary file until then)."""
    try:
        spool = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputUnwritable(f"cannot hold the FOCUS export in a temporary file: {exc.strerror}") from None
    with spool:
        try:
            sums = _gathered(client, plan, period, group_by, allow_empty, spool)
        except OSError as exc:
            raise OutputUnwritable(f"cannot hold the FOCUS export in a temporary file: {exc.strerror}") from None
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            click.echo(chunk, nl=False)
    return sums


def _gathered(
    client: PrometheusClient,
    plan: Plan,
    period: chargeback.Period,
    group_by: str,
    allow_empty: bool,
    focus: IO[str] | None = None,
) -> chargeback.PeriodSums:
    """The period's sums (and its FOCUS lines into ``focus``); no spend at all is an error unless allowed."""
    say = console().info
    sums = chargeback.gather(client, plan, period, focus, progress=say)
    if not sums.row_count and not allow_empty:
        raise ExternalFailure(
            f"Prometheus at {client.base_url} has no {c.METRIC_SPEND_HOURLY} samples between {chargeback.utc(period.start)} and "
            f"{chargeback.utc(period.end)}; are the costplan spend rules loaded there? (--allow-empty writes an empty report)"
        )
    say(f"total {chargeback.money(sums.total, chargeback.money_quantum(plan))} {plan.currency}: "
        f"{len(sums.view(sums.labels(group_by)))} {group_by} line(s) from {sums.row_count} daily row(s), "
        f"{client.queries} quer{'y' if client.queries == 1 else 'ies'}")
    return sums


def _report_files(
    client: PrometheusClient, plan: Plan, period: chargeback.Period, group_by: str, output_dir: Path, allow_empty: bool
) -> chargeback.PeriodSums:
    """Every view and the FOCUS export into ``output_dir``, each file put in place whole, none before all answered.

    The FOCUS export is written as the windows arrive into a hidden partial
    file beside its final name and renamed when every query has answered;
    the views are written the same way. A failure leaves the directory as it
    was: the partial files are removed, and a directory the report created
    is removed again while it is empty.
    """
    try:
        return _written_report_files(client, plan, period, group_by, output_dir, allow_empty)
    except OSError as exc:  # a full volume, a read-only mount, permissions: the report's, not costplan's, failure
        raise OutputUnwritable(
            f"cannot write the report to {output_dir}: {exc.strerror or type(exc).__name__}"
        ) from None


def _written_report_files(
    client: PrometheusClient, plan: Plan, period: chargeback.Period, group_by: str, output_dir: Path, allow_empty: bool
) -> chargeback.PeriodSums:
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    partial: list[Path] = []
    umask = os.umask(0o022)
    os.umask(umask)

    def staged(name: str) -> tuple[Path, IO[str]]:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, before it is renamed
            "w", dir=output_dir, prefix=f".{name}.", suffix=".partial", delete=False, encoding="utf-8", newline=""
        )
        partial.append(Path(handle.name))
        os.chmod(handle.fileno(), 0o666 & ~umask)  # as an ordinary write would leave it, not the 0600 of a temporary file
        return Path(handle.name), handle

    try:
        focus_path, focus = staged(chargeback.focus_file_name(plan, period))
        with focus:
            sums = _gathered(client, plan, period, group_by, allow_empty, focus)
        ready = []
        for name, text in chargeback.view_files(plan, period, sums):
            path, handle = staged(name)
            with handle:
                handle.write(text)
            ready.append((name, path))
        ready.append((chargeback.focus_file_name(plan, period), focus_path))
        for name, path in ready:
            os.replace(path, output_dir / name)
            partial.remove(path)
            console().info(f"wrote {output_dir / name}")
    finally:
        for path in partial:
            path.unlink(missing_ok=True)
        if created and partial:
            with contextlib.suppress(OSError):
                output_dir.rmdir()  # only while empty
    return sums


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
