"""Model serving: MLflow registry models behind the platform Gateway, autoscaled on CPU.

Each model in the config runs ``mlflow models serve`` against the tracking server (the model is
downloaded from the registry at start), behind a Service, an HPA, a PodDisruptionBudget when it is
replicated, and an HTTPRoute ``<model>.<domain>``. A canary is a second Deployment and Service
that the same HTTPRoute rule sends a weighted share of the requests to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import ModelConfig, ModelRef, ServingConfig
from mlplane.core import kube
from mlplane.services import drift, progressive
from mlplane.services.tracking import MLFLOW_TELEMETRY_ENV, PORT as TRACKING_PORT
from mlplane.services.metrics_server import MetricsServer, MetricsServerArgs


TYPE = "mlplane:serving:Serving"

#: The MLflow image has no USER: any UID works once HOME and /tmp are writable volumes.
MLFLOW_UID = 10001
PORT = 8080
SERVICE_PORT = 80
#: Seconds a scoring request may take before the worker is restarted (``mlflow models serve -t``).
SCORING_TIMEOUT = 60
#: Pod labels naming the model a replica serves and whether it is the stable or canary track.
MODEL_LABEL = "mlplane.dev/model"
TRACK_LABEL = "mlplane.dev/track"
#: Pod template annotation carrying the registry URI the replica loads.
MODEL_URI_ANNOTATION = "mlplane.dev/model-uri"
CREDENTIALS_SECRET = "mlflow-credentials"
#: Secret in a serving namespace with the API keys its model routes accept (client id -> key),
#: the format of Envoy Gateway's ``apiKeyAuth.credentialRefs`` (api/v1alpha1/api_key_auth_types.go).
API_KEYS_SECRET = "model-api-keys"
#: Client id of the generated key, and the request header the key is read from.
API_KEY_CLIENT = "default"
API_KEY_HEADER = "x-api-key"
ENVOY_GATEWAY_API = "gateway.envoyproxy.io/v1alpha1"


@dataclass(frozen=True)
class ServedModel:
    """A model served behind the Gateway: what Monitoring needs to watch it.

    ``version`` is the stable track's label (``v3`` or the alias); ``canary_version`` the canary's,
    when there is one. Both tracks sit in one HTTPRoute rule, so Envoy reports them together as
    one upstream cluster (:attr:`envoy_cluster`).
    """

    name: str
    namespace: str
    route: str
    url: str
    registered_model: str
    version: str
    canary_version: str | None = None
    canary_weight: int = 0

    @property
    def envoy_cluster(self) -> str:
        """The ``envoy_cluster_name`` label of this route's stats in Envoy Gateway."""
        return f"httproute/{self.namespace}/{self.route}/rule/0"


@dataclass(frozen=True)
class ServingArgs:
    config: ServingConfig
    platform: kube.Platform
    gateway: kube.GatewayRef
    #: In-cluster URL of the MLflow tracking server (models are downloaded through it).
    tracking_uri: pulumi.Input[str]
    tracking_username: pulumi.Input[str]
    #: Secret: the password of ``tracking_username``.
    tracking_password: pulumi.Input[str]
    #: Further env of every model container (a team sets its MLflow workspace here).
    extra_env: Sequence[Mapping[str, Any]] = ()
    #: ``imagePullSecrets`` of every model pod (credentials for the platform registry).
    image_pull_secrets: Sequence[Mapping[str, str]] = ()
    #: Creates the registry's pull Secret in the serving namespace and returns the
    #: ``imagePullSecrets`` entries (Registry.image_pull_secrets), for the platform's own models.
    registry_pull_secrets: Callable[[str, pulumi.Input[str], pulumi.Resource], list[dict[str, Any]]] | None = None
    #: Builds the object store inference logs go to, only when a model sets ``logging``
    #: (drift.platform_store); None: logging is refused.
    inference_store: drift.StoreFactory | None = None
    #: In-cluster URL of the platform Prometheus and its pods (namespace, selector): Flagger's
    #: metric checks for canaries in mode 'progressive' (None: progressive delivery is refused).
    prometheus_url: str | None = None
    prometheus_pods: tuple[str, Mapping[str, str]] | None = None
    #: Admitted teams (name, serving namespace): with serving.progressive.enabled each gets its
    #: own Flagger controller watching its serving namespace (progressive.FlaggerArgs.teams).
    teams: Sequence[tuple[str, str]] = ()


def model_uri(registered_model: str, ref: ModelRef) -> str:
    """The MLflow registry URI of a version (``models:/NAME/3``) or alias (``models:/NAME@champion``)."""
    return f"models:/{registered_model}{ref.uri_suffix}"


class Serving(pulumi.ComponentResource):
    """Models from the MLflow registry served behind the Gateway, and metrics-server for the HPAs.

    Outputs: ``models`` (a :class:`ServedModel` per configured model, for Monitoring), ``urls``
    (model name -> URL through the Gateway), ``scrape_targets`` (empty: ``mlflow models serve``
    has no metrics endpoint; request metrics come from Envoy), ``uis`` (one per model).
    """

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self.models: list[ServedModel] = []
        self.urls: dict[str, pulumi.Output[str]] = {}
        self.metrics_server: MetricsServer | None = None
        #: The Flagger controller (serving.progressive), when installed.
        self.flagger: progressive.Flagger | None = None
        #: Namespaces whose pods query Prometheus (the monitoring NetworkPolicy admits them).
        self.prometheus_clients: list[str] = []
        #: The generated model API key (secret); None without models or with another auth mode.
        self.api_key: pulumi.Output[str] | None = None
        if args.config.metrics_server.enabled:
            self.metrics_server = MetricsServer(
                f"{name}-metrics-server",
                MetricsServerArgs(args.config.metrics_server, args.platform),
                pulumi.ResourceOptions(parent=self),
            )
        if args.config.models:
            self._serve(name, args)
        elif args.teams:
            # No platform model: the controllers of the teams' progressive canaries only.
            self._flagger(name, args, None, None)
        self.register_outputs({"urls": self.urls})

    def _serve(self, name: str, args: ServingArgs) -> None:
        platform = args.platform
        ns_name = f"{platform.name}-serving"
        ns = kube.namespace(
            platform, f"{name}-namespace", ns_name, parent=self, component="serving", gateway_access=True
        )
        secret = k8s.core.v1.Secret(
            f"{name}-mlflow-credentials",
            metadata={
                "name": CREDENTIALS_SECRET,
                "namespace": ns.metadata.name,
                "labels": platform.labels("serving", CREDENTIALS_SECRET),
            },
            type="Opaque",
            string_data={
                "username": args.tracking_username,
                "password": pulumi.Output.secret(args.tracking_password),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.registry_pull_secrets is not None:
            pulls = args.registry_pull_secrets(f"{name}-registry-pull", ns.metadata.name, self)
            args = dataclasses.replace(args, image_pull_secrets=(*args.image_pull_secrets, *pulls))
        # Default deny; model servers load their model from MLflow (it serves the artifacts).
        kube.isolate_namespace(name, namespace=ns.metadata.name, labels=platform.labels("serving"), parent=self)
        kube.egress_only_to(
            f"{name}-egress",
            name="model-servers-egress",
            namespace=ns.metadata.name,
            labels=platform.labels("serving", "model-servers"),
            pods={kube.PART_OF: platform.name, kube.COMPONENT: "serving"},
            rules=[
                {
                    "to": [kube.pods_peer(f"{platform.name}-tracking", platform.selector("tracking", "mlflow"))],
                    "ports": kube.tcp(TRACKING_PORT),
                }
            ],
            parent=self,
        )
        kube.ingress_only_on(
            f"{name}-network-policy",
            name="model-servers",
            namespace=ns.metadata.name,
            labels=platform.labels("serving", "model-servers"),
            pods={kube.PART_OF: platform.name, kube.COMPONENT: "serving"},
            port="http",
            parent=self,
        )
        if args.config.auth.mode == "api-key":
            self.api_key = api_key_secret(
                f"{name}-api-keys", ns.metadata.name, platform.labels("serving", API_KEYS_SECRET), self
            )
        inference = self._inference(name, args, ns_name, ns, secret)
        self._flagger(name, args, ns_name, ns)
        for model in args.config.models:
            served = ModelServer(self, name, model, args, ns_name, ns, secret, inference, self.flagger).build()
            self.models.append(served)
            self.urls[model.name] = pulumi.Output.from_input(served.url)
            self.uis.append(
                kube.Ui(
                    key=f"model-{model.name}",
                    title=f"Model {model.name} ({model.registered_model} {served.version})",
                    url=served.url,
                )
            )


    def _flagger(
        self, name: str, args: ServingArgs, ns_name: str | None, ns: k8s.core.v1.Namespace | None
    ) -> None:
        """The Flagger controllers (serving.progressive.enabled): one watching the serving
        namespace (``ns_name``, when the platform serves models), one per admitted team."""
        if not args.config.progressive.enabled:
            return
        if args.prometheus_url is None or args.prometheus_pods is None:
            raise ValueError("serving.progressive needs the platform Prometheus for its checks (none was given)")
        self.flagger = progressive.Flagger(
            f"{name}-flagger",
            progressive.FlaggerArgs(
                config=args.config.progressive, platform=args.platform, watch_namespace=ns_name,
                prometheus_url=args.prometheus_url, prometheus_pods=args.prometheus_pods, teams=tuple(args.teams),
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[ns] if ns is not None else []),
        )
        self.scrape_targets.extend(self.flagger.scrape_targets)
        self.prometheus_clients.append(self.flagger.namespace)

    def _inference(
        self, name: str, args: ServingArgs, ns_name: str, ns: k8s.core.v1.Namespace, secret: k8s.core.v1.Secret
    ) -> drift.Inference | None:
        """The inference-logging objects (docs/models.md), when a model logs requests."""
        if not any(m.logging for m in args.config.models):
            return None
        if args.inference_store is None:
            raise ValueError("serving.models[].logging needs an object store for the logs (none was given)")
        inference = drift.Inference(
            parent=self, prefix=name, platform=args.platform, namespace=ns.metadata.name, ns_name=ns_name,
            store=args.inference_store(self), tracking_uri=args.tracking_uri,
            credentials_secret=secret.metadata.name, labels=args.platform.labels("serving", "inference"),
        )
        self.scrape_targets.extend(inference.create(any(m.drift for m in args.config.models)))
        return inference


def security_policy_spec(config: ServingConfig, route: str) -> dict[str, Any] | None:
    """Envoy Gateway SecurityPolicy on one model's HTTPRoute (None with ``auth.mode: none``).

    'api-key': the key in the ``x-api-key`` header, checked against :data:`API_KEYS_SECRET` and
    removed before the request reaches the model (``sanitize``); 'jwt': a bearer token verified
    with the issuer's remote JWKS. Types: envoyproxy/gateway v1.9.1 ``api/v1alpha1``
    (securitypolicy_types.go, api_key_auth_types.go, jwt_types.go); validated against the CRD
    schema in tests/unit/services/test_gateway_security.py.
    """
    auth = config.auth
    target = {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}]}
    if auth.mode == "api-key":
        return {
            **target,
            "apiKeyAuth": {
                "credentialRefs": [{"group": "", "kind": "Secret", "name": API_KEYS_SECRET}],
                "extractFrom": [{"headers": [API_KEY_HEADER]}],
                "sanitize": True,
            },
        }
    if auth.mode == "jwt":
        assert auth.jwt is not None  # ModelAuthConfig validation
        provider: dict[str, Any] = {"name": "models", "issuer": auth.jwt.issuer, "remoteJWKS": {"uri": auth.jwt.jwks_uri}}
        if auth.jwt.audiences:
            provider["audiences"] = list(auth.jwt.audiences)
        return {**target, "jwt": {"providers": [provider]}}
    return None


def api_key_secret(
    resource_name: str, namespace: pulumi.Input[str], labels: Mapping[str, str], parent: pulumi.Resource
) -> pulumi.Output[str]:
    """A generated API key and the Secret the model routes of ``namespace`` check it against;
    returns the key (secret)."""
    import pulumi_random as random

    key = pulumi.Output.secret(
        random.RandomPassword(f"{resource_name}-key", length=40, special=False, opts=pulumi.ResourceOptions(parent=parent)).result
    )
    k8s.core.v1.Secret(
        resource_name,
        metadata={"name": API_KEYS_SECRET, "namespace": namespace, "labels": dict(labels)},
        type="Opaque",
        string_data={API_KEY_CLIENT: key},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return key


@dataclass
class ModelServer:
    """The objects of one served model: a stable track, an optional canary track and the route.

    Children are parented to ``parent`` (the Serving component, or a team's component) and named
    ``<prefix>-<model>-<role>``.
    """

    parent: pulumi.Resource
    prefix: str
    model: ModelConfig
    args: ServingArgs
    ns_name: str
    #: The namespace resource when this stack creates it (None: it exists, e.g. a team's, created
    #: by the platform stack).
    ns: k8s.core.v1.Namespace | None
    secret: k8s.core.v1.Secret
    #: Inference logging of the namespace (None: no model there logs requests).
    inference: drift.Inference | None = None
    #: The Flagger controller watching the namespace (None: mode 'progressive' is refused).
    flagger: progressive.Flagger | progressive.TeamFlagger | None = None

    @property
    def _namespace(self) -> pulumi.Input[str]:
        return self.ns.metadata.name if self.ns is not None else self.ns_name

    def build(self) -> ServedModel:
        model, gateway = self.model, self.args.gateway
        canary = model.canary
        if canary is not None and canary.mode == "progressive":
            return self._build_progressive()
        depends_on = [self._track(model.name, "stable", model, model.image, model.min_replicas)]
        backends = [(model.name, SERVICE_PORT, 100)]
        if canary is not None and canary.mode == "fixed":
            canary_name = f"{model.name}-canary"
            depends_on.append(self._track(canary_name, "canary", canary, canary.image or model.image, 1))
            backends = [
                (model.name, SERVICE_PORT, 100 - canary.weight),
                (canary_name, SERVICE_PORT, canary.weight),
            ]
        labels = {**self.args.platform.labels("serving", model.name), MODEL_LABEL: model.name}
        route = kube.http_route(
            f"{self.prefix}-{model.name}-route",
            name=model.name,
            namespace=self._namespace,
            labels=labels,
            gateway=gateway,
            host=gateway.host(model.name),
            backends=backends,
            parent=self.parent,
            depends_on=depends_on,
        )
        self._security_policy(labels, route)
        if self.inference is not None and model.drift is not None:
            self.inference.drift_job(model, self.args.platform.image("mlflow"), labels)
        return ServedModel(
            name=model.name,
            namespace=self.ns_name,
            route=model.name,
            url=gateway.url(model.name),
            registered_model=model.registered_model,
            version=model.label,
            canary_version=canary.label if canary and canary.mode == "fixed" else None,
            canary_weight=canary.weight if canary and canary.mode == "fixed" else 0,
        )

    def _security_policy(self, labels: Mapping[str, str], route: pulumi.Resource) -> None:
        """The SecurityPolicy on the model's HTTPRoute (by name: Serving's or Flagger's)."""
        model = self.model
        policy = security_policy_spec(self.args.config, model.name)
        if policy is not None:
            k8s.apiextensions.CustomResource(
                f"{self.prefix}-{model.name}-security-policy",
                api_version=ENVOY_GATEWAY_API,
                kind="SecurityPolicy",
                metadata={"name": model.name, "namespace": self._namespace, "labels": dict(labels)},
                spec=policy,
                opts=pulumi.ResourceOptions(parent=self.parent, depends_on=[route]),
            )

    def _build_progressive(self) -> ServedModel:
        """A model in canary mode 'progressive': its Deployment and HPA are Flagger's target.

        Flagger creates ``<model>-primary`` (Deployment, HPA), the Services ``<model>``,
        ``<model>-primary`` and ``<model>-canary`` and the HTTPRoute ``<model>``, so Serving
        creates none of them; it creates the Canary and its MetricTemplates (progressive.py).
        """
        model, gateway = self.model, self.args.gateway
        if self.flagger is None or self.args.prometheus_url is None:
            raise ValueError(
                f"model '{model.name}': canary mode 'progressive' needs the Flagger controller "
                "(serving.progressive.enabled), which this stack does not install"
            )
        target = self._track(model.name, "stable", model, model.image, model.min_replicas, service=False)
        labels = {**self.args.platform.labels("serving", model.name), MODEL_LABEL: model.name}
        canary = progressive.model_objects(
            resource_prefix=f"{self.prefix}-{model.name}",
            model=model,
            namespace=self._namespace,
            labels=labels,
            gateway=gateway,
            port=SERVICE_PORT,
            prometheus_url=self.args.prometheus_url,
            flagger=self.flagger,
            parent=self.parent,
            depends_on=[target],
        )
        self._security_policy(labels, canary)
        if self.inference is not None and model.drift is not None:
            self.inference.drift_job(model, self.args.platform.image("mlflow"), labels)
        return ServedModel(
            name=model.name,
            namespace=self.ns_name,
            route=model.name,
            url=gateway.url(model.name),
            registered_model=model.registered_model,
            version=model.label,
        )

    def _track(
        self, object_name: str, track: str, ref: ModelRef, image: str | None, min_replicas: int,
        *, service: bool = True,
    ) -> pulumi.Resource:
        """Deployment, Service and HPA (and a PDB when replicated) of one version; returns the
        Service, or without ``service`` (Flagger's target, whose Services Flagger creates) the HPA.
        Flagger's target, when replicated, gets a second PDB for the primary's pods
        (``<name>-primary``, the ones serving between rollouts)."""
        platform, model = self.args.platform, self.model
        labels = {**platform.labels("serving", object_name), MODEL_LABEL: model.name, TRACK_LABEL: track}
        selector = platform.selector("serving", object_name)
        namespace = self._namespace
        resource = f"{self.prefix}-{object_name}"
        uri = model_uri(model.registered_model, ref)
        workload = kube.Workload(
            containers=[self._container(image or platform.image("mlflow"), uri)],
            uid=MLFLOW_UID,
            fs_group=MLFLOW_UID,
            volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": model.tmp_size}}],
            annotations={MODEL_URI_ANNOTATION: uri},
            # The serving group; a model asking for GPUs on the GPU group, tolerating its taint.
            placement=platform.place("serving", model.gpus),
        )
        if self.inference is not None and model.logging is not None:
            # The sidecar runs the pinned MLflow image (Python and boto3), not the model's image.
            self.inference.wrap(workload, model, ref.label, platform.image("mlflow"))
            labels[drift.STORE_LABEL] = "true"
        k8s.apps.v1.Deployment(
            f"{resource}-deployment",
            metadata={
                "name": object_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={
                # No replicas: the HPA owns the count (a fixed value would fight it on every update).
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": self._template(workload, labels),
            },
            opts=pulumi.ResourceOptions(parent=self.parent),
        )
        hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{resource}-hpa",
            metadata={"name": object_name, "namespace": namespace, "labels": labels},
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": object_name},
                "minReplicas": min_replicas,
                "maxReplicas": model.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": model.target_cpu_utilization},
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self.parent),
        )
        if min_replicas > 1:
            # One replica is not replicated: minAvailable 1 would block every node drain and
            # minAvailable 0 would protect nothing, so a single replica gets no PDB.
            for guarded, suffix in [(object_name, "pdb"), *([] if service else [(f"{object_name}-primary", "primary-pdb")])]:
                k8s.policy.v1.PodDisruptionBudget(
                    f"{resource}-{suffix}",
                    metadata={"name": guarded, "namespace": namespace, "labels": labels},
                    spec={
                        "minAvailable": min_replicas - 1,
                        "selector": {"matchLabels": platform.selector("serving", guarded)},
                    },
                    opts=pulumi.ResourceOptions(parent=self.parent),
                )
        if not service:
            return hpa
        return kube.service(
            f"{resource}-service",
            name=object_name,
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[("http", SERVICE_PORT, "http")],
            parent=self.parent,
        )

    def _template(self, workload: kube.Workload, labels: Mapping[str, str]) -> dict[str, Any]:
        template = workload.template(labels)
        if self.args.image_pull_secrets:
            template["spec"]["imagePullSecrets"] = [dict(s) for s in self.args.image_pull_secrets]
        return template

    def _container(self, image: str, uri: str) -> dict:
        model, secret_name = self.model, self.secret.metadata.name
        body = kube.container(
            "model",
            image,
            model.resources,
            command=["mlflow"],
            args=[
                "models", "serve",
                "--model-uri", uri,
                "--host", "0.0.0.0",
                "--port", str(PORT),
                "--workers", str(model.workers),
                "--timeout", str(SCORING_TIMEOUT),
                # The image's own Python environment: no package installs at start (offline-safe).
                "--env-manager", "local",
            ],
            env=[
                {"name": "MLFLOW_TRACKING_URI", "value": self.args.tracking_uri},
                kube.secret_env("MLFLOW_TRACKING_USERNAME", secret_name, "username"),
                kube.secret_env("MLFLOW_TRACKING_PASSWORD", secret_name, "password"),
                {"name": "HOME", "value": "/tmp"},
                {"name": "TMPDIR", "value": "/tmp"},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                *MLFLOW_TELEMETRY_ENV,
                *(dict(env) for env in self.args.extra_env),
            ],
            ports=[("http", PORT)],
            liveness=kube.http_probe("/ping", "http", period=15, failures=4),
            readiness=kube.http_probe("/ping", "http", period=5),
            mounts=[{"name": "tmp", "mountPath": "/tmp"}],
        )
        if "@sha256:" in image:
            # Pinned by digest: the content cannot change, so a cached copy is the same image
            # (and a registry outage does not stop a restart).
            body["imagePullPolicy"] = "IfNotPresent"
        # The model is downloaded and loaded before /ping answers: the startup probe holds off
        # liveness for up to startup_timeout_seconds.
        body["startupProbe"] = kube.http_probe(
            "/ping", "http", period=10, failures=max(3, model.startup_timeout_seconds // 10)
        )
        if model.gpus:
            # An extended resource: requests must equal limits (the device plugin hands out whole GPUs).
            for bound in ("requests", "limits"):
                body["resources"][bound][kube.GPU_RESOURCE] = str(model.gpus)
        return body
