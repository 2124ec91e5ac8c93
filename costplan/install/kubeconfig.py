"""Where the API server is and how to authenticate, from a kubeconfig or the pod's service account.

The common cases (a bearer token or token file, a client certificate, basic
auth, a certificate authority or ``insecure-skip-tls-verify``, and running
inside a cluster) are read here directly: importing the official client
costs more than a whole no-op apply. Kubeconfigs whose user runs an
``exec`` plugin or an ``auth-provider`` are handed to the official client's
loader, which implements those protocols.

The rules followed are kubectl's: ``--kubeconfig`` names one file, else
``$KUBECONFIG`` lists files (the first to define a name wins, and the first
``current-context`` counts), else ``~/.kube/config``; relative file paths
are relative to the kubeconfig that names them.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(Exception):
    """The kubeconfig cannot be used; the message says why."""


@dataclass
class Connection:
    """Everything a request needs besides its path."""

    host: str
    headers: dict[str, str] = field(default_factory=dict)
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    proxy: str | None = None
    refresh: Any = None  # callable returning fresh headers (official loader's token refresh), or None

    def auth_headers(self) -> dict[str, str]:
        return dict(self.refresh()) if self.refresh is not None else dict(self.headers)


def _files(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [Path(p).expanduser() for p in listed]
    return [Path("~/.kube/config").expanduser()]


def _merged(files: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """The merged config, and for each cluster/user name the file that defined it (for relative paths)."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    origin: dict[str, Path] = {}
    found = False
    for path in files:
        if not path.is_file():
            continue
        found = True
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(f"{path}: cannot read it: {exc}") from None
        if not isinstance(data, Mapping):
            raise KubeconfigError(f"{path}: not a kubeconfig")
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in data.get(section) or []:
                name = str(entry.get("name", ""))
                if name not in merged[section]:
                    merged[section][name] = entry.get(inner) or {}
                    origin[f"{section}/{name}"] = path
        if merged["current-context"] is None and data.get("current-context"):
            merged["current-context"] = data["current-context"]
    if not found:
        raise KubeconfigError(f"no kubeconfig at {', '.join(map(str, files))}")
    return merged, origin


def _data_file(data: str, suffix: str) -> str:
    """Base64 ``*-data`` written to a private temporary file (the TLS layer reads files)."""
    handle, name = tempfile.mkstemp(prefix="costplan-", suffix=suffix)
    with os.fdopen(handle, "wb") as stream:
        stream.write(base64.b64decode(data))
    atexit.register(_remove, name)
    return name


def _remove(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _path(value: Any, origin: Path | None) -> str:
    path = Path(str(value)).expanduser()
    if not path.is_absolute() and origin is not None:
        path = origin.parent / path
    return str(path)


def from_kubeconfig(kubeconfig: str | None, context: str | None) -> Connection | None:
    """The connection a kubeconfig describes; ``None`` when its user needs the official loader."""
    merged, origin = _merged(_files(kubeconfig))
    name = context or merged["current-context"]
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context; pass --context")
    ctx = merged["contexts"].get(name)
    if ctx is None:
        raise KubeconfigError(f"no context {name!r} in the kubeconfig")
    cluster = merged["clusters"].get(str(ctx.get("cluster")))
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(f"context {name!r} names no cluster with a server")
    user = merged["users"].get(str(ctx.get("user")), {}) if ctx.get("user") else {}
    if user.get("exec") or user.get("auth-provider"):
        return None
    cluster_from = origin.get(f"clusters/{ctx.get('cluster')}")
    user_from = origin.get(f"users/{ctx.get('user')}")
    conn = Connection(host=str(cluster["server"]).rstrip("/"),
                      verify=not cluster.get("insecure-skip-tls-verify", False),
                      server_name=cluster.get("tls-server-name"), proxy=cluster.get("proxy-url"))
    if cluster.get("certificate-authority-data"):
        conn.ca_file = _data_file(str(cluster["certificate-authority-data"]), ".crt")
    elif cluster.get("certificate-authority"):
        conn.ca_file = _path(cluster["certificate-authority"], cluster_from)
    if user.get("client-certificate-data"):
        conn.cert_file = _data_file(str(user["client-certificate-data"]), ".crt")
    elif user.get("client-certificate"):
        conn.cert_file = _path(user["client-certificate"], user_from)
    if user.get("client-key-data"):
        conn.key_file = _data_file(str(user["client-key-data"]), ".key")
    elif user.get("client-key"):
        conn.key_file = _path(user["client-key"], user_from)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(_path(user["tokenFile"], user_from)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubeconfigError(f"cannot read the user's tokenFile: {exc}") from None
    if token:
        conn.headers["Authorization"] = f"Bearer {token}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        conn.headers["Authorization"] = f"Basic {basic}"
    return conn


def in_cluster() -> Connection:
    """The pod's service account (``KUBERNETES_SERVICE_HOST``, its token and CA)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("not running inside a cluster")
    try:
        token = (_SERVICE_ACCOUNT / "token").read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KubeconfigError(f"no service account token: {exc}") from None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Connection(host=server, headers={"Authorization": f"Bearer {token}"},
                      ca_file=str(_SERVICE_ACCOUNT / "ca.crt"))


def official(kubeconfig: str | None, context: str | None) -> Connection:
    """The official client's loader, for exec plugins and auth providers (tokens refreshed as it decides)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeconfigError(str(exc)) from None

    def headers() -> dict[str, str]:
        found: dict[str, str] = {}
        settings: dict[str, Any] = dict(configuration.auth_settings())
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                found[str(setting["key"])] = str(setting["value"])
        return found

    return Connection(host=str(configuration.host).rstrip("/"), verify=bool(configuration.verify_ssl),
                      ca_file=configuration.ssl_ca_cert, cert_file=configuration.cert_file,
                      key_file=configuration.key_file, server_name=getattr(configuration, "tls_server_name", None),
                      proxy=configuration.proxy, refresh=headers)


def connection(kubeconfig: str | None, context: str | None) -> Connection:
    """The connection for ``--kubeconfig``/``--context``, the usual defaults, or the pod's service account."""
    explicit = bool(kubeconfig or context)
    try:
        found = from_kubeconfig(kubeconfig, context)
    except KubeconfigError as no_kubeconfig:
        if explicit or not str(no_kubeconfig).startswith("no kubeconfig at"):
            raise
        try:
            return in_cluster()
        except KubeconfigError:
            raise KubeconfigError(f"{no_kubeconfig} (set KUBECONFIG or pass --kubeconfig) and not running "
                                  "inside a cluster") from None
    return found if found is not None else official(kubeconfig, context)
