"""Running promtool (Prometheus 2.42) on generated rules.

promtool reads plain rules files, not PrometheusRule objects, so the groups
are written to a temporary directory first. Used by the build's optional
verification and by the tests; nothing here decides an exit code.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from costplan.core.errors import ToolMissing

RULES_FILE = "rules.yaml"
TESTS_FILE = "tests.yaml"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class PromtoolMissing(ToolMissing):
    """promtool is not on the PATH."""


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str  # stdout and stderr, as promtool printed them

    def __bool__(self) -> bool:
        return self.ok


def executable() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise PromtoolMissing("promtool not found on PATH (Debian package 'prometheus')")
    return path


def _dump(path: Path, data: Any) -> None:
    path.write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1 << 30))


def _run(args: list[str], cwd: Path, timeout: float) -> Result:
    proc = subprocess.run([executable(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def check_rules(groups: Sequence[Mapping[str, Any]], timeout: float = 60) -> Result:
    """``promtool check rules`` on the groups (syntax, types, duplicate rules)."""
    with tempfile.TemporaryDirectory(prefix="costplan-promtool-") as tmp:
        _dump(Path(tmp) / RULES_FILE, {"groups": list(groups)})
        return _run(["check", "rules", RULES_FILE], Path(tmp), timeout)


def test_rules(groups: Sequence[Mapping[str, Any]], tests: Mapping[str, Any], timeout: float = 300) -> Result:
    """``promtool test rules`` with ``tests`` (the test file minus ``rule_files``).

    Groups are evaluated in the order given (``group_eval_order``), as the
    rules were written to be read; promtool's own order is not the file's.
    """
    order = [g["name"] for g in groups]
    with tempfile.TemporaryDirectory(prefix="costplan-promtool-") as tmp:
        _dump(Path(tmp) / RULES_FILE, {"groups": list(groups)})
        _dump(Path(tmp) / TESTS_FILE, {"rule_files": [RULES_FILE], "group_eval_order": order, **tests})
        return _run(["test", "rules", TESTS_FILE], Path(tmp), timeout)


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
