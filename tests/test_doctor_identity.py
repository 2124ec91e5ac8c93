"""``costplan doctor``'s identity check against a real Prometheus holding kube-state-metrics' key Secret series.

Plans whose usage carries only the user (the custom Limitador image of the
bundled plan's staging) take team, tier and cost center from the key
Secrets' annotations as kube-state-metrics exports them. The check runs
the very expression of ``costplan:user_identity`` in Prometheus and names
the users it leaves out: their usage would never be attributed.

One server holds four key namespaces; the plan is pointed at each in turn:
``keys`` (every user's Secret as built), ``broken`` (one user without a
Secret, one whose second Secret claims another team, one with another
tier), ``bare`` (Secrets exported without the allowlisted annotations) and
``nowhere`` (no kube-state-metrics series at all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from costplan.chargeback.promapi import PrometheusClient
from costplan.install import doctor
from costplan.plan.model import ApiKeyRef, Plan
from tests import promserver
from tests.promserver import PROMETHEUS, PROMTOOL
from tests.traffic_model import key_secret_series

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=promserver.MISSING),
]

AT = datetime(2025, 3, 3, 12, tzinfo=UTC)


def in_namespace(plan: Plan, namespace: str) -> Plan:
    gateway = plan.integrations.gateway
    api_key = dataclasses.replace(gateway.api_key, secret_namespace=namespace)
    return dataclasses.replace(
        plan, integrations=dataclasses.replace(plan.integrations, gateway=dataclasses.replace(gateway, api_key=api_key))
    )


def broken_keys(plan: Plan) -> list[tuple[str, str]]:
    """freeuser2 has no Secret, freeuser1 a second one claiming ml-research, premiumuser2 the free tier."""
    by_id = {u.id: (t, u) for t, u in plan.users()}
    keep = [(t, u) for t, u in plan.users() if u.id not in ("freeuser2", "premiumuser2")]
    series = key_secret_series(plan, namespace="broken", users=keep)
    stray = dataclasses.replace(by_id["freeuser1"][1], api_key=ApiKeyRef(secret_name="apikey-stray"))
    series += key_secret_series(plan, namespace="broken", users=[(by_id["premiumuser1"][0], stray)])
    team, user = by_id["premiumuser2"]
    series += key_secret_series(plan, namespace="broken", users=[(team, dataclasses.replace(user, tier="free"))])
    return series


def openmetrics(series: list[tuple[str, str]]) -> str:
    """Each series as a gauge of 1 every 30 s over the 10 minutes before ``AT``."""
    start = int((AT - timedelta(minutes=10)).timestamp())
    lines = ["# TYPE kube_secret_annotations gauge"]
    for name, _ in sorted(series):
        lines += [f"{name.replace(', ', ',')} 1 {start + step * 30}" for step in range(21)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def query(tmp_path_factory, bundled_plan) -> Iterator:
    plan = bundled_plan("staging")
    series = key_secret_series(plan, namespace="keys") + broken_keys(plan)
    bare = [(name.replace("annotation_", "kept_"), values) for name, values in key_secret_series(plan, namespace="bare")]
    work = tmp_path_factory.mktemp("prometheus")
    server = promserver.PrometheusServer(work, work / "data")
    promserver.backfill_openmetrics(openmetrics(series + bare), server.data_dir, work)
    server.start()
    try:
        client = PrometheusClient(server.url, timeout=30)
        yield lambda expr: client.query(expr, AT)
    finally:
        server.stop()


def findings(plan: Plan, query) -> list[tuple[str, str]]:
    return [(f.status, f.message) for f in doctor.check_identity(plan, query)]


def test_the_staging_plan_joins_identity_and_the_base_plan_does_not(bundled_plan, query):
    assert findings(bundled_plan(None), query) == []  # the TelemetryPolicy labels usage with team and tier


def test_every_user_found_as_the_plan_says_is_ok(bundled_plan, query):
    plan = in_namespace(bundled_plan("staging"), "keys")
    assert findings(plan, query) == [(doctor.OK, f"{len(list(plan.users()))} users found with the plan's team, tier and cost center")]


def test_missing_conflicting_and_wrong_identities_are_named(bundled_plan, query):
    plan = in_namespace(bundled_plan("staging"), "broken")
    # freeuser1: two Secrets that disagree give no identity; freeuser2: no Secret.
    assert findings(plan, query) == [
        (doctor.FAIL, "no identity for 2 users: freeuser1, freeuser2"),
        (doctor.FAIL, "identity differs from the plan for 1 user: premiumuser2"),
    ]


def test_secrets_exported_without_the_annotations_ask_for_the_allowlist(bundled_plan, query):
    result = doctor.check_identity(in_namespace(bundled_plan("staging"), "bare"), query)
    assert [(f.status, f.message) for f in result] == [
        (doctor.FAIL, "kube_secret_annotations in bare carry no user id annotation"),
    ]
    assert "--metric-annotations-allowlist=secrets=[" in result[0].fix


def test_no_kube_state_metrics_series_asks_for_the_scrape(bundled_plan, query):
    assert findings(in_namespace(bundled_plan("staging"), "nowhere"), query) == [
        (doctor.FAIL, "no kube_secret_annotations series for namespace nowhere"),
    ]
