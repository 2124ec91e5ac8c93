"""The chargeback report: periods, queries, rounding, CSV/JSON/FOCUS shaping, CronJobs."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from costplan.chargeback import report
from costplan.chargeback.gpu_check import check_gpu_prices
from costplan.chargeback.promapi import Sample
from costplan.cli.chargeback import report_command
from costplan.core.errors import ExitCode
from costplan.generators import reports
from costplan.output.verify import ManifestValidator
from costplan.plan.load import load_plan
from costplan.plan.model import Reports, SecretKey
from tests.conftest import CRD_SCHEMA_LOCATION, ENVIRONMENTS, needs_reference

UTC = UTC
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- periods ---------------------------------------------------------------


def test_month_in_berlin_follows_local_midnight_and_dst():
    period = report.month_period("2026-10", BERLIN)
    assert period.start == at("2026-09-30T22:00:00Z")  # CEST, UTC+2
    assert period.end == at("2026-10-31T23:00:00Z")  # CET again after 25 October
    parts = report.windows(period, BERLIN)
    assert len(parts) == 31
    lengths = [end - start for start, end in parts]
    assert lengths.count(timedelta(hours=25)) == 1
    assert parts[24] == (at("2026-10-24T22:00:00Z"), at("2026-10-25T23:00:00Z"))


def test_default_period_is_the_last_full_month_and_current_is_clipped(bundled_plan):
    plan = bundled_plan()  # UTC
    now = at("2026-11-15T08:30:00Z")
    last = report.choose_period(plan, None, None, None, now)
    assert (last.start, last.end, last.label) == (at("2026-10-01T00:00:00Z"), at("2026-11-01T00:00:00Z"), "2026-10")
    current = report.choose_period(plan, "current", None, None, now)
    assert (current.start, current.end) == (at("2026-11-01T00:00:00Z"), now)
    january = report.choose_period(plan, "last", None, None, at("2027-01-03T00:00:00Z"))
    assert january.label == "2026-12"


def test_custom_range_reads_naive_times_in_the_plan_timezone(bundled_plan):
    plan = bundled_plan("prod")  # Europe/Berlin
    period = report.choose_period(plan, None, "2026-10-01", "2026-10-02T12:00:00Z", at("2027-01-01T00:00:00Z"))
    assert period.start == at("2026-09-30T22:00:00Z")
    assert period.end == at("2026-10-02T12:00:00Z")
    with pytest.raises(report.PeriodError):
        report.choose_period(plan, None, "2026-10-02", "2026-10-01", at("2027-01-01T00:00:00Z"))
    with pytest.raises(report.PeriodError):
        report.choose_period(plan, "2026-13", None, None, at("2027-01-01T00:00:00Z"))


def test_window_query_reads_each_closed_hour_in_the_hour_after_it():
    query = report.spend_query(at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z"))
    # Queried at 02 Oct 01:00: steps 01 Oct 01:00 .. 02 Oct 01:00, each the hour before it.
    assert report.read_time(at("2026-10-02T00:00:00Z")) == at("2026-10-02T01:00:00Z")
    assert query == (
        "sum by (team, user, tier, model, cost_center, cluster) "
        "(sum_over_time(last_over_time(costplan:spend:increase1h[1h] offset 1s)[86399s:1h]))"
    )
    assert report.requests_query(at("2026-10-01T00:00:00Z"), at("2026-10-01T01:00:00Z")) == (
        "sum by (team, user, tier, model, cluster) "
        "(sum_over_time(last_over_time(costplan:usage_requests:increase1h[1h] offset 1s)[3599s:1h]))"
    )


# -- rows and rounding -----------------------------------------------------


def sample(value: str, **labels: str) -> Sample:
    return Sample(labels=labels, value=Decimal(value))


def test_rows_round_half_even_and_fill_the_cost_center(bundled_plan):
    plan = bundled_plan()
    start, end = at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z")
    rows = report.rows_from_samples(
        plan,
        start,
        end,
        spend=[
            sample("0.15000000000000002", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet"),
            sample("0.00000000025", team="platform", user="batch-runner", tier="enterprise", model="mixtral-batch", cost_center="CC-0001"),
        ],
        requests=[sample("11.999999999", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet")],
        tokens=[
            sample("20000", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet", token_type="input"),
            sample("5000.0000001", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet", token_type="output"),
        ],
    )
    # The plan's finest unit price has ten decimals (mixtral-batch: 1 per million x 0.8 ... and
    # cached tokens), so money keeps ten, rounded half-even.
    assert report.money_quantum(plan) == Decimal("0.0000000001")
    assert [(r.team, r.cost_center, r.cost) for r in rows] == [
        ("ml-research", "CC-1001", Decimal("0.1500000000")),
        ("platform", "CC-0001", Decimal("0.0000000002")),  # half-even: 0.00000000025 -> 0.0000000002
    ]
    assert rows[0].requests == Decimal(12)
    assert rows[0].tokens == {"input": Decimal(20000), "output": Decimal(5000)}


def test_money_keeps_the_precision_of_per_token_prices_and_totals_add_up(bundled_plan):
    # 0.15 per million tokens: one token costs 0.00000015; six decimals would print 0.000000.
    from costplan.plan.model import PerMillionTokens

    plan = bundled_plan()
    models = tuple(
        dataclasses.replace(m, pricing=PerMillionTokens(input=Decimal("0.15"), output=Decimal("0.6")))
        if m.name == "claude-sonnet" else m for m in plan.models
    )
    plan = dataclasses.replace(plan, models=models)
    start, end = at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z")
    rows = report.rows_from_samples(plan, start, end, spend=[
        sample("0.00000015", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet"),
        sample("0.00000045", team="ml-research", user="premiumuser2", tier="premium", model="claude-sonnet"),
    ], tokens=[
        sample("1", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet", token_type="input"),
        sample("2", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet", token_type="output"),
    ])
    period = report.month_period("2026-10", ZoneInfo("UTC"))
    detail = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, period, rows, "user"))))
    assert [r["cost"] for r in detail] == ["0.0000004500", "0.0000001500"]
    # total_tokens is all of a row's tokens, not only a source's "total" type.
    assert [r["total_tokens"] for r in detail] == ["0", "3"]
    team = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, period, rows, "team"))))
    assert [r["cost"] for r in team] == ["0.0000006000"]
    document = json.loads(report.chargeback_json(plan, period, rows))
    assert document["total"] == "0.0000006000"


def make_rows(plan):
    d1 = (at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z"))
    d2 = (at("2026-10-02T00:00:00Z"), at("2026-10-03T00:00:00Z"))
    row = report.UsageRow
    return [
        row(*d1, "ml-research", "premiumuser1", "premium", "claude-sonnet", "CC-1001", Decimal("1.2500000000"),
            Decimal(10), {"input": Decimal(200000), "output": Decimal(50000)}),
        row(*d2, "ml-research", "premiumuser2", "premium", "qwen3-0-6b", "CC-1001", Decimal("0.0020000000"), Decimal(1)),
        row(*d2, "platform", "batch-runner", "enterprise", "qwen3-0-6b", "CC-0001", Decimal("0.8000000000"), Decimal(500)),
    ]


def test_views_add_up_to_one_total(bundled_plan):
    plan = bundled_plan()
    rows = make_rows(plan)
    period = report.month_period("2026-10", UTC)
    assert report.chargeback_csv(plan, period, rows, "team") == (
        "period_start,period_end,team,cost_center,requests,input_tokens,output_tokens,cached_input_tokens,"
        "reasoning_tokens,total_tokens,cost,currency\n"
        "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,ml-research,CC-1001,11,200000,50000,0,0,250000,1.2520000000,USD\n"
        "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,platform,CC-0001,500,0,0,0,0,0,0.8000000000,USD\n"
    )
    document = json.loads(report.chargeback_json(plan, period, rows))
    assert document["total"] == "2.0520000000"
    assert [m["model"] for m in document["byModel"]] == ["claude-sonnet", "qwen3-0-6b"]
    assert [m["cost"] for m in document["byModel"]] == ["1.2500000000", "0.8020000000"]
    assert document["byCostCenter"] == [
        {"cost_center": "CC-1001", "cost": "1.2520000000", "requests": "11",
         "tokens": {"cached_input": "0", "input": "200000", "output": "50000", "reasoning": "0", "total": "250000"}},
        {"cost_center": "CC-0001", "cost": "0.8000000000", "requests": "500",
         "tokens": {"cached_input": "0", "input": "0", "output": "0", "reasoning": "0", "total": "0"}},
    ]
    assert len(document["byUser"]) == 3 and len(document["detail"]) == 3


def test_focus_rows(bundled_plan):
    plan = bundled_plan()
    out = list(csv.DictReader(io.StringIO(report.focus_csv(plan, make_rows(plan)))))
    assert len(out) == 3
    first, _, enterprise = out
    assert first["ChargePeriodStart"] == "2026-10-01T00:00:00Z"
    assert first["ChargePeriodEnd"] == "2026-10-02T00:00:00Z"
    assert first["BillingPeriodStart"] == "2026-10-01T00:00:00Z"
    assert first["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
    assert first["BilledCost"] == first["EffectiveCost"] == first["ListCost"] == "1.2500000000"
    assert first["PricingUnit"] == "1000000 Tokens"
    assert first["PricingQuantity"] == "0.25"
    assert first["ServiceCategory"] == "AI and Machine Learning"
    assert first["ChargeCategory"] == "Usage"
    assert first["BillingCurrency"] == "USD"
    assert first["ProviderName"] == "anthropic"
    assert (first["x_Team"], first["x_User"], first["x_Tier"], first["x_Model"]) == (
        "ml-research", "premiumuser1", "premium", "claude-sonnet")
    assert json.loads(first["Tags"]) == {"cost_center": "CC-1001", "team": "ml-research", "tier": "premium",
                                         "user": "premiumuser1"}
    # Enterprise pays 0.8 of list: 0.80 billed is 1.00 at list price.
    assert enterprise["BilledCost"] == "0.8000000000"
    assert enterprise["ListCost"] == "1.0000000000"
    assert (enterprise["PricingQuantity"], enterprise["PricingUnit"]) == ("500", "Requests")
    assert all(name.startswith("x_") for name in report.FOCUS_COLUMNS[report.FOCUS_COLUMNS.index("x_Team"):])


# -- GPU price check ---------------------------------------------------------


def test_gpu_price_check(bundled_plan):
    plan = bundled_plan()
    good = [
        sample("1.006", node="n1", instance_type="g5.xlarge"),
        sample("4.0965750000001", node="n2", instance_type="p4d.24xlarge"),
        sample("9", node="n3", instance_type="m5.large"),
    ]
    problems, notes = check_gpu_prices(plan, good)
    assert problems == []
    assert notes == ["node n3: instance type m5.large is not in the plan; not checked"]
    # 1.006 / 730 = 0.001378082...: the engine read the hourly price as monthly.
    problems, _ = check_gpu_prices(plan, [sample("0.0013780821917808", node="n1", instance_type="g5.xlarge")])
    assert len(problems) == 1 and "730 times too low" in problems[0]
    problems, _ = check_gpu_prices(plan, [])
    assert "no node_gpu_hourly_cost" in problems[0]


# -- the command, without a server -------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_prometheus_is_a_clear_error():
    url = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(
        report_command, ["-f", "costplan.yaml", "--prometheus-url", url, "--month", "2025-03"]
    )
    assert result.exit_code == ExitCode.EXTERNAL
    assert f"cannot reach Prometheus at {url}" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_bad_month_is_a_usage_error():
    result = CliRunner().invoke(report_command, ["-f", "costplan.yaml", "--month", "October"])
    assert result.exit_code == ExitCode.USAGE
    assert "--month wants YYYY-MM" in result.stderr


# -- generated objects ---------------------------------------------------------


@needs_reference
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_report_objects_validate(bundled_plan, env):
    artifacts = reports.generate(bundled_plan(env))
    problems = ManifestValidator(schema_locations=[CRD_SCHEMA_LOCATION], strict=True).validate_all(artifacts)
    assert [p for p in problems if p.severity == "error"] == []
    kinds = sorted(a.kind for a in artifacts)
    assert kinds == ["ConfigMap", "CronJob", "CronJob", "PersistentVolumeClaim", "ServiceAccount"]
    # No API access is needed: no RBAC, no token.
    assert not any(a.kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding") for a in artifacts)


def test_report_cronjob_runs_costplan_report_on_the_plans_schedule(bundled_plan):
    plan = bundled_plan("prod")
    job = next(a.data for a in reports.generate(plan) if a.kind == "CronJob" and a.name == "costplan-report")
    assert job["spec"]["schedule"] == "0 6 1 * *"
    assert job["spec"]["timeZone"] == "Europe/Berlin"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["args"] == ["report", "-f", "/etc/costplan/costplan.yaml", "-e", "prod",
                                 "--month", "last", "--output-dir", "/reports"]
    assert container["env"] == []
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["reports"]["persistentVolumeClaim"]["claimName"] == "costplan-reports"
    assert volumes["plan"]["configMap"]["items"][1] == {"key": "environment.yaml", "path": "environments/prod.yaml"}


def test_webhook_url_comes_from_a_secret(bundled_plan):
    plan = dataclasses.replace(
        bundled_plan("prod"),
        reports=Reports(webhook=SecretKey("finance-webhook", "url"), create_pvc=False, pvc_claim="existing"),
    )
    artifacts = reports.generate(plan)
    assert not any(a.kind == "PersistentVolumeClaim" for a in artifacts)
    job = next(a.data for a in artifacts if a.kind == "CronJob" and a.name == "costplan-report")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "COSTPLAN_WEBHOOK_URL", "valueFrom": {"secretKeyRef": {"name": "finance-webhook", "key": "url"}}}
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_shipped_plan_loads_back_equal(bundled_plan, env, tmp_path: Path):
    plan = bundled_plan(env)
    data = next(a.data for a in reports.generate(plan) if a.name == "costplan-plan")["data"]
    (tmp_path / "environments").mkdir()
    (tmp_path / "costplan.yaml").write_text(data["costplan.yaml"])
    (tmp_path / "environments" / f"{env}.yaml").write_text(data["environment.yaml"])
    shipped = load_plan(tmp_path / "costplan.yaml", env)
    assert all(not team.users for team in shipped.teams), "user lists stay out of the cluster copy"
    reduced = tuple(
        dataclasses.replace(team, users=(), namespaces=(), labels={}, budgets=()) for team in plan.teams
    )
    assert shipped == dataclasses.replace(plan, teams=reduced)


def _containers(plan) -> dict[str, dict]:
    return {a.name: a.data["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            for a in reports.generate(plan) if a.kind == "CronJob"}


def test_report_job_resources_come_from_the_plan_and_a_lone_limit_lowers_the_request(tmp_path: Path, bundled_plan):
    # The report's memory follows the users: a large plan raises its limit. A plan that only lowers the
    # limit below the default request (128Mi) gets that limit as its request, which the API server
    # accepts; the GPU check keeps its own small defaults either way.
    (tmp_path / "environments").mkdir()
    plan_text = (Path(__file__).parent / "plans" / "minimal.yaml").read_text(encoding="utf-8")
    (tmp_path / "costplan.yaml").write_text(
        plan_text + "reports:\n  resources:\n    requests:\n      cpu: 250m\n    limits:\n      memory: 64Mi\n",
        encoding="utf-8")
    plan = load_plan(tmp_path / "costplan.yaml")
    containers = _containers(dataclasses.replace(bundled_plan("prod"), reports=plan.reports))
    assert containers["costplan-report"]["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    assert containers["costplan-gpu-price-check"]["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    # The jobs' own copy of the plan carries the resources, and reads back the same.
    data = next(a.data for a in reports.generate(plan) if a.name == "costplan-plan")["data"]
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "costplan.yaml").write_text(data["costplan.yaml"], encoding="utf-8")
    assert load_plan(tmp_path / "copy" / "costplan.yaml").reports.resources == plan.reports.resources


def test_gpu_price_check_cronjob(bundled_plan):
    job = next(a.data for a in reports.generate(bundled_plan("dev")) if a.name == "costplan-gpu-price-check")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["check-gpu-prices", "-f", "/etc/costplan/costplan.yaml", "-e", "dev"]


def test_a_teams_gpu_hours_are_in_its_monthly_report(bundled_plan):
    # The hourly rules record a team's namespace GPU cost as its own charge (charge="gpu", no user or
    # model): 2 GPUs x 3 h x 1.006 = 6.036 next to 1.5 of requests. The team's line is their sum.
    plan = bundled_plan()
    start, end = at("2026-10-01T00:00:00Z"), at("2026-10-02T00:00:00Z")
    rows = report.rows_from_samples(plan, start, end, spend=[
        sample("1.5", team="ml-research", user="premiumuser1", tier="premium", model="claude-sonnet"),
        sample("6.036", team="ml-research", cost_center="CC-1001"),
    ])
    period = report.month_period("2026-10", ZoneInfo("UTC"))
    team = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, period, rows, "team"))))
    assert [(r["team"], r["cost"]) for r in team] == [("ml-research", "7.5360000000")]
    detail = list(csv.DictReader(io.StringIO(report.chargeback_csv(plan, period, rows, "detail"))))
    assert {(r["user"], r["model"], r["cost"]) for r in detail} == {
        ("", "", "6.0360000000"), ("premiumuser1", "claude-sonnet", "1.5000000000")}


def _fleet_jobs(bundled_plan, **metrics) -> dict[str, dict]:
    from costplan.plan import fleet

    plan = bundled_plan("fleet")
    plan = dataclasses.replace(plan, metrics=dataclasses.replace(plan.metrics, **metrics))
    return {a.name: a.data for a in reports.generate(fleet.global_plan(plan)) if a.kind == "CronJob"}


def test_fleet_report_jobs_read_the_global_engine_with_its_tenant_and_a_mounted_token(bundled_plan):
    from costplan.cli.chargeback import check_gpu_prices_command

    jobs = _fleet_jobs(bundled_plan, tenant="finance")
    commands = {"costplan-report": report_command, "costplan-gpu-price-check": check_gpu_prices_command}
    for name, job in jobs.items():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        args = container["args"]
        assert args[args.index("--tenant") + 1] == "finance"
        token_file = args[args.index("--bearer-token-file") + 1]
        assert token_file == "/var/run/secrets/costplan.dev/metrics/token"
        mount = next(m for m in container["volumeMounts"] if m["name"] == "metrics-token")
        assert mount == {"name": "metrics-token", "mountPath": "/var/run/secrets/costplan.dev/metrics", "readOnly": True}
        volume = next(v for v in pod["volumes"] if v["name"] == "metrics-token")
        assert volume["secret"] == {"secretName": "costplan-metrics-reader", "items": [{"key": "token", "path": "token"}]}
        assert container["env"] == [] or all("valueFrom" in e for e in container["env"])  # no token in the spec
        context = commands[name].make_context(name, list(args[1:]))  # the job's arguments parse
        assert context.params["tenant"] == "finance" and context.params["bearer_token_file"] == token_file


def test_fleet_report_jobs_without_a_tenant_or_token_pass_neither(bundled_plan):
    for job in _fleet_jobs(bundled_plan, tenant=None, bearer_token=None).values():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert "--tenant" not in args and "--bearer-token-file" not in args
        assert not any(v["name"] == "metrics-token" for v in pod["volumes"])
