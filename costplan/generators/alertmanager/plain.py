"""The routing plan as a plain Alertmanager configuration file.

Secrets cannot be referenced by name outside the operator, so every Secret
key becomes a file: ``SECRETS_DIR/<secret>/<key>``, the layout the
Prometheus Operator uses for an Alertmanager's ``spec.secrets`` and the one
to mount the Secrets at elsewhere. Alertmanager 0.25 (Debian's package,
what ``amtool check-config`` runs here) reads Slack URLs, PagerDuty routing
keys and SMTP passwords from files but has no file form for a webhook URL,
so a team whose webhook URL is secret cannot be written in this format.
"""

from __future__ import annotations

from typing import Any

from costplan.core.errors import CostplanError
from costplan.generators.alertmanager import routing
from costplan.plan.model import Plan

SECRETS_DIR = "/etc/alertmanager/secrets"
NO_RECEIVER = "costplan-none"


class PlainConfigUnsupported(CostplanError):
    """The plan uses something the plain configuration cannot express."""


def secret_file(ref: routing.SecretRef) -> str:
    return f"{SECRETS_DIR}/{ref.name}/{ref.key}"


def _receiver(receiver: routing.Receiver) -> dict[str, Any]:
    out: dict[str, Any] = {"name": receiver.name}
    emails, slacks, pagers, hooks = [], [], [], []
    for sink in receiver.sinks:
        if isinstance(sink, routing.Email):
            emails.append({"send_resolved": True, "to": sink.to})
        elif isinstance(sink, routing.Slack):
            slack: dict[str, Any] = {"api_url_file": secret_file(sink.url), "send_resolved": True}
            if sink.channel:
                slack["channel"] = sink.channel
            slacks.append(slack)
        elif isinstance(sink, routing.PagerDuty):
            pagers.append({"routing_key_file": secret_file(sink.routing_key), "send_resolved": True})
        elif isinstance(sink, routing.Webhook):
            if sink.url is None:
                raise PlainConfigUnsupported(
                    f"receiver {receiver.name}: a webhook contact's URL is a Secret, and Alertmanager's "
                    "plain configuration has no file form for webhook URLs; use the AlertmanagerConfig "
                    "objects (costplan build) or a slack or pagerduty contact"
                )
            hooks.append({"send_resolved": True, "url": sink.url})
    for key, items in (("email_configs", emails), ("pagerduty_configs", pagers),
                       ("slack_configs", slacks), ("webhook_configs", hooks)):
        if items:
            out[key] = items
    return out


def _route(route: routing.Route) -> dict[str, Any]:
    return {
        # Every alert may also reach a later sibling: the guard's route must
        # not swallow the alerts that the team's route delivers.
        "continue": True,
        "group_by": list(route.group_by),
        "group_interval": route.group_interval,
        "group_wait": route.group_wait,
        "matchers": [m.text() for m in route.matchers],
        "receiver": route.receiver.name,
        "repeat_interval": route.repeat_interval,
    }


def plain_config(plan: Plan) -> dict[str, Any]:
    """A whole ``alertmanager.yml``; alerts no route takes go to a receiver that sends nothing."""
    routes = routing.routes(plan)
    n = plan.notifications
    config: dict[str, Any] = {}
    if n.email is not None:
        smtp: dict[str, Any] = {"smtp_from": n.email.sender, "smtp_smarthost": n.email.smarthost}
        if n.email.auth_username:
            smtp["smtp_auth_username"] = n.email.auth_username
        if n.email.auth_password:
            ref = routing.SecretRef(n.email.auth_password.name, n.email.auth_password.key)
            smtp["smtp_auth_password_file"] = secret_file(ref)
        config["global"] = smtp
    config["receivers"] = [{"name": NO_RECEIVER}] + [_receiver(r.receiver) for r in routes]
    config["route"] = {
        "group_by": list(routing.GROUP_BY),
        "group_interval": n.group_interval,
        "group_wait": n.group_wait,
        "receiver": NO_RECEIVER,
        "repeat_interval": n.repeat_interval,
        "routes": [_route(r) for r in routes],
    }
    return config
