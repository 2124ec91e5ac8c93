"""Generator: the scheduled chargeback report and the GPU price check.

Objects, all in the reports namespace (``reports.namespace``, by default
Prometheus' namespace, which exists wherever costplan's rules run):

* ConfigMap ``costplan-plan``: the merged plan of this environment, written
  back as a plan document. The jobs run ``costplan`` against it, so a report
  always uses the prices that were deployed with it, not whatever is in git
  at report time.
* ServiceAccount ``costplan-report`` with no token mounted and **no RBAC**:
  the jobs only talk to Prometheus over HTTP, and the plan arrives as a
  mounted ConfigMap volume (the kubelet reads it, not the pod).
* PersistentVolumeClaim for the report files (unless an existing claim is named).
* CronJob ``costplan-report``: on ``reports.schedule`` in the plan's timezone,
  the last full month, every view and format into the PVC; also POSTed to a
  webhook whose URL comes from a Secret key (``secretKeyRef``), never from git.
* CronJob ``costplan-gpu-price-check``: compares OpenCost's
  ``node_gpu_hourly_cost`` with the plan's per-GPU rates and fails (a failed
  Job, visible to the usual job alerts) when the engine prices GPUs wrongly,
  e.g. 730 times too cheap after an image upgrade changed its units.
"""

from __future__ import annotations

from typing import Any

from costplan.core.artifacts import Artifact, manifest
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators.common import WAVE_CONFIG, WAVE_WORKLOADS, metadata
from costplan.plan.load import BASE_ENVIRONMENT
from costplan.plan.model import (
    GpuHourly,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    Pricing,
    Reports,
    TieredVolume,
)

COMPONENT = "reports"
PLAN_CONFIGMAP = "costplan-plan"
SERVICE_ACCOUNT = "costplan-report"
REPORT_CRONJOB = "costplan-report"
GPU_CHECK_CRONJOB = "costplan-gpu-price-check"
PLAN_DIR = "/etc/costplan"
REPORTS_DIR = "/reports"
WEBHOOK_ENV = "COSTPLAN_WEBHOOK_URL"
RUN_AS = 10001


def reports_namespace(plan: Plan) -> str:
    return plan.reports.namespace or plan.integrations.prometheus.namespace


# --------------------------------------------------------------------------
# The plan, written back as a document
# --------------------------------------------------------------------------


def _pricing_doc(pricing: Pricing) -> dict[str, Any]:
    if isinstance(pricing, PerRequest):
        return {"type": pricing.type, "price": pricing.price}
    if isinstance(pricing, PerMillionTokens):
        doc: dict[str, Any] = {"type": pricing.type, "input": pricing.input, "output": pricing.output}
        if pricing.cached_input is not None:
            doc["cachedInput"] = pricing.cached_input
        if pricing.reasoning is not None:
            doc["reasoning"] = pricing.reasoning
        return doc
    if isinstance(pricing, PerRequestWithIncludedTokens):
        return {
            "type": pricing.type,
            "pricePerRequest": pricing.price_per_request,
            "includedTokensPerRequest": pricing.included_tokens_per_request,
            "overagePerMillionTokens": pricing.overage_per_million_tokens,
        }
    if isinstance(pricing, TieredVolume):
        key = "pricePerMillion" if pricing.unit == "tokens" else "pricePerRequest"
        return {
            "type": pricing.type,
            "unit": pricing.unit,
            "period": pricing.period,
            "tiers": [{"from": t.start, key: t.price} for t in pricing.tiers],
        }
    assert isinstance(pricing, GpuHourly)
    return {"type": pricing.type}


def _budget_doc(budget: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": budget.name,
        "amount": budget.amount,
        "period": budget.period,
        "thresholds": list(budget.thresholds),
    }
    if budget.window is not None:
        doc["window"] = budget.window
    return doc


def _rates(rates: Any) -> list[dict[str, Any]]:
    return [{"limit": r.limit, "window": r.window} for r in rates]


def plan_document(plan: Plan) -> dict[str, Any]:
    """The merged plan as a costplan.yaml document, teams reduced to what the jobs read.

    ``from_document`` reads it back equal to the plan except for the teams'
    users, namespaces, labels and budgets.
    """
    i = plan.integrations
    gateway: dict[str, Any] = {
        "type": i.gateway.type,
        "namespace": i.gateway.namespace,
        "targetRef": {"group": i.gateway.target_ref.group, "kind": i.gateway.target_ref.kind, "name": i.gateway.target_ref.name},
        "apiKey": {
            "header": i.gateway.api_key.header,
            "prefix": i.gateway.api_key.prefix,
            "secretNamespace": i.gateway.api_key.secret_namespace,
        },
        "limitador": {"namespace": i.gateway.limitador.namespace, "metrics": i.gateway.limitador.metrics},
    }
    if i.gateway.target_ref.section_name:
        gateway["targetRef"]["sectionName"] = i.gateway.target_ref.section_name
    if i.gateway.limitador.image:
        gateway["limitador"]["image"] = i.gateway.limitador.image
    engine: dict[str, Any] = {"type": i.cost_engine.type, "namespace": i.cost_engine.namespace}
    if i.cost_engine.chart_version:
        engine["chartVersion"] = i.cost_engine.chart_version
    if i.cost_engine.image_tag:
        engine["imageTag"] = i.cost_engine.image_tag
    if i.cost_engine.openai_plugin_secret:
        engine["openaiPlugin"] = {
            "existingSecret": i.cost_engine.openai_plugin_secret,
            "version": i.cost_engine.plugin_version,
        }
    secrets: dict[str, Any] = {"backend": i.secrets.backend, "refreshInterval": i.secrets.refresh_interval}
    if i.secrets.store is not None:
        secrets["store"] = {"kind": i.secrets.store.kind, "name": i.secrets.store.name}
    integrations: dict[str, Any] = {
        "gateway": gateway,
        "prometheus": {
            "url": i.prometheus.url,
            "namespace": i.prometheus.namespace,
            "ruleLabels": dict(i.prometheus.rule_labels),
            "monitorLabels": dict(i.prometheus.monitor_labels),
        },
        "costEngine": engine,
        "grafana": {
            "mode": i.grafana.mode,
            "namespace": i.grafana.namespace,
            "folder": i.grafana.folder,
            "sidecarLabel": dict(i.grafana.sidecar_label),
            "instanceSelector": dict(i.grafana.instance_selector),
        },
        "secrets": secrets,
    }
    if i.argocd is not None:
        integrations["argocd"] = {
            "namespace": i.argocd.namespace,
            "project": i.argocd.project,
            "repoURL": i.argocd.repo_url,
            "targetRevision": i.argocd.target_revision,
            "path": i.argocd.path,
        }
    sources = []
    for s in plan.usage_sources:
        source: dict[str, Any] = {"name": s.name, "type": s.type}
        if s.metrics:
            source["metrics"] = dict(s.metrics)
        if s.labels:
            source["labels"] = dict(s.labels)
        sources.append(source)
    models = []
    for m in plan.models:
        model: dict[str, Any] = {
            "name": m.name,
            "modelName": m.model_name,
            "provider": m.provider,
            "usageSource": m.usage_source,
            "pricing": _pricing_doc(m.pricing),
        }
        for key, value in (("server", m.server), ("namespace", m.namespace), ("gpuInstance", m.gpu_instance)):
            if value is not None:
                model[key] = value
        models.append(model)
    tiers = []
    for t in plan.tiers:
        tier: dict[str, Any] = {
            "name": t.name,
            "description": t.description,
            "priceMultiplier": t.price_multiplier,
        }
        limits = {}
        if t.request_limits:
            limits["requests"] = _rates(t.request_limits)
        if t.token_limits:
            limits["tokens"] = _rates(t.token_limits)
        if limits:
            tier["limits"] = limits
        quotas = {k: v for k, v in (("daily", t.quotas.daily), ("weekly", t.quotas.weekly), ("monthly", t.quotas.monthly)) if v is not None}
        if quotas:
            tier["quotas"] = quotas
        if t.price_overrides:
            tier["priceOverrides"] = [{"model": o.model, "pricing": _pricing_doc(o.pricing)} for o in t.price_overrides]
        tiers.append(tier)
    # Teams carry only what the jobs read (name, cost center, tier): users,
    # namespaces and budgets stay out, so even a plan with thousands of teams
    # fits in one ConfigMap, and the report namespace holds no user list.
    teams = [{"name": t.name, "costCenter": t.cost_center, "tier": t.tier} for t in plan.teams]
    alerts: dict[str, Any] = {
        "rateLimitedRatio": plan.alerts.rate_limited_ratio,
        "anomalyFactor": plan.alerts.anomaly_factor,
        "sourceAbsentFor": plan.alerts.source_absent_for,
    }
    if plan.alerts.cost_per_request_p95 is not None:
        alerts["costPerRequestP95"] = plan.alerts.cost_per_request_p95
    r = plan.reports
    # Written only when set: the jobs never read it, and plans without it
    # stay valid for schemas that predate the ``reports`` section.
    reports: dict[str, Any] = {
        "enabled": r.enabled,
        "schedule": r.schedule,
        "image": r.image,
        "pvc": {"claimName": r.pvc_claim, "size": r.pvc_size, "create": r.create_pvc},
        "gpuPriceCheckSchedule": r.gpu_price_check_schedule,
    }
    if r.namespace is not None:
        reports["namespace"] = r.namespace
    if r.webhook is not None:
        reports["webhook"] = {"secretName": r.webhook.name, "key": r.webhook.key}
    document = {
        "apiVersion": "costplan.dev/v1alpha1",
        "kind": "CostPlan",
        "metadata": {
            "name": plan.name,
            "currency": plan.currency,
            "timezone": plan.timezone,
            "cluster": plan.cluster,
        },
        "integrations": integrations,
        "usageSources": sources,
        "gpuInstances": [
            {
                "name": g.name,
                "instanceType": g.instance_type,
                "gpuModel": g.gpu_model,
                "gpusPerNode": g.gpus_per_node,
                "hourlyRate": g.hourly_rate,
            }
            for g in plan.gpu_instances
        ],
        "models": models,
        "tiers": tiers,
        "teams": teams,
        "budgets": [_budget_doc(b) for b in plan.budgets],
        "alerts": alerts,
    }
    if r != Reports():
        document["reports"] = reports
    return document


# --------------------------------------------------------------------------
# Kubernetes objects
# --------------------------------------------------------------------------


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _plan_volume(plan: Plan) -> dict[str, Any]:
    # The overlay file lets ``-e <env>`` name the environment; it is empty
    # because the shipped plan is already merged.
    items = [{"key": "costplan.yaml", "path": "costplan.yaml"}]
    if plan.environment != BASE_ENVIRONMENT:
        items.append({"key": "environment.yaml", "path": f"environments/{plan.environment}.yaml"})
    return {"name": "plan", "configMap": {"name": PLAN_CONFIGMAP, "items": items}}


def _cronjob(plan: Plan, name: str, schedule: str, args: list[str], *, env: list[dict[str, Any]], mounts: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    namespace = reports_namespace(plan)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(plan, COMPONENT, name, namespace, wave=WAVE_WORKLOADS),
        "spec": {
            "schedule": schedule,
            "timeZone": plan.timezone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 3600,
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "costplan"}},
                        "spec": {
                            "serviceAccountName": SERVICE_ACCOUNT,
                            "automountServiceAccountToken": False,
                            "restartPolicy": "Never",
                            "securityContext": _pod_security(),
                            "containers": [
                                {
                                    "name": "costplan",
                                    "image": plan.reports.image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "args": args,
                                    "env": env,
                                    "resources": {
                                        "requests": {"cpu": "50m", "memory": "128Mi"},
                                        "limits": {"memory": "512Mi"},
                                    },
                                    "securityContext": _container_security(),
                                    "volumeMounts": mounts,
                                }
                            ],
                            "volumes": volumes,
                        },
                    },
                }
            },
        },
    }


def _plan_args(plan: Plan) -> list[str]:
    env = [] if plan.environment == BASE_ENVIRONMENT else ["-e", plan.environment]
    return ["-f", f"{PLAN_DIR}/costplan.yaml", *env]


def report_cronjob(plan: Plan) -> dict[str, Any]:
    args = ["report", *_plan_args(plan), "--month", "last", "--output-dir", REPORTS_DIR]
    env: list[dict[str, Any]] = []
    if plan.reports.webhook is not None:
        env.append(
            {
                "name": WEBHOOK_ENV,
                "valueFrom": {"secretKeyRef": {"name": plan.reports.webhook.name, "key": plan.reports.webhook.key}},
            }
        )
    mounts = [
        {"name": "plan", "mountPath": PLAN_DIR, "readOnly": True},
        {"name": "reports", "mountPath": REPORTS_DIR},
    ]
    volumes = [_plan_volume(plan), {"name": "reports", "persistentVolumeClaim": {"claimName": plan.reports.pvc_claim}}]
    return _cronjob(plan, REPORT_CRONJOB, plan.reports.schedule, args, env=env, mounts=mounts, volumes=volumes)


def gpu_check_cronjob(plan: Plan) -> dict[str, Any]:
    args = ["check-gpu-prices", *_plan_args(plan)]
    mounts = [{"name": "plan", "mountPath": PLAN_DIR, "readOnly": True}]
    return _cronjob(
        plan, GPU_CHECK_CRONJOB, plan.reports.gpu_price_check_schedule, args, env=[], mounts=mounts, volumes=[_plan_volume(plan)]
    )


def generate(plan: Plan) -> list[Artifact]:
    if not plan.reports.enabled:
        return []
    namespace = reports_namespace(plan)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(plan, COMPONENT, PLAN_CONFIGMAP, namespace, wave=WAVE_CONFIG),
            "data": {"costplan.yaml": dump_yaml(plan_document(plan)), "environment.yaml": "{}\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(plan, COMPONENT, SERVICE_ACCOUNT, namespace, wave=WAVE_CONFIG),
            "automountServiceAccountToken": False,
        },
    ]
    if plan.reports.create_pvc:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata(plan, COMPONENT, plan.reports.pvc_claim, namespace, wave=WAVE_CONFIG),
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": plan.reports.pvc_size}}},
            }
        )
    objects.append(report_cronjob(plan))
    if plan.integrations.cost_engine.type == "opencost" and plan.gpu_instances:
        objects.append(gpu_check_cronjob(plan))
    return [manifest(COMPONENT, obj) for obj in objects]
