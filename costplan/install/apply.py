"""Execute a change list against a ``Cluster``, Ansible style.

The same steps serve three commands: read the live state and the ApplySet
parent, ask the server for a dry-run apply of every object, and compute the
change list (``changes.plan_changes``). Then ``diff`` prints it,
``apply --check`` reports it, and ``apply`` executes it. Because check and
diff use the server's dry run (``dryRun=All``) rather than a client-side
simulation, what they report is what the API server would really do,
including admission and defaulting.

Every object gets one line on stderr (``ok``/``changed``/``created``/
``pruned``/``skipped``/``failed``), then a ``RECAP`` line with the counts. A
failing object does not stop the others, but nothing is pruned after a
failure: a partial apply must never delete what it could not replace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from costplan import __version__
from costplan.core import conventions as c
from costplan.core.artifacts import Artifact
from costplan.core.canonical_yaml import dump_yaml
from costplan.install import changes as ch
from costplan.install.applyset import (
    ApplySet,
    Inventory,
    inventory_of,
    parent_body,
    parent_inventory,
    parent_problem,
    union,
    with_applyset_label,
)
from costplan.install.cluster import ApplyConflict, Cluster, ClusterError
from costplan.install.objects import ObjectKey, key_of, split_group_kind

MODE_DIFF = "diff"
MODE_CHECK = "check"
MODE_APPLY = "apply"

CONFLICT_REMEDIES = (
    "  Other field managers own these fields with different values. Either:\n"
    "  * re-run with --force-conflicts to take the fields over (costplan becomes their manager);\n"
    "  * stop setting these fields from the plan, so their current managers keep them; or\n"
    "  * make the plan set the same values they have now, to co-own the fields (costplan\n"
    "    becomes their only manager once the others stop managing them)."
)

_LINE_WORDS = {
    ch.ACTION_UNCHANGED: "ok",
    ch.ACTION_UPDATE: "changed",
    ch.ACTION_CREATE: "created",
    ch.ACTION_PRUNE: "pruned",
}


@dataclass
class Options:
    """What the command line asked for."""

    mode: str = MODE_APPLY
    show_diff: bool = False
    prune: bool = True
    force_conflicts: bool = False


@dataclass
class Outcome:
    """The result of a run, for the CLI to turn into an exit code."""

    recap: ch.Recap
    changes: list[ch.Change] = field(default_factory=list)
    pending: bool = False

    @property
    def failed(self) -> bool:
        return self.recap.failed > 0


def desired_objects(artifacts: Iterable[Artifact]) -> list[dict[str, Any]]:
    """The manifests of a build as plain JSON-compatible dicts; plain files are never applied.

    A round trip through the canonical YAML turns exact decimals and the
    loader's position-carrying containers into types every client can send.
    """
    return [yaml.safe_load(dump_yaml(a.data)) for a in artifacts if a.is_manifest]


class _Printer:
    def __init__(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        self.out = out
        self.err = err

    def line(self, word: str, key: Any, note: str = "") -> None:
        self.err(f"{word}: {key}" + (f" ({note})" if note else ""))


def _conflict_text(message: str) -> str:
    return f"conflict: {message}\n{CONFLICT_REMEDIES}"


@dataclass
class _Planned:
    changes: list[ch.Change]
    failures: dict[ObjectKey, str]
    parent: dict[str, Any] | None
    previous: Inventory
    desired: Inventory


def _plan(cluster: Cluster, bodies: list[dict[str, Any]], applyset: ApplySet, options: Options) -> _Planned:
    """Read live state and dry-run every apply: everything ``diff`` needs, nothing written."""
    set_id = applyset.id
    parent = cluster.get("v1", "ConfigMap", applyset.name, applyset.namespace)
    problem = parent_problem(parent, set_id)
    if problem:
        raise ClusterError(problem)
    previous = parent_inventory(parent, set_id)
    keys = [key_of(b) for b in bodies]
    found = inventory_of(set_id, keys)
    desired = Inventory(set_id, found.group_kinds, found.namespaces | {applyset.namespace})
    everything = union(previous, desired)

    live: dict[ObjectKey, Mapping[str, Any] | None] = {}
    for body, key in zip(bodies, keys, strict=True):
        live[key] = cluster.get(body["apiVersion"], key.kind, key.name, key.namespace)
    namespaces = sorted(everything.namespaces)
    for gk in sorted(everything.group_kinds):
        group, kind = split_group_kind(gk)
        for obj in cluster.list(group, kind, namespaces, f"{c.LABEL_APPLYSET_PART_OF}={set_id}"):
            live.setdefault(key_of(obj), obj)

    # Objects in a namespace this run creates cannot be dry-run yet (the
    # server would answer "namespace not found"); they are estimated offline.
    new_namespaces = {k.name for k in keys if k.kind == "Namespace" and not k.group and live.get(k) is None}
    predicted: dict[ObjectKey, Mapping[str, Any]] = {}
    failures: dict[ObjectKey, str] = {}
    for body, key in zip(bodies, keys, strict=True):
        if key.namespace in new_namespaces:
            continue
        try:
            predicted[key] = cluster.apply(body, dry_run=True, force_conflicts=options.force_conflicts)
        except ApplyConflict as exc:
            failures[key] = _conflict_text(str(exc))
        except ClusterError as exc:
            failures[key] = str(exc)
    changes = ch.plan_changes(bodies, live, everything, predicted)
    return _Planned(changes, failures, parent, previous, desired)


def _prune_skip_reason(change: ch.Change, options: Options, failed: bool) -> str | None:
    if change.keep:
        return f"kept: {c.ANNOTATION_KEEP}=true"
    if not options.prune:
        return "pruning disabled"
    if failed:
        return "not pruned after a failure"
    return None


def _release_namespace(cluster: Cluster, change: ch.Change) -> None:
    """Drop costplan's labels from a namespace instead of deleting it.

    A team namespace holds workloads costplan never applied (model servers,
    GPU jobs); deleting it would delete them. Applying an empty body as
    ``costplan`` removes exactly the fields costplan owns, the ApplySet label
    among them, so the namespace leaves the set and everything else stays.
    """
    cluster.apply(
        {"apiVersion": change.api_version or "v1", "kind": "Namespace", "metadata": {"name": change.key.name}},
        force_conflicts=False,
    )


def _execute(cluster: Cluster, change: ch.Change, options: Options) -> None:
    if change.action in (ch.ACTION_CREATE, ch.ACTION_UPDATE) and change.body is not None:
        cluster.apply(change.body, force_conflicts=options.force_conflicts)
    elif change.action == ch.ACTION_PRUNE:
        if change.key.kind == "Namespace" and not change.key.group:
            _release_namespace(cluster, change)
        else:
            cluster.delete(change.api_version, change.key.kind, change.key.name, change.key.namespace)


def run(
    cluster: Cluster,
    desired: list[dict[str, Any]],
    applyset: ApplySet,
    options: Options,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> Outcome:
    """Diff, check or apply ``desired`` (plain manifests) as members of ``applyset``.

    ``out`` receives data (unified diffs), ``err`` one line per object and
    the ``RECAP``. Cluster errors are reported as failed lines, never raised.
    """
    printer = _Printer(out, err)
    recap = ch.Recap()
    bodies = [with_applyset_label(obj, applyset.id) for obj in desired]

    missing: list[str]
    try:
        missing = cluster.missing_crds({key_of(b).group_kind for b in bodies})
    except ClusterError as exc:
        missing, recap.failed = [], 1
        err(f"failed: cannot check CustomResourceDefinitions: {exc}")
    if missing or recap.failed:
        for name in missing:
            err(f"failed: CustomResourceDefinition missing: {name}")
        recap.failed += len(missing)
        recap.skipped = len(bodies)
        err("nothing was applied: install the missing CustomResourceDefinitions first" if missing
            else "nothing was applied")
        err(recap.line())
        return Outcome(recap)

    try:
        planned = _plan(cluster, bodies, applyset, options)
    except ClusterError as exc:
        recap.failed = 1
        recap.skipped = len(bodies)
        err(f"failed: {applyset}: {exc}")
        err(recap.line())
        return Outcome(recap)

    outcome = Outcome(recap, planned.changes)
    if options.mode == MODE_APPLY:
        _apply(cluster, planned, applyset, options, printer, outcome)
    else:
        _report(planned, options, printer, outcome)
    err(recap.line())
    return outcome


def _count(recap: ch.Recap, action: str) -> None:
    word = _LINE_WORDS[action]
    setattr(recap, word, getattr(recap, word) + 1)


def _failed_or_skipped(
    change: ch.Change, planned: _Planned, options: Options, failed: bool, recap: Any, printer: _Printer
) -> bool:
    """Report a change that failed while planning, or a prune that must not run; True if so."""
    if change.key in planned.failures:
        recap.failed += 1
        printer.line("failed", change.key)
        printer.err("  " + planned.failures[change.key].replace("\n", "\n  ").rstrip())
        return True
    if change.action == ch.ACTION_PRUNE:
        reason = _prune_skip_reason(change, options, failed)
        if reason:
            recap.skipped += 1
            printer.line("skipped", change.key, reason)
            return True
    return False


def _report(planned: _Planned, options: Options, printer: _Printer, outcome: Outcome) -> None:
    """``diff`` and ``apply --check``: say what would happen, change nothing."""
    recap = outcome.recap
    show_diff = options.show_diff or options.mode == MODE_DIFF
    failed = bool(planned.failures)
    for change in planned.changes:
        if _failed_or_skipped(change, planned, options, failed, recap, printer):
            continue
        _count(recap, change.action)
        printer.line(_LINE_WORDS[change.action], change.key)
        if change.action != ch.ACTION_UNCHANGED:
            outcome.pending = True
            if show_diff:
                printer.out(change.diff)


def _after_change(change: ch.Change) -> str:
    """The object's own note on what an update needs to take effect (e.g. a restart)."""
    if change.action != ch.ACTION_UPDATE or change.body is None:
        return ""
    return str(((change.body.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_AFTER_CHANGE, ""))


def _write_parent(cluster: Cluster, applyset: ApplySet, inventory: Inventory) -> None:
    cluster.apply(parent_body(applyset, inventory, __version__))


def _apply(
    cluster: Cluster, planned: _Planned, applyset: ApplySet, options: Options, printer: _Printer, outcome: Outcome
) -> None:
    """Record the set first (so an interrupted run can still prune), apply, prune, then shrink the record."""
    recap = outcome.recap
    superset = union(planned.previous, planned.desired)
    # On a fresh cluster the parent's own namespace may be one this run
    # creates: create it first, or the parent (and so every object) fails.
    early = [ch_ for ch_ in planned.changes if ch_.action == ch.ACTION_CREATE and ch_.key.kind == "Namespace"
             and not ch_.key.group and ch_.key.name == applyset.namespace and ch_.key not in planned.failures]
    if early or planned.parent is None or parent_inventory(planned.parent, applyset.id) != superset:
        try:
            for change in early:
                _execute(cluster, change, options)
            _write_parent(cluster, applyset, superset)
        except ClusterError as exc:
            recap.failed += 1
            recap.skipped += len(planned.changes)
            printer.line("failed", applyset, str(exc))
            return
    failed = bool(planned.failures)
    kept: list[ObjectKey] = []
    for change in planned.changes:
        if _failed_or_skipped(change, planned, options, failed, recap, printer):
            if change.action == ch.ACTION_PRUNE and change.key not in planned.failures:
                kept.append(change.key)
            continue
        try:
            if change not in early:
                _execute(cluster, change, options)
        except ApplyConflict as exc:
            failed = True
            recap.failed += 1
            printer.line("failed", change.key)
            printer.err("  " + _conflict_text(str(exc)).replace("\n", "\n  "))
            continue
        except ClusterError as exc:
            failed = True
            recap.failed += 1
            printer.line("failed", change.key, str(exc))
            continue
        _count(recap, change.action)
        printer.line(_LINE_WORDS[change.action], change.key)
        if change.action != ch.ACTION_UNCHANGED:
            outcome.pending = True
            if options.show_diff:
                printer.out(change.diff)
        note = _after_change(change)
        if note:
            printer.err(f"  note: {note}")
    if failed:
        return  # keep the superset: the next run still finds everything it may have to prune
    final = union(planned.desired, inventory_of(applyset.id, kept))
    if final != superset:
        try:
            _write_parent(cluster, applyset, final)
        except ClusterError as exc:
            recap.failed += 1
            printer.line("failed", applyset, str(exc))
