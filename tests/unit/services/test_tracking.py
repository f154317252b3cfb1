"""The TrackingServer component: MLflow on PostgreSQL with proxied S3 artifacts and basic auth."""

from __future__ import annotations

import configparser

from mlplane.tooling import checks
from mlplane.core import kube
from mlplane.backing.database import Database, DatabaseArgs
from mlplane.backing.object_storage import ObjectStorage, ObjectStorageArgs
from mlplane.tooling.render import SECRET_MASK
from mlplane.services.tracking import (
    READER_SCRIPT,
    TrackingArgs,
    TrackingServer,
    allowed_hosts,
    auth_ini,
    database_uri,
)

from conftest import opts

NAME = "mlplane-tracking"
EXTERNAL_DB = {"database": {"mode": "external", "external": {"host": "db.example.com", "password_key": "dbPassword"}}}
EXTERNAL_S3 = {
    "object_storage": {
        "mode": "external",
        "external": {
            "endpoint": "https://s3.eu-west-1.amazonaws.com",
            "region": "eu-west-1",
            "access_key_id_key": "s3KeyId",
            "secret_access_key_key": "s3Secret",
        },
        "buckets": {"artifacts": "acme-runs"},
    }
}
AUTH_OFF = {"tracking": {"auth": False}}


def build(platform, config, root):
    gateway = kube.GatewayRef(name="mlplane", namespace="mlplane-gateway", domain=config.routing.domain, http_port=80)
    database = Database("mlplane-database", DatabaseArgs(config.database, platform), opts(root))
    storage = ObjectStorage("mlplane-storage", ObjectStorageArgs(config.object_storage, platform, gateway), opts(root))
    tracking = TrackingServer(NAME, TrackingArgs(config.tracking, platform, database, storage, gateway), opts(root))
    client = tracking.client_credentials()
    return {
        "tracking": tracking,
        "url": tracking.url,
        "internal_url": tracking.internal_url,
        "admin_username": tracking.admin_username,
        "admin_password": tracking.admin_password,
        "client_uri": client.tracking_uri,
        "client_username": client.username,
        "client_password": client.password,
        "mlflow_key_id": storage.mlflow_access_key_id,
        "storage_endpoint": storage.endpoint,
    }


def children(result) -> dict[str, str]:
    return {r.name: r.type for r in result.resources if r.parent and r.parent.endswith(f"::{NAME}")}


def find(result, kind: str, name: str) -> dict:
    found = [
        m
        for m in result.manifests()
        if m["kind"] == kind
        and m["metadata"]["name"].startswith(name)
        and m["metadata"].get("namespace") == "mlplane-tracking"
    ]
    assert len(found) == 1, [m["metadata"]["name"] for m in found]
    return found[0]


def containers(result) -> dict[str, dict]:
    return {c["name"]: c for c in find(result, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def arg(container: dict, flag: str) -> str:
    return container["args"][container["args"].index(flag) + 1]


def server_secret(result) -> dict[str, str]:
    return find(result, "Secret", "mlflow-server")["stringData"]


def test_creates_pinned_children_under_the_component(run_component):
    result, _ = run_component(build)
    assert result.named(NAME).type == "mlplane:tracking:TrackingServer"
    assert children(result) == {
        f"{NAME}-namespace": "kubernetes:core/v1:Namespace",
        f"{NAME}-admin-password": "random:index/randomPassword:RandomPassword",
        f"{NAME}-flask-secret-key": "random:index/randomPassword:RandomPassword",
        f"{NAME}-server-secret": "kubernetes:core/v1:Secret",
        f"{NAME}-admin-secret": "kubernetes:core/v1:Secret",
        f"{NAME}-deployment": "kubernetes:apps/v1:Deployment",
        f"{NAME}-service": "kubernetes:core/v1:Service",
        f"{NAME}-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        f"{NAME}-reader-password": "random:index/randomPassword:RandomPassword",
        f"{NAME}-reader-secret": "kubernetes:core/v1:Secret",
        f"{NAME}-reader-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-reader-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{NAME}-reader-job": "kubernetes:batch/v1:Job",
    }
    service = find(result, "Service", "mlflow")
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", 5000, "http")]


def test_backend_store_is_the_database_the_component_was_given(run_component):
    result, _ = run_component(build)
    uri = server_secret(result)["backend-store-uri"]
    assert uri.startswith("postgresql+psycopg2://mlflow:")
    assert uri.endswith("@postgres.mlplane-database.svc.cluster.local:5432/mlflow?sslmode=disable")
    env = env_of(containers(result)["mlflow"])
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-server",
        "key": "backend-store-uri",
    }

    result, _ = run_component(build, EXTERNAL_DB)
    assert server_secret(result)["backend-store-uri"] == (
        "postgresql+psycopg2://mlflow:value-of-dbPassword@db.example.com:5432/mlflow?sslmode=require"
    )


def test_artifacts_are_proxied_to_the_configured_bucket_with_the_scoped_identity(run_component):
    result, out = run_component(build, {"object_storage": {"buckets": {"artifacts": "acme-runs"}}})
    mlflow = containers(result)["mlflow"]
    assert "--serve-artifacts" in mlflow["args"]
    assert arg(mlflow, "--artifacts-destination") == "s3://acme-runs"
    assert "--default-artifact-root" not in mlflow["args"], "clients must go through the proxy"
    env = env_of(mlflow)
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == out["storage_endpoint"]
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-server"
    assert server_secret(result)["aws-access-key-id"] == out["mlflow_key_id"]


def test_external_s3_endpoint_and_region_reach_mlflow(run_component):
    result, _ = run_component(build, EXTERNAL_S3)
    env = env_of(containers(result)["mlflow"])
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert arg(containers(result)["mlflow"], "--artifacts-destination") == "s3://acme-runs"
    assert server_secret(result)["aws-secret-access-key"] == "value-of-s3Secret"


def test_basic_auth_reads_an_ini_on_the_same_database(run_component):
    result, _ = run_component(build)
    mlflow = containers(result)["mlflow"]
    assert arg(mlflow, "--app-name") == "basic-auth"
    env = env_of(mlflow)
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow/auth.ini"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-server",
        "key": "flask-secret-key",
    }
    assert {"name": "auth-config", "mountPath": "/etc/mlflow", "readOnly": True} in mlflow["volumeMounts"]
    parser = configparser.ConfigParser()
    secret = server_secret(result)
    parser.read_string(secret["auth.ini"])
    section = parser["mlflow"]
    assert section["database_uri"] == secret["backend-store-uri"]
    assert section["admin_username"] == "admin"
    assert section["admin_password"] == secret["admin-password"] and len(section["admin_password"]) == 32
    assert section["default_permission"] == "READ"
    assert section["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"


def test_auth_off_runs_the_plain_app_with_empty_credentials(run_component):
    result, out = run_component(build, AUTH_OFF)
    mlflow = containers(result)["mlflow"]
    assert "--app-name" not in mlflow["args"]
    assert "MLFLOW_AUTH_CONFIG_PATH" not in env_of(mlflow)
    assert "auth.ini" not in server_secret(result)
    assert not any(name.startswith(f"{NAME}-reader") or name == f"{NAME}-admin-secret" for name in children(result))
    assert out["admin_username"] == "" and out["admin_password"] == SECRET_MASK
    assert out["client_username"] == ""
    assert out["tracking"].client_credentials().env("mlflow-credentials") == [
        {"name": "MLFLOW_TRACKING_URI", "value": out["tracking"].client_credentials().tracking_uri}
    ]


def test_secrets_stay_secret_and_never_reach_env_literals(run_component):
    result, out = run_component(build)
    assert out["admin_password"] == SECRET_MASK
    assert out["client_password"] == SECRET_MASK
    for name in (f"{NAME}-server-secret", f"{NAME}-admin-secret", f"{NAME}-reader-secret"):
        assert result.named(name).masked_inputs()["stringData"] == SECRET_MASK
    secret_values = set(server_secret(result).values())
    for manifest in result.manifests():
        for container in manifest.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in container["env"]:
                assert e.get("value") not in secret_values, (manifest["metadata"]["name"], e["name"])


def test_allowed_hosts_cover_the_route_with_and_without_port_and_the_service(run_component):
    result, _ = run_component(build, {"routing": {"domain": "ml.example.test"}})
    hosts = arg(containers(result)["mlflow"], "--allowed-hosts").split(",")
    assert {"mlflow.ml.example.test", "mlflow.ml.example.test:*"} <= set(hosts)
    assert {
        "mlflow.mlplane-tracking.svc.cluster.local",
        "mlflow.mlplane-tracking.svc.cluster.local:5000",
        "mlflow.mlplane-tracking.svc:5000",
        "mlflow.mlplane-tracking:5000",
    } <= set(hosts)
    assert "*" not in hosts
    assert allowed_hosts("mlflow.a.test", "ns")[:2] == ["mlflow.a.test", "mlflow.a.test:*"]


def test_the_ui_origin_may_write_through_the_gateway(run_component):
    result, _ = run_component(build, {"routing": {"domain": "ml.example.test"}})
    assert arg(containers(result)["mlflow"], "--cors-allowed-origins") == "http://mlflow.ml.example.test"


def test_server_runs_restricted_with_probes_outside_auth(run_component):
    result, _ = run_component(build, {"tracking": {"workers": 2}})
    deployment = find(result, "Deployment", "mlflow")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsNonRoot"]
    assert pod["automountServiceAccountToken"] is False
    mlflow = containers(result)["mlflow"]
    assert mlflow["command"] == ["mlflow", "server"]
    assert arg(mlflow, "--workers") == "2" and arg(mlflow, "--host") == "0.0.0.0" and arg(mlflow, "--port") == "5000"
    assert mlflow["image"] == "ghcr.io/mlflow/mlflow:v3.17.0-full"
    assert env_of(mlflow)["HOME"]["value"] == "/tmp"
    for container in containers(result).values():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert mlflow[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert arg(mlflow, "--expose-prometheus") == "/var/run/mlflow/metrics"
    assert {"name": "metrics", "mountPath": "/var/run/mlflow/metrics"} in mlflow["volumeMounts"]
    assert "mlplane.dev/credentials-digest" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_metrics_come_from_a_sidecar_prometheus_can_scrape_without_credentials(run_component):
    result, out = run_component(build)
    exporter = containers(result)["metrics"]
    assert [p["name"] for p in exporter["ports"]] == ["metrics"]
    assert {"name": "metrics", "mountPath": "/var/run/mlflow/metrics", "readOnly": True} in exporter["volumeMounts"]
    assert not any("valueFrom" in e for e in exporter["env"]), "the exporter holds no credentials"
    target = out["tracking"].scrape_targets[0]
    assert (target.job, target.namespace, target.port) == ("mlflow", "mlplane-tracking", "metrics")
    assert target.path == "/metrics"
    assert target.selector["app.kubernetes.io/name"] == "mlflow"
    assert [(u.key, u.url) for u in out["tracking"].uis] == [("mlflow", "http://mlflow.mlplane.localhost")]


def test_outputs(run_component):
    _, out = run_component(build)
    assert out["url"] == "http://mlflow.mlplane.localhost"
    assert out["internal_url"] == out["client_uri"] == "http://mlflow.mlplane-tracking.svc.cluster.local:5000"
    assert out["admin_username"] == "admin"
    assert out["client_username"] == "mlplane-reader"


def test_clients_get_a_dedicated_non_admin_account_made_by_a_job(run_component):
    result, out = run_component(build)
    job = find(result, "Job", "mlflow-reader-")
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c", READER_SCRIPT]
    env = env_of(container)
    assert env["MLFLOW_TRACKING_URI"]["value"] == out["internal_url"]
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-admin", "key": "password"}
    assert env["READER_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-reader", "key": "password"}
    selector = find(result, "Deployment", "mlflow")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items(), "the Service must not send traffic to the Job"
    assert pod["spec"]["restartPolicy"] == "Never"
    storage_setup = result.named("mlplane-storage-setup-job").urn
    assert storage_setup in result.named(f"{NAME}-deployment").depends_on
    reader = result.named(f"{NAME}-reader-job")
    deployment_urn = result.named(f"{NAME}-deployment").urn
    assert deployment_urn in reader.depends_on
    assert '"is_admin": False' in READER_SCRIPT


def test_client_env_reads_credentials_from_the_workloads_own_secret(run_component):
    _, out = run_component(build)
    env = out["tracking"].client_credentials().env("serving-mlflow")
    assert [e["name"] for e in env] == ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    assert env[2]["valueFrom"]["secretKeyRef"] == {"name": "serving-mlflow", "key": "password"}


def test_manifests_pass_strict_schema_validation(run_component):
    for raw in ({}, AUTH_OFF):
        result, _ = run_component(build, raw)
        assert [str(f) for f in checks.validate_schemas(result.manifests(), ["1.34", "1.37"])] == []


def test_auth_ini_escapes_percent_signs_configparser_would_interpolate():
    text = auth_ini("postgresql://u:p%40ss@h:5432/db?sslmode=require", "pw%1")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser["mlflow"]["database_uri"] == "postgresql://u:p%40ss@h:5432/db?sslmode=require"
    assert parser["mlflow"]["admin_password"] == "pw%1"


def test_database_uri_percent_encodes_user_password_and_database():
    uri = database_uri("ml flow", "p@ss:w/rd%", "db", 5432, "ml/db", "require")
    assert uri == "postgresql+psycopg2://ml%20flow:p%40ss%3Aw%2Frd%25@db:5432/ml%2Fdb?sslmode=require"


def test_every_mlflow_container_runs_with_telemetry_off(run_component):
    """MLflow 3.x reports usage unless MLFLOW_DISABLE_TELEMETRY is true or DO_NOT_TRACK is "true"."""
    result, _ = run_component(build)
    seen = []
    for item in result.manifests():
        if item["kind"] not in ("Deployment", "Job"):
            continue
        for container in item["spec"]["template"]["spec"]["containers"]:
            if "/mlflow/mlflow:" in container["image"]:
                values = {e["name"]: e.get("value") for e in container["env"]}
                assert values["MLFLOW_DISABLE_TELEMETRY"] == "true", container["name"]
                assert values["DO_NOT_TRACK"] == "true", container["name"]
                seen.append(container["name"])
    assert sorted(seen) == ["create-reader", "metrics", "mlflow"]
