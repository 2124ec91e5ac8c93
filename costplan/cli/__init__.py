"""The command line: the only stage that prints or exits."""

from costplan.cli.app import main

__all__ = ["main"]
