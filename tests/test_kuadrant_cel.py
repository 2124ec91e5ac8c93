"""CEL is tested, not trusted: every generated expression is evaluated.

Request contexts are built the way the gateway builds them: the key Secret
(with the annotations costplan gives it) is ``auth.identity`` for the
AuthPolicy's expressions, and their results are ``auth.identity`` for the
rate-limit predicates, counters and telemetry labels.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import cel
import pytest

from costplan.core import conventions as c
from costplan.generators import kuadrant
from costplan.generators.kuadrant import secrets
from costplan.plan.model import Team, User

ENVS = (None, "dev", "prod", "staging")
MODEL = "Qwen/Qwen3-0.6B"


def objects(plan) -> list[dict[str, Any]]:
    return [a.data for a in kuadrant.generate(plan)]


def policy_limits(plan) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, limit name, limit) for every limit of every limit policy."""
    for obj in objects(plan):
        spec = obj["spec"]
        if obj["kind"] in ("RateLimitPolicy", "TokenRateLimitPolicy"):
            for name, limit in (spec.get("limits") or spec["defaults"]["limits"]).items():
                yield obj["kind"], name, limit


def plan_predicates(plan) -> Iterator[tuple[str, str]]:
    for obj in objects(plan):
        if obj["kind"] == "PlanPolicy":
            for entry in obj["spec"]["plans"]:
                yield entry["tier"], entry["predicate"]


def key_secret(team: Team, user: User) -> dict[str, Any]:
    """The Secret external-secrets (or an operator) creates for ``user``."""
    return {
        "metadata": {
            "name": user.api_key.secret_name,
            "labels": secrets.key_secret_labels(),
            "annotations": secrets.key_secret_annotations(team, user),
        }
    }


def identity_of(plan, team: Team, user: User) -> dict[str, Any]:
    """What the AuthPolicy publishes as ``auth.identity`` for this user's key."""
    auth = next(o for o in objects(plan) if o["kind"] == "AuthPolicy")
    properties = auth["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"]["properties"]
    context = {"auth": {"identity": key_secret(team, user)}}
    return {name: cel.evaluate(prop["expression"], context) for name, prop in properties.items()}


def request_context(plan, team: Team, user: User) -> dict[str, Any]:
    return {"auth": {"identity": identity_of(plan, team, user)}}


def matches(expression: str, context: dict[str, Any]) -> bool:
    result = cel.evaluate(expression, context)
    assert isinstance(result, bool), f"{expression!r} is not a predicate"
    return result


def matched_limits(plan, context) -> set[tuple[str, str]]:
    return {
        (kind, name)
        for kind, name, limit in policy_limits(plan)
        if all(matches(w["predicate"], context) for w in limit["when"])
    }


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e or "base")
def test_identity_flows_from_key_secret_to_auth_identity(bundled_plan, env):
    plan = bundled_plan(env)
    for team, user in plan.users():
        assert identity_of(plan, team, user) == {
            c.IDENTITY_USER: user.id,
            c.IDENTITY_TEAM: team.name,
            c.IDENTITY_TIER: team.tier,
            c.IDENTITY_COST_CENTER: team.cost_center,
            c.IDENTITY_GROUPS: team.tier,
        }


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e or "base")
def test_each_user_matches_exactly_their_tiers_limits(bundled_plan, env):
    plan = bundled_plan(env)
    for team, user in plan.users():
        tier = plan.tier(team.tier)
        expected = set()
        if tier.request_limits:
            expected.add(("RateLimitPolicy", f"{tier.name}-requests"))
        if tier.token_limits:
            expected.add(("TokenRateLimitPolicy", f"{tier.name}-tokens"))
        assert matched_limits(plan, request_context(plan, team, user)) == expected, user.id


def test_free_user_matches_only_free_and_premium_only_premium(bundled_plan):
    plan = bundled_plan(None)
    free = request_context(plan, plan.team("customer-support"), plan.team("customer-support").users[0])
    premium = request_context(plan, plan.team("ml-research"), plan.team("ml-research").users[0])
    enterprise = request_context(plan, plan.team("platform"), plan.team("platform").users[0])
    assert matched_limits(plan, free) == {("RateLimitPolicy", "free-requests"), ("TokenRateLimitPolicy", "free-tokens")}
    assert matched_limits(plan, premium) == {
        ("RateLimitPolicy", "premium-requests"),
        ("TokenRateLimitPolicy", "premium-tokens"),
    }
    assert matched_limits(plan, enterprise) == set()


def test_counters_split_limits_per_user(bundled_plan):
    plan = bundled_plan(None)
    team = plan.team("ml-research")
    keys = set()
    for user in team.users:
        context = request_context(plan, team, user)
        for _, _, limit in policy_limits(plan):
            values = [cel.evaluate(counter["expression"], context) for counter in limit["counters"]]
            assert values == [user.id]
            keys.add(tuple(values))
    assert len(keys) == len(team.users)


def test_plan_policy_predicates_pick_the_users_tier(bundled_plan):
    plan = bundled_plan(None)
    predicates = list(plan_predicates(plan))
    assert predicates, "the base plan has quotas"
    for team, user in plan.users():
        context = request_context(plan, team, user)
        # PlanPolicy: ordered, first match wins.
        first = next((tier for tier, predicate in predicates if matches(predicate, context)), None)
        assert first == (team.tier if not plan.tier(team.tier).quotas.is_empty() else None)


def test_telemetry_labels_resolve_to_the_identity(bundled_plan):
    plan = bundled_plan(None)
    policy = next(o for o in objects(plan) if o["kind"] == "TelemetryPolicy")
    labels = policy["spec"]["metrics"]["default"]["labels"]
    team = plan.team("customer-support")
    user = team.users[0]
    context = cel.Context(
        variables=request_context(plan, team, user),
        functions={"responseBodyJSON": lambda pointer: {"/model": MODEL}[pointer]},
    )
    values = {label: cel.evaluate(expression, context) for label, expression in labels.items()}
    assert values == {
        c.LABEL_USER: user.id,
        c.LABEL_TEAM: team.name,
        c.LABEL_TIER: team.tier,
        c.LABEL_COST_CENTER: team.cost_center,
        c.LABEL_MODEL: MODEL,
    }


def test_every_identity_field_used_is_published(bundled_plan):
    """Predicates, counters and labels read only what the AuthPolicy publishes."""
    plan = bundled_plan(None)
    auth = next(o for o in objects(plan) if o["kind"] == "AuthPolicy")
    published = set(auth["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"]["properties"])
    used = set()
    for obj in objects(plan):
        if obj["kind"] != "AuthPolicy":
            used |= set(re.findall(r"auth\.identity\.(\w+)", repr(obj["spec"])))
    assert used and used <= published


# --------------------------------------------------------------------------
# Hostile names cannot change what a predicate means
# --------------------------------------------------------------------------

HOSTILE = [
    'free" || true || "',
    "free' || true || '",
    "free\n|| true",
    'x") || auth.identity.tier != ("y',
    "\\\" || 1 == 1 || \"\\",
    "a\u2028b\x00c",
]


def hostile_plan(plan, tier_name: str, team_name: str, user_id: str):
    """The bundled plan with one premium team renamed, built without validation."""
    premium = plan.tier("premium")
    hostile_tier = dataclasses.replace(premium, name=tier_name)
    team = plan.team("ml-research")
    user = dataclasses.replace(team.users[0], id=user_id)
    hostile_team = dataclasses.replace(
        team,
        name=team_name,
        tier=tier_name,
        users=(user,),
        budgets=tuple(dataclasses.replace(b, team=team_name) for b in team.budgets),
    )
    return dataclasses.replace(
        plan,
        tiers=tuple(t for t in plan.tiers if t.name != "premium") + (hostile_tier,),
        teams=tuple(t for t in plan.teams if t.name != "ml-research") + (hostile_team,),
    )


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_tier_name_is_only_a_string(bundled_plan, name):
    plan = hostile_plan(bundled_plan(None), name, "ml-research", "premiumuser1")
    team = plan.team("ml-research")
    hostile_ctx = request_context(plan, team, team.users[0])
    assert hostile_ctx["auth"]["identity"][c.IDENTITY_TIER] == name
    free_team = plan.team("customer-support")
    free_ctx = request_context(plan, free_team, free_team.users[0])
    other_ctx = {"auth": {"identity": {c.IDENTITY_USER: "u", c.IDENTITY_TIER: "premium"}}}

    hostile_limits = {(k, n) for k, n, lim in policy_limits(plan) if n.startswith(name)}
    assert len(hostile_limits) == 2
    # The hostile tier's limits apply to its own users and to nobody else.
    assert matched_limits(plan, hostile_ctx) == hostile_limits
    assert matched_limits(plan, free_ctx) == {("RateLimitPolicy", "free-requests"), ("TokenRateLimitPolicy", "free-tokens")}
    assert matched_limits(plan, other_ctx) == set()


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_team_and_user_never_reach_cel(bundled_plan, name):
    """Team names and user ids are data on the Secret, never part of an expression."""
    clean = hostile_plan(bundled_plan(None), "premium", "ml-research", "premiumuser1")
    hostile = hostile_plan(bundled_plan(None), "premium", name, name)

    def expressions(plan):
        return sorted(
            str(v)
            for obj in objects(plan)
            if obj["kind"] != "ExternalSecret"
            for v in re.findall(r"'(?:predicate|expression)': '((?:[^'\\]|\\.)*)'", repr(obj["spec"]))
        )

    assert expressions(hostile) == expressions(clean)
    team = hostile.team(name)
    context = request_context(hostile, team, team.users[0])
    assert context["auth"]["identity"][c.IDENTITY_USER] == name
    assert context["auth"]["identity"][c.IDENTITY_TEAM] == name
    assert matched_limits(hostile, context) == {
        ("RateLimitPolicy", "premium-requests"),
        ("TokenRateLimitPolicy", "premium-tokens"),
    }


def test_tier_names_beyond_the_basic_plane_stay_valid_cel(bundled_plan):
    name = "tier-\U0001f600"
    plan = hostile_plan(bundled_plan(None), name, "ml-research", "premiumuser1")
    team = plan.team("ml-research")
    assert matched_limits(plan, request_context(plan, team, team.users[0]))
