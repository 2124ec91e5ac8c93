"""JSON Schema validation of the merged plan (placeholder until the schema lands)."""

from __future__ import annotations

from typing import Any

from costplan.diagnostics import Diagnostic


def validate(document: Any) -> list[Diagnostic]:
    return []
