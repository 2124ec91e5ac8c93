"""Period-to-date sums over hourly steps (tooling notes, calendar periods).

A calendar period-to-date value sums a recorded ``increase1h`` series over
an hourly subquery that spans the longest possible period, keeping only the
steps after the period start: inside the subquery ``vector(time())`` is the
step time, and ``costplan:period_start_seconds @ end()`` the start that holds
at the rule's evaluation. ``>`` keeps the step that closes at the boundary
(it covers the previous hour) in the old period. The value therefore covers
whole hours and lags by at most one hour; nothing leaks across a boundary.
Rolling windows sum the last ``window`` worth of hourly steps.
"""

from __future__ import annotations

from costplan.core import conventions as c
from costplan.generators.prometheus.calendar import MAX_PERIOD_SECONDS
from costplan.generators.prometheus.promql import duration, parse_duration, selector

STEP = "1h"


def period_to_date(inner: str, period: str) -> str:
    if period in MAX_PERIOD_SECONDS:
        start = selector(c.METRIC_PERIOD_START, {c.LABEL_PERIOD: period})
        span = duration(MAX_PERIOD_SECONDS[period])
        return f"sum_over_time(({inner} and on() (vector(time()) > on() {start} @ end()))[{span}:{STEP}])"
    window = period.removeprefix("rolling_")
    # A subquery includes both ends when aligned: one second less keeps N steps.
    return f"sum_over_time(({inner})[{duration(parse_duration(window) - 1)}:{STEP}])"
