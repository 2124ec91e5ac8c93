"""Environment overlays: the merge rules the README promises, and provenance."""

from __future__ import annotations

from decimal import Decimal

from costplan.plan.merge import merge
from costplan.plan.source import load_yaml_text, locate

BASE = """\
metadata:
  name: p
  currency: USD
tiers:
  - name: free
    limits:
      requests:
        - limit: 2
          window: 10s
  - name: premium
teams:
  - name: a
    namespaces: [a1, a2]
    budgets:
      - name: monthly
        amount: 10
      - name: daily
        amount: 1
"""


def merged(overlay: str):
    base = load_yaml_text(BASE, "base.yaml").data
    over = load_yaml_text(overlay, "env.yaml").data
    problems: list = []
    return merge(base, over, problems), problems


def test_maps_merge_deeply_and_keep_untouched_keys():
    doc, problems = merged("metadata:\n  currency: EUR\n")
    assert problems == []
    assert doc["metadata"] == {"name": "p", "currency": "EUR"}


def test_named_list_items_merge_by_name_and_new_items_are_appended():
    doc, _ = merged("teams:\n  - name: a\n    budgets:\n      - name: monthly\n        amount: 20.5\n  - name: b\n")
    assert [t["name"] for t in doc["teams"]] == ["a", "b"]
    budgets = doc["teams"][0]["budgets"]
    assert budgets[0] == {"name": "monthly", "amount": Decimal("20.5")}
    assert budgets[1] == {"name": "daily", "amount": 1}
    assert doc["teams"][0]["namespaces"] == ["a1", "a2"]


def test_lists_of_scalars_are_replaced_not_concatenated():
    doc, _ = merged("teams:\n  - name: a\n    namespaces: [z]\n")
    assert doc["teams"][0]["namespaces"] == ["z"]


def test_patch_delete_removes_a_named_item_and_a_key():
    doc, problems = merged(
        "teams:\n  - name: a\n    budgets:\n      - name: daily\n        $patch: delete\n"
        "tiers:\n  - name: free\n    limits:\n      $patch: delete\n"
    )
    assert problems == []
    assert [b["name"] for b in doc["teams"][0]["budgets"]] == ["monthly"]
    assert "limits" not in doc["tiers"][0]


def test_patch_replace_replaces_instead_of_merging():
    doc, _ = merged("tiers:\n  - name: free\n    $patch: replace\n    description: new\n")
    assert doc["tiers"][0] == {"name": "free", "description": "new"}


def test_deleting_what_does_not_exist_is_reported_in_the_overlay():
    _, problems = merged("teams:\n  - name: nope\n    $patch: delete\n")
    assert [(p.file, p.line, p.check_id) for p in problems] == [("env.yaml", 2, "overlay")]


def test_overlay_item_without_name_is_reported():
    _, problems = merged("teams:\n  - costCenter: x\n")
    assert [(p.file, p.line, p.pointer) for p in problems] == [("env.yaml", 2, "/teams/0")]


def test_positions_point_into_the_file_that_supplied_the_value():
    doc, _ = merged("teams:\n  - name: a\n    budgets:\n      - name: monthly\n        amount: 20\n")
    amount = locate(doc, ["teams", 0, "budgets", 0, "amount"])
    assert (amount.file, amount.line) == ("env.yaml", 5)
    untouched = locate(doc, ["teams", 0, "budgets", 1, "amount"])
    assert (untouched.file, untouched.line) == ("base.yaml", 18)
    currency = locate(doc, ["metadata", "currency"])
    assert (currency.file, currency.line, currency.column) == ("base.yaml", 3, 13)


def test_no_patch_directive_survives_the_merge():
    doc, _ = merged("teams:\n  - name: c\n    $patch: replace\n    tier: free\n")
    assert "$patch" not in doc["teams"][-1]
