"""The Routing component: Envoy Gateway, its EnvoyProxy, the GatewayClass and the Gateway.

The chart cannot be fetched offline: these tests check the values passed to it and every
object mlplane writes itself.
"""

from __future__ import annotations

import kubernetes_validate
import pulumi
import pytest

from mlplane.core import kube
from mlplane.config import versions
from mlplane.config import ConfigError, RoutingConfig, parse_platform
from mlplane.services.progressive import GATEWAY_JOB
from mlplane.services.routing import (
    CERTGEN_COMMAND,
    ENVOY_UID,
    HTTP_NODE_PORT,
    Routing,
    RoutingArgs,
    chart_workloads,
)

from conftest import opts

LIVE_CHILDREN = {
    "mlplane-routing-namespace": "kubernetes:core/v1:Namespace",
    "mlplane-routing-certgen-account": "kubernetes:core/v1:ServiceAccount",
    "mlplane-routing-certgen-role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "mlplane-routing-certgen-binding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "mlplane-routing-certgen": "kubernetes:batch/v1:Job",
    "mlplane-routing-certgen-ingress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "mlplane-routing-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "mlplane-routing-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "mlplane-routing-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "mlplane-routing-chart": "kubernetes:helm.sh/v4:Chart",
    "mlplane-routing-envoy-proxy": "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
    "mlplane-routing-gateway-class": "kubernetes:gateway.networking.k8s.io/v1:GatewayClass",
    "mlplane-routing-gateway": "kubernetes:gateway.networking.k8s.io/v1:Gateway",
}


def build(platform, config, root, *, http_port=80):
    routing = Routing("mlplane-routing", RoutingArgs(config.routing, platform, http_port), opts(root))
    ready = pulumi.Output.all(*[r.urn for r in routing.ready])
    return {"routing": routing, "namespace": routing.namespace, "ready": ready}


def children(result):
    return {r.name: r for r in result.resources if r.parent and r.parent.endswith("::mlplane-routing")}


def test_live_mode_creates_certgen_chart_and_gateway_objects(run_component):
    result, out = run_component(build)
    assert result.named("mlplane-routing").type == "mlplane:routing:Routing"
    assert result.parent_of("mlplane-routing").name == "mlplane"
    assert {n: r.type for n, r in children(result).items()} == LIVE_CHILDREN
    assert out["namespace"] == "mlplane-gateway"


def test_namespace_is_restricted(run_component):
    result, _ = run_component(build, {"name": "lab"})
    labels = result.named("mlplane-routing-namespace").manifest()["metadata"]["labels"]
    assert result.named("mlplane-routing-namespace").manifest()["metadata"]["name"] == "lab-gateway"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_chart_is_the_pinned_envoy_gateway_with_config_resources(run_component):
    raw = {"routing": {"controller_resources": {"requests": {"cpu": "30m", "memory": "80Mi"}, "limits": {"cpu": "300m", "memory": "200Mi"}}}}
    result, _ = run_component(build, raw)
    chart = result.named("mlplane-routing-chart").inputs
    assert chart["chart"] == versions.CHARTS["envoy-gateway"].chart == "oci://docker.io/envoyproxy/gateway-helm"
    assert chart["version"] == "v1.9.1"
    assert chart["namespace"] == "mlplane-gateway"
    assert chart["name"] == "envoy-gateway"
    controller = chart["values"]["deployment"]["envoyGateway"]
    assert controller["resources"] == {
        "requests": {"cpu": "30m", "memory": "80Mi"},
        "limits": {"cpu": "300m", "memory": "200Mi"},
    }
    assert controller["image"] == {"repository": "docker.io/envoyproxy/gateway", "tag": "v1.9.1"}
    assert chart["values"]["topologyInjector"] == {"enabled": False}
    assert chart["values"]["certgen"]["job"]["resources"] == controller["resources"]


def test_chart_security_contexts_are_restricted(run_component):
    result, _ = run_component(build)
    values = result.named("mlplane-routing-chart").inputs["values"]
    for context in (values["deployment"]["envoyGateway"]["securityContext"], values["certgen"]["job"]["securityContext"]):
        assert context["runAsNonRoot"] is True and context["runAsUser"] == ENVOY_UID
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_chart_image_follows_the_mirror(run_component):
    result, _ = run_component(build, {"images": {"registry_mirror": "mirror.corp:5000/hub"}})
    values = result.named("mlplane-routing-chart").inputs["values"]
    assert values["deployment"]["envoyGateway"]["image"] == {
        "repository": "mirror.corp:5000/hub/envoyproxy/gateway",
        "tag": "v1.9.1",
    }
    job = result.named("mlplane-routing-certgen").manifest()
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.corp:5000/hub/envoyproxy/gateway:v1.9.1"


def test_envoy_service_is_the_fixed_node_port_kind_maps(run_component):
    result, _ = run_component(build)
    kubernetes = result.named("mlplane-routing-envoy-proxy").manifest()["spec"]["provider"]["kubernetes"]
    service = kubernetes["envoyService"]
    assert service["type"] == "NodePort"
    assert service["externalTrafficPolicy"] == "Cluster"
    assert service["patch"] == {
        "type": "StrategicMerge",
        "value": {"spec": {"ports": [{"port": 80, "nodePort": HTTP_NODE_PORT}]}},
    }


def test_envoy_pods_get_config_resources_and_restricted_contexts(run_component):
    raw = {"routing": {"proxy_resources": {"requests": {"cpu": "70m", "memory": "90Mi"}, "limits": {"cpu": "700m", "memory": "300Mi"}}}}
    result, _ = run_component(build, raw)
    deployment = result.named("mlplane-routing-envoy-proxy").manifest()["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    container = deployment["container"]
    assert container["resources"] == {"requests": {"cpu": "70m", "memory": "90Mi"}, "limits": {"cpu": "700m", "memory": "300Mi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == ENVOY_UID
    assert deployment["pod"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["pod"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (shutdown,) = deployment["patch"]["value"]["spec"]["template"]["spec"]["containers"]
    assert shutdown["name"] == "shutdown-manager"
    assert shutdown["resources"] == kube.resources(RoutingConfig().shutdown_manager_resources)


def test_both_proxy_containers_get_a_writable_tmp_under_a_read_only_root(run_component):
    """Envoy Gateway applies the EnvoyProxy container securityContext (read-only root) to the
    shutdown-manager too, which writes /tmp/shutdown-ready when a drain completes."""
    result, _ = run_component(build)
    deployment = result.named("mlplane-routing-envoy-proxy").manifest()["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    volumes = {v["name"]: v for v in deployment["pod"]["volumes"]}
    assert deployment["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    (envoy_tmp,) = deployment["container"]["volumeMounts"]
    (shutdown,) = deployment["patch"]["value"]["spec"]["template"]["spec"]["containers"]
    (shutdown_tmp,) = shutdown["volumeMounts"]
    for mount in (envoy_tmp, shutdown_tmp):
        assert mount["mountPath"] == "/tmp"
        assert "emptyDir" in volumes[mount["name"]]
        assert volumes[mount["name"]]["emptyDir"]["sizeLimit"]
    assert envoy_tmp["name"] != shutdown_tmp["name"]


def test_controller_pull_policy_is_set_where_the_chart_reads_it(run_component):
    result, _ = run_component(build)
    values = result.named("mlplane-routing-chart").inputs["values"]
    # eg.image.pullPolicy: default <deployment.envoyGateway.imagePullPolicy> <global.images.envoyGateway.pullPolicy>
    assert values["global"]["images"]["envoyGateway"]["pullPolicy"] == "Always"
    assert values["deployment"]["envoyGateway"]["imagePullPolicy"] == "Always"


def test_gateway_class_points_at_the_envoy_proxy(run_component):
    result, _ = run_component(build, {"name": "lab"})
    proxy = result.named("mlplane-routing-envoy-proxy").manifest()
    gateway_class = result.named("mlplane-routing-gateway-class").manifest()
    assert gateway_class["metadata"]["name"] == "lab"
    assert "namespace" not in gateway_class["metadata"]
    assert gateway_class["spec"] == {
        "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
        "parametersRef": {
            "group": "gateway.envoyproxy.io",
            "kind": "EnvoyProxy",
            "name": proxy["metadata"]["name"],
            "namespace": proxy["metadata"]["namespace"],
        },
    }


def test_gateway_listens_for_the_domain_and_admits_labelled_namespaces(run_component):
    result, _ = run_component(build, {"name": "lab", "routing": {"domain": "ml.localhost"}})
    gateway = result.named("mlplane-routing-gateway").manifest()
    assert gateway["metadata"]["name"] == "lab"
    assert gateway["metadata"]["namespace"] == "lab-gateway"
    assert gateway["spec"]["gatewayClassName"] == "lab"
    (listener,) = gateway["spec"]["listeners"]
    assert listener["name"] == "http" and listener["protocol"] == "HTTP" and listener["port"] == 80
    assert listener["hostname"] == "*.ml.localhost"
    assert listener["allowedRoutes"]["namespaces"] == {
        "from": "Selector",
        "selector": {"matchLabels": {kube.GATEWAY_ACCESS: "true"}},
    }


def test_custom_resources_wait_for_the_chart_and_routes_wait_for_ready(run_component):
    result, out = run_component(build)
    chart = result.named("mlplane-routing-chart")
    for name in ("mlplane-routing-envoy-proxy", "mlplane-routing-gateway-class", "mlplane-routing-gateway"):
        assert chart.urn in result.named(name).depends_on, name
    expected = ["mlplane-routing-chart", "mlplane-routing-gateway-class", "mlplane-routing-gateway"]
    assert out["ready"] == [result.named(name).urn for name in expected]


def test_chart_waits_for_certgen_in_live_mode(run_component):
    result, _ = run_component(build)
    assert result.named("mlplane-routing-certgen").urn in result.named("mlplane-routing-chart").depends_on


def test_certgen_job_writes_the_secrets_with_a_narrow_role(run_component):
    result, _ = run_component(build)
    role = result.named("mlplane-routing-certgen-role").manifest()
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}]
    job = result.named("mlplane-routing-certgen").manifest()
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "certgen"
    assert pod["automountServiceAccountToken"] is True
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == CERTGEN_COMMAND
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == kube.resources(RoutingConfig().controller_resources)
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == 900
    annotations = job["metadata"]["annotations"]
    assert any(v.startswith("CKV_K8S_43=") for v in annotations.values())
    assert any(v.startswith("CKV_K8S_38=") for v in annotations.values())


def test_nothing_may_connect_to_certgen(run_component):
    result, _ = run_component(build)
    policy = result.named("mlplane-routing-certgen-ingress").manifest()
    job = result.named("mlplane-routing-certgen").manifest()
    assert policy["spec"]["podSelector"]["matchLabels"] == job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"] == []


@pytest.mark.parametrize("minor", ["1.34", "1.37"])
def test_built_in_objects_pass_strict_schema_validation(run_component, minor):
    result, _ = run_component(build)
    for record in result.kubernetes_objects():
        if record.type.startswith("kubernetes:gateway"):
            continue  # CRDs: not in the core schema
        kubernetes_validate.validate(record.manifest(), minor, strict=True)


def test_gateway_ref_builds_ui_urls_with_the_host_port(run_component):
    _, out = run_component(build)
    gateway = out["routing"].gateway
    assert gateway == kube.GatewayRef(name="mlplane", namespace="mlplane-gateway", domain="mlplane.localhost", http_port=80)
    assert gateway.url("mlflow") == "http://mlflow.mlplane.localhost"
    _, out = run_component(lambda p, c, r: build(p, c, r, http_port=8080))
    assert out["routing"].gateway.url("grafana") == "http://grafana.mlplane.localhost:8080"


def test_scrape_target_selects_the_gateways_envoy_pods(run_component):
    _, out = run_component(build)
    (target,) = out["routing"].scrape_targets
    # The job every Envoy query of the rules and Flagger's checks is pinned to.
    assert target.job == "envoy" == GATEWAY_JOB
    assert target.namespace == "mlplane-gateway"
    assert target.port == "metrics"
    assert target.path == "/stats/prometheus"
    assert target.selector == {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/managed-by": "envoy-gateway",
        "gateway.envoyproxy.io/owning-gateway-name": "mlplane",
        "gateway.envoyproxy.io/owning-gateway-namespace": "mlplane-gateway",
    }
    assert out["routing"].uis == []


def test_chart_workloads_list_the_controller_and_the_proxy_pod():
    config = RoutingConfig()
    assert chart_workloads(config) == [
        ("envoy-gateway", 1, config.controller_resources),
        ("envoy (proxy)", 1, config.proxy_resources),
        ("envoy (shutdown-manager)", 1, config.shutdown_manager_resources),
    ]


def test_domain_must_be_a_dns_name():
    with pytest.raises(ConfigError, match="routing.domain"):
        parse_platform({"routing": {"domain": "Not A Domain"}})


def test_an_existing_envoy_gateway_installs_no_chart(run_component):
    from mlplane.services.routing import Routing, RoutingArgs, chart_workloads

    def build(platform, config, root):
        routing = Routing(
            "mlplane-routing",
            RoutingArgs(config=config.routing, platform=platform, http_port=80),
            pulumi.ResourceOptions(parent=root),
        )
        return {"routing": routing}

    result, _ = run_component(build, {"routing": {"controller": "existing"}})
    types = {r.type for r in result.resources}
    assert not any(t.startswith("kubernetes:helm.sh/") for t in types)
    kinds = {m["kind"] for m in result.manifests()}
    assert {"EnvoyProxy", "GatewayClass", "Gateway"} <= kinds
    assert [w[0] for w in chart_workloads(parse_platform({"routing": {"controller": "existing"}}).routing)] == [
        "envoy (proxy)",
        "envoy (shutdown-manager)",
    ]


def test_an_existing_controller_can_run_its_proxies_elsewhere(run_component):
    from mlplane.services.monitoring import Monitoring, MonitoringArgs

    def build_all(platform, config, root):
        routing = Routing("mlplane-routing", RoutingArgs(config.routing, platform, 80), opts(root))
        monitoring = Monitoring(
            "mlplane-monitoring",
            MonitoringArgs(config.monitoring, platform, routing.gateway, routing.scrape_targets, []),
            opts(root),
        )
        return {"routing": routing, "monitoring": monitoring}

    raw = {"routing": {"controller": "existing", "proxy_namespace": "envoy-gateway-system"}}
    result, out = run_component(build_all, raw)
    assert out["routing"].scrape_targets[0].namespace == "envoy-gateway-system"
    grafana = next(m for m in result.manifests() if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "grafana")
    peers = [p for rule in grafana["spec"]["ingress"] for p in rule.get("from", [])]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}} in peers
    with pytest.raises(ConfigError, match="proxy_namespace is only used with controller 'existing'"):
        parse_platform({"routing": {"proxy_namespace": "x"}})
