"""Who used it: identity labels on Limitador's usage metrics.

The upstream way is a TelemetryPolicy: Limitador then labels
``authorized_calls``, ``authorized_hits`` and ``limited_calls`` with the
user, team, tier, cost center and model, under the label names the spend
rules read (``conventions.LABEL_*``).

A TelemetryPolicy can only target a Gateway. When the plan attaches the
policies to an HTTPRoute, the Gateway behind it is not known to the plan, so
no TelemetryPolicy is emitted and ``telemetry_gap`` explains why; validation
reports that as a warning.

The legacy path (``limitador.metrics: legacyImage``) instead configures the
Limitador CR to run the chargeback demo's custom image (the one the plan
pins), which labels ``authorized_calls`` and ``limited_calls`` with ``user``
only: its ``group`` label is read from a descriptor no Kuadrant policy
sends, so team and tier come from the plan.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators.common import WAVE_POLICIES, WAVE_WORKLOADS, metadata
from costplan.generators.kuadrant.auth import COMPONENT, target_ref
from costplan.plan.model import Plan

TELEMETRY_POLICY = "telemetryPolicy"
LEGACY_IMAGE = "legacyImage"
LEGACY_VERBOSITY = 3  # INFO: the custom image logs user and group per decision

LEGACY_NOTE = (
    "Legacy path: runs the chargeback demo's custom Limitador image, which labels "
    f"{c.LEGACY_LIMITADOR_METRIC} and limited_calls with {c.LEGACY_LIMITADOR_USER_LABEL} only "
    "(team and tier come from the plan). "
    "Upstream Kuadrant labels usage with a TelemetryPolicy instead "
    "(integrations.gateway.limitador.metrics: telemetryPolicy)."
)


def telemetry_gap(plan: Plan) -> str | None:
    """Why usage will lack identity labels in this plan, or None if it will not."""
    gateway = plan.integrations.gateway
    if gateway.limitador.metrics == TELEMETRY_POLICY and gateway.target_ref.kind != "Gateway":
        return (
            f"a TelemetryPolicy can only target a Gateway, not the {gateway.target_ref.kind} "
            f"{gateway.target_ref.name!r}: Limitador metrics will carry no user, team or tier labels; "
            "target the Gateway, or use limitador.metrics: legacyImage"
        )
    return None


def telemetry_labels() -> dict[str, str]:
    return {label: expression for label, expression in sorted(c.TELEMETRY_LABEL_EXPRESSIONS.items())}


def telemetry_policy(plan: Plan) -> dict[str, Any] | None:
    gateway = plan.integrations.gateway
    if gateway.limitador.metrics != TELEMETRY_POLICY or telemetry_gap(plan) is not None:
        return None
    return {
        "apiVersion": "extensions.kuadrant.io/v1alpha1",
        "kind": "TelemetryPolicy",
        "metadata": metadata(plan, COMPONENT, object_name(plan.name, "telemetry"), gateway.namespace, wave=WAVE_POLICIES),
        "spec": {
            "metrics": {"default": {"labels": telemetry_labels()}},
            "targetRef": target_ref(gateway.target_ref),
        },
    }


def legacy_limitador(plan: Plan) -> dict[str, Any] | None:
    """The fields of the operator-made Limitador CR the legacy image needs.

    Applied server-side, costplan owns only ``image``, ``version`` (emptied so
    the image wins), ``verbosity`` and ``telemetry`` (``exhaustive`` adds
    ``limited_calls`` by limit name); the operator keeps everything else.
    """
    limitador = plan.integrations.gateway.limitador
    if limitador.metrics != LEGACY_IMAGE:
        return None
    return {
        "apiVersion": "limitador.kuadrant.io/v1alpha1",
        "kind": "Limitador",
        "metadata": metadata(
            plan,
            COMPONENT,
            c.LIMITADOR_CR_NAME,
            limitador.namespace,
            annotations={c.ANNOTATION_NOTE: LEGACY_NOTE},
            wave=WAVE_WORKLOADS,
        ),
        "spec": {
            "image": limitador.image or c.LEGACY_LIMITADOR_IMAGE,
            "telemetry": "exhaustive",
            "verbosity": LEGACY_VERBOSITY,
            "version": "",
        },
    }


def generate(plan: Plan) -> list[Artifact]:
    objects = (telemetry_policy(plan), legacy_limitador(plan))
    return [manifest(COMPONENT, obj) for obj in objects if obj is not None]
