"""The plan ⇄ document mappings stay in step: a plan written back reads as the same plan."""

from __future__ import annotations

import dataclasses

import pytest

from costplan.core.canonical_yaml import dump_yaml
from costplan.plan.document import from_document, plan_document
from costplan.plan.load import list_environments, load_plan
from costplan.plan.source import load_yaml_text
from tests.conftest import ROOT

PLANS = [ROOT / "costplan.yaml", ROOT / "tests" / "plans" / "every-key.yaml", ROOT / "tests" / "plans" / "minimal.yaml",
         ROOT / "tests" / "plans" / "budgets.yaml"]


def _reduced(plan):
    """The plan as ``plan_document`` keeps it: teams without users, namespaces, labels, budgets, contacts."""
    teams = tuple(dataclasses.replace(t, users=(), namespaces=(), labels={}, budgets=(), contacts=())
                  for t in plan.teams)
    return dataclasses.replace(plan, teams=teams)


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_plan_document_reads_back_as_the_same_plan(path):
    for env in [None, *list_environments(path)]:
        plan = load_plan(path, env)
        # Through the exact text the report ConfigMap carries, as the CronJob reads it.
        text = dump_yaml(plan_document(plan))
        again = from_document(load_yaml_text(text, "costplan.yaml").data, plan.environment)
        assert again == _reduced(plan), (path.name, env)


def test_the_round_trip_notices_a_dropped_field():
    plan = load_plan(ROOT / "costplan.yaml")
    document = plan_document(plan)
    document["models"][0].pop("namespace", None)
    document["currency"] = "EUR" if plan.currency != "EUR" else "USD"
    assert from_document(document, plan.environment) != _reduced(plan)
