"""OpenCost and Kubecost values: keys the charts know, GPU prices in the right units."""

from __future__ import annotations

import dataclasses
import json
import re
from decimal import Decimal

import jsonschema
import pytest
import yaml

from costplan.generators import opencost
from costplan.plan.model import GpuInstance
from tests.conftest import CRD_SCHEMAS, ENVIRONMENTS, HELM_VALUES, needs_reference

# Keys under which the chart takes any map or list: their children are not
# chart keys. Each is documented as free-form in the chart's values.yaml.
OPENCOST_FREE_FORM = {
    "opencost.customPricing.costModel",  # every key is copied into the pricing ConfigMap
    "opencost.exporter.extraEnv",  # map rendered as env name/value pairs
    "opencost.metrics.serviceMonitor.additionalLabels",
    "opencost.exporter.extraVolumeMounts",  # list of VolumeMounts
    "extraVolumes",  # list of Volumes
    "plugins.install.plugins",  # list of plugin names
}
# Keys the chart documents only as commented-out lines, with the line that proves it.
OPENCOST_COMMENTED = {"plugins.version": "# version: <INSERT_SPECIFIC_PLUGINS_VERSION>"}

KUBECOST_FREE_FORM = {
    "serviceMonitor.additionalLabels",
    "kubecostProductConfigs.defaultModelPricing",
    "kubecostProductConfigs.labelMappingConfigs",
}


def key_paths(tree, prefix=""):
    """Every dotted key path in a nested mapping (lists are leaves)."""
    paths = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths.add(path)
            paths |= key_paths(value, path)
    return paths


def unknown_keys(values, chart_paths, free_form):
    """Paths in ``values`` that the chart does not define (below free-form maps all pass)."""
    unknown = []
    for path in sorted(key_paths(values)):
        if any(path.startswith(f"{free}.") for free in free_form):
            continue
        if path not in chart_paths:
            unknown.append(path)
    return unknown


@pytest.fixture(scope="module")
def opencost_chart_paths(shared_dir):
    return key_paths(yaml.safe_load((HELM_VALUES / "opencost" / "values.yaml").read_text()))


@pytest.fixture(scope="module")
def kubecost_chart_paths(shared_dir):
    """The cost-analyzer key tree, including its documented ``kubecostProductConfigs`` block.

    That block is shipped commented out in the chart's values.yaml (it is
    the documentation of those settings), so it is uncommented and parsed.
    """
    text = (HELM_VALUES / "cost-analyzer" / "values.yaml").read_text()
    paths = key_paths(yaml.safe_load(text))
    lines = text.splitlines()
    start = lines.index("# kubecostProductConfigs:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        stripped = line[2:] if line.startswith("# ") else line[1:]
        # Keep only real keys of the block (two-space indented YAML), not prose.
        if stripped.startswith("kubecostProductConfigs:") or re.match(r"^  +[A-Za-z_][\w-]*:", stripped):
            block.append(stripped.split(" #")[0])
    documented = yaml.safe_load("\n".join(block))
    assert "defaultModelPricing" in documented["kubecostProductConfigs"]
    return paths | key_paths(documented)


def with_engine(plan, **changes):
    engine = dataclasses.replace(plan.integrations.cost_engine, **changes)
    return dataclasses.replace(plan, integrations=dataclasses.replace(plan.integrations, cost_engine=engine))


def one_gpu_plan(plan):
    return dataclasses.replace(plan, gpu_instances=plan.gpu_instances[:1])


def values_of(artifacts, filename):
    return next(a.data for a in artifacts if a.filename == filename)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_opencost_values_use_only_chart_keys(bundled_plan, opencost_chart_paths, env):
    plan = bundled_plan(env)
    variants = [
        plan,
        one_gpu_plan(plan),
        with_engine(plan, image_tag="1.121.0", openai_plugin_secret="openai-plugin"),
    ]
    for variant in variants:
        values = values_of(opencost.generate(variant), "values-opencost.yaml")
        allowed = opencost_chart_paths | set(OPENCOST_COMMENTED)
        assert unknown_keys(values, allowed, OPENCOST_FREE_FORM) == []


@needs_reference
def test_commented_opencost_keys_are_really_documented():
    text = (HELM_VALUES / "opencost" / "values.yaml").read_text()
    for line in OPENCOST_COMMENTED.values():
        assert line in text


def test_key_tree_check_catches_a_typo(opencost_chart_paths):
    values = {"opencost": {"exporter": {"defaultClusterID": "x"}}}
    assert unknown_keys(values, opencost_chart_paths, OPENCOST_FREE_FORM) == ["opencost.exporter.defaultClusterID"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kubecost_values_use_only_chart_keys(bundled_plan, kubecost_chart_paths, env):
    plan = with_engine(bundled_plan(env), type="kubecost", namespace="kubecost", chart_version="2.3.3")
    values = values_of(opencost.generate(plan), "values-kubecost.yaml")
    assert unknown_keys(values, kubecost_chart_paths, KUBECOST_FREE_FORM) == []


def test_prometheus_is_external_and_scraped_with_release_label(bundled_plan):
    values = values_of(opencost.generate(bundled_plan("prod")), "values-opencost.yaml")
    oc = values["opencost"]
    # The chart fails to render with two Prometheus sources enabled.
    assert oc["prometheus"]["internal"] == {"enabled": False}
    assert oc["prometheus"]["external"] == {"enabled": True, "url": "http://prometheus-operated.monitoring.svc:9090"}
    assert oc["metrics"]["serviceMonitor"] == {
        "enabled": True,
        "additionalLabels": {"release": "kube-prometheus-stack"},
    }
    assert oc["exporter"]["defaultClusterId"] == "llm-prod-eu"
    assert oc["exporter"]["image"] == {"tag": "1.120.1"}
    assert oc["ui"]["image"] == {"tag": "1.120.1"}


def test_pinned_1_120_writes_monthly_prices_times_730(bundled_plan):
    model = values_of(opencost.generate(bundled_plan()), "values-opencost.yaml")["opencost"]["customPricing"]["costModel"]
    # Hand-computed: OpenCost's hourly defaults x 730 (CPU 0.031611, RAM
    # 0.004237, storage 0.00005479452); GPU = p4d 32.7726 / 8 = 4.096575 per
    # GPU-hour x 730. spotGPU is never divided by 730 upstream: hourly.
    assert model["CPU"] == "23.07603"
    assert model["RAM"] == "3.09301"
    assert model["spotCPU"] == "4.85815"
    assert model["spotRAM"] == "0.65116"
    assert model["storage"] == "0.0399999996"
    assert model["GPU"] == "2990.49975"
    assert model["spotGPU"] == "4.096575"
    assert model["internetNetworkEgress"] == "0.12"
    assert "x730" in model["description"]
    assert all(isinstance(v, str) for v in model.values())


def test_pinned_1_121_writes_hourly_prices(bundled_plan):
    plan = one_gpu_plan(with_engine(bundled_plan(), image_tag="1.121.0"))
    model = values_of(opencost.generate(plan), "values-opencost.yaml")["opencost"]["customPricing"]["costModel"]
    assert model["GPU"] == "1.006"
    assert model["spotGPU"] == "1.006"
    assert model["CPU"] == "0.031611"
    assert model["RAM"] == "0.004237"
    assert model["storage"] == "0.00005479452"
    assert model["gpuLabel"] == "nvidia.com/gpu.present"
    assert model["gpuLabelValue"] == "true"


def test_one_gpu_model_uses_gpu_label_not_csv(bundled_plan):
    artifacts = opencost.generate(one_gpu_plan(bundled_plan()))
    values = values_of(artifacts, "values-opencost.yaml")
    model = values["opencost"]["customPricing"]["costModel"]
    assert model["GPU"] == "734.38"  # 1.006 x 730
    assert model["gpuLabel"] == "nvidia.com/gpu.present"
    # The custom prices apply on EC2 nodes too (providerID aws://...).
    assert values["opencost"]["exporter"]["extraEnv"] == {"USE_CUSTOM_PROVIDER": "true"}
    assert "extraVolumes" not in values
    assert not any(a.kind == "ConfigMap" for a in artifacts)


def test_several_gpu_models_use_the_csv_provider(bundled_plan):
    artifacts = opencost.generate(bundled_plan("prod"))
    values = values_of(artifacts, "values-opencost.yaml")
    exporter = values["opencost"]["exporter"]
    assert exporter["extraEnv"] == {
        "USE_CUSTOM_PROVIDER": "true",
        "USE_CSV_PROVIDER": "true",
        "CSV_PATH": "/var/configs/costplan-pricing/pricing.csv",
    }
    configmap = next(a for a in artifacts if a.kind == "ConfigMap")
    assert configmap.namespace == "opencost"
    assert values["extraVolumes"] == [{"name": "costplan-gpu-pricing", "configMap": {"name": configmap.name}}]
    assert exporter["extraVolumeMounts"][0]["mountPath"] == "/var/configs/costplan-pricing"
    assert configmap.data["data"]["pricing.csv"] == (
        "EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version\n"
        # gpu rows count only next to node rows, and only on a matched node:
        # the node without its GPUs (here the whole rate is the GPUs').
        ",g5.xlarge,,node,metadata.labels.node.kubernetes.io/instance-type,g5.xlarge,0,\n"
        ",p4d.24xlarge,,node,metadata.labels.node.kubernetes.io/instance-type,p4d.24xlarge,0,\n"
        ",NVIDIA-A100-SXM4-40GB,,gpu,nvidia.com/gpu.product,,4.096575,\n"
        ",NVIDIA-A10G,,gpu,nvidia.com/gpu.product,,1.006,\n"
    )
    # The CSV provider prices per GPU from the label; gpuLabel would not help here.
    assert "gpuLabel" not in values["opencost"]["customPricing"]["costModel"]


def test_same_gpu_model_at_two_rates_takes_the_higher(bundled_plan):
    plan = bundled_plan()
    extra = GpuInstance("g5-spot", "g5.xlarge", "NVIDIA-A10G", 1, Decimal("0.5"))
    rates = opencost.gpu_rates(dataclasses.replace(plan, gpu_instances=plan.gpu_instances + (extra,)))
    assert rates["NVIDIA-A10G"] == Decimal("1.006")


def test_inference_cost_env_only_from_1_121(bundled_plan):
    old = values_of(opencost.generate(bundled_plan()), "values-opencost.yaml")
    assert "INFERENCE_COST_ENABLED" not in old["opencost"]["exporter"]["extraEnv"]
    new = values_of(opencost.generate(with_engine(bundled_plan(), image_tag="1.121.0")), "values-opencost.yaml")
    env = new["opencost"]["exporter"]["extraEnv"]
    assert env["INFERENCE_COST_ENABLED"] == "true"
    assert env["INFERENCE_MODEL_LABEL"] == "llm-d.ai/model"


def test_openai_plugin_only_through_existing_secret(bundled_plan):
    values = values_of(
        opencost.generate(with_engine(bundled_plan(), openai_plugin_secret="opencost-openai")), "values-opencost.yaml"
    )
    assert values["plugins"] == {
        "enabled": True,
        "install": {"enabled": True, "plugins": ["openai"]},
        "version": "v0.0.15",
        "existingSecret": "opencost-openai",
    }
    assert "configs" not in values["plugins"]
    assert "plugins" not in values_of(opencost.generate(bundled_plan()), "values-opencost.yaml")


def test_kubecost_prices_are_monthly_and_exact(bundled_plan):
    plan = with_engine(bundled_plan(), type="kubecost", namespace="kubecost")
    values = values_of(opencost.generate(plan), "values-kubecost.yaml")
    product = values["kubecostProductConfigs"]
    assert product["customPricesEnabled"] is True
    assert product["defaultModelPricing"]["GPU"] == "2990.49975"
    assert product["defaultModelPricing"]["CPU"] == "28"
    assert product["gpuLabel"] == "nvidia.com/gpu.present"
    assert product["labelMappingConfigs"] == {"enabled": True, "team_label": "team"}
    assert product["sharedNamespaces"] == "kuadrant-system,llm,llm-batch"
    assert product["currencyCode"] == "USD"
    assert values["global"]["prometheus"] == {"enabled": False, "fqdn": "http://prometheus-operated.monitoring.svc:9090"}
    assert values["serviceMonitor"]["additionalLabels"] == {"release": "kube-prometheus-stack"}


def test_no_cost_engine_no_values(bundled_plan):
    assert opencost.generate(with_engine(bundled_plan(), type="none")) == []


@needs_reference
@pytest.mark.parametrize("engine", ["opencost", "kubecost"])
def test_argocd_application_validates_and_carries_the_values(bundled_plan, engine):
    plan = with_engine(bundled_plan("staging"), type=engine)
    artifacts = opencost.generate(plan)
    app = next(a for a in artifacts if a.kind == "Application")
    schema = json.loads((CRD_SCHEMAS / "argoproj.io" / "application_v1alpha1.json").read_text())
    jsonschema.validate(app.data, schema)
    values = next(a.data for a in artifacts if a.filename)
    source = app.data["spec"]["source"]
    assert source["helm"]["valuesObject"] == values
    assert source["targetRevision"] == "2.5.17"
    assert app.namespace == "argocd"
    assert app.data["spec"]["destination"]["namespace"] == "opencost"


def test_values_are_deterministic(bundled_plan):
    def dump():
        return yaml.safe_dump([a.data for a in opencost.generate(bundled_plan("prod"))], sort_keys=True)
    assert dump() == dump()


def test_version_parsing():
    assert opencost.parse_version("1.120.1@sha256:abc") == (1, 120, 1)
    assert opencost.parse_version("v1.121.0") == (1, 121, 0)
    assert opencost.parse_version(None) == (1, 120, 1)
    assert opencost.parse_version("latest") > (1, 121, 0)


def test_plan_prices_cpu_ram_and_storage(bundled_plan):
    plan = with_engine(bundled_plan(), image_tag="1.121.0", cpu_hourly=Decimal("0.04"), ram_hourly=Decimal("0.005"))
    model = values_of(opencost.generate(plan), "values-opencost.yaml")["opencost"]["customPricing"]["costModel"]
    assert (model["CPU"], model["RAM"], model["storage"]) == ("0.04", "0.005", "0.00005479452")

