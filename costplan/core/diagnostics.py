"""Diagnostics are values: collected, sorted, rendered once by the CLI.

A diagnostic is one finding with a place, a JSON pointer, a message and a
stable check id. Plan checks place it at ``file:line:column`` of the plan;
output checks and kubeconform at the generated file (or ``Kind/name``) with
no line. The text form is what editors and CI annotations understand:

    costplan.yaml:42:7: /teams/0/tier: unknown tier 'gold' (did you mean 'free'?) [unknown-reference]
    kuadrant/ratelimitpolicy-x.yaml: /spec/limits: At least one spec.limits must be defined [cel]

Every check id is registered once, here, with what it means; the README's
tables and the code's uses are tested against ``CHECKS``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from costplan.core.redact import safe

SEVERITIES = ("error", "warning")

# Every check id of the plan stage, with what it means. The README lists
# them; tests prove each one fires.
PLAN_CHECKS: dict[str, str] = {
    "file-missing": "a plan or overlay file does not exist",
    "file-unreadable": "a file could not be read as UTF-8 text",
    "yaml-syntax": "the file is not valid YAML (or holds more than one document)",
    "duplicate-key": "a mapping repeats a key; YAML would silently keep the last",
    "schema": "the value does not match schemas/costplan.schema.json",
    "unknown-key": "a key the schema does not define (typo?)",
    "overlay": "an environment overlay cannot be merged (e.g. a list item without a name)",
    "unique-name": "two items of one list share a name (or two users share an id)",
    "unknown-reference": "a name refers to a tier, model, GPU instance or usage source that does not exist",
    "budget-window": "a rolling budget window is not in w/d/h/m/s, is shorter than one hour or longer than 366 days",
    "thresholds-order": "thresholds or volume tiers are not strictly ascending",
    "money": "an amount is negative, not finite or has more than 10 decimal places",
    "number": "a number is not finite, is out of range (below 10^15, at most 28 significant digits), "
    "or is a YAML 1.1 form that changes its value (010 is 8, 1:30 is 90)",
    "control-character": "a key holds a control character, or a value one other than tab and newline",
    "k8s-name": "a value that becomes a Kubernetes object name is not a valid DNS name",
    "label-value": "a value that becomes a Kubernetes or Prometheus label is not a valid label",
    "unsafe-value": "a value would change the structure of generated PromQL, CEL or YAML",
    "currency": "the currency is not an ISO 4217 code",
    "timezone": "the timezone is not an IANA time zone name",
    "pricing": "a pricing block is inconsistent (e.g. the first volume tier does not start at 0)",
    "secrets": "the secrets backend and the users' key references do not fit together",
    "usage-source": "a model's usage source cannot measure what its pricing needs",
    "url": "a URL costplan's reports and the cost engine call is not a plain http(s) URL "
    "(scheme, host, port, path; no credentials, query or template syntax)",
    "tier-no-effect": "a tier sets no limits, quotas or price changes (warning)",
    "gateway-telemetry": "warning: usage metrics cannot carry user, team and tier with this gateway target",
    "budget-action": "a budget action cannot take effect (global budget, the team's own tier, after a block)",
    "contacts": "a team's contacts cannot be delivered (e.g. email without notifications.email)",
    "fleet": "clusters without a metrics section (the global engine), or metrics without clusters (warning)",
    "resources": "a report job's CPU or memory request is above its limit (the API server refuses the job)",
    "legacy-image": "warning: the custom Limitador image is not pinned by a digest or a tag other than latest",
}

# Every check id of the output stage (generated objects, before anything is written).
OUTPUT_CHECKS: dict[str, str] = {
    "schema": "an object does not match its Kubernetes or CRD schema",
    "required-field": "an object lacks apiVersion, kind or metadata.name",
    "unknown-api": "no schema knows this apiVersion and kind",
    "missing-schema": "no CRD schema was found for a custom resource (warning unless --strict-schemas)",
    "schema-file": "a CRD schema file cannot be read or evaluated",
    "cel": "an object breaks a CEL validation rule of its CRD",
    "k8s-name": "an object name or namespace is not a valid Kubernetes name",
    "label": "a label or annotation is not valid for the API server",
    "cron": "a CronJob schedule is not a valid cron expression",
    "size": "an object or its data is larger than the API server accepts",
    "helm-template": "a Helm chart value holds template syntax ({{ }}) the chart could render with tpl",
    "kubeconform": "kubeconform rejected a written manifest",
}

CHECKS: dict[str, str] = {**PLAN_CHECKS, **{k: v for k, v in OUTPUT_CHECKS.items() if k not in PLAN_CHECKS}}


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding, sortable by place; ``line`` 0 means the place has no line (a generated file)."""

    file: str
    line: int
    column: int
    pointer: str
    message: str
    check_id: str
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if self.check_id not in CHECKS:  # every id is registered once, above
            raise ValueError(f"unregistered check id {self.check_id!r}")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def render(self) -> str:
        pointer = self.pointer or "/"
        level = "warning: " if self.severity == "warning" else ""
        place = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        # One finding is one line: a key or value with a line break or an
        # escape code must not forge another finding (or a CI annotation).
        return safe(f"{place}: {pointer}: {level}{self.message} [{self.check_id}]")


def object_finding(location: str, pointer: str, message: str, severity: str = "error",
                   check_id: str = "schema") -> Diagnostic:
    """A finding about a generated object: ``location`` is its file (or ``Kind/name``), no line."""
    return Diagnostic(location, 0, 0, pointer, message, check_id, severity)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable order and no exact duplicates (two checks may find one fault)."""
    return sorted(set(diagnostics))


def render_text(diagnostics: Iterable[Diagnostic]) -> str:
    return "\n".join(d.render() for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    items = [{k: safe(v) if isinstance(v, str) else v for k, v in asdict(d).items()} for d in diagnostics]
    return json.dumps({"valid": not any(i["severity"] == "error" for i in items), "diagnostics": items}, indent=2)
