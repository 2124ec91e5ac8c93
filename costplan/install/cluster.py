"""The cluster boundary: the only module that talks to a Kubernetes API server.

Everything above it (``changes``, ``apply``) works on plain dicts through the
small ``Cluster`` protocol, so the same scenarios run against an in-memory
fake in unit tests and against a real cluster when one is configured.

Writes are server-side apply with the field manager ``costplan``: a named
manager makes ownership explicit (inferred names cause spurious conflicts),
and the server, not costplan, merges with what other managers own.

``KubeCluster`` speaks the REST API itself over one pooled HTTP connection
manager (``kubeconfig`` says where and how to authenticate). That keeps four
things under costplan's control that the generic dynamic client hides:

* discovery happens once per run, in memory: the dynamic client's cache file
  is keyed by server address alone, shared by every user of the machine, and
  outlives a CRD's change of served versions;
* ``timeout`` bounds the whole run (connecting, discovery and every request
  get what is left of it), so a server that accepts and never answers fails
  within it;
* every failure becomes one sentence (status and the server's message, or
  the connection problem), never headers or a traceback;
* the connection pool is sized for the run's concurrency.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from costplan.core.errors import ExternalFailure
from costplan.install.objects import is_builtin_group, split_group_kind

FIELD_MANAGER = "costplan"
CONCURRENCY = 16
"""Requests in flight at once: well under the API server's default of 400
in-flight mutating and read requests, and enough to hide round-trip time."""


class ClusterError(ExternalFailure):
    """A request to the API server failed; the message names the object and the reason."""


class ApplyConflict(ClusterError):
    """Server-side apply found fields owned by another manager with other values."""


class Unreachable(ClusterError):
    """No usable connection: refused, reset, timed out, or no configuration at all.

    The apply loop counts these: after a few in a row it stops and reports
    how far it got instead of failing every remaining object separately.
    """


class NotServed(ClusterError):
    """The API server does not serve a kind in the version asked for."""


class Cluster(Protocol):
    """What ``costplan apply`` needs from a cluster, as plain dicts.

    ``apply`` returns an ``Applied`` (a dict that says whether the apply
    created the object), so ``costplan apply`` needs no GET to tell a create
    from an update.
    """

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The live object, or ``None`` when it does not exist."""

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False) -> dict[str, Any]:
        """Server-side apply ``body`` as ``costplan``; return the object as the server stored (or would store) it."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None, *,
               dry_run: bool = False) -> None:
        """Delete an object (absent objects are not an error); ``dry_run`` asks admission and RBAC only."""

    def list(self, group: str, kind: str, namespaces: Iterable[str], label_selector: str) -> list[dict[str, Any]]:
        """Objects of one group-kind matching the selector, in the namespaces given (all, if cluster-scoped)."""

    def missing_crds(self, group_kinds: Iterable[str]) -> builtins.list[str]:
        """Custom kinds among ``group_kinds`` whose CRD is absent or not Established, by name."""


class Applied(dict[str, Any]):
    """The object an apply returned, and whether that apply created it (HTTP 201).

    Knowing it from the answer spares a GET per object before a first apply.
    """

    def __init__(self, obj: dict[str, Any], *, created: bool) -> None:
        super().__init__(obj)
        self.created = created


@dataclass(frozen=True)
class Resource:
    """One served resource: where its objects live in the REST API."""

    group_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name, safe='')}" if name else "")


def _api_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _status_message(data: bytes) -> tuple[str, dict[str, Any] | None]:
    """The server's own sentence from a ``Status`` body (and the Status), else the body's first line."""
    try:
        status = json.loads(data)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return str(status.get("message") or status.get("reason") or ""), status
    text = data.decode("utf-8", "replace").strip().splitlines()
    return (text[0][:200] if text else ""), None


def _connection_reason(exc: Exception) -> str:
    """The innermost cause of a urllib3 error, in a few words (``connection refused``)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    for known in ("Connection refused", "Connection reset by peer", "Remote end closed connection",
                  "Name or service not known", "No route to host", "certificate verify failed"):
        if known.lower() in text.lower():
            return known.lower()
    return text.split(": ", 1)[-1] if ": " in text else text


class KubeCluster:
    """``Cluster`` over the Kubernetes REST API, with per-run discovery and one deadline."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 120.0,
                 concurrency: int = CONCURRENCY) -> None:
        import urllib3

        from costplan.install.kubeconfig import KubeconfigError, connection

        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.concurrency = concurrency
        self.notices: list[str] = []
        try:
            self.connection = connection(kubeconfig, context)
        except KubeconfigError as exc:
            raise Unreachable(f"cannot configure the cluster connection: {exc}") from exc
        self.host = self.connection.host
        pool_args: dict[str, Any] = {
            "maxsize": concurrency,  # one connection per worker, kept alive for the run
            "cert_reqs": "CERT_REQUIRED" if self.connection.verify else "CERT_NONE",
            "ca_certs": self.connection.ca_file,
            "cert_file": self.connection.cert_file,
            "key_file": self.connection.key_file,
        }
        if self.connection.server_name:
            pool_args["server_hostname"] = self.connection.server_name
        if self.host.startswith("https:") and not self.connection.verify:
            pool_args["assert_hostname"] = False
            # One notice per run instead of urllib3's warning on every request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            self.notices.append(f"warning: the TLS certificate of {self.host} is not verified "
                                "(the kubeconfig sets insecure-skip-tls-verify)")
        self.pool = (urllib3.ProxyManager(self.connection.proxy, **pool_args) if self.connection.proxy
                     else urllib3.PoolManager(**pool_args))
        self._lock = threading.Lock()
        self._group_versions: dict[str, list[str]] | None = None  # group -> served versions, preferred first
        self._resources: dict[str, dict[str, Resource]] = {}  # group/version -> kind -> resource
        self._discover_groups()

    # -- HTTP --------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": FIELD_MANAGER}
        headers.update(self.connection.auth_headers())
        return headers

    def request(self, method: str, path: str, query: dict[str, str] | None = None,
                body: Any = None, content_type: str = "application/json") -> tuple[int, bytes]:
        """Send one request within what is left of the run's deadline; connection problems raise ``Unreachable``."""
        import urllib3

        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Unreachable(f"gave up: the --timeout of {self.timeout:g}s for the whole run is spent")
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        try:
            response = self.pool.request(method, url, body=data, headers=headers, retries=False,
                                         timeout=urllib3.Timeout(total=remaining), preload_content=True)
        except urllib3.exceptions.TimeoutError as exc:
            raise Unreachable(f"the API server at {self.host} did not answer within {remaining:.3g}s "
                              f"(--timeout {self.timeout:g}s)") from exc
        except urllib3.exceptions.SSLError as exc:
            raise Unreachable(f"TLS with the API server at {self.host} failed: {_connection_reason(exc)}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"cannot reach the API server at {self.host}: {_connection_reason(exc)}") from exc
        return response.status, response.data

    def _json(self, method: str, path: str, what: str, query: dict[str, str] | None = None,
              body: Any = None, content_type: str = "application/json",
              missing_ok: bool = False) -> dict[str, Any] | None:
        """A request whose answer is a JSON object; errors become one sentence about ``what``."""
        status, data = self.request(method, path, query, body, content_type)
        if 200 <= status < 300:
            found = json.loads(data) if data else {}
            return Applied(found, created=status == 201) if method == "PATCH" and isinstance(found, dict) else found
        message, parsed = _status_message(data)
        if status == 401:
            raise Unreachable(f"the API server at {self.host} rejected the credentials (401 Unauthorized"
                              f"{': ' + message if message and message != 'Unauthorized' else ''}); "
                              "check the kubeconfig's user")
        if status == 404 and parsed is None:
            raise NotServed(f"{what}: the API server does not serve {path.split('?')[0]}")
        if status == 404 and missing_ok:
            return None
        if status == 409 and method == "PATCH":
            raise ApplyConflict(message)
        reason = {403: "forbidden", 404: "not found", 422: "invalid", 429: "throttled"}.get(status, str(status))
        raise ClusterError(f"{what}: {reason}: {message}" if message else f"{what}: {reason}")

    # -- discovery (once per run, in memory) ---------------------------------

    def _discover_groups(self) -> dict[str, list[str]]:
        if self._group_versions is not None:
            return self._group_versions
        groups: dict[str, list[str]] = {}
        core = self._json("GET", "/api", "discovery") or {}
        groups[""] = [str(v) for v in core.get("versions") or ["v1"]]
        listing = self._json("GET", "/apis", "discovery") or {}
        for entry in listing.get("groups") or []:
            preferred = str((entry.get("preferredVersion") or {}).get("version") or "")
            versions = [str(v.get("version")) for v in entry.get("versions") or []]
            groups[str(entry.get("name"))] = sorted(versions, key=lambda v: v != preferred)
        self._group_versions = groups
        return groups

    def _kinds(self, group_version: str) -> dict[str, Resource]:
        with self._lock:
            found = self._resources.get(group_version)
        if found is not None:
            return found
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        try:
            listing = self._json("GET", path, f"discovery of {group_version}") or {}
        except NotServed:
            listing = {}
        found = {}
        for entry in listing.get("resources") or []:
            name = str(entry.get("name") or "")
            if "/" in name:  # a subresource such as status or scale
                continue
            found[str(entry.get("kind"))] = Resource(group_version, str(entry.get("kind")), name,
                                                     bool(entry.get("namespaced")))
        with self._lock:
            self._resources[group_version] = found
        return found

    def _forget(self, group: str) -> None:
        """Drop what discovery said about ``group``: a 404 for its path means it changed during the run."""
        with self._lock:
            self._group_versions = None
            for group_version in [gv for gv in self._resources if _api_group(gv) == group]:
                del self._resources[group_version]

    def _resource(self, api_version: str, kind: str) -> Resource | None:
        return self._kinds(api_version).get(kind)

    def _served_versions(self, group: str, kind: str) -> list[str]:
        versions = self._discover_groups().get(group, [])
        return [v for v in versions if kind in self._kinds(f"{group}/{v}" if group else v)]

    def _require(self, api_version: str, kind: str) -> Resource:
        resource = self._resource(api_version, kind)
        if resource is not None:
            return resource
        group = _api_group(api_version)
        served = self._served_versions(group, kind)
        if served:
            raise NotServed(f"the cluster serves {kind} in {', '.join(f'{group}/{v}' for v in served)}, "
                            f"not in {api_version}: its CustomResourceDefinition's served versions changed; "
                            "update the component or the plan")
        raise NotServed(f"the cluster does not serve {kind} in {api_version}")

    def _call(self, api_version: str, kind: str, send: Any) -> Any:
        """Run ``send(resource)``; on a 404 for the resource itself, discover again once and name the cause."""
        resource = self._require(api_version, kind)
        try:
            return send(resource)
        except NotServed:
            self._forget(_api_group(api_version))
            self._discover_groups()
            self._require(api_version, kind)  # raises with the versions the cluster serves now
            return send(self._require(api_version, kind))

    # -- Cluster protocol --------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        what = f"cannot read {kind} {namespace + '/' if namespace else ''}{name}"
        try:
            return self._call(api_version, kind, lambda r: self._json(
                "GET", r.path(namespace, name), what, missing_ok=True))
        except NotServed:
            return None

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False,
              manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply; ``manager`` other than ``costplan`` only for tests and benchmarks."""
        meta = body.get("metadata") or {}
        query = {"fieldManager": manager}
        if force_conflicts:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        found = self._call(str(body.get("apiVersion")), str(body.get("kind")), lambda r: self._json(
            "PATCH", r.path(meta.get("namespace"), meta.get("name")), "apply", query, body,
            "application/apply-patch+yaml"))
        return found or {}

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None, *,
               dry_run: bool = False) -> None:
        query = {"propagationPolicy": "Background", **({"dryRun": "All"} if dry_run else {})}
        self._call(api_version, kind, lambda r: self._json("DELETE", r.path(namespace, name), "delete",
                                                           query, missing_ok=True))

    def list(self, group: str, kind: str, namespaces: Iterable[str], label_selector: str) -> list[dict[str, Any]]:
        """One request across all namespaces, kept to ``namespaces``; per namespace only if that is forbidden."""
        versions = self._served_versions(group, kind)
        if not versions:  # the kind is no longer served: nothing of it can be left to prune
            return []
        resource = self._require(f"{group}/{versions[0]}" if group else versions[0], kind)
        wanted = set(namespaces)
        query = {"labelSelector": label_selector}
        try:
            found = [self._json("GET", resource.path(), f"cannot list {kind} in all namespaces", query) or {}]
        except Unreachable:
            raise
        except ClusterError:
            if not resource.namespaced:
                raise
            found = [self._json("GET", resource.path(ns), f"cannot list {kind} in {ns}", query) or {}
                     for ns in sorted(wanted)]
        objects: list[dict[str, Any]] = []
        for page in found:
            for item in page.get("items") or []:
                item.setdefault("apiVersion", resource.group_version)
                item.setdefault("kind", kind)
                if resource.namespaced and (item.get("metadata") or {}).get("namespace") not in wanted:
                    continue
                objects.append(item)
        return objects

    def missing_crds(self, group_kinds: Iterable[str]) -> builtins.list[str]:
        wanted = [split_group_kind(gk) for gk in sorted(set(group_kinds))]
        custom = [(g, k) for g, k in wanted if not is_builtin_group(g)]
        if not custom:
            return []
        try:
            listing = self._json("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                 "cannot list CustomResourceDefinitions") or {}
        except Unreachable:
            raise
        except ClusterError:  # no permission to list CRDs: fall back to discovery
            return [f"{k}.{g}" for g, k in custom if not self._served_versions(g, k)]
        crds = listing.get("items") or []
        missing = []
        for group, kind in custom:
            crd = next((c for c in crds if (c.get("spec") or {}).get("group") == group
                        and ((c.get("spec") or {}).get("names") or {}).get("kind") == kind), None)
            if crd is None:
                missing.append(f"{kind}.{group} (no CustomResourceDefinition)")
                continue
            conditions = (crd.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                missing.append(f"{crd['metadata']['name']} (not Established)")
        return missing
