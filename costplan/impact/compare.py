"""What a change to the plan does to money: the pure comparison of two plans.

Reviewers of a plan change want one answer before they read YAML: how much
more (or less) may now be spent, and which prices and limits move.
``compare(base, head)`` takes two ``Plan``s (either may be ``None`` when an
environment exists on one side only) and returns a ``PlanImpact`` value.
Prices come from ``costplan.plan.pricing``, the same function the generated
rules are written from, so the comment and the rules cannot disagree.

Money is ``Decimal`` throughout. The one inexact step is normalising budgets
to a month (a week is 30/7 of a month): those sums are kept as exact
fractions and turned into decimals once, rounded to cents only when the
fraction has no finite decimal form, and marked as rounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

from costplan.core.money import format_decimal
from costplan.plan.model import (
    Plan,
)
from costplan.plan.pricing import LIST_TIER, PRECISION, effective_prices, priced_tiers

MARKER = "<!-- costplan-impact -->"
NO_IMPACT = "No cost impact."

DAYS_PER_MONTH = 30
MAX_DIFF_LINES = 400  # per environment; GitHub comments stop at 65,536 characters
MAX_DIFF_CHARS = 20_000
DETAILS_OVER_ROWS = 12  # longer tables fold into <details>

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"




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


def money_delta(before: Decimal | None, after: Decimal | None) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return (after or Decimal(0)) - (before or Decimal(0))


def percent_change(before: Decimal | None, after: Decimal | None) -> Decimal | None:
    """Relative change in percent, to two decimals; ``None`` when there was no price before."""
    if before is None or after is None or before == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return ((after - before) * 100 / before).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def fraction_to_decimal(value: Fraction) -> tuple[Decimal, bool]:
    """``(decimal, exact)``: exact when the fraction has a finite decimal form, else cents half-even."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    with localcontext() as ctx:
        ctx.prec = PRECISION
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
    actions_before: str = ""
    actions_after: str = ""

    @property
    def delta(self) -> Decimal:
        return money_delta(self.before, self.after)

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
        return money_delta(self.before, self.after)

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


def actions_text(budget: Any) -> str:
    """``throttle to free at 80%, block at 100%``: a budget's actions in words ("" without any)."""
    if budget is None:
        return ""
    return ", ".join(
        f"{a.action}{f' to {a.tier}' if a.tier else ''} at {format_decimal(a.at)}%" for a in budget.actions
    )


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
        old_shape = None if old is None else (old.amount, old.period, old.window, actions_text(old))
        new_shape = None if new is None else (new.amount, new.period, new.window, actions_text(new))
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
                actions_before=actions_text(old),
                actions_after=actions_text(new),
            )
        )
    team = Exposure(totals[True][0], totals[True][1])
    global_ = Exposure(totals[False][0], totals[False][1])
    return tuple(changes), team, global_


def _price_table(plan: Plan | None) -> dict[tuple[str, str, str, str], tuple[int, str, bool, Decimal]]:
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


