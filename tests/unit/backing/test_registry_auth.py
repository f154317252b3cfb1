"""Registry scopes against a real registry: Debian's docker-registry (distribution 2.8) with the
configuration the bundled registry runs, and mlplane's token server script, on loopback, with two
teams' credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from mlplane.backing import registry_auth
from mlplane.backing.registry_auth import allowed_actions, password, pull_identity, push_identity

from test_images import free_port, wait_for

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
needs_registry = pytest.mark.skipif(not Path(REGISTRY).exists(), reason="docker-registry (Debian) is not installed")
SECRET = "test-auth-secret-0123456789"


# --------------------------------------------------------------------------------------------
# The policy and the derived credentials (no server)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "kind", "name", "expected"),
    [
        ("platform", "repository", "vision/serve", {"pull", "push"}),
        ("platform", "registry", "catalog", {"*"}),
        ("push.vision", "repository", "vision/serve", {"pull", "push"}),
        ("push.vision", "repository", "vision/a/b", {"pull", "push"}),
        ("push.vision", "repository", "platform.shared/python", {"pull"}),
        ("push.vision", "repository", "nlp/serve", set()),
        ("push.vision", "repository", "visionx/serve", set()),  # a prefix of another team's name
        ("push.vision", "repository", "vision", set()),
        ("push.vision", "registry", "catalog", set()),
        ("pull.vision", "repository", "vision/serve", {"pull"}),
        ("pull.vision", "repository", "platform.shared/python", set()),
        ("pull.vision", "repository", "nlp/serve", set()),
        ("push.", "repository", "/serve", set()),
        ("push.Vision", "repository", "Vision/serve", set()),
        ("admin", "repository", "vision/serve", set()),
        ("", "repository", "vision/serve", set()),
    ],
)
def test_the_static_policy(identity, kind, name, expected):
    assert allowed_actions(identity, kind, name) == expected


def test_no_identity_is_ever_allowed_delete():
    for identity in ("platform", "push.vision", "pull.vision"):
        for name in ("vision/serve", "platform.shared/x", "nlp/x"):
            assert "delete" not in allowed_actions(identity, "repository", name)


def test_the_shared_prefix_cannot_be_a_team_name():
    from mlplane.config.team import TeamName  # noqa: F401 (a DNS label: no dots)

    assert "." in registry_auth.SHARED_PREFIX


def test_passwords_are_derived_per_identity_and_the_docker_config_carries_one():
    a, b = password(SECRET, push_identity("a")), password(SECRET, push_identity("b"))
    assert a != b and len(a) == 64 and a != password("other", push_identity("a"))
    document = json.loads(registry_auth.docker_config_json(["localhost:5001"], push_identity("a"), SECRET))
    entry = document["auths"]["localhost:5001"]
    assert entry["username"] == "push.a" and entry["password"] == a
    assert base64.b64decode(entry["auth"]).decode() == f"push.a:{a}"


def test_signing_material_is_deterministic_per_seed():
    assert registry_auth.signing_material("seed") == registry_auth.signing_material("seed")
    assert registry_auth.signing_material("seed")[1] != registry_auth.signing_material("other")[1]


def test_registry_config_disables_deletes_and_demands_tokens():
    config = registry_auth.registry_config(realm="http://auth:5002/token", rootcertbundle="/c.pem", data_dir="/d", addr=":5000")
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["auth"] == {
        "token": {"realm": "http://auth:5002/token", "service": "mlplane-registry", "issuer": "mlplane-registry-auth", "rootcertbundle": "/c.pem"}
    }


# --------------------------------------------------------------------------------------------
# A real registry and the real token server
# --------------------------------------------------------------------------------------------


class Client:
    """A registry client following the bearer challenge (what docker, containerd and crane do)."""

    def __init__(self, port: int, identity: str | None, secret: str = SECRET):
        self.base = f"http://127.0.0.1:{port}"
        self.basic = None
        if identity is not None:
            self.basic = "Basic " + base64.b64encode(f"{identity}:{password(secret, identity)}".encode()).decode()

    def _token(self, challenge: str) -> str | None:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": fields["service"]}
        if "scope" in fields:
            query["scope"] = fields["scope"]
        request = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query)}")
        if self.basic:
            request.add_header("Authorization", self.basic)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)["token"]
        except urllib.error.HTTPError:
            return None

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        url = path if path.startswith("http") else self.base + path
        headers = dict(headers or {})
        for _ in range(2):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                challenge = error.headers.get("WWW-Authenticate", "")
                if error.code != 401 or not challenge.startswith("Bearer ") or "Authorization" in headers:
                    return error.code, dict(error.headers), error.read()
                token = self._token(challenge)
                if token is None:
                    return 401, dict(error.headers), b""
                headers["Authorization"] = f"Bearer {token}"
        raise AssertionError("unreachable")

    def push(self, repository: str, tag: str) -> int:
        """Push a one-layer image; the status of the first refused step, or 201."""
        digests = []
        for data in (json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode(), f"{repository}:{tag}".encode()):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            status, headers, _ = self.request("POST", f"/v2/{repository}/blobs/uploads/")
            if status != 202:
                return status
            location = headers["Location"]
            location = location if location.startswith("http") else self.base + location
            separator = "&" if "?" in location else "?"
            status, _, _ = self.request("PUT", f"{location}{separator}digest={digest}", data, {"Content-Type": "application/octet-stream"})
            if status != 201:
                return status
            digests.append({"digest": digest, "size": len(data)})
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **digests[0]},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **digests[1]}],
        }).encode()
        status, _, _ = self.request("PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        return status

    def pull(self, repository: str, tag: str) -> tuple[int, str]:
        status, headers, body = self.request("GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        return status, headers.get("Docker-Content-Digest", "")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry-auth")
    key_pem, cert_pem = registry_auth.signing_material(SECRET)
    bundle = tmp / "token-ca.pem"
    bundle.write_text(cert_pem)
    token_port, registry_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "TOKEN_SECRET": SECRET, "TOKEN_KEY_PEM": key_pem,
        "TOKEN_CERT_PEM": cert_pem, "TOKEN_PORT": str(token_port), "TOKEN_ADDR": "127.0.0.1",
    }
    log = tmp / "tokens.log"
    tokens = subprocess.Popen([sys.executable, "-c", registry_auth.TOKEN_SERVER_SCRIPT], env=env, stderr=log.open("w"))
    config = registry_auth.registry_config(
        realm=f"http://127.0.0.1:{token_port}/token", rootcertbundle=str(bundle), data_dir=str(tmp / "data"), addr=f"127.0.0.1:{registry_port}"
    )
    config["log"]["level"] = "error"
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen([REGISTRY, "serve", str(tmp / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(token_port)
        wait_for(registry_port)
        yield registry_port, token_port, log
    finally:
        for process in (server, tokens):
            process.terminate()
            process.wait(timeout=10)


pytestmark_servers = [needs_registry, pytest.mark.servers]


def servers(test):
    for mark in pytestmark_servers:
        test = mark(test)
    return test


@servers
def test_nothing_is_served_without_credentials(registry):
    port, _, _ = registry
    status, headers, _ = Client(port, None).request("GET", "/v2/")
    assert status == 401
    assert Client(port, None).pull("a/x", "1")[0] == 401
    # A wrong password gets no token at all.
    assert Client(port, push_identity("a"), secret="wrong").push("a/x", "1") == 401


@servers
def test_team_a_pushes_under_its_prefix_and_pulls_it_back(registry):
    port, _, _ = registry
    team_a = Client(port, push_identity("a"))
    assert team_a.push("a/x", "1") == 201
    status, digest = team_a.pull("a/x", "1")
    assert status == 200 and digest.startswith("sha256:")
    # Team A's model servers pull it by digest, and can only pull.
    serving_a = Client(port, pull_identity("a"))
    assert serving_a.pull("a/x", digest)[0] == 200
    assert serving_a.push("a/y", "1") == 401


@servers
def test_team_a_cannot_push_or_pull_team_bs_repositories(registry):
    port, _, _ = registry
    assert Client(port, push_identity("b")).push("b/x", "1") == 201
    team_a = Client(port, push_identity("a"))
    assert team_a.push("b/x", "1") == 401
    assert team_a.push("b/serve", "evil") == 401
    assert team_a.pull("b/x", "1")[0] == 401
    assert Client(port, pull_identity("a")).pull("b/x", "1")[0] == 401
    # What B pushed is untouched.
    assert Client(port, pull_identity("b")).pull("b/x", "1")[0] == 200


@servers
def test_nobody_can_delete(registry):
    port, _, _ = registry
    platform = Client(port, "platform")
    assert platform.push("a/del", "1") == 201
    _, digest = platform.pull("a/del", "1")
    for who in ("platform", push_identity("a")):
        status, _, _ = Client(port, who).request("DELETE", f"/v2/a/del/manifests/{digest}")
        assert status in (401, 405), (who, status)
    assert platform.pull("a/del", "1")[0] == 200


@servers
def test_shared_bases_are_pushed_by_the_platform_and_pulled_by_team_runners(registry):
    port, _, _ = registry
    assert Client(port, "platform").push(f"{registry_auth.SHARED_PREFIX}/python", "3.13") == 201
    assert Client(port, push_identity("b")).pull(f"{registry_auth.SHARED_PREFIX}/python", "3.13")[0] == 200
    assert Client(port, push_identity("b")).push(f"{registry_auth.SHARED_PREFIX}/python", "evil") == 401
    assert Client(port, pull_identity("b")).pull(f"{registry_auth.SHARED_PREFIX}/python", "3.13")[0] == 401


@servers
def test_the_token_server_refuses_unknown_services_and_never_logs_a_password(registry):
    _, token_port, log_file = registry
    basic = "Basic " + base64.b64encode(f"platform:{password(SECRET, 'platform')}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{token_port}/token?service=other", headers={"Authorization": basic})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    # Tokens name the identity and only what was granted.
    request = urllib.request.Request(
        f"http://127.0.0.1:{token_port}/token?service=mlplane-registry&scope=repository:b/x:push,pull,delete",
        headers={"Authorization": "Basic " + base64.b64encode(f"push.a:{password(SECRET, 'push.a')}".encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.load(response)
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["sub"] == "push.a" and claims["access"] == [] and body["expires_in"] == registry_auth.TOKEN_TTL
    time.sleep(0.2)
    log = log_file.read_text()
    assert "token for push.a" in log
    assert password(SECRET, "platform") not in log and SECRET not in log


# --------------------------------------------------------------------------------------------
# A team stack's render: egress to the registry only, pull credentials, digest-pinned images
# --------------------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def _team_render(**extra):
    from test_team import render, team_raw

    return render(team_raw("vision", **extra))


def test_team_pods_reach_the_registry_and_nothing_else_on_its_ports():
    from test_network_policies import Cluster, Host, Pod

    from mlplane.core import kube

    result = _team_render(services=["tracking", "registry"], network={"allow_internet_https": True})
    policies = [m for m in result.manifests() if m["kind"] == "NetworkPolicy"]
    work = "mlplane-team-vision"
    cluster = Cluster(policies, {work: {kube.TEAM_LABEL: "vision"}, "mlplane-team-vision-serving": {kube.TEAM_LABEL: "vision"}})
    pod = Pod("team-job", work, {"app": "build"}, "10.244.3.4")
    registry = Host("bundled registry container", "172.18.0.3")
    token_server = Host("registry token server container", "172.18.0.4")
    assert cluster.allowed(pod, registry, 5000)
    assert cluster.allowed(pod, token_server, registry_auth.TOKEN_PORT)
    # The old rule let any address on 5000: another host's registry, a pod-reachable proxy...
    for elsewhere in ("8.8.8.8", "10.0.0.9", "192.168.1.10"):
        assert not cluster.allowed(pod, Host("elsewhere", elsewhere), 5000), elsewhere
        assert not cluster.allowed(pod, Host("elsewhere", elsewhere), registry_auth.TOKEN_PORT), elsewhere
    # Other ports on kind's network stay closed (the nodes' kubelet, for one).
    assert not cluster.allowed(pod, Host("kubelet", "172.18.0.2"), 10250)


def test_team_registry_egress_names_the_configured_kind_network():
    from mlplane.config import parse_platform
    from mlplane.targets.local.registry import registry_egress

    platform = parse_platform({"registry": {"bundled": {"network_cidr": "172.30.0.0/16", "auth_port": 5055}}})
    assert registry_egress(platform) == {
        "to": [{"ipBlock": {"cidr": "172.30.0.0/16"}}],
        "ports": [{"port": 5000, "protocol": "TCP"}, {"port": 5055, "protocol": "TCP"}],
    }
    external = parse_platform({"registry": {"mode": "external", "external": {"url": "ghcr.io/acme"}}})
    assert registry_egress(external)["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_team_models_pull_with_the_teams_pull_secret_and_pin_by_digest():
    image = f"localhost:5001/vision/serve@{DIGEST}"
    result = _team_render(
        services=["tracking", "registry"],
        serving={"models": [{"name": "scorer", "registered_model": "vision-scorer", "alias": "champion", "image": image}]},
    )
    (deployment,) = [m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "scorer"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "registry-pull"}]
    (container,) = spec["containers"]
    assert container["image"] == image and container["imagePullPolicy"] == "IfNotPresent"


def test_team_models_by_tag_are_pulled_always_and_without_registry_need_no_secret():
    result = _team_render(
        services=["tracking"],
        serving={"models": [{"name": "scorer", "registered_model": "vision-scorer", "alias": "champion", "image": "localhost:5001/vision/serve:1"}]},
    )
    (deployment,) = [m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "scorer"]
    spec = deployment["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in spec
    assert spec["containers"][0]["imagePullPolicy"] == "Always"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("localhost:5001/vision/serve@sha256:abc", "64 lowercase hex"),
        (f"localhost:5001/vision/serve@sha256:{'AB' * 32}", "64 lowercase hex"),
        (f"localhost:5001/vision/serve@md5:{'ab' * 32}", "64 lowercase hex"),
        ("localhost:5001/vision/serve", "pinned to a tag other than 'latest' or to a digest"),
    ],
)
def test_a_bad_digest_reference_is_refused_naming_the_field(image, message):
    from mlplane.config import ConfigError, parse_platform

    raw = {"serving": {"models": [{"name": "m", "registered_model": "r", "version": 1, "image": image}]}}
    with pytest.raises(ConfigError) as caught:
        parse_platform(raw)
    text = str(caught.value)
    assert "serving.models.0.image" in text or "serving.models[0].image" in text, text
    assert message in text


def test_a_digest_reference_with_a_tag_is_accepted():
    from mlplane.config import parse_platform

    image = f"localhost:5001/vision/serve:1.2@{DIGEST}"
    config = parse_platform({"serving": {"models": [{"name": "m", "registered_model": "r", "version": 1, "image": image}]}})
    assert config.serving.models[0].image == image


def test_the_platforms_models_pull_and_its_runners_push_with_the_platform_identity(tmp_path):
    from test_network_policies import CONFIG, ROOT

    from mlplane.cli import load_platform, offline_run

    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source, platform = load_platform(None, path)
        manifests = offline_run(source, platform).manifests()
    finally:
        os.chdir(cwd)
    (iris,) = [m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "iris"]
    assert iris["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-pull"}]
    secrets = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in manifests if m["kind"] == "Secret"}
    for key in (("mlplane-serving", "registry-pull"), ("mlplane-ci-runners", "registry-push")):
        assert secrets[key]["type"] == "kubernetes.io/dockerconfigjson", key
        auths = json.loads(secrets[key]["stringData"][".dockerconfigjson"])["auths"]
        assert {entry["username"] for entry in auths.values()} == {registry_auth.PLATFORM_IDENTITY}, key


def test_the_platform_gives_each_admitted_team_its_own_push_and_pull_credentials():
    from mlplane import cli
    from mlplane.config import parse_platform
    from mlplane.services.team_access import TeamGrant

    raw = {"tracking": {"workspaces": True}}
    grants = [TeamGrant(name=n, work_namespace=f"mlplane-team-{n}", serving_namespace=f"mlplane-team-{n}-serving") for n in ("vision", "nlp")]
    result = cli.offline_run(cli.Source(raw, "mlplane:platform", "local", None, {}), parse_platform(raw), teams=grants)
    secrets = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): json.loads(m["stringData"][".dockerconfigjson"])["auths"]
        for m in result.manifests()
        if m["kind"] == "Secret" and m.get("type") == "kubernetes.io/dockerconfigjson"
    }
    for team in ("vision", "nlp"):
        push = secrets[(f"mlplane-team-{team}", "registry-push")]
        pull = secrets[(f"mlplane-team-{team}-serving", "registry-pull")]
        assert {e["username"] for e in push.values()} == {push_identity(team)}
        assert {e["username"] for e in pull.values()} == {pull_identity(team)}
    # Nowhere does a team namespace hold another identity's credentials.
    for (namespace, _), auths in secrets.items():
        if namespace.startswith("mlplane-team-"):
            team = namespace.removeprefix("mlplane-team-").removesuffix("-serving")
            assert {e["username"] for e in auths.values()} <= {push_identity(team), pull_identity(team)}
    # The resources wait for the team's namespaces (created by its TeamAccess).
    push_secret = result.named("mlplane-teams-vision-registry-push")
    assert any(urn.endswith("::mlplane-teams-vision-work-namespace") for urn in push_secret.depends_on)
