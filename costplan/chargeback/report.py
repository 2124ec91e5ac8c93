"""``costplan report``: the chargeback for a period, from the spend rules' series.

The money comes from the spend rules' hourly series
(``conventions.METRIC_SPEND_HOURLY``: at any time, the money of the clock
hour that closed last), summed over an hourly subquery exactly as the budget
rules sum it, so a report and a budget gauge agree.

Periods are half-open in time, ``[start, end)``, as FOCUS wants: the clock
hours ending in ``(start, end]``. The hour ending at ``E`` is the last value
recorded before ``E + 1h`` (``periods.closed_hour``), so a window is queried
at ``end + 1h`` (``read_time``) over steps in ``(start + 1h, end + 1h]``. An
aligned subquery includes both ends, so the range is one second shorter
than the window.

The period is split into days at midnight in the plan's timezone (23- or
25-hour days around DST changes). One instant query per day (``day_query``:
spend, requests and tokens, each summed by row on the server, told apart by
a marker label) keeps each answer small, gives progress on stderr, and
yields the daily charge periods of the FOCUS export. A range query with a
daily step would be one request, but query frontends (Thanos, Mimir) and
VictoriaMetrics' response cache shift a range query's start to a multiple
of its step, which would move every day's boundary; instant queries mean
the same on every engine. Two queries are in flight while an answer is
folded into rows, and no sample outlives its answer.

A series' ``cluster`` label (a fleet's global view) is kept: rows are per
cluster, and views split by cluster only when some row has one, so
single-cluster output does not change.

Rounding: Prometheus returns sums as floats. Each daily value of one
(team, user, tier, model, cost center, cluster) is parsed with ``Decimal(str)`` and
rounded half-even to the plan's money precision (``money_quantum``: as
many decimals as its finest unit price, at least six); request and token counts
to whole units. Every total is an exact ``Decimal`` sum of those rounded
rows, so all views of one report add up to the same total.

Everything here except what queries (``each_window``, ``collect``,
``gather``) and ``post_webhook`` is pure and tested without a server.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
import re
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

from costplan.chargeback.promapi import Answer, Endpoint, PrometheusClient, PrometheusError, Sample, post, vector
from costplan.core import conventions as c
from costplan.core.errors import ExternalFailure, UsageProblem
from costplan.core.money import per_unit
from costplan.generators.prometheus import fleet
from costplan.generators.prometheus.periods import closed_hour
from costplan.plan.model import (
    GpuHourly,
    Model,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    TieredVolume,
)
from costplan.plan.pricing import priced_tiers, tier_pricing

MONEY_QUANTUM = Decimal("0.000001")  # the least precision money is shown with
MAX_MONEY_PLACES = 12  # beyond this, floats returned by Prometheus carry noise, not money
UNIT_QUANTUM = Decimal(1)
IDENTITY = (c.LABEL_TEAM, c.LABEL_USER, c.LABEL_TIER, c.LABEL_MODEL, c.LABEL_COST_CENTER)
GROUPS: Mapping[str, tuple[str, ...]] = {
    "detail": IDENTITY,
    "team": (c.LABEL_TEAM, c.LABEL_COST_CENTER),
    "user": (c.LABEL_TEAM, c.LABEL_USER),
    "model": (c.LABEL_MODEL,),
    "cost-center": (c.LABEL_COST_CENTER,),
    "cluster": (c.LABEL_CLUSTER,),
}
TOKEN_COLUMNS = (c.TOKEN_TYPE_INPUT, c.TOKEN_TYPE_OUTPUT, c.TOKEN_TYPE_CACHED, c.TOKEN_TYPE_REASONING, c.TOKEN_TYPE_TOTAL)


def _unit_prices(plan: Plan, pricing: object) -> Iterable[Decimal]:
    """The price of one unit (request, token, GPU-hour) of each kind a pricing charges."""
    if isinstance(pricing, PerRequest):
        yield pricing.price
    elif isinstance(pricing, PerMillionTokens):
        for price in (pricing.input, pricing.output, pricing.cached_input, pricing.reasoning):
            if price is not None:
                yield per_unit(price)
    elif isinstance(pricing, PerRequestWithIncludedTokens):
        yield pricing.price_per_request
        yield per_unit(pricing.overage_per_million_tokens)
    elif isinstance(pricing, TieredVolume):
        for band in pricing.tiers:
            yield per_unit(band.price) if pricing.unit == "tokens" else band.price
    elif isinstance(pricing, GpuHourly):
        yield from (gpu.hourly_rate_per_gpu for gpu in plan.gpu_instances)


_QUANTA: dict[int, tuple[Plan, Decimal]] = {}


def money_quantum(plan: Plan) -> Decimal:
    """The plan's money precision: as many decimals as its finest unit price has.

    At least ``MONEY_QUANTUM`` (six decimals), at most ``MAX_MONEY_PLACES``:
    a price of 0.15 per million tokens (0.00000015 a token) keeps eight, so
    one token's money never prints as zero.
    """
    known = _QUANTA.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]  # the shaping functions ask once per row
    places = 6  # MONEY_QUANTUM
    for model in plan.models:
        for _, pricing, multiplier in priced_tiers(plan, model):
            for price in _unit_prices(plan, pricing):
                exponent = (price * multiplier).normalize().as_tuple().exponent
                if isinstance(exponent, int):
                    places = max(places, -exponent)
    quantum = Decimal(1).scaleb(-min(places, MAX_MONEY_PLACES))
    if len(_QUANTA) > 16:
        _QUANTA.clear()
    _QUANTA[id(plan)] = (plan, quantum)
    return quantum


class PeriodError(UsageProblem):
    """The period asked for cannot be read or has not started."""


class WebhookError(ExternalFailure):
    """The report could not be delivered to the webhook."""


# --------------------------------------------------------------------------
# Periods
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC; ``label`` names output files."""

    start: datetime
    end: datetime
    label: str


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _month_start(year: int, month: int) -> date:
    return date(year, month, 1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def month_period(month: str, tz: ZoneInfo) -> Period:
    """``2026-10`` → the calendar month in the plan's timezone."""
    try:
        year, number = (int(part) for part in month.split("-"))
        first = _month_start(year, number)
    except ValueError:
        raise PeriodError(f"--month wants YYYY-MM, 'last' or 'current', not {month!r}") from None
    return Period(_local_midnight(first, tz), _local_midnight(_next_month(first), tz), f"{year:04d}-{number:02d}")


def named_month(name: str, now: datetime, tz: ZoneInfo) -> Period:
    """``last`` (the month before ``now``), ``current`` (month to date) or ``YYYY-MM``."""
    today = now.astimezone(tz).date()
    if name == "last":
        previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        return month_period(f"{previous.year}-{previous.month}", tz)
    if name == "current":
        month = month_period(f"{today.year}-{today.month}", tz)
        return Period(month.start, now.astimezone(UTC).replace(microsecond=0), month.label)
    return month_period(name, tz)


def parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """A date or ISO time; without an offset it is read in the plan's timezone."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"{text!r} is not an ISO date or time (e.g. 2026-10-01 or 2026-10-01T12:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def range_period(start: str, end: str, tz: ZoneInfo) -> Period:
    begin, finish = parse_instant(start, tz), parse_instant(end, tz)
    if finish <= begin:
        raise PeriodError(f"--end ({end}) must be after --start ({start})")
    return Period(begin, finish, f"{begin:%Y%m%dT%H%M%SZ}-{finish:%Y%m%dT%H%M%SZ}")


def windows(period: Period, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The period cut at every local midnight inside it."""
    cuts = [period.start]
    day = period.start.astimezone(tz).date() + timedelta(days=1)
    while (midnight := _local_midnight(day, tz)) < period.end:
        cuts.append(midnight)
        day += timedelta(days=1)
    cuts.append(period.end)
    return list(zip(cuts, cuts[1:], strict=False))


def billing_period(moment: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar month (plan timezone) that contains ``moment``."""
    local = moment.astimezone(tz).date().replace(day=1)
    return _local_midnight(local, tz), _local_midnight(_next_month(local), tz)


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


def range_seconds(start: datetime, end: datetime) -> int:
    """The window length minus one second (see the module docstring)."""
    return (end - start) // timedelta(seconds=1) - 1


def read_time(end: datetime, lag_hours: int = 0) -> datetime:
    """When a window ending at ``end`` is queried: the hour ending at ``end`` is read in the hour after it.

    A fleet's global view records each hour's money ``lag_hours`` later
    (``generators.prometheus.fleet``): it is read that much later too.
    """
    return end + timedelta(hours=1 + lag_hours)


def billing_lag_hours(plan: Plan) -> int:
    """How many hours after the clusters the money of this plan's view is recorded."""
    return fleet.LAG_HOURS if plan.is_fleet else 0


def window_query(metric: str, by: Sequence[str], start: datetime, end: datetime) -> str:
    """Sum of an hourly series over the clock hours ending in ``(start, end]``, evaluated at ``read_time(end)``."""
    span = range_seconds(start, end)
    return f"sum by ({', '.join(by)}) (sum_over_time({closed_hour(metric)}[{span}s:{c.OUTPUT_STEP}]))"


ROW_LABELS = (*IDENTITY, c.LABEL_CLUSTER)
"""What a row is per: the identity and, on a fleet's global view, the cluster the series came from."""
SERIES = "costplan_series"  # a label that keeps the three sums of one window query apart
SPEND, REQUESTS, TOKENS = "spend", "requests", "tokens"


def spend_query(start: datetime, end: datetime) -> str:
    return window_query(c.METRIC_SPEND_HOURLY, ROW_LABELS, start, end)


def requests_query(start: datetime, end: datetime) -> str:
    # Usage carries no cost_center; it is completed from the plan's teams.
    return window_query(c.METRIC_USAGE_REQUESTS_HOURLY, (*IDENTITY[:4], c.LABEL_CLUSTER), start, end)


def tokens_query(start: datetime, end: datetime) -> str:
    return window_query(c.METRIC_USAGE_TOKENS_HOURLY, (*IDENTITY[:4], c.LABEL_CLUSTER, c.LABEL_TOKEN_TYPE), start, end)


def day_query(start: datetime, end: datetime) -> str:
    """Spend, requests and tokens of one window in one query, each sum marked by ``costplan_series``.

    The three sums are the same expressions as three separate queries (the
    same floats, so the same money), joined with ``or``: their series never
    collide because the marker differs.
    """
    parts = ((SPEND, spend_query), (REQUESTS, requests_query), (TOKENS, tokens_query))
    return " or ".join(f'label_replace({build(start, end)}, "{SERIES}", "{kind}", "", "")' for kind, build in parts)


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Spend and usage of one identity (and cluster) in one window (a FOCUS charge period)."""

    start: datetime
    end: datetime
    team: str
    user: str
    tier: str
    model: str
    cost_center: str
    cost: Decimal
    requests: Decimal = Decimal(0)
    tokens: Mapping[str, Decimal] = field(default_factory=dict)
    cluster: str = ""

    def key(self, labels: Sequence[str]) -> tuple[str, ...]:
        return tuple(getattr(self, label) for label in labels)

    @property
    def total_tokens(self) -> Decimal:
        return sum(self.tokens.values(), Decimal(0))


_ZERO = Decimal(0)  # a sum starts from it: ``0 + x`` is ``x`` in the context's precision (and ``-0`` is ``0``)


class _Window:
    """The rows of one window, summed by row key as samples arrive (no sample is kept)."""

    def __init__(self, plan: Plan) -> None:
        self.cost_centers = {team.name: team.cost_center for team in plan.teams}
        self.quantum = money_quantum(plan)
        self.costs: dict[tuple[str, ...], Decimal] = {}
        self.counts: dict[tuple[str, ...], Decimal] = {}
        self.tokens: dict[tuple[str, ...], dict[str, Decimal]] = {}

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        get = labels.get
        team = get(c.LABEL_TEAM, "")
        return (team, get(c.LABEL_USER, ""), get(c.LABEL_TIER, ""), get(c.LABEL_MODEL, ""),
                get(c.LABEL_COST_CENTER, "") or (self.cost_centers.get(team, "") if team else ""), get(c.LABEL_CLUSTER, ""))

    def add(self, kind: str, labels: Mapping[str, str], value: Decimal) -> None:
        key = self.key(labels)
        if kind == SPEND:
            self.costs[key] = self.costs.get(key, _ZERO) + value
        elif kind == REQUESTS:
            self.counts[key] = self.counts.get(key, _ZERO) + value
        elif kind == TOKENS:
            bucket = self.tokens.setdefault(key, {})
            token_type = labels.get(c.LABEL_TOKEN_TYPE, "")
            bucket[token_type] = bucket.get(token_type, _ZERO) + value
        else:
            raise ValueError(kind)

    def rows(self, start: datetime, end: datetime) -> list[UsageRow]:
        zero = Decimal(0)
        rows = []
        for key in sorted(set(self.costs) | set(self.counts) | set(self.tokens)):
            team, user, tier, model, cost_center, cluster = key
            rows.append(
                UsageRow(
                    start=start,
                    end=end,
                    team=team,
                    user=user,
                    tier=tier,
                    model=model,
                    cost_center=cost_center,
                    cost=self.costs.get(key, zero).quantize(self.quantum, ROUND_HALF_EVEN),
                    requests=self.counts.get(key, zero).quantize(UNIT_QUANTUM, ROUND_HALF_EVEN),
                    tokens={
                        kind: value.quantize(UNIT_QUANTUM, ROUND_HALF_EVEN)
                        for kind, value in sorted(self.tokens.get(key, {}).items())
                    },
                    cluster=cluster,
                )
            )
        return rows


def rows_from_samples(
    plan: Plan,
    start: datetime,
    end: datetime,
    spend: Iterable[Sample],
    requests: Iterable[Sample] = (),
    tokens: Iterable[Sample] = (),
) -> list[UsageRow]:
    """Join the three answers of one window on identity and round them (pure)."""
    window = _Window(plan)
    for kind, samples in ((SPEND, spend), (REQUESTS, requests), (TOKENS, tokens)):
        for sample in samples:
            window.add(kind, sample.labels, sample.value)
    return window.rows(start, end)


def rows_from_answer(plan: Plan, start: datetime, end: datetime, payload: dict[str, Any], where: str) -> list[UsageRow]:
    """The rows of one ``day_query`` answer (pure): each sample summed in as it is read."""
    window = _Window(plan)
    for labels, value in vector(payload, where):
        kind = labels.get(SERIES, "")
        if kind not in (SPEND, REQUESTS, TOKENS):
            raise PrometheusError(f"Prometheus at {where} answered a sample the query cannot produce "
                                  f"(no {SERIES} label): a proxy or another API answered")
        window.add(kind, labels, value)
    return window.rows(start, end)


QUERIES_IN_FLIGHT = 2
"""Window queries sent ahead of the one being read: the server evaluates while the client sums."""


def each_window(
    client: PrometheusClient,
    plan: Plan,
    period: Period,
    progress: Callable[[str], None] = lambda _: None,
    in_flight: int = QUERIES_IN_FLIGHT,
) -> Iterator[list[UsageRow]]:
    """The rows of every window, one window at a time: one query each, a few in flight (I/O at the edge).

    Answers are read in window order, so rows and progress are the same
    whatever order the server answers in; at most ``in_flight`` answers are
    held at once. Each window's rows come sorted by ``ROW_LABELS``, so the
    windows in turn are the FOCUS export's order (``FocusLines``): a caller
    that sums them (``PeriodSums.add``) and writes their FOCUS lines as they
    come holds one window's rows, not the period's.
    """
    tz = ZoneInfo(plan.timezone)
    parts = windows(period, tz)
    lag = billing_lag_hours(plan)

    def fetch(window: tuple[datetime, datetime]) -> Answer:
        return client.query_answer(day_query(*window), read_time(window[1], lag))

    with ThreadPoolExecutor(max_workers=max(1, in_flight)) as pool:
        pending: deque[Future[Answer]] = deque()
        ahead = iter(parts)
        for window in itertools.islice(ahead, max(1, in_flight)):
            pending.append(pool.submit(fetch, window))
        try:
            for index, (start, end) in enumerate(parts, 1):
                # Parsed here, one at a time: the answers in flight wait as bytes, not as
                # parsed JSON five times their size (and parsing holds the GIL either way).
                payload = client.payload(pending.popleft().result())
                following = next(ahead, None)
                if following is not None:
                    pending.append(pool.submit(fetch, following))
                window_rows = rows_from_answer(plan, start, end, payload, client.base_url)
                del payload
                _refuse_negative(window_rows, client.base_url)
                if len(parts) > 1:
                    progress(f"read {start.astimezone(tz):%Y-%m-%d} ({index}/{len(parts)}): {len(window_rows)} row(s)")
                yield window_rows
        finally:
            for future in pending:  # a caller that stops early (or fails) leaves no query to wait for
                future.cancel()


def collect(
    client: PrometheusClient,
    plan: Plan,
    period: Period,
    progress: Callable[[str], None] = lambda _: None,
    in_flight: int = QUERIES_IN_FLIGHT,
) -> list[UsageRow]:
    """Every window's rows in one list (``each_window``), for callers that want them all at once."""
    return [row for rows in each_window(client, plan, period, progress, in_flight) for row in rows]


def _refuse_negative(rows: Iterable[UsageRow], source: str) -> None:
    """Spend and usage only grow: a negative value means broken series, never a refund to report."""
    for row in rows:
        if row.cost < 0 or row.requests < 0 or any(count < 0 for count in row.tokens.values()):
            who = "/".join(part or "-" for part in (row.team, row.user, row.model))
            raise PrometheusError(
                f"Prometheus at {source} reports negative spend or usage for {who} on {utc(row.start)} "
                f"(cost {money(row.cost)}); the spend series are broken, no report was written"
            )


# --------------------------------------------------------------------------
# Shaping: CSV, JSON, FOCUS
# --------------------------------------------------------------------------


def money(value: Decimal, quantum: Decimal = MONEY_QUANTUM) -> str:
    """Fixed decimals: the plan's money precision (``money_quantum``)."""
    return f"{value.quantize(quantum, ROUND_HALF_EVEN):f}"


def units(value: Decimal) -> str:
    return f"{value.quantize(UNIT_QUANTUM, ROUND_HALF_EVEN):f}"


def utc(moment: datetime) -> str:
    """FOCUS date format: ``YYYY-MM-DDTHH:mm:ssZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Line:
    """One aggregated line of a view."""

    key: tuple[str, ...]
    cost: Decimal
    requests: Decimal
    tokens: Mapping[str, Decimal]


def has_clusters(rows: Iterable[UsageRow]) -> bool:
    """Whether any row came from a series with a ``cluster`` label (a fleet's global view)."""
    return any(row.cluster for row in rows)


def view_labels(group: str, rows: Sequence[UsageRow]) -> tuple[str, ...]:
    """A view's columns: its group's labels, and ``cluster`` after them when the rows have clusters.

    Without a ``cluster`` label anywhere (one cluster, one Prometheus) the
    views are exactly the single-cluster ones.
    """
    return _view_labels(group, has_clusters(rows))


def _view_labels(group: str, clusters: bool) -> tuple[str, ...]:
    labels = GROUPS[group]
    if c.LABEL_CLUSTER in labels or not clusters:
        return labels
    return (*labels, c.LABEL_CLUSTER)


Key = tuple[str, ...]


class _Summing:
    """``(key, cost, requests, tokens)`` summed by key as parts arrive, in the order keys first appear."""

    def __init__(self) -> None:
        self.costs: dict[Key, Decimal] = {}
        self.requests: dict[Key, Decimal] = {}
        self.tokens: dict[Key, dict[str, Decimal]] = {}

    def add(self, parts: Iterable[tuple[Key, Decimal, Decimal, Mapping[str, Decimal]]]) -> int:
        """Sum ``parts`` in; how many there were."""
        costs, requests, tokens = self.costs, self.requests, self.tokens
        zero = Decimal(0)
        added = 0
        for key, cost, count, kinds in parts:
            costs[key] = costs.get(key, zero) + cost
            requests[key] = requests.get(key, zero) + count
            bucket = tokens.setdefault(key, {})
            for kind, number in kinds.items():
                bucket[kind] = bucket.get(kind, zero) + number
            added += 1
        return added

    def lines(self) -> list[Line]:
        return [Line(key, cost, self.requests[key], self.tokens[key]) for key, cost in self.costs.items()]


def _summed(parts: Iterable[tuple[Key, Decimal, Decimal, Mapping[str, Decimal]]]) -> list[Line]:
    """``(key, cost, requests, tokens)`` summed by key, in the order keys first appear."""
    summing = _Summing()
    summing.add(parts)
    return summing.lines()


def _tuple_of(get: Callable[[Any], Any], size: int) -> Callable[[Any], Key]:
    """An ``attrgetter``/``itemgetter`` that returns a tuple for one label too (they return the bare value)."""
    return get if size > 1 else lambda item: (get(item),)


def _ordered(lines: list[Line], labels: Sequence[str]) -> list[Line]:
    """A view's order: by cost (highest first), then key; one group's clusters together (see ``aggregate``)."""
    if len(labels) > 1 and labels[-1] == c.LABEL_CLUSTER:
        parents: dict[Key, Decimal] = {}
        for line in lines:
            parents[line.key[:-1]] = parents.get(line.key[:-1], Decimal(0)) + line.cost
        return sorted(lines, key=lambda line: (-parents[line.key[:-1]], line.key[:-1], -line.cost, line.key))
    return sorted(lines, key=lambda line: (-line.cost, line.key))


def aggregate(rows: Iterable[UsageRow], labels: Sequence[str]) -> list[Line]:
    """Sum rows by ``labels``; lines ordered by cost (highest first), then key.

    With ``cluster`` as the last of several labels, the lines of one group
    (e.g. one team's clusters) stay together: ordered by the group's total,
    then within it by cost.
    """
    get = _tuple_of(operator.attrgetter(*labels), len(labels))
    return _ordered(_summed((get(row), row.cost, row.requests, row.tokens) for row in rows), labels)


class PeriodSums:
    """The period's rows summed once by ``ROW_LABELS`` (identity and cluster, all days together).

    Every view (team, user, model, cost center, cluster, detail, and each
    one's split by cluster) is a sum of these lines, so the views are summed
    from them instead of each walking every daily row again: a month of
    5,000 users is 310,000 rows, this is 5,000 lines. The result is the same
    to the last digit as summing the rows: rows are rounded to the money
    quantum (counts to whole units), and Decimal adds such values exactly
    while a sum fits the context's 28 digits, whatever the order; a sum that
    does not fit could not be quantized to the quantum for output either.
    Lines are ordered as ``aggregate`` orders them.
    """

    def __init__(self, rows: Iterable[UsageRow] = ()) -> None:
        self._summing = _Summing()
        self._lines: list[Line] | None = None
        self.row_count = 0
        """Daily rows summed in."""
        self.add(rows)

    def add(self, rows: Iterable[UsageRow]) -> None:
        """Sum more rows in (e.g. one window's, as ``each_window`` yields them); no row is kept."""
        get = operator.attrgetter(*ROW_LABELS)
        self.row_count += self._summing.add((get(row), row.cost, row.requests, row.tokens) for row in rows)
        self._lines = None

    @property
    def lines(self) -> list[Line]:
        """One line per identity and cluster, in the order they first appeared."""
        if self._lines is None:
            self._lines = self._summing.lines()
        return self._lines

    @property
    def clusters(self) -> bool:
        """Whether any line has a cluster (a fleet's global view)."""
        return any(line.key[-1] for line in self.lines)

    @property
    def total(self) -> Decimal:
        return sum((line.cost for line in self.lines), Decimal(0))

    def labels(self, group: str) -> tuple[str, ...]:
        """``view_labels`` of the rows these lines sum."""
        return _view_labels(group, self.clusters)

    def view(self, labels: Sequence[str]) -> list[Line]:
        """``aggregate(rows, labels)``, from the summed lines; ``labels`` are some of ``ROW_LABELS``."""
        if tuple(labels) == ROW_LABELS:
            return _ordered(list(self.lines), labels)
        pick = _tuple_of(operator.itemgetter(*(ROW_LABELS.index(label) for label in labels)), len(labels))
        return _ordered(_summed((pick(line.key), line.cost, line.requests, line.tokens) for line in self.lines), labels)


def _sums(rows: Sequence[UsageRow] | PeriodSums) -> PeriodSums:
    return rows if isinstance(rows, PeriodSums) else PeriodSums(rows)


def _tokens_of(tokens: Mapping[str, Decimal], kind: str) -> Decimal:
    """Tokens of one type; ``total`` is all of them (sources that count only totals report them as ``total``)."""
    if kind == c.TOKEN_TYPE_TOTAL:
        return sum(tokens.values(), Decimal(0))
    return tokens.get(kind, Decimal(0))


def total(rows: Iterable[UsageRow]) -> Decimal:
    return sum((row.cost for row in rows), Decimal(0))


_NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: object) -> object:
    """A cell no spreadsheet evaluates (OWASP, CSV injection): a ``'`` before a formula start.

    Label values come from Prometheus, so ``=HYPERLINK(...)`` or ``@SUM(...)``
    as a user name would run in whoever opens the report. Numbers (money,
    counts, a negative ``-1.5``) are written as they are. A carriage return
    becomes a newline, which the csv module quotes (a bare one would split
    the row).
    """
    if not isinstance(value, str):
        return value
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class _NeutralisedWriter:
    """A csv writer (plain or dict) whose every cell goes through ``csv_cell``."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Any) -> None:
        if isinstance(row, dict):
            self._writer.writerow({key: _cell(value) for key, value in row.items()})
        else:
            self._writer.writerow([_cell(value) for value in row])


def _cell(value: object) -> object:
    """``csv_cell`` for the cells it would change only (most cells are numbers and plain names)."""
    if isinstance(value, str) and value and (value[0] in _FORMULA_START or "\r" in value):
        return csv_cell(value)
    return value


def chargeback_csv(
    plan: Plan, period: Period, rows: Sequence[UsageRow] | PeriodSums, group: str = "team"
) -> str:
    """One view as CSV; ``rows`` may be summed already (``PeriodSums``) when several views are written."""
    sums = _sums(rows)
    labels = sums.labels(group)
    quantum = money_quantum(plan)
    start, end = utc(period.start), utc(period.end)
    buffer = io.StringIO()
    writer = _NeutralisedWriter(csv.writer(buffer, lineterminator="\n"))
    writer.writerow(
        ["period_start", "period_end", *labels, "requests", *(f"{k}_tokens" for k in TOKEN_COLUMNS), "cost", "currency"]
    )
    for line in sums.view(labels):
        writer.writerow(
            [
                start,
                end,
                *line.key,
                units(line.requests),
                *(units(_tokens_of(line.tokens, kind)) for kind in TOKEN_COLUMNS),
                money(line.cost, quantum),
                plan.currency,
            ]
        )
    return buffer.getvalue()


def chargeback_document(plan: Plan, period: Period, rows: Sequence[UsageRow] | PeriodSums) -> dict:
    """Every view in one document; money as exact strings.

    When the rows have clusters, every line of the team, user, model and
    cost-center views carries ``clusters``: its split by cluster (the
    cluster lines add up to the line exactly); detail lines carry their
    ``cluster``; ``byCluster`` totals each cluster.
    """
    sums = _sums(rows)
    quantum = money_quantum(plan)
    clusters = sums.clusters

    def amounts(line: Line) -> dict:
        return {
            "requests": units(line.requests),
            "tokens": {kind: units(_tokens_of(line.tokens, kind)) for kind in TOKEN_COLUMNS},
            "cost": money(line.cost, quantum),
        }

    def view(group: str) -> list[dict]:
        labels = GROUPS[group] if group != "detail" else sums.labels(group)
        split: dict[tuple[str, ...], list[dict]] = {}
        if clusters and group not in ("detail", "cluster"):
            for line in sums.view((*labels, c.LABEL_CLUSTER)):
                split.setdefault(line.key[:-1], []).append({c.LABEL_CLUSTER: line.key[-1], **amounts(line)})
        out = []
        for line in sums.view(labels):
            entry = {**dict(zip(labels, line.key, strict=False)), **amounts(line)}
            if line.key in split:
                entry["clusters"] = split[line.key]
            out.append(entry)
        return out

    document = {
        "plan": plan.name,
        "environment": plan.environment,
        "cluster": plan.cluster,
        "currency": plan.currency,
        "periodStart": utc(period.start),
        "periodEnd": utc(period.end),
        "total": money(sums.total, quantum),
        "byTeam": view("team"),
        "byUser": view("user"),
        "byModel": view("model"),
        "byCostCenter": view("cost-center"),
        "detail": view("detail"),
    }
    if clusters:
        document["byCluster"] = view("cluster")
    return document


def chargeback_json(plan: Plan, period: Period, rows: Sequence[UsageRow] | PeriodSums) -> str:
    return json.dumps(chargeback_document(plan, period, rows), indent=2, sort_keys=True) + "\n"


FOCUS_COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "InvoiceIssuerName",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceSubcategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_Team",
    "x_User",
    "x_Tier",
    "x_Model",
    "x_CostCenter",
    "x_Environment",
    "x_Cluster",
    "x_Requests",
    "x_InputTokens",
    "x_OutputTokens",
)


_MILLION = Decimal(1_000_000)


def _requests_quantity(row: UsageRow, total_tokens: Decimal) -> str:
    return units(row.requests)


def _tokens_quantity(row: UsageRow, total_tokens: Decimal) -> str:
    return f"{(total_tokens / _MILLION).normalize():f}"


def _no_quantity(row: UsageRow, total_tokens: Decimal) -> str:
    return ""


_Quantity = Callable[[UsageRow, Decimal], str]


def _pricing_quantity(plan: Plan, model: Model | None) -> tuple[_Quantity, str]:
    """``PricingUnit`` of a model's pricing type, and how a row's ``PricingQuantity`` is counted in it."""
    if model is None:
        return _no_quantity, ""
    pricing = model.pricing
    if isinstance(pricing, (PerRequest, PerRequestWithIncludedTokens)) or (
        isinstance(pricing, TieredVolume) and pricing.unit == "requests"
    ):
        return _requests_quantity, "Requests"
    if isinstance(pricing, (PerMillionTokens, TieredVolume)):
        return _tokens_quantity, "1000000 Tokens"
    if isinstance(pricing, GpuHourly) and model.gpu_instance:
        rate = plan.gpu_instance(model.gpu_instance).hourly_rate_per_gpu
        if not rate:
            return _no_quantity, ""
        quantum = money_quantum(plan)

        def gpu_hours(row: UsageRow, total_tokens: Decimal) -> str:
            return f"{(row.cost / rate).quantize(quantum, ROUND_HALF_EVEN):f}"

        return gpu_hours, "GPU-Hours"
    return _no_quantity, ""


def _list_multiplier(plan: Plan, model: Model | None, tier: str) -> Decimal | None:
    """What the billed cost is divided by for the list cost (before the tier's multiplier); ``None``: they are equal.

    A tier's price override is a price of its own, not a discount on the list
    price: ``tier_pricing`` gives it a multiplier of 1.
    """
    if model is None:
        multiplier = next((t.price_multiplier for t in plan.tiers if t.name == tier), None)
    else:
        priced = tier_pricing(plan, model, tier)
        multiplier = priced[1] if priced is not None else None
    return None if multiplier is None or multiplier in (0, 1) else multiplier


_FOCUS_PER_ROW = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "PricingQuantity",
    "ConsumedQuantity",
    "ConsumedUnit",
    "x_Requests",
    "x_InputTokens",
    "x_OutputTokens",
)
"""The FOCUS columns that change from row to row; every other one depends only on the plan and the row's identity."""


def _csv_field(value: object) -> str:
    """One cell as ``csv.writer`` writes it in a row of several (quoted where it must be)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(("", value))
    return buffer.getvalue()[1:-1]


@dataclass(frozen=True, slots=True)
class _FocusIdentity:
    """The FOCUS line of one identity (team, user, tier, model, cost center, cluster), shaped once.

    ``segments`` is the line's text around the per-row cells: the identity
    cells already neutralised for spreadsheets and CSV-quoted, with their
    commas, so that a row is the segments joined with its numbers and times
    (which neither ``csv_cell`` nor CSV quoting ever changes: digits, a
    point, ``-``, ``T``, ``:``, ``Z`` and two unit words).
    """

    segments: tuple[str, ...]  # len(_FOCUS_PER_ROW) + 1; the last one ends the line
    quantity: _Quantity
    list_multiplier: Decimal | None


def _focus_identity(
    plan: Plan, row: UsageRow, models: Mapping[str, Model], fields: dict[str, str]
) -> _FocusIdentity:
    model = models.get(row.model)
    # The pricing is the first model's whose name or served model name this is; the names shown come from ``models``.
    priced = next((m for m in plan.models if row.model in (m.name, m.model_name)), None)
    quantity, unit = _pricing_quantity(plan, priced)
    provider = model.provider if model else ""
    fixed = {
        "BillingAccountId": plan.name,
        "BillingAccountName": plan.name,
        "BillingCurrency": plan.currency,
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": f"{row.model} used by {row.user or 'unattributed'} ({row.team or 'no team'})",
        "ChargeFrequency": "Usage-Based",
        "ListUnitPrice": "",
        "ContractedUnitPrice": "",
        "PricingCategory": "Standard",
        "PricingUnit": unit,
        "InvoiceIssuerName": plan.name,
        "ProviderName": provider,
        "PublisherName": provider,
        "ResourceId": row.model,
        "ResourceName": model.model_name if model else row.model,
        "ResourceType": "LLM",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI",
        "ServiceName": row.model,
        "SubAccountId": row.team,
        "SubAccountName": row.team,
        "SubAccountType": "Team",
        "Tags": json.dumps(
            {"cost_center": row.cost_center, "team": row.team, "tier": row.tier, "user": row.user,
             **({c.LABEL_CLUSTER: row.cluster} if row.cluster else {})},
            sort_keys=True,
        ),
        "x_Team": row.team,
        "x_User": row.user,
        "x_Tier": row.tier,
        "x_Model": row.model,
        "x_CostCenter": row.cost_center,
        "x_Environment": plan.environment,
        "x_Cluster": row.cluster or plan.cluster,
    }
    segments: list[str] = []
    text = ""
    for index, column in enumerate(FOCUS_COLUMNS):
        separator = "," if index else ""
        if column in _FOCUS_PER_ROW_SET:
            segments.append(text + separator)
            text = ""
            continue
        value = fixed.get(column, "")
        shown = fields.get(value)
        if shown is None:  # names repeat across identities: each text is neutralised and quoted once
            shown = fields[value] = _csv_field(_cell(value))
        text += separator + shown
    segments.append(text + "\n")
    return _FocusIdentity(tuple(segments), quantity, _list_multiplier(plan, priced, row.tier))


_FOCUS_PER_ROW_SET = frozenset(_FOCUS_PER_ROW)
if tuple(column for column in FOCUS_COLUMNS if column in _FOCUS_PER_ROW_SET) != _FOCUS_PER_ROW:
    raise ImportError("_FOCUS_PER_ROW must list the per-row columns in FOCUS_COLUMNS' order")  # FocusLines.lines joins them so


class FocusLines:
    """FOCUS 1.2-shaped CSV lines, one per day x team x user x tier x model, shaped a window at a time.

    What depends only on a row's identity (descriptions, tags, the pricing
    unit, the list-price multiplier) is shaped once per identity, and only
    the numbers and times once per row. Rows must come in the export's
    order, by start and then ``ROW_LABELS``: ``each_window`` yields them so,
    one window after another, and ``focus_csv`` sorts any other rows.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._tz = ZoneInfo(plan.timezone)
        self._models = {m.name: m for m in plan.models} | {m.model_name: m for m in plan.models}
        self._quantum = money_quantum(plan)
        self._identity = operator.attrgetter(*ROW_LABELS)
        self._shaped: dict[tuple[str, ...], _FocusIdentity] = {}
        self._fields: dict[str, str] = {}
        self._times: dict[datetime, str] = {}

    def header(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(column) for column in FOCUS_COLUMNS])
        return buffer.getvalue()

    def _stamp(self, moment: datetime) -> str:
        shown = self._times.get(moment)
        if shown is None:
            shown = self._times[moment] = utc(moment)
        return shown

    def lines(self, rows: Iterable[UsageRow]) -> str:
        """The lines of ``rows``, in the order given."""
        plan, models, quantum, shaped, identity = self.plan, self._models, self._quantum, self._shaped, self._identity
        zero = Decimal(0)
        out: list[str] = []
        billing: dict[datetime, tuple[str, str, str, str]] = {}
        for row in rows:
            key = identity(row)
            known = shaped.get(key)
            if known is None:
                known = shaped[key] = _focus_identity(plan, row, models, self._fields)
            times = billing.get(row.start)
            if times is None:
                first, last = billing_period(row.start, self._tz)
                times = billing[row.start] = (utc(first), utc(last), self._stamp(row.start), self._stamp(row.end))
            tokens = row.tokens
            total_tokens = sum(tokens.values(), zero)
            requests = units(row.requests)
            billed = money(row.cost, quantum)
            listed = billed if known.list_multiplier is None else money(row.cost / known.list_multiplier, quantum)
            s = known.segments
            out.append("".join((
                s[0], times[0], s[1], times[1], s[2], times[2], s[3], times[3],
                s[4], billed, s[5], billed, s[6], listed, s[7], billed,
                s[8], known.quantity(row, total_tokens),
                s[9], units(total_tokens) if total_tokens else requests,
                s[10], "Tokens" if total_tokens else "Requests",
                s[11], requests,
                s[12], units(tokens.get(c.TOKEN_TYPE_INPUT, zero)),
                s[13], units(tokens.get(c.TOKEN_TYPE_OUTPUT, zero)),
                s[14],
            )))
        return "".join(out)


def focus_csv(plan: Plan, rows: Sequence[UsageRow]) -> str:
    """The FOCUS export of ``rows`` in one text: by start, then identity (``FocusLines``)."""
    shaping = FocusLines(plan)
    identity = operator.attrgetter(*ROW_LABELS)
    ordered = [row for _, row in sorted(((identity(row), row) for row in rows), key=lambda pair: (pair[1].start, pair[0]))]
    return shaping.header() + shaping.lines(ordered)


def output_files(plan: Plan, period: Period, rows: Sequence[UsageRow]) -> dict[str, str]:
    """Every report file for ``--output-dir``, by file name."""
    return dict(each_output_file(plan, period, rows))


def each_output_file(
    plan: Plan, period: Period, rows: Sequence[UsageRow], sums: PeriodSums | None = None
) -> Iterator[tuple[str, str]]:
    """``output_files`` one at a time, so a writer holds one file's text at once, not all seven.

    The rows are summed once (``PeriodSums``, or ``sums`` when the caller has
    them) for every view; the FOCUS export is per row.
    """
    sums = sums if sums is not None else PeriodSums(rows)
    yield from view_files(plan, period, sums)
    yield focus_file_name(plan, period), focus_csv(plan, rows)


def view_files(plan: Plan, period: Period, sums: PeriodSums) -> Iterator[tuple[str, str]]:
    """Every report file but the FOCUS export, each summed from the period's lines."""
    base = f"chargeback-{plan.environment}-{period.label}"
    yield f"{base}.csv", chargeback_csv(plan, period, sums, "detail")
    for group in ("team", "user", "model", "cost-center", *(("cluster",) if sums.clusters else ())):
        yield f"{base}-by-{group}.csv", chargeback_csv(plan, period, sums, group)
    yield f"{base}.json", chargeback_json(plan, period, sums)


def focus_file_name(plan: Plan, period: Period) -> str:
    return f"focus-{plan.environment}-{period.label}.csv"


def gather(
    client: PrometheusClient,
    plan: Plan,
    period: Period,
    focus: IO[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    in_flight: int = QUERIES_IN_FLIGHT,
) -> PeriodSums:
    """The period summed window by window, and its FOCUS export written to ``focus`` as the windows arrive.

    No daily row outlives its window: memory follows the identities (the
    summed lines), not days x identities, and the FOCUS text goes to the
    stream (a file the caller puts in place once every query has answered)
    instead of into one string. ``focus_csv`` of ``collect`` is the same
    text.
    """
    sums = PeriodSums()
    shaping = FocusLines(plan) if focus is not None else None
    if focus is not None and shaping is not None:
        focus.write(shaping.header())
    for rows in each_window(client, plan, period, progress, in_flight):
        sums.add(rows)
        if focus is not None and shaping is not None:
            focus.write(shaping.lines(rows))
    return sums


def webhook_endpoint(url: str) -> Endpoint:
    """The webhook as an endpoint, checked before any query runs (an unusable URL is a usage error)."""
    try:
        return Endpoint.parse(url, "the webhook", WebhookError)
    except WebhookError as exc:
        raise UsageProblem(exc.message) from None


def post_webhook(url: str, body: str, timeout: float = 30.0) -> None:
    """POST the JSON report; the URL comes from the environment, never from git.

    Only a 2xx answer counts as delivered. A redirect is refused, not
    followed: a POST that is redirected arrives, if at all, as a GET
    without the report. The URL carries the webhook's token (in its path or
    query), so messages name only its scheme and host.
    """
    endpoint = webhook_endpoint(url)
    parts = urllib.parse.urlsplit(url)
    path = parts.path[len(endpoint.path):] if parts.path.startswith(endpoint.path) else ""
    query = f"?{parts.query}" if parts.query else ""
    answer = post(
        endpoint, f"{path}{query}", body.encode(), {"Content-Type": "application/json"}, timeout,
        max_bytes=1024 * 1024, follow_redirects=False, what="the webhook", error=WebhookError,
    )
    if not 200 <= answer.status < 300:
        raise WebhookError(f"the webhook at {endpoint.display} answered HTTP {answer.status}; the report was not delivered")


# --------------------------------------------------------------------------
# Choosing the period
# --------------------------------------------------------------------------


def choose_period(plan: Plan, month: str | None, start: str | None, end: str | None, now: datetime) -> Period:
    tz = ZoneInfo(plan.timezone)
    if (start is None) != (end is None):
        raise PeriodError("--start and --end go together")
    if start is not None and month is not None:
        raise PeriodError("--month excludes --start/--end")
    if start is not None and end is not None:
        return range_period(start, end, tz)
    period = named_month(month or "last", now, tz)
    if period.start >= now:
        raise PeriodError(f"the period {period.label} has not started yet")
    if period.end > now:
        return Period(period.start, now.astimezone(UTC).replace(microsecond=0), period.label)
    return period
