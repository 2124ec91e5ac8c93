"""API-key Secrets by reference: ExternalSecrets, never keys.

The plan names each user's key Secret and where the key lives in the secret
store, never the key. With ``secrets.backend: external-secrets`` every user
gets an ExternalSecret that makes external-secrets write the key Secret with
exactly the labels the AuthPolicy selects on and the annotations it reads the
identity from. With ``backend: none`` nothing is emitted: the Secrets are
created out of band and must carry ``key_secret_labels`` and
``key_secret_annotations`` themselves.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.generators.common import WAVE_CONFIG, metadata
from costplan.generators.kuadrant.auth import secret_selector_labels
from costplan.plan.model import Plan, SecretStoreRef, Team, User

COMPONENT = "secrets"
EXTERNAL_SECRETS = "external-secrets"


def key_secret_labels() -> dict[str, str]:
    """Labels every API-key Secret must carry to be found by the AuthPolicy."""
    return secret_selector_labels()


def owned_key_labels(plan: Plan) -> dict[str, str]:
    """The key labels plus the plan's: ``costplan guard`` only touches keys that carry both."""
    return {**key_secret_labels(), c.LABEL_PLAN: plan.name}


def key_secret_annotations(team: Team, user: User) -> dict[str, str]:
    """Annotations the AuthPolicy reads a key's identity from (the user's own tier, else the team's)."""
    tier = user.tier or team.tier
    return {
        c.ANNOTATION_COST_CENTER: team.cost_center,
        c.ANNOTATION_GROUPS: tier,
        c.ANNOTATION_TEAM: team.name,
        c.ANNOTATION_TIER: tier,
        c.ANNOTATION_USER_ID: user.id,
    }


def external_secret(plan: Plan, store: SecretStoreRef, team: Team, user: User) -> dict[str, Any]:
    namespace = plan.integrations.gateway.api_key.secret_namespace
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": metadata(plan, COMPONENT, user.api_key.secret_name, namespace, wave=WAVE_CONFIG),
        "spec": {
            "data": [
                {
                    "remoteRef": {"key": user.api_key.remote_key, "property": c.SECRET_API_KEY_FIELD},
                    "secretKey": c.SECRET_API_KEY_FIELD,
                }
            ],
            "refreshInterval": plan.integrations.secrets.refresh_interval,
            "secretStoreRef": {"kind": store.kind, "name": store.name},
            "target": {
                "creationPolicy": "Owner",
                # A key removed from the store is a revoked key: drop the Secret.
                "deletionPolicy": "Delete",
                "name": user.api_key.secret_name,
                "template": {
                    "engineVersion": "v2",
                    "metadata": {
                        "annotations": key_secret_annotations(team, user),
                        "labels": owned_key_labels(plan),
                    },
                    "type": "Opaque",
                },
            },
        },
    }


def generate(plan: Plan) -> list[Artifact]:
    """One ExternalSecret per user whose key is in the store; nothing otherwise.

    Users without ``remote_key`` are rejected by validation when the backend
    is external-secrets; they are skipped here rather than given a guess.
    """
    store = plan.integrations.secrets.store
    if plan.integrations.secrets.backend != EXTERNAL_SECRETS or store is None:
        return []
    return [
        manifest(COMPONENT, external_secret(plan, store, team, user))
        for team, user in plan.users()
        if user.api_key.remote_key
    ]
