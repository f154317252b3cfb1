"""A real Kubernetes control plane with simulated nodes, on loopback, for `pytest -m cluster`.

etcd, kube-apiserver (RBAC, Pod Security admission, service-account token signing),
kube-controller-manager (every default controller: deployments, replicasets, statefulsets, jobs,
namespaces, garbage collector, endpoints, persistent volumes, service-account tokens... each with
its own service-account credentials), kube-scheduler and kwok, which plays the kubelets of a few
fake Nodes: it runs kwok's default Stages (taken from the kwok module by
scripts/bootstrap-cluster.sh), so scheduled pods become Running and Ready, pods of Jobs succeed,
deleted pods go away, and claims of the default StorageClass `kwok-volume` are bound to
PersistentVolumes it provisions. No container runs.

Binaries come from scripts/bootstrap-apiserver.sh and scripts/bootstrap-cluster.sh (both cached by
version); the CRDs of the Gateway API and Envoy Gateway from the latter's --print-crd-dir.
"""

from __future__ import annotations

import base64
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
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: The kubeconfig context the platform stack adopts (cluster.mode: existing).
CONTEXT = "mlplane-cluster"
#: Fake nodes: kwok manages Nodes carrying this annotation (and only those).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
#: Identities of the static token file: name -> (token, groups).
IDENTITIES = {
    "admin": ("mlplane-cluster-admin", "system:masters"),
    # The names the default RBAC bootstrap policy binds to their ClusterRoles.
    "system:kube-controller-manager": ("mlplane-cluster-kcm", ""),
    "system:kube-scheduler": ("mlplane-cluster-scheduler", ""),
    # kwok plays every kubelet (node and pod status, leases, pod deletion, volume binding).
    "kwok": ("mlplane-cluster-kwok", "system:masters"),
}


def _script(name: str, *args: str) -> str:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def find_binaries() -> tuple[dict[str, str], list[str]]:
    """name -> path for every binary found (PATH first, then the bootstrap bin dir); missing names."""
    try:
        bin_dir = Path(_script("bootstrap-cluster.sh", "--print-bin-dir"))
    except (OSError, subprocess.SubprocessError):
        bin_dir = None
    found, missing = {}, []
    for name in BINARIES:
        path = shutil.which(name) or (str(bin_dir / name) if bin_dir and os.access(bin_dir / name, os.X_OK) else None)
        if path:
            found[name] = path
        else:
            missing.append(name)
    return found, missing


def crd_dir() -> Path:
    return Path(_script("bootstrap-cluster.sh", "--print-crd-dir"))


def kwok_stages_dir() -> Path:
    return Path(_script("bootstrap-cluster.sh", "--print-kwok-stages"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ApiError(AssertionError):
    pass


class Client:
    """A minimal REST client of the API server, with one identity's bearer token."""

    def __init__(self, url: str, token: str, ca_file: Path):
        self.url, self.token = url, token
        # kube-apiserver's self-generated serving certificate file also holds the CA that signed it.
        self.ssl = ssl.create_default_context(cafile=str(ca_file))

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, dict]:
        data = (body if isinstance(body, bytes) else json.dumps(body).encode()) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, (json.loads(raw) if raw else {})
        except json.JSONDecodeError:
            return status, {"raw": raw.decode(errors="replace")}

    def ok(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict:
        status, payload = self.request(method, path, body, content_type)
        if status >= 300:
            raise ApiError(f"{method} {path}: HTTP {status}: {payload.get('message', payload)}")
        return payload

    def apply(self, obj: dict, path: str) -> dict:
        """Server-side apply of ``obj`` at ``path`` (the object's own URL)."""
        return self.ok("PATCH", f"{path}?fieldManager=mlplane-cluster-test&force=true",
                       json.dumps(obj).encode(), "application/apply-patch+yaml")

    def get(self, path: str) -> dict:
        return self.ok("GET", path)

    def items(self, path: str) -> list[dict]:
        return self.get(path).get("items", [])


class ControlPlane:
    """Starts, waits for and stops the processes; ``admin`` is a system:masters client."""

    def __init__(self, base: Path, binaries: dict[str, str]):
        self.base, self.binaries = base, binaries
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.kubeconfig = base / "kubeconfig.yaml"
        self.url = ""
        self.admin: Client | None = None

    # --- processes ----------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> None:
        log_path = self.base / f"{name}.log"
        with log_path.open("wb") as log:
            # Same process group as the tests: a killed test run takes the control plane with it.
            proc = subprocess.Popen([self.binaries[name], *args], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log_path))

    def check_alive(self) -> None:
        for proc, log_path in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail(log_path)}")

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):  # kwok, scheduler, controller-manager, API server, etcd
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
        self.procs.clear()

    def _kubeconfig(self, path: Path, user: str) -> None:
        token = IDENTITIES[user][0]
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode(),
            }}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        }))
        path.chmod(0o600)

    def start(self) -> None:
        base = self.base
        client_port, peer_port, secure_port = free_port(), free_port(), free_port()
        self._start("etcd", [
            "--name", "mlplane-cluster", "--data-dir", str(base / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"mlplane-cluster=http://127.0.0.1:{peer_port}",
            "--log-level", "warn", "--unsafe-no-fsync",
        ])
        sa_key = base / "sa.key"
        _service_account_key(sa_key)
        tokens = base / "tokens.csv"
        tokens.write_text("".join(
            f'{token},{user},{user},"{groups}"\n' if groups else f"{token},{user},{user}\n"
            for user, (token, groups) in IDENTITIES.items()
        ))
        self._start("kube-apiserver", [
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure_port}",
            f"--cert-dir={base / 'certs'}",
            f"--etcd-servers=http://127.0.0.1:{client_port}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # A loopback address cannot be the `kubernetes` Service's endpoint.
            "--endpoint-reconciler-type=none",
            # The default admission plugins (DefaultStorageClass, ServiceAccount, ResourceQuota,
            # LimitRanger, ...) plus PodSecurity, named so that it is on whatever the default.
            "--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount,DefaultStorageClass",
        ])
        self.url = f"https://127.0.0.1:{secure_port}"
        self.ca_file = base / "certs" / "apiserver.crt"
        self._wait("kube-apiserver serving certificate and its CA", lambda: self.ca_file.exists()
                   and self.ca_file.read_text().count("BEGIN CERTIFICATE") >= 2, 60)
        self.admin = Client(self.url, IDENTITIES["admin"][0], self.ca_file)
        self._wait("kube-apiserver /readyz", lambda: self.admin.request("GET", "/readyz")[0] == 200, 120)
        self._kubeconfig(self.kubeconfig, "admin")

        kcm_config, scheduler_config, kwok_config = (base / f"{n}.kubeconfig" for n in ("kcm", "scheduler", "kwok"))
        self._kubeconfig(kcm_config, "system:kube-controller-manager")
        self._kubeconfig(scheduler_config, "system:kube-scheduler")
        self._kubeconfig(kwok_config, "kwok")
        self._start("kube-controller-manager", [
            f"--kubeconfig={kcm_config}",
            "--secure-port=0",  # no HTTPS endpoint (health and metrics) needed here
            "--leader-elect=false",
            f"--service-account-private-key-file={sa_key}",  # token Secrets for service accounts
            f"--root-ca-file={self.ca_file}",  # kube-root-ca.crt ConfigMaps
            "--use-service-account-credentials=true",  # each controller with its own RBAC identity
            "--controllers=*",  # every controller that is on by default
            "--concurrent-gc-syncs=5",
        ])
        self._start("kube-scheduler", [
            f"--kubeconfig={scheduler_config}", "--secure-port=0", "--leader-elect=false",
        ])
        stages = kwok_stages_dir()
        stage_config = base / "kwok-stages.yaml"
        stage_config.write_text("\n---\n".join(
            p.read_text() for p in sorted(stages.glob("*.yaml")) if "kind: Stage" in p.read_text()
        ))
        self._start("kwok", [
            f"--kubeconfig={kwok_config}", f"--config={stage_config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{free_port()}",
        ])
        # The StorageClass kwok's volume stages provision for (the cluster's default class).
        storage_class = next(yaml.safe_load_all((stages / "storage-class.yaml").read_text()))
        self.admin.apply(storage_class, f"/apis/storage.k8s.io/v1/storageclasses/{storage_class['metadata']['name']}")
        for node in NODES:
            self.admin.apply(self.node(node), f"/api/v1/nodes/{node}")
        self._wait("fake nodes Ready", self._nodes_ready, 120)
        self._wait("default service account of namespace default",
                   lambda: self.admin.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                   60)

    @staticmethod
    def node(name: str) -> dict:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok"},
            },
        }

    def _nodes_ready(self) -> bool:
        ready = 0
        for node in self.admin.items("/api/v1/nodes"):
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = [t for t in node.get("spec", {}).get("taints", []) if t["key"].startswith("node.kubernetes.io/")]
            ready += conditions.get("Ready") == "True" and not taints
        return ready == len(NODES)

    def _wait(self, what: str, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if predicate():
                    return
            except (OSError, urllib.error.URLError, ApiError) as error:
                last = error
            time.sleep(0.5)
        logs = "\n".join(f"--- {log.name}\n{tail(log, 15)}" for _, log in self.procs)
        raise AssertionError(f"{what}: not reached after {timeout:.0f} s (last error: {last})\n{logs}")

    wait = _wait

    # --- CRDs ---------------------------------------------------------------------------------
    def install_crds(self, directory: Path) -> list[str]:
        """Create every CRD in ``directory`` and wait until each is Established; their names."""
        names = []
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = doc["metadata"]["name"]
                self.admin.apply(doc, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                names.append(name)

        def established() -> bool:
            for name in names:
                crd = self.admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
                if conditions.get("Established") != "True":
                    return False
                # Established comes before the storage of every version is ready (HTTP 429).
                for served in crd["spec"]["versions"]:
                    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
                    if self.admin.request("GET", f"/apis/{group}/{served['name']}/{plural}")[0] != 200:
                        return False
            return True

        self._wait("CRDs Established and served", established, 90)
        return names
