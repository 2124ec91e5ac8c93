"""Clock hours and period-to-date sums of hourly series.

Every ``*:increase1h`` series holds, at any evaluation, the amount of the
clock hour that closed last: at 10:17 the hour 09:00–10:00. The value is the
same at every evaluation of the hour after it (later ones also see scrapes
that arrived late), so it does not matter when, in which order or how often
the groups run. A reader that wants the hour ending at ``E`` reads the last
value recorded before ``E + 1h`` (``closed_hour``): at an hourly subquery
step ``S`` that is the hour ending ``S - 1h``.

An hour belongs to the period that contains its last second. The hourly
group's billing calendar (``calendar.billing_rules``) is the calendar of the
last second of the hour that closed last, so in the first hour of a period
the period-to-date values still describe the period that just ended,
complete with its last hour; from the second hour on, the new period.

``period_to_date`` sums the current value (the last closed hour) and the
closed hours before it (hourly subquery steps read with ``closed_hour``)
that belong to the same period. Rolling windows sum that many hours.
"""

from __future__ import annotations

from collections.abc import Callable

from costplan.core import conventions as c
from costplan.generators.prometheus.calendar import MAX_PERIOD_SECONDS
from costplan.generators.prometheus.promql import duration, parse_duration, selector

STEP = "1h"
HOUR = 3600
PART = "costplan_part"  # a label that keeps the two parts of a sum apart until they are added
PERIOD_START = "costplan_period_start"  # an hour's billing period, as a label while it is summed


def closed_hour(series: str) -> str:
    """The hour ending one hour before the evaluation (or subquery step) ``S``: the last value before ``S``.

    ``offset 1s`` leaves out a value recorded exactly at ``S`` (which
    already describes the hour ending at ``S``); ``[1h]`` finds the last
    value of the hour before even if some evaluations were missed.
    """
    return f"last_over_time({series}[1h] offset 1s)"


def clock_hour(inner: str, lag: int = 0) -> str:
    """``inner`` (an expression over a ``[59m59s:<step>]`` range) at the last full hour before the evaluation.

    With ``lag`` (hours), at the full hour that many hours earlier: the
    global part of a fleet bills one hour behind its clusters.
    """
    shifted = f" offset {lag}h" if lag else ""
    return f"last_over_time(({inner})[59m59s:{STEP}]{shifted})"


def period_to_date(build: Callable[[str], str], series: str, period: str) -> str:
    """``build(series)`` summed over the hours of ``period`` up to the last closed hour.

    ``build`` turns a series expression into the expression to sum (an
    aggregation); it is applied to the current value (the last closed hour)
    and, inside the hourly subquery, to each earlier hour.

    Which earlier hours belong to the current period is decided without an
    ``@`` modifier: VictoriaMetrics evaluates ``@ end()`` inside a subquery
    at the subquery's own (rounded-up) end, not at the evaluation time, so a
    filter written that way selects nothing there. Instead each earlier hour
    carries, as a label (``count_values``), the start of the period it was
    billed to (the billing calendar recorded beside it in the hourly group),
    and only the sums whose label is the current billing period's start are
    kept. Both engines evaluate that the same way, and a fleet's global part
    (whose billing calendar runs behind, ``calendar.billing_rules``) needs no
    other shift.
    """
    current = build(series)
    earlier = build(closed_hour(series))
    if period in MAX_PERIOD_SECONDS:
        start = selector(c.METRIC_BILLING_PERIOD_START, {c.LABEL_PERIOD: period})
        span = duration(MAX_PERIOD_SECONDS[period])
        tag = f'on() group_left({PERIOD_START}) (0 * count_values("{PERIOD_START}", {closed_hour(start)}))'
        now = f'count_values("{PERIOD_START}", {start})'
        steps = (f"sum without ({PERIOD_START}) (sum_over_time(({earlier} + {tag})[{span}:{STEP}])"
                 f" and on({PERIOD_START}) {now})")
    else:
        hours = parse_duration(period.removeprefix("rolling_")) // HOUR
        if hours <= 1:
            return current
        # Aligned steps in [T - range, T]: one second less than hours - 1 keeps hours - 1 steps.
        steps = f"sum_over_time(({earlier})[{duration((hours - 1) * HOUR - 1)}:{STEP}])"
    return (
        f'sum without ({PART}) (label_replace({steps}, "{PART}", "earlier", "", "")'
        f' or label_replace({current}, "{PART}", "last", "", ""))'
    )
