"""The root command: options every command shares, and the command registry.

stdout carries data (manifests, JSON, the schema, reports); stderr carries
messages. The exit codes are ``costplan.core.errors.ExitCode`` (the README's
table is tested against it); ``costplan.cli.console`` maps errors to them.

Commands are imported when they run, not when costplan starts: ``build``
should not pay for the cluster client or the report's HTTP code.
"""

from __future__ import annotations

import importlib

import click

from costplan import __version__
from costplan.cli.console import Console

# name -> "module:attribute" of the click command
COMMANDS: dict[str, str] = {
    "validate": "costplan.cli.plan:validate",
    "build": "costplan.cli.plan:build",
    "schema": "costplan.cli.plan:schema",
    "envs": "costplan.cli.plan:envs",
    "report": "costplan.cli.chargeback:report_command",
    "check-gpu-prices": "costplan.cli.chargeback:check_gpu_prices_command",
    "diff": "costplan.cli.cluster:diff_command",
    "apply": "costplan.cli.cluster:apply_command",
    "doctor": "costplan.cli.cluster:doctor_command",
    "impact": "costplan.cli.impact:impact_command",
    "guard": "costplan.cli.guard:guard_command",
    "budget": "costplan.cli.guard:budget_group",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="costplan")
@click.option("-v", "--verbose", count=True, help="More messages on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compile an LLM chargeback plan (costplan.yaml) into cluster config."""
    ctx.obj = Console(-1 if quiet else verbose)
