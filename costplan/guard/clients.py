"""The guard's edges: Prometheus over HTTP, key Secrets and Events through the official client.

Both are thin so the reconcile logic can be driven by anything with the same
methods. The Kubernetes side reads and patches Secrets one by one by name:
the Role the guard runs under grants ``get`` and ``patch`` on exactly the
plan's key Secrets (``resourceNames``) and nothing else, so it can never read
another Secret of the namespace; ``list`` could not be limited that way.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from costplan.core import conventions as c
from costplan.core.errors import CostplanError
from costplan.core.redact import redact_url, safe
from costplan.guard.decide import SpendKey
from costplan.plan.enforcement import period_start

QUERY_TIMEOUT = 10.0


class PrometheusUnavailable(Exception):
    """Prometheus did not answer the budget query (network, HTTP or API error)."""


class Prometheus:
    """The budget query against a Prometheus API: a Prometheus, Thanos Query, Mimir or VictoriaMetrics.

    ``headers`` is called at every query for the request's extra headers (a
    tenant, a bearer token read from its mounted file): it may raise a
    ``CostplanError``, which counts as Prometheus being unavailable. Messages
    name the URL by scheme, host and port only, never a header.
    """

    def __init__(self, url: str, timeout: float = QUERY_TIMEOUT,
                 headers: Callable[[], Mapping[str, str]] | None = None, timezone: str = "UTC") -> None:
        self.url = url.rstrip("/")
        self.timezone = timezone
        self.display = redact_url(url)
        self.timeout = timeout
        self.headers = headers or dict

    def budget_spend(self, at: dt.datetime) -> dict[SpendKey, Decimal]:
        """``costplan:budget_spend`` of every team budget at ``at``, exactly as Prometheus prints it.

        A budget of a calendar period counts nothing while its series still
        describes the period before: in the first hour of a period the
        budget rules carry the period that just ended (complete with its
        last hour), and a key blocked for last month must be released when
        the month turns. Which period the series describe is
        ``costplan:billing_period_start_seconds``, read in the same query.
        """
        spend_query = f'label_replace({c.METRIC_BUDGET_SPEND}{{team!=""}}, "{SERIES}", "spend", "", "")'
        start_query = f'label_replace({c.METRIC_BILLING_PERIOD_START}, "{SERIES}", "start", "", "")'
        spend: dict[SpendKey, Decimal] = {}
        billed_from: dict[str, Decimal] = {}
        for labels, value in self._query(f"{spend_query} or {start_query}", at):
            period = labels.get(c.LABEL_PERIOD, "")
            if labels.get(SERIES) == "start":
                billed_from[period] = value
            else:
                spend[(labels.get(c.LABEL_TEAM, ""), labels.get(c.LABEL_BUDGET, ""), period)] = value
        return {key: Decimal(0) if _before(billed_from.get(key[2]), key[2], at, self.timezone) else value
                for key, value in spend.items()}

    def _query(self, expr: str, at: dt.datetime) -> list[tuple[dict[str, str], Decimal]]:
        query = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"})
        try:
            request = urllib.request.Request(f"{self.url}/api/v1/query?{query}", headers=dict(self.headers()))
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.load(response)
        except CostplanError as exc:
            raise PrometheusUnavailable(f"{self.display}: {exc.message}") from None
        except urllib.error.HTTPError as exc:
            raise PrometheusUnavailable(f"{self.display}: HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise PrometheusUnavailable(f"{self.display}: {safe(str(exc.reason))}") from None
        except (OSError, ValueError) as exc:
            raise PrometheusUnavailable(f"{self.display}: {type(exc).__name__}") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error", "query failed") if isinstance(payload, dict) else "not Prometheus API JSON"
            raise PrometheusUnavailable(f"{self.display}: {safe(str(error))[:200]}")
        out = []
        for item in payload["data"]["result"]:
            try:
                value = Decimal(item["value"][1])
            except InvalidOperation:
                continue
            if value.is_finite():
                out.append((item["metric"], value))
        return out


SERIES = "costplan_series"  # keeps the two selections of the guard's one query apart


def _before(billed_from: Decimal | None, period: str, at: dt.datetime, timezone: str) -> bool:
    """Whether the budget series of ``period`` still describe a period that ended before ``at``."""
    start = period_start(period, at, timezone)
    return billed_from is not None and start is not None and billed_from < Decimal(int(start.timestamp()))


class KubeSecrets:
    """Key Secrets and Events in one namespace, through ``kubernetes.client.CoreV1Api``; counts its calls."""

    def __init__(self, namespace: str, kubeconfig: str | None = None, context: str | None = None) -> None:
        from kubernetes import client, config

        try:
            if kubeconfig or context:
                config.load_kube_config(config_file=kubeconfig, context=context)
            else:
                try:
                    config.load_incluster_config()
                except config.ConfigException:
                    config.load_kube_config()
        except Exception as exc:  # the client raises several unrelated types
            raise ConnectionError(f"cannot load Kubernetes configuration: {exc}") from exc
        self.namespace = namespace
        self.api = client.CoreV1Api()
        self.client = client
        self.calls = 0

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        self.calls += 1
        try:
            secret = self.api.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        meta: Any = secret.metadata
        # Only the metadata leaves this method: the key itself is never kept.
        return {"metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
                             "labels": dict(meta.labels or {}), "annotations": dict(meta.annotations or {})}}

    def patch(self, name: str, body: dict[str, Any], field_manager: str = c.GUARD_FIELD_MANAGER) -> None:
        """A JSON merge patch: only the keys in ``body`` change, and a missing Secret is not created."""
        self.calls += 1
        self.api.patch_namespaced_secret(name, self.namespace, body, field_manager=field_manager,
                                         _content_type="application/merge-patch+json")

    def event(self, secret: dict[str, Any], reason: str, message: str, warning: bool, now: dt.datetime) -> None:
        """A core/v1 Event on the key Secret: ``kubectl describe secret`` shows the audit trail."""
        self.calls += 1
        meta = secret["metadata"]
        stamp = now.astimezone(dt.UTC)
        name = f"{meta['name']}.{int(stamp.timestamp() * 1_000_000):x}"
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Secret", "name": meta["name"],
                               "namespace": self.namespace, "uid": meta.get("uid")},
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": c.GUARD_NAME},
            "reportingComponent": c.GUARD_NAME,
            "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        self.api.create_namespaced_event(self.namespace, body)
