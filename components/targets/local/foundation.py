"""The local target's foundation: a kind cluster (or an adopted or render-only one), and the
bundled or external object store, database and registry (mlplane.targets.foundation)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mlplane.backing.database import Database, DatabaseArgs
from mlplane.backing.object_storage import S3_PORT, SERVICE as S3_SERVICE, ObjectStorage, ObjectStorageArgs
from mlplane.config import PlatformConfig
from mlplane.core import kube
from mlplane.services.routing import Exposure
from mlplane.targets.local.cluster import Cluster, ClusterArgs
from mlplane.targets.local.registry import Registry, RegistryArgs, registry_egress


class LocalFoundation:
    """Children of the Platform (``<name>-cluster``, ``<name>-kubernetes``, and the backing
    services it asks for), exactly as the Platform created them before targets had a seam."""

    exposure: Exposure | None = None

    def __init__(self, name: str, config: PlatformConfig, protect: bool, parent: pulumi.Resource):
        self._config = config
        child = pulumi.ResourceOptions(parent=parent)
        self.cluster = Cluster(
            f"{name}-cluster",
            ClusterArgs(config=config.cluster, platform_name=config.name, registry=config.registry, protect=protect),
            child,
        )
        self.provider = k8s.Provider(f"{name}-kubernetes", **self.cluster.provider_args(), opts=child)
        self.kubeconfig = self.cluster.kubeconfig
        self.context = self.cluster.context
        self.http_port = config.cluster.kind.http_port
        self.storage_in_cluster = config.object_storage.mode == "bundled"
        self.registry_insecure = config.registry.mode == "bundled"
        #: kind's nodes (or an adopted cluster's) are not split into groups: no placement.
        self.placement: kube.NodePlacement | None = None

    def install(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> None:
        """Nothing: kind's default StorageClass and its one node need no add-ons."""

    def object_storage(
        self, name: str, platform: kube.Platform, gateway: kube.GatewayRef, opts: pulumi.ResourceOptions
    ) -> ObjectStorage:
        return ObjectStorage(name, ObjectStorageArgs(config=self._config.object_storage, platform=platform, gateway=gateway), opts)

    def database(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> Database:
        return Database(name, DatabaseArgs(config=self._config.database, platform=platform), opts)

    def registry(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> Registry:
        return Registry(name, RegistryArgs(config=self._config.registry, platform=platform, cluster=self.cluster), opts)

    def registry_egress(self) -> dict[str, Any] | None:
        return registry_egress(self._config) if self._config.registry.mode == "bundled" else None

    def s3_egress(self, platform: kube.Platform) -> dict[str, Any]:
        """SeaweedFS's S3 port in the storage namespace, nothing else."""
        return {
            "to": [kube.pods_peer(f"{platform.name}-storage", platform.selector("storage", S3_SERVICE))],
            "ports": kube.tcp(S3_PORT),
        }
