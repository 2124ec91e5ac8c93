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
            for name, limit in spec["limits"].items():
                yield obj["kind"], name, limit


def authorino_predicates(plan) -> Iterator[tuple[str, str]]:
    """(tier, predicate) of every predicate Authorino evaluates (PlanPolicy plans)."""
    for obj in objects(plan):
        if obj["kind"] == "PlanPolicy":
            for entry in obj["spec"]["plans"]:
                yield entry["tier"], entry["predicate"]


def expected_limits(plan, tier_name: str) -> set[tuple[str, str]]:
    """The limits a key of ``tier_name`` must meet: one request limit, its quota, its token limit."""
    tier = plan.tier(tier_name)
    expected = {("RateLimitPolicy", f"{tier.name}-requests")}
    if not tier.quotas.is_empty():
        expected.add(("RateLimitPolicy", f"{tier.name}-quota"))
    if tier.token_limits:
        expected.add(("TokenRateLimitPolicy", f"{tier.name}-tokens"))
    return expected


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
        assert matched_limits(plan, request_context(plan, team, user)) == expected_limits(plan, team.tier), user.id


def test_free_user_matches_only_free_and_premium_only_premium(bundled_plan):
    plan = bundled_plan(None)
    free = request_context(plan, plan.team("customer-support"), plan.team("customer-support").users[0])
    premium = request_context(plan, plan.team("ml-research"), plan.team("ml-research").users[0])
    enterprise = request_context(plan, plan.team("platform"), plan.team("platform").users[0])
    assert matched_limits(plan, free) == {
        ("RateLimitPolicy", "free-requests"),
        ("RateLimitPolicy", "free-quota"),
        ("TokenRateLimitPolicy", "free-tokens"),
    }
    assert matched_limits(plan, premium) == {
        ("RateLimitPolicy", "premium-requests"),
        ("TokenRateLimitPolicy", "premium-tokens"),
    }
    # Unlimited, yet counted: its metering limit is the only one it meets.
    assert matched_limits(plan, enterprise) == {("RateLimitPolicy", "enterprise-requests")}


def test_counters_split_limits_per_user(bundled_plan):
    plan = bundled_plan(None)
    team = plan.team("ml-research")
    keys = set()
    for user in team.users:
        context = request_context(plan, team, user)
        for _, name, limit in policy_limits(plan):
            if name.endswith("-quota"):
                assert "counters" not in limit  # a quota is shared by the tier's users
                continue
            values = [cel.evaluate(counter["expression"], context) for counter in limit["counters"]]
            assert values == [user.id]
            keys.add(tuple(values))
    assert len(keys) == len(team.users)


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e or "base")
def test_every_user_with_a_quota_meets_it_exactly_once(bundled_plan, env):
    """Quotas apply where they are evaluated.

    Rate-limit predicates see the AuthPolicy's published identity; a
    PlanPolicy's predicate is evaluated by Authorino, where ``auth.identity``
    is the key Secret itself. Either way each key of a tier with quotas must
    meet its tier's quota once, and keys of other tiers none.
    """
    plan = bundled_plan(env)
    for team, user in plan.users():
        in_gateway = {
            name for kind, name, limit in policy_limits(plan)
            if name.endswith("-quota") and all(matches(w["predicate"], request_context(plan, team, user)) for w in limit["when"])
        }
        secret_view = {"auth": {"identity": key_secret(team, user)}}
        in_authorino = {
            f"{tier}-quota" for tier, predicate in authorino_predicates(plan)
            if matches(predicate, secret_view)
        }
        met = sorted(in_gateway) + sorted(in_authorino)
        expected = [f"{team.tier}-quota"] if not plan.tier(team.tier).quotas.is_empty() else []
        assert met == expected, user.id


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
    assert len(hostile_limits) == 2  # requests and tokens (premium has no quota)
    # The hostile tier's limits apply to its own users and to nobody else.
    assert matched_limits(plan, hostile_ctx) == hostile_limits
    assert matched_limits(plan, free_ctx) == expected_limits(plan, "free")
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
