"""The gateway side of budget actions, evaluated with the CEL runtime.

Contexts are built as the gateway builds them: the key Secret (labels and
annotations as external-secrets and ``costplan guard`` leave them) is
``auth.identity`` for the AuthPolicy's expressions; the identity they
publish is ``auth.identity`` for the limit predicates.
"""

from __future__ import annotations

import json
from typing import Any

import cel

from costplan.core import conventions as c
from costplan.generators import kuadrant
from costplan.generators.kuadrant import secrets
from costplan.guard import decide
from costplan.plan.load import load_plan
from tests.conftest import PLAN, ROOT

BUDGETS = ROOT / "tests" / "plans" / "budgets.yaml"


def auth_policy(plan) -> dict[str, Any]:
    return next(a.data for a in kuadrant.generate(plan) if a.data["kind"] == "AuthPolicy")


def key_secret(plan, team_name: str, user_id: str, wanted: decide.Wanted | None = None) -> dict[str, Any]:
    team = plan.team(team_name)
    user = next(u for u in team.users if u.id == user_id)
    secret = {"metadata": {"name": user.api_key.secret_name,
                           "labels": secrets.owned_key_labels(plan),
                           "annotations": secrets.key_secret_annotations(team, user)}}
    if wanted is not None:  # what the guard's merge patch leaves on the Secret
        for part in ("labels", "annotations"):
            for key, value in decide.patch(wanted)["metadata"][part].items():
                if value is not None:
                    secret["metadata"][part][key] = value
    return secret


def allowed(policy: dict[str, Any], secret: dict[str, Any]) -> bool:
    rules = policy["spec"]["rules"]["authorization"]
    context = {"auth": {"identity": secret}}
    results = [cel.evaluate(p["predicate"], context) for rule in rules.values() for p in rule["patternMatching"]["patterns"]]
    assert all(isinstance(r, bool) for r in results)
    return all(results)


def identity(policy: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    props = policy["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"]["properties"]
    return {name: cel.evaluate(p["expression"], {"auth": {"identity": secret}}) for name, p in props.items()}


def matched_tiers(plan, ident: dict[str, Any]) -> set[str]:
    """Tiers whose rate limits apply to a request with this identity."""
    found = set()
    for obj in (a.data for a in kuadrant.generate(plan)):
        if obj["kind"] not in ("RateLimitPolicy", "TokenRateLimitPolicy"):
            continue
        spec = obj["spec"]
        for limit in (spec.get("limits") or spec["defaults"]["limits"]).values():
            if all(cel.evaluate(w["predicate"], {"auth": {"identity": ident}}) for w in limit["when"]):
                found.add(limit["when"][0]["predicate"])
    return found


def test_a_normal_key_is_allowed_and_keeps_its_tier():
    plan = load_plan(BUDGETS, None)
    policy = auth_policy(plan)
    secret = key_secret(plan, "research", "alice")
    assert allowed(policy, secret)
    assert identity(policy, secret)[c.IDENTITY_TIER] == "premium"


def test_a_throttled_key_is_allowed_and_limited_as_the_lower_tier():
    plan = load_plan(BUDGETS, None)
    policy = auth_policy(plan)
    secret = key_secret(plan, "research", "alice", decide.Wanted(decide.THROTTLED, tier="free"))
    assert allowed(policy, secret)
    ident = identity(policy, secret)
    assert ident[c.IDENTITY_TIER] == "free" and ident[c.IDENTITY_GROUPS] == "free"
    assert ident[c.IDENTITY_TEAM] == "research" and ident[c.IDENTITY_USER] == "alice"
    normal = identity(policy, key_secret(plan, "research", "alice"))
    assert matched_tiers(plan, ident) != matched_tiers(plan, normal)
    assert matched_tiers(plan, ident) == matched_tiers(plan, identity(policy, key_secret(plan, "ops", "dave")))


def test_a_blocked_key_is_refused_with_429_and_a_json_body_naming_the_budget():
    plan = load_plan(BUDGETS, None)
    policy = auth_policy(plan)
    detail = json.dumps({"budget": "monthly", "currency": "EUR", "error": "budget_exceeded", "limit": "1000",
                         "period": "month", "resets": "2026-01-01T00:00:00+01:00", "spent": "1012.5",
                         "team": "research"}, sort_keys=True, separators=(",", ":"))
    secret = key_secret(plan, "research", "bob", decide.Wanted(decide.BLOCKED, detail=detail))
    assert not allowed(policy, secret)
    unauthorized = policy["spec"]["rules"]["response"]["unauthorized"]
    assert unauthorized["code"] == 429
    assert unauthorized["headers"]["content-type"]["value"] == "application/json"
    body = json.loads(cel.evaluate(unauthorized["body"]["expression"], {"auth": {"identity": secret}}))
    assert body == {"budget": "monthly", "currency": "EUR", "error": "budget_exceeded", "limit": "1000",
                    "period": "month", "resets": "2026-01-01T00:00:00+01:00", "spent": "1012.5", "team": "research"}
    # The other team's keys are unaffected by research being blocked.
    assert allowed(policy, key_secret(plan, "support", "carol"))


def test_a_blocked_key_without_detail_still_gets_a_json_body():
    plan = load_plan(BUDGETS, None)
    policy = auth_policy(plan)
    secret = key_secret(plan, "research", "bob", decide.Wanted(decide.BLOCKED))
    body = cel.evaluate(policy["spec"]["rules"]["response"]["unauthorized"]["body"]["expression"],
                        {"auth": {"identity": secret}})
    assert json.loads(body)["error"] == "budget_exceeded"


def test_plans_without_enforcing_budgets_get_the_auth_policy_unchanged():
    plan = load_plan(PLAN, None)
    policy = auth_policy(plan)
    assert "authorization" not in policy["spec"]["rules"]
    assert "unauthorized" not in policy["spec"]["rules"]["response"]
