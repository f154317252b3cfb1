"""PostgreSQL for the MLflow backend store: bundled in the cluster, or an existing server."""

from __future__ import annotations

from dataclasses import dataclass
import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from mlplane.core import kube
from mlplane.config import DatabaseConfig

TYPE = "mlplane:database:Database"
#: The headless Service governing the StatefulSet (its serviceName) and the host clients use.
SERVICE_NAME = "postgres"
#: A high UID (CKV_K8S_40) instead of the image's 999: the official entrypoint supports
#: arbitrary UIDs (nss_wrapper), and initdb creates PGDATA as that user inside the volume.
POSTGRES_UID = 10999
PORT = 5432
#: The three probes ask different questions of ``pg_isready`` (exit 0: accepting connections;
#: 1: rejecting them, e.g. starting up or in crash recovery; 2: no answer; 3: not attempted —
#: PostgreSQL docs, "pg_isready"). No ``-p``: it uses PGPORT, else 5432, the server's port.
#: Ready: the mlflow database accepts connections.
READY_COMMAND = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "mlflow", "-d", "mlflow"]
#: Alive: the postmaster answers at all. A server replaying WAL after a crash rejects
#: connections (exit 1) for as long as recovery takes; that is not a reason to kill it.
LIVE_COMMAND = ["sh", "-c", "pg_isready -q -h 127.0.0.1; test $? -le 1"]
#: Startup (first initdb, or crash recovery after a restart) may take this long before liveness
#: applies: 180 x 10 s = 30 minutes.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURES = 180


@dataclass(frozen=True)
class DatabaseArgs:
    config: DatabaseConfig
    platform: kube.Platform


class Database(pulumi.ComponentResource):
    """A PostgreSQL database and the credentials to reach it.

    Outputs: ``host``, ``port``, ``database``, ``username``, ``password`` (secret), ``sslmode``,
    ``namespace`` (empty when external).
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    database: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    sslmode: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        cfg = args.config
        if cfg.mode == "external":
            ext = cfg.external
            assert ext is not None  # guaranteed by DatabaseConfig validation
            self.host = pulumi.Output.from_input(ext.host)
            self.port = pulumi.Output.from_input(ext.port)
            self.database = pulumi.Output.from_input(ext.database)
            self.username = pulumi.Output.from_input(ext.username)
            self.password = pulumi.Output.secret(args.platform.secret(ext.password_key))
            self.sslmode = pulumi.Output.from_input(ext.sslmode)
            self.namespace = pulumi.Output.from_input("")
        else:
            self._bundled(name, args)
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "database": self.database,
                "username": self.username,
                "password": self.password,
            }
        )

    def _bundled(self, name: str, args: DatabaseArgs) -> None:
        platform, cfg = args.platform, args.config.bundled
        labels = platform.labels("database", "postgres")
        selector = platform.selector("database", "postgres")
        ns_name = f"{platform.name}-database"
        ns = kube.namespace(platform, f"{name}-namespace", ns_name, parent=self, component="database")
        namespace = ns.metadata.name
        # PostgreSQL calls out to nothing: default deny, DNS only.
        kube.isolate_namespace(name, namespace=namespace, labels=labels, parent=self)

        password = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": "postgres-credentials", "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"username": "mlflow", "password": password.result, "database": "mlflow"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        data_dir = "/var/lib/postgresql"
        postgres = kube.container(
            "postgres",
            platform.image("postgres"),
            cfg.resources,
            env=[
                kube.secret_env("POSTGRES_USER", secret.metadata.name, "username"),
                kube.secret_env("POSTGRES_PASSWORD", secret.metadata.name, "password"),
                kube.secret_env("POSTGRES_DB", secret.metadata.name, "database"),
                {"name": "PGDATA", "value": f"{data_dir}/18/docker"},
            ],
            ports=[("postgres", PORT)],
            liveness=kube.exec_probe(LIVE_COMMAND, period=15, failures=4),
            readiness=kube.exec_probe(READY_COMMAND, period=5),
            mounts=[
                {"name": "data", "mountPath": data_dir},
                {"name": "run", "mountPath": "/var/run/postgresql"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        )
        postgres["startupProbe"] = kube.exec_probe(
            READY_COMMAND, period=STARTUP_PERIOD_SECONDS, failures=STARTUP_FAILURES
        )
        workload = kube.Workload(
            containers=[postgres],
            uid=POSTGRES_UID,
            fs_group=POSTGRES_UID,
            volumes=[
                {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            ],
        )
        kube.service(
            f"{name}-service",
            name=SERVICE_NAME,
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[("postgres", PORT, "postgres")],
            parent=self,
            # Governs the StatefulSet (serviceName); clients resolve it to the pod's IP.
            headless=True,
        )
        kube.ingress_only_on(
            f"{name}-network-policy",
            name="postgres",
            namespace=namespace,
            labels=labels,
            pods=selector,
            port="postgres",
            parent=self,
            sources=[kube.namespace_peer(f"{platform.name}-tracking")],
        )
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={
                "name": "postgres",
                "namespace": namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={
                # The literal name, not svc.metadata.name: serviceName is immutable and must not
                # depend on the Service, which is replaced when it becomes headless (an unknown
                # serviceName in a preview would plan a replacement, and lose the volume claim).
                "serviceName": SERVICE_NAME,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": workload.template(labels),
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain" if platform.protect_stateful else "Delete",
                    "whenScaled": "Retain",
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": cfg.storage_size}},
                        },
                    }
                ],
            },
            opts=platform.stateful(self),
        )
        self.namespace = namespace
        self.host = pulumi.Output.concat("postgres.", namespace, ".svc.cluster.local")
        self.port = pulumi.Output.from_input(PORT)
        self.database = pulumi.Output.from_input("mlflow")
        self.username = pulumi.Output.from_input("mlflow")
        self.password = pulumi.Output.secret(password.result)
        self.sslmode = pulumi.Output.from_input("disable")
