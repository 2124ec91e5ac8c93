"""Period-to-date volumes and money for the non-linear prices.

*Included tokens* (``perRequestWithIncludedTokens``): the allowance is pooled
per user, per model, per calendar month in the plan's timezone:
``overage = max(0, tokens_mtd - requests_mtd × included_per_request)``,
charged at the overage price. All token types count towards the allowance.

*Tiered volume* (``tieredVolume``): volume is counted per team and model
over the pricing's ``period``; money = Σ_bands step_i × max(volume − start_i, 0)
where step_i is the band's price minus the previous band's (the marginal
price telescoped), so crossing a band boundary mid-hour is exact.

Both are period-to-date quantities through the last closed clock hour
(see ``periods``). The money of that hour is ``f(V) − f(V − v)``: the
money of the period's volume with and without the hour's volume ``v``,
both computed here from the same evaluation's series. It needs no earlier
value of any recorded series, so it is exact in the hour that closes a
period (where ``V − v`` is the period's volume before its last hour) and in
the hour that opens one (``V − v = 0``), whatever the groups' timing.
"""

from __future__ import annotations

from typing import Any

from costplan.core import conventions as c
from costplan.generators.prometheus.periods import period_to_date
from costplan.generators.prometheus.promql import record, selector
from costplan.plan.model import PerRequestWithIncludedTokens, Plan, TieredVolume
from costplan.plan.pricing import priced_tiers

INCLUDED_PERIOD = "month"
USER_KEY = "user, team, tier, model"
TEAM_KEY = "team, tier, model"


def _pricings(plan: Plan):
    for model in plan.models:
        for _, pricing, _ in priced_tiers(plan, model):
            yield pricing


def _previous(ptd: str, hour: str, on: str) -> str:
    """The period-to-date value without the last closed hour (the whole value when that hour had none)."""
    return f"({ptd} - on({on}) group_left() {hour} or {ptd})"


def included_rules(plan: Plan) -> list[dict[str, Any]]:
    if not any(isinstance(p, PerRequestWithIncludedTokens) for p in _pricings(plan)):
        return []
    period = {c.LABEL_PERIOD: INCLUDED_PERIOD}
    has_allowance = f"on(model, tier) {c.METRIC_INCLUDED_TOKENS_PER_REQUEST}"

    def allowed(series: str) -> str:
        return f"sum by ({USER_KEY}) ({series} and {has_allowance})"

    def summed(series: str) -> str:
        return f"sum by ({USER_KEY}) ({series})"

    # Summed first and selected after: the allowance as of now, not as of each earlier hour.
    requests = f"{period_to_date(summed, c.METRIC_USAGE_REQUESTS_HOURLY, INCLUDED_PERIOD)} and {has_allowance}"
    tokens = f"{period_to_date(summed, c.METRIC_USAGE_TOKENS_HOURLY, INCLUDED_PERIOD)} and {has_allowance}"

    def overage(tokens_ptd: str, requests_ptd: str) -> str:
        allowance = f"({requests_ptd} * on(model, tier) group_left() {c.METRIC_INCLUDED_TOKENS_PER_REQUEST})"
        return f"clamp_min({tokens_ptd} - on({USER_KEY}, period) {allowance}, 0)"

    price = f"on(model, tier) group_left() {c.METRIC_PRICE_PER_OVERAGE_TOKEN}"
    previous = overage(
        _previous(c.METRIC_USAGE_TOKENS_PTD, allowed(c.METRIC_USAGE_TOKENS_HOURLY), USER_KEY),
        _previous(c.METRIC_USAGE_REQUESTS_PTD, allowed(c.METRIC_USAGE_REQUESTS_HOURLY), USER_KEY),
    )
    charge = {c.LABEL_CHARGE: c.CHARGE_OVERAGE}
    return [
        record(c.METRIC_USAGE_REQUESTS_PTD, requests, period),
        record(c.METRIC_USAGE_TOKENS_PTD, tokens, period),
        record(c.METRIC_OVERAGE_TOKENS_PTD, overage(c.METRIC_USAGE_TOKENS_PTD, c.METRIC_USAGE_REQUESTS_PTD)),
        record(c.METRIC_CHARGE_PTD, f"{c.METRIC_OVERAGE_TOKENS_PTD} * {price}", charge),
        record(c.METRIC_CHARGE_PTD_PREVIOUS, f"{previous} * {price}", charge),
    ]


def volume_groups(plan: Plan) -> dict[tuple[str, str], int]:
    """(unit, period) → most bands any tiered pricing with that unit and period has."""
    groups: dict[tuple[str, str], int] = {}
    for pricing in _pricings(plan):
        if isinstance(pricing, TieredVolume):
            key = (pricing.unit, pricing.period)
            groups[key] = max(groups.get(key, 0), len(pricing.tiers))
    return dict(sorted(groups.items()))


def band(metric: str, unit: str, period: str, index: int) -> str:
    return selector(metric, {c.LABEL_BAND: str(index), c.LABEL_UNIT: unit, c.LABEL_PERIOD: period})


def tiered_rules(plan: Plan) -> list[dict[str, Any]]:
    rules = []
    for (unit, period), bands in volume_groups(plan).items():
        usage = c.METRIC_USAGE_TOKENS_HOURLY if unit == "tokens" else c.METRIC_USAGE_REQUESTS_HOURLY
        priced = f"on(model, tier) {band(c.METRIC_VOLUME_BAND_START, unit, period, 0)}"
        labels = {c.LABEL_UNIT: unit, c.LABEL_PERIOD: period}
        volume_sel = selector(c.METRIC_VOLUME_PTD, labels)
        hour_sel = selector(c.METRIC_VOLUME_HOURLY, labels)

        def priced_sum(series: str, priced: str = priced) -> str:
            return f"sum by ({TEAM_KEY}) ({series} and {priced})"

        rules.append(record(c.METRIC_VOLUME_HOURLY, priced_sum(usage), labels))

        def summed(series: str) -> str:
            return f"sum by ({TEAM_KEY}) ({series})"

        # Summed first and selected after: the bands as of now, not as of each earlier hour.
        volume_ptd = f"({period_to_date(summed, usage, period)}) and {priced}"
        rules.append(record(c.METRIC_VOLUME_PTD, volume_ptd, labels))

        def money(volume: str, unit: str = unit, period: str = period, bands: int = bands) -> str:
            terms = []
            for i in range(bands):
                start = f"on(model, tier) group_left(band) {band(c.METRIC_VOLUME_BAND_START, unit, period, i)}"
                step = f"on(model, tier, band) group_left() {band(c.METRIC_VOLUME_BAND_PRICE_STEP, unit, period, i)}"
                terms.append(f"clamp_min({volume} - {start}, 0) * {step}")
            return f"sum by ({TEAM_KEY}, period) ({' or '.join(terms)})"

        marginal_terms = []
        for i in range(bands):
            start = f"on(model, tier) group_left(band) {band(c.METRIC_VOLUME_BAND_START, unit, period, i)}"
            step = f"on(model, tier, band) group_left() {band(c.METRIC_VOLUME_BAND_PRICE_STEP, unit, period, i)}"
            marginal_terms.append(f"({volume_sel} >= bool {start}) * {step}")
        charge = {c.LABEL_CHARGE: c.CHARGE_VOLUME}
        before = f"({volume_sel} - on({TEAM_KEY}, unit, period) {hour_sel} or {volume_sel})"
        rules.append(record(c.METRIC_CHARGE_PTD, money(volume_sel), charge))
        rules.append(record(c.METRIC_CHARGE_PTD_PREVIOUS, money(before), charge))
        rules.append(record(
            c.METRIC_VOLUME_MARGINAL_PRICE,
            f"sum by ({TEAM_KEY}, unit, period) ({' or '.join(marginal_terms)})",
        ))
    return rules


def rules(plan: Plan) -> list[dict[str, Any]]:
    return included_rules(plan) + tiered_rules(plan)
