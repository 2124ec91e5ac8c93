"""A fleet in Argo CD: the ApplicationSet renders one Application per cluster, each synced to its own cluster.

The ApplicationSet controller's Go templates are stood in for by substituting
``{{.key}}`` with the element's value (what ``goTemplate: true`` does for a
plain field reference); each resulting Application must validate against
the Application CRD schema and match the single-cluster Application's sync
behaviour.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from costplan.core.artifacts import manifest
from costplan.generators import argocd, generate_all
from costplan.output.verify import ManifestValidator
from costplan.plan.model import Cluster
from tests.conftest import CRD_SCHEMA_LOCATION, needs_reference

FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render(template: Any, element: dict[str, str]) -> Any:
    """Go-template field references replaced by the element's values (missingkey=error: a KeyError)."""
    if isinstance(template, dict):
        return {k: render(v, element) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, element) for v in template]
    if isinstance(template, str):
        return FIELD.sub(lambda m: element[m.group(1)], template)
    return template


def without_empty(value: Any) -> Any:
    """JSON ``omitempty``: how the controller serialises an empty destination field."""
    if isinstance(value, dict):
        return {k: without_empty(v) for k, v in value.items() if v != ""}
    if isinstance(value, list):
        return [without_empty(v) for v in value]
    return value


def by_kind(plan, kind: str, part: str = "global") -> list[dict[str, Any]]:
    return [a.data for a in generate_all(plan) if a.kind == kind and a.part == part]


@pytest.fixture
def fleet_plan(bundled_plan):
    plan = bundled_plan("fleet")
    # One cluster by Argo CD cluster name, one by API server URL.
    clusters = (dataclasses.replace(plan.clusters[0], destination_server=None, destination_name="prod-eu"),
                plan.clusters[1])
    return dataclasses.replace(plan, clusters=clusters)


def generated_applications(plan) -> list[dict[str, Any]]:
    (appset,) = by_kind(plan, "ApplicationSet")
    assert appset["spec"]["goTemplate"] is True
    assert appset["spec"]["goTemplateOptions"] == ["missingkey=error"]
    (generator,) = appset["spec"]["generators"]
    template = appset["spec"]["template"]
    return [
        without_empty({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                       **render(template, element), "metadata": {**render(template["metadata"], element),
                                                                  "namespace": appset["metadata"]["namespace"]}})
        for element in generator["list"]["elements"]
    ]


def test_each_cluster_gets_an_application_syncing_its_own_directory_to_itself(fleet_plan):
    apps = generated_applications(fleet_plan)
    assert [a["metadata"]["name"] for a in apps] == ["costplan-llm-chargeback-fleet-eu-west",
                                                     "costplan-llm-chargeback-fleet-us-east"]
    assert [a["spec"]["source"]["path"] for a in apps] == ["out/fleet/clusters/eu-west", "out/fleet/clusters/us-east"]
    assert [a["spec"]["destination"] for a in apps] == [{"name": "prod-eu"},
                                                        {"server": "https://us-east.k8s.example.com"}]


def test_generated_and_global_applications_sync_like_the_single_cluster_one(fleet_plan, bundled_plan):
    single_app = next(a for a in by_kind(bundled_plan("prod"), "Application", part="")
                      if a["metadata"]["labels"]["costplan.dev/component"] == "argocd")
    (global_app,) = [a for a in by_kind(fleet_plan, "Application") if a["metadata"]["labels"]
                     ["costplan.dev/component"] == "argocd"]
    assert global_app["spec"]["source"]["path"] == "out/fleet/global"
    assert global_app["spec"]["destination"] == {"server": "https://kubernetes.default.svc"}
    for app in [*generated_applications(fleet_plan), global_app]:
        assert app["spec"]["syncPolicy"] == single_app["spec"]["syncPolicy"]
        assert "namespace" not in app["spec"]["destination"]


@needs_reference
def test_the_generated_applications_validate_against_the_application_schema(fleet_plan):
    validator = ManifestValidator(schema_locations=[CRD_SCHEMA_LOCATION], strict=True)
    problems = validator.validate_all([manifest("argocd", app) for app in generated_applications(fleet_plan)])
    assert [p for p in problems if p.severity == "error"] == []


def test_chart_applications_are_per_cluster_in_the_global_part_with_the_clusters_destination(fleet_plan):
    apps = {a["metadata"]["name"]: a for a in by_kind(fleet_plan, "Application")
            if a["spec"]["source"].get("chart") == "opencost"}
    assert sorted(apps) == ["costplan-fleet-eu-west-opencost", "costplan-fleet-us-east-opencost"]
    assert apps["costplan-fleet-eu-west-opencost"]["spec"]["destination"] == {"name": "prod-eu", "namespace": "opencost"}
    assert apps["costplan-fleet-us-east-opencost"]["spec"]["destination"] == {
        "server": "https://us-east.k8s.example.com", "namespace": "opencost"}
    values = apps["costplan-fleet-us-east-opencost"]["spec"]["source"]["helm"]["valuesObject"]
    assert values["opencost"]["exporter"]["defaultClusterId"] == "us-east"
    for cluster in fleet_plan.clusters:
        assert not [a for a in generate_all(fleet_plan)
                    if a.part == f"clusters/{cluster.name}" and a.kind in ("Application", "ApplicationSet")]


def test_the_global_part_has_no_team_namespaces_and_each_cluster_has_its_objects_namespaces(fleet_plan):
    artifacts = generate_all(fleet_plan)
    for part in {a.part for a in artifacts}:
        members = [a for a in artifacts if a.part == part and a.is_manifest]
        namespaces = {a.name for a in members if a.kind == "Namespace"}
        assert {a.namespace for a in members if a.namespace} <= namespaces, part
        if part == "global":
            team_namespaces = {n for t in fleet_plan.teams for n in t.namespaces}
            assert not namespaces & team_namespaces
            assert not any("team" in a.data["metadata"].get("labels", {}) for a in members if a.kind == "Namespace")


def test_a_cluster_without_a_destination_is_addressed_by_its_name():
    cluster = Cluster(name="ap-south")
    assert argocd.destination(cluster) == {"name": "ap-south"}
    assert argocd.destination(dataclasses.replace(cluster, destination_server="https://x")) == {"server": "https://x"}
