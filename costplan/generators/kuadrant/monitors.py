"""Scrape configuration for the usage sources the spend rules read.

Without these, the metrics the policies label never reach Prometheus. Every
monitor carries ``integrations.prometheus.monitor_labels`` because that is
what the plan's Prometheus selects monitors by.

- Limitador: a ServiceMonitor on the Service limitador-operator creates
  (label ``app: limitador``, port ``http``, ``/metrics``) in Limitador's
  namespace. Limitador's counters only appear after traffic.
- vLLM and llm-d: one PodMonitor per namespace and server. vLLM pods have no
  standard label, so pods opt in with ``costplan.dev/model-server:
  <server>``; vLLM serves ``/metrics`` on its API port (8000 by default).
  Opting in keeps pods that already have a monitor (llm-d's charts ship
  their own) from being scraped twice, which would double their usage.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.core.names import object_name
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.plan.model import Plan

COMPONENT = "monitoring"
MODEL_SERVERS = ("vllm", "llm-d")
SCRAPE_INTERVAL = "30s"


def limitador_service_monitor(plan: Plan) -> dict[str, Any]:
    namespace = plan.integrations.gateway.limitador.namespace
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(
            plan,
            COMPONENT,
            object_name(plan.name, "limitador"),
            namespace,
            labels=plan.integrations.prometheus.monitor_labels,
            wave=WAVE_POLICIES,
        ),
        "spec": {
            "endpoints": [
                {"interval": SCRAPE_INTERVAL, "path": "/metrics", "port": c.LIMITADOR_METRICS_PORT, "scheme": "http"}
            ],
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": dict(c.LIMITADOR_SERVICE_LABELS)},
        },
    }


def model_server_pod_monitor(plan: Plan, namespace: str, server: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(
            plan,
            COMPONENT,
            object_name(plan.name, server),
            namespace,
            labels=plan.integrations.prometheus.monitor_labels,
            wave=WAVE_POLICIES,
        ),
        "spec": {
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [
                {"interval": SCRAPE_INTERVAL, "path": "/metrics", "portNumber": c.MODEL_SERVER_METRICS_PORT}
            ],
            "selector": {"matchLabels": {c.LABEL_MODEL_SERVER: server}},
        },
    }


def generate(plan: Plan) -> list[Artifact]:
    artifacts = [manifest(COMPONENT, limitador_service_monitor(plan))]
    servers = sorted(
        {(m.namespace, m.server) for m in plan.models if m.server in MODEL_SERVERS and m.namespace}
    )
    for namespace, server in servers:
        artifacts.append(manifest(COMPONENT, model_server_pod_monitor(plan, namespace, server)))
    return artifacts
