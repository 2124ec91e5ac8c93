"""The monthly cost of last month's usage under the base and the head plan.

``estimate`` prices a usage file (per model, team and tier) under both
plans with the same price functions the rules use (``costplan.plan.pricing``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from costplan.core import conventions as c
from costplan.core.errors import UsageProblem
from costplan.impact.compare import money_delta
from costplan.plan.model import (
    GpuHourly,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    TieredVolume,
)
from costplan.plan.pricing import (
    CHARGE_INCLUDED_TOKENS,
    CHARGE_OVERAGE,
    CHARGE_REQUEST,
    LIST_TIER,
    PRECISION,
    effective_prices,
    tier_pricing,
    tiered_volume_cost,
)

# --------------------------------------------------------------------------
# Cost estimate from last month's usage (pure)
# --------------------------------------------------------------------------

USAGE_QUANTITIES = ("requests", *c.TOKEN_TYPES, "gpu_hours")


@dataclass(frozen=True)
class UsageRecord:
    """A month of usage of one model, by one team (optional) in one tier (optional).

    Without ``tier``, each plan prices the record at the team's tier in that
    plan, so moving a team to another tier shows in the estimate.
    """

    model: str
    team: str | None = None
    tier: str | None = None
    quantities: Mapping[str, Decimal] = field(default_factory=dict)

    def get(self, name: str) -> Decimal:
        return self.quantities.get(name, Decimal(0))

    def tokens(self) -> Decimal:
        return sum((self.get(t) for t in c.TOKEN_TYPES), Decimal(0))


class UsageError(UsageProblem, ValueError):
    """The usage file does not have the documented shape."""


def parse_usage(text: str) -> tuple[UsageRecord, ...]:
    """Records from JSON: a list (or ``{"usage": [...]}``) of objects with ``model``,
    optional ``team`` and ``tier``, and non-negative numbers for any of
    ``requests``, ``input``, ``cached_input``, ``output``, ``reasoning``,
    ``gpu_hours``. Numbers are read from their text, never through floats."""
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not JSON: {exc}") from exc
    if isinstance(data, dict) and "usage" in data:
        data = data["usage"]
    if not isinstance(data, list):
        raise UsageError('expected a list of usage records (or {"usage": [...]})')
    records = []
    allowed = {"model", "team", "tier", *USAGE_QUANTITIES}
    for index, item in enumerate(data):
        where = f"usage record {index}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object")
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        if not isinstance(item.get("model"), str):
            raise UsageError(f"{where}: 'model' must be a model name")
        for key in ("team", "tier"):
            if key in item and not isinstance(item[key], str):
                raise UsageError(f"{where}: {key!r} must be a name")
        quantities = {}
        for key in USAGE_QUANTITIES:
            if key not in item:
                continue
            value = item[key]
            if isinstance(value, str):
                try:
                    value = Decimal(value)
                except ArithmeticError:
                    value = None
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise UsageError(f"{where}: {key!r} must be a non-negative number")
            quantities[key] = value
        records.append(UsageRecord(item["model"], item.get("team"), item.get("tier"), quantities))
    return tuple(records)


def usage_cost(plan: Plan | None, record: UsageRecord) -> tuple[Decimal, str | None]:
    """``(cost, note)`` of one record under one plan, as its generated rules would charge it.

    The included-token allowance is pooled over the record and tiered
    volume bands are applied to the record's volume as one period: exact
    when a record holds one team's month, as the rules see it.
    """
    if plan is None:
        return Decimal(0), "environment absent"
    model = next((m for m in plan.models if m.name == record.model), None)
    if model is None:
        return Decimal(0), f"model {record.model} not in the plan"
    tier = record.tier
    if tier is None:
        if record.team is None:
            tier = LIST_TIER
        else:
            team = next((t for t in plan.teams if t.name == record.team), None)
            if team is None:
                return Decimal(0), f"team {record.team} not in the plan"
            tier = team.tier
    priced = tier_pricing(plan, model, tier)
    if priced is None:
        return Decimal(0), f"tier {tier} not in the plan"
    pricing, multiplier = priced
    with localcontext() as ctx:
        ctx.prec = PRECISION
        if isinstance(pricing, GpuHourly):
            if model.gpu_instance is None:
                return Decimal(0), None
            return record.get("gpu_hours") * plan.gpu_instance(model.gpu_instance).hourly_rate_per_gpu, None
        if isinstance(pricing, TieredVolume):
            volume = record.tokens() if pricing.unit == "tokens" else record.get("requests")
            return tiered_volume_cost(pricing, multiplier, volume), None
        prices = {charge: value for charge, _, _, value in effective_prices(pricing, multiplier)}
        if isinstance(pricing, PerRequest):
            return record.get("requests") * prices[CHARGE_REQUEST], None
        if isinstance(pricing, PerMillionTokens):
            return sum((record.get(t) * prices[t] for t in c.TOKEN_TYPES), Decimal(0)), None
        if isinstance(pricing, PerRequestWithIncludedTokens):
            requests = record.get("requests")
            overage = max(record.tokens() - requests * prices[CHARGE_INCLUDED_TOKENS], Decimal(0))
            return requests * prices[CHARGE_REQUEST] + overage * prices[CHARGE_OVERAGE], None
    return Decimal(0), None


@dataclass(frozen=True)
class CostLine:
    name: str
    before: Decimal
    after: Decimal

    @property
    def delta(self) -> Decimal:
        return money_delta(self.before, self.after)


@dataclass(frozen=True)
class Estimate:
    """Last month's usage priced by both plans, per model and per team."""

    by_model: tuple[CostLine, ...]
    by_team: tuple[CostLine, ...]
    total: CostLine
    notes: tuple[str, ...]


NO_TEAM = "(no team)"


def estimate(base: Plan | None, head: Plan | None, records: Sequence[UsageRecord]) -> Estimate:
    """Estimated monthly cost before and after, exact: sums of exact products."""
    models: dict[str, list[Decimal]] = {}
    teams: dict[str, list[Decimal]] = {}
    notes: set[str] = set()
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for record in records:
            old, old_note = usage_cost(base, record)
            new, new_note = usage_cost(head, record)
            for side, note in (("base", old_note), ("head", new_note)):
                if note:
                    notes.add(f"{side}: {note}; its usage costs nothing there")
            for table, key in ((models, record.model), (teams, record.team or NO_TEAM)):
                sums = table.setdefault(key, [Decimal(0), Decimal(0)])
                sums[0] += old
                sums[1] += new
        total_before = sum((v[0] for v in models.values()), Decimal(0))
        total_after = sum((v[1] for v in models.values()), Decimal(0))

    def lines(table: dict[str, list[Decimal]]) -> tuple[CostLine, ...]:
        return tuple(CostLine(name, v[0], v[1]) for name, v in sorted(table.items()))

    return Estimate(lines(models), lines(teams), CostLine("total", total_before, total_after), tuple(sorted(notes)))


