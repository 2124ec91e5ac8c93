"""Kuadrant enforcement: upstream schemas, CRD CEL rules, and the demo's policies."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import cel
import jsonschema
import pytest
import yaml

from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators import kuadrant
from costplan.generators.kuadrant import auth as kuadrant_auth
from costplan.generators.kuadrant import limits as kuadrant_limits
from costplan.generators.kuadrant import monitors
from costplan.generators.kuadrant import telemetry as kuadrant_telemetry
from costplan.plan.model import ApiKeyAuth, Quotas, Rate, TargetRef
from tests.conftest import CRD_SCHEMAS, ENVIRONMENTS, HAVE_REFERENCE, NO_REFERENCE, SHARED

ALL_ENVS = (None,) + ENVIRONMENTS
CRDS = SHARED / "crds"


def objects(plan) -> list[dict[str, Any]]:
    return [a.data for a in kuadrant.generate(plan)]


def of_kind(plan, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects(plan) if o["kind"] == kind]


def one(plan, kind: str) -> dict[str, Any]:
    found = of_kind(plan, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def replace_gateway(plan, **changes):
    gateway = dataclasses.replace(plan.integrations.gateway, **changes)
    return dataclasses.replace(plan, integrations=dataclasses.replace(plan.integrations, gateway=gateway))


# --------------------------------------------------------------------------
# Upstream JSON schemas: every object, every environment; no schema = failure
# --------------------------------------------------------------------------


@cache
def schema_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    if not HAVE_REFERENCE:
        pytest.skip(NO_REFERENCE)
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
    if not path.is_file():
        pytest.fail(f"no upstream schema for {api_version} {kind} (looked for {path})")
    schema = json.loads(path.read_text())
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_every_object_validates_against_its_upstream_schema(bundled_plan, env):
    plan = bundled_plan(env)
    generated = objects(plan)
    assert generated
    for obj in generated:
        # Round-trip through the real serialiser: what is written is what is checked.
        written = yaml.safe_load(dump_yaml(obj))
        errors = sorted(schema_validator(obj["apiVersion"], obj["kind"]).iter_errors(written), key=str)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(e.message for e in errors)


def test_schema_check_rejects_a_day_window(bundled_plan):
    """The TRLP window pattern has no ``d`` unit; the check must see that."""
    policy = one(bundled_plan(None), "TokenRateLimitPolicy")
    limits = policy["spec"]["limits"]
    first = next(iter(limits.values()))
    broken = json.loads(json.dumps(policy))
    next(iter(broken["spec"]["limits"].values()))["rates"] = [{"limit": first["rates"][0]["limit"], "window": "1d"}]
    assert list(schema_validator("kuadrant.io/v1alpha1", "TokenRateLimitPolicy").iter_errors(broken))


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_windows_match_the_crd_pattern(bundled_plan, env):
    pattern = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
    for obj in objects(bundled_plan(env)):
        for window in re.findall(r"window: (\S+)", dump_yaml(obj)):
            assert pattern.match(window), window


# --------------------------------------------------------------------------
# The CRDs' x-kubernetes-validations, which offline schema validation skips
# --------------------------------------------------------------------------


@cache
def crd_version_schema(api_version: str, kind: str) -> dict[str, Any]:
    if not HAVE_REFERENCE:
        pytest.skip(NO_REFERENCE)
    group, _, version = api_version.rpartition("/")
    for path in sorted(CRDS.glob(f"{group}_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] != kind:
            continue
        for v in crd["spec"]["versions"]:
            if v["name"] == version and v.get("served"):
                return v["schema"]["openAPIV3Schema"]
    pytest.fail(f"no raw CRD for {api_version} {kind} in {CRDS}")


def cel_rules(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, str, str, Any]]:
    """(path, rule, message, self) for every CEL rule that applies to ``value``."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule.get("message", ""), value
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                yield from cel_rules(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from cel_rules(schema["additionalProperties"], child, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, child in enumerate(value):
            yield from cel_rules(schema["items"], child, f"{path}[{i}]")


def cel_violations(obj: dict[str, Any]) -> list[str]:
    schema = crd_version_schema(obj["apiVersion"], obj["kind"])
    return [
        f"{path}: {message}"
        for path, rule, message, node in cel_rules(schema, json.loads(json.dumps(obj)))
        if cel.evaluate(rule, {"self": node}) is not True
    ]


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_every_object_passes_the_crd_cel_validations(bundled_plan, env):
    checked = 0
    for obj in objects(bundled_plan(env)):
        if obj["apiVersion"].split("/")[0].endswith("kuadrant.io"):
            assert cel_violations(obj) == [], obj["kind"]
            checked += 1
    assert checked >= 4


def test_cel_validation_check_sees_what_the_api_server_would_reject(bundled_plan):
    """The evaluator is real: broken policies produce the CRD's own messages."""
    policy = one(bundled_plan(None), "TokenRateLimitPolicy")
    both = json.loads(json.dumps(policy))
    both["spec"]["defaults"] = {"limits": policy["spec"]["limits"]}
    assert any("mutually exclusive" in v for v in cel_violations(both))

    empty = json.loads(json.dumps(policy))
    empty["spec"]["limits"] = {}
    assert any("At least one spec.limits" in v for v in cel_violations(empty))

    wrong_kind = json.loads(json.dumps(policy))
    wrong_kind["spec"]["targetRef"]["kind"] = "GRPCRoute"  # RLP allows it, TRLP does not
    assert any("targetRef.kind" in v for v in cel_violations(wrong_kind))

    telemetry = one(bundled_plan(None), "TelemetryPolicy")
    on_route = json.loads(json.dumps(telemetry))
    on_route["spec"]["targetRef"]["kind"] = "HTTPRoute"
    assert any("targetRef.kind" in v for v in cel_violations(on_route))


# --------------------------------------------------------------------------
# The bundled plan compiles into the chargeback demo's policies
# --------------------------------------------------------------------------


def test_request_limits_per_tier_counted_per_user(bundled_plan):
    plan = bundled_plan(None)
    policy = one(plan, "RateLimitPolicy")
    spec = policy["spec"]
    # One policy of costplan's own: plain limits, nothing merges into it.
    assert "defaults" not in spec and "overrides" not in spec
    limits = spec["limits"]
    assert set(limits) == {"free-requests", "free-quota", "premium-requests", "enterprise-requests"}
    assert limits["free-requests"]["rates"] == [{"limit": 2, "window": "10s"}]
    assert limits["premium-requests"]["rates"] == [{"limit": 10, "window": "10s"}]
    for name, limit in limits.items():
        if name.endswith("-requests"):
            assert limit["counters"] == [{"expression": "auth.identity.userid"}]
    assert policy["metadata"]["namespace"] == "llm"
    assert spec["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "vllm-gateway"}


def test_unlimited_tier_gets_a_metering_limit_that_never_refuses(bundled_plan):
    """Limitador only counts requests it is asked about: every tier needs one request limit."""
    limits = one(bundled_plan(None), "RateLimitPolicy")["spec"]["limits"]
    assert limits["enterprise-requests"]["rates"] == [{"limit": 2147483647, "window": "1s"}]
    assert limits["enterprise-requests"]["when"] == [{"predicate": 'auth.identity.tier == "enterprise"'}]


def test_dev_overlay_changes_the_free_limit(bundled_plan):
    limits = one(bundled_plan("dev"), "RateLimitPolicy")["spec"]["limits"]
    assert limits["free-requests"]["rates"] == [{"limit": 20, "window": "10s"}]


def test_quotas_are_limits_of_costplans_own_policy(bundled_plan):
    """No PlanPolicy: its RateLimitPolicy would merge with ours by creation order."""
    plan = bundled_plan(None)
    premium = dataclasses.replace(plan.tier("premium"), quotas=Quotas(daily=5000, weekly=20000, monthly=60000))
    plan = dataclasses.replace(plan, tiers=tuple(premium if t.name == "premium" else t for t in plan.tiers))
    assert of_kind(plan, "PlanPolicy") == []
    assert len(of_kind(plan, "RateLimitPolicy")) == 1
    limits = one(plan, "RateLimitPolicy")["spec"]["limits"]
    assert limits["free-quota"] == {
        "rates": [{"limit": 500, "window": "24h"}],
        "when": [{"predicate": 'auth.identity.tier == "free"'}],
    }
    # Rolling windows; one quota shared by all users of the tier (no counter).
    assert limits["premium-quota"]["rates"] == [
        {"limit": 5000, "window": "24h"}, {"limit": 20000, "window": "168h"}, {"limit": 60000, "window": "730h"},
    ]
    assert "counters" not in limits["premium-quota"]


def test_without_quotas_there_is_no_quota_limit(bundled_plan):
    plan = bundled_plan(None)
    plan = dataclasses.replace(plan, tiers=tuple(dataclasses.replace(t, quotas=Quotas()) for t in plan.tiers))
    spec = one(plan, "RateLimitPolicy")["spec"]
    assert set(spec["limits"]) == {"free-requests", "premium-requests", "enterprise-requests"}


def test_token_limits_per_tier_counted_per_user(bundled_plan):
    limits = one(bundled_plan(None), "TokenRateLimitPolicy")["spec"]["limits"]
    assert limits["free-tokens"]["rates"] == [{"limit": 20000, "window": "1h"}]
    assert limits["premium-tokens"]["rates"] == [{"limit": 500000, "window": "1h"}]
    assert all(lim["counters"] == [{"expression": "auth.identity.userid"}] for lim in limits.values())


def test_all_rates_of_a_tier_share_one_limit(bundled_plan):
    """Two limits with one predicate can shadow each other in Limitador."""
    plan = bundled_plan(None)
    free = plan.tier("free")
    two = dataclasses.replace(free, token_limits=(Rate(1000, "1m"), Rate(20000, "24h")))
    plan = dataclasses.replace(plan, tiers=tuple(two if t.name == "free" else t for t in plan.tiers))
    limits = one(plan, "TokenRateLimitPolicy")["spec"]["limits"]
    assert limits["free-tokens"]["rates"] == [{"limit": 1000, "window": "1m"}, {"limit": 20000, "window": "24h"}]


def test_unlimited_tiers_emit_only_metering_limits(bundled_plan):
    plan = bundled_plan(None)
    unlimited = tuple(dataclasses.replace(t, request_limits=(), token_limits=(), quotas=Quotas()) for t in plan.tiers)
    plan = dataclasses.replace(plan, tiers=unlimited)
    kinds = {o["kind"] for o in objects(plan)}
    assert not kinds & {"TokenRateLimitPolicy", "PlanPolicy"}
    rates = [lim["rates"] for lim in one(plan, "RateLimitPolicy")["spec"]["limits"].values()]
    assert rates == [[{"limit": 2147483647, "window": "1s"}]] * len(plan.tiers)
    assert "AuthPolicy" in kinds  # identity is still needed for attribution


def test_auth_policy_reads_api_keys_and_publishes_identity(bundled_plan):
    policy = one(bundled_plan(None), "AuthPolicy")
    rules = policy["spec"]["rules"]
    auth = rules["authentication"][kuadrant_auth.AUTHENTICATION_NAME]
    assert auth["credentials"] == {"authorizationHeader": {"prefix": "APIKEY"}}
    assert auth["apiKey"]["selector"] == {
        "matchLabels": {c.SECRET_LABEL_APP: c.SECRET_LABEL_APP_VALUE, c.SECRET_LABEL_MANAGED_BY: "authorino"}
    }
    # Keys live in Kuadrant's namespace: no cluster-wide search.
    assert auth["apiKey"]["allNamespaces"] is False
    published = rules["response"]["success"]["filters"]["identity"]["json"]["properties"]
    assert set(published) == {c.IDENTITY_USER, c.IDENTITY_TEAM, c.IDENTITY_TIER, c.IDENTITY_COST_CENTER, c.IDENTITY_GROUPS}


def test_custom_header_and_foreign_secret_namespace(bundled_plan):
    plan = replace_gateway(bundled_plan(None), api_key=ApiKeyAuth(header="X-Api-Key", prefix="", secret_namespace="keys"))
    auth = one(plan, "AuthPolicy")["spec"]["rules"]["authentication"][kuadrant_auth.AUTHENTICATION_NAME]
    assert auth["credentials"] == {"customHeader": {"name": "X-Api-Key"}}
    assert auth["apiKey"]["allNamespaces"] is True


def test_telemetry_policy_labels_are_the_identity_labels(bundled_plan):
    policy = one(bundled_plan(None), "TelemetryPolicy")
    labels = policy["spec"]["metrics"]["default"]["labels"]
    expected = set(c.IDENTITY_LABELS) - set(c.TELEMETRY_UNAVAILABLE_LABELS)
    assert set(labels) == expected
    assert policy["spec"]["targetRef"]["kind"] == "Gateway"


def test_http_route_target_skips_telemetry_and_says_why(bundled_plan):
    plan = replace_gateway(bundled_plan(None), target_ref=TargetRef(kind="HTTPRoute", name="llm-route"))
    kinds = [o["kind"] for o in objects(plan)]
    assert "TelemetryPolicy" not in kinds
    assert one(plan, "AuthPolicy")["spec"]["targetRef"]["kind"] == "HTTPRoute"
    gap = kuadrant_telemetry.telemetry_gap(plan)
    assert gap and "HTTPRoute" in gap and "llm-route" in gap
    assert kuadrant_telemetry.telemetry_gap(bundled_plan(None)) is None


def test_staging_uses_the_legacy_limitador_image(bundled_plan):
    plan = bundled_plan("staging")
    assert of_kind(plan, "TelemetryPolicy") == []
    limitador = one(plan, "Limitador")
    assert limitador["metadata"]["name"] == c.LIMITADOR_CR_NAME
    assert limitador["metadata"]["namespace"] == "kuadrant-system"
    assert limitador["spec"]["image"] == c.LEGACY_LIMITADOR_IMAGE
    assert limitador["spec"]["telemetry"] == "exhaustive"
    assert "Legacy path" in limitador["metadata"]["annotations"][c.ANNOTATION_NOTE]
    custom = replace_gateway(
        plan, limitador=dataclasses.replace(plan.integrations.gateway.limitador, image="registry.example/limitador:v1")
    )
    assert one(custom, "Limitador")["spec"]["image"] == "registry.example/limitador:v1"
    assert of_kind(bundled_plan("prod"), "Limitador") == []


def test_monitors_carry_the_prometheus_selector_labels(bundled_plan):
    plan = bundled_plan(None)
    generated = [a.data for a in monitors.generate(plan)]
    for obj in generated:
        for key, value in plan.integrations.prometheus.monitor_labels.items():
            assert obj["metadata"]["labels"][key] == value
    service = [o for o in generated if o["kind"] == "ServiceMonitor"]
    assert len(service) == 1
    assert service[0]["metadata"]["namespace"] == plan.integrations.gateway.limitador.namespace
    assert service[0]["spec"]["selector"] == {"matchLabels": {"app": "limitador"}}
    assert service[0]["spec"]["endpoints"][0]["port"] == "http"
    pods = {
        (o["metadata"]["namespace"], o["spec"]["selector"]["matchLabels"][c.LABEL_MODEL_SERVER])
        for o in generated
        if o["kind"] == "PodMonitor"
    }
    # qwen3 and llama-guard (vllm, llm) share one monitor; mixtral is llm-d in llm-batch.
    assert pods == {("llm", "vllm"), ("llm-batch", "llm-d")}


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_output_is_deterministic(bundled_plan, env):
    plan = bundled_plan(env)
    first = [(a.path, dump_yaml(a.data)) for a in kuadrant.generate(plan)]
    second = [(a.path, dump_yaml(a.data)) for a in kuadrant.generate(plan)]
    assert first == second
    assert len({path for path, _ in first}) == len(first), "two objects would be written to one file"


def test_labels_come_from_the_conventions_module():
    source = "".join(
        Path(m.__file__).read_text() for m in (kuadrant_auth, kuadrant_limits, kuadrant_telemetry, monitors)
    )
    for literal in ('"userid"', '"cost_center"', '"secret.kuadrant.io/user-id"', '"costplan.dev/tier"'):
        assert literal not in source, f"{literal} must come from costplan.core.conventions"


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_shared_manifest_validator_accepts_every_object(bundled_plan, crd_schema_location, env):
    from costplan.output.verify import ManifestValidator

    validator = ManifestValidator(schema_locations=[crd_schema_location], strict=True)
    artifacts = kuadrant.generate(bundled_plan(env))
    assert artifacts
    assert validator.validate_all(artifacts) == []
