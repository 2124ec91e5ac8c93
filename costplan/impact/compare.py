"""``costplan impact``: what a change to the plan does to money, for pull requests.

Reviewers of a plan change want one answer before they read YAML: how much
more (or less) may now be spent, and which prices and limits move. This
module compares two versions of a plan (the pull request's base and head)
and renders that answer as one pull-request comment (Markdown, found again
by a hidden marker so a CI job updates it in place) or as JSON for policy
gates.

The comparison is pure: ``compare(base, head)`` takes two ``Plan``s (either
may be ``None`` when an environment exists on one side only) and returns a
``PlanImpact`` value; ``estimate`` prices a usage file under both plans;
``manifest_diff`` diffs two rendered builds. Rendering and the click command
come last and are the only code that reads files or prints.

Money is ``Decimal`` throughout. The one inexact step is normalising budgets
to a month (a week is 30/7 of a month): those sums are kept as exact
fractions and turned into decimals once, rounded to cents only when the
fraction has no finite decimal form, and marked as rounded.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from costplan.core import conventions as c
from costplan.core.money import decimal_places, format_decimal, per_unit
from costplan.plan.model import (
    GpuHourly,
    Model,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    Pricing,
    TieredVolume,
)

MARKER = "<!-- costplan-impact -->"
NO_IMPACT = "No cost impact."

EXIT_OK = 0
EXIT_CHANGED = 1
EXIT_USAGE = 2
EXIT_INVALID = 3

DAYS_PER_MONTH = 30
LIST_TIER = ""  # price series without a tier label: the model's own pricing
MAX_DIFF_LINES = 400  # per environment; GitHub comments stop at 65,536 characters
MAX_DIFF_CHARS = 20_000
DETAILS_OVER_ROWS = 12  # longer tables fold into <details>

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"

# Arithmetic on usage volumes may multiply large counts by prices with ten
# decimal places; this precision keeps every product and sum exact.
_PRECISION = 100


# --------------------------------------------------------------------------
# Small exact helpers
# --------------------------------------------------------------------------


def _status(before: Any, after: Any) -> str | None:
    if before is None and after is None:
        return None
    if before is None:
        return ADDED
    if after is None:
        return REMOVED
    return CHANGED if before != after else None


def _delta(before: Decimal | None, after: Decimal | None) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (after or Decimal(0)) - (before or Decimal(0))


def percent_change(before: Decimal | None, after: Decimal | None) -> Decimal | None:
    """Relative change in percent, to two decimals; ``None`` when there was no price before."""
    if before is None or after is None or before == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return ((after - before) * 100 / before).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def fraction_to_decimal(value: Fraction) -> tuple[Decimal, bool]:
    """``(decimal, exact)``: exact when the fraction has a finite decimal form, else cents half-even."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        result = Decimal(value.numerator) / Decimal(value.denominator)
        if denominator == 1:
            return result, True
        return result.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN), False


_DURATION_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
                "m": 60_000, "s": 1000, "ms": 1}


def window_ms(window: str) -> int:
    """Milliseconds of a Prometheus duration (``7d``, ``1w2d``, ``90m``)."""
    parts = re.findall(r"(\d+)(ms|y|w|d|h|m|s)", window)
    if not parts or "".join(n + u for n, u in parts) != window:
        raise ValueError(f"not a duration: {window!r}")
    return sum(int(n) * _DURATION_MS[u] for n, u in parts)


def monthly_factor(period: str, window: str | None) -> Fraction:
    """How many of a budget's periods make one (30-day) month.

    A budget is a ceiling per period; summing ceilings of different periods
    needs one scale. Day × 30, week × 30/7, month × 1, rolling windows × 30
    days ÷ their length. Calendar months differ in length; 30 days keeps the
    factor independent of the date the report runs.
    """
    if period == "day":
        return Fraction(DAYS_PER_MONTH)
    if period == "week":
        return Fraction(DAYS_PER_MONTH, 7)
    if period == "month":
        return Fraction(1)
    return Fraction(DAYS_PER_MONTH * 86_400_000, window_ms(window or ""))


def _period_text(period: str, window: str | None) -> str:
    return f"rolling {window}" if period == "rolling" else period


# --------------------------------------------------------------------------
# The comparison (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetChange:
    """One team or global budget that was added, removed or changed in amount or period."""

    team: str | None
    name: str
    status: str
    period_before: str | None
    period_after: str | None
    before: Decimal | None
    after: Decimal | None
    monthly_before: Fraction
    monthly_after: Fraction

    @property
    def delta(self) -> Decimal:
        return _delta(self.before, self.after)

    @property
    def monthly_delta(self) -> Fraction:
        return self.monthly_after - self.monthly_before


@dataclass(frozen=True)
class Exposure:
    """Sum of budgets normalised to a month, kept as exact fractions."""

    before: Fraction
    after: Fraction

    @property
    def delta(self) -> Fraction:
        return self.after - self.before


@dataclass(frozen=True)
class PriceChange:
    """One price series the generated rules would charge, before and after.

    ``subject`` is a model (``kind`` ``model``) or a GPU instance (``kind``
    ``gpu``); ``tier`` ``""`` is the list price used for usage without a
    tier. ``money`` is false for quantities that shape a price (included
    tokens, the first unit of a volume band).
    """

    kind: str
    subject: str
    tier: str
    charge: str
    per: str
    money: bool
    status: str
    before: Decimal | None
    after: Decimal | None

    @property
    def delta(self) -> Decimal:
        return _delta(self.before, self.after)

    @property
    def percent(self) -> Decimal | None:
        return percent_change(self.before, self.after)


@dataclass(frozen=True)
class LimitChange:
    """A tier setting (rate limit, quota, price multiplier) before and after, as text."""

    tier: str
    setting: str
    status: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Members:
    """Names that appear or disappear: teams, users (``team/id``), models, tiers, GPU instances.

    Users are named by id only: a key reference is never part of a report.
    """

    added: Mapping[str, tuple[str, ...]]
    removed: Mapping[str, tuple[str, ...]]
    team_tiers: tuple[tuple[str, str, str], ...]  # (team, tier before, tier after)

    def count(self) -> int:
        return sum(len(v) for v in self.added.values()) + sum(len(v) for v in self.removed.values()) + len(
            self.team_tiers
        )


MEMBER_KINDS = ("teams", "users", "models", "tiers", "gpuInstances")


@dataclass(frozen=True)
class PlanImpact:
    """Everything that changes the money of one environment."""

    environment: str
    currency: str
    budgets: tuple[BudgetChange, ...]
    exposure: Exposure
    team_exposure: Exposure
    global_exposure: Exposure
    prices: tuple[PriceChange, ...]
    limits: tuple[LimitChange, ...]
    members: Members

    @property
    def changed(self) -> bool:
        return bool(self.budgets or self.prices or self.limits or self.members.count())


def _budgets(plan: Plan | None) -> dict[tuple[str, str], Any]:
    if plan is None:
        return {}
    return {(b.team or "", b.name): b for b in plan.all_budgets()}


def _monthly(budget: Any) -> Fraction:
    if budget is None:
        return Fraction(0)
    return Fraction(budget.amount) * monthly_factor(budget.period, budget.window)


def compare_budgets(base: Plan | None, head: Plan | None) -> tuple[tuple[BudgetChange, ...], Exposure, Exposure]:
    """Changed budgets (team budgets first, then global) and the monthly exposure of teams and globals."""
    before, after = _budgets(base), _budgets(head)
    changes = []
    totals = {True: [Fraction(0), Fraction(0)], False: [Fraction(0), Fraction(0)]}
    keys = sorted(set(before) | set(after), key=lambda k: (k[0] == "", k))
    for key in keys:
        old, new = before.get(key), after.get(key)
        is_team = key[0] != ""
        totals[is_team][0] += _monthly(old)
        totals[is_team][1] += _monthly(new)
        old_shape = None if old is None else (old.amount, old.period, old.window)
        new_shape = None if new is None else (new.amount, new.period, new.window)
        status = _status(old_shape, new_shape)
        if status is None:
            continue
        changes.append(
            BudgetChange(
                team=key[0] or None,
                name=key[1],
                status=status,
                period_before=None if old is None else _period_text(old.period, old.window),
                period_after=None if new is None else _period_text(new.period, new.window),
                before=None if old is None else old.amount,
                after=None if new is None else new.amount,
                monthly_before=_monthly(old),
                monthly_after=_monthly(new),
            )
        )
    team = Exposure(totals[True][0], totals[True][1])
    global_ = Exposure(totals[False][0], totals[False][1])
    return tuple(changes), team, global_


def effective_prices(pricing: Pricing, multiplier: Decimal) -> list[tuple[str, str, bool, Decimal]]:
    """``(charge, per, money, value)`` exactly as ``costplan.generators.prometheus.prices`` writes the price series.

    Unpriced cached tokens cost input, unpriced reasoning tokens output; the
    tier multiplier applies to every money value, never to quantities.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if isinstance(pricing, PerRequest):
            return [("request", "request", True, pricing.price * multiplier)]
        if isinstance(pricing, PerMillionTokens):
            per_type = {
                "input": pricing.input,
                "cached_input": pricing.input if pricing.cached_input is None else pricing.cached_input,
                "output": pricing.output,
                "reasoning": pricing.output if pricing.reasoning is None else pricing.reasoning,
            }
            return [(t, "token", True, per_unit(per_type[t]) * multiplier) for t in c.TOKEN_TYPES]
        if isinstance(pricing, PerRequestWithIncludedTokens):
            return [
                ("request", "request", True, pricing.price_per_request * multiplier),
                ("included tokens", "request", False, Decimal(pricing.included_tokens_per_request)),
                ("overage", "token", True, per_unit(pricing.overage_per_million_tokens) * multiplier),
            ]
        if isinstance(pricing, TieredVolume):
            unit = "token" if pricing.unit == "tokens" else "request"
            out = []
            for index, band in enumerate(pricing.tiers):
                price = per_unit(band.price) if pricing.unit == "tokens" else band.price
                out.append((f"band {index} from", unit, False, Decimal(band.start)))
                out.append((f"band {index}", f"{unit} ({pricing.period})", True, price * multiplier))
            return out
    return []  # GpuHourly: the GPU instance's rate, compared on its own


def _price_table(plan: Plan | None) -> dict[tuple[str, str, str, str], tuple[int, str, bool, Decimal]]:
    from costplan.generators.prometheus.prices import priced_tiers

    table: dict[tuple[str, str, str, str], tuple[int, str, bool, Decimal]] = {}
    if plan is None:
        return table
    for model in plan.models:
        for tier, pricing, multiplier in priced_tiers(plan, model):
            for order, (charge, per, money, value) in enumerate(effective_prices(pricing, multiplier)):
                table[("model", model.name, tier, charge)] = (order, per, money, value)
    for gpu in plan.gpu_instances:
        table[("gpu", gpu.name, LIST_TIER, "gpu")] = (0, "GPU-hour", True, gpu.hourly_rate_per_gpu)
    return table


def compare_prices(base: Plan | None, head: Plan | None) -> tuple[PriceChange, ...]:
    """Every price series whose value appears, disappears or moves; models before GPUs."""
    before, after = _price_table(base), _price_table(head)

    def order(key: tuple[str, str, str, str]) -> tuple:
        entry = after.get(key) or before[key]
        return (key[0] != "model", key[1], key[2], entry[0], key[3])

    changes = []
    for key in sorted(set(before) | set(after), key=order):
        old, new = before.get(key), after.get(key)
        old_value = None if old is None else old[3]
        new_value = None if new is None else new[3]
        status = _status(old_value, new_value)
        if status is None:
            continue
        _, per, money, _ = new or old  # type: ignore[misc]
        kind, subject, tier, charge = key
        changes.append(PriceChange(kind, subject, tier, charge, per, money, status, old_value, new_value))
    return tuple(changes)


def _tier_settings(plan: Plan | None) -> dict[tuple[str, str], str]:
    settings: dict[tuple[str, str], str] = {}
    if plan is None:
        return settings
    for tier in plan.tiers:
        for what, rates in (("requests", tier.request_limits), ("tokens", tier.token_limits)):
            for rate in rates:
                key = (tier.name, f"{what} per {rate.window}")
                text = f"{rate.limit:,}"
                settings[key] = f"{settings[key]}, {text}" if key in settings else text
        for period in ("daily", "weekly", "monthly"):
            value = getattr(tier.quotas, period)
            if value is not None:
                settings[(tier.name, f"{period} quota")] = f"{value:,}"
        settings[(tier.name, "price multiplier")] = format_decimal(tier.price_multiplier)
    return settings


def compare_limits(base: Plan | None, head: Plan | None) -> tuple[LimitChange, ...]:
    """Tier limits, quotas and multipliers that appear, disappear or change."""
    before, after = _tier_settings(base), _tier_settings(head)
    changes = []
    for key in sorted(set(before) | set(after)):
        status = _status(before.get(key), after.get(key))
        if status is not None:
            changes.append(LimitChange(key[0], key[1], status, before.get(key), after.get(key)))
    return tuple(changes)


def _names(plan: Plan | None) -> dict[str, set[str]]:
    if plan is None:
        return {kind: set() for kind in MEMBER_KINDS}
    return {
        "teams": {t.name for t in plan.teams},
        "users": {f"{team.name}/{user.id}" for team, user in plan.users()},
        "models": {m.name for m in plan.models},
        "tiers": {t.name for t in plan.tiers},
        "gpuInstances": {g.name for g in plan.gpu_instances},
    }


def compare_members(base: Plan | None, head: Plan | None) -> Members:
    """Who and what was added or removed, and teams that moved to another tier."""
    before, after = _names(base), _names(head)
    added = {kind: tuple(sorted(after[kind] - before[kind])) for kind in MEMBER_KINDS}
    removed = {kind: tuple(sorted(before[kind] - after[kind])) for kind in MEMBER_KINDS}
    moves = []
    if base is not None and head is not None:
        old = {t.name: t.tier for t in base.teams}
        for team in sorted(head.teams, key=lambda t: t.name):
            if team.name in old and old[team.name] != team.tier:
                moves.append((team.name, old[team.name], team.tier))
    return Members(added=added, removed=removed, team_tiers=tuple(moves))


def compare(base: Plan | None, head: Plan | None, environment: str | None = None) -> PlanImpact:
    """The money-relevant difference between two versions of one environment's plan."""
    if base is None and head is None:
        raise ValueError("nothing to compare")
    reference = head or base
    assert reference is not None
    budgets, team_exposure, global_exposure = compare_budgets(base, head)
    return PlanImpact(
        environment=environment or reference.environment,
        currency=reference.currency,
        budgets=budgets,
        exposure=Exposure(
            team_exposure.before + global_exposure.before, team_exposure.after + global_exposure.after
        ),
        team_exposure=team_exposure,
        global_exposure=global_exposure,
        prices=compare_prices(base, head),
        limits=compare_limits(base, head),
        members=compare_members(base, head),
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


class UsageError(ValueError):
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


def _pricing_for(plan: Plan, model: Model, tier: str) -> tuple[Pricing, Decimal] | None:
    from costplan.generators.prometheus.prices import priced_tiers

    return next(((p, m) for name, p, m in priced_tiers(plan, model) if name == tier), None)


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
    priced = _pricing_for(plan, model, tier)
    if priced is None:
        return Decimal(0), f"tier {tier} not in the plan"
    pricing, multiplier = priced
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if isinstance(pricing, GpuHourly):
            if model.gpu_instance is None:
                return Decimal(0), None
            return record.get("gpu_hours") * plan.gpu_instance(model.gpu_instance).hourly_rate_per_gpu, None
        if isinstance(pricing, TieredVolume):
            volume = record.tokens() if pricing.unit == "tokens" else record.get("requests")
            cost, previous = Decimal(0), Decimal(0)
            for band in pricing.tiers:
                price = (per_unit(band.price) if pricing.unit == "tokens" else band.price) * multiplier
                cost += (price - previous) * max(volume - band.start, Decimal(0))
                previous = price
            return cost, None
        prices = {charge: value for charge, _, _, value in effective_prices(pricing, multiplier)}
        if isinstance(pricing, PerRequest):
            return record.get("requests") * prices["request"], None
        if isinstance(pricing, PerMillionTokens):
            return sum((record.get(t) * prices[t] for t in c.TOKEN_TYPES), Decimal(0)), None
        if isinstance(pricing, PerRequestWithIncludedTokens):
            requests = record.get("requests")
            overage = max(record.tokens() - requests * prices["included tokens"], Decimal(0))
            return requests * prices["request"] + overage * prices["overage"], None
    return Decimal(0), None


@dataclass(frozen=True)
class CostLine:
    name: str
    before: Decimal
    after: Decimal

    @property
    def delta(self) -> Decimal:
        return _delta(self.before, self.after)


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
        ctx.prec = _PRECISION
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


# --------------------------------------------------------------------------
# Rendered-manifest diff (pure over file maps)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestDiff:
    changed_files: tuple[str, ...]
    text: str
    truncated_lines: int


def manifest_diff(
    before: Mapping[str, str], after: Mapping[str, str], max_lines: int = MAX_DIFF_LINES, max_chars: int = MAX_DIFF_CHARS
) -> ManifestDiff:
    """A unified diff of two rendered builds (path → text), cut to a size a comment can hold."""
    lines: list[str] = []
    changed = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        changed.append(path)
        lines.extend(
            difflib.unified_diff(
                (old or "").splitlines(),
                (new or "").splitlines(),
                fromfile=f"a/{path}" if old is not None else "/dev/null",
                tofile=f"b/{path}" if new is not None else "/dev/null",
                lineterm="",
            )
        )
    kept: list[str] = []
    size = 0
    for line in lines:
        if len(kept) >= max_lines or size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return ManifestDiff(tuple(changed), "\n".join(kept), len(lines) - len(kept))


def rendered_files(plan: Plan | None) -> dict[str, str]:
    """The exact files ``costplan build`` writes for one environment (none for an absent one)."""
    from costplan.output import build as build_stage
    from costplan.output import serialise as output

    if plan is None:
        return {}
    with build_stage.paused_gc():
        artifacts = build_stage.compile_plan(plan)
    return output.render_environment(artifacts, plan.name, plan.environment)


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentReport:
    impact: PlanImpact
    estimate: Estimate | None = None
    manifests: ManifestDiff | None = None


def money(value: Decimal) -> str:
    """``1,500.00`` for whole cents, else every significant digit (``0.0000024``)."""
    if value == 0:
        return "0.00"
    normal = value.normalize()
    if decimal_places(normal) <= 2:
        return f"{value.quantize(Decimal('0.01')):,f}"
    return f"{normal:,f}"


def signed_money(value: Decimal) -> str:
    return ("+" if value > 0 else "") + money(value)


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value == value.to_integral_value() else format_decimal(value)


def _fraction_money(value: Fraction, signed: bool = False) -> str:
    amount, exact = fraction_to_decimal(value)
    text = signed_money(amount) if signed else money(amount)
    return text if exact else f"≈ {text}"


def _fraction_json(value: Fraction) -> str:
    return format_decimal(fraction_to_decimal(value)[0])


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "new"
    return ("+" if value > 0 else "") + format_decimal(value) + "%"


def _cell(value: Decimal | None, is_money: bool) -> str:
    if value is None:
        return "—"
    return money(value) if is_money else _quantity(value)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _table(header: Sequence[str], align: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out


def _section(title: str, lines: list[str], rows: int) -> list[str]:
    """A titled table, folded into ``<details>`` when it is long."""
    if rows > DETAILS_OVER_ROWS:
        return ["<details>", f"<summary><b>{title}</b></summary>", "", *lines, "", "</details>", ""]
    return [f"**{title}**", "", *lines, ""]


def _counts(impact: PlanImpact) -> list[str]:
    parts = []
    if impact.budgets:
        parts.append(_plural(len(impact.budgets), "budget"))
    if impact.prices:
        parts.append(_plural(len(impact.prices), "price"))
    if impact.limits:
        parts.append(_plural(len(impact.limits), "tier setting"))
    members = impact.members.count()
    if members:
        parts.append(_plural(members, "team, user or model change"))
    return parts


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def headline(reports: Sequence[EnvironmentReport]) -> str:
    """One sentence: the change in monthly budget exposure, then what else moves."""
    changed = [r.impact for r in reports if r.impact.changed]
    named = len(reports) > 1
    exposures = [
        f"**{_fraction_money(i.exposure.delta, signed=True)} {i.currency}**" + (f" in {i.environment}" if named else "")
        for i in changed
        if i.exposure.delta != 0
    ]
    sentence = "Monthly budget exposure " + (_join(exposures) if exposures else "unchanged")
    counts = []
    for impact in changed:
        parts = _counts(impact)
        if parts:
            counts.append(_join(parts) + (f" in {impact.environment}" if named else ""))
    if counts:
        sentence += "; changed: " + "; ".join(counts)
    return sentence + "."


def _budget_lines(impact: PlanImpact) -> list[str]:
    cur = impact.currency
    exposure = impact.exposure
    lines = [
        (
            f"Monthly exposure {_fraction_money(exposure.before)} → {_fraction_money(exposure.after)} {cur} "
            f"(**{_fraction_money(exposure.delta, signed=True)} {cur}**; teams "
            f"{_fraction_money(impact.team_exposure.delta, signed=True)}, global "
            f"{_fraction_money(impact.global_exposure.delta, signed=True)})¹"
        ),
        "",
    ]
    if not impact.budgets:
        return lines
    rows = []
    for b in impact.budgets:
        period = b.period_after or b.period_before or ""
        if b.period_before and b.period_after and b.period_before != b.period_after:
            period = f"{b.period_before} → {b.period_after}"
        rows.append(
            [b.team or "(global)", b.name, period, b.status, _cell(b.before, True), _cell(b.after, True),
             signed_money(b.delta), _fraction_money(b.monthly_delta, signed=True)]
        )
    lines += _table(
        ["team", "budget", "period", "", f"before ({cur})", f"after ({cur})", "delta", "monthly delta"],
        "llllrrrr",
        rows,
    )
    return lines


def _price_lines(impact: PlanImpact) -> list[str]:
    cur = impact.currency
    rows = []
    for p in impact.prices:
        charge = p.charge if p.money else f"{p.charge} ({p.per})"
        per = p.per if p.money else ""
        tier = "(list)" if p.tier == LIST_TIER and p.kind == "model" else p.tier
        rows.append(
            [p.subject, tier, charge, per, _cell(p.before, p.money), _cell(p.after, p.money),
             (signed_money(p.delta) if p.money else ("+" if p.delta > 0 else "") + _quantity(p.delta)),
             _percent(p.percent)]
        )
    return _table(
        ["model / GPU", "tier", "charge", "per", f"before ({cur})", f"after ({cur})", "delta", "change"],
        "llllrrrr",
        rows,
    )


def _limit_lines(impact: PlanImpact) -> list[str]:
    rows = [[lc.tier, lc.setting, lc.status, lc.before or "—", lc.after or "—"] for lc in impact.limits]
    return _table(["tier", "setting", "", "before", "after"], "lllrr", rows)


def _member_lines(impact: PlanImpact) -> list[str]:
    members = impact.members
    lines = []
    for kind in MEMBER_KINDS:
        added, removed = members.added[kind], members.removed[kind]
        if added:
            lines.append(f"- {kind} added ({len(added)}): {', '.join(added)}")
        if removed:
            lines.append(f"- {kind} removed ({len(removed)}): {', '.join(removed)}")
    for team, old, new in members.team_tiers:
        lines.append(f"- team {team} moves from tier {old} to {new}")
    return lines


def _estimate_lines(estimate_: Estimate, currency: str, source: str) -> list[str]:
    lines = []
    for title, table in (("team", estimate_.by_team), ("model", estimate_.by_model)):
        rows = [[line.name, money(line.before), money(line.after), signed_money(line.delta)] for line in table]
        t = estimate_.total
        rows.append(["**total**", money(t.before), money(t.after), f"**{signed_money(t.delta)}**"])
        lines += _table([title, f"before ({currency})", f"after ({currency})", "delta"], "lrrr", rows) + [""]
    lines.append(f"Usage from `{source}`, priced by each plan's rules.²")
    lines += [f"- {note}" for note in estimate_.notes]
    return lines


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _manifest_lines(diff: ManifestDiff) -> list[str]:
    if not diff.changed_files:
        return ["Rendered manifests: no change.", ""]
    fence = _fence(diff.text)
    lines = [
        "<details>",
        f"<summary>Rendered manifests: {_plural(len(diff.changed_files), 'file')} change</summary>",
        "",
        f"{fence}diff",
        diff.text,
        fence,
    ]
    if diff.truncated_lines:
        lines.append(
            f"\n… {diff.truncated_lines} more diff lines not shown; run `costplan build` on both revisions "
            "and diff the output for all of it."
        )
    return lines + ["", "</details>", ""]


FOOTNOTE_EXPOSURE = (
    "¹ Monthly exposure is the sum of every team and global budget normalised to a 30-day month: "
    "day × 30, week × 30/7, month × 1, a rolling window × 30 days ÷ its length. "
    "Sums are exact; values marked ≈ have no finite decimal form and are rounded to cents."
)
FOOTNOTE_ESTIMATE = (
    "² The included-token allowance is pooled per usage row and volume bands apply to each row's volume "
    "as one period; a row without a tier is priced at its team's tier in each plan."
)


def render_markdown(reports: Sequence[EnvironmentReport], usage_source: str | None = None) -> str:
    """The pull-request comment: marker, headline, one section per changed environment, footnotes."""
    if not any(r.impact.changed for r in reports):
        return NO_IMPACT + "\n"
    lines = [MARKER, "### costplan impact", "", headline(reports), ""]
    unchanged = [r.impact.environment for r in reports if not r.impact.changed]
    for report in reports:
        impact = report.impact
        if not impact.changed:
            continue
        if len(reports) > 1:
            lines += [f"#### {impact.environment}", ""]
        lines += ["**Budgets**", "", *_budget_lines(impact), ""]
        if impact.prices:
            title = f"Prices ({_plural(len(impact.prices), 'change')}; tier multipliers and overrides applied)"
            lines += _section(title, _price_lines(impact), len(impact.prices))
        if impact.limits:
            lines += _section(f"Tier settings ({_plural(len(impact.limits), 'change')})", _limit_lines(impact),
                              len(impact.limits))
        member_lines = _member_lines(impact)
        if member_lines:
            lines += _section("Teams, users and models", member_lines, len(member_lines))
        if report.estimate is not None:
            lines += _section("Estimated monthly cost", _estimate_lines(report.estimate, impact.currency,
                                                                         usage_source or "usage"), 0)
        if report.manifests is not None:
            lines += _manifest_lines(report.manifests)
    if unchanged:
        lines += [f"No cost impact in {_join(unchanged)}.", ""]
    lines.append(FOOTNOTE_EXPOSURE)
    if any(r.estimate is not None for r in reports):
        lines.append(FOOTNOTE_ESTIMATE)
    return "\n".join(lines) + "\n"


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _exposure_json(exposure: Exposure) -> dict[str, Any]:
    exact = all(fraction_to_decimal(v)[1] for v in (exposure.before, exposure.after, exposure.delta))
    return {
        "before": _fraction_json(exposure.before),
        "after": _fraction_json(exposure.after),
        "delta": _fraction_json(exposure.delta),
        "exact": exact,
    }


def _lines_json(lines: Iterable[CostLine]) -> list[dict[str, str]]:
    return [{"name": x.name, "before": format_decimal(x.before), "after": format_decimal(x.after),
             "delta": format_decimal(x.delta)} for x in lines]


def report_document(reports: Sequence[EnvironmentReport]) -> dict[str, Any]:
    """The JSON for policy gates: every amount an exact decimal string."""
    if not any(r.impact.changed for r in reports):
        return {"changed": False}
    environments = []
    for report in reports:
        i = report.impact
        doc: dict[str, Any] = {
            "environment": i.environment,
            "currency": i.currency,
            "changed": i.changed,
            "budgets": {
                "monthlyExposure": {
                    **_exposure_json(i.exposure),
                    "teams": _exposure_json(i.team_exposure),
                    "global": _exposure_json(i.global_exposure),
                },
                "changes": [
                    {"team": b.team, "budget": b.name, "change": b.status,
                     "periodBefore": b.period_before, "periodAfter": b.period_after,
                     "before": _opt(b.before), "after": _opt(b.after), "delta": format_decimal(b.delta),
                     "monthlyDelta": _fraction_json(b.monthly_delta)}
                    for b in i.budgets
                ],
            },
            "prices": [
                {"kind": p.kind, "name": p.subject, "tier": p.tier, "charge": p.charge, "per": p.per,
                 "money": p.money, "change": p.status, "before": _opt(p.before), "after": _opt(p.after),
                 "delta": format_decimal(p.delta), "percent": _opt(p.percent)}
                for p in i.prices
            ],
            "limits": [
                {"tier": lc.tier, "setting": lc.setting, "change": lc.status, "before": lc.before,
                 "after": lc.after}
                for lc in i.limits
            ],
            "added": {k: list(v) for k, v in i.members.added.items()},
            "removed": {k: list(v) for k, v in i.members.removed.items()},
            "teamTiers": [{"team": t, "before": old, "after": new} for t, old, new in i.members.team_tiers],
        }
        if report.estimate is not None:
            e = report.estimate
            doc["estimate"] = {
                "total": _lines_json([e.total])[0],
                "byTeam": _lines_json(e.by_team),
                "byModel": _lines_json(e.by_model),
                "notes": list(e.notes),
            }
        if report.manifests is not None:
            doc["manifests"] = {"changedFiles": list(report.manifests.changed_files)}
        environments.append(doc)
    return {"changed": True, "environments": environments}


def render_json(reports: Sequence[EnvironmentReport]) -> str:
    return json.dumps(report_document(reports), indent=2, sort_keys=False, ensure_ascii=False)


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def _base_path(base: Path, head: Path) -> Path:
    """``--base`` may name the plan file or the directory of a base checkout."""
    return base / head.name if base.is_dir() else base


def _environments(base: Path, head: Path, environment: str | None, all_envs: bool) -> list[str | None]:
    from costplan.plan.load import list_environments

    if environment and all_envs:
        raise click.UsageError("--env and --all-envs exclude each other")
    known = sorted(set(list_environments(base)) | set(list_environments(head)))
    if all_envs:
        if not known:
            raise click.UsageError(f"no environments/*.yaml beside {head} or {base}")
        return list(known)
    if environment is not None and (head.is_file() or base.is_file()) and environment not in known:
        raise click.UsageError(
            f"no environment {environment!r} beside {head} or {base} (known: {', '.join(known) or 'none'})"
        )
    return [environment]


def _load(path: Path, environment: str | None, problems: list) -> Plan | None:
    """The plan for one environment; ``None`` when the environment exists only on the other side."""
    from costplan.core.diagnostics import PlanInvalid
    from costplan.plan.load import list_environments, load_plan

    if environment is not None and path.is_file() and environment not in list_environments(path):
        return None
    try:
        return load_plan(path, environment)
    except PlanInvalid as invalid:
        problems.extend(invalid.diagnostics)
        return None


@click.command("impact")
@click.option("--base", "base_path", required=True, type=click.Path(path_type=Path),
              help="The base revision's plan file, or the directory of a base checkout holding it.")
@click.option("-f", "--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              default="costplan.yaml", envvar="COSTPLAN_PLAN", show_default=True,
              help="The head revision's plan file; overlays are read from environments/ beside it.")
@click.option("-e", "--env", "environment", help="Compare this environment (plan + environments/ENV.yaml).")
@click.option("--all-envs", is_flag=True, help="Every environment beside either plan.")
@click.option("--format", "output_format", type=click.Choice(["markdown", "json"]), default="markdown",
              show_default=True, help="markdown: a pull-request comment; json: for policy gates.")
@click.option("--manifests/--no-manifests", default=True, show_default=True,
              help="Include the diff of the rendered build output per environment.")
@click.option("--usage-json", "usage_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Last month's usage per model (and team, tier): estimate the monthly cost before and after.")
@click.option("--exit-code", "exit_code", is_flag=True, help="Exit 1 when anything changes (like git diff).")
def impact_command(
    base_path: Path,
    plan_path: Path,
    environment: str | None,
    all_envs: bool,
    output_format: str,
    manifests: bool,
    usage_file: Path | None,
    exit_code: bool,
) -> None:
    """Compare the plan with a base revision: budgets, prices, limits, members, cost.

    Prints a pull-request comment (first line: a hidden marker to update it in
    place) or JSON. "No cost impact." when nothing that affects money changed.
    Exit 0, or 1 with --exit-code when something changed; 2 usage; 3 when
    either plan is invalid.
    """
    from costplan.core.diagnostics import render_text, sort_diagnostics

    base = _base_path(base_path, plan_path)
    envs = _environments(base, plan_path, environment, all_envs)
    records: tuple[UsageRecord, ...] | None = None
    if usage_file is not None:
        try:
            records = parse_usage(usage_file.read_text(encoding="utf-8"))
        except (UsageError, UnicodeDecodeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--usage-json") from exc
    problems: list = []
    pairs = [(env, _load(base, env, problems), _load(plan_path, env, problems)) for env in envs]
    if problems:
        diagnostics = sort_diagnostics(problems)
        click.echo(render_text(diagnostics), err=True)
        click.echo(f"{len(diagnostics)} error(s) in the plans", err=True)
        sys.exit(EXIT_INVALID)
    reports = []
    for env, old, new in pairs:
        impact = compare(old, new, env or "base")
        estimate_ = None if records is None else estimate(old, new, records)
        diff = manifest_diff(rendered_files(old), rendered_files(new)) if manifests and impact.changed else None
        reports.append(EnvironmentReport(impact, estimate_, diff))
    if output_format == "json":
        click.echo(render_json(reports))
    else:
        click.echo(render_markdown(reports, str(usage_file) if usage_file else None), nl=False)
    changed = any(r.impact.changed for r in reports)
    sys.exit(EXIT_CHANGED if exit_code and changed else EXIT_OK)
