"""A model's price under a tier: the one home of every price concept.

The generated rules, the pull-request impact and the cost estimate must
charge the same amount for the same usage, so all of them read prices from
here. A model's price for a tier is the tier's override if it has one (used
as written), else the model's pricing × the tier's ``price_multiplier``.
Tier ``""`` (usage without a tier label) gets the model's pricing unchanged.

Money is ``Decimal``: per-million prices become per-unit prices by an exact
division by 10^6, and a multiplier of 1 leaves a value untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, localcontext
from typing import NamedTuple

from costplan.core import conventions as c
from costplan.core.money import per_unit
from costplan.plan.model import (
    Budget,
    Model,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    Pricing,
    Team,
    TieredVolume,
)

ONE = Decimal(1)
LIST_TIER = ""  # price series without a tier label: the model's own pricing
# Products of large volumes and ten-decimal prices stay exact at this precision.
PRECISION = 100

CHARGE_REQUEST = "request"
CHARGE_INCLUDED_TOKENS = "included tokens"
CHARGE_OVERAGE = "overage"


class PriceTerm(NamedTuple):
    """One number of a price, in the unit the rules charge (per request, per token)."""

    charge: str  # "request", a token type, "included tokens", "overage", "band N from", "band N"
    per: str  # the unit the value applies to, for people: "request", "token", "token (month)"
    is_money: bool  # quantities (band starts, included tokens) are never multiplied
    value: Decimal


def priced_tiers(plan: Plan, model: Model) -> Iterator[tuple[str, Pricing, Decimal]]:
    """``(tier name, pricing, multiplier)`` for tier ``""`` and every tier of the plan."""
    yield LIST_TIER, model.pricing, ONE
    for tier in plan.tiers:
        override = next((o.pricing for o in tier.price_overrides if o.model == model.name), None)
        if override is not None:
            yield tier.name, override, ONE
        else:
            yield tier.name, model.pricing, tier.price_multiplier


def tier_pricing(plan: Plan, model: Model, tier: str) -> tuple[Pricing, Decimal] | None:
    """The pricing and multiplier of ``model`` for ``tier`` (``""``: list price), if the tier exists."""
    return next(((p, m) for name, p, m in priced_tiers(plan, model) if name == tier), None)


def token_prices_per_million(pricing: PerMillionTokens) -> dict[str, Decimal]:
    """Per-million price of each token type: unpriced cached (read or written) tokens cost input, unpriced reasoning output."""
    written = pricing.cache_creation_input
    return {
        c.TOKEN_TYPE_INPUT: pricing.input,
        c.TOKEN_TYPE_CACHED: pricing.input if pricing.cached_input is None else pricing.cached_input,
        c.TOKEN_TYPE_CACHE_CREATION: pricing.input if written is None else written,
        c.TOKEN_TYPE_OUTPUT: pricing.output,
        c.TOKEN_TYPE_REASONING: pricing.output if pricing.reasoning is None else pricing.reasoning,
    }


def band_unit_price(pricing: TieredVolume, price: Decimal) -> Decimal:
    """A volume band's price per unit: per token for token volumes (bands are per million), else per request."""
    return per_unit(price) if pricing.unit == "tokens" else price


def effective_prices(pricing: Pricing, multiplier: Decimal) -> list[PriceTerm]:
    """Every number of ``pricing`` under a tier multiplier, exactly as the rules charge it.

    The multiplier applies to every money value, never to quantities. A GPU
    model's price is its instance's hourly rate, priced on its own.
    """
    with localcontext() as ctx:
        ctx.prec = PRECISION
        if isinstance(pricing, PerRequest):
            return [PriceTerm(CHARGE_REQUEST, "request", True, pricing.price * multiplier)]
        if isinstance(pricing, PerMillionTokens):
            per_type = token_prices_per_million(pricing)
            return [PriceTerm(t, "token", True, per_unit(per_type[t]) * multiplier) for t in c.TOKEN_TYPES]
        if isinstance(pricing, PerRequestWithIncludedTokens):
            return [
                PriceTerm(CHARGE_REQUEST, "request", True, pricing.price_per_request * multiplier),
                PriceTerm(CHARGE_INCLUDED_TOKENS, "request", False, Decimal(pricing.included_tokens_per_request)),
                PriceTerm(CHARGE_OVERAGE, "token", True, per_unit(pricing.overage_per_million_tokens) * multiplier),
            ]
        if isinstance(pricing, TieredVolume):
            unit = "token" if pricing.unit == "tokens" else "request"
            out = []
            for index, band in enumerate(pricing.tiers):
                out.append(PriceTerm(f"band {index} from", unit, False, Decimal(band.start)))
                out.append(
                    PriceTerm(f"band {index}", f"{unit} ({pricing.period})", True,
                              band_unit_price(pricing, band.price) * multiplier)
                )
            return out
    return []


def volume_band_steps(pricing: TieredVolume, multiplier: Decimal) -> list[tuple[int, Decimal, Decimal]]:
    """``(start, unit price, step)`` per band; cost = Σ step × max(volume − start, 0).

    The step is a band's price minus the previous band's: the telescoped
    marginal form that the rules evaluate as one sum.
    """
    out = []
    previous = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for band in pricing.tiers:
            price = band_unit_price(pricing, band.price) * multiplier
            out.append((band.start, price, price - previous))
            previous = price
    return out


def tiered_volume_cost(pricing: TieredVolume, multiplier: Decimal, volume: Decimal) -> Decimal:
    """The cost of one period's ``volume`` under tiered-volume pricing."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return sum(
            (step * max(volume - start, Decimal(0)) for start, _, step in volume_band_steps(pricing, multiplier)),
            Decimal(0),
        )


def budget_period(budget: Budget) -> str:
    """The period label of a budget's series: a calendar period or ``rolling_<window>``."""
    if budget.period == "rolling":
        return c.rolling_period(budget.window or "")
    return budget.period


def owner_team(plan: Plan, model: Model) -> Team | None:
    """The team whose namespaces include the model's namespace, if any."""
    if model.namespace is None:
        return None
    return next((t for t in plan.teams if model.namespace in t.namespaces), None)
