"""The package's stages stay visible: no import cycle, no import from a lower stage to a higher one.

Stages, lower to higher: core < plan < generators < output < {install,
chargeback, impact, guard} < cli. A module may import its own stage or lower
ones; install, chargeback, impact and guard are peers and never import each other. Only
``cli`` prints or exits.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "costplan"
RANK = {"core": 0, "plan": 1, "generators": 2, "output": 3, "install": 4, "chargeback": 4, "impact": 4, "guard": 4, "cli": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """costplan modules imported by ``path`` (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("costplan"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("costplan"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_lives_in_a_stage():
    loose = sorted(m for m in _modules() if _stage(m) is None and m not in {"costplan", "costplan.__main__"})
    assert loose == []


def test_no_import_from_a_lower_stage_to_a_higher_one():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        here = _stage(name)
        if here is None:
            continue
        for target in _imports(path, modules):
            there = _stage(target)
            if there is None or there == here:
                continue
            if RANK[there] > RANK[here] or (RANK[there] == RANK[here]):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own submodules is not a cycle of stages, but a
    # submodule importing its package's __init__ back is: keep both directions honest.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_only_the_cli_prints_or_exits():
    offenders = []
    for name, path in _modules().items():
        if _stage(name) == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = (
                    func.id if isinstance(func, ast.Name)
                    else f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute) else ""
                )
                if called in {"print", "sys.exit", "click.echo", "exit"}:
                    offenders.append(f"{name}:{node.lineno} {called}")
    assert offenders == []
