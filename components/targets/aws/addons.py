"""What the EKS cluster runs before the platform's services (`mlplane:aws:ClusterAddons`).

- The **default StorageClass** ``gp3``: the EBS CSI driver, encrypted with the platform's KMS
  key, ``WaitForFirstConsumer`` (a volume is created in the zone its pod is scheduled to), volume
  expansion on, and ``Retain`` outside throwaway stacks (a deleted claim keeps its volume).
- The **Cluster Autoscaler** on the managed node groups, as plain objects (upstream
  ``cluster-autoscaler/cloudprovider/aws/examples/cluster-autoscaler-autodiscover.yaml``): it
  finds the groups by the tags EKS puts on their Auto Scaling groups and gets its AWS identity
  through Pod Identity (the role from :mod:`mlplane.targets.aws.eks`); its image's minor follows the
  cluster's (``versions.CLUSTER_AUTOSCALER_TAGS``).
- The **NVIDIA device plugin** DaemonSet on the GPU group (NVIDIA/k8s-device-plugin
  ``deployments/static/nvidia-device-plugin.yml``), when ``aws.eks.node_groups.gpu.enabled``.

Why the Cluster Autoscaler and not Karpenter or EKS Auto Mode: docs/aws.md, "How the cluster grows".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import Resources, versions
from mlplane.config.aws import AwsConfig
from mlplane.core import kube
from mlplane.targets.aws.eks import AUTOSCALER_ACCOUNT, NODE_GROUP_LABEL

TYPE = "mlplane:aws:ClusterAddons"
STORAGE_CLASS = "gp3"
#: The annotation that makes a StorageClass the cluster default.
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
#: The Cluster Autoscaler serves /health-check and metrics on this port (its --address default).
AUTOSCALER_PORT = 8085
#: The Cluster Autoscaler image runs as nobody (upstream example: runAsUser 65534).
AUTOSCALER_UID = 65534
AUTOSCALER_RESOURCES = Resources.model_validate(
    # The upstream example's requests and limits (100m, 600Mi).
    {"requests": {"cpu": "100m", "memory": "600Mi"}, "limits": {"cpu": "100m", "memory": "600Mi"}}
)
DEVICE_PLUGIN_RESOURCES = Resources.model_validate(
    {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}
)
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


@dataclass(frozen=True)
class ClusterAddonsArgs:
    config: AwsConfig
    platform: kube.Platform
    #: The EKS cluster's name (known from the config: the platform's, or the adopted one's).
    cluster_name: str
    kms_key_arn: pulumi.Input[str]


def autoscaler_image(config: AwsConfig, platform: kube.Platform) -> str:
    """The Cluster Autoscaler release of the cluster's minor, through the image mirror when set."""
    image = versions.AWS_IMAGES["cluster-autoscaler"]
    tag = versions.CLUSTER_AUTOSCALER_TAGS[config.eks.kubernetes_version]
    return versions.Image(image.registry, image.repository, tag).ref(platform.registry_mirror)


def autoscaler_args(cluster_name: str) -> list[str]:
    """Auto-discovery of this cluster's groups (the README's recommended setup), balanced across
    zones, the cheapest fitting group first; system pods do not pin a node forever."""
    return [
        "--cloud-provider=aws",
        f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{cluster_name}",
        "--balance-similar-node-groups",
        "--expander=least-waste",
        "--skip-nodes-with-system-pods=false",
        "--skip-nodes-with-local-storage=false",
        "--stderrthreshold=info",
        "--v=2",
    ]


#: The upstream example's ClusterRole (cluster-autoscaler-autodiscover.yaml), with the API groups
#: that no longer serve those kinds (extensions) left out, and VolumeAttachments read (1.3x).
AUTOSCALER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["endpoints"], "resourceNames": ["cluster-autoscaler"], "verbs": ["get", "update"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["watch", "list", "get", "update"]},
    {
        "apiGroups": [""],
        "resources": ["namespaces", "pods", "services", "replicationcontrollers", "persistentvolumeclaims", "persistentvolumes"],
        "verbs": ["watch", "list", "get"],
    },
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["watch", "list"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets", "replicasets", "daemonsets"], "verbs": ["watch", "list", "get"]},
    {
        "apiGroups": ["storage.k8s.io"],
        "resources": ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities", "volumeattachments"],
        "verbs": ["watch", "list", "get"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["watch", "list", "get"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["cluster-autoscaler"], "verbs": ["get", "update"]},
]
AUTOSCALER_NAMESPACE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["cluster-autoscaler-status", "cluster-autoscaler-priority-expander"],
        "verbs": ["delete", "get", "update", "watch"],
    },
]


class ClusterAddons(pulumi.ComponentResource):
    """The default StorageClass, the Cluster Autoscaler and (GPU group) the NVIDIA device plugin."""

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        platform = args.platform
        k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata={
                "name": STORAGE_CLASS,
                "labels": platform.labels("storage", STORAGE_CLASS),
                "annotations": {DEFAULT_CLASS: "true"},
            },
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": args.kms_key_arn},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Retain" if platform.protect_stateful else "Delete",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._autoscaler(name, args)
        if args.config.eks.node_groups.gpu.enabled:
            self._device_plugin(name, args)
        self.register_outputs({})

    def _autoscaler(self, name: str, args: ClusterAddonsArgs) -> None:
        platform = args.platform
        namespace, account = AUTOSCALER_ACCOUNT
        labels = platform.labels("autoscaler", "cluster-autoscaler")
        meta = {"name": account, "labels": labels}
        k8s.core.v1.ServiceAccount(
            f"{name}-autoscaler-account",
            metadata={**meta, "namespace": namespace},
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.ClusterRole(f"{name}-autoscaler-role", metadata=meta, rules=AUTOSCALER_RULES, opts=pulumi.ResourceOptions(parent=self))
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-autoscaler-binding",
            metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
            subjects=[{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.Role(
            f"{name}-autoscaler-namespace-role",
            metadata={**meta, "namespace": namespace},
            rules=AUTOSCALER_NAMESPACE_RULES,
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-autoscaler-namespace-binding",
            metadata={**meta, "namespace": namespace},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            subjects=[{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        probe = kube.http_probe("/health-check", "http")
        container = kube.container(
            "cluster-autoscaler",
            autoscaler_image(args.config, platform),
            AUTOSCALER_RESOURCES,
            command=["./cluster-autoscaler"],
            args=autoscaler_args(args.cluster_name),
            env=[{"name": "AWS_REGION", "value": args.config.region}],
            ports=[("http", AUTOSCALER_PORT)],
            liveness=probe,
            readiness=probe,
        )
        workload = kube.Workload(
            containers=[container], uid=AUTOSCALER_UID, service_account=account, automount_token=True
        )
        template = workload.template(labels)
        template["spec"]["priorityClassName"] = "system-cluster-critical"
        # On the system group: it must not run on a node it may remove.
        template["spec"]["nodeSelector"] = {NODE_GROUP_LABEL: "system"}
        k8s.apps.v1.Deployment(
            f"{name}-autoscaler",
            metadata={
                **meta,
                "namespace": namespace,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_38", "the autoscaler watches pods and nodes and scales node groups through the API"),
                ),
            },
            spec={
                "replicas": 1,
                "selector": {"matchLabels": platform.selector("autoscaler", "cluster-autoscaler")},
                "template": template,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._deny_ingress(name, "autoscaler", namespace, platform.selector("autoscaler", "cluster-autoscaler"), labels)

    def _device_plugin(self, name: str, args: ClusterAddonsArgs) -> None:
        """NVIDIA's static DaemonSet, only on the GPU group (it tolerates the GPU taint). It runs as
        root: it writes its socket into the kubelet's device-plugin directory on the host."""
        platform = args.platform
        labels = platform.labels("gpu", "nvidia-device-plugin")
        image = versions.AWS_IMAGES["nvidia-device-plugin"].ref(platform.registry_mirror)
        security = {**kube.container_security(), "runAsNonRoot": False, "runAsUser": 0}
        k8s.apps.v1.DaemonSet(
            f"{name}-nvidia-device-plugin",
            metadata={
                "name": "nvidia-device-plugin",
                "namespace": "kube-system",
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_23", "the device plugin writes its socket into the kubelet's root-owned directory"),
                    ("CKV_K8S_40", "the device plugin runs as root to register with the kubelet"),
                    ("CKV_K8S_8", "NVIDIA's device plugin serves no health endpoint; the kubelet re-registers it"),
                    ("CKV_K8S_9", "NVIDIA's device plugin serves no readiness endpoint"),
                ),
            },
            spec={
                "selector": {"matchLabels": platform.selector("gpu", "nvidia-device-plugin")},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "priorityClassName": "system-node-critical",
                        "nodeSelector": {NODE_GROUP_LABEL: "gpu"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "nvidia-device-plugin",
                                "image": image,
                                "imagePullPolicy": "Always",
                                "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                                "securityContext": security,
                                "resources": kube.resources(DEVICE_PLUGIN_RESOURCES),
                                "volumeMounts": [{"name": "device-plugins", "mountPath": DEVICE_PLUGIN_DIR}],
                            }
                        ],
                        "volumes": [
                            {"name": "device-plugins", "hostPath": {"path": DEVICE_PLUGIN_DIR, "type": "Directory"}}
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._deny_ingress(name, "nvidia-device-plugin", "kube-system", platform.selector("gpu", "nvidia-device-plugin"), labels)

    def _deny_ingress(self, name: str, role: str, namespace: str, selector: dict[str, str], labels: dict[str, str]) -> None:
        """Nothing connects to these pods (the kubelet's probes are not subject to policies)."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-{role}-ingress",
            metadata={"name": f"{role}-deny-ingress", "namespace": namespace, "labels": labels},
            spec={"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
            opts=pulumi.ResourceOptions(parent=self),
        )
