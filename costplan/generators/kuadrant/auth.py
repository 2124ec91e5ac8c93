"""AuthPolicy: API keys in, identity (user, team, tier, cost center) out.

Authorino finds the caller's key among Secrets that carry the costplan key
labels, then publishes the identity read from that Secret's annotations as
``auth.identity.<field>``. Everything downstream keys on those fields: the
rate-limit predicates and counters and the TelemetryPolicy
labels that let the spend rules charge a user, team, tier and cost center.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.generators.kuadrant import cel
from costplan.plan.enforcement import enforces, throttles
from costplan.plan.model import Plan, TargetRef

COMPONENT = "kuadrant"
AUTHENTICATION_NAME = "api-key-users"
IDENTITY_FILTER = "identity"

# auth.identity.<field> -> the key-Secret annotation it is read from.
IDENTITY_SOURCES = {
    c.IDENTITY_USER: c.ANNOTATION_USER_ID,
    c.IDENTITY_TEAM: c.ANNOTATION_TEAM,
    c.IDENTITY_TIER: c.ANNOTATION_TIER,
    c.IDENTITY_COST_CENTER: c.ANNOTATION_COST_CENTER,
    # The tier again, under the name upstream samples and the legacy
    # Limitador image read (``kuadrant.io/groups``).
    c.IDENTITY_GROUPS: c.ANNOTATION_GROUPS,
}


def target_ref(target: TargetRef) -> dict[str, Any]:
    ref = {"group": target.group, "kind": target.kind, "name": target.name}
    if target.section_name:
        ref["sectionName"] = target.section_name
    return ref


def secret_selector_labels() -> dict[str, str]:
    """The labels a Secret needs to be accepted as an API key."""
    return {
        c.SECRET_LABEL_APP: c.SECRET_LABEL_APP_VALUE,
        c.SECRET_LABEL_MANAGED_BY: c.SECRET_LABEL_MANAGED_BY_VALUE,
    }


def credentials(plan: Plan) -> dict[str, Any]:
    """Where the key is read from.

    ``Authorization`` uses the prefix (``APIKEY <key>``); any other header is
    read whole, because Authorino's custom-header credentials have no prefix.
    """
    api_key = plan.integrations.gateway.api_key
    if api_key.header.lower() == "authorization":
        return {"authorizationHeader": {"prefix": api_key.prefix}}
    return {"customHeader": {"name": api_key.header}}


def all_namespaces(plan: Plan) -> bool:
    """Look for key Secrets outside Kuadrant's own namespace only when needed.

    Kuadrant writes the AuthConfig into its own namespace (where Limitador
    runs too), and Authorino reads keys from that namespace by default.
    Searching every namespace lets anyone who can create a labelled Secret
    anywhere mint a key, so it is switched on only when the plan keeps key
    Secrets elsewhere.
    """
    gateway = plan.integrations.gateway
    return gateway.api_key.secret_namespace != gateway.limitador.namespace


def auth_policy(plan: Plan) -> dict[str, Any]:
    gateway = plan.integrations.gateway
    properties = {
        field: {"expression": cel.annotation(annotation)} for field, annotation in sorted(IDENTITY_SOURCES.items())
    }
    return {
        "apiVersion": "kuadrant.io/v1",
        "kind": "AuthPolicy",
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "auth"), gateway.namespace, wave=WAVE_POLICIES),
        "spec": {
            "targetRef": target_ref(gateway.target_ref),
            "rules": {
                "authentication": {
                    AUTHENTICATION_NAME: {
                        "apiKey": {
                            "allNamespaces": all_namespaces(plan),
                            "selector": {"matchLabels": secret_selector_labels()},
                        },
                        "credentials": credentials(plan),
                    }
                },
                "response": {
                    "success": {
                        "filters": {
                            IDENTITY_FILTER: {"json": {"properties": properties}},
                        }
                    }
                },
            },
        },
    }


# -- budget enforcement ------------------------------------------------------
# Added only to plans whose budgets throttle or block, so other plans' policies
# stay as they are. ``costplan guard`` writes the state on the key Secret;
# Authorino reads it with the Secret at every request:
#  * throttled: the tier properties prefer the guard's tier annotation, so the
#    rate-limit predicates (which read ``auth.identity.tier``) apply the lower
#    tier's limits, and usage is labelled and priced with that tier meanwhile;
#  * blocked: the ``budget`` authorization rule fails and ``unauthorized``
#    answers 429 with the guard's JSON body (budget, spent, limit, resets).
BUDGET_RULE = "budget"
BLOCKED_FALLBACK_BODY = '{"error":"budget_exceeded"}'
THROTTLED_PROPERTIES = {c.IDENTITY_TIER: c.ANNOTATION_TIER, c.IDENTITY_GROUPS: c.ANNOTATION_GROUPS}


def with_budget_enforcement(plan: Plan, policy: dict[str, Any]) -> dict[str, Any]:
    if not enforces(plan):
        return policy
    rules = policy["spec"]["rules"]
    if throttles(plan):
        properties = rules["response"]["success"]["filters"][IDENTITY_FILTER]["json"]["properties"]
        for field, annotation in THROTTLED_PROPERTIES.items():
            properties[field] = {"expression": cel.annotation_or(c.ANNOTATION_BUDGET_TIER, annotation)}
    rules["authorization"] = {BUDGET_RULE: {"patternMatching": {"patterns": [{"predicate": cel.not_blocked()}]}}}
    rules["response"]["unauthorized"] = {
        "code": c.BUDGET_BLOCKED_STATUS,
        "headers": {"content-type": {"value": "application/json"}},
        "body": {"expression": cel.blocked_body(BLOCKED_FALLBACK_BODY)},
    }
    return policy


def generate(plan: Plan) -> list[Artifact]:
    return [manifest(COMPONENT, with_budget_enforcement(plan, auth_policy(plan)))]
