"""``costplan doctor``: are the assumptions the build relies on true on this cluster?

The build is only right if the components behave as ``docs/upstream.md``
says, with the objects it made. Those facts can drift on a live cluster: a
CRD at another version, a policy the operator did not accept or enforce, a
key Secret without the annotations the policies read, usage series without
the identity labels, key Secrets whose annotations kube-state-metrics does
not export (then the identity join attributes nothing), limits missing from the live RateLimitPolicy, GPU
prices that never reached the cost engine. Each check gives one finding,
``ok``, ``warn`` or ``fail``, with the fix.

Pure over its inputs: the cluster (``Cluster``), a Prometheus ``query``
callable and the GPU price comparison are handed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costplan.core import conventions as c
from costplan.generators.kuadrant import secrets as key_secrets
from costplan.generators.kuadrant.auth import all_namespaces, secret_selector_labels
from costplan.generators.prometheus import prices, usage
from costplan.install.cluster import Cluster
from costplan.install.objects import api_group, group_kind, is_builtin_group
from costplan.plan.model import Plan

OK, WARN, FAIL = "ok", "warn", "fail"
RANK = {OK: 0, WARN: 1, FAIL: 2}

POLICY_KINDS = ("AuthPolicy", "RateLimitPolicy", "TokenRateLimitPolicy", "TelemetryPolicy")
# Labels the spend rules need on each usage source's counters.
IDENTITY_LABELS = {
    "kuadrant-limitador": (c.LABEL_USER, c.LABEL_TEAM, c.LABEL_TIER),
    "limitador-legacy": (c.LABEL_USER,),
}


Query = Callable[[str], Sequence[Any]]
GpuCheck = Callable[[Plan, Sequence[Any]], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def worst(findings: Iterable[Finding]) -> str:
    return max((f.status for f in findings), key=RANK.__getitem__, default=OK)


# --------------------------------------------------------------------------
# Cluster checks
# --------------------------------------------------------------------------


def plural(kind: str) -> str:
    """The resource name of the kinds costplan writes (``AuthPolicy`` -> ``authpolicies``)."""
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def check_crds(cluster: Cluster, objects: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Every custom kind of the build is installed and serves the version the build writes."""
    versions: dict[tuple[str, str], set[str]] = {}
    for obj in objects:
        group = api_group(obj["apiVersion"])
        if is_builtin_group(group):
            continue
        versions.setdefault((group, obj["kind"]), set()).add(obj["apiVersion"].rsplit("/", 1)[1])
    missing = cluster.missing_crds(sorted(group_kind(g, k) for g, k in versions))
    if missing:
        return [Finding("crds", FAIL, f"not installed or not Established: {', '.join(missing)}",
                        "install the component at the version in docs/upstream.md")]
    findings = []
    for (group, kind), wanted in sorted(versions.items()):
        crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{plural(kind)}.{group}", None)
        if crd is None:
            findings.append(Finding("crds", WARN, f"{kind}.{group}: CustomResourceDefinition not readable",
                                    "grant get on customresourcedefinitions to check its versions"))
            continue
        served = {v.get("name") for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")}
        absent = sorted(wanted - served)
        if absent:
            findings.append(Finding(
                "crds", FAIL, f"{kind}.{group} serves {', '.join(sorted(served)) or 'no version'}, "
                f"the build writes {', '.join(absent)}", "upgrade the component to the version in docs/upstream.md"))
    if not findings:
        findings.append(Finding("crds", OK, f"{len(versions)} custom kinds served at the build's versions"))
    return findings


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def check_policies(cluster: Cluster, objects: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Each Kuadrant policy of the build exists, is Accepted and Enforced."""
    findings = []
    for obj in objects:
        if obj["kind"] not in POLICY_KINDS:
            continue
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta.get('namespace')}/{meta['name']}"
        live = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if live is None:
            findings.append(Finding("policies", FAIL, f"{where} is not on the cluster", "run costplan apply"))
            continue
        bad = []
        for kind in ("Accepted", "Enforced"):
            condition = _condition(live, kind)
            if condition is None or condition.get("status") != "True":
                reason = "no condition" if condition is None else f"{condition.get('reason')}: {condition.get('message')}"
                bad.append(f"not {kind} ({reason})")
        if bad:
            findings.append(Finding("policies", FAIL, f"{where} {'; '.join(bad)}",
                                    "read the policy's status; check the Kuadrant operator and the target Gateway"))
        else:
            findings.append(Finding("policies", OK, f"{where} Accepted and Enforced"))
    return findings


def check_limits(cluster: Cluster, objects: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """The live rate-limit policies hold the limits (quotas, metering) the build made."""
    findings = []
    for obj in objects:
        if obj["kind"] not in ("RateLimitPolicy", "TokenRateLimitPolicy"):
            continue
        meta = obj["metadata"]
        live = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if live is None:
            continue  # reported by the policy check
        want = obj["spec"]["limits"]
        have = (live.get("spec") or {}).get("limits") or {}
        wrong = sorted(name for name, limit in want.items() if have.get(name) != limit)
        where = f"{obj['kind']}/{meta.get('namespace')}/{meta['name']}"
        if wrong:
            findings.append(Finding("limits", FAIL, f"{where}: limits differ from the build: {', '.join(wrong)}",
                                    "run costplan apply (someone changed or replaced the policy)"))
        else:
            findings.append(Finding("limits", OK, f"{where}: {len(want)} limits as built"))
    return findings


def check_key_secrets(cluster: Cluster, plan: Plan) -> list[Finding]:
    """Every user's key Secret carries the annotations the policies read; no unknown keys."""
    gateway = plan.integrations.gateway
    labels = secret_selector_labels()
    selector = f"{c.SECRET_LABEL_APP}={labels[c.SECRET_LABEL_APP]}"
    namespaces = sorted({gateway.api_key.secret_namespace, gateway.limitador.namespace}) if all_namespaces(plan) \
        else [gateway.api_key.secret_namespace]
    live = {
        s["metadata"]["name"]: s
        for s in cluster.list("", "Secret", namespaces, selector)
        if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
    }
    findings = []
    known = set()
    for team, user in plan.users():
        name = user.api_key.secret_name
        known.add(name)
        secret = live.get(name)
        if secret is None:
            findings.append(Finding("key-secrets", FAIL, f"user {user.id}: no key Secret {name} with the key labels",
                                    f"create it in {gateway.api_key.secret_namespace} (README: key Secrets)"))
            continue
        annotations = secret["metadata"].get("annotations") or {}
        want = key_secrets.key_secret_annotations(team, user)
        wrong = sorted(k for k, v in want.items() if annotations.get(k) != v)
        if wrong:
            findings.append(Finding(
                "key-secrets", FAIL, f"user {user.id}: Secret {name} lacks or mis-sets {', '.join(wrong)}",
                "set the annotations: without them the usage of this key is not attributed"))
    unknown = sorted(set(live) - known)
    if unknown:
        findings.append(Finding("key-secrets", WARN, f"key Secrets not in the plan: {', '.join(unknown)}",
                                "add their users to the plan or remove the key labels"))
    if not findings:
        findings.append(Finding("key-secrets", OK, f"{len(known)} key Secrets carry every identity annotation"))
    return findings


# --------------------------------------------------------------------------
# Prometheus checks
# --------------------------------------------------------------------------


def check_usage_series(plan: Plan, query: Query) -> list[Finding]:
    """Each used source has series, and (Limitador) they carry the identity labels."""
    findings = []
    for source in plan.usage_sources:
        if not usage.models_of(plan, source):
            continue
        selector = usage.primary_selector(plan, source)
        series = query(f"count by ({', '.join(IDENTITY_LABELS.get(usage.effective_type(plan, source), ('__name__',)))}) ({selector})")
        if not series:
            findings.append(Finding("usage", WARN, f"source {source.name}: no series for {selector}",
                                    "no traffic yet, or the source is not scraped (check its monitor)"))
            continue
        needed = IDENTITY_LABELS.get(usage.effective_type(plan, source), ())
        without = [label for label in needed if any(not s.labels.get(label) for s in series)]
        if without:
            findings.append(Finding("usage", FAIL, f"source {source.name}: series without {', '.join(without)}",
                                    "check the TelemetryPolicy (Gateway target) and the key Secrets' annotations"))
        else:
            findings.append(Finding("usage", OK, f"source {source.name}: {len(series)} series with identity"))
    return findings


SHOWN = 5  # users named in one finding; the rest are counted


def _some(names: Sequence[str]) -> str:
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _users(count: int) -> str:
    return f"{count} user" + ("" if count == 1 else "s")


def check_identity(plan: Plan, query: Query) -> list[Finding]:
    """The identity join finds every user's team, tier and cost center (plans whose usage carries only the user).

    Runs the expression of ``costplan:user_identity`` itself, so the answer
    does not wait for the rules to be loaded and evaluated: what it returns
    is what the usage rules will join. A user missing from it (no
    kube-state-metrics series for the key Secret, an allowlist without the
    annotations, two keys that disagree) has usage that is never attributed.
    """
    if not usage.needs_identity(plan):
        return []
    namespace = plan.integrations.gateway.api_key.secret_namespace
    found = {s.labels.get(c.LABEL_USER, ""): s.labels for s in query(prices.user_identity_rule(plan)["expr"])}
    if not found:
        exported = query(f'count({c.KSM_SECRET_ANNOTATIONS}{{{c.KSM_LABEL_NAMESPACE}="{namespace}"}})')
        if not exported:
            return [Finding("identity", FAIL, f"no {c.KSM_SECRET_ANNOTATIONS} series for namespace {namespace}",
                            "scrape kube-state-metrics with this Prometheus: usage is attributed from its series")]
        return [Finding("identity", FAIL, f"{c.KSM_SECRET_ANNOTATIONS} in {namespace} carry no user id annotation",
                        f"run kube-state-metrics with {prices.ksm_annotations_allowlist()}")]
    missing, wrong = [], []
    for team, user in plan.users():
        annotations = key_secrets.key_secret_annotations(team, user)
        want = {label: annotations[annotation] for label, annotation in prices.IDENTITY_ANNOTATIONS.items()}
        labels = found.get(user.id)
        if labels is None:
            missing.append(user.id)
        elif any(labels.get(label, "") != value for label, value in want.items()):
            wrong.append(user.id)
    findings = []
    if missing:
        findings.append(Finding(
            "identity", FAIL, f"no identity for {_users(len(missing))}: {_some(missing)}",
            f"their usage is not attributed: check their key Secrets in {namespace} (one per user, or keys that "
            f"agree) and kube-state-metrics' {prices.ksm_annotations_allowlist()}"))
    if wrong:
        findings.append(Finding(
            "identity", FAIL, f"identity differs from the plan for {_users(len(wrong))}: {_some(wrong)}",
            "set their key Secrets' annotations as the plan says (costplan doctor's key-secrets check names them)"))
    if not findings:
        findings.append(Finding("identity", OK, f"{_users(len(found))} found with the plan's team, tier and cost center"))
    return findings


def check_gpu_prices(plan: Plan, query: Query, compare: GpuCheck, price_query: str) -> list[Finding]:
    if not plan.gpu_instances or plan.integrations.cost_engine.type == "none":
        return []
    problems, _ = compare(plan, query(price_query))
    if problems:
        return [Finding("gpu-prices", FAIL, "; ".join(problems),
                        "fix the cost engine's prices (costplan build's values) and restart it: it reads prices at start")]
    return [Finding("gpu-prices", OK, "the cost engine prices every GPU node at the plan's rate")]


def run(
    plan: Plan,
    objects: Sequence[Mapping[str, Any]],
    cluster: Cluster,
    query: Query | None = None,
    gpu_check: tuple[GpuCheck, str] | None = None,
) -> list[Finding]:
    """Every check; Prometheus checks only with ``query``."""
    findings = check_crds(cluster, objects)
    if all(f.status != FAIL for f in findings):
        findings += check_policies(cluster, objects) + check_limits(cluster, objects)
    if plan.integrations.gateway.type == "kuadrant":
        findings += check_key_secrets(cluster, plan)
    if query is not None:
        findings += check_usage_series(plan, query) + check_identity(plan, query)
        if gpu_check is not None:
            findings += check_gpu_prices(plan, query, gpu_check[0], gpu_check[1])
    return findings
