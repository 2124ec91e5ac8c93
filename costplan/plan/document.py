"""The plan ⇄ document mappings: the user's YAML shape and the model, both ways.

``from_document`` maps the merged, validated document onto the model's
types (money as ``Decimal``, defaults filled in once). ``plan_document``
writes a plan back as a costplan.yaml document; the report CronJobs read that
copy, so the teams keep only what the jobs need (no users, keys,
namespaces, labels or budgets). A round-trip test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from costplan.core.money import to_decimal
from costplan.core.quantity import quantity_value
from costplan.plan.model import (
    IDLE_SEPARATE,
    Alerts,
    ApiKeyAuth,
    ApiKeyRef,
    ArgoCD,
    Budget,
    BudgetAction,
    Cluster,
    Contact,
    CostEngine,
    EmailServer,
    Gateway,
    GpuHourly,
    GpuIdleCost,
    GpuInstance,
    Grafana,
    Guard,
    Install,
    Integrations,
    JobResources,
    Limitador,
    Metrics,
    Model,
    Notifications,
    PerMillionTokens,
    PerRequest,
    PerRequestWithIncludedTokens,
    Plan,
    PriceOverride,
    Pricing,
    Prometheus,
    Quotas,
    Rate,
    Reports,
    SecretKey,
    Secrets,
    SecretStoreRef,
    TargetRef,
    Team,
    Tier,
    TieredVolume,
    UsageSource,
    User,
    VolumeTier,
)


def _pricing(doc: Mapping[str, Any]) -> Pricing:
    kind = doc["type"]
    if kind == "perRequest":
        return PerRequest(price=to_decimal(doc["price"]))
    if kind == "perMillionTokens":
        return PerMillionTokens(
            input=to_decimal(doc["input"]),
            output=to_decimal(doc["output"]),
            cached_input=_opt_decimal(doc.get("cachedInput")),
            reasoning=_opt_decimal(doc.get("reasoning")),
            cache_creation_input=_opt_decimal(doc.get("cacheCreationInput")),
        )
    if kind == "perRequestWithIncludedTokens":
        return PerRequestWithIncludedTokens(
            price_per_request=to_decimal(doc["pricePerRequest"]),
            included_tokens_per_request=int(doc["includedTokensPerRequest"]),
            overage_per_million_tokens=to_decimal(doc["overagePerMillionTokens"]),
        )
    if kind == "tieredVolume":
        unit = doc["unit"]
        price_key = "pricePerMillion" if unit == "tokens" else "pricePerRequest"
        tiers = tuple(
            VolumeTier(start=int(t["from"]), price=to_decimal(t[price_key])) for t in doc["tiers"]
        )
        return TieredVolume(unit=unit, tiers=tiers, period=doc.get("period", "month"))
    if kind == "gpuHourly":
        return GpuHourly()
    raise ValueError(f"unknown pricing type {kind!r}")  # unreachable after schema validation


def _opt_decimal(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _rates(items: Any) -> tuple[Rate, ...]:
    return tuple(Rate(limit=int(r["limit"]), window=str(r["window"])) for r in items or ())


def _budget(doc: Mapping[str, Any], team: str | None) -> Budget:
    actions = _actions(doc)
    # Every action's percentage is an alert threshold too, so the team hears
    # of the throttle or block the moment it starts.
    thresholds = {to_decimal(t) for t in doc.get("thresholds", [100])} | {a.at for a in actions}
    return Budget(
        name=doc["name"],
        amount=to_decimal(doc["amount"]),
        period=doc["period"],
        thresholds=tuple(sorted(thresholds)),
        window=doc.get("window"),
        team=team,
        actions=actions,
    )


def _str_map(doc: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in sorted((doc or {}).items())}


def _integrations(doc: Mapping[str, Any]) -> Integrations:
    gw = doc["gateway"]
    target = gw["targetRef"]
    api_key = gw.get("apiKey", {})
    limitador = gw.get("limitador", {})
    prom = doc["prometheus"]
    engine = doc.get("costEngine", {"type": "none"})
    grafana = doc.get("grafana", {})
    argo = doc.get("argocd")
    secrets = doc.get("secrets", {"backend": "none"})
    store = secrets.get("store")
    return Integrations(
        gateway=Gateway(
            type=gw.get("type", "kuadrant"),
            namespace=gw["namespace"],
            target_ref=TargetRef(
                kind=target["kind"],
                name=target["name"],
                group=target.get("group", "gateway.networking.k8s.io"),
                section_name=target.get("sectionName"),
            ),
            api_key=ApiKeyAuth(
                header=api_key.get("header", "Authorization"),
                prefix=api_key.get("prefix", "APIKEY"),
                secret_namespace=api_key.get("secretNamespace", "kuadrant-system"),
            ),
            limitador=Limitador(
                namespace=limitador.get("namespace", "kuadrant-system"),
                metrics=limitador.get("metrics", "telemetryPolicy"),
                image=limitador.get("image"),
            ),
        ),
        prometheus=Prometheus(
            url=prom["url"],
            namespace=prom["namespace"],
            rule_labels=_str_map(prom.get("ruleLabels")),
            monitor_labels=_str_map(prom.get("monitorLabels")),
        ),
        cost_engine=CostEngine(
            type=engine.get("type", "none"),
            namespace=engine.get("namespace", engine.get("type", "none")),
            chart_version=_opt_str(engine.get("chartVersion")),
            image_tag=_opt_str(engine.get("imageTag")),
            openai_plugin_secret=engine.get("openaiPlugin", {}).get("existingSecret"),
            plugin_version=engine.get("openaiPlugin", {}).get("version", "v0.0.15"),
            cpu_hourly=_opt_decimal(engine.get("hourlyPrices", {}).get("cpu")),
            ram_hourly=_opt_decimal(engine.get("hourlyPrices", {}).get("ram")),
            storage_hourly=_opt_decimal(engine.get("hourlyPrices", {}).get("storage")),
        ),
        grafana=Grafana(
            mode=grafana.get("mode", "sidecar"),
            namespace=grafana.get("namespace", prom["namespace"]),
            folder=grafana.get("folder", "LLM Costs"),
            sidecar_label=_str_map(grafana.get("sidecarLabel", {"grafana_dashboard": "1"})),
            instance_selector=_str_map(grafana.get("instanceSelector", {"dashboards": "grafana"})),
        ),
        argocd=None
        if argo is None
        else ArgoCD(
            namespace=argo.get("namespace", "argocd"),
            project=argo.get("project", "default"),
            repo_url=argo["repoURL"],
            target_revision=argo.get("targetRevision", "HEAD"),
            path=argo.get("path", "out"),
        ),
        secrets=Secrets(
            backend=secrets.get("backend", "none"),
            store=None if store is None else SecretStoreRef(kind=store["kind"], name=store["name"]),
            refresh_interval=secrets.get("refreshInterval", "1h"),
        ),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _alerts(doc: Mapping[str, Any] | None) -> Alerts:
    doc = doc or {}
    defaults = Alerts()
    return Alerts(
        rate_limited_ratio=to_decimal(doc.get("rateLimitedRatio", defaults.rate_limited_ratio)),
        anomaly_factor=to_decimal(doc.get("anomalyFactor", defaults.anomaly_factor)),
        cost_per_request_p95=_opt_decimal(doc.get("costPerRequestP95")),
        source_absent_for=doc.get("sourceAbsentFor", defaults.source_absent_for),
        budget_threshold_for=doc.get("budgetThresholdFor", defaults.budget_threshold_for),
        budget_forecast_for=doc.get("budgetForecastFor", defaults.budget_forecast_for),
        spend_anomaly_for=doc.get("spendAnomalyFor", defaults.spend_anomaly_for),
        rate_limit_pressure_for=doc.get("rateLimitPressureFor", defaults.rate_limit_pressure_for),
        cost_per_request_for=doc.get("costPerRequestFor", defaults.cost_per_request_for),
    )


def _reports(doc: Mapping[str, Any] | None) -> Reports:
    doc = doc or {}
    defaults = Reports()
    webhook = doc.get("webhook")
    return Reports(
        enabled=bool(doc.get("enabled", defaults.enabled)),
        schedule=doc.get("schedule", defaults.schedule),
        namespace=doc.get("namespace"),
        image=doc.get("image", defaults.image),
        pvc_claim=doc.get("pvc", {}).get("claimName", defaults.pvc_claim),
        pvc_size=doc.get("pvc", {}).get("size", defaults.pvc_size),
        create_pvc=bool(doc.get("pvc", {}).get("create", defaults.create_pvc)),
        webhook=None
        if webhook is None
        else SecretKey(name=webhook["secretName"], key=webhook.get("key", "url")),
        gpu_price_check_schedule=doc.get("gpuPriceCheckSchedule", defaults.gpu_price_check_schedule),
        resources=_job_resources(doc.get("resources")),
    )


def _job_resources(doc: Mapping[str, Any] | None) -> JobResources:
    """The report job's resources; an unset request is the default or the limit, whichever is lower.

    So raising or lowering only a limit never leaves a request above it
    (which the API server refuses).
    """
    doc = doc or {}
    defaults = JobResources()
    requests, limits = doc.get("requests") or {}, doc.get("limits") or {}
    limit_cpu = limits.get("cpu", defaults.limit_cpu)
    limit_memory = limits.get("memory", defaults.limit_memory)
    return JobResources(
        request_cpu=requests.get("cpu", _not_above(defaults.request_cpu, limit_cpu)),
        request_memory=requests.get("memory", _not_above(defaults.request_memory, limit_memory)),
        limit_cpu=limit_cpu,
        limit_memory=limit_memory,
    )


def _not_above(request: str, limit: str | None) -> str:
    wanted, most = quantity_value(request), None if limit is None else quantity_value(limit)
    return limit if limit is not None and wanted is not None and most is not None and most < wanted else request


# -- budgets that act: actions, contacts, notifications, the guard ----------


def _secret_key(doc: Mapping[str, Any] | None, default_key: str = "url") -> SecretKey | None:
    return None if doc is None else SecretKey(name=doc["secretName"], key=doc.get("key", default_key))


def _actions(doc: Mapping[str, Any]) -> tuple[BudgetAction, ...]:
    return tuple(
        BudgetAction(at=to_decimal(a["at"]), action=a["action"], tier=a.get("tier"))
        for a in sorted(doc.get("actions", []), key=lambda a: (to_decimal(a["at"]), a["action"]))
    )


def _contacts(doc: Mapping[str, Any]) -> tuple[Contact, ...]:
    return tuple(
        Contact(type=c["type"], to=c.get("to"), channel=c.get("channel"), secret=_secret_key(c.get("secret")))
        for c in doc.get("contacts", [])
    )


def _notifications(doc: Mapping[str, Any] | None) -> Notifications:
    doc = doc or {}
    defaults = Notifications()
    email = doc.get("email")
    return Notifications(
        group_wait=doc.get("groupWait", defaults.group_wait),
        group_interval=doc.get("groupInterval", defaults.group_interval),
        repeat_interval=doc.get("repeatInterval", defaults.repeat_interval),
        namespace=doc.get("namespace"),
        email=None
        if email is None
        else EmailServer(
            smarthost=email["smarthost"],
            sender=email["from"],
            auth_username=email.get("authUsername"),
            auth_password=_secret_key(email.get("authPassword"), "password"),
        ),
    )


def _guard(doc: Mapping[str, Any] | None) -> Guard:
    doc = doc or {}
    defaults = Guard()
    return Guard(
        period=doc.get("period", defaults.period),
        fail_mode=doc.get("failMode", defaults.fail_mode),
        fail_after=doc.get("failAfter", defaults.fail_after),
        namespace=doc.get("namespace"),
        webhook_url=doc.get("webhookURL"),
    )


def from_document(doc: Mapping[str, Any], environment: str) -> Plan:
    """Map a merged document that passed validation onto the model.

    Defaults live here (and in the schema's descriptions), nowhere else.
    """
    meta = doc["metadata"]
    return Plan(
        name=meta["name"],
        environment=environment,
        currency=meta.get("currency", "USD"),
        timezone=meta.get("timezone", "UTC"),
        cluster=meta.get("cluster", meta["name"]),
        integrations=_integrations(doc["integrations"]),
        usage_sources=tuple(
            UsageSource(
                name=s["name"],
                type=s["type"],
                metrics=_str_map(s.get("metrics")),
                labels=_str_map(s.get("labels")),
                non_billable={
                    str(label): tuple(str(v) for v in values)
                    for label, values in sorted((s.get("nonBillable") or {}).items())
                },
            )
            for s in doc.get("usageSources", [])
        ),
        gpu_instances=tuple(
            GpuInstance(
                name=g["name"],
                instance_type=g["instanceType"],
                gpu_model=g["gpuModel"],
                gpus_per_node=int(g.get("gpusPerNode", 1)),
                hourly_rate=to_decimal(g["hourlyRate"]),
            )
            for g in doc.get("gpuInstances", [])
        ),
        models=tuple(
            Model(
                name=m["name"],
                model_name=m.get("modelName", m["name"]),
                provider=m["provider"],
                usage_source=m["usageSource"],
                pricing=_pricing(m["pricing"]),
                server=m.get("server"),
                namespace=m.get("namespace"),
                gpu_instance=m.get("gpuInstance"),
            )
            for m in doc.get("models", [])
        ),
        tiers=tuple(
            Tier(
                name=t["name"],
                description=t.get("description", ""),
                request_limits=_rates(t.get("limits", {}).get("requests")),
                token_limits=_rates(t.get("limits", {}).get("tokens")),
                quotas=Quotas(**{k: int(v) for k, v in t.get("quotas", {}).items()}),
                price_multiplier=to_decimal(t.get("priceMultiplier", 1)),
                price_overrides=tuple(
                    PriceOverride(model=o["model"], pricing=_pricing(o["pricing"]))
                    for o in t.get("priceOverrides", [])
                ),
            )
            for t in doc.get("tiers", [])
        ),
        teams=tuple(
            Team(
                name=t["name"],
                cost_center=t["costCenter"],
                namespaces=tuple(t.get("namespaces", [])),
                labels=_str_map(t.get("labels")),
                tier=t["tier"],
                users=tuple(
                    User(
                        id=u["id"],
                        display_name=u.get("displayName"),
                        tier=u.get("tier"),
                        api_key=ApiKeyRef(
                            secret_name=u.get("apiKey", {}).get("secretName", f"apikey-{u['id']}"),
                            remote_key=u.get("apiKey", {}).get("remoteKey"),
                        ),
                    )
                    for u in t.get("users", [])
                ),
                budgets=tuple(_budget(b, t["name"]) for b in t.get("budgets", [])),
                contacts=_contacts(t),
            )
            for t in doc.get("teams", [])
        ),
        budgets=tuple(_budget(b, None) for b in doc.get("budgets", [])),
        alerts=_alerts(doc.get("alerts")),
        reports=_reports(doc.get("reports")),
        notifications=_notifications(doc.get("notifications")),
        guard=_guard(doc.get("guard")),
        install=Install(create_namespaces=bool((doc.get("install") or {}).get("createNamespaces", True))),
        gpu_idle_cost=GpuIdleCost(
            share=str((doc.get("gpuIdleCost") or {}).get("share", IDLE_SEPARATE)),
            team=(doc.get("gpuIdleCost") or {}).get("team"),
        ),
        clusters=_clusters(doc.get("clusters"), environment),
        metrics=_metrics(doc.get("metrics")),
    )


def _clusters(items: Any, environment: str) -> tuple[Cluster, ...]:
    """The clusters this environment's build covers: those of this environment or of none named."""
    clusters = []
    for item in items or []:
        if item.get("environment") not in (None, environment):
            continue
        destination = item.get("destination") or {}
        gateway = item.get("gateway") or {}
        clusters.append(Cluster(
            name=item["name"],
            region=item.get("region"),
            environment=item.get("environment"),
            context=item.get("context"),
            destination_server=destination.get("server"),
            destination_name=destination.get("name"),
            gateway_namespace=gateway.get("namespace"),
            gateway_name=gateway.get("name"),
            models=tuple(item["models"]) if "models" in item else None,
            teams=tuple(item["teams"]) if "teams" in item else None,
        ))
    return tuple(clusters)


def _metrics(doc: Mapping[str, Any] | None) -> Metrics | None:
    if doc is None:
        return None
    return Metrics(
        engine=doc["engine"],
        query_url=doc["queryURL"],
        tenant=doc.get("tenant"),
        bearer_token=_secret_key(doc.get("bearerTokenSecret"), "token"),
        namespace=doc.get("namespace"),
        rule_labels=_str_map(doc["ruleLabels"]) if "ruleLabels" in doc else None,
    )


def _cluster_doc(cluster: Cluster) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": cluster.name}
    for key, value in (("region", cluster.region), ("environment", cluster.environment), ("context", cluster.context)):
        if value is not None:
            doc[key] = value
    if cluster.destination_server is not None:
        doc["destination"] = {"server": cluster.destination_server}
    elif cluster.destination_name is not None:
        doc["destination"] = {"name": cluster.destination_name}
    gateway = {k: v for k, v in (("namespace", cluster.gateway_namespace), ("name", cluster.gateway_name)) if v}
    if gateway:
        doc["gateway"] = gateway
    if cluster.models is not None:
        doc["models"] = list(cluster.models)
    if cluster.teams is not None:
        doc["teams"] = list(cluster.teams)
    return doc


def _metrics_doc(metrics: Metrics) -> dict[str, Any]:
    doc: dict[str, Any] = {"engine": metrics.engine, "queryURL": metrics.query_url}
    if metrics.tenant is not None:
        doc["tenant"] = metrics.tenant
    if metrics.bearer_token is not None:
        doc["bearerTokenSecret"] = _secret_key_doc(metrics.bearer_token)
    if metrics.namespace is not None:
        doc["namespace"] = metrics.namespace
    if metrics.rule_labels is not None:
        doc["ruleLabels"] = dict(metrics.rule_labels)
    return doc


# --------------------------------------------------------------------------
# The model back to a document
# --------------------------------------------------------------------------


def _pricing_doc(pricing: Pricing) -> dict[str, Any]:
    if isinstance(pricing, PerRequest):
        return {"type": pricing.type, "price": pricing.price}
    if isinstance(pricing, PerMillionTokens):
        doc: dict[str, Any] = {"type": pricing.type, "input": pricing.input, "output": pricing.output}
        if pricing.cached_input is not None:
            doc["cachedInput"] = pricing.cached_input
        if pricing.reasoning is not None:
            doc["reasoning"] = pricing.reasoning
        if pricing.cache_creation_input is not None:
            doc["cacheCreationInput"] = pricing.cache_creation_input
        return doc
    if isinstance(pricing, PerRequestWithIncludedTokens):
        return {
            "type": pricing.type,
            "pricePerRequest": pricing.price_per_request,
            "includedTokensPerRequest": pricing.included_tokens_per_request,
            "overagePerMillionTokens": pricing.overage_per_million_tokens,
        }
    if isinstance(pricing, TieredVolume):
        key = "pricePerMillion" if pricing.unit == "tokens" else "pricePerRequest"
        return {
            "type": pricing.type,
            "unit": pricing.unit,
            "period": pricing.period,
            "tiers": [{"from": t.start, key: t.price} for t in pricing.tiers],
        }
    assert isinstance(pricing, GpuHourly)
    return {"type": pricing.type}


def _budget_doc(budget: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": budget.name,
        "amount": budget.amount,
        "period": budget.period,
        "thresholds": list(budget.thresholds),
    }
    if budget.window is not None:
        doc["window"] = budget.window
    return doc


def _rates_doc(rates: Any) -> list[dict[str, Any]]:
    return [{"limit": r.limit, "window": r.window} for r in rates]


def plan_document(plan: Plan) -> dict[str, Any]:
    """The merged plan as a costplan.yaml document, teams reduced to what the jobs read.

    ``from_document`` reads it back equal to the plan except for the teams'
    users, namespaces, labels, budgets and contacts.
    """
    i = plan.integrations
    gateway: dict[str, Any] = {
        "type": i.gateway.type,
        "namespace": i.gateway.namespace,
        "targetRef": {"group": i.gateway.target_ref.group, "kind": i.gateway.target_ref.kind, "name": i.gateway.target_ref.name},
        "apiKey": {
            "header": i.gateway.api_key.header,
            "prefix": i.gateway.api_key.prefix,
            "secretNamespace": i.gateway.api_key.secret_namespace,
        },
        "limitador": {"namespace": i.gateway.limitador.namespace, "metrics": i.gateway.limitador.metrics},
    }
    if i.gateway.target_ref.section_name:
        gateway["targetRef"]["sectionName"] = i.gateway.target_ref.section_name
    if i.gateway.limitador.image:
        gateway["limitador"]["image"] = i.gateway.limitador.image
    engine: dict[str, Any] = {"type": i.cost_engine.type, "namespace": i.cost_engine.namespace}
    if i.cost_engine.chart_version:
        engine["chartVersion"] = i.cost_engine.chart_version
    if i.cost_engine.image_tag:
        engine["imageTag"] = i.cost_engine.image_tag
    prices = {
        key: value
        for key, value in (
            ("cpu", i.cost_engine.cpu_hourly), ("ram", i.cost_engine.ram_hourly), ("storage", i.cost_engine.storage_hourly),
        )
        if value is not None
    }
    if prices:
        engine["hourlyPrices"] = prices
    if i.cost_engine.openai_plugin_secret:
        engine["openaiPlugin"] = {
            "existingSecret": i.cost_engine.openai_plugin_secret,
            "version": i.cost_engine.plugin_version,
        }
    secrets: dict[str, Any] = {"backend": i.secrets.backend, "refreshInterval": i.secrets.refresh_interval}
    if i.secrets.store is not None:
        secrets["store"] = {"kind": i.secrets.store.kind, "name": i.secrets.store.name}
    integrations: dict[str, Any] = {
        "gateway": gateway,
        "prometheus": {
            "url": i.prometheus.url,
            "namespace": i.prometheus.namespace,
            "ruleLabels": dict(i.prometheus.rule_labels),
            "monitorLabels": dict(i.prometheus.monitor_labels),
        },
        "costEngine": engine,
        "grafana": {
            "mode": i.grafana.mode,
            "namespace": i.grafana.namespace,
            "folder": i.grafana.folder,
            "sidecarLabel": dict(i.grafana.sidecar_label),
            "instanceSelector": dict(i.grafana.instance_selector),
        },
        "secrets": secrets,
    }
    if i.argocd is not None:
        integrations["argocd"] = {
            "namespace": i.argocd.namespace,
            "project": i.argocd.project,
            "repoURL": i.argocd.repo_url,
            "targetRevision": i.argocd.target_revision,
            "path": i.argocd.path,
        }
    sources = []
    for s in plan.usage_sources:
        source: dict[str, Any] = {"name": s.name, "type": s.type}
        if s.metrics:
            source["metrics"] = dict(s.metrics)
        if s.labels:
            source["labels"] = dict(s.labels)
        if s.non_billable:
            source["nonBillable"] = {label: list(values) for label, values in s.non_billable.items()}
        sources.append(source)
    models = []
    for m in plan.models:
        model: dict[str, Any] = {
            "name": m.name,
            "modelName": m.model_name,
            "provider": m.provider,
            "usageSource": m.usage_source,
            "pricing": _pricing_doc(m.pricing),
        }
        for key, value in (("server", m.server), ("namespace", m.namespace), ("gpuInstance", m.gpu_instance)):
            if value is not None:
                model[key] = value
        models.append(model)
    tiers = []
    for t in plan.tiers:
        tier: dict[str, Any] = {
            "name": t.name,
            "description": t.description,
            "priceMultiplier": t.price_multiplier,
        }
        limits = {}
        if t.request_limits:
            limits["requests"] = _rates_doc(t.request_limits)
        if t.token_limits:
            limits["tokens"] = _rates_doc(t.token_limits)
        if limits:
            tier["limits"] = limits
        quotas = {k: v for k, v in (("daily", t.quotas.daily), ("weekly", t.quotas.weekly), ("monthly", t.quotas.monthly)) if v is not None}
        if quotas:
            tier["quotas"] = quotas
        if t.price_overrides:
            tier["priceOverrides"] = [{"model": o.model, "pricing": _pricing_doc(o.pricing)} for o in t.price_overrides]
        tiers.append(tier)
    # Teams carry only what the jobs read (name, cost center, tier): users,
    # namespaces and budgets stay out, so even a plan with thousands of teams
    # fits in one ConfigMap, and the report namespace holds no user list.
    teams = [{"name": t.name, "costCenter": t.cost_center, "tier": t.tier} for t in plan.teams]
    alerts: dict[str, Any] = {
        "rateLimitedRatio": plan.alerts.rate_limited_ratio,
        "anomalyFactor": plan.alerts.anomaly_factor,
        "sourceAbsentFor": plan.alerts.source_absent_for,
    }
    if plan.alerts.cost_per_request_p95 is not None:
        alerts["costPerRequestP95"] = plan.alerts.cost_per_request_p95
    # The alerts' for durations only when set: the jobs never read them.
    defaults = Alerts()
    for key, attr in (("budgetThresholdFor", "budget_threshold_for"), ("budgetForecastFor", "budget_forecast_for"),
                      ("spendAnomalyFor", "spend_anomaly_for"), ("rateLimitPressureFor", "rate_limit_pressure_for"),
                      ("costPerRequestFor", "cost_per_request_for")):
        if getattr(plan.alerts, attr) != getattr(defaults, attr):
            alerts[key] = getattr(plan.alerts, attr)
    r = plan.reports
    # Written only when set: the jobs never read it, and plans without it
    # stay valid for schemas that predate the ``reports`` section.
    reports: dict[str, Any] = {
        "enabled": r.enabled,
        "schedule": r.schedule,
        "image": r.image,
        "pvc": {"claimName": r.pvc_claim, "size": r.pvc_size, "create": r.create_pvc},
        "gpuPriceCheckSchedule": r.gpu_price_check_schedule,
    }
    if r.namespace is not None:
        reports["namespace"] = r.namespace
    if r.webhook is not None:
        reports["webhook"] = {"secretName": r.webhook.name, "key": r.webhook.key}
    if r.resources != JobResources():
        reports["resources"] = r.resources.as_kubernetes()
    document = {
        "apiVersion": "costplan.dev/v1alpha1",
        "kind": "CostPlan",
        "metadata": {
            "name": plan.name,
            "currency": plan.currency,
            "timezone": plan.timezone,
            "cluster": plan.cluster,
        },
        "integrations": integrations,
        "usageSources": sources,
        "gpuInstances": [
            {
                "name": g.name,
                "instanceType": g.instance_type,
                "gpuModel": g.gpu_model,
                "gpusPerNode": g.gpus_per_node,
                "hourlyRate": g.hourly_rate,
            }
            for g in plan.gpu_instances
        ],
        "models": models,
        "tiers": tiers,
        "teams": teams,
        "budgets": [_budget_doc(b) for b in plan.budgets],
        "alerts": alerts,
    }
    if r != Reports():
        document["reports"] = reports
    if plan.notifications != Notifications():
        document["notifications"] = _notifications_doc(plan.notifications)
    if plan.guard != Guard():
        document["guard"] = _guard_doc(plan.guard)
    if plan.install != Install():
        document["install"] = {"createNamespaces": plan.install.create_namespaces}
    if plan.gpu_idle_cost != GpuIdleCost():
        idle: dict[str, Any] = {"share": plan.gpu_idle_cost.share}
        if plan.gpu_idle_cost.team is not None:
            idle["team"] = plan.gpu_idle_cost.team
        document["gpuIdleCost"] = idle
    if plan.clusters:
        document["clusters"] = [_cluster_doc(cluster) for cluster in plan.clusters]
    if plan.metrics is not None:
        document["metrics"] = _metrics_doc(plan.metrics)
    return document


def _secret_key_doc(key: SecretKey) -> dict[str, str]:
    return {"secretName": key.name, "key": key.key}


def _notifications_doc(n: Notifications) -> dict[str, Any]:
    doc: dict[str, Any] = {"groupWait": n.group_wait, "groupInterval": n.group_interval,
                           "repeatInterval": n.repeat_interval}
    if n.namespace is not None:
        doc["namespace"] = n.namespace
    if n.email is not None:
        email: dict[str, Any] = {"smarthost": n.email.smarthost, "from": n.email.sender}
        if n.email.auth_username is not None:
            email["authUsername"] = n.email.auth_username
        if n.email.auth_password is not None:
            email["authPassword"] = _secret_key_doc(n.email.auth_password)
        doc["email"] = email
    return doc


def _guard_doc(g: Guard) -> dict[str, Any]:
    doc: dict[str, Any] = {"period": g.period, "failMode": g.fail_mode, "failAfter": g.fail_after}
    if g.namespace is not None:
        doc["namespace"] = g.namespace
    if g.webhook_url is not None:
        doc["webhookURL"] = g.webhook_url
    return doc
