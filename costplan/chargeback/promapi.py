"""A small Prometheus HTTP API client: instant queries, values as ``Decimal``.

Only what ``costplan report`` needs, on the standard library so the report
image stays small. Prometheus answers sample values as strings; they are
parsed with ``Decimal(str)`` and never pass through ``float``.

The server is not trusted to be well behaved: a proxy in front of it, a
misconfigured URL or a hostile endpoint can answer anything. Every answer is
checked against the shape of the query API before a value is used, the body
is bounded in size, the whole query (connect, redirects, every read) is
bounded in time, a redirect to another host is refused (credentials and
queries stay with the server they were meant for), and credentials in the
URL are sent as an ``Authorization`` header and never printed.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from costplan.core.errors import ExternalFailure, UsageProblem
from costplan.core.redact import printable, redact_url

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""An answer larger than this is refused: a day of one plan's series is megabytes, not gigabytes."""
MAX_REDIRECTS = 3
MAX_SAMPLE_VALUE = Decimal("1e15")
"""No spend, request or token count of one day reaches a quadrillion; larger values are a broken source."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class PrometheusError(ExternalFailure):
    """Prometheus could not be reached, or refused, failed or garbled the query."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value."""

    labels: Mapping[str, str]
    value: Decimal


@dataclass(frozen=True)
class Endpoint:
    """Where to send requests: the URL without credentials, and the credentials as a header."""

    scheme: str
    host: str
    port: int | None
    path: str
    authorization: str | None
    display: str

    @classmethod
    def parse(cls, url: str, what: str = "Prometheus", error: type[ExternalFailure] = PrometheusError) -> Endpoint:
        """Refuse anything but an absolute http(s) URL; never echo its credentials."""
        display = redact_url(url)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise error(f"{what} URL {display} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise error(f"{what} URL {display} is not an absolute http:// or https:// URL")
        authorization = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            authorization = f"Basic {token}"
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), authorization, display)

    def same_origin(self, other: Endpoint) -> bool:
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def post(
    endpoint: Endpoint,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int = MAX_RESPONSE_BYTES,
    follow_redirects: bool = True,
    what: str = "Prometheus",
    error: type[ExternalFailure] = PrometheusError,
) -> Answer:
    """POST within ``timeout`` seconds in total; same-origin redirects only, body at most ``max_bytes``."""
    deadline = time.monotonic() + timeout
    target = endpoint
    request_path = endpoint.path + path
    for _ in range(MAX_REDIRECTS + 1):
        answer, location = _post_once(target, request_path, body, headers, deadline, timeout, max_bytes, what, error)
        if location is None:
            return answer
        if not follow_redirects:
            raise error(
                f"{what} at {endpoint.display} answered HTTP {answer.status} (a redirect); "
                "nothing was delivered: give the final URL"
            )
        port = f":{target.port}" if target.port else ""
        moved = urllib.parse.urljoin(f"{target.scheme}://{target.host}{port}{request_path}", location)
        try:
            next_target: Endpoint | None = Endpoint.parse(moved, what, error)
        except ExternalFailure:
            next_target = None
        if next_target is None or not endpoint.same_origin(next_target):
            where = redact_url(moved)
            raise error(
                f"{what} at {endpoint.display} redirected to {where}, another host; refused "
                "(give the final URL)"
            )
        parts = urllib.parse.urlsplit(moved)
        request_path = parts.path + (f"?{parts.query}" if parts.query else "")
        target = next_target
    raise error(f"{what} at {endpoint.display} redirected more than {MAX_REDIRECTS} times")


def _post_once(
    endpoint: Endpoint,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    deadline: float,
    timeout: float,
    max_bytes: int,
    what: str,
    error: type[ExternalFailure],
) -> tuple[Answer, str | None]:
    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        return left

    connection: http.client.HTTPConnection
    if endpoint.scheme == "https":
        connection = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=remaining())
    else:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=remaining())
    all_headers = dict(headers)
    if endpoint.authorization:
        all_headers["Authorization"] = endpoint.authorization
    try:
        connection.request("POST", path or "/", body=body, headers=all_headers)
        if connection.sock is not None:
            connection.sock.settimeout(remaining())
        response = connection.getresponse()
        if response.status in _REDIRECTS:
            return Answer(response.status, b""), response.getheader("Location") or ""
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise error(_too_large(what, endpoint, max_bytes))
        chunks: list[bytes] = []
        size = 0
        while True:
            if connection.sock is not None:
                connection.sock.settimeout(remaining())
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise error(_too_large(what, endpoint, max_bytes))
            chunks.append(chunk)
        if declared and declared.isdigit() and size < int(declared):
            raise http.client.IncompleteRead(b"".join(chunks), int(declared) - size)
        return Answer(response.status, b"".join(chunks)), None
    except TimeoutError:
        raise error(f"{what} at {endpoint.display} did not answer within {timeout:g}s") from None
    except http.client.IncompleteRead:
        raise error(f"{what} at {endpoint.display} sent a truncated answer") from None
    except http.client.HTTPException as exc:
        raise error(
            f"{what} at {endpoint.display} sent a broken HTTP answer ({type(exc).__name__})"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot reach {what} at {endpoint.display}: {reason}") from None
    finally:
        connection.close()


def _too_large(what: str, endpoint: Endpoint, max_bytes: int) -> str:
    return f"{what} at {endpoint.display} answered more than {max_bytes // (1024 * 1024)} MiB; refused"


TENANT_HEADER = "X-Scope-OrgID"
"""The tenant header of Mimir, Cortex and Thanos (``--query.tenant-header`` default) query APIs."""
MAX_TOKEN_BYTES = 16 * 1024
_TENANT = re.compile(r"[A-Za-z0-9!._*'()|-]{1,150}")  # Mimir's tenant ID characters ('|' joins tenants)
_TOKEN = re.compile(r"[\x21-\x7e]+")  # a bearer token is printable ASCII without spaces


@dataclass(frozen=True)
class QueryEndpoint:
    """Where Prometheus-API queries go: a Prometheus, Thanos Query, Mimir or VictoriaMetrics.

    ``url`` is the API root (``/api/v1/query`` is appended): a Prometheus or
    Thanos Query at its root, Mimir's ``http://mimir/prometheus``,
    VictoriaMetrics single-node at its root, cluster at
    ``http://vmselect:8481/select/<accountID>/prometheus``. ``tenant`` is sent
    as ``X-Scope-OrgID``; ``bearer_token_file`` is read at every request (a
    mounted Secret rotates without a restart) and sent as ``Authorization:
    Bearer``. Neither the token nor the URL's credentials ever appear in a
    message: messages name the URL by scheme, host and port only.
    """

    url: str
    tenant: str | None = None
    bearer_token_file: str | None = None

    def __post_init__(self) -> None:
        endpoint = Endpoint.parse(self.url)
        if self.tenant is not None and not _TENANT.fullmatch(self.tenant):
            raise UsageProblem(f"tenant {printable(self.tenant)[:40]!r} is not a valid tenant ID "
                                  "(1-150 letters, digits and !-_.*'()|)")
        if self.bearer_token_file is not None and endpoint.authorization is not None:
            raise UsageProblem(f"the query URL {endpoint.display} carries credentials and --bearer-token-file "
                                  "is given: use one of them")

    @property
    def display(self) -> str:
        return redact_url(self.url)

    def headers(self) -> dict[str, str]:
        """The tenant and ``Authorization`` headers, the token read from its file now."""
        headers = {}
        if self.tenant is not None:
            headers[TENANT_HEADER] = self.tenant
        if self.bearer_token_file is not None:
            headers["Authorization"] = f"Bearer {read_token(self.bearer_token_file)}"
        return headers


def read_token(path: str) -> str:
    """The token in ``path`` without surrounding whitespace; errors name the file, never its content."""
    shown = printable(path)[:200]
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise PrometheusError(f"cannot read the --bearer-token-file {shown}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise PrometheusError(f"the --bearer-token-file {shown} is larger than {MAX_TOKEN_BYTES // 1024} KiB")
    token = raw.decode("ascii", "replace").strip()
    if not _TOKEN.fullmatch(token):
        raise PrometheusError(f"the --bearer-token-file {shown} holds no token (one line of printable ASCII)")
    return token


class PrometheusClient:
    """``query(expr, at)`` against ``<base_url>/api/v1/query``; ``timeout`` bounds each query as a whole."""

    def __init__(self, base_url: str | QueryEndpoint, timeout: float = 60.0, max_bytes: int = MAX_RESPONSE_BYTES):
        self.target = base_url if isinstance(base_url, QueryEndpoint) else QueryEndpoint(base_url)
        self.endpoint = Endpoint.parse(self.target.url)
        self.base_url = self.endpoint.display
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.queries = 0

    def query(self, expr: str, at: datetime) -> list[Sample]:
        """Evaluate ``expr`` at ``at`` (timezone-aware); an instant vector is expected.

        Non-finite values (NaN from 0/0, ±Inf) are dropped: they are never money.
        """
        return _samples(self.query_payload(expr, at), self.base_url)

    def query_payload(self, expr: str, at: datetime) -> dict[str, Any]:
        """The checked JSON answer of an instant query (``data.result`` still to be read)."""
        return self.payload(self.query_answer(expr, at))

    def query_answer(self, expr: str, at: datetime) -> Answer:
        """The raw HTTP answer of an instant query, for a caller that parses it later (``payload``).

        Reading and parsing apart let a caller keep answers that are still
        to be read as bytes, about a fifth of their parsed size.
        """
        body = urllib.parse.urlencode({"query": expr, "time": _timestamp(at)}).encode()
        self.queries += 1
        return post(
            self.endpoint,
            "/api/v1/query",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
             **self.target.headers()},
            self.timeout,
            self.max_bytes,
        )

    def payload(self, answer: Answer) -> dict[str, Any]:
        """The checked JSON of a query answer: an HTTP error, a body that is not the API's JSON or a failed status raise."""
        try:
            payload = json.loads(answer.body)
        except (ValueError, RecursionError):
            payload = None
        if answer.status >= 400:
            # Prometheus puts the reason in a JSON body (400 bad query, 422 execution, 503 timeout).
            raise PrometheusError(
                f"Prometheus at {self.base_url} answered HTTP {answer.status}: {_error_detail(payload, answer.body)}"
            )
        if not isinstance(payload, dict):
            raise PrometheusError(f"{self.base_url} did not answer with Prometheus API JSON")
        if payload.get("status") != "success":
            raise PrometheusError(f"Prometheus query failed: {_error_detail(payload, answer.body)}")
        return payload


def _samples(payload: dict[str, Any], where: str) -> list[Sample]:
    """The instant vector of a query answer, every part of it checked (a broken answer is an error)."""
    return [Sample(labels, value) for labels, value in vector(payload, where)]


def vector(payload: dict[str, Any], where: str) -> Iterator[tuple[dict[str, str], Decimal]]:
    """``(labels, value)`` of every finite sample of an instant-vector answer, checked one by one."""
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PrometheusError(f"Prometheus at {where} answered without a data object")
    if data.get("resultType") != "vector":
        kind = data.get("resultType")
        shown = printable(str(kind))[:40] if isinstance(kind, str) else type(kind).__name__
        raise PrometheusError(f"Prometheus at {where} answered a {shown!r}, not an instant vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise PrometheusError(f"Prometheus at {where} answered a vector that is not a list")

    def problem(index: int) -> str:
        return f"Prometheus at {where} answered a malformed sample (result[{index}])"

    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise PrometheusError(problem(index))
        metric, value = item.get("metric", {}), item.get("value")
        if not isinstance(metric, dict) or not _all_strings(metric):
            raise PrometheusError(f"{problem(index)}: labels are not strings")
        if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str):
            raise PrometheusError(f"{problem(index)}: the value is not [time, \"number\"]")
        number = _decimal(value[1])
        if number is None:
            continue
        if abs(number) >= MAX_SAMPLE_VALUE:
            raise PrometheusError(f"{problem(index)}: the value {printable(value[1])[:40]} is implausibly large")
        yield metric, number


def _all_strings(labels: dict[Any, Any]) -> bool:
    """Whether every label value is a string, in one pass in C: ``str.join`` takes only strings.

    The names need no check: they are the keys of a JSON object, which are
    always strings. Every sample of an answer is checked, tens of thousands
    of them per query; a generator over the items costs more than reading
    the answer.
    """
    try:
        "".join(labels.values())
    except TypeError:
        return False
    return True


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("query time must be timezone-aware")
    # Millisecond resolution, computed on integers (no float rounding).
    millis = (at - EPOCH) // timedelta(milliseconds=1)
    seconds, rest = divmod(millis, 1000)
    return f"{seconds}.{rest:03d}"


def _decimal(text: str) -> Decimal | None:
    """A finite sample value, ``None`` for NaN and ±Inf; anything that is not a number is an error."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        shown = printable(text)[:40]
        raise PrometheusError(f"Prometheus answered a sample value that is not a number: {shown!r}") from None
    return value if value.is_finite() else None


def _error_detail(payload: Any, body: bytes) -> str:
    if isinstance(payload, dict) and ("errorType" in payload or "error" in payload):
        text = f"{payload.get('errorType')}: {payload.get('error')}"
    else:
        text = body.decode("utf-8", "replace") or "no details"
    return printable(text)[:200]
