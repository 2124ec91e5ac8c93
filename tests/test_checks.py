"""Semantic checks on schema-valid plans, and on plans merged with broken overlays.

Broken plans are patches of ``tests/plans/minimal.yaml``; expected positions
are ``line:column`` in the patched file. Every case runs the real entry point,
``pipeline.validate_document(pipeline.load_document(path, env))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from costplan.core.diagnostics import CHECKS
from costplan.plan import checks
from costplan.plan import load as pipeline
from tests.conftest import patched_minimal

MINIMAL = Path(__file__).parent / "plans" / "minimal.yaml"
PLAN = "costplan.yaml"
OVERLAY = "environments/x.yaml"


patched = patched_minimal


def diagnose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_text: str, overlay: str | None = None) -> list:
    (tmp_path / PLAN).write_text(plan_text, encoding="utf-8")
    if overlay is not None:
        (tmp_path / "environments").mkdir()
        (tmp_path / OVERLAY).write_text(overlay, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded = pipeline.load_document(Path(PLAN), "x" if overlay is not None else None)
    return pipeline.validate_document(loaded)


def errors_of(found: list) -> list[tuple[str, str, str, str]]:
    return [(d.file, f"{d.line}:{d.column}", d.pointer, d.check_id) for d in found if d.severity == "error"]


class Broken(NamedTuple):
    id: str
    patches: tuple[tuple[str, str], ...]
    expected: tuple[tuple[str, str, str], ...]  # (line:column, pointer, check id), in order
    says: str  # a piece of the first message


def one(where: str, pointer: str, check_id: str) -> tuple[tuple[str, str, str], ...]:
    return ((where, pointer, check_id),)


WITH_STORE = ("    backend: none",
              "    backend: external-secrets\n    store:\n      kind: SecretStore\n      name: vault")
PER_TOKEN = ("      type: perRequest\n      price: 0.002",
             "      type: perMillionTokens\n      input: 1\n      output: 2")

THROTTLE_FREE = "        actions:\n          - at: 90\n            action: throttle\n            tier: free\n"

BROKEN = [
    # -- references ------------------------------------------------------
    Broken("team refers to an unknown tier",
           (("    tier: free\n", "    tier: fre\n"),),
           one("82:11", "/teams/0/tier", "unknown-reference"), "unknown tier 'fre' (did you mean 'free'?)"),
    Broken("unknown tier with nothing alike lists the known ones",
           (("    tier: free\n", "    tier: gold\n"),),
           one("82:11", "/teams/0/tier", "unknown-reference"), "unknown tier 'gold' (known: free, premium)"),
    Broken("user refers to an unknown tier",
           (("      - id: carol", "      - id: carol\n        tier: premum"),),
           one("98:15", "/teams/1/users/0/tier", "unknown-reference"), "unknown tier 'premum' (did you mean 'premium'?)"),
    Broken("model refers to an unknown usage source",
           (("    usageSource: limitador", "    usageSource: limitadr"),),
           one("42:18", "/models/0/usageSource", "unknown-reference"), "did you mean 'limitador'?"),
    Broken("model refers to an unknown GPU instance",
           (("    usageSource: limitador\n    gpuInstance: a10g",
             "    usageSource: limitador\n    gpuInstance: a100g"),),
           one("43:18", "/models/0/gpuInstance", "unknown-reference"), "unknown GPU instance 'a100g'"),
    Broken("price override refers to an unknown model",
           (("      - model: small", "      - model: smal"),),
           one("74:16", "/tiers/1/priceOverrides/0/model", "unknown-reference"), "unknown model 'smal'"),
    Broken("idle GPU cost charged to an unknown team",
           (("models:\n", "gpuIdleCost:\n  share: team\n  team: reserch\nmodels:\n"),),
           one("39:9", "/gpuIdleCost/team", "unknown-reference"), "unknown team 'reserch' (did you mean 'research'?)"),
    Broken("a cluster serves an unknown model",
           (("    window: 30d\n", "    window: 30d\nclusters:\n  - name: eu\n    models: [smal]\n"
             "metrics:\n  engine: victoriametrics\n  queryURL: http://vm:8428\n"),),
           one("105:14", "/clusters/0/models/0", "unknown-reference"), "unknown model 'smal' (did you mean 'small'?)"),
    Broken("clusters without a global engine",
           (("    window: 30d\n", "    window: 30d\nclusters:\n  - name: eu\n"),),
           one("104:3", "/clusters", "fleet"), "clusters need a metrics section"),
    # -- uniqueness ------------------------------------------------------
    Broken("duplicate team name",
           (("  - name: support", "  - name: research"),),
           one("93:11", "/teams/1/name", "unique-name"), "duplicate team name 'research' (first defined at line 79)"),
    Broken("duplicate model name",
           (("  - name: guard", "  - name: batch"),),
           one("58:11", "/models/2/name", "unique-name"), "duplicate model name 'batch'"),
    Broken("duplicate user id across two teams",
           (("      - id: carol", "      - id: alice"),),
           one("97:13", "/teams/1/users/0/id", "unique-name"), "duplicate user id 'alice' (first defined at line 84)"),
    Broken("two users share one key Secret",
           (("      - id: carol", "      - id: carol\n        apiKey:\n          secretName: apikey-alice"),),
           one("99:23", "/teams/1/users/0/apiKey/secretName", "unique-name"),
           "Secret 'apikey-alice' already holds the key of user 'alice'"),
    Broken("namespace owned by two teams",
           (("    costCenter: CC-2\n", "    costCenter: CC-2\n    namespaces: [research]\n"),),
           one("95:18", "/teams/1/namespaces/0", "unique-name"), "already belongs to team 'research'"),
    Broken("two models bill the same served model",
           (("  - name: batch\n    provider", "  - name: batch\n    modelName: guard\n    provider"),),
           one("59:11", "/models/2/name", "unique-name"), "model 'batch' already uses modelName 'guard'"),
    # -- ordering and pricing ----------------------------------------------
    Broken("descending budget thresholds",
           (("[80, 100]", "[100, 80]"),),
           one("92:27", "/teams/0/budgets/0/thresholds/1", "thresholds-order"), "80 comes after 100"),
    Broken("volume tiers out of order",
           (("        - from: 1000000", "        - from: 0"),),
           one("56:17", "/models/1/pricing/tiers/1/from", "thresholds-order"), "strictly ascending"),
    Broken("volume tiers not starting at 0",
           (("        - from: 0\n", "        - from: 10\n"),),
           one("54:17", "/models/1/pricing/tiers/0/from", "pricing"), "must start at 0, not 10"),
    Broken("gpuHourly pricing without a namespace",
           (("    namespace: llm\n    usageSource: vllm", "    usageSource: vllm"),),
           one("63:13", "/models/2/pricing/type", "pricing"), "gpuHourly pricing needs the model's namespace"),
    # -- money -------------------------------------------------------------
    Broken("11 decimal places",
           (("      price: 0.002", "      price: 0.00000000001"),),
           one("46:14", "/models/0/pricing/price", "money"), "0.00000000001 has 11 decimal places"),
    Broken("11 decimal places in a decimal string",
           (("    amount: 1000", '    amount: "1000.00000000001"'),),
           one("100:13", "/budgets/0/amount", "money"), "has 11 decimal places"),
    Broken("budget window in years",
           (("    window: 30d", "    window: 1y"),),
           one("102:13", "/budgets/0/window", "budget-window"), "written in w, d, h, m and s"),
    Broken("budget window shorter than the spend step",
           (("    window: 30d", "    window: 0d"),),
           one("102:13", "/budgets/0/window", "budget-window"), "at least 1h"),
    Broken("budget window beyond what Prometheus can range over",
           (("    window: 30d", "    window: 20000w"),),
           one("102:13", "/budgets/0/window", "budget-window"), "at most 366d"),
    Broken("a report job's memory request above the default limit",
           (("    window: 30d", "    window: 30d\nreports:\n  resources:\n    requests:\n      memory: 2Gi"),),
           one("106:15", "/reports/resources/requests/memory", "resources"),
           "memory request of 2Gi is above the default limit of 512Mi"),
    Broken("a report job's CPU request above its limit, in other units",
           (("    window: 30d", "    window: 30d\nreports:\n  resources:\n    requests:\n      cpu: \"1.5\"\n"
             "    limits:\n      cpu: 1200m\n      memory: 4Gi"),),
           one("106:12", "/reports/resources/requests/cpu", "resources"), "cpu request of 1.5 is above its limit of 1200m"),
    Broken("a memory size that is no Kubernetes quantity",
           (("    window: 30d", "    window: 30d\nreports:\n  resources:\n    limits:\n      memory: 1GB"),),
           one("106:15", "/reports/resources/limits/memory", "schema"), "a memory size (e.g. 512Mi, 1Gi)"),
    Broken("infinite amount",
           (("    hourlyRate: 1.006", "    hourlyRate: .inf"),),
           (("36:17", "/gpuInstances/0/hourlyRate", "number"), ("36:17", "/gpuInstances/0/hourlyRate", "money")),
           "is not a finite number"),
    # -- names and injection -----------------------------------------------
    Broken("team name that is not a DNS label",
           (("  - name: research", "  - name: Research_Team"),),
           one("79:11", "/teams/0/name", "k8s-name"), "team name 'Research_Team' is not a DNS label"),
    Broken("namespace that is not a DNS label",
           (("[research]", "[Research]"),),
           one("81:18", "/teams/0/namespaces/0", "k8s-name"), "namespace 'Research' is not a DNS label"),
    Broken("Secret name that is not a DNS subdomain",
           (("apikey-bob", "apikey_bob"),),
           one("87:23", "/teams/0/users/1/apiKey/secretName", "k8s-name"), "not a valid Kubernetes object name"),
    Broken("report webhook Secret that is not a DNS subdomain",
           (("budgets:\n  - name: company",
             "reports:\n  webhook:\n    secretName: Hook\nbudgets:\n  - name: company"),),
           one("100:17", "/reports/webhook/secretName", "k8s-name"), "'Hook' is not a valid Kubernetes object name"),
    Broken("user id with a quote",
           (("      - id: alice", "      - id: 'al\"ice'"),),
           one("84:13", "/teams/0/users/0/id", "unsafe-value"), "contains a double quote"),
    Broken("user id with a newline",
           (("      - id: alice", '      - id: "ali\\nce"'),),
           one("84:13", "/teams/0/users/0/id", "unsafe-value"), "contains a line break"),
    Broken("user id trying PromQL injection",
           (("      - id: alice", "      - id: '\"} or vector(1)'"),),
           one("84:13", "/teams/0/users/0/id", "unsafe-value"), "it is used inside PromQL and CEL expressions"),
    Broken("user id trying CEL injection",
           (("      - id: alice", "      - id: 'alice\\ || true'"),),
           one("84:13", "/teams/0/users/0/id", "unsafe-value"), "contains a backslash"),
    Broken("user id that is not a label value",
           (("      - id: alice", "      - id: alice smith"),),
           one("84:13", "/teams/0/users/0/id", "label-value"), "'alice smith' is not a valid label value"),
    Broken("team label key that is not a label key",
           (("    tier: premium\n", "    tier: premium\n    labels:\n      bad key: x\n"),),
           one("97:7", "/teams/1/labels/bad key", "label-value"), "'bad key' is not a valid label key"),
    Broken("modelName with a quote",
           (("Qwen/Qwen3-0.6B", "Qwen/Qwen3\"0.6B"),),
           one("39:16", "/models/0/modelName", "unsafe-value"), "modelName 'Qwen/Qwen3\"0.6B' contains a double quote"),
    # -- metadata and integrations ------------------------------------------
    Broken("currency that is not ISO 4217",
           (("currency: USD", "currency: XYZ"),),
           one("8:13", "/metadata/currency", "currency"), "'XYZ' is not an ISO 4217 currency code"),
    Broken("lowercase currency",
           (("currency: USD", "currency: usd"),),
           one("8:13", "/metadata/currency", "currency"), "did you mean 'USD'?"),
    Broken("timezone that is not IANA",
           (("timezone: UTC", "timezone: Europe/Berln"),),
           one("9:13", "/metadata/timezone", "timezone"), "did you mean 'Europe/Berlin'?"),
    Broken("Prometheus URL that is not http",
           (("url: http://prometheus:9090", "url: prometheus:9090"),),
           one("17:10", "/integrations/prometheus/url", "url"), "not an http:// or https:// URL"),
    # -- secrets -------------------------------------------------------------
    Broken("external-secrets without a store",
           (("    backend: none", "    backend: external-secrets"),
            ("      - id: alice\n", "      - id: alice\n        apiKey:\n          remoteKey: k/alice\n"),
            ("          secretName: apikey-bob", "          secretName: apikey-bob\n          remoteKey: k/bob"),
            ("      - id: carol", "      - id: carol\n        apiKey:\n          remoteKey: k/carol")),
           one("20:14", "/integrations/secrets/backend", "secrets"), "backend external-secrets needs a store"),
    Broken("external-secrets users without remoteKey",
           (WITH_STORE,),
           (("87:13", "/teams/0/users/0/id", "secrets"), ("88:13", "/teams/0/users/1/id", "secrets"),
            ("100:13", "/teams/1/users/0/id", "secrets")),
           "user 'alice' needs apiKey.remoteKey"),
    # -- usage sources -------------------------------------------------------
    Broken("perMillionTokens on a Limitador source",
           (PER_TOKEN,),
           one("45:13", "/models/0/pricing/type", "usage-source"),
           "perMillionTokens pricing needs input and output token counts, which usage source 'limitador' "
           "(kuadrant-limitador) does not measure"),
    Broken("a tier override the model's source cannot measure",
           (("          type: perRequest\n          price: 0.001",
             "          type: perMillionTokens\n          input: 1\n          output: 2"),),
           one("76:17", "/tiers/1/priceOverrides/0/pricing/type", "usage-source"),
           "needs input and output token counts, which usage source 'limitador'"),
    Broken("custom source without the counter its model's pricing needs",
           (("    usageSource: vllm\n    pricing:\n      type: tieredVolume",
             "    usageSource: apps\n    pricing:\n      type: tieredVolume"),),
           one("51:13", "/models/1/pricing/type", "usage-source"), "usage source 'apps' (custom)"),
    Broken("metrics on a source with fixed metrics",
           (("    type: vllm\n", "    type: vllm\n    metrics:\n      requests: x_total\n"),),
           one("26:5", "/usageSources/1/metrics", "usage-source"), "only custom usage sources take metrics"),
    # -- budget actions and contacts ----------------------------------------
    Broken("throttling to the team's own tier",
           (("        thresholds: [80, 100]\n", "        thresholds: [80, 100]\n" + THROTTLE_FREE),),
           one("96:19", "/teams/0/budgets/0/actions/0/tier", "budget-action"), "the team's own tier, changes nothing"),
    Broken("actions on a global budget",
           (("    window: 30d\n", "    window: 30d\n    actions:\n      - at: 100\n        action: block\n"),),
           one("103:5", "/budgets/0/actions", "budget-action"), "actions apply to team budgets only"),
    Broken("a throttle at or after a block",
           (("    tier: free\n    users:", "    tier: premium\n    users:"),
            ("        thresholds: [80, 100]\n", "        thresholds: [80, 100]\n        actions:\n"
             "          - at: 100\n            action: block\n"
             "          - at: 100\n            action: throttle\n            tier: free\n")),
           one("96:17", "/teams/0/budgets/0/actions/1/at", "budget-action"), "throttle at 100% never takes effect"),
    Broken("the same action twice",
           (("        thresholds: [80, 100]\n", "        thresholds: [80, 100]\n        actions:\n"
             "          - at: 100\n            action: block\n          - at: 100\n            action: block\n"),),
           one("96:13", "/teams/0/budgets/0/actions/1", "budget-action"), "block at 100% is listed twice"),
    Broken("throttle without a tier",
           (("        thresholds: [80, 100]\n",
             "        thresholds: [80, 100]\n        actions:\n          - at: 90\n            action: throttle\n"),),
           one("94:13", "/teams/0/budgets/0/actions/0", "schema"), "missing required key 'tier' for throttle actions"),
    Broken("email contact without an SMTP relay",
           (("      - id: carol\n", "      - id: carol\n    contacts:\n      - type: email\n        to: carol@example.com\n"),),
           one("99:15", "/teams/1/contacts/0/type", "contacts"), "email contacts need notifications.email"),
    Broken("a contact URL written inline instead of a Secret reference",
           (("      - id: carol\n", "      - id: carol\n    contacts:\n      - type: slack\n"
             "        url: https://hooks.slack.com/x\n"),),
           one("100:9", "/teams/1/contacts/0/url", "unknown-key"), "unknown key 'url' (did you mean 'secret'?)"),
    Broken("a contact Secret name that is no Secret name",
           (("      - id: carol\n", "      - id: carol\n    contacts:\n      - type: slack\n        secret:\n"
             "          secretName: Bad_Name\n"),),
           one("101:23", "/teams/1/contacts/0/secret/secretName", "k8s-name"), "is not a valid Secret name"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_broken_plan(case, tmp_path, monkeypatch):
    found = diagnose(tmp_path, monkeypatch, patched(*case.patches))
    assert errors_of(found) == [(PLAN, *expected) for expected in case.expected]
    assert case.says in found[0].message


class BrokenOverlay(NamedTuple):
    id: str
    overlay: str
    expected: tuple[str, str, str, str]  # file, line:column, pointer, check id
    says: str


BROKEN_OVERLAYS = [
    BrokenOverlay("overlay sets a negative budget amount",
                  "teams:\n  - name: research\n    budgets:\n      - name: monthly\n        amount: -5\n",
                  (OVERLAY, "5:17", "/teams/0/budgets/0/amount", "money"), "must not be negative, got -5"),
    BrokenOverlay("overlay references an unknown tier",
                  "teams:\n  - name: support\n    tier: premum\n",
                  (OVERLAY, "3:11", "/teams/1/tier", "unknown-reference"), "did you mean 'premium'?"),
    BrokenOverlay("overlay deletes a model the plan does not have",
                  "models:\n  - name: huge\n    $patch: delete\n",
                  (OVERLAY, "2:5", "/models/0", "overlay"), "cannot delete name 'huge'"),
    BrokenOverlay("overlay list item without a name",
                  "tiers:\n  - priceMultiplier: 2\n",
                  (OVERLAY, "2:5", "/tiers/0", "overlay"), "need a 'name' to merge on"),
    BrokenOverlay("overlay adds a team without a cost center",
                  "teams:\n  - name: newteam\n    tier: free\n",
                  (OVERLAY, "2:5", "/teams/2", "schema"), "missing required key 'costCenter'"),
    BrokenOverlay("overlay misspells a key",
                  "integrations:\n  prometheus:\n    namespce: monitoring-dev\n",
                  (OVERLAY, "3:5", "/integrations/prometheus/namespce", "unknown-key"), "did you mean 'namespace'?"),
    BrokenOverlay("overlay sets a timezone that does not exist",
                  "metadata:\n  timezone: Mars/Olympus\n",
                  (OVERLAY, "2:13", "/metadata/timezone", "timezone"), "'Mars/Olympus' is not an IANA time zone"),
    BrokenOverlay("overlay adds a user whose id another team has",
                  "teams:\n  - name: support\n    users:\n      - id: alice\n",
                  (OVERLAY, "4:13", "/teams/1/users/1/id", "unique-name"), "(first defined at costplan.yaml:84)"),
    BrokenOverlay("overlay switches to external-secrets without a store",
                  "integrations:\n  secrets:\n    backend: external-secrets\n",
                  (OVERLAY, "3:14", "/integrations/secrets/backend", "secrets"), "needs a store"),
]


@pytest.mark.parametrize("case", BROKEN_OVERLAYS, ids=[c.id for c in BROKEN_OVERLAYS])
def test_broken_overlay_points_into_the_overlay(case, tmp_path, monkeypatch):
    found = diagnose(tmp_path, monkeypatch, MINIMAL.read_text(encoding="utf-8"), overlay=case.overlay)
    errors = errors_of(found)
    assert case.expected in errors
    if case.expected[3] != "secrets":  # external-secrets also asks every user for a remoteKey
        assert errors == [case.expected]
    assert case.says in next(d.message for d in found if d.pointer == case.expected[2])


def test_a_valid_overlay_has_no_diagnostics(tmp_path, monkeypatch):
    overlay = "metadata:\n  timezone: Europe/Berlin\nteams:\n  - name: research\n    tier: premium\n"
    assert diagnose(tmp_path, monkeypatch, MINIMAL.read_text(encoding="utf-8"), overlay=overlay) == []


# --------------------------------------------------------------------------
# Warnings and coverage
# --------------------------------------------------------------------------


def test_tier_without_effect_is_a_warning_not_an_error(tmp_path, monkeypatch):
    text = patched(("    priceMultiplier: 0.8\n    priceOverrides:\n      - model: small\n        pricing:\n"
                    "          type: perRequest\n          price: 0.001\n", ""))
    found = diagnose(tmp_path, monkeypatch, text)
    assert [(d.line, d.column, d.pointer, d.check_id, d.severity) for d in found] == [
        (71, 11, "/tiers/1/name", "tier-no-effect", "warning")
    ]
    assert pipeline.load_plan(Path(PLAN)).tier("premium").price_multiplier == 1  # still loads


def test_store_without_external_secrets_is_a_warning(tmp_path, monkeypatch):
    text = patched(("    backend: none", "    backend: none\n    store:\n      kind: SecretStore\n      name: vault"))
    found = diagnose(tmp_path, monkeypatch, text)
    assert [(d.line, d.column, d.check_id, d.severity) for d in found] == [(21, 5, "secrets", "warning")]


def test_every_failure_is_reported_at_once(tmp_path, monkeypatch):
    text = patched(("    tier: free\n", "    tier: gold\n"), ("currency: USD", "currency: XYZ"),
                   ("[80, 100]", "[100, 80]"))
    assert [d.check_id for d in diagnose(tmp_path, monkeypatch, text)] == [
        "currency", "unknown-reference", "thresholds-order"
    ]


def test_every_check_id_of_the_checks_module_is_registered_and_exercised():
    source = Path(checks.__file__).read_text(encoding="utf-8")
    emitted = {check_id for check_id in CHECKS if f'"{check_id}"' in source}
    fired = {e[2] for c in BROKEN for e in c.expected} | {c.expected[3] for c in BROKEN_OVERLAYS}
    fired |= {"tier-no-effect", "gateway-telemetry", "legacy-image"}  # the warning tests
    assert len(emitted) >= 14
    assert emitted <= fired
    assert fired <= set(CHECKS)


def test_run_all_on_the_bundled_plan_is_empty():
    loaded = pipeline.load_document(Path(__file__).resolve().parents[1] / "costplan.yaml", "prod")
    assert checks.run_all(loaded.document) == []


def test_http_route_target_with_telemetry_policy_warns(tmp_path, monkeypatch):
    text = patched(("    kind: Gateway\n", "    kind: HTTPRoute\n"))
    found = diagnose(tmp_path, monkeypatch, text)
    assert errors_of(found) == []
    warning = [d for d in found if d.check_id == "gateway-telemetry"]
    assert len(warning) == 1 and warning[0].severity == "warning"
    assert warning[0].pointer == "/integrations/gateway/targetRef/kind"


def test_two_models_cannot_share_a_limitador_source(tmp_path, monkeypatch):
    plan = MINIMAL.read_text(encoding="utf-8")
    found = diagnose(tmp_path, monkeypatch, plan.replace("usageSource: vllm", "usageSource: limitador", 1))
    errors = [d for d in found if d.check_id == "usage-source"]
    assert errors and "counts calls without a model label" in errors[0].message
    assert errors[0].pointer.endswith("/usageSource")


def test_gpu_instance_types_are_unique(tmp_path, monkeypatch):
    plan = MINIMAL.read_text(encoding="utf-8")
    assert plan.count("instanceType: ") >= 1
    first = plan.split("instanceType: ")[1].split("\n")[0]
    doubled = plan.replace("gpuInstances:\n", f"gpuInstances:\n  - name: again\n    instanceType: {first}\n"
                           "    gpuModel: X\n    gpusPerNode: 1\n    hourlyRate: 1\n", 1)
    found = diagnose(tmp_path, monkeypatch, doubled)
    assert any(d.check_id == "unique-name" and "GPU instance type" in d.message for d in found), found


@pytest.mark.parametrize(("image", "warned"), [
    (None, True),
    ("ghcr.io/nerdalert/limitador:latest", True),
    ("ghcr.io/nerdalert/limitador", True),
    ("registry:5000/limitador", True),
    ("ghcr.io/nerdalert/limitador:chargeback-2025-06", False),
    ("ghcr.io/nerdalert/limitador@sha256:" + "ab" * 32, False),
])
def test_the_custom_limitador_image_must_be_pinned(tmp_path, monkeypatch, image, warned):
    extra = "" if image is None else f"\n      image: {image}"
    text = MINIMAL.read_text(encoding="utf-8").replace(
        "    targetRef:\n      kind: Gateway\n      name: gw\n",
        f"    targetRef:\n      kind: Gateway\n      name: gw\n    limitador:\n      metrics: legacyImage{extra}\n", 1)
    found = [d for d in diagnose(tmp_path, monkeypatch, text) if d.check_id == "legacy-image"]
    assert bool(found) is warned
    assert all(d.severity == "warning" for d in found)
