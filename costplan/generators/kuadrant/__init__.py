"""Generator: gateway enforcement with Kuadrant.

Tiers only mean something if the gateway enforces them and tags usage with
who used it. This compiles teams, users and tiers into today's Kuadrant API:
an AuthPolicy (API keys → identity), per-tier RateLimitPolicy (request
limits and quotas) and TokenRateLimitPolicy, and the TelemetryPolicy (or, on the
legacy path, the Limitador CR) that puts user, team, tier, cost center and
model on Limitador's metrics. The key Secrets' ExternalSecrets and the scrape
monitors belong to the same feature and are emitted from here too.
"""

from __future__ import annotations

from costplan.core.artifacts import Artifact
from costplan.generators.kuadrant import auth, limits, monitors, secrets, telemetry
from costplan.plan.model import Plan

PARTS = (auth, limits, telemetry, secrets, monitors)


def generate(plan: Plan) -> list[Artifact]:
    if plan.integrations.gateway.type != "kuadrant":
        return []
    artifacts: list[Artifact] = []
    for part in PARTS:
        artifacts.extend(part.generate(plan))
    return artifacts
