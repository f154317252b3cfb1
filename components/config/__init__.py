"""The one typed config of an mlplane platform.

Everything a stack can set lives in this module as a pydantic model tree. The stack program reads
the ``mlplane:platform`` config object, validates it here once (before any resource is
registered) and hands the frozen models to the components; components never read
``pulumi.Config`` themselves.

Conventions:
- every model forbids unknown keys and is frozen;
- every field has a description and a default (or is explicitly required);
- cross-field rules live in ``model_validator``s and name the fields they relate;
- secrets are never written into this config: fields ending in ``_key`` name a *secret* Pulumi
  config key (``pulumi config set --secret mlplane:<key> ...``) that holds the value.

The models are split by section, one module each: ``scalars`` (validated strings and quantities),
``blocks`` (the base model, resources, images, lifecycle), ``cluster`` (cluster and registry),
``routing``, ``backing`` (object store, database), ``tracking``, ``ci_runners``, ``serving``,
``monitoring``, ``platform`` (the ``mlplane:platform`` object) and ``errors`` (messages and
``parse_platform``); ``keys`` holds every stack config key, ``team`` the ``mlplane:team`` object,
``upgrades`` the config versions. This package re-exports the models and helpers, so
``from mlplane.config import PlatformConfig`` keeps working.
"""

from __future__ import annotations

from mlplane.config import versions
from mlplane.config.upgrades import CONFIG_VERSION, check_version
from mlplane.config.scalars import (
    BucketName,
    ChartKey,
    ConfigKey,
    Cpu,
    cpu_millicores,
    DnsLabel,
    DnsName,
    Duration,
    duration_seconds,
    KubernetesMinor,
    Memory,
    memory_bytes,
    Port,
    project_path,
    RegistryHost,
    Storage,
)
from mlplane.config.blocks import (
    Amounts,
    ImagesConfig,
    LifecycleConfig,
    Resources,
    resources,
)
from mlplane.config.aws import (
    AwsConfig,
    AwsNetworkConfig,
    AwsRoutingConfig,
    AwsStorageConfig,
    EcrConfig,
    EksConfig,
    ExistingEksConfig,
    ExistingNetworkConfig,
    GpuNodeGroupConfig,
    NodeGroupConfig,
    NodeGroupsConfig,
    RdsConfig,
)
from mlplane.config.cluster import (
    BundledRegistryConfig,
    ClusterConfig,
    ExistingClusterConfig,
    ExternalRegistryConfig,
    KindClusterConfig,
    RegistryConfig,
    RenderClusterConfig,
)
from mlplane.config.routing import (
    RoutingConfig,
    TlsCertificateConfig,
    TlsConfig,
    WildcardHost,
)
from mlplane.config.backing import (
    BundledDatabaseConfig,
    BundledObjectStoreConfig,
    DatabaseConfig,
    ExternalDatabaseConfig,
    ExternalObjectStoreConfig,
    ObjectStorageConfig,
    ObjectStoreBuckets,
)
from mlplane.config.tracking import (
    TrackingConfig,
)
from mlplane.config.ci_runners import (
    CiRunnersConfig,
    GitHubAppCredentials,
    RepositoryVisibility,
    RUNNER_GROUP_DOCS,
    runner_scope_problem,
)
from mlplane.config.serving import (
    CanaryConfig,
    CanaryThresholds,
    DriftConfig,
    DriftThresholds,
    InferenceLoggingConfig,
    JwtConfig,
    MetricsServerConfig,
    MODEL_NAME_MAX,
    ModelAuthConfig,
    ModelConfig,
    ModelRef,
    PinnedImage,
    ProgressiveDeliveryConfig,
    RESERVED_HOST_PREFIXES,
    ServingConfig,
)
from mlplane.config.monitoring import (
    AlertsConfig,
    GrafanaConfig,
    MonitoringConfig,
    PrometheusConfig,
)
from mlplane.config.platform import (
    PlatformConfig,
)
from mlplane.config.errors import (
    ConfigError,
    format_errors,
    parse_platform,
)
from mlplane.config.keys import (
    NAMESPACE,
    NO_PLATFORM_HINT,
    NO_PLATFORM_HOW,
    unknown_stack_keys,
)

__all__ = [
    "AwsConfig",
    "AwsNetworkConfig",
    "AwsRoutingConfig",
    "AwsStorageConfig",
    "EcrConfig",
    "EksConfig",
    "ExistingEksConfig",
    "ExistingNetworkConfig",
    "GpuNodeGroupConfig",
    "NodeGroupConfig",
    "NodeGroupsConfig",
    "RdsConfig",
    "versions",
    "CONFIG_VERSION",
    "check_version",
    "BucketName",
    "ChartKey",
    "ConfigKey",
    "Cpu",
    "cpu_millicores",
    "DnsLabel",
    "DnsName",
    "Duration",
    "duration_seconds",
    "KubernetesMinor",
    "Memory",
    "memory_bytes",
    "Port",
    "project_path",
    "RegistryHost",
    "Storage",
    "Amounts",
    "ImagesConfig",
    "LifecycleConfig",
    "Resources",
    "resources",
    "BundledRegistryConfig",
    "ClusterConfig",
    "ExistingClusterConfig",
    "ExternalRegistryConfig",
    "KindClusterConfig",
    "RegistryConfig",
    "RenderClusterConfig",
    "RoutingConfig",
    "TlsCertificateConfig",
    "TlsConfig",
    "WildcardHost",
    "BundledDatabaseConfig",
    "BundledObjectStoreConfig",
    "DatabaseConfig",
    "ExternalDatabaseConfig",
    "ExternalObjectStoreConfig",
    "ObjectStorageConfig",
    "ObjectStoreBuckets",
    "TrackingConfig",
    "CiRunnersConfig",
    "GitHubAppCredentials",
    "RepositoryVisibility",
    "RUNNER_GROUP_DOCS",
    "runner_scope_problem",
    "CanaryConfig",
    "CanaryThresholds",
    "DriftConfig",
    "DriftThresholds",
    "InferenceLoggingConfig",
    "JwtConfig",
    "MetricsServerConfig",
    "MODEL_NAME_MAX",
    "ModelAuthConfig",
    "ModelConfig",
    "ModelRef",
    "PinnedImage",
    "ProgressiveDeliveryConfig",
    "RESERVED_HOST_PREFIXES",
    "ServingConfig",
    "AlertsConfig",
    "GrafanaConfig",
    "MonitoringConfig",
    "PrometheusConfig",
    "PlatformConfig",
    "ConfigError",
    "format_errors",
    "parse_platform",
    "NAMESPACE",
    "NO_PLATFORM_HINT",
    "NO_PLATFORM_HOW",
    "unknown_stack_keys",
]
