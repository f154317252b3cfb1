"""`pulumi up` for real: the platform and two teams against a control plane with simulated nodes.

The control plane (conftest.py, control_plane.py) is etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok with fake Nodes; the Gateway API and Envoy Gateway CRDs are installed.
The platform stack adopts it (`cluster.mode: existing`, `routing.controller: existing`: the
Envoy Gateway chart cannot be fetched here), with the real kubernetes provider and its await
logic: Deployments and StatefulSets must become ready, Jobs complete, claims bind. The steps
share one project and state backend and run in file order (pytest -m cluster).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from .control_plane import CONTEXT, Client, ControlPlane

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_STACK = "local"
PASSPHRASE = "mlplane-cluster-passphrase"
RANDOM_VERSION = version("pulumi-random")
#: Two team names that pass validation yet share a prefix: every name derived from "ab"
#: (mlplane-team-ab, mlplane-team-ab-serving, s3-grant-team-ab-...) is a prefix of one of "ab-c"'s.
TEAMS = {"ab": "alice@acme.test", "ab-c": "carol@acme.test"}
#: Kinds whose objects the cluster creates and removes by itself (not part of "as it was").
VOLATILE = {"Event", "Lease", "Endpoints", "EndpointSlice", "ControllerRevision"}


def platform_config(
    kubeconfig: Path, *, max_replicas: int = 2, setup_job_cpu: str = "200m", metrics_server: bool = True
) -> dict:
    return {
        "name": "mlplane",
        "cluster": {"mode": "existing", "existing": {"kubeconfig": str(kubeconfig), "context": CONTEXT}},
        "registry": {"mode": "external", "external": {"url": "localhost:5001"}},
        # Helm charts cannot be fetched here: an Envoy Gateway "already in the cluster".
        # No TLS certificate here: plain HTTP is opted into explicitly (no traffic flows anyway).
        "routing": {"controller": "existing", "tls": {"plain_http": True}},
        "tracking": {"workspaces": True},
        "object_storage": {"bundled": {"setup_job_resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": setup_job_cpu, "memory": "128Mi"}}}},
        "serving": {
            "models": [{"name": "iris", "registered_model": "iris", "version": 1, "max_replicas": max_replicas}],
            **({} if metrics_server else {"metrics_server": {"enabled": False}}),
        },
        "lifecycle": {"throwaway": True},
    }


def stand_in_plugins(base: Path) -> str:
    """A bin dir with the stand-in random provider unless the real plugin is installed (docs/e2e.md)."""
    bin_dir = base / "plugins"
    bin_dir.mkdir(exist_ok=True)
    home = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))
    if not any(home.glob(f"plugins/resource-random-v{RANDOM_VERSION}")):
        plugin = bin_dir / "pulumi-resource-random"
        plugin.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tests.engine.random_provider \"$@\"\n")
        plugin.chmod(0o755)
    return str(bin_dir)


class Project:
    """A copy of the project's entry point with its own file state backend."""

    def __init__(self, base: Path, plane: ControlPlane):
        self.plane = plane
        self.dir = base / "project"
        self.state = base / "state"
        (self.dir / "stacks").mkdir(parents=True)
        self.state.mkdir()
        shutil.copy(ROOT / "stacks" / "__main__.py", self.dir / "stacks" / "__main__.py")
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
        (self.dir / "Pulumi.yaml").write_text(yaml.safe_dump(project))
        self.env = {
            **os.environ,
            "PATH": f"{stand_in_plugins(base)}{os.pathsep}{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }

    def write_config(self, stack: str, key: str, value: dict) -> None:
        path = self.dir / "stacks" / f"Pulumi.{stack}.yaml"
        document = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
        document.setdefault("config", {})[f"mlplane:{key}"] = value
        path.write_text(yaml.safe_dump(document))

    def pulumi(self, stack: str, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--stack", stack, "--non-interactive"],
            cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} --stack {stack} failed:\n"
                                 f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}\n{self.plane_logs()}")
        return result

    def mlplane(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mlplane", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=1200)

    def plane_logs(self) -> str:
        from .control_plane import tail
        return "\n".join(f"--- {log.name}\n{tail(log, 5)}" for _, log in self.plane.procs if "kwok" not in log.name)

    def changes(self, stack: str) -> list[tuple[str, str, str]]:
        """(op, type, name) of every step of a preview that is not 'same'."""
        document = json.loads(self.pulumi(stack, "preview", "--json").stdout)
        return sorted(
            (step["op"], step["urn"].split("::")[2].split("$")[-1], step["urn"].split("::")[-1])
            for step in document.get("steps", []) if step.get("op") != "same"
        )

    def kube_objects(self, stack: str) -> dict[tuple[str, str, str], str]:
        """(kind, namespace, name) -> URN of every Kubernetes object in the stack's state."""
        exported = json.loads(self.pulumi(stack, "stack", "export").stdout)
        found = {}
        for resource in exported["deployment"].get("resources", []):
            # Patches (the teams' keys of the platform's grafana-dashboards) change a part of an
            # object another stack owns, by design: they are checked on their own.
            if not resource["type"].startswith("kubernetes:") or resource["type"].endswith("Patch"):
                continue
            outputs = resource.get("outputs", {})
            meta = outputs.get("metadata") or {}
            if "kind" in outputs and meta.get("name"):
                found[(outputs["kind"], meta.get("namespace", ""), meta["name"])] = resource["urn"]
        return found


def snapshot(client: Client) -> set[tuple[str, str, str]]:
    """Every object of every listable resource the API server serves, volatile kinds aside."""
    found = set()
    groups = [("", "v1")] + [
        (g["name"], g["preferredVersion"]["groupVersion"]) for g in client.get("/apis")["groups"]
    ]
    for _, group_version in groups:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        status, discovery = client.request("GET", base)
        if status == 503:  # an aggregated API (APIService) whose backend pods do not really run
            continue
        for resource in discovery["resources"]:
            if "/" in resource["name"] or "list" not in resource["verbs"] or resource["kind"] in VOLATILE:
                continue
            for item in client.items(f"{base}/{resource['name']}"):
                meta = item["metadata"]
                if resource["kind"] == "Secret" and item.get("type") == "kubernetes.io/service-account-token":
                    continue
                found.add((resource["kind"], meta.get("namespace", ""), meta["name"]))
    return found


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, tmp_path_factory):
    before = snapshot(control_plane.admin)
    project = Project(tmp_path_factory.mktemp("cluster-up"), control_plane)
    project.pulumi(PLATFORM_STACK, "stack", "init")
    project.write_config(PLATFORM_STACK, "platform", platform_config(control_plane.kubeconfig))
    return project, before


def _pods(client: Client, namespace_prefix: str) -> list[dict]:
    return [p for p in client.items("/api/v1/pods") if p["metadata"]["namespace"].startswith(namespace_prefix)]


def test_1_up_creates_the_platform_for_real(cluster):
    project, _ = cluster
    plane = project.plane
    started = time.monotonic()
    project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview")
    print(f"pulumi up of the platform: {time.monotonic() - started:.0f} s")
    client = plane.admin
    # Every workload the provider awaited is ready; every Job completed; every claim is bound.
    deployments = [d for d in client.items("/apis/apps/v1/deployments") if d["metadata"]["namespace"].startswith("mlplane-")]
    assert deployments
    for d in deployments:
        assert d["status"].get("readyReplicas", 0) == d["spec"]["replicas"], (d["metadata"], d["status"])
    for s in client.items("/apis/apps/v1/statefulsets"):
        assert s["status"].get("readyReplicas", 0) == s["spec"]["replicas"], (s["metadata"], s["status"])
    jobs = [j for j in client.items("/apis/batch/v1/jobs") if j["metadata"]["namespace"].startswith("mlplane-")]
    assert jobs
    for j in jobs:
        assert j["status"].get("succeeded") == 1, (j["metadata"]["name"], j["status"])
    claims = client.items("/api/v1/persistentvolumeclaims")
    assert claims and all(c["status"]["phase"] == "Bound" for c in claims), claims
    # Pods were admitted for real by Pod Security (enforce: restricted in every namespace).
    pods = _pods(client, "mlplane-")
    assert pods and all(p["status"]["phase"] in ("Running", "Succeeded") for p in pods)
    for ns in {p["metadata"]["namespace"] for p in pods}:
        labels = client.get(f"/api/v1/namespaces/{ns}")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns
    failed = [e for e in client.items("/api/v1/events") if e.get("reason") == "FailedCreate"]
    assert not failed, [e["message"] for e in failed]
    # The custom resources exist as the CRDs' validation accepted them.
    gateway = client.get("/apis/gateway.networking.k8s.io/v1/namespaces/mlplane-gateway/gateways/mlplane")
    assert gateway["spec"]["gatewayClassName"] == "mlplane"
    assert client.items("/apis/gateway.networking.k8s.io/v1/httproutes")


def test_2_a_second_preview_expects_no_changes(cluster):
    project, _ = cluster
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")


def test_3_a_model_replica_change_updates_in_place(cluster):
    project, _ = cluster
    project.write_config(PLATFORM_STACK, "platform", platform_config(project.plane.kubeconfig, max_replicas=3))
    assert project.changes(PLATFORM_STACK) == [
        ("update", "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "mlplane-serving-iris-hpa")
    ]
    project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview")
    hpa = project.plane.admin.get("/apis/autoscaling/v2/namespaces/mlplane-serving/horizontalpodautoscalers/iris")
    assert hpa["spec"]["maxReplicas"] == 3
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")


def test_4_a_setup_job_input_change_replaces_the_job(cluster):
    """The storage setup Job's resources are an input of that Job only, and a Job's pod template
    is immutable: the preview shows that Job replaced and nothing else; the up replaces it."""
    project, _ = cluster
    client = project.plane.admin
    jobs = "/apis/batch/v1/namespaces/mlplane-storage/jobs"
    old_uids = {j["metadata"]["uid"] for j in client.items(jobs)}
    project.write_config(PLATFORM_STACK, "platform", platform_config(
        project.plane.kubeconfig, max_replicas=3, setup_job_cpu="300m"))
    changes = project.changes(PLATFORM_STACK)
    replaced = [c for c in changes if c[0] == "replace"]
    assert replaced and all(c[1] == "kubernetes:batch/v1:Job" for c in replaced), changes
    assert {c[0] for c in changes} <= {"replace", "update"}, changes
    assert not [c for c in changes if c[0] == "update" and c[1] == "kubernetes:batch/v1:Job"], changes
    project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview")
    # The Job was deleted and created again (a new object), with the new limits, and completed.
    new = client.items(jobs)
    assert len(new) == len(replaced) and not {j["metadata"]["uid"] for j in new} & old_uids
    for job in new:
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "300m"
        assert job["status"].get("succeeded") == 1, job["status"]
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")


def test_5_two_teams_with_prefix_sharing_names_up_side_by_side(cluster):
    project, _ = cluster
    for team, user in TEAMS.items():
        done = project.mlplane("team", "create", team, "--platform-stack", PLATFORM_STACK, "--user", user,
                               "--service", "tracking", "--service", "object_storage", "--service", "monitoring")
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    owned = {team: project.kube_objects(f"team-{team}") for team in TEAMS}
    platform = project.kube_objects(PLATFORM_STACK)
    assert owned["ab"] and owned["ab-c"]
    # No object is managed by two stacks.
    assert not set(owned["ab"]) & set(owned["ab-c"])
    assert not (set(owned["ab"]) | set(owned["ab-c"])) & set(platform)
    # Each team's patch of the platform's dashboards ConfigMap owns its own key and nothing else.
    dashboards = project.plane.admin.get("/api/v1/namespaces/mlplane-monitoring/configmaps/grafana-dashboards")
    assert {"team-ab.json", "team-ab-c.json"} <= set(dashboards["data"])
    for entry in dashboards["metadata"]["managedFields"]:
        data = {k for k in entry.get("fieldsV1", {}).get("f:data", {}) if k.startswith("f:team-")}
        assert len(data) <= 1, entry  # no field manager holds two teams' keys
    # The platform is untouched by the teams.
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")
    for team in TEAMS:
        project.pulumi(f"team-{team}", "preview", "--expect-no-changes")


def _can(client: Client, user: str, verb: str, resource: str, namespace: str) -> bool:
    review = client.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace,
                                                       "group": "apps" if resource == "deployments" else ""}},
    })
    return review["status"]["allowed"]


def test_6_neither_team_can_change_the_others_objects(cluster):
    project, _ = cluster
    client = project.plane.admin
    for team, user in TEAMS.items():
        for other in TEAMS:
            for ns in (f"mlplane-team-{other}", f"mlplane-team-{other}-serving"):
                for verb, resource in (("create", "deployments"), ("delete", "configmaps"), ("update", "secrets")):
                    assert _can(client, user, verb, resource, ns) == (team == other), (user, verb, resource, ns)
    # The same with a real request as the other team's member (impersonated), server-side dry run.
    status, payload = client.request(
        "POST", "/api/v1/namespaces/mlplane-team-ab/configmaps?dryRun=All",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "intruder"}},
        headers={"Impersonate-User": TEAMS["ab-c"]},
    )
    assert status == 403, payload
    status, payload = client.request(
        "POST", "/api/v1/namespaces/mlplane-team-ab-c/configmaps?dryRun=All",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "own"}},
        headers={"Impersonate-User": TEAMS["ab-c"]},
    )
    assert status == 201, payload


def test_7_a_second_stack_cannot_take_over_the_platforms_objects(cluster, tmp_path):
    """Another copy of the platform stack (same project, same config, its own state backend: a
    colleague's checkout) against the same cluster: its up must fail on the first object that
    exists instead of silently co-owning it (the kubernetes provider upserts with server-side
    apply; a later destroy of that copy would delete the first stack's objects), and the first
    stack's objects are left as they were."""
    project, _ = cluster
    client = project.plane.admin
    objects = snapshot(client)
    namespace = client.get("/api/v1/namespaces/mlplane-tracking")["metadata"]
    other = Project(tmp_path, project.plane)
    other.pulumi(PLATFORM_STACK, "stack", "init")
    shutil.copy(project.dir / "stacks" / f"Pulumi.{PLATFORM_STACK}.yaml", other.dir / "stacks")
    try:
        result = other.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-4000:]
        assert "conflict" in output.lower(), output[-4000:]
        now = client.get("/api/v1/namespaces/mlplane-tracking")["metadata"]
        assert now["managedFields"] == namespace["managedFields"]
        assert not other.kube_objects(PLATFORM_STACK), "the copy manages objects of the first stack"
    finally:
        # Destroying the failed copy deletes only what it created itself (nothing of the first).
        other.pulumi(PLATFORM_STACK, "destroy", "--yes", "--skip-preview")
    assert snapshot(client) == objects
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")
    for team in TEAMS:
        project.pulumi(f"team-{team}", "preview", "--expect-no-changes")


def unavailable_apis(client: Client) -> list[str]:
    """Aggregated APIs (APIServices backed by a Service) that are not available."""
    return [
        a["metadata"]["name"] for a in client.items("/apis/apiregistration.k8s.io/v1/apiservices")
        if a["spec"].get("service") and not any(
            c["type"] == "Available" and c["status"] == "True" for c in a.get("status", {}).get("conditions", []))
    ]


def test_7b_turning_metrics_server_off_removes_its_aggregated_api(cluster):
    """Simulated pods serve nothing, so metrics-server's APIService (v1beta1.metrics.k8s.io) never
    becomes available, and the namespace controller does not finish deleting any namespace while
    an aggregated API fails discovery. On a real cluster metrics-server serves it; here it is
    turned off (an update that deletes the APIService before its Deployment) before the steps that
    delete namespaces (docs/e2e.md)."""
    project, _ = cluster
    client = project.plane.admin
    assert unavailable_apis(client) == ["v1beta1.metrics.k8s.io"]
    project.write_config(PLATFORM_STACK, "platform", platform_config(
        project.plane.kubeconfig, max_replicas=3, setup_job_cpu="300m", metrics_server=False))
    changes = project.changes(PLATFORM_STACK)
    assert changes and {op for op, _, _ in changes} == {"delete"}, changes
    assert ("delete", "kubernetes:apiregistration.k8s.io/v1:APIService", "mlplane-serving-metrics-server-api-service") in changes
    project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview")
    assert unavailable_apis(client) == []
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")


def test_8_team_destroy_removes_each_team(cluster):
    """`mlplane team destroy`: the team stack is destroyed (its objects are all in its own
    namespaces, so its provider's deletion awaits can list and watch them), the platform revokes
    the team's grants, then drops its namespaces and identity; the other team is untouched."""
    project, _ = cluster
    client = project.plane.admin
    for team in TEAMS:
        identity = f"system:serviceaccount:mlplane-teams:team-{team}"
        for namespace in ("mlplane-storage", "mlplane-tracking"):
            for verb, group, resource in (("list", "", "secrets"), ("create", "batch", "jobs"), ("create", "", "pods")):
                review = client.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"user": identity, "groups": ["system:serviceaccounts"], "resourceAttributes": {
                        "verb": verb, "group": group, "resource": resource, "namespace": namespace}},
                })
                assert not review["status"]["allowed"], (identity, verb, resource, namespace)
    remaining = dict(TEAMS)
    for team in TEAMS:
        started = time.monotonic()
        done = project.mlplane("team", "destroy", team, "--yes")
        print(f"mlplane team destroy {team}: {time.monotonic() - started:.0f} s")
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
        assert not (project.dir / "stacks" / f"Pulumi.team-{team}.yaml").exists()
        remaining.pop(team)
        namespaces = {n["metadata"]["name"] for n in client.items("/api/v1/namespaces")}
        assert not {f"mlplane-team-{team}", f"mlplane-team-{team}-serving", f"mlplane-team-{team}-runners"} & namespaces
        # Its grant and revoke Jobs are gone with it; the other team's are still there.
        jobs = [j["metadata"]["name"] for j in client.items("/apis/batch/v1/jobs")]
        assert not [j for j in jobs if f"team-{team}-" in j and not any(f"team-{o}-" in j for o in remaining)]
        for other in remaining:
            assert f"mlplane-team-{other}" in namespaces
            project.pulumi(f"team-{other}", "preview", "--expect-no-changes")
    project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes")


def test_9_destroy_leaves_the_cluster_as_it_was(cluster):
    """The platform's destroy (its namespaces, the teams' namespaces among them, take everything in
    them along) leaves every object of the cluster as before the first up."""
    project, before = cluster
    client = project.plane.admin
    # No aggregated API left that fails discovery (test_7b): namespaces can be deleted.
    assert unavailable_apis(client) == []
    started = time.monotonic()
    project.pulumi(PLATFORM_STACK, "destroy", "--yes", "--skip-preview")
    print(f"pulumi destroy of the platform: {time.monotonic() - started:.0f} s")
    exported = json.loads(project.pulumi(PLATFORM_STACK, "stack", "export").stdout)
    assert exported["deployment"].get("resources", []) == []

    def restored() -> bool:
        return snapshot(client) == before

    try:
        project.plane.wait("the cluster as it was before", restored, 180)
    except AssertionError:
        after = snapshot(client)
        raise AssertionError(f"left behind: {sorted(after - before)}; removed: {sorted(before - after)}") from None
