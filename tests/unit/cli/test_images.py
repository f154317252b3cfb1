"""`mlplane images check|lock` against a real registry on loopback (Debian's docker-registry,
distribution 2.8), with images the test pushes through the registry HTTP API; plus the chart
sources and the lock in the render."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from mlplane.cli import images
from mlplane.core import kube
from mlplane.config import versions

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
needs_registry = pytest.mark.skipif(not Path(REGISTRY).exists(), reason="docker-registry (Debian) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"registry on {port} did not start")


def start_registry(tmp: Path, auth: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([REGISTRY, "serve", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port)
    except RuntimeError:
        process.kill()
        raise
    return process, port


def push(port: int, repository: str, tag: str, token: str | None = None) -> str:
    """Push a tiny image (config and one layer) and its manifest; returns the manifest digest."""
    base = f"http://127.0.0.1:{port}/v2/{repository}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = urllib.request.Request(f"{base}/blobs/uploads/", method="POST", headers=headers)
        with urllib.request.urlopen(start) as response:
            location = response.headers["Location"]
        if location.startswith("/"):
            location = f"http://127.0.0.1:{port}{location}"
        separator = "&" if "?" in location else "?"
        put = urllib.request.Request(f"{location}{separator}digest={digest}", data=data, method="PUT", headers={**headers, "Content-Type": "application/octet-stream"})
        urllib.request.urlopen(put).close()
        return {"digest": digest, "size": len(data)}

    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "tag": tag}).encode())
    layer = blob(f"layer of {repository}:{tag}".encode())
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **layer}],
        }
    ).encode()
    put = urllib.request.Request(
        f"{base}/manifests/{tag}", data=manifest, method="PUT",
        headers={**headers, "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    urllib.request.urlopen(put).close()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


@pytest.fixture
def registry(tmp_path):
    process, port = start_registry(tmp_path)
    yield port
    process.terminate()
    process.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# The registry client
# --------------------------------------------------------------------------------------------


@needs_registry
@pytest.mark.servers
def test_an_existing_tag_resolves_to_the_pushed_manifest_digest(registry):
    digest = push(registry, "library/postgres", "18.6")
    assert images.RegistryClient(timeout=5).resolve(f"127.0.0.1:{registry}", "library/postgres", "18.6") == digest


@needs_registry
@pytest.mark.servers
def test_a_missing_tag_is_a_clear_failure_naming_the_image(registry):
    push(registry, "library/postgres", "18.6")
    with pytest.raises(images.RegistryError) as caught:
        images.RegistryClient(timeout=5).resolve(f"127.0.0.1:{registry}", "library/postgres", "18.7")
    assert caught.value.kind == "missing"
    assert f"127.0.0.1:{registry}/library/postgres:18.7" in str(caught.value) and "no such tag" in str(caught.value)


@pytest.mark.servers
def test_a_registry_that_is_down_is_a_clear_failure():
    port = free_port()
    with pytest.raises(images.RegistryError) as caught:
        images.RegistryClient(timeout=2).resolve(f"127.0.0.1:{port}", "library/postgres", "18.6")
    assert caught.value.kind == "unavailable" and "unreachable" in str(caught.value)


class TokenServer:
    """Issues RS256 bearer tokens (x5c header) for any pull or push scope it is asked for."""

    def __init__(self, tmp: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlplane-test-token-issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = tmp / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                body = json.dumps({"token": server.token(query.get("scope", ""))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        import urllib.parse  # noqa: F401 (used by the handler)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, scope: str) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        if scope:
            kind, name, actions = scope.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": "mlplane-test", "sub": "", "aud": "mlplane-registry", "exp": now + 600, "nbf": now - 10, "iat": now, "jti": str(now), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def close(self) -> None:
        self.httpd.shutdown()


@needs_registry
@pytest.mark.servers
def test_a_registry_that_demands_a_token_is_answered_through_the_bearer_flow(tmp_path):
    tokens = TokenServer(tmp_path)
    auth = {"token": {"realm": f"http://127.0.0.1:{tokens.port}/token", "service": "mlplane-registry", "issuer": "mlplane-test", "rootcertbundle": str(tokens.bundle)}}
    process, port = start_registry(tmp_path, auth)
    try:
        # Without a token the registry refuses, with the challenge the client follows.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/")
        assert refused.value.code == 401 and "Bearer realm=" in refused.value.headers["WWW-Authenticate"]
        digest = push(port, "grafana/grafana", "13.2.0", token=tokens.token("repository:grafana/grafana:push,pull"))
        assert images.RegistryClient(timeout=5).resolve(f"127.0.0.1:{port}", "grafana/grafana", "13.2.0") == digest
        assert any("scope=repository%3Agrafana%2Fgrafana%3Apull" in r and "service=mlplane-registry" in r for r in tokens.requests)
    finally:
        process.terminate()
        process.wait(timeout=10)
        tokens.close()


# --------------------------------------------------------------------------------------------
# The commands, on a project whose mirrors point at the test registry
# --------------------------------------------------------------------------------------------


def project(tmp: Path, port: int, extra_images: dict | None = None) -> Path:
    root = tmp / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")
    platform = {
        "cluster": {"mode": "existing", "existing": {"context": "test"}},
        "registry": {"mode": "external", "external": {"url": "registry.corp.example"}},
        "routing": {"tls": {"plain_http": True}},  # the TLS requirement is tested in test_gateway_security.py
        "images": {"registry_mirror": f"127.0.0.1:{port}/hub", "chart_mirror": f"127.0.0.1:{port}/charts", **(extra_images or {})},
        "lifecycle": {"throwaway": True},
    }
    (root / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": {"mlplane:platform": platform}}))
    return root


def run_cli(root: Path, monkeypatch, *args: str) -> tuple[int, str, str]:
    """The real command line (exit codes, stderr), run inside the project."""
    result = subprocess.run([sys.executable, "-m", "mlplane", *args], cwd=root, capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


@needs_registry
@pytest.mark.servers
def test_check_and_lock_resolve_every_image_and_chart_and_the_stack_then_pulls_by_digest(registry, tmp_path, monkeypatch):
    root = project(tmp_path, registry)
    code, out, err = run_cli(root, monkeypatch, "images", "check", "--stack", "test", "--json")
    assert code == 1
    report = json.loads(out)
    assert {i["status"] for i in report["items"]} == {"missing"}
    assert "error: image postgres: " in err and f"127.0.0.1:{registry}/hub/library/postgres:18.6: the registry has no such tag" in err

    digests = {}
    for item in report["items"]:
        repository = item["ref"].removeprefix("oci://").split("/", 1)[1].rsplit(":", 1)[0]
        digests[item["key"]] = push(registry, repository, item["ref"].rsplit(":", 1)[1])
    assert {"postgres", "mlflow", "grafana", "envoy-gateway"} <= set(digests)

    code, out, err = run_cli(root, monkeypatch, "images", "check", "--stack", "test")
    assert code == 0, err
    assert "postgres" in out and digests["postgres"][:20] in out

    code, out, err = run_cli(root, monkeypatch, "images", "lock", "--stack", "test")
    assert code == 0, err
    lock_path = root / "stacks" / "images.test.lock.json"
    lock = json.loads(lock_path.read_text())
    assert lock["images"]["postgres"] == {"ref": f"127.0.0.1:{registry}/hub/library/postgres:18.6", "digest": digests["postgres"]}
    assert lock["charts"]["envoy-gateway"]["ref"] == f"oci://127.0.0.1:{registry}/charts/envoyproxy/gateway-helm:v1.9.1"
    assert "set images.lock_file: stacks/images.test.lock.json" in out

    # The stack with the lock: every mlplane workload pulls by digest and drops the exception.
    config = yaml.safe_load((root / "stacks" / "Pulumi.test.yaml").read_text())
    config["config"]["mlplane:platform"]["images"]["lock_file"] = "stacks/images.test.lock.json"
    (root / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump(config))
    code, out, err = run_cli(root, monkeypatch, "render", "--stack", "test", "--out", str(tmp_path / "out"))
    assert code == 0, err
    rendered = [yaml.safe_load(p.read_text()) for p in (tmp_path / "out" / "manifests").glob("*.yaml")]
    workloads = [m for m in rendered if m["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert workloads
    for manifest in workloads:
        pod = manifest["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert "@sha256:" in container["image"], (manifest["metadata"]["name"], container["image"])
        notes = manifest["metadata"].get("annotations") or {}
        assert not any(v.startswith("CKV_K8S_43=") for v in notes.values()), manifest["metadata"]["name"]

    # A check against the lock passes; a tag that moved since the lock is reported.
    assert run_cli(root, monkeypatch, "images", "check", "--stack", "test")[0] == 0
    push(registry, "hub/library/postgres", "18.6-moved")  # another manifest...
    moved = push(registry, "hub/library/grafana", "13.2.0-x")
    assert moved
    lock["images"]["postgres"]["digest"] = "sha256:" + "0" * 64
    lock_path.write_text(json.dumps(lock))
    code, out, err = run_cli(root, monkeypatch, "images", "check", "--stack", "test")
    assert code == 1 and "the tag moved" in err


@pytest.mark.servers
def test_check_against_a_registry_that_is_down_exits_1_naming_each_image(tmp_path, monkeypatch):
    root = project(tmp_path, free_port())
    code, _, err = run_cli(root, monkeypatch, "images", "check", "--stack", "test", "--timeout", "2")
    assert code == 1
    assert "error: image postgres: " in err and "registry unreachable" in err


def test_lock_never_overwrites_a_file_it_did_not_write(tmp_path, monkeypatch):
    root = project(tmp_path, free_port())
    mine = root / "stacks" / "images.test.lock.json"
    mine.write_text("my notes\n")
    code, _, err = run_cli(root, monkeypatch, "images", "lock", "--stack", "test")
    assert code == 2 and "is not a lock written by `mlplane images lock`; not overwritten" in err
    assert mine.read_text() == "my notes\n"


def test_a_missing_or_stale_lock_file_is_invalid_config_naming_the_field(tmp_path, monkeypatch):
    root = project(tmp_path, 5000, {"lock_file": "stacks/nope.json"})
    code, _, err = run_cli(root, monkeypatch, "validate", "--stack", "test")
    assert code == 2 and "images" in err and "lock_file" in err and "does not exist" in err
    stale = {"generator": images.GENERATOR, "images": {"postgres": {"ref": "127.0.0.1:5000/hub/library/postgres:18.7", "digest": "sha256:" + "1" * 64}}}
    (root / "stacks" / "nope.json").write_text(json.dumps(stale))
    code, _, err = run_cli(root, monkeypatch, "validate", "--stack", "test")
    assert code == 2 and "is stale" in err and "run `mlplane images lock` again" in err


# --------------------------------------------------------------------------------------------
# Charts from a local path (air-gapped clusters) and the digest exception
# --------------------------------------------------------------------------------------------


def test_a_render_with_local_chart_paths_installs_the_charts_from_those_paths(tmp_path, monkeypatch):
    root = project(tmp_path, 5000)
    (root / "charts" / "gateway-helm").mkdir(parents=True)
    (root / "charts" / "arc.tgz").write_bytes(b"")
    config = yaml.safe_load((root / "stacks" / "Pulumi.test.yaml").read_text())
    platform = config["config"]["mlplane:platform"]
    platform["images"]["chart_paths"] = {"envoy-gateway": "charts/gateway-helm", "arc-controller": "charts/arc.tgz"}
    platform["ci_runners"] = {"github_config_url": "https://github.com/acme/models", "github_token_key": "gh"}
    config["config"]["mlplane:gh"] = {"secure": "v1:x"}
    (root / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump(config))
    code, _, err = run_cli(root, monkeypatch, "render", "--stack", "test", "--out", str(tmp_path / "out"))
    assert code == 0, err
    resources = json.loads((tmp_path / "out" / "resources.json").read_text())
    charts = {r["name"]: r["inputs"] for r in resources if r["type"] == "kubernetes:helm.sh/v4:Chart"}
    gateway = next(v for k, v in charts.items() if k.endswith("routing-chart"))
    assert gateway["chart"] == str(root / "charts" / "gateway-helm") and "version" not in gateway
    controller = next(v for k, v in charts.items() if k.endswith("-controller"))
    assert controller["chart"] == str(root / "charts" / "arc.tgz") and "version" not in controller
    scale_set = next(v for k, v in charts.items() if k.endswith("-scale-set"))
    assert scale_set["chart"] == "oci://127.0.0.1:5000/charts/actions/actions-runner-controller-charts/gha-runner-scale-set"


def test_a_chart_path_that_does_not_exist_exits_2_naming_the_field(tmp_path, monkeypatch):
    root = project(tmp_path, 5000, {"chart_paths": {"envoy-gateway": "charts/missing"}})
    code, _, err = run_cli(root, monkeypatch, "validate", "--stack", "test")
    assert code == 2
    assert "images" in err and "chart_paths.envoy-gateway: charts/missing does not exist" in err


def test_the_digest_exception_is_dropped_only_where_every_image_is_a_digest():
    import pulumi

    note = f"{kube.DIGEST_SKIP[0]}={kube.DIGEST_SKIP[1]}"
    annotations = {"checkov.io/skip1": note, "checkov.io/skip2": "CKV_K8S_38=needs a token", "other": "x"}

    def run(*images_: object):
        props = {"metadata": {"name": "w", "annotations": dict(annotations)}, "spec": {"template": {"spec": {"containers": [{"image": i} for i in images_]}}}}
        args = pulumi.ResourceTransformationArgs(resource=None, type_="kubernetes:apps/v1:Deployment", name="w", props=props, opts=pulumi.ResourceOptions())  # type: ignore[arg-type]
        return kube.drop_digest_exception(args)

    digest = "a/b:1@sha256:" + "2" * 64
    result = run(digest, digest)
    assert result is not None
    assert result.props["metadata"]["annotations"] == {"other": "x", "checkov.io/skip1": "CKV_K8S_38=needs a token"}
    assert run(digest, "a/b:1") is None
    assert run() is None
