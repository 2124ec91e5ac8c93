"""Shared test fixtures: the bundled plan and the reference data beside the project.

The reference data (upstream CRD schemas in the kubeconform catalog layout,
the CRDs themselves, upstream Helm chart values) lives outside the
repository, in ``../shared`` beside the checkout or wherever
``COSTPLAN_REFERENCE_DATA`` points. Tests that compare output with it skip,
all with one reason, when it is absent; with ``COSTPLAN_REQUIRE_REFERENCE=1``
(CI) its absence fails the run instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from costplan.plan.load import load_plan

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "costplan.yaml"
SHARED = Path(os.environ.get("COSTPLAN_REFERENCE_DATA") or ROOT.parent / "shared")
CRD_SCHEMAS = SHARED / "crd-schemas"
CRD_SCHEMA_LOCATION = str(CRD_SCHEMAS) + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
HELM_VALUES = SHARED / "helm-values"
ENVIRONMENTS = ("dev", "fleet", "prod", "staging")
MINIMAL = ROOT / "tests" / "plans" / "minimal.yaml"
HAVE_REFERENCE = CRD_SCHEMAS.is_dir()
NO_REFERENCE = (
    f"needs the reference data (CRD schemas, Helm values) at {SHARED}; "
    "set COSTPLAN_REFERENCE_DATA to its location"
)
needs_reference = pytest.mark.skipif(not HAVE_REFERENCE, reason=NO_REFERENCE)


def schema_args() -> list[str]:
    """``build`` options that check custom resources against the reference schemas, when present."""
    return ["--schema-location", CRD_SCHEMA_LOCATION, "--strict-schemas"] if HAVE_REFERENCE else []


def patched_minimal(*replacements: tuple[str, str]) -> str:
    """tests/plans/minimal.yaml with each ``old`` (which must occur exactly once) replaced by ``new``."""
    text = MINIMAL.read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"patch target must be unique: {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not HAVE_REFERENCE:
        pytest.skip(NO_REFERENCE)
    return SHARED


@pytest.fixture(scope="session")
def crd_schema_location(shared_dir: Path) -> str:
    return CRD_SCHEMA_LOCATION


@pytest.fixture(scope="session")
def bundled_plan():
    """``bundled_plan(env)`` → the validated Plan of costplan.yaml (env None = base)."""
    cache = {}

    def get(environment: str | None = None):
        if environment not in cache:
            cache[environment] = load_plan(PLAN, environment)
        return cache[environment]

    return get


# Suites that evaluate rules in promtool or a live Prometheus: the slow part of
# the suite, left out of `make test-fast` (they run in `make test` and CI).
PROMETHEUS_SUITES = {
    "test_prometheus_alerts",
    "test_prometheus_calendar",
    "test_prometheus_money",
    "test_prometheus_money_semantics",
    "test_report_chain",
    "test_report_e2e",
    "test_report_golden",
    "test_report_victoriametrics",
    "test_vm_engine",
}


def pytest_configure(config):
    if os.environ.get("COSTPLAN_REQUIRE_REFERENCE") == "1" and not HAVE_REFERENCE:
        raise pytest.UsageError(f"COSTPLAN_REQUIRE_REFERENCE=1, but the reference data is missing: {NO_REFERENCE}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in PROMETHEUS_SUITES:
            item.add_marker(pytest.mark.prometheus)
