"""Semantic checks: what a JSON Schema cannot say about a plan.

They run on a merged document that already matches the schema, so they can
rely on its shape, and they read positions from the document itself (the
model has none). Every diagnostic carries a stable id registered in
``diagnostics.CHECKS``; each ``check_*`` function covers one concern and
``CHECKS_RUN`` lists them all (``MODEL_CHECKS`` those that read the plan
model too).

The checks guard three things: that names resolve (a typo in ``tier:``
must not silently bill a team at no tier), that money is exact and sane,
and that every value that will end up inside a Kubernetes name, a label, a
PromQL selector or a CEL expression cannot change that output's structure.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from costplan.core import names
from costplan.core.diagnostics import Diagnostic, sort_diagnostics
from costplan.core.money import MAX_DECIMAL_PLACES, decimal_places
from costplan.core.quantity import quantity_value
from costplan.plan.capabilities import missing_for, source_capabilities
from costplan.plan.document import from_document
from costplan.plan.model import JobResources, Plan
from costplan.plan.source import Position, locate, pointer

JsonPath = list[Any]  # keys and indexes from the document root

NAMED_LISTS = {
    "usageSources": "usage source",
    "gpuInstances": "GPU instance",
    "models": "model",
    "tiers": "tier",
    "teams": "team",
    "budgets": "budget",
    "clusters": "cluster",
}
# Values that name Kubernetes namespaces, by path.
NAMESPACE_PATHS: tuple[JsonPath, ...] = (
    ["integrations", "gateway", "namespace"],
    ["integrations", "gateway", "limitador", "namespace"],
    ["integrations", "gateway", "apiKey", "secretNamespace"],
    ["integrations", "prometheus", "namespace"],
    ["integrations", "costEngine", "namespace"],
    ["integrations", "grafana", "namespace"],
    ["integrations", "argocd", "namespace"],
    ["reports", "namespace"],
    ["notifications", "namespace"],
    ["guard", "namespace"],
    ["metrics", "namespace"],
)
# Values that become object names (DNS subdomains).
SUBDOMAIN_PATHS: tuple[JsonPath, ...] = (
    ["integrations", "gateway", "targetRef", "name"],
    ["integrations", "secrets", "store", "name"],
    ["integrations", "argocd", "project"],
    ["integrations", "costEngine", "openaiPlugin", "existingSecret"],
    ["reports", "pvc", "claimName"],
    ["reports", "webhook", "secretName"],
)
LABEL_MAP_PATHS: tuple[JsonPath, ...] = (
    ["integrations", "prometheus", "ruleLabels"],
    ["integrations", "prometheus", "monitorLabels"],
    ["integrations", "grafana", "sidecarLabel"],
    ["integrations", "grafana", "instanceSelector"],
    ["metrics", "ruleLabels"],
)
# Pricing keys that are not amounts.
NOT_MONEY = {"type", "unit", "period", "tiers", "from", "includedTokensPerRequest"}


# --------------------------------------------------------------------------
# Walking the document
# --------------------------------------------------------------------------


def _get(document: Any, path: JsonPath) -> Any:
    node = document
    for step in path:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            return None
    return node


def _items(document: Any, path: JsonPath) -> Iterator[tuple[JsonPath, dict]]:
    """(path, item) for each mapping in the list at ``path``."""
    items = _get(document, path)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield path + [index], item


def _teams(document: Any) -> Iterator[tuple[JsonPath, dict]]:
    return _items(document, ["teams"])


def _items_under(parent: dict, path: JsonPath, key: str) -> Iterator[tuple[JsonPath, dict]]:
    """``_items(document, path + [key])`` for ``parent``, the mapping at ``path``, without walking from the root."""
    items = parent.get(key)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield path + [key, index], item


def _users(document: Any) -> Iterator[tuple[JsonPath, dict, dict]]:
    """(path, user, team) for every user of every team.

    ``_items_under`` of every team, written out: several checks walk every
    user, and in a plan of tens of thousands of users the nested generators
    and path concatenations cost more than the checks' own work.
    """
    teams = _get(document, ["teams"])
    if not isinstance(teams, list):
        return
    for t, team in enumerate(teams):
        if not isinstance(team, dict):
            continue
        users = team.get("users")
        if not isinstance(users, list):
            continue
        for u, user in enumerate(users):
            if isinstance(user, dict):
                yield ["teams", t, "users", u], user, team


def _budgets(document: Any) -> Iterator[tuple[JsonPath, dict]]:
    """Team budgets, then global budgets."""
    for team_path, team in _teams(document):
        yield from _items_under(team, team_path, "budgets")
    yield from _items(document, ["budgets"])


def _pricings(document: Any) -> Iterator[tuple[JsonPath, dict, dict]]:
    """(path, pricing, model) for every model's pricing and every tier override.

    ``model`` is the model the pricing applies to (empty if an override names
    no known model).
    """
    models = {m.get("name"): m for _, m in _items(document, ["models"])}
    for model_path, model in _items(document, ["models"]):
        yield model_path + ["pricing"], model["pricing"], model
    for tier_path, _ in _items(document, ["tiers"]):
        for override_path, override in _items(document, tier_path + ["priceOverrides"]):
            yield override_path + ["pricing"], override["pricing"], models.get(override.get("model"), {})


def _at(
    document: Any,
    path: JsonPath,
    message: str,
    check_id: str,
    *,
    severity: str = "error",
    key: bool = False,
) -> Diagnostic:
    where = locate(document, path, key=key)
    file, line, column = (where.file, where.line, where.column) if where else ("<plan>", 1, 1)
    return Diagnostic(file, line, column, pointer(path), message, check_id, severity)


def _first_seen(earlier: Position | None, here: Position | None) -> str:
    """' (first defined at line 12)', naming the file too when it differs."""
    if earlier is None:
        return ""
    if here is not None and here.file == earlier.file:
        return f" (first defined at line {earlier.line})"
    return f" (first defined at {earlier.file}:{earlier.line})"


def _suggest(value: Any, known: Iterable[str]) -> str:
    choices = sorted(set(known))
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if choices and len(choices) <= 6:
        return f" (known: {', '.join(choices)})"
    return "" if choices else " (none are defined)"


# --------------------------------------------------------------------------
# unique-name
# --------------------------------------------------------------------------


def check_unique_names(document: Any) -> Iterator[Diagnostic]:
    """Names that generated objects, labels and references are keyed on must not repeat."""
    for list_key, noun in NAMED_LISTS.items():
        yield from _duplicates(document, _items(document, [list_key]), "name", f"{noun} name")
    for team_path, team in _teams(document):
        yield from _duplicates(document, _items_under(team, team_path, "budgets"), "name", "budget name")
    yield from _duplicates(document, ((p, u) for p, u, _ in _users(document)), "id", "user id")
    yield from _duplicate_secret_names(document)
    yield from _duplicate_namespaces(document)
    yield from _duplicate_model_names(document)
    yield from _duplicates(document, _items(document, ["gpuInstances"]), "instanceType", "GPU instance type")


def _duplicates(document: Any, items: Iterable[tuple[JsonPath, dict]], key: str, what: str) -> Iterator[Diagnostic]:
    seen: dict[Any, JsonPath] = {}
    for path, item in items:
        value = item.get(key)
        if value is None:
            continue
        if value in seen:
            earlier, here = locate(document, seen[value] + [key]), locate(document, path + [key])
            yield _at(document, path + [key], f"duplicate {what} {value!r}{_first_seen(earlier, here)}", "unique-name")
        else:
            seen[value] = path


def _secret_name(user: dict) -> str:
    """The Secret a user's key lives in; the model's default when unset."""
    api_key = user.get("apiKey") or {}
    return api_key.get("secretName", f"apikey-{user.get('id')}")


def _duplicate_secret_names(document: Any) -> Iterator[Diagnostic]:
    seen: dict[str, Any] = {}
    for path, user, _ in _users(document):
        name = _secret_name(user)
        where = path + ["apiKey", "secretName"] if "secretName" in (user.get("apiKey") or {}) else path + ["id"]
        if name in seen and seen[name] != user.get("id"):  # same id: reported as a duplicate user
            yield _at(document, where, f"Secret {name!r} already holds the key of user {seen[name]!r}", "unique-name")
        else:
            seen.setdefault(name, user.get("id"))


def _duplicate_namespaces(document: Any) -> Iterator[Diagnostic]:
    """A namespace owned by two teams would make namespace-based attribution ambiguous."""
    owner: dict[str, Any] = {}
    for team_path, team in _teams(document):
        for index, namespace in enumerate(team.get("namespaces") or []):
            if namespace in owner and owner[namespace] != team.get("name"):
                yield _at(
                    document,
                    team_path + ["namespaces", index],
                    f"namespace {namespace!r} already belongs to team {owner[namespace]!r}",
                    "unique-name",
                )
            owner.setdefault(namespace, team.get("name"))


def _duplicate_model_names(document: Any) -> Iterator[Diagnostic]:
    """Two models with one modelName on one source would both be billed for the same usage."""
    seen: dict[tuple[Any, Any], Any] = {}
    for path, model in _items(document, ["models"]):
        served = (model.get("usageSource"), model.get("modelName", model.get("name")))
        if served in seen and seen[served] != model.get("name"):  # same name: reported as such
            where = path + (["modelName"] if "modelName" in model else ["name"])
            yield _at(
                document,
                where,
                f"model {seen[served]!r} already uses modelName {served[1]!r} on usage source {served[0]!r}",
                "unique-name",
            )
        else:
            seen[served] = model.get("name")


# --------------------------------------------------------------------------
# unknown-reference
# --------------------------------------------------------------------------


def _names(document: Any, list_key: str) -> set[str]:
    return {str(item.get("name")) for _, item in _items(document, [list_key]) if isinstance(item.get("name"), str)}


def check_references(document: Any) -> Iterator[Diagnostic]:
    """Every name that refers to another item must resolve."""
    tiers, models = _names(document, "tiers"), _names(document, "models")
    sources, gpus = _names(document, "usageSources"), _names(document, "gpuInstances")
    for path, team in _teams(document):
        if team.get("tier") not in tiers:
            yield _unknown(document, path + ["tier"], "tier", team.get("tier"), tiers)
    for path, user, _ in _users(document):
        if "tier" in user and user["tier"] not in tiers:
            yield _unknown(document, path + ["tier"], "tier", user["tier"], tiers)
    for path, model in _items(document, ["models"]):
        if model.get("usageSource") not in sources:
            yield _unknown(document, path + ["usageSource"], "usage source", model.get("usageSource"), sources)
        if "gpuInstance" in model and model["gpuInstance"] not in gpus:
            yield _unknown(document, path + ["gpuInstance"], "GPU instance", model["gpuInstance"], gpus)
    idle = _get(document, ["gpuIdleCost"])
    if isinstance(idle, dict) and "team" in idle:
        teams = {str(team.get("name")) for _, team in _teams(document) if isinstance(team.get("name"), str)}
        if idle["team"] not in teams:
            yield _unknown(document, ["gpuIdleCost", "team"], "team", idle["team"], teams)
    for tier_path, _ in _items(document, ["tiers"]):
        for path, override in _items(document, tier_path + ["priceOverrides"]):
            if override.get("model") not in models:
                yield _unknown(document, path + ["model"], "model", override.get("model"), models)


def _unknown(document: Any, path: JsonPath, noun: str, value: Any, known: set[str]) -> Diagnostic:
    return _at(document, path, f"unknown {noun} {value!r}{_suggest(value, known)}", "unknown-reference")


# --------------------------------------------------------------------------
# thresholds-order and pricing
# --------------------------------------------------------------------------


def check_thresholds_order(document: Any) -> Iterator[Diagnostic]:
    """Budget thresholds and volume bands must ascend strictly, or alerts and prices overlap."""
    for path, budget in _budgets(document):
        yield from _ascending(document, path + ["thresholds"], budget.get("thresholds") or [], "threshold")
    for path, pricing, _ in _pricings(document):
        if pricing.get("type") == "tieredVolume":
            starts = [band.get("from") for band in pricing.get("tiers") or []]
            yield from _ascending(document, path + ["tiers"], starts, "volume tier start", suffix=("from",))


def _ascending(
    document: Any, path: JsonPath, values: list[Any], noun: str, suffix: tuple[str, ...] = ()
) -> Iterator[Diagnostic]:
    for index in range(1, len(values)):
        before, value = values[index - 1], values[index]
        current, previous = _number(value), _number(before)
        if current is not None and previous is not None and current <= previous:
            yield _at(
                document,
                path + [index, *suffix],
                f"{noun}s must be strictly ascending: {value} comes after {before}",
                "thresholds-order",
            )
            return


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return None
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def check_pricing(document: Any) -> Iterator[Diagnostic]:
    """Pricing that matches the schema but cannot be computed."""
    for path, pricing, model in _pricings(document):
        kind = pricing.get("type")
        if kind == "tieredVolume":
            bands = pricing.get("tiers") or []
            if bands and bands[0].get("from") != 0:
                yield _at(
                    document,
                    path + ["tiers", 0, "from"],
                    f"the first volume tier must start at 0, not {bands[0].get('from')}",
                    "pricing",
                )
        if kind == "gpuHourly" and model:  # an unknown override model is reported elsewhere
            lacking = [key for key in ("gpuInstance", "namespace") if key not in model]
            if lacking:
                yield _at(
                    document,
                    path + ["type"],
                    f"gpuHourly pricing needs the model's {' and '.join(lacking)} "
                    "(its GPU hours are what is charged)",
                    "pricing",
                )


# --------------------------------------------------------------------------
# money
# --------------------------------------------------------------------------


def _money_fields(document: Any) -> Iterator[tuple[JsonPath, Any]]:
    for path, gpu in _items(document, ["gpuInstances"]):
        yield path + ["hourlyRate"], gpu.get("hourlyRate")
    for path, pricing, _ in _pricings(document):
        for key, value in pricing.items():
            if key not in NOT_MONEY:
                yield path + [key], value
        for band_path, band in _items(document, path + ["tiers"]):
            for key, value in band.items():
                if key not in NOT_MONEY:
                    yield band_path + [key], value
    for path, tier in _items(document, ["tiers"]):
        if "priceMultiplier" in tier:
            yield path + ["priceMultiplier"], tier["priceMultiplier"]
    for path, budget in _budgets(document):
        yield path + ["amount"], budget.get("amount")
    alerts = _get(document, ["alerts"]) or {}
    if "costPerRequestP95" in alerts:
        yield ["alerts", "costPerRequestP95"], alerts["costPerRequestP95"]


def check_money(document: Any) -> Iterator[Diagnostic]:
    """Amounts are exact: finite, non-negative, and no finer than 10 decimal places."""
    for path, value in _money_fields(document):
        problem = _money_problem(value)
        if problem:
            yield _at(document, path, problem, "money")


def _money_problem(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return f"{value!r} is not an amount"
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        return f"{value!r} is not a decimal amount"
    if not amount.is_finite():
        return f"an amount must be a finite number, got {value}"
    if amount < 0:
        return f"an amount must not be negative, got {value}"
    if decimal_places(amount) > MAX_DECIMAL_PLACES:
        return (
            f"{amount:f} has {decimal_places(amount)} decimal places; "
            f"at most {MAX_DECIMAL_PLACES} are kept exact in generated rules"
        )
    return None


# --------------------------------------------------------------------------
# k8s-name, label-value, unsafe-value
# --------------------------------------------------------------------------


_QUOTING = frozenset("\"'`\\")


def _unsafe_reason(value: str) -> str | None:
    """Why a string could break out of a PromQL or CEL string literal, if it could."""
    if value.isascii() and value.isprintable() and not _QUOTING.intersection(value):
        return None  # printable ASCII is never Cc, Cf, Zl or Zp: the common case without the loop
    for char in value:
        if char == '"':
            return "contains a double quote"
        if char == "'":
            return "contains a single quote"
        if char == "`":
            return "contains a backquote"
        if char == "\\":
            return "contains a backslash"
        if char in "\n\r":
            return "contains a line break"
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            return "contains a control character"
    return None


def _unsafe(document: Any, path: JsonPath, what: str, value: Any) -> Diagnostic | None:
    reason = _unsafe_reason(value) if isinstance(value, str) else None
    if reason:
        return _at(
            document,
            path,
            f"{what} {value!r} {reason}; it is used inside PromQL and CEL expressions",
            "unsafe-value",
        )
    return None


def check_k8s_names(document: Any) -> Iterator[Diagnostic]:
    """Values that become Kubernetes names must be DNS labels (or subdomains)."""
    for list_key, noun in NAMED_LISTS.items():
        for path, item in _items(document, [list_key]):
            yield from _dns_label(document, path + ["name"], f"{noun} name", item.get("name"))
    for team_path, team in _teams(document):
        for path, budget in _items_under(team, team_path, "budgets"):
            yield from _dns_label(document, path + ["name"], "budget name", budget.get("name"))
        for index, namespace in enumerate(team.get("namespaces") or []):
            yield from _dns_label(document, team_path + ["namespaces", index], "namespace", namespace)
    for path, model in _items(document, ["models"]):
        if "namespace" in model:
            yield from _dns_label(document, path + ["namespace"], "namespace", model["namespace"])
    for path in NAMESPACE_PATHS:
        value = _get(document, path)
        if value is not None:
            yield from _dns_label(document, path, "namespace", value)
    name = _get(document, ["metadata", "name"])
    yield from _dns_label(document, ["metadata", "name"], "plan name", name)
    for path in SUBDOMAIN_PATHS:
        value = _get(document, path)
        if value is not None and not (isinstance(value, str) and names.is_dns_subdomain(value)):
            message = f"{value!r} is not a valid Kubernetes object name {_DNS_SUBDOMAIN_RULE}"
            yield _at(document, path, message, "k8s-name")
    for path, user, _ in _users(document):
        if "secretName" in (user.get("apiKey") or {}):
            secret = user["apiKey"]["secretName"]
            if not names.is_dns_subdomain(secret):
                yield _at(
                    document,
                    path + ["apiKey", "secretName"],
                    f"Secret name {secret!r} is not a valid Kubernetes object name {_DNS_SUBDOMAIN_RULE}",
                    "k8s-name",
                )


_DNS_LABEL_RULE = "(lowercase letters, digits and '-', starting and ending alphanumeric, at most 63 characters)"
_DNS_SUBDOMAIN_RULE = "(lowercase letters, digits, '-' and '.', at most 253 characters)"
# Names that also travel as label values into PromQL and CEL: report unsafe
# characters as such, since that is the more serious problem.
_IDENTITY_NOUNS = {"team name", "tier name"}


def _dns_label(document: Any, path: JsonPath, what: str, value: Any) -> Iterator[Diagnostic]:
    if not isinstance(value, str):
        return
    if what in _IDENTITY_NOUNS:
        unsafe = _unsafe(document, path, what, value)
        if unsafe:
            yield unsafe
            return
    if not names.is_dns_label(value):
        yield _at(document, path, f"{what} {value!r} is not a DNS label {_DNS_LABEL_RULE}", "k8s-name")


def check_label_values(document: Any) -> Iterator[Diagnostic]:
    """Values that become label values (user, cost_center, cluster) and label maps."""
    for path, user, _ in _users(document):
        yield from _identity(document, path + ["id"], "user id", user.get("id"))
    for path, team in _teams(document):
        yield from _identity(document, path + ["costCenter"], "cost center", team.get("costCenter"))
        yield from _label_map(document, path + ["labels"])
    cluster = _get(document, ["metadata", "cluster"])
    if cluster is not None:
        yield from _identity(document, ["metadata", "cluster"], "cluster", cluster)
    for path in LABEL_MAP_PATHS:
        yield from _label_map(document, path)


def _identity(document: Any, path: JsonPath, what: str, value: Any) -> Iterator[Diagnostic]:
    if not isinstance(value, str):
        return
    unsafe = _unsafe(document, path, what, value)
    if unsafe:
        yield unsafe
    elif not names.is_label_value(value):
        yield _at(document, path, f"{what} {value!r} is not a valid label value {_LABEL_VALUE_RULE}", "label-value")


_LABEL_VALUE_RULE = "(letters, digits, '-', '_' and '.', starting and ending alphanumeric, at most 63 characters)"


def _label_map(document: Any, path: JsonPath) -> Iterator[Diagnostic]:
    labels = _get(document, path)
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        if not names.is_label_key(str(key)):
            yield _at(document, path + [key], f"{str(key)!r} is not a valid label key", "label-value", key=True)
        if isinstance(value, str) and not names.is_label_value(value):
            yield _at(
                document, path + [key], f"{value!r} is not a valid label value {_LABEL_VALUE_RULE}", "label-value"
            )


def check_unsafe_values(document: Any) -> Iterator[Diagnostic]:
    """Free-form values that still reach PromQL, CEL or YAML must not carry escapes."""
    for path, model in _items(document, ["models"]):
        if "modelName" in model:
            found = _unsafe(document, path + ["modelName"], "modelName", model["modelName"])
            if found:
                yield found
    for path, user, _ in _users(document):
        for field in (["displayName"], ["apiKey", "remoteKey"]):
            value = _get(user, field)
            if isinstance(value, str) and any(unicodedata.category(c) == "Cc" for c in value):
                message = f"{field[-1]} contains a line break or control character"
                yield _at(document, path + field, message, "unsafe-value")


# --------------------------------------------------------------------------
# currency, timezone, url
# --------------------------------------------------------------------------


def _currency_codes() -> set[str] | None:
    """ISO 4217 codes from pycountry; ``None`` if it is not installed (format check only)."""
    try:
        import pycountry
    except ImportError:  # pragma: no cover - pycountry is a declared dependency
        return None
    return {currency.alpha_3 for currency in pycountry.currencies}


def check_currency(document: Any) -> Iterator[Diagnostic]:
    """Amounts are only meaningful with a real currency code."""
    value = _get(document, ["metadata", "currency"])
    if value is None:
        return
    codes = _currency_codes()
    valid = isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()
    if valid and codes is not None:
        valid = value in codes
    if not valid:
        hint = f" (did you mean {value.upper()!r}?)" if codes and str(value).upper() in codes else " (e.g. USD, EUR)"
        yield _at(document, ["metadata", "currency"], f"{value!r} is not an ISO 4217 currency code{hint}", "currency")


def check_timezone(document: Any) -> Iterator[Diagnostic]:
    """Calendar budgets reset at midnight in this zone; it must be a real IANA name."""
    value = _get(document, ["metadata", "timezone"])
    if value is None:
        return
    zones = zoneinfo.available_timezones()
    if zones:
        valid = value in zones
    else:  # no zone list available (unusual platform): ask zoneinfo directly
        try:
            zoneinfo.ZoneInfo(value)
            valid = True
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            valid = False
    if not valid:
        yield _at(
            document,
            ["metadata", "timezone"],
            f"{value!r} is not an IANA time zone{_suggest(value, zones) if zones else ''}",
            "timezone",
        )


_URL_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_URL_PATH = re.compile(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]*)*")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a plain http(s) URL (scheme, host, port, path), or None.

    The URL is copied into the report CronJob and into the cost engine's
    chart values, and the OpenCost chart renders that value with Helm's
    ``tpl``: template syntax, credentials, a query or anything outside the
    URL grammar is refused rather than passed on.
    """
    if "{{" in url or "}}" in url:
        return "holds template syntax ({{ }}); charts render this value with Helm's tpl"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "holds whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if "@" in parts.netloc:
        return "holds credentials; put them in a Secret, never in the plan"
    host = parts.hostname or ""
    if not host:
        return "has no host"
    if not (_URL_HOST.fullmatch(host) or _is_ip(host)):
        return f"has an invalid host {host!r}"
    if port is not None and not 0 < port < 65536:
        return f"has an invalid port {port}"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "has a query or fragment; give the base URL only"
    if not _URL_PATH.fullmatch(parts.path):
        return "has characters outside the URL path grammar"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_urls(document: Any) -> Iterator[Diagnostic]:
    """Reports query Prometheus over HTTP, and the cost engine's chart renders the URL with tpl."""
    for path in (["integrations", "prometheus", "url"], ["metrics", "queryURL"]):
        url = _get(document, path)
        if isinstance(url, str):
            problem = url_problem(url)
            if problem:
                yield _at(document, path, f"{url!r} {problem}", "url")
    for path, cluster in _items(document, ["clusters"]):
        server = _get(cluster, ["destination", "server"])
        if isinstance(server, str) and (problem := url_problem(server)):
            yield _at(document, path + ["destination", "server"], f"{server!r} {problem}", "url")


# --------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------


def check_secrets(document: Any) -> Iterator[Diagnostic]:
    """external-secrets needs a store and a remote key per user; none needs neither."""
    secrets = _get(document, ["integrations", "secrets"]) or {}
    backend = secrets.get("backend", "none")
    if backend == "external-secrets":
        if "store" not in secrets:
            yield _at(
                document,
                ["integrations", "secrets", "backend"],
                "backend external-secrets needs a store (kind and name of the SecretStore)",
                "secrets",
            )
        for path, user, _ in _users(document):
            if "remoteKey" not in (user.get("apiKey") or {}):
                yield _at(
                    document,
                    path + ["id"],
                    f"user {user.get('id')!r} needs apiKey.remoteKey: backend external-secrets "
                    "copies each key from the store",
                    "secrets",
                )
    elif "store" in secrets:
        yield _at(
            document,
            ["integrations", "secrets", "store"],
            "store is ignored unless backend is external-secrets",
            "secrets",
            severity="warning",
            key=True,
        )


# --------------------------------------------------------------------------
# usage-source
# --------------------------------------------------------------------------


def check_usage_sources(document: Any, plan: Plan | None) -> Iterator[Diagnostic]:
    """Each model's source must measure what its pricing charges for.

    ``plan`` is the document's model (``model_of``), built once for the
    checks and the build; ``None`` when the document cannot be mapped (other
    checks say why), and then only the document's own shape is checked.
    """
    for path, source in _items(document, ["usageSources"]):
        if source.get("type") != "custom":
            for key in ("metrics", "labels"):
                if key in source:
                    yield _at(
                        document,
                        path + [key],
                        f"only custom usage sources take {key}; {source.get('type')} has fixed metrics",
                        "usage-source",
                        key=True,
                    )
    if plan is None:
        return
    sources = {source.name: source for source in plan.usage_sources}
    models = {model.name: model for model in plan.models}
    priced = [(["models", i, "pricing"], m, m.pricing) for i, m in enumerate(plan.models)]
    for t, tier in enumerate(plan.tiers):
        for o, override in enumerate(tier.price_overrides):
            if override.model in models:
                priced.append((["tiers", t, "priceOverrides", o, "pricing"], models[override.model], override.pricing))
    for path, model, pricing in priced:
        usage_source = sources.get(model.usage_source)
        if usage_source is None:
            continue  # reported as unknown-reference
        missing = missing_for(pricing, source_capabilities(usage_source))
        if missing:
            yield _at(
                document,
                path + ["type"],
                f"{pricing.type} pricing needs {' and '.join(missing)}, which usage source "
                f"{usage_source.name!r} ({usage_source.type}) does not measure",
                "usage-source",
            )
    yield from _shared_limitador_sources(document, plan)


# Limitador counts calls without a model label (only token hits carry one),
# so calls through such a source can be priced for one model only.
_CALLS_WITHOUT_MODEL = ("kuadrant-limitador", "limitador-legacy")


def _shared_limitador_sources(document: Any, plan: Any) -> Iterator[Diagnostic]:
    for source in plan.usage_sources:
        if source.type not in _CALLS_WITHOUT_MODEL:
            continue
        users = [i for i, model in enumerate(plan.models) if model.usage_source == source.name]
        for index in users[1:]:
            yield _at(
                document,
                ["models", index, "usageSource"],
                f"usage source {source.name!r} ({source.type}) counts calls without a model label, so it can "
                f"measure one model only, and model {plan.models[users[0]].name!r} uses it already; "
                "give each model its own route and source",
                "usage-source",
            )


# --------------------------------------------------------------------------
# Advice
# --------------------------------------------------------------------------


def check_tier_effect(document: Any) -> Iterator[Diagnostic]:
    """A tier with no limits, quotas or price changes behaves like no tier at all."""
    for path, tier in _items(document, ["tiers"]):
        limits = tier.get("limits") or {}
        has_limits = any(limits.get(kind) for kind in ("requests", "tokens"))
        multiplier = _number(tier.get("priceMultiplier", 1))
        if not has_limits and not tier.get("quotas") and multiplier == 1 and not tier.get("priceOverrides"):
            yield _at(
                document,
                path + ["name"],
                f"tier {tier.get('name')!r} sets no limits, quotas, priceMultiplier or priceOverrides; "
                "its users are unlimited at list price",
                "tier-no-effect",
                severity="warning",
            )


def check_gateway_telemetry(document: Any) -> Iterator[Diagnostic]:
    """Warn when usage cannot carry identity: spend would land on nobody.

    A TelemetryPolicy attaches only to a Gateway; with an HTTPRoute target
    and ``metrics: telemetryPolicy`` Limitador's counters have no user,
    team or tier labels, so per-team money would be empty.
    """
    gateway = document["integrations"]["gateway"]
    metrics = (gateway.get("limitador") or {}).get("metrics", "telemetryPolicy")
    kind = gateway["targetRef"]["kind"]
    if metrics == "telemetryPolicy" and kind != "Gateway":
        yield _at(
            document,
            ["integrations", "gateway", "targetRef", "kind"],
            f"a TelemetryPolicy can only target a Gateway, not a {kind}: Limitador metrics will carry no "
            "user, team or tier labels; target the Gateway, or use limitador.metrics: legacyImage",
            "gateway-telemetry",
            severity="warning",
        )


# --------------------------------------------------------------------------
# budget-action and contacts
# --------------------------------------------------------------------------


def check_budget_actions(document: Any) -> Iterator[Diagnostic]:
    """Actions must be able to take effect: team budgets only, real lower tiers, no dead steps."""
    tiers = _names(document, "tiers")
    for path, _budget in _items(document, ["budgets"]):
        if _budget.get("actions"):
            yield _at(document, path + ["actions"], "actions apply to team budgets only: a global budget "
                      "has no keys or contacts of its own", "budget-action", key=True)
    for team_path, team in _teams(document):
        for path, budget in _items_under(team, team_path, "budgets"):
            seen: dict[tuple[Any, Any], int] = {}
            blocks = [_number(a.get("at")) for a in budget.get("actions") or [] if a.get("action") == "block"]
            first_block = min((b for b in blocks if b is not None), default=None)
            for index, action in enumerate(budget.get("actions") or []):
                where = path + ["actions", index]
                at = _number(action.get("at"))
                key = (at, action.get("action"))
                if key in seen:
                    yield _at(document, where, f"{action.get('action')} at {action.get('at')}% is listed twice",
                              "budget-action")
                seen.setdefault(key, index)
                if action.get("action") != "throttle":
                    continue
                tier = action.get("tier")
                if tier not in tiers:
                    yield _unknown(document, where + ["tier"], "tier", tier, tiers)
                elif tier == team.get("tier"):
                    yield _at(document, where + ["tier"], f"throttling to {tier!r}, the team's own tier, "
                              "changes nothing", "budget-action")
                if at is not None and first_block is not None and at >= first_block:
                    yield _at(document, where + ["at"], f"throttle at {action.get('at')}% never takes effect: "
                              f"the budget blocks at {first_block}%", "budget-action")


def check_contacts(document: Any) -> Iterator[Diagnostic]:
    """Email needs the plan's SMTP relay; Secret names must be Secret names."""
    has_email = isinstance(_get(document, ["notifications", "email"]), dict)
    for team_path, team in _teams(document):
        for path, contact in _items_under(team, team_path, "contacts"):
            if contact.get("type") == "email" and not has_email:
                yield _at(document, path + ["type"], "email contacts need notifications.email "
                          "(the SMTP relay: smarthost and from)", "contacts")
            name = (contact.get("secret") or {}).get("secretName")
            if isinstance(name, str) and not names.is_dns_subdomain(name):
                yield _at(document, path + ["secret", "secretName"], f"{name!r} is not a valid Secret name "
                          "(a DNS subdomain: lowercase letters, digits, '-' and '.')", "k8s-name")
def image_pinned(image: str) -> bool:
    """``repo@sha256:...`` or ``repo:tag`` with a tag other than ``latest``."""
    if "@" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def check_legacy_image(document: Any) -> Iterator[Diagnostic]:
    """The custom Limitador image's metrics are only known for the build the plan pins.

    A moving tag (``latest``, or none) can change the metric names and labels
    the spend rules read under a running cluster.
    """
    limitador = document["integrations"]["gateway"].get("limitador") or {}
    if limitador.get("metrics") != "legacyImage":
        return
    image = limitador.get("image")
    if image is None or not image_pinned(str(image)):
        path = ["integrations", "gateway", "limitador"] + (["image"] if image is not None else ["metrics"])
        shown = image if image is not None else "ghcr.io/nerdalert/limitador:latest (the default)"
        yield _at(
            document,
            path,
            f"limitador image {shown} is not pinned: name it by digest (image@sha256:...) or by a tag other "
            "than latest, the build whose authorized_calls and limited_calls the spend rules read",
            "legacy-image",
            severity="warning",
        )


_BUDGET_WINDOW = re.compile(r"([0-9]+[wdhms])+")
_WINDOW_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MIN_BUDGET_WINDOW_SECONDS = 3600  # the spend series is hourly (conventions.OUTPUT_STEP)
# Prometheus refuses ranges beyond its duration type, and a budget summed over
# more than a year of hourly steps outlives any retention: one year at most.
MAX_BUDGET_WINDOW_SECONDS = 366 * 86400


def check_budget_windows(document: Any) -> Iterator[Diagnostic]:
    """A rolling budget window is what the budget rules can sum: weeks to seconds, at least one hour.

    The schema admits every Prometheus duration; the rules sum the hourly
    spend series over the window, so ``y`` and ``ms`` (no fixed length in
    those rules) and windows shorter than one step would fail the build.
    """
    for path, budget in _budgets(document):
        window = budget.get("window")
        if budget.get("period") != "rolling" or not isinstance(window, str):
            continue
        if not _BUDGET_WINDOW.fullmatch(window):
            problem = f"{window!r}: a budget window is written in w, d, h, m and s (e.g. 30d, 7d, 36h)"
        elif (seconds := sum(int(n) * _WINDOW_SECONDS[u] for n, u in re.findall(r"([0-9]+)([wdhms])", window))) \
                < MIN_BUDGET_WINDOW_SECONDS:
            problem = f"{window!r}: a budget window is at least 1h (spend is summed per hour)"
        elif seconds > MAX_BUDGET_WINDOW_SECONDS:
            problem = f"{window!r}: a budget window is at most 366d (a rolling year)"
        else:
            continue
        yield _at(document, path + ["window"], problem, "budget-window")


# --------------------------------------------------------------------------
# report job resources
# --------------------------------------------------------------------------


def check_job_resources(document: Any) -> Iterator[Diagnostic]:
    """A report job's request must not be above its limit: the API server refuses such a pod.

    Found at build time, not in the cluster on the 1st of the month when the
    CronJob first creates a Job. A request left unset never trips this: it
    is lowered to the limit (``document._job_resources``).
    """
    resources = _get(document, ["reports", "resources"])
    if not isinstance(resources, dict):
        return
    defaults = JobResources()
    default_limits = {"cpu": defaults.limit_cpu, "memory": defaults.limit_memory}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for amount in ("cpu", "memory"):
        request, limit = requests.get(amount), limits.get(amount, default_limits[amount])
        if not isinstance(request, str) or not isinstance(limit, str):
            continue
        wanted, most = quantity_value(request), quantity_value(limit)
        if wanted is not None and most is not None and wanted > most:
            whose = "its limit" if amount in limits else "the default limit"
            yield _at(
                document,
                ["reports", "resources", "requests", amount],
                f"a {amount} request of {request} is above {whose} of {limit}: the API server refuses the job",
                "resources",
            )


# --------------------------------------------------------------------------
# fleets
# --------------------------------------------------------------------------


def check_fleet(document: Any) -> Iterator[Diagnostic]:
    """Clusters need a global engine, and what each cluster serves must exist in the plan.

    Money, budgets and alerts are evaluated once, over every cluster's usage,
    by the engine ``metrics`` names; without it a fleet has nowhere to add up.
    """
    clusters = list(_items(document, ["clusters"]))
    if clusters and _get(document, ["metrics"]) is None:
        yield _at(document, ["clusters"], "clusters need a metrics section: the global engine that holds every "
                  "cluster's usage and evaluates money, budgets and alerts", "fleet")
    if not clusters and isinstance(_get(document, ["metrics"]), dict):
        yield _at(document, ["metrics"], "metrics is used only with clusters; a single cluster queries "
                  "integrations.prometheus.url", "fleet", severity="warning")
    models, teams = _names(document, "models"), {str(t.get("name")) for _, t in _teams(document)}
    for path, cluster in clusters:
        for key, noun, known in (("models", "model", models), ("teams", "team", teams)):
            for index, name in enumerate(cluster.get(key) or []):
                if name not in known:
                    yield _unknown(document, path + [key, index], noun, name, known)
        for key in ("namespace", "name"):
            value = _get(cluster, ["gateway", key])
            if value is not None:
                yield from _dns_label(document, path + ["gateway", key], f"gateway {key}", value)
        name = _get(cluster, ["destination", "name"])
        if name is not None:
            yield from _identity(document, path + ["destination", "name"], "Argo CD cluster name", name)
        context = cluster.get("context")
        if isinstance(context, str) and (found := _unsafe(document, path + ["context"], "context", context)):
            yield found


CHECKS_RUN: tuple[Callable[[Any], Iterable[Diagnostic]], ...] = (
    check_unique_names,
    check_budget_windows,
    check_references,
    check_thresholds_order,
    check_pricing,
    check_money,
    check_k8s_names,
    check_label_values,
    check_unsafe_values,
    check_currency,
    check_timezone,
    check_urls,
    check_secrets,
    check_tier_effect,
    check_gateway_telemetry,
    check_budget_actions,
    check_contacts,
    check_job_resources,
    check_legacy_image,
    check_fleet,
)

MODEL_CHECKS: tuple[Callable[[Any, Plan | None], Iterable[Diagnostic]], ...] = (check_usage_sources,)
"""Checks that read the plan model as well as the document (``model_of``, built once)."""


def run_readable(document: Any, broken: set[str]) -> list[Diagnostic]:
    """The semantic problems of a document with schema errors, as far as it can be read.

    Each check assumes the schema's shape; one that meets a part of the
    plan that is not in shape (a string where a list belongs) stops, and
    the others still run. Findings on a value the schema already reported
    are left out, and so are findings on values that are absent (a
    misspelt key is one mistake, not also a missing reference): one
    mistake, one line.
    """
    found: list[Diagnostic] = []
    for check in CHECKS_RUN:
        try:
            found.extend(list(check(document)))
        except Exception:  # that part of the plan is out of shape; the schema said so
            continue
    try:
        model = model_of(document)
        for model_check in MODEL_CHECKS:
            found.extend(list(model_check(document, model)))
    except Exception:  # as above
        pass
    return sort_diagnostics(d for d in found if d.pointer not in broken and _present(document, d.pointer))


def _present(document: Any, pointer: str) -> bool:
    """Whether the JSON pointer names a value that is in the document."""
    node = document
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def model_of(document: Any, environment: str = "validate") -> Plan | None:
    """The plan model of a schema-valid document, or ``None`` where it cannot be mapped (other checks say why)."""
    try:
        return from_document(document, environment)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


def run_all(document: Any, plan: Plan | None = None) -> list[Diagnostic]:
    """Every semantic problem in a schema-valid document, sorted.

    ``plan`` is the document's model when the caller has built it already
    (``model_of``): a large plan's model costs as much as several checks,
    and the build needs it too.
    """
    found: list[Diagnostic] = []
    for check in CHECKS_RUN:
        found.extend(check(document))
    model = plan if plan is not None else model_of(document)
    for model_check in MODEL_CHECKS:
        found.extend(model_check(document, model))
    return sort_diagnostics(found)
