"""Generator: the scheduled chargeback report and the GPU price check.

Objects, all in the reports namespace (``reports.namespace``, by default
Prometheus' namespace, which exists wherever costplan's rules run):

* ConfigMap ``costplan-plan``: the merged plan of this environment, written
  back as a plan document. The jobs run ``costplan`` against it, so a report
  always uses the prices that were deployed with it, not whatever is in git
  at report time. A plan whose document exceeds ``PLAN_INLINE_BYTES``
  (thousands of teams) is stored gzip-compressed under ``binaryData``, so
  the object stays under the annotation limit of client-side apply.
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

import base64
import gzip
from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, manifest
from costplan.core.canonical_yaml import dump_yaml
from costplan.generators.common import WAVE_CONFIG, WAVE_WORKLOADS, metadata
from costplan.plan.document import plan_document
from costplan.plan.enforcement import metrics_token_path
from costplan.plan.load import BASE_ENVIRONMENT
from costplan.plan.model import JobResources, Plan

COMPONENT = "reports"
PLAN_CONFIGMAP = "costplan-plan"
SERVICE_ACCOUNT = "costplan-report"
REPORT_CRONJOB = "costplan-report"
GPU_CHECK_CRONJOB = "costplan-gpu-price-check"
PLAN_DIR = "/etc/costplan"
# Above this, the plan document goes to the ConfigMap gzip-compressed: client-side
# apply copies the whole object into the last-applied-configuration annotation
# (262,144 bytes at most), and 5,000 teams alone are ~290 kB of YAML (~30 kB
# compressed). Below it the copy stays readable with kubectl.
PLAN_INLINE_BYTES = 128 * 1024
REPORTS_DIR = "/reports"
WEBHOOK_ENV = "COSTPLAN_WEBHOOK_URL"
RUN_AS = 10001
# The GPU price check reads a handful of prices: the report's defaults, which
# ``reports.resources`` changes for the report alone.
GPU_CHECK_RESOURCES = JobResources()


def reports_namespace(plan: Plan) -> str:
    return plan.reports.namespace or plan.integrations.prometheus.namespace


# --------------------------------------------------------------------------
# The plan, written back as a document
# --------------------------------------------------------------------------


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


def _cronjob(
    plan: Plan,
    name: str,
    schedule: str,
    args: list[str],
    *,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    resources: JobResources,
) -> dict[str, Any]:
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
                        "metadata": {"labels": {c.LABEL_APP_NAME: name, c.LABEL_PART_OF: c.MANAGED_BY_VALUE}},
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
                                    "resources": resources.as_kubernetes(),
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


def query_access(plan: Plan) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(args, mounts, volumes) with which a job reads a fleet's global engine.

    The URL comes from the shipped plan (``metrics.queryURL``). The tenant is
    passed explicitly so the job's command line says what it queries; the
    bearer token is the Secret key ``metrics.bearerTokenSecret`` mounted
    read-only and read by ``--bearer-token-file`` at every request (a
    rotated token is picked up without a restart), never an environment
    variable or an argument. The Secret must exist in the reports namespace.
    """
    args: list[str] = []
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if plan.query_tenant:
        args += ["--tenant", plan.query_tenant]
    token = plan.query_bearer_token
    if token is not None:
        args += ["--bearer-token-file", metrics_token_path()]
        mounts.append({"name": c.METRICS_TOKEN_VOLUME, "mountPath": c.METRICS_TOKEN_DIR, "readOnly": True})
        volumes.append({"name": c.METRICS_TOKEN_VOLUME,
                        "secret": {"secretName": token.name, "items": [{"key": token.key, "path": c.METRICS_TOKEN_FILE}]}})
    return args, mounts, volumes


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
    mounts: list[dict[str, Any]] = [
        {"name": "plan", "mountPath": PLAN_DIR, "readOnly": True},
        {"name": "reports", "mountPath": REPORTS_DIR},
    ]
    volumes = [_plan_volume(plan), {"name": "reports", "persistentVolumeClaim": {"claimName": plan.reports.pvc_claim}}]
    access_args, access_mounts, access_volumes = query_access(plan)
    return _cronjob(plan, REPORT_CRONJOB, plan.reports.schedule, args + access_args, env=env,
                    mounts=mounts + access_mounts, volumes=volumes + access_volumes,
                    resources=plan.reports.resources)


def gpu_check_cronjob(plan: Plan) -> dict[str, Any]:
    access_args, access_mounts, access_volumes = query_access(plan)
    args = ["check-gpu-prices", *_plan_args(plan), *access_args]
    mounts = [{"name": "plan", "mountPath": PLAN_DIR, "readOnly": True}, *access_mounts]
    return _cronjob(plan, GPU_CHECK_CRONJOB, plan.reports.gpu_price_check_schedule, args, env=[], mounts=mounts,
                    volumes=[_plan_volume(plan), *access_volumes], resources=GPU_CHECK_RESOURCES)


def plan_data(document: str) -> dict[str, Any]:
    """The ConfigMap's ``data`` (and, for a large plan, ``binaryData``) holding the plan document.

    The key is ``costplan.yaml`` either way: the volume mounts the decoded
    bytes under that name, and the plan loader reads gzip by its magic bytes.
    ``mtime=0`` and a fixed level keep the bytes deterministic.
    """
    encoded = document.encode()
    if len(encoded) <= PLAN_INLINE_BYTES:
        return {"data": {"costplan.yaml": document, "environment.yaml": "{}\n"}}
    packed = gzip.compress(encoded, compresslevel=9, mtime=0)
    return {
        "data": {"environment.yaml": "{}\n"},
        "binaryData": {"costplan.yaml": base64.b64encode(packed).decode("ascii")},
    }


def generate(plan: Plan) -> list[Artifact]:
    if not plan.reports.enabled:
        return []
    namespace = reports_namespace(plan)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(plan, COMPONENT, PLAN_CONFIGMAP, namespace, wave=WAVE_CONFIG),
            **plan_data(dump_yaml(plan_document(plan))),
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
