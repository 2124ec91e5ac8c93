"""Offline validation of generated objects: core schemas, CRD schemas, extra rules, kubeconform."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from costplan.core.artifacts import file, manifest
from costplan.output import kubeconform, manifest_checks
from costplan.output.verify import (
    SCHEMA_LOCATION_ENV,
    Diagnostic,
    KubeconformUnavailable,
    ManifestValidator,
    SchemaLocation,
    UnsupportedKubernetesVersion,
    default_schema_locations,
    go_regex,
    has_errors,
    run_kubeconform,
    split_locations,
)
from tests.conftest import PLAN

LABELS = {"app.kubernetes.io/managed-by": "costplan", "costplan.dev/environment": "dev"}
TARGET = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "vllm-gateway"}


def meta(name: str, namespace: str | None = "llm") -> dict:
    out = {"name": name, "labels": dict(LABELS)}
    if namespace:
        out["namespace"] = namespace
    return out


CORE = {
    "ConfigMap": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("prices"),
        "data": {"prices.yaml": "a: 1\n"},
    },
    "CronJob": {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta("monthly-report"),
        "spec": {
            "schedule": "0 6 1 * *",
            "timeZone": "Europe/Berlin",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "metadata": {"labels": {"app": "report"}},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "serviceAccountName": "costplan-report",
                            "containers": [{"name": "report", "image": "python:3.11", "args": ["report"]}],
                        },
                    }
                }
            },
        },
    },
    "ServiceAccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("costplan-report")},
    "Role": {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("costplan-report"),
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    },
    "RoleBinding": {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta("costplan-report"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "costplan-report"},
        "subjects": [{"kind": "ServiceAccount", "name": "costplan-report", "namespace": "llm"}],
    },
    "Namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("llm", None)},
}

RATE_LIMIT_POLICY = {
    "apiVersion": "kuadrant.io/v1",
    "kind": "RateLimitPolicy",
    "metadata": meta("llm-requests"),
    "spec": {
        "targetRef": dict(TARGET),
        "limits": {
            "free": {
                "rates": [{"limit": 10, "window": "1m"}],
                "counters": [{"expression": "auth.identity.userid"}],
                "when": [{"predicate": 'auth.identity.tier == "free"'}],
            }
        },
    },
}
TOKEN_RATE_LIMIT_POLICY = {
    "apiVersion": "kuadrant.io/v1alpha1",
    "kind": "TokenRateLimitPolicy",
    "metadata": meta("llm-tokens"),
    "spec": {
        "targetRef": dict(TARGET),
        "limits": {"free-tokens": {"rates": [{"limit": 20000, "window": "24h"}]}},
    },
}
AUTH_POLICY = {
    "apiVersion": "kuadrant.io/v1",
    "kind": "AuthPolicy",
    "metadata": meta("llm-auth"),
    "spec": {
        "targetRef": dict(TARGET),
        "rules": {
            "authentication": {
                "api-key-users": {
                    "apiKey": {"allNamespaces": False, "selector": {"matchLabels": {"app": "costplan-apikey"}}},
                    "credentials": {"authorizationHeader": {"prefix": "APIKEY"}},
                }
            }
        },
    },
}
TELEMETRY_POLICY = {
    "apiVersion": "extensions.kuadrant.io/v1alpha1",
    "kind": "TelemetryPolicy",
    "metadata": meta("llm-telemetry"),
    "spec": {"targetRef": dict(TARGET), "metrics": {"default": {"labels": {"user": "auth.identity.userid"}}}},
}
PROMETHEUS_RULE = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": meta("costplan-spend"),
    "spec": {"groups": [{"name": "spend", "rules": [{"record": "costplan:spend:rate1h", "expr": "sum(rate(x[1h]))"}]}]},
}


@pytest.fixture(scope="module")
def core_validator() -> ManifestValidator:
    return ManifestValidator(schema_locations=[])


@pytest.fixture(scope="module")
def crd_validator(crd_schema_location: str) -> ManifestValidator:
    return ManifestValidator(schema_locations=[crd_schema_location])


def edited(obj: dict, **changes) -> dict:
    """A deep copy with ``path.to.key=value`` changes (value None deletes)."""
    out = copy.deepcopy(obj)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return out


def only(problems: list[Diagnostic], check: str | None = None) -> Diagnostic:
    selected = [p for p in problems if check is None or p.check_id == check]
    assert len(selected) == 1, [p.render() for p in problems]
    return selected[0]


# --- core kinds ------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CORE))
def test_valid_core_objects_pass(core_validator, kind):
    assert core_validator.validate(CORE[kind]) == []


def test_unknown_field_is_reported_at_the_field(core_validator):
    cronjob = edited(CORE["CronJob"], spec__schedulee="0 * * * *")
    problem = only(core_validator.validate(cronjob))
    assert (problem.pointer, problem.message) == ("/spec/schedulee", "unknown field 'schedulee'")
    assert problem.severity == "error"


def test_wrong_type_is_reported_with_its_pointer(core_validator):
    cronjob = copy.deepcopy(CORE["CronJob"])
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
    problem = only(core_validator.validate(cronjob))
    assert problem.pointer == "/spec/jobTemplate/spec/template/spec/containers/0/ports/0/containerPort"
    assert "is not of type 'integer'" in problem.message


def test_missing_required_field_is_reported(core_validator):
    problem = only(core_validator.validate(edited(CORE["CronJob"], spec__schedule=None)))
    assert problem.pointer == "/spec" and "'schedule' is a required property" in problem.message
    problem = only(core_validator.validate(edited(CORE["RoleBinding"], roleRef=None)))
    assert problem.pointer == "" and "'roleRef' is a required property" in problem.message


def test_every_error_of_a_document_is_reported(core_validator):
    broken = edited(CORE["CronJob"], spec__schedulee="x", spec__suspend="no", spec__schedule=None, extra=1)
    pointers = [p.pointer for p in core_validator.validate(broken)]
    assert pointers == ["/extra", "/spec", "/spec/schedulee", "/spec/suspend"]


def test_removed_api_version_is_an_error_naming_the_served_one(core_validator):
    old = edited(CORE["CronJob"], apiVersion="batch/v1beta1")
    problem = only(core_validator.validate(old))
    assert problem.check_id == "unknown-api" and problem.severity == "error"
    assert "does not serve CronJob in batch/v1beta1; served: batch/v1" in problem.message


def _both_verdicts(obj: dict, kind: str) -> tuple[bool, bool]:
    """(compiled says valid, jsonschema finds no error) for one object under the schema of CORE[kind]."""
    lookup = ManifestValidator(schema_locations=[])._validator(CORE[kind]["apiVersion"], kind)
    schema = lookup.validator
    assert schema is not None and schema._fast is not None, "a core kind gets a compiled validator"
    return bool(schema._fast.is_valid(obj)), not list(schema.python().iter_errors(obj))


@pytest.mark.parametrize("kind", sorted(CORE))
def test_the_compiled_verdict_is_jsonschemas_on_valid_and_broken_core_objects(kind):
    """A valid verdict skips jsonschema: it must never pass what jsonschema rejects."""
    obj = CORE[kind]
    broken = [
        edited(obj, extra=1),  # closed objects
        edited(obj, metadata__labels={"a": 5}),  # label values are strings
        edited(obj, metadata__name=7),
        edited(obj, apiVersion=5),
    ]
    assert _both_verdicts(obj, kind) == (True, True)
    for other in broken:
        assert _both_verdicts(other, kind) == (False, False), other


def test_a_decimal_integer_goes_to_jsonschema_and_passes(core_validator):
    """Generators write integral Decimals as integers: the compiled validator cannot read them, jsonschema can."""
    cronjob = edited(CORE["CronJob"], spec__successfulJobsHistoryLimit=Decimal(3))
    assert core_validator.validate(cronjob) == []
    assert only(core_validator.validate(edited(cronjob, spec__successfulJobsHistoryLimit=Decimal("3.5")))).pointer \
        == "/spec/successfulJobsHistoryLimit"


def test_a_valid_build_never_loads_jsonschema(tmp_path):
    """Valid plans are checked by compiled validators alone; jsonschema is for explaining mistakes."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from costplan.cli.app import main\n"
        f"result = CliRunner().invoke(main, ['-q', 'build', '-f', {str(PLAN)!r}, '-e', 'prod', '-o', {str(tmp_path / 'out')!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'referencing', 'jinja2')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SCHEMA_LOCATION_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_kubernetes_version_selects_the_schemas():
    flow_schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1beta2",
        "kind": "FlowSchema",
        "metadata": {"name": "x"},
        "spec": {"priorityLevelConfiguration": {"name": "global-default"}},
    }
    old = ManifestValidator("v1.25.3", schema_locations=[])
    assert old.kubernetes_version == "1.25"
    assert old.validate(flow_schema) == []
    assert old.schema_source("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema").endswith(
        "v1.25.0-local-strict/flowschema-flowcontrol-v1beta2.json"
    )
    assert only(ManifestValidator("1.33", schema_locations=[]).validate(flow_schema)).check_id == "unknown-api"


@pytest.mark.parametrize("version", ["1.24", "1.38", "2.0", "latest", ""])
def test_unsupported_kubernetes_version_is_a_clear_error(version):
    with pytest.raises(UnsupportedKubernetesVersion, match=r"supported|1\.25 to 1\.37") as info:
        ManifestValidator(version, schema_locations=[])
    assert isinstance(info.value, ValueError)  # the CLI turns ValueError into a usage error
    assert "1.25 to 1.37" in str(info.value)


def test_decimal_values_count_as_integers(crd_validator):
    policy = copy.deepcopy(RATE_LIMIT_POLICY)
    policy["spec"]["limits"]["free"]["rates"][0]["limit"] = Decimal("10")
    assert crd_validator.validate(policy) == []
    policy["spec"]["limits"]["free"]["rates"][0]["limit"] = Decimal("10.5")
    assert "is not of type 'integer'" in only(crd_validator.validate(policy)).message


# --- custom resources --------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [RATE_LIMIT_POLICY, TOKEN_RATE_LIMIT_POLICY, AUTH_POLICY, TELEMETRY_POLICY, PROMETHEUS_RULE],
    ids=lambda o: o["kind"],
)
def test_valid_custom_resources_pass(crd_validator, obj):
    assert crd_validator.validate(obj) == []
    group, version = obj["apiVersion"].split("/")
    source = crd_validator.schema_source(obj["apiVersion"], obj["kind"])
    assert source.endswith(f"/{group}/{obj['kind'].lower()}_{version}.json")


def _crd_verdicts(validator: ManifestValidator, obj: dict) -> tuple[bool, bool]:
    """(compiled says valid, jsonschema finds no error) for one custom resource."""
    schema = validator._validator(obj["apiVersion"], obj["kind"]).validator
    assert schema is not None and schema._fast is not None, "the bundled CRDs' patterns read alike in RE2 and Rust"
    return bool(schema._fast.is_valid(obj)), not list(schema.python().iter_errors(obj))


def _set(obj: dict, path: str, value: object) -> dict:
    out = copy.deepcopy(obj)
    *parents, last = path.split("/")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return out


@pytest.mark.parametrize(
    "obj, broken",
    [
        (TOKEN_RATE_LIMIT_POLICY, [("spec/limits/free-tokens/rates/0/window", "1d"),
                                   ("spec/limits/free-tokens/rates/0/window", "10s\n")]),
        (PROMETHEUS_RULE, [("spec/groups/0/partial_response_strategy", "maybe"),
                           ("spec/groups/0/interval", "5 minutes"),
                           ("spec/groups/0/rules/0/expr", ["sum(x)"])]),
        (RATE_LIMIT_POLICY, [("spec/extra", 1)]),
        (AUTH_POLICY, [("spec/targetRef/kind", 5)]),
        (TELEMETRY_POLICY, [("spec/metrics/default/labels", {"user": 1}), ("spec/targetRef/name", "")]),
    ],
    ids=lambda v: v["kind"] if isinstance(v, dict) else "",
)
def test_the_compiled_verdict_is_jsonschemas_on_custom_resources(crd_validator, obj, broken):
    """Patterns included (RE2's ``$`` is the end of the text, ``(?i)`` mid-pattern): never more lenient."""
    assert _crd_verdicts(crd_validator, obj) == (True, True)
    for path, value in broken:
        assert _crd_verdicts(crd_validator, _set(obj, path, value)) == (False, False), (path, value)
    assert _crd_verdicts(crd_validator, _set(PROMETHEUS_RULE, "spec/groups/0/partial_response_strategy", "WARN")) \
        == (True, True)


def test_a_schema_whose_patterns_differ_in_rust_gets_jsonschema_alone(tmp_path):
    """``\\d`` is ASCII in RE2 and Unicode in Rust: no compiled verdict for such a schema."""
    (tmp_path / "example.com").mkdir()
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "port": {"type": "string", "pattern": "^\\d+$"}}}}}
    (tmp_path / "example.com" / "widget_v1.json").write_text(json.dumps(schema))
    validator = ManifestValidator(schema_locations=[str(tmp_path / "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")])
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("w"), "spec": {"port": "80x"}}
    lookup = validator._validator("example.com/v1", "Widget")
    assert lookup.validator is not None and lookup.validator._fast is None
    assert only(validator.validate(widget), "schema").pointer == "/spec/port"


def test_token_window_of_one_day_is_rejected(crd_validator):
    policy = copy.deepcopy(TOKEN_RATE_LIMIT_POLICY)
    policy["spec"]["limits"]["free-tokens"]["rates"][0]["window"] = "1d"
    problem = only(crd_validator.validate(policy))
    assert problem.pointer == "/spec/limits/free-tokens/rates/0/window"
    assert problem.message.startswith("'1d' does not match")
    artifact = manifest("kuadrant", policy)
    rendered = only(crd_validator.validate_all([artifact])).render()
    assert rendered == (
        "kuadrant/tokenratelimitpolicy-llm-tokens.yaml: /spec/limits/free-tokens/rates/0/window: "
        "'1d' does not match '^([0-9]{1,5}(h|m|s|ms)){1,4}$' [schema]"
    )


def test_auth_policy_unknown_field(crd_validator):
    policy = copy.deepcopy(AUTH_POLICY)
    policy["spec"]["rules"]["authentication"]["api-key-users"]["apiKey"]["selectr"] = {}
    problem = only(crd_validator.validate(policy))
    assert problem.pointer == "/spec/rules/authentication/api-key-users/apiKey/selectr"
    assert problem.message == "unknown field 'selectr'"


def test_prometheus_rule_with_non_string_expr(crd_validator):
    rule = copy.deepcopy(PROMETHEUS_RULE)
    rule["spec"]["groups"][0]["rules"][0]["expr"] = ["sum(x)"]
    problem = only(crd_validator.validate(rule))
    assert problem.pointer == "/spec/groups/0/rules/0/expr"
    assert "is not valid under any of the given schemas" in problem.message


def test_go_regex_patterns_from_crds_are_honoured(crd_validator):
    assert go_regex("^(?i)(abort|warn)?$").match("WARN")
    rule = copy.deepcopy(PROMETHEUS_RULE)
    rule["spec"]["groups"][0]["partial_response_strategy"] = "Warn"
    assert crd_validator.validate(rule) == []
    rule["spec"]["groups"][0]["partial_response_strategy"] = "sometimes"
    assert only(crd_validator.validate(rule)).pointer == "/spec/groups/0/partial_response_strategy"


def test_missing_schema_is_a_warning_by_default_and_an_error_when_strict(crd_schema_location):
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    lenient = only(ManifestValidator(schema_locations=[crd_schema_location]).validate(unknown))
    assert (lenient.check_id, lenient.severity) == ("missing-schema", "warning")
    assert "example.com/widget_v1.json" in lenient.message
    strict = only(ManifestValidator(schema_locations=[crd_schema_location], strict=True).validate(unknown))
    assert (strict.check_id, strict.severity) == ("missing-schema", "error")
    assert has_errors([strict]) and not has_errors([lenient])


def test_without_locations_custom_kinds_have_no_schema(core_validator):
    problem = only(core_validator.validate(RATE_LIMIT_POLICY))
    assert problem.check_id == "missing-schema" and "--schema-location" in problem.message


def test_unusable_schema_file_is_reported(tmp_path):
    (tmp_path / "example.com").mkdir()
    (tmp_path / "example.com" / "widget_v1.json").write_text("{not json", encoding="utf-8")
    template = str(tmp_path) + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    validator = ManifestValidator(schema_locations=[template])
    problem = only(validator.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}))
    assert (problem.check_id, problem.severity) == ("schema-file", "error")


# --- schema locations ----------------------------------------------------


def test_location_template_variables():
    location = SchemaLocation(
        "/s/{{.Group}}/{{ .ResourceKind }}_{{.ResourceAPIVersion}}/{{.Kind}}-{{.Version}}{{.KindSuffix}}"
        "/{{.NormalizedKubernetesVersion}}{{.StrictSuffix}}.json"
    )
    assert location.path_for("kuadrant.io/v1", "RateLimitPolicy", "1.33") == (
        "/s/kuadrant.io/ratelimitpolicy_v1/RateLimitPolicy-v1-kuadrant-v1/v1.33.0-strict.json"
    )
    assert location.path_for("v1", "ConfigMap", "1.30") == "/s/v1/configmap_v1/ConfigMap-v1-v1/v1.30.0-strict.json"


def test_directory_location_uses_the_kubernetes_json_schema_layout():
    assert SchemaLocation("/mirror/").path_for("apps/v1", "Deployment", "1.33") == (
        "/mirror/v1.33.0-standalone-strict/deployment-apps-v1.json"
    )


@pytest.mark.parametrize(
    "template, fragment",
    [
        ("/s/{{.Grop}}/{{.ResourceKind}}.json", "unknown variable(s) Grop"),
        ("https://example.com/{{.Group}}/{{.ResourceKind}}.json", "only local paths"),
        ("/s/{{.Group}/x.json", "malformed"),
    ],
)
def test_bad_locations_are_rejected_up_front(template, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ManifestValidator(schema_locations=[template])


def test_split_locations_accepts_pathsep_and_commas():
    assert split_locations([f"/a/{{{{.Group}}}}.json{os.pathsep}/b", "/c,/a/{{.Group}}.json", ""]) == [
        "/a/{{.Group}}.json",
        "/b",
        "/c",
    ]


def test_locations_come_from_the_environment(monkeypatch, crd_schema_location, tmp_path):
    monkeypatch.setenv(SCHEMA_LOCATION_ENV, f"{tmp_path}/{{{{.Group}}}}.json{os.pathsep}{crd_schema_location}")
    assert default_schema_locations() == [f"{tmp_path}/{{{{.Group}}}}.json", crd_schema_location]
    from_env = ManifestValidator()
    assert from_env.validate(RATE_LIMIT_POLICY) == []
    assert from_env.schema_source("kuadrant.io/v1", "RateLimitPolicy").endswith("kuadrant.io/ratelimitpolicy_v1.json")
    # An explicit list wins over the environment.
    assert only(ManifestValidator(schema_locations=[]).validate(RATE_LIMIT_POLICY)).check_id == "missing-schema"
    monkeypatch.delenv(SCHEMA_LOCATION_ENV)
    assert default_schema_locations() == []


# --- rules the CRDs enforce with CEL -------------------------------------


def test_limits_and_defaults_are_mutually_exclusive(crd_validator):
    policy = edited(RATE_LIMIT_POLICY, spec__defaults={"limits": {"x": {"rates": [{"limit": 1, "window": "1m"}]}}})
    problem = only(crd_validator.validate(policy))
    assert (problem.check_id, problem.pointer) == ("cel", "/spec")
    assert "limits, defaults are mutually exclusive" in problem.message


@pytest.mark.parametrize(
    "spec_change, pointer",
    [
        ({"spec__limits": {}}, "/spec/limits"),
        ({"spec__limits": None}, "/spec"),
        ({"spec__limits": None, "spec__overrides": {"limits": {}}}, "/spec/overrides/limits"),
    ],
)
def test_a_limit_policy_needs_at_least_one_limit(crd_validator, spec_change, pointer):
    problem = only(crd_validator.validate(edited(TOKEN_RATE_LIMIT_POLICY, **spec_change)), "cel")
    assert problem.pointer == pointer and "At least one" in problem.message


def test_target_ref_group_must_be_gateway_api(crd_validator):
    policy = edited(RATE_LIMIT_POLICY, spec__targetRef__group="networking.k8s.io")
    problem = only(crd_validator.validate(policy))
    assert (problem.check_id, problem.pointer) == ("cel", "/spec/targetRef/group")


@pytest.mark.parametrize(
    "obj, target_kind, allowed",
    [
        (RATE_LIMIT_POLICY, "GRPCRoute", True),
        (AUTH_POLICY, "HTTPRoute", True),
        (TOKEN_RATE_LIMIT_POLICY, "GRPCRoute", False),
        (TELEMETRY_POLICY, "HTTPRoute", False),
        (RATE_LIMIT_POLICY, "Service", False),
    ],
)
def test_target_ref_kind_per_policy(crd_validator, obj, target_kind, allowed):
    problems = crd_validator.validate(edited(obj, spec__targetRef__kind=target_kind))
    if allowed:
        assert problems == []
    else:
        assert only(problems).pointer == "/spec/targetRef/kind"


def test_auth_policy_sections_follow_the_crd_rules(crd_validator):
    both = edited(AUTH_POLICY, spec__defaults={"rules": AUTH_POLICY["spec"]["rules"]})
    assert "mutually exclusive" in only(crd_validator.validate(both), "cel").message
    empty = edited(AUTH_POLICY, spec__rules={"authentication": {}})
    assert only(crd_validator.validate(empty), "cel").pointer == "/spec/rules"


def _cel_rules(node, path=()):
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", ()):
            yield path, rule["rule"]
        for key, value in node.items():
            yield from _cel_rules(value, path + (key,))


@pytest.mark.parametrize("group_kind", sorted(manifest_checks.TARGET_KINDS))
def test_target_kind_table_matches_the_crd_schemas(shared_dir, group_kind):
    group, kind = group_kind
    [schema_file] = (shared_dir / "crd-schemas" / group).glob(f"{kind.lower()}_*.json")
    rules = [r for path, r in _cel_rules(json.loads(schema_file.read_text())) if path[-1:] == ("targetRef",)]
    kinds = {k for r in rules if "self.kind" in r for k in re.findall(r"self\.kind == '(\w+)'", r)}
    assert kinds == set(manifest_checks.TARGET_KINDS[group_kind])
    assert any(f"self.group == '{manifest_checks.GATEWAY_API_GROUP}'" in r for r in rules)


def test_limit_rule_messages_match_the_crd_schemas(shared_dir):
    schema = json.loads((shared_dir / "crd-schemas/kuadrant.io/ratelimitpolicy_v1.json").read_text())
    spec_rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    messages = {r["message"] for r in spec_rules}
    assert {"At least one spec.limits must be defined", "At least one spec.defaults.limits must be defined"} <= messages
    assert sum("mutually exclusive" in m for m in messages) == 3


# --- rules for every object ----------------------------------------------


@pytest.mark.parametrize(
    "obj, check, pointer",
    [
        (edited(CORE["ConfigMap"], metadata__name="Prices"), "k8s-name", "/metadata/name"),
        (edited(CORE["ConfigMap"], metadata__name="a" * 254), "k8s-name", "/metadata/name"),
        (edited(CORE["Namespace"], metadata__name="llm.prod"), "k8s-name", "/metadata/name"),
        (edited(CORE["ConfigMap"], metadata__namespace="LLM"), "k8s-name", "/metadata/namespace"),
        (edited(CORE["CronJob"], metadata__name="r" * 53), "k8s-name", "/metadata/name"),
        (edited(CORE["ConfigMap"], metadata__labels={"team": "a b"}), "label", "/metadata/labels/team"),
        (edited(CORE["ConfigMap"], metadata__labels={"team": "x" * 64}), "label", "/metadata/labels/team"),
        (edited(CORE["ConfigMap"], metadata__labels={"Bad_/team": "a"}), "label", "/metadata/labels/Bad_~1team"),
        (edited(CORE["ConfigMap"], metadata__annotations={"-x": "1"}), "label", "/metadata/annotations/-x"),
        (edited(CORE["CronJob"], spec__schedule="0 6 1 *"), "cron", "/spec/schedule"),
        (edited(CORE["CronJob"], spec__schedule="@fortnightly"), "cron", "/spec/schedule"),
        (edited(CORE["ConfigMap"], data={"a b": "x"}), "k8s-name", "/data/a b"),
        (edited(CORE["ConfigMap"], data={"big": "x" * (1024 * 1024 + 1)}), "size", ""),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_rules_outside_the_schema(core_validator, obj, check, pointer):
    problems = [p for p in core_validator.validate(obj) if p.severity == "error"]
    assert [p.check_id for p in problems if p.check_id == check] == [check]
    assert [p.pointer for p in problems if p.check_id == check] == [pointer]


def test_pod_template_labels_are_checked(core_validator):
    cronjob = copy.deepcopy(CORE["CronJob"])
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app"] = "-bad"
    assert only(core_validator.validate(cronjob)).pointer == "/spec/jobTemplate/spec/template/metadata/labels/app"


@pytest.mark.parametrize("schedule", ["@daily", "*/5 * * * *", "0 6 1 JAN-MAR MON-FRI", "@every 1h"])
def test_valid_schedules_pass(core_validator, schedule):
    assert core_validator.validate(edited(CORE["CronJob"], spec__schedule=schedule)) == []


def test_rbac_names_may_contain_colons(core_validator):
    assert core_validator.validate(edited(CORE["Role"], metadata__name="costplan:reader")) == []


def test_large_objects_warn_about_client_side_apply(core_validator):
    problem = only(core_validator.validate(edited(CORE["ConfigMap"], data={"big": "x" * 300_000})))
    assert (problem.check_id, problem.severity) == ("size", "warning") and "ServerSideApply" in problem.message


def test_identity_fields_are_required(core_validator):
    problems = core_validator.validate({"metadata": {}})
    assert [(p.pointer, p.check_id) for p in problems] == [
        ("/apiVersion", "required-field"),
        ("/kind", "required-field"),
        ("/metadata/name", "required-field"),
    ]
    assert only(core_validator.validate(["not", "an", "object"])).severity == "error"


def test_validate_all_skips_plain_files_and_names_artifacts(crd_validator):
    broken = edited(CORE["CronJob"], spec__schedulee="x")
    artifacts = [
        file("opencost", "values.yaml", {"no": "kind"}),
        manifest("reports", broken),
        manifest("kuadrant", RATE_LIMIT_POLICY),
    ]
    problems = crd_validator.validate_all(artifacts)
    assert [p.render() for p in problems] == [
        "reports/cronjob-monthly-report.yaml: /spec/schedulee: unknown field 'schedulee' [schema]"
    ]


def test_five_hundred_config_maps_validate_quickly(core_validator):
    maps = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"team-{i}"), "data": {"t.yaml": f"id: {i}\n" * 20}}
        for i in range(500)
    ]
    assert core_validator.validate(maps[0]) == []  # warm-up: definitions and the ConfigMap validator
    start = time.perf_counter()
    problems = [p for m in maps for p in core_validator.validate(m)]
    elapsed = time.perf_counter() - start
    assert problems == []
    assert elapsed < 2.0, f"500 ConfigMaps took {elapsed:.2f} s"


def test_validators_are_not_shared_between_instances(crd_schema_location):
    strict = ManifestValidator(schema_locations=[crd_schema_location], strict=True)
    lenient = ManifestValidator(schema_locations=[crd_schema_location])
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert only(strict.validate(unknown)).severity == "error"
    assert only(lenient.validate(unknown)).severity == "warning"


# --- kubeconform through docker ------------------------------------------


class FakeRun:
    """Records commands; answers ``docker info`` and ``docker run`` as told."""

    def __init__(self, info=(0, "", ""), run=(0, "{}", "")):
        self.info, self.run, self.commands = info, run, []

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        code, out, err = self.info if command[1] == "info" else self.run
        if isinstance(code, Exception):
            raise code
        assert kwargs.get("timeout"), "every docker call needs a timeout"
        return subprocess.CompletedProcess(command, code, out, err)


def _patch_docker(monkeypatch, fake, present=True):
    docker = "/usr/bin/docker" if present else None
    monkeypatch.setattr(kubeconform.shutil, "which", lambda name: docker if name == "docker" else None)
    monkeypatch.setattr(kubeconform.subprocess, "run", fake)


@pytest.fixture()
def output_tree(tmp_path):
    (tmp_path / "kuadrant").mkdir()
    policy = tmp_path / "kuadrant" / "ratelimitpolicy-llm-requests.yaml"
    policy.write_text("apiVersion: kuadrant.io/v1\nkind: RateLimitPolicy\n")
    (tmp_path / "opencost").mkdir()
    (tmp_path / "opencost" / "values.yaml").write_text("opencost:\n  exporter: {}\n")
    (tmp_path / "kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
    return tmp_path


def test_kubeconform_without_docker(monkeypatch, output_tree):
    _patch_docker(monkeypatch, FakeRun(), present=False)
    with pytest.raises(KubeconformUnavailable, match="docker is not installed"):
        run_kubeconform(output_tree, [], "1.33")


@pytest.mark.parametrize(
    "info",
    [
        (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"),
        (subprocess.TimeoutExpired(["docker", "info"], 5), "", ""),
    ],
)
def test_kubeconform_without_a_daemon(monkeypatch, output_tree, info):
    fake = FakeRun(info=info)
    _patch_docker(monkeypatch, fake)
    with pytest.raises(KubeconformUnavailable, match="no Docker daemon is running"):
        run_kubeconform(output_tree, [], "1.33")
    assert [c[1] for c in fake.commands] == ["info"]  # nothing was started


def test_kubeconform_image_cannot_be_pulled(monkeypatch, output_tree):
    stderr = (
        "Unable to find image 'ghcr.io/yannh/kubeconform:latest-alpine' locally\n"
        'docker: Error response from daemon: Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io: no such host.\n'
    )
    _patch_docker(monkeypatch, FakeRun(run=(125, "", stderr)))
    with pytest.raises(KubeconformUnavailable, match="could not be pulled"):
        run_kubeconform(output_tree, [], "1.33")


def test_kubeconform_command_and_report(monkeypatch, output_tree, crd_schema_location):
    report = {
        "resources": [
            {
                "filename": "/work/kuadrant/ratelimitpolicy-llm-requests.yaml",
                "kind": "RateLimitPolicy",
                "name": "llm-requests",
                "version": "kuadrant.io/v1",
                "status": "statusInvalid",
                "msg": "problem validating schema",
                "validationErrors": [{"path": "/spec/limits/free/rates/0/window", "msg": "does not match pattern"}],
            },
            {
                "filename": "/work/a.yaml",
                "kind": "Widget",
                "version": "example.com/v1",
                "status": "statusError",
                "msg": "could not find schema for Widget",
            },
            {"filename": "/work/b.yaml", "kind": "ConfigMap", "version": "v1", "status": "statusValid", "msg": ""},
        ],
        "summary": {"valid": 1, "invalid": 1, "errors": 1, "skipped": 0},
    }
    fake = FakeRun(run=(1, json.dumps(report), ""))
    _patch_docker(monkeypatch, fake)
    problems = run_kubeconform(output_tree, [crd_schema_location], "1.33")

    command = fake.commands[-1]
    schemas_dir = str(Path(crd_schema_location.split("{{")[0]).resolve())
    assert command[:3] == ["/usr/bin/docker", "run", "--rm"]
    assert ["-v", f"{output_tree.resolve()}:/work:ro"] == command[3:5]
    assert ["-v", f"{schemas_dir}:/schemas/0:ro"] == command[5:7]
    assert command[7] == kubeconform.IMAGE
    tail = command[8:]
    assert tail[:7] == ["-strict", "-summary", "-output", "json", "-kubernetes-version", "1.33.0", "-schema-location"]
    mounted = "/schemas/0/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    assert tail[7:10] == ["default", "-schema-location", mounted]
    assert tail[10:] == ["/work/kuadrant/ratelimitpolicy-llm-requests.yaml"]  # no kustomization, no Helm values

    assert [(p.file, p.pointer, p.severity, p.check_id) for p in problems] == [
        ("kuadrant/ratelimitpolicy-llm-requests.yaml", "/spec/limits/free/rates/0/window", "error", "kubeconform"),
        ("a.yaml", "", "error", "kubeconform"),
    ]
    assert problems[0].message == "RateLimitPolicy/llm-requests: does not match pattern"
    assert "could not find schema" in problems[1].message


def test_kubeconform_with_nothing_to_check_does_not_start_a_container(monkeypatch, tmp_path):
    fake = FakeRun()
    _patch_docker(monkeypatch, fake)
    assert run_kubeconform(tmp_path, [], "1.33") == []
    assert [c[1] for c in fake.commands] == ["info"]
