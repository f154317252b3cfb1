"""The seam between the platform and where it runs: a target's foundation.

A foundation gives the :class:`mlplane.platform.Platform` the cluster (its Kubernetes provider and
kubeconfig), how the Gateway is exposed, and the backing services that differ per target (object
storage, database, registry), each with the attributes the services consume. The Platform
composes the same services on any foundation; no service asks which target it runs on.

- ``local`` (:mod:`mlplane.targets.local.foundation`): a kind cluster (or an adopted one), the
  bundled or external SeaweedFS, PostgreSQL and registry.
- ``aws`` (:mod:`mlplane.targets.aws.foundation`): a VPC, EKS, S3, RDS and ECR.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from mlplane.core import kube
from mlplane.services.routing import Exposure


class Foundation(Protocol):
    #: The one Kubernetes provider every component uses (child ``<platform>-kubernetes``).
    provider: k8s.Provider
    #: The admin kubeconfig (secret; None for a render-only cluster) and its context.
    kubeconfig: pulumi.Output[str] | None
    context: str | None
    #: The port UI URLs name (the host port kind maps; 80 elsewhere).
    http_port: int
    #: How the Gateway's Envoy Service is reached (None: the NodePort kind maps).
    exposure: Exposure | None
    #: The object store runs in the platform's ``<name>-storage`` namespace (team Roles go there).
    storage_in_cluster: bool
    #: Registry pushes from pods go over plain HTTP (the bundled registry on kind's network).
    registry_insecure: bool
    #: Node groups pods are pinned to (kube.Platform.placement); None: no groups (local).
    placement: kube.NodePlacement | None

    def install(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> None:
        """What the cluster runs before the services (StorageClass, autoscaler...), if anything."""

    def object_storage(self, name: str, platform: kube.Platform, gateway: kube.GatewayRef, opts: pulumi.ResourceOptions) -> Any:
        """The object store: the attributes of :class:`mlplane.backing.object_storage.ObjectStorage`."""

    def database(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> Any:
        """MLflow's PostgreSQL: the attributes of :class:`mlplane.backing.database.Database`."""

    def registry(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> Any:
        """The image registry: the attributes of :class:`mlplane.targets.local.registry.Registry`."""

    def registry_egress(self) -> dict[str, Any] | None:
        """The NetworkPolicy egress rule CI job pods reach the registry with (None: no rule)."""

    def s3_egress(self, platform: kube.Platform) -> dict[str, Any]:
        """The NetworkPolicy egress rule job pods reach the object store's S3 API with."""
