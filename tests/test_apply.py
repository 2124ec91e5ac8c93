"""``costplan diff`` / ``costplan apply`` against an in-memory cluster.

The scenarios take a ``harness`` fixture; here it wraps ``FakeCluster``,
which implements enough of server-side apply (field ownership per manager,
conflicts, force, removal of fields a manager stopped applying, dry run) for
the installer's behaviour to be tested at the ``cluster.py`` boundary.
``test_apply_cluster.py`` runs the same scenarios against a real cluster.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from costplan.cli import cluster as cli_cluster
from costplan.core import conventions as c
from costplan.core.artifacts import file, manifest
from costplan.install import apply
from costplan.install import changes as ch
from costplan.install.applyset import (
    ApplySet,
    Inventory,
    applyset_id,
    parent_problem,
    with_applyset_label,
)
from costplan.install.cluster import ApplyConflict, ClusterError
from costplan.install.objects import (
    ObjectKey,
    api_group,
    is_builtin_group,
    key_of,
    normalise,
    split_group_kind,
    stage,
)
from costplan.output import build as build_stage
from tests.conftest import PLAN, patched_minimal

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
PLAN_CRDS = {
    "AuthPolicy.kuadrant.io",
    "RateLimitPolicy.kuadrant.io",
    "TelemetryPolicy.extensions.kuadrant.io",
    "ServiceMonitor.monitoring.coreos.com",
    "PrometheusRule.monitoring.coreos.com",
}
RECAP = re.compile(
    r"^RECAP: ok=(\d+) changed=(\d+) created=(\d+) pruned=(\d+) failed=(\d+) skipped=(\d+)$", re.MULTILINE
)


# ---------------------------------------------------------------------------
# An in-memory API server with server-side apply semantics
# ---------------------------------------------------------------------------

def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Field paths set by an apply body; lists are atomic, as in most CRD schemas."""
    if isinstance(value, dict) and value:
        found: dict[tuple[str, ...], Any] = {}
        for name, item in value.items():
            found.update(_leaves(item, prefix + (name,)))
        return found
    return {prefix: value}


def _get_path(obj: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return None
        obj = obj[name]
    return obj


def _set_path(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        obj = obj.setdefault(name, {})
    obj[path[-1]] = copy.deepcopy(value)


def _del_path(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parents = [obj]
    for name in path[:-1]:
        obj = obj.get(name)
        if not isinstance(obj, dict):
            return
        parents.append(obj)
    obj.pop(path[-1], None)
    for depth in range(len(parents) - 1, 0, -1):  # drop emptied mappings
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


class FakeCluster:
    """Objects, per-manager field ownership, CRDs and a log of every write."""

    def __init__(self, namespaces: Iterable[str] = (), crds: Iterable[str] = PLAN_CRDS) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.owners: dict[ObjectKey, dict[str, set[tuple[str, ...]]]] = {}
        self.crds = set(crds)
        self.writes: list[tuple[str, ObjectKey]] = []
        self._versions = itertools.count(1)
        for namespace in namespaces:
            self.apply_as("setup", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        self.writes.clear()

    def _served(self, key: ObjectKey) -> bool:
        return is_builtin_group(key.group) or key.group_kind in self.crds

    def apply_as(self, manager: str, body: dict[str, Any], *, dry_run: bool = False,
                 force_conflicts: bool = False) -> dict[str, Any]:
        key = key_of(body)
        if not self._served(key):
            raise ClusterError(f'no matches for kind "{key.kind}" in group "{key.group}"')
        if key.kind not in CLUSTER_SCOPED:
            if not key.namespace:
                raise ClusterError(f"{key.kind} {key.name}: namespace required")
            if ObjectKey("", "Namespace", None, key.namespace) not in self.objects:
                raise ClusterError(f'namespaces "{key.namespace}" not found')
        current = self.objects.get(key)
        owners = {m: set(p) for m, p in self.owners.get(key, {}).items()}
        wanted = {p: v for p, v in _leaves(body).items() if p not in _IDENTITY}
        conflicts = [
            (other, path)
            for other, paths in sorted(owners.items()) if other != manager
            for path in sorted(paths) if path in wanted and _get_path(current, path) != wanted[path]
        ]
        if conflicts and not force_conflicts:
            detail = "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts)
            raise ApplyConflict(f"Apply failed with {len(conflicts)} conflict(s): {detail}")
        for other, path in conflicts:
            owners[other].discard(path)
        result = copy.deepcopy(current) if current else {
            "apiVersion": body["apiVersion"], "kind": key.kind,
            "metadata": {"name": key.name, **({"namespace": key.namespace} if key.namespace else {})},
        }
        result["apiVersion"] = body["apiVersion"]
        still_owned = set().union(*(p for m, p in owners.items() if m != manager)) if owners else set()
        for path in owners.get(manager, set()) - set(wanted) - still_owned:
            _del_path(result, path)
        for path, value in wanted.items():
            _set_path(result, path, value)
        owners[manager] = set(wanted)
        if current is None:
            result["metadata"]["uid"] = str(uuid.uuid4())
            result["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
            result["metadata"]["resourceVersion"] = str(next(self._versions))
        elif normalise(result) != normalise(current):
            result["metadata"]["resourceVersion"] = str(next(self._versions))
        if not dry_run:
            self.objects[key] = result
            self.owners[key] = owners
            self.writes.append(("apply", key))
        return copy.deepcopy(result)

    # -- the Cluster protocol ----------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        key = ObjectKey(api_group(api_version), kind, None if kind in CLUSTER_SCOPED else namespace, name)
        found = self.objects.get(key)
        return copy.deepcopy(found) if found else None

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False) -> dict[str, Any]:
        return self.apply_as("costplan", body, dry_run=dry_run, force_conflicts=force_conflicts)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        key = ObjectKey(api_group(api_version), kind, namespace, name)
        if self.objects.pop(key, None) is not None:
            self.owners.pop(key, None)
            self.writes.append(("delete", key))

    def list(self, group: str, kind: str, namespaces: Iterable[str], label_selector: str) -> list[dict[str, Any]]:
        label, _, value = label_selector.partition("=")
        scopes = set(namespaces)
        return [
            copy.deepcopy(obj) for key, obj in sorted(self.objects.items())
            if key.group == group and key.kind == kind
            and (kind in CLUSTER_SCOPED or key.namespace in scopes)
            and (obj["metadata"].get("labels") or {}).get(label) == value
        ]

    def missing_crds(self, group_kinds: Iterable[str]) -> list[str]:
        return sorted(gk for gk in group_kinds
                      if not is_builtin_group(split_group_kind(gk)[0]) and gk not in self.crds)


# ---------------------------------------------------------------------------
# The scenario harness (the real-cluster twin lives in test_apply_cluster.py)
# ---------------------------------------------------------------------------

def scenario_plan(suffix: str, *replacements: tuple[str, str], drop_team: str | None = None) -> str:
    """tests/plans/minimal.yaml with every name and namespace made unique by ``suffix``."""
    text = patched_minimal(
        ("  name: demo\n", f"  name: demo-{suffix}\n"),
        ("  gateway:\n    namespace: llm\n",
         f"  gateway:\n    namespace: llm\n    limitador:\n      namespace: kuadrant-{suffix}\n"),
        ("namespace: monitoring", f"namespace: monitoring-{suffix}"),
        ("namespaces: [research]", f"namespaces: [research-{suffix}]"),
        *replacements,
    ).replace("namespace: llm\n", f"namespace: llm-{suffix}\n")
    if drop_team:
        start = text.index(f"  - name: {drop_team}\n")
        end = text.index("\n  - name: ", start + 1) + 1
        text = text[:start] + text[end:]
    return text


class Harness:
    """What every scenario needs; subclasses bind it to a fake or a real cluster."""

    real = False
    cluster: Any

    def __init__(self, tmp_path: Path, suffix: str) -> None:
        self.tmp_path = tmp_path
        self.suffix = suffix
        self.plan_path = tmp_path / "costplan.yaml"
        self.monitoring = f"monitoring-{suffix}"
        self.base_namespaces = [f"llm-{suffix}", self.monitoring, f"kuadrant-{suffix}"]
        self.parent_name = f"costplan-demo-{suffix}-base"

    def write_plan(self, *replacements: tuple[str, str], drop_team: str | None = None) -> Path:
        self.plan_path.write_text(scenario_plan(self.suffix, *replacements, drop_team=drop_team), encoding="utf-8")
        return self.plan_path

    def manifests(self) -> list[dict[str, Any]]:
        result = build_stage.build(self.plan_path, [None])
        return apply.desired_objects(result.environments["base"])

    def cli_args(self) -> list[str]:
        return []

    def cli(self, command: str, *args: str):
        runner = CliRunner()
        target = cli_cluster.apply_command if command == "apply" else cli_cluster.diff_command
        return runner.invoke(target, ["-f", str(self.plan_path), *self.cli_args(), *args], catch_exceptions=False)

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        raise NotImplementedError

    def versions(self, objects: Iterable[dict[str, Any]]) -> dict[ObjectKey, str | None]:
        """resourceVersion of each object as the cluster has it (``None`` when absent)."""
        found = {}
        for obj in objects:
            key = key_of(obj)
            live = self.cluster.get(obj["apiVersion"], key.kind, key.name, key.namespace)
            found[key] = live["metadata"].get("resourceVersion") if live else None
        return found

    def require_fake(self, why: str) -> None:
        if self.real:
            pytest.skip(why)

    def hide_crd(self, group_kind: str) -> None:
        raise NotImplementedError


class FakeHarness(Harness):
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path, "t1")
        self.cluster = FakeCluster(self.base_namespaces)
        monkeypatch.setattr(cli_cluster, "connect", lambda *args: self.cluster)

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        self.cluster.apply_as(manager, body, force_conflicts=force)

    def hide_crd(self, group_kind: str) -> None:
        self.cluster.crds.discard(group_kind)


# -- the same fake behind HTTP, so cluster.py runs with the real client -------

_RESOURCES = {  # (group, version) -> [(plural, kind, namespaced)]
    ("", "v1"): [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True),
                 ("secrets", "Secret", True), ("serviceaccounts", "ServiceAccount", True),
                 ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    ("batch", "v1"): [("cronjobs", "CronJob", True)],
    ("apiextensions.k8s.io", "v1"): [("customresourcedefinitions", "CustomResourceDefinition", False)],
    ("kuadrant.io", "v1"): [("authpolicies", "AuthPolicy", True), ("ratelimitpolicies", "RateLimitPolicy", True)],
    ("extensions.kuadrant.io", "v1alpha1"): [("telemetrypolicies", "TelemetryPolicy", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True),
                                      ("prometheusrules", "PrometheusRule", True)],
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


class ApiServer:
    """A tiny Kubernetes API (discovery, get, list, server-side apply, delete) over ``FakeCluster``."""

    def __init__(self, backend: FakeCluster) -> None:
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                code, payload = server.handle(method, self.path, self.headers, self.rfile)
                self._reply(code, payload)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.backend = backend
        self.requests: list[tuple[str, str]] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, method: str, raw_path: str, headers: Any, rfile: Any) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [p for p in split.path.split("/") if p]
        self.requests.append((method, raw_path))
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                       "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                      for g, v in _RESOURCES if g]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        resources = _RESOURCES.get((group, version))
        if resources is None:
            return 404, _status(404, "NotFound", "no such group")
        if not rest:
            return 200, {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                         "resources": [{"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
                                        "verbs": ["get", "list", "patch", "delete", "create", "update"]}
                                       for n, k, ns in resources]}
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        kind = next(k for n, k, _ in resources if n == plural)
        api_version = f"{group}/{version}" if group else version
        if kind == "CustomResourceDefinition":
            crds = [self._crd(gk) for gk in sorted(self.backend.crds)]
            if name is not None:
                one = next((d for d in crds if d["metadata"]["name"] == name), None)
                return (200, one) if one else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
            return 200, {"kind": "CustomResourceDefinitionList", "apiVersion": api_version, "metadata": {},
                         "items": crds}
        if method == "GET" and name is None:
            items = self.backend.list(group, kind, [namespace] if namespace else [], query.get("labelSelector", ""))
            return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {}, "items": items}
        if method == "GET":
            found = self.backend.get(api_version, kind, name, namespace)
            return (200, found) if found else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
        if method == "DELETE":
            self.backend.delete(api_version, kind, name, namespace)
            return 200, _status(200, "", "deleted") | {"status": "Success"}
        if headers.get("Content-Type") != "application/apply-patch+yaml" or "fieldManager" not in query:
            return 415, _status(415, "UnsupportedMediaType", "only server-side apply is served")
        body = yaml.safe_load(rfile.read(int(headers.get("Content-Length", 0))))
        try:
            result = self.backend.apply_as(query["fieldManager"], body, dry_run=query.get("dryRun") == "All",
                                           force_conflicts=query.get("force", "").lower() == "true")
        except ApplyConflict as exc:
            return 409, _status(409, "Conflict", str(exc))
        except ClusterError as exc:
            return 404, _status(404, "NotFound", str(exc))
        return 200, result

    @staticmethod
    def _crd(group_kind: str) -> dict[str, Any]:
        group, kind = split_group_kind(group_kind)
        plural, version = next((n, v) for (g, v), rs in _RESOURCES.items() if g == group for n, k, _ in rs if k == kind)
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {"group": group, "names": {"kind": kind, "plural": plural},
                         "versions": [{"name": version, "served": True, "storage": True}]},
                "status": {"conditions": [{"type": "Established", "status": "True"}]}}


class ApiServerHarness(Harness):
    """``KubeCluster`` with the official client, talking HTTP to ``ApiServer``."""

    real = True  # observed only through the API, like a real cluster

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import tempfile

        from costplan.install.cluster import KubeCluster

        super().__init__(tmp_path, "h1")
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the client's discovery cache
        self.backend = FakeCluster(self.base_namespaces)
        self.server = ApiServer(self.backend)
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server.url}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
        }))
        self.cluster = KubeCluster(kubeconfig=str(self.kubeconfig), timeout=10.0)

    def cli_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)]

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        self.backend.apply_as(manager, body, force_conflicts=force)


@pytest.fixture(params=["fake", "api-server"])
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    if request.param == "fake":
        yield FakeHarness(tmp_path, monkeypatch)
        return
    served = ApiServerHarness(tmp_path, monkeypatch)
    try:
        yield served
    finally:
        served.server.close()


def recap(stderr: str) -> dict[str, int]:
    found = RECAP.findall(stderr)
    assert len(found) == 1, stderr
    return dict(zip(("ok", "changed", "created", "pruned", "failed", "skipped"), map(int, found[0]), strict=True))


def lines(stderr: str, word: str) -> set[str]:
    return {line.split(": ", 1)[1].split(" (")[0] for line in stderr.splitlines() if line.startswith(f"{word}: ")}


def keys_of(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {str(key_of(o)) for o in objects}


# ---------------------------------------------------------------------------
# Scenarios (shared with the real-cluster run)
# ---------------------------------------------------------------------------

def preexisting(harness: Harness, desired: list[dict[str, Any]]) -> set[str]:
    """The build's Namespaces the cluster already has (the components' own, made before costplan)."""
    return {str(key_of(o)) for o in desired if o["kind"] == "Namespace" and o["metadata"]["name"] in harness.base_namespaces}


def test_first_apply_creates_every_manifest_and_records_the_applyset(harness: Harness) -> None:
    harness.write_plan()
    desired = harness.manifests()
    existing = preexisting(harness, desired)
    assert existing  # the monitoring and Kuadrant namespaces are part of the build
    result = harness.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert recap(result.stderr) == {"ok": 0, "changed": len(existing), "created": len(desired) - len(existing),
                                    "pruned": 0, "failed": 0, "skipped": 0}
    assert lines(result.stderr, "created") == keys_of(desired) - existing
    assert result.stdout == ""

    set_id = applyset_id(harness.parent_name, harness.monitoring)
    parent = harness.cluster.get("v1", "ConfigMap", harness.parent_name, harness.monitoring)
    assert parent["metadata"]["labels"][c.LABEL_APPLYSET_ID] == set_id
    annotations = parent["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_APPLYSET_TOOLING] == "costplan/0.1.0"
    assert annotations[c.ANNOTATION_APPLYSET_GROUP_KINDS] == (
        "AuthPolicy.kuadrant.io,ConfigMap,CronJob.batch,Namespace,PersistentVolumeClaim,"
        "PrometheusRule.monitoring.coreos.com,RateLimitPolicy.kuadrant.io,ServiceAccount,"
        "ServiceMonitor.monitoring.coreos.com,TelemetryPolicy.extensions.kuadrant.io"
    )
    s = harness.suffix
    assert annotations[c.ANNOTATION_APPLYSET_NAMESPACES] == f"kuadrant-{s},llm-{s}"
    for obj in desired:
        key = key_of(obj)
        live = harness.cluster.get(obj["apiVersion"], key.kind, key.name, key.namespace)
        assert live["metadata"]["labels"][c.LABEL_APPLYSET_PART_OF] == set_id, key


def test_second_apply_is_idempotent(harness: Harness) -> None:
    harness.write_plan()
    desired = harness.manifests()
    assert harness.cli("apply").exit_code == 0
    before = harness.versions(desired)
    result = harness.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert recap(result.stderr) == {"ok": len(desired), "changed": 0, "created": 0, "pruned": 0,
                                    "failed": 0, "skipped": 0}
    assert harness.versions(desired) == before
    if not harness.real:
        harness.cluster.writes.clear()
        harness.cli("apply")
        assert harness.cluster.writes == []  # not even the ApplySet parent is rewritten


def test_a_price_change_changes_exactly_the_objects_it_affects(harness: Harness) -> None:
    harness.write_plan()
    old = {str(key_of(o)): o for o in harness.manifests()}
    assert harness.cli("apply").exit_code == 0
    harness.write_plan(("price: 0.002", "price: 0.003"))
    new = {str(key_of(o)): o for o in harness.manifests()}
    expected = {k for k in new if new[k] != old[k]}
    rules = {k for k in expected if k.startswith("PrometheusRule/")}
    assert rules == {f"PrometheusRule/{harness.monitoring}/costplan-prices"}

    diff = harness.cli("diff")
    assert diff.exit_code == 1, diff.stderr
    assert lines(diff.stderr, "changed") == expected
    assert {line[len("+++ plan/"):] for line in diff.stdout.splitlines() if line.startswith("+++ ")} == expected
    assert "+        expr: '0.003'" in diff.stdout or "0.003" in diff.stdout

    result = harness.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr, "changed") == expected
    assert recap(result.stderr)["ok"] == len(new) - len(expected)
    again = harness.cli("diff")
    assert (again.exit_code, again.stdout) == (0, "")


def test_removing_a_team_prunes_exactly_its_objects(harness: Harness) -> None:
    harness.write_plan()
    before = {str(key_of(o)) for o in harness.manifests()}
    assert harness.cli("apply").exit_code == 0
    # Neither hand-made objects nor another ApplySet's members may be pruned,
    # even when they carry costplan's own labels.
    lookalike = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "hand-made", "namespace": harness.monitoring,
                              "labels": {"app.kubernetes.io/managed-by": "costplan",
                                         "costplan.dev/plan": f"demo-{harness.suffix}"}}}
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "other-set", "namespace": harness.monitoring,
                            "labels": {c.LABEL_APPLYSET_PART_OF: applyset_id("other", harness.monitoring)}}}
    harness.apply_as("someone-else", lookalike)
    harness.apply_as("someone-else", foreign)

    harness.write_plan(drop_team="research")
    after = {str(key_of(o)) for o in harness.manifests()}
    assert before - after == {f"Namespace/research-{harness.suffix}"}

    diff = harness.cli("diff")
    assert diff.exit_code == 1
    assert f"--- live/Namespace/research-{harness.suffix}" in diff.stdout
    result = harness.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr, "pruned") == before - after
    assert recap(result.stderr)["pruned"] == 1
    for name in ("hand-made", "other-set"):
        assert harness.cluster.get("v1", "ConfigMap", name, harness.monitoring) is not None
    # The namespace is released, not deleted: costplan's labels go, the workloads stay.
    namespace = harness.cluster.get("v1", "Namespace", f"research-{harness.suffix}", None)
    assert namespace is not None
    labels = namespace["metadata"].get("labels") or {}
    assert c.LABEL_APPLYSET_PART_OF not in labels and "team" not in labels
    assert recap(harness.cli("apply").stderr)["pruned"] == 0


def test_no_prune_skips_removed_objects_and_keeps_tracking_them(harness: Harness) -> None:
    harness.write_plan()
    assert harness.cli("apply").exit_code == 0
    harness.write_plan(drop_team="research")
    result = harness.cli("apply", "--no-prune")
    assert result.exit_code == 0, result.stderr
    assert lines(result.stderr, "skipped") == {f"Namespace/research-{harness.suffix}"}
    assert "(pruning disabled)" in result.stderr
    namespace = harness.cluster.get("v1", "Namespace", f"research-{harness.suffix}", None)
    assert c.LABEL_APPLYSET_PART_OF in namespace["metadata"]["labels"]
    later = harness.cli("apply")
    assert lines(later.stderr, "pruned") == {f"Namespace/research-{harness.suffix}"}


def test_check_mode_changes_nothing_and_exits_1_when_changes_are_pending(harness: Harness) -> None:
    harness.write_plan()
    desired = harness.manifests()
    check = harness.cli("apply", "--check", "--diff")
    assert check.exit_code == 1, check.stderr
    existing = preexisting(harness, desired)
    assert recap(check.stderr)["created"] == len(desired) - len(existing)
    assert check.stdout.count("+++ plan/") == len(desired)
    assert all(v is None for k, v in harness.versions(desired).items() if str(k) not in existing)
    assert harness.cluster.get("v1", "ConfigMap", harness.parent_name, harness.monitoring) is None
    if not harness.real:
        assert harness.cluster.writes == []

    assert harness.cli("apply").exit_code == 0
    assert harness.cli("apply", "--check").exit_code == 0
    unchanged = harness.cli("diff")
    assert (unchanged.exit_code, unchanged.stdout) == (0, "")


def test_a_conflict_reports_the_three_remedies_and_force_resolves_it(harness: Harness) -> None:
    harness.write_plan()
    desired = harness.manifests()
    assert harness.cli("apply").exit_code == 0
    harness.apply_as("kubectl-edit", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "costplan-plan", "namespace": harness.monitoring,
                     "labels": {"costplan.dev/component": "edited-by-hand"}},
    }, force=True)
    result = harness.cli("apply")
    assert result.exit_code == 4
    assert lines(result.stderr, "failed") == {f"ConfigMap/{harness.monitoring}/costplan-plan"}
    assert "kubectl-edit" in result.stderr
    for remedy in ("--force-conflicts", "stop setting these fields", "co-own"):
        assert remedy in result.stderr
    counts = recap(result.stderr)
    assert (counts["ok"], counts["failed"]) == (len(desired) - 1, 1)

    forced = harness.cli("apply", "--force-conflicts")
    assert forced.exit_code == 0, forced.stderr
    assert lines(forced.stderr, "changed") == {f"ConfigMap/{harness.monitoring}/costplan-plan"}
    live = harness.cluster.get("v1", "ConfigMap", "costplan-plan", harness.monitoring)
    assert live["metadata"]["labels"]["costplan.dev/component"] == "reports"


def test_a_missing_crd_is_named_before_anything_is_applied(harness: Harness) -> None:
    harness.require_fake("a shared cluster's CRDs cannot be removed for a test")
    harness.write_plan()
    harness.hide_crd("PrometheusRule.monitoring.coreos.com")
    result = harness.cli("apply")
    assert result.exit_code == 4
    assert "failed: CustomResourceDefinition missing: PrometheusRule.monitoring.coreos.com" in result.stderr
    assert recap(result.stderr)["skipped"] == len(harness.manifests())
    assert harness.cluster.writes == []
    assert harness.cli("diff").exit_code == 4


def test_secret_data_is_masked_in_diffs(harness: Harness) -> None:
    set_ = ApplySet(f"costplan-secret-{harness.suffix}", harness.monitoring)

    def secret(value: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "apikey-test", "namespace": harness.monitoring},
                "data": {"api_key": base64.b64encode(value.encode()).decode(), "user": "YWxpY2U="}}

    def run(value: str, mode: str) -> tuple[str, str]:
        out: list[str] = []
        err: list[str] = []
        apply.run(harness.cluster, [secret(value)], set_, apply.Options(mode=mode, show_diff=True),
                  out.append, err.append)
        return "".join(out), "\n".join(err)

    created, _ = run("s3cret-one", apply.MODE_APPLY)
    assert "api_key: '*** (after)'" in created
    diff, err = run("s3cret-two", apply.MODE_DIFF)
    assert "-  api_key: '*** (before)'" in diff and "+  api_key: '*** (after)'" in diff
    assert "   user: '***'" in diff
    for leaked in ("s3cret", base64.b64encode(b"s3cret-one").decode(), base64.b64encode(b"s3cret-two").decode(),
                   "YWxpY2U="):
        assert leaked not in diff and leaked not in err


def test_namespaces_and_config_come_before_workloads_and_custom_resources(harness: Harness) -> None:
    harness.require_fake("the order of writes is only observable in the fake")
    harness.write_plan()
    assert harness.cli("apply").exit_code == 0
    order = [key for verb, key in harness.cluster.writes if key.name != harness.parent_name]
    assert harness.cluster.writes[0][1].name == harness.parent_name  # the set is recorded first
    stages = [stage(key.kind, key.group) for key in order]
    assert stages == sorted(stages)
    assert order[0].kind == "Namespace" and order[-1].group  # a custom resource comes last
    first_cronjob = next(i for i, k in enumerate(order) if k.kind == "CronJob")
    assert all(order.index(k) < first_cronjob for k in order if k.kind in ("ConfigMap", "ServiceAccount",
                                                                          "PersistentVolumeClaim"))


def test_a_parent_written_by_another_tool_is_refused(harness: Harness) -> None:
    harness.write_plan()
    harness.apply_as("kubectl", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": harness.parent_name, "namespace": harness.monitoring,
                     "labels": {c.LABEL_APPLYSET_ID: applyset_id(harness.parent_name, harness.monitoring)},
                     "annotations": {c.ANNOTATION_APPLYSET_TOOLING: "kubectl/v1.33"}},
    })
    result = harness.cli("apply")
    assert result.exit_code == 4
    assert "managed by 'kubectl/v1.33', not costplan" in result.stderr
    assert harness.cluster.get("v1", "ConfigMap", "costplan-plan", harness.monitoring) is None


# ---------------------------------------------------------------------------
# Pure parts and the command line (no cluster)
# ---------------------------------------------------------------------------

def _obj(api_version: str, kind: str, name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def test_prunes_run_in_reverse_apply_order() -> None:
    set_id = "applyset-x-v1"
    members = [
        _obj("v1", "Namespace", "team-a"),
        _obj("v1", "ConfigMap", "cm", "ns"),
        _obj("batch/v1", "CronJob", "job", "ns"),
        _obj("monitoring.coreos.com/v1", "PrometheusRule", "rules", "ns"),
    ]
    live = {key_of(o): with_applyset_label(o, set_id) for o in members}
    inventory = Inventory(set_id, frozenset(k.group_kind for k in live))
    planned = ch.plan_changes([], live, inventory)
    assert [c.key.kind for c in planned] == ["PrometheusRule", "CronJob", "ConfigMap", "Namespace"]
    assert all(c.action == ch.ACTION_PRUNE for c in planned)
    applied = ch.plan_changes(list(live.values()), {k: None for k in live}, inventory)
    assert [c.key.kind for c in applied] == ["Namespace", "ConfigMap", "CronJob", "PrometheusRule"]


def test_sync_wave_orders_within_a_stage() -> None:
    late = _obj("kuadrant.io/v1", "RateLimitPolicy", "a", "ns",
                )
    late["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "6"}
    early = _obj("kuadrant.io/v1", "AuthPolicy", "z", "ns")
    early["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "5"}
    planned = ch.plan_changes([late, early], {}, Inventory("x"))
    assert [c.key.kind for c in planned] == ["AuthPolicy", "RateLimitPolicy"]


def test_only_members_of_this_applyset_are_pruned_and_keep_is_honoured() -> None:
    set_id = "applyset-mine-v1"
    mine = with_applyset_label(_obj("v1", "ConfigMap", "mine", "ns"), set_id)
    kept = with_applyset_label(_obj("v1", "ConfigMap", "kept", "ns"), set_id)
    kept["metadata"]["annotations"] = {c.ANNOTATION_KEEP: "true"}
    theirs = with_applyset_label(_obj("v1", "ConfigMap", "theirs", "ns"), "applyset-other-v1")
    unlabelled = _obj("v1", "ConfigMap", "plain", "ns")
    other_kind = with_applyset_label(_obj("v1", "Secret", "not-hinted", "ns"), set_id)
    live = {key_of(o): o for o in (mine, kept, theirs, unlabelled, other_kind)}
    planned = ch.plan_changes([], live, Inventory(set_id, frozenset({"ConfigMap"})))
    assert {(c.key.name, c.keep) for c in planned} == {("mine", False), ("kept", True)}
    assert [c.pending for c in planned if c.key.name == "kept"] == [False]


def test_server_bookkeeping_is_not_a_change() -> None:
    desired = _obj("v1", "ConfigMap", "cm", "ns", data={"a": "1"})
    live = copy.deepcopy(desired)
    live["metadata"].update(resourceVersion="42", generation=3, uid="u", creationTimestamp="t",
                            managedFields=[{"manager": "costplan"}])
    live["status"] = {"anything": True}
    [change] = ch.plan_changes([desired], {key_of(desired): live}, Inventory("x"))
    assert change.action == ch.ACTION_UNCHANGED and change.diff == ""
    live["data"] = {"a": "2"}
    [change] = ch.plan_changes([desired], {key_of(desired): live}, Inventory("x"))
    assert change.action == ch.ACTION_UPDATE
    assert "-  a: '2'" in change.diff and "+  a: '1'" in change.diff
    assert "resourceVersion" not in change.diff and "managedFields" not in change.diff


def test_applyset_id_follows_the_kubectl_formula() -> None:
    import hashlib

    digest = hashlib.sha256(b"costplan-demo-base.monitoring.ConfigMap.").digest()
    expected = "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"
    assert applyset_id("costplan-demo-base", "monitoring") == expected
    assert re.fullmatch(r"applyset-[A-Za-z0-9_-]{43}-v1", expected)


def test_parent_id_mismatch_is_refused() -> None:
    parent = {"metadata": {"name": "p", "namespace": "ns", "labels": {c.LABEL_APPLYSET_ID: "applyset-wrong-v1"},
                           "annotations": {c.ANNOTATION_APPLYSET_TOOLING: "costplan/0.0.1"}}}
    assert "expected" in parent_problem(parent, applyset_id("p", "ns"))
    plain = {"metadata": {"name": "p", "namespace": "ns"}}
    assert "not an ApplySet parent" in parent_problem(plain, applyset_id("p", "ns"))


def test_plain_files_are_never_applied() -> None:
    artifacts = [file("opencost", "values-opencost.yaml", {"a": 1}),
                 manifest("x", _obj("v1", "ConfigMap", "cm", "ns"))]
    assert apply.desired_objects(artifacts) == [_obj("v1", "ConfigMap", "cm", "ns")]


def test_an_invalid_plan_exits_3_with_diagnostics_and_no_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cli_cluster, "connect", lambda *a: pytest.fail("must not connect"))
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(("price: 0.002", "price: -1")), encoding="utf-8")
    result = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(plan)])
    assert result.exit_code == 3
    assert "costplan.yaml:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_env_is_required_when_the_plan_has_environments(monkeypatch) -> None:
    monkeypatch.setattr(cli_cluster, "connect", lambda *a: pytest.fail("must not connect"))
    result = CliRunner().invoke(cli_cluster.diff_command, ["-f", str(PLAN)])
    assert result.exit_code == 2
    assert "--env is required" in result.stderr


def test_an_unreachable_cluster_exits_4(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args: Any) -> Any:
        raise ClusterError("cannot reach the cluster: connection refused")

    monkeypatch.setattr(cli_cluster, "connect", refuse)
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(), encoding="utf-8")
    result = CliRunner().invoke(cli_cluster.diff_command, ["-f", str(plan)])
    assert result.exit_code == 4
    assert "connection refused" in result.stderr


def test_commands_register_in_a_click_group(harness: Harness) -> None:
    group = click.Group("costplan")
    group.add_command(cli_cluster.diff_command, "diff")
    group.add_command(cli_cluster.apply_command, "apply")
    harness.write_plan()
    result = CliRunner().invoke(group, ["apply", "--check", "-f", str(harness.plan_path), *harness.cli_args()])
    assert result.exit_code == 1
    assert "RECAP: " in result.stderr


def test_kube_cluster_sends_server_side_apply_as_costplan_and_maps_conflicts() -> None:
    """``KubeCluster`` passes field manager, dryRun=All and force through, and turns 409 into ApplyConflict."""
    import json

    from kubernetes.client.rest import ApiException
    from kubernetes.dynamic.exceptions import ConflictError

    from costplan.install.cluster import KubeCluster

    class Resource:
        namespaced = True
        group_version = "v1"

    class Result:
        def to_dict(self) -> dict[str, Any]:
            return {"kind": "ConfigMap"}

    calls: list[dict[str, Any]] = []

    class Dynamic:
        class resources:
            @staticmethod
            def get(**kwargs: Any) -> Resource:
                return Resource()

        @staticmethod
        def server_side_apply(resource: Any, **kwargs: Any) -> Result:
            calls.append(kwargs)
            if kwargs["body"]["metadata"]["name"] == "taken":
                error = ApiException(status=409, reason="Conflict")
                error.body = json.dumps({"message": 'Apply failed with 1 conflict: conflict with "kubectl"'})
                raise ConflictError(error)
            return Result()

    cluster = KubeCluster.__new__(KubeCluster)
    cluster.dynamic = Dynamic()
    cluster.timeout = 5.0
    body = _obj("v1", "ConfigMap", "cm", "ns")
    assert cluster.apply(body, dry_run=True) == {"kind": "ConfigMap"}
    assert calls[-1] == {"body": body, "name": "cm", "namespace": "ns", "field_manager": "costplan",
                         "force_conflicts": None, "dry_run": "All", "_request_timeout": 5.0}
    cluster.apply(body, force_conflicts=True)
    assert (calls[-1]["dry_run"], calls[-1]["force_conflicts"]) == (None, True)
    with pytest.raises(ApplyConflict, match='conflict with "kubectl"'):
        cluster.apply(_obj("v1", "ConfigMap", "taken", "ns"))
