"""Generator: PrometheusRule objects that turn usage into money.

The rule groups come from ``groups.rule_groups`` (see the modules of this package for the
pricing semantics). Each group becomes one PrometheusRule in the plan's
Prometheus namespace, labelled with ``ruleLabels`` so the Prometheus
``ruleSelector`` picks it up. ``rules_files`` gives the same groups as plain
Prometheus rules files for setups without the operator.
"""

from __future__ import annotations

from typing import Any

from costplan.core.artifacts import Artifact, manifest
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.generators.prometheus.groups import rule_groups
from costplan.plan.model import Plan

COMPONENT = "prometheus"


def prometheus_rules(plan: Plan) -> list[dict[str, Any]]:
    """One PrometheusRule object per rule group."""
    prom = plan.integrations.prometheus
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": metadata(
                plan, COMPONENT, group["name"], prom.namespace, labels=dict(prom.rule_labels), wave=WAVE_POLICIES
            ),
            "spec": {"groups": [group]},
        }
        for group in rule_groups(plan)
    ]


def rules_files(plan: Plan) -> dict[str, dict[str, Any]]:
    """``{"<group>.rules.yaml": {"groups": [group]}}``: plain rules files, one per group."""
    return {f"{group['name']}.rules.yaml": {"groups": [group]} for group in rule_groups(plan)}


def generate(plan: Plan) -> list[Artifact]:
    return [manifest(COMPONENT, obj) for obj in prometheus_rules(plan)]
