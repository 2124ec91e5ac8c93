"""What each key's budget state should be: pure functions of spend, plan and time.

The guard is level-triggered: every reconcile computes the wanted state of
every key from the budget series Prometheus holds *now* and the plan's
actions, compares it with what the key Secret carries, and writes only the
difference. Nothing depends on which alerts were seen before, so a lost
webhook or a guard restart costs at most one reconcile period.

Per team, the strongest action reached wins: ``block`` over ``throttle``,
and between throttles the one with the highest threshold. A key whose
Secret carries an override annotation with a time still in the future is
left normal, whatever the spend. When a period ends the budget series
restarts from zero, so keys are released by the same rule that blocked them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from costplan.core import conventions as c
from costplan.core.money import format_decimal
from costplan.plan.enforcement import GuardBudget, GuardConfig, GuardTeam, period_end

NORMAL = c.BUDGET_STATE_NORMAL
THROTTLED = c.BUDGET_STATE_THROTTLED
BLOCKED = c.BUDGET_STATE_BLOCKED
CENT = Decimal("0.01")
SpendKey = tuple[str, str, str]  # (team, budget, period) as on costplan:budget_spend


@dataclass(frozen=True)
class Wanted:
    """A key's budget state: what the guard writes and the AuthPolicy reads."""

    state: str
    tier: str | None = None
    detail: str | None = None  # the JSON body a blocked key is refused with
    reason: str = ""

    def same_as(self, other: Wanted) -> bool:
        """Equal for enforcement: the detail's amounts may move without a write."""
        return (self.state, self.tier) == (other.state, other.tier)


def spent_text(value: Decimal) -> str:
    return format_decimal(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def _detail(config: GuardConfig, team: GuardTeam, budget: GuardBudget | None, spent: Decimal | None,
            now: dt.datetime, error: str) -> str:
    body: dict[str, Any] = {"error": error, "team": team.name, "currency": config.currency}
    if budget is not None:
        body["budget"] = budget.name
        body["period"] = budget.period
        body["limit"] = format_decimal(budget.amount)
        end = period_end(budget.period, now, config.timezone)
        body["resets"] = end.isoformat() if end else None
    if spent is not None:
        body["spent"] = spent_text(spent)
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def team_state(config: GuardConfig, team: GuardTeam, spend: Mapping[SpendKey, Decimal], now: dt.datetime) -> Wanted:
    """The strongest action any of the team's budgets has reached."""
    best: tuple[int, Decimal, Wanted] | None = None
    for budget in team.budgets:
        spent = spend.get((team.name, budget.name, budget.period), Decimal(0))
        for action in budget.actions:
            if spent < budget.amount * action.at / 100:
                continue
            percent = format_decimal(action.at)
            why = (f"budget {budget.name} at {spent_text(spent)} of {format_decimal(budget.amount)} "
                   f"{config.currency} reached {percent}%")
            if action.action == "block":
                rank, wanted = 2, Wanted(BLOCKED, detail=_detail(config, team, budget, spent, now, "budget_exceeded"),
                                         reason=why)
            else:
                rank, wanted = 1, Wanted(THROTTLED, tier=action.tier, reason=why)
            if best is None or (rank, action.at) > (best[0], best[1]):
                best = (rank, action.at, wanted)
    return best[2] if best else Wanted(NORMAL, reason="within budget")


def failed_state(config: GuardConfig, team: GuardTeam, now: dt.datetime) -> Wanted:
    """What ``failMode`` gives a key once Prometheus has been unreachable for ``failAfter``."""
    if config.fail_mode == "closed":
        return Wanted(BLOCKED, detail=_detail(config, team, None, None, now, "budget_unknown"),
                      reason="Prometheus unreachable, failMode closed")
    return Wanted(NORMAL, reason="Prometheus unreachable, failMode open")


def parse_time(text: str) -> dt.datetime | None:
    """An RFC 3339 time (``Z`` or an offset); ``None`` if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def override_until(secret: Mapping[str, Any]) -> dt.datetime | None:
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(c.ANNOTATION_BUDGET_OVERRIDE)
    return parse_time(value) if isinstance(value, str) else None


def with_override(wanted: Wanted, secret: Mapping[str, Any], now: dt.datetime) -> Wanted:
    until = override_until(secret)
    if until is not None and now < until and wanted.state != NORMAL:
        return Wanted(NORMAL, reason=f"override until {until.isoformat()} ({wanted.reason})")
    return wanted


def observed(secret: Mapping[str, Any]) -> Wanted:
    """The state a key Secret carries now."""
    meta = secret.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    state = labels.get(c.LABEL_BUDGET_STATE) or NORMAL
    return Wanted(state, tier=annotations.get(c.ANNOTATION_BUDGET_TIER), detail=annotations.get(c.ANNOTATION_BUDGET_DETAIL))


def owned(secret: Mapping[str, Any], config: GuardConfig) -> bool:
    """Only key Secrets of this plan: costplan's key label and this plan's label, both."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return labels.get(c.SECRET_LABEL_APP) == c.SECRET_LABEL_APP_VALUE and labels.get(c.LABEL_PLAN) == config.plan


def patch(wanted: Wanted) -> dict[str, Any]:
    """A JSON merge patch that sets exactly the guard's label and annotations (``None`` deletes)."""
    return {
        "metadata": {
            "labels": {c.LABEL_BUDGET_STATE: None if wanted.state == NORMAL else wanted.state},
            "annotations": {
                c.ANNOTATION_BUDGET_TIER: wanted.tier if wanted.state == THROTTLED else None,
                c.ANNOTATION_BUDGET_DETAIL: wanted.detail if wanted.state == BLOCKED else None,
            },
        }
    }
