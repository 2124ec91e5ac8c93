"""Generator: grafana (not implemented yet)."""

from __future__ import annotations

from costplan.artifacts import Artifact
from costplan.model import Plan


def generate(plan: Plan) -> list[Artifact]:
    return []
