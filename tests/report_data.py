"""A month of spend and usage series as the hourly rules record them, for report tests.

The series are what ``costplan:*:increase1h`` looks like in a live
Prometheus: the amount of the clock hour that closed last, repeated at every
evaluation of the hour after it (every 10 minutes here, 20 seconds after the
evaluation grid, some evaluations missed, a few hours missing altogether).
One identity is recorded exactly on the hour (its first evaluation lands on
the full hour). Values have up to nine decimals and are drawn from a seeded
generator, so the data is the same on every run.

Identities cover what the report has to join: spend with and without a
``cost_center`` label (completed from the plan's teams), a team the plan
does not know, unattributed spend (no team, no user), usage series with
extra labels (``source``, ``model_name``) that are summed away, and a label
value that starts like a spreadsheet formula. ``clusters=True`` adds a
``cluster`` label (``a`` or ``b``) and puts one team in both clusters.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from costplan.core import conventions as c

FIRST_HOUR_END = datetime(2025, 2, 27, 0, tzinfo=UTC)
LAST_HOUR_END = datetime(2025, 4, 2, 6, tzinfo=UTC)
EVALUATION = timedelta(minutes=10)
HOUR = timedelta(hours=1)

# (team, user, tier, model, cost_center label or None, usage source, on the hour)
IDENTITIES = [
    ("ml-research", "premiumuser1", "premium", "claude-sonnet", "CC-1001", "envoy-ai", False),
    ("ml-research", "premiumuser2", "premium", "gpt-4o-mini", None, "envoy-ai", False),
    ("ml-research", "free-ml", "free", "qwen3-0-6b", "CC-1001", "limitador", True),
    ("customer-support", "freeuser1", "free", "qwen3-0-6b", None, "limitador", False),
    ("customer-support", "=cmd|' /C calc'!A0", "free", "llama3-8b", "CC-2040", "vllm", False),
    ("platform", "batch-runner", "enterprise", "mixtral-batch", "CC-0001", "vllm", False),
    ("ghost-team", "g1", "premium", "deepseek-chat", None, "envoy-ai", False),
    ("", "", "free", "deepseek-chat", None, "envoy-ai", False),
]
CLUSTERS = {"ml-research": ("a", "b"), "customer-support": ("b",)}  # every other team runs in cluster a


def _money(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return f"{rng.randint(1, 50_000_000_000) / 1_000_000_000:.9f}"  # up to 50 in an hour
    return f"{rng.randint(1, 9_999_999) / 1_000_000_000:.9f}"


def _evaluations(rng: random.Random, hour_end: datetime, on_the_hour: bool) -> list[datetime]:
    """When the hour ending at ``hour_end`` is recorded: every evaluation of the next hour, minus missed ones."""
    first = hour_end if on_the_hour else hour_end + timedelta(seconds=20)
    times = [first + i * EVALUATION for i in range(6)]
    if rng.random() < 0.02:
        return []  # the whole hour missed (e.g. Prometheus restarted)
    kept = [t for t in times if rng.random() > 0.15]
    return kept or times[-1:]


def samples(clusters: bool = False, seed: int = 20250301) -> Iterator[tuple[str, dict[str, str], datetime, str]]:
    """(metric, labels, timestamp, value) of every sample, in a fixed order."""
    rng = random.Random(seed)
    for team, user, tier, model, cost_center, source, on_the_hour in IDENTITIES:
        for cluster in (CLUSTERS.get(team, ("a",)) if clusters else (None,)):
            base = {c.LABEL_TEAM: team, c.LABEL_USER: user, c.LABEL_TIER: tier, c.LABEL_MODEL: model}
            if cluster is not None:
                base[c.LABEL_CLUSTER] = cluster
            spend = dict(base)
            if cost_center is not None:
                spend[c.LABEL_COST_CENTER] = cost_center
            usage = {**base, "source": source, "model_name": f"{model}-served"}
            hour_end = FIRST_HOUR_END
            while hour_end <= LAST_HOUR_END:
                if rng.random() < 0.7:
                    values = [
                        (c.METRIC_SPEND_HOURLY, spend, _money(rng)),
                        (c.METRIC_USAGE_REQUESTS_HOURLY, usage, str(rng.randint(1, 400))),
                        (c.METRIC_USAGE_TOKENS_HOURLY, {**usage, c.LABEL_TOKEN_TYPE: "input"}, str(rng.randint(1, 90_000))),
                        (c.METRIC_USAGE_TOKENS_HOURLY, {**usage, c.LABEL_TOKEN_TYPE: "output"}, str(rng.randint(1, 9_000))),
                    ]
                    when = _evaluations(rng, hour_end, on_the_hour)
                    for metric, labels, value in values:
                        for moment in when:
                            yield metric, labels, moment, value
                hour_end += HOUR


def openmetrics(clusters: bool = False) -> str:
    """The samples as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``."""
    by_series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[datetime, str]]] = {}
    for metric, labels, moment, value in samples(clusters):
        by_series.setdefault((metric, tuple(sorted(labels.items()))), []).append((moment, value))
    lines = []
    for metric in sorted({m for m, _ in by_series}):
        lines.append(f"# TYPE {metric} gauge")
        for (name, labels), points in sorted(by_series.items()):
            if name != metric:
                continue
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.extend(f"{metric}{{{body}}} {value} {int(moment.timestamp())}" for moment, value in sorted(points))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def prometheus_text(clusters: bool = False) -> str:
    """The samples in the Prometheus text format with millisecond timestamps (VictoriaMetrics' import)."""
    lines = []
    for metric, labels, moment, value in samples(clusters):
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{metric}{{{body}}} {value} {int(moment.timestamp()) * 1000}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
