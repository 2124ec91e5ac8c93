"""The plan's JSON Schema: itself valid, documented, and turned into readable diagnostics.

Broken plans are patches of ``tests/plans/minimal.yaml``; expected positions
are ``line:column`` in that file (or in the patched text, for lines after an
insertion).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from jsonschema import Draft202012Validator

from costplan.plan import capabilities, schema
from costplan.plan import load as pipeline
from costplan.plan.document import from_document
from tests.conftest import patched_minimal

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "costplan.yaml"
MINIMAL = Path(__file__).parent / "plans" / "minimal.yaml"
EVERY_KEY = Path(__file__).parent / "plans" / "every-key.yaml"
ENVIRONMENTS = ("dev", "prod", "staging")


patched = patched_minimal


def diagnose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_text: str) -> list:
    (tmp_path / "costplan.yaml").write_text(plan_text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return pipeline.validate_document(pipeline.load_document(Path("costplan.yaml")))


# --------------------------------------------------------------------------
# The schema document itself
# --------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema():
    document = schema.load_schema()
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == "https://costplan.dev/schemas/costplan.schema.json"
    assert document["title"] and document["description"]


def test_schema_text_is_the_file_in_schemas_dir():
    assert schema.schema_text() == (ROOT / "schemas" / "costplan.schema.json").read_text(encoding="utf-8")
    assert schema.load_schema() is not schema.load_schema()  # callers get copies


def test_schema_falls_back_to_package_data_when_installed(tmp_path, monkeypatch):
    packaged = tmp_path / "site-packages" / "costplan"
    (packaged / "_data" / "schemas").mkdir(parents=True)
    (packaged / "_data" / "schemas" / "costplan.schema.json").write_text('{"title": "packaged"}', encoding="utf-8")
    from costplan.core import data

    monkeypatch.setattr(data.resources, "files", lambda package: packaged)
    assert schema.read_schema_file(tmp_path / "no-checkout") == '{"title": "packaged"}'


def _properties(node: Any, where: str = "#") -> Iterator[tuple[str, dict]]:
    """Every (pointer, schema) that defines a named property, anywhere in the schema."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{where}/properties/{name}", sub
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _properties(value, f"{where}/{index}")


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{where}/{index}")


# Conditional subschemas (``if``) only test one property; they are not
# definitions and carry no documentation.
def _documented_properties() -> list[tuple[str, dict]]:
    return [(p, s) for p, s in _properties(schema.load_schema()) if "/if/" not in p and "/then/" not in p]


def test_every_property_has_description_and_examples():
    props = _documented_properties()
    assert len(props) > 100
    undocumented = [p for p, s in props if not s.get("description") or not s.get("examples")]
    assert undocumented == []


def test_every_example_is_valid_for_its_property():
    validator = Draft202012Validator(schema.load_schema())
    wrong = [
        (where, example)
        for where, sub in _documented_properties()
        for example in sub["examples"]
        if not validator.evolve(schema={**sub, "$defs": validator.schema["$defs"]}).is_valid(example)
    ]
    assert wrong == []


def test_every_object_is_closed_except_string_maps():
    open_objects = [
        where
        for where, node in _objects(schema.load_schema())
        if node.get("additionalProperties") is not False and "/if" not in where and "/then" not in where
    ]
    assert open_objects == ["#/$defs/pricing"]  # closed per variant, see the allOf branches
    string_maps = {"ruleLabels", "monitorLabels", "sidecarLabel", "instanceSelector", "labels"}
    free_form = {
        where.rsplit("/", 1)[1]: sub["additionalProperties"]
        for where, sub in _properties(schema.load_schema())
        if isinstance(sub.get("additionalProperties"), dict)
    }
    list_maps = {"nonBillable"}  # label -> values
    assert set(free_form) == string_maps | list_maps
    assert all(free_form[key] == {"type": "string"} for key in string_maps)
    assert free_form["nonBillable"]["items"] == {"type": "string", "minLength": 1}


def test_usage_source_types_follow_capabilities():
    source = schema.load_schema()["$defs"]["usageSource"]["properties"]
    assert set(source["type"]["enum"]) == set(capabilities.SOURCE_TYPES)
    assert set(source["metrics"]["properties"]) == set(capabilities.CUSTOM_METRIC_ROLES)
    assert set(source["labels"]["properties"]) == set(capabilities.CUSTOM_LABEL_ROLES)


def test_user_api_key_has_no_field_for_key_material():
    api_key = schema.load_schema()["$defs"]["user"]["properties"]["apiKey"]
    assert set(api_key["properties"]) == {"secretName", "remoteKey"}
    assert api_key["additionalProperties"] is False


# --------------------------------------------------------------------------
# Valid plans
# --------------------------------------------------------------------------


@pytest.mark.parametrize("environment", [None, *ENVIRONMENTS], ids=lambda e: e or "base")
def test_bundled_plan_and_environments_have_no_diagnostics(environment):
    loaded = pipeline.load_document(PLAN, environment)
    found = pipeline.validate_document(loaded)
    # Staging runs the custom Limitador image at its default, moving tag: validation says so.
    expected = ["legacy-image"] if environment == "staging" else []
    assert [d.check_id for d in found] == expected
    assert all(d.severity == "warning" for d in found)
    assert from_document(loaded.document, loaded.environment).name == "llm-chargeback"


def test_minimal_plan_has_no_diagnostics():
    assert pipeline.validate_document(pipeline.load_document(MINIMAL)) == []


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in _keys(value)}
    return set()


def test_a_plan_with_every_key_validates_and_maps():
    loaded = pipeline.load_document(EVERY_KEY)
    assert pipeline.validate_document(loaded) == []
    defined = {where.rsplit("/", 1)[1] for where, _ in _documented_properties()}
    assert defined - _keys(loaded.document) == set()  # the fixture really sets every key
    plan = from_document(loaded.document, "base")
    assert plan.integrations.cost_engine.openai_plugin_secret == "opencost-openai"
    assert plan.integrations.cost_engine.image_tag == "2.5"
    assert str(plan.integrations.cost_engine.ram_hourly) == "0.004237"
    assert plan.reports.webhook.key == "endpoint" and plan.reports.create_pvc is False
    assert plan.reports.resources.as_kubernetes() == {
        "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1.5Gi"}}
    assert plan.tier("gold").quotas.weekly == 500
    assert plan.alerts.source_absent_for == "1h"
    weekly = plan.team("search").budgets[0]
    assert [(a.at, a.action, a.tier) for a in weekly.actions] == [
        (50, "notify", None), (80, "throttle", "basic"), (100, "block", None)]
    assert weekly.thresholds == (50, 80, 100)  # each action alerts too
    assert [c.type for c in plan.team("search").contacts] == ["email", "slack", "pagerduty", "webhook"]
    assert plan.team("search").contacts[3].secret.key == "url"
    assert plan.notifications.email.auth_password.key == "password"
    assert (plan.guard.fail_mode, plan.guard.fail_after, plan.guard.namespace) == ("closed", "10m", "guard")
    assert plan.install.create_namespaces is False
    assert (plan.gpu_idle_cost.share, plan.gpu_idle_cost.team) == ("team", "search")
    eu, us = plan.clusters
    assert (eu.name, eu.region, eu.kube_context, eu.destination_server) == (
        "eu-west", "eu-west-1", "llm-eu-west", "https://eu-west.k8s.example.com")
    assert (eu.gateway_namespace, eu.gateway_name, eu.models, eu.teams) == ("gateway-eu", "gw-eu", ("chat",), ("search",))
    assert (us.kube_context, us.destination_name, us.models) == ("us-east", "us-east", None)
    assert plan.metrics is not None and plan.metrics.engine == "mimir"
    assert (plan.query_url, plan.query_tenant) == ("http://mimir-query-frontend.mimir:8080/prometheus", "llm-platform")
    assert plan.metrics.bearer_token is not None and plan.metrics.bearer_token.name == "mimir-reader"
    assert from_document(loaded.document, "prod").clusters == (us,)  # eu-west runs the base environment only


def test_decimal_strings_are_accepted_as_money(tmp_path, monkeypatch):
    text = patched(("      price: 0.002", '      price: "0.0020"'), ("    hourlyRate: 1.006", '    hourlyRate: "1"'))
    assert diagnose(tmp_path, monkeypatch, text) == []


# --------------------------------------------------------------------------
# Broken plans: exactly one diagnostic each, at a known place
# --------------------------------------------------------------------------


class Broken(NamedTuple):
    id: str
    patches: tuple[tuple[str, str], ...]
    where: str  # line:column in costplan.yaml
    pointer: str
    check_id: str
    says: str  # a piece of the message


BROKEN = [
    Broken("unknown key is reported at the key with did-you-mean",
           (("    tier: free\n", "    teir: free\n"),),
           "82:5", "/teams/0/teir", "unknown-key", "unknown key 'teir' (did you mean 'tier'?)"),
    Broken("unknown top-level key suggests the real one",
           (("budgets:\n  - name: company", "budget:\n  - name: company"),),
           "98:1", "/budget", "unknown-key", "did you mean 'budgets'?"),
    Broken("duplicate YAML key is not silently dropped",
           (("  currency: USD\n", "  currency: USD\n  currency: EUR\n"),),
           "9:3", "/metadata/currency", "duplicate-key", "duplicate key 'currency' (first defined at line 8)"),
    Broken("YAML syntax error is positioned",
           (("    tier: free\n", "    tier: [free\n"),),
           "83:10", "", "yaml-syntax", "YAML syntax error"),
    Broken("missing required key is reported at its mapping",
           (("    costCenter: CC-2\n", ""),),
           "93:5", "/teams/1", "schema", "missing required key 'costCenter'"),
    Broken("idle GPU cost charged to a team needs the team",
           (("models:\n", "gpuIdleCost:\n  share: team\nmodels:\n"),),
           "38:3", "/gpuIdleCost", "schema", "missing required key 'team'"),
    Broken("a payer team only with share team",
           (("models:\n", "gpuIdleCost:\n  share: byUsage\n  team: research\nmodels:\n"),),
           "39:3", "/gpuIdleCost/team", "schema", "team"),
    Broken("missing top-level key",
           (("kind: CostPlan\n", ""),),
           "4:1", "", "schema", "missing required key 'kind'"),
    Broken("wrong kind",
           (("kind: CostPlan", "kind: Costplan"),),
           "5:7", "/kind", "schema", "expected 'CostPlan', got 'Costplan'"),
    Broken("bad pricing type lists the types",
           (("      type: perRequest\n      price: 0.002", "      type: perRequests\n      price: 0.002"),),
           "45:13", "/models/0/pricing/type", "schema", "did you mean 'perRequest'?"),
    Broken("pricing that is not a mapping gives one error, not one per variant",
           (("    pricing:\n      type: perRequest\n      price: 0.002", "    pricing: perRequest"),),
           "44:14", "/models/0/pricing", "schema", "expected a mapping, got the string 'perRequest'"),
    Broken("wrong field inside one pricing variant",
           (("      price: 0.002", "      prices: 0.002"),),
           "46:7", "/models/0/pricing/prices", "unknown-key",
           "unknown key 'prices' for perRequest pricing (did you mean 'price'?)"),
    Broken("field of another pricing variant",
           (("      type: perRequest\n      price: 0.002", "      type: perRequest\n      input: 0.002"),),
           "46:7", "/models/0/pricing/input", "unknown-key", "did you mean 'price'?"),
    Broken("token-priced volume band given a per-request price",
           (("          pricePerMillion: 1\n", "          pricePerRequest: 1\n"),),
           "57:11", "/models/1/pricing/tiers/1/pricePerRequest", "unknown-key",
           "for token-priced volume bands (did you mean 'pricePerMillion'?)"),
    Broken("missing field of a pricing variant",
           (("      type: perRequest\n      price: 0.002", "      type: perMillionTokens\n      input: 1"),),
           "45:7", "/models/0/pricing", "schema", "missing required key 'output' for perMillionTokens pricing"),
    Broken("negative money",
           (("      price: 0.002", "      price: -0.002"),),
           "46:14", "/models/0/pricing/price", "money", "must not be negative, got -0.002"),
    Broken("negative money as a string",
           (("    amount: 1000", '    amount: "-1000"'),),
           "100:13", "/budgets/0/amount", "money", "must not be negative"),
    Broken("money that is not a number",
           (("    hourlyRate: 1.006", "    hourlyRate: one"),),
           "36:17", "/gpuInstances/0/hourlyRate", "money", "'one' is not a decimal amount"),
    Broken("rolling budget without window",
           (("    window: 30d\n", ""),),
           "99:5", "/budgets/0", "schema", "missing required key 'window' for rolling budgets"),
    Broken("window on a calendar budget",
           (("        period: month\n", "        period: month\n        window: 7d\n"),),
           "92:9", "/teams/0/budgets/0/window", "schema", "window is only allowed with period rolling"),
    Broken("a 1d Kuadrant window is rejected with a hint",
           (("          window: 10s", "          window: 1d"),),
           "70:19", "/tiers/0/limits/requests/0/window", "schema", "use 24h"),
    Broken("enum with did-you-mean",
           (("      kind: Gateway", "      kind: HttpRoute"),),
           "14:13", "/integrations/gateway/targetRef/kind", "schema", "did you mean 'HTTPRoute'?"),
    Broken("a number where a string is needed",
           (("    costCenter: CC-1", "    costCenter: 1001"),),
           "80:17", "/teams/0/costCenter", "schema", 'expected a string, got the whole number 1001 (quote it: "1001")'),
    Broken("custom source without metrics",
           (("    metrics:\n      requests: app_requests_total\n", ""),),
           "26:5", "/usageSources/2", "schema", "missing required key 'metrics' for custom usage sources"),
    Broken("custom source metric that is not a Prometheus name",
           (("app_requests_total", "app-requests-total"),),
           "29:17", "/usageSources/2/metrics/requests", "schema", "is not a Prometheus metric name"),
    Broken("unknown custom metric role",
           (("      requests: app_requests_total", "      request: app_requests_total"),),
           "29:7", "/usageSources/2/metrics/request", "unknown-key", "did you mean 'requests'?"),
    Broken("zero quota",
           (("  - name: premium\n", "  - name: premium\n    quotas:\n      daily: 0\n"),),
           "73:14", "/tiers/1/quotas/daily", "schema", "must be at least 1, got 0"),
    Broken("api key material has nowhere to go",
           (("          secretName: apikey-bob", "          key: sk-live-123"),),
           "87:11", "/teams/0/users/1/apiKey/key", "unknown-key", "(allowed: remoteKey, secretName)"),
    Broken("report schedule that is not cron",
           (("budgets:\n  - name: company", "reports:\n  schedule: monthly\nbudgets:\n  - name: company"),),
           "99:13", "/reports/schedule", "schema", "'monthly' is not a cron expression"),
    Broken("budget threshold of zero",
           (("[80, 100]", "[0, 100]"),),
           "92:22", "/teams/0/budgets/0/thresholds/0", "schema", "must be greater than 0, got 0"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_broken_plan_gives_one_positioned_diagnostic(case, tmp_path, monkeypatch):
    found = diagnose(tmp_path, monkeypatch, patched(*case.patches))
    errors = [(d.file, f"{d.line}:{d.column}", d.pointer, d.check_id) for d in found if d.severity == "error"]
    assert errors == [("costplan.yaml", case.where, case.pointer, case.check_id)]
    assert case.says in found[0].message


def test_broken_cases_cover_every_schema_check_id():
    assert {"schema", "unknown-key", "money", "duplicate-key", "yaml-syntax"} <= {c.check_id for c in BROKEN}


def test_messages_never_dump_containers(tmp_path, monkeypatch):
    text = patched(("    pricing:\n      type: perRequest\n      price: 0.002", "    pricing: [1, 2]"))
    (diagnostic,) = diagnose(tmp_path, monkeypatch, text)
    assert diagnostic.message == "expected a mapping, got a list"


def test_every_schema_error_is_reported_at_once(tmp_path, monkeypatch):
    text = patched(("      price: 0.002", "      price: -1"), ("    tier: free\n", "    teir: free\n"),
                   ("  timezone: UTC\n", "  timezone: UTC\n  zone: x\n"))
    found = diagnose(tmp_path, monkeypatch, text)
    assert [d.check_id for d in found] == ["unknown-key", "money", "unknown-key"]
