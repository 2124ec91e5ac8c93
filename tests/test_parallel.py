"""Rendering in several processes writes the very bytes one process writes.

The build shares its objects out over forked children
(``costplan.output.parallel``); these tests run the CLI and the sharing in
fresh processes (a fork is used only when no other thread runs, which a
test process cannot promise).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from generate_plan import make_plan  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="rendering forks on Linux only")


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    """A plan with well over 100 objects per environment, in three environments that share most of them."""
    directory = tmp_path_factory.mktemp("parallel")
    (directory / "costplan.yaml").write_text(yaml.safe_dump(make_plan(teams=90, users_per_team=2, models=6)))
    (directory / "environments").mkdir()
    (directory / "environments" / "dev.yaml").write_text("metadata:\n  cluster: llm-dev\n")
    (directory / "environments" / "staging.yaml").write_text("budgets:\n  - name: company-monthly\n    amount: 5000\n")
    (directory / "environments" / "prod.yaml").write_text("metadata:\n  cluster: llm-prod\n")
    return directory / "costplan.yaml"


def test_every_number_of_jobs_writes_the_same_files(plan, tmp_path):
    trees = {}
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"jobs-{jobs}"
        result = run("-m", "costplan", "-q", "build", "-f", str(plan), "--all-envs", "-o", str(out), "--jobs", jobs)
        assert result.returncode == 0, result.stderr
        trees[jobs] = tree(out)
    assert len(trees["1"]) > 300
    assert trees["2"] == trees["1"]
    assert trees["3"] == trees["1"]


def test_shares_run_in_other_processes_and_come_back_in_order():
    script = textwrap.dedent(
        """
        import os
        from costplan.output import parallel
        items = list(range(230))
        results = parallel.map_shares(lambda share: [(item * 7, os.getpid()) for item in share], items, 3)
        assert [value for value, _ in results] == [item * 7 for item in items]
        pids = {pid for _, pid in results}
        assert len(pids) == 3 and os.getpid() in pids, pids
        assert {pid for _, pid in results[1::3]} != {os.getpid()}
        print("ok")
        """
    )
    result = run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_failing_share_fails_the_caller_with_its_own_exception():
    script = textwrap.dedent(
        """
        import os
        from costplan.output import parallel
        parent = os.getpid()
        def work(share):
            if os.getpid() != parent:
                raise ValueError(f"share of {len(share)} failed")
            return list(share)
        try:
            parallel.map_shares(work, list(range(120)), 2)
        except ValueError as exc:
            print(exc)
        """
    )
    result = run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "share of 60 failed"


def test_small_lists_and_one_job_stay_in_this_process():
    script = textwrap.dedent(
        """
        import os
        from costplan.output import parallel
        small = parallel.map_shares(lambda share: [os.getpid() for _ in share], list(range(60)), 4)
        single = parallel.map_shares(lambda share: [os.getpid() for _ in share], list(range(500)), 1)
        assert set(small) == set(single) == {os.getpid()}
        print("ok")
        """
    )
    result = run("-c", script)
    assert result.returncode == 0, result.stderr


def test_meanwhile_runs_here_while_every_share_is_worked_on_in_children():
    script = textwrap.dedent(
        """
        import os
        from costplan.output import parallel
        ran = []
        results = parallel.map_shares(lambda share: [os.getpid() for _ in share], list(range(200)), 2,
                                      meanwhile=lambda: ran.append(os.getpid()))
        assert ran == [os.getpid()], ran
        assert os.getpid() not in set(results) and len(set(results)) == 2, set(results)
        # A failing meanwhile drops the shares' results and raises its own exception.
        def refuse():
            raise RuntimeError("output invalid")
        try:
            parallel.map_shares(lambda share: list(share), list(range(200)), 2, meanwhile=refuse)
        except RuntimeError as exc:
            print(exc)
        # Nothing forks (one job): meanwhile still runs, first.
        order = []
        parallel.map_shares(lambda share: order.append("work") or list(share), list(range(200)), 1,
                            meanwhile=lambda: order.append("meanwhile"))
        assert order == ["meanwhile", "work"], order
        """
    )
    result = run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "output invalid"


def test_semantic_checks_run_beside_the_generators_and_decide(tmp_path):
    """The checks run in a child; their errors win over a generator's failure on the plan they reject."""
    (tmp_path / "costplan.yaml").write_text((ROOT / "costplan.yaml").read_text())
    broken = tmp_path / "broken.yaml"
    text = (ROOT / "costplan.yaml").read_text()
    broken.write_text(text.replace("tier: premium", "tier: platinum", 1))
    assert broken.read_text() != text
    script = textwrap.dedent(
        f"""
        import os
        from costplan.core.errors import PlanInvalid
        from costplan.output import build as stage
        from costplan.plan import checks
        parent = os.getpid()
        run_all = checks.run_all
        def spying(document, plan=None):
            found = run_all(document, plan)
            assert os.getpid() != parent, "the checks ran in the building process"
            return found
        checks.run_all = spying
        assert stage.build({str(tmp_path / "costplan.yaml")!r}, [None]).environments
        def crash(plan):
            raise KeyError("platinum")
        stage.compile_plan = crash
        try:
            stage.build({str(broken)!r}, [None])
        except PlanInvalid as invalid:
            print(sorted({{d.check_id for d in invalid.diagnostics}}))
        try:
            stage.build({str(tmp_path / "costplan.yaml")!r}, [None])
        except KeyError as exc:
            print("generator", exc)
        """
    )
    result = run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['unknown-reference']", "generator 'platinum'"]


def test_a_plan_with_schema_errors_is_schema_checked_once(tmp_path, monkeypatch):
    """The error path of the build's loading reports the schema's problems from the one check it ran."""
    from costplan.core.errors import PlanInvalid
    from costplan.plan import load, schema

    broken = tmp_path / "costplan.yaml"
    broken.write_text((ROOT / "costplan.yaml").read_text().replace("tier: premium", "tier: 7", 1))
    calls = []
    validate = schema.validate

    def counting(document):
        calls.append(1)
        return validate(document)

    monkeypatch.setattr(schema, "validate", counting)
    with pytest.raises(PlanInvalid) as invalid:
        load.load_plan_checking_aside(broken, None)
    assert {d.check_id for d in invalid.value.diagnostics} == {"schema"}
    assert len(calls) == 1
