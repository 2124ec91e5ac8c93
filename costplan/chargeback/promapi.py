"""A small Prometheus HTTP API client: instant queries, values as ``Decimal``.

Only what ``costplan report`` needs, on the standard library so the report
image stays small. Prometheus answers sample values as strings; they are
parsed with ``Decimal(str)`` and never pass through ``float``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from costplan.core.errors import ExternalFailure

Opener = Callable[..., Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PrometheusError(ExternalFailure):
    """Prometheus could not be reached, or refused or failed the query."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value."""

    labels: Mapping[str, str]
    value: Decimal


class PrometheusClient:
    """``query(expr, at)`` against ``<base_url>/api/v1/query``."""

    def __init__(self, base_url: str, timeout: float = 60.0, opener: Opener | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._open = opener or urllib.request.urlopen

    def query(self, expr: str, at: datetime) -> list[Sample]:
        """Evaluate ``expr`` at ``at`` (timezone-aware); an instant vector is expected.

        Non-finite values (NaN from 0/0, ±Inf) are dropped: they are never money.
        """
        body = urllib.parse.urlencode({"query": expr, "time": _timestamp(at)}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/query",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            method="POST",
        )
        payload = self._request(request)
        data = payload.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"expected an instant vector, got {data.get('resultType')!r} for: {expr}")
        samples = []
        for item in data.get("result", []):
            value = _decimal(item["value"][1])
            if value is not None:
                samples.append(Sample(labels=dict(item.get("metric", {})), value=value))
        return samples

    def _request(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with self._open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            # Prometheus puts the reason in a JSON body (400 bad query, 422 execution, 503 timeout).
            detail = _error_detail(exc.read())
            raise PrometheusError(f"Prometheus at {self.base_url} answered HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.base_url}: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.base_url}: {exc}") from None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise PrometheusError(f"{self.base_url} did not answer with Prometheus API JSON") from None
        if payload.get("status") != "success":
            raise PrometheusError(f"Prometheus query failed: {payload.get('errorType')}: {payload.get('error')}")
        return payload


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("query time must be timezone-aware")
    # Millisecond resolution, computed on integers (no float rounding).
    millis = (at - EPOCH) // timedelta(milliseconds=1)
    seconds, rest = divmod(millis, 1000)
    return f"{seconds}.{rest:03d}"


def _decimal(text: Any) -> Decimal | None:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _error_detail(body: bytes) -> str:
    try:
        payload = json.loads(body)
        return f"{payload.get('errorType')}: {payload.get('error')}"
    except ValueError:
        return body.decode("utf-8", "replace")[:200] or "no details"
