"""``costplan diff`` / ``costplan apply`` against an in-memory cluster.

The scenarios take a ``harness`` fixture; here it wraps ``FakeCluster``,
which implements enough of server-side apply (field ownership per manager,
conflicts, force, removal of fields a manager stopped applying, dry run) for
the installer's behaviour to be tested at the ``cluster.py`` boundary.
``test_apply_cluster.py`` runs the same scenarios against a real cluster.
"""

from __future__ import annotations

import base64
import collections
import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
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
from costplan.install.cluster import Applied, ApplyConflict, ClusterError
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
RECAP_WAIT = re.compile(r"^RECAP: .* failed=(?P<failed>\d+) skipped=\d+ ready=(?P<ready>\d+) "
                        r"not_ready=(?P<not_ready>\d+)$", re.MULTILINE)
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
    """Objects, per-manager field ownership, CRDs, RBAC refusals and a log of every write.

    Field ownership is reported the way the API server reports it: a
    ``managedFields`` entry per manager (operation ``Apply``, ``FieldsV1``,
    identity fields stripped; lists atomic), so the installer's no-op proof
    reads the same data here as on a real cluster.
    """

    def __init__(self, namespaces: Iterable[str] = (), crds: Iterable[str] = PLAN_CRDS) -> None:
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.owners: dict[ObjectKey, dict[str, set[tuple[str, ...]]]] = {}
        self.crds = set(crds)
        self.forbidden: set[tuple[str, str]] = set()  # (verb, kind) the caller may not do
        self.writes: list[tuple[str, ObjectKey]] = []
        self.lock = threading.RLock()
        self._versions = itertools.count(1)
        for namespace in namespaces:
            self.apply_as("setup", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        self.writes.clear()

    def _served(self, key: ObjectKey) -> bool:
        return is_builtin_group(key.group) or key.group_kind in self.crds

    def _check(self, verb: str, kind: str, name: str) -> None:
        if (verb, kind) in self.forbidden:
            raise Forbidden(f'{kind.lower()}s "{name}" is forbidden: User "test" cannot {verb} resource '
                            f'"{kind.lower()}s"')

    def apply_as(self, manager: str, body: dict[str, Any], *, dry_run: bool = False,
                 force_conflicts: bool = False) -> dict[str, Any]:
        with self.lock:
            return self._apply_as(manager, body, dry_run=dry_run, force_conflicts=force_conflicts)

    def _apply_as(self, manager: str, body: dict[str, Any], *, dry_run: bool,
                  force_conflicts: bool) -> dict[str, Any]:
        key = key_of(body)
        if not self._served(key):
            raise ClusterError(f'no matches for kind "{key.kind}" in group "{key.group}"')
        if manager == "costplan":
            self._check("patch", key.kind, key.name)
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
        result["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply", "apiVersion": body["apiVersion"], "fieldsType": "FieldsV1",
             "fieldsV1": _fields_v1(paths)}
            for m, paths in sorted(owners.items()) if paths
        ]
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
        return Applied(copy.deepcopy(result), created=current is None)

    # -- the Cluster protocol ----------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        key = ObjectKey(api_group(api_version), kind, None if kind in CLUSTER_SCOPED else namespace, name)
        with self.lock:
            found = self.objects.get(key)
            return copy.deepcopy(found) if found else None

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False) -> dict[str, Any]:
        return self.apply_as("costplan", body, dry_run=dry_run, force_conflicts=force_conflicts)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None, *,
               dry_run: bool = False) -> None:
        key = ObjectKey(api_group(api_version), kind, namespace, name)
        with self.lock:
            self._check("delete", kind, name)
            if dry_run:
                return
            if self.objects.pop(key, None) is not None:
                self.owners.pop(key, None)
                self.writes.append(("delete", key))

    def list(self, group: str, kind: str, namespaces: Iterable[str] | None,
             label_selector: str) -> list[dict[str, Any]]:
        """``namespaces=None``: every namespace (a cluster-wide list)."""
        label, _, value = label_selector.partition("=")
        scopes = None if namespaces is None else set(namespaces)
        with self.lock:
            return [
                copy.deepcopy(obj) for key, obj in sorted(self.objects.items())
                if key.group == group and key.kind == kind
                and (kind in CLUSTER_SCOPED or scopes is None or key.namespace in scopes)
                and (not label or (obj["metadata"].get("labels") or {}).get(label) == value)
            ]

    def missing_crds(self, group_kinds: Iterable[str]) -> list[str]:
        return sorted(gk for gk in group_kinds
                      if not is_builtin_group(split_group_kind(gk)[0]) and gk not in self.crds)


class Forbidden(ClusterError):
    """RBAC refused the request (HTTP 403 behind ``ApiServer``)."""


def _fields_v1(paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """Leaf paths as the API server's ``FieldsV1`` trie: ``{"f:spec": {"f:replicas": {}}}``."""
    trie: dict[str, Any] = {}
    for path in sorted(paths):
        node = trie
        for name in path:
            node = node.setdefault(f"f:{name}", {})
    return trie


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

    def forbid(self, verb: str, kind: str) -> None:
        """Make RBAC refuse ``verb`` on ``kind`` for costplan."""
        pytest.skip("RBAC can only be narrowed for a test on the fake")

    def require_http(self) -> None:
        from costplan.install.cluster import KubeCluster

        if not isinstance(self.cluster, KubeCluster):
            pytest.skip("requests are counted at the HTTP client")


class FakeHarness(Harness):
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path, "t1")
        self.cluster = FakeCluster(self.base_namespaces)
        monkeypatch.setattr(cli_cluster, "connect", lambda *args: self.cluster)

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        self.cluster.apply_as(manager, body, force_conflicts=force)

    def hide_crd(self, group_kind: str) -> None:
        self.cluster.crds.discard(group_kind)

    def forbid(self, verb: str, kind: str) -> None:
        self.cluster.forbidden.add((verb, kind))


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
    """A tiny Kubernetes API (discovery, get, list, server-side apply, delete) over ``FakeCluster``.

    It answers like kube-apiserver where the installer depends on it: a path
    it does not serve gets a plain-text ``404 page not found`` (a missing
    object gets a ``Status``), a cluster-wide list spans every namespace,
    dry runs change nothing, RBAC refusals are 403, a wrong token is 401.
    Faults for the installer's error handling: ``delay`` seconds before each
    answer, ``die_after_writes`` (the server stops answering after that many
    writes), and ``resources`` can change while it runs (a CRD's served
    versions changing). ``requests`` records every request.
    """

    def __init__(self, backend: FakeCluster, *, token: str | None = "test", tls: tuple[str, str] | None = None) -> None:
        import http.server
        import ssl

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as kube-apiserver
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per keep-alive request

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, payload: Any) -> None:
                text = isinstance(payload, str)
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self._headers_buffer.append(b"\r\n" + data)  # headers and body in one write
                self.flush_headers()

            def _handle(self, method: str) -> None:
                if server.dead:
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client went away mid-body: kube-apiserver fails the read, applies nothing
                    self.close_connection = True
                    return
                code, payload = server.handle(method, self.path, self.headers, body)
                if server.dead:  # died while handling: no answer at all
                    self.close_connection = True
                    return
                self._reply(code, payload)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.backend = backend
        self.token = token
        self.resources = {gv: list(rs) for gv, rs in _RESOURCES.items()}
        self.requests: list[tuple[str, str]] = []
        self.delay = 0.0
        self.die_after_writes: int | None = None
        self.dead = False
        self._writes = 0
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def classify(method: str, raw_path: str) -> str:
        """``discovery``, ``list``, ``object`` (a GET by name), ``dry-run`` or ``write``."""
        path, _, query = raw_path.partition("?")
        parts = [p for p in path.split("/") if p]
        if len(parts) <= (2 if parts[:1] == ["api"] else 3):
            return "discovery"
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]
        if method == "GET":
            return "object" if len(rest) > 1 else "list"
        return "dry-run" if "dryRun=All" in query else "write"

    def count(self, what: str) -> int:
        return sum(1 for method, raw in list(self.requests) if self.classify(method, raw) == what)

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        with self._lock:
            self.requests.append((method, raw_path))
        if self.delay:
            time.sleep(self.delay)
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [p for p in split.path.split("/") if p]
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            by_group: dict[str, list[str]] = {}
            for g, v in self.resources:
                if g:
                    by_group.setdefault(g, []).append(v)
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                       "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                      for g, vs in by_group.items()]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        resources = self.resources.get((group, version))
        if resources is None:
            return 404, "404 page not found"
        if not rest:
            return 200, {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                         "resources": [{"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
                                        "verbs": ["get", "list", "patch", "delete", "create", "update"]}
                                       for n, k, ns in resources]}
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        kind = next((k for n, k, _ in resources if n == plural), None)
        if kind is None:
            return 404, "404 page not found"
        api_version = f"{group}/{version}" if group else version
        if kind == "CustomResourceDefinition":
            crds = [self._crd(gk, self.resources) for gk in sorted(self.backend.crds)]
            if name is not None:
                one = next((d for d in crds if d["metadata"]["name"] == name), None)
                return (200, one) if one else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
            return 200, {"kind": "CustomResourceDefinitionList", "apiVersion": api_version, "metadata": {},
                         "items": crds}
        try:
            if method == "GET" and name is None:
                if ("list", kind) in self.backend.forbidden and namespace is None:
                    raise Forbidden(f'{plural} is forbidden: User "test" cannot list resource "{plural}" '
                                    "at the cluster scope")
                items = self.backend.list(group, kind, [namespace] if namespace else None,
                                          query.get("labelSelector", ""))
                for item in items:
                    item["apiVersion"] = api_version
                return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {}, "items": items}
            if method == "GET":
                found = self.backend.get(api_version, kind, name, namespace)
                return (200, found) if found else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
            if method == "DELETE":
                self.backend.delete(api_version, kind, name, namespace, dry_run=query.get("dryRun") == "All")
                self._wrote(query)
                return 200, _status(200, "", "deleted") | {"status": "Success"}
            if headers.get("Content-Type") != "application/apply-patch+yaml" or "fieldManager" not in query:
                return 415, _status(415, "UnsupportedMediaType", "only server-side apply is served")
            result = self.backend.apply_as(query["fieldManager"], yaml.load(body, Loader=_LOADER),
                                           dry_run=query.get("dryRun") == "All",
                                           force_conflicts=query.get("force", "").lower() == "true")
            self._wrote(query)
            return (201 if getattr(result, "created", False) else 200), result
        except ApplyConflict as exc:
            return 409, _status(409, "Conflict", str(exc))
        except Forbidden as exc:
            return 403, _status(403, "Forbidden", str(exc))
        except ClusterError as exc:
            return 404, _status(404, "NotFound", str(exc))

    def _wrote(self, query: dict[str, str]) -> None:
        if query.get("dryRun") == "All":
            return
        with self._lock:
            self._writes += 1
            if self.die_after_writes is not None and self._writes >= self.die_after_writes:
                self.dead = True

    @staticmethod
    def _crd(group_kind: str, resources: dict[tuple[str, str], list[tuple[str, str, bool]]] | None = None) -> dict[str, Any]:
        """The CRD of a custom kind, serving the version ``resources`` (default: the fake's own) lists."""
        group, kind = split_group_kind(group_kind)
        served = _RESOURCES if resources is None else resources
        plural, version = next((n, v) for (g, v), rs in served.items() if g == group for n, k, _ in rs if k == kind)
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {"group": group, "names": {"kind": kind, "plural": plural},
                         "versions": [{"name": version, "served": True, "storage": True}]},
                "status": {"conditions": [{"type": "Established", "status": "True"}]}}


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def write_kubeconfig(path: Path, server: str, token: str = "test", insecure: bool = False) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": cluster}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": token}}],
    }))
    return path


class ApiServerHarness(Harness):
    """``KubeCluster`` talking HTTP to ``ApiServer``."""

    real = True  # observed only through the API, like a real cluster

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from costplan.install.cluster import KubeCluster

        super().__init__(tmp_path, "h1")
        self.backend = FakeCluster(self.base_namespaces)
        self.server = ApiServer(self.backend)
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", self.server.url)
        self.cluster = KubeCluster(kubeconfig=str(self.kubeconfig), timeout=600.0)

    def cli_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)]

    def apply_as(self, manager: str, body: dict[str, Any], force: bool = False) -> None:
        self.backend.apply_as(manager, body, force_conflicts=force)

    def forbid(self, verb: str, kind: str) -> None:
        self.backend.forbidden.add((verb, kind))


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
    # A released namespace is shown as what happens to it (its labels go), not as a deletion.
    assert f"+++ plan/Namespace/research-{harness.suffix}" in diff.stdout
    assert f"-    {c.LABEL_APPLYSET_PART_OF}: " in diff.stdout
    assert f"pruned: Namespace/research-{harness.suffix} ({apply.RELEASED_NOTE})" in diff.stderr
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
    writes = [key for _, key in harness.cluster.writes]
    # The set is recorded first; only the parent's own namespace, when this run creates it, comes before.
    first = writes.index(next(k for k in writes if k.name == harness.parent_name))
    assert [(k.kind, k.name) for k in writes[:first]] in ([], [("Namespace", harness.monitoring)])
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


def record_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request ``KubeCluster`` sends from now on, as (method, path?query)."""
    from urllib.parse import urlencode

    from costplan.install.cluster import KubeCluster

    sent: list[tuple[str, str]] = []
    original = KubeCluster.request

    def request(self: Any, method: str, path: str, query: dict[str, str] | None = None,
                *args: Any, **kwargs: Any) -> Any:
        sent.append((method, path + ("?" + urlencode(query) if query else "")))
        return original(self, method, path, query, *args, **kwargs)

    monkeypatch.setattr(KubeCluster, "request", request)
    return sent


def test_a_no_op_apply_sends_no_writes_and_one_list_per_kind(harness: Harness,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    harness.require_http()
    harness.write_plan()
    desired = harness.manifests()
    kinds = {key_of(o).group_kind for o in desired}
    keys = [key_of(o) for o in desired]
    # The parent and each namespace the plan needs but does not create (checked up front).
    reads = 1 + len({k.namespace for k in keys if k.namespace} - {k.name for k in keys if k.kind == "Namespace"})
    sent = record_requests(monkeypatch)
    assert harness.cli("apply").exit_code == 0
    first = collections.Counter(ApiServer.classify(m, p) for m, p in sent)
    # A first apply: one write per object (and the parent), no dry run, no GET per object.
    assert first["write"] == len(desired) + 1, first
    assert first["dry-run"] == 0 and first["object"] == reads, first
    for command in ("apply", "diff"):
        sent.clear()
        result = harness.cli(command)
        assert result.exit_code == 0, result.stderr
        assert recap(result.stderr)["ok"] == len(desired)
        counts = collections.Counter(ApiServer.classify(m, p) for m, p in sent)
        assert counts["write"] == 0 and counts["dry-run"] == 0, (command, counts)
        assert counts["list"] <= len(kinds) + 1, (command, counts)  # + the CRD list
        assert counts["object"] == reads, (command, counts)


def test_check_and_diff_dry_run_prunes_and_report_a_refused_delete(harness: Harness) -> None:
    set_ = ApplySet(f"costplan-rbac-{harness.suffix}", harness.monitoring)
    objects = [_obj("v1", "ConfigMap", f"rbac-{n}", harness.monitoring, data={"n": str(n)}) for n in (1, 2)]

    def run(desired: list[dict[str, Any]], mode: str) -> tuple[apply.Outcome, str]:
        err: list[str] = []
        outcome = apply.run(harness.cluster, desired, set_, apply.Options(mode=mode), lambda _: None, err.append)
        return outcome, "\n".join(err)

    assert run(objects, apply.MODE_APPLY)[0].recap.created == 2
    harness.forbid("delete", "ConfigMap")
    for mode in (apply.MODE_CHECK, apply.MODE_DIFF):
        outcome, err = run(objects[:1], mode)
        assert (outcome.recap.pruned, outcome.recap.failed) == (0, 1), err
        assert f"failed: ConfigMap/{harness.monitoring}/rbac-2" in err and "forbidden" in err
    outcome, err = run(objects[:1], apply.MODE_APPLY)
    assert outcome.recap.failed == 1 and "forbidden" in err
    assert harness.cluster.get("v1", "ConfigMap", "rbac-2", harness.monitoring) is not None


class Proxy:
    """A TCP relay in front of an API server that can be cut at once (the server "dies" for the client)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket

        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.sockets: list[Any] = []
        self.cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        import socket

        while not self.cut:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: Any, target: Any) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.close()
                except OSError:
                    pass

    def kill(self) -> None:
        import socket

        self.cut = True
        for s in [self.listener, *self.sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_a_server_gone_mid_run_through_a_proxy(harness: Harness, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The apiserver disappears after some writes (the relay is cut): one summary line, then a re-run converges."""
    from urllib.parse import urlsplit

    from costplan.install.cluster import KubeCluster

    harness.require_http()
    harness.write_plan()
    desired = harness.manifests()
    config = yaml.safe_load(Path(str(harness.kubeconfig)).expanduser().read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    target = urlsplit(cluster["server"])
    proxy = Proxy((target.hostname or "127.0.0.1", target.port or (443 if target.scheme == "https" else 80)))
    if target.hostname not in ("127.0.0.1", "localhost") and target.scheme == "https":
        cluster.setdefault("tls-server-name", target.hostname)
    cluster["server"] = f"{target.scheme}://127.0.0.1:{proxy.port}"
    relayed = tmp_path / "relayed-kubeconfig"
    relayed.write_text(yaml.safe_dump(config))

    writes = 0
    original = KubeCluster.request

    def request(self: Any, method: str, path: str, query: dict[str, str] | None = None,
                *args: Any, **kwargs: Any) -> Any:
        nonlocal writes
        answer = original(self, method, path, query, *args, **kwargs)
        if method == "PATCH" and not (query or {}).get("dryRun"):
            writes += 1
            if writes == 4:  # the parent and three objects, then the server is gone
                proxy.kill()
        return answer

    monkeypatch.setattr(KubeCluster, "request", request)
    runner = CliRunner()
    gone = runner.invoke(cli_cluster.apply_command, ["-f", str(harness.plan_path), "--kubeconfig", str(relayed)],
                         catch_exceptions=False)
    assert gone.exit_code == 4
    summary = [line for line in gone.stderr.splitlines() if line.startswith("failed:")]
    assert len(summary) == 1 and "server unreachable since object" in summary[0], gone.stderr
    assert summary[0].endswith("not attempted; re-run to converge")
    assert "Traceback" not in gone.stderr
    monkeypatch.setattr(KubeCluster, "request", original)
    again = harness.cli("apply")
    assert again.exit_code == 0, again.stderr
    counts = recap(again.stderr)
    # A namespace that existed before (unlabelled) and was not reached is "changed", not "created".
    assert counts["created"] + counts["changed"] + counts["ok"] == len(desired), again.stderr
    assert counts["failed"] == counts["skipped"] == 0, again.stderr
    converged = recap(harness.cli("apply").stderr)
    assert converged["ok"] == len(desired) and converged["changed"] == converged["created"] == 0, converged


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


def test_kube_cluster_sends_server_side_apply_as_costplan_and_maps_conflicts(tmp_path: Path) -> None:
    """``KubeCluster`` sends field manager, dryRun=All and force as query parameters, and turns 409 into ApplyConflict."""
    from costplan.install.cluster import KubeCluster

    backend = FakeCluster(["ns"])
    server = ApiServer(backend)
    try:
        cluster = KubeCluster(kubeconfig=str(write_kubeconfig(tmp_path / "kc", server.url)), timeout=30.0)
        body = _obj("v1", "ConfigMap", "cm", "ns", data={"a": "1"})
        assert cluster.apply(body, dry_run=True)["data"] == {"a": "1"}
        assert backend.objects.get(key_of(body)) is None
        assert server.requests[-1] == ("PATCH", "/api/v1/namespaces/ns/configmaps/cm?fieldManager=costplan&dryRun=All")
        cluster.apply(body, force_conflicts=True)
        assert server.requests[-1] == ("PATCH", "/api/v1/namespaces/ns/configmaps/cm?fieldManager=costplan&force=true")
        backend.apply_as("kubectl", _obj("v1", "ConfigMap", "cm", "ns", data={"a": "2"}), force_conflicts=True)
        with pytest.raises(ApplyConflict, match='conflict with "kubectl"'):
            cluster.apply(body)
    finally:
        server.close()


# ---------------------------------------------------------------------------
# Faults at the client boundary: a server that hangs, dies, rejects or changes
# ---------------------------------------------------------------------------

def _cli(command: str, plan: Path, kubeconfig: Path, *args: str):
    target = cli_cluster.apply_command if command == "apply" else cli_cluster.diff_command
    return CliRunner().invoke(target, ["-f", str(plan), "--kubeconfig", str(kubeconfig), *args],
                              catch_exceptions=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ApiServer, Path, Path]]:
    """An ``ApiServer`` with the scenario plan's namespaces, its kubeconfig and the plan."""
    backend = FakeCluster(["llm-f1", "monitoring-f1", "kuadrant-f1"])
    server = ApiServer(backend)
    plan = tmp_path / "costplan.yaml"
    plan.write_text(scenario_plan("f1"), encoding="utf-8")
    try:
        yield server, write_kubeconfig(tmp_path / "kubeconfig", server.url), plan
    finally:
        server.dead = False
        server.close()


def test_a_server_that_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nothing ever reads or answers
    try:
        plan = tmp_path / "costplan.yaml"
        plan.write_text(scenario_plan("f1"), encoding="utf-8")
        kubeconfig = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        result = _cli("diff", plan, kubeconfig, "--timeout", "1.5")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result.exit_code == 4
    assert elapsed < 1.5 + 3.0  # the build plus the timeout, not a hang
    assert "did not answer within" in result.stderr and "--timeout 1.5s" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_timeout_bounds_the_whole_run_not_each_request(served: tuple[ApiServer, Path, Path]) -> None:
    server, kubeconfig, plan = served
    server.delay = 0.15  # every answer is quick, but there are many of them
    started = time.monotonic()
    result = _cli("apply", plan, kubeconfig, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert result.exit_code == 4
    assert elapsed < 1 + 3.0
    assert "--timeout" in result.stderr and "Traceback" not in result.stderr


def test_a_wrong_token_is_one_line_without_headers(served: tuple[ApiServer, Path, Path], tmp_path: Path) -> None:
    server, _, plan = served
    wrong = write_kubeconfig(tmp_path / "wrong", server.url, token="not-the-token")
    result = _cli("apply", plan, wrong)
    assert result.exit_code == 4
    assert result.stderr.strip().splitlines() == [
        f"error: the API server at {server.url} rejected the credentials (401 Unauthorized); "
        "check the kubeconfig's user"]
    assert "not-the-token" not in result.stderr


def test_insecure_tls_warns_once_per_run(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import warnings

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=costplan-test", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = ApiServer(FakeCluster(["llm-f1", "monitoring-f1", "kuadrant-f1"]), tls=(str(cert), str(key)))
    try:
        plan = tmp_path / "costplan.yaml"
        plan.write_text(scenario_plan("f1"), encoding="utf-8")
        kubeconfig = write_kubeconfig(tmp_path / "kc", server.url, insecure=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _cli("apply", plan, kubeconfig)
    finally:
        server.close()
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("is not verified") == 1
    assert recap(result.stderr)["created"] > 10  # many requests, one warning
    assert [w for w in caught if "Unverified HTTPS" in str(w.message)] == []


def test_a_server_gone_mid_run_stops_and_summarises_then_a_rerun_converges(
        served: tuple[ApiServer, Path, Path]) -> None:
    server, kubeconfig, plan = served
    desired = [key_of(o) for o in apply.desired_objects(build_stage.build(plan, [None]).environments["base"])]
    server.die_after_writes = 6  # the parent and five objects are written, the fifth never answered
    result = _cli("apply", plan, kubeconfig)
    assert result.exit_code == 4
    summary = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(summary) == 1, result.stderr
    found = re.fullmatch(r"failed: server unreachable since object (\d+) of (\d+) \(.*\); (\d+) failed, "
                         r"(\d+) not attempted; re-run to converge", summary[0])
    assert found, summary
    since, total, failed, skipped = map(int, found.groups())
    assert total == len(desired) and 2 <= since <= 6  # writes within a stage run concurrently
    counts = recap(result.stderr)
    # Four objects were written and answered (namespaces that exist already count as changed); the
    # fifth was written but never answered, so the re-run finds five unchanged.
    written = counts["created"] + counts["changed"]
    assert written == 4 and counts["failed"] == failed and counts["skipped"] == skipped
    assert written + failed + skipped == len(desired)
    assert "Traceback" not in result.stderr

    server.die_after_writes, server.dead = None, False
    again = _cli("apply", plan, kubeconfig)
    assert again.exit_code == 0, again.stderr
    after = recap(again.stderr)
    # Converged: every object is there; at least the five written before are unchanged now.
    assert after["created"] + after["changed"] + after["ok"] == len(desired) and after["ok"] >= 5
    assert after["failed"] == 0


def test_a_served_version_change_names_the_cause(served: tuple[ApiServer, Path, Path]) -> None:
    from costplan.install.cluster import KubeCluster

    server, kubeconfig, plan = served
    assert _cli("apply", plan, kubeconfig).exit_code == 0
    # The Kuadrant CRDs now serve v1beta9 only; a cluster that discovered v1 earlier in the run
    # gets a 404 for the old path and must name the change, not blame the object.
    cluster = KubeCluster(kubeconfig=str(kubeconfig), timeout=60.0)
    cluster._kinds("kuadrant.io/v1")
    server.resources[("kuadrant.io", "v1beta9")] = server.resources.pop(("kuadrant.io", "v1"))
    desired = apply.desired_objects(build_stage.build(plan, [None]).environments["base"])
    policy = next(o for o in desired if o["kind"] == "AuthPolicy")
    with pytest.raises(ClusterError, match=r"serves AuthPolicy in kuadrant.io/v1beta9, not in kuadrant.io/v1"):
        cluster.apply(policy, dry_run=True)
    # A new run discovers afresh (nothing cached between runs) and says the same per object.
    result = _cli("apply", plan, kubeconfig)
    assert result.exit_code == 4
    assert "serves AuthPolicy in kuadrant.io/v1beta9, not in kuadrant.io/v1" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# The no-op proof and the in-memory objects (pure)
# ---------------------------------------------------------------------------

def _live_with(body: dict[str, Any], fields: dict[str, Any], **changes: Any) -> dict[str, Any]:
    live = copy.deepcopy(body)
    live.update(changes)
    live["metadata"] = {**live["metadata"], "uid": "u", "resourceVersion": "7", "labels": {"other": "x"},
                        "managedFields": [{"manager": "costplan", "operation": "Apply", "apiVersion": "apps/v1",
                                           "fieldsType": "FieldsV1", "fieldsV1": fields},
                                          {"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                                           "fieldsType": "FieldsV1",
                                           "fieldsV1": {"f:metadata": {"f:labels": {"f:other": {}}}}}]}
    return live


def test_unchanged_by_apply_reads_costplans_managed_fields() -> None:
    from costplan.install.ownership import unchanged_by_apply

    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i:1"}]}}}}
    owned = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
        'k:{"name":"app"}': {".": {}, "f:name": {}, "f:image": {}}}}}}}
    assert unchanged_by_apply(_live_with(body, owned), body)
    # A value another manager changed, a field costplan stopped setting, one it never owned,
    # a list item by position, another version's field set: only the server can tell.
    assert not unchanged_by_apply(_live_with(body, owned, spec={**body["spec"], "replicas": 3}), body)
    assert not unchanged_by_apply(_live_with(body, {**owned, "f:metadata": {"f:annotations": {"f:a": {}}}}), body)
    assert not unchanged_by_apply(_live_with(body, {"f:spec": {"f:replicas": {}}}), body)
    assert not unchanged_by_apply(_live_with(body, {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
        "f:containers": {"i:0": {"f:image": {}}}}}}}), body)
    other_version = _live_with(body, owned)
    other_version["metadata"]["managedFields"][0]["apiVersion"] = "apps/v1beta2"
    assert not unchanged_by_apply(other_version, body)
    assert not unchanged_by_apply(None, body)
    # Integers and booleans are not interchangeable, even though Python says 1 == True.
    flag = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"on": True}}
    live = _live_with(flag, {"f:spec": {"f:on": {}}}, spec={"on": 1})
    live["metadata"]["managedFields"][0]["apiVersion"] = "v1"
    assert not unchanged_by_apply(live, flag)
    live["spec"] = {"on": True}
    assert unchanged_by_apply(live, flag)


def test_desired_objects_equal_the_canonical_yaml_round_trip_without_one() -> None:
    from costplan.core.canonical_yaml import dump_yaml
    from costplan.plan.load import list_environments

    result = build_stage.build(PLAN, [list_environments(PLAN)[0]])
    artifacts = next(iter(result.environments.values()))
    round_trip = [yaml.safe_load(dump_yaml(a.data)) for a in artifacts if a.is_manifest]
    assert len(round_trip) > 20
    assert apply.desired_objects(artifacts) == round_trip
    assert apply.plain({"price": Decimal("0.000002"), "count": Decimal("15")}) == {"price": 2e-06, "count": 15}


def test_a_bare_cluster_names_missing_namespaces_and_their_components(tmp_path: Path, monkeypatch) -> None:
    bare = FakeCluster()  # no namespaces at all
    monkeypatch.setattr(cli_cluster, "connect", lambda *args: bare)
    plan = tmp_path / "costplan.yaml"
    # With createNamespaces false the components' namespaces are not part of the build.
    plan.write_text(scenario_plan("b1") + "install:\n  createNamespaces: false\n", encoding="utf-8")
    result = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(plan)], catch_exceptions=False)
    assert result.exit_code == 4
    missing = [line for line in result.stderr.splitlines() if line.startswith("failed: namespace ")]
    assert [line.split()[2] for line in missing] == ["kuadrant-b1", "llm-b1", "monitoring-b1"]
    assert any("monitoring-b1 does not exist" in line and "Prometheus Operator" in line for line in missing)
    assert any("kuadrant-b1 does not exist" in line and "Limitador" in line for line in missing)
    assert "--create-namespaces" in result.stderr and bare.writes == []
    created = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(plan), "--create-namespaces"],
                                 catch_exceptions=False)
    assert created.exit_code == 0, created.stderr
    assert {"Namespace/monitoring-b1", "Namespace/llm-b1", "Namespace/kuadrant-b1"} <= lines(created.stderr, "created")
    # The same from the plan: install.createNamespaces (the default) puts them in the build.
    other = FakeCluster()
    monkeypatch.setattr(cli_cluster, "connect", lambda *args: other)
    plan.write_text(scenario_plan("b1"), encoding="utf-8")
    by_plan = CliRunner().invoke(cli_cluster.apply_command, ["-f", str(plan)], catch_exceptions=False)
    assert by_plan.exit_code == 0, by_plan.stderr
    assert "Namespace/monitoring-b1" in lines(by_plan.stderr, "created")


def test_apply_wait_reports_readiness_of_policies_and_cronjobs(harness: Harness) -> None:
    harness.require_fake("readiness is set by the Kuadrant operator, which the fake stands in for")
    harness.write_plan()
    cluster: FakeCluster = harness.cluster
    waited = harness.cli("apply", "--wait", "0.5")  # nothing reports readiness yet
    assert waited.exit_code == 4
    counts = RECAP_WAIT.search(waited.stderr)
    assert counts and int(counts["not_ready"]) > 0 and int(counts["failed"]) == 0, waited.stderr
    policies = {k for k in cluster.objects if k.group.endswith("kuadrant.io")}
    assert policies and lines(waited.stderr, "not ready") == {str(k) for k in policies}
    assert "no Accepted condition yet" in waited.stderr
    assert all(f"ready: {k} (created)" in waited.stderr for k in cluster.objects if k.kind == "CronJob")

    def accept(enforced: str) -> None:  # what the operator writes into status
        for key in policies:
            cluster.objects[key]["status"] = {"conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"},
                {"type": "Enforced", "status": enforced, "reason": "Enforced" if enforced == "True" else "Unknown",
                 "message": "policy is not enforced by the gateway" if enforced != "True" else ""}]}

    accept("False")
    again = harness.cli("apply", "--wait", "0.2")
    assert again.exit_code == 4 and "Enforced=False: policy is not enforced by the gateway" in again.stderr
    accept("True")
    ready = harness.cli("apply", "--wait", "5")
    assert ready.exit_code == 0, ready.stderr
    found = RECAP_WAIT.search(ready.stderr)
    assert found and int(found["not_ready"]) == 0 and int(found["ready"]) == len(lines(ready.stderr, "ready"))


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=costplan-test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_a_kubeconfig_with_a_ca_and_a_token_needs_no_official_client(tmp_path: Path) -> None:
    """TLS verified against the kubeconfig's CA, the token sent, and the heavy client never imported."""
    import subprocess
    import sys

    cert, key = _certificate(tmp_path)
    server = ApiServer(FakeCluster(["ns"]), tls=(str(cert), str(key)))
    try:
        config = yaml.safe_load(write_kubeconfig(tmp_path / "kc", server.url).read_text())
        config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(cert.read_bytes()).decode()
        # KUBECONFIG lists files; the first that defines a name wins, so the stale entry is ignored.
        stale = copy.deepcopy(config)
        stale["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        (tmp_path / "a").write_text(yaml.safe_dump(config))
        (tmp_path / "b").write_text(yaml.safe_dump(stale))
        script = ("import sys\nfrom costplan.install.cluster import KubeCluster\n"
                  "c = KubeCluster(timeout=30)\n"
                  "print(c.get('v1', 'Namespace', 'ns', None)['metadata']['name'], 'kubernetes' in sys.modules)\n")
        env = {**__import__("os").environ, "KUBECONFIG": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ns", "False"]


def test_lists_fall_back_to_each_namespace_when_a_cluster_wide_list_is_forbidden(
        served: tuple[ApiServer, Path, Path]) -> None:
    server, kubeconfig, plan = served
    assert _cli("apply", plan, kubeconfig).exit_code == 0
    server.backend.forbidden.add(("list", "ConfigMap"))
    server.requests.clear()
    again = _cli("apply", plan, kubeconfig)
    assert again.exit_code == 0, again.stderr
    assert recap(again.stderr)["changed"] + recap(again.stderr)["created"] == 0
    listed = [p for m, p in server.requests if m == "GET" and p.split("?")[0].endswith("/configmaps")]
    assert "/api/v1/configmaps" in {p.split("?")[0] for p in listed}  # tried once, refused
    assert len(listed) == 1 + 3  # then one list per recorded namespace
    assert server.count("write") == 0


# ---------------------------------------------------------------------------
# Fleets: each part into its own cluster, as its own ApplySet
# ---------------------------------------------------------------------------

FLEET_CLUSTERS = "clusters:\n  - name: east\n    context: ctx-east\n  - name: west\n    context: ctx-west\n" \
                 "metrics:\n  engine: prometheus\n  queryURL: http://thanos-query.monitoring-q1.svc:9090\n"


class Fleet:
    """Three API servers (east, west, the management cluster) behind one kubeconfig with three contexts."""

    def __init__(self, tmp_path: Path, *, shared_global: bool = False) -> None:
        namespaces = ["llm-q1", "monitoring-q1", "kuadrant-q1"]
        self.backends = {name: FakeCluster(namespaces) for name in ("east", "west", "mgmt")}
        if shared_global:  # the global part on a member cluster: mgmt is east
            self.backends["mgmt"] = self.backends["east"]
        self.servers = {name: ApiServer(backend) for name, backend in self.backends.items()
                        if name != "mgmt" or not shared_global}
        urls = {name: server.url for name, server in self.servers.items()}
        urls.setdefault("mgmt", urls["east"])
        contexts = {"ctx-east": "east", "ctx-west": "west", "mgmt": "mgmt", "west-admin": "west"}
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "mgmt",
            "clusters": [{"name": n, "cluster": {"server": urls[n]}} for n in ("east", "west", "mgmt")],
            "contexts": [{"name": c, "context": {"cluster": n, "user": "test"}} for c, n in contexts.items()],
            "users": [{"name": "test", "user": {"token": "test"}}],
        }))
        self.plan = tmp_path / "costplan.yaml"
        self.write_plan()

    def write_plan(self, drop_team: str | None = None) -> None:
        self.plan.write_text(scenario_plan("q1", drop_team=drop_team) + FLEET_CLUSTERS, encoding="utf-8")

    def part(self, part: str) -> set[str]:
        """Keys of a part's manifests in the build, as the servers name them."""
        artifacts = build_stage.build(self.plan, [None]).environments["base"]
        return {str(key_of(a.data)) for a in artifacts if a.is_manifest and a.part == part}

    def cli(self, command: str, *args: str):
        return _cli(command, self.plan, self.kubeconfig, *args)

    def written(self, name: str) -> set[str]:
        return {str(key) for _, key in self.backends[name].writes}

    def members(self, name: str, part: str) -> set[str]:
        """Objects on a server labelled as members of a part's ApplySet."""
        set_id = applyset_id(f"costplan-demo-q1-base-{part.replace('/', '-')}", "monitoring-q1")
        return {str(key) for key, obj in self.backends[name].objects.items()
                if obj["metadata"].get("labels", {}).get(c.LABEL_APPLYSET_PART_OF) == set_id}

    def clear(self) -> None:
        for backend in self.backends.values():
            backend.writes.clear()

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    found = Fleet(tmp_path)
    try:
        yield found
    finally:
        found.close()


@pytest.mark.parametrize("command", ["apply", "diff"])
def test_a_fleet_plan_is_refused_without_a_cluster_selector(fleet: Fleet, command: str) -> None:
    result = fleet.cli(command)
    assert result.exit_code == 2, result.stderr
    assert "is a fleet (clusters: east, west)" in result.stderr
    assert "--cluster NAME, --all-clusters or --global" in result.stderr
    assert not any(backend.writes for backend in fleet.backends.values())


@pytest.mark.parametrize(("args", "message"), [
    (["--cluster", "north"], "no cluster 'north' in environment 'base' (clusters: east, west)"),
    (["--all-clusters", "--cluster", "east"], "--all-clusters already takes every cluster"),
    (["--cluster", "east", "--cluster", "west", "--context", "ctx-east"], "--context names one cluster's context"),
])
def test_fleet_selectors_that_cannot_be_right_are_usage_errors(fleet: Fleet, args: list[str], message: str) -> None:
    result = fleet.cli("apply", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr


def test_cluster_selectors_on_a_single_cluster_plan_are_usage_errors(served: tuple[ApiServer, Path, Path]) -> None:
    server, kubeconfig, plan = served
    result = _cli("apply", plan, kubeconfig, "--cluster", "east")
    assert result.exit_code == 2, result.stderr
    assert "are for fleet plans" in result.stderr
    assert not server.backend.writes


def test_apply_one_cluster_writes_only_that_clusters_part_into_its_context(fleet: Fleet) -> None:
    result = fleet.cli("apply", "--cluster", "east")
    assert result.exit_code == 0, result.stderr
    assert "== cluster east: clusters/east/ into context ctx-east" in result.stderr
    east = fleet.part("clusters/east")
    parent = "ConfigMap/monitoring-q1/costplan-demo-q1-base-clusters-east"
    assert fleet.written("east") == east | {parent}
    assert fleet.members("east", "clusters/east") == east
    assert not fleet.backends["west"].writes and not fleet.backends["mgmt"].writes


def test_a_context_option_overrides_one_clusters_context(fleet: Fleet) -> None:
    result = fleet.cli("apply", "--cluster", "west", "--context", "west-admin")
    assert result.exit_code == 0, result.stderr
    assert "into context west-admin" in result.stderr
    assert fleet.members("west", "clusters/west") == fleet.part("clusters/west")
    refused = fleet.cli("apply", "--cluster", "west", "--context", "ctx-east")  # east's server: east's objects
    assert refused.exit_code == 2 and "check clusters[].context" in refused.stderr


def test_all_clusters_applies_each_part_to_its_own_server_then_the_global_part(fleet: Fleet) -> None:
    result = fleet.cli("apply", "--all-clusters")
    assert result.exit_code == 0, result.stderr
    headers = [line for line in result.stderr.splitlines() if line.startswith("== ")]
    assert [h.split(":")[0] for h in headers] == ["== cluster east", "== cluster west", "== global"]
    for server, part in (("east", "clusters/east"), ("west", "clusters/west"), ("mgmt", "global")):
        assert fleet.members(server, part) == fleet.part(part), part
    assert fleet.members("mgmt", "clusters/east") == set()
    assert any("PrometheusRule/monitoring-q1/costplan-spend" in key for key in fleet.members("mgmt", "global"))
    assert not any("costplan-spend" in key for key in fleet.written("east") | fleet.written("west"))

    fleet.clear()
    again = fleet.cli("apply", "--all-clusters")
    assert again.exit_code == 0, again.stderr
    assert not any(backend.writes for backend in fleet.backends.values()), "a second run is a no-op"
    for line in RECAP.findall(again.stderr):
        assert line[1:4] == ("0", "0", "0"), again.stderr
    assert fleet.cli("diff", "--all-clusters").exit_code == 0


def test_pruning_stays_within_the_part_applied(fleet: Fleet) -> None:
    assert fleet.cli("apply", "--all-clusters").exit_code == 0
    before = {name: fleet.members(name, part) for name, part in
              (("east", "clusters/east"), ("west", "clusters/west"), ("mgmt", "global"))}
    fleet.write_plan(drop_team="research")
    fleet.clear()
    result = fleet.cli("apply", "--cluster", "east")
    assert result.exit_code == 0, result.stderr
    pruned = lines(result.stderr, "pruned")
    assert pruned and pruned <= before["east"]
    assert fleet.members("west", "clusters/west") == before["west"]
    assert fleet.members("mgmt", "global") == before["mgmt"]
    assert not fleet.backends["west"].writes and not fleet.backends["mgmt"].writes


def test_the_global_rules_share_a_clusters_namespace(tmp_path: Path) -> None:
    shared = Fleet(tmp_path, shared_global=True)  # the management cluster is east
    try:
        assert shared.cli("apply", "--all-clusters").exit_code == 0
        shared.clear()
        again = shared.cli("apply", "--all-clusters")
        assert again.exit_code == 0 and not any(backend.writes for backend in shared.backends.values()), again.stderr
    finally:
        shared.close()


def test_two_parts_defining_one_object_on_one_server_are_refused(tmp_path: Path, monkeypatch) -> None:
    import costplan.generators.prometheus as prometheus_generator

    monkeypatch.setattr(prometheus_generator, "GLOBAL_SUFFIX", "")  # the global rules named as east's own
    shared = Fleet(tmp_path, shared_global=True)  # the management cluster is east
    try:
        for args in (["--all-clusters"], ["--global"], ["--cluster", "east"]):
            result = shared.cli("apply", *args)
            assert result.exit_code == 2, result.stderr
            assert "both define" in result.stderr and "PrometheusRule/monitoring-q1/costplan-alerts" in result.stderr
        assert not any(backend.writes for backend in shared.backends.values())
        assert shared.cli("apply", "--cluster", "west").exit_code == 0  # west shares nothing with the others
        shared.plan.write_text(shared.plan.read_text().replace(
            "  engine: prometheus\n", "  engine: prometheus\n  namespace: llm-q1\n"), encoding="utf-8")
        result = shared.cli("apply", "--all-clusters")
        assert result.exit_code == 0, result.stderr
        # monitoring-q1 is in east's ApplySet; the global part leaves it there.
        shared.clear()
        again = shared.cli("apply", "--all-clusters")
        assert again.exit_code == 0, again.stderr
        assert not any(backend.writes for backend in shared.backends.values()), again.stderr
        assert shared.cli("diff", "--all-clusters").exit_code == 0
    finally:
        shared.close()


def test_doctor_checks_one_cluster_of_a_fleet_in_its_own_context(fleet: Fleet) -> None:
    assert fleet.cli("apply", "--cluster", "east").exit_code == 0
    for server in fleet.servers.values():
        server.requests.clear()
    runner = CliRunner()
    refused = runner.invoke(cli_cluster.doctor_command, ["-f", str(fleet.plan), "--kubeconfig", str(fleet.kubeconfig),
                                                         "--no-prometheus"])
    assert refused.exit_code == 2 and "choose --cluster NAME" in refused.stderr
    result = runner.invoke(cli_cluster.doctor_command, ["-f", str(fleet.plan), "--kubeconfig", str(fleet.kubeconfig),
                                                        "--cluster", "east", "--no-prometheus"])
    assert result.exit_code == 4, result.output  # the fake has no Kuadrant operator and no key Secrets
    assert "ok   crds: 5 custom kinds" in result.stdout  # east's part only: no global kinds
    assert fleet.servers["east"].requests and not fleet.servers["west"].requests and not fleet.servers["mgmt"].requests
