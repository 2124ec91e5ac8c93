"""Tier limits: RateLimitPolicy, TokenRateLimitPolicy and PlanPolicy.

Each tier with limits becomes one named limit whose ``when`` predicate is
true only for that tier's keys and whose counter is the user id, so every
user of a tier gets the tier's allowance for themselves. All of a tier's
rates sit in one limit: two limits sharing one predicate can shadow each
other in Limitador. Unlimited tiers emit nothing; a policy with no limit at
all is not emitted, since the CRD rejects an empty ``limits`` map.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.generators.kuadrant import cel
from costplan.generators.kuadrant.auth import COMPONENT, target_ref
from costplan.plan.model import Plan, Rate, Tier

# The PlanPolicy's operator-made RateLimitPolicy must exist before ours so
# that ours (merge strategy) adds to it instead of being replaced by it.
WAVE_PLAN_POLICY = WAVE_POLICIES
WAVE_LIMITS = WAVE_POLICIES + 1


def limit(tier: Tier, rates: Iterable[Rate]) -> dict[str, Any]:
    return {
        "counters": [{"expression": cel.per_user_counter()}],
        "rates": [{"limit": r.limit, "window": r.window} for r in rates],
        "when": [{"predicate": cel.tier_predicate(tier.name)}],
    }


def request_limits(plan: Plan) -> dict[str, Any]:
    return {f"{t.name}-requests": limit(t, t.request_limits) for t in plan.tiers if t.request_limits}


def token_limits(plan: Plan) -> dict[str, Any]:
    return {f"{t.name}-tokens": limit(t, t.token_limits) for t in plan.tiers if t.token_limits}


def has_quotas(plan: Plan) -> bool:
    return any(not t.quotas.is_empty() for t in plan.tiers)


def rate_limit_policy(plan: Plan) -> dict[str, Any] | None:
    """Request limits per tier and user.

    A PlanPolicy makes the operator create a second RateLimitPolicy on the
    same target. Two atomic policies on one target do not add up (the older
    one wins), so when quotas exist the limits go under ``defaults`` with the
    ``merge`` strategy and names (``<tier>-requests``) that cannot collide
    with the PlanPolicy's (``<tier>``).
    """
    limits = request_limits(plan)
    if not limits:
        return None
    gateway = plan.integrations.gateway
    spec: dict[str, Any] = {"targetRef": target_ref(gateway.target_ref)}
    if has_quotas(plan):
        spec["defaults"] = {"limits": limits, "strategy": "merge"}
    else:
        spec["limits"] = limits
    return {
        "apiVersion": "kuadrant.io/v1",
        "kind": "RateLimitPolicy",
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "requests"), gateway.namespace, wave=WAVE_LIMITS),
        "spec": spec,
    }


def token_rate_limit_policy(plan: Plan) -> dict[str, Any] | None:
    """Token limits per tier and user (total tokens of OpenAI-style responses)."""
    limits = token_limits(plan)
    if not limits:
        return None
    gateway = plan.integrations.gateway
    return {
        "apiVersion": "kuadrant.io/v1alpha1",
        "kind": "TokenRateLimitPolicy",
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "tokens"), gateway.namespace, wave=WAVE_LIMITS),
        "spec": {"targetRef": target_ref(gateway.target_ref), "limits": limits},
    }


def plan_policy(plan: Plan) -> dict[str, Any] | None:
    """Daily, weekly and monthly request quotas per tier.

    Upstream PlanPolicy counts per tier, not per user: all users of a tier
    share its quota. Plans are ordered as the tiers are and the first match
    wins; the predicates are mutually exclusive anyway.
    """
    plans = []
    for tier in plan.tiers:
        if tier.quotas.is_empty():
            continue
        quota_limits = {
            key: value
            for key, value in (("daily", tier.quotas.daily), ("weekly", tier.quotas.weekly), ("monthly", tier.quotas.monthly))
            if value is not None
        }
        plans.append({"limits": quota_limits, "predicate": cel.tier_predicate(tier.name), "tier": tier.name})
    if not plans:
        return None
    gateway = plan.integrations.gateway
    return {
        "apiVersion": "extensions.kuadrant.io/v1alpha1",
        "kind": "PlanPolicy",
        # The operator names its RateLimitPolicy after this object: keep the
        # name distinct from ours.
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "quotas"), gateway.namespace, wave=WAVE_PLAN_POLICY),
        "spec": {"plans": plans, "targetRef": target_ref(gateway.target_ref)},
    }


def generate(plan: Plan) -> list[Artifact]:
    objects = (rate_limit_policy(plan), token_rate_limit_policy(plan), plan_policy(plan))
    return [manifest(COMPONENT, obj) for obj in objects if obj is not None]
