"""The plan model: frozen dataclasses that every generator reads.

The YAML the user writes (validated against ``schemas/costplan.schema.json``)
is not what generators consume. ``costplan.plan.document`` is the one place
that maps the merged, validated document onto these types (and back), so generators never see raw
dicts, never guess defaults and never parse money: every price and budget is a
``decimal.Decimal`` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

API_VERSION = "costplan.dev/v1alpha1"
KIND = "CostPlan"


# --------------------------------------------------------------------------
# Pricing: a closed, tagged union chosen by ``type:`` in the plan.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PerRequest:
    """A flat price for every request (``price`` per call)."""

    price: Decimal
    type: str = "perRequest"


@dataclass(frozen=True)
class PerMillionTokens:
    """Prices per one million tokens, split by token type.

    ``cached_input``, ``cache_creation_input`` and ``reasoning`` are ``None``
    when the plan does not price them separately; cached and cache-writing
    tokens are then charged as input and reasoning tokens as output.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    cache_creation_input: Decimal | None = None
    type: str = "perMillionTokens"


@dataclass(frozen=True)
class PerRequestWithIncludedTokens:
    """A per-request price that includes an allowance of tokens.

    The allowance is pooled per user and budget period: a user who made N
    requests may use ``N * included_tokens_per_request`` tokens before the
    overage price applies.
    """

    price_per_request: Decimal
    included_tokens_per_request: int
    overage_per_million_tokens: Decimal
    type: str = "perRequestWithIncludedTokens"


@dataclass(frozen=True)
class VolumeTier:
    """One band of a tiered price: applies from ``start`` units on."""

    start: int
    price: Decimal


@dataclass(frozen=True)
class TieredVolume:
    """Marginal prices over period-to-date volume.

    ``unit`` is ``tokens`` (prices per million tokens) or ``requests``
    (prices per request). ``tiers`` is sorted by ``start`` and the first
    tier starts at 0.
    """

    unit: str
    tiers: tuple[VolumeTier, ...]
    period: str = "month"
    type: str = "tieredVolume"


@dataclass(frozen=True)
class GpuHourly:
    """The model costs what its GPUs cost: hourly rate x GPU-hours requested."""

    type: str = "gpuHourly"


Pricing = PerRequest | PerMillionTokens | PerRequestWithIncludedTokens | TieredVolume | GpuHourly


# --------------------------------------------------------------------------
# Integrations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRef:
    """The Gateway API object the Kuadrant policies attach to."""

    kind: str
    name: str
    group: str = "gateway.networking.k8s.io"
    section_name: str | None = None


@dataclass(frozen=True)
class ApiKeyAuth:
    """How clients present API keys and where the key Secrets live."""

    header: str = "Authorization"
    prefix: str = "APIKEY"
    secret_namespace: str = "kuadrant-system"


@dataclass(frozen=True)
class Limitador:
    """Limitador placement and which metrics path tags usage with identity.

    ``metrics`` is ``telemetryPolicy`` (upstream TelemetryPolicy labels) or
    ``legacyImage`` (the custom image, ``image``, whose counters carry
    ``user`` only).
    """

    namespace: str = "kuadrant-system"
    metrics: str = "telemetryPolicy"
    image: str | None = None


@dataclass(frozen=True)
class Gateway:
    type: str
    namespace: str
    target_ref: TargetRef
    api_key: ApiKeyAuth
    limitador: Limitador


@dataclass(frozen=True)
class Prometheus:
    url: str
    namespace: str
    rule_labels: Mapping[str, str]
    monitor_labels: Mapping[str, str]


@dataclass(frozen=True)
class CostEngine:
    """OpenCost or Kubecost (or none): where GPU rates must reach."""

    type: str
    namespace: str
    chart_version: str | None
    image_tag: str | None
    # Existing Secret with key ``openai_config.json``: enables OpenCost's
    # ``openai`` custom-cost plugin (never configured from the plan itself).
    openai_plugin_secret: str | None = None
    plugin_version: str = "v0.0.15"
    # Hourly prices of what the plan does not price per GPU (per vCPU, per
    # GiB of RAM, per GB of storage); None: OpenCost's own defaults.
    cpu_hourly: Decimal | None = None
    ram_hourly: Decimal | None = None
    storage_hourly: Decimal | None = None


@dataclass(frozen=True)
class Grafana:
    """``sidecar``: ConfigMaps with ``sidecar_label``; ``operator``: GrafanaDashboard CRs."""

    mode: str
    namespace: str
    folder: str
    sidecar_label: Mapping[str, str]
    instance_selector: Mapping[str, str]


@dataclass(frozen=True)
class ArgoCD:
    namespace: str
    project: str
    repo_url: str
    target_revision: str
    path: str


@dataclass(frozen=True)
class SecretStoreRef:
    kind: str
    name: str


@dataclass(frozen=True)
class Secrets:
    """``none``: nothing secret is emitted; ``external-secrets``: ExternalSecrets per user."""

    backend: str
    store: SecretStoreRef | None
    refresh_interval: str


@dataclass(frozen=True)
class Integrations:
    gateway: Gateway
    prometheus: Prometheus
    cost_engine: CostEngine
    grafana: Grafana
    argocd: ArgoCD | None
    secrets: Secrets


# --------------------------------------------------------------------------
# Usage, GPUs, models
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageSource:
    """Where usage is measured.

    ``type`` is one of ``kuadrant-limitador``, ``limitador-legacy``, ``vllm``,
    ``llm-d``, ``envoy-ai-gateway``, ``kong-ai``, ``litellm``, ``custom``.
    ``metrics`` and ``labels`` are only set for ``custom`` sources: metric
    role (``requests``, ``inputTokens``, ``outputTokens``, ``cachedTokens``,
    ``reasoningTokens``) to metric name, and identity role (``model``,
    ``user``, ``team``) to the label that carries it.
    """

    name: str
    type: str
    metrics: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Label -> values of responses not billed (429s...): left out of requests.
    non_billable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuInstance:
    name: str
    instance_type: str
    gpu_model: str
    gpus_per_node: int
    hourly_rate: Decimal

    @property
    def hourly_rate_per_gpu(self) -> Decimal:
        """Price of one GPU for one hour; node rate split evenly over its GPUs."""
        return self.hourly_rate / Decimal(self.gpus_per_node)


@dataclass(frozen=True)
class Model:
    """A model users call. ``name`` is costplan's id (a DNS label);
    ``model_name`` is the value the usage metrics carry (e.g. vLLM's
    ``--served-model-name``)."""

    name: str
    model_name: str
    provider: str
    usage_source: str
    pricing: Pricing
    server: str | None = None
    namespace: str | None = None
    gpu_instance: str | None = None


# --------------------------------------------------------------------------
# Tiers, teams, budgets
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """``limit`` per ``window`` (Kuadrant window syntax, e.g. ``10s``, ``24h``)."""

    limit: int
    window: str


@dataclass(frozen=True)
class Quotas:
    """Request quotas per tier, shared by its users; Limitador windows of 24h, 168h and 730h (rolling)."""

    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None

    def is_empty(self) -> bool:
        return self.daily is None and self.weekly is None and self.monthly is None


@dataclass(frozen=True)
class PriceOverride:
    model: str
    pricing: Pricing


@dataclass(frozen=True)
class Tier:
    """A service level. Empty ``request_limits``/``token_limits`` = unlimited."""

    name: str
    description: str
    request_limits: tuple[Rate, ...]
    token_limits: tuple[Rate, ...]
    quotas: Quotas
    price_multiplier: Decimal
    price_overrides: tuple[PriceOverride, ...]


@dataclass(frozen=True)
class ApiKeyRef:
    """Where a user's key lives: never the key itself.

    ``secret_name`` is the Kubernetes Secret Authorino reads;
    ``remote_key`` is the path in the external secret store (used when
    the plan's secrets backend is ``external-secrets``).
    """

    secret_name: str
    remote_key: str | None = None


@dataclass(frozen=True)
class User:
    id: str
    display_name: str | None
    api_key: ApiKeyRef
    tier: str | None = None  # None: the team's tier


@dataclass(frozen=True)
class Budget:
    """A spending limit.

    ``period`` is ``day``, ``week``, ``month`` (calendar periods in the
    plan's timezone) or ``rolling`` with ``window`` (e.g. ``7d``).
    ``thresholds`` are ascending percentages of ``amount`` that alert.
    ``team`` is ``None`` for a global budget.
    """

    name: str
    amount: Decimal
    period: str
    thresholds: tuple[Decimal, ...]
    window: str | None = None
    team: str | None = None
    actions: tuple[BudgetAction, ...] = ()


@dataclass(frozen=True)
class Team:
    name: str
    cost_center: str
    namespaces: tuple[str, ...]
    labels: Mapping[str, str]
    tier: str
    users: tuple[User, ...]
    budgets: tuple[Budget, ...]
    contacts: tuple[Contact, ...] = ()


# Who pays for idle GPUs (``gpuIdleCost.share``).
IDLE_SEPARATE = "separate"
IDLE_BY_USAGE = "byUsage"
IDLE_TEAM = "team"


@dataclass(frozen=True)
class GpuIdleCost:
    """Who pays for GPUs nodes have and no running pod requests.

    ``separate`` keeps idle cost on its own, billed to nobody (what OpenCost
    calls an unshared idle); ``byUsage`` shares each hour's idle cost of an
    instance type among the teams that used that type in the hour, in
    proportion to their GPU cost of it; ``team`` charges all of it to one team.
    """

    share: str = IDLE_SEPARATE
    team: str | None = None


@dataclass(frozen=True)
class Install:
    """How ``costplan apply`` installs the plan: whether it creates the namespaces it targets."""

    create_namespaces: bool = True


@dataclass(frozen=True)
class Alerts:
    """Alert knobs; defaults apply when the plan does not set them."""

    rate_limited_ratio: Decimal = Decimal("0.1")
    anomaly_factor: Decimal = Decimal("3")
    cost_per_request_p95: Decimal | None = None
    source_absent_for: str = "15m"
    # The alerts' ``for`` durations (Prometheus durations).
    budget_threshold_for: str = "0m"
    budget_forecast_for: str = "30m"
    spend_anomaly_for: str = "15m"
    rate_limit_pressure_for: str = "15m"
    cost_per_request_for: str = "15m"


@dataclass(frozen=True)
class SecretKey:
    """A key of an existing Secret (the value itself never enters git)."""

    name: str
    key: str


@dataclass(frozen=True)
class JobResources:
    """What the report job's container asks of its node (Kubernetes quantities).

    The report holds one row per identity of the period (team, user, tier,
    model, cluster) while it sums the days, so its memory follows the
    number of users (the README's report benchmark gives measured peaks).
    ``limit_cpu`` is unset by default: a CPU limit only slows the job.
    """

    request_cpu: str = "50m"
    request_memory: str = "128Mi"
    limit_cpu: str | None = None
    limit_memory: str = "512Mi"

    def as_kubernetes(self) -> dict[str, dict[str, str]]:
        """The container's ``resources``, as the plan writes them and the pod spec takes them."""
        limits = {"memory": self.limit_memory}
        if self.limit_cpu is not None:
            limits["cpu"] = self.limit_cpu
        return {"requests": {"cpu": self.request_cpu, "memory": self.request_memory}, "limits": limits}


@dataclass(frozen=True)
class Reports:
    """The scheduled chargeback report and the GPU price check.

    ``schedule`` is a cron expression in the plan's timezone; the default
    runs on the 1st at 06:00 and reports the month that just ended.
    Reports land on the PVC ``pvc_claim`` (created with ``pvc_size`` unless
    ``create_pvc`` is false) and are also posted to the URL held in
    ``webhook`` when set. ``namespace`` defaults to Prometheus' namespace.
    ``resources`` sizes the report job (not the GPU price check, which
    holds a handful of prices).
    """

    enabled: bool = True
    schedule: str = "0 6 1 * *"
    namespace: str | None = None
    image: str = "ghcr.io/costplan/costplan:0.1.0"
    pvc_claim: str = "costplan-reports"
    pvc_size: str = "1Gi"
    create_pvc: bool = True
    webhook: SecretKey | None = None
    gpu_price_check_schedule: str = "17 * * * *"
    resources: JobResources = field(default_factory=JobResources)


# --------------------------------------------------------------------------
# Budgets that act: actions, contacts, notification routing, the guard
# --------------------------------------------------------------------------

ACTION_NOTIFY = "notify"
ACTION_THROTTLE = "throttle"
ACTION_BLOCK = "block"
ENFORCING_ACTIONS = (ACTION_THROTTLE, ACTION_BLOCK)


@dataclass(frozen=True)
class BudgetAction:
    """What happens once spend reaches ``at`` percent of the budget.

    ``notify`` tells the team's contacts (the threshold alert routed to
    them), ``throttle`` moves the team's keys to ``tier``, ``block`` makes the
    gateway refuse them. Enforcement lasts until the period ends (calendar
    periods in the plan's timezone) or an override lifts it.
    """

    at: Decimal
    action: str
    tier: str | None = None


@dataclass(frozen=True)
class Contact:
    """Where a team's alerts go. Every URL or key is a Secret reference.

    ``type`` is ``email`` (``to`` is the address), ``slack`` (``secret``
    holds the incoming-webhook URL, ``channel`` optional), ``pagerduty``
    (``secret`` holds the Events API v2 routing key) or ``webhook``
    (``secret`` holds the URL).
    """

    type: str
    to: str | None = None
    channel: str | None = None
    secret: SecretKey | None = None


@dataclass(frozen=True)
class EmailServer:
    """The SMTP relay email contacts are sent through."""

    smarthost: str
    sender: str
    auth_username: str | None = None
    auth_password: SecretKey | None = None


@dataclass(frozen=True)
class Notifications:
    """How Alertmanager groups and repeats the teams' alerts.

    ``namespace`` is where the AlertmanagerConfig objects and the contacts'
    Secrets live; ``None`` means Prometheus' namespace.
    """

    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    namespace: str | None = None
    email: EmailServer | None = None


@dataclass(frozen=True)
class Guard:
    """``costplan guard``: the controller that enforces budget actions.

    ``period`` is the reconcile interval; ``fail_mode`` says what keys get
    once Prometheus has been unreachable for ``fail_after``: ``open`` lifts
    every throttle and block (spend goes unchecked), ``closed`` blocks every
    key (nothing is spent unchecked). Before that, keys keep their state.
    ``webhook_url`` is where Alertmanager posts budget alerts; ``None``
    means the guard's Service.
    """

    period: str = "60s"
    fail_mode: str = "open"
    fail_after: str = "5m"
    namespace: str | None = None
    webhook_url: str | None = None


# -- fleets ------------------------------------------------------------------

# Which part of a fleet a plan variant compiles (``plan.fleet``).
SCOPE_SINGLE = "single"  # no clusters[]: one cluster, one Prometheus, everything local
SCOPE_CLUSTER = "cluster"  # one cluster of the fleet: gateway, keys, usage rules
SCOPE_GLOBAL = "global"  # the global engine: money, budgets, alerts, dashboards, reports

ENGINES = ("prometheus", "thanos", "mimir", "victoriametrics")


@dataclass(frozen=True)
class Cluster:
    """One cluster of the fleet (``clusters[]``).

    ``models``/``teams`` are the subsets served there (``None``: all);
    ``destination_server``/``destination_name`` the Argo CD destination
    (one of them; the name defaults to the cluster's); ``gateway_*`` where this
    cluster's Gateway differs from ``integrations.gateway``.
    """

    name: str
    region: str | None = None
    environment: str | None = None
    context: str | None = None
    destination_server: str | None = None
    destination_name: str | None = None
    gateway_namespace: str | None = None
    gateway_name: str | None = None
    models: tuple[str, ...] | None = None
    teams: tuple[str, ...] | None = None

    @property
    def kube_context(self) -> str:
        return self.context or self.name


@dataclass(frozen=True)
class Metrics:
    """The global engine (``metrics``): where every cluster's usage lands and money is evaluated."""

    engine: str
    query_url: str
    tenant: str | None = None
    bearer_token: SecretKey | None = None
    namespace: str | None = None
    rule_labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Plan:
    """A whole, validated plan for one environment."""

    name: str
    environment: str
    currency: str
    timezone: str
    cluster: str
    integrations: Integrations
    usage_sources: tuple[UsageSource, ...]
    gpu_instances: tuple[GpuInstance, ...]
    models: tuple[Model, ...]
    tiers: tuple[Tier, ...]
    teams: tuple[Team, ...]
    budgets: tuple[Budget, ...]
    alerts: Alerts
    reports: Reports = field(default_factory=Reports)
    notifications: Notifications = field(default_factory=Notifications)
    guard: Guard = field(default_factory=Guard)
    install: Install = field(default_factory=Install)
    gpu_idle_cost: GpuIdleCost = field(default_factory=GpuIdleCost)
    # The fleet, when the plan has ``clusters[]`` (for this environment) and ``metrics``.
    clusters: tuple[Cluster, ...] = ()
    metrics: Metrics | None = None
    # Which part this plan compiles: the whole single-cluster output, one
    # cluster of the fleet (``cluster`` is its name) or the global part.
    scope: str = SCOPE_SINGLE

    # -- lookups generators need often ------------------------------------

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)

    def team(self, name: str) -> Team:
        return next(t for t in self.teams if t.name == name)

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def gpu_instance(self, name: str) -> GpuInstance:
        return next(g for g in self.gpu_instances if g.name == name)

    def usage_source(self, name: str) -> UsageSource:
        return next(s for s in self.usage_sources if s.name == name)

    def users(self) -> tuple[tuple[Team, User], ...]:
        """Every user with their team, in plan order."""
        return tuple((team, user) for team in self.teams for user in team.users)

    @property
    def is_fleet(self) -> bool:
        return bool(self.clusters)

    @property
    def query_url(self) -> str:
        """Where readers (report, guard, doctor) query: the global engine of a fleet, else the Prometheus."""
        if self.clusters and self.metrics is not None:
            return self.metrics.query_url
        return self.integrations.prometheus.url

    @property
    def query_tenant(self) -> str | None:
        """The tenant readers send (``X-Scope-OrgID``), if the global engine has one."""
        return self.metrics.tenant if self.clusters and self.metrics is not None else None

    @property
    def query_bearer_token(self) -> SecretKey | None:
        """The Secret key holding the bearer token readers send, if the global engine needs one."""
        return self.metrics.bearer_token if self.clusters and self.metrics is not None else None

    def all_budgets(self) -> tuple[Budget, ...]:
        """Team budgets (``team`` set) followed by global budgets."""
        team_budgets = tuple(b for t in self.teams for b in t.budgets)
        return team_budgets + self.budgets
