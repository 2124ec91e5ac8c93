"""A second opinion from kubeconform, run in its container image.

The in-process validator (``verify.py``) is what the build relies on;
kubeconform is an optional cross-check (``costplan build --kubeconform``) for
teams that already trust it in CI. It runs through ``docker run`` so that no
Go binary has to be installed. When docker, its daemon or the image is not
available, ``KubeconformUnavailable`` says which of the three is missing
instead of surfacing a raw subprocess error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from costplan.core.diagnostics import Diagnostic, object_finding
from costplan.core.errors import ToolMissing

IMAGE = "ghcr.io/yannh/kubeconform:latest-alpine"
WORKDIR = "/work"  # where the output directory is mounted in the container
SCHEMA_MOUNT = "/schemas"
DAEMON_TIMEOUT = 5.0
RUN_TIMEOUT = 600.0

_PULL_FAILURE = re.compile(
    r"unable to find image|pull access denied|error pulling|manifest unknown|not found: manifest|"
    r"failed to resolve reference|no such host|error response from daemon: get|toomanyrequests",
    re.IGNORECASE,
)
_FAILED = {"statusInvalid": "error", "INVALID": "error", "statusError": "error", "ERROR": "error"}


class KubeconformUnavailable(ToolMissing):
    """kubeconform cannot run here; the message says why in one sentence."""


def check_docker(timeout: float = DAEMON_TIMEOUT) -> str:
    """Path of the docker client, once a daemon has answered ``docker info``."""
    docker = shutil.which("docker")
    if docker is None:
        raise KubeconformUnavailable("docker is not installed (no 'docker' on PATH); kubeconform runs in a container")
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise KubeconformUnavailable(
            f"no Docker daemon is running ('docker info' did not answer within {timeout:g} s)"
        ) from None
    except OSError as exc:
        raise KubeconformUnavailable(f"docker could not be started: {exc}") from None
    if result.returncode != 0:
        detail = _last_line(result.stderr) or f"exit status {result.returncode}"
        raise KubeconformUnavailable(f"no Docker daemon is running ({detail})")
    return docker


def manifest_files(directory: Path) -> list[Path]:
    """YAML/JSON files under ``directory`` that hold Kubernetes objects only.

    Plain files (Helm values, Prometheus rule files) and kustomization.yaml
    are left out: kubeconform would report them as objects without a kind.
    A file that does not parse is kept, so that kubeconform reports it.
    """
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except (yaml.YAMLError, UnicodeDecodeError):
            found.append(path)
            continue
        if docs and all(
            isinstance(d, dict) and "apiVersion" in d and "kind" in d and d["kind"] != "Kustomization" for d in docs
        ):
            found.append(path)
    return found


def container_locations(schema_locations: Sequence[str]) -> tuple[list[str], list[str]]:
    """(docker ``-v`` mounts, ``-schema-location`` values as seen in the container).

    Each local location's fixed directory part (before the first ``{{``) is
    mounted read-only under /schemas/<n>. ``default`` comes first so that
    core kinds resolve as in a plain kubeconform run.
    """
    mounts: list[str] = []
    locations = ["default"]
    for index, location in enumerate(loc for loc in schema_locations if loc != "default"):
        if re.match(r"https?://", location):
            locations.append(location)
            continue
        location = location.removeprefix("file://")
        if "{{" in location:
            fixed = location.split("{{", 1)[0]
            base = fixed if fixed.endswith("/") else os.path.dirname(fixed)
        elif location.endswith("json"):
            base = os.path.dirname(location)
        else:
            base = location
        rest = location[len(base):].lstrip("/")
        target = f"{SCHEMA_MOUNT}/{index}"
        mounts += ["-v", f"{os.path.realpath(base or '.')}:{target}:ro"]
        locations.append(f"{target}/{rest}" if rest else target)
    return mounts, locations


def kubeconform_command(
    docker: str,
    directory: Path,
    files: Sequence[Path],
    schema_locations: Sequence[str],
    kubernetes_version: str,
) -> list[str]:
    directory = directory.resolve()
    mounts, locations = container_locations(schema_locations)
    command = [docker, "run", "--rm", "-v", f"{directory}:{WORKDIR}:ro", *mounts, IMAGE]
    command += ["-strict", "-summary", "-output", "json", "-kubernetes-version", _full_version(kubernetes_version)]
    for location in locations:
        command += ["-schema-location", location]
    command += [f"{WORKDIR}/{f.resolve().relative_to(directory).as_posix()}" for f in files]
    return command


def parse_output(stdout: str) -> list[Diagnostic]:
    """kubeconform's ``-output json`` report -> problems (valid and skipped omitted)."""
    report = json.loads(stdout)
    problems: list[Diagnostic] = []
    for resource in report.get("resources") or []:
        severity = _FAILED.get(resource.get("status", ""))
        if severity is None:
            continue
        location = _host_path(resource.get("filename", "?"))
        label = "/".join(x for x in (resource.get("kind", ""), resource.get("name", "")) if x)
        prefix = f"{label}: " if label else ""
        details = resource.get("validationErrors") or []
        if details:
            for detail in details:
                problems.append(
                    object_finding(location, detail.get("path", ""), prefix + detail.get("msg", ""), severity, "kubeconform")
                )
        else:
            problems.append(object_finding(location, "", prefix + resource.get("msg", ""), severity, "kubeconform"))
    return problems


def run_kubeconform(
    directory: Path | str,
    schema_locations: Sequence[str],
    kubernetes_version: str = "1.33",
    timeout: float = RUN_TIMEOUT,
) -> list[Diagnostic]:
    """Validate the manifests under ``directory`` with kubeconform in docker."""
    directory = Path(directory)
    docker = check_docker()
    files = manifest_files(directory)
    if not files:
        return []
    command = kubeconform_command(docker, directory, files, schema_locations, kubernetes_version)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise KubeconformUnavailable(f"kubeconform did not finish within {timeout:g} s") from None
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("{"):
        detail = _last_line(result.stderr) or f"exit status {result.returncode}"
        if _PULL_FAILURE.search(result.stderr or ""):
            raise KubeconformUnavailable(f"the image {IMAGE} could not be pulled ({detail})")
        raise KubeconformUnavailable(f"kubeconform did not produce a report ({detail})")
    try:
        return parse_output(result.stdout)
    except ValueError as exc:
        raise KubeconformUnavailable(f"kubeconform's report is not JSON ({exc})") from None


def _full_version(version: str) -> str:
    parts = version.strip().lstrip("v").split(".")
    return ".".join((parts + ["0", "0"])[:3])


def _host_path(filename: str) -> str:
    prefix = WORKDIR + "/"
    return filename[len(prefix):] if filename.startswith(prefix) else filename


def _last_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
