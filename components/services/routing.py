"""Gateway API routing to every UI: Envoy Gateway, one GatewayClass and one Gateway.

The Envoy proxy Service is a NodePort on the fixed port :data:`HTTP_NODE_PORT`; a kind cluster
maps that port to 127.0.0.1:<http_port> on the host (see :mod:`mlplane.targets.local.cluster`), so
``http://<ui>.<domain>`` reaches the Gateway without a LoadBalancer implementation. With
``routing.tls.certificate_secret`` (required outside kind unless ``plain_http`` opts out) the
Gateway terminates HTTPS on :data:`HTTPS_PORT` (NodePort :data:`HTTPS_NODE_PORT`) with the
certificates you bring, every route attaches to the HTTPS listeners only, and plain HTTP gets a
301 to HTTPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s

from mlplane.core import kube
from mlplane.config import Resources, RoutingConfig, TlsConfig

TYPE = "mlplane:routing:Routing"
#: NodePort of the Gateway's HTTP listener; kind maps it to the host (extraPortMappings).
HTTP_NODE_PORT = 30080
#: Port of the HTTP listener on the Gateway (Envoy listens on 10080 inside the pod).
HTTP_PORT = 80
#: Name of the Gateway's HTTP listener; without TLS, HTTPRoutes attach to it with ``sectionName``.
LISTENER = "http"
#: The HTTPS listener for ``*.<domain>`` (routing.tls.certificate_secret); more are
#: ``https-<n>``, one per routing.tls.certificates entry.
HTTPS_LISTENER = "https"
HTTPS_PORT = 443
#: NodePort of the HTTPS listener (clusters other than kind).
HTTPS_NODE_PORT = 30443
#: HTTPRoute in the gateway namespace redirecting every plain HTTP request to HTTPS.
REDIRECT_ROUTE = "https-redirect"
#: UID of the distroless Envoy Gateway and Envoy images (nonroot).
ENVOY_UID = 65532
#: Helm release name: the chart names its objects after it.
RELEASE = "envoy-gateway"
#: Controller name Envoy Gateway reconciles GatewayClasses for.
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
#: Name of the EnvoyProxy object that shapes the Gateway's Envoy Deployment and Service.
PROXY_CONFIG = "proxy"
#: Envoy serves Prometheus stats on this named container port at :data:`METRICS_PATH`.
METRICS_PORT = "metrics"
METRICS_PATH = "/stats/prometheus"
#: Arguments of the certgen Job: the topology injector webhook is not installed.
CERTGEN_COMMAND = ["envoy-gateway", "certgen", "--disable-topology-injector"]

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY_API = "gateway.envoyproxy.io/v1alpha1"


@dataclass(frozen=True)
class Exposure:
    """How a target exposes the Gateway's Envoy Service, instead of the NodePort a kind cluster maps
    (the AWS target: a network load balancer, mlplane.targets.aws.foundation)."""

    #: The EnvoyProxy's ``provider.kubernetes.envoyService`` spec.
    service: Mapping[str, Any]
    #: TLS ends in front of the Gateway (the load balancer holds the certificate): UI URLs are https.
    edge_tls: bool = False


@dataclass(frozen=True)
class RoutingArgs:
    config: RoutingConfig
    platform: kube.Platform
    #: Host port the Gateway is reached on (cluster.kind.http_port): used in UI URLs.
    http_port: int
    #: None: the NodePort Service (:data:`HTTP_NODE_PORT`) kind maps to the host.
    exposure: Exposure | None = None


def _split_image(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def _envoy_container_security() -> dict[str, Any]:
    return {**kube.container_security(), "runAsUser": ENVOY_UID, "runAsGroup": ENVOY_UID}


#: Pull policy of the controller (and the chart's certgen): the chart's ``eg.image.pullPolicy``
#: helper is ``default .Values.deployment.envoyGateway.imagePullPolicy
#: .Values.global.images.envoyGateway.pullPolicy``, so the global value wins whenever it is set,
#: and the released chart sets it (values.tmpl.yaml ``pullPolicy: ${GatewayImagePullPolicy}``,
#: filled by ``make helm-generate``). envoyproxy/gateway ``charts/gateway-helm/templates/_helpers.tpl``.
CONTROLLER_PULL_POLICY = "Always"
#: Writable scratch space of the Envoy proxy pod's containers (see :func:`envoy_proxy_spec`).
PROXY_TMP_SIZE = "64Mi"


def chart_values(config: RoutingConfig, platform: kube.Platform) -> dict[str, Any]:
    """Values for the Envoy Gateway chart: pinned image, resources, restricted security contexts,
    and (a target with node groups) the controller and certgen Job on the system group (the
    chart's ``deployment.pod.nodeSelector`` and ``certgen.job.nodeSelector``, gateway-helm
    v1.9.1 ``values.tmpl.yaml``)."""
    repository, tag = _split_image(platform.image("envoy-gateway"))
    security = _envoy_container_security()
    values: dict[str, Any] = {
        # The value the chart reads for the controller's pull policy (it overrides the one below).
        "global": {"images": {"envoyGateway": {"pullPolicy": CONTROLLER_PULL_POLICY}}},
        "deployment": {
            "replicas": 1,
            "envoyGateway": {
                "image": {"repository": repository, "tag": tag},
                "imagePullPolicy": CONTROLLER_PULL_POLICY,
                "resources": kube.resources(config.controller_resources),
                "securityContext": security,
            },
        },
        "podDisruptionBudget": {"minAvailable": 0},
        # The topology injector is a cluster-wide mutating webhook for zone-aware routing:
        # nothing to gain on one node, and one more admission hook in every pod creation.
        "topologyInjector": {"enabled": False},
        "certgen": {
            "job": {
                "resources": kube.resources(config.controller_resources),
                "securityContext": security,
            }
        },
    }
    selector = platform.place("system").get("nodeSelector")
    if selector:
        values["deployment"]["pod"] = {"nodeSelector": selector}
        values["certgen"]["job"]["nodeSelector"] = selector
    return values


def envoy_proxy_spec(
    config: RoutingConfig, platform_name: str, exposure: Exposure | None = None, placement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """EnvoyProxy spec: a NodePort Service on :data:`HTTP_NODE_PORT`, resources, restricted pods.

    Read-only root filesystems with a writable ``/tmp`` in both containers of the proxy pod.
    Envoy Gateway leaves ``readOnlyRootFilesystem`` unset there on purpose ("Envoy container
    needs to write to the log file/UDS socket"; "ShutdownManager creates a file to indicate the
    connection drain process is completed": envoyproxy/gateway
    ``internal/infrastructure/kubernetes/proxy/resource.go``, issue 8911), and it applies this
    container ``securityContext`` to the shutdown-manager too. What they write with this
    configuration: the shutdown-manager creates ``/tmp/shutdown-ready`` when a drain completes
    (``internal/cmd/envoy/shutdown_manager.go``, ``ShutdownReadyFile``), so its ``/tmp`` must be
    writable or every pod termination waits out the drain timeout. Envoy writes its access logs
    to ``/dev/stdout`` and the admin access log to ``/dev/null``
    (``internal/gatewayapi/listener.go``, ``internal/xds/bootstrap/bootstrap.go``), the admin
    interface is TCP on 127.0.0.1, and Unix sockets only appear for backends or SDS that name
    one (mlplane configures neither); its ``/tmp`` is still writable, for a file access-log sink
    or a socket a user adds. See docs/components/routing.md.
    """
    return {
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                "envoyDeployment": {
                    "replicas": 1,
                    "container": {
                        "resources": kube.resources(config.proxy_resources),
                        "securityContext": _envoy_container_security(),
                        "volumeMounts": [{"name": "envoy-tmp", "mountPath": "/tmp"}],
                    },
                    "pod": {
                        "labels": {kube.PART_OF: platform_name},
                        "securityContext": kube.pod_security(ENVOY_UID),
                        "volumes": [
                            {"name": "envoy-tmp", "emptyDir": {"sizeLimit": PROXY_TMP_SIZE}},
                            {"name": "shutdown-manager-tmp", "emptyDir": {"sizeLimit": PROXY_TMP_SIZE}},
                        ],
                        # The proxies on the system group (EnvoyProxy KubernetesPodSpec nodeSelector).
                        **(placement or {}),
                    },
                    "patch": {
                        "type": "StrategicMerge",
                        "value": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {
                                                "name": "shutdown-manager",
                                                "resources": kube.resources(
                                                    config.shutdown_manager_resources
                                                ),
                                                "volumeMounts": [
                                                    {"name": "shutdown-manager-tmp", "mountPath": "/tmp"}
                                                ],
                                            }
                                        ]
                                    }
                                }
                            }
                        },
                    },
                },
                "envoyService": dict(exposure.service) if exposure is not None else {
                    "type": "NodePort",
                    "externalTrafficPolicy": "Cluster",
                    "patch": {
                        "type": "StrategicMerge",
                        "value": {"spec": {"ports": _node_ports(config.tls)}},
                    },
                },
            },
        }
    }


def _node_ports(tls: TlsConfig) -> list[dict[str, int]]:
    ports = [{"port": HTTP_PORT, "nodePort": HTTP_NODE_PORT}]
    if tls.certificate_secret is not None:
        ports.append({"port": HTTPS_PORT, "nodePort": HTTPS_NODE_PORT})
    return ports


def _https_listeners(tls: TlsConfig, domain: str) -> list[tuple[str, str, str]]:
    """(listener name, hostname, certificate Secret) of every HTTPS listener."""
    if tls.certificate_secret is None:
        return []
    extra = [(f"{HTTPS_LISTENER}-{index}", c.hostname, c.secret) for index, c in enumerate(tls.certificates, 1)]
    return [(HTTPS_LISTENER, f"*.{domain}", tls.certificate_secret), *extra]


def route_listeners(config: RoutingConfig) -> tuple[str, ...]:
    """The listeners every HTTPRoute attaches to: the HTTPS ones when TLS is on, else 'http'."""
    names = tuple(name for name, _, _ in _https_listeners(config.tls, config.domain))
    return names or (LISTENER,)


def gateway_spec(class_name: str, domain: str, tls: TlsConfig | None = None) -> dict[str, Any]:
    """Listeners for ``*.<domain>``, open to routes from namespaces labelled for access.

    Without TLS: one HTTP listener. With TLS: an HTTPS listener per certificate (terminated at the
    Gateway with the Secret in the Gateway's namespace) and an HTTP listener that only the
    redirect route of the Gateway's own namespace attaches to (every plain request gets a 301 to
    HTTPS; Gateway API ``RequestRedirect``).
    """
    tls = tls or TlsConfig()
    selected = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {kube.GATEWAY_ACCESS: "true"}}},
        "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
    }
    https = _https_listeners(tls, domain)
    http_routes = selected
    if https:
        http_routes = {**selected, "namespaces": {"from": "Same"}}
    listeners = [
        {"name": LISTENER, "protocol": "HTTP", "port": HTTP_PORT, "hostname": f"*.{domain}", "allowedRoutes": http_routes}
    ]
    listeners += [
        {
            "name": name,
            "protocol": "HTTPS",
            "port": HTTPS_PORT,
            "hostname": hostname,
            "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": secret}]},
            "allowedRoutes": selected,
        }
        for name, hostname, secret in https
    ]
    return {"gatewayClassName": class_name, "listeners": listeners}


def redirect_route_spec(gateway_name: str, namespace: str) -> dict[str, Any]:
    """Every plain HTTP request, on any host, answered with a 301 to the same URL over HTTPS."""
    return {
        "parentRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name,
             "namespace": namespace, "sectionName": LISTENER}
        ],
        "rules": [
            {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
        ],
    }


def proxy_selector(gateway_name: str, namespace: str) -> dict[str, str]:
    """Labels Envoy Gateway puts on the Envoy pods it runs for a Gateway."""
    return {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/managed-by": "envoy-gateway",
        "gateway.envoyproxy.io/owning-gateway-name": gateway_name,
        "gateway.envoyproxy.io/owning-gateway-namespace": namespace,
    }


def chart_workloads(config: RoutingConfig) -> list[tuple[str, int, Resources]]:
    """Long-running containers the chart and its controller run, which a render cannot show.

    The Envoy Deployment is created at run time by the controller, so it is listed here too.
    The one-shot certgen Job is not: it finishes before the proxies start.
    """
    proxies = [
        ("envoy (proxy)", 1, config.proxy_resources),
        ("envoy (shutdown-manager)", 1, config.shutdown_manager_resources),
    ]
    if config.controller == "existing":
        return proxies
    return [("envoy-gateway", 1, config.controller_resources), *proxies]


class Routing(pulumi.ComponentResource):
    """Envoy Gateway and the platform Gateway every UI's HTTPRoute attaches to.

    Outputs: ``gateway`` (a :class:`kube.GatewayRef`), ``ready`` (resources HTTPRoutes must
    depend on), ``namespace``, ``scrape_targets`` (the Envoy proxies) and ``uis`` (none).
    """

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: RoutingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        platform, cfg = args.platform, args.config
        ns_name = f"{platform.name}-gateway"
        ns = kube.namespace(platform, f"{name}-namespace", ns_name, parent=self, component="gateway")
        self.namespace = ns.metadata.name
        self._egress(name, platform)

        # What the Gateway API objects wait for: the chart (it installs the CRDs), or nothing
        # beyond the namespace when an existing Envoy Gateway provides them.
        controller: pulumi.Resource = ns
        if cfg.controller == "bundled":
            certgen = self._certgen(name, args, ns)
            chart_ref = platform.chart("envoy-gateway")
            controller = k8s.helm.v4.Chart(
                f"{name}-chart",
                chart=chart_ref.chart,
                version=chart_ref.version,
                name=RELEASE,
                namespace=self.namespace,
                values=chart_values(cfg, platform),
                # Chart v4 drops Helm hooks (certgen is one), so mlplane runs certgen itself.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, *certgen]),
            )
        gateway_class, gateway = self._gateway(name, args, controller)

        self.gateway = kube.GatewayRef(
            name=platform.name,
            namespace=ns_name,
            domain=cfg.domain,
            http_port=args.http_port,
            proxy_namespace=cfg.proxy_namespace,
            listeners=route_listeners(cfg),
            edge_tls=args.exposure is not None and args.exposure.edge_tls,
        )
        self.ready: list[pulumi.Resource] = [controller, gateway_class, gateway]
        self.scrape_targets = [
            kube.ScrapeTarget(
                job="envoy",
                namespace=self.gateway.proxies_namespace,
                selector=proxy_selector(platform.name, ns_name),
                port=METRICS_PORT,
                path=METRICS_PATH,
            )
        ]
        self.uis: list[kube.Ui] = []
        self.register_outputs(
            {
                "namespace": self.namespace,
                "gatewayName": platform.name,
                "domain": cfg.domain,
            }
        )

    def _gateway(
        self, name: str, args: RoutingArgs, chart: pulumi.Resource
    ) -> tuple[pulumi.Resource, pulumi.Resource]:
        """The EnvoyProxy, the GatewayClass using it and the Gateway; all wait for the CRDs."""
        platform, cfg = args.platform, args.config
        ns_name = f"{platform.name}-gateway"
        labels = platform.labels("gateway", "envoy-gateway")
        proxy = k8s.apiextensions.CustomResource(
            f"{name}-envoy-proxy",
            api_version=ENVOY_GATEWAY_API,
            kind="EnvoyProxy",
            metadata={"name": PROXY_CONFIG, "namespace": ns_name, "labels": labels},
            spec=envoy_proxy_spec(cfg, platform.name, args.exposure, platform.place("system")),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[chart]),
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version=GATEWAY_API,
            kind="GatewayClass",
            metadata={"name": platform.name, "labels": labels},
            spec={
                "controllerName": CONTROLLER_NAME,
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": PROXY_CONFIG,
                    "namespace": ns_name,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[chart, proxy]),
        )
        gateway = k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version=GATEWAY_API,
            kind="Gateway",
            metadata={"name": platform.name, "namespace": ns_name, "labels": labels},
            spec=gateway_spec(platform.name, cfg.domain, cfg.tls),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[chart, gateway_class]),
        )
        if cfg.tls.certificate_secret is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-https-redirect",
                api_version=GATEWAY_API,
                kind="HTTPRoute",
                metadata={"name": REDIRECT_ROUTE, "namespace": ns_name, "labels": labels},
                spec=redirect_route_spec(platform.name, ns_name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
            )
        return gateway_class, gateway

    def _egress(self, name: str, platform: kube.Platform) -> None:
        """Default-deny egress (ingress stays open: the Gateway is the platform's front door, its
        clients come from outside the cluster, and the chart's controller serves xDS and webhooks
        on its own ports). Allowed: the API server (controller, certgen), pods of this namespace
        (proxies to the controller's xDS), and pods in namespaces open to the Gateway (backends)."""
        labels = platform.labels("gateway")
        kube.isolate_namespace(name, namespace=self.namespace, labels=labels, parent=self, ingress=False)
        backends = {"namespaceSelector": {"matchLabels": {kube.GATEWAY_ACCESS: "true"}}}
        kube.egress_only_to(
            f"{name}-egress",
            name="gateway-egress",
            namespace=self.namespace,
            labels=labels,
            pods=None,
            rules=[kube.api_server_egress(), {"to": [{"podSelector": {}}]}, {"to": [backends]}],
            parent=self,
        )

    def _certgen(
        self, name: str, args: RoutingArgs, ns: k8s.core.v1.Namespace
    ) -> list[pulumi.Resource]:
        """The chart's certgen hook as plain objects: it writes the control-plane TLS Secrets.

        The controller mounts the ``envoy-gateway`` Secret and the proxies the ``envoy`` Secret;
        certgen creates them once and leaves existing ones alone, so re-running it is harmless.
        """
        platform = args.platform
        namespace = ns.metadata.name
        labels = platform.labels("gateway", "certgen")
        account = k8s.core.v1.ServiceAccount(
            f"{name}-certgen-account",
            metadata={"name": "certgen", "namespace": namespace, "labels": labels},
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        role = k8s.rbac.v1.Role(
            f"{name}-certgen-role",
            metadata={"name": "certgen", "namespace": namespace, "labels": labels},
            rules=[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-certgen-binding",
            metadata={"name": "certgen", "namespace": namespace, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "certgen"},
            subjects=[{"kind": "ServiceAccount", "name": "certgen", "namespace": namespace}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, role]),
        )
        certgen = {
            "name": "certgen",
            "image": platform.image("envoy-gateway"),
            "imagePullPolicy": "Always",
            "command": CERTGEN_COMMAND,
            "env": [
                {
                    "name": "ENVOY_GATEWAY_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "KUBERNETES_CLUSTER_DOMAIN", "value": "cluster.local"},
            ],
            "resources": kube.resources(args.config.controller_resources),
            "securityContext": _envoy_container_security(),
        }
        workload = kube.Workload(
            containers=[certgen], uid=ENVOY_UID, service_account="certgen", automount_token=True,
            placement=platform.place("system"),
        )
        template = workload.template(labels)
        template["spec"]["restartPolicy"] = "Never"
        job = k8s.batch.v1.Job(
            f"{name}-certgen",
            metadata={
                "name": "envoy-gateway-certgen",
                "namespace": namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_38", "certgen creates the control-plane TLS Secrets through the API"),
                ),
            },
            # Like every Job of the platform: a certgen that cannot finish (image pull, API
            # server unreachable) fails within 15 minutes instead of holding `pulumi up`.
            spec={"backoffLimit": 3, "activeDeadlineSeconds": 900, "template": template},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[binding]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-certgen-ingress",
            metadata={"name": "certgen-deny-ingress", "namespace": namespace, "labels": labels},
            spec={"podSelector": {"matchLabels": dict(labels)}, "policyTypes": ["Ingress"], "ingress": []},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return [job]
