"""The diff of two rendered builds, cut to what a pull-request comment can hold."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from costplan.impact.compare import MAX_DIFF_CHARS, MAX_DIFF_LINES
from costplan.plan.model import (
    Plan,
)

# --------------------------------------------------------------------------
# Rendered-manifest diff (pure over file maps)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestDiff:
    changed_files: tuple[str, ...]
    text: str
    truncated_lines: int


def manifest_diff(
    before: Mapping[str, str], after: Mapping[str, str], max_lines: int = MAX_DIFF_LINES, max_chars: int = MAX_DIFF_CHARS
) -> ManifestDiff:
    """A unified diff of two rendered builds (path → text), cut to a size a comment can hold."""
    lines: list[str] = []
    changed = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        changed.append(path)
        lines.extend(
            difflib.unified_diff(
                (old or "").splitlines(),
                (new or "").splitlines(),
                fromfile=f"a/{path}" if old is not None else "/dev/null",
                tofile=f"b/{path}" if new is not None else "/dev/null",
                lineterm="",
            )
        )
    kept: list[str] = []
    size = 0
    for line in lines:
        if len(kept) >= max_lines or size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return ManifestDiff(tuple(changed), "\n".join(kept), len(lines) - len(kept))


def rendered_files(plan: Plan | None) -> dict[str, str]:
    """The exact files ``costplan build`` writes for one environment (none for an absent one)."""
    from costplan.output import build as build_stage
    from costplan.output import serialise as output

    if plan is None:
        return {}
    with build_stage.paused_gc():
        artifacts = build_stage.compile_plan(plan)
    return output.render_environment(artifacts, plan.name, plan.environment)


