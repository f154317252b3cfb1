"""The Serving component: MLflow registry models behind the Gateway, autoscaled, with canaries."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from mlplane.core import kube
from mlplane.config import ConfigError, parse_platform
from mlplane.tooling.render import SECRET_MASK, Capture
from mlplane.services.serving import ServedModel, Serving, ServingArgs

from conftest import opts

GATEWAY = kube.GatewayRef(name="mlplane", namespace="mlplane-routing", domain="mlplane.localhost", http_port=80)
TRACKING = "http://mlflow.mlplane-tracking.svc.cluster.local:5000"
IRIS = {
    "name": "iris",
    "registered_model": "iris-classifier",
    "version": 3,
    "min_replicas": 2,
    "max_replicas": 5,
    "target_cpu_utilization": 60,
    "canary": {"alias": "challenger", "weight": 20},
}
WINE = {"name": "wine", "registered_model": "wine", "alias": "champion"}
TWO_MODELS = {"serving": {"models": [IRIS, WINE]}}


def build(platform, config, root) -> dict[str, Any]:
    serving = Serving(
        "mlplane-serving",
        ServingArgs(
            config=config.serving,
            platform=platform,
            gateway=GATEWAY,
            tracking_uri=TRACKING,
            tracking_username="serving",
            tracking_password=pulumi.Output.secret("tracking-password"),
        ),
        opts(root),
    )
    return {"serving": serving, **{f"url_{k}": v for k, v in serving.urls.items()}}


def children(result: Capture, parent: str) -> dict[str, str]:
    return {r.name: r.type for r in result.resources if r.parent and r.parent.endswith(f"::{parent}")}


def manifest(result: Capture, name: str) -> dict[str, Any]:
    return result.named(name).manifest()


def pod_spec(result: Capture, name: str) -> dict[str, Any]:
    return manifest(result, name)["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------------- structure


def test_each_model_gets_deployment_service_hpa_and_route_with_pinned_names(run_component):
    result, _ = run_component(build, TWO_MODELS)
    assert result.named("mlplane-serving").type == "mlplane:serving:Serving"
    assert children(result, "mlplane-serving") == {
        "mlplane-serving-namespace": "kubernetes:core/v1:Namespace",
        "mlplane-serving-mlflow-credentials": "kubernetes:core/v1:Secret",
        "mlplane-serving-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-serving-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-serving-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-serving-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-serving-metrics-server": "mlplane:serving:MetricsServer",
        "mlplane-serving-iris-deployment": "kubernetes:apps/v1:Deployment",
        "mlplane-serving-iris-service": "kubernetes:core/v1:Service",
        "mlplane-serving-iris-hpa": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "mlplane-serving-iris-pdb": "kubernetes:policy/v1:PodDisruptionBudget",
        "mlplane-serving-iris-canary-deployment": "kubernetes:apps/v1:Deployment",
        "mlplane-serving-iris-canary-service": "kubernetes:core/v1:Service",
        "mlplane-serving-iris-canary-hpa": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "mlplane-serving-iris-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        "mlplane-serving-wine-deployment": "kubernetes:apps/v1:Deployment",
        "mlplane-serving-wine-service": "kubernetes:core/v1:Service",
        "mlplane-serving-wine-hpa": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "mlplane-serving-wine-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        # Model routes require an API key by default (tests/unit/services/test_gateway_security.py).
        "mlplane-serving-api-keys": "kubernetes:core/v1:Secret",
        "mlplane-serving-api-keys-key": "random:index/randomPassword:RandomPassword",
        "mlplane-serving-iris-security-policy": "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy",
        "mlplane-serving-wine-security-policy": "kubernetes:gateway.envoyproxy.io/v1alpha1:SecurityPolicy",
    }
    objects = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in result.manifests()}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "HTTPRoute"):
        assert (kind, "mlplane-serving", "iris") in objects
        assert (kind, "mlplane-serving", "wine") in objects
    assert ("Deployment", "mlplane-serving", "iris-canary") in objects
    assert ("Secret", "mlplane-serving", "mlflow-credentials") in objects


def test_namespace_is_restricted_and_may_attach_routes_to_the_gateway(run_component):
    result, _ = run_component(build, TWO_MODELS)
    labels = manifest(result, "mlplane-serving-namespace")["metadata"]["labels"]
    assert manifest(result, "mlplane-serving-namespace")["metadata"]["name"] == "mlplane-serving"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[kube.GATEWAY_ACCESS] == "true"


def test_metrics_server_is_a_child_component_with_upstream_object_names(run_component):
    result, _ = run_component(build, TWO_MODELS)
    assert result.named("mlplane-serving-metrics-server").type == "mlplane:serving:MetricsServer"
    assert result.parent_of("mlplane-serving-metrics-server").name == "mlplane-serving"
    prefix = "mlplane-serving-metrics-server"
    assert children(result, prefix) == {
        f"{prefix}-service-account": "kubernetes:core/v1:ServiceAccount",
        f"{prefix}-aggregated-reader": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        f"{prefix}-cluster-role": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        f"{prefix}-cluster-role-binding": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        f"{prefix}-auth-delegator": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        f"{prefix}-auth-reader": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        f"{prefix}-service": "kubernetes:core/v1:Service",
        f"{prefix}-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{prefix}-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{prefix}-deployment": "kubernetes:apps/v1:Deployment",
        f"{prefix}-api-service": "kubernetes:apiregistration.k8s.io/v1:APIService",
    }
    names = {r.name: r.manifest()["metadata"] for r in result.kubernetes_objects() if r.name.startswith(prefix)}
    assert {meta["name"] for meta in names.values()} == {
        "metrics-server",
        "system:aggregated-metrics-reader",
        "system:metrics-server",
        "metrics-server:system:auth-delegator",
        "metrics-server-auth-reader",
        "metrics-server-egress",
        "v1beta1.metrics.k8s.io",
    }
    namespaced = [meta for meta in names.values() if "namespace" in meta]
    assert {meta["namespace"] for meta in namespaced} == {"kube-system"}


def test_metrics_server_runs_with_its_upstream_flags_and_a_token(run_component):
    result, _ = run_component(build, TWO_MODELS)
    spec = pod_spec(result, "mlplane-serving-metrics-server-deployment")
    container = spec["containers"][0]
    assert container["image"] == "registry.k8s.io/metrics-server/metrics-server:v0.9.0"
    assert "--kubelet-insecure-tls" in container["args"]
    assert "--cert-dir=/tmp" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "https", "scheme": "HTTPS"}
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == "metrics-server"
    skips = manifest(result, "mlplane-serving-metrics-server-deployment")["metadata"]["annotations"].values()
    assert any(value.startswith("CKV_K8S_38=") for value in skips)
    api = manifest(result, "mlplane-serving-metrics-server-api-service")["spec"]
    assert api["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    assert (api["group"], api["version"]) == ("metrics.k8s.io", "v1beta1")


def test_metrics_server_verifies_kubelet_certificates_when_told_to(run_component):
    raw = {"serving": {"metrics_server": {"kubelet_insecure_tls": False}}}
    result, _ = run_component(build, raw)
    args = pod_spec(result, "mlplane-serving-metrics-server-deployment")["containers"][0]["args"]
    assert "--kubelet-insecure-tls" not in args


def test_metrics_server_can_be_left_to_the_cluster(run_component):
    result, _ = run_component(build, {"serving": {"models": [WINE], "metrics_server": {"enabled": False}}})
    assert not [r for r in result.resources if "metrics-server" in r.name]
    assert "mlplane-serving-wine-hpa" in children(result, "mlplane-serving")


def test_without_models_only_metrics_server_is_created(run_component):
    result, built = run_component(build)
    assert set(children(result, "mlplane-serving")) == {"mlplane-serving-metrics-server"}
    serving = built["serving"]
    assert serving.models == [] and serving.urls == {} and serving.uis == [] and serving.scrape_targets == []


# ------------------------------------------------------------------------------ model servers


def test_model_server_runs_mlflow_models_serve_from_the_registry_with_the_local_env(run_component):
    result, _ = run_component(build, TWO_MODELS)
    iris = pod_spec(result, "mlplane-serving-iris-deployment")["containers"][0]
    assert iris["image"] == "ghcr.io/mlflow/mlflow:v3.17.0-full"
    assert iris["command"] == ["mlflow"]
    args = iris["args"]
    assert args[:2] == ["models", "serve"]
    assert args[args.index("--model-uri") + 1] == "models:/iris-classifier/3"
    assert args[args.index("--env-manager") + 1] == "local"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    wine = pod_spec(result, "mlplane-serving-wine-deployment")["containers"][0]["args"]
    assert wine[wine.index("--model-uri") + 1] == "models:/wine@champion"
    canary = pod_spec(result, "mlplane-serving-iris-canary-deployment")["containers"][0]["args"]
    assert canary[canary.index("--model-uri") + 1] == "models:/iris-classifier@challenger"


def test_model_server_reaches_mlflow_with_credentials_from_a_secret(run_component):
    result, _ = run_component(build, TWO_MODELS)
    env = {e["name"]: e for e in pod_spec(result, "mlplane-serving-iris-deployment")["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == TRACKING
    for variable, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-credentials", "key": key}
    secret = result.named("mlplane-serving-mlflow-credentials")
    assert secret.manifest()["stringData"] == {"username": "serving", "password": "tracking-password"}
    assert secret.masked_inputs()["stringData"] == SECRET_MASK


def test_model_pods_meet_the_security_baseline(run_component):
    result, _ = run_component(build, TWO_MODELS)
    for name in ("iris", "iris-canary", "wine"):
        deployment = manifest(result, f"mlplane-serving-{name}-deployment")
        assert "CKV_K8S_43=" + kube.DIGEST_SKIP[1] in deployment["metadata"]["annotations"].values()
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] >= 10000
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"] == {
            "requests": {"cpu": "100m", "memory": "384Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/ping", "port": "http"}
        # Downloading the model may take minutes: the startup probe allows startup_timeout_seconds.
        assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 600
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}} in spec["volumes"]


def test_download_volume_and_startup_budget_follow_config(run_component):
    model = {**WINE, "tmp_size": "8Gi", "startup_timeout_seconds": 1200}
    result, _ = run_component(build, {"serving": {"models": [model]}})
    spec = pod_spec(result, "mlplane-serving-wine-deployment")
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}} in spec["volumes"]
    startup = spec["containers"][0]["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 1200


def test_a_model_with_extra_dependencies_runs_its_own_image(run_component):
    model = {**IRIS, "image": "localhost:5001/iris-serving:1.2.0"}
    result, _ = run_component(build, {"serving": {"models": [model]}})
    for name in ("iris", "iris-canary"):
        container = pod_spec(result, f"mlplane-serving-{name}-deployment")["containers"][0]
        assert container["image"] == "localhost:5001/iris-serving:1.2.0"
    canary = {**IRIS, "canary": {"version": 4, "image": "localhost:5001/iris-serving:1.3.0"}}
    result, _ = run_component(build, {"serving": {"models": [canary]}})
    assert pod_spec(result, "mlplane-serving-iris-canary-deployment")["containers"][0]["image"] == (
        "localhost:5001/iris-serving:1.3.0"
    )
    assert pod_spec(result, "mlplane-serving-iris-deployment")["containers"][0]["image"] == (
        "ghcr.io/mlflow/mlflow:v3.17.0-full"
    )


def test_registry_mirror_rewrites_the_pinned_images(run_component):
    result, _ = run_component(build, {**TWO_MODELS, "images": {"registry_mirror": "mirror.corp.example/upstream"}})
    assert pod_spec(result, "mlplane-serving-wine-deployment")["containers"][0]["image"] == (
        "mirror.corp.example/upstream/mlflow/mlflow:v3.17.0-full"
    )


def test_hpa_scales_each_track_on_cpu_and_owns_the_replica_count(run_component):
    result, _ = run_component(build, TWO_MODELS)
    hpa = manifest(result, "mlplane-serving-iris-hpa")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    canary = manifest(result, "mlplane-serving-iris-canary-hpa")["spec"]
    assert canary["scaleTargetRef"]["name"] == "iris-canary"
    assert (canary["minReplicas"], canary["maxReplicas"]) == (1, 5)
    for name in ("iris", "iris-canary", "wine"):
        assert "replicas" not in manifest(result, f"mlplane-serving-{name}-deployment")["spec"]


def test_only_replicated_models_get_a_disruption_budget_below_their_replicas(run_component):
    result, _ = run_component(build, TWO_MODELS)
    pdb = manifest(result, "mlplane-serving-iris-pdb")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"] == manifest(result, "mlplane-serving-iris-deployment")["spec"]["selector"]["matchLabels"]
    pdbs = [m for m in result.manifests() if m["kind"] == "PodDisruptionBudget"]
    assert [m["metadata"]["name"] for m in pdbs] == ["iris"]


def test_canary_gets_its_weight_of_requests_in_the_same_route_rule(run_component):
    result, _ = run_component(build, TWO_MODELS)
    route = manifest(result, "mlplane-serving-iris-route")
    assert route["metadata"]["namespace"] == "mlplane-serving"
    assert route["spec"]["hostnames"] == ["iris.mlplane.localhost"]
    assert route["spec"]["parentRefs"][0]["name"] == "mlplane"
    (rule,) = route["spec"]["rules"]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [("iris", 80, 80), ("iris-canary", 80, 20)]
    stable = manifest(result, "mlplane-serving-iris-service")["spec"]["selector"]
    canary = manifest(result, "mlplane-serving-iris-canary-service")["spec"]["selector"]
    assert stable != canary


def test_route_without_canary_sends_every_request_to_the_model(run_component):
    result, _ = run_component(build, TWO_MODELS)
    (rule,) = manifest(result, "mlplane-serving-wine-route")["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("wine", 100)]


def test_model_pods_accept_traffic_only_on_their_http_port(run_component):
    result, _ = run_component(build, TWO_MODELS)
    policy = manifest(result, "mlplane-serving-network-policy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    pod_labels = manifest(result, "mlplane-serving-iris-canary-deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()


# ------------------------------------------------------------------------------------ outputs


def test_served_models_tell_monitoring_where_to_look(run_component):
    _, built = run_component(build, TWO_MODELS)
    serving = built["serving"]
    assert serving.models == [
        ServedModel(
            name="iris",
            namespace="mlplane-serving",
            route="iris",
            url="http://iris.mlplane.localhost",
            registered_model="iris-classifier",
            version="v3",
            canary_version="challenger",
            canary_weight=20,
        ),
        ServedModel(
            name="wine",
            namespace="mlplane-serving",
            route="wine",
            url="http://wine.mlplane.localhost",
            registered_model="wine",
            version="champion",
        ),
    ]
    assert serving.models[0].envoy_cluster == "httproute/mlplane-serving/iris/rule/0"
    assert serving.scrape_targets == []
    assert [(ui.key, ui.url) for ui in serving.uis] == [
        ("model-iris", "http://iris.mlplane.localhost"),
        ("model-wine", "http://wine.mlplane.localhost"),
    ]
    assert built["url_iris"] == "http://iris.mlplane.localhost"
    assert built["url_wine"] == "http://wine.mlplane.localhost"


def test_manifests_pass_strict_schema_validation_on_supported_minors(run_component):
    result, _ = run_component(build, TWO_MODELS)
    checked = 0
    for document in result.manifests():
        for version in ("1.34", "1.37"):
            try:
                kubernetes_validate.validate(document, version, strict=True)
                checked += 1
            except SchemaNotFoundError:  # custom resources: the SecurityPolicy is checked in test_gateway_security
                assert document["kind"] in ("HTTPRoute", "SecurityPolicy")
    assert checked >= 2 * 20


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({**WINE, "name": "9lives"}, "must start with a letter"),
        ({**WINE, "name": "m" * 57}, "at most 56 characters"),
        ({**WINE, "image": "localhost:5001/wine"}, "pinned to a tag"),
        ({**WINE, "image": "localhost:5001/wine:latest"}, "pinned to a tag"),
        ({**WINE, "canary": {"alias": "champion"}}, "different version or alias"),
    ],
)
def test_config_rejects_models_that_cannot_be_served(model, message):
    with pytest.raises(ConfigError, match=message):
        parse_platform({"serving": {"models": [model]}})


def test_config_rejects_a_model_named_like_another_models_canary():
    with pytest.raises(ConfigError, match="iris-canary"):
        parse_platform({"serving": {"models": [IRIS, {**WINE, "name": "iris-canary"}]}})


def test_config_accepts_images_pinned_by_digest():
    digest = "localhost:5001/wine@sha256:" + "a" * 64
    config = parse_platform({"serving": {"models": [{**WINE, "image": digest}]}})
    assert config.serving.models[0].image == digest


def test_model_servers_run_mlflow_with_telemetry_off(run_component):
    raw = {"serving": {"models": [IRIS, {**WINE, "image": "localhost:5001/wine-serving:1.0.0"}]}}
    result, _ = run_component(build, raw)
    deployments = [m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["namespace"] == "mlplane-serving"]
    assert len(deployments) >= 2
    for item in deployments:
        (container,) = item["spec"]["template"]["spec"]["containers"]
        values = {e["name"]: e.get("value") for e in container["env"]}
        assert values["MLFLOW_DISABLE_TELEMETRY"] == "true", item["metadata"]["name"]
        assert values["DO_NOT_TRACK"] == "true", item["metadata"]["name"]
