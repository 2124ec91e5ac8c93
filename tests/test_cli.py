"""The command line as a user meets it: exit codes, streams, determinism, atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from costplan.cli.app import main
from tests.conftest import ROOT, schema_args


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A copy of the bundled plan and its environments, safe to break."""
    shutil.copy(ROOT / "costplan.yaml", tmp_path / "costplan.yaml")
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def build_args(workspace: Path, *extra: str) -> list[str]:
    return ["build", "-f", str(workspace / "costplan.yaml"), *schema_args(), *extra]


def test_version_and_help_list_only_real_commands():
    result = run("--help")
    assert result.exit_code == 0
    listing = result.output.split("Commands:")[1].splitlines()
    commands = [line.split()[0] for line in listing if line.startswith("  ") and not line.startswith("    ")]
    assert sorted(commands) == sorted(
        ["apply", "budget", "build", "check-gpu-prices", "diff", "doctor", "envs", "guard", "impact", "report",
         "schema", "validate"]
    )
    assert run("--version").output.startswith("costplan, version ")


def test_validate_the_bundled_plan_and_every_environment(workspace):
    result = run("validate", "-f", str(workspace / "costplan.yaml"), "--all-envs")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""


def test_envs_lists_the_overlays(workspace):
    assert run("envs", "-f", str(workspace / "costplan.yaml")).stdout.split() == ["dev", "fleet", "prod", "staging"]


def test_schema_prints_json_schema_on_stdout():
    result = run("schema")
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")


def test_build_all_envs_twice_is_byte_identical(workspace, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    assert run(*build_args(workspace, "--all-envs", "-o", str(first))).exit_code == 0
    assert run(*build_args(workspace, "--all-envs", "-o", str(second))).exit_code == 0
    a, b = tree(first), tree(second)
    assert a == b
    assert {p.split("/")[0] for p in a} == {"dev", "fleet", "prod", "staging", ".costplan-output"}
    assert all((first / env / "kustomization.yaml").is_file() for env in ("dev", "prod", "staging"))
    assert all((first / "fleet" / part / "kustomization.yaml").is_file()
               for part in ("clusters/eu-west", "clusters/us-east", "global"))


def test_kustomization_lists_exactly_the_manifests_written(workspace, tmp_path):
    out = tmp_path / "out"
    assert run(*build_args(workspace, "--env", "prod", "-o", str(out))).exit_code == 0
    listed = set(yaml.safe_load((out / "prod" / "kustomization.yaml").read_text())["resources"])
    for path in listed:
        doc = yaml.safe_load((out / "prod" / path).read_text())
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    on_disk = {str(p.relative_to(out / "prod")) for p in (out / "prod").rglob("*.yaml")}
    not_listed = on_disk - listed - {"kustomization.yaml"}
    for path in not_listed:  # only plain files (Helm values, rule files) stay out of kustomize
        assert "kind" not in (yaml.safe_load((out / "prod" / path).read_text()) or {}) or path.endswith(".rules.yaml")


def test_empty_overlays_change_nothing_but_the_environment_name(workspace, tmp_path):
    """Output depends on the environment only through what its overlay says."""
    for name in ("zzonezz", "zztwozz"):
        (workspace / "environments" / f"{name}.yaml").write_text("{}\n")
    one = run(*build_args(workspace, "--env", "zzonezz"))
    two = run(*build_args(workspace, "--env", "zztwozz"))
    assert one.exit_code == two.exit_code == 0
    assert "zztwozz" not in one.stdout
    assert one.stdout.replace("zzonezz", "ENV") == two.stdout.replace("zztwozz", "ENV")


def test_an_overlay_changes_exactly_what_it_says(workspace):
    """dev.yaml lowers two budgets: only the budget series and their alerts move."""
    (workspace / "environments" / "zzonezz.yaml").write_text("{}\n")
    (workspace / "environments" / "zztwozz.yaml").write_text(
        "teams:\n  - name: ml-research\n    budgets:\n      - name: monthly\n        amount: 123.45\n"
    )
    one = run(*build_args(workspace, "--env", "zzonezz")).stdout.replace("zzonezz", "ENV")
    two = run(*build_args(workspace, "--env", "zztwozz")).stdout.replace("zztwozz", "ENV")
    changed = [line for line in two.splitlines() if line not in set(one.splitlines())]
    # ml-research alerts at 50 %, 80 % and 100 % of 123.45: 61.725, 98.76, 123.45.
    amounts = ("123.45", "98.76", "61.725")
    assert changed and all(any(a in line for a in amounts) for line in changed), changed


def test_stdout_stream_is_only_kubernetes_objects(workspace):
    result = run(*build_args(workspace, "--env", "dev"))
    assert result.exit_code == 0
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert docs, "the stream has documents"
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs)


BROKEN = "teams:\n  - name: ml-research\n    tier: gold\n"


def test_invalid_plan_exits_3_with_positions_no_traceback_and_keeps_output(workspace, tmp_path):
    out = tmp_path / "out"
    assert run(*build_args(workspace, "--all-envs", "-o", str(out))).exit_code == 0
    before = tree(out)
    (workspace / "environments" / "dev.yaml").write_text(BROKEN)
    result = run(*build_args(workspace, "--all-envs", "-o", str(out)))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "environments/dev.yaml:3:11: /teams/0/tier:" in result.stderr
    assert tree(out) == before


def test_invalid_plan_streams_nothing_to_stdout(workspace):
    (workspace / "environments" / "dev.yaml").write_text(BROKEN)
    result = run(*build_args(workspace, "--env", "dev"))
    assert result.exit_code == 3 and result.stdout == ""


def test_validate_json_format_reports_on_stdout(workspace):
    (workspace / "environments" / "dev.yaml").write_text(BROKEN)
    result = run("validate", "-f", str(workspace / "costplan.yaml"), "--env", "dev", "--format", "json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["diagnostics"][0]["pointer"] == "/teams/0/tier"


def test_unknown_environment_is_a_usage_error(workspace):
    result = run("validate", "-f", str(workspace / "costplan.yaml"), "--env", "nope")
    assert result.exit_code == 2
    assert "nope" in result.stderr and "dev, fleet, prod, staging" in result.stderr


def test_env_and_all_envs_exclude_each_other(workspace):
    assert run("validate", "-f", str(workspace / "costplan.yaml"), "--env", "dev", "--all-envs").exit_code == 2


def test_a_missing_plan_file_is_reported_not_a_crash(tmp_path):
    result = run("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 3
    assert "nope.yaml:1:1: /: file not found [file-missing]" in result.stderr


def test_kubeconform_without_docker_says_so_clearly(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = run(*build_args(workspace, "--env", "dev", "-o", str(tmp_path / "o"), "--kubeconform"))
    assert result.exit_code == 2
    assert "docker" in result.stderr.lower()


def test_a_generated_object_that_breaks_its_schema_stops_the_build(workspace, tmp_path, monkeypatch):
    """If any generator emits an invalid object, exit 5 and write nothing."""
    from costplan import generators
    from costplan.core.artifacts import manifest

    out = tmp_path / "out"
    assert run(*build_args(workspace, "--env", "dev", "-o", str(out))).exit_code == 0
    before = tree(out)

    def broken(plan):
        return [manifest("x", {"apiVersion": "batch/v1", "kind": "CronJob",
                               "metadata": {"name": "bad", "namespace": "x"},
                               "spec": {"schedulee": "* * * * *", "jobTemplate": {}}})]

    monkeypatch.setattr(generators, "GENERATORS", generators.GENERATORS + (("broken", broken, generators.BOTH),))
    result = run(*build_args(workspace, "--env", "dev", "-o", str(out)))
    assert result.exit_code == 5
    assert "cronjob-bad" in result.stderr.lower() and "schedulee" in result.stderr
    assert tree(out) == before


def test_format_rules_writes_plain_prometheus_rule_files(workspace, tmp_path):
    out = tmp_path / "rules"
    result = run(*build_args(workspace, "--env", "prod", "--format", "rules", "-o", str(out)))
    assert result.exit_code == 0, result.stderr
    files = sorted(p.name for p in (out / "prod" / "prometheus").glob("*.rules.yaml"))
    assert "costplan-spend.rules.yaml" in files and "costplan-alerts.rules.yaml" in files
    spend = yaml.safe_load((out / "prod" / "prometheus" / "costplan-spend.rules.yaml").read_text())
    assert set(spend) == {"groups"} and spend["groups"][0]["name"] == "costplan-spend"
    assert not (out / "prod" / "kustomization.yaml").exists(), "rule files are not for kubectl: no empty kustomization"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_check_rules_runs_promtool_on_every_environment(workspace):
    result = run("-v", *build_args(workspace, "--all-envs", "--check-rules"))
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "promtool check rules: ok" in line] == [
        "dev: promtool check rules: ok",
        "fleet/clusters/eu-west: promtool check rules: ok", "fleet/clusters/us-east: promtool check rules: ok",
        "fleet/global: promtool check rules: ok",
        "prod: promtool check rules: ok", "staging: promtool check rules: ok"]


def test_check_rules_without_promtool_is_a_usage_error(workspace, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = run(*build_args(workspace, "--env", "dev", "--check-rules"))
    assert result.exit_code == 2 and "promtool" in result.stderr and result.stdout == ""


def test_without_schema_location_custom_resources_are_summarised_once(workspace, monkeypatch):
    monkeypatch.delenv("COSTPLAN_SCHEMA_LOCATION", raising=False)
    result = run("build", "-f", str(workspace / "costplan.yaml"), "--env", "dev")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "AuthPolicy kuadrant.io/v1" in warnings[0] and "--schema-location" in warnings[0]
    strict = run("build", "-f", str(workspace / "costplan.yaml"), "--env", "dev", "--strict-schemas")
    assert strict.exit_code == 5 and "no schema for AuthPolicy" in strict.stderr


def test_warnings_are_marked_and_do_not_fail_validation(workspace):
    plan = workspace / "costplan.yaml"
    plan.write_text(plan.read_text().replace("      kind: Gateway\n", "      kind: HTTPRoute\n", 1))
    result = run("validate", "-f", str(plan))
    assert result.exit_code == 0
    assert "/integrations/gateway/targetRef/kind: warning: a TelemetryPolicy can only target a Gateway" in result.stderr


def test_all_envs_build_equals_one_build_per_environment(workspace, tmp_path):
    # --all-envs shares the parsed base plan, validation and dumps of identical
    # objects between environments; the bytes must be those of separate builds.
    together = tmp_path / "together"
    assert run(*build_args(workspace, "--all-envs", "-o", str(together))).exit_code == 0
    for env in ("dev", "fleet", "prod", "staging"):
        alone = tmp_path / f"alone-{env}"
        assert run(*build_args(workspace, "-e", env, "-o", str(alone))).exit_code == 0
        assert tree(alone / env) == tree(together / env), env


def test_reused_validation_reports_each_environment_at_its_own_path(bundled_plan):
    from costplan.output.build import compile_plan
    from costplan.output.verify import ManifestValidator

    validator = ManifestValidator(schema_locations=[])
    separate = [ManifestValidator(schema_locations=[]).validate_all(compile_plan(bundled_plan(e))) for e in ("dev", "prod")]
    shared = [validator.validate_all(compile_plan(bundled_plan(e)), reuse=True) for e in ("dev", "prod")]
    assert shared == separate and shared[0]  # missing-schema warnings exist, each at its own file
