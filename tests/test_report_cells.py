"""Report CSV and FOCUS cells never carry a formula a spreadsheet would evaluate (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from costplan.chargeback import report
from costplan.chargeback.promapi import Sample

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC)
HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tx", "\rx"]


def rows(plan, user: str):
    spend = [Sample({"team": "platform", "user": user, "tier": "enterprise", "model": "mixtral-batch"}, Decimal("1.5"))]
    return report.rows_from_samples(plan, START, END, spend=spend)


@pytest.mark.parametrize("user", HOSTILE)
def test_formula_cells_are_neutralised_in_every_csv(bundled_plan, user):
    plan = bundled_plan()
    period = report.Period(START, END, "2026-10")
    data = rows(plan, user)
    for text in (report.chargeback_csv(plan, period, data, "detail"), report.chargeback_csv(plan, period, data, "user"),
                 report.focus_csv(plan, data)):
        table = list(csv.DictReader(io.StringIO(text, newline="")))
        user_cells = [row.get("user", row.get("x_User")) for row in table]
        assert user_cells == ["'" + user.replace("\r", "\n")]
        for row in table:
            for value in row.values():
                assert not value.startswith(("=", "+", "@", "\t", "\r", "\n")), value


def test_numbers_are_written_as_they_are():
    assert report.csv_cell("-1.500000") == "-1.500000"
    assert report.csv_cell("12") == "12"
    assert report.csv_cell("-x") == "'-x"
    assert report.csv_cell("alice") == "alice"


def test_money_cells_are_unchanged(bundled_plan):
    plan = bundled_plan()
    text = report.chargeback_csv(plan, report.Period(START, END, "2026-10"), rows(plan, "alice"), "team")
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["cost"] == "1.5000000000"  # the bundled plan prices to 10 decimals; nothing is prefixed
