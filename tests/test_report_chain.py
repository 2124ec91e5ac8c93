"""The whole chain against a real Prometheus: raw usage counters → generated rules → `costplan report`.

``test_report_e2e.py`` backfills the spend series directly; this test proves
that the *generated* recording rules turn the counters the gateways export
into the money the report prints:

1. a small plan (Limitador per-request model, Envoy AI Gateway per-token
   model, two teams, tiers free/premium, a monthly budget, UTC);
2. raw counters written as OpenMetrics for 28 Feb 18:00 – 1 Mar 07:00 UTC
   2025 and backfilled with ``promtool tsdb create-blocks-from openmetrics``:
   Limitador ``authorized_calls`` with the TelemetryPolicy's identity labels
   (no ``_total`` suffix, as Limitador exports it), Envoy AI Gateway's
   ``gen_ai_client_token_usage`` and ``gen_ai_server_request_duration_seconds``
   histograms (``_sum``/``_count``) from two gateway replicas;
3. every recording group of ``rules_files(plan)`` evaluated in order with
   ``promtool tsdb create-blocks-from rules`` against the server, layer by
   layer (see ``tests/promserver.py``), the server restarted after each layer;
4. ``costplan report`` for February and March, compared with hand-computed
   exact amounts.

Why the raw samples sit on the usage group's evaluation times: ``increase()``
extrapolates whenever the first or last sample of its range is not on the
range's edge. Samples every minute *exactly* at the usage group's
evaluation offset put a sample on both edges of every ``[1h]`` range, so
each hourly increase is the exact difference of two counter values and the
hours tile the window without gap or overlap. The hand-computed amounts are
then exact; the test measures the offset rather than assuming one. The
last test repeats the chain with scrapes half a minute off the evaluations,
as they fall in a live Prometheus, and shows the money is then no longer
exact (marked as an expected failure, see its reason).

Where the month boundary falls: ``costplan:spend:increase1h`` holds the
money of the clock hour that closed last, computed from the counters' last
samples at or before each full hour, and the report reads each hour in the
hour after it. Only calls scraped after the full hour that ends their month
land in the next one (at most one scrape interval).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.chargeback.promapi import PrometheusClient
from costplan.chargeback.report import read_time, window_query
from costplan.cli.app import main
from costplan.core import conventions as c
from costplan.generators.prometheus import rules_files
from costplan.plan.load import load_plan
from tests import promserver
from tests.promserver import PROMETHEUS, PROMTOOL, PrometheusServer

pytestmark = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=promserver.MISSING)

UTC = UTC
DATA_START = datetime(2025, 2, 28, 18, tzinfo=UTC)
DATA_END = datetime(2025, 3, 1, 7, tzinfo=UTC)
MINUTE_MS = 60_000
SEVEN = Decimal("0.0000001")

PLAN_YAML = """\
apiVersion: costplan.dev/v1alpha1
kind: CostPlan
metadata:
  name: chain
  currency: USD
  timezone: UTC
integrations:
  gateway:
    namespace: llm
    targetRef:
      kind: Gateway
      name: gw
  prometheus:
    url: http://prometheus.invalid:9090
    namespace: monitoring
  secrets:
    backend: none
usageSources:
  - name: limitador
    type: kuadrant-limitador
  - name: envoy
    type: envoy-ai-gateway
models:
  - name: small
    modelName: Qwen/Qwen3-0.6B
    provider: self-hosted
    usageSource: limitador
    pricing:
      type: perRequest
      price: 0.002
  - name: sonnet
    modelName: claude-3-sonnet
    provider: anthropic
    namespace: research-llm
    usageSource: envoy
    pricing:
      type: perMillionTokens
      input: 3
      cachedInput: 0.3
      output: 15
tiers:
  - name: free
  - name: premium
teams:
  - name: research
    costCenter: CC-1
    namespaces: [research-llm]
    tier: free
    users:
      - id: alice
      - id: bob
    budgets:
      - name: monthly
        amount: 100
        period: month
        thresholds: [80, 100]
  - name: support
    costCenter: CC-2
    tier: premium
    users:
      - id: premiumuser1
"""

# --------------------------------------------------------------------------
# Raw usage: (UTC time of the scrape that first shows it, increment)
# --------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def limitador(user: str, team: str, tier: str, cost_center: str, route: str) -> dict[str, str]:
    """Labels of ``authorized_calls`` as the TelemetryPolicy sets them (no ``model``: no body in the request phase)."""
    return {
        "limitador_namespace": route,
        c.LABEL_USER: user,
        c.LABEL_TEAM: team,
        c.LABEL_TIER: tier,
        c.LABEL_COST_CENTER: cost_center,
    }


ALICE_CHAT = limitador("alice", "research", "free", "CC-1", "llm/chat")
ALICE_COMPLETIONS = limitador("alice", "research", "free", "CC-1", "llm/completions")
BOB = limitador("bob", "research", "free", "CC-1", "llm/chat")
PREMIUM = limitador("premiumuser1", "support", "premium", "CC-2", "llm/chat")

CALLS = {
    # alice, February: 3 + 2 (other route) + 1 = 6; March: 2 + 5 = 7.
    "alice-chat": (ALICE_CHAT, [(at("2025-02-28T20:10"), 3), (at("2025-02-28T23:45"), 1),
                                (at("2025-03-01T00:15"), 2), (at("2025-03-01T03:20"), 5)]),
    "alice-completions": (ALICE_COMPLETIONS, [(at("2025-02-28T21:30"), 2)]),
    # bob: 4 in February, none in March.
    "bob": (BOB, [(at("2025-02-28T22:15"), 4)]),
    # premiumuser1, February: 5 + 3 = 8 (3 of them in the last hour); March: 10 in the first hour.
    "premium": (PREMIUM, [(at("2025-02-28T20:30"), 5), (at("2025-02-28T23:30"), 3), (at("2025-03-01T00:30"), 10)]),
}

ENVOY = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "anthropic",
    "gen_ai_request_model": "claude-3-sonnet",
    "gen_ai_response_model": "claude-3-sonnet-20240229",
    "gen_ai_original_model": "claude-3-sonnet",
    "otel_scope_name": "envoyproxy/ai-gateway",
    "gateway_envoyproxy_io_owning_gateway_name": "gw",
}
FEB_REQUEST = at("2025-02-28T21:05")
MAR_REQUEST = at("2025-03-01T01:40")
# Per gateway replica: {time: (requests, {token type: tokens})}. Input includes
# cached input, output includes reasoning (OpenTelemetry GenAI semantics).
REPLICAS = {
    "envoy-a": {
        FEB_REQUEST: (3, {"input": 7000, "cached_input": 3000, "output": 1500, "reasoning": 0}),
        MAR_REQUEST: (25, {"input": 200000, "cached_input": 50000, "output": 30000, "reasoning": 10000}),
    },
    "envoy-b": {
        FEB_REQUEST: (1, {"input": 3000, "cached_input": 1000, "output": 500, "reasoning": 0}),
    },
}


def sample_times(offset_ms: int) -> list[int]:
    """One scrape a minute, at the usage group's evaluation offset (see module docstring)."""
    first = int(DATA_START.timestamp() * 1000) + offset_ms
    count = int((DATA_END - DATA_START) / timedelta(minutes=1)) + 1
    return [first + i * MINUTE_MS for i in range(count)]


def counter(events: list[tuple[datetime, int]], times: list[int]) -> list[int]:
    """Counter values: an event shows from the first scrape of its minute on."""
    values = []
    for ts in times:
        minute = datetime.fromtimestamp(ts // MINUTE_MS * 60, UTC)
        values.append(sum(n for when, n in events if when <= minute))
    return values


def series_lines(name: str, labels: dict[str, str], times: list[int], values: list[int]) -> list[str]:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return [f"{name}{{{body}}} {v} {promserver.seconds(ts)}" for ts, v in zip(times, values, strict=False)]


def openmetrics(offset_ms: int, calls=None) -> str:
    times = sample_times(offset_ms)
    lines = ["# TYPE authorized_calls counter"]  # Limitador's own name: no _total
    for labels, events in (CALLS if calls is None else calls).values():
        lines += series_lines("authorized_calls", labels, times, counter(events, times))
    tokens, durations = [], []
    for pod, usage in sorted(REPLICAS.items()):
        requests = counter([(when, n) for when, (n, _) in usage.items()], times)
        durations += series_lines("gen_ai_server_request_duration_seconds_count", {**ENVOY, "pod": pod}, times,
                                  requests)
        durations += series_lines("gen_ai_server_request_duration_seconds_sum", {**ENVOY, "pod": pod}, times,
                                  [2 * n for n in requests])
        for kind in ("input", "cached_input", "output", "reasoning"):
            labels = {**ENVOY, "pod": pod, "gen_ai_token_type": kind}
            tokens += series_lines("gen_ai_client_token_usage_sum", labels, times,
                                   counter([(when, t[kind]) for when, (_, t) in usage.items()], times))
            tokens += series_lines("gen_ai_client_token_usage_count", labels, times, requests)
    lines += ["# TYPE gen_ai_client_token_usage histogram", *tokens]
    lines += ["# TYPE gen_ai_server_request_duration_seconds histogram", *durations]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------


def build_chain(work: Path, scrape_shift_ms: int = 0, targets: set[str] | None = None, calls=None) -> PrometheusServer:
    """A started server holding the raw counters and the recorded series of the plan's rules.

    ``scrape_shift_ms`` moves every scrape that far after the usage group's
    evaluation; ``targets`` limits the rules to those the named series need;
    ``calls`` replaces ``CALLS``.
    Stops the server if anything fails.
    """
    plan_path = work / "costplan.yaml"
    plan_path.write_text(PLAN_YAML)
    files = rules_files(load_plan(plan_path))
    names = {doc["groups"][0]["name"]: name for name, doc in files.items()}
    groups = [doc["groups"][0] for doc in files.values()]
    assert [g["name"] for g in groups][:4] == [c.GROUP_PRICES, c.GROUP_USAGE, c.GROUP_HOURLY, c.GROUP_SPEND]
    if targets is not None:
        groups = promserver.needed_rules(groups, targets)
    server = PrometheusServer(work, work / "data")
    server.start()
    try:
        usage = next((g for g in groups if g["name"] == c.GROUP_USAGE), groups[0])
        offset = promserver.evaluation_offset_ms(server, usage, names[usage["name"]], DATA_START)
        server.stop()
        promserver.backfill_openmetrics(openmetrics((offset + scrape_shift_ms) % MINUTE_MS, calls),
                                      server.data_dir, work)
        server.start()
        for group in groups:
            for layer in promserver.rule_layers(group):
                text = promserver.group_file(group, layer)
                blocks = promserver.backfill_rules(server, names[group["name"]], text, DATA_START, DATA_END,
                                                   group["interval"])
                assert blocks > 0, f"{group['name']} recorded nothing"
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(Prometheus URL, plan path): raw counters and every recording rule of the plan, layer by layer."""
    work = tmp_path_factory.mktemp("chain")
    server = build_chain(work)
    try:
        yield server.url, work / "costplan.yaml"
    finally:
        server.stop()


def report(chain, month: str, group_by: str) -> dict[tuple[str, ...], dict[str, str]]:
    url, plan_path = chain
    result = CliRunner().invoke(main, ["report", "-f", str(plan_path), "--prometheus-url", url, "--month", month,
                                       "--format", "csv", "--group-by", group_by])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    key = ("team",) if group_by == "team" else ("team", "user") if group_by == "user" else ("model",)
    return {tuple(r[k] for k in key): r for r in rows}


def money_of(rows: dict[tuple[str, ...], dict[str, str]]) -> dict[tuple[str, ...], str]:
    return {k: r["cost"] for k, r in rows.items()}


def query(chain, expr: str, moment: datetime) -> dict[tuple[str, ...], str]:
    """Instant query; values rounded half-even to seven decimals like the report."""
    samples = PrometheusClient(chain[0]).query(expr, moment)
    return {tuple(sorted(s.labels.items())): f"{s.value.quantize(SEVEN, ROUND_HALF_EVEN):f}" for s in samples}


# --------------------------------------------------------------------------
# February: 28 Feb 20:00 – 1 Mar 00:00 of the window
# --------------------------------------------------------------------------


def test_february_by_team(chain):
    rows = report(chain, "2025-02", "team")
    # research: alice 6 calls x 0.002 = 0.012, bob 4 x 0.002 = 0.008,
    #   sonnet 0.0492 (see test_token_money_by_type) -> 0.0692
    # support: premiumuser1 8 x 0.002 = 0.016
    assert money_of(rows) == {("research",): "0.0692000", ("support",): "0.0160000"}
    assert rows[("research",)]["cost_center"] == "CC-1"
    assert rows[("support",)]["cost_center"] == "CC-2"
    # 6 + 4 Limitador calls + 3 + 1 gateway requests; 8 calls.
    assert rows[("research",)]["requests"] == "14"
    assert rows[("support",)]["requests"] == "8"


def test_february_by_user(chain):
    rows = report(chain, "2025-02", "user")
    assert money_of(rows) == {
        ("research", ""): "0.0492000",  # the gateway knows no user: the model's owning team pays
        ("support", "premiumuser1"): "0.0160000",  # 8 x 0.002, 3 of them at 23:30
        ("research", "alice"): "0.0120000",  # 3 + 2 (another route) + 1 at 23:45 = 6 x 0.002
        ("research", "bob"): "0.0080000",  # 4 x 0.002
    }
    assert {k: r["requests"] for k, r in rows.items()} == {
        ("research", ""): "4", ("support", "premiumuser1"): "8", ("research", "alice"): "6", ("research", "bob"): "4",
    }


# --------------------------------------------------------------------------
# March: 1 Mar 00:00 – 07:00 of the window
# --------------------------------------------------------------------------


def test_march_by_team(chain):
    rows = report(chain, "2025-03", "team")
    # research: alice 7 x 0.002 = 0.014, bob nothing, sonnet 0.915 -> 0.929
    # support: premiumuser1 10 x 0.002 = 0.020 (all at 00:30, in March's first hour)
    assert money_of(rows) == {("research",): "0.9290000", ("support",): "0.0200000"}
    assert rows[("research",)]["requests"] == "32"  # 7 calls + 25 gateway requests
    assert rows[("support",)]["requests"] == "10"


def test_march_by_user(chain):
    rows = report(chain, "2025-03", "user")
    assert money_of(rows) == {
        ("research", ""): "0.9150000",
        ("support", "premiumuser1"): "0.0200000",
        ("research", "alice"): "0.0140000",  # 2 at 00:15 + 5 at 03:20 = 7 x 0.002
        ("research", "bob"): "0.0000000",  # counted, idle in March
    }


# --------------------------------------------------------------------------
# Tokens: disjoint types, each at its own price
# --------------------------------------------------------------------------


def test_token_counts_are_disjoint_types(chain):
    feb = report(chain, "2025-02", "model")[("sonnet",)]
    # input 7000 + 3000 over two replicas includes cached 3000 + 1000: uncached 6000.
    assert (feb["input_tokens"], feb["cached_input_tokens"], feb["output_tokens"], feb["reasoning_tokens"]) == (
        "6000", "4000", "2000", "0")
    mar = report(chain, "2025-03", "model")[("sonnet",)]
    # input 200000 - cached 50000; output 30000 - reasoning 10000.
    assert (mar["input_tokens"], mar["cached_input_tokens"], mar["output_tokens"], mar["reasoning_tokens"]) == (
        "150000", "50000", "20000", "10000")


def test_token_money_by_type(chain):
    token_spend = f'{c.METRIC_SPEND_HOURLY}{{charge="token", model="sonnet"}}'

    def by_type(start: str, end: str) -> dict[str, str]:
        expr = window_query(token_spend, (c.LABEL_TOKEN_TYPE,), at(start), at(end))
        return {dict(k)[c.LABEL_TOKEN_TYPE]: v for k, v in query(chain, expr, read_time(at(end))).items()}

    # 28 February: uncached input 6000 x 3/1M = 0.018, cached 4000 x 0.3/1M = 0.0012,
    # output 2000 x 15/1M = 0.03 -> 0.0492
    assert by_type("2025-02-28T00:00", "2025-03-01T00:00") == {
        "input": "0.0180000", "cached_input": "0.0012000", "output": "0.0300000", "reasoning": "0.0000000",
    }
    # 1 March: uncached 150000 x 3/1M = 0.45, cached 50000 x 0.3/1M = 0.015, output 20000 x 15/1M = 0.3,
    # reasoning 10000 at the output price (not priced separately) 15/1M = 0.15 -> 0.915
    assert by_type("2025-03-01T00:00", "2025-03-02T00:00") == {
        "input": "0.4500000", "cached_input": "0.0150000", "output": "0.3000000", "reasoning": "0.1500000",
    }


# --------------------------------------------------------------------------
# The budget gauge reads the same hourly money
# --------------------------------------------------------------------------


def test_budget_spend_follows_the_month(chain):
    spend = f'{c.METRIC_BUDGET_SPEND}{{budget="monthly", team="research"}}'
    # At 23:30 the closed hours 20-21, 21-22 and 22-23 count: alice 3 + 2 calls (0.010), sonnet 0.0492,
    # bob 4 calls (0.008) -> 0.0672.
    assert list(query(chain, spend, at("2025-02-28T23:30")).values()) == ["0.0672000"]
    # (In the first hour of March the gauge describes February complete with its last hour; rule
    # backfills resolve ``@ end()`` to the end of a block rather than each evaluation, so that is
    # proven with promtool's unit tests, test_prometheus_money_semantics.py.)
    # At 06:00 on 1 March the gauge holds March's hours, which end by 06:00:
    # the same 0.929 the March report charges research.
    assert list(query(chain, spend, at("2025-03-01T06:00")).values()) == ["0.9290000"]


# --------------------------------------------------------------------------
# Scrapes that do not coincide with the rule evaluations
# --------------------------------------------------------------------------

REPORT_SERIES = {c.METRIC_SPEND_HOURLY, c.METRIC_USAGE_REQUESTS_HOURLY, c.METRIC_USAGE_TOKENS_HOURLY}
# bob also calls 4 times in the minute before 03:00 on 1 March. With the usage group evaluated at
# hh:mm:14.541 (the offset Prometheus 2.42 hashes from its name and file name) and scrapes 30 s later,
# the scrape at 02:59:44.541 is the first of the range the report reads for 03:00-04:00, so the
# increment since the previous scrape lies in neither hour's range.
GAP_CALLS = {**CALLS, "bob": (BOB, [*CALLS["bob"][1], (at("2025-03-01T02:59"), 4)])}


@pytest.fixture(scope="module")
def unaligned_chain(tmp_path_factory):
    """Scrapes 30 s after each usage evaluation, as they fall in a live Prometheus; only the report's rules."""
    work = tmp_path_factory.mktemp("unaligned")
    server = build_chain(work, scrape_shift_ms=30_000, targets=REPORT_SERIES, calls=GAP_CALLS)
    try:
        yield server.url, work / "costplan.yaml"
    finally:
        server.stop()


def test_money_is_exact_when_scrapes_fall_between_evaluations(unaligned_chain):
    """Hourly usage tiles exactly even when no scrape sits on an hour's edge (no extrapolation)."""
    rows = report(unaligned_chain, "2025-03", "user")
    # The usage of test_march_by_user plus bob's 4 calls before 03:00; only the scrape times differ.
    assert money_of(rows) == {
        ("research", ""): "0.9150000",
        ("support", "premiumuser1"): "0.0200000",  # 10 x 0.002
        ("research", "alice"): "0.0140000",  # 7 x 0.002
        ("research", "bob"): "0.0080000",  # 4 x 0.002
    }
