"""Progressive delivery of served models with Flagger (``serving.models[].canary.mode: progressive``).

Flagger (github.com/fluxcd/flagger v1.36.1, the highest version ``go list -m -versions`` lists;
its ``gatewayapi:v1`` router in pkg/router/gateway_api.go) takes over the model's Deployment as
its target: on a change of the pod template (a new model version) it runs the new version as
``<model>-canary`` next to ``<model>-primary``, shifts the HTTPRoute's weights step by step
(``analysis.stepWeights``), checks the route's error ratio and p99 latency in Prometheus every
``interval`` (MetricTemplates over the Envoy Gateway per-route stats Monitoring also records) and
rolls back after ``failed_checks`` failed checks. Flagger creates the Services ``<model>``,
``<model>-primary``, ``<model>-canary`` and the HTTPRoute ``<model>`` itself, so in this mode
Serving creates neither. Types: flagger ``pkg/apis/flagger/v1beta1`` (canary.go,
metric_template.go); validated against ``artifacts/flagger/crd.yaml`` of the same module in
tests/unit/services/test_progressive.py.

The controller (:class:`Flagger`, installed by Serving when ``serving.progressive.enabled`` and
models are served) runs in ``<platform>-flagger`` and watches only the serving namespace
(``-namespace``), so its RBAC is a Role there. Its manifests follow the module's
``kustomize/gatewayapi`` overlay of ``kustomize/base/flagger`` (deployment.yaml, rbac.yaml,
account.yaml; the image tag 1.36.1 is the ``images:`` newTag of kustomization.yaml and
``image.tag`` of charts/flagger/values.yaml), with these changes: RBAC reduced to the kinds the
Kubernetes deployment controller and the Gateway API router touch, config tracking off
(``-enable-config-tracking=false``: Flagger then never reads Secrets or ConfigMaps), the
Pod Security 'restricted' context, and NetworkPolicies (API server and Prometheus only).
The CRDs are ``artifacts/flagger/crd.yaml`` of the module, shipped as ``crds/flagger.yaml``.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import yaml

from mlplane.core import kube
from mlplane.config import ModelConfig, ProgressiveDeliveryConfig

API_VERSION = "flagger.app/v1beta1"
PROVIDER = "gatewayapi:v1"
FLAGGER_VERSION = "v1.36.1"
#: The platform Prometheus' job scraping the Gateway's Envoy proxies (services/routing.py,
#: ``Routing.scrape_targets``): every query of Envoy's stats is pinned to it, so a series of
#: the same name from any other job (a team's pod) never counts.
GATEWAY_JOB = "envoy"
#: The Envoy Gateway stats of the route Flagger creates (one rule; primary and canary share it).
ROUTE_CLUSTER = f'job="{GATEWAY_JOB}",envoy_cluster_name="httproute/{{{{ namespace }}}}/{{{{ target }}}}/rule/0"'


def error_rate_query() -> str:
    """Share of 5xx answers on the model's route over the check interval (0 without 5xx)."""
    total = f"sum(rate(envoy_cluster_upstream_rq_total{{{ROUTE_CLUSTER}}}[{{{{ interval }}}}]))"
    errors = (
        f'(sum(rate(envoy_cluster_upstream_rq_xx{{{ROUTE_CLUSTER},envoy_response_code_class="5"}}'
        f"[{{{{ interval }}}}])) or vector(0))"
    )
    return f"{errors} / {total}"


def latency_query() -> str:
    """p99 latency in seconds (Envoy's histogram counts milliseconds)."""
    buckets = f"sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{{{ROUTE_CLUSTER}}}[{{{{ interval }}}}]))"
    return f"histogram_quantile(0.99, {buckets}) / 1000"


def metric_templates(model: str, prometheus_url: str) -> dict[str, dict[str, Any]]:
    """MetricTemplate specs, name -> spec."""
    provider = {"type": "prometheus", "address": prometheus_url}
    return {
        f"{model}-error-rate": {"provider": provider, "query": error_rate_query()},
        f"{model}-latency": {"provider": provider, "query": latency_query()},
    }


def canary_spec(
    model: ModelConfig, gateway: kube.GatewayRef, port: int, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Canary spec of one model in mode 'progressive'.

    Flagger's Gateway API router creates the HTTPRoute ``<model>`` from ``service``: the model's
    host on each listener of the platform Gateway (``sectionName``, as Serving's own routes),
    one rule to ``<model>-primary`` and ``<model>-canary``; ``service.apex`` metadata goes on
    that route and on the Service ``<model>`` (pkg/router/gateway_api.go, kubernetes_default.go).
    """
    canary = model.canary
    assert canary is not None and canary.mode == "progressive"
    limits = canary.thresholds
    service: dict[str, Any] = {
        "port": port,
        "targetPort": "http",
        "hosts": [gateway.host(model.name)],
        "gatewayRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name,
             "namespace": gateway.namespace, "sectionName": listener}
            for listener in gateway.listeners
        ],
    }
    if labels:
        service["apex"] = {"labels": dict(labels)}
    return {
        "provider": PROVIDER,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name},
        "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": model.name},
        # The new version downloads and loads its model before it is ready.
        "progressDeadlineSeconds": model.startup_timeout_seconds + 120,
        # Deleting the Canary (the model leaves mode 'progressive', or is removed) hands the target
        # back as it was: Flagger's finalizer scales it to the primary's replicas
        # (pkg/controller/finalizer.go, DeploymentController.Finalize) and its HPA takes over,
        # instead of leaving it at the 0 replicas it runs with between rollouts (no HPA scales from 0).
        "revertOnDeletion": True,
        "service": service,
        "analysis": {
            "interval": canary.interval,
            "threshold": limits.failed_checks,
            "stepWeights": list(canary.steps),
            "metrics": [
                {
                    "name": "error-rate",
                    "templateRef": {"name": f"{model.name}-error-rate"},
                    "thresholdRange": {"max": limits.error_rate},
                    "interval": canary.interval,
                },
                {
                    "name": "latency",
                    "templateRef": {"name": f"{model.name}-latency"},
                    "thresholdRange": {"max": limits.p99_latency_seconds},
                    "interval": canary.interval,
                },
            ],
        },
    }


# --------------------------------------------------------------------------------------------
# The objects of one progressive model, and the controller
# --------------------------------------------------------------------------------------------

FLAGGER_TYPE = "mlplane:serving:Flagger"
CONTROLLER = "flagger"
#: kustomize/base/flagger/deployment.yaml runs the image as UID 10001 (its Dockerfile: USER nobody).
FLAGGER_UID = 10001
#: Flagger's ``-port`` default: /healthz and /metrics (flagger_canary_status, flagger_canary_weight).
FLAGGER_PORT = 8080
CRDS_RESOURCE = "crds/flagger.yaml"  # relative to the mlplane package
CRDS_HEADER_LINES = 3


def crd_documents() -> list[dict[str, Any]]:
    """Flagger's CRDs (Canary, MetricTemplate, AlertProvider) as shipped in ``crds/flagger.yaml``."""
    text = importlib.resources.files("mlplane").joinpath(CRDS_RESOURCE).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


def controller_args(watch_namespace: str, prometheus_url: str) -> list[str]:
    """The flags of the controller (cmd/flagger/main.go of the module)."""
    return [
        "-log-level=info",
        f"-mesh-provider={PROVIDER}",
        f"-metrics-server={prometheus_url}",
        # One namespace: the informers and every object Flagger touches stay there.
        f"-namespace={watch_namespace}",
        # Primary Deployments keep the platform's labels (the pod template's are copied anyway).
        "-include-label-prefix=app.kubernetes.io,mlplane.dev",
        # No copies of Secrets/ConfigMaps as '<name>-primary': Flagger needs no access to them.
        "-enable-config-tracking=false",
    ]


#: Verbs upstream's ClusterRole grants on every kind (kustomize/base/flagger/rbac.yaml).
_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
#: Upstream's rules for the kinds the Kubernetes deployment controller and the Gateway API router
#: use; ingresses, meshes, daemonsets, leases (no leader election with one replica), configmaps
#: and secrets (config tracking off) are left out.
ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
    {"apiGroups": [""], "resources": ["services", "services/finalizers"], "verbs": _ALL},
    {"apiGroups": ["apps"], "resources": ["deployments", "deployments/finalizers"], "verbs": _ALL},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/finalizers"], "verbs": _ALL},
    {
        "apiGroups": ["flagger.app"],
        "resources": ["canaries", "canaries/status", "canaries/finalizers", "metrictemplates",
                      "metrictemplates/status", "alertproviders", "alertproviders/status"],
        "verbs": _ALL,
    },
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes", "httproutes/finalizers"], "verbs": _ALL},
]


@dataclass(frozen=True)
class FlaggerArgs:
    config: ProgressiveDeliveryConfig
    platform: kube.Platform
    #: The namespace whose Canaries Flagger runs (the serving namespace; it exists). None: the
    #: platform serves no model, only teams' controllers run.
    watch_namespace: str | None
    #: In-cluster URL of the platform Prometheus (the MetricTemplates name it too).
    prometheus_url: str
    #: The Prometheus pods (namespace, selector) the controller queries.
    prometheus_pods: tuple[str, Mapping[str, str]]
    #: Admitted teams (name, serving namespace): each gets its own controller watching its
    #: serving namespace (Flagger watches one namespace, or all with cluster-wide RBAC).
    teams: Sequence[tuple[str, str]] = ()


#: Role (and RoleBinding) of a team's Flagger controller in the team's serving namespace.
TEAM_ROLE = "platform-flagger"


#: Pod label of every team's controller: one scrape job (``flagger-teams``) finds them all.
TEAM_CONTROLLER_LABEL = "mlplane.dev/flagger-team"
TEAMS_JOB = "flagger-teams"


def team_controller(team: str) -> str:
    """Name of a team's controller (Deployment, ServiceAccount) in ``<platform>-flagger``."""
    return f"{CONTROLLER}-team-{team}"


def team_selector(platform: kube.Platform) -> dict[str, str]:
    """The pods of every team's controller (the ``flagger-teams`` scrape job)."""
    return {kube.PART_OF: platform.name, kube.COMPONENT: "serving", TEAM_CONTROLLER_LABEL: "true"}


class Flagger(pulumi.ComponentResource):
    """The Flagger controller in ``<platform>-flagger``: CRDs, account, Role in the watched
    namespace, Deployment, NetworkPolicies. Children are named ``<name>-<role>``.

    Outputs: ``crds`` (what Canaries and MetricTemplates wait for), ``namespace``,
    ``scrape_target`` (its /metrics, for the platform Prometheus).
    """

    def __init__(self, name: str, args: FlaggerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(FLAGGER_TYPE, name, None, opts)
        platform, cfg = args.platform, args.config
        self.namespace = f"{platform.name}-{CONTROLLER}"
        labels = platform.labels("serving", CONTROLLER)
        selector = platform.selector("serving", CONTROLLER)
        child = pulumi.ResourceOptions(parent=self)
        ns = kube.namespace(platform, f"{name}-namespace", self.namespace, parent=self, component="serving")
        self.crds = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                f"{name}-crd-{doc['spec']['names']['plural']}",
                metadata={**doc["metadata"], "labels": {**doc["metadata"].get("labels", {}), **labels}},
                spec=doc["spec"],
                opts=child,
            )
            for doc in crd_documents()
        ]
        kube.isolate_namespace(name, namespace=ns.metadata.name, labels=labels, parent=self)
        #: Scrape targets of every controller (the platform's, then one per team).
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.scrape_target: kube.ScrapeTarget | None = None
        if args.watch_namespace is not None:
            self.scrape_target = self._controller(name, args, ns, CONTROLLER, args.watch_namespace, "role", "deployment")
            self.scrape_targets.append(self.scrape_target)
        for team, serving_namespace in sorted(args.teams):
            self._controller(
                f"{name}-team-{team}", args, ns, team_controller(team), serving_namespace, "role", "deployment",
                role_name=TEAM_ROLE, extra_labels={TEAM_CONTROLLER_LABEL: "true", kube.TEAM_LABEL: team},
            )
        if args.teams:
            self.scrape_targets.append(kube.ScrapeTarget(
                job=TEAMS_JOB, namespace=self.namespace, selector=team_selector(platform), port="http"))
        self.register_outputs({})

    def _controller(
        self,
        name: str,
        args: FlaggerArgs,
        ns: k8s.core.v1.Namespace,
        controller: str,
        watch_namespace: str,
        role_suffix: str,
        deployment_suffix: str,
        *,
        role_name: str = CONTROLLER,
        extra_labels: Mapping[str, str] | None = None,
    ) -> kube.ScrapeTarget:
        """One controller watching ``watch_namespace``: account, Role there, NetworkPolicies,
        Deployment; children ``<name>-service-account``, ``-role``, ``-role-binding``,
        ``-egress``, ``-network-policy``, ``-deployment``."""
        platform, cfg = args.platform, args.config
        labels = {**platform.labels("serving", controller), **(extra_labels or {})}
        selector = platform.selector("serving", controller)
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={"name": controller, "namespace": ns.metadata.name, "labels": labels},
            automount_service_account_token=False,
            opts=child,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-{role_suffix}",
            metadata={"name": role_name, "namespace": watch_namespace, "labels": labels},
            rules=ROLE_RULES,
            opts=child,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-{role_suffix}-binding",
            metadata={"name": role_name, "namespace": watch_namespace, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": self.namespace}],
            opts=child,
        )
        prom_namespace, prom_selector = args.prometheus_pods
        kube.egress_only_to(
            f"{name}-egress",
            name=f"{controller}-egress",
            namespace=ns.metadata.name,
            labels=labels,
            pods=selector,
            rules=[
                kube.api_server_egress(),
                {"to": [kube.pods_peer(prom_namespace, prom_selector)], "ports": kube.tcp(prometheus_port(args.prometheus_url))},
            ],
            parent=self,
        )
        kube.ingress_only_on(
            f"{name}-network-policy",
            name=controller,
            namespace=ns.metadata.name,
            labels=labels,
            pods=selector,
            port="http",
            parent=self,
            sources=[kube.namespace_peer(prom_namespace)],
        )
        container = kube.container(
            CONTROLLER,
            platform.image("flagger"),
            cfg.resources,
            # No command: the image's ENTRYPOINT ["./flagger"] (the module's Dockerfile).
            args=controller_args(watch_namespace, args.prometheus_url),
            ports=[("http", FLAGGER_PORT)],
            liveness=kube.http_probe("/healthz", "http", period=10),
            readiness=kube.http_probe("/healthz", "http", period=10),
        )
        workload = kube.Workload(
            containers=[container], uid=FLAGGER_UID, service_account=account.metadata.name, automount_token=True,
            placement=platform.place("system"),
        )
        k8s.apps.v1.Deployment(
            f"{name}-{deployment_suffix}",
            metadata={
                "name": controller,
                "namespace": ns.metadata.name,
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_38", "Flagger manages Deployments, Services and HTTPRoutes through the API: it needs its token"),
                ),
            },
            spec={
                "replicas": 1,
                # One controller at a time (no leader election): upstream's strategy.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": workload.template(labels),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[binding, *self.crds]),
        )
        return kube.ScrapeTarget(job=controller, namespace=self.namespace, selector=selector, port="http")


@dataclass(frozen=True)
class TeamFlagger:
    """A team's controller, run by the platform stack (``Flagger`` with ``teams``): the team
    stack creates only the Canaries and MetricTemplates, after the platform installed the CRDs."""

    crds: Sequence[pulumi.Resource] = ()


def prometheus_port(url: str) -> int:
    """The port of an ``http://host:port`` URL (80 without one)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return int(host.rsplit(":", 1)[1]) if ":" in host else 80


def model_objects(
    *,
    resource_prefix: str,
    model: ModelConfig,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    gateway: kube.GatewayRef,
    port: int,
    prometheus_url: str,
    flagger: Flagger | TeamFlagger,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> k8s.apiextensions.CustomResource:
    """The MetricTemplates and the Canary of one progressive model; returns the Canary."""
    templates = [
        k8s.apiextensions.CustomResource(
            f"{resource_prefix}-{template_name.removeprefix(model.name + '-')}-metric-template",
            api_version=API_VERSION,
            kind="MetricTemplate",
            metadata={"name": template_name, "namespace": namespace, "labels": dict(labels)},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=flagger.crds),
        )
        for template_name, spec in metric_templates(model.name, prometheus_url).items()
    ]
    # The platform's controller, its Role and its NetworkPolicies outlive the Canary: a deletion
    # (destroy, or the model leaving 'progressive') waits for Flagger's finalizer (revertOnDeletion),
    # which only a running controller removes. A team's controller is the platform stack's: the
    # team stack is always destroyed first (mlplane team destroy).
    controller = [flagger] if isinstance(flagger, Flagger) else []
    return k8s.apiextensions.CustomResource(
        f"{resource_prefix}-canary",
        api_version=API_VERSION,
        kind="Canary",
        metadata={"name": model.name, "namespace": namespace, "labels": dict(labels)},
        spec=canary_spec(model, gateway, port, labels),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*flagger.crds, *controller, *templates, *depends_on]),
    )
