"""Whether an applied object has done its job yet, from its live status.

Only kinds that report it are waited for; for everything else, having been
applied is all there is to know:

* Kuadrant policies (``kuadrant.io``, ``extensions.kuadrant.io``) set the
  Gateway API policy condition ``Accepted`` and Kuadrant's ``Enforced``
  (kuadrant-operator, ``PolicyConditionEnforced``; ``Enforced`` is removed
  while ``Accepted`` is false). Ready means both are ``True``: a policy that
  is accepted but not enforced does not limit or authenticate anything.
* CronJobs are ready once they exist (their Jobs run on schedule, later).
* Deployments are ready when their ``Available`` condition is ``True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costplan.install.objects import ObjectKey

_POLICY_GROUPS = {"kuadrant.io", "extensions.kuadrant.io"}


def reports_readiness(key: ObjectKey) -> bool:
    """Kinds ``apply --wait`` waits for."""
    return key.group in _POLICY_GROUPS and key.kind.endswith("Policy") or (
        key.group in ("batch", "apps") and key.kind in ("CronJob", "Deployment"))


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found = ((obj.get("status") or {}).get("conditions")) or []
    return {str(c.get("type")): c for c in found if isinstance(c, Mapping)}


def _describe(condition: Mapping[str, Any] | None, name: str) -> str:
    if condition is None:
        return f"no {name} condition yet"
    detail = condition.get("message") or condition.get("reason") or ""
    return f"{name}={condition.get('status')}" + (f": {detail}" if detail else "")


def readiness(key: ObjectKey, live: Mapping[str, Any] | None) -> tuple[bool, str]:
    """``(ready, why)`` for an object that reports readiness; ``why`` names what is missing."""
    if live is None:
        return False, "not found"
    if key.kind == "CronJob":
        return True, "created"
    conditions = _conditions(live)
    wanted = ("Available",) if key.kind == "Deployment" else ("Accepted", "Enforced")
    for name in wanted:
        condition = conditions.get(name)
        if condition is None or condition.get("status") != "True":
            return False, _describe(condition, name)
    return True, ", ".join(wanted)
