"""The container image registry: a registry container next to kind, or an existing registry.

Bundled (kind only), following kind's local-registry guide: a ``registry`` container on the
Docker network ``kind``, published on 127.0.0.1:<host_port>. The host pushes to
``localhost:<host_port>``; pods pull the same name, which containerd on each node resolves to
the container (the node's ``hosts.toml`` is written by :class:`mlplane.cluster.Cluster`, which
owns the nodes). Pods that push (CI runners) use the container's address on the kind network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from . import kube
from .cluster import REGISTRY_CONTAINER_PORT, Cluster, registry_container_name, registry_host
from .config import RegistryConfig

TYPE = "mlplane:registry:Registry"
#: Docker network kind creates and attaches its nodes to.
KIND_NETWORK = "kind"
#: Where the registry image keeps its data.
DATA_DIR = "/var/lib/registry"
#: KEP-1755: how tools discover a cluster's local registry.
HOSTING_CONFIGMAP = "local-registry-hosting"
HOSTING_HELP = "https://kind.sigs.k8s.io/docs/user/local-registry/"
#: Name of the imagePullSecret :meth:`Registry.image_pull_secrets` creates in a namespace.
PULL_SECRET_NAME = "registry-pull"


@dataclass(frozen=True)
class RegistryArgs:
    config: RegistryConfig
    platform: kube.Platform
    #: The cluster: its name names the container; kind must have created the `kind` network.
    cluster: Cluster


def hosting_document(host: str, cluster_host: str) -> str:
    """The ``localRegistryHosting.v1`` value of the KEP-1755 ConfigMap.

    KEP-1755 (kubernetes/enhancements ``keps/sig-cluster-lifecycle/generic/
    1755-communicating-a-local-registry``): ``host`` is where tools outside the cluster push;
    ``hostFromContainerRuntime`` is the name image fields use, as the nodes' container runtime
    sees it; ``hostFromClusterNetwork`` is where tools in pods push. Pods pull by ``host``
    (``localhost:<port>``), the one name containerd's ``hosts.toml`` maps to the plain-HTTP
    container (kind's ``kind-with-registry.sh`` writes only ``host`` and ``help``); the container
    name is reachable from pods but containerd has no ``hosts.toml`` for it and would try HTTPS.
    """
    return (
        f'host: "{host}"\n'
        f'hostFromContainerRuntime: "{host}"\n'
        f'hostFromClusterNetwork: "{cluster_host}"\n'
        f'help: "{HOSTING_HELP}"\n'
    )


class Registry(pulumi.ComponentResource):
    """Where images are pushed and pulled from.

    Outputs: ``push_url`` (``docker push`` on the host), ``pull_prefix`` (image references in
    pod specs), ``cluster_push_url`` (pushes from inside pods, e.g. CI jobs), ``api_url``
    (Registry HTTP API v2) and ``uis``; :meth:`image_pull_secrets` gives pods pull credentials.
    """

    push_url: pulumi.Output[str]
    pull_prefix: pulumi.Output[str]
    cluster_push_url: pulumi.Output[str]
    api_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self._platform = args.platform
        self._pull_secret_key: str | None = None
        if args.config.mode == "external":
            external = args.config.external
            assert external is not None  # guaranteed by RegistryConfig validation
            url = external.url.rstrip("/")
            self._pull_secret_key = external.pull_secret_key
            self.push_url = pulumi.Output.from_input(url)
            self.pull_prefix = pulumi.Output.from_input(url)
            self.cluster_push_url = pulumi.Output.from_input(url)
            self.api_url = pulumi.Output.from_input(f"https://{url.split('/', 1)[0]}/v2/")
        else:
            self._bundled(name, args)
        self.register_outputs(
            {
                "pushUrl": self.push_url,
                "pullPrefix": self.pull_prefix,
                "clusterPushUrl": self.cluster_push_url,
                "apiUrl": self.api_url,
            }
        )

    def _bundled(self, name: str, args: RegistryArgs) -> None:
        platform, cluster = args.platform, args.cluster
        host_port = args.config.bundled.host_port
        container_name = registry_container_name(cluster.name)
        host = registry_host(host_port)
        cluster_host = f"{container_name}:{REGISTRY_CONTAINER_PORT}"
        labels = [
            docker.ContainerLabelArgs(label=kube.PART_OF, value=platform.name),
            docker.ContainerLabelArgs(label=kube.MANAGED_BY, value="mlplane"),
        ]

        image = docker.RemoteImage(
            f"{name}-image",
            name=platform.image("registry"),
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        volume = docker.Volume(
            f"{name}-volume",
            name=f"{container_name}-data",
            labels=[docker.VolumeLabelArgs(label=item.label, value=item.value) for item in labels],
            opts=platform.stateful(self),
        )
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=image.image_id,
            restart="unless-stopped",
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=KIND_NETWORK)],
            ports=[
                docker.ContainerPortArgs(
                    internal=REGISTRY_CONTAINER_PORT, external=host_port, ip="127.0.0.1"
                )
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
            envs=["REGISTRY_STORAGE_DELETE_ENABLED=true"],
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            labels=labels,
            # kind creates the `kind` network with the cluster.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )
        k8s.core.v1.ConfigMap(
            f"{name}-hosting",
            metadata={
                "name": HOSTING_CONFIGMAP,
                "namespace": "kube-public",
                "labels": platform.labels("registry"),
            },
            data={"localRegistryHosting.v1": hosting_document(host, cluster_host)},
            opts=pulumi.ResourceOptions(parent=self),
        )

        # Every address waits for the container, so consumers start after the registry does.
        def after_container(value: str) -> pulumi.Output[str]:
            return container.id.apply(lambda _: value)

        self.push_url = after_container(host)
        self.pull_prefix = after_container(host)
        self.cluster_push_url = after_container(cluster_host)
        self.api_url = after_container(f"http://{host}/v2/")
        self.uis = [
            kube.Ui(key="registry", title="Image registry (catalog)", url=f"http://{host}/v2/_catalog")
        ]

    def image_pull_secrets(
        self, resource_name: str, namespace: pulumi.Input[str], *, parent: pulumi.Resource
    ) -> list[dict[str, Any]]:
        """``imagePullSecrets`` for pods in ``namespace`` that pull from this registry.

        When the registry needs credentials (external with ``pull_secret_key``) this creates a
        ``kubernetes.io/dockerconfigjson`` Secret named :data:`PULL_SECRET_NAME` in
        ``namespace`` as a child of ``parent`` and returns a reference to it; otherwise it
        creates nothing and returns an empty list.
        """
        if self._pull_secret_key is None:
            return []
        k8s.core.v1.Secret(
            resource_name,
            metadata={
                "name": PULL_SECRET_NAME,
                "namespace": namespace,
                "labels": self._platform.labels("registry", PULL_SECRET_NAME),
            },
            type="kubernetes.io/dockerconfigjson",
            string_data={
                ".dockerconfigjson": pulumi.Output.secret(
                    self._platform.secret(self._pull_secret_key)
                )
            },
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return [{"name": PULL_SECRET_NAME}]
