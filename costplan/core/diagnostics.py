"""Diagnostics are values: collected, sorted, rendered once by the CLI.

A diagnostic is one problem with a place (``file:line:column``), a JSON
pointer into the merged plan, a message and a stable check id. The text form
is what editors and CI annotations understand:

    costplan.yaml:42:7: /teams/0/tier: unknown tier 'gold' (did you mean 'free'?) [unknown-reference]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable

# Every check id costplan can report, with what it means. The README lists
# them; tests prove each one fires.
CHECKS: dict[str, str] = {
    "file-missing": "a plan or overlay file does not exist",
    "file-unreadable": "a file could not be read as UTF-8 text",
    "yaml-syntax": "the file is not valid YAML (or holds more than one document)",
    "duplicate-key": "a mapping repeats a key; YAML would silently keep the last",
    "schema": "the value does not match schemas/costplan.schema.json",
    "unknown-key": "a key the schema does not define (typo?)",
    "overlay": "an environment overlay cannot be merged (e.g. a list item without a name)",
    "unique-name": "two items of one list share a name (or two users share an id)",
    "unknown-reference": "a name refers to a tier, model, GPU instance or usage source that does not exist",
    "thresholds-order": "thresholds or volume tiers are not strictly ascending",
    "money": "an amount is negative, not finite or has more than 10 decimal places",
    "k8s-name": "a value that becomes a Kubernetes object name is not a valid DNS name",
    "label-value": "a value that becomes a Kubernetes or Prometheus label is not a valid label",
    "unsafe-value": "a value would change the structure of generated PromQL, CEL or YAML",
    "currency": "the currency is not an ISO 4217 code",
    "timezone": "the timezone is not an IANA time zone name",
    "pricing": "a pricing block is inconsistent (e.g. the first volume tier does not start at 0)",
    "secrets": "the secrets backend and the users' key references do not fit together",
    "usage-source": "a model's usage source cannot measure what its pricing needs",
    "url": "a URL costplan's reports call is not an absolute http(s) URL",
    "tier-no-effect": "a tier sets no limits, quotas or price changes (warning)",
    "gateway-telemetry": "warning: usage metrics cannot carry user, team and tier with this gateway target",
}


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in the plan, sortable by place."""

    file: str
    line: int
    column: int
    pointer: str
    message: str
    check_id: str
    severity: str = "error"

    def render(self) -> str:
        pointer = self.pointer or "/"
        level = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {pointer}: {level}{self.message} [{self.check_id}]"


class PlanInvalid(Exception):
    """The plan (or an overlay) has errors; carries all of them."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sort_diagnostics(diagnostics)
        super().__init__(f"{len(self.diagnostics)} problem(s) in the plan")


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable order and no exact duplicates (two checks may find one fault)."""
    return sorted(set(diagnostics))


def render_text(diagnostics: Iterable[Diagnostic]) -> str:
    return "\n".join(d.render() for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    items = [asdict(d) for d in diagnostics]
    return json.dumps({"valid": not any(i["severity"] == "error" for i in items), "diagnostics": items}, indent=2)
