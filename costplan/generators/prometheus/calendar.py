"""Calendar periods in PromQL: the start and end of the current day, week
and month in the plan's timezone, as timestamp series.

PromQL ranges are fixed durations, but budgets reset at local midnight. The
rules here compute, at every evaluation, the UTC timestamp of the current
period's start from ``time()``. The timezone's UTC offset is itself computed
in PromQL when the zone follows a daylight-saving rule costplan knows (the EU
rule, or the US rule); the rule is checked against the system's tz database
for the years ahead before it is used. Other zones use their standard offset
all year (documented limitation: periods then start an hour off in summer).

Weeks start on Monday (ISO 8601). Transitions happen at 01:00 local or
later, so a local midnight is never ambiguous: the offset at a period's
start is the offset in force during the first hour of that local day.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from costplan.core import conventions as c
from costplan.generators.prometheus.promql import number, record

DAY = 86400


@dataclass(frozen=True)
class Transition:
    """A DST switch: in ``month``, on the first Sunday on or after day ``first``, at ``utc_hour``."""

    month: int
    first: int
    utc_hour: int


@dataclass(frozen=True)
class ZoneRule:
    """Standard offset plus, optionally, a yearly DST rule (``delta`` seconds)."""

    standard: int
    delta: int = 0
    start: Transition | None = None
    end: Transition | None = None

    @property
    def has_dst(self) -> bool:
        return self.start is not None


def _candidates(standard: int, delta: int) -> list[ZoneRule]:
    hours = standard // 3600
    rules = [
        # EU: last Sunday of March and of October, 01:00 UTC.
        ZoneRule(standard, delta, Transition(3, 25, 1), Transition(10, 25, 1)),
    ]
    if standard % 3600 == 0 and 0 <= 2 - hours < 24 and 0 <= 2 - hours - delta // 3600 < 24:
        # US: second Sunday of March 02:00 standard, first Sunday of November 02:00 daylight.
        rules.append(
            ZoneRule(standard, delta, Transition(3, 8, 2 - hours), Transition(11, 1, 2 - hours - delta // 3600))
        )
    return rules


def _rule_offset(rule: ZoneRule, when: dt.datetime) -> int:
    """Offset by ``rule`` at a UTC instant: the reference the PromQL mirrors."""
    if not rule.has_dst:
        return rule.standard
    return rule.standard + rule.delta * _in_dst(rule, when.month, when.day, (when.weekday() + 1) % 7, when.hour)


def _after(t: Transition, day: int, dow: int, hour: int) -> bool:
    if day - dow < t.first:
        return False
    return not (dow == 0 and day <= t.first + 6 and hour < t.utc_hour)


def _in_dst(rule: ZoneRule, month: int, day: int, dow: int, hour: int) -> int:
    start, end = rule.start, rule.end
    assert start is not None and end is not None
    if month == start.month:
        return int(_after(start, day, dow, hour))
    if month == end.month:
        return int(not _after(end, day, dow, hour))
    if start.month < end.month:
        return int(start.month < month < end.month)
    return int(month > start.month or month < end.month)


@functools.cache
def zone_rule(timezone: str, years: range = range(2025, 2041)) -> ZoneRule:
    """The rule PromQL will follow for ``timezone`` (see module docstring)."""
    zone = ZoneInfo(timezone)
    offsets = set()
    for year in years:
        for month in range(1, 13):
            offset = dt.datetime(year, month, 15, tzinfo=zone).utcoffset()
            offsets.add(int(offset.total_seconds()) if offset else 0)
    standard = min(offsets)
    if len(offsets) == 1:
        return ZoneRule(standard)
    delta = max(offsets) - standard
    for rule in _candidates(standard, delta):
        if all(_matches(rule, zone, year) for year in years):
            return rule
    return ZoneRule(standard)


def _matches(rule: ZoneRule, zone: ZoneInfo, year: int) -> bool:
    """Hourly through the transition months, daily elsewhere."""
    assert rule.start is not None and rule.end is not None
    switch_months = {rule.start.month, rule.end.month}
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    when = start
    while when.year == year:
        actual = when.astimezone(zone).utcoffset()
        if int(actual.total_seconds() if actual else 0) != _rule_offset(rule, when):
            return False
        when += dt.timedelta(hours=1 if when.month in switch_months else 24)
    return True


# --------------------------------------------------------------------------
# PromQL
# --------------------------------------------------------------------------


def _after_expr(t: Transition, v: str, at_midnight: bool) -> str:
    reached = f"((day_of_month({v}) - day_of_week({v})) >= bool {t.first})"
    on_day = f"(day_of_week({v}) == bool 0) * (day_of_month({v}) <= bool {t.first + 6})"
    early = "1" if at_midnight else f"(hour({v}) < bool {t.utc_hour})"
    return f"({reached} * (1 - {on_day} * {early}))"


def dst_expr(rule: ZoneRule, v: str, at_midnight: bool = False) -> str:
    """1 where ``v`` (timestamps) falls in daylight time, else 0.

    ``at_midnight``: ``v`` holds local midnights (fields read as local time),
    which always precede the day's transition.
    """
    start, end = rule.start, rule.end
    assert start is not None and end is not None
    month = f"month({v})"
    if start.month < end.month:
        middle = f"({month} > bool {start.month}) * ({month} < bool {end.month})"
    else:
        middle = f"(({month} > bool {start.month}) + ({month} < bool {end.month}))"
    return (
        f"({middle}"
        f" + ({month} == bool {start.month}) * {_after_expr(start, v, at_midnight)}"
        f" + ({month} == bool {end.month}) * (1 - {_after_expr(end, v, at_midnight)}))"
    )


def offset_expr(rule: ZoneRule, v: str, at_midnight: bool = False) -> str:
    if not rule.has_dst:
        return number(rule.standard)
    return f"({number(rule.standard)} + {number(rule.delta)} * {dst_expr(rule, v, at_midnight)})"


@dataclass(frozen=True)
class CalendarNames:
    """Metric names of one calendar: the one of the evaluation time, or of the last closed hour."""

    offset: str
    start_local: str
    end_local: str
    start: str
    end: str


NOW = CalendarNames(c.METRIC_TIMEZONE_OFFSET, c.METRIC_PERIOD_START_LOCAL, c.METRIC_PERIOD_END_LOCAL,
                    c.METRIC_PERIOD_START, c.METRIC_PERIOD_END)
BILLING = CalendarNames(c.METRIC_BILLING_TIMEZONE_OFFSET, c.METRIC_BILLING_PERIOD_START_LOCAL,
                        c.METRIC_BILLING_PERIOD_END_LOCAL, c.METRIC_BILLING_PERIOD_START, c.METRIC_BILLING_PERIOD_END)
# The last second of the clock hour that closed last: the period containing it
# is the one the hourly series' current value is billed to.
BILLING_TIME = "(time() - time() % 3600 - 1)"


def rules(timezone: str, names: CalendarNames = NOW, moment: str = "time()") -> list[dict[str, Any]]:
    """Offset, then local period starts/ends, then their UTC timestamps, at ``moment`` (a scalar)."""
    rule = zone_rule(timezone)
    now = f"vector({moment})"
    start_local = names.start_local
    end_local = names.end_local
    offset = names.offset
    day = f'{start_local}{{period="day"}}'
    week = f'{start_local}{{period="week"}}'
    month = f'{start_local}{{period="month"}}'
    local_now = f"({moment} + {offset})"
    out = [
        record(offset, f"vector({number(rule.standard)})" if not rule.has_dst else offset_expr(rule, now)),
        # A floored remainder: PromQL's % keeps the dividend's sign, and an hour
        # ending at the epoch is billed from the second before it.
        record(start_local, f"{local_now} - ({local_now} % {DAY} + {DAY}) % {DAY}", {"period": "day"}),
        record(start_local, f"{day} - ((day_of_week({day}) + 6) % 7) * {DAY}", {"period": "week"}),
        record(start_local, f"{day} - (day_of_month({day}) - 1) * {DAY}", {"period": "month"}),
        record(end_local, f"{day} + {DAY}", {"period": "day"}),
        record(end_local, f"{week} + {7 * DAY}", {"period": "week"}),
        record(end_local, f"{month} + days_in_month({month}) * {DAY}", {"period": "month"}),
        record(names.start, f"{start_local} - {offset_expr(rule, start_local, True)}"),
        record(names.end, f"{end_local} - {offset_expr(rule, end_local, True)}"),
    ]
    return out


def billing_rules(timezone: str, lag: int = 0) -> list[dict[str, Any]]:
    """The calendar of the last closed hour (see ``BILLING_TIME``), for the hourly group.

    ``lag`` hours earlier for a fleet's global part, whose hourly money is
    that many hours behind the last closed hour.
    """
    moment = BILLING_TIME if not lag else f"(time() - time() % 3600 - {3600 * lag + 1})"
    return rules(timezone, BILLING, moment)


# Longest length of each calendar period plus one step, for subquery ranges.
MAX_PERIOD_SECONDS = {"day": 25 * 3600, "week": 7 * DAY + 3600, "month": 31 * DAY + 3600}
