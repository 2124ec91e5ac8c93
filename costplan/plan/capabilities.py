"""What each usage source can measure, and what each pricing model needs.

One table shared by validation (a model priced per token must be measured by
a source that counts tokens by type) and by the spend-rules generator (which
metrics to read). Identity capabilities say whether a source's series carry
the user, team or tier; spend from sources without them is attributed to the
team that owns the model's namespace.
"""

from __future__ import annotations

from collections.abc import Mapping

from costplan.plan.model import (
    GpuHourly,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Pricing,
    TieredVolume,
    UsageSource,
)

# Measures
REQUESTS = "requests"
TOTAL_TOKENS = "total_tokens"
INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
CACHED_TOKENS = "cached_tokens"
REASONING_TOKENS = "reasoning_tokens"
# Identity carried on the series
USER = "user"
TEAM = "team"
TIER = "tier"
MODEL = "model"

SOURCE_TYPES: Mapping[str, frozenset[str]] = {
    # Upstream Limitador with TelemetryPolicy labels: calls, and token hits
    # under a TokenRateLimitPolicy (total tokens only).
    "kuadrant-limitador": frozenset({REQUESTS, TOTAL_TOKENS, USER, TEAM, TIER, MODEL}),
    # The chargeback demo's custom image: calls by user and group only.
    "limitador-legacy": frozenset({REQUESTS, USER, TIER}),
    "vllm": frozenset({REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS, MODEL}),
    "llm-d": frozenset({REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS, MODEL}),
    "envoy-ai-gateway": frozenset(
        {REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHED_TOKENS, REASONING_TOKENS, MODEL}
    ),
    "kong-ai": frozenset({REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, MODEL}),
    "litellm": frozenset({REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, MODEL, USER, TEAM}),
    "custom": frozenset(),  # decided by the metrics and labels the plan names
}

# Plan keys of a custom source's ``metrics`` and ``labels`` → capability.
CUSTOM_METRIC_ROLES: Mapping[str, str] = {
    "requests": REQUESTS,
    "totalTokens": TOTAL_TOKENS,
    "inputTokens": INPUT_TOKENS,
    "outputTokens": OUTPUT_TOKENS,
    "cachedTokens": CACHED_TOKENS,
    "reasoningTokens": REASONING_TOKENS,
}
CUSTOM_LABEL_ROLES: Mapping[str, str] = {"user": USER, "team": TEAM, "tier": TIER, "model": MODEL}


def source_capabilities(source: UsageSource) -> frozenset[str]:
    if source.type != "custom":
        return SOURCE_TYPES[source.type]
    caps = {CUSTOM_METRIC_ROLES[k] for k in source.metrics if k in CUSTOM_METRIC_ROLES}
    caps |= {CUSTOM_LABEL_ROLES[k] for k in source.labels if k in CUSTOM_LABEL_ROLES}
    return frozenset(caps)


def tokens_measured(caps: frozenset[str]) -> bool:
    return TOTAL_TOKENS in caps or {INPUT_TOKENS, OUTPUT_TOKENS} <= caps


def missing_for(pricing: Pricing, caps: frozenset[str]) -> list[str]:
    """Measures the pricing needs that the source lacks (empty = fine)."""
    missing: list[str] = []
    if isinstance(pricing, PerRequest) and REQUESTS not in caps:
        missing.append("request counts")
    elif isinstance(pricing, PerMillionTokens) and not {INPUT_TOKENS, OUTPUT_TOKENS} <= caps:
        missing.append("input and output token counts")
    elif isinstance(pricing, PerRequestWithIncludedTokens):
        if REQUESTS not in caps:
            missing.append("request counts")
        if not tokens_measured(caps):
            missing.append("token counts")
    elif isinstance(pricing, TieredVolume):
        if pricing.unit == "requests" and REQUESTS not in caps:
            missing.append("request counts")
        if pricing.unit == "tokens" and not tokens_measured(caps):
            missing.append("token counts")
    elif isinstance(pricing, GpuHourly):
        pass  # priced from GPU requests of the model's namespace, not from usage
    return missing
