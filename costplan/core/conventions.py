"""The contract: every label, metric and annotation name costplan generates.

Generators, dashboards, reports and tests import names from here and nowhere
else, so the Kuadrant policies that *produce* labels and the Prometheus rules
that *consume* them cannot drift apart. The README lists the metric names as
a stable contract and a test checks the README against this module.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# Identity labels on usage and money series
# --------------------------------------------------------------------------

LABEL_USER = "user"
LABEL_TEAM = "team"
LABEL_TIER = "tier"
LABEL_MODEL = "model"
LABEL_COST_CENTER = "cost_center"
LABEL_NAMESPACE = "namespace"
LABEL_BUDGET = "budget"
LABEL_PERIOD = "period"
LABEL_TOKEN_TYPE = "token_type"
LABEL_GPU_INSTANCE = "gpu_instance"
LABEL_SOURCE = "source"
LABEL_CLUSTER = "cluster"  # the cluster a series was recorded in (external label of a fleet's Prometheus)

IDENTITY_LABELS = (LABEL_USER, LABEL_TEAM, LABEL_TIER, LABEL_MODEL, LABEL_COST_CENTER)

# --------------------------------------------------------------------------
# Kuadrant identity: what AuthPolicy publishes and TelemetryPolicy reads
# --------------------------------------------------------------------------

# auth.identity.<name> properties the AuthPolicy success filter publishes.
IDENTITY_USER = "userid"
IDENTITY_TEAM = "team"
IDENTITY_TIER = "tier"
IDENTITY_COST_CENTER = "cost_center"
IDENTITY_GROUPS = "groups"

# Annotations on each API-key Secret that carry the identity.
ANNOTATION_USER_ID = "secret.kuadrant.io/user-id"
ANNOTATION_GROUPS = "kuadrant.io/groups"
ANNOTATION_TEAM = "costplan.dev/team"
ANNOTATION_TIER = "costplan.dev/tier"
ANNOTATION_COST_CENTER = "costplan.dev/cost-center"

# Labels on each API-key Secret that the AuthPolicy selects on.
SECRET_LABEL_APP = "app"
SECRET_LABEL_APP_VALUE = "costplan-apikey"
SECRET_LABEL_MANAGED_BY = "authorino.kuadrant.io/managed-by"
SECRET_LABEL_MANAGED_BY_VALUE = "authorino"

# --------------------------------------------------------------------------
# Labels and annotations on every generated object
# --------------------------------------------------------------------------

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "costplan"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_PLAN = "costplan.dev/plan"
LABEL_ENVIRONMENT = "costplan.dev/environment"
LABEL_COMPONENT = "costplan.dev/component"
ANNOTATION_SYNC_WAVE = "argocd.argoproj.io/sync-wave"
# Argo CD per-object sync options; ``Prune=false`` keeps an object Argo CD
# would otherwise delete when it leaves the build.
ANNOTATION_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"

# ApplySet (pruning by `costplan apply`): the current ``applyset.kubernetes.io/``
# prefix; the KEP's older ``applyset.k8s.io/`` prefix is not what kubectl uses.
LABEL_APPLYSET_ID = "applyset.kubernetes.io/id"
LABEL_APPLYSET_PART_OF = "applyset.kubernetes.io/part-of"
# kubectl's client-side apply record: hidden in diffs, never compared.
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ANNOTATION_APPLYSET_TOOLING = "applyset.kubernetes.io/tooling"
ANNOTATION_APPLYSET_GROUP_KINDS = "applyset.kubernetes.io/contains-group-kinds"
ANNOTATION_APPLYSET_NAMESPACES = "applyset.kubernetes.io/additional-namespaces"
# An object with this annotation set to "true" is left alone when it would
# otherwise be pruned (reported as skipped), for hand-over to another owner.
ANNOTATION_KEEP = "costplan.dev/keep"
# What to do once this object changed on a cluster, when the change alone
# does not take effect (``costplan apply`` prints it after an update).
ANNOTATION_AFTER_CHANGE = "costplan.dev/after-change"

# --------------------------------------------------------------------------
# Metric names (prefix costplan:) - filled in by the spend-rules generator
# --------------------------------------------------------------------------

METRIC_PREFIX = "costplan:"

# --------------------------------------------------------------------------
# Gateway enforcement (Kuadrant policies, key Secrets, scrape monitors)
# --------------------------------------------------------------------------

# The data key Authorino reads the API key from in each key Secret, and the
# field of the remote secret (external-secrets) that holds the key.
SECRET_API_KEY_FIELD = "api_key"

# Metric label -> CEL the TelemetryPolicy evaluates for it. The identity
# fields are published by the AuthPolicy; the model is read from the OpenAI
# style response body, so it only resolves where a body is seen: Limitador
# carries it on ``authorized_hits`` (token counting), not on
# ``authorized_calls`` or ``limited_calls``.
TELEMETRY_LABEL_EXPRESSIONS = {
    LABEL_USER: f"auth.identity.{IDENTITY_USER}",
    LABEL_TEAM: f"auth.identity.{IDENTITY_TEAM}",
    LABEL_TIER: f"auth.identity.{IDENTITY_TIER}",
    LABEL_COST_CENTER: f"auth.identity.{IDENTITY_COST_CENTER}",
    LABEL_MODEL: 'responseBodyJSON("/model")',
}
# Identity labels the TelemetryPolicy cannot put on Limitador metrics at all
# (every one of IDENTITY_LABELS is available; ``model`` with the caveat above).
TELEMETRY_UNAVAILABLE_LABELS: tuple[str, ...] = ()

# The legacy path: the chargeback demo's custom Limitador image. It labels
# ``authorized_calls`` and ``limited_calls`` with ``user`` (and a ``group``
# read from a descriptor no Kuadrant policy sends, so never relied on). Its
# ``latest`` tag moves: plans name a pinned image, this is only the fallback.
LEGACY_LIMITADOR_IMAGE = "ghcr.io/nerdalert/limitador:latest"
LEGACY_LIMITADOR_METRIC = "authorized_calls"
LEGACY_LIMITADOR_USER_LABEL = "user"
# The Limitador CR the Kuadrant operator creates in its namespace.
LIMITADOR_CR_NAME = "limitador"
# kube-state-metrics exports each Secret's allowed annotations as labels of
# ``kube_secret_annotations{namespace, secret}``: ``annotation_`` + the name
# with every character outside [a-zA-Z0-9_] replaced by ``_`` (and
# camelCase snake-cased), once ``--metric-annotations-allowlist`` lists them.
KSM_SECRET_ANNOTATIONS = "kube_secret_annotations"
KSM_LABEL_NAMESPACE = "namespace"
KSM_ANNOTATIONS_FLAG = "--metric-annotations-allowlist"
KSM_SECRET_ANNOTATION_LABELS = {
    ANNOTATION_USER_ID: "annotation_secret_kuadrant_io_user_id",
    ANNOTATION_TEAM: "annotation_costplan_dev_team",
    ANNOTATION_TIER: "annotation_costplan_dev_tier",
    ANNOTATION_COST_CENTER: "annotation_costplan_dev_cost_center",
}
# Free-text explanation on objects whose purpose is not obvious from the kind.
ANNOTATION_NOTE = "costplan.dev/note"

# Scraping: the Service limitador-operator creates carries ``app: limitador``
# and serves /metrics on its port named ``http`` (8080).
LIMITADOR_SERVICE_LABELS = {"app": "limitador"}
LIMITADOR_METRICS_PORT = "http"
# Model-server pods opt into scraping with this label (value = the model's
# ``server``); vLLM serves /metrics on its API port, 8000 by default.
LABEL_MODEL_SERVER = "costplan.dev/model-server"
MODEL_SERVER_METRICS_PORT = 8000

# -- Constant series compiled from the plan (group costplan-prices) --------
METRIC_PRICE_PER_REQUEST = "costplan:price_per_request"  # {model, tier}
METRIC_PRICE_PER_TOKEN = "costplan:price_per_token"  # {model, tier, token_type}
METRIC_INCLUDED_TOKENS_PER_REQUEST = "costplan:included_tokens_per_request"  # {model, tier}
METRIC_PRICE_PER_OVERAGE_TOKEN = "costplan:price_per_overage_token"  # {model, tier}
METRIC_VOLUME_BAND_START = "costplan:volume_band_start"  # {model, tier, band, unit, period}
METRIC_VOLUME_BAND_PRICE = "costplan:volume_band_price"  # {model, tier, band, unit, period}
METRIC_VOLUME_BAND_PRICE_STEP = "costplan:volume_band_price_step"  # {model, tier, band, unit, period}
METRIC_GPU_PRICE_PER_HOUR = "costplan:gpu_price_per_hour"  # {gpu_instance, instance_type}
METRIC_MODEL_INFO = "costplan:model_info"  # {model, model_name, source, provider}
METRIC_MODEL_OWNER = "costplan:model_owner"  # {model, team, tier}
METRIC_TEAM_INFO = "costplan:team_info"  # {team, tier, cost_center}
# {user, team, tier, cost_center}: one series per user, read from the key
# Secrets' annotations as kube-state-metrics exports them (recorded in the
# prices group; the only identity series that follows users, and it is data).
METRIC_USER_IDENTITY = "costplan:user_identity"
METRIC_NAMESPACE_TEAM = "costplan:namespace_team"  # {namespace, team, cost_center}
METRIC_BUDGET_AMOUNT = "costplan:budget_amount"  # {team, budget, period}
METRIC_BUDGET_THRESHOLD_AMOUNT = "costplan:budget_threshold_amount"  # {team, budget, period, threshold}
METRIC_TIMEZONE_OFFSET = "costplan:timezone_offset_seconds"  # {}
METRIC_PERIOD_START_LOCAL = "costplan:period_start_local_seconds"  # {period}
METRIC_PERIOD_END_LOCAL = "costplan:period_end_local_seconds"  # {period}
METRIC_PERIOD_START = "costplan:period_start_seconds"  # {period}
METRIC_PERIOD_END = "costplan:period_end_seconds"  # {period}
# The same calendar for the last second of the clock hour that closed last
# (group costplan-hourly): the period its hourly money belongs to.
METRIC_BILLING_TIMEZONE_OFFSET = "costplan:billing_timezone_offset_seconds"  # {}
METRIC_BILLING_PERIOD_START_LOCAL = "costplan:billing_period_start_local_seconds"  # {period}
METRIC_BILLING_PERIOD_END_LOCAL = "costplan:billing_period_end_local_seconds"  # {period}
METRIC_BILLING_PERIOD_START = "costplan:billing_period_start_seconds"  # {period}
METRIC_BILLING_PERIOD_END = "costplan:billing_period_end_seconds"  # {period}

# -- Normalised usage (group costplan-usage) -------------------------------
METRIC_USAGE_REQUESTS_RATE = "costplan:usage_requests:rate5m"  # {source, model, model_name, user, team, tier}
METRIC_USAGE_REQUESTS_HOURLY = "costplan:usage_requests:increase1h"
METRIC_USAGE_TOKENS_RATE = "costplan:usage_tokens:rate5m"  # ... + token_type
METRIC_USAGE_TOKENS_HOURLY = "costplan:usage_tokens:increase1h"
METRIC_USAGE_LIMITED_RATE = "costplan:usage_limited_requests:rate5m"  # {source, user, team, tier}
# A fleet cluster's own hourly usage (its Prometheus, label cluster); the global
# engine reads it one hour later as costplan:usage_*:increase1h (see
# generators/prometheus/fleet.py).
METRIC_CLUSTER_USAGE_REQUESTS_HOURLY = "costplan:cluster_usage_requests:increase1h"
METRIC_CLUSTER_USAGE_TOKENS_HOURLY = "costplan:cluster_usage_tokens:increase1h"
METRIC_GPU_REQUESTED = "costplan:gpu_requested"  # {namespace, node}
METRIC_GPU_ALLOCATABLE = "costplan:gpu_allocatable"  # {node}
METRIC_GPU_NODE_PRICE = "costplan:gpu_node_price_per_hour"  # {node, instance_type, gpu_instance}
METRIC_GPU_COST_RATE = "costplan:gpu_cost:per_second"  # {namespace, gpu_instance, team, cost_center}
METRIC_GPU_IDLE_COST_RATE = "costplan:gpu_idle_cost:per_second"  # {node, instance_type, gpu_instance}

# -- Period-to-date volumes for non-linear prices (group costplan-hourly) --
METRIC_USAGE_REQUESTS_PTD = "costplan:usage_requests:period_to_date"  # {user, team, tier, model, period}
METRIC_USAGE_TOKENS_PTD = "costplan:usage_tokens:period_to_date"  # {user, team, tier, model, period}
METRIC_OVERAGE_TOKENS_PTD = "costplan:overage_tokens:period_to_date"  # {user, team, tier, model, period}
METRIC_VOLUME_PTD = "costplan:volume:period_to_date"  # {team, tier, model, unit, period}
METRIC_VOLUME_MARGINAL_PRICE = "costplan:volume_marginal_price"  # {team, tier, model, unit, period}
METRIC_CHARGE_PTD = "costplan:charge:period_to_date"  # {charge, user, team, tier, model, period}
# The same money without the last closed hour: its difference is that hour's money.
METRIC_CHARGE_PTD_PREVIOUS = "costplan:charge:period_to_previous_hour"  # {charge, ..., period}
METRIC_VOLUME_HOURLY = "costplan:volume:increase1h"  # {team, tier, model, unit}

# -- Money (group costplan-spend); money per second or per window ---------
METRIC_SPEND_RATE = "costplan:spend:rate5m"  # {charge, user, team, tier, model, cost_center, token_type}
METRIC_SPEND_HOURLY = "costplan:spend:increase1h"
ROLLUPS = {  # roll-up name -> labels kept
    "user": ("user", "team", "tier", "cost_center"),
    "team": ("team", "cost_center"),
    "tier": ("tier",),
    "model": ("model",),
    "cost_center": ("cost_center",),
}
WINDOW_RATE = "rate5m"  # money per second, 5m rate
WINDOW_HOUR = "increase1h"  # money in the clock hour that closed last
WINDOW_DAY = "increase1d"  # money in the last 24 closed clock hours


def spend_rollup(by: str, window: str) -> str:
    """``costplan:spend_by_<by>:<window>``, e.g. ``costplan:spend_by_team:increase1h``."""
    return f"{METRIC_PREFIX}spend_by_{by}:{window}"


METRIC_GPU_COST_BY_TEAM_HOURLY = "costplan:gpu_cost_by_team:increase1h"  # {namespace, team, cost_center, gpu_instance}
METRIC_GPU_IDLE_COST_HOURLY = "costplan:gpu_idle_cost:increase1h"  # {node, instance_type, gpu_instance}
METRIC_COST_PER_REQUEST = "costplan:cost_per_request_by_model:rate5m"  # {model}
METRIC_COST_PER_REQUEST_P95 = "costplan:cost_per_request_by_model:p95_1h"  # {model}
METRIC_COST_PER_MILLION_TOKENS = "costplan:cost_per_million_tokens_by_model:rate5m"  # {model}
METRIC_RATE_LIMITED_RATIO = "costplan:rate_limited_ratio:rate5m"  # {source, team, tier}

# -- Budgets (group costplan-hourly) -------------------------------------
METRIC_SPEND_PTD_BY_TEAM = "costplan:spend_by_team:period_to_date"  # {team, cost_center, period}
METRIC_SPEND_PTD = "costplan:spend:period_to_date"  # {period}
METRIC_BUDGET_SPEND = "costplan:budget_spend"  # {team, budget, period}
METRIC_BUDGET_UTILIZATION = "costplan:budget_utilization_ratio"  # {team, budget, period}
METRIC_BUDGET_FORECAST = "costplan:budget_forecast"  # {team, budget, period}

# -- Label values ----------------------------------------------------------
LABEL_CHARGE = "charge"
LABEL_UNIT = "unit"
LABEL_BAND = "band"
LABEL_THRESHOLD = "threshold"
LABEL_MODEL_NAME = "model_name"
LABEL_PROVIDER = "provider"
LABEL_NODE = "node"
LABEL_INSTANCE_TYPE = "instance_type"
LABEL_SEVERITY = "severity"
CHARGE_REQUEST = "request"
CHARGE_TOKEN = "token"
CHARGE_OVERAGE = "overage"
CHARGE_VOLUME = "volume"
CHARGE_GPU = "gpu"
# A team's share of idle GPU cost (gpuIdleCost.share byUsage or team).
CHARGE_GPU_IDLE = "gpu_idle"
TOKEN_TYPES = ("input", "cached_input", "cache_creation_input", "output", "reasoning")  # disjoint
TOKEN_TYPE_TOTAL = "total"  # sources that count only total tokens
PERIODS = ("day", "week", "month")


def rolling_period(window: str) -> str:
    """``period`` label value of a rolling-window budget: ``rolling_7d``."""
    return f"rolling_{window}"


# -- Rule groups and alerts ------------------------------------------------
GROUP_PRICES = "costplan-prices"
GROUP_USAGE = "costplan-usage"
GROUP_SPEND = "costplan-spend"
GROUP_HOURLY = "costplan-hourly"
GROUP_ALERTS = "costplan-alerts"
ALERT_BUDGET_THRESHOLD = "CostplanBudgetThresholdReached"
ALERT_BUDGET_FORECAST = "CostplanBudgetForecastExceeded"
ALERT_SPEND_ANOMALY = "CostplanSpendAnomaly"
ALERT_RATE_LIMITED = "CostplanRateLimitPressure"
ALERT_COST_PER_REQUEST = "CostplanCostPerRequestHigh"
ALERT_SOURCE_ABSENT = "CostplanUsageSourceAbsent"


# -- What `costplan report` and the Grafana dashboard read ------------------
# Money and usage over a period are sums of the hourly series over an hourly
# subquery, the same way the budget rules sum them (costplan/spend/periods.py).
OUTPUT_STEP = "1h"
OUTPUT_METRICS = (
    METRIC_SPEND_HOURLY,
    METRIC_USAGE_REQUESTS_HOURLY,
    METRIC_USAGE_TOKENS_HOURLY,
    METRIC_COST_PER_REQUEST,
    METRIC_COST_PER_MILLION_TOKENS,
    METRIC_GPU_COST_BY_TEAM_HOURLY,
    METRIC_GPU_IDLE_COST_HOURLY,
    METRIC_BUDGET_UTILIZATION,
    METRIC_RATE_LIMITED_RATIO,
)
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_CACHED = "cached_input"
TOKEN_TYPE_CACHE_CREATION = "cache_creation_input"  # prompt tokens written to a provider cache
TOKEN_TYPE_OUTPUT = "output"
TOKEN_TYPE_REASONING = "reasoning"
# What the cost engine exports ($ per GPU-hour, per node); not costplan's.
ENGINE_METRIC_NODE_GPU_HOURLY_COST = "node_gpu_hourly_cost"


# -- Budget enforcement: what `costplan guard` writes and the AuthPolicy reads --
# On each key Secret the guard owns (JSON merge patches as field manager
# GUARD_FIELD_MANAGER): the state label (absent = normal), the tier a
# throttled key is moved to, and the JSON body a blocked key is refused with.
LABEL_BUDGET_STATE = "costplan.dev/budget-state"
BUDGET_STATE_NORMAL = "normal"
BUDGET_STATE_THROTTLED = "throttled"
BUDGET_STATE_BLOCKED = "blocked"
ANNOTATION_BUDGET_TIER = "costplan.dev/budget-tier"
ANNOTATION_BUDGET_DETAIL = "costplan.dev/budget-detail"
# RFC 3339 time until which a key is released whatever its spend
# (`costplan budget override`, written as OVERRIDE_FIELD_MANAGER).
ANNOTATION_BUDGET_OVERRIDE = "costplan.dev/budget-override"
GUARD_FIELD_MANAGER = "costplan-guard"
OVERRIDE_FIELD_MANAGER = "costplan-budget-override"
BUDGET_BLOCKED_STATUS = 429  # Too Many Requests: the client may retry after the reset
# The guard's Deployment, Service, ServiceAccount and Role share this name.
GUARD_NAME = "costplan-guard"
# Where the report jobs and the guard mount the global engine's bearer token
# (``metrics.bearerTokenSecret``); only this path, never the token, is written.
METRICS_TOKEN_DIR = "/var/run/secrets/costplan.dev/metrics"
METRICS_TOKEN_FILE = "token"
METRICS_TOKEN_VOLUME = "metrics-token"
GUARD_PORT = 8080
GUARD_WEBHOOK_PATH = "/webhook"
GUARD_LIVENESS_PATH = "/healthz"
GUARD_READINESS_PATH = "/readyz"
GUARD_METRICS_PATH = "/metrics"
GUARD_METRICS_PREFIX = "costplan_guard_"  # reconciles_total, transitions_total, keys, prometheus_up, ...
ALERT_NAME_LABEL = "alertname"
