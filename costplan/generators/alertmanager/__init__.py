"""Alert routing: each team's budget, forecast and anomaly alerts reach its contacts.

Two forms of one routing plan (``routing.py``):

* ``generate``: AlertmanagerConfig objects (monitoring.coreos.com/v1alpha1),
  one per team with contacts plus one that posts budget alerts to
  ``costplan guard``. They live in ``notifications.namespace`` (default
  Prometheus' namespace) and carry ``integrations.prometheus.ruleLabels``.
  The Prometheus Operator adds a ``namespace=<object's namespace>`` matcher to
  each object's route unless the Alertmanager's
  ``alertmanagerConfigMatcherStrategy`` is ``None`` or the objects are in the
  Alertmanager's own namespace with ``OnNamespaceExceptForAlertmanagerNamespace``;
  costplan's alerts come from recording rules and carry no ``namespace``
  label, so one of the two is required (README, alert routing).
* ``plain_config``: a whole Alertmanager configuration file for setups
  without the operator (``costplan build --format alertmanager``), with every
  Secret reference turned into a ``*_file`` path under ``SECRETS_DIR``.
"""

from __future__ import annotations

from typing import Any

from costplan.core.artifacts import Artifact, file, manifest
from costplan.generators.alertmanager import routing
from costplan.generators.alertmanager.plain import plain_config
from costplan.generators.common import WAVE_POLICIES, metadata
from costplan.plan.model import Plan, SecretKey

COMPONENT = "alertmanager"
PLAIN_FILE = "alertmanager.yaml"

__all__ = ["generate", "plain_artifacts", "plain_config", "alertmanager_configs"]


def _route(route: routing.Route, receiver: str) -> dict[str, Any]:
    return {
        "groupBy": list(route.group_by),
        "groupInterval": route.group_interval,
        "groupWait": route.group_wait,
        "matchers": [
            {"matchType": m.op, "name": m.name, "value": m.value} for m in route.matchers
        ],
        "receiver": receiver,
        "repeatInterval": route.repeat_interval,
    }


def _secret(ref: routing.SecretRef | SecretKey) -> dict[str, str]:
    """A SecretKeySelector; the operator reads the Secret from the object's namespace."""
    return {"key": ref.key, "name": ref.name}


def _receiver(receiver: routing.Receiver) -> dict[str, Any]:
    out: dict[str, Any] = {"name": receiver.name}
    emails, slacks, pagers, hooks = [], [], [], []
    for sink in receiver.sinks:
        if isinstance(sink, routing.Email):
            email: dict[str, Any] = {"from": sink.server.sender, "sendResolved": True,
                                     "smarthost": sink.server.smarthost, "to": sink.to}
            if sink.server.auth_username:
                email["authUsername"] = sink.server.auth_username
            if sink.server.auth_password:
                email["authPassword"] = _secret(sink.server.auth_password)
            emails.append(email)
        elif isinstance(sink, routing.Slack):
            slack: dict[str, Any] = {"apiURL": _secret(sink.url), "sendResolved": True}
            if sink.channel:
                slack["channel"] = sink.channel
            slacks.append(slack)
        elif isinstance(sink, routing.PagerDuty):
            pagers.append({"routingKey": _secret(sink.routing_key), "sendResolved": True})
        elif isinstance(sink, routing.Webhook):
            hook: dict[str, Any] = {"sendResolved": True}
            if sink.url_secret is not None:
                hook["urlSecret"] = _secret(sink.url_secret)
            else:
                hook["url"] = sink.url
            hooks.append(hook)
    for key, items in (("emailConfigs", emails), ("pagerdutyConfigs", pagers),
                       ("slackConfigs", slacks), ("webhookConfigs", hooks)):
        if items:
            out[key] = items
    return out


def alertmanager_configs(plan: Plan) -> list[dict[str, Any]]:
    namespace = routing.namespace(plan)
    labels = dict(plan.integrations.prometheus.rule_labels)
    objects = []
    for route in routing.routes(plan):
        objects.append({
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "AlertmanagerConfig",
            "metadata": metadata(plan, COMPONENT, route.object_name, namespace, labels=labels, wave=WAVE_POLICIES),
            "spec": {
                "receivers": [_receiver(route.receiver)],
                "route": _route(route, route.receiver.name),
            },
        })
    return objects


def generate(plan: Plan) -> list[Artifact]:
    return [manifest(COMPONENT, obj) for obj in alertmanager_configs(plan)]


def plain_artifacts(plan: Plan) -> list[Artifact]:
    """``alertmanager/alertmanager.yaml``: the plain configuration file."""
    return [file(COMPONENT, PLAIN_FILE, plain_config(plan))]
