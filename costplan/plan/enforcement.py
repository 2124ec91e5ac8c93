"""What ``costplan guard`` needs of a plan, as a small document of its own.

The guard runs in the cluster from a ConfigMap (``generators/guard.py``)
that holds exactly this: which key Secrets belong to which team, the
teams' budgets with their throttle and block actions, and the guard
settings. The report jobs' plan ConfigMap leaves users and budgets out on
purpose, so the guard gets its own. ``guard_config`` builds it from a plan,
``to_document``/``from_document`` carry it through JSON losslessly (amounts
as decimal strings).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from costplan.core import conventions as c
from costplan.core.money import format_decimal, to_decimal
from costplan.plan.model import ACTION_THROTTLE, ENFORCING_ACTIONS, BudgetAction, Plan
from costplan.plan.pricing import budget_period

DOCUMENT_KIND = "CostplanGuardConfig"
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600),
          "d": Decimal(86400), "w": Decimal(604800), "y": Decimal(31536000)}


@dataclass(frozen=True)
class GuardBudget:
    """``period`` is the series' label (``month``, ``rolling_7d``); ``calendar`` is true for day/week/month."""

    name: str
    period: str
    amount: Decimal
    actions: tuple[BudgetAction, ...]

    @property
    def calendar(self) -> bool:
        return self.period in ("day", "week", "month")


@dataclass(frozen=True)
class GuardTeam:
    name: str
    keys: tuple[str, ...]
    budgets: tuple[GuardBudget, ...]


@dataclass(frozen=True)
class GuardConfig:
    plan: str
    timezone: str
    currency: str
    prometheus_url: str
    secret_namespace: str
    period_seconds: Decimal
    fail_mode: str
    fail_after_seconds: Decimal
    teams: tuple[GuardTeam, ...]
    # A fleet's global engine: the tenant to send and the mounted token file
    # (the path only; the token stays in its Secret).
    tenant: str | None = None
    bearer_token_file: str | None = None

    def keys(self) -> tuple[tuple[GuardTeam, str], ...]:
        return tuple((team, key) for team in self.teams for key in team.keys)


def seconds(duration: str) -> Decimal:
    """Seconds in a Prometheus duration (``1h30m``, ``60s``, ``0s``)."""
    import re

    total = Decimal(0)
    for number, unit in re.findall(r"([0-9]+)(ms|y|w|d|h|m|s)", duration):
        total += Decimal(number) * _UNITS[unit]
    return total


def enforces(plan: Plan) -> bool:
    """Whether any budget throttles or blocks, i.e. whether the guard runs and the gateway checks its state."""
    return any(a.action in ENFORCING_ACTIONS for b in plan.all_budgets() for a in b.actions)


def throttles(plan: Plan) -> bool:
    """Whether any budget moves keys to another tier."""
    return any(a.action == ACTION_THROTTLE for b in plan.all_budgets() for a in b.actions)


def guard_config(plan: Plan) -> GuardConfig:
    """Teams whose budgets throttle or block, with their keys; other teams are none of the guard's business."""
    teams = []
    for team in plan.teams:
        budgets = tuple(
            GuardBudget(
                name=b.name,
                period=budget_period(b),
                amount=b.amount,
                actions=tuple(a for a in b.actions if a.action in ENFORCING_ACTIONS),
            )
            for b in team.budgets
            if any(a.action in ENFORCING_ACTIONS for a in b.actions)
        )
        if budgets:
            teams.append(GuardTeam(team.name, tuple(u.api_key.secret_name for u in team.users), budgets))
    g = plan.guard
    return GuardConfig(
        plan=plan.name,
        timezone=plan.timezone,
        currency=plan.currency,
        prometheus_url=plan.query_url,
        secret_namespace=plan.integrations.gateway.api_key.secret_namespace,
        period_seconds=seconds(g.period),
        fail_mode=g.fail_mode,
        fail_after_seconds=seconds(g.fail_after),
        teams=tuple(teams),
        tenant=plan.query_tenant,
        bearer_token_file=metrics_token_path() if plan.query_bearer_token is not None else None,
    )


def metrics_token_path() -> str:
    """Where a pod that reads the global engine finds its bearer token (a mounted Secret key)."""
    return f"{c.METRICS_TOKEN_DIR}/{c.METRICS_TOKEN_FILE}"


def to_document(config: GuardConfig) -> dict[str, Any]:
    def action(a: BudgetAction) -> dict[str, Any]:
        return {"action": a.action, "at": format_decimal(a.at), **({"tier": a.tier} if a.tier else {})}

    return {
        "kind": DOCUMENT_KIND,
        "plan": config.plan,
        "timezone": config.timezone,
        "currency": config.currency,
        "prometheusURL": config.prometheus_url,
        "secretNamespace": config.secret_namespace,
        "periodSeconds": format_decimal(config.period_seconds),
        "failMode": config.fail_mode,
        "failAfterSeconds": format_decimal(config.fail_after_seconds),
        **({"tenant": config.tenant} if config.tenant else {}),
        **({"bearerTokenFile": config.bearer_token_file} if config.bearer_token_file else {}),
        "teams": [
            {
                "name": t.name,
                "keys": list(t.keys),
                "budgets": [
                    {"name": b.name, "period": b.period, "amount": format_decimal(b.amount),
                     "actions": [action(a) for a in b.actions]}
                    for b in t.budgets
                ],
            }
            for t in config.teams
        ],
    }


def from_document(doc: Mapping[str, Any]) -> GuardConfig:
    if doc.get("kind") != DOCUMENT_KIND:
        raise ValueError(f"not a {DOCUMENT_KIND} document")
    return GuardConfig(
        plan=doc["plan"],
        timezone=doc["timezone"],
        currency=doc["currency"],
        prometheus_url=doc["prometheusURL"],
        secret_namespace=doc["secretNamespace"],
        period_seconds=to_decimal(doc["periodSeconds"]),
        fail_mode=doc["failMode"],
        fail_after_seconds=to_decimal(doc["failAfterSeconds"]),
        tenant=doc.get("tenant"),
        bearer_token_file=doc.get("bearerTokenFile"),
        teams=tuple(
            GuardTeam(
                name=t["name"],
                keys=tuple(t["keys"]),
                budgets=tuple(
                    GuardBudget(
                        name=b["name"], period=b["period"], amount=to_decimal(b["amount"]),
                        actions=tuple(BudgetAction(to_decimal(a["at"]), a["action"], a.get("tier"))
                                      for a in b["actions"]),
                    )
                    for b in t["budgets"]
                ),
            )
            for t in doc["teams"]
        ),
    )


def period_start(period: str, now: dt.datetime, timezone: str) -> dt.datetime | None:
    """When the calendar period holding ``now`` began, in the plan's timezone; ``None`` for rolling windows."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    if period == "day":
        start = day
    elif period == "week":
        start = day - dt.timedelta(days=day.weekday())
    elif period == "month":
        start = day.replace(day=1)
    else:
        return None
    return dt.datetime(start.year, start.month, start.day, tzinfo=zone)


def period_end(period: str, now: dt.datetime, timezone: str) -> dt.datetime | None:
    """When the calendar period holding ``now`` ends, in the plan's timezone; ``None`` for rolling windows.

    Weeks start on Monday, as in the budget rules.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    day = local.date()
    if period == "day":
        end = day + dt.timedelta(days=1)
    elif period == "week":
        end = day + dt.timedelta(days=7 - day.weekday())
    elif period == "month":
        end = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    else:
        return None
    return dt.datetime(end.year, end.month, end.day, tzinfo=zone)
