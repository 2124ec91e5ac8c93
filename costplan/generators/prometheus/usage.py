"""Every usage source normalised to one shape.

Each source type's counters become ``costplan:usage_requests:<window>``,
``costplan:usage_tokens:<window>{token_type}`` and
``costplan:usage_limited_requests:rate5m``, labelled ``source``, ``model``
(costplan's model id), ``model_name`` (what the source reported), ``user``,
``team`` and ``tier``. Two windows: ``rate5m`` (per second, for dashboards
and alerts) and ``increase1h`` (the clock hour that closed last, the unit
that period-to-date sums and the report add up). Counters are only read
through ``rate`` or reset-aware differences, so restarts never produce
negative usage, and hourly figures tile exactly (see ``_windowed``).

Token types are disjoint: ``input`` is uncached input (sources count cached
prompt tokens inside input, so cached is subtracted), ``output`` excludes
``reasoning`` where a source reports reasoning separately (it counts it inside
output). Sources that only count total tokens report ``token_type="total"``.

Identity a source lacks is completed from the plan, in this order:

* no model label, or an empty one, and exactly one model uses the source:
  that model;
* the served name is mapped to the model id through ``costplan:model_info``
  (which also drops models the plan does not price);
* neither user nor team (vLLM, llm-d, Envoy AI Gateway, Kong): the team that
  owns the model's namespace and its tier (``costplan:model_owner``); user empty;
* a user but no team (the custom Limitador image): team and tier from the
  user's key Secret, one join against ``costplan:user_identity`` (see
  ``prices.user_identity_rule``); users without a key Secret keep an empty
  team and tier. Neither the rules nor a cycle's work grow with teams;
* a team but no tier: the user's own tier where the plan gives users their
  own (``costplan:user_identity``, joined on user and team), else the team's
  tier from ``costplan:team_info``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from costplan.core import conventions as c
from costplan.core.names import promql_string
from costplan.generators.kuadrant import limits
from costplan.generators.prometheus.periods import clock_hour
from costplan.generators.prometheus.promql import none_of, one_of, record, selector
from costplan.plan import capabilities as cap
from costplan.plan.model import Model, Plan, UsageSource

WINDOWS = {c.WINDOW_RATE: ("rate", "5m"), c.WINDOW_HOUR: ("increase", "1h")}
CANONICAL = {cap.MODEL: c.LABEL_MODEL_NAME, cap.USER: c.LABEL_USER, cap.TEAM: c.LABEL_TEAM, cap.TIER: c.LABEL_TIER}


@dataclass(frozen=True)
class Counter:
    metric: str
    matchers: Mapping[str, str] = field(default_factory=dict)
    regex: Mapping[str, str] = field(default_factory=dict)

    def select(self, extra: Mapping[str, str] | None = None) -> str:
        """The selector; an ``extra`` matcher on a label already matched is added, never replacing it."""
        merged = dict(self.regex)
        for label, matcher in (extra or {}).items():
            merged[label] = f"{merged[label]}, {label}{matcher}" if label in merged else matcher
        return selector(self.metric, self.matchers, **merged)


@dataclass(frozen=True)
class Measure:
    kind: str  # requests, tokens, limited
    counter: Counter
    token_type: str | None = None
    minus: tuple[Counter, ...] = ()
    plus: tuple[Counter, ...] = ()
    # Counted this many times per request by the source: the sum is divided.
    per_request: int = 1
    # When set, the measure is these parts joined with ``or`` (disjoint
    # selections, e.g. by tier, each counted its own way).
    parts: tuple[Measure, ...] = ()
    # Series (by ``user``) of the users that ``plus``, ``minus`` and
    # ``per_request`` apply to; every other user counts the counter alone.
    # Selects users by data, not by a matcher that lists them, and reads the
    # counter once for both kinds of user.
    adjusted_users: str = ""


@dataclass(frozen=True)
class Spec:
    labels: Mapping[str, str]  # capability (model, user, team, tier) -> source label
    measures: tuple[Measure, ...]


def _tokens(token_type: str, counter: Counter, *minus: Counter) -> Measure:
    return Measure("tokens", counter, token_type, tuple(minus))


def _by_type(requests: Counter | None, inp: Counter, out: Counter, cached: Counter | None = None,
             reasoning: Counter | None = None, cache_creation: Counter | None = None) -> tuple[Measure, ...]:
    measures = [] if requests is None else [Measure("requests", requests)]
    inside_input = [m for m in (cached, cache_creation) if m is not None]
    measures.append(_tokens("input", inp, *inside_input))
    if cached:
        measures.append(_tokens("cached_input", cached))
    if cache_creation:
        measures.append(_tokens(c.TOKEN_TYPE_CACHE_CREATION, cache_creation))
    measures.append(_tokens("output", out, *([reasoning] if reasoning else [])))
    if reasoning:
        measures.append(_tokens("reasoning", reasoning))
    return tuple(measures)


def _limitador_requests(plan: Plan) -> Measure:
    """Each request once, from counters Limitador increments more than once per request.

    Every tier has exactly one RateLimitPolicy limit (see
    ``generators.kuadrant.limits``), merged into one ``ShouldRateLimit``
    call per request: ``authorized_calls`` +1 and ``authorized_hits`` +1
    (no ``model`` label: it resolves only in the response phase). A tier
    with token limits also passes the TokenRateLimitPolicy's request-phase
    ``CheckRateLimit``, which adds ``authorized_calls`` +1 again (its
    response-phase ``Report`` adds only ``authorized_hits``, with the
    model). So a request of such a tier that was served shows up twice in
    ``authorized_calls`` and once in ``authorized_hits{model=""}``, and one
    refused by the token limit once in each: served requests are their
    difference. Other tiers' served requests are ``authorized_calls``.
    """
    token_tiers = limits.token_limited_tiers(plan)
    if not token_tiers:
        return Measure("requests", Counter("authorized_calls"))
    with_tokens = {c.LABEL_TIER: one_of(token_tiers)}
    twice = Measure(
        "requests",
        Counter("authorized_calls", regex=with_tokens),
        minus=(Counter("authorized_hits", regex={**with_tokens, c.LABEL_MODEL: '=""'}),),
    )
    once = Measure("requests", Counter("authorized_calls", regex={c.LABEL_TIER: none_of(token_tiers)}))
    return Measure("requests", twice.counter, parts=(twice, once))


def _legacy_requests(plan: Plan) -> Measure:
    """Served requests from the custom Limitador image, whose counters carry only ``user``.

    The image labels ``authorized_calls`` and ``limited_calls`` with the user
    (descriptor ``auth.identity.userid``, the limits' counter) and a ``group``
    it reads from a descriptor no Kuadrant policy sends, so the tier comes
    from the plan (user -> team -> tier). It adds ``authorized_calls`` +1 on
    every authorized ``ShouldRateLimit``, ``CheckRateLimit`` and ``Report``:
    a served request of a tier with token limits is counted three times, one
    refused by the token limit once (and once in ``limited_calls``, while
    only a ``ShouldRateLimit`` refusal also adds ``limited_hits``). Served =
    (calls - limited_calls + limited_hits) / 3 for those users, calls for
    everyone else.
    """
    token_tiers = limits.token_limited_tiers(plan)
    if not token_tiers:
        return Measure("requests", Counter("authorized_calls"))
    # The tier on the user's key: its own (users[].tier) or its team's.
    token_users = selector(c.METRIC_USER_IDENTITY, None, **{c.LABEL_TIER: one_of(token_tiers)})
    return Measure(
        "requests",
        Counter("authorized_calls"),
        minus=(Counter("limited_calls"),),
        plus=(Counter("limited_hits"),),
        per_request=3,
        adjusted_users=token_users,
    )


def _envoy(token_type: str) -> Counter:
    # <= v0.4 exported ..._token_sum, >= v0.5 ..._sum.
    return Counter("", {"gen_ai_token_type": token_type}, {"__name__": '=~"gen_ai_client_token_usage_(token_)?sum"'})


def effective_type(plan: Plan, source: UsageSource) -> str:
    """``kuadrant-limitador`` reads the custom image's metrics when the gateway runs it."""
    if source.type == "kuadrant-limitador" and plan.integrations.gateway.limitador.metrics == "legacyImage":
        return "limitador-legacy"
    return source.type


def spec(plan: Plan, source: UsageSource) -> Spec:
    """The source's measures, requests read without the plan's non-billable responses."""
    found = _spec(plan, source)
    if not source.non_billable:
        return found
    return Spec(found.labels, tuple(_billable(m, source.non_billable) for m in found.measures))


def _billable(measure: Measure, non_billable: Mapping[str, tuple[str, ...]]) -> Measure:
    if measure.kind != "requests":
        return measure
    excluded = {label: none_of(list(values)) for label, values in non_billable.items()}

    def narrow(counter: Counter) -> Counter:
        return Counter(counter.metric, counter.matchers, {**counter.regex, **excluded})

    return dataclasses.replace(
        measure,
        counter=narrow(measure.counter),
        minus=tuple(narrow(m) for m in measure.minus),
        plus=tuple(narrow(m) for m in measure.plus),
        parts=tuple(_billable(p, non_billable) for p in measure.parts),
    )


def _spec(plan: Plan, source: UsageSource) -> Spec:
    kind = effective_type(plan, source)
    if kind == "kuadrant-limitador":
        ident = {cap.MODEL: c.LABEL_MODEL, cap.USER: c.LABEL_USER, cap.TEAM: c.LABEL_TEAM, cap.TIER: c.LABEL_TIER}
        return Spec(ident, (
            _limitador_requests(plan),
            # Token hits under a TokenRateLimitPolicy are reported in the
            # response phase, the only place the model label resolves.
            _tokens(c.TOKEN_TYPE_TOTAL, Counter("authorized_hits", regex={c.LABEL_MODEL: '!=""'})),
            Measure("limited", Counter("limited_calls")),
        ))
    if kind == "limitador-legacy":
        return Spec({cap.USER: "user"}, (
            _legacy_requests(plan),
            Measure("limited", Counter("limited_calls")),
        ))
    if kind == "vllm":
        return Spec({cap.MODEL: "model_name"}, _by_type(
            Counter("vllm:request_success_total"), Counter("vllm:prompt_tokens_total"),
            Counter("vllm:generation_tokens_total"), Counter("vllm:prompt_tokens_cached_total")))
    if kind == "llm-d":
        return Spec({cap.MODEL: "model_name"}, _by_type(
            Counter("inference_objective_request_total"), Counter("inference_objective_input_tokens_sum"),
            Counter("inference_objective_output_tokens_sum"),
            Counter("inference_objective_prompt_cached_tokens_sum")))
    if kind == "envoy-ai-gateway":
        return Spec({cap.MODEL: "gen_ai_request_model"}, _by_type(
            Counter("gen_ai_server_request_duration_seconds_count"), _envoy("input"), _envoy("output"),
            # input counts both cache kinds: written-to-cache tokens are their own type.
            _envoy("cached_input"), _envoy("reasoning"), _envoy(c.TOKEN_TYPE_CACHE_CREATION)))
    if kind == "kong-ai":
        # The Prometheus plugin's exporter is initialised with prefix kong_.
        return Spec({cap.MODEL: "ai_model"}, _by_type(
            Counter("kong_ai_llm_requests_total"),
            Counter("kong_ai_llm_tokens_total", {"token_type": "prompt_tokens"}),
            Counter("kong_ai_llm_tokens_total", {"token_type": "completion_tokens"})))
    if kind == "litellm":
        return Spec({cap.MODEL: "model", cap.USER: "user", cap.TEAM: "team_alias"}, _by_type(
            Counter("litellm_requests_metric_total"), Counter("litellm_input_tokens_metric_total"),
            Counter("litellm_output_tokens_metric_total")))
    if kind == "custom":
        return _custom(source)
    raise ValueError(f"unknown usage source type {kind!r}")


def _custom(source: UsageSource) -> Spec:
    """Roles named in the plan; input includes cached, output includes reasoning."""
    labels = {cap.CUSTOM_LABEL_ROLES[k]: v for k, v in source.labels.items() if k in cap.CUSTOM_LABEL_ROLES}
    m = {k: Counter(v) for k, v in source.metrics.items()}
    measures: list[Measure] = []
    if "requests" in m:
        measures.append(Measure("requests", m["requests"]))
    if "inputTokens" in m and "outputTokens" in m:
        measures.extend(_by_type(None, m["inputTokens"], m["outputTokens"], m.get("cachedTokens"),
                                 m.get("reasoningTokens")))
    elif "totalTokens" in m:
        measures.append(_tokens(c.TOKEN_TYPE_TOTAL, m["totalTokens"]))
    return Spec(labels, tuple(measures))


# --------------------------------------------------------------------------
# Expression building
# --------------------------------------------------------------------------


def _normalise(spec_: Spec, counter: Counter, fn: str, window: str, extra: Mapping[str, str] | None = None) -> str:
    """``fn(counter[window])`` summed by the source's identity labels, renamed to canonical."""
    source_labels = sorted(spec_.labels.values())
    inner = _windowed(fn, counter.select(extra), window)
    expr = f"sum by ({', '.join(source_labels)}) ({inner})" if source_labels else f"sum({inner})"
    renamed = False
    for role, label in sorted(spec_.labels.items()):
        target = CANONICAL[role]
        if label != target:
            expr = f'label_replace({expr}, "{target}", "$1", {promql_string(label)}, "(.*)")'
            renamed = True
    if renamed:
        expr = f"sum by ({', '.join(sorted(CANONICAL[r] for r in spec_.labels))}) ({expr})"
    return expr


# A counter's hourly growth needs every pair of consecutive samples only where
# the counter went down: at steps this far apart at most one scrape falls
# between two steps when scrapes are at least this far apart, so every
# decrease is seen (see ``_windowed``).
DIFFERENCE_STEP = "15s"
# Series that went down anywhere in this window, ending at the evaluation,
# take the step-by-step path. From any evaluation in the hour after a closed
# hour it covers that hour and the hour before it, where the value the hour
# starts from lies.
DECREASE_WINDOW = "3h"
# Wide enough, from any evaluation in the hour after a closed hour, to see
# every series that has a sample in that hour (or the one before it).
PRESENCE_WINDOW = "2h"
# A transient label that keeps the two terms of the hourly growth apart until they are added.
_TERM = "costplan_term"


def _windowed(fn: str, series: str, window: str) -> str:
    """``rate``, or the exact growth of the counter in the clock hour that closed last.

    The hour ``(H - 1h, H]`` has samples ``S1 … Sn``; it starts from ``P``,
    the counter's last sample in the hour before (none for a series born in
    the hour: a series is born at its first request, with a value of at
    least 1). The growth is the sum over consecutive pairs of the sequence
    ``P, S1 … Sn`` of the difference where the counter did not go down and
    of the new value where it did (a restart counts from 0). That sum is

        Sn - P  +  the value before every decrease

    (``Sn`` alone without ``P``). The first term is two range lookups per
    series. The second is zero for a counter that never went down, and
    finding the decreases needs a step-by-step look at the hour, which costs
    a binary operation per series at every step: so it is evaluated only for
    the series ``resets()`` finds going down in ``DECREASE_WINDOW`` (a
    superset of those that went down between ``P`` and ``Sn``), selected
    once per evaluation (``@ end()``, step-invariant) and by ``and`` before
    any arithmetic. At each step the decrease is the last value before the
    previous step (looked up ``2h`` back, as far as ``P`` can lie) when it
    is above the value now. A cycle's cost follows the series and the few
    that restarted, not a binary operation per series per step.

    Consecutive hours meet (``Sn`` of one is ``P`` of the next), so hours
    tile the counter's growth exactly and never go negative; nothing is
    extrapolated (``increase()`` would, and would lose a new series' first
    value). The hour is the clock hour before the evaluation
    (``periods.clock_hour``), the same at every evaluation in the hour after
    it. A counter unseen for the whole hour before an hour starts that hour
    as a new series.
    """
    if fn != "increase":
        return f"{fn}({series}[{window}])"
    last = f"last_over_time({series}[1h])"
    start = f"last_over_time({series}[1h] offset 1h)"
    growth = f"({last} - {start} or {last})"
    went_down = f"(resets({series}[{DECREASE_WINDOW}] @ end()) > 0)"
    before = f"last_over_time({series}[2h] offset {DIFFERENCE_STEP})"
    decreases = f"sum_over_time((({before} and {went_down}) > {series})[59m59s:{DIFFERENCE_STEP}])"
    terms = (f'label_replace({growth}, "{_TERM}", "growth", "", "")'
             f' or label_replace({decreases}, "{_TERM}", "decreases", "", "")')
    return clock_hour(f"sum without ({_TERM}) ({terms})")


def _present(spec_: Spec, counter: Counter, fn: str, window: str) -> str:
    """0 for every identity ``counter`` has a sample for in the window: a cheap fill for set operations.

    One lookup per series (over ``PRESENCE_WINDOW`` for hourly amounts, the
    rate's own window otherwise), so that an ``or`` fallback never
    evaluates the measure a second time (the hourly measure is a subquery
    over the whole hour: repeating it doubled a cycle's work).
    """
    span = PRESENCE_WINDOW if fn == "increase" else window
    return f"{_normalise(spec_, counter, 'last_over_time', span)} * 0"


def _counted(spec_: Spec, measure: Measure, fn: str, window: str) -> str:
    """The measure's counter less its subtrahends, never below zero.

    A missing addend or subtrahend counts 0 (``or`` a 0 for every identity
    of the counter, read cheaply), so the counter's own expression is
    evaluated once.
    """
    if measure.adjusted_users:
        return _counted_for_some_users(spec_, measure, fn, window)
    expr = _normalise(spec_, measure.counter, fn, window)
    zero = _present(spec_, measure.counter, fn, window)
    for plus in measure.plus:
        addend = _normalise(spec_, plus, fn, window)
        expr = f"({expr} + ({addend} or {zero}))"
    for minus in measure.minus:
        subtrahend = _normalise(spec_, minus, fn, window)
        expr = f"clamp_min({expr} - ({subtrahend} or {zero}), 0)"
    if measure.per_request != 1:
        expr = f"{expr} / {measure.per_request}"
    return expr


def _counted_for_some_users(spec_: Spec, measure: Measure, fn: str, window: str) -> str:
    """``counter + plus - minus`` for ``adjusted_users``, the counter for everyone else, never below zero.

    One sum over the terms told apart by a transient label, the subtrahends
    negated: a missing addend or subtrahend adds nothing, so no fallback
    reads the counter again, and the adjustment is kept for the adjusted
    users only (``and on(user)``). An adjusted user with subtrahends but no
    counter (every call refused) counts 0. The division by ``per_request``
    is done where team and tier are joined (``_complete_tier``), by the
    same selection of users, so the users' presence is read once. Hourly
    counts are whole numbers, so their sum is the same in any order.
    """
    user = c.LABEL_USER
    labels = ", ".join(sorted(CANONICAL[role] for role in spec_.labels))
    adjusted = f"group by ({user}) ({measure.adjusted_users})"

    def term(expr: str, name: str) -> str:
        return f'label_replace({expr}, "{_TERM}", "{name}", "", "")'

    expr = _normalise(spec_, measure.counter, fn, window)
    adjustments = [term(_normalise(spec_, plus, fn, window), f"plus{i}") for i, plus in enumerate(measure.plus)]
    adjustments += [term(f"-({_normalise(spec_, minus, fn, window)})", f"minus{i}")
                    for i, minus in enumerate(measure.minus)]
    if adjustments:
        expr = (f"clamp_min(sum by ({labels}) ({term(expr, 'counter')} or ({' or '.join(adjustments)})"
                f" and on({user}) {adjusted}), 0)")
    if measure.per_request == 1 or _divided_at_identity(spec_):
        return expr
    zero = _present(spec_, measure.counter, fn, window)
    return f"{expr} / on({user}) ({adjusted} * 0 + {measure.per_request} or on({user}) {zero} + 1)"


def _divided_at_identity(spec_: Spec) -> bool:
    """Whether team and tier are joined by user from ``costplan:user_identity``, which then also divides."""
    return cap.USER in spec_.labels and cap.TEAM not in spec_.labels


def _measure_expr(plan: Plan, source: UsageSource, spec_: Spec, measure: Measure, fn: str, window: str,
                  models: list[Model]) -> str:
    if measure.parts:
        expr = "(" + " or ".join(_counted(spec_, part, fn, window) for part in measure.parts) + ")"
    else:
        expr = _counted(spec_, measure, fn, window)
    if measure.kind == "limited":
        return _complete_tier(spec_, measure, expr, plan, fn, window)
    if len(models) == 1:
        served = promql_string(models[0].model_name)
        expr = f'label_replace({expr}, "{c.LABEL_MODEL_NAME}", {served}, "{c.LABEL_MODEL_NAME}", "")'
    info = selector(c.METRIC_MODEL_INFO, {c.LABEL_SOURCE: source.name})
    expr = f"{expr} * on({c.LABEL_MODEL_NAME}) group_left({c.LABEL_MODEL}) {info}"
    if cap.USER not in spec_.labels and cap.TEAM not in spec_.labels:
        expr = f"{expr} * on({c.LABEL_MODEL}) group_left({c.LABEL_TEAM}, {c.LABEL_TIER}) {c.METRIC_MODEL_OWNER}"
        return expr
    return _complete_tier(spec_, measure, expr, plan, fn, window)


def _identities(spec_: Spec, measure: Measure, labels: list[str], fn: str, window: str) -> str:
    """``labels`` of every series the measure's counters may have, each once with value 1, read cheaply."""
    counters = sorted({(p.counter.metric, p.counter.select()): p.counter for p in measure.parts or (measure,)}.items())
    present = " or ".join(_present(spec_, counter, fn, window) for _, counter in counters)
    return f"(group by ({', '.join(labels)}) ({present}))"


def _complete_tier(spec_: Spec, measure: Measure, expr: str, plan: Plan, fn: str, window: str) -> str:
    """Team and tier of a series without them, from the user's key Secret or the team.

    A user without a team takes team and tier from ``costplan:user_identity``
    (users without a key Secret keep neither). A series with a team but no
    tier takes the user's own tier (``users[].tier``, on its key) where the
    plan gives users their own, else the team's. The fallback is part of the
    right-hand side (a 1 for every identity the counters have), so ``expr``
    is evaluated once. A measure counted ``per_request`` times for some
    users is divided by this join: the right-hand side is ``per_request``
    for those users and 1 for everyone else.
    """
    if cap.TIER in spec_.labels and cap.TEAM in spec_.labels:
        return expr
    if _divided_at_identity(spec_):
        added = [c.LABEL_TEAM] if cap.TIER in spec_.labels else [c.LABEL_TEAM, c.LABEL_TIER]
        on = f"on({c.LABEL_USER})"
        users = _identities(spec_, measure, [c.LABEL_USER], fn, window)
        if measure.adjusted_users and measure.per_request != 1:
            # The adjusted users' identity carries their divisor, every other user's 1.
            adjusted = f"{measure.adjusted_users} * 0 + {measure.per_request}"
            divisor = f"({adjusted} or {c.METRIC_USER_IDENTITY} * 0 + 1 or {on} {users})"
            return f"{expr} / {on} group_left({', '.join(added)}) {divisor}"
        return f"{expr} * {on} group_left({', '.join(added)}) ({c.METRIC_USER_IDENTITY} or {on} {users})"
    if cap.TEAM not in spec_.labels:
        return expr
    by_team = f"{c.METRIC_TEAM_INFO}"
    if cap.USER not in spec_.labels or not _own_tiers(plan):
        return f"{expr} * on({c.LABEL_TEAM}) group_left({c.LABEL_TIER}) {by_team}"
    on = f"on({c.LABEL_USER}, {c.LABEL_TEAM})"
    keys = _identities(spec_, measure, [c.LABEL_USER, c.LABEL_TEAM], fn, window)
    tiers = f"({c.METRIC_USER_IDENTITY} or {on} {keys} * on({c.LABEL_TEAM}) group_left({c.LABEL_TIER}) {by_team})"
    return f"{expr} * {on} group_left({c.LABEL_TIER}) {tiers}"


def needs_identity(plan: Plan) -> bool:
    """Whether some usage rule joins ``costplan:user_identity``."""
    for source in plan.usage_sources:
        if not models_of(plan, source):
            continue
        labels = spec(plan, source).labels
        if cap.USER in labels and (cap.TEAM not in labels or (cap.TIER not in labels and _own_tiers(plan))):
            return True
    return False


def _own_tiers(plan: Plan) -> bool:
    return any(u.tier and u.tier != t.tier for t in plan.teams for u in t.users)


def models_of(plan: Plan, source: UsageSource) -> list[Model]:
    return [m for m in plan.models if m.usage_source == source.name]


def source_rules(plan: Plan, source: UsageSource, window_names: tuple[str, ...] = tuple(WINDOWS)) -> list[dict[str, Any]]:
    models = models_of(plan, source)
    if not models:
        return []
    spec_ = spec(plan, source)
    rules = []
    for window_name in window_names:
        fn, window = WINDOWS[window_name]
        for measure in spec_.measures:
            if measure.kind == "limited" and window_name != c.WINDOW_RATE:
                continue
            name = {
                "requests": f"{c.METRIC_PREFIX}usage_requests:{window_name}",
                "tokens": f"{c.METRIC_PREFIX}usage_tokens:{window_name}",
                "limited": c.METRIC_USAGE_LIMITED_RATE,
            }[measure.kind]
            labels = {c.LABEL_SOURCE: source.name}
            if measure.token_type:
                labels[c.LABEL_TOKEN_TYPE] = measure.token_type
            rules.append(record(name, _measure_expr(plan, source, spec_, measure, fn, window, models), labels))
    return rules


def primary_selector(plan: Plan, source: UsageSource) -> str:
    """The first counter of a source: the one whose absence means the source stopped.

    A measure read in parts (per tier or per user) is watched whole: one
    part without traffic is not a stopped source.
    """
    first = spec(plan, source).measures[0]
    if first.parts:
        return Counter(first.counter.metric, first.counter.matchers).select()
    return first.counter.select()


def gpu_rules() -> list[dict[str, Any]]:
    """GPUs requested by running pods and allocatable per node, priced by instance type.

    The node's instance type comes from ``kube_node_labels`` (kube-state-metrics
    must allow ``node.kubernetes.io/instance-type`` in
    ``--metric-labels-allowlist``); namespace → team from the plan.
    """
    gpu = '{resource="nvidia_com_gpu"}'
    running = '(max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1)'
    requested = f"sum by (namespace, node) (kube_pod_container_resource_requests{gpu} * on(namespace, pod) group_left() {running})"
    node_type = (
        'max by (node, instance_type) (label_replace(kube_node_labels{label_node_kubernetes_io_instance_type!=""}, '
        '"instance_type", "$1", "label_node_kubernetes_io_instance_type", "(.+)"))'
    )
    node_price = f"{node_type} * on(instance_type) group_left(gpu_instance) {c.METRIC_GPU_PRICE_PER_HOUR}"
    by_namespace = (
        f"sum by (namespace, gpu_instance) ({c.METRIC_GPU_REQUESTED} * on(node) group_left(gpu_instance) "
        f"{c.METRIC_GPU_NODE_PRICE}) / 3600"
    )
    cost = (
        f"{by_namespace} * on(namespace) group_left(team, cost_center) {c.METRIC_NAMESPACE_TEAM}"
        f" or ({by_namespace} unless on(namespace) {c.METRIC_NAMESPACE_TEAM})"
    )
    in_use = f"(sum by (node) ({c.METRIC_GPU_REQUESTED}) or {c.METRIC_GPU_ALLOCATABLE} * 0)"
    idle = (
        f"clamp_min({c.METRIC_GPU_ALLOCATABLE} - on(node) {in_use}, 0) "
        f"* on(node) group_left(instance_type, gpu_instance) {c.METRIC_GPU_NODE_PRICE} / 3600"
    )
    return [
        record(c.METRIC_GPU_REQUESTED, requested),
        record(c.METRIC_GPU_ALLOCATABLE, f"sum by (node) (kube_node_status_allocatable{gpu})"),
        record(c.METRIC_GPU_NODE_PRICE, node_price),
        record(c.METRIC_GPU_COST_RATE, cost),
        record(c.METRIC_GPU_IDLE_COST_RATE, idle),
    ]


def rules(plan: Plan) -> list[dict[str, Any]]:
    """Per-second usage (group costplan-usage); hourly usage is in ``hourly_rules``."""
    out: list[dict[str, Any]] = []
    for source in plan.usage_sources:
        out.extend(source_rules(plan, source, (c.WINDOW_RATE,)))
    if plan.gpu_instances:
        out.extend(gpu_rules())
    return out


def hourly_rules(plan: Plan) -> list[dict[str, Any]]:
    """Usage of the last closed clock hour (group costplan-hourly), read straight from the counters."""
    out: list[dict[str, Any]] = []
    for source in plan.usage_sources:
        out.extend(source_rules(plan, source, (c.WINDOW_HOUR,)))
    return out
