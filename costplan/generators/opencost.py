"""Generator: Helm values that make OpenCost (or Kubecost) price GPUs at the plan's rates.

The cost engine supplies infrastructure cost (GPU, CPU, RAM by namespace and
team label); per-request and per-token prices never go there, because
neither engine has an input for them (OpenCost has no ``ExternalCost`` CRD
and no external-allocation endpoint). They stay in costplan's own rules.

What makes the GPU rates *really* apply, and why each key is set:

* ``opencost.prometheus.internal.enabled: false`` next to
  ``external.enabled: true``: the chart refuses to render with two sources.
* ``metrics.serviceMonitor`` with the plan's ``monitorLabels``: a
  kube-prometheus-stack Prometheus only scrapes monitors carrying its release
  label, and without the scrape ``node_gpu_hourly_cost`` never exists.
* ``customPricing.costModel`` is always written in full: with
  ``createConfigmap: true`` the chart's placeholder would otherwise replace
  the prices. CPU, RAM and storage come from ``costEngine.hourlyPrices``,
  else OpenCost's documented hourly defaults; never the chart's values
  (CPU 1.25, RAM 0.50, storage 0.25), which are placeholders and, read as
  hourly prices, make CPU about 40x, RAM 120x and storage 4,500x too dear.
* ``USE_CUSTOM_PROVIDER=true``: OpenCost picks its provider from the first
  node's ``providerID`` (``aws://`` → AWS list prices) and ignores the custom
  prices unless this is set; the chart's ``customPricing.provider`` does not
  set it.
* Units come from the pinned image: OpenCost before 1.121.0 divides the
  ConfigMap prices by 730 (monthly semantics, opencost#3781, fixed by
  #3830), so for those versions every price is written multiplied by 730.
* One GPU model: ``gpuLabel``/``gpuLabelValue`` (older versions only give a
  node the GPU price through that label). Several GPU models: the custom
  provider has a single GPU price per cluster, so the CSV provider is
  switched on with one ``gpu`` row per model, matched on the GPU Feature
  Discovery product label, and one ``node`` row per instance type, matched
  on ``node.kubernetes.io/instance-type``: the provider drops ``gpu`` rows
  when there are no ``node`` rows and adds GPU cost only on top of a matched
  node. CSV prices are hourly in every version.
* ``spotGPU`` is the one GPU price OpenCost never divides by 730: it is
  written hourly in every version.

All prices are exact decimal strings, so ``0.1`` never becomes
``0.1000000000000000055``.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

from costplan.core import conventions as c
from costplan.core.artifacts import Artifact, file, manifest
from costplan.core.money import format_decimal
from costplan.generators.common import WAVE_CONFIG, WAVE_WORKLOADS, metadata
from costplan.plan.model import SCOPE_CLUSTER, GpuInstance, Plan

COMPONENT = "opencost"
KUBECOST_COMPONENT = "kubecost"

HOURS_PER_MONTH = Decimal(730)
# First OpenCost release that reads ConfigMap prices as hourly (opencost#3830).
HOURLY_CONFIGMAP_SINCE = (1, 121, 0)
# First OpenCost release with inference cost tracking (opencost#3845).
INFERENCE_COST_SINCE = (1, 121, 0)
# App version of opencost chart 2.5.17, used when the plan pins no image tag.
CHART_DEFAULT_APP_VERSION = (1, 120, 1)

GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
INFERENCE_MODEL_LABEL = "llm-d.ai/model"
INFERENCE_SERVERS = ("vllm", "llm-d")

CSV_CONFIGMAP = "costplan-gpu-pricing"
CSV_KEY = "pricing.csv"
CSV_MOUNT = "/var/configs/costplan-pricing"
CSV_VOLUME = "costplan-gpu-pricing"
CSV_COLUMNS = (
    "EndTimestamp",
    "InstanceID",
    "Region",
    "AssetClass",
    "InstanceIDField",
    "InstanceType",
    "MarketPriceHourly",
    "Version",
)

OPENCOST_CHART_REPO = "https://opencost.github.io/opencost-helm-chart"
KUBECOST_CHART_REPO = "https://kubecost.github.io/cost-analyzer/"

# Hourly prices for what the plan does not price: OpenCost's documented
# defaults (per vCPU, per GiB of RAM, per GB of storage), not the chart's
# ``customPricing.costModel`` placeholders.
DEFAULT_HOURLY = {
    "CPU": Decimal("0.031611"),
    "spotCPU": Decimal("0.006655"),
    "RAM": Decimal("0.004237"),
    "spotRAM": Decimal("0.000892"),
    "storage": Decimal("0.00005479452"),
}
NODE_INSTANCE_TYPE_FIELD = "metadata.labels.node.kubernetes.io/instance-type"
# Egress is priced per GiB, never divided by 730.
DEFAULT_EGRESS = {
    "zoneNetworkEgress": Decimal("0.01"),
    "regionNetworkEgress": Decimal("0.01"),
    "internetNetworkEgress": Decimal("0.12"),
}
# Kubecost's own documented monthly defaults for what the plan does not price.
KUBECOST_DEFAULT_MONTHLY = {
    "CPU": Decimal("28.0"),
    "spotCPU": Decimal("4.86"),
    "RAM": Decimal("3.09"),
    "spotRAM": Decimal("0.65"),
    "storage": Decimal("0.04"),
}


# --------------------------------------------------------------------------
# Versions and rates
# --------------------------------------------------------------------------


def parse_version(tag: str | None) -> tuple[int, int, int]:
    """``1.120.1``, ``v1.121.0``, ``1.120.1@sha256:…`` → ``(1, 120, 1)``.

    No tag means the chart's default image. A tag that is not a version
    (``latest``, a digest) is treated as the newest behaviour, since that is
    what such a tag pulls.
    """
    if not tag:
        return CHART_DEFAULT_APP_VERSION
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", tag)
    if not match:
        return (999, 0, 0)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def configmap_prices_are_monthly(plan: Plan) -> bool:
    """True when the pinned OpenCost divides ConfigMap prices by 730."""
    return parse_version(plan.integrations.cost_engine.image_tag) < HOURLY_CONFIGMAP_SINCE


def gpu_rates(plan: Plan) -> dict[str, Decimal]:
    """Hourly price of one GPU per GPU model, in model order of first use.

    Two instance types with the same GPU model but different per-GPU rates
    cannot be told apart by a GPU label; the higher rate wins so GPUs are
    never priced below the plan.
    """
    rates: dict[str, Decimal] = {}
    for instance in plan.gpu_instances:
        rate = instance.hourly_rate_per_gpu
        if instance.gpu_model not in rates or rate > rates[instance.gpu_model]:
            rates[instance.gpu_model] = rate
    return rates


def uses_csv_provider(plan: Plan) -> bool:
    """Several GPU models need several GPU prices: only the CSV provider has them."""
    return len(gpu_rates(plan)) > 1


def hourly_prices(plan: Plan) -> dict[str, Decimal]:
    """CPU, RAM and storage per hour: the plan's, else OpenCost's defaults."""
    engine = plan.integrations.cost_engine
    prices = dict(DEFAULT_HOURLY)
    for key, value in (("CPU", engine.cpu_hourly), ("RAM", engine.ram_hourly), ("storage", engine.storage_hourly)):
        if value is not None:
            prices[key] = value
    return prices


def node_hourly_without_gpus(instance: GpuInstance, gpu_rate: Decimal) -> Decimal:
    """What a node costs besides its GPUs, which the CSV prices per GPU on top of it.

    The plan's ``hourlyRate`` is the whole node, all of it GPU cost; with the
    highest per-GPU rate of a GPU model this is never above zero, and zero
    keeps the node from being priced twice.
    """
    return max(instance.hourly_rate - gpu_rate * instance.gpus_per_node, Decimal(0))


def pricing_csv(plan: Plan) -> str:
    """The CSV provider's file, hourly prices.

    One ``node`` row per instance type (the node without its GPUs) and one
    ``gpu`` row per GPU model (per GPU): the provider keeps ``gpu`` rows only
    next to ``node`` rows and adds a GPU's price only to a node a row matched.
    """
    rates = gpu_rates(plan)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    nodes: dict[str, Decimal] = {}
    for instance in plan.gpu_instances:
        price = node_hourly_without_gpus(instance, rates[instance.gpu_model])
        nodes[instance.instance_type] = max(price, nodes.get(instance.instance_type, Decimal(0)))
    for instance_type, price in sorted(nodes.items()):
        writer.writerow(["", instance_type, "", "node", NODE_INSTANCE_TYPE_FIELD, instance_type, format_decimal(price), ""])
    for gpu_model, rate in sorted(rates.items()):
        writer.writerow(["", gpu_model, "", "gpu", GPU_PRODUCT_LABEL, "", format_decimal(rate), ""])
    return buffer.getvalue()


def _instances_by_model(plan: Plan) -> dict[str, list[GpuInstance]]:
    grouped: dict[str, list[GpuInstance]] = {}
    for instance in plan.gpu_instances:
        grouped.setdefault(instance.gpu_model, []).append(instance)
    return grouped


# --------------------------------------------------------------------------
# OpenCost
# --------------------------------------------------------------------------


def cost_model(plan: Plan) -> dict[str, str]:
    """The full ``customPricing.costModel``: every price as an exact string."""
    monthly = configmap_prices_are_monthly(plan)
    factor = HOURS_PER_MONTH if monthly else Decimal(1)
    rates = gpu_rates(plan)
    # With the CSV provider the costModel GPU price only applies to GPU nodes
    # no CSV row matches; the highest plan rate keeps them from looking cheap.
    gpu_hourly = max(rates.values()) if rates else Decimal("0.95")
    unit = "monthly (x730 but spotGPU: OpenCost before 1.121.0 divides ConfigMap prices by 730)" if monthly else "hourly"
    model: dict[str, str] = {
        "description": f"costplan {plan.name}/{plan.environment}: prices {unit}",
    }
    for key, hourly in hourly_prices(plan).items():
        model[key] = format_decimal(hourly * factor)
    model["GPU"] = format_decimal(gpu_hourly * factor)
    # Never divided by 730 upstream, so never multiplied here.
    model["spotGPU"] = format_decimal(gpu_hourly)
    for key, price in DEFAULT_EGRESS.items():
        model[key] = format_decimal(price)
    model["currencyCode"] = plan.currency
    model["clusterName"] = plan.cluster
    if rates and not uses_csv_provider(plan):
        model["gpuLabel"] = GPU_PRESENT_LABEL
        model["gpuLabelValue"] = "true"
    return dict(sorted(model.items()))


def inference_models(plan: Plan) -> list[str]:
    """Served model names of self-hosted vLLM/llm-d models OpenCost can cost."""
    return sorted(
        m.model_name for m in plan.models if m.provider == "self-hosted" and m.server in INFERENCE_SERVERS
    )


def exporter_env(plan: Plan) -> dict[str, str]:
    """``opencost.exporter.extraEnv`` (a map in this chart; values are quoted by it)."""
    # Without it the node's providerID picks the provider (AWS list prices
    # on EC2 nodes) and the custom prices are ignored.
    env: dict[str, str] = {"USE_CUSTOM_PROVIDER": "true"}
    if uses_csv_provider(plan):
        env["USE_CSV_PROVIDER"] = "true"
        env["CSV_PATH"] = f"{CSV_MOUNT}/{CSV_KEY}"
    version = parse_version(plan.integrations.cost_engine.image_tag)
    if version >= INFERENCE_COST_SINCE and inference_models(plan):
        # Pods must carry this label with the served model name as value,
        # or OpenCost silently reports zero inference cost.
        env["INFERENCE_COST_ENABLED"] = "true"
        env["INFERENCE_MODEL_LABEL"] = INFERENCE_MODEL_LABEL
    return env


def opencost_values(plan: Plan) -> dict[str, Any]:
    """Values for the opencost chart 2.5.x; every key exists in its values.yaml."""
    engine = plan.integrations.cost_engine
    prometheus = plan.integrations.prometheus
    exporter: dict[str, Any] = {"defaultClusterId": plan.cluster}
    ui: dict[str, Any] = {}
    if engine.image_tag:
        exporter["image"] = {"tag": engine.image_tag}
        ui["image"] = {"tag": engine.image_tag}
    env = exporter_env(plan)
    if env:
        exporter["extraEnv"] = env
    if uses_csv_provider(plan):
        exporter["extraVolumeMounts"] = [{"name": CSV_VOLUME, "mountPath": CSV_MOUNT, "readOnly": True}]
    opencost: dict[str, Any] = {
        "exporter": exporter,
        "prometheus": {
            "internal": {"enabled": False},
            "external": {"enabled": True, "url": prometheus.url},
        },
        "metrics": {
            "serviceMonitor": {"enabled": True, "additionalLabels": dict(prometheus.monitor_labels)},
        },
        "customPricing": {
            "enabled": True,
            "createConfigmap": True,
            "provider": "custom",
            "costModel": cost_model(plan),
        },
    }
    if ui:
        opencost["ui"] = ui
    values: dict[str, Any] = {"opencost": opencost}
    if uses_csv_provider(plan):
        values["extraVolumes"] = [{"name": CSV_VOLUME, "configMap": {"name": CSV_CONFIGMAP}}]
    return values


def with_openai_plugin(values: dict[str, Any], secret_name: str, version: str) -> dict[str, Any]:
    """Add the ``openai`` custom-cost plugin, configured only from an existing Secret.

    The Secret must hold key ``openai_config.json``; costplan never writes
    API keys into values. Results are daily and float-based, so they are for
    comparison in OpenCost's UI, never costplan's money of record.
    """
    result = dict(values)
    result["plugins"] = {
        "enabled": True,
        "install": {"enabled": True, "plugins": ["openai"]},
        "version": version,
        "existingSecret": secret_name,
    }
    return result


def restart_note(plan: Plan, chart: str) -> dict[str, str]:
    """OpenCost reads its prices when the pod starts: a price change needs a restart."""
    namespace = plan.integrations.cost_engine.namespace
    how = (f"kubectl -n {namespace} rollout restart deployment/opencost" if chart == "opencost"
           else f"restart the {chart} deployment in {namespace}")
    return {c.ANNOTATION_AFTER_CHANGE: f"the cost engine reads prices at start: {how}"}


def csv_configmap(plan: Plan) -> dict[str, Any]:
    engine = plan.integrations.cost_engine
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(plan, COMPONENT, CSV_CONFIGMAP, engine.namespace, annotations=restart_note(plan, "opencost"),
                             wave=WAVE_CONFIG),
        "data": {CSV_KEY: pricing_csv(plan)},
    }


# --------------------------------------------------------------------------
# Kubecost
# --------------------------------------------------------------------------


def kubecost_values(plan: Plan) -> dict[str, Any]:
    """Values for Kubecost's cost-analyzer chart: prices are monthly (x730), exact.

    Kubecost has one custom GPU price per cluster (its per-type CSV pricing
    is an Enterprise feature), so with several GPU models the highest rate
    is used and the spend rules carry the exact per-model GPU cost.
    """
    prometheus = plan.integrations.prometheus
    rates = gpu_rates(plan)
    gpu_hourly = max(rates.values()) if rates else Decimal("0.95")
    pricing: dict[str, Any] = {"enabled": True}
    for key, monthly in KUBECOST_DEFAULT_MONTHLY.items():
        pricing[key] = format_decimal(monthly)
    pricing["GPU"] = format_decimal(gpu_hourly * HOURS_PER_MONTH)
    pricing["spotGPU"] = format_decimal(gpu_hourly * HOURS_PER_MONTH)
    for key, price in DEFAULT_EGRESS.items():
        pricing[key] = format_decimal(price)
    # Model servers, the gateway and Limitador serve every team: Kubecost
    # spreads their cost instead of billing the namespace owner, because
    # costplan's per-request and per-token prices already recover it.
    shared = {m.namespace for m in plan.models if m.namespace and m.provider == "self-hosted"}
    shared |= {plan.integrations.gateway.namespace, plan.integrations.gateway.limitador.namespace}
    product: dict[str, Any] = {
        "clusterName": plan.cluster,
        "currencyCode": plan.currency,
        "customPricesEnabled": True,
        "defaultModelPricing": dict(sorted(pricing.items())),
        "labelMappingConfigs": {"enabled": True, "team_label": "team"},
    }
    if rates:
        product["gpuLabel"] = GPU_PRESENT_LABEL
        product["gpuLabelValue"] = "true"
    if shared:
        # Kubecost wants one comma-separated string.
        product["sharedNamespaces"] = ",".join(sorted(set(shared)))
    return {
        "global": {
            "prometheus": {"enabled": False, "fqdn": prometheus.url},
            "grafana": {"enabled": False, "proxy": False},
        },
        "serviceMonitor": {"enabled": True, "additionalLabels": dict(prometheus.monitor_labels)},
        "kubecostProductConfigs": dict(sorted(product.items())),
    }


# --------------------------------------------------------------------------
# Argo CD wiring and the generator
# --------------------------------------------------------------------------


def chart_application(plan: Plan, chart: str, repo_url: str, values: dict[str, Any], component: str,
                      destination: dict[str, str] | None = None) -> dict[str, Any]:
    """An Argo CD Application installing the chart with the values inline.

    ``destination`` is the Argo CD destination of a fleet's cluster (its
    server or Argo CD cluster name); the name then carries the cluster, since
    every cluster's chart Application lives in the one namespace Argo CD
    watches. Without one: the chart goes in-cluster, as for a single cluster.
    """
    argocd = plan.integrations.argocd
    assert argocd is not None
    engine = plan.integrations.cost_engine
    name = "-".join(p for p in ("costplan", plan.environment, plan.cluster if destination else "", chart) if p)
    target = dict(destination or {"server": "https://kubernetes.default.svc"})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata(plan, component, name, argocd.namespace,
                             annotations=restart_note(plan, chart), wave=WAVE_WORKLOADS),
        "spec": {
            "project": argocd.project,
            "source": {
                "repoURL": repo_url,
                "chart": chart,
                "targetRevision": engine.chart_version or "*",
                "helm": {"releaseName": chart, "valuesObject": values},
            },
            "destination": {**target, "namespace": engine.namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }


def engine_values(plan: Plan) -> tuple[str, str, str, dict[str, Any]] | None:
    """(chart, chart repository, component, values) of the plan's cost engine, ``None`` for none."""
    engine = plan.integrations.cost_engine
    if engine.type == "opencost":
        values = opencost_values(plan)
        if engine.openai_plugin_secret:
            values = with_openai_plugin(values, engine.openai_plugin_secret, engine.plugin_version)
        return "opencost", OPENCOST_CHART_REPO, COMPONENT, values
    if engine.type == "kubecost":
        return "cost-analyzer", KUBECOST_CHART_REPO, KUBECOST_COMPONENT, kubecost_values(plan)
    return None


def chart_applications(plan: Plan, destination: dict[str, str] | None = None) -> list[Artifact]:
    """The cost engine's chart Application for ``plan`` (a fleet: one cluster's plan and its destination)."""
    found = engine_values(plan)
    if found is None or plan.integrations.argocd is None:
        return []
    chart, repo_url, component, values = found
    return [manifest(component, chart_application(plan, chart, repo_url, values, component, destination))]


def generate(plan: Plan) -> list[Artifact]:
    """Values file (and CSV prices) of the cost engine, with its chart Application outside fleets.

    A fleet cluster's chart Application is generated in the global part
    (``argocd.generate``), where Argo CD reads it.
    """
    found = engine_values(plan)
    if found is None:
        return []
    chart, _, component, values = found
    artifacts = [file(component, f"values-{'kubecost' if chart == 'cost-analyzer' else chart}.yaml", values)]
    if chart == "opencost" and uses_csv_provider(plan):
        artifacts.append(manifest(COMPONENT, csv_configmap(plan)))
    if plan.scope != SCOPE_CLUSTER:
        artifacts.extend(chart_applications(plan))
    return artifacts
