"""Messages, findings and exit codes: the CLI's one place for each.

Every command runs inside ``guarded``: a ``CostplanError`` becomes its
message (and findings) on stderr and its own exit code, anything else a
one-line "costplan failed" with exit 5 instead of a traceback. Findings are
rendered by one text and one JSON renderer (``--format json`` puts them on
stdout, as data).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from costplan.core.diagnostics import Diagnostic, render_json, render_text
from costplan.core.errors import CostplanError, ExitCode, PlanInvalid
from costplan.core.redact import safe

F = TypeVar("F", bound=Callable[..., Any])


class Console:
    """Messages to stderr, at the verbosity chosen once at the root (-q: -1, -v: 1, -vv: 2)."""

    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            say(message)

    def detail(self, message: str) -> None:
        if self.verbosity > 0:
            say(message)

    def error(self, message: str) -> None:
        say(message)


def say(message: str) -> None:
    """One message on stderr, credentials redacted and control characters escaped, line by line."""
    click.echo("\n".join(safe(line) for line in message.split("\n")), err=True)


def console() -> Console:
    """The console of the running command (a default one outside the root group)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Console) if ctx is not None else None
    return found or Console()


def exit_with(code: ExitCode | int) -> NoReturn:
    sys.exit(int(code))


def report_findings(diagnostics: Sequence[Diagnostic], output_format: str = "text", what: str = "the plan") -> None:
    """Findings as text on stderr with a count, or as JSON on stdout."""
    if output_format == "json":
        click.echo(render_json(diagnostics))
        return
    if diagnostics:
        say(render_text(diagnostics))
    errors = sum(1 for d in diagnostics if d.is_error)
    console().info(f"{errors} error(s), {len(diagnostics) - errors} warning(s) in {what}")


def fail(error: CostplanError, output_format: str = "text") -> NoReturn:
    """Explain ``error`` and exit with its code."""
    if isinstance(error, PlanInvalid):
        report_findings(error.diagnostics, output_format)
    else:
        if error.diagnostics:
            say(render_text(error.diagnostics))
        if error.message:
            say(f"error: {error.message}")
    exit_with(error.exit_code)


def guarded(function: F) -> F:
    """Run a command body under the error contract (see the module docstring)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CostplanError as error:
            fail(error, str(kwargs.get("output_format") or "text"))
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:  # a costplan bug: one line, never a traceback
            click.echo(
                f"error: costplan failed ({type(error).__name__}); this is a bug in costplan, "
                "please report it with the command that triggered it",
                err=True,
            )
            exit_with(ExitCode.OUTPUT_INVALID)

    return wrapper  # type: ignore[return-value]
