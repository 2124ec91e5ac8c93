"""A fleet's report: a ``cluster`` column and each team split by cluster, adding up exactly (hand-computed)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from costplan.chargeback import report
from costplan.plan.load import load_plan
from tests.conftest import PLAN

DAY1 = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
DAY2 = (datetime(2025, 3, 2, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC))
PERIOD = report.Period(DAY1[0], DAY2[1], "2025-03")
ML = {"team": "ml-research", "user": "premiumuser1", "tier": "premium", "model": "claude-sonnet"}
PLATFORM = {"team": "platform", "user": "batch-runner", "tier": "enterprise", "model": "mixtral-batch"}


def answer(*samples: tuple[str, dict, str]) -> dict:
    result = [{"metric": {"costplan_series": kind, **labels}, "value": [1, value]} for kind, labels, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def rows():
    plan = load_plan(PLAN)
    first = report.rows_from_answer(plan, *DAY1, answer(
        ("spend", {**ML, "cluster": "a"}, "1.00000000004"),       # rounds to 1.0000000000
        ("spend", {**ML, "cluster": "b"}, "2.00000000006"),       # rounds to 2.0000000001
        ("requests", {**ML, "cluster": "a", "source": "envoy-ai"}, "10"),
        ("requests", {**ML, "cluster": "b", "source": "envoy-ai"}, "5"),
        ("tokens", {**ML, "cluster": "b", "token_type": "input"}, "700"),
        ("spend", {**PLATFORM, "cluster": "a", "cost_center": "CC-0001"}, "2.5"),
    ), "test")
    second = report.rows_from_answer(plan, *DAY2, answer(
        ("spend", {**ML, "cluster": "b"}, "0.25"),
    ), "test")
    return plan, first + second


def test_rows_are_per_cluster_and_the_team_total_is_their_exact_sum():
    plan, all_rows = rows()
    assert [(r.team, r.cluster, str(r.cost)) for r in all_rows] == [
        ("ml-research", "a", "1.0000000000"),
        ("ml-research", "b", "2.0000000001"),
        ("platform", "a", "2.5000000000"),
        ("ml-research", "b", "0.2500000000"),
    ]
    by_team = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, PERIOD, all_rows, "team"))))
    # ml-research: 3.2500000001 in total (a 1.0000000000, b 2.2500000001) before platform's 2.5.
    assert [(r["team"], r["cluster"], r["cost"], r["requests"]) for r in by_team] == [
        ("ml-research", "b", "2.2500000001", "5"),
        ("ml-research", "a", "1.0000000000", "10"),
        ("platform", "a", "2.5000000000", "0"),
    ]
    by_cluster = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, PERIOD, all_rows, "cluster"))))
    assert [(r["cluster"], r["cost"]) for r in by_cluster] == [("a", "3.5000000000"), ("b", "2.2500000001")]


def test_json_splits_each_team_by_cluster_and_totals_clusters():
    plan, all_rows = rows()
    document = json.loads(report.chargeback_json(plan, PERIOD, all_rows))
    assert document["total"] == "5.7500000001"
    ml = next(line for line in document["byTeam"] if line["team"] == "ml-research")
    assert ml["cost"] == "3.2500000001" and ml["requests"] == "15"
    assert [(s["cluster"], s["cost"], s["requests"], s["tokens"]["input"]) for s in ml["clusters"]] == [
        ("b", "2.2500000001", "5", "700"), ("a", "1.0000000000", "10", "0")]
    assert [(line["cluster"], line["cost"]) for line in document["byCluster"]] == [
        ("a", "3.5000000000"), ("b", "2.2500000001")]
    assert {line["cluster"] for line in document["detail"]} == {"a", "b"}


def test_focus_names_the_series_cluster():
    plan, all_rows = rows()
    focus = list(csv.DictReader(io.StringIO(report.focus_csv(plan, all_rows))))
    assert [(r["ChargePeriodStart"][:10], r["x_Team"], r["x_Cluster"], r["BilledCost"]) for r in focus] == [
        ("2025-03-01", "ml-research", "a", "1.0000000000"),
        ("2025-03-01", "ml-research", "b", "2.0000000001"),
        ("2025-03-01", "platform", "a", "2.5000000000"),
        ("2025-03-02", "ml-research", "b", "0.2500000000"),
    ]
    assert json.loads(focus[1]["Tags"])["cluster"] == "b"


def test_output_files_add_the_cluster_view_only_for_fleets():
    plan, all_rows = rows()
    assert "chargeback-base-2025-03-by-cluster.csv" in report.output_files(plan, PERIOD, all_rows)
    single = report.rows_from_answer(
        plan, *DAY1, answer(("spend", PLATFORM, "1")), "test")
    files = report.output_files(plan, PERIOD, single)
    assert "chargeback-base-2025-03-by-cluster.csv" not in files
    assert "cluster" not in files["chargeback-base-2025-03-by-team.csv"].splitlines()[0]
