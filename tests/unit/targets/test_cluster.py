"""The Cluster component: a kind cluster (created by a local command), an existing one, or none.

The generated shell scripts run here under /bin/sh against fake `kind` and `docker` executables
that record their arguments and stdin: no Docker engine or kind is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pulumi_kubernetes as k8s
import pytest
import yaml

from mlplane.config import versions
from mlplane.targets.local.cluster import (
    Cluster,
    ClusterArgs,
    create_script,
    delete_script,
    hosts_toml,
    kind_config,
    kind_config_yaml,
    read_kubeconfig,
)
from mlplane.config import ConfigError, KindClusterConfig, RegistryConfig, parse_platform
from mlplane.tooling.render import SECRET_MASK
from mlplane.services.routing import HTTP_NODE_PORT

from conftest import opts

EXTERNAL_REGISTRY = {"mode": "external", "external": {"url": "ghcr.io/acme"}}
KUBECONFIG = "apiVersion: v1\nkind: Config\ncurrent-context: kind-mlplane\n"


def build(platform, config, root, protect=True):
    cluster = Cluster(
        "mlplane-cluster",
        ClusterArgs(config.cluster, config.name, config.registry, protect),
        opts(root),
    )
    provider_args = cluster.provider_args()
    k8s.Provider("mlplane-kubernetes", **provider_args)
    return {
        "cluster": cluster,
        "provider_args": provider_args,
        "kubeconfig": cluster.kubeconfig,
        "context": cluster.context,
        "name": cluster.name,
    }


def children(result, parent="mlplane-cluster"):
    return {r.name: r for r in result.resources if r.parent and r.parent.endswith(f"::{parent}")}


# --------------------------------------------------------------------------------------------
# Pure functions: kind config and containerd host config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", versions.SUPPORTED_KUBERNETES)
def test_kind_config_pins_the_node_image_of_the_minor_by_digest(minor):
    config = kind_config(KindClusterConfig(kubernetes_version=minor))
    (node,) = config["nodes"]
    assert node["image"] == versions.KIND_NODE_IMAGES[minor]
    assert node["image"].startswith(f"kindest/node:v{minor}.")
    assert "@sha256:" in node["image"]


def test_kind_config_maps_the_gateway_node_port_to_loopback_http_port():
    config = kind_config(KindClusterConfig(name="lab", http_port=8080))
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == "lab"
    (node,) = config["nodes"]
    assert node["role"] == "control-plane"
    assert node["extraPortMappings"] == [
        {"containerPort": HTTP_NODE_PORT, "hostPort": 8080, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]
    assert HTTP_NODE_PORT == 30080


def test_kind_config_needs_no_containerd_patch():
    # kind >= v0.27 reads /etc/containerd/certs.d by default.
    assert "containerdConfigPatches" not in kind_config(KindClusterConfig())
    assert yaml.safe_load(kind_config_yaml(KindClusterConfig())) == kind_config(KindClusterConfig())


def test_hosts_toml_sends_pulls_to_the_registry_container_over_http():
    assert tomllib.loads(hosts_toml("lab")) == {"host": {"http://lab-registry:5000": {}}}


# --------------------------------------------------------------------------------------------
# The scripts, run against fake kind and docker
# --------------------------------------------------------------------------------------------

FAKE_KIND = """\
#!/bin/sh
echo "kind $*" >> "$FAKE_LOG"
case "$1 $2" in
  "version ") echo "kind ${FAKE_KIND_VERSION:-v0.33.0} go1.25.1 linux/amd64" ;;
  "get clusters") [ -f "$FAKE_STATE/cluster" ] && cat "$FAKE_STATE/cluster"; true ;;
  "get nodes") echo "$4-control-plane" ;;
  "get kubeconfig") printf 'apiVersion: v1\\nkind: Config\\ncurrent-context: kind-%s\\n' "$4" ;;
  "create cluster") cat > "$FAKE_STATE/kind-config.yaml"; echo "$4" > "$FAKE_STATE/cluster"; echo "Creating cluster" ;;
  "delete cluster") rm -f "$FAKE_STATE/cluster"; echo "Deleting cluster" ;;
esac
"""

FAKE_DOCKER = """\
#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$1" in
  info) [ -z "${FAKE_DOCKER_DOWN:-}" ] ;;
  start) echo "$2" ;;
  exec)
    if [ "$2" = "-i" ]; then cat > "$FAKE_STATE/$3$(echo "$6" | tr / _)"; fi ;;
esac
"""


@pytest.fixture
def fake_tools(tmp_path: Path):
    """A PATH with fake `kind` and `docker` (and no real ones), a log and a state directory."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("kind", FAKE_KIND), ("docker", FAKE_DOCKER)):
        tool = bin_dir / name
        tool.write_text(body)
        tool.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()

    def run(script: str, *, tools=("kind", "docker"), **env: str) -> subprocess.CompletedProcess:
        for name in ("kind", "docker"):
            if name not in tools:
                (bin_dir / name).unlink(missing_ok=True)
        return subprocess.run(
            ["/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), "FAKE_STATE": str(state), **env},
            timeout=30,
        )

    run.log = log  # type: ignore[attr-defined]
    run.state = state  # type: ignore[attr-defined]
    return run


def calls(fake_tools) -> list[str]:
    return fake_tools.log.read_text().splitlines()


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
def test_scripts_parse_as_posix_shell(shell):
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed here")
    for registry in (RegistryConfig(), RegistryConfig.model_validate(EXTERNAL_REGISTRY)):
        for script in (create_script(KindClusterConfig(), registry), delete_script(KindClusterConfig())):
            checked = subprocess.run([binary, "-n"], input=script, capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr


def test_create_makes_the_cluster_from_the_generated_config_and_prints_only_the_kubeconfig(fake_tools):
    kind = KindClusterConfig(name="lab", http_port=8080)
    done = fake_tools(create_script(kind, RegistryConfig()))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "apiVersion: v1\nkind: Config\ncurrent-context: kind-lab\n"
    assert "kind create cluster --name lab --wait 180s --config -" in calls(fake_tools)
    assert (fake_tools.state / "kind-config.yaml").read_text() == kind_config_yaml(kind)


def test_create_writes_registry_hosts_toml_on_every_node(fake_tools):
    registry = RegistryConfig.model_validate({"bundled": {"host_port": 5050}})
    done = fake_tools(create_script(KindClusterConfig(name="lab"), registry))
    assert done.returncode == 0, done.stderr
    assert "docker exec lab-control-plane mkdir -p /etc/containerd/certs.d/localhost:5050" in calls(fake_tools)
    written = fake_tools.state / "lab-control-plane_etc_containerd_certs.d_localhost:5050_hosts.toml"
    assert written.read_text() == hosts_toml("lab")


def test_create_adopts_an_existing_cluster_and_still_configures_the_registry(fake_tools):
    (fake_tools.state / "cluster").write_text("mlplane\n")
    done = fake_tools(create_script(KindClusterConfig(), RegistryConfig()))
    assert done.returncode == 0, done.stderr
    log = calls(fake_tools)
    assert not any(line.startswith("kind create") for line in log)
    assert "docker start mlplane-control-plane" in log
    assert "adopting" in done.stderr
    assert done.stdout.startswith("apiVersion: v1\n")
    assert (fake_tools.state / "mlplane-control-plane_etc_containerd_certs.d_localhost:5001_hosts.toml").exists()


def test_create_runs_twice_without_failing(fake_tools):
    script = create_script(KindClusterConfig(), RegistryConfig())
    assert fake_tools(script).returncode == 0
    second = fake_tools(script)
    assert second.returncode == 0, second.stderr
    assert sum(line.startswith("kind create") for line in calls(fake_tools)) == 1


def test_create_with_an_external_registry_touches_no_node(fake_tools):
    registry = RegistryConfig.model_validate(EXTERNAL_REGISTRY)
    done = fake_tools(create_script(KindClusterConfig(), registry))
    assert done.returncode == 0, done.stderr
    assert not any(line.startswith("docker exec") for line in calls(fake_tools))


@pytest.mark.parametrize(
    ("missing", "message"),
    [("kind", "'kind' is not on PATH: install kind v0.33.0"), ("docker", "'docker' is not on PATH: install Docker")],
)
def test_create_names_a_missing_tool_before_doing_anything(fake_tools, missing, message):
    tools = tuple(t for t in ("kind", "docker") if t != missing)
    done = fake_tools(create_script(KindClusterConfig(), RegistryConfig()), tools=tools)
    assert done.returncode == 127
    assert message in done.stderr
    assert not any("create" in line for line in calls(fake_tools))


def test_create_stops_when_the_docker_daemon_is_down(fake_tools):
    done = fake_tools(create_script(KindClusterConfig(), RegistryConfig()), FAKE_DOCKER_DOWN="1")
    assert done.returncode == 1
    assert "Docker daemon is not reachable" in done.stderr
    assert not any(line.startswith("kind create") for line in calls(fake_tools))


def test_create_refuses_kind_older_than_v0_27(fake_tools):
    done = fake_tools(create_script(KindClusterConfig(), RegistryConfig()), FAKE_KIND_VERSION="v0.26.0")
    assert done.returncode == 1
    assert "kind v0.26 is too old" in done.stderr
    assert not any(line.startswith("kind create") for line in calls(fake_tools))


def test_delete_removes_the_cluster_and_succeeds_when_it_is_gone(fake_tools):
    (fake_tools.state / "cluster").write_text("lab\n")
    script = delete_script(KindClusterConfig(name="lab"))
    assert fake_tools(script).returncode == 0
    assert fake_tools(script).returncode == 0
    assert calls(fake_tools).count("kind delete cluster --name lab") == 2
    assert not (fake_tools.state / "cluster").exists()


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------


def test_kind_mode_is_one_command_under_the_cluster(run_component):
    result, _ = run_component(build)
    assert result.named("mlplane-cluster").type == "mlplane:cluster:Cluster"
    assert result.parent_of("mlplane-cluster").name == "mlplane"
    assert {n: r.type for n, r in children(result).items()} == {"mlplane-cluster-kind": "command:local:Command"}


def test_kind_command_creates_deletes_and_replaces_on_node_changes(run_component):
    result, _ = run_component(build, {"cluster": {"kind": {"name": "lab", "kubernetes_version": "1.36"}}})
    command = result.named("mlplane-cluster-kind").inputs
    kind = KindClusterConfig(name="lab", kubernetes_version="1.36")
    assert command["create"] == create_script(kind, RegistryConfig())
    assert command["delete"] == delete_script(kind)
    assert command["triggers"] == [kind_config_yaml(kind)]
    assert command["interpreter"] == ["/bin/sh", "-c"]
    assert command["addPreviousOutputInEnv"] is False
    assert command["logging"] == "stderr"


def test_kubeconfig_is_a_secret_and_context_is_kinds(run_component):
    _, out = run_component(build)
    assert out["kubeconfig"] == SECRET_MASK
    assert out["context"] == "kind-mlplane"
    assert out["name"] == "mlplane"


def test_kind_cluster_is_protected_only_when_asked(run_component):
    result, out = run_component(build)
    command = result.named("mlplane-cluster-kind")
    assert command.protect and command.retain_on_delete
    assert "delete_unreachable" not in out["provider_args"]

    result, out = run_component(lambda *a: build(*a, protect=False))
    command = result.named("mlplane-cluster-kind")
    assert not command.protect and not command.retain_on_delete
    assert out["provider_args"]["delete_unreachable"] is True


def test_provider_gets_the_kubeconfig_and_context_never_the_ambient_one(run_component):
    result, out = run_component(build)
    args = out["provider_args"]
    assert set(args) == {"kubeconfig", "context", "enable_server_side_apply"}
    assert args["context"] == "kind-mlplane"
    provider = result.named("mlplane-kubernetes")
    assert provider.inputs["context"] == "kind-mlplane"
    assert "kubeconfig" in provider.secret_paths


def write_kubeconfig(path: Path, *contexts: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
            }
        )
    )


def existing(path: str, context: str = "prod") -> dict:
    return {
        "cluster": {"mode": "existing", "existing": {"kubeconfig": path, "context": context}},
        "registry": EXTERNAL_REGISTRY,
        "routing": {"tls": {"plain_http": True}},  # the TLS requirement is tested in test_gateway_security.py
    }


def test_existing_mode_creates_nothing_and_reads_the_kubeconfig_as_a_secret(run_component, tmp_path):
    path = tmp_path / "config"
    write_kubeconfig(path, "dev", "prod")
    result, out = run_component(build, existing(str(path)))
    assert children(result) == {}
    assert out["kubeconfig"] == SECRET_MASK
    assert out["context"] == "prod"
    assert out["provider_args"]["context"] == "prod"
    provider = result.named("mlplane-kubernetes")
    assert "kubeconfig" in provider.secret_paths
    assert "delete_unreachable" not in out["provider_args"]


def test_existing_kubeconfig_path_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", "prod")
    assert "prod" in read_kubeconfig("~/.kube/config", "prod")


def test_existing_kubeconfig_errors_name_the_field_and_what_is_there(tmp_path):
    with pytest.raises(ValueError, match=r"cluster.existing.kubeconfig: cannot read"):
        read_kubeconfig(str(tmp_path / "missing"), "prod")
    write_kubeconfig(tmp_path / "config", "dev", "stage")
    with pytest.raises(ValueError, match=r"cluster.existing.context: context 'prod' .*contexts there: dev, stage"):
        read_kubeconfig(str(tmp_path / "config"), "prod")


def test_render_mode_has_no_kubeconfig_and_renders_to_the_directory(run_component):
    raw = {"cluster": {"mode": "render", "render": {"directory": "out/manifests"}}, "registry": EXTERNAL_REGISTRY}
    result, out = run_component(build, raw)
    assert children(result) == {}
    assert out["provider_args"] == {"render_yaml_to_directory": "out/manifests"}
    # Plain None attributes (run_component only resolves Outputs).
    assert out["cluster"].kubeconfig is None and out["cluster"].context is None
    assert out["name"] == "mlplane"
    provider = result.named("mlplane-kubernetes")
    assert provider.inputs["renderYamlToDirectory"] == "out/manifests"
    assert "kubeconfig" not in provider.inputs and "context" not in provider.inputs


def test_registry_settings_change_the_create_script_but_not_the_replacement_trigger():
    kind = KindClusterConfig()
    moved = RegistryConfig.model_validate({"bundled": {"host_port": 5050}})
    assert create_script(kind, RegistryConfig()) != create_script(kind, moved)
    # triggers only carry the kind config: a registry change re-runs the idempotent create.
    assert kind_config_yaml(kind) in create_script(kind, moved)


def test_unknown_cluster_mode_is_rejected_before_anything_is_created():
    with pytest.raises(ConfigError, match="cluster.mode"):
        parse_platform({"cluster": {"mode": "eks"}})

