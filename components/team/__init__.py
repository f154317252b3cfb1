"""A team environment: an isolated slice of a shared platform, deployed as its own stack.

The :class:`Team` component creates, for one team and nothing else:

- a work and a serving namespace (Pod Security "restricted"), each with a ResourceQuota, a
  LimitRange, default-deny NetworkPolicies for ingress and egress plus one allow per path the
  team needs (DNS, its own namespaces, the platform services it uses, the Gateway, Prometheus);
- a namespaced Role ``team-member`` bound to the team's users and groups (no cluster-scoped RBAC);
- a bucket and an S3 identity limited to it (a grant Job in the platform's storage namespace);
- an MLflow workspace and an account that manages it and nothing else (a Job in the platform's
  tracking namespace, through MLflow's REST API);
- its own ARC controller and runner scale set in its runner namespace ``<work>-runners``
  (created by the platform stack, no member Role: the GitHub credential lives there), whose job
  pods run in the work namespace;
- its models, served behind the platform Gateway at ``<model>.<team>.<domain>``;
- a Grafana dashboard of its models (from the Gateway's per-route stats), added to the platform's
  dashboards ConfigMap by a server-side apply patch (``ConfigMapPatch``) that owns only the
  team's own key, and pod discovery rights for the platform Prometheus in its namespaces.

The platform's layout (names, domain, modes) comes from the platform's validated config; its
addresses and credentials come from the platform stack's outputs (:class:`PlatformOutputs`, read
through a StackReference). Offboarding swaps the setup Jobs for Jobs that revoke the team's
S3 identity and MLflow account (and delete its bucket and workspace unless data is kept); the
stack is then destroyed.

The package holds the parts: ``names`` (type token, roles, RBAC rules, the Jobs' scripts),
``link`` (the platform stack's outputs and the team's provider), ``guardrails`` (quota, limits,
network policies, RBAC), ``grants`` (bucket and S3 identity, MLflow workspace and account),
``workloads`` (models and runners), ``dashboard`` (Grafana, Prometheus discovery), ``component``
(the orchestrating :class:`Team`, which mixes the parts in) and ``program`` (the team stack
program). The public names are re-exported here.
"""

from __future__ import annotations

from mlplane.team.names import (
    ENVIRONMENT,
    GRAFANA_DASHBOARDS_CONFIGMAP,
    MEMBER_ROLE,
    MEMBER_RULES,
    MLFLOW_ROLE,
    MLFLOW_SCRIPT,
    MLFLOW_SECRET,
    PROMETHEUS_ACCOUNT,
    PROMETHEUS_ROLE,
    RUNNER_ACCOUNT,
    RUNNER_RULES,
    S3_REVOKE_SCRIPT,
    S3_SECRET,
    SCRAPE_PORT,
    TEAM_LABEL,
    TYPE,
)
from mlplane.team.link import (
    PlatformOutputs,
    provider_args,
    stack_reference_name,
)
from mlplane.team.dashboard import (
    dashboard_file,
    team_dashboard,
)
from mlplane.team.component import (
    Team,
    TeamArgs,
)
from mlplane.team.program import (
    team_program,
)

__all__ = [
    "ENVIRONMENT",
    "GRAFANA_DASHBOARDS_CONFIGMAP",
    "MEMBER_ROLE",
    "MEMBER_RULES",
    "MLFLOW_ROLE",
    "MLFLOW_SCRIPT",
    "MLFLOW_SECRET",
    "PROMETHEUS_ACCOUNT",
    "PROMETHEUS_ROLE",
    "RUNNER_ACCOUNT",
    "RUNNER_RULES",
    "S3_REVOKE_SCRIPT",
    "S3_SECRET",
    "SCRAPE_PORT",
    "TEAM_LABEL",
    "TYPE",
    "PlatformOutputs",
    "provider_args",
    "stack_reference_name",
    "dashboard_file",
    "team_dashboard",
    "Team",
    "TeamArgs",
    "team_program",
]
