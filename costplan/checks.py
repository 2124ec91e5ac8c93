"""Semantic checks (placeholder)."""

from __future__ import annotations

from typing import Any

from costplan.diagnostics import Diagnostic


def run_all(document: Any) -> list[Diagnostic]:
    return []
