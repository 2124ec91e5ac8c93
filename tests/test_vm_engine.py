"""The rules costplan writes are accepted by VictoriaMetrics' vmalert, and the harness works.

Every environment's PrometheusRule objects (the goldens, which test_golden
keeps equal to the build) are unwrapped into plain rule files and checked
with ``vmalert -dryRun``. A sample imported with a timestamp into a
throw-away VictoriaMetrics is read back at that instant.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.vmserver import MISSING, VICTORIA_METRICS, VMALERT, dry_run, vm_server

GOLDEN = Path(__file__).parent / "golden"
ENVIRONMENTS = sorted(p.name for p in GOLDEN.iterdir() if (p / "prometheus").is_dir())


def rule_files(environment: str, out: Path) -> list[Path]:
    files = []
    for source in sorted((GOLDEN / environment / "prometheus").glob("prometheusrule-*.yaml")):
        doc = yaml.safe_load(source.read_text())
        target = out / source.name
        target.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}, sort_keys=False))
        files.append(target)
    return files


@pytest.mark.skipif(VMALERT is None, reason=MISSING)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_vmalert_dry_run_accepts_every_rule_file(environment, tmp_path):
    files = rule_files(environment, tmp_path)
    assert files
    dry_run(files)


@pytest.mark.skipif(VICTORIA_METRICS is None, reason=MISSING)
def test_imported_sample_is_read_back_at_its_timestamp(tmp_path):
    t = 1_700_000_000
    with vm_server(tmp_path) as vm:
        vm.import_prometheus(f'costplan_probe{{team="a"}} 1.25 {t * 1000}\n')
        result = vm.query("costplan_probe", at=t)
    assert [(r["metric"], r["value"][1]) for r in result] == [({"__name__": "costplan_probe", "team": "a"}, "1.25")]
