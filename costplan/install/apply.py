"""Execute a change list against a ``Cluster``, Ansible style.

The same steps serve three commands: read the live state and the ApplySet
parent, work out what each object's apply would do, and compute the change
list (``changes.plan_changes``). Then ``diff`` prints it, ``apply --check``
reports it, and ``apply`` executes it.

Reading costs one list per kind (every member of the set carries its label),
plus a GET for each object not found that way. An object whose live field
set for manager ``costplan`` and values already equal the body is ``ok``
without any further request (``ownership.unchanged_by_apply``). For the
others, ``diff`` and ``--check`` ask the server's dry run (``dryRun=All``),
so what they report includes admission and defaulting; prunes are dry-run
too, so a missing delete permission shows in ``--check``, not first in the
real run. ``apply`` skips the dry run: the real apply's answer says whether
anything changed.

Requests run concurrently within a stage (``changes.stage`` and the Argo CD
sync wave), stages one after another, prunes in the reverse order. Every
object gets one line on stderr (``ok``/``changed``/``created``/``pruned``/
``skipped``/``failed``) in plan order, then a ``RECAP`` line. A failing
object does not stop the others, but nothing is pruned after a failure: a
partial apply must never delete what it could not replace. When the server
stops answering, the run stops after a few connection failures in a row and
says how far it got; a re-run converges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast

from costplan import __version__
from costplan.core import conventions as c
from costplan.core.artifacts import Artifact
from costplan.core.money import format_decimal
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
from costplan.install.cluster import CONCURRENCY, ApplyConflict, Cluster, ClusterError, Unreachable
from costplan.install.objects import ObjectKey, key_of, normalise, order_key, split_group_kind
from costplan.install.ownership import unchanged_by_apply
from costplan.install.readiness import readiness, reports_readiness

MODE_DIFF = "diff"
MODE_CHECK = "check"
MODE_APPLY = "apply"

UNREACHABLE_AFTER = 5
"""Connection failures in a row after which the run stops instead of failing every remaining object."""

CONFLICT_REMEDIES = (
    "  Other field managers own these fields with different values. Either:\n"
    "  * re-run with --force-conflicts to take the fields over (costplan becomes their manager);\n"
    "  * stop setting these fields from the plan, so their current managers keep them; or\n"
    "  * make the plan set the same values they have now, to co-own the fields (costplan\n"
    "    becomes their only manager once the others stop managing them)."
)

RELEASED_NOTE = "released: costplan's labels and fields removed, the namespace stays"

_LINE_WORDS = {
    ch.ACTION_UNCHANGED: "ok",
    ch.ACTION_UPDATE: "changed",
    ch.ACTION_CREATE: "created",
    ch.ACTION_PRUNE: "pruned",
}

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Options:
    """What the command line asked for."""

    mode: str = MODE_APPLY
    show_diff: bool = False
    prune: bool = True
    force_conflicts: bool = False
    concurrency: int = CONCURRENCY
    create_namespaces: bool = False
    wait: float | None = None  # seconds to wait for readiness after applying
    # ApplySet ids of the other parts of a fleet (see ``_held_by_siblings``).
    siblings: frozenset[str] = frozenset()


@dataclass
class Outcome:
    """The result of a run, for the CLI to turn into an exit code."""

    recap: ch.Recap
    changes: list[ch.Change] = field(default_factory=list)
    pending: bool = False

    @property
    def failed(self) -> bool:
        return self.recap.failed > 0 or self.recap.not_ready > 0


def plain(value: Any) -> Any:
    """A build value as JSON-compatible data: plain dicts and lists, exact decimals as numbers.

    The same values a YAML round trip of the canonical output would give
    (``Decimal`` as an ``int`` or a ``float`` of its exact text), without
    serialising and re-parsing every manifest on each run.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        text = format_decimal(value)
        return float(text) if "." in text else int(text)
    return value


def desired_objects(artifacts: Iterable[Artifact]) -> list[dict[str, Any]]:
    """The manifests of a build as plain JSON-compatible dicts; plain files are never applied."""
    return [plain(a.data) for a in artifacts if a.is_manifest]


def parallel(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R | Exception]:
    """``function`` over ``items`` with at most ``workers`` at once; results (or raised errors) in input order."""

    def call(item: T) -> R | Exception:
        try:
            return function(item)
        except Exception as exc:  # noqa: BLE001  (handed back to the caller, which reports it)
            return exc

    if workers <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(call, items))


def _first_error(results: Iterable[object]) -> None:
    for result in results:
        if isinstance(result, Exception):
            raise result


class _Printer:
    def __init__(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        self.out = out
        self.err = err

    def line(self, word: str, key: Any, note: str = "") -> None:
        self.err(f"{word}: {key}" + (f" ({note})" if note else ""))


def _conflict_text(message: str) -> str:
    return f"conflict: {message}\n{CONFLICT_REMEDIES}"


def _is_namespace(key: ObjectKey) -> bool:
    return key.kind == "Namespace" and not key.group


def _release_body(change: ch.Change) -> dict[str, Any]:
    """The apply that drops costplan's labels from a namespace instead of deleting it.

    A team namespace holds workloads costplan never applied (model servers,
    GPU jobs); deleting it would delete them. Applying an empty body as
    ``costplan`` removes exactly the fields costplan owns, the ApplySet label
    among them, so the namespace leaves the set and everything else stays.
    """
    return {"apiVersion": change.api_version or "v1", "kind": "Namespace", "metadata": {"name": change.key.name}}


@dataclass
class _Planned:
    changes: list[ch.Change]
    failures: dict[ObjectKey, str]
    parent: dict[str, Any] | None
    previous: Inventory
    desired: Inventory


def _read_live(cluster: Cluster, bodies: list[dict[str, Any]], keys: list[ObjectKey],
               everything: Inventory, options: Options) -> dict[ObjectKey, Mapping[str, Any] | None]:
    """Every member of the set by one list per kind, then a GET for each desired object not among them.

    ``apply`` without ``--diff`` skips those GETs: an object the lists did
    not find is applied as if new, and the apply's answer (``Applied.created``)
    says whether it was.
    """
    namespaces = sorted(everything.namespaces)
    selector = f"{c.LABEL_APPLYSET_PART_OF}={everything.id}"
    kinds = [split_group_kind(gk) for gk in sorted(everything.group_kinds)]
    listed = parallel(lambda gk: cluster.list(gk[0], gk[1], namespaces, selector), kinds, options.concurrency)
    _first_error(listed)
    live: dict[ObjectKey, Mapping[str, Any] | None] = {}
    for objects in listed:
        for obj in objects:  # type: ignore[union-attr]
            live.setdefault(key_of(obj), obj)
    if options.mode == MODE_APPLY and not options.show_diff:
        return live
    unlisted = [(body, key) for body, key in zip(bodies, keys, strict=True) if key not in live]
    found = parallel(lambda bk: cluster.get(bk[0]["apiVersion"], bk[1].kind, bk[1].name, bk[1].namespace),
                     unlisted, options.concurrency)
    _first_error(found)
    for (_, key), obj in zip(unlisted, found, strict=True):
        live[key] = obj  # type: ignore[assignment]
    return live


def _plan(cluster: Cluster, bodies: list[dict[str, Any]], applyset: ApplySet, options: Options) -> _Planned:
    """Read live state and predict every apply and prune: everything ``diff`` needs, nothing written."""
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
    live = _read_live(cluster, bodies, keys, everything, options)
    held = _held_by_siblings(cluster, bodies, keys, live, options)

    predicted: dict[ObjectKey, Mapping[str, Any]] = {k: v for k in held if (v := live.get(k)) is not None}
    unsure: set[ObjectKey] = set()
    failures: dict[ObjectKey, str] = {}
    # Objects in a namespace this run creates cannot be dry-run yet (the
    # server would answer "namespace not found"); they are estimated offline.
    new_namespaces = {k.name for k in keys if _is_namespace(k) and live.get(k) is None}
    to_ask: list[tuple[dict[str, Any], ObjectKey]] = []
    for body, key in zip(bodies, keys, strict=True):
        current = live.get(key)
        if key in held:
            continue
        if current is not None and unchanged_by_apply(current, body):
            predicted[key] = current
        elif options.mode == MODE_APPLY:
            if current is not None:
                unsure.add(key)  # the real apply's answer decides between ok and changed
        elif key.namespace not in new_namespaces:
            to_ask.append((body, key))
    answers = parallel(lambda bk: cluster.apply(bk[0], dry_run=True, force_conflicts=options.force_conflicts),
                       to_ask, options.concurrency)
    for (_, key), answer in zip(to_ask, answers, strict=True):
        if isinstance(answer, Unreachable):
            raise answer
        if isinstance(answer, ApplyConflict):
            failures[key] = _conflict_text(str(answer))
        elif isinstance(answer, ClusterError):
            failures[key] = str(answer)
        elif isinstance(answer, Exception):
            raise answer
        else:
            predicted[key] = answer
    changes = ch.plan_changes(bodies, live, everything, predicted, unsure=unsure,
                              diffs=options.show_diff or options.mode == MODE_DIFF)
    if options.mode != MODE_APPLY and options.prune:
        _dry_run_prunes(cluster, changes, failures, options)
    return _Planned(changes, failures, parent, previous, desired)


def _held_by_siblings(cluster: Cluster, bodies: list[dict[str, Any]], keys: list[ObjectKey],
                      live: dict[ObjectKey, Mapping[str, Any] | None], options: Options) -> set[ObjectKey]:
    """Kept Namespaces another part of the same fleet already holds on this server: left as they are.

    An object can be a member of one ApplySet only. When two parts of a
    fleet share an API server (the global part on a member cluster), both
    define the namespaces they use (``monitoring``); applying each would move
    the Namespace into its own set on every run, and neither run would ever
    be a no-op. These Namespaces are the components' (``costplan.dev/keep``,
    never pruned) and carry the same labels in every part, so the part that
    finds one in a sibling's set leaves it there and reports it ``ok``.
    """
    if not options.siblings:
        return set()
    candidates = [(body, key) for body, key in zip(bodies, keys, strict=True)
                  if _is_namespace(key) and str(((body.get("metadata") or {}).get("annotations") or {})
                                                .get(c.ANNOTATION_KEEP, "")) == "true"]
    unread = [(body, key) for body, key in candidates if key not in live]
    found = parallel(lambda bk: cluster.get(bk[0]["apiVersion"], bk[1].kind, bk[1].name, None), unread,
                     options.concurrency)
    _first_error(found)
    for (_, key), obj in zip(unread, found, strict=True):
        live[key] = obj  # type: ignore[assignment]
    held = set()
    for _, key in candidates:
        current = live.get(key)
        labels = ((current or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(c.LABEL_APPLYSET_PART_OF) in options.siblings:
            held.add(key)
    return held


def _dry_run_prunes(cluster: Cluster, changes: list[ch.Change], failures: dict[ObjectKey, str],
                    options: Options) -> None:
    """Ask the server whether each prune would be allowed, and show a released namespace as it would be."""
    prunes = [c for c in changes if c.action == ch.ACTION_PRUNE and not c.keep]

    def ask(change: ch.Change) -> dict[str, Any] | None:
        if _is_namespace(change.key):
            return cluster.apply(_release_body(change), dry_run=True)
        cluster.delete(change.api_version, change.key.kind, change.key.name, change.key.namespace, dry_run=True)
        return None

    for change, answer in zip(prunes, parallel(ask, prunes, options.concurrency), strict=True):
        if isinstance(answer, Unreachable) or (isinstance(answer, Exception)
                                               and not isinstance(answer, ClusterError)):
            raise answer
        if isinstance(answer, ClusterError):
            failures[change.key] = str(answer)
        elif answer is not None:
            change.after = normalise(answer)
            if options.show_diff or options.mode == MODE_DIFF:
                change.diff = ch.unified_diff(change.key, change.before, change.after)


# What provides each API group costplan generates objects of: named when its CRDs are missing.
_GROUP_COMPONENTS = {
    "monitoring.coreos.com": "the Prometheus Operator (for example kube-prometheus-stack)",
    "kuadrant.io": "Kuadrant (kuadrant-operator)",
    "extensions.kuadrant.io": "Kuadrant (kuadrant-operator, with its extensions enabled)",
    "argoproj.io": "Argo CD",
    "external-secrets.io": "the External Secrets Operator",
    "grafana.integreatly.org": "the Grafana Operator",
}


def component_of_group(group: str) -> str:
    """What to install for the CRDs of ``group``."""
    return _GROUP_COMPONENTS.get(group, f"the operator that defines {group}")


def missing_namespaces(cluster: Cluster, bodies: list[dict[str, Any]], applyset: ApplySet,
                       options: Options) -> dict[str, list[ObjectKey]]:
    """Namespaces the objects (and the ApplySet parent) live in that neither exist nor are in the plan."""
    keys = [key_of(b) for b in bodies]
    created = {k.name for k in keys if _is_namespace(k)}
    needed: dict[str, list[ObjectKey]] = {}
    for key in sorted(keys, key=str):
        if key.namespace and key.namespace not in created:
            needed.setdefault(key.namespace, []).append(key)
    if applyset.namespace not in created:
        needed.setdefault(applyset.namespace, []).append(
            ObjectKey("", "ConfigMap", applyset.namespace, applyset.name))
    names = sorted(needed)
    found = parallel(lambda ns: cluster.get("v1", "Namespace", ns, None), names, options.concurrency)
    _first_error(found)
    return {ns: needed[ns] for ns, live in zip(names, found, strict=True) if live is None}


def _with_namespaces(bodies: list[dict[str, Any]], applyset: ApplySet) -> list[dict[str, Any]]:
    """``bodies`` plus a Namespace for every namespace they target and do not create.

    The namespaces join the ApplySet like any other object, so a later run
    that no longer needs one releases it (its labels go) rather than deleting it.
    """
    created = {key_of(b).name for b in bodies if _is_namespace(key_of(b))}
    targets = {key_of(b).namespace for b in bodies} | {applyset.namespace}
    extra = [with_applyset_label({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, applyset.id)
             for ns in sorted(t for t in targets if t and t not in created)]
    return extra + bodies


def _prune_skip_reason(change: ch.Change, options: Options, failed: bool) -> str | None:
    if change.keep:
        return f"kept: {c.ANNOTATION_KEEP}=true"
    if not options.prune:
        return "pruning disabled"
    if failed:
        return "not pruned after a failure"
    return None


def run(
    cluster: Cluster,
    desired: list[dict[str, Any]],
    applyset: ApplySet,
    options: Options,
    out: Callable[[str], None],
    err: Callable[[str], None],
    components: Mapping[str, str] | None = None,
) -> Outcome:
    """Diff, check or apply ``desired`` (plain manifests) as members of ``applyset``.

    ``components`` names what runs in each namespace the plan targets (for
    the message when one is missing).

    ``out`` receives data (unified diffs), ``err`` one line per object and
    the ``RECAP``. Cluster errors are reported as failed lines, never raised.
    """
    printer = _Printer(out, err)
    recap = ch.Recap()
    components = components or {}
    bodies = [with_applyset_label(obj, applyset.id) for obj in desired]

    if options.create_namespaces:
        bodies = _with_namespaces(bodies, applyset)
    try:
        missing = cluster.missing_crds({key_of(b).group_kind for b in bodies})
        absent = missing_namespaces(cluster, bodies, applyset, options)
    except ClusterError as exc:
        recap.failed, recap.skipped = 1, len(bodies)
        err(f"failed: cannot check the prerequisites: {exc}")
        err("nothing was applied")
        err(recap.line())
        return Outcome(recap)
    if missing or absent:
        for name in missing:
            group = name.split(" ", 1)[0].partition(".")[2]
            err(f"failed: CustomResourceDefinition missing: {name}; install {component_of_group(group)}")
        for namespace, needed_by in sorted(absent.items()):
            more = f" and {len(needed_by) - 1} more" if len(needed_by) > 1 else ""
            what = components.get(namespace, "the component that runs there")
            err(f"failed: namespace {namespace} does not exist: needed by {needed_by[0]}{more} "
                f"for {what}; install it or create the namespace (or re-run with --create-namespaces)")
        recap.failed += len(missing) + len(absent)
        recap.skipped = len(bodies)
        err("nothing was applied: install the missing prerequisites first")
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


def _note(change: ch.Change) -> str:
    return RELEASED_NOTE if change.action == ch.ACTION_PRUNE and _is_namespace(change.key) else ""


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
    failed = any(key in planned.failures for key in (c.key for c in planned.changes if c.action != ch.ACTION_PRUNE))
    for change in planned.changes:
        if _failed_or_skipped(change, planned, options, failed, recap, printer):
            failed = failed or change.key in planned.failures
            continue
        _count(recap, change.action)
        printer.line(_LINE_WORDS[change.action], change.key, _note(change))
        if change.action != ch.ACTION_UNCHANGED:
            outcome.pending = True
            if show_diff:
                printer.out(change.diff)


def _after_change(change: ch.Change) -> str:
    """The object's own note on what an update needs to take effect (e.g. a restart)."""
    if change.body is None:
        return ""
    return str(((change.body.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_AFTER_CHANGE, ""))


def _write_parent(cluster: Cluster, applyset: ApplySet, inventory: Inventory) -> None:
    cluster.apply(parent_body(applyset, inventory, __version__))


class _Connection:
    """Counts connection failures in a row across the workers; trips after ``UNREACHABLE_AFTER``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_a_row = 0
        self.tripped = False
        self.first_index: int | None = None
        self.reason = ""

    def success(self) -> None:
        with self.lock:
            self.in_a_row = 0

    def failure(self, index: int, reason: str) -> None:
        with self.lock:
            self.in_a_row += 1
            if self.first_index is None or index < self.first_index:
                self.first_index, self.reason = index, reason
            if self.in_a_row >= UNREACHABLE_AFTER:
                self.tripped = True


_NOT_ATTEMPTED = object()


def _execute(cluster: Cluster, change: ch.Change, options: Options) -> tuple[str, str]:
    """Send one change; return the line word and the diff to show (empty unless ``--diff``)."""
    if change.action == ch.ACTION_PRUNE:
        if _is_namespace(change.key):
            cluster.apply(_release_body(change))
        else:
            cluster.delete(change.api_version, change.key.kind, change.key.name, change.key.namespace)
        return "pruned", change.diff
    if change.action == ch.ACTION_UNCHANGED or change.body is None:
        return "ok", ""
    result = cluster.apply(change.body, force_conflicts=options.force_conflicts)
    after = normalise(result)
    if change.action == ch.ACTION_CREATE:
        # An object the lists did not find but that existed joins the set: changed, not created.
        word = "created" if getattr(result, "created", True) else "changed"
    elif after == change.before:
        return "ok", ""
    else:
        word = "changed"
    return word, ch.unified_diff(change.key, change.before, after) if options.show_diff else ""


def _wait(cluster: Cluster, changes: list[ch.Change], options: Options, printer: _Printer, recap: ch.Recap) -> None:
    """Poll the applied objects that report readiness until all are ready or ``options.wait`` is spent."""
    watched = [c for c in changes if c.action != ch.ACTION_PRUNE and reports_readiness(c.key)]
    deadline = time.monotonic() + float(options.wait or 0)
    state: dict[ObjectKey, tuple[bool, str]] = {}
    pending = list(watched)
    while pending:
        answers = parallel(lambda c: cluster.get(c.api_version, c.key.kind, c.key.name, c.key.namespace),
                           pending, options.concurrency)
        for change, live in zip(pending, answers, strict=True):
            state[change.key] = (False, str(live)) if isinstance(live, Exception) else readiness(change.key, live)
        pending = [c for c in pending if not state[c.key][0]]
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            break
        time.sleep(min(1.0, remaining))
    recap.ready, recap.not_ready = 0, 0
    for change in watched:
        ready, why = state[change.key]
        printer.line("ready" if ready else "not ready", change.key, why)
        if ready:
            recap.ready += 1
        else:
            recap.not_ready += 1


def _groups(changes: list[ch.Change]) -> list[list[ch.Change]]:
    """Consecutive changes of the same stage and sync wave: each group may run concurrently."""
    groups: list[list[ch.Change]] = []
    last: tuple[Any, ...] | None = None
    for change in changes:
        obj = change.body if change.body is not None else change.before
        position = (change.action == ch.ACTION_PRUNE, *order_key(change.key, obj)[:2])
        if position != last:
            groups.append([])
            last = position
        groups[-1].append(change)
    return groups


def _apply(
    cluster: Cluster, planned: _Planned, applyset: ApplySet, options: Options, printer: _Printer, outcome: Outcome
) -> None:
    """Record the set first (so an interrupted run can still prune), apply, prune, then shrink the record."""
    recap = outcome.recap
    superset = union(planned.previous, planned.desired)
    done: dict[int, tuple[str, str]] = {}
    if planned.parent is None or parent_inventory(planned.parent, applyset.id) != superset:
        try:
            home = next((change_ for change_ in planned.changes if change_.action == ch.ACTION_CREATE
                         and change_.key == ObjectKey("", "Namespace", None, applyset.namespace)), None)
            if home is not None:  # the parent's own namespace is new: it must come first
                done[id(home)] = _execute(cluster, home, options)
            _write_parent(cluster, applyset, superset)
        except ClusterError as exc:
            recap.failed += 1
            recap.skipped += len(planned.changes)
            printer.line("failed", applyset, str(exc))
            return
    failed = bool(planned.failures)
    kept: list[ObjectKey] = []
    connection = _Connection()
    index = {id(change): number for number, change in enumerate(planned.changes, start=1)}
    unreachable: list[tuple[ch.Change, str]] = []

    def work(change: ch.Change) -> tuple[str, str] | object:
        if change.action == ch.ACTION_UNCHANGED:
            return "ok", ""  # proven unchanged: no request at all
        if id(change) in done:
            return done[id(change)]
        if connection.tripped:
            return _NOT_ATTEMPTED
        try:
            result = _execute(cluster, change, options)
        except Unreachable as exc:
            connection.failure(index[id(change)], str(exc))
            raise
        connection.success()
        return result

    not_attempted = 0
    broken: set[ObjectKey] = set(planned.failures)
    for group in _groups(planned.changes):
        if connection.tripped:
            not_attempted += len(group)
            continue
        runnable: list[ch.Change] = []
        for change in group:
            if _failed_or_skipped(change, planned, options, failed, recap, printer):
                if change.action == ch.ACTION_PRUNE and change.key not in planned.failures:
                    kept.append(change.key)
                continue
            runnable.append(change)
        results = parallel(work, runnable, options.concurrency)
        for change, result in zip(runnable, results, strict=True):
            if result is _NOT_ATTEMPTED:
                not_attempted += 1
                continue
            if isinstance(result, Unreachable):
                failed = True
                unreachable.append((change, str(result)))  # one line per cause, once the run is over
                continue
            if isinstance(result, ClusterError):
                broken.add(change.key)
            if isinstance(result, ApplyConflict):
                failed = True
                recap.failed += 1
                printer.line("failed", change.key)
                printer.err("  " + _conflict_text(str(result)).replace("\n", "\n  "))
                continue
            if isinstance(result, ClusterError):
                failed = True
                recap.failed += 1
                printer.line("failed", change.key, str(result))
                continue
            if isinstance(result, Exception):
                raise result
            word, diff = cast(tuple[str, str], result)
            recap_word = {"ok": ch.ACTION_UNCHANGED, "changed": ch.ACTION_UPDATE,
                          "created": ch.ACTION_CREATE, "pruned": ch.ACTION_PRUNE}[word]
            _count(recap, recap_word)
            printer.line(word, change.key, _note(change))
            if word != "ok":
                outcome.pending = True
                if options.show_diff:
                    printer.out(diff)
            if word == "changed":  # an update, also of an object that existed outside the set's record
                note = _after_change(change)
                if note:
                    printer.err(f"  note: {note}")
    recap.failed += len(unreachable)
    if not connection.tripped:
        for change, reason in unreachable:
            printer.line("failed", change.key, reason)
    else:
        recap.skipped += not_attempted
        printer.err(f"failed: server unreachable since object {connection.first_index} of {len(planned.changes)} "
                    f"({connection.reason}); {len(unreachable)} failed, {not_attempted} not attempted; "
                    "re-run to converge")
        return
    if options.wait is not None:
        _wait(cluster, [c for c in planned.changes if c.key not in broken], options, printer, recap)
    if failed:
        return  # keep the superset: the next run still finds everything it may have to prune
    final = union(planned.desired, inventory_of(applyset.id, kept))
    if final != superset:
        try:
            _write_parent(cluster, applyset, final)
        except ClusterError as exc:
            recap.failed += 1
            printer.line("failed", applyset, str(exc))
