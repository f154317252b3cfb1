"""A team namespace's guardrails: ResourceQuota, LimitRange, NetworkPolicies, member RBAC."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mlplane.backing import object_storage, workload_identity
from mlplane.config.team import QuotaConfig
from mlplane.core import kube
from mlplane.services import serving, tracking
from mlplane.targets.local.registry import registry_egress
from mlplane.team.names import _Namespace, ENVIRONMENT, MEMBER_ROLE, MEMBER_RULES, SCRAPE_PORT


class Guardrails:
    """The Team's guardrails: quota, limit range, network policies, member RBAC and the environment."""

    def _guardrails(self, space: _Namespace, quota: QuotaConfig) -> None:
        """Quota, limit range, network policies and member RBAC of one namespace."""
        cfg = self._args.config
        namespace = space.name
        hard = {
            "requests.cpu": quota.requests_cpu,
            "requests.memory": quota.requests_memory,
            "limits.cpu": quota.limits_cpu,
            "limits.memory": quota.limits_memory,
            f"requests.{cfg.quota.gpu_resource}": str(quota.gpus),
            "pods": str(quota.pods),
            "requests.storage": quota.storage,
            "persistentvolumeclaims": str(quota.persistent_volume_claims),
            # Nothing in a team namespace is exposed outside the cluster except through the Gateway.
            "services.nodeports": "0",
            "services.loadbalancers": "0",
        }
        k8s.core.v1.ResourceQuota(
            f"{self._name}-{space.role}-quota",
            metadata={"name": "team-quota", "namespace": namespace, "labels": self._labels("team-quota")},
            spec={"hard": hard},
            opts=self._child(),
        )
        limits = cfg.limit_range
        k8s.core.v1.LimitRange(
            f"{self._name}-{space.role}-limits",
            metadata={"name": "team-limits", "namespace": namespace, "labels": self._labels("team-limits")},
            spec={
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": {"cpu": limits.default_request.cpu, "memory": limits.default_request.memory},
                        "default": {"cpu": limits.default_limit.cpu, "memory": limits.default_limit.memory},
                        "max": {"cpu": limits.max.cpu, "memory": limits.max.memory},
                    }
                ]
            },
            opts=self._child(),
        )
        self._network_policies(space)
        self._member_rbac(space)

    def _network_policies(self, space: _Namespace) -> None:
        cfg = self._args.config
        # The same default deny and DNS allow as every platform namespace (kube.isolate_namespace).
        self._policy(space, "deny-all", "default-deny", kube.default_deny_spec())
        self._policy(space, "allow-dns", "allow-dns", kube.allow_dns_spec())
        team = [self._team_peers()]
        self._policy(
            space,
            "allow-team",
            "allow-team",
            {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": team}],
                "egress": [{"to": team}],
            },
        )
        egress = self._service_egress(space)
        if egress:
            self._policy(
                space,
                "allow-platform",
                "allow-platform-services",
                {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
            )
        if cfg.uses("monitoring"):
            self._policy(
                space,
                "allow-prometheus",
                "allow-prometheus",
                {
                    "podSelector": {"matchLabels": {kube.SCRAPE: SCRAPE_PORT}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [self._platform_peer("monitoring", "prometheus")],
                            "ports": [{"port": SCRAPE_PORT, "protocol": "TCP"}],
                        }
                    ],
                },
            )
        if space.role == "serving":
            self._policy(
                space,
                "allow-gateway",
                "allow-gateway",
                {
                    "podSelector": {"matchExpressions": [{"key": serving.MODEL_LABEL, "operator": "Exists"}]},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [kube.namespace_peer(self._args.platform.routing.proxy_namespace or f"{self._platform.name}-gateway")],
                            "ports": [{"port": "http", "protocol": "TCP"}],
                        }
                    ],
                },
            )
        if space.role == "work" and cfg.network.allow_internet_https:
            # Any address but the cloud metadata endpoints (kube.anywhere).
            anywhere = kube.anywhere()
            self._policy(
                space,
                "allow-internet",
                "allow-internet-https",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": anywhere, "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
                    ],
                },
            )

    def _service_egress(self, space: _Namespace) -> list[dict[str, Any]]:
        """Egress rules to the platform services the team uses (serving needs MLflow only)."""
        cfg, plat = self._args.config, self._args.platform
        rules: list[dict[str, Any]] = []
        if cfg.uses("tracking"):
            rules.append(
                {
                    "to": [self._platform_peer("tracking", tracking.SERVICE)],
                    "ports": [{"port": tracking.PORT, "protocol": "TCP"}],
                }
            )
        if space.role == "serving":
            return rules
        if self._args.binds_workloads:
            # S3 and ECR have no addresses a NetworkPolicy can name: HTTPS to any address but the
            # metadata endpoints; and the node's Pod Identity Agent, where the bound service
            # accounts' pods get their credentials.
            if cfg.uses("object_storage") or cfg.uses("registry"):
                rules += [kube.internet_egress(443), workload_identity.PodIdentity.egress()]
            return rules
        if cfg.uses("object_storage"):
            rules.append(
                {
                    "to": [self._platform_peer("storage", object_storage.SERVICE)],
                    "ports": [{"port": object_storage.S3_PORT, "protocol": "TCP"}],
                }
            )
        if cfg.uses("registry"):
            rules.append(registry_egress(plat))
        return rules

    def _member_rbac(self, space: _Namespace) -> None:
        members = self._args.config.members
        namespace = space.name
        labels = self._labels(MEMBER_ROLE)
        role = k8s.rbac.v1.Role(
            f"{self._name}-{space.role}-member-role",
            metadata={"name": MEMBER_ROLE, "namespace": namespace, "labels": labels},
            rules=[dict(rule) for rule in MEMBER_RULES],
            opts=self._child(),
        )
        subjects = [
            *({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user} for user in members.users),
            *({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group} for group in members.groups),
        ]
        if subjects:
            k8s.rbac.v1.RoleBinding(
                f"{self._name}-{space.role}-member-binding",
                metadata={"name": MEMBER_ROLE, "namespace": namespace, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=subjects,
                opts=self._child(),
            )

    def _environment(self) -> None:
        """A ConfigMap per namespace with the addresses of the services the team uses."""
        cfg, out = self._args.config, self._args.outputs
        data: dict[str, pulumi.Input[str]] = {"MLPLANE_TEAM": cfg.name}
        if cfg.uses("tracking"):
            data |= {"MLFLOW_TRACKING_URI": out.tracking_uri, "MLFLOW_WORKSPACE": cfg.identity}
        if cfg.uses("object_storage"):
            data |= {"AWS_ENDPOINT_URL_S3": out.s3_endpoint, "AWS_DEFAULT_REGION": out.s3_region, "MLPLANE_BUCKET": self._bucket_name}
        if cfg.uses("registry"):
            data |= {"MLPLANE_REGISTRY": out.registry_cluster_push_url, "MLPLANE_REGISTRY_PULL_PREFIX": out.registry_pull_prefix}
        for space in (self.work, self.serving):
            k8s.core.v1.ConfigMap(
                f"{self._name}-{space.role}-environment",
                metadata={"name": ENVIRONMENT, "namespace": space.name, "labels": self._labels(ENVIRONMENT)},
                data=data,
                opts=self._child(),
            )
