"""docs/upstream.md names the upstream definition of everything costplan emits.

Every kind the generators can write (found in their source and
in real builds of the bundled plan and its variants) and every usage
source type must have a row with a version and an upstream file.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from costplan.generators import generate_all
from tests.conftest import ROOT

CONTRACT = (ROOT / "docs" / "upstream.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = CONTRACT.index(f"## {title}\n")
    end = CONTRACT.find("\n## ", start + 1)
    return CONTRACT[start:] if end < 0 else CONTRACT[start:end]


def _rows(title: str) -> dict[str, list[str]]:
    rows = {}
    for line in _section(title).splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def kinds_in_source() -> set[str]:
    found = set()
    for path in (ROOT / "costplan" / "generators").rglob("*.py"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            found |= set(re.findall(r'"kind": "([A-Z][A-Za-z]+)"', text))
            found |= set(re.findall(r"^kind: ([A-Z][A-Za-z]+)$", text, re.M))
    return found


@pytest.fixture
def built_kinds(bundled_plan) -> set[str]:
    kinds = set()
    for env in (None, "dev", "prod", "staging"):
        plan = bundled_plan(env)
        engine = dataclasses.replace(plan.integrations.cost_engine, type="kubecost", namespace="kubecost")
        kubecost = dataclasses.replace(plan, integrations=dataclasses.replace(plan.integrations, cost_engine=engine))
        for variant in (plan, kubecost):
            for artifact in generate_all(variant):
                kinds.add(artifact.kind if artifact.is_manifest else artifact.path.rsplit("/", 1)[1])
    return kinds


def test_every_emitted_kind_has_a_row_with_a_source(built_kinds):
    rows = _rows("Emitted kinds")
    files = {"values-opencost.yaml": "opencost values (file)", "values-kubecost.yaml": "kubecost values (file)"}
    for kind in kinds_in_source() | built_kinds:
        row = rows.get(files.get(kind, kind))
        assert row is not None, f"docs/upstream.md has no row for {kind}"
        assert len(row) == 4 and all(row), row
        assert "`" in row[3], f"{kind}: no upstream file"


def test_every_usage_source_type_has_a_row():
    schema = json.loads((ROOT / "schemas" / "costplan.schema.json").read_text(encoding="utf-8"))
    types = set(schema["$defs"]["usageSource"]["properties"]["type"]["enum"])
    rows = _rows("Usage sources")
    assert types <= set(rows), types - set(rows)
    for source_type in types:
        row = rows[source_type]
        assert len(row) == 5 and all(row), row
        assert "`" in row[4], f"{source_type}: no upstream file"


def test_every_repository_named_has_a_version():
    versions = _rows("Versions targeted")
    assert all(len(row) == 3 and row[1] for row in versions.values())
    named = {row[2].split(",")[0].strip() for row in versions.values()}
    assert "Kuadrant/kuadrant-operator" in named and "opencost/opencost" in named
