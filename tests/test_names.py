"""Names and escaping: what user text may become in Kubernetes, PromQL and CEL."""

from __future__ import annotations

import pytest

from costplan.core import names


@pytest.mark.parametrize("check", [names.is_dns_label, names.is_dns_subdomain, names.is_label_value,
                                   names.is_prometheus_label_name, names.is_prometheus_metric_name])
def test_a_trailing_newline_never_passes(check):
    assert check("abc")
    assert not check("abc\n")


def test_label_values_follow_kubernetes_rules():
    assert names.is_label_value("")
    assert names.is_label_value("CC-1001")
    assert not names.is_label_value("-x") and not names.is_label_value("a" * 64)
    assert names.is_label_key("app.kubernetes.io/name") and not names.is_label_key("bad key")


def test_prometheus_label_names_reserve_double_underscore():
    assert not names.is_prometheus_label_name("__name__")


def test_object_names_keep_valid_input_and_hash_the_rest():
    assert names.object_name("costplan", "team", "ml-research") == "costplan-team-ml-research"
    sanitized = names.object_name("Qwen/Qwen3-0.6B")
    assert sanitized.startswith("qwen-qwen3-0-6b-") and names.is_dns_label(sanitized)
    assert names.object_name("Qwen/Qwen3-0.6B") != names.object_name("qwen/qwen3-0.6b")
    long = names.object_name("a" * 80)
    assert len(long) == 63 and names.is_dns_label(long)


def test_promql_strings_cannot_be_escaped_from():
    assert names.promql_string('a"} or vector(1) #\n\\') == '"a\\"} or vector(1) #\\n\\\\"'


def test_cel_strings_escape_quotes_and_non_ascii():
    assert names.cel_string('x" || true || "') == '"x\\" || true || \\""'
    assert names.cel_string("é\U0001f600") == '"\\u00e9\\U0001f600"'
