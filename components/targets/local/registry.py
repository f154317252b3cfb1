"""The container image registry: a registry container next to kind, or an existing registry.

Bundled (kind only), following kind's local-registry guide: a ``registry`` container on the
Docker network ``kind``, published on 127.0.0.1:<host_port>. The host pushes to
``localhost:<host_port>``; pods pull the same name, which containerd on each node resolves to
the container (the node's ``hosts.toml`` is written by :class:`mlplane.targets.local.cluster.Cluster`, which
owns the nodes). Pods that push (CI runners) use the container's address on the kind network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from mlplane.core import kube
from mlplane.backing import registry_auth
from mlplane.targets.local.cluster import REGISTRY_CONTAINER_PORT, Cluster, registry_container_name, registry_host
from mlplane.config import PlatformConfig, RegistryConfig

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
#: Name of the push credential Secret (a Docker config) :meth:`Registry.push_secret` creates.
PUSH_SECRET_NAME = "registry-push"
#: Where the registry container writes its configuration and the token certificate at start
#: (its root filesystem is read-only; /tmp is a tmpfs).
CONFIG_FILE = "/tmp/config.yml"
TOKEN_CA_FILE = "/tmp/token-ca.pem"
#: The registry image is Alpine with the binary at /bin/registry (distribution-library-image
#: ``Dockerfile`` and ``docker-entrypoint.sh``): write the config from the environment, then serve.
REGISTRY_START = (
    f'printf "%s" "$REGISTRY_CONFIG_YAML" > {CONFIG_FILE} && '
    f'printf "%s" "$REGISTRY_TOKEN_CA" > {TOKEN_CA_FILE} && '
    f"exec /bin/registry serve {CONFIG_FILE}"
)
#: The token server runs as this user in the MLflow image (no USER; Python and cryptography).
AUTH_UID = 10001


def auth_container_name(cluster_name: str) -> str:
    """Docker container name of the bundled registry's token server."""
    return f"{cluster_name}-registry-auth"


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
        #: Bundled: the secret every registry password derives from (registry_auth.password);
        #: team stacks read it from the platform stack's outputs. None for an external registry.
        self.auth_secret: pulumi.Output[str] | None = None
        #: Bundled: the token realm the registry sends clients to.
        self.auth_realm: str | None = None
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
        host_port, auth_port = args.config.bundled.host_port, args.config.bundled.auth_port
        container_name = registry_container_name(cluster.name)
        auth_name = auth_container_name(cluster.name)
        host = registry_host(host_port)
        cluster_host = f"{container_name}:{REGISTRY_CONTAINER_PORT}"
        realm = f"http://{auth_name}:{auth_port}/token"
        labels = [
            docker.ContainerLabelArgs(label=kube.PART_OF, value=platform.name),
            docker.ContainerLabelArgs(label=kube.MANAGED_BY, value="mlplane"),
        ]
        hardened: dict[str, Any] = {
            "restart": "unless-stopped",
            "networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=KIND_NETWORK)],
            "read_only": True,
            "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
            "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            "security_opts": ["no-new-privileges:true"],
            "labels": labels,
        }

        # Every password is derived from this secret (registry_auth.password); the token
        # signing key too, so nothing else needs keeping.
        secret = pulumi.Output.secret(
            random.RandomPassword(
                f"{name}-auth-secret", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
        )
        material = secret.apply(registry_auth.signing_material)
        auth_image = docker.RemoteImage(
            f"{name}-auth-image",
            name=platform.image("mlflow"),
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        auth = docker.Container(
            f"{name}-auth-container",
            name=auth_name,
            image=auth_image.image_id,
            user=f"{AUTH_UID}:{AUTH_UID}",
            command=["python", "-c", registry_auth.TOKEN_SERVER_SCRIPT],
            envs=pulumi.Output.secret(
                pulumi.Output.all(secret, material).apply(
                    lambda v: [
                        f"TOKEN_SECRET={v[0]}",
                        f"TOKEN_KEY_PEM={v[1][0]}",
                        f"TOKEN_CERT_PEM={v[1][1]}",
                        f"TOKEN_PORT={auth_port}",
                        "PYTHONDONTWRITEBYTECODE=1",
                    ]
                )
            ),
            ports=[docker.ContainerPortArgs(internal=auth_port, external=auth_port, ip="127.0.0.1")],
            **hardened,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )

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
        config = registry_auth.registry_config(
            realm=realm, rootcertbundle=TOKEN_CA_FILE, data_dir=DATA_DIR, addr=f":{REGISTRY_CONTAINER_PORT}"
        )
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=image.image_id,
            entrypoints=["/bin/sh", "-c", REGISTRY_START],
            ports=[
                docker.ContainerPortArgs(
                    internal=REGISTRY_CONTAINER_PORT, external=host_port, ip="127.0.0.1"
                )
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
            envs=material.apply(
                lambda m: [f"REGISTRY_CONFIG_YAML={yaml.safe_dump(config, sort_keys=True)}", f"REGISTRY_TOKEN_CA={m[1]}"]
            ),
            **hardened,
            # kind creates the `kind` network with the cluster.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster, auth]),
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
        self.auth_secret = secret
        self.auth_realm = realm
        self.uis = [
            kube.Ui(key="registry", title="Image registry (catalog)", url=f"http://{host}/v2/_catalog")
        ]

    def image_pull_secrets(
        self, resource_name: str, namespace: pulumi.Input[str], *, parent: pulumi.Resource
    ) -> list[dict[str, Any]]:
        """``imagePullSecrets`` for the platform's pods in ``namespace`` that pull from this registry.

        The bundled registry demands credentials: this creates a ``kubernetes.io/dockerconfigjson``
        Secret named :data:`PULL_SECRET_NAME` in ``namespace`` (a child of ``parent``) holding the
        platform identity's credentials for the pull prefix. An external registry with
        ``pull_secret_key`` gets that Docker config instead; an anonymous one gets nothing (``[]``).
        """
        if self.auth_secret is not None:
            credential_secret(
                resource_name, PULL_SECRET_NAME, namespace, self._platform.labels("registry", PULL_SECRET_NAME),
                hosts=[self.pull_prefix], identity=registry_auth.PLATFORM_IDENTITY, secret=self.auth_secret,
                parent=parent,
            )
            return [{"name": PULL_SECRET_NAME}]
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

    def push_secret(
        self, resource_name: str, namespace: pulumi.Input[str], *, parent: pulumi.Resource
    ) -> str | None:
        """The platform identity's push credentials (Secret :data:`PUSH_SECRET_NAME`, a Docker
        config for the in-cluster push address and the pull prefix) in ``namespace``, for the
        platform's CI runners; returns its name, or None for an external registry (whose
        credentials are the user's to provide)."""
        if self.auth_secret is None:
            return None
        credential_secret(
            resource_name, PUSH_SECRET_NAME, namespace, self._platform.labels("registry", PUSH_SECRET_NAME),
            hosts=[self.cluster_push_url, self.pull_prefix], identity=registry_auth.PLATFORM_IDENTITY,
            secret=self.auth_secret, parent=parent,
        )
        return PUSH_SECRET_NAME


    def team_credentials(
        self, resource_prefix: str, team: str, work_namespace: pulumi.Input[str],
        serving_namespace: pulumi.Input[str], *, labels: dict[str, str], parent: pulumi.Resource,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> None:
        """A team's registry credentials, created by the platform stack in the team's namespaces
        (the team stack never holds the auth secret): ``registry-push`` in the work namespace
        (identity ``push.<team>``: push and pull ``<team>/*``, pull ``platform.shared/*``; for
        its runners) and ``registry-pull`` in the serving namespace (``pull.<team>``: pull
        ``<team>/*``; its model servers' imagePullSecret). Nothing for an external registry.
        Children ``<resource_prefix>-registry-push`` and ``<resource_prefix>-registry-pull``."""
        if self.auth_secret is None:
            return
        credential_secret(
            f"{resource_prefix}-registry-push", PUSH_SECRET_NAME, work_namespace, labels,
            hosts=[self.cluster_push_url, self.pull_prefix], identity=registry_auth.push_identity(team),
            secret=self.auth_secret, parent=parent, depends_on=depends_on,
        )
        credential_secret(
            f"{resource_prefix}-registry-pull", PULL_SECRET_NAME, serving_namespace, labels,
            hosts=[self.pull_prefix], identity=registry_auth.pull_identity(team),
            secret=self.auth_secret, parent=parent, depends_on=depends_on,
        )


def credential_secret(
    resource_name: str,
    name: str,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    *,
    hosts: list[pulumi.Input[str]],
    identity: str,
    secret: pulumi.Input[str],
    parent: pulumi.Resource,
    depends_on: list[pulumi.Resource] | None = None,
) -> k8s.core.v1.Secret:
    """A ``kubernetes.io/dockerconfigjson`` Secret: ``identity``'s derived password on ``hosts``
    (the bundled registry's token server checks it; :mod:`mlplane.backing.registry_auth`)."""
    document = pulumi.Output.all(secret, *hosts).apply(
        lambda v: registry_auth.docker_config_json(list(dict.fromkeys(v[1:])), identity, v[0])
    )
    return k8s.core.v1.Secret(
        resource_name,
        metadata={"name": name, "namespace": namespace, "labels": labels},
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": pulumi.Output.secret(document)},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )


def registry_egress(platform: PlatformConfig) -> dict[str, Any]:
    """Egress to the platform registry only. The bundled registry and its token server are
    containers on kind's Docker network, outside the pod network: its subnet
    (``registry.bundled.network_cidr``) on the registry's port and the token server's, nothing
    else. An external registry has no fixed address: HTTPS anywhere but the metadata endpoints."""
    if platform.registry.mode != "bundled":
        return kube.internet_egress(443)
    bundled = platform.registry.bundled
    return {
        "to": [{"ipBlock": {"cidr": bundled.network_cidr}}],
        "ports": kube.tcp(REGISTRY_CONTAINER_PORT, bundled.auth_port),
    }
