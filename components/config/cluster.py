"""The config of the local target: the cluster (kind, existing, render) and the registry (bundled or external)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlplane.config import versions
from mlplane.config.scalars import ConfigKey, DnsLabel, KubernetesMinor, Port
from mlplane.config.blocks import _Model


class KindClusterConfig(_Model):
    """A kind cluster created and deleted by the stack."""

    name: DnsLabel = Field(default="mlplane", description="Name of the kind cluster.")
    kubernetes_version: KubernetesMinor = Field(
        default=versions.DEFAULT_KUBERNETES,
        description="Kubernetes minor of the node image (the pinned kind node image for it).",
    )
    http_port: Port = Field(
        default=80,
        description="Host port on 127.0.0.1 that reaches the platform Gateway (HTTP).",
    )


class ExistingClusterConfig(_Model):
    """A cluster that already exists and is adopted, not created."""

    kubeconfig: str = Field(
        default="~/.kube/config", description="Path of the kubeconfig file to read."
    )
    context: str = Field(description="Kubeconfig context to use (required: never the ambient one).")


class RenderClusterConfig(_Model):
    """No cluster: the Kubernetes provider writes manifests to a directory (`pulumi up` renders)."""

    directory: str = Field(
        description="Directory the Kubernetes provider writes manifests into (render_yaml_to_directory)."
    )


class ClusterConfig(_Model):
    """Where the platform runs."""

    mode: Literal["kind", "existing", "render"] = Field(
        default="kind",
        description=(
            "'kind' creates a local kind cluster; 'existing' adopts a cluster from a kubeconfig; "
            "'render' writes manifests to a directory instead of applying them."
        ),
    )
    kind: KindClusterConfig = Field(
        default_factory=KindClusterConfig, description="Settings for mode 'kind'."
    )
    existing: ExistingClusterConfig | None = Field(
        default=None, description="Settings for mode 'existing' (required there)."
    )
    render: RenderClusterConfig | None = Field(
        default=None, description="Settings for mode 'render' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> ClusterConfig:
        if self.mode == "existing" and self.existing is None:
            raise ValueError("mode 'existing' needs an 'existing' block with at least 'context'")
        if self.mode == "render" and self.render is None:
            raise ValueError("mode 'render' needs a 'render' block with 'directory'")
        if self.mode != "existing" and self.existing is not None:
            raise ValueError(f"'existing' is only used with mode 'existing' (mode is '{self.mode}')")
        if self.mode != "render" and self.render is not None:
            raise ValueError(f"'render' is only used with mode 'render' (mode is '{self.mode}')")
        return self


class BundledRegistryConfig(_Model):
    """A registry container on Docker, on kind's network."""

    host_port: Port = Field(
        default=5001, description="Port on 127.0.0.1 where the host pushes images (localhost:PORT)."
    )
    auth_port: Port = Field(
        default=5002,
        description=(
            "Port of the registry's token server: published on 127.0.0.1 and reached as "
            "'<cluster>-registry-auth:PORT' on kind's network (the token realm); see "
            "docs/components/registry.md for the host name a host push needs."
        ),
    )
    network_cidr: str = Field(
        default="172.18.0.0/16",
        description=(
            "IPv4 subnet of kind's Docker network 'kind' (`docker network inspect kind`): team "
            "pods may reach the registry and its token server there and nowhere else on those "
            "ports. Docker picks it when kind creates the network; 172.18.0.0/16 is the first "
            "subnet after Docker's own bridge."
        ),
    )

    @field_validator("network_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            raise ValueError(f"must be an IPv4 network such as '172.18.0.0/16', got '{value}'") from None
        if network.prefixlen < 8:
            raise ValueError(f"'{value}' is wider than a /8: give the kind network's own subnet")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> BundledRegistryConfig:
        if self.auth_port == self.host_port:
            raise ValueError(f"auth_port {self.auth_port} is also host_port: give the token server its own port")
        return self


class ExternalRegistryConfig(_Model):
    """An existing container registry."""

    url: str = Field(
        description="Registry host and optional path images are pushed to and pulled from, e.g. 'ghcr.io/acme'."
    )
    pull_secret_key: ConfigKey | None = Field(
        default=None,
        description=(
            "Secret config key holding a Docker config JSON for pulling from this registry. "
            "Default: none (anonymous pulls)."
        ),
    )


class RegistryConfig(_Model):
    """The container image registry."""

    mode: Literal["bundled", "external"] = Field(
        default="bundled",
        description="'bundled' runs a registry container next to kind; 'external' uses an existing registry.",
    )
    bundled: BundledRegistryConfig = Field(
        default_factory=BundledRegistryConfig, description="Settings for mode 'bundled'."
    )
    external: ExternalRegistryConfig | None = Field(
        default=None, description="Settings for mode 'external' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> RegistryConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError("mode 'external' needs an 'external' block with 'url'")
        if self.mode == "bundled" and self.external is not None:
            raise ValueError("'external' is only used with mode 'external' (mode is 'bundled')")
        return self
