"""The root command: options every command shares, and the command registry.

stdout carries data (manifests, JSON, the schema, reports); stderr carries
messages. The exit codes are ``costplan.core.errors.ExitCode`` (the README's
table is tested against it); ``costplan.cli.console`` maps errors to them.
"""

from __future__ import annotations

import click

from costplan import __version__
from costplan.cli.chargeback import check_gpu_prices_command, report_command
from costplan.cli.cluster import apply_command, diff_command, doctor_command
from costplan.cli.console import Console
from costplan.cli.impact import impact_command
from costplan.cli.plan import build, envs, schema, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="costplan")
@click.option("-v", "--verbose", count=True, help="More messages on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compile an LLM chargeback plan (costplan.yaml) into cluster config."""
    ctx.obj = Console(-1 if quiet else verbose)


COMMANDS: tuple[tuple[str, click.Command], ...] = (
    ("validate", validate),
    ("build", build),
    ("schema", schema),
    ("envs", envs),
    ("report", report_command),
    ("check-gpu-prices", check_gpu_prices_command),
    ("diff", diff_command),
    ("apply", apply_command),
    ("doctor", doctor_command),
    ("impact", impact_command),
)
for _name, _command in COMMANDS:
    main.add_command(_command, _name)
