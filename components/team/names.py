"""The names a team environment uses: its type token, roles, accounts, RBAC rules and the scripts its Jobs run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlplane.core import kube
from mlplane.services import serving, team_grants


TYPE = "mlplane:team:Team"
#: Namespace label naming the team (set by the team stack only: members cannot edit namespaces).
TEAM_LABEL = kube.TEAM_LABEL
#: The namespaced Role bound to the team's users and groups, in both namespaces.
MEMBER_ROLE = "team-member"
#: ConfigMap in both namespaces with the addresses a team workload needs (use ``envFrom``).
ENVIRONMENT = "team-environment"
#: Secret in the work namespace: the team's S3 identity.
S3_SECRET = "s3-credentials"
#: Secret in both namespaces: the team's MLflow account (the name serving and CI expect).
MLFLOW_SECRET = serving.CREDENTIALS_SECRET
#: Service account the team's runners (and their container hooks) use, in the runner namespace.
RUNNER_ACCOUNT = "team-runner"
#: Pods labelled ``mlplane.dev/scrape: metrics`` with a container port named ``metrics`` are scraped.
SCRAPE_PORT = "metrics"
#: The platform Prometheus' service account (monitoring namespace), granted pod discovery here.
PROMETHEUS_ACCOUNT = "prometheus"
#: Role (in each team namespace) letting the platform Prometheus discover the team's pods.
PROMETHEUS_ROLE = "platform-prometheus"
GRAFANA_DASHBOARDS_CONFIGMAP = "grafana-dashboards"
#: What team members may do in their namespaces: run workloads, never change the guardrails
#: (quota, limits, network policies, RBAC) or the routes on the platform Gateway.
MEMBER_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": [
            "pods", "pods/log", "pods/exec", "pods/portforward", "services", "configmaps",
            "secrets", "persistentvolumeclaims", "serviceaccounts",
        ],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["events", "resourcequotas", "limitranges"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "list", "watch"]},
)
#: What the runner (ARC's Kubernetes container hooks) needs, in the work namespace, to run job
#: containers as pods there: the 'kubernetes-novolume' hooks' ``requiredPermissions``
#: (actions/runner-container-hooks packages/k8s/src/k8s/index.ts; no Jobs, unlike volume mode).
RUNNER_RULES: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]},
)

# The scripts of the grant Jobs and the MLflow role now live with the grants (platform stack).
MLFLOW_ROLE, MLFLOW_SCRIPT, S3_REVOKE_SCRIPT = team_grants.MLFLOW_ROLE, team_grants.MLFLOW_SCRIPT, team_grants.S3_REVOKE_SCRIPT


@dataclass(frozen=True)
class _Namespace:
    """One of the team's namespaces: created by the platform stack (mlplane.services.team_access)."""

    role: str
    name: str
