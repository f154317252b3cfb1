"""The Registry component: a registry container on kind's network, or an existing registry."""

from __future__ import annotations

import kubernetes_validate
import pulumi
import pytest
import tomllib
import yaml

from mlplane.config import versions
from mlplane.targets.local.cluster import Cluster, ClusterArgs, create_script, hosts_toml
from mlplane.config import KindClusterConfig, RegistryConfig
from mlplane.targets.local.registry import PULL_SECRET_NAME, Registry, RegistryArgs
from mlplane.tooling.render import SECRET_MASK

from conftest import opts

EXTERNAL = {
    "cluster": {"mode": "render", "render": {"directory": "out"}},
    "registry": {"mode": "external", "external": {"url": "ghcr.io/acme/"}},
}
EXTERNAL_WITH_CREDENTIALS = {
    **EXTERNAL,
    "registry": {"mode": "external", "external": {"url": "ghcr.io/acme", "pull_secret_key": "ghcrPull"}},
}


class Consumer(pulumi.ComponentResource):
    """Stands in for a component whose pods pull from the registry."""

    def __init__(self, name: str, parent: pulumi.Resource):
        super().__init__("mlplane:test:Consumer", name, None, pulumi.ResourceOptions(parent=parent))


def build(platform, config, root):
    cluster = Cluster(
        "mlplane-cluster",
        ClusterArgs(config.cluster, config.name, config.registry, platform.protect_stateful),
        opts(root),
    )
    registry = Registry("mlplane-registry", RegistryArgs(config.registry, platform, cluster), opts(root))
    consumer = Consumer("mlplane-serving", root)
    pull_secrets = registry.image_pull_secrets("mlplane-serving-pull", "mlplane-serving", parent=consumer)
    return {
        "registry": registry,
        "pull_secrets": pull_secrets,
        "push_url": registry.push_url,
        "pull_prefix": registry.pull_prefix,
        "cluster_push_url": registry.cluster_push_url,
        "api_url": registry.api_url,
    }


def children(result, parent="mlplane-registry"):
    return {r.name: r for r in result.resources if r.parent and r.parent.endswith(f"::{parent}")}


def test_bundled_creates_image_volume_container_and_hosting_configmap(run_component):
    result, _ = run_component(build)
    assert result.named("mlplane-registry").type == "mlplane:registry:Registry"
    assert result.parent_of("mlplane-registry").name == "mlplane"
    assert {n: r.type for n, r in children(result).items()} == {
        "mlplane-registry-image": "docker:index/remoteImage:RemoteImage",
        "mlplane-registry-volume": "docker:index/volume:Volume",
        "mlplane-registry-container": "docker:index/container:Container",
        "mlplane-registry-hosting": "kubernetes:core/v1:ConfigMap",
        "mlplane-registry-auth-secret": "random:index/randomPassword:RandomPassword",
        "mlplane-registry-auth-image": "docker:index/remoteImage:RemoteImage",
        "mlplane-registry-auth-container": "docker:index/container:Container",
    }


def test_bundled_image_is_the_pinned_registry_through_the_mirror(run_component):
    result, _ = run_component(build)
    assert result.named("mlplane-registry-image").inputs["name"] == "docker.io/library/registry:3.1.1"
    assert versions.IMAGES["registry"].tag == "3.1.1"
    result, _ = run_component(build, {"images": {"registry_mirror": "mirror.corp/hub"}})
    assert result.named("mlplane-registry-image").inputs["name"] == "mirror.corp/hub/library/registry:3.1.1"


def test_container_joins_kind_on_loopback_and_restarts_unless_stopped(run_component):
    result, _ = run_component(build, {"registry": {"bundled": {"host_port": 5050}}})
    container = result.named("mlplane-registry-container").inputs
    assert container["name"] == "mlplane-registry"
    assert container["networksAdvanced"] == [{"name": "kind"}]
    assert container["ports"] == [{"internal": 5000, "external": 5050, "ip": "127.0.0.1"}]
    assert container["restart"] == "unless-stopped"
    assert container["volumes"] == [{"volumeName": "mlplane-registry-data", "containerPath": "/var/lib/registry"}]


def test_container_runs_read_only_without_capabilities(run_component):
    result, _ = run_component(build)
    container = result.named("mlplane-registry-container").inputs
    assert container["readOnly"] is True
    assert container["capabilities"] == {"drops": ["ALL"]}
    assert container["securityOpts"] == ["no-new-privileges:true"]
    assert set(container["tmpfs"]) == {"/tmp"}


def test_container_waits_for_the_kind_cluster(run_component):
    result, _ = run_component(build)
    kind = result.named("mlplane-cluster-kind")
    assert kind.urn in result.named("mlplane-registry-container").depends_on


def test_volume_is_protected_unless_throwaway(run_component):
    result, _ = run_component(build)
    volume = result.named("mlplane-registry-volume")
    assert volume.protect and volume.retain_on_delete
    result, _ = run_component(build, {"lifecycle": {"throwaway": True}}, protect=False)
    volume = result.named("mlplane-registry-volume")
    assert not volume.protect and not volume.retain_on_delete


def test_hosting_configmap_follows_kep_1755(run_component):
    result, _ = run_component(build, {"registry": {"bundled": {"host_port": 5050}}})
    manifest = result.named("mlplane-registry-hosting").manifest()
    assert manifest["metadata"]["name"] == "local-registry-hosting"
    assert manifest["metadata"]["namespace"] == "kube-public"
    hosting = yaml.safe_load(manifest["data"]["localRegistryHosting.v1"])
    assert hosting == {
        "host": "localhost:5050",
        "hostFromContainerRuntime": "localhost:5050",
        "hostFromClusterNetwork": "mlplane-registry:5000",
        "help": "https://kind.sigs.k8s.io/docs/user/local-registry/",
    }
    for minor in ("1.34", "1.37"):
        kubernetes_validate.validate(manifest, minor, strict=True)


def test_hosting_configmap_names_for_image_fields_what_containerd_maps(run_component):
    """Image names built from hostFromContainerRuntime must be pullable: containerd on the nodes
    has a hosts.toml (plain HTTP) only for the pull prefix, not for the container's own name."""
    raw = {"cluster": {"kind": {"name": "lab"}}, "registry": {"bundled": {"host_port": 5050}}}
    result, out = run_component(build, raw)
    hosting = yaml.safe_load(result.named("mlplane-registry-hosting").manifest()["data"]["localRegistryHosting.v1"])
    script = result.named("mlplane-cluster-kind").inputs["create"]
    assert hosting["hostFromContainerRuntime"] == out["pull_prefix"]
    assert f"/etc/containerd/certs.d/{hosting['hostFromContainerRuntime']}" in script
    assert f"/etc/containerd/certs.d/{hosting['hostFromClusterNetwork']}" not in script
    # Pods push to the container's name on the kind network (KEP-1755: hostFromClusterNetwork).
    assert hosting["hostFromClusterNetwork"] == out["cluster_push_url"] == "lab-registry:5000"


def test_nodes_send_the_push_address_to_this_container(run_component):
    raw = {"cluster": {"kind": {"name": "lab"}}, "registry": {"bundled": {"host_port": 5050}}}
    result, out = run_component(build, raw)
    container = result.named("mlplane-registry-container").inputs
    # The Cluster writes hosts.toml for the address pods pull, pointing at this container.
    script = result.named("mlplane-cluster-kind").inputs["create"]
    assert f"/etc/containerd/certs.d/{out['pull_prefix']}" in script
    endpoint = next(iter(tomllib.loads(hosts_toml("lab"))["host"]))
    assert endpoint == f"http://{container['name']}:{int(container['ports'][0]['internal'])}"
    assert hosts_toml("lab") in script


def test_bundled_addresses(run_component):
    _, out = run_component(build)
    assert out["push_url"] == "localhost:5001"
    assert out["pull_prefix"] == "localhost:5001"
    assert out["cluster_push_url"] == "mlplane-registry:5000"
    assert out["api_url"] == "http://localhost:5001/v2/"
    ui = out["registry"].uis
    assert [(u.key, u.url) for u in ui] == [("registry", "http://localhost:5001/v2/_catalog")]
    assert out["registry"].scrape_targets == []


def test_bundled_pull_secret_carries_the_platform_identity_as_a_secret(run_component):
    import base64
    import json

    from mlplane.backing import registry_auth

    result, out = run_component(build)
    assert out["pull_secrets"] == [{"name": PULL_SECRET_NAME}]
    (secret,) = children(result, "mlplane-serving").values()
    manifest = secret.manifest()
    assert manifest["type"] == "kubernetes.io/dockerconfigjson"
    assert manifest["metadata"]["namespace"] == "mlplane-serving"
    document = json.loads(manifest["stringData"][".dockerconfigjson"])
    (host,) = document["auths"]
    entry = document["auths"][host]
    assert host == "localhost:5001" and entry["username"] == registry_auth.PLATFORM_IDENTITY
    assert base64.b64decode(entry["auth"]).decode() == f"platform:{entry['password']}"
    assert secret.masked_inputs()["stringData"] == SECRET_MASK


def test_bundled_registry_demands_tokens_and_never_deletes(run_component):
    from mlplane.backing import registry_auth

    result, _ = run_component(build, {"cluster": {"kind": {"name": "lab"}}, "registry": {"bundled": {"auth_port": 5055}}})
    container = result.named("mlplane-registry-container").inputs
    assert container["entrypoints"][:2] == ["/bin/sh", "-c"]
    env = dict(e.split("=", 1) for e in container["envs"])
    config = yaml.safe_load(env["REGISTRY_CONFIG_YAML"])
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}
    assert config["auth"]["token"]["realm"] == "http://lab-registry-auth:5055/token"
    assert config["auth"]["token"]["rootcertbundle"] == "/tmp/token-ca.pem"
    assert "REGISTRY_STORAGE_DELETE_ENABLED" not in env
    # The certificate it trusts is the one the token server signs with.
    assert env["REGISTRY_TOKEN_CA"].startswith("-----BEGIN CERTIFICATE-----")
    auth = result.named("mlplane-registry-auth-container")
    assert auth.urn in result.named("mlplane-registry-container").depends_on


def test_token_server_runs_hardened_on_kinds_network_and_loopback(run_component):
    from mlplane.backing import registry_auth

    result, _ = run_component(build, {"cluster": {"kind": {"name": "lab"}}})
    auth = result.named("mlplane-registry-auth-container").inputs
    assert auth["name"] == "lab-registry-auth"
    assert auth["networksAdvanced"] == [{"name": "kind"}]
    assert auth["ports"] == [{"internal": 5002, "external": 5002, "ip": "127.0.0.1"}]
    assert auth["user"] == "10001:10001"
    assert auth["readOnly"] is True and auth["capabilities"] == {"drops": ["ALL"]}
    assert auth["securityOpts"] == ["no-new-privileges:true"]
    assert auth["command"] == ["python", "-c", registry_auth.TOKEN_SERVER_SCRIPT]
    assert result.named("mlplane-registry-auth-image").inputs["name"] == versions.IMAGES["mlflow"].ref()
    # Its key and the auth secret are Pulumi secrets (masked in a render).
    assert result.named("mlplane-registry-auth-container").masked_inputs()["envs"] == SECRET_MASK


def test_the_auth_port_must_differ_from_the_host_port(run_component):
    from mlplane.config import RegistryConfig

    with pytest.raises(ValueError, match="auth_port 5001 is also host_port"):
        RegistryConfig.model_validate({"bundled": {"auth_port": 5001}})
    with pytest.raises(ValueError, match="must be an IPv4 network"):
        RegistryConfig.model_validate({"bundled": {"network_cidr": "172.18.0.1/16"}})


def test_external_registry_creates_nothing(run_component):
    result, out = run_component(build, EXTERNAL)
    assert children(result) == {}
    assert out["push_url"] == out["pull_prefix"] == out["cluster_push_url"] == "ghcr.io/acme"
    assert out["api_url"] == "https://ghcr.io/v2/"
    assert out["registry"].uis == []
    assert out["pull_secrets"] == []
    assert children(result, "mlplane-serving") == {}


def test_external_pull_secret_is_created_in_the_consumers_namespace_as_a_secret(run_component):
    result, out = run_component(build, EXTERNAL_WITH_CREDENTIALS)
    assert children(result) == {}
    assert out["pull_secrets"] == [{"name": PULL_SECRET_NAME}]
    (secret,) = children(result, "mlplane-serving").values()
    assert secret.name == "mlplane-serving-pull"
    manifest = secret.manifest()
    assert manifest["type"] == "kubernetes.io/dockerconfigjson"
    assert manifest["metadata"] == {
        "name": "registry-pull",
        "namespace": "mlplane-serving",
        "labels": manifest["metadata"]["labels"],
    }
    assert manifest["stringData"] == {".dockerconfigjson": "value-of-ghcrPull"}
    assert secret.masked_inputs()["stringData"] == SECRET_MASK


@pytest.mark.parametrize("port", [5001, 5555])
def test_cluster_script_configures_the_registry_port(port):
    registry = RegistryConfig.model_validate({"bundled": {"host_port": port}})
    assert f"certs.d/localhost:{port}" in create_script(KindClusterConfig(), registry)


def test_team_credentials_are_scoped_per_namespace_and_identity(run_component):
    import json

    from mlplane.backing import registry_auth

    def with_team(platform, config, root):
        out = build(platform, config, root)
        consumer = Consumer("mlplane-teams-vision", root)
        out["registry"].team_credentials(
            "mlplane-teams-vision", "vision", "mlplane-team-vision", "mlplane-team-vision-serving",
            labels={"mlplane.dev/team": "vision"}, parent=consumer,
        )
        return out

    result, _ = run_component(with_team)
    secrets = {r.name: r.manifest() for r in children(result, "mlplane-teams-vision").values()}
    assert set(secrets) == {"mlplane-teams-vision-registry-push", "mlplane-teams-vision-registry-pull"}
    push, pull = secrets["mlplane-teams-vision-registry-push"], secrets["mlplane-teams-vision-registry-pull"]
    assert (push["metadata"]["name"], push["metadata"]["namespace"]) == ("registry-push", "mlplane-team-vision")
    assert (pull["metadata"]["name"], pull["metadata"]["namespace"]) == ("registry-pull", "mlplane-team-vision-serving")
    push_auths = json.loads(push["stringData"][".dockerconfigjson"])["auths"]
    pull_auths = json.loads(pull["stringData"][".dockerconfigjson"])["auths"]
    assert set(push_auths) == {"mlplane-registry:5000", "localhost:5001"}
    assert {e["username"] for e in push_auths.values()} == {registry_auth.push_identity("vision")}
    assert set(pull_auths) == {"localhost:5001"}
    assert pull_auths["localhost:5001"]["username"] == registry_auth.pull_identity("vision")
    for manifest in (push, pull):
        assert manifest["type"] == "kubernetes.io/dockerconfigjson"


def test_an_external_registry_gets_no_team_credentials(run_component):
    def with_team(platform, config, root):
        out = build(platform, config, root)
        consumer = Consumer("mlplane-teams-vision", root)
        out["registry"].team_credentials("mlplane-teams-vision", "vision", "w", "s", labels={}, parent=consumer)
        return out

    result, _ = run_component(with_team, EXTERNAL)
    assert children(result, "mlplane-teams-vision") == {}
