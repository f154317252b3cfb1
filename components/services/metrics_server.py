"""metrics-server in kube-system (own manifests, no Helm): the resource metrics API the HPAs of
served models read. Created by :class:`mlplane.services.serving.Serving` when the config asks for it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import MetricsServerConfig
from mlplane.core import kube


METRICS_SERVER_TYPE = "mlplane:serving:MetricsServer"
#: metrics-server is a static binary that only writes its self-signed certificate to /tmp.
METRICS_SERVER_UID = 65534
METRICS_SERVER_NAMESPACE = "kube-system"
METRICS_SERVER = "metrics-server"
#: The kubelet's port metrics-server scrapes (--kubelet-preferred-address-types, node addresses).
KUBELET_PORT = 10250


@dataclass(frozen=True)
class MetricsServerArgs:
    config: MetricsServerConfig
    platform: kube.Platform


class MetricsServer(pulumi.ComponentResource):
    """metrics-server in kube-system (own manifests, no Helm): the resource metrics API the HPAs read.

    Children are named ``<name>-<role>``; the Kubernetes objects carry upstream's names.
    """

    def __init__(self, name: str, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(METRICS_SERVER_TYPE, name, None, opts)
        platform, cfg = args.platform, args.config
        labels = platform.labels("serving", METRICS_SERVER)
        selector = platform.selector("serving", METRICS_SERVER)
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={"name": METRICS_SERVER, "namespace": METRICS_SERVER_NAMESPACE, "labels": labels},
            automount_service_account_token=False,
            opts=child,
        )
        subject = [{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": METRICS_SERVER_NAMESPACE}]
        self._rbac(name, labels, subject)
        svc = kube.service(
            f"{name}-service",
            name=METRICS_SERVER,
            namespace=METRICS_SERVER_NAMESPACE,
            labels=labels,
            selector=selector,
            ports=[("https", 443, "https")],
            parent=self,
        )
        # The API server calls metrics-server from the host network: only its port is admitted.
        kube.ingress_only_on(
            f"{name}-network-policy",
            name=METRICS_SERVER,
            namespace=METRICS_SERVER_NAMESPACE,
            labels=labels,
            pods=selector,
            port="https",
            parent=self,
        )
        # Egress: the API server, and the kubelets it scrapes (port 10250 on every node).
        kube.egress_only_to(
            f"{name}-egress",
            name=f"{METRICS_SERVER}-egress",
            namespace=METRICS_SERVER_NAMESPACE,
            labels=labels,
            pods=selector,
            rules=[kube.dns_egress(), kube.api_server_egress(), kube.internet_egress(KUBELET_PORT)],
            parent=self,
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": METRICS_SERVER,
                "namespace": METRICS_SERVER_NAMESPACE,
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_38", "metrics-server reads nodes and pods from the API: it needs its token"),
                ),
            },
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
                "template": self._template(platform, cfg, labels, account),
            },
            opts=child,
        )
        k8s.apiregistration.v1.APIService(
            f"{name}-api-service",
            metadata={"name": "v1beta1.metrics.k8s.io", "labels": labels},
            spec={
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {"name": svc.metadata.name, "namespace": METRICS_SERVER_NAMESPACE, "port": 443},
                # metrics-server serves a self-signed certificate (--cert-dir=/tmp), as upstream ships it.
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
        self.register_outputs({})

    @staticmethod
    def _template(
        platform: kube.Platform, cfg: MetricsServerConfig, labels: dict[str, str], account: k8s.core.v1.ServiceAccount
    ) -> dict:
        args = [
            "--cert-dir=/tmp",
            "--secure-port=10250",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--kubelet-use-node-status-port",
            "--metric-resolution=15s",
        ]
        if cfg.kubelet_insecure_tls:
            args.append("--kubelet-insecure-tls")
        liveness = kube.http_probe("/livez", "https", period=10)
        readiness = kube.http_probe("/readyz", "https", period=10, initial_delay=20)
        for probe in (liveness, readiness):
            probe["httpGet"]["scheme"] = "HTTPS"
        container = kube.container(
            METRICS_SERVER,
            platform.image("metrics-server"),
            cfg.resources,
            args=args,
            ports=[("https", 10250)],
            liveness=liveness,
            readiness=readiness,
            mounts=[{"name": "tmp", "mountPath": "/tmp"}],
        )
        workload = kube.Workload(
            containers=[container],
            uid=METRICS_SERVER_UID,
            placement=platform.place("system"),
            volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
            service_account=account.metadata.name,
            automount_token=True,
        )
        template = workload.template(labels)
        template["spec"]["priorityClassName"] = "system-cluster-critical"
        template["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux", **template["spec"].get("nodeSelector", {})}
        return template

    def _rbac(self, name: str, labels: dict[str, str], subject: list[dict[str, str]]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        rbac = k8s.rbac.v1
        rbac.ClusterRole(
            f"{name}-aggregated-reader",
            metadata={
                "name": "system:aggregated-metrics-reader",
                "labels": {
                    **labels,
                    "rbac.authorization.k8s.io/aggregate-to-view": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                    "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                },
            },
            rules=[{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}],
            opts=child,
        )
        rbac.ClusterRole(
            f"{name}-cluster-role",
            metadata={"name": "system:metrics-server", "labels": labels},
            rules=[
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces"], "verbs": ["get", "list", "watch"]},
            ],
            opts=child,
        )
        rbac.ClusterRoleBinding(
            f"{name}-cluster-role-binding",
            metadata={"name": "system:metrics-server", "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:metrics-server"},
            subjects=subject,
            opts=child,
        )
        rbac.ClusterRoleBinding(
            f"{name}-auth-delegator",
            metadata={"name": "metrics-server:system:auth-delegator", "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            subjects=subject,
            opts=child,
        )
        rbac.RoleBinding(
            f"{name}-auth-reader",
            metadata={"name": "metrics-server-auth-reader", "namespace": METRICS_SERVER_NAMESPACE, "labels": labels},
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            subjects=subject,
            opts=child,
        )
