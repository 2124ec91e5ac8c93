"""Rules the API server enforces that a JSON schema file does not carry.

Offline schema validation (``verify.py``) only sees what the OpenAPI/JSON
schema says. The API server additionally enforces name and label syntax,
size limits and, for custom resources, CEL rules (``x-kubernetes-validations``)
that ``jsonschema`` cannot evaluate. A manifest that passes the schema but
breaks one of these is rejected at ``kubectl apply`` / Argo CD sync time, long
after ``costplan build`` said it was fine; so the build checks them here.

The CEL rules of the Kuadrant policies are written out by hand (a CEL
interpreter would be a large dependency for a handful of rules). The tests
compare the allowed ``targetRef`` kinds below with the rules stored in the CRD
schemas, so an upstream change is noticed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from costplan.core import names
from costplan.plan.source import pointer as source_pointer

SEVERITIES = ("error", "warning")


def pointer(*parts: object) -> str:
    """RFC 6901 pointer; label keys such as ``app.kubernetes.io/name`` hold '/'."""
    return source_pointer(parts)


# A finding before it is tied to a location: (pointer, message, check, severity).
Finding = tuple[str, str, str, str]

MAX_OBJECT_BYTES = 1024 * 1024  # stay under etcd's 1.5 MiB request limit with margin
MAX_DATA_BYTES = 1024 * 1024  # ConfigMap / Secret payload limit of the API server
MAX_ANNOTATION_BYTES = 256 * 1024  # total size of metadata.annotations
CRONJOB_NAME_MAX = 52  # the Job controller appends an 11-character suffix

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?/,\-]+\Z")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

# Kinds whose names are path segments rather than DNS names (RBAC allows "system:foo").
_PATH_SEGMENT_NAMED = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
# Places where object metadata (labels, annotations) sits in the kinds costplan emits.
_METADATA_PATHS = (
    ("metadata",),
    ("spec", "template", "metadata"),
    ("spec", "jobTemplate", "metadata"),
    ("spec", "jobTemplate", "spec", "template", "metadata"),
)

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# (API group, kind) -> targetRef kinds the CRD's CEL rule accepts.
TARGET_KINDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("kuadrant.io", "AuthPolicy"): ("Gateway", "GRPCRoute", "HTTPRoute"),
    ("kuadrant.io", "RateLimitPolicy"): ("Gateway", "GRPCRoute", "HTTPRoute"),
    ("kuadrant.io", "TokenRateLimitPolicy"): ("Gateway", "HTTPRoute"),
    ("extensions.kuadrant.io", "PlanPolicy"): ("Gateway", "GRPCRoute", "HTTPRoute"),
    ("extensions.kuadrant.io", "TelemetryPolicy"): ("Gateway",),
}
LIMIT_POLICIES = frozenset({("kuadrant.io", "RateLimitPolicy"), ("kuadrant.io", "TokenRateLimitPolicy")})


def api_group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def check_object(obj: Mapping[str, Any]) -> list[Finding]:
    """All rule findings for one object that has ``apiVersion`` and ``kind``."""
    kind = obj["kind"]
    group = api_group(obj["apiVersion"])
    findings = list(_names(obj, kind))
    # Pod templates only in built-in workload groups (apps, batch, core): a
    # custom resource's spec.template may hold Go templates (ApplicationSet).
    paths = _METADATA_PATHS if "." not in group else _METADATA_PATHS[:1]
    for path in paths:
        meta = _dig(obj, path)
        if isinstance(meta, Mapping):
            findings.extend(_labels(meta, path))
    if group == "batch" and kind == "CronJob":
        findings.extend(_cronjob(obj))
    if group == "" and kind in ("ConfigMap", "Secret"):
        findings.extend(_config_data(obj, kind))
    if not any(f[2] == "size" and f[3] == "error" for f in findings):  # one report per oversize cause
        findings.extend(_size(obj))
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        if (group, kind) in TARGET_KINDS:
            findings.extend(_target_ref(spec, TARGET_KINDS[(group, kind)], kind))
        if (group, kind) in LIMIT_POLICIES:
            findings.extend(_limits_sections(spec))
        if (group, kind) == ("kuadrant.io", "AuthPolicy"):
            findings.extend(_auth_sections(spec))
        if (group, kind) == ("argoproj.io", "Application"):
            findings.extend(_helm_values(spec))
    return findings


def _helm_values(spec: Mapping[str, Any]) -> Iterator[Finding]:
    """No chart value may hold Helm template syntax.

    Charts pass some values through ``tpl`` (the OpenCost chart renders
    ``opencost.prometheus.external.url`` with it: opencost/opencost-helm-chart,
    charts/opencost/templates/_helpers.tpl, ``opencost.prometheusServerEndpoint``), so
    ``{{ ... }}`` in a value written from the plan would run as a template
    inside Argo CD's repo server. Every string of every chart source is
    checked, not only the values known to go through ``tpl`` today.
    """
    candidates: list[tuple[tuple[str, ...], Any]] = [(("spec", "source"), spec.get("source"))]
    sources = spec.get("sources")
    if isinstance(sources, list):
        candidates += [(("spec", "sources", str(i)), source) for i, source in enumerate(sources)]
    for base, source in candidates:
        helm = source.get("helm") if isinstance(source, Mapping) else None
        if not isinstance(helm, Mapping):
            continue
        for path, value in _strings(helm, (*base, "helm")):
            if "{{" in value or "}}" in value:
                yield _error(pointer(*path), "a Helm chart value holds template syntax ({{ }}), which the "
                             "chart may render with tpl; remove it from the plan", "helm-template")


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _strings(child, (*path, str(key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, (*path, str(index)))


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _error(ptr: str, message: str, check: str) -> Finding:
    return (ptr, message, check, "error")


# --- names and labels ----------------------------------------------------


def _names(obj: Mapping[str, Any], kind: str) -> Iterator[Finding]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return
    name = meta.get("name")
    if isinstance(name, str) and name:
        problem = name_problem(kind, name)
        if problem:
            yield _error(pointer("metadata", "name"), problem, "k8s-name")
        if kind == "CronJob" and len(name) > CRONJOB_NAME_MAX:
            yield _error(
                pointer("metadata", "name"),
                f"a CronJob name may have at most {CRONJOB_NAME_MAX} characters (has {len(name)}): "
                "its Jobs get an 11-character suffix",
                "k8s-name",
            )
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and not _is_dns_label(namespace):
        message = f"{namespace!r} is not a valid namespace name (DNS label)"
        yield _error(pointer("metadata", "namespace"), message, "k8s-name")


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot name a ``kind`` object, or None if it can."""
    if kind in _PATH_SEGMENT_NAMED:
        if name in (".", "..") or "/" in name or "%" in name:
            return f"{name!r} is not a valid {kind} name (no '/', '%', '.' or '..')"
        return None
    if kind == "Namespace":
        if not _is_dns_label(name):
            return f"{name!r} is not a valid Namespace name: a DNS label (lowercase alphanumerics and '-', at most 63)"
        return None
    if kind == "Service":
        if len(name) > 63 or not names.DNS1035_LABEL.fullmatch(name):
            return (
                f"{name!r} is not a valid Service name: a DNS-1035 label "
                "(starts with a letter; lowercase alphanumerics and '-', at most 63)"
            )
        return None
    if len(name) > 253 or not names.DNS_SUBDOMAIN.fullmatch(name):
        return (
            f"{name!r} is not a valid object name: a DNS subdomain "
            "(lowercase alphanumerics, '-' and '.', at most 253)"
        )
    return None


def _is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(names.DNS_LABEL.fullmatch(value))


def label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not names.DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not names.LABEL_KEY_NAME.fullmatch(name):
        return (
            f"key {key!r}: the name part must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return None  # the schema reports the type
    if value and (len(value) > 63 or not names.LABEL_KEY_NAME.fullmatch(value)):
        return f"value {value!r} must be empty or 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
    return None


def _labels(meta: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[Finding]:
    labels = meta.get("labels")
    if isinstance(labels, Mapping):
        for key in sorted(labels, key=str):
            where = pointer(*path, "labels", key)
            problem = label_key_problem(str(key)) or label_value_problem(labels[key])
            if problem:
                yield _error(where, f"invalid label {problem}", "label")
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        total = 0
        for key in sorted(annotations, key=str):
            problem = label_key_problem(str(key))
            if problem:
                yield _error(pointer(*path, "annotations", key), f"invalid annotation {problem}", "label")
            value = annotations[key]
            total += len(str(key).encode()) + (len(value.encode()) if isinstance(value, str) else 0)
        if total > MAX_ANNOTATION_BYTES:
            yield _error(
                pointer(*path, "annotations"),
                f"annotations total {total} bytes; the API server allows at most {MAX_ANNOTATION_BYTES}",
                "size",
            )


# --- kind-specific core rules --------------------------------------------


def schedule_problem(schedule: str) -> str | None:
    """A cheap cron syntax check: a known macro or five plausible fields."""
    text = schedule.strip()
    if text.startswith("@"):
        if text in _CRON_MACROS or text.startswith("@every "):
            return None
        return f"unknown schedule macro {text!r} (one of {', '.join(_CRON_MACROS)})"
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "time zones in the schedule are rejected since Kubernetes 1.27; set spec.timeZone"
    fields = text.split()
    if len(fields) != 5:
        return (
            f"schedule {schedule!r} has {len(fields)} fields; "
            "cron needs 5 (minute hour day-of-month month day-of-week)"
        )
    bad = [f for f in fields if not _CRON_FIELD.match(f)]
    if bad:
        return f"schedule {schedule!r}: field {bad[0]!r} is not a cron field"
    return None


def _cronjob(obj: Mapping[str, Any]) -> Iterator[Finding]:
    schedule = _dig(obj, ("spec", "schedule"))
    if isinstance(schedule, str):
        problem = schedule_problem(schedule)
        if problem:
            yield _error(pointer("spec", "schedule"), problem, "cron")


def _config_data(obj: Mapping[str, Any], kind: str) -> Iterator[Finding]:
    total = 0
    fields = ("data", "binaryData") if kind == "ConfigMap" else ("data", "stringData")
    for field in fields:
        data = obj.get(field)
        if not isinstance(data, Mapping):
            continue
        for key in sorted(data, key=str):
            if len(str(key)) > 253 or not _CONFIG_KEY.match(str(key)):
                yield _error(
                    pointer(field, key),
                    f"key {key!r} must consist of alphanumerics, '-', '_' or '.' (at most 253)",
                    "k8s-name",
                )
            base64_encoded = field == "binaryData" or (kind == "Secret" and field == "data")
            total += _payload_size(data[key], encoded=base64_encoded)
    if total > MAX_DATA_BYTES:
        yield _error("", f"{kind} data totals {total} bytes; the API server allows at most {MAX_DATA_BYTES}", "size")


def _payload_size(value: Any, encoded: bool) -> int:
    if not isinstance(value, str):
        return 0
    if encoded:
        try:
            return len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            return len(value)
    return len(value.encode())


def _size(obj: Mapping[str, Any]) -> Iterator[Finding]:
    size = len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > MAX_OBJECT_BYTES:
        yield _error("", f"object is {size} bytes serialised; keep objects under {MAX_OBJECT_BYTES} bytes", "size")
    elif size > MAX_ANNOTATION_BYTES:
        yield (
            "",
            f"object is {size} bytes serialised: client-side apply (kubectl apply, Argo CD without "
            f"ServerSideApply=true) copies it into an annotation limited to {MAX_ANNOTATION_BYTES} bytes",
            "size",
            "warning",
        )


# --- CEL rules of the Kuadrant CRDs --------------------------------------


def _target_ref(spec: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> Iterator[Finding]:
    ref = spec.get("targetRef")
    if not isinstance(ref, Mapping):
        return
    group = ref.get("group")
    if "group" in ref and group != GATEWAY_API_GROUP:
        yield _error(
            pointer("spec", "targetRef", "group"),
            f"targetRef.group is {group!r}; the only supported value is {GATEWAY_API_GROUP!r}",
            "cel",
        )
    target_kind = ref.get("kind")
    if "kind" in ref and target_kind not in allowed:
        yield _error(
            pointer("spec", "targetRef", "kind"),
            f"targetRef.kind {target_kind!r} is not supported by {kind}; use one of {', '.join(allowed)}",
            "cel",
        )


def _limits_sections(spec: Mapping[str, Any]) -> Iterator[Finding]:
    present = [k for k in ("limits", "defaults", "overrides") if k in spec]
    if len(present) > 1:
        yield _error(
            pointer("spec"),
            f"{', '.join(present)} are mutually exclusive: set exactly one of limits, defaults, overrides",
            "cel",
        )
        return
    if not present:
        yield _error(pointer("spec"), "At least one spec.limits must be defined", "cel")
        return
    section = present[0]
    where: tuple[str, ...]
    if section == "limits":
        where, limits = ("spec", "limits"), spec.get("limits")
    else:
        block = spec.get(section)
        where, limits = ("spec", section, "limits"), block.get("limits") if isinstance(block, Mapping) else None
    if not isinstance(limits, Mapping) or not limits:
        yield _error(pointer(*where), f"At least one {'.'.join(where)} must be defined", "cel")


_AUTH_IMPLICIT = ("patterns", "when", "rules")


def _auth_sections(spec: Mapping[str, Any]) -> Iterator[Finding]:
    implicit = [k for k in _AUTH_IMPLICIT if k in spec]
    explicit = [k for k in ("defaults", "overrides") if k in spec]
    if len(explicit) > 1 or (explicit and implicit):
        found = ", ".join(explicit + implicit)
        yield _error(
            pointer("spec"),
            f"{found} are mutually exclusive: use either defaults, overrides or top-level rules",
            "cel",
        )
        return
    base: tuple[str, ...] = ("spec", explicit[0]) if explicit else ("spec",)
    section = spec.get(explicit[0]) if explicit else spec
    rules = section.get("rules") if isinstance(section, Mapping) else None
    if not _has_auth_rule(rules):
        yield _error(pointer(*base, "rules"), f"At least one {'.'.join(base + ('rules',))} must be defined", "cel")


def _has_auth_rule(rules: Any) -> bool:
    if not isinstance(rules, Mapping):
        return False
    sections = ("authentication", "metadata", "authorization", "callbacks")
    if any(isinstance(rules.get(k), Mapping) and rules[k] for k in sections):
        return True
    response = rules.get("response")
    if not isinstance(response, Mapping):
        return False
    if "unauthenticated" in response or "unauthorized" in response:
        return True
    success = response.get("success")
    return isinstance(success, Mapping) and any(success.get(k) for k in ("headers", "filters"))
