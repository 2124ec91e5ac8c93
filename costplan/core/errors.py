"""One error contract: every failure costplan explains is a ``CostplanError``.

Each subclass carries the exit code the README documents; the CLI maps them
in exactly one place (``costplan.cli.console``), so a command never picks a
number of its own. Anything that is not a ``CostplanError`` reaching the CLI
is a costplan bug: reported in one line, never as a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from costplan.core.diagnostics import Diagnostic, sort_diagnostics


class ExitCode(enum.IntEnum):
    """The exit codes of every command (the README's table is tested against this)."""

    OK = 0
    CHANGED = 1  # differences found: diff, apply --check, impact --exit-code
    USAGE = 2  # bad option or argument, unknown environment, a tool that is not available
    PLAN_INVALID = 3  # the plan (or an overlay) has errors
    EXTERNAL = 4  # an outside system failed or disagrees: cluster, Prometheus, webhook, cost engine
    OUTPUT_INVALID = 5  # generated output failed validation, or costplan itself failed; nothing written


class CostplanError(Exception):
    """A failure to explain in one line (plus findings), with its exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str = "", diagnostics: Iterable[Diagnostic] = ()) -> None:
        self.diagnostics = sort_diagnostics(diagnostics)
        self.message = message
        super().__init__(message)


class UsageProblem(CostplanError):
    """The command was asked for something it cannot do as asked."""

    exit_code = ExitCode.USAGE


class ToolMissing(UsageProblem):
    """An outside tool (promtool, docker for kubeconform) is not available here."""


class PlanInvalid(CostplanError):
    """The plan (or an overlay) has errors; carries all of them."""

    exit_code = ExitCode.PLAN_INVALID

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        found = sort_diagnostics(diagnostics)
        super().__init__(f"{len(found)} problem(s) in the plan", found)


class ExternalFailure(CostplanError):
    """An outside system could not be reached, refused, or disagrees with the plan."""

    exit_code = ExitCode.EXTERNAL


class OutputInvalid(CostplanError):
    """Generated output failed validation; nothing was written."""

    exit_code = ExitCode.OUTPUT_INVALID


class InternalError(CostplanError):
    """costplan produced something it never should (a bug in costplan, not in the plan)."""

    exit_code = ExitCode.OUTPUT_INVALID
