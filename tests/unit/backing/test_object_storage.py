"""The ObjectStorage component: bundled SeaweedFS or an external S3 endpoint, and bucket grants."""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pulumi
import pytest

from mlplane.tooling import checks
from mlplane.core import kube
from mlplane.config import Amounts, Resources
from mlplane.backing.object_storage import (
    ADMIN_CLIENT_LABEL,
    GRANT_SCRIPT,
    BucketGrant,
    GrantTarget,
    ObjectStorage,
    ObjectStorageArgs,
    bucket_grant_job,
    seaweedfs_target,
)
from mlplane.tooling.render import SECRET_MASK

from conftest import opts

NAME = "mlplane-storage"
CUSTOM_BUCKETS = {"buckets": {"artifacts": "acme-runs", "datasets": "acme-data", "models": "acme-models"}}
EXTERNAL = {
    "object_storage": {
        "mode": "external",
        "external": {
            "endpoint": "https://s3.eu-west-1.amazonaws.com",
            "region": "eu-west-1",
            "access_key_id_key": "s3KeyId",
            "secret_access_key_key": "s3Secret",
        },
    }
}
SMALL = Resources(requests=Amounts(cpu="10m", memory="32Mi"), limits=Amounts(cpu="100m", memory="64Mi"))


def gateway(config) -> kube.GatewayRef:
    return kube.GatewayRef(name="mlplane", namespace="mlplane-gateway", domain=config.routing.domain, http_port=80)


def build(platform, config, root):
    storage = ObjectStorage(NAME, ObjectStorageArgs(config.object_storage, platform, gateway(config)), opts(root))
    return {
        "storage": storage,
        **{
            key: getattr(storage, key)
            for key in (
                "endpoint", "region", "artifacts_bucket", "datasets_bucket", "models_bucket",
                "admin_access_key_id", "admin_secret_access_key", "mlflow_access_key_id",
                "mlflow_secret_access_key", "external_url", "namespace",
            )
        },
    }


def children(result, parent: str = NAME) -> dict[str, str]:
    return {r.name: r.type for r in result.resources if r.parent and r.parent.endswith(f"::{parent}")}


def manifest(result, kind: str, name_prefix: str = "") -> dict:
    found = [m for m in result.manifests() if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, [m["metadata"]["name"] for m in found]
    return found[0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


# --------------------------------------------------------------------------------------------
# Bundled SeaweedFS
# --------------------------------------------------------------------------------------------


def test_bundled_creates_pinned_children_under_the_component(run_component):
    result, _ = run_component(build)
    assert result.named(NAME).type == "mlplane:storage:ObjectStorage"
    assert children(result) == {
        f"{NAME}-namespace": "kubernetes:core/v1:Namespace",
        f"{NAME}-admin-access-key-id": "random:index/randomString:RandomString",
        f"{NAME}-admin-secret-access-key": "random:index/randomPassword:RandomPassword",
        f"{NAME}-mlflow-access-key-id": "random:index/randomString:RandomString",
        f"{NAME}-mlflow-secret-access-key": "random:index/randomPassword:RandomPassword",
        f"{NAME}-admin-credentials": "kubernetes:core/v1:Secret",
        f"{NAME}-statefulset": "kubernetes:apps/v1:StatefulSet",
        f"{NAME}-service": "kubernetes:core/v1:Service",
        f"{NAME}-admin-service": "kubernetes:core/v1:Service",
        f"{NAME}-grant-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-grant-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        f"{NAME}-setup-credentials": "kubernetes:core/v1:Secret",
        f"{NAME}-setup-job": "kubernetes:batch/v1:Job",
    }
    names = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in result.manifests()}
    assert {
        ("Namespace", None, "mlplane-storage"),
        ("StatefulSet", "mlplane-storage", "seaweedfs"),
        ("Service", "mlplane-storage", "seaweedfs"),
        ("Service", "mlplane-storage", "seaweedfs-admin"),
        ("Secret", "mlplane-storage", "seaweedfs-admin-credentials"),
        ("Secret", "mlplane-storage", "s3-identity-mlflow"),
        ("HTTPRoute", "mlplane-storage", "s3"),
    } <= names


def test_s3_authentication_is_on_from_the_first_request(run_component):
    """SeaweedFS allows everything when it knows no identity: the admin comes from its env."""
    result, _ = run_component(build)
    server = manifest(result, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(server)
    for var, key in (("AWS_ACCESS_KEY_ID", "access-key-id"), ("AWS_SECRET_ACCESS_KEY", "secret-access-key")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "seaweedfs-admin-credentials", "key": key}
    assert server["command"] == ["weed"]
    assert server["args"][:3] == ["-logtostderr=true", "mini", "-dir=/data"]
    assert "-s3.port=8333" in server["args"] and "-metricsPort=9327" in server["args"]
    assert "-admin.ui=false" in server["args"] and "-webdav=false" in server["args"]
    assert not any(a.startswith("-s3.config") for a in server["args"]), "a static config would freeze identities"


def test_mlflow_identity_is_limited_to_the_configured_artifacts_bucket(run_component):
    result, _ = run_component(build, {"object_storage": CUSTOM_BUCKETS})
    job = manifest(result, "Job", "s3-grant-mlflow-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["S3_IDENTITY"]["value"] == "mlflow"
    assert env["S3_BUCKETS"]["value"] == "acme-runs"
    assert env["S3_ACTIONS"]["value"] == "Read,Write,List,Tagging"
    assert env["CREATE_BUCKETS"]["value"].split() == ["acme-runs", "acme-data", "acme-models"]
    assert env["S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-identity-mlflow",
        "key": "secret-access-key",
    }
    assert container["command"] == ["/bin/sh", "-c", GRANT_SCRIPT]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[ADMIN_CLIENT_LABEL] == "true"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_generated_credentials_stay_secret(run_component):
    result, out = run_component(build)
    assert out["admin_secret_access_key"] == SECRET_MASK
    assert out["mlflow_secret_access_key"] == SECRET_MASK
    assert result.named(f"{NAME}-admin-credentials").masked_inputs()["stringData"] == SECRET_MASK
    assert result.named(f"{NAME}-setup-credentials").masked_inputs()["stringData"] == SECRET_MASK
    assert out["admin_access_key_id"] != out["mlflow_access_key_id"]
    for m in result.manifests():
        for container in m.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in container["env"]:
                assert "SECRET" not in e["name"] or "valueFrom" in e, (m["metadata"]["name"], e["name"])


def test_outputs_name_the_in_cluster_endpoint_the_buckets_and_the_host_url(run_component):
    _, out = run_component(build, {"object_storage": CUSTOM_BUCKETS})
    assert out["endpoint"] == "http://seaweedfs.mlplane-storage.svc.cluster.local:8333"
    assert out["external_url"] == "http://s3.mlplane.localhost"
    assert (out["artifacts_bucket"], out["datasets_bucket"], out["models_bucket"]) == (
        "acme-runs", "acme-data", "acme-models",
    )
    assert out["region"] == "us-east-1"
    assert out["namespace"] == "mlplane-storage"


def test_route_exposes_s3_to_the_host_through_the_gateway(run_component):
    result, _ = run_component(build, {"routing": {"domain": "ml.example.test"}})
    route = manifest(result, "HTTPRoute")
    assert route["spec"]["hostnames"] == ["s3.ml.example.test"]
    assert route["spec"]["parentRefs"][0]["name"] == "mlplane"
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"kind": "Service", "name": "seaweedfs", "port": 8333, "weight": 1}
    ]


def test_master_and_filer_are_reachable_from_grant_jobs_only(run_component):
    result, _ = run_component(build)
    policies = {m["metadata"]["name"]: m["spec"] for m in result.manifests() if m["kind"] == "NetworkPolicy"}
    ingress = policies["seaweedfs"]["ingress"]
    assert "from" not in ingress[0] and {p["port"] for p in ingress[0]["ports"]} == {8333, 9327}
    assert ingress[1]["from"] == [{"podSelector": {"matchLabels": {ADMIN_CLIENT_LABEL: "true"}}}]
    assert {p["port"] for p in ingress[1]["ports"]} == {9333, 19333, 8888, 18888}
    own_pods = policies["seaweedfs"]["podSelector"]
    assert ingress[2] == {"from": [{"podSelector": own_pods}]}
    assert policies["s3-grant"] == {
        "podSelector": {"matchLabels": {ADMIN_CLIENT_LABEL: "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }
    admin = next(m for m in result.manifests() if m["kind"] == "Service" and m["metadata"]["name"] == "seaweedfs-admin")
    assert {p["port"] for p in admin["spec"]["ports"]} == {9333, 19333, 8888, 18888}


def test_server_runs_restricted_with_a_high_uid_and_a_read_only_root(run_component):
    result, _ = run_component(build)
    sts = manifest(result, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsNonRoot"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/tmp"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "s3"}
    assert container["image"] == "docker.io/chrislusf/seaweedfs:4.47"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "mlplane.dev/credentials-digest" in sts["spec"]["template"]["metadata"]["annotations"]


def test_stateful_set_is_protected_unless_throwaway(run_component):
    result, _ = run_component(build)
    sts = result.named(f"{NAME}-statefulset")
    assert sts.protect and sts.retain_on_delete
    result, _ = run_component(build, {"lifecycle": {"throwaway": True}}, protect=False)
    sts = result.named(f"{NAME}-statefulset")
    assert not sts.protect and not sts.retain_on_delete
    assert manifest(result, "StatefulSet")["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_setup_job_is_renamed_when_what_it_does_changes(run_component):
    first, _ = run_component(build)
    again, _ = run_component(build)
    renamed, _ = run_component(build, {"object_storage": CUSTOM_BUCKETS})
    name = manifest(first, "Job")["metadata"]["name"]
    assert name == manifest(again, "Job")["metadata"]["name"]
    assert name != manifest(renamed, "Job")["metadata"]["name"]
    assert name.startswith("s3-grant-mlflow-") and len(name) <= 63


def test_scrape_target_and_ui(run_component):
    _, out = run_component(build)
    storage = out["storage"]
    assert [(t.job, t.namespace, t.port, t.path) for t in storage.scrape_targets] == [
        ("seaweedfs", "mlplane-storage", "metrics", "/metrics")
    ]
    assert storage.scrape_targets[0].selector["app.kubernetes.io/name"] == "seaweedfs"
    assert [(u.key, u.url) for u in storage.uis] == [("s3", "http://s3.mlplane.localhost")]


def test_manifests_pass_strict_schema_validation(run_component):
    result, _ = run_component(build)
    assert [str(f) for f in checks.validate_schemas(result.manifests(), ["1.34", "1.37"])] == []


# --------------------------------------------------------------------------------------------
# External S3
# --------------------------------------------------------------------------------------------


def test_external_store_creates_nothing_in_the_cluster(run_component):
    result, out = run_component(build, EXTERNAL)
    assert children(result) == {}
    assert out["endpoint"] == out["external_url"] == "https://s3.eu-west-1.amazonaws.com"
    assert out["region"] == "eu-west-1"
    assert out["mlflow_secret_access_key"] == out["admin_secret_access_key"] == SECRET_MASK
    assert out["mlflow_access_key_id"] == SECRET_MASK
    assert out["storage"].grant_target is None and out["storage"].ready == []
    assert out["storage"].scrape_targets == [] and out["storage"].uis == []


# --------------------------------------------------------------------------------------------
# Grants from a later, separate stack
# --------------------------------------------------------------------------------------------


class Team(pulumi.ComponentResource):
    def __init__(self, parent: pulumi.Resource):
        super().__init__("acme:team:Team", "team-a", None, pulumi.ResourceOptions(parent=parent))


def test_a_team_stack_grants_its_own_bucket_without_touching_the_platform(run_component):
    def team_build(platform, config, root):
        team = Team(root)
        job = bucket_grant_job(
            "team-a-bucket",
            BucketGrant(
                identity="team-a", buckets=("team-a-data",), access_key_id="TEAMAKEY", secret_access_key="s3cr3t"
            ),
            seaweedfs_target(platform, SMALL),
            pulumi.ResourceOptions(parent=team),
        )
        return {"job": job}

    result, _ = run_component(team_build)
    assert children(result, "team-a") == {
        "team-a-bucket-credentials": "kubernetes:core/v1:Secret",
        "team-a-bucket-job": "kubernetes:batch/v1:Job",
    }
    job = manifest(result, "Job")
    assert job["metadata"]["namespace"] == "mlplane-storage"
    assert job["metadata"]["name"].startswith("s3-grant-team-a-")
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["S3_BUCKETS"]["value"] == env["CREATE_BUCKETS"]["value"] == "team-a-data"
    assert env["SEAWEEDFS_MASTER"]["value"] == "seaweedfs-admin.mlplane-storage.svc.cluster.local:9333"
    assert job["spec"]["template"]["metadata"]["labels"][ADMIN_CLIENT_LABEL] == "true"
    assert result.named("team-a-bucket-credentials").masked_inputs()["stringData"] == SECRET_MASK
    assert [str(f) for f in checks.validate_schemas(result.manifests(), ["1.34", "1.37"])] == []


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        (dict(identity="mlflow", buckets=("b-data",)), "reserved"),
        (dict(identity="admin", buckets=("b-data",)), "reserved"),
        (dict(identity="Team_A", buckets=("b-data",)), "DNS-1123"),
        (dict(identity="t" * 41, buckets=("b-data",)), "longer than 40"),
        (dict(identity="team-a", buckets=()), "at least one bucket"),
        (dict(identity="team-a", buckets=("Bad_Bucket",)), "S3 bucket name"),
        (dict(identity="team-a", buckets=("b-data",), actions=("Admin",)), "subset of Read, Write, List, Tagging"),
    ],
)
def test_bucket_grant_rejects_reserved_names_bad_buckets_and_admin_actions(grant, message):
    target = GrantTarget(namespace="mlplane-storage", image="img", master="m:9333", filer="f:8888", resources=SMALL)
    with pytest.raises(ValueError, match=message):
        bucket_grant_job("x", BucketGrant(access_key_id="k", secret_access_key="s", **grant), target)


# --------------------------------------------------------------------------------------------
# The grant script, against a stand-in for `weed shell`
# --------------------------------------------------------------------------------------------

#: Emulates the `weed shell` commands the script uses, with state in $FAKE_STATE. Like the real
#: shell it prints identities with their secret keys and exits 0 even when a command fails.
FAKE_WEED = textwrap.dedent(
    r"""
    #!/bin/sh
    state="$FAKE_STATE"
    touch "$state/buckets" "$state/identities"
    while read -r cmd rest; do
      case "$cmd" in
        s3.bucket.list) printf '> '; sed 's/^/  /' "$state/buckets" ;;
        s3.bucket.create)
          name=${rest#-name }
          echo "$name" >> "$state/creates"
          [ -e "$state/broken" ] && { echo "error: create $name failed"; continue; }
          echo "$name" >> "$state/buckets" ;;
        s3.configure)
          case "$rest" in
            "") sed 's/^/  /' "$state/identities" ;;
            *-delete*) user=${rest#-user=}; user=${user%% *}
                       grep -v "\"name\": \"$user\"" "$state/identities" > "$state/next" || true
                       mv "$state/next" "$state/identities" ;;
            *) line=$(echo "$rest" | sed -e 's/-user=\([^ ]*\) -access_key=\([^ ]*\) -secret_key=\([^ ]*\) -actions=\([^ ]*\) -buckets=\([^ ]*\) -apply/{"name": "\1", "accessKey": "\2", "secretKey": "\3", "actions": "\4:\5"}/')
               echo "$line" >> "$state/identities"; echo "$line" ;;
          esac ;;
      esac
    done
    """
).lstrip()


@pytest.fixture
def fake_weed(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    weed = bin_dir / "weed"
    weed.write_text(FAKE_WEED)
    weed.chmod(weed.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state"
    state.mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "SEAWEEDFS_MASTER": "seaweedfs-admin:9333",
        "SEAWEEDFS_FILER": "seaweedfs-admin:8888",
        "CREATE_BUCKETS": "acme-runs acme-data",
        "S3_IDENTITY": "mlflow",
        "S3_BUCKETS": "acme-runs",
        "S3_ACTIONS": "Read,Write,List,Tagging",
        "S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "S3_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY00",
    }


def run_script(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    script = GRANT_SCRIPT.replace("/tmp/buckets", str(tmp_path / "buckets.txt"))
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)


def test_grant_script_creates_missing_buckets_once_and_is_rerunnable(fake_weed, tmp_path):
    first = run_script(fake_weed, tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_script(fake_weed, tmp_path)
    assert again.returncode == 0, again.stderr
    state = Path(fake_weed["FAKE_STATE"])
    assert state.joinpath("creates").read_text().split() == ["acme-runs", "acme-data"]
    identities = state.joinpath("identities").read_text().splitlines()
    assert len(identities) == 1 and '"actions": "Read,Write,List,Tagging:acme-runs"' in identities[0]
    assert "bucket acme-runs exists" in again.stdout


def test_grant_script_replaces_a_rotated_key(fake_weed, tmp_path):
    assert run_script(fake_weed, tmp_path).returncode == 0
    rotated = run_script({**fake_weed, "S3_ACCESS_KEY_ID": "AKIAROTATED"}, tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    identities = Path(fake_weed["FAKE_STATE"]).joinpath("identities").read_text()
    assert "AKIAROTATED" in identities and "AKIAEXAMPLE" not in identities


def test_grant_script_never_prints_the_secret_key(fake_weed, tmp_path):
    result = run_script(fake_weed, tmp_path)
    assert result.returncode == 0
    assert fake_weed["S3_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    assert "identity mlflow may Read,Write,List,Tagging on acme-runs" in result.stdout


def test_grant_script_fails_when_a_bucket_was_not_created(fake_weed, tmp_path):
    Path(fake_weed["FAKE_STATE"]).joinpath("broken").touch()
    result = run_script(fake_weed, tmp_path)
    assert result.returncode == 1
    assert "bucket acme-runs is missing" in result.stderr
