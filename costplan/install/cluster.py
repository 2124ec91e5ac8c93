"""The cluster boundary: the only module that talks to a Kubernetes API server.

Everything above it (``changes``, ``apply``) works on plain dicts through the
small ``Cluster`` protocol, so the same scenarios run against an in-memory
fake in unit tests and against a real cluster when one is configured.

Writes are server-side apply with the field manager ``costplan``: a named
manager makes ownership explicit (inferred names cause spurious conflicts),
and the server, not costplan, merges with what other managers own.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from typing import Any, Protocol

from costplan.core.errors import ExternalFailure

FIELD_MANAGER = "costplan"


class ClusterError(ExternalFailure):
    """A request to the API server failed; the message names the object and the reason."""


class ApplyConflict(ClusterError):
    """Server-side apply found fields owned by another manager with other values."""


class Unreachable(ClusterError):
    """No usable connection or configuration for the cluster."""


class Cluster(Protocol):
    """What ``costplan apply`` needs from a cluster, as plain dicts."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The live object, or ``None`` when it does not exist."""

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False) -> dict[str, Any]:
        """Server-side apply ``body`` as ``costplan``; return the object as the server stored (or would store) it."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        """Delete an object (absent objects are not an error)."""

    def list(self, group: str, kind: str, namespaces: Iterable[str], label_selector: str) -> list[dict[str, Any]]:
        """Objects of one group-kind matching the selector, in the namespaces given (all, if cluster-scoped)."""

    def missing_crds(self, group_kinds: Iterable[str]) -> builtins.list[str]:
        """Custom kinds among ``group_kinds`` whose CRD is absent or not Established, by name."""


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"{status} {reason or ''}".strip()
    return str(exc) or type(exc).__name__


def _split_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


class KubeCluster:
    """``Cluster`` over the official client's ``DynamicClient`` (any kind, discovered at run time)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout: float = 30.0) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.dynamic import DynamicClient

        self.timeout = timeout
        try:
            if kubeconfig or context:
                api = config.new_client_from_config(config_file=kubeconfig, context=context)
            else:
                try:
                    api = config.new_client_from_config()
                except ConfigException as no_kubeconfig:
                    try:
                        config.load_incluster_config()
                    except ConfigException:
                        raise ConfigException(
                            f"no usable kubeconfig ({no_kubeconfig}; set KUBECONFIG or pass --kubeconfig) "
                            "and not running inside a cluster"
                        ) from None
                    api = client.ApiClient()
            self.dynamic = DynamicClient(api)
        except (ConfigException, OSError) as exc:
            raise Unreachable(f"cannot configure the cluster connection: {exc}") from exc
        except Exception as exc:  # urllib3 connection errors during discovery
            raise Unreachable(f"cannot reach the cluster: {exc}") from exc

    # -- discovery -------------------------------------------------------

    def _resource(self, api_version: str | None, kind: str, group: str | None = None):
        from kubernetes.dynamic.exceptions import (
            ResourceNotFoundError,
            ResourceNotUniqueError,
        )

        try:
            if api_version or not group:
                return self.dynamic.resources.get(api_version=api_version or "v1", kind=kind)
            found = [r for r in self.dynamic.resources.search(group=group, kind=kind)
                     if getattr(r, "group", None) == group and getattr(r, "kind", None) == kind
                     and "/" not in (getattr(r, "name", "") or "")]
            preferred = [r for r in found if getattr(r, "preferred", False)]
            return (preferred or found or [None])[0]
        except ResourceNotFoundError:
            return None
        except ResourceNotUniqueError:
            found = self.dynamic.resources.search(api_version=api_version, kind=kind)
            return found[0] if found else None
        except Exception as exc:
            raise ClusterError(f"discovery of {kind} failed: {_message(exc)}") from exc

    def _require(self, api_version: str, kind: str):
        resource = self._resource(api_version, kind)
        if resource is None:
            raise ClusterError(f"the cluster does not serve {kind} in {api_version}")
        return resource

    # -- Cluster protocol --------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(api_version, kind)
        if resource is None:
            return None
        try:
            found = resource.get(name=name, namespace=namespace if resource.namespaced else None,
                                 _request_timeout=self.timeout)
        except NotFoundError:
            return None
        except Exception as exc:
            raise ClusterError(f"cannot read {kind} {namespace or ''}/{name}: {_message(exc)}") from exc
        return found.to_dict()

    def apply(self, body: dict[str, Any], *, dry_run: bool = False, force_conflicts: bool = False) -> dict[str, Any]:
        from kubernetes.dynamic.exceptions import ConflictError

        resource = self._require(body["apiVersion"], body["kind"])
        meta = body.get("metadata") or {}
        try:
            result = self.dynamic.server_side_apply(
                resource,
                body=body,
                name=meta.get("name"),
                namespace=meta.get("namespace") if resource.namespaced else None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True if force_conflicts else None,
                dry_run="All" if dry_run else None,
                _request_timeout=self.timeout,
            )
        except ConflictError as exc:
            raise ApplyConflict(_message(exc)) from exc
        except Exception as exc:
            raise ClusterError(_message(exc)) from exc
        return result.to_dict()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._require(api_version, kind)
        try:
            resource.delete(name=name, namespace=namespace if resource.namespaced else None,
                            propagation_policy="Background", _request_timeout=self.timeout)
        except NotFoundError:
            return
        except Exception as exc:
            raise ClusterError(_message(exc)) from exc

    def list(self, group: str, kind: str, namespaces: Iterable[str], label_selector: str) -> list[dict[str, Any]]:
        resource = self._resource(None, kind, group)
        if resource is None:  # the kind is no longer served: nothing of it can be left to prune
            return []
        scopes: list[str | None] = [*sorted(set(namespaces))] if resource.namespaced else [None]
        objects: list[dict[str, Any]] = []
        for namespace in scopes:
            try:
                found = resource.get(namespace=namespace, label_selector=label_selector,
                                     _request_timeout=self.timeout)
            except Exception as exc:
                raise ClusterError(f"cannot list {kind} in {namespace or 'the cluster'}: {_message(exc)}") from exc
            for item in found.to_dict().get("items") or []:
                item.setdefault("apiVersion", resource.group_version)
                item.setdefault("kind", kind)
                objects.append(item)
        return objects

    def missing_crds(self, group_kinds: Iterable[str]) -> builtins.list[str]:
        from costplan.install.objects import is_builtin_group, split_group_kind

        wanted = [split_group_kind(gk) for gk in sorted(set(group_kinds))]
        custom = [(g, k) for g, k in wanted if not is_builtin_group(g)]
        if not custom:
            return []
        try:
            crds = self._require("apiextensions.k8s.io/v1", "CustomResourceDefinition").get(
                _request_timeout=self.timeout).to_dict().get("items") or []
        except Exception:  # noqa: BLE001  (no permission to list CRDs: fall back to discovery)
            return [f"{k}.{g}" for g, k in custom if self._resource(None, k, g) is None]
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
