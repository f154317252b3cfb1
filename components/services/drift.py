"""Inference logging and drift checks of served models (``serving.models[].logging`` / ``drift``).

Off by default: nothing here is created unless a model sets ``logging``. Then the serving
namespace gets

- ``Secret/inference-store``: S3 credentials of an identity limited to the datasets bucket
  (bundled store: its own SeaweedFS identity ``<platform>-inference``; external store: the
  operator's MLflow keys); with a store that binds workloads (S3 on AWS) no Secret and no key:
  the logger, the drift jobs and the exporter run as their own service accounts
  (:data:`ACCOUNTS`), each bound to a role limited to its key prefixes of the bucket
  (:func:`platform_store`); and ``ConfigMap/inference-scripts`` with the two scripts
  (``inference_logger.py``, ``drift_check.py``, shipped with mlplane);
- per logging model, a sidecar ``inference-logger`` in each replica: the pod's ``http`` port, in
  front of ``mlflow models serve`` (moved to port ``model`` 8081), which writes a sample of
  requests and predictions to ``s3://<datasets>/inference/<namespace>/<model>/<version>/date=<day>/``;
- per drift model, a ``CronJob/<model>-drift`` comparing the window with the model version's
  reference dataset in MLflow and writing ``drift-metrics/<namespace>/<model>.prom``;
- ``Deployment/drift-exporter`` serving those files on ``/metrics`` to Prometheus (a scrape
  target), so scores survive between job runs and alert rules can hold.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from mlplane.backing import workload_identity
from mlplane.backing.workload_identity import PodIdentity
from mlplane.core import kube
from mlplane.config import DriftConfig, ModelConfig, ModelRef, duration_seconds
from mlplane.services.tracking import MLFLOW_TELEMETRY_ENV

#: Pods carrying this label reach the object store (NetworkPolicy ``inference-store-egress``).
STORE_LABEL = "mlplane.dev/inference-store"
STORE_SECRET = "inference-store"
SCRIPTS_CONFIG_MAP = "inference-scripts"
SCRIPTS_DIR = "/opt/mlplane"
LOGGER_SCRIPT = "inference_logger.py"
DRIFT_SCRIPT = "drift_check.py"
#: Where ``mlflow models serve`` listens when the logging sidecar takes the pod's ``http`` port.
MODEL_PORT = 8081
EXPORTER = "drift-exporter"
EXPORTER_PORT = 9108
#: Prefix of the logged requests in the bucket.
LOG_PREFIX = "inference"
#: Prefix of the drift results (scripts/drift_check.py METRICS_PREFIX).
METRICS_PREFIX = "drift-metrics"
#: With a store that binds workloads: role -> the service account of the pods in that role (the
#: logging sidecar's model pods, the drift CronJobs, the exporter reading the drift results).
ACCOUNTS = {"logger": "inference-logger", "drift": "drift-job", "exporter": "drift-exporter"}
#: The bundled store's identity for inference logs (``<platform>-inference``).
IDENTITY_SUFFIX = "inference"
#: A team's exporter: its models' info series and, with drift, their drift results.
TEAM_EXPORTER = "model-exporter"
#: Where a team's exporter reads the static exposition of its models' info series.
INFO_DIR = "/etc/mlplane/model-info"
INFO_FILE = "models.prom"


@dataclass(frozen=True)
class InferenceStore:
    """The bucket inference logs and drift results go to, and how the serving namespace reaches it."""

    endpoint: pulumi.Input[str]
    region: pulumi.Input[str]
    bucket: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    #: Secret.
    secret_access_key: pulumi.Input[str]
    #: The NetworkPolicy egress rule to the store (its pods, or its port anywhere).
    egress: pulumi.Input[Mapping[str, Any]]
    #: Workload identities by role (keys of :data:`ACCOUNTS`), instead of the keys above (then
    #: empty): pods in a role run as its service account, which :meth:`Inference.create` makes.
    accounts: Mapping[str, PodIdentity] = field(default_factory=dict)


#: Builds the store (and its identity) on demand, under the given parent: no model logs, no objects.
StoreFactory = Callable[[pulumi.Resource], InferenceStore]


def script(name: str) -> str:
    """The text of a packaged script (``mlplane/scripts/<name>``)."""
    return (importlib.resources.files("mlplane.scripts") / name).read_text(encoding="utf-8")


def model_ref(ref: ModelRef) -> str:
    """A version number or ``@alias``, as the drift job takes it."""
    return f"@{ref.alias}" if ref.alias else str(ref.version)


@dataclass
class Inference:
    """The inference-logging objects of one serving namespace; adds sidecars and drift jobs."""

    parent: pulumi.Resource
    prefix: str
    platform: kube.Platform
    namespace: pulumi.Input[str]
    ns_name: str
    store: InferenceStore
    tracking_uri: pulumi.Input[str]
    credentials_secret: pulumi.Input[str]
    labels: Mapping[str, str]
    #: Labels that make a pod a Prometheus target in a team namespace (``mlplane.dev/scrape``).
    scrape_labels: Mapping[str, str] | None = None
    #: Further env of the drift job (a team's ``MLFLOW_WORKSPACE``).
    extra_env: Sequence[Mapping[str, Any]] = ()
    #: The platform's monitoring namespace, whose Prometheus scrapes the exporter (default:
    #: ``<platform.name>-monitoring``; a team's context is named after its work namespace).
    monitoring_namespace: str | None = None

    def create(self, drift_models: bool) -> list[kube.ScrapeTarget]:
        """The Secret, scripts, egress policy and (with a drift model) the exporter; its scrape target."""
        child = pulumi.ResourceOptions(parent=self.parent)
        labels = dict(self.labels)
        rules: list[pulumi.Input[Mapping[str, Any]]] = [self.store.egress]
        if self.store.accounts:
            # No key anywhere: each role's service account, bound to its role (the node's Pod
            # Identity Agent hands out the credentials).
            for role, identity in sorted(self.store.accounts.items()):
                workload_identity.service_account(
                    f"{self.prefix}-{identity.service_account}-account", identity, labels,
                    parent=self.parent, namespace=self.namespace,
                )
            rules.append(PodIdentity.egress())
        else:
            k8s.core.v1.Secret(
                f"{self.prefix}-inference-store",
                metadata={"name": STORE_SECRET, "namespace": self.namespace, "labels": labels},
                type="Opaque",
                string_data={
                    "access-key-id": self.store.access_key_id,
                    "secret-access-key": pulumi.Output.secret(self.store.secret_access_key),
                },
                opts=child,
            )
        k8s.core.v1.ConfigMap(
            f"{self.prefix}-inference-scripts",
            metadata={"name": SCRIPTS_CONFIG_MAP, "namespace": self.namespace, "labels": labels},
            data={LOGGER_SCRIPT: script(LOGGER_SCRIPT), DRIFT_SCRIPT: script(DRIFT_SCRIPT)},
            opts=child,
        )
        kube.egress_only_to(
            f"{self.prefix}-inference-store-egress",
            name="inference-store-egress",
            namespace=self.namespace,
            labels=labels,
            pods={STORE_LABEL: "true"},
            rules=rules,
            parent=self.parent,
        )
        if not drift_models:
            return []
        return [self._exporter()]

    def account(self, role: str) -> str | None:
        """The service account pods in ``role`` run as (None: the store hands out keys)."""
        identity = self.store.accounts.get(role)
        if self.store.accounts and identity is None:
            raise ValueError(f"the inference store binds no identity for the {role} (bound: {sorted(self.store.accounts)})")
        return identity.service_account if identity is not None else None

    # ----------------------------------------------------------------------------- env

    def store_env(self) -> list[dict[str, Any]]:
        keys = [] if self.store.accounts else [
            kube.secret_env("AWS_ACCESS_KEY_ID", STORE_SECRET, "access-key-id"),
            kube.secret_env("AWS_SECRET_ACCESS_KEY", STORE_SECRET, "secret-access-key"),
        ]
        return [
            *keys,
            {"name": "AWS_ENDPOINT_URL_S3", "value": self.store.endpoint},
            {"name": "AWS_DEFAULT_REGION", "value": self.store.region},
            {"name": "BUCKET", "value": self.store.bucket},
            {"name": "NAMESPACE", "value": self.ns_name},
            {"name": "LOG_PREFIX", "value": LOG_PREFIX},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            # The pinned MLflow image: the drift job's MLflow client sends no usage telemetry.
            *MLFLOW_TELEMETRY_ENV,
        ]

    @staticmethod
    def scripts_volume() -> dict[str, Any]:
        return scripts_volume()

    @staticmethod
    def scripts_mount() -> dict[str, Any]:
        return scripts_mount()

    # ------------------------------------------------------------------------- sidecar

    def wrap(self, workload: kube.Workload, model: ModelConfig, label: str, image: str) -> None:
        """Move the model server to :data:`MODEL_PORT` and put the logging sidecar on ``http``."""
        assert model.logging is not None
        server = workload.containers[0]
        args = list(server["args"])
        args[args.index("--port") + 1] = str(MODEL_PORT)
        server["args"] = args
        server["ports"] = [{"name": "model", "containerPort": MODEL_PORT, "protocol": "TCP"}]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in server:
                server[probe] = {**server[probe], "httpGet": {**server[probe]["httpGet"], "port": "model"}}
        cfg = model.logging
        sidecar = kube.container(
            "inference-logger",
            image,
            cfg.resources,
            command=["python", f"{SCRIPTS_DIR}/{LOGGER_SCRIPT}"],
            env=[
                *self.store_env(),
                {"name": "MODEL_NAME", "value": model.name},
                {"name": "MODEL_VERSION", "value": label},
                {"name": "SAMPLE_RATE", "value": format(cfg.sample_rate, "g")},
                {"name": "EXCLUDE_FIELDS", "value": json.dumps(list(cfg.exclude_fields))},
                {"name": "FLUSH_SECONDS", "value": str(cfg.flush_seconds)},
                {"name": "LISTEN_PORT", "value": "8080"},
                {"name": "UPSTREAM_PORT", "value": str(MODEL_PORT)},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            ports=[("http", 8080)],
            liveness=kube.http_probe("/-/logger/healthz", "http", period=15, failures=4),
            readiness=kube.http_probe("/ping", "http", period=5),
            mounts=[self.scripts_mount(), {"name": "tmp", "mountPath": "/tmp"}],
        )
        workload.containers.append(sidecar)
        workload.volumes.append(self.scripts_volume())
        account = self.account("logger")
        if account is not None:
            workload.service_account = account

    # --------------------------------------------------------------------------- drift

    def drift_job(self, model: ModelConfig, image: str, labels: Mapping[str, str]) -> k8s.batch.v1.CronJob:
        """``CronJob/<model>-drift``: the stable track's logged window against its reference."""
        cfg: DriftConfig = model.drift  # type: ignore[assignment]
        name = f"{model.name}-drift"
        job_labels = {**labels, **self.platform.labels("serving", name), STORE_LABEL: "true"}
        container = kube.container(
            "drift",
            image,
            cfg.resources,
            command=["python", f"{SCRIPTS_DIR}/{DRIFT_SCRIPT}", "check"],
            env=[
                *self.store_env(),
                {"name": "MLFLOW_TRACKING_URI", "value": self.tracking_uri},
                kube.secret_env("MLFLOW_TRACKING_USERNAME", self.credentials_secret, "username"),
                kube.secret_env("MLFLOW_TRACKING_PASSWORD", self.credentials_secret, "password"),
                {"name": "MODEL_NAME", "value": model.name},
                {"name": "MODEL_VERSION", "value": model.label},
                {"name": "REGISTERED_MODEL", "value": model.registered_model},
                {"name": "MODEL_REF", "value": model_ref(model)},
                {"name": "REFERENCE", "value": cfg.reference},
                {"name": "WINDOW_SECONDS", "value": str(int(duration_seconds(cfg.window)))},
                {"name": "MIN_SAMPLES", "value": str(cfg.min_samples)},
                {"name": "PSI_THRESHOLD", "value": format(cfg.thresholds.psi, "g")},
                {"name": "SHARE_THRESHOLD", "value": format(cfg.thresholds.share, "g")},
                {"name": "TMPDIR", "value": "/tmp"},
                *(dict(env) for env in self.extra_env),
            ],
            # A Job's probes would only restart a run; the deadline bounds it instead.
            liveness=kube.exec_probe(["true"], period=60),
            readiness=kube.exec_probe(["true"], period=60),
            mounts=[self.scripts_mount(), {"name": "tmp", "mountPath": "/tmp"}],
        )
        workload = kube.Workload(
            containers=[container],
            uid=10001,
            fs_group=10001,
            volumes=[self.scripts_volume(), {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
            service_account=self.account("drift"),
            placement=self.platform.place("serving"),
        )
        template = workload.template(job_labels)
        template["spec"]["restartPolicy"] = "Never"
        return k8s.batch.v1.CronJob(
            f"{self.prefix}-{model.name}-drift",
            metadata={
                "name": name,
                "namespace": self.namespace,
                "labels": job_labels,
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={
                "schedule": cfg.schedule,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": job_labels},
                    "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 1800, "template": template},
                },
            },
            opts=pulumi.ResourceOptions(parent=self.parent),
        )

    def _exporter(self) -> kube.ScrapeTarget:
        return exporter(
            self.prefix, self.platform, self.namespace, self.parent,
            env=self.store_env(), extra_labels={STORE_LABEL: "true", **(self.scrape_labels or {})},
            monitoring_namespace=self.monitoring_namespace or f"{self.platform.name}-monitoring",
            service_account=self.account("exporter"),
        )


def exporter(
    prefix: str,
    platform: kube.Platform,
    namespace: pulumi.Input[str],
    parent: pulumi.Resource,
    *,
    env: Sequence[Mapping[str, Any]],
    extra_labels: Mapping[str, str],
    monitoring_namespace: str,
    name: str = EXPORTER,
    info_config_map: pulumi.Input[str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    service_account: str | None = None,
) -> kube.ScrapeTarget:
    """``Deployment/<name>`` serving the drift results of ``env``'s store (when it names one) and
    the static exposition of ``info_config_map`` (key :data:`INFO_FILE`) on ``/metrics``, with an
    ingress policy admitting the monitoring namespace only; returns its scrape target."""
    labels = {**platform.labels("serving", name), **extra_labels}
    selector = platform.selector("serving", name)
    mounts = [scripts_mount(), {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [scripts_volume(), {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    env = [*(dict(e) for e in env), {"name": "EXPORTER_PORT", "value": str(EXPORTER_PORT)}]
    if info_config_map is not None:
        mounts.append({"name": "info", "mountPath": INFO_DIR, "readOnly": True})
        volumes.append({"name": "info", "configMap": {"name": info_config_map}})
        env.append({"name": "INFO_FILE", "value": f"{INFO_DIR}/{INFO_FILE}"})
    container = kube.container(
        name,
        platform.image("mlflow"),
        kube_resources(),
        command=["python", f"{SCRIPTS_DIR}/{DRIFT_SCRIPT}", "serve"],
        env=env,
        ports=[("metrics", EXPORTER_PORT)],
        liveness=kube.http_probe("/healthz", "metrics", period=15, failures=4),
        readiness=kube.http_probe("/healthz", "metrics", period=10),
        mounts=mounts,
    )
    workload = kube.Workload(
        containers=[container], uid=10001, fs_group=10001, volumes=volumes, service_account=service_account,
        placement=platform.place("serving"),
    )
    k8s.apps.v1.Deployment(
        f"{prefix}-{name}",
        metadata={
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
        },
        spec={"replicas": 1, "selector": {"matchLabels": selector}, "template": workload.template(labels)},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    kube.ingress_only_on(
        f"{prefix}-{name}-network-policy",
        name=name,
        namespace=namespace,
        labels=labels,
        pods=selector,
        port="metrics",
        parent=parent,
        sources=[kube.namespace_peer(monitoring_namespace)],
    )
    return kube.ScrapeTarget(job="model-drift", namespace=namespace, selector=selector, port="metrics")


def scripts_volume() -> dict[str, Any]:
    return {"name": "inference-scripts", "configMap": {"name": SCRIPTS_CONFIG_MAP}}


def scripts_mount() -> dict[str, Any]:
    return {"name": "inference-scripts", "mountPath": SCRIPTS_DIR, "readOnly": True}


def kube_resources() -> Any:
    """Requests and limits of the exporter: a Python HTTP server reading a few small files."""
    from mlplane.config import resources

    return resources("10m", "64Mi", "200m", "128Mi")()


def platform_store(
    name: str, storage: Any, platform: kube.Platform, datasets_bucket: str, *, drift_models: bool = True
) -> StoreFactory:
    """The platform's inference store: the datasets bucket, with a bucket-scoped identity when
    the store is bundled (``<platform>-inference``, granted by the storage's grant Job), or, when
    the store binds workloads (S3 on AWS), a role per role of :data:`ACCOUNTS` limited to its key
    prefixes of the serving namespace: the logger reads and writes ``inference/<ns>/``, the drift
    job also ``drift-metrics/<ns>/`` (its results), the exporter reads ``drift-metrics/<ns>/``
    (the last two only with ``drift_models``)."""

    def build(parent: pulumi.Resource) -> InferenceStore:
        import pulumi_random as random

        from mlplane.backing import object_storage
        from mlplane.services.tracking import endpoint_port

        seaweedfs = platform.selector("storage", "seaweedfs")
        egress = pulumi.Output.all(storage.namespace, storage.endpoint).apply(
            lambda v: {"to": [kube.pods_peer(v[0], seaweedfs)], "ports": kube.tcp(endpoint_port(v[1]))}
            if v[0] else kube.internet_egress(endpoint_port(v[1]))
        )
        namespace = f"{platform.name}-serving"
        logs, results = f"{LOG_PREFIX}/{namespace}/", f"{METRICS_PREFIX}/{namespace}/"
        wanted = {"logger": ("read-write", (logs,))}
        if drift_models:
            wanted |= {"drift": ("read-write", (logs, results)), "exporter": ("read-only", (results,))}
        accounts = {
            role: workload_identity.bind(
                storage, ACCOUNTS[role], namespace, ACCOUNTS[role], {"datasets": access}, prefixes=prefixes
            )
            for role, (access, prefixes) in wanted.items()
        }
        if all(identity is not None for identity in accounts.values()):  # a store that binds workloads
            return InferenceStore(storage.endpoint, storage.region, storage.datasets_bucket, "", "", egress,
                                  {role: identity for role, identity in accounts.items() if identity is not None})
        if storage.grant_target is None:  # external: the operator's keys (see docs/models.md)
            return InferenceStore(storage.endpoint, storage.region, storage.datasets_bucket,
                                  storage.mlflow_access_key_id, storage.mlflow_secret_access_key, egress)
        child = pulumi.ResourceOptions(parent=parent)
        key_id = random.RandomPassword(f"{name}-inference-access-key-id", length=20, special=False, upper=True,
                                       lower=False, opts=child).result
        secret = random.RandomPassword(f"{name}-inference-secret-access-key", length=40, special=False,
                                       opts=child).result
        grant = object_storage.BucketGrant(
            identity=f"{platform.name}-{IDENTITY_SUFFIX}",
            buckets=(datasets_bucket,),
            access_key_id=key_id,
            secret_access_key=secret,
        )
        object_storage.bucket_grant_job(f"{name}-inference-s3-grant", grant, storage.grant_target,
                                        pulumi.ResourceOptions(parent=parent, depends_on=storage.ready))
        return InferenceStore(storage.endpoint, storage.region, storage.datasets_bucket, key_id,
                              pulumi.Output.secret(secret), egress)

    return build
