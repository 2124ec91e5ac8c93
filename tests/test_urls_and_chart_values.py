"""URLs in the plan are plain http(s) URLs, and no chart value can carry Helm template syntax."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.output.manifest_checks import check_object
from costplan.plan.checks import url_problem
from tests.conftest import patched_minimal


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://{{ .Release.Name }}:9090", "template syntax"),
        ('http://prometheus:9090/{{ fail "x" }}', "template syntax"),
        ("http://user:pw@prometheus:9090", "credentials"),
        ("ftp://prometheus:9090", "not an http"),
        ("http://prometheus:99999", "not a valid URL"),
        ("http://prometheus:9090/?q=1", "query or fragment"),
        ("http://prom etheus:9090", "whitespace"),
        ("http://prometheus\x7f:9090", "control"),
        ("http://-bad-.example:9090", "invalid host"),
        ("http:///path", "no host"),
        ("http://prometheus:9090/a\"b", "path grammar"),
    ],
)
def test_bad_prometheus_urls_are_refused(url, says):
    problem = url_problem(url)
    assert problem is not None and says in problem


@pytest.mark.parametrize(
    "url",
    ["http://prometheus-operated.monitoring.svc:9090", "https://prom.example.com/prometheus", "http://10.0.0.1:9090",
     "http://[::1]:9090/"],
)
def test_good_urls_pass(url):
    assert url_problem(url) is None


def test_a_template_in_the_prometheus_url_fails_validate_with_a_position(tmp_path):
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(("url: http://prometheus:9090", 'url: "http://{{ .Values.x }}:9090"')))
    result = CliRunner().invoke(main, ["validate", "-f", str(plan)], catch_exceptions=False)
    assert result.exit_code == 3
    assert "/integrations/prometheus/url" in result.stderr and "[url]" in result.stderr


def test_every_chart_value_is_checked_for_template_syntax():
    app = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a", "namespace": "argocd"},
        "spec": {"source": {"helm": {"valuesObject": {"opencost": {"prometheus": {"external": {
            "url": "http://{{ .Release.Namespace }}"}}}}}},
            "sources": [{"helm": {"parameters": [{"name": "x", "value": "{{ lookup }}"}]}}]},
    }
    findings = [f for f in check_object(app) if f[2] == "helm-template"]
    assert [f[0] for f in findings] == [
        "/spec/source/helm/valuesObject/opencost/prometheus/external/url",
        "/spec/sources/0/helm/parameters/0/value",
    ]


def test_the_bundled_plans_chart_values_hold_no_template_syntax(bundled_plan):
    from costplan.generators import opencost

    for env in (None, "dev", "prod", "staging"):
        for artifact in opencost.generate(bundled_plan(env)):
            if artifact.kind == "Application":
                assert not [f for f in check_object(artifact.data) if f[2] == "helm-template"]
