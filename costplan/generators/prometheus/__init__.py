"""Generator: PrometheusRule objects that turn usage into money.

The rule groups come from ``groups.rule_groups`` (see the modules of this package for the
pricing semantics). Each group becomes one PrometheusRule in the plan's
Prometheus namespace, labelled with ``ruleLabels`` so the Prometheus
``ruleSelector`` picks it up. ``rules_files`` gives the same groups as plain
Prometheus rules files for setups without the operator.

In a fleet (``fleet``), each cluster's part holds that cluster's groups as
PrometheusRules for its own Prometheus, and the global part holds the
global groups the way its engine loads rules:

* ``prometheus``, ``thanos``: PrometheusRule objects (the Prometheus
  operator's ``ruleSelector``, Thanos Ruler's ``ruleSelector``), in
  ``metrics.namespace`` with ``metrics.ruleLabels``;
* ``victoriametrics``: one ConfigMap of vmalert rule files (``-rule=`` on
  its mount), the same groups, checked with ``vmalert -dryRun``;
* ``mimir``: one rule-namespace file ``mimir/<namespace>.yaml`` for
  ``mimirtool rules sync`` (not a Kubernetes object, so not applied).
"""

from __future__ import annotations

from typing import Any

from costplan.core.artifacts import Artifact, file, manifest
from costplan.core.canonical_yaml import dump_yaml
from costplan.core.names import object_name
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.generators.prometheus import fleet
from costplan.generators.prometheus.groups import rule_groups
from costplan.plan.model import Plan

COMPONENT = "prometheus"
VMALERT_CONFIGMAP = "costplan-vmalert-rules"
# Data bytes per vmalert ConfigMap: well under the API server's 1 MiB, room for metadata.
CONFIGMAP_BYTES = 800_000
MIMIR_COMPONENT = "mimir"
GLOBAL_SUFFIX = "-global"  # of a fleet's global PrometheusRule objects


def _placement(plan: Plan) -> tuple[str, dict[str, str]]:
    """Namespace and labels of the rule objects: the global engine's in a fleet's global part."""
    prom = plan.integrations.prometheus
    metrics = plan.metrics
    if fleet.is_global(plan) and metrics is not None:
        labels = prom.rule_labels if metrics.rule_labels is None else metrics.rule_labels
        return metrics.namespace or prom.namespace, dict(labels)
    return prom.namespace, dict(prom.rule_labels)


def engine(plan: Plan) -> str:
    """How this part's rules are loaded: ``prometheus`` everywhere but in a fleet's global part."""
    if fleet.is_global(plan) and plan.metrics is not None:
        return plan.metrics.engine
    return "prometheus"


def mimir_namespace(plan: Plan) -> str:
    return object_name("costplan", plan.name, plan.environment)


def prometheus_rules(plan: Plan) -> list[dict[str, Any]]:
    """One PrometheusRule object per rule group.

    A fleet's global objects are named ``<group>-global``: the global
    engine's Prometheus may be one of the clusters', whose own groups have
    the same names.
    """
    namespace, labels = _placement(plan)
    suffix = GLOBAL_SUFFIX if fleet.is_global(plan) else ""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": metadata(plan, COMPONENT, group["name"] + suffix, namespace, labels=labels,
                                 wave=WAVE_POLICIES),
            "spec": {"groups": [group]},
        }
        for group in rule_groups(plan)
    ]


def rules_files(plan: Plan) -> dict[str, dict[str, Any]]:
    """``{"<group>.rules.yaml": {"groups": [group]}}``: plain rules files, one per group."""
    return {f"{group['name']}.rules.yaml": {"groups": [group]} for group in rule_groups(plan)}


def vmalert_configmaps(plan: Plan) -> list[dict[str, Any]]:
    """The global groups as vmalert rule files, one key per group, in as few ConfigMaps as fit.

    A ConfigMap holds at most 1 MiB of data; the groups that grow with teams
    are already split (``groups.SHARD_BYTES``), so consecutive files are
    packed into ``costplan-vmalert-rules``, ``costplan-vmalert-rules-2``, ...
    each under ``CONFIGMAP_BYTES``. A small plan keeps its single ConfigMap.
    """
    namespace, labels = _placement(plan)
    chunks: list[dict[str, str]] = [{}]
    size = 0
    for name, groups in sorted(rules_files(plan).items()):
        text = dump_yaml(groups)
        if chunks[-1] and size + len(text) > CONFIGMAP_BYTES:
            chunks.append({})
            size = 0
        chunks[-1][name] = text
        size += len(text)
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                plan,
                COMPONENT,
                VMALERT_CONFIGMAP if index == 0 else f"{VMALERT_CONFIGMAP}-{index + 1}",
                namespace,
                labels=labels,
                wave=WAVE_POLICIES,
            ),
            "data": data,
        }
        for index, data in enumerate(chunks)
    ]


def mimir_rules(plan: Plan) -> dict[str, Any]:
    """``mimirtool rules`` input: the global groups under one rule namespace."""
    return {"namespace": mimir_namespace(plan), "groups": rule_groups(plan)}


def generate(plan: Plan) -> list[Artifact]:
    kind = engine(plan)
    if kind == "victoriametrics":
        return [manifest(COMPONENT, obj) for obj in vmalert_configmaps(plan)]
    if kind == "mimir":
        return [file(MIMIR_COMPONENT, f"{mimir_namespace(plan)}.yaml", mimir_rules(plan))]
    return [manifest(COMPONENT, obj) for obj in prometheus_rules(plan)]
