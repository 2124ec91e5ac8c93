"""API keys never in git: key Secrets by reference, and a scan of all output."""

from __future__ import annotations

import dataclasses
import re

import pytest

from costplan.core import conventions as c
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators import kuadrant
from costplan.generators.kuadrant import secrets
from costplan.output.build import compile_plan
from costplan.plan.model import ApiKeyRef
from tests.conftest import ENVIRONMENTS

ALL_ENVS = (None,) + ENVIRONMENTS

# What key material looks like when it leaks into YAML.
KEY_PATTERNS = {
    "api_key value": re.compile(r"""(?im)^[ \t]*["']?api[_-]?key["']?[ \t]*:[ \t]*["']?[A-Za-z0-9_\-+/=.]{12,}"""),
    "sk- token": re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    "APIKEY credential": re.compile(r"\bAPIKEY[ \t]+[A-Za-z0-9_\-+/=.]{8,}"),
    "bearer token": re.compile(r"(?i)\bbearer[ \t]+[A-Za-z0-9_\-+/=.]{20,}"),
}
SECRET_CARRIERS = ("data", "stringData")


def key_material(text: str) -> list[str]:
    return [name for name, pattern in KEY_PATTERNS.items() if pattern.search(text)]


def secret_payloads(obj) -> list[str]:
    """Secrets (or anything shaped like one) that carry values in git."""
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return []
    return [key for key in SECRET_CARRIERS if obj.get(key)]


def base64_blobs(text: str) -> list[str]:
    return re.findall(r"(?m)^\s+[A-Za-z0-9_.\-]+:\s+([A-Za-z0-9+/]{40,}={0,2})\s*$", text)


def test_scanner_finds_planted_keys():
    """The scan is only worth something if it sees a leak."""
    assert key_material("stringData:\n  api_key: freeuser1_key_0123456789\n") == ["api_key value"]
    assert key_material("token: sk-proj-abcdefghijklmnop1234") == ["sk- token"]
    assert key_material("curl -H 'Authorization: APIKEY premiumuser1_key'") == ["APIKEY credential"]
    assert secret_payloads({"kind": "Secret", "data": {"api_key": "Zm9v"}}) == ["data"]
    assert base64_blobs("data:\n  api_key: " + "QUJD" * 12 + "\n")


@pytest.mark.parametrize("env", ALL_ENVS, ids=lambda e: e or "base")
def test_no_build_output_contains_key_material(bundled_plan, env):
    artifacts = compile_plan(bundled_plan(env))
    assert any(a.component == "kuadrant" for a in artifacts)
    for artifact in artifacts:
        text = dump_yaml(artifact.data) if not isinstance(artifact.data, str) else artifact.data
        assert key_material(text) == [], artifact.path
        assert secret_payloads(artifact.data) == [], artifact.path
        assert base64_blobs(text) == [], artifact.path


def test_no_store_means_nothing_secret(bundled_plan):
    for env in (None, "dev", "staging"):
        plan = bundled_plan(env)
        assert plan.integrations.secrets.backend == "none"
        kinds = {a.kind for a in compile_plan(plan)}
        assert not kinds & {"Secret", "ExternalSecret", "SealedSecret"}


def test_prod_has_one_external_secret_per_user(bundled_plan):
    plan = bundled_plan("prod")
    generated = {a.data["metadata"]["name"]: a.data for a in secrets.generate(plan)}
    assert set(generated) == {user.api_key.secret_name for _, user in plan.users()}
    assert "apikey-search-eval" in generated  # the prod-only team
    for team, user in plan.users():
        spec = generated[user.api_key.secret_name]["spec"]
        assert generated[user.api_key.secret_name]["metadata"]["namespace"] == plan.integrations.gateway.api_key.secret_namespace
        assert spec["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault-llm"}
        assert spec["refreshInterval"] == "1h"
        assert spec["data"] == [
            {
                "remoteRef": {"key": user.api_key.remote_key, "property": c.SECRET_API_KEY_FIELD},
                "secretKey": c.SECRET_API_KEY_FIELD,
            }
        ]
        assert spec["target"]["name"] == user.api_key.secret_name
        template = spec["target"]["template"]["metadata"]
        assert template["annotations"] == {
            c.ANNOTATION_USER_ID: user.id,
            c.ANNOTATION_TEAM: team.name,
            c.ANNOTATION_TIER: team.tier,
            c.ANNOTATION_GROUPS: team.tier,
            c.ANNOTATION_COST_CENTER: team.cost_center,
        }


def test_produced_secrets_are_exactly_what_the_auth_policy_selects(bundled_plan):
    plan = bundled_plan("prod")
    auth = next(a.data for a in kuadrant.generate(plan) if a.kind == "AuthPolicy")
    selector = next(iter(auth["spec"]["rules"]["authentication"].values()))["apiKey"]["selector"]
    for artifact in secrets.generate(plan):
        labels = artifact.data["spec"]["target"]["template"]["metadata"]["labels"]
        # Everything the selector asks for, plus the plan's label that costplan guard checks.
        assert labels == {**selector["matchLabels"], "costplan.dev/plan": plan.name}


def test_users_without_a_remote_key_get_no_guess(bundled_plan):
    plan = bundled_plan("prod")
    team = plan.teams[0]
    user = dataclasses.replace(team.users[0], api_key=ApiKeyRef(secret_name="apikey-manual"))
    plan = dataclasses.replace(
        plan, teams=(dataclasses.replace(team, users=(user,) + team.users[1:]),) + plan.teams[1:]
    )
    names = {a.name for a in secrets.generate(plan)}
    assert "apikey-manual" not in names and len(names) == len(plan.users()) - 1
