"""The in-repo API-server fake, extended with what ``costplan guard`` calls.

``tests/test_apply.py`` serves discovery, get, list, server-side apply and
delete over HTTP; the guard also sends JSON merge patches to Secrets and
creates Events. ``GuardApiServer`` adds exactly those two, on the same
``FakeCluster`` backend, so the guard runs with the official client
unchanged. Every request is recorded (``requests``) for call counts.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from costplan.install import objects as ch
from tests.test_apply import ApiServer, FakeCluster, _status


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``null`` deletes, mappings merge, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class GuardApiServer(ApiServer):
    def __init__(self, backend: FakeCluster) -> None:
        super().__init__(backend)
        # The base handler serves GET, PATCH and DELETE; Events are POSTed.
        self.httpd.RequestHandlerClass.do_POST = lambda handler: handler._handle("POST")  # type: ignore[attr-defined]
        self.events: list[dict[str, Any]] = []
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parts = [p for p in raw_path.split("?")[0].split("/") if p]
        if method == "POST" and parts[:2] == ["api", "v1"] and len(parts) == 5 and parts[4] == "events":
            self.requests.append((method, raw_path))
            event = json.loads(body)
            self.events.append(event)
            return 201, event
        content_type = (headers.get("Content-Type") or "").split(";")[0]
        if method == "PATCH" and content_type == "application/merge-patch+json" and parts[:2] == ["api", "v1"] \
                and len(parts) == 6 and parts[4] == "secrets":
            self.requests.append((method, raw_path))
            namespace, name = parts[3], parts[5]
            patch = json.loads(body)
            key = ch.ObjectKey("", "Secret", namespace, name)
            current = self.backend.objects.get(key)
            if current is None:
                return 404, _status(404, "NotFound", f'secrets "{name}" not found')
            self.backend.objects[key] = merge_patch(current, patch)
            self.backend.writes.append(("patch", key))
            self.patches.append((namespace, name, patch))
            return 200, self.backend.objects[key]
        return super().handle(method, raw_path, headers, body)

    def count(self, method: str, marker: str = "") -> int:
        return sum(1 for m, path in self.requests if m == method and marker in path)


def kubeconfig(tmp_path: Path, server: ApiServer) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server.url}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
    }))
    return path


def key_secret(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace,
            "labels": dict(labels), "annotations": dict(annotations)}, "data": {"api_key": "c2VjcmV0"}}
