"""The MLflow tracking server and model registry.

MLflow keeps experiments, runs and registered models in PostgreSQL (the :class:`Database`), and
proxies artifacts to the artifacts bucket of the :class:`ObjectStorage` with an S3 identity
limited to that bucket: clients talk HTTP to MLflow only and hold no storage credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from mlplane import scripts
from mlplane.core import kube
from mlplane.config import TrackingConfig
from mlplane.backing.database import Database
from mlplane.backing.object_storage import CREDENTIALS_DIGEST, ObjectStorage, content_digest
from mlplane.backing import workload_identity

TYPE = "mlplane:tracking:TrackingServer"
#: The MLflow image has no USER (it would run as root): mlplane runs it as this high UID.
MLFLOW_UID = 10001
#: Usage telemetry off in every container that runs MLflow's code (server, setup Jobs, serving,
#: team Jobs). MLflow 3.x reports usage unless ``MLFLOW_DISABLE_TELEMETRY`` is true or
#: ``DO_NOT_TRACK`` is exactly "true" (mlflow/mlflow ``mlflow/telemetry/utils.py``,
#: ``is_telemetry_disabled``: ``DO_NOT_TRACK=1`` does not count). See docs/telemetry.md.
MLFLOW_TELEMETRY_ENV: tuple[dict[str, str], ...] = (
    {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
    {"name": "DO_NOT_TRACK", "value": "true"},
)
PORT = 5000
#: Port of the metrics sidecar.
EXPORTER_PORT = 9464
SERVICE = "mlflow"
ADMIN_USERNAME = "admin"
#: The account :meth:`TrackingServer.client_credentials` hands to workloads (serving, CI).
READER_USERNAME = "mlplane-reader"
#: What an authenticated user may do on resources it did not create (MLflow ``default_permission``).
DEFAULT_PERMISSION = "READ"
AUTH_CONFIG_DIR = "/etc/mlflow"
AUTH_CONFIG_PATH = f"{AUTH_CONFIG_DIR}/auth.ini"
#: emptyDir where MLflow's workers write Prometheus multiprocess files (``--expose-prometheus``).
METRICS_DIR = "/var/run/mlflow/metrics"
SERVER_SECRET = "mlflow-server"
ADMIN_SECRET = "mlflow-admin"
READER_SECRET = "mlflow-reader"

#: The sidecar serving MLflow's metrics: MLflow's own ``/metrics`` sits behind basic auth and
#: host-header validation, which Prometheus (scraping pod IPs, without credentials) cannot pass.
EXPORTER_SCRIPT = scripts.text("mlflow_exporter.py")

#: Creates the read-only account, or resets its password, through MLflow's auth REST API. Plain
#: standard library: importing mlflow costs seconds and hundreds of MB for four HTTP calls.
READER_SCRIPT = scripts.text("mlflow_reader.py")


@dataclass(frozen=True)
class TrackingArgs:
    config: TrackingConfig
    platform: kube.Platform
    database: Database
    storage: ObjectStorage
    gateway: kube.GatewayRef


@dataclass(frozen=True)
class ClientCredentials:
    """How a workload (a model server, a CI job) reaches MLflow and authenticates to it.

    With auth on, ``username``/``password`` (secret) are those of the ``mlplane-reader``
    account: not an admin, so it cannot manage users or permissions, and with MLflow's
    ``default_permission`` READ it can read every experiment, run, artifact and registered model
    but not change or delete any it did not create. MLflow lets every authenticated user create
    new experiments and registered models (and manage those). With auth off both are empty.
    Copy them into a Secret in the workload's namespace and use :meth:`env`.
    """

    tracking_uri: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    auth: bool

    def env(
        self, secret_name: pulumi.Input[str], username_key: str = "username", password_key: str = "password"
    ) -> list[dict[str, Any]]:
        """Container env: the tracking URI, and the credentials from ``secret_name`` when auth is on."""
        env: list[dict[str, Any]] = [{"name": "MLFLOW_TRACKING_URI", "value": self.tracking_uri}]
        if self.auth:
            env.append(kube.secret_env("MLFLOW_TRACKING_USERNAME", secret_name, username_key))
            env.append(kube.secret_env("MLFLOW_TRACKING_PASSWORD", secret_name, password_key))
        return env


def endpoint_port(url: str) -> int:
    """The TCP port of an http(s) endpoint URL (its scheme's default when it names none)."""
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def database_uri(username: str, password: str, host: str, port: int, database: str, sslmode: str) -> str:
    """A SQLAlchemy PostgreSQL URI, user, password and database name percent-encoded.

    The driver is named: SQLAlchemy 2.1 made psycopg 3 the default for ``postgresql://``, and
    psycopg2 is the driver the MLflow image is documented to carry (``-full`` has both).
    """
    credentials = f"{quote(username, safe='')}:{quote(password, safe='')}"
    return f"postgresql+psycopg2://{credentials}@{host}:{port}/{quote(database, safe='')}?sslmode={sslmode}"


def backend_store_uri(database: Database) -> pulumi.Output[str]:
    """The URI of the :class:`Database` (secret: it carries the password)."""
    uri = pulumi.Output.all(
        database.username, database.password, database.host, database.port, database.database, database.sslmode
    ).apply(lambda v: database_uri(v[0], v[1], v[2], int(v[3]), v[4], v[5]))
    return pulumi.Output.secret(uri)


def auth_ini(store_uri: str, admin_password: str, workspaces: bool = False) -> str:
    """The basic-auth config file (``%`` doubled: configparser interpolates it).

    With workspaces, accounts keep ``default_permission`` in the 'default' workspace (where the
    platform's own experiments and models live) and have no access to any other workspace
    unless granted there.
    """
    lines = {
        "default_permission": DEFAULT_PERMISSION,
        "database_uri": store_uri,
        "admin_username": ADMIN_USERNAME,
        "admin_password": admin_password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    if workspaces:
        lines["grant_default_workspace_access"] = "true"
    body = "".join(f"{key} = {value.replace('%', '%%')}\n" for key, value in lines.items())
    return f"[mlflow]\n{body}"


def allowed_hosts(route_host: str, namespace: str) -> list[str]:
    """Host headers MLflow accepts: the route (any port) and the in-cluster service names."""
    service_hosts = [f"{SERVICE}.{namespace}.svc.cluster.local", f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}"]
    return [route_host, f"{route_host}:*", *(h for host in service_hosts for h in (host, f"{host}:{PORT}"))]


class TrackingServer(pulumi.ComponentResource):
    """MLflow: tracking server, model registry and artifact proxy, behind basic auth.

    Outputs: ``url`` (through the Gateway), ``internal_url``, ``admin_username`` and
    ``admin_password`` (secret; both empty when auth is off), ``namespace``. Attributes:
    :meth:`client_credentials`, ``scrape_targets``, ``uis``.
    """

    url: pulumi.Output[str]
    internal_url: pulumi.Output[str]
    admin_username: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: TrackingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        platform, cfg = args.platform, args.config
        self._auth = cfg.auth
        ns_name = f"{platform.name}-tracking"
        ns = kube.namespace(
            platform, f"{name}-namespace", ns_name, parent=self, component="tracking", gateway_access=True
        )
        self.namespace = ns.metadata.name
        self._labels = platform.labels("tracking", SERVICE)
        self._selector = platform.selector("tracking", SERVICE)
        self.url = pulumi.Output.from_input(args.gateway.url(SERVICE))
        self.internal_url = pulumi.Output.concat("http://", SERVICE, ".", self.namespace, f".svc.cluster.local:{PORT}")
        # A store that binds workloads (S3 on AWS): the server runs as its own service account,
        # bound to a role limited to the artifacts bucket, and holds no keys. Otherwise: keys.
        self._identity = workload_identity.bind(
            args.storage, SERVICE, ns_name, SERVICE, {"artifacts": "read-write"}
        )
        if self._identity is not None:
            workload_identity.service_account(
                f"{name}-service-account", self._identity, self._labels, parent=self, namespace=self.namespace
            )

        server_data = self._server_data(name, args)
        server_secret = self._secret(f"{name}-server-secret", SERVER_SECRET, server_data)
        admin_secret: k8s.core.v1.Secret | None = None
        if cfg.auth:
            self.admin_username = pulumi.Output.from_input(ADMIN_USERNAME)
            self.admin_password = pulumi.Output.secret(server_data["admin-password"])
            admin_secret = self._secret(
                f"{name}-admin-secret", ADMIN_SECRET, {"username": self.admin_username, "password": self.admin_password}
            )
        else:
            self.admin_username = pulumi.Output.from_input("")
            self.admin_password = pulumi.Output.secret("")
        deployment = self._deployment(name, args, server_secret, content_digest(*server_data.values()))
        kube.service(
            f"{name}-service",
            name=SERVICE,
            namespace=self.namespace,
            labels=self._labels,
            selector=self._selector,
            ports=[("http", PORT, "http")],
            parent=self,
        )
        self._network_policy(f"{name}-network-policy", SERVICE, self._selector, [PORT, EXPORTER_PORT])
        self._egress(name, args)
        kube.http_route(
            f"{name}-route",
            name=SERVICE,
            namespace=self.namespace,
            labels=self._labels,
            gateway=args.gateway,
            host=args.gateway.host(SERVICE),
            backends=[(SERVICE, PORT, 1)],
            parent=self,
        )
        self._reader_username = pulumi.Output.from_input("")
        self._reader_password = pulumi.Output.secret("")
        if admin_secret is not None:
            self._reader(name, args, admin_secret, deployment)

        self.scrape_targets = [
            kube.ScrapeTarget(job="mlflow", namespace=ns_name, selector=self._selector, port="metrics")
        ]
        self.uis = [kube.Ui(key="mlflow", title="MLflow", url=args.gateway.url(SERVICE))]
        self.register_outputs(
            {
                "url": self.url,
                "internal_url": self.internal_url,
                "admin_username": self.admin_username,
                "admin_password": self.admin_password,
            }
        )

    def client_credentials(self) -> ClientCredentials:
        """The read-only account (see :class:`ClientCredentials` for what it may do)."""
        return ClientCredentials(
            tracking_uri=self.internal_url,
            username=self._reader_username,
            password=self._reader_password,
            auth=self._auth,
        )

    def _network_policy(
        self, resource_name: str, name: str, selector: Mapping[str, str], ports: list[int]
    ) -> None:
        """Ingress to the selected pods on ``ports`` only (none: no ingress at all)."""
        ingress = [{"ports": [{"port": port, "protocol": "TCP"} for port in ports]}] if ports else []
        k8s.networking.v1.NetworkPolicy(
            resource_name,
            metadata={"name": name, "namespace": self.namespace, "labels": self._labels},
            spec={"podSelector": {"matchLabels": dict(selector)}, "policyTypes": ["Ingress"], "ingress": ingress},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _egress(self, name: str, args: TrackingArgs) -> None:
        """Default deny; the server reaches PostgreSQL and S3 (bundled: their pods; external: their
        port anywhere but the metadata endpoint), the setup Job the server."""
        platform = args.platform
        kube.isolate_namespace(name, namespace=self.namespace, labels=self._labels, parent=self)
        postgres = platform.selector("database", "postgres")
        seaweedfs = platform.selector("storage", "seaweedfs")
        database = pulumi.Output.all(args.database.namespace, args.database.port).apply(
            lambda v: {"to": [kube.pods_peer(v[0], postgres)], "ports": kube.tcp(int(v[1]))}
            if v[0] else kube.internet_egress(int(v[1]))
        )
        storage = pulumi.Output.all(args.storage.namespace, args.storage.endpoint).apply(
            lambda v: {"to": [kube.pods_peer(v[0], seaweedfs)], "ports": kube.tcp(endpoint_port(v[1]))}
            if v[0] else kube.internet_egress(endpoint_port(v[1]))
        )
        kube.egress_only_to(
            f"{name}-egress",
            name=f"{SERVICE}-egress",
            namespace=self.namespace,
            labels=self._labels,
            pods=self._selector,
            rules=[database, storage, *([self._identity.egress()] if self._identity is not None else [])],
            parent=self,
        )
        if not self._auth:
            return  # no setup Job (see _reader)
        kube.egress_only_to(
            f"{name}-reader-egress",
            name="mlflow-reader-egress",
            namespace=self.namespace,
            labels=self._labels,
            pods=platform.selector("tracking", "mlflow-reader"),
            rules=[{"to": [{"podSelector": {"matchLabels": dict(self._selector)}}], "ports": kube.tcp(PORT)}],
            parent=self,
        )

    def _password(self, name: str, length: int = 32) -> pulumi.Output[str]:
        return random.RandomPassword(
            name, length=length, special=False, opts=pulumi.ResourceOptions(parent=self)
        ).result

    def _secret(self, resource_name: str, name: str, data: Mapping[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            resource_name,
            metadata={"name": name, "namespace": self.namespace, "labels": self._labels},
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _server_data(self, name: str, args: TrackingArgs) -> dict[str, pulumi.Input[str]]:
        """Everything the server reads from its Secret: store URI, S3 keys, auth settings."""
        database_uri = backend_store_uri(args.database)
        data: dict[str, pulumi.Input[str]] = {"backend-store-uri": database_uri}
        if self._identity is None:
            data["aws-access-key-id"] = args.storage.mlflow_access_key_id
            data["aws-secret-access-key"] = args.storage.mlflow_secret_access_key
        if args.config.auth:
            admin_password = self._password(f"{name}-admin-password")
            data["admin-password"] = admin_password
            data["flask-secret-key"] = self._password(f"{name}-flask-secret-key", 48)
            data["auth.ini"] = pulumi.Output.all(database_uri, admin_password).apply(
                lambda v: auth_ini(v[0], v[1], args.config.workspaces)
            )
        return data

    def _deployment(
        self, name: str, args: TrackingArgs, secret: k8s.core.v1.Secret, digest: pulumi.Output[str]
    ) -> k8s.apps.v1.Deployment:
        cfg, platform = args.config, args.platform
        secret_name = secret.metadata.name
        route_host = args.gateway.host(SERVICE)
        server_args: list[pulumi.Input[str]] = [
            "--host", "0.0.0.0",
            "--port", str(PORT),
            "--workers", str(cfg.workers),
            "--serve-artifacts",
            "--artifacts-destination", pulumi.Output.concat("s3://", args.storage.artifacts_bucket),
            "--expose-prometheus", METRICS_DIR,
            "--allowed-hosts", self.namespace.apply(lambda ns: ",".join(allowed_hosts(route_host, ns))),
            # Browsers send Origin even on same-origin writes; MLflow rejects unlisted origins.
            "--cors-allowed-origins", args.gateway.url(SERVICE),
        ]
        if cfg.workspaces:
            server_args.append("--enable-workspaces")
        env: list[dict[str, Any]] = [
            kube.secret_env("MLFLOW_BACKEND_STORE_URI", secret_name, "backend-store-uri"),
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": args.storage.endpoint},
            {"name": "AWS_DEFAULT_REGION", "value": args.storage.region},
            *(
                [
                    kube.secret_env("AWS_ACCESS_KEY_ID", secret_name, "aws-access-key-id"),
                    kube.secret_env("AWS_SECRET_ACCESS_KEY", secret_name, "aws-secret-access-key"),
                ]
                if self._identity is None
                else []
            ),
            {"name": "HOME", "value": "/tmp"},
            *MLFLOW_TELEMETRY_ENV,
        ]
        mounts: list[dict[str, Any]] = [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "metrics", "mountPath": METRICS_DIR},
        ]
        volumes: list[dict[str, Any]] = [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "metrics", "emptyDir": {"sizeLimit": "64Mi"}},
        ]
        if cfg.auth:
            server_args += ["--app-name", "basic-auth"]
            env += [
                {"name": "MLFLOW_AUTH_CONFIG_PATH", "value": AUTH_CONFIG_PATH},
                kube.secret_env("MLFLOW_FLASK_SERVER_SECRET_KEY", secret_name, "flask-secret-key"),
            ]
            mounts.append({"name": "auth-config", "mountPath": AUTH_CONFIG_DIR, "readOnly": True})
            volumes.append(
                {
                    "name": "auth-config",
                    "secret": {
                        "secretName": secret_name,
                        "items": [{"key": "auth.ini", "path": "auth.ini"}],
                        "defaultMode": 0o440,
                    },
                }
            )
        server = kube.container(
            "mlflow",
            platform.image("mlflow"),
            cfg.resources,
            command=["mlflow", "server"],
            args=server_args,
            env=env,
            ports=[("http", PORT)],
            liveness=kube.http_probe("/health", "http", period=15, failures=4),
            readiness=kube.http_probe("/health", "http", period=10),
            mounts=mounts,
        )
        # Database migrations on first start take a while; /health is outside basic auth.
        server["startupProbe"] = kube.http_probe("/health", "http", period=5, failures=60)
        server["workingDir"] = "/tmp"
        exporter = kube.container(
            "metrics",
            platform.image("mlflow"),
            cfg.exporter_resources,
            command=["python", "-c", EXPORTER_SCRIPT],
            env=[
                {"name": "METRICS_DIR", "value": METRICS_DIR},
                {"name": "EXPORTER_PORT", "value": str(EXPORTER_PORT)},
                *MLFLOW_TELEMETRY_ENV,
            ],
            ports=[("metrics", EXPORTER_PORT)],
            liveness=kube.http_probe("/metrics", "metrics", period=30),
            readiness=kube.http_probe("/metrics", "metrics", period=15),
            mounts=[{"name": "metrics", "mountPath": METRICS_DIR, "readOnly": True}],
        )
        template = kube.Workload(
            containers=[server, exporter], uid=MLFLOW_UID, fs_group=MLFLOW_UID, volumes=volumes,
            placement=platform.place("system"),
            service_account=self._identity.service_account if self._identity is not None else None,
        ).template(self._labels)
        # Rolls the pod when a Secret it reads at start changes.
        template["metadata"]["annotations"] = {CREDENTIALS_DIGEST: digest}
        return k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": SERVICE,
                "namespace": self.namespace,
                "labels": self._labels,
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={
                "replicas": 1,
                "selector": {"matchLabels": self._selector},
                "template": template,
            },
            # The buckets and MLflow's S3 identity exist before the first artifact upload.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*args.storage.ready, *(self._identity.ready if self._identity is not None else ())],
            ),
        )

    def _reader(
        self, name: str, args: TrackingArgs, admin_secret: k8s.core.v1.Secret, deployment: k8s.apps.v1.Deployment
    ) -> None:
        """The read-only account, created by a Job through MLflow's auth REST API."""
        password = self._password(f"{name}-reader-password")
        reader_secret = self._secret(
            f"{name}-reader-secret", READER_SECRET, {"username": READER_USERNAME, "password": password}
        )
        self._reader_username = pulumi.Output.from_input(READER_USERNAME)
        self._reader_password = pulumi.Output.secret(password)
        image = args.platform.image("mlflow")
        job = kube.container(
            "create-reader",
            image,
            args.config.setup_job_resources,
            command=["python", "-c", READER_SCRIPT],
            env=[
                {"name": "MLFLOW_TRACKING_URI", "value": self.internal_url},
                kube.secret_env("MLFLOW_TRACKING_USERNAME", admin_secret.metadata.name, "username"),
                kube.secret_env("MLFLOW_TRACKING_PASSWORD", admin_secret.metadata.name, "password"),
                kube.secret_env("READER_USERNAME", reader_secret.metadata.name, "username"),
                kube.secret_env("READER_PASSWORD", reader_secret.metadata.name, "password"),
                {"name": "HOME", "value": "/tmp"},
                *MLFLOW_TELEMETRY_ENV,
            ],
            liveness={},
            readiness={},
            mounts=[{"name": "tmp", "mountPath": "/tmp"}],
        )
        # A Job runs to completion: probes do not apply (checkov does not ask them of Jobs either).
        del job["livenessProbe"], job["readinessProbe"]
        job["workingDir"] = "/tmp"
        # Labels of its own: the Deployment's selector (and so the Service) must not match it.
        labels = args.platform.labels("tracking", "mlflow-reader")
        self._network_policy(
            f"{name}-reader-network-policy", "mlflow-reader", args.platform.selector("tracking", "mlflow-reader"), []
        )
        template = kube.Workload(
            containers=[job], uid=MLFLOW_UID, volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            placement=args.platform.place("system"),
        ).template(labels)
        template["spec"]["restartPolicy"] = "Never"
        digest = content_digest(image, READER_SCRIPT, READER_USERNAME, password)
        k8s.batch.v1.Job(
            f"{name}-reader-job",
            metadata={
                "name": pulumi.Output.concat("mlflow-reader-", digest),
                "namespace": self.namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={"backoffLimit": 3, "activeDeadlineSeconds": 900, "template": template},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment, reader_secret]),
        )
