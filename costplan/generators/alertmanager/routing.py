"""The routing plan both output forms are written from: routes, matchers, receivers.

A team's route matches its ``team`` label and the alerts a team owns
(budget thresholds, forecasts, spend anomalies); it groups by alert name,
team and budget, so the 80 % and 100 % alerts of one budget arrive as one
thread, and repeats while the alert fires (``notifications`` settings).
The guard's route matches budget threshold alerts of every team with no
group wait, one group per threshold: a webhook only makes the guard
reconcile sooner, so every newly crossed threshold should reach it at once
(a new alert in an existing group would wait for the group interval).
"""

from __future__ import annotations

from dataclasses import dataclass

from costplan.core import conventions as c
from costplan.core.names import object_name
from costplan.plan.enforcement import enforces
from costplan.plan.model import EmailServer, Plan, SecretKey

# Alerts routed to a team's contacts: every alert that carries its team label.
TEAM_ALERTS = (c.ALERT_BUDGET_THRESHOLD, c.ALERT_BUDGET_FORECAST, c.ALERT_SPEND_ANOMALY)
GROUP_BY = (c.ALERT_NAME_LABEL, c.LABEL_TEAM, c.LABEL_BUDGET)
GUARD_GROUP_BY = (c.LABEL_TEAM, c.LABEL_BUDGET, c.LABEL_THRESHOLD)
GUARD_GROUP_WAIT = "0s"
GUARD_GROUP_INTERVAL = "1m"
GUARD_REPEAT_INTERVAL = "5m"


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class Email:
    to: str
    server: EmailServer


@dataclass(frozen=True)
class Slack:
    url: SecretRef
    channel: str | None


@dataclass(frozen=True)
class PagerDuty:
    routing_key: SecretRef


@dataclass(frozen=True)
class Webhook:
    """A URL from a Secret (a team's contact) or a plain URL (the guard's Service)."""

    url_secret: SecretRef | None = None
    url: str | None = None


Sink = Email | Slack | PagerDuty | Webhook


@dataclass(frozen=True)
class Receiver:
    name: str
    sinks: tuple[Sink, ...]


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=" or "=~"
    value: str

    def text(self) -> str:
        """Alertmanager's matcher syntax; values are always double-quoted."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Route:
    object_name: str
    receiver: Receiver
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: str
    group_interval: str
    repeat_interval: str


def namespace(plan: Plan) -> str:
    return plan.notifications.namespace or plan.integrations.prometheus.namespace


def guard_namespace(plan: Plan) -> str:
    return plan.guard.namespace or plan.integrations.prometheus.namespace


def guard_webhook_url(plan: Plan) -> str:
    if plan.guard.webhook_url:
        return plan.guard.webhook_url
    return f"http://{c.GUARD_NAME}.{guard_namespace(plan)}.svc:{c.GUARD_PORT}{c.GUARD_WEBHOOK_PATH}"


def _ref(key: SecretKey) -> SecretRef:
    return SecretRef(name=key.name, key=key.key)


def _sinks(plan: Plan, team_name: str) -> tuple[Sink, ...]:
    team = plan.team(team_name)
    sinks: list[Sink] = []
    for contact in team.contacts:
        if contact.type == "email":
            assert contact.to is not None and plan.notifications.email is not None  # checks ensure both
            sinks.append(Email(to=contact.to, server=plan.notifications.email))
        elif contact.type == "slack":
            assert contact.secret is not None
            sinks.append(Slack(url=_ref(contact.secret), channel=contact.channel))
        elif contact.type == "pagerduty":
            assert contact.secret is not None
            sinks.append(PagerDuty(routing_key=_ref(contact.secret)))
        else:
            assert contact.secret is not None
            sinks.append(Webhook(url_secret=_ref(contact.secret)))
    return tuple(sinks)


def routes(plan: Plan) -> list[Route]:
    """The guard's route (when a budget enforces) first, then one per team with contacts."""
    n = plan.notifications
    out = []
    if enforces(plan):
        out.append(Route(
            object_name=object_name(plan.name, "guard"),
            receiver=Receiver(name=c.GUARD_NAME, sinks=(Webhook(url=guard_webhook_url(plan)),)),
            matchers=(Matcher(c.ALERT_NAME_LABEL, "=", c.ALERT_BUDGET_THRESHOLD),),
            group_by=GUARD_GROUP_BY,
            group_wait=GUARD_GROUP_WAIT,
            group_interval=GUARD_GROUP_INTERVAL,
            repeat_interval=GUARD_REPEAT_INTERVAL,
        ))
    for team in plan.teams:
        if not team.contacts:
            continue
        out.append(Route(
            object_name=object_name(plan.name, "team", team.name),
            receiver=Receiver(name=f"team-{team.name}", sinks=_sinks(plan, team.name)),
            matchers=(
                Matcher(c.ALERT_NAME_LABEL, "=~", "|".join(TEAM_ALERTS)),
                Matcher(c.LABEL_TEAM, "=", team.name),
            ),
            group_by=GROUP_BY,
            group_wait=n.group_wait,
            group_interval=n.group_interval,
            repeat_interval=n.repeat_interval,
        ))
    return out
