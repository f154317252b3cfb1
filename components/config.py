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
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from . import versions
from .config_upgrades import CONFIG_VERSION, check_version

# --------------------------------------------------------------------------------------------
# Scalar types
# --------------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CPU = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>m?)$")
_MEMORY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_MEMORY_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters"
        )
    return value


def _dns_name(value: str) -> str:
    if len(value) > 253 or not _DNS_NAME.match(value):
        raise ValueError("must be a DNS-1123 subdomain such as 'mlplane.localhost'")
    return value


def _config_key(value: str) -> str:
    if not _CONFIG_KEY.match(value):
        raise ValueError(
            "must name a Pulumi config key in the 'mlplane' namespace, such as 'githubToken' "
            "(letters, digits and '_', starting with a letter)"
        )
    return value


def _bucket(value: str) -> str:
    if not _BUCKET.match(value) or ".." in value:
        raise ValueError(
            "must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting "
            "and ending with a letter or digit"
        )
    return value


def cpu_millicores(value: str) -> int:
    """Parse a Kubernetes CPU quantity ('250m', '0.5', '2') into millicores."""
    match = _CPU.match(value)
    if not match:
        raise ValueError("must be a CPU quantity such as '250m', '0.5' or '2'")
    number = Decimal(match["num"])
    return int(number if match["unit"] == "m" else number * 1000)


def memory_bytes(value: str) -> int:
    """Parse a Kubernetes memory quantity ('512Mi', '1Gi', '1G') into bytes."""
    match = _MEMORY.match(value)
    if not match:
        raise ValueError("must be a memory quantity such as '256Mi', '1Gi' or '500M'")
    return int(Decimal(match["num"]) * _MEMORY_FACTORS[match["unit"]])


_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as '30s' or '5m' (the config's Duration format)."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match[1]) * _DURATION_SECONDS[match[2]]


def _cpu(value: str) -> str:
    cpu_millicores(value)
    return value


def _memory(value: str) -> str:
    memory_bytes(value)
    return value


def _storage(value: str) -> str:
    if memory_bytes(value) <= 0:
        raise ValueError("must be a storage size above zero, such as '1Gi'")
    return value


_REGISTRY_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")


def _registry_host(value: str) -> str:
    if not _REGISTRY_HOST.match(value):
        raise ValueError(
            "must be a registry host with an optional port and path, without a scheme, such as "
            "'mirror.corp.example/upstream' or 'localhost:5001'"
        )
    return value


def _number_as_text(value: Any) -> Any:
    """Accept 2 or 0.5 for a quantity, as `pulumi config set --path` stores numbers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, "g")
    return value


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError("must be a duration such as '30s', '5m', '7d'")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
ConfigKey = Annotated[str, AfterValidator(_config_key)]
BucketName = Annotated[str, AfterValidator(_bucket)]
Cpu = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_cpu)]
Memory = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_memory)]
Storage = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_storage)]
Duration = Annotated[str, AfterValidator(_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
RegistryHost = Annotated[str, AfterValidator(_registry_host)]
#: The Helm charts mlplane installs (keys of versions.CHARTS).
ChartKey = Literal["envoy-gateway", "arc-controller", "arc-scale-set"]


def project_path(value: str) -> Path:
    """A path from the config: relative ones are relative to the project directory (the nearest
    directory holding Pulumi.yaml, from the working directory up), as the engine and CLI see it."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    here = Path.cwd().resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate / path
    return here / path


def _minor_version_text(value: Any) -> Any:
    """Accept an unquoted ``1.35`` (YAML reads it as a float) when the float keeps every digit.

    ``1.30`` reads as the float 1.3, which no longer names the version: that is explained instead
    of guessed.
    """
    if isinstance(value, float):
        text = repr(value)
        if text in versions.SUPPORTED_KUBERNETES:
            return text
        raise ValueError(
            f"YAML read an unquoted number here ({text}), and a number drops trailing zeros "
            "(1.30 reads as 1.3): write the version in quotes, one of "
            + ", ".join(f"'{v}'" for v in versions.SUPPORTED_KUBERNETES)
        )
    return value


KubernetesMinor = Annotated[
    Literal["1.34", "1.35", "1.36", "1.37"], BeforeValidator(_minor_version_text)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------------


class Amounts(_Model):
    """A CPU and memory amount."""

    cpu: Cpu = Field(description="CPU quantity, e.g. '100m'.")
    memory: Memory = Field(description="Memory quantity, e.g. '256Mi'.")


class Resources(_Model):
    """Requests and limits of one container. mlplane sets both on every workload."""

    requests: Amounts = Field(description="What the scheduler reserves for the container.")
    limits: Amounts = Field(description="The most the container may use.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        if cpu_millicores(self.requests.cpu) > cpu_millicores(self.limits.cpu):
            raise ValueError(
                f"requests.cpu ({self.requests.cpu}) is above limits.cpu ({self.limits.cpu}); "
                "requests must not exceed limits"
            )
        if memory_bytes(self.requests.memory) > memory_bytes(self.limits.memory):
            raise ValueError(
                f"requests.memory ({self.requests.memory}) is above limits.memory "
                f"({self.limits.memory}); requests must not exceed limits"
            )
        return self


def resources(req_cpu: str, req_mem: str, lim_cpu: str, lim_mem: str) -> Any:
    """A default factory for a :class:`Resources` field."""
    return lambda: Resources(
        requests=Amounts(cpu=req_cpu, memory=req_mem),
        limits=Amounts(cpu=lim_cpu, memory=lim_mem),
    )


class ImagesConfig(_Model):
    """Where container images come from."""

    registry_mirror: RegistryHost | None = Field(
        default=None,
        description=(
            "Pull every platform image through this registry host (and optional path) instead "
            "of its upstream registry, e.g. 'mirror.corp.example/upstream' for air-gapped "
            "installs. The repository path and pinned tag are kept. Default: upstream registries."
        ),
    )
    chart_mirror: RegistryHost | None = Field(
        default=None,
        description=(
            "Pull the Helm charts (Envoy Gateway, ARC) from this OCI registry host (and optional "
            "path) instead of their upstream registries, e.g. 'mirror.corp.example/charts'. The "
            "repository path and pinned version are kept. Default: upstream registries."
        ),
    )
    chart_paths: dict[ChartKey, str] = Field(
        default_factory=dict,
        description=(
            "Install these charts from a local chart directory or `.tgz` archive instead of a "
            "registry, for air-gapped clusters: chart key (`envoy-gateway`, `arc-controller`, "
            "`arc-scale-set`) -> path, relative to the project directory (the one holding "
            "Pulumi.yaml) or absolute. It must exist; use the version pinned in versions.py. "
            "Default: none (charts come from their registry or `chart_mirror`)."
        ),
    )
    lock_file: str | None = Field(
        default=None,
        description=(
            "Image lock written by `mlplane images lock` (path relative to the project "
            "directory, e.g. 'stacks/images.local.lock.json'). Locked images are pulled as "
            "`image:tag@sha256:...`, and those workloads no longer need the CKV_K8S_43 "
            "exception. A lock whose entries name other tags or another mirror than the stack "
            "uses is rejected: run `mlplane images lock` again. Default: images by tag."
        ),
    )
    _lock: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _local_sources(self) -> ImagesConfig:
        problems = []
        for key, value in self.chart_paths.items():
            if not str(value).strip():
                problems.append(f"chart_paths.{key}: must be a path (given: {value!r})")
            elif not project_path(value).exists():
                problems.append(f"chart_paths.{key}: {value} does not exist (resolved: {project_path(value)})")
        if problems:
            raise ValueError("; ".join(problems))
        if self.lock_file is not None:
            from .image_lock import LockError, read_lock

            try:
                self._lock = read_lock(project_path(self.lock_file), self.registry_mirror, self.chart_mirror)
            except LockError as error:
                raise ValueError(f"lock_file: {error}") from None
        return self

    def locked(self) -> dict[str, Any] | None:
        """The loaded lock (``images`` and ``charts`` entries), or None without ``lock_file``."""
        return self._lock


class LifecycleConfig(_Model):
    """How stateful resources are protected."""

    throwaway: bool = Field(
        default=False,
        description=(
            "A throwaway stack (a laptop or CI sandbox): stateful resources (database, object "
            "store, registry volume, cluster) are neither `protect`ed nor retained on delete, "
            "so `pulumi destroy` removes everything. Default false: stateful resources are "
            "protected and retained on delete."
        ),
    )


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


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


def _wildcard_host(value: str) -> str:
    name = value[2:] if value.startswith("*.") else value
    if len(value) > 253 or not _DNS_NAME.match(name):
        raise ValueError("must be a host name or a wildcard such as '*.vision.example.com'")
    return value


WildcardHost = Annotated[str, AfterValidator(_wildcard_host)]


class TlsCertificateConfig(_Model):
    """One more HTTPS listener on the Gateway: a host name pattern and its certificate."""

    hostname: WildcardHost = Field(
        description=(
            "Host name or wildcard the certificate is for, e.g. '*.vision.example.com' for team "
            "vision's models (a wildcard certificate covers one label only)."
        )
    )
    secret: DnsLabel = Field(
        description="Secret of type kubernetes.io/tls in the gateway namespace holding its certificate and key."
    )


class TlsConfig(_Model):
    """HTTPS on the Gateway, with certificates you bring (docs/components/routing.md)."""

    certificate_secret: DnsLabel | None = Field(
        default=None,
        description=(
            "Secret of type kubernetes.io/tls in the gateway namespace ('<name>-gateway') with the "
            "certificate and key for '*.<domain>' (create it yourself, or let cert-manager write it: "
            "a Certificate whose secretName is this name). Set: HTTPS on port 443 and every plain "
            "HTTP request redirected to HTTPS. Required when cluster.mode is 'existing', unless "
            "plain_http is set."
        ),
    )
    certificates: list[TlsCertificateConfig] = Field(
        default_factory=list,
        description="More HTTPS host names with their own certificates (e.g. '*.<team>.<domain>' for team models).",
    )
    plain_http: bool = Field(
        default=False,
        description=(
            "Explicit opt-out: serve plain HTTP only. MLflow basic auth and model API keys then "
            "travel in clear text; meant for the laptop stack, whose kind cluster binds the "
            "Gateway to 127.0.0.1."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if self.plain_http and (self.certificate_secret or self.certificates):
            raise ValueError("plain_http: true conflicts with certificate_secret/certificates: choose HTTPS or plain HTTP")
        if self.certificates and not self.certificate_secret:
            raise ValueError("certificates need certificate_secret (the certificate for '*.<domain>') too")
        hosts = [c.hostname for c in self.certificates]
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"certificates: a hostname is listed twice ({', '.join(hosts)})")
        return self


class RoutingConfig(_Model):
    """Gateway API routing to every UI (Envoy Gateway)."""

    domain: DnsName = Field(
        default="mlplane.localhost",
        description=(
            "Parent domain of every UI host name (mlflow.<domain>, grafana.<domain>, ...). "
            "Names under '.localhost' resolve to 127.0.0.1 without editing /etc/hosts."
        ),
    )
    controller: Literal["bundled", "existing"] = Field(
        default="bundled",
        description=(
            "'bundled' installs Envoy Gateway (Helm chart, pinned) into the gateway namespace; "
            "'existing' uses an Envoy Gateway (v1.9 or later) already running in the cluster and "
            "creates only the EnvoyProxy, GatewayClass and Gateway."
        ),
    )
    proxy_namespace: DnsLabel | None = Field(
        default=None,
        description=(
            "With controller 'existing': the namespace where that Envoy Gateway runs its Envoy "
            "proxies (its own namespace in the default deploy mode, e.g. 'envoy-gateway-system'); "
            "NetworkPolicies admit Gateway traffic from it and Prometheus scrapes it. Default: "
            "the platform's gateway namespace."
        ),
    )
    controller_resources: Resources = Field(
        default_factory=resources("50m", "96Mi", "500m", "256Mi"),
        description="Requests and limits of the Envoy Gateway controller.",
    )
    proxy_resources: Resources = Field(
        default_factory=resources("50m", "64Mi", "500m", "256Mi"),
        description="Requests and limits of the Gateway's Envoy proxy.",
    )
    shutdown_manager_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "100m", "64Mi"),
        description=(
            "Requests and limits of the shutdown-manager sidecar Envoy Gateway runs next to each "
            "Envoy proxy (it drains connections before the proxy stops)."
        ),
    )

    tls: TlsConfig = Field(
        default_factory=TlsConfig,
        description=(
            "HTTPS on the Gateway. Default: none, which only a kind cluster (Gateway on 127.0.0.1) "
            "accepts; any other cluster needs a certificate or the explicit plain_http opt-out."
        ),
    )

    @model_validator(mode="after")
    def _proxy_namespace(self) -> RoutingConfig:
        if self.proxy_namespace is not None and self.controller != "existing":
            raise ValueError("proxy_namespace is only used with controller 'existing' (the bundled one runs proxies in the gateway namespace)")
        return self


class ObjectStoreBuckets(_Model):
    """Bucket names."""

    artifacts: BucketName = Field(
        default="mlplane-artifacts", description="MLflow artifacts (runs, logged models)."
    )
    datasets: BucketName = Field(default="mlplane-datasets", description="Training and evaluation data.")
    models: BucketName = Field(default="mlplane-models", description="Exported and packaged models.")

    @model_validator(mode="after")
    def _distinct(self) -> ObjectStoreBuckets:
        names = [self.artifacts, self.datasets, self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"bucket names must be distinct, got {names}")
        return self


class BundledObjectStoreConfig(_Model):
    """A single-node SeaweedFS S3 store inside the cluster."""

    storage_size: Storage = Field(default="10Gi", description="Size of the data volume.")
    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "128Mi"),
        description=(
            "Requests and limits of the Job that creates the buckets and the S3 identities with "
            "`weed shell` (it runs once per change, then completes)."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("50m", "128Mi", "1", "512Mi"),
        description="Requests and limits of the SeaweedFS server.",
    )


class ExternalObjectStoreConfig(_Model):
    """An existing S3-compatible endpoint whose buckets already exist."""

    endpoint: str = Field(
        description="S3 endpoint URL, e.g. 'https://s3.eu-west-1.amazonaws.com'.",
        pattern=r"^https?://[^\s/]+(/.*)?$",
    )
    region: str = Field(default="us-east-1", description="Region sent with S3 requests.")
    access_key_id_key: ConfigKey = Field(
        description="Secret config key holding the access key id MLflow uses."
    )
    secret_access_key_key: ConfigKey = Field(
        description="Secret config key holding the secret access key MLflow uses."
    )


class ObjectStorageConfig(_Model):
    """Object storage for artifacts, datasets and models."""

    mode: Literal["bundled", "external"] = Field(
        default="bundled", description="'bundled' runs SeaweedFS in the cluster; 'external' uses an existing S3 endpoint."
    )
    buckets: ObjectStoreBuckets = Field(
        default_factory=ObjectStoreBuckets, description="Bucket names (created when bundled)."
    )
    bundled: BundledObjectStoreConfig = Field(
        default_factory=BundledObjectStoreConfig, description="Settings for mode 'bundled'."
    )
    external: ExternalObjectStoreConfig | None = Field(
        default=None, description="Settings for mode 'external' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> ObjectStorageConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError("mode 'external' needs an 'external' block with 'endpoint' and credential keys")
        if self.mode == "bundled" and self.external is not None:
            raise ValueError("'external' is only used with mode 'external' (mode is 'bundled')")
        return self


class BundledDatabaseConfig(_Model):
    """A single PostgreSQL instance inside the cluster."""

    storage_size: Storage = Field(default="2Gi", description="Size of the data volume.")
    resources: Resources = Field(
        default_factory=resources("50m", "128Mi", "1", "512Mi"),
        description="Requests and limits of PostgreSQL.",
    )


class ExternalDatabaseConfig(_Model):
    """An existing PostgreSQL server and database."""

    host: str = Field(description="Host name of the PostgreSQL server.", min_length=1)
    port: Port = Field(default=5432, description="Port of the PostgreSQL server.")
    database: str = Field(default="mlflow", description="Database MLflow uses.", min_length=1)
    username: str = Field(default="mlflow", description="Role MLflow connects as.", min_length=1)
    password_key: ConfigKey = Field(description="Secret config key holding the role's password.")
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="require", description="libpq sslmode for the connection."
    )


class DatabaseConfig(_Model):
    """The PostgreSQL database behind MLflow."""

    mode: Literal["bundled", "external"] = Field(
        default="bundled", description="'bundled' runs PostgreSQL in the cluster; 'external' uses an existing server."
    )
    bundled: BundledDatabaseConfig = Field(
        default_factory=BundledDatabaseConfig, description="Settings for mode 'bundled'."
    )
    external: ExternalDatabaseConfig | None = Field(
        default=None, description="Settings for mode 'external' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> DatabaseConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError("mode 'external' needs an 'external' block with 'host' and 'password_key'")
        if self.mode == "bundled" and self.external is not None:
            raise ValueError("'external' is only used with mode 'external' (mode is 'bundled')")
        return self


class TrackingConfig(_Model):
    """The MLflow tracking server and model registry."""

    workers: int = Field(
        default=1, ge=1, le=8, description="uvicorn workers (each needs ~400 MB; 1 fits a laptop)."
    )
    auth: bool = Field(
        default=True,
        description=(
            "MLflow basic auth with a generated admin password (users and permissions stored in "
            "PostgreSQL). Turning it off leaves the tracking server open to anyone who reaches it."
        ),
    )
    exporter_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "100m", "96Mi"),
        description=(
            "Requests and limits of the metrics sidecar that serves the tracking server's "
            "Prometheus metrics without MLflow credentials."
        ),
    )
    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "96Mi"),
        description=(
            "Requests and limits of the Job that creates the read-only MLflow account through "
            "MLflow's auth REST API (only when `auth` is on)."
        ),
    )
    workspaces: bool = Field(
        default=False,
        description=(
            "MLflow workspaces (`--enable-workspaces`, experimental in MLflow): each team stack "
            "gets a workspace only its own account can see. Resources created before stay in the "
            "'default' workspace, which every account may still read (default_permission). "
            "Needed by team environments that use 'tracking'."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("100m", "512Mi", "1", "1536Mi"),
        description="Requests and limits of the tracking server.",
    )


class GitHubAppCredentials(_Model):
    """A GitHub App installed on the organization or repository (recommended)."""

    app_id: int = Field(description="GitHub App id.", gt=0)
    installation_id: int = Field(description="Installation id of the app.", gt=0)
    private_key_key: ConfigKey = Field(description="Secret config key holding the app's PEM private key.")


#: What GitHub calls the visibility of a repository (REST API ``visibility``).
RepositoryVisibility = Literal["private", "internal", "public"]
RUNNER_GROUP_DOCS = "https://docs.github.com/en/actions/how-tos/manage-runners/self-hosted-runners/manage-access"


def runner_scope_problem(
    url: str | None, group: str | None, visibility: str, allow_public: bool
) -> str | None:
    """Why these runners could take jobs from repositories they are not meant for, or None.

    GitHub hands a job to any runner whose scope and labels match: runners registered with an
    organization (or enterprise) URL serve every repository their runner group admits, and the
    Default group admits all of the organization's repositories (forks' pull requests of public
    ones included). So: a repository URL, or an organization URL plus a dedicated runner group.
    mlplane cannot look the group's repository access or a repository's visibility up offline:
    the group's access is set in GitHub, the visibility is declared here (see
    docs/components/ci-runners.md, "Who can run jobs on the runners").
    """
    if url is None:
        return None
    parts = url.rstrip("/").split("/")[3:]
    enterprise = parts[0] == "enterprises"
    repository = len(parts) == 2 and not enterprise
    if not repository and group is None:
        scope = "an enterprise" if enterprise else "an organization"
        return (
            f"github_config_url '{url}' is {scope} URL and runner_group is not set: every repository "
            "in its Default runner group (forks' pull requests of public ones included) could run "
            "jobs on these runners. Allowed: a repository URL (https://github.com/<owner>/<repo>), or "
            "this URL plus runner_group: a group whose repository access (GitHub organization "
            f"settings > Actions > Runner groups; {RUNNER_GROUP_DOCS}) is limited to your repositories"
        )
    if repository and group is not None:
        return (
            f"runner_group '{group}' is set but github_config_url '{url}' is a repository URL: runner "
            "groups exist only for organizations and enterprises. Allowed: remove runner_group, or "
            "use the organization URL (https://github.com/<org>) with it"
        )
    if group is not None and group.strip().lower() == "default":
        return (
            f"runner_group '{group}' is the organization's Default group, which admits every "
            "repository by default. Allowed: a dedicated group whose repository access is limited "
            "to your repositories"
        )
    if visibility == "public" and not allow_public:
        return (
            "repository_visibility is 'public' and allow_public_repository is not set: anyone can "
            "open a pull request from a fork and, once a workflow run is approved, run code on these "
            "runners with their MLflow and registry credentials. Allowed: a private or internal "
            "repository, or allow_public_repository: true to accept that explicitly"
        )
    return None


class CiRunnersConfig(_Model):
    """GitHub Actions Runner Controller with one runner scale set."""

    github_config_url: str | None = Field(
        default=None,
        pattern=r"^https://[^\s/]+/[^\s/]+(/[^\s/]+)?/?$",
        description=(
            "Repository URL the runners register with, e.g. 'https://github.com/acme/models', or an "
            "organization URL ('https://github.com/acme') together with runner_group. Unset: runners are off."
        ),
    )
    github_app: GitHubAppCredentials | None = Field(
        default=None, description="Authenticate as a GitHub App (preferred over a token)."
    )
    github_token_key: ConfigKey | None = Field(
        default=None, description="Secret config key holding a personal access token (fine-grained)."
    )
    runner_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Runner group the scale set joins (ARC `runnerGroup`); required with an organization URL. "
            "Limit the group's repository access in GitHub (organization settings > Actions > Runner "
            "groups): mlplane cannot set or check it."
        ),
    )
    repository_visibility: RepositoryVisibility = Field(
        default="private",
        description=(
            "Visibility of the repository (or of the most visible repository the runner group "
            "admits), as declared here: mlplane cannot look it up. 'public' needs allow_public_repository."
        ),
    )
    allow_public_repository: bool = Field(
        default=False,
        description="Explicit opt-in to runners serving a public repository (fork pull requests can reach them).",
    )
    runner_labels: list[DnsLabel] = Field(
        default_factory=lambda: ["mlplane"],
        description="Name of the scale set; workflows select it with `runs-on: <first label>`.",
        min_length=1,
        max_length=1,
    )
    min_runners: int = Field(default=0, ge=0, description="Idle runners kept warm (0 scales to zero).")
    max_runners: int = Field(default=3, ge=1, le=100, description="Most runners at once.")
    container_mode: Literal["kubernetes-novolume", "kubernetes", "dind"] = Field(
        default="kubernetes-novolume",
        description=(
            "How job containers run: 'kubernetes-novolume' and 'kubernetes' run them as pods "
            "(no privilege); 'dind' adds a privileged Docker sidecar and needs "
            "allow_privileged_runners."
        ),
    )
    allow_privileged_runners: bool = Field(
        default=False,
        description="Explicit opt-out of Pod Security 'restricted' for the runner namespace (needed by 'dind').",
    )
    runner_resources: Resources = Field(
        default_factory=resources("250m", "512Mi", "2", "4Gi"),
        description="Requests and limits of each runner pod (counted when runners are busy).",
    )
    controller_resources: Resources = Field(
        default_factory=resources("20m", "64Mi", "250m", "256Mi"),
        description="Requests and limits of the ARC controller (and the scale set listener).",
    )
    job_resources: Resources = Field(
        default_factory=resources("100m", "256Mi", "2", "4Gi"),
        description=(
            "Requests and limits of what runs a job's steps next to a busy runner: the job pod "
            "in the 'kubernetes' modes, the Docker daemon sidecar in 'dind'."
        ),
    )
    work_volume_size: Storage = Field(
        default="5Gi",
        description=(
            "Size of each runner's work volume in container_mode 'kubernetes' (an ephemeral "
            "PersistentVolumeClaim from the default StorageClass, shared with the job pod)."
        ),
    )
    datasets_access: Literal["read-only", "read-write", "none"] = Field(
        default="read-only",
        description=(
            "What job pods (the 'kubernetes' modes) may do in the datasets bucket of a bundled "
            "object store: an S3 identity limited to that bucket, given to them as AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION and MLPLANE_BUCKET, and "
            "egress to the S3 port. 'read-only' (Read, List) is enough for `dvc pull`; 'read-write' "
            "lets every job on these runners also write and delete there (`dvc push`, and the "
            "inference logs the drift check reads); 'none': no identity, no S3 egress. No effect "
            "with external object storage (mlplane cannot create scoped keys there)."
        ),
    )

    @property
    def enabled(self) -> bool:
        return self.github_config_url is not None and (
            self.github_app is not None or self.github_token_key is not None
        )

    @model_validator(mode="after")
    def _rules(self) -> CiRunnersConfig:
        if self.github_app is not None and self.github_token_key is not None:
            raise ValueError("set either 'github_app' or 'github_token_key', not both")
        has_credentials = self.github_app is not None or self.github_token_key is not None
        if has_credentials and self.github_config_url is None:
            raise ValueError("credentials are set but 'github_config_url' is not: set the org or repo URL")
        scope = runner_scope_problem(
            self.github_config_url, self.runner_group, self.repository_visibility, self.allow_public_repository
        )
        if scope:
            raise ValueError(scope)
        if self.min_runners > self.max_runners:
            raise ValueError(
                f"min_runners ({self.min_runners}) is above max_runners ({self.max_runners})"
            )
        if self.container_mode == "dind" and not self.allow_privileged_runners:
            raise ValueError(
                "container_mode 'dind' runs a privileged sidecar: set allow_privileged_runners: "
                "true to opt out of Pod Security 'restricted' explicitly, or use 'kubernetes-novolume'"
            )
        return self


#: Longest model name: it leaves room for the '-canary' suffix in a 63-character object name.
MODEL_NAME_MAX = 56


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _pinned_image(value: str) -> str:
    name, at, digest = value.partition("@")
    if at:
        # repo@sha256:<64 hex> or repo:tag@sha256:<64 hex> (the tag is then informational).
        if not _DIGEST.match(digest) or not name or "@" in digest:
            raise ValueError(
                f"digest '{digest}' is not 'sha256:' followed by 64 lowercase hex digits, "
                "e.g. 'localhost:5001/vision/serve@sha256:<64 hex>'"
            )
        return value
    last = value.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag or tag == "latest":
        raise ValueError(
            "must be an image reference pinned to a tag other than 'latest' or to a digest, "
            "e.g. 'localhost:5001/iris-serving:1.2.0'"
        )
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


#: Host name prefixes the platform's own UIs use on the Gateway (<prefix>.<domain>).
RESERVED_HOST_PREFIXES = ("mlflow", "grafana", "prometheus", "s3")


class ModelRef(_Model):
    """One model version in the MLflow registry: a version number or an alias."""

    version: int | None = Field(default=None, ge=1, description="Registered model version number.")
    alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="Registered model alias, e.g. 'champion'.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of 'version' or 'alias'")
        return self

    @property
    def uri_suffix(self) -> str:
        return f"@{self.alias}" if self.alias else f"/{self.version}"

    @property
    def label(self) -> str:
        return self.alias.lower().replace("_", "-") if self.alias else f"v{self.version}"


class CanaryThresholds(_Model):
    """Limits a progressive canary must stay within at every step (from the Gateway's route stats)."""

    error_rate: float = Field(
        default=0.01, gt=0, le=0.5, description="Highest share of 5xx answers on the model's route (0.01 = 1%)."
    )
    p99_latency_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Highest p99 latency of the model's route, in seconds."
    )
    failed_checks: int = Field(
        default=3, ge=1, le=20,
        description="Failed checks (one per interval) after which the canary is rolled back (Flagger's analysis.threshold).",
    )


class CanaryConfig(ModelRef):
    """A second version receiving a share of the traffic.

    mode 'fixed' (the simple mode): the canary named by version or alias gets `weight` percent of
    the requests until the config changes. mode 'progressive': every change of the model's
    `version` is rolled out by Flagger step by step (`steps`, one per `interval`) while the route's
    error rate and p99 latency stay within `thresholds`, and rolled back automatically when not.
    """

    version: int | None = Field(default=None, ge=1, description="Registered model version number (mode 'fixed').")
    alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="Registered model alias (mode 'fixed').",
    )
    mode: Literal["fixed", "progressive"] = Field(
        default="fixed",
        description=(
            "'fixed': a fixed share of requests goes to the canary version; 'progressive': Flagger "
            "rolls every change of the model's version out step by step and rolls it back on errors "
            "or latency (needs serving.progressive.enabled)."
        ),
    )
    weight: int = Field(default=10, ge=1, le=99, description="Percent of requests sent to the canary (mode 'fixed').")
    image: PinnedImage | None = Field(
        default=None,
        description=(
            "Image the canary runs (it must contain the `mlflow` CLI). Default: the model's image (mode 'fixed')."
        ),
    )
    steps: list[int] = Field(
        default_factory=lambda: [10, 25, 50],
        description="Canary weights in percent, one step per interval, strictly increasing (mode 'progressive').",
    )
    interval: Duration = Field(
        default="1m", description="Time between two steps and two metric checks (mode 'progressive')."
    )
    thresholds: CanaryThresholds = Field(
        default_factory=CanaryThresholds, description="Rollback limits (mode 'progressive')."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryConfig:
        if self.mode == "progressive":
            if self.version is not None or self.alias is not None or self.image is not None:
                raise ValueError(
                    "mode 'progressive' rolls out the model's own 'version': remove the canary's "
                    "version/alias/image and change the model's version instead"
                )
            if not self.steps or any(not 1 <= s <= 99 for s in self.steps) or any(
                b <= a for a, b in zip(self.steps, self.steps[1:])
            ):
                raise ValueError(
                    f"steps {self.steps} must be strictly increasing percentages between 1 and 99, e.g. [10, 25, 50]"
                )
            return self
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of 'version' or 'alias' (or mode: progressive)")
        return self


class InferenceLoggingConfig(_Model):
    """A sample of requests and predictions written to the object store (a logging sidecar)."""

    sample_rate: float = Field(
        gt=0, le=1, description="Share of requests logged with their predictions, e.g. 0.1 for one in ten."
    )
    exclude_fields: list[str] = Field(
        default_factory=list,
        description="Input fields (columns) never logged, e.g. personal data: dropped before anything is written.",
    )
    flush_seconds: int = Field(
        default=60, ge=5, le=3600, description="Most seconds a logged record waits in memory before it is written."
    )
    resources: Resources = Field(
        default_factory=resources("10m", "64Mi", "250m", "128Mi"),
        description="Requests and limits of the logging sidecar (per model replica).",
    )


class DriftThresholds(_Model):
    """When a model counts as drifted."""

    psi: float = Field(
        default=0.2, gt=0, le=10,
        description="Population stability index above which a feature has drifted (0.2 is the usual 'significant shift').",
    )
    share: float = Field(
        default=0.3, gt=0, le=1,
        description="Share of drifted features at or above which the ModelDrift alert fires.",
    )


class DriftConfig(_Model):
    """A scheduled comparison of the logged inputs with the model version's reference dataset."""

    schedule: str = Field(
        default="0 * * * *",
        pattern=r"^(\S+\s+){4}\S+$",
        description="Cron schedule of the drift job (five fields, the cluster's time zone).",
    )
    window: Duration = Field(default="1d", description="How far back the logged requests are compared.")
    reference: str = Field(
        default="reference/data.csv",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\.(csv|parquet)$",
        description=(
            "Artifact path (CSV or Parquet), in the run that created the model version, of the "
            "reference inputs (usually the training or validation set)."
        ),
    )
    min_samples: int = Field(
        default=100, ge=10, le=1_000_000, description="Fewest logged rows in the window for a score."
    )
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds, description="Drift thresholds.")
    resources: Resources = Field(
        default_factory=resources("50m", "256Mi", "1", "1Gi"),
        description="Requests and limits of the drift job while it runs.",
    )


class ModelConfig(ModelRef):
    """A model served from the MLflow registry."""

    name: DnsLabel = Field(description="Name of the deployment, service and route (a DNS label).")
    registered_model: str = Field(
        min_length=1, max_length=256, description="Name of the registered model in MLflow."
    )
    min_replicas: int = Field(default=1, ge=1, le=50, description="Fewest replicas the HPA keeps.")
    max_replicas: int = Field(default=3, ge=1, le=100, description="Most replicas the HPA scales to.")
    target_cpu_utilization: int = Field(
        default=70, ge=10, le=100, description="HPA target: average CPU use in percent of requests."
    )
    workers: int = Field(default=1, ge=1, le=8, description="Scoring server workers per replica.")
    resources: Resources = Field(
        default_factory=resources("100m", "384Mi", "1", "1Gi"),
        description="Requests and limits of each replica.",
    )
    canary: CanaryConfig | None = Field(
        default=None, description="Serve a second version to a share of requests. Default: none."
    )
    logging: InferenceLoggingConfig | None = Field(
        default=None, description="Log a sample of requests and predictions to the object store. Default: off."
    )
    drift: DriftConfig | None = Field(
        default=None, description="Scheduled drift check of the logged inputs (needs 'logging'). Default: off."
    )
    image: PinnedImage | None = Field(
        default=None,
        description=(
            "Image to serve the model with instead of the pinned MLflow image: one built FROM it "
            "with the model's extra Python dependencies and pushed to the platform registry. It "
            "must contain the `mlflow` CLI; pin a tag or digest. Default: the pinned MLflow image."
        ),
    )
    tmp_size: Storage = Field(
        default="2Gi",
        description="Size limit of the /tmp volume the model is downloaded and unpacked into.",
    )
    startup_timeout_seconds: int = Field(
        default=600,
        ge=30,
        le=3600,
        description=(
            "How long a replica may take to download and load the model before it is restarted "
            "(the startup probe's budget)."
        ),
    )

    @model_validator(mode="after")
    def _rules(self) -> ModelConfig:
        if not self.name[0].isalpha() or len(self.name) > MODEL_NAME_MAX:
            raise ValueError(
                f"name '{self.name}' must start with a letter and be at most {MODEL_NAME_MAX} "
                "characters: it names a Service (DNS-1035) and '<name>-canary' objects"
            )
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        if self.canary is not None and self.canary.mode == "fixed" and (self.canary.version, self.canary.alias) == (
            self.version,
            self.alias,
        ):
            raise ValueError("canary must name a different version or alias than the model itself")
        if self.canary is not None and self.canary.mode == "progressive" and self.version is None:
            raise ValueError(
                f"canary mode 'progressive' needs a pinned 'version' (alias '{self.alias}' given): a "
                "rollout starts when the version changes, and an alias moves without any change Flagger sees"
            )
        if self.drift is not None and self.logging is None:
            raise ValueError("drift compares logged requests: set 'logging' (sample_rate) too")
        if self.name in RESERVED_HOST_PREFIXES:
            raise ValueError(
                f"name '{self.name}' is the host name of a platform UI ({self.name}.<domain>); "
                f"choose another (reserved: {', '.join(RESERVED_HOST_PREFIXES)})"
            )
        return self


class MetricsServerConfig(_Model):
    """metrics-server, which feeds the HPAs."""

    enabled: bool = Field(
        default=True, description="Install metrics-server (turn off when the cluster already has one)."
    )
    kubelet_insecure_tls: bool = Field(
        default=True,
        description=(
            "Skip verifying kubelet serving certificates (--kubelet-insecure-tls): needed on kind, "
            "whose kubelets use self-signed certificates. Turn off on clusters whose kubelet "
            "certificates are signed by the cluster CA."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("25m", "48Mi", "250m", "128Mi"),
        description="Requests and limits of metrics-server.",
    )


class JwtConfig(_Model):
    """JSON Web Tokens from your identity provider (Envoy Gateway SecurityPolicy ``jwt``)."""

    issuer: str = Field(description="Expected 'iss' claim, e.g. 'https://login.example.com/'.", min_length=1)
    jwks_uri: str = Field(
        description="HTTPS URL of the issuer's JSON Web Key Set.", pattern=r"^https://[^\s]+$"
    )
    audiences: list[str] = Field(default_factory=list, description="Accepted 'aud' claims (any, when empty).")


class ModelAuthConfig(_Model):
    """Who may call the models through the Gateway."""

    mode: Literal["api-key", "jwt", "none"] = Field(
        default="api-key",
        description=(
            "'api-key': requests carry a generated key in the 'x-api-key' header (the stack "
            "output modelApiKey; a team's in its own output); 'jwt': a bearer token from "
            "'jwt.issuer'; 'none': explicit opt-out, the models are open to anyone who reaches "
            "the Gateway."
        ),
    )
    jwt: JwtConfig | None = Field(default=None, description="The token issuer, with mode 'jwt'.")

    @model_validator(mode="after")
    def _jwt(self) -> ModelAuthConfig:
        if (self.mode == "jwt") != (self.jwt is not None):
            raise ValueError("jwt: set it exactly when mode is 'jwt' (issuer and jwks_uri)")
        return self


class ProgressiveDeliveryConfig(_Model):
    """Flagger, the controller behind canaries in mode 'progressive'."""

    enabled: bool = Field(
        default=False,
        description=(
            "Install Flagger (Gateway API provider) in '<platform>-flagger': it promotes canaries "
            "in mode 'progressive' step by step and rolls them back. Default: off."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("10m", "64Mi", "500m", "256Mi"),
        description="Requests and limits of the Flagger controller.",
    )


class ServingConfig(_Model):
    """Model serving with autoscaling."""

    models: list[ModelConfig] = Field(
        default_factory=list, description="Models to serve, each from a registered model version or alias."
    )
    metrics_server: MetricsServerConfig = Field(
        default_factory=MetricsServerConfig, description="metrics-server settings."
    )
    auth: ModelAuthConfig = Field(
        default_factory=ModelAuthConfig,
        description="Authentication on the model routes (Envoy Gateway SecurityPolicy): API keys by default.",
    )
    progressive: ProgressiveDeliveryConfig = Field(
        default_factory=ProgressiveDeliveryConfig,
        description="Progressive delivery controller (Flagger) for canaries in mode 'progressive'.",
    )

    @model_validator(mode="after")
    def _unique(self) -> ServingConfig:
        for index, model in enumerate(self.models):
            if model.canary is not None and model.canary.mode == "progressive" and not self.progressive.enabled:
                raise ValueError(
                    f"models[{index}] '{model.name}': canary mode 'progressive' needs the Flagger "
                    "controller: set serving.progressive.enabled: true"
                )
        seen: set[str] = set()
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(f"models[{index}].name '{model.name}' is used twice; names must be unique")
            seen.add(model.name)
        for index, model in enumerate(self.models):
            if model.canary is not None and model.canary.mode == "progressive" and f"{model.name}-primary" in seen:
                raise ValueError(
                    f"models[{index}] '{model.name}' has a progressive canary whose primary objects are "
                    f"named '{model.name}-primary', which is also a model name: rename one of them"
                )
            if model.canary is not None and f"{model.name}-canary" in seen:
                raise ValueError(
                    f"models[{index}] '{model.name}' has a canary whose objects are named "
                    f"'{model.name}-canary', which is also a model name: rename one of them"
                )
        return self


class AlertsConfig(_Model):
    """Alert thresholds."""

    model_error_rate: float = Field(
        default=0.05, gt=0, lt=1, description="Alert when a model's 5xx share of requests exceeds this."
    )
    model_p99_latency_seconds: float = Field(
        default=1.0, gt=0, description="Alert when a model's p99 latency exceeds this many seconds."
    )
    for_: Duration = Field(
        default="5m", alias="for", description="How long a condition must hold before it fires."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PrometheusConfig(_Model):
    """The built-in Prometheus."""

    retention: Duration = Field(default="7d", description="How long samples are kept.")
    scrape_interval: Duration = Field(default="30s", description="Scrape interval.")
    storage_size: Storage = Field(default="5Gi", description="Size of the TSDB volume.")
    resources: Resources = Field(
        default_factory=resources("50m", "256Mi", "1", "768Mi"),
        description="Requests and limits of Prometheus.",
    )
    route: bool | None = Field(
        default=None,
        description=(
            "Expose Prometheus (no authentication of its own) at prometheus.<domain>. Default: only "
            "on a kind cluster (the Gateway is on 127.0.0.1); any other cluster refuses it: use "
            "Grafana or `kubectl port-forward`."
        ),
    )


class GrafanaConfig(_Model):
    """The built-in Grafana."""

    resources: Resources = Field(
        default_factory=resources("25m", "128Mi", "500m", "384Mi"),
        description="Requests and limits of Grafana.",
    )


class MonitoringConfig(_Model):
    """Metrics, dashboards and alerts."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig, description="Prometheus settings.")
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig, description="Grafana settings.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert thresholds.")


# --------------------------------------------------------------------------------------------
# The platform
# --------------------------------------------------------------------------------------------


class PlatformConfig(_Model):
    """An mlplane platform: the value of the `mlplane:platform` stack config key."""

    version: Annotated[int, Strict(), AfterValidator(check_version)] = Field(
        default=CONFIG_VERSION,
        description=(
            "Version of the config schema. Omitted: 1, so configs written before the field existed "
            "stay valid. A release that changes the schema incompatibly raises it (docs/upgrading.md)."
        ),
    )
    target: Literal["local"] = Field(
        default="local",
        description="Where the platform runs. 'local': kind and Docker on this machine (or an existing cluster).",
    )
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
    def _cross_rules(self) -> PlatformConfig:
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

    @property
    def prometheus_route(self) -> bool:
        """Whether Prometheus gets a route on the Gateway (monitoring.prometheus.route)."""
        route = self.monitoring.prometheus.route
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


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """Invalid config: one line per problem, each naming the field path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _path(loc: tuple[Any, ...], root: str) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _given(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_errors(error: ValidationError, root: str, model: type[BaseModel]) -> list[str]:
    """Turn a pydantic ValidationError into one line per problem: path, message, given value."""
    lines = []
    for item in error.errors(include_url=False):
        path = _path(item["loc"], root)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parent = item["loc"][:-1]
            found = _model_at(parent, model)
            allowed = (
                ", ".join(sorted(f.alias or n for n, f in found.model_fields.items())) if found else "see `mlplane schema`"
            )
            lines.append(f"{path}: unknown key; allowed keys here: {allowed}")
            continue
        if item["type"] == "missing":
            lines.append(f"{path}: required field is missing")
            continue
        lines.append(f"{path}: {message} (given: {_given(item.get('input'))})")
    return lines


def _model_at(loc: tuple[Any, ...], model: type[BaseModel]) -> type[BaseModel] | None:
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *typing.get_args(annotation)]
        nested = [
            inner
            for candidate in candidates
            for inner in (candidate, *typing.get_args(candidate))
            if isinstance(inner, type) and issubclass(inner, BaseModel)
        ]
        current = nested[0] if nested else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None



def parse_platform(raw: Any, root: str = "mlplane:platform") -> PlatformConfig:
    """Validate a raw platform object. Raises ConfigError naming each offending field.

    A missing object (``None``) is an error, never the defaults: ``{}`` asks for every default.
    """
    if raw is None:
        raise ConfigError([f"{root}: {NO_PLATFORM_HINT}"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{root}: must be a mapping of platform settings (given: {_given(raw)})"])
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_errors(error, root, PlatformConfig)) from None


# --------------------------------------------------------------------------------------------
# Keys of the stack config
# --------------------------------------------------------------------------------------------

#: The Pulumi config namespace mlplane reads; every key in it must be one mlplane knows.
NAMESPACE = "mlplane"
#: What to write when a stack has no platform object.
NO_PLATFORM_HOW = (
    "add `mlplane:platform: {}` under `config:` to ask for every default explicitly, or start "
    "from the repository's stacks/Pulumi.local.yaml (every key: docs/config-reference.md)"
)
NO_PLATFORM_HINT = f"the stack has no platform object: {NO_PLATFORM_HOW}"


def unknown_stack_keys(
    keys: Any, known: Any, owner: str, suggest_from: Any = (), stack: str | None = None
) -> list[str]:
    """One problem per key of the ``mlplane`` namespace that is not in ``known``.

    ``keys`` are the stack's config keys (``namespace:key``), ``known`` the full keys the stack
    may hold, ``owner`` the object whose ``*_key`` fields name secret keys (for the message);
    the closest key of ``known`` and ``suggest_from`` is suggested. Other namespaces (``aws:``,
    ``kubernetes:``, ``pulumi:``) are not mlplane's.
    """
    import difflib

    known = set(known)
    prefix = f"{NAMESPACE}:"
    # Compared without the namespace, which every candidate shares.
    candidates = sorted(k.removeprefix(prefix) for k in known | set(suggest_from))
    where = f" --stack {stack}" if stack else ""
    problems = []
    for key in sorted(k for k in keys if isinstance(k, str) and k.startswith(prefix)):
        if key in known:
            continue
        close = difflib.get_close_matches(key.removeprefix(prefix), candidates, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        problems.append(
            f"{key}: unknown config key in the '{NAMESPACE}' namespace{hint}; this stack may hold "
            f"{', '.join(sorted(known))} (a secret key only when a `*_key` field of {owner} names it); "
            f"rename it, or remove it with `pulumi config rm {key}{where}`"
        )
    return problems
