"""Every upstream part mlplane deploys, pinned in one place.

Bumping a version is a one-line change here; the config reference, the footprint table and
the golden snapshots all pick it up. Images are referenced by a fully qualified, immutable tag
(never ``latest``); ``images.registry_mirror`` in the config rewrites their registry host for
air-gapped installs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Supported Kubernetes minors: every rendered manifest is schema-checked against each.
SUPPORTED_KUBERNETES = ("1.34", "1.35", "1.36", "1.37")
#: Default minor of the local cluster: inside the supported range and inside Envoy Gateway
#: v1.9's compatibility matrix (1.33-1.36), which does not list 1.37 yet.
DEFAULT_KUBERNETES = "1.35"

#: kind release the node images below belong to.
KIND_VERSION = "v0.33.0"

#: kind node images (from the kind release notes), one per supported minor.
KIND_NODE_IMAGES = {
    "1.34": "kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d",
    "1.35": "kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
    "1.36": "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
    "1.37": "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
}

#: Pod Security Standards version pinned on every namespace.
POD_SECURITY_VERSION = "v1.34"


@dataclass(frozen=True)
class Chart:
    """A Helm chart from an OCI registry, pinned to a version."""

    chart: str
    version: str


@dataclass(frozen=True)
class Image:
    """A container image: ``repository`` without registry host, on ``registry``, at ``tag``."""

    registry: str
    repository: str
    tag: str

    def ref(self, mirror: str | None = None) -> str:
        host = mirror.rstrip("/") if mirror else self.registry
        return f"{host}/{self.repository}:{self.tag}"


IMAGES: dict[str, Image] = {
    "registry": Image("docker.io", "library/registry", "3.1.1"),
    "seaweedfs": Image("docker.io", "chrislusf/seaweedfs", "4.48"),
    "postgres": Image("docker.io", "library/postgres", "18.7"),
    # The -full variant adds psycopg2, boto3 and the basic-auth extra to the core image.
    "mlflow": Image("ghcr.io", "mlflow/mlflow", "v3.17.0-full"),
    "prometheus": Image("docker.io", "prom/prometheus", "v3.15.0"),
    "grafana": Image("docker.io", "grafana/grafana", "13.2.3"),
    "metrics-server": Image("registry.k8s.io", "metrics-server/metrics-server", "v0.9.0"),
    # The Envoy Gateway controller (same tag as its chart); mlplane runs its certgen Job with it.
    "envoy-gateway": Image("docker.io", "envoyproxy/gateway", "v1.9.3"),
    # ARC controller and listener (same tag as the ARC charts).
    "arc-controller": Image("ghcr.io", "actions/gha-runner-scale-set-controller", "0.15.0"),
    # GitHub only hands jobs to recent runners: bump this with each runner release.
    "actions-runner": Image("ghcr.io", "actions/actions-runner", "2.337.0"),
    # Docker daemon sidecar of runners in container_mode 'dind'.
    "docker-dind": Image("docker.io", "library/docker", "29.8.1-dind"),
}

CHARTS: dict[str, Chart] = {
    "envoy-gateway": Chart("oci://docker.io/envoyproxy/gateway-helm", "v1.9.3"),
    "arc-controller": Chart(
        "oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set-controller",
        "0.15.0",
    ),
    "arc-scale-set": Chart(
        "oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set",
        "0.15.0",
    ),
}

#: Gateway API version the Envoy Gateway chart installs (HTTPRoute weighted backends are core).
GATEWAY_API_VERSION = "v1.6.1"

#: Image digests are not resolvable from an offline build machine, so images are pinned by
#: immutable release tags; each workload documents that exception to CKV_K8S_43 inline.
DIGEST_EXCEPTION = (
    "pinned to an immutable release tag in mlplane/versions.py; set images.registry_mirror to "
    "pull from a mirror that pins digests"
)

#: MLflow release the tracking server and serving images carry.
MLFLOW_VERSION = "3.17.0"
