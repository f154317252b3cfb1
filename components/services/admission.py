"""Admission policy for team namespaces: ValidatingAdmissionPolicy objects the platform stack creates.

RBAC says who may create a Pod or a Secret in a namespace, not *which* Pod or Secret. A team member
may create both in the team's namespaces, so without admission policy a member could

- start a pod as any service account of the namespace and act with its RBAC (a service account
  bound to more than the member Role would be an escalation), and
- create a ``kubernetes.io/service-account-token`` Secret naming any service account of the
  namespace: the token controller fills it with a long-lived token of that account.

Two policies close both, with CEL evaluated in the API server (``admissionregistration.k8s.io/v1``,
GA since Kubernetes 1.30, in every version mlplane supports; no webhook to run or to fail open):

- ``<platform>-team-pod-service-accounts``: a pod created in a team's work or serving namespace runs
  as one of :data:`TEAM_POD_ACCOUNTS` (``default``: every pod mlplane puts there, the job pods of
  the team's runners included, uses it; the runners themselves and the ARC controller live in the
  team's runner namespace, which members cannot reach);
- ``<platform>-team-no-token-secrets``: no Secret of type ``kubernetes.io/service-account-token``
  is created (or turned into one) in a team's work, serving or runner namespace.

Each policy has a binding (``validationActions: [Deny]``) selecting namespaces by labels members
cannot change (namespaces are cluster-scoped; no team role touches them): :data:`kube.TEAM_LABEL`
on the work and serving namespaces, :data:`RUNNERS_LABEL` on the runner namespace. The proof is
``tests/unit/services/test_runner_isolation.py`` (a real kube-apiserver denies the dry-run creates).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mlplane.core import kube

API_VERSION = "admissionregistration.k8s.io/v1"
#: Label of a team's runner namespace (value: the team name), set by the platform stack.
RUNNERS_LABEL = "mlplane.dev/team-runners"
#: The only service accounts a pod in a team's work or serving namespace may run as.
TEAM_POD_ACCOUNTS: tuple[str, ...] = ("default",)
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"


def pod_accounts_policy_name(platform_name: str) -> str:
    return f"{platform_name}-team-pod-service-accounts"


def token_secrets_policy_name(platform_name: str) -> str:
    return f"{platform_name}-team-no-token-secrets"


def _rule(resource: str, operations: list[str]) -> dict[str, Any]:
    return {"apiGroups": [""], "apiVersions": ["v1"], "operations": operations, "resources": [resource]}


def _exists(label: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchExpressions": [{"key": label, "operator": "Exists"}]}}


def pod_accounts_policy_spec(accounts: tuple[str, ...] = TEAM_POD_ACCOUNTS) -> dict[str, Any]:
    """Pods in team namespaces run as one of ``accounts`` (TEAM_POD_ACCOUNTS; on a platform whose
    store binds workloads also the team's bound service accounts, each of which exists in one
    namespace only: mlplane.services.team_grants.WORKLOAD_ACCOUNTS). The ServiceAccount admission
    plugin (a mutating one, before any validation) fills ``serviceAccountName`` in; the deprecated
    alias ``serviceAccount`` is checked too."""
    allowed = "[" + ", ".join(f"'{name}'" for name in accounts) + "]"
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [_rule("pods", ["CREATE"])]},
        "validations": [
            {
                "expression": (
                    f"(!has(object.spec.serviceAccountName) || object.spec.serviceAccountName in {allowed}) && "
                    f"(!has(object.spec.serviceAccount) || object.spec.serviceAccount in {allowed})"
                ),
                "messageExpression": (
                    "'pods in team namespaces run as one of the service accounts " + allowed.replace("'", "")
                    + ", not ' + (has(object.spec.serviceAccountName) ? object.spec.serviceAccountName : "
                    "object.spec.serviceAccount) + ' (mlplane admission policy; see docs/security.md)'"
                ),
                "reason": "Forbidden",
            }
        ],
    }


def token_secrets_policy_spec() -> dict[str, Any]:
    """No service-account-token Secrets: a member could mint a long-lived token of any account."""
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [_rule("secrets", ["CREATE", "UPDATE"])]},
        "validations": [
            {
                "expression": f"!has(object.type) || object.type != '{TOKEN_SECRET_TYPE}'",
                "message": (
                    f"Secrets of type {TOKEN_SECRET_TYPE} are refused in team namespaces (they mint "
                    "long-lived service account tokens; mlplane admission policy, see docs/security.md)"
                ),
                "reason": "Forbidden",
            }
        ],
    }


def bindings(platform_name: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(role, binding name, policy name, matchResources) of every binding."""
    pods, tokens = pod_accounts_policy_name(platform_name), token_secrets_policy_name(platform_name)
    return [
        ("pod-accounts", pods, pods, _exists(kube.TEAM_LABEL)),
        ("token-secrets", tokens, tokens, _exists(kube.TEAM_LABEL)),
        ("token-secrets-runners", f"{tokens}-runners", tokens, _exists(RUNNERS_LABEL)),
    ]


def team_policies(
    name: str, platform: kube.Platform, parent: pulumi.Resource, accounts: tuple[str, ...] = TEAM_POD_ACCOUNTS
) -> list[pulumi.Resource]:
    """The policies and their bindings (children ``<name>-pod-accounts``, ``<name>-token-secrets``
    and ``<name>-<role>-binding`` per binding), cluster-scoped, created once per platform; pods
    run as one of ``accounts``."""
    labels = platform.labels("teams", "admission")
    child = pulumi.ResourceOptions(parent=parent)
    policies = {
        pod_accounts_policy_name(platform.name): k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-pod-accounts",
            metadata={"name": pod_accounts_policy_name(platform.name), "labels": labels},
            spec=pod_accounts_policy_spec(accounts),
            opts=child,
        ),
        token_secrets_policy_name(platform.name): k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-token-secrets",
            metadata={"name": token_secrets_policy_name(platform.name), "labels": labels},
            spec=token_secrets_policy_spec(),
            opts=child,
        ),
    }
    created: list[pulumi.Resource] = list(policies.values())
    for role, binding, policy, match in bindings(platform.name):
        created.append(
            k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                f"{name}-{role}-binding",
                metadata={"name": binding, "labels": labels},
                spec={"policyName": policy, "validationActions": ["Deny"], "matchResources": match},
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[policies[policy]]),
            )
        )
    return created
