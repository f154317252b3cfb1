"""MLflow on the AWS target: it reaches its bucket with EKS Pod Identity, never with keys, and its
database with the RDS master secret; the same TrackingServer as locally (whose render the goldens
pin unchanged)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pytest

from mlplane.config import parse_platform
from mlplane.core import kube
from mlplane.services.tracking import TrackingArgs, TrackingServer
from mlplane.targets.aws.database import AwsDatabase
from mlplane.targets.aws.object_storage import AwsObjectStorage

from aws_backing_mocks import RAW, aws_mocks, context, run  # noqa: F401 (aws_mocks: the fixture)
from conftest import Root, fake_secret

pytestmark = pytest.mark.usefixtures("aws_mocks")
NAME = "mlplane-tracking"


def render():
    def build():
        config = parse_platform(RAW)
        provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
        platform = kube.Platform(name=config.name, provider=provider, protect_stateful=True, secret=fake_secret)
        root = Root(provider)
        ctx = context()
        child = pulumi.ResourceOptions(parent=root)
        storage = AwsObjectStorage("mlplane-storage", ctx, config.object_storage.buckets, False, child)
        database = AwsDatabase("mlplane-database", ctx, child)
        gateway = kube.GatewayRef(name="mlplane", namespace="mlplane-gateway", domain=config.routing.domain, http_port=80)
        TrackingServer(NAME, TrackingArgs(config.tracking, platform, database, storage, gateway), child)
        return {}

    return run(build)


def deployment(result):
    return result.named(f"{NAME}-deployment").inputs


def test_server_runs_as_its_own_service_account_without_a_token():
    result, _ = render()
    spec = deployment(result)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "mlflow"
    account = result.named(f"{NAME}-service-account").inputs
    assert account["metadata"]["name"] == "mlflow" and account["metadata"]["namespace"] == "mlplane-tracking"
    assert account["automountServiceAccountToken"] is False


def test_no_static_keys_in_env_or_secret():
    result, _ = render()
    env = {e["name"] for c in deployment(result)["spec"]["template"]["spec"]["containers"] for e in c["env"]}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & env
    secret = result.named(f"{NAME}-server-secret").inputs["stringData"]
    assert not [key for key in secret if key.startswith("aws-")]


def test_s3_endpoint_is_the_regional_one():
    result, _ = render()
    env = {e["name"]: e.get("value") for e in deployment(result)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_pod_identity_association_for_the_server():
    result, _ = render()
    association = result.named("mlplane-storage-mlflow-pod-identity").inputs
    assert (association["namespace"], association["serviceAccount"]) == ("mlplane-tracking", "mlflow")
    # The deployment waits for the association: a pod started before it gets no credentials.
    depends = result.named(f"{NAME}-deployment").depends_on
    assert result.named("mlplane-storage-mlflow-pod-identity").urn in depends


def test_egress_reaches_the_pod_identity_agent():
    result, _ = render()
    rules = result.named(f"{NAME}-egress").inputs["spec"]["egress"]
    agent = [r for r in rules if {"ipBlock": {"cidr": "169.254.170.23/32"}} in r.get("to", [])]
    assert agent and agent[0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_database_uri_uses_rds_with_tls_required():
    result, _ = render()
    uri = result.named(f"{NAME}-server-secret").inputs["stringData"]["backend-store-uri"]
    assert uri.startswith("postgresql+psycopg2://mlflow:")
    assert "@mlplane-mlflow.abcdefghij.eu-west-1.rds.amazonaws.com:5432/mlflow?sslmode=require" in uri
