"""Every key Secret the build makes carries what the policies read from it.

A TelemetryPolicy label whose CEL cannot resolve (a Secret without the
annotation) is left off Limitador's counters, and the money of that key
lands on nobody; a rate-limit predicate that cannot resolve matches no
limit. So the Secret each ExternalSecret writes is evaluated exactly as the
gateway would: Authorino's success filter on the Secret, then every label,
predicate and counter on its result.
"""

from __future__ import annotations

from typing import Any

import cel
import pytest

from costplan.generators import kuadrant

ENVS = (None, "dev", "prod", "staging")


def written_secrets(plan) -> list[dict[str, Any]]:
    """The Secret each ExternalSecret makes: its target template's metadata."""
    return [
        {"metadata": o["spec"]["target"]["template"]["metadata"]}
        for o in (a.data for a in kuadrant.generate(plan)) if o["kind"] == "ExternalSecret"
    ]


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e or "base")
def test_every_expression_resolves_on_every_key_secret_the_build_writes(bundled_plan, env):
    plan = bundled_plan(env)
    objects = [a.data for a in kuadrant.generate(plan)]
    auth = next(o for o in objects if o["kind"] == "AuthPolicy")
    props = auth["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"]["properties"]
    telemetry = [o for o in objects if o["kind"] == "TelemetryPolicy"]
    labels = telemetry[0]["spec"]["metrics"]["default"]["labels"] if telemetry else {}
    secrets = written_secrets(plan)
    if not secrets:
        pytest.skip("no secret backend: key Secrets are made out of band (costplan doctor checks them)")
    for secret in secrets:
        identity = {name: cel.evaluate(p["expression"], {"auth": {"identity": secret}}) for name, p in props.items()}
        assert all(isinstance(v, str) and v for v in identity.values()), secret["metadata"]
        context = {"auth": {"identity": identity}}
        for label, expression in labels.items():
            if "responseBody" in expression:
                continue
            assert cel.evaluate(expression, context), (label, secret["metadata"]["name"])
