"""The platform object: every section of `mlplane:platform` and the rules across them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, Strict, model_validator

from mlplane.config.upgrades import CONFIG_VERSION, check_version
from mlplane.config.scalars import DnsLabel
from mlplane.config.blocks import _Model, ImagesConfig, LifecycleConfig
from mlplane.config.aws import AwsConfig
from mlplane.config.cluster import ClusterConfig, RegistryConfig
from mlplane.config.routing import RoutingConfig
from mlplane.config.backing import DatabaseConfig, ObjectStorageConfig
from mlplane.config.tracking import TrackingConfig
from mlplane.config.ci_runners import CiRunnersConfig
from mlplane.config.serving import ServingConfig
from mlplane.config.monitoring import MonitoringConfig


class PlatformConfig(_Model):
    """An mlplane platform: the value of the `mlplane:platform` stack config key."""

    version: Annotated[int, Strict(), AfterValidator(check_version)] = Field(
        default=CONFIG_VERSION,
        description=(
            "Version of the config schema. Omitted: 1, so configs written before the field existed "
            "stay valid. A release that changes the schema incompatibly raises it (docs/upgrading.md)."
        ),
    )
    target: Literal["local", "aws"] = Field(
        default="local",
        description=(
            "Where the platform runs. 'local': kind and Docker on this machine (or an existing cluster); "
            "'aws': EKS with S3, RDS and ECR (the 'aws' block; docs/aws.md)."
        ),
    )
    aws: AwsConfig | None = Field(default=None, description="Settings of target 'aws' (required there).")
    name: DnsLabel = Field(
        default="mlplane",
        description="Platform name: prefix of namespaces, resource names and the root component.",
        max_length=30,
    )
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Where the platform runs.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Container image registry.")
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Gateway API routing to the UIs.")
    object_storage: ObjectStorageConfig = Field(
        default_factory=ObjectStorageConfig, description="S3-compatible object storage."
    )
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="PostgreSQL for MLflow.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking server.")
    ci_runners: CiRunnersConfig = Field(
        default_factory=CiRunnersConfig, description="GitHub Actions runners inside the platform."
    )
    serving: ServingConfig = Field(default_factory=ServingConfig, description="Model serving.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Monitoring.")
    images: ImagesConfig = Field(default_factory=ImagesConfig, description="Image sources.")
    lifecycle: LifecycleConfig = Field(
        default_factory=LifecycleConfig, description="Protection of stateful resources."
    )

    @model_validator(mode="after")
    def _gpu_models(self) -> PlatformConfig:
        """A model asking for GPUs needs nodes that have them: the AWS GPU group, or an adopted
        cluster's own GPU nodes (kind has none)."""
        for index, model in enumerate(self.serving.models):
            if not model.gpus:
                continue
            where = f"serving.models[{index}].gpus: model '{model.name}' requests {model.gpus} GPU(s)"
            if self.target == "local" and self.cluster.mode == "kind":
                raise ValueError(f"{where}, but a kind cluster has no GPUs: set gpus 0, or use cluster.mode 'existing' or target 'aws'")
            aws = self.aws
            if self.target == "aws" and aws is not None and aws.eks.mode == "create" and not aws.eks.node_groups.gpu.enabled:
                raise ValueError(f"{where}, but the cluster has no GPU node group: set aws.eks.node_groups.gpu.enabled true")
        return self

    @model_validator(mode="after")
    def _cross_rules(self) -> PlatformConfig:
        if self.target == "aws":
            return self._aws_rules()
        if self.aws is not None:
            raise ValueError("aws: only used with target 'aws' (target is 'local')")
        if self.registry.mode == "bundled" and self.cluster.mode != "kind":
            raise ValueError(
                "registry.mode 'bundled' runs a Docker container on kind's network and needs "
                f"cluster.mode 'kind' (cluster.mode is '{self.cluster.mode}'): set registry.mode "
                "'external' with registry.external.url"
            )
        tls = self.routing.tls
        if self.cluster.mode == "existing" and tls.certificate_secret is None and not tls.plain_http:
            raise ValueError(
                "routing.tls.certificate_secret: required with cluster.mode 'existing' (its Gateway "
                "NodePort is reachable on every node, and MLflow passwords and model keys would travel "
                f"in clear text): name a Secret of type kubernetes.io/tls in namespace '{self.name}-gateway', "
                "or opt out explicitly with routing.tls.plain_http: true"
            )
        if self.cluster.mode == "kind" and tls.certificate_secret is not None:
            raise ValueError(
                "routing.tls.certificate_secret: a kind cluster maps only the HTTP port to 127.0.0.1 "
                "and serves plain HTTP there; TLS needs cluster.mode 'existing'"
            )
        if self.monitoring.prometheus.route and self.cluster.mode != "kind":
            raise ValueError(
                "monitoring.prometheus.route: Prometheus has no authentication of its own and is "
                f"exposed only on a kind cluster (cluster.mode is '{self.cluster.mode}'): query it "
                "through Grafana or `kubectl port-forward`"
            )
        return self

    def _aws_rules(self) -> PlatformConfig:
        if self.aws is None:
            raise ValueError("target 'aws' needs an 'aws' block with at least 'region'")
        # The name starts AWS resource names; the strictest are RDS's instance, parameter group
        # and final snapshot identifiers (`<name>-mlflow...`: letters, digits or hyphens, a letter
        # first, no two hyphens in a row; RDS API Reference, CreateDBInstance and DeleteDBInstance,
        # as in botocore's rds/2014-10-31/service-2.json). The name has at most 30 characters.
        if not self.name[0].isalpha() or "--" in self.name:
            raise ValueError(
                f"name: '{self.name}' cannot start the names of the AWS resources (the RDS identifier "
                f"'{self.name}-mlflow'): on target 'aws' a name starts with a letter and has no '--'"
            )
        # The local target's sections: on AWS, EKS, S3, RDS and ECR take their place ('aws' block).
        local_only = {
            "cluster": "aws.eks", "registry": "aws.registry",
        }
        for section, instead in local_only.items():
            if section in self.model_fields_set:
                raise ValueError(f"{section}: not used with target 'aws' (set {instead} instead)")
        for section, instead in (("object_storage", "aws.storage"), ("database", "aws.database")):
            given = getattr(self, section)
            if given.mode != "bundled" or {"bundled", "external", "mode"} & given.model_fields_set:
                raise ValueError(
                    f"{section}.mode: target 'aws' uses the managed service (set {instead} instead of "
                    f"'mode', 'bundled' or 'external')"
                )
        tls = self.routing.tls
        if self.aws.routing.certificate_arn is None and tls.certificate_secret is None and not tls.plain_http:
            raise ValueError(
                "aws.routing.certificate_arn: target 'aws' serves MLflow passwords and model keys over the "
                "load balancer: give an ACM certificate ARN, or routing.tls.certificate_secret (a Secret of "
                f"type kubernetes.io/tls in namespace '{self.name}-gateway'), or opt out explicitly with "
                "routing.tls.plain_http: true"
            )
        if self.aws.routing.certificate_arn is not None and tls.certificate_secret is not None:
            raise ValueError(
                "aws.routing.certificate_arn and routing.tls.certificate_secret: choose one place TLS ends "
                "(the load balancer with ACM, or the Gateway with a Secret)"
            )
        if self.monitoring.prometheus.route:
            raise ValueError(
                "monitoring.prometheus.route: Prometheus has no authentication of its own and is exposed "
                "only on a kind cluster (target is 'aws'): query it through Grafana or `kubectl port-forward`"
            )
        return self

    @property
    def prometheus_route(self) -> bool:
        """Whether Prometheus gets a route on the Gateway (monitoring.prometheus.route)."""
        route = self.monitoring.prometheus.route
        if self.target != "local":
            return False
        return self.cluster.mode == "kind" if route is None else route

    def secret_keys(self) -> list[tuple[str, str]]:
        """Every secret config key the config names, as (field path, key)."""
        found: list[tuple[str, str]] = []

        def walk(node: Any, path: str) -> None:
            if isinstance(node, BaseModel):
                for field_name in type(node).model_fields:
                    walk(getattr(node, field_name), f"{path}.{field_name}" if path else field_name)
            elif isinstance(node, list):
                for index, item in enumerate(node):
                    walk(item, f"{path}[{index}]")
            elif isinstance(node, str) and path.endswith("_key"):
                found.append((path, node))

        walk(self, "")
        return found
