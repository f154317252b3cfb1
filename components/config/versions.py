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
    #: None for a chart from a local path (``images.chart_paths``): the chart carries its version.
    version: str | None

    @property
    def registry(self) -> str:
        """The OCI registry host the chart is published on."""
        return self.chart.removeprefix("oci://").split("/", 1)[0]

    @property
    def repository(self) -> str:
        """The chart's repository path on its registry (without host)."""
        return self.chart.removeprefix("oci://").split("/", 1)[1]

    def ref(self, mirror: str | None = None) -> str:
        """The ``oci://`` reference, through a mirror host (and optional path) when one is set."""
        host = mirror.rstrip("/") if mirror else self.registry
        return f"oci://{host}/{self.repository}"


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
    "seaweedfs": Image("docker.io", "chrislusf/seaweedfs", "4.47"),
    "postgres": Image("docker.io", "library/postgres", "18.6"),
    # The -full variant adds psycopg2, boto3 and the basic-auth extra to the core image.
    "mlflow": Image("ghcr.io", "mlflow/mlflow", "v3.17.0-full"),
    "prometheus": Image("docker.io", "prom/prometheus", "v3.15.1"),
    "grafana": Image("docker.io", "grafana/grafana", "13.2.0"),
    "metrics-server": Image("registry.k8s.io", "metrics-server/metrics-server", "v0.9.0"),
    # The Envoy Gateway controller (same tag as its chart); mlplane runs its certgen Job with it.
    "envoy-gateway": Image("docker.io", "envoyproxy/gateway", "v1.9.1"),
    # ARC controller and listener (same tag as the ARC charts).
    "arc-controller": Image("ghcr.io", "actions/gha-runner-scale-set-controller", "0.14.2"),
    # GitHub only hands jobs to recent runners: bump this with each runner release.
    "actions-runner": Image("ghcr.io", "actions/actions-runner", "2.334.0"),
    # Docker daemon sidecar of runners in container_mode 'dind'.
    "docker-dind": Image("docker.io", "library/docker", "29.8.2-dind"),
    # Flagger, the progressive delivery controller (serving.progressive); components/services/progressive.py.
    "flagger": Image("ghcr.io", "fluxcd/flagger", "1.36.1"),
}

#: Images of the AWS target's cluster add-ons (components/targets/aws/addons.py). Kept apart from
#: IMAGES: the local target never runs them, and the autoscaler's tag follows the cluster's minor.
#: Cluster Autoscaler: its minor must match the cluster's (kubernetes/autoscaler README, "Releases").
#: Seen: v1.34.4, v1.35.1, v1.36.0 as the per-minor defaults of a public Go operator's image switch;
#: v1.35.2 pinned by digest (sha256:aac369dc283927a623deb1af54696efcc722ae79255aa07788422e495bab887d)
#: and v1.36.1 in public deployment records. No 1.37 release was seen: EKS 1.37 is refused on AWS
#: (config/aws.py) until one is pinned here. The Go module proxy refuses k8s.io/autoscaler/cluster-autoscaler.
CLUSTER_AUTOSCALER_TAGS: dict[str, str] = {"1.34": "v1.34.4", "1.35": "v1.35.2", "1.36": "v1.36.1"}
AWS_IMAGES: dict[str, Image] = {
    "cluster-autoscaler": Image("registry.k8s.io", "autoscaling/cluster-autoscaler", CLUSTER_AUTOSCALER_TAGS[DEFAULT_KUBERNETES]),
    # NVIDIA/k8s-device-plugin deployments/static/nvidia-device-plugin.yml (commit 1c3a10be) pins v0.17.1.
    "nvidia-device-plugin": Image("nvcr.io", "nvidia/k8s-device-plugin", "v0.17.1"),
}

CHARTS: dict[str, Chart] = {
    "envoy-gateway": Chart("oci://docker.io/envoyproxy/gateway-helm", "v1.9.1"),
    "arc-controller": Chart(
        "oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set-controller",
        "0.14.2",
    ),
    "arc-scale-set": Chart(
        "oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set",
        "0.14.2",
    ),
}


@dataclass(frozen=True)
class Pin:
    """Where a pinned version was seen upstream: the release, its date and the source read."""

    version: str
    release: str
    date: str
    source: str


#: Evidence for every pin above, keyed ``image:<key>``, ``chart:<key>``, ``kind-node:<minor>``
#: and ``pypi:<package>``. ``tests/unit/config/test_versions.py`` fails when a pin has no record or the
#: record names another version. Go module proxy listings: ``go list -m -json MODULE@VERSION``
#: (its ``Time`` is the tag's date). Upstream tags that could not be matched to a release seen
#: (postgres 18.7, seaweedfs 4.48, prometheus v3.15.0 kept, grafana 13.2.3, Envoy Gateway v1.9.3,
#: ARC 0.15.0, runner 2.337.0, docker 29.8.1) were moved to the newest release that was seen.
EVIDENCE: dict[str, Pin] = {
    "image:registry": Pin(
        "3.1.1", "distribution v3.1.1", "2026-05-01",
        "Go module proxy: github.com/distribution/distribution/v3 v3.1.1 (v3.1.2 of 2026-09-24 also listed)",
    ),
    "image:seaweedfs": Pin(
        "4.47", "seaweedfs 4.47", "2026-09-15",
        "seaweedfs/seaweedfs release tag 4.47, via Renovate's docker-tag update shaman007/home-k3s#769 "
        "(the Go module proxy serves only pseudo-versions of github.com/seaweedfs/seaweedfs)",
    ),
    "image:postgres": Pin(
        "18.6", "PostgreSQL 18.6", "2026-08-13",
        "macports/macports-ports#34040 (postgresql18: update to 18.6, 2026-08-13); 18.4 in #32715 "
        "(2026-05-15); no later 18.x release seen",
    ),
    "image:mlflow": Pin(
        "v3.17.0-full", "MLflow 3.17.0", "2026-10-07",
        "PyPI: `pip index versions mlflow` lists 3.17.0; wheel built 2026-10-07 (`pip download mlflow==3.17.0`)",
    ),
    "pypi:mlflow": Pin(
        "3.17.0", "MLflow 3.17.0", "2026-10-07",
        "PyPI: `pip index versions mlflow` lists 3.17.0 (3.18.0 newest)",
    ),
    "image:prometheus": Pin(
        "v3.15.1", "Prometheus v3.15.1", "2026-10-21",
        "Go module proxy: github.com/prometheus/prometheus v0.315.1 (Prometheus tags v3.X.Y also as "
        "module version v0.3XX.Y; v0.316.0 of 2026-11-05 is the newest minor)",
    ),
    "image:grafana": Pin(
        "13.2.0", "Grafana 13.2.0", "2026-08-18",
        "grafana/grafana CHANGELOG.md#1320-2026-08-18, via Renovate's docker-tag update "
        "AndreiGavriliu/homelab#7187 (the module proxy does not serve github.com/grafana/grafana)",
    ),
    "image:metrics-server": Pin(
        "v0.9.0", "metrics-server v0.9.0", "2026-07-13",
        "Go module proxy: sigs.k8s.io/metrics-server v0.9.0",
    ),
    "image:envoy-gateway": Pin(
        "v1.9.1", "Envoy Gateway v1.9.1", "2026-08-28",
        "Go module proxy: github.com/envoyproxy/gateway v1.9.1 (newest listed)",
    ),
    "chart:envoy-gateway": Pin(
        "v1.9.1", "Envoy Gateway v1.9.1", "2026-08-28",
        "Go module proxy: github.com/envoyproxy/gateway v1.9.1; the gateway-helm chart is released with "
        "the same tag",
    ),
    "image:flagger": Pin(
        "1.36.1", "Flagger v1.36.1", "2024-03-06",
        "Go module proxy: `go list -m -versions github.com/fluxcd/flagger` lists v1.36.1 as the newest "
        "(Time 2024-03-06); the module's kustomize/base/flagger/kustomization.yaml sets "
        "ghcr.io/fluxcd/flagger newTag 1.36.1 and charts/flagger/values.yaml image.tag 1.36.1",
    ),
    "image:arc-controller": Pin(
        "0.14.2", "gha-runner-scale-set-0.14.2", "2026-05-22",
        "Renovate's chart update szinn/k8s-homelab#8246 (both ARC charts 0.14.1 -> 0.14.2); the "
        "controller image carries the chart version",
    ),
    "chart:arc-controller": Pin(
        "0.14.2", "gha-runner-scale-set-0.14.2", "2026-05-22",
        "Renovate's chart update szinn/k8s-homelab#8246 (ghcr.io/actions/actions-runner-controller-charts)",
    ),
    "chart:arc-scale-set": Pin(
        "0.14.2", "gha-runner-scale-set-0.14.2", "2026-05-22",
        "Renovate's chart update szinn/k8s-homelab#8246 (ghcr.io/actions/actions-runner-controller-charts)",
    ),
    "image:actions-runner": Pin(
        "2.334.0", "actions/runner v2.334.0", "2026-04-21",
        "actions/runner#4365 (Prepping runner release 2.334.0) and release tag v2.334.0 via "
        "szinn/k8s-homelab#7954; ARC's image tag has no 'v'",
    ),
    "image:docker-dind": Pin(
        "29.8.2-dind", "Docker Engine 29.8.2", "2026-10-01",
        "Alpine v3.24 community package docker-engine 29.8.2-r0 (built 2026-10-01); moby tag "
        "docker-v29.8.0 of 2026-09-03 (wslkit/skrog rootfs-v29.8.0-1); docker-library tags <version>-dind",
    ),
    "kind-node:1.37": Pin(
        "v1.37.0", "kind v0.33.0", "2026-08-26",
        "sigs.k8s.io/kind v0.33.0 source, pkg/apis/config/defaults/image.go (the same digest)",
    ),
    "kind-node:1.36": Pin(
        "v1.36.4", "kind v0.33.0", "2026-08-26",
        "kind v0.33.0 release notes (node image list with digests); `mlplane images check` verifies it",
    ),
    "kind-node:1.35": Pin(
        "v1.35.8", "kind v0.33.0", "2026-08-26",
        "kind v0.33.0 release notes (node image list with digests); `mlplane images check` verifies it",
    ),
    "kind-node:1.34": Pin(
        "v1.34.11", "kind v0.33.0", "2026-08-26",
        "kind v0.33.0 release notes (node image list with digests); `mlplane images check` verifies it",
    ),
}

#: Gateway API version the Envoy Gateway chart installs (HTTPRoute weighted backends are core).
GATEWAY_API_VERSION = "v1.6.1"

#: Images are pinned by release tag here; a stack with an image lock (``mlplane images lock``,
#: ``images.lock_file``) renders ``image:tag@sha256:...`` instead, and the workloads then drop
#: this documented exception to CKV_K8S_43 (see ``kube.drop_digest_exception``).
DIGEST_EXCEPTION = (
    "pinned to a release tag in mlplane/versions.py; `mlplane images lock` and images.lock_file "
    "pin digests"
)

#: MLflow release the tracking server and serving images carry.
MLFLOW_VERSION = "3.17.0"
