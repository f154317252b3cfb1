"""Where the platform runs: a kind cluster this stack owns, an existing cluster, or a directory.

The Cluster is created before the Kubernetes provider exists: the stack root builds the provider
from :meth:`Cluster.provider_args`. In mode 'kind' one ``command:local:Command`` creates (or
adopts) the cluster, writes the containerd registry config for the bundled registry on every
node, and prints the kubeconfig, which becomes a secret output.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi_command import local

from mlplane.core import run_mode
from mlplane.config import versions
from mlplane.config import ClusterConfig, ExistingClusterConfig, KindClusterConfig, RegistryConfig
from mlplane.services.routing import HTTP_NODE_PORT

TYPE = "mlplane:cluster:Cluster"
#: kind releases from this one on read /etc/containerd/certs.d without a containerd patch.
MIN_KIND = (0, 27)
#: Port the registry listens on inside its container.
REGISTRY_CONTAINER_PORT = 5000
#: Where containerd on a kind node looks for per-registry host configuration.
CERTS_DIR = "/etc/containerd/certs.d"
#: How long `kind create cluster` waits for the control plane to be Ready.
CREATE_WAIT = "180s"
KIND_INSTALL = "install kind v0.33.0 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
DOCKER_INSTALL = "install Docker Engine or Docker Desktop (https://docs.docker.com/get-docker/)"


@dataclass(frozen=True)
class ClusterArgs:
    config: ClusterConfig
    #: Platform name: the cluster name in mode 'render'.
    platform_name: str
    #: Registry settings: a bundled registry gets containerd host config on every kind node.
    registry: RegistryConfig
    #: Protect the kind cluster (and retain it on delete): false for throwaway stacks.
    protect: bool


def registry_container_name(cluster_name: str) -> str:
    """Docker container name of the bundled registry of a kind cluster (one per cluster)."""
    return f"{cluster_name}-registry"


def registry_host(host_port: int) -> str:
    """Address the host pushes to and pods pull from: the same name in both places."""
    return f"localhost:{host_port}"


def hosts_toml(cluster_name: str) -> str:
    """containerd host config sending pulls of ``localhost:<port>`` to the registry container."""
    endpoint = f"http://{registry_container_name(cluster_name)}:{REGISTRY_CONTAINER_PORT}"
    return f'[host."{endpoint}"]\n'


def kind_config(config: KindClusterConfig) -> dict[str, Any]:
    """The kind cluster config: pinned node image and the Gateway's NodePort on 127.0.0.1."""
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": config.name,
        "nodes": [
            {
                "role": "control-plane",
                "image": versions.KIND_NODE_IMAGES[config.kubernetes_version],
                "extraPortMappings": [
                    {
                        "containerPort": HTTP_NODE_PORT,
                        "hostPort": config.http_port,
                        "listenAddress": "127.0.0.1",
                        "protocol": "TCP",
                    }
                ],
            }
        ],
    }


def kind_config_yaml(config: KindClusterConfig) -> str:
    return yaml.safe_dump(kind_config(config), sort_keys=False)


def _preflight() -> str:
    major, minor = MIN_KIND
    return f"""\
need() {{
  command -v "$1" >/dev/null 2>&1 || {{ echo "mlplane: '$1' is not on PATH: $2" >&2; exit 127; }}
}}
need kind {shlex.quote(KIND_INSTALL)}
need docker {shlex.quote(DOCKER_INSTALL)}
docker info >/dev/null 2>&1 || {{
  echo "mlplane: the Docker daemon is not reachable: start Docker and retry" >&2; exit 1;
}}
kind_version=$(kind version | sed -n 's/^kind v\\([0-9][0-9]*\\.[0-9][0-9]*\\)\\..*/\\1/p')
[ -n "$kind_version" ] || {{ echo "mlplane: cannot read the kind version from 'kind version'" >&2; exit 1; }}
kind_major=${{kind_version%%.*}}
kind_minor=${{kind_version#*.}}
if [ "$kind_major" -eq {major} ] && [ "$kind_minor" -lt {minor} ]; then
  echo "mlplane: kind v$kind_version is too old: {KIND_INSTALL}" >&2
  exit 1
fi
"""


def _registry_hosts(cluster_name: str, host_port: int) -> str:
    directory = shlex.quote(f"{CERTS_DIR}/{registry_host(host_port)}")
    return f"""\
for node in $(kind get nodes --name "$NAME"); do
  docker exec "$node" mkdir -p {directory}
  docker exec -i "$node" cp /dev/stdin {directory}/hosts.toml <<'MLPLANE_HOSTS_TOML'
{hosts_toml(cluster_name)}MLPLANE_HOSTS_TOML
done
"""


def create_script(config: KindClusterConfig, registry: RegistryConfig) -> str:
    """Create the kind cluster or adopt an existing one; print only the kubeconfig on stdout.

    Idempotent: it runs again whenever the registry settings change, so every step is safe to
    repeat (an existing cluster is adopted and started, the registry host config rewritten).
    """
    hosts = _registry_hosts(config.name, registry.bundled.host_port) if registry.mode == "bundled" else ""
    return f"""\
set -eu
NAME={shlex.quote(config.name)}
{_preflight()}
if kind get clusters 2>/dev/null | grep -qx "$NAME"; then
  echo "mlplane: kind cluster '$NAME' exists: adopting it (its node image and port mappings are kept)" >&2
  for node in $(kind get nodes --name "$NAME"); do docker start "$node" >/dev/null; done
else
  kind create cluster --name "$NAME" --wait {CREATE_WAIT} --config - >&2 <<'MLPLANE_KIND_CONFIG'
{kind_config_yaml(config)}MLPLANE_KIND_CONFIG
fi
{hosts}kind get kubeconfig --name "$NAME"
"""


def delete_script(config: KindClusterConfig) -> str:
    """Delete the kind cluster (a no-op when it is already gone)."""
    return f"""\
set -eu
command -v kind >/dev/null 2>&1 || {{ echo "mlplane: 'kind' is not on PATH: {KIND_INSTALL}" >&2; exit 127; }}
kind delete cluster --name {shlex.quote(config.name)} >&2
"""


def read_kubeconfig(path: str, context: str) -> str:
    """The kubeconfig file's text, after checking that it defines ``context``."""
    expanded = Path(os.path.expandvars(os.path.expanduser(path)))
    try:
        text = expanded.read_text()
    except OSError as error:
        raise ValueError(
            f"cluster.existing.kubeconfig: cannot read '{expanded}' ({error.strerror}); "
            "point it at the kubeconfig file of the cluster"
        ) from None
    document = yaml.safe_load(text) or {}
    contexts = [entry.get("name") for entry in document.get("contexts") or []]
    if context not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts)) or "none"
        raise ValueError(
            f"cluster.existing.context: context '{context}' is not in '{expanded}' "
            f"(contexts there: {known})"
        )
    return text


class Cluster(pulumi.ComponentResource):
    """The cluster the platform runs on, and how to reach it.

    Outputs: ``kubeconfig`` (secret; None in mode 'render'), ``context`` (None in 'render'),
    ``name``; :meth:`provider_args` gives the arguments of the platform's Kubernetes provider.
    """

    kubeconfig: pulumi.Output[str] | None
    context: str | None
    name: str

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        cfg = args.config
        self._mode = cfg.mode
        self._protect = args.protect
        self._directory: str | None = None
        if cfg.mode == "kind":
            self._kind(name, args)
        elif cfg.mode == "existing":
            existing = cfg.existing
            assert existing is not None  # guaranteed by ClusterConfig validation
            self.name = existing.context
            self.context = existing.context
            self.kubeconfig = pulumi.Output.secret(self._existing_kubeconfig(existing))
        else:
            render = cfg.render
            assert render is not None  # guaranteed by ClusterConfig validation
            self.name = args.platform_name
            self.context = None
            self.kubeconfig = None
            self._directory = os.path.expanduser(render.directory)
        self.register_outputs(
            {"name": self.name, "context": self.context, "kubeconfig": self.kubeconfig}
        )

    @staticmethod
    def _existing_kubeconfig(existing: ExistingClusterConfig) -> str:
        if run_mode.offline():
            # An offline render (render, plan, footprint in CI) reads no local files.
            return f"kubeconfig of context {existing.context} (not read in an offline render)"
        try:
            return read_kubeconfig(existing.kubeconfig, existing.context)
        except ValueError as error:
            # Reported by the engine without a traceback.
            raise pulumi.RunError(str(error)) from None

    def _kind(self, name: str, args: ClusterArgs) -> None:
        kind = args.config.kind
        command = local.Command(
            f"{name}-kind",
            create=create_script(kind, args.registry),
            delete=delete_script(kind),
            interpreter=["/bin/sh", "-c"],
            # The previous stdout is the kubeconfig: keep it out of the next run's environment.
            add_previous_output_in_env=False,
            logging=local.Logging.STDERR,
            # A new node image, host port or name needs a new cluster: replace, deleting first
            # (the names collide). Registry changes only re-run the idempotent create script.
            triggers=[kind_config_yaml(kind)],
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                retain_on_delete=args.protect,
                delete_before_replace=True,
                additional_secret_outputs=["stdout"],
            ),
        )
        self.name = kind.name
        self.context = f"kind-{kind.name}"
        self.kubeconfig = pulumi.Output.secret(command.stdout)

    def provider_args(self) -> dict[str, Any]:
        """Keyword arguments for ``pulumi_kubernetes.Provider``: never the ambient kubeconfig."""
        if self._directory is not None:
            return {"render_yaml_to_directory": self._directory}
        provider: dict[str, Any] = {
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "enable_server_side_apply": True,
        }
        if self._mode == "kind" and not self._protect:
            # A throwaway kind cluster deleted by hand must not block `pulumi destroy`.
            provider["delete_unreachable"] = True
        return provider
