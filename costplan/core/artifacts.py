"""What generators return: Kubernetes objects and plain files, as data.

Generators are pure: ``generate(plan) -> list[Artifact]``. Serialising,
validating and writing happen later, in ``output.py`` and ``verify.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Artifact:
    """One output file.

    ``component`` is the directory it lands in (``kuadrant``, ``prometheus``,
    ``opencost``, ...). A Kubernetes object (``manifest``) is written as
    ``<component>/<kind>-<name>.yaml`` and listed in the environment's
    ``kustomization.yaml``. A plain file (Helm values, a Prometheus rules
    file, a promtool test) sets ``filename`` instead and is not applied.
    ``data`` is YAML-serialisable (dicts, lists, str, int, Decimal, bool).
    """

    component: str
    data: Any
    filename: str | None = None
    # The fleet part the file belongs to (``clusters/<name>`` or ``global``),
    # a directory of its own with its own kustomization; "" outside fleets.
    part: str = ""

    @property
    def is_manifest(self) -> bool:
        return self.filename is None

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "")) if self.is_manifest else ""

    @property
    def name(self) -> str:
        return str(self.data.get("metadata", {}).get("name", "")) if self.is_manifest else ""

    @property
    def namespace(self) -> str | None:
        if not self.is_manifest:
            return None
        return self.data.get("metadata", {}).get("namespace")

    @property
    def path(self) -> str:
        """Path relative to the environment's output directory."""
        prefix = f"{self.part}/" if self.part else ""
        return prefix + self.part_path

    @property
    def part_path(self) -> str:
        """Path relative to the part's directory (where its kustomization lists it)."""
        if self.filename is not None:
            return f"{self.component}/{self.filename}"
        return f"{self.component}/{self.kind.lower()}-{self.name}.yaml"


def manifest(component: str, obj: Mapping[str, Any]) -> Artifact:
    return Artifact(component=component, data=dict(obj))


def file(component: str, filename: str, data: Any) -> Artifact:
    return Artifact(component=component, data=data, filename=filename)
