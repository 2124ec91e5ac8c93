"""A test model of what the real components count, fed with simulated traffic.

Only the counting semantics the generated objects rely on are modelled, each
from the upstream file that defines it (listed in docs/upstream.md):

* Kuadrant operator: every RateLimitPolicy limit whose ``when`` predicates
  hold joins one ``ShouldRateLimit`` call per request (actions of one
  service and scope are merged); every TokenRateLimitPolicy limit adds a
  request-phase ``CheckRateLimit`` (hits 0) and a response-phase ``Report``
  (hits = ``usage.total_tokens``). Request-phase calls run before the
  response; response-body labels (``model``) exist only on ``Report``.
* Limitador: ``ShouldRateLimit`` refuses if any matched counter would pass
  its limit (``limited_calls`` +1), else adds 1 to every matched counter,
  ``authorized_calls`` +1 and ``authorized_hits`` +1; ``CheckRateLimit``
  refuses if one more hit would pass the limit (``limited_calls`` +1), else
  ``authorized_calls`` +1; ``Report`` adds the hits to the counters and to
  ``authorized_hits``. Counters are fixed windows from their first hit.
  Metric labels are the TelemetryPolicy's, those whose CEL resolves, plus
  ``limitador_namespace``.
* Model servers and gateways other than Kuadrant see only served requests;
  their exposition is written per source from its documented metric names.

The predicates, counters and labels are the generated ones, evaluated with
CEL, so the model tests what the build emits, not what it was meant to.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import cel

from costplan.generators import kuadrant
from costplan.generators.kuadrant import secrets
from costplan.generators.prometheus import prices
from costplan.plan.model import Plan, Team, User

LIMITADOR_NAMESPACE = "llm/qwen-route"


@dataclass(frozen=True)
class Request:
    """One call by ``user`` of ``team`` at second ``at``, answered with ``input + output`` tokens."""

    at: int
    team: Team
    user: User
    model_name: str
    input_tokens: int = 60
    output_tokens: int = 40

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Counters:
    """Cumulative counters per (metric, labels), with their history per second."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, at: int, metric: str, labels: dict[str, str], amount: int) -> None:
        history = self.values[(metric, tuple(sorted(labels.items())))]
        total = (history[-1][1] if history else 0) + amount
        history.append((at, total))

    def series(self, minutes: int) -> list[tuple[str, str]]:
        """promtool input series, one sample a minute: what a scrape at that minute reads (0 before any traffic)."""
        out = []
        for (metric, labels), history in sorted(self.values.items()):
            points = []
            for minute in range(minutes + 1):
                seen = [v for at, v in history if at < minute * 60]
                points.append(str(seen[-1] if seen else 0))
            label_text = ", ".join(f'{k}="{v}"' for k, v in labels)
            out.append((f"{metric}{{{label_text}}}", " ".join(points)))
        return out


def key_secret(team: Team, user: User) -> dict[str, Any]:
    return {
        "metadata": {
            "name": user.api_key.secret_name,
            "labels": secrets.key_secret_labels(),
            "annotations": secrets.key_secret_annotations(team, user),
        }
    }


def key_secret_series(plan: Plan, values: str = "1x300", users: list[tuple[Team, User]] | None = None,
                      namespace: str | None = None) -> list[tuple[str, str]]:
    """promtool input: ``kube_secret_annotations`` of each key Secret, as kube-state-metrics exports it.

    kube-state-metrics (``internal/store/secret.go``, ``utils.go``) labels the
    series ``namespace`` and ``secret`` plus ``annotation_<name>`` for every
    allowed annotation, the name with characters outside [a-zA-Z0-9_]
    replaced by ``_``; the scrape adds ``job`` and ``instance``.
    """
    namespace = namespace or plan.integrations.gateway.api_key.secret_namespace
    # The flag costplan documents: --metric-annotations-allowlist=secrets=[a,b,...]
    flag = prices.ksm_annotations_allowlist()
    allowed = set(flag.split("secrets=[", 1)[1].rstrip("]").split(","))
    out = []
    for team, user in plan.users() if users is None else users:
        labels = {"namespace": namespace, "secret": user.api_key.secret_name, "job": "kube-state-metrics",
                  "instance": "10.0.0.9:8080"}
        for annotation, value in secrets.key_secret_annotations(team, user).items():
            if annotation in allowed:
                labels["annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", annotation)] = value
        text = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        out.append((f"kube_secret_annotations{{{text}}}", values))
    return out


class KuadrantGateway:
    """The gateway's wasm filter and Limitador, driven by the generated policies."""

    def __init__(self, plan: Plan) -> None:
        objects = [a.data for a in kuadrant.generate(plan)]
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in objects:
            by_kind[obj["kind"]].append(obj)
        assert "PlanPolicy" not in by_kind, "a PlanPolicy's limits merge by creation order"
        assert len(by_kind["RateLimitPolicy"]) <= 1 and len(by_kind["TokenRateLimitPolicy"]) <= 1
        self.auth = by_kind["AuthPolicy"][0]
        self.rlp = by_kind["RateLimitPolicy"][0]["spec"]["limits"] if by_kind["RateLimitPolicy"] else {}
        self.trlp = by_kind["TokenRateLimitPolicy"][0]["spec"]["limits"] if by_kind["TokenRateLimitPolicy"] else {}
        telemetry = by_kind.get("TelemetryPolicy", [])
        self.labels = telemetry[0]["spec"]["metrics"]["default"]["labels"] if telemetry else {}
        self.limit_counters: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.metrics = Counters()
        self.served: list[Request] = []
        self.refused: list[Request] = []

    # -- the request's view ------------------------------------------------

    def identity(self, team: Team, user: User) -> dict[str, Any]:
        """What the AuthPolicy's success filter publishes for this key (Authorino sees the Secret)."""
        props = self.auth["spec"]["rules"]["response"]["success"]["filters"]["identity"]["json"]["properties"]
        context = {"auth": {"identity": key_secret(team, user)}}
        return {name: cel.evaluate(p["expression"], context) for name, p in props.items()}

    def metric_labels(self, context: dict[str, Any], body: dict[str, Any] | None) -> dict[str, str]:
        """TelemetryPolicy labels whose CEL resolves in this phase, plus the Limitador namespace."""
        functions = {}
        if body is not None:
            functions["responseBodyJSON"] = lambda pointer: body[pointer]
        found = {"limitador_namespace": LIMITADOR_NAMESPACE}
        for label, expression in self.labels.items():
            try:
                value = cel.evaluate(expression, cel.Context(variables=context, functions=functions))
            except Exception:  # unresolvable in this phase: the label is left out
                continue
            found[label] = str(value)
        return found

    @staticmethod
    def matched(limits: dict[str, Any], context: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (name, limit) for name, limit in sorted(limits.items())
            if all(cel.evaluate(w["predicate"], context) is True for w in limit.get("when", []))
        ]

    # -- Limitador -----------------------------------------------------------

    def _counter_keys(self, name: str, limit: dict[str, Any], context: dict[str, Any], at: int):
        values = tuple(str(cel.evaluate(c["expression"], context)) for c in limit.get("counters", []))
        for index, rate in enumerate(limit["rates"]):
            key = (name, index, values)
            seconds = _window_seconds(rate["window"])
            start, value = self.limit_counters.get(key, (at, 0))
            if at >= start + seconds:
                start, value = at, 0
            yield key, start, value, rate["limit"]

    def _would_pass(self, matched, context, at: int, delta: int) -> bool:
        return any(value + delta > top for n, lim in matched for _, _, value, top in self._counter_keys(n, lim, context, at))

    def _add(self, matched, context, at: int, amount: int) -> None:
        for name, limit in matched:
            for key, start, value, _ in list(self._counter_keys(name, limit, context, at)):
                self.limit_counters[key] = (start, value + amount)

    # -- one request -------------------------------------------------------

    def handle(self, request: Request) -> bool:
        context = {"auth": {"identity": self.identity(request.team, request.user)}}
        labels = self.metric_labels(context, None)
        at = request.at
        rate_limits = self.matched(self.rlp, context)
        if rate_limits:  # one ShouldRateLimit for all of them
            if self._would_pass(rate_limits, context, at, 1):
                self.metrics.add(at, "limited_calls", labels, 1)
                self.refused.append(request)
                return False
            self._add(rate_limits, context, at, 1)
            self.metrics.add(at, "authorized_calls", labels, 1)
            self.metrics.add(at, "authorized_hits", labels, 1)
        token_limits = self.matched(self.trlp, context)
        for name, limit in token_limits:  # CheckRateLimit, hits 0
            if self._would_pass([(name, limit)], context, at, 1):
                self.metrics.add(at, "limited_calls", labels, 1)
                self.refused.append(request)
                return False
            self.metrics.add(at, "authorized_calls", labels, 1)
        body = {"/model": request.model_name, "/usage/total_tokens": request.tokens}
        response_labels = self.metric_labels(context, body)
        for name, limit in token_limits:  # Report, hits = total tokens
            self._add([(name, limit)], context, at, request.tokens)
            self.metrics.add(at, "authorized_hits", response_labels, request.tokens)
        self.served.append(request)
        return True


def _window_seconds(window: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0, ""
    for char in window:
        if char.isdigit():
            number += char
        else:
            total += int(number) * units[char]
            number = ""
    return total


# --------------------------------------------------------------------------
# What each other source exposes for the requests it served
# --------------------------------------------------------------------------


def source_exposition(source_type: str, served: list[Request], metrics: Counters) -> None:
    """Counters a source exports for served requests (names and labels per its documentation)."""
    for r in served:
        model = r.model_name
        if source_type == "vllm":
            metrics.add(r.at, "vllm:request_success_total", {"model_name": model, "finished_reason": "stop"}, 1)
            metrics.add(r.at, "vllm:prompt_tokens_total", {"model_name": model}, r.input_tokens)
            metrics.add(r.at, "vllm:generation_tokens_total", {"model_name": model}, r.output_tokens)
        elif source_type == "llm-d":
            labels = {"model_name": model, "target_model_name": model}
            metrics.add(r.at, "inference_objective_request_total", labels, 1)
            metrics.add(r.at, "inference_objective_input_tokens_sum", labels, r.input_tokens)
            metrics.add(r.at, "inference_objective_output_tokens_sum", labels, r.output_tokens)
        elif source_type == "envoy-ai-gateway":
            labels = {"gen_ai_request_model": model, "gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai"}
            metrics.add(r.at, "gen_ai_server_request_duration_seconds_count", labels, 1)
            metrics.add(r.at, "gen_ai_client_token_usage_sum", {**labels, "gen_ai_token_type": "input"}, r.input_tokens)
            metrics.add(r.at, "gen_ai_client_token_usage_sum", {**labels, "gen_ai_token_type": "output"}, r.output_tokens)
        elif source_type == "kong-ai":
            labels = {"ai_model": model, "ai_provider": "openai", "cache_status": "", "workspace": "default"}
            metrics.add(r.at, "kong_ai_llm_requests_total", labels, 1)
            metrics.add(r.at, "kong_ai_llm_tokens_total", {**labels, "token_type": "prompt_tokens"}, r.input_tokens)
            metrics.add(r.at, "kong_ai_llm_tokens_total", {**labels, "token_type": "completion_tokens"}, r.output_tokens)
            metrics.add(r.at, "kong_ai_llm_tokens_total", {**labels, "token_type": "total_tokens"}, r.tokens)
        elif source_type == "litellm":
            labels = {"model": model, "user": r.user.id, "team_alias": r.team.name, "hashed_api_key": "h"}
            metrics.add(r.at, "litellm_requests_metric_total", labels, 1)
            metrics.add(r.at, "litellm_input_tokens_metric_total", labels, r.input_tokens)
            metrics.add(r.at, "litellm_output_tokens_metric_total", labels, r.output_tokens)
        else:
            raise ValueError(source_type)
