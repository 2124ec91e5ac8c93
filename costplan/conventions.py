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
LABEL_PLAN = "costplan.dev/plan"
LABEL_ENVIRONMENT = "costplan.dev/environment"
LABEL_COMPONENT = "costplan.dev/component"
ANNOTATION_SYNC_WAVE = "argocd.argoproj.io/sync-wave"

# --------------------------------------------------------------------------
# Metric names (prefix costplan:) - filled in by the spend-rules generator
# --------------------------------------------------------------------------

METRIC_PREFIX = "costplan:"
