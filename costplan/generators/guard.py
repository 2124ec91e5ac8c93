"""Generator: ``costplan guard`` in the cluster, when any budget throttles or blocks.

Objects (guard namespace = ``guard.namespace``, default Prometheus'):

* ConfigMap ``costplan-guard``: the guard's own document (``guard.json``,
  ``plan/enforcement.py``): teams, their key Secrets and enforcing budgets.
* ServiceAccount ``costplan-guard``; a Role and RoleBinding in the key
  Secrets' namespace granting ``get`` and ``patch`` on exactly the plan's
  key Secrets (``resourceNames``) and ``create`` on Events, nothing else.
* Deployment ``costplan-guard``: one replica (a single writer; ``Recreate``
  so two never overlap), the report jobs' image, liveness on ``/healthz``,
  readiness on ``/readyz``.
* Service ``costplan-guard`` (port ``http``) for Alertmanager's webhook and
  the ServiceMonitor that scrapes ``/metrics``.
* NetworkPolicy: ingress only on the guard's port from Prometheus' and the
  notifications namespace; egress only to DNS, Prometheus' namespace and
  the API server's ports.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.generators.alertmanager.routing import guard_namespace
from costplan.generators.alertmanager.routing import namespace as notifications_namespace
from costplan.generators.common import WAVE_CONFIG, WAVE_POLICIES, WAVE_WORKLOADS, metadata
from costplan.plan.enforcement import enforces, guard_config, to_document
from costplan.plan.model import Plan

COMPONENT = "guard"
CONFIG_DIR = "/etc/costplan-guard"
CONFIG_FILE = "guard.json"
RUN_AS = 10001
API_SERVER_PORTS = (443, 6443)
SCRAPE_INTERVAL = "30s"


def pod_labels(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": c.GUARD_NAME, c.LABEL_PLAN: plan.name}


def config_map(plan: Plan) -> dict[str, Any]:
    text = json.dumps(to_document(guard_config(plan)), indent=2, sort_keys=True) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, guard_namespace(plan), wave=WAVE_CONFIG),
        "data": {CONFIG_FILE: text},
    }


def service_account(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, guard_namespace(plan), wave=WAVE_CONFIG),
    }


def role(plan: Plan) -> dict[str, Any]:
    keys = sorted({key for team in guard_config(plan).teams for key in team.keys})
    rules: list[dict[str, Any]] = []
    if keys:  # an empty resourceNames list would mean every Secret
        rules.append({"apiGroups": [""], "resources": ["secrets"], "resourceNames": keys, "verbs": ["get", "patch"]})
    rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, plan.integrations.gateway.api_key.secret_namespace,
                             wave=WAVE_CONFIG),
        "rules": rules,
    }


def role_binding(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, plan.integrations.gateway.api_key.secret_namespace,
                             wave=WAVE_CONFIG),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": c.GUARD_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": c.GUARD_NAME, "namespace": guard_namespace(plan)}],
    }


def deployment(plan: Plan) -> dict[str, Any]:
    probe = {"httpGet": {"path": c.GUARD_LIVENESS_PATH, "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2}
    ready = {"httpGet": {"path": c.GUARD_READINESS_PATH, "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2}
    # A fleet's guard reads the global engine; its token (metrics.bearerTokenSecret,
    # a Secret in the guard's namespace of each cluster) is mounted where guard.json says.
    token = plan.query_bearer_token
    token_mounts = [] if token is None else [
        {"name": c.METRICS_TOKEN_VOLUME, "mountPath": c.METRICS_TOKEN_DIR, "readOnly": True}]
    token_volumes = [] if token is None else [
        {"name": c.METRICS_TOKEN_VOLUME,
         "secret": {"secretName": token.name, "items": [{"key": token.key, "path": c.METRICS_TOKEN_FILE}]}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, guard_namespace(plan), wave=WAVE_WORKLOADS),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels(plan)},
            "template": {
                "metadata": {"labels": {**pod_labels(plan), "app.kubernetes.io/part-of": "costplan"}},
                "spec": {
                    "serviceAccountName": c.GUARD_NAME,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "guard",
                        "image": plan.reports.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["guard", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}",
                                 "--listen", f"0.0.0.0:{c.GUARD_PORT}"],
                        "ports": [{"containerPort": c.GUARD_PORT, "name": "http", "protocol": "TCP"}],
                        "livenessProbe": probe,
                        "readinessProbe": ready,
                        "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "384Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                         *token_mounts],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": c.GUARD_NAME}}, *token_volumes],
                },
            },
        },
    }


def service(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, guard_namespace(plan),
                             labels=pod_labels(plan), wave=WAVE_WORKLOADS),
        "spec": {
            "selector": pod_labels(plan),
            "ports": [{"name": "http", "port": c.GUARD_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _namespace_peer(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def query_egress(plan: Plan) -> list[dict[str, Any]]:
    """Egress to a fleet's global engine, which usually runs on another cluster.

    A NetworkPolicy cannot name a host, so the rule opens the query URL's
    port (its scheme's default when it has none); a ``<service>.<namespace>.svc``
    URL is in this cluster and opens that namespace instead.
    """
    if not plan.is_fleet or plan.query_url == plan.integrations.prometheus.url:
        return []
    parsed = urlsplit(plan.query_url)
    host = parsed.hostname or ""
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return [{"to": [_namespace_peer(labels[1])]}]
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return [{"ports": [{"port": port, "protocol": "TCP"}]}]


def network_policy(plan: Plan) -> dict[str, Any]:
    prometheus_ns = plan.integrations.prometheus.namespace
    sources = sorted({prometheus_ns, notifications_namespace(plan)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, guard_namespace(plan), wave=WAVE_WORKLOADS),
        "spec": {
            "podSelector": {"matchLabels": pod_labels(plan)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [_namespace_peer(n) for n in sources],
                         "ports": [{"port": c.GUARD_PORT, "protocol": "TCP"}]}],
            "egress": [
                {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                {"to": [_namespace_peer(prometheus_ns)]},
                {"ports": [{"port": p, "protocol": "TCP"} for p in API_SERVER_PORTS]},
                *query_egress(plan),
            ],
        },
    }


def service_monitor(plan: Plan) -> dict[str, Any]:
    namespace = guard_namespace(plan)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(plan, COMPONENT, c.GUARD_NAME, namespace,
                             labels=plan.integrations.prometheus.monitor_labels, wave=WAVE_POLICIES),
        "spec": {
            "endpoints": [{"interval": SCRAPE_INTERVAL, "path": c.GUARD_METRICS_PATH, "port": "http", "scheme": "http"}],
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": pod_labels(plan)},
        },
    }


def generate(plan: Plan) -> list[Artifact]:
    if not enforces(plan):
        return []
    objects = [config_map(plan), service_account(plan), role(plan), role_binding(plan), deployment(plan),
               service(plan), network_policy(plan), service_monitor(plan)]
    return [manifest(COMPONENT, obj) for obj in objects]
