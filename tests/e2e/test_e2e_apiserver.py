"""The rendered local stack against a real Kubernetes API server (kube-apiserver + etcd).

Starts etcd and kube-apiserver on loopback, renders the local stack offline and server-side
dry-run applies every built-in object through the REST API. The API server's own validation,
defaulting and admission chain run on each object; in particular Pod Security admission with the
namespaces' `enforce: restricted` labels. Pod Security only *warns* for workload objects (a
Deployment's template is checked, but the Deployment is not rejected), so the test also fails on
any "would violate PodSecurity" warning and dry-run creates a Pod from every pod template, which
Pod Security *enforces*.

Run with `pytest -m e2e tests/e2e/test_e2e_apiserver.py` after `scripts/bootstrap-apiserver.sh`
(binaries on PATH, or in its --print-bin-dir). Objects of custom resources whose CRDs are not
installed here (Gateway API, Envoy Gateway) are skipped.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "mlplane-e2e-token"
FIELD_MANAGER = "mlplane"
# API groups of custom resources: their CRDs are not installed into the test's API server.
CRD_GROUPS = {"gateway.networking.k8s.io", "gateway.envoyproxy.io"}
# Created for real (not dry-run): namespaced objects need their namespace, Pods their service account.
CREATE_FIRST = ("Namespace", "ServiceAccount")
WORKLOAD_TEMPLATES = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    try:
        bin_dir = subprocess.run(
            [str(ROOT / "scripts" / "bootstrap-apiserver.sh"), "--print-bin-dir"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    candidate = Path(bin_dir) / name
    return str(candidate) if bin_dir and os.access(candidate, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_account_key(path: Path) -> None:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ApiServer:
    """A minimal REST client with the static admin token (group system:masters)."""

    def __init__(self, url: str):
        self.url = url
        self.ssl = ssl.create_default_context()
        self.ssl.check_hostname = False  # self-generated serving certificate of a throwaway server
        self.ssl.verify_mode = ssl.CERT_NONE
        self._resources: dict[str, dict[str, tuple[str, bool]] | None] = {}

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> tuple[int, dict, list[str]]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                status, headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            payload = {"raw": raw.decode(errors="replace")}
        return status, payload, headers.get_all("Warning") or []

    def resources(self, api_version: str) -> dict[str, tuple[str, bool]] | None:
        """kind -> (plural, namespaced) from discovery; None when the group/version is not served."""
        if api_version not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, payload, _ = self.request("GET", base)
            self._resources[api_version] = None if status == 404 else {
                r["kind"]: (r["name"], r["namespaced"])
                for r in payload.get("resources", []) if "/" not in r["name"]
            }
            assert status in (200, 404), f"discovery of {api_version}: HTTP {status} {payload}"
        return self._resources[api_version]

    def path(self, obj: dict, name: bool = True) -> str:
        api_version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        resources = self.resources(api_version)
        assert resources and kind in resources, f"{api_version} {kind} is not served by the API server"
        plural, namespaced = resources[kind]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            base += f"/namespaces/{meta.get('namespace') or 'default'}"
        return f"{base}/{plural}" + (f"/{meta['name']}" if name else "")


@pytest.fixture(scope="module")
def apiserver(request, tmp_path_factory) -> ApiServer:
    binaries = {name: _binary(name) for name in ("kube-apiserver", "etcd")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        reason = (f"{', '.join(missing)} not found on PATH nor in scripts/bootstrap-apiserver.sh --print-bin-dir: "
                  "run scripts/bootstrap-apiserver.sh (builds both from Go modules)")
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1" and os.environ.get("MLPLANE_APISERVER") == "1":
            pytest.fail(f"required (MLPLANE_REQUIRE_TOOLS=1, MLPLANE_APISERVER=1): {reason}")
        pytest.skip(reason)

    base = tmp_path_factory.mktemp("apiserver")
    procs: list[subprocess.Popen] = []

    def stop() -> None:
        for proc in reversed(procs):  # the API server first, then etcd
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)

    request.addfinalizer(stop)

    client_port, peer_port, secure_port = _free_port(), _free_port(), _free_port()
    etcd_log = base / "etcd.log"
    with etcd_log.open("wb") as log:
        procs.append(subprocess.Popen([
            binaries["etcd"], "--name", "mlplane-e2e", "--data-dir", str(base / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"mlplane-e2e=http://127.0.0.1:{peer_port}",
            "--log-level", "warn", "--unsafe-no-fsync",
        ], stdout=log, stderr=subprocess.STDOUT))

    sa_key = base / "sa.key"
    _service_account_key(sa_key)
    tokens = base / "tokens.csv"
    tokens.write_text(f'{TOKEN},mlplane-e2e-admin,mlplane-e2e-admin,"system:masters"\n')
    apiserver_log = base / "kube-apiserver.log"
    with apiserver_log.open("wb") as log:
        procs.append(subprocess.Popen([
            binaries["kube-apiserver"],
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure_port}",
            f"--cert-dir={base / 'certs'}",
            f"--etcd-servers=http://127.0.0.1:{client_port}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # No controllers run: the loopback address cannot be the kubernetes Service's endpoint.
            "--endpoint-reconciler-type=none",
            # The default admission plugins stay on, PodSecurity among them.
            "--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount",
        ], stdout=log, stderr=subprocess.STDOUT))

    server = ApiServer(f"https://127.0.0.1:{secure_port}")
    deadline = time.monotonic() + 90
    status, payload = None, None
    while time.monotonic() < deadline:
        for proc, log_path in zip(procs, (etcd_log, apiserver_log)):
            if proc.poll() is not None:
                pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            status, payload, _ = server.request("GET", "/readyz")
        except (OSError, urllib.error.URLError) as error:
            status, payload = None, str(error)
        if status == 200:
            return server
        time.sleep(0.5)
    pytest.fail(f"kube-apiserver not ready after 90 s (last: {status} {payload}):\n{_tail(apiserver_log)}")


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    from mlplane.cli import load_platform, offline_run

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source, platform = load_platform("local", None)
        result = offline_run(source, platform)
    finally:
        os.chdir(cwd)
    return [copy.deepcopy(m) for m in result.manifests()]


def _label(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['apiVersion']} {obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")


def _apply(server: ApiServer, obj: dict, dry_run: bool) -> tuple[int, dict, list[str]]:
    query = f"?fieldManager={FIELD_MANAGER}&force=true" + ("&dryRun=All" if dry_run else "")
    return server.request("PATCH", server.path(obj) + query, obj, "application/apply-patch+yaml")


def _default_service_account(server: ApiServer, namespace: str) -> None:
    """No controller-manager runs: create the namespace's `default` service account, which Pods
    that name none need (the ServiceAccount admission plugin rejects a Pod whose account is missing)."""
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}
    status, payload, _ = server.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", sa)
    assert status in (201, 409), f"default service account in {namespace}: HTTP {status} {payload}"


def _pods_from_templates(objects: list[dict]) -> list[dict]:
    pods = []
    for obj in objects:
        keys = WORKLOAD_TEMPLATES.get(obj["kind"])
        if not keys:
            continue
        template = obj
        for key in keys:
            template = template[key]
        meta = template.get("metadata", {})
        spec = copy.deepcopy(template["spec"])
        if obj["kind"] == "StatefulSet":  # what the StatefulSet controller adds: its claims as volumes
            spec.setdefault("volumes", []).extend(
                {"name": claim["metadata"]["name"],
                 "persistentVolumeClaim": {"claimName": f"{claim['metadata']['name']}-{obj['metadata']['name']}-0"}}
                for claim in obj["spec"].get("volumeClaimTemplates", [])
            )
        pods.append({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{obj['kind'].lower()}-{obj['metadata']['name']}"[:63].rstrip("-"),
                "namespace": obj["metadata"].get("namespace", "default"),
                "labels": meta.get("labels", {}),
                "annotations": meta.get("annotations", {}),
            },
            "spec": spec,
        })
    return pods


def test_every_rendered_object_is_accepted_by_a_real_api_server(apiserver: ApiServer, manifests: list[dict]):
    built_in = [m for m in manifests if m["apiVersion"].split("/")[0] not in CRD_GROUPS]
    skipped = [m for m in manifests if m not in built_in]
    assert built_in, "the local stack rendered no built-in object"
    for obj in skipped:  # only skipped because their CRDs are not installed here
        assert apiserver.resources(obj["apiVersion"]) is None, f"{_label(obj)} is served: apply it"

    order = {kind: i for i, kind in enumerate(CREATE_FIRST)}
    first = sorted((m for m in built_in if m["kind"] in order), key=lambda m: order[m["kind"]])
    rest = [m for m in built_in if m["kind"] not in order]
    pods = _pods_from_templates(rest)
    assert pods, "no pod templates found in the local stack"

    rejected, warnings = [], []
    for obj in first:  # for real: namespaced objects are dry-run into them
        status, payload, warns = _apply(apiserver, obj, dry_run=False)
        if status not in (200, 201):
            rejected.append(f"{_label(obj)}: HTTP {status}: {payload.get('message', payload)}")
        warnings += [f"{_label(obj)}: {w}" for w in warns]
        if obj["kind"] == "Namespace" and status in (200, 201):
            _default_service_account(apiserver, obj["metadata"]["name"])
    for obj in first:  # and again as a dry-run, like everything else
        status, payload, warns = _apply(apiserver, obj, dry_run=True)
        if status not in (200, 201):
            rejected.append(f"{_label(obj)} (dry-run): HTTP {status}: {payload.get('message', payload)}")
    for obj in rest + pods:
        status, payload, warns = _apply(apiserver, obj, dry_run=True)
        if status not in (200, 201):
            rejected.append(f"{_label(obj)}: HTTP {status}: {payload.get('message', payload)}")
        warnings += [f"{_label(obj)}: {w}" for w in warns]

    assert not rejected, "rejected by kube-apiserver:\n" + "\n".join(rejected)
    pod_security = [w for w in warnings if "PodSecurity" in w]
    assert not pod_security, "Pod Security warnings:\n" + "\n".join(pod_security)
    print(f"accepted {len(built_in)} objects and {len(pods)} pods (dry-run); "
          f"skipped {len(skipped)} custom resources; other warnings: {warnings or 'none'}")


def test_the_namespaces_enforce_pod_security_restricted(apiserver: ApiServer, manifests: list[dict]):
    """Proves the admission check above has teeth: in every namespace, a Pod that the "baseline"
    level allows but "restricted" does not (no securityContext: may run as root, keeps its
    capabilities, no seccomp profile) is rejected by Pod Security admission."""
    namespaces = [m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"]
    assert namespaces
    for ns in namespaces:
        apiserver.request("PATCH", f"/api/v1/namespaces/{ns}?fieldManager={FIELD_MANAGER}&force=true",
                          next(m for m in manifests if m["kind"] == "Namespace" and m["metadata"]["name"] == ns),
                          "application/apply-patch+yaml")
        _default_service_account(apiserver, ns)
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unrestricted", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]},
        }
        status, payload, _ = apiserver.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
        message = payload.get("message", "")
        assert status == 403 and 'violates PodSecurity "restricted' in message, (ns, status, message)


# --------------------------------------------------------------------------------------------
# CI runner job pods as ARC's container hooks build them ('kubernetes-novolume', the default)
# --------------------------------------------------------------------------------------------

RUNNERS = {"ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}}


@pytest.fixture(scope="module")
def runner_manifests(tmp_path_factory) -> list[dict]:
    import yaml
    from mlplane.cli import load_platform, offline_run

    path = tmp_path_factory.mktemp("runners") / "platform.yaml"
    path.write_text(yaml.safe_dump(RUNNERS))
    source, platform = load_platform(None, path)
    assert platform.ci_runners.container_mode == "kubernetes-novolume"
    return [copy.deepcopy(m) for m in offline_run(source, platform).manifests()]


def _hook_job_pod(manifests: list[dict], *, keep_hook_fs_init: bool) -> dict:
    import yaml
    from mlplane.config import versions
    from runner_hooks import hook_job_pod

    config_map = next(m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "job-pod-template")
    template = yaml.safe_load(config_map["data"]["job.yaml"])
    if keep_hook_fs_init:
        del template["spec"]["initContainers"]
    return hook_job_pod(
        runner_pod="mlplane-x7k2p-runner-4qz9d", namespace=config_map["metadata"]["namespace"],
        runner_image=versions.IMAGES["actions-runner"].ref(None), job_image="python:3.13-slim", template=template,
    )


def test_runner_job_pods_as_the_hooks_build_them_are_admitted(apiserver: ApiServer, runner_manifests: list[dict]):
    """The job pod the hooks submit (their pod, fs-init included, with the rendered template merged
    the way the hooks merge it) passes Pod Security in the namespace job pods run in; and, so this
    has teeth, the same pod with the hooks' own fs-init is rejected there."""
    pod = _hook_job_pod(runner_manifests, keep_hook_fs_init=False)
    ns = pod["metadata"]["namespace"]
    namespace = next(m for m in runner_manifests if m["kind"] == "Namespace" and m["metadata"]["name"] == ns)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    status, payload, _ = _apply(apiserver, namespace, dry_run=False)
    assert status in (200, 201), payload
    _default_service_account(apiserver, ns)

    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["fs-init"]
    status, payload, warnings = apiserver.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
    assert status == 201, (status, payload.get("message", payload))
    assert not [w for w in warnings if "PodSecurity" in w], warnings

    hooks_own = _hook_job_pod(runner_manifests, keep_hook_fs_init=True)
    assert hooks_own["spec"]["initContainers"][0]["securityContext"] == {"runAsGroup": 1001, "runAsUser": 1001}
    status, payload, _ = apiserver.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", hooks_own)
    message = payload.get("message", "")
    assert status == 403 and 'violates PodSecurity "restricted' in message, (status, message)
    assert 'container "fs-init"' in message, message
