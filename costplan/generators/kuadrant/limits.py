"""Tier limits: one RateLimitPolicy and one TokenRateLimitPolicy.

Every tier gets exactly one request limit (``<tier>-requests``) whose
``when`` predicate is true only for that tier's keys and whose counter is
the user id, so every user of a tier gets the tier's allowance for
themselves. A tier without request limits still gets that limit, with a
rate no client can reach (``METERING_RATE``): Limitador only counts a
request it is asked about, so without it the requests of an unlimited tier
would never be counted and never billed. The operator merges all request
limits of a request into one ``ShouldRateLimit`` call, so each request is
counted exactly once in ``authorized_calls`` or ``limited_calls``.

Calendar quotas are limits of the same policy (``<tier>-quota``, no
counter: one quota shared by all users of a tier, windows 24h, 168h and
730h). They are not written as a PlanPolicy: the PlanPolicy's predicate is
evaluated by Authorino against the key Secret, and the RateLimitPolicy the
operator makes for it merges with ours by creation order. One policy of our
own means the same limits apply whatever was created first.

Token limits (``<tier>-tokens``) go to the TokenRateLimitPolicy, only for
tiers that have them. A policy with no limit at all is not emitted, since
the CRD rejects an empty ``limits`` map.
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

WAVE_LIMITS = WAVE_POLICIES + 1

# A rate no client reaches (the largest 32-bit integer per second): the
# limit exists to have Limitador count the tier's requests, never to refuse.
METERING_RATE = Rate(limit=2147483647, window="1s")

# Calendar quota -> Limitador window. Limitador windows are rolling: a daily
# quota is "at most N in any 24 hours", not "N per calendar day".
QUOTA_WINDOWS = (("daily", "24h"), ("weekly", "168h"), ("monthly", "730h"))


def _rates(rates: Iterable[Rate]) -> list[dict[str, Any]]:
    return [{"limit": r.limit, "window": r.window} for r in rates]


def limit(tier: Tier, rates: Iterable[Rate], per_user: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {"rates": _rates(rates), "when": [{"predicate": cel.tier_predicate(tier.name)}]}
    if per_user:
        result["counters"] = [{"expression": cel.per_user_counter()}]
    return result


def request_rates(tier: Tier) -> tuple[Rate, ...]:
    """The tier's request rates, or the metering rate when it has none."""
    return tier.request_limits or (METERING_RATE,)


def quota_rates(tier: Tier) -> tuple[Rate, ...]:
    quotas = tier.quotas
    values = {"daily": quotas.daily, "weekly": quotas.weekly, "monthly": quotas.monthly}
    rates = []
    for key, window in QUOTA_WINDOWS:
        value = values[key]
        if value is not None:
            rates.append(Rate(limit=value, window=window))
    return tuple(rates)


def request_limits(plan: Plan) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for tier in plan.tiers:
        limits[f"{tier.name}-requests"] = limit(tier, request_rates(tier))
        quotas = quota_rates(tier)
        if quotas:
            limits[f"{tier.name}-quota"] = limit(tier, quotas, per_user=False)
    return limits


def token_limits(plan: Plan) -> dict[str, Any]:
    return {f"{t.name}-tokens": limit(t, t.token_limits) for t in plan.tiers if t.token_limits}


def token_limited_tiers(plan: Plan) -> list[str]:
    """Tiers whose requests also pass the TokenRateLimitPolicy (counted twice in ``authorized_calls``)."""
    return [t.name for t in plan.tiers if t.token_limits]


def rate_limit_policy(plan: Plan) -> dict[str, Any] | None:
    """Request limits and quotas per tier, plain ``limits``: the only policy of its kind costplan writes."""
    limits = request_limits(plan)
    if not limits:
        return None
    gateway = plan.integrations.gateway
    return {
        "apiVersion": "kuadrant.io/v1",
        "kind": "RateLimitPolicy",
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "requests"), gateway.namespace, wave=WAVE_LIMITS),
        "spec": {"limits": limits, "targetRef": target_ref(gateway.target_ref)},
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
        "spec": {"limits": limits, "targetRef": target_ref(gateway.target_ref)},
    }


def generate(plan: Plan) -> list[Artifact]:
    objects = (rate_limit_policy(plan), token_rate_limit_policy(plan))
    return [manifest(COMPONENT, obj) for obj in objects if obj is not None]
