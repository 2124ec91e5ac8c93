"""Usage → money: the Prometheus rule groups compiled from a plan.

``rule_groups(plan)`` returns plain Prometheus rule groups (dicts). The
``prometheus`` generator wraps them into PrometheusRule objects or plain
rules files. Modules, in evaluation order: ``prices`` (constant series and
the calendar), ``usage`` (every source normalised to one shape), ``volume``
(period-to-date volumes for non-linear prices), ``charges`` (money),
``budgets`` and ``alerts``.
"""

from __future__ import annotations

from costplan.spend.groups import rule_groups

__all__ = ["rule_groups"]
