"""Property: every plan the schema and the checks accept builds, and its output passes promtool and the schemas.

Plans are drawn as variations of tests/plans/minimal.yaml: names, amounts,
thresholds, windows, multipliers and limits take values from the whole
space a user could type (plain names and arbitrary text, decimals of any
scale, numbers near the documented bounds). A draw the checks refuse is
fine; a draw they accept must go all the way: build without an error,
every object valid for the API server (the CRD schemas when the reference
data is present), every rule accepted by promtool.
"""

from __future__ import annotations

import copy
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costplan.core.errors import PlanInvalid
from costplan.generators.prometheus.groups import rule_groups
from costplan.output import build as build_stage
from costplan.output import promtool
from costplan.output.verify import ManifestValidator
from tests.conftest import CRD_SCHEMA_LOCATION, HAVE_REFERENCE, MINIMAL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)"),
]

BASE = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
DNS = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
NAMES = st.one_of(*([DNS] * 12), st.from_regex(r"[a-z][a-z0-9.-]{0,62}", fullmatch=True), TEXT)
AMOUNTS = st.one_of(
    st.decimals(min_value=0, max_value=Decimal("1e14"), places=2, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=Decimal("1000"), places=10, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**15),
)
WINDOWS = st.one_of(st.sampled_from(["10s", "1m", "1h30m", "24h", "500ms", "0s", "90m", "1h1m1s", "99999h"]),
                    st.from_regex(r"([0-9]{1,5}(h|m|s|ms)){1,3}", fullmatch=True))
DURATIONS = st.one_of(st.sampled_from(["30d", "7d", "1h", "2w", "0d", "1y", "10000d"]),
                      st.from_regex(r"([0-9]{1,6}(y|w|d|h|m|s|ms)){1,2}", fullmatch=True))


def as_yaml_number(value: Decimal | int) -> Any:
    return value if isinstance(value, int) else format(value, "f")


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    plan = copy.deepcopy(BASE)
    plan["metadata"]["name"] = draw(NAMES)
    team = plan["teams"][0]
    team["name"] = draw(NAMES)
    team["costCenter"] = draw(st.one_of(st.just("CC-1"), st.from_regex(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,20}", fullmatch=True), TEXT))
    team["users"][0]["id"] = draw(NAMES)
    budget = team["budgets"][0]
    budget["name"] = draw(NAMES)
    budget["amount"] = as_yaml_number(draw(AMOUNTS))
    budget["thresholds"] = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=4))))
    plan["budgets"][0]["window"] = draw(DURATIONS)
    plan["budgets"][0]["amount"] = as_yaml_number(draw(AMOUNTS))
    tiers = plan["tiers"]
    tiers[0]["limits"]["requests"][0]["limit"] = draw(st.integers(min_value=1, max_value=10**14))
    tiers[0]["limits"]["requests"][0]["window"] = draw(WINDOWS)
    tiers[1]["priceMultiplier"] = as_yaml_number(draw(st.decimals(
        min_value=0, max_value=10, places=draw(st.integers(0, 12)), allow_nan=False, allow_infinity=False)))
    plan["models"][0]["pricing"]["price"] = as_yaml_number(draw(AMOUNTS))
    plan["gpuInstances"][0]["hourlyRate"] = as_yaml_number(draw(AMOUNTS))
    return plan


def write(plan: dict[str, Any], directory: Path) -> Path:
    path = directory / "costplan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(plan=plans())
def test_every_accepted_plan_builds_and_its_output_is_valid(tmp_path_factory, plan):
    path = write(plan, tmp_path_factory.mktemp("plan"))
    try:
        result = build_stage.build(path, [None])
    except PlanInvalid:
        return  # refused with diagnostics: the contract holds
    locations = [CRD_SCHEMA_LOCATION] if HAVE_REFERENCE else []
    validator = ManifestValidator(schema_locations=locations, strict=HAVE_REFERENCE)
    for env, artifacts in result.environments.items():
        errors = [p.render() for p in validator.validate_all(artifacts) if p.is_error]
        assert errors == [], f"{env}: accepted plan, invalid output:\n" + "\n".join(errors)
        checked = promtool.check_rules(rule_groups(result.plans[env]))
        assert checked.ok, checked.output
