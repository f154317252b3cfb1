"""S3-compatible object storage: a bundled single-node SeaweedFS, or an existing S3 endpoint.

Bundled SeaweedFS never runs open: the admin identity comes from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in the server's environment (which switches S3 authentication on before
the first request), and every other identity is stored in the filer by ``weed shell``
``s3.configure ... -apply``, which the S3 gateway reloads live. That second path is what lets a
later, separate stack add a bucket and an identity scoped to it without touching the platform
stack: see :func:`bucket_grant_job`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import TypeAdapter

from mlplane import scripts
from mlplane.core import kube
from mlplane.config import BucketName, DnsLabel, ObjectStorageConfig, Resources

TYPE = "mlplane:storage:ObjectStorage"
#: UID SeaweedFS runs as. The image's own ``seaweed`` user is 1000, but nothing in the image
#: needs it: the data volume is made writable through fsGroup, so a high UID (CKV_K8S_40) is used.
SEAWEEDFS_UID = 10001
S3_PORT = 8333
METRICS_PORT = 9327
MASTER_PORT = 9333
VOLUME_PORT = 9340
FILER_PORT = 8888
#: SeaweedFS serves gRPC on the HTTP port + 10000 (master 19333, filer 18888, volume 19340).
GRPC_OFFSET = 10000
#: Service exposing S3 and metrics to the cluster (and, through the HTTPRoute, to the host).
SERVICE = "seaweedfs"
#: Service exposing the master and filer to ``weed shell`` Jobs only (see the NetworkPolicy).
ADMIN_SERVICE = "seaweedfs-admin"
#: Pods in the storage namespace carrying this label (value "true") may reach the master and
#: filer ports, which have no authentication of their own.
ADMIN_CLIENT_LABEL = "mlplane.dev/seaweedfs-admin"
#: What a bucket-scoped identity may do: everything on objects of its buckets, nothing else.
BUCKET_ACTIONS: tuple[str, ...] = ("Read", "Write", "List", "Tagging")
#: The identity MLflow's tracking server uses, limited to the artifacts bucket.
MLFLOW_IDENTITY = "mlflow"
#: The identity the platform's CI job pods use, limited to the datasets bucket
#: (ci_runners.datasets_access).
RUNNERS_IDENTITY = "ci-runners"
#: What ``ci_runners.datasets_access`` grants that identity. 'read-only' is what `dvc pull`
#: needs: it fetches objects by key and lists the remote's cache directory.
DATASETS_ACTIONS: dict[str, tuple[str, ...]] = {"read-only": ("Read", "List"), "read-write": BUCKET_ACTIONS}
#: Identity names a team may not take: the platform's own, and SeaweedFS's special ones.
RESERVED_IDENTITIES = frozenset({MLFLOW_IDENTITY, RUNNERS_IDENTITY, "admin", "anonymous"})
#: SeaweedFS ignores the region; clients still send one.
BUNDLED_REGION = "us-east-1"
#: Pod annotation carrying :func:`content_digest` of the Secrets a pod reads at start.
CREDENTIALS_DIGEST = "mlplane.dev/credentials-digest"
#: Longest identity name: it keeps the Job name ``s3-grant-<identity>-<digest>`` a DNS label.
IDENTITY_MAX = 40

_BUCKET = TypeAdapter(BucketName)
_IDENTITY = TypeAdapter(DnsLabel)

#: The Job script: idempotent, re-runnable, and silent about secrets. ``weed shell`` reports
#: command errors on its output but exits 0, so every step is verified by reading state back.
GRANT_SCRIPT = scripts.text("s3_grant.sh")


def content_digest(*parts: pulumi.Input[str]) -> pulumi.Output[str]:
    """A short, stable, non-secret digest of some inputs (secret ones included).

    Used to name immutable Jobs (a change of what they do yields a new Job, not an in-place
    update Kubernetes would reject) and to roll pods when the Secrets they read change. Ten hex
    characters of SHA-256 reveal nothing usable about a generated secret.
    """
    digest = pulumi.Output.all(*parts).apply(
        lambda values: hashlib.sha256("\0".join(str(v) for v in values).encode()).hexdigest()[:10]
    )
    return pulumi.Output.unsecret(digest)


@dataclass(frozen=True)
class GrantTarget:
    """The SeaweedFS a grant Job configures, and where such Jobs run.

    Derived from the platform name by :func:`seaweedfs_target`, so a separate stack can build it
    from its own :class:`kube.Platform` without reading the platform stack's outputs.
    """

    namespace: str
    image: str
    master: str
    filer: str
    resources: Resources
    labels: Mapping[str, str] = field(default_factory=dict)


def seaweedfs_target(platform: kube.Platform, resources: Resources) -> GrantTarget:
    """The bundled SeaweedFS of ``platform`` (namespace ``<platform>-storage``)."""
    namespace = f"{platform.name}-storage"
    host = f"{ADMIN_SERVICE}.{namespace}.svc.cluster.local"
    return GrantTarget(
        namespace=namespace,
        image=platform.image("seaweedfs"),
        master=f"{host}:{MASTER_PORT}",
        filer=f"{host}:{FILER_PORT}",
        resources=resources,
        labels=platform.labels("storage", "s3-grant"),
    )


@dataclass(frozen=True)
class BucketGrant:
    """One S3 identity limited to some buckets, and the buckets to create first.

    The identity may do ``actions`` (default Read, Write, List, Tagging) on ``buckets`` and
    nothing else: no other bucket, no bucket creation or deletion, no admin operation.
    """

    identity: str
    buckets: tuple[str, ...]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    actions: tuple[str, ...] = BUCKET_ACTIONS
    #: Further buckets to create that the identity is NOT granted.
    other_buckets: tuple[str, ...] = ()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        _IDENTITY.validate_python(self.identity)
        if len(self.identity) > IDENTITY_MAX:
            raise ValueError(f"identity '{self.identity}' is longer than {IDENTITY_MAX} characters")
        if not self.buckets:
            raise ValueError(f"identity '{self.identity}' needs at least one bucket")
        for bucket in (*self.buckets, *self.other_buckets):
            _BUCKET.validate_python(bucket)
        unknown = set(self.actions) - set(BUCKET_ACTIONS)
        if not self.actions or unknown:
            raise ValueError(
                f"actions must be a non-empty subset of {', '.join(BUCKET_ACTIONS)} (given: {self.actions})"
            )


def bucket_grant_job(
    name: str,
    grant: BucketGrant,
    target: GrantTarget,
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.batch.v1.Job:
    """Create (if missing) the grant's buckets and (re)define its identity in a bundled SeaweedFS.

    For a team stack that is deployed after, and separately from, the platform stack: it adds
    a Secret ``s3-identity-<identity>`` and a Job ``s3-grant-<identity>-<digest>`` to the
    storage namespace and changes nothing the platform stack owns. The Job is idempotent; a
    change of the grant (keys included) creates a new Job. Re-running redefines the identity from
    scratch, so a rotated key replaces the old one. Pass ``opts`` with the team component as
    parent and the cluster's provider.
    """
    if grant.identity in RESERVED_IDENTITIES:
        raise ValueError(
            f"identity '{grant.identity}' is reserved by the platform ({', '.join(sorted(RESERVED_IDENTITIES))})"
        )
    return _grant_job(name, grant, target, opts or pulumi.ResourceOptions())


def _grant_job(
    name: str, grant: BucketGrant, target: GrantTarget, opts: pulumi.ResourceOptions
) -> k8s.batch.v1.Job:
    grant.validate()
    labels = dict(target.labels)
    secret_name = f"s3-identity-{grant.identity}"
    secret = k8s.core.v1.Secret(
        f"{name}-credentials",
        metadata={"name": secret_name, "namespace": target.namespace, "labels": labels},
        type="Opaque",
        string_data={
            "access-key-id": grant.access_key_id,
            "secret-access-key": pulumi.Output.secret(grant.secret_access_key),
        },
        opts=opts,
    )
    plain = {
        "SEAWEEDFS_MASTER": target.master,
        "SEAWEEDFS_FILER": target.filer,
        "CREATE_BUCKETS": " ".join((*grant.buckets, *grant.other_buckets)),
        "S3_IDENTITY": grant.identity,
        "S3_BUCKETS": ",".join(grant.buckets),
        "S3_ACTIONS": ",".join(grant.actions),
        "HOME": "/tmp",
    }
    digest = content_digest(
        target.image, GRANT_SCRIPT, *plain.values(), grant.access_key_id, grant.secret_access_key
    )
    container = kube.container(
        "grant",
        target.image,
        target.resources,
        command=["/bin/sh", "-c", GRANT_SCRIPT],
        env=[
            *({"name": key, "value": value} for key, value in plain.items()),
            kube.secret_env("S3_ACCESS_KEY_ID", secret.metadata.name, "access-key-id"),
            kube.secret_env("S3_SECRET_ACCESS_KEY", secret.metadata.name, "secret-access-key"),
        ],
        liveness={},
        readiness={},
        mounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    # A Job runs to completion: probes do not apply (checkov does not ask them of Jobs either).
    del container["livenessProbe"], container["readinessProbe"]
    pod_labels = {**labels, ADMIN_CLIENT_LABEL: "true"}
    template = kube.Workload(
        containers=[container],
        uid=SEAWEEDFS_UID,
        volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    ).template(pod_labels)
    template["spec"]["restartPolicy"] = "Never"
    return k8s.batch.v1.Job(
        f"{name}-job",
        metadata={
            "name": pulumi.Output.concat("s3-grant-", grant.identity, "-", digest),
            "namespace": target.namespace,
            "labels": labels,
            "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
        },
        spec={"backoffLimit": 3, "activeDeadlineSeconds": 900, "template": template},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[secret])),
    )


@dataclass(frozen=True)
class ObjectStorageArgs:
    config: ObjectStorageConfig
    platform: kube.Platform
    gateway: kube.GatewayRef


class ObjectStorage(pulumi.ComponentResource):
    """S3 buckets for artifacts, datasets and models, and the credentials to use them.

    Outputs: ``endpoint`` (in-cluster S3 URL), ``region``, ``artifacts_bucket``,
    ``datasets_bucket``, ``models_bucket``, ``admin_access_key_id``,
    ``admin_secret_access_key`` (secret), ``mlflow_access_key_id``,
    ``mlflow_secret_access_key`` (secret; an identity limited to the artifacts bucket when
    bundled), ``external_url`` (S3 from the host), ``namespace`` (empty when external).
    Attributes: ``grant_target`` (for :func:`bucket_grant_job`; None when external), ``ready``
    (resources to depend on before using the buckets and keys), ``scrape_targets``, ``uis``.
    """

    endpoint: pulumi.Output[str]
    region: pulumi.Output[str]
    artifacts_bucket: pulumi.Output[str]
    datasets_bucket: pulumi.Output[str]
    models_bucket: pulumi.Output[str]
    admin_access_key_id: pulumi.Output[str]
    admin_secret_access_key: pulumi.Output[str]
    mlflow_access_key_id: pulumi.Output[str]
    mlflow_secret_access_key: pulumi.Output[str]
    external_url: pulumi.Output[str]
    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: ObjectStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self.grant_target: GrantTarget | None = None
        self.ready: list[pulumi.Resource] = []
        buckets = args.config.buckets
        self.artifacts_bucket = pulumi.Output.from_input(buckets.artifacts)
        self.datasets_bucket = pulumi.Output.from_input(buckets.datasets)
        self._datasets = buckets.datasets
        self.models_bucket = pulumi.Output.from_input(buckets.models)
        if args.config.mode == "external":
            self._external(args)
        else:
            self._bundled(name, args)
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "region": self.region,
                "artifacts_bucket": self.artifacts_bucket,
                "datasets_bucket": self.datasets_bucket,
                "models_bucket": self.models_bucket,
                "admin_access_key_id": self.admin_access_key_id,
                "admin_secret_access_key": self.admin_secret_access_key,
                "mlflow_access_key_id": self.mlflow_access_key_id,
                "mlflow_secret_access_key": self.mlflow_secret_access_key,
                "external_url": self.external_url,
            }
        )

    def _external(self, args: ObjectStorageArgs) -> None:
        ext = args.config.external
        assert ext is not None  # guaranteed by ObjectStorageConfig validation
        access_key_id = pulumi.Output.secret(args.platform.secret(ext.access_key_id_key))
        secret_access_key = pulumi.Output.secret(args.platform.secret(ext.secret_access_key_key))
        self.endpoint = pulumi.Output.from_input(ext.endpoint)
        self.external_url = pulumi.Output.from_input(ext.endpoint)
        self.region = pulumi.Output.from_input(ext.region)
        self.admin_access_key_id = access_key_id
        self.admin_secret_access_key = secret_access_key
        self.mlflow_access_key_id = access_key_id
        self.mlflow_secret_access_key = secret_access_key
        self.namespace = pulumi.Output.from_input("")

    def _bundled(self, name: str, args: ObjectStorageArgs) -> None:
        platform, cfg = args.platform, args.config.bundled
        ns_name = f"{platform.name}-storage"
        ns = kube.namespace(
            platform, f"{name}-namespace", ns_name, parent=self, component="storage", gateway_access=True
        )
        namespace = ns.metadata.name
        labels = platform.labels("storage", SERVICE)
        selector = platform.selector("storage", SERVICE)

        admin_key, admin_secret = self._keys(name, "admin")
        mlflow_key, mlflow_secret = self._keys(name, MLFLOW_IDENTITY)
        admin_credentials = k8s.core.v1.Secret(
            f"{name}-admin-credentials",
            metadata={"name": "seaweedfs-admin-credentials", "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"access-key-id": admin_key, "secret-access-key": admin_secret},
            opts=pulumi.ResourceOptions(parent=self),
        )
        statefulset = self._statefulset(
            name, args, namespace, labels, selector, admin_credentials.metadata.name,
            content_digest(admin_key, admin_secret),
        )
        self._services(name, namespace, labels, selector)
        self._network_policies(name, namespace, labels, selector)
        self._egress(name, namespace, labels, selector)
        kube.http_route(
            f"{name}-route",
            name="s3",
            namespace=namespace,
            labels=labels,
            gateway=args.gateway,
            host=args.gateway.host("s3"),
            backends=[(SERVICE, S3_PORT, 1)],
            parent=self,
        )
        self.grant_target = seaweedfs_target(platform, cfg.setup_job_resources)
        buckets = args.config.buckets
        setup = _grant_job(
            f"{name}-setup",
            BucketGrant(
                identity=MLFLOW_IDENTITY,
                buckets=(buckets.artifacts,),
                access_key_id=mlflow_key,
                secret_access_key=mlflow_secret,
                other_buckets=(buckets.datasets, buckets.models),
            ),
            self.grant_target,
            pulumi.ResourceOptions(parent=self, depends_on=[statefulset]),
        )
        self.ready = [setup]

        self.namespace = namespace
        self.endpoint = pulumi.Output.concat("http://", SERVICE, ".", namespace, f".svc.cluster.local:{S3_PORT}")
        self.external_url = pulumi.Output.from_input(args.gateway.url("s3"))
        self.region = pulumi.Output.from_input(BUNDLED_REGION)
        self.admin_access_key_id = admin_key
        self.admin_secret_access_key = pulumi.Output.secret(admin_secret)
        self.mlflow_access_key_id = mlflow_key
        self.mlflow_secret_access_key = pulumi.Output.secret(mlflow_secret)
        self.scrape_targets = [
            kube.ScrapeTarget(job="seaweedfs", namespace=ns_name, selector=selector, port="metrics")
        ]
        self.uis = [kube.Ui(key="s3", title="S3 endpoint (SeaweedFS)", url=args.gateway.url("s3"))]

    def runners_identity(
        self, name: str, access: str
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]] | None:
        """The CI job pods' identity (RUNNERS_IDENTITY), limited to the datasets bucket with
        DATASETS_ACTIONS[access]: its generated keys and a grant Job (children of this component).

        None when the store is external (mlplane creates no keys there) or ``access`` is 'none'.
        """
        if self.grant_target is None or access == "none":
            return None
        key_id, secret = self._keys(name, RUNNERS_IDENTITY)
        _grant_job(
            f"{name}-{RUNNERS_IDENTITY}",
            BucketGrant(
                identity=RUNNERS_IDENTITY,
                buckets=(self._datasets,),
                access_key_id=key_id,
                secret_access_key=secret,
                actions=DATASETS_ACTIONS[access],
            ),
            self.grant_target,
            # After the platform's own grant (which creates the datasets bucket): two grant Jobs
            # must not rewrite the identity configuration at the same time.
            pulumi.ResourceOptions(parent=self, depends_on=self.ready),
        )
        return key_id, pulumi.Output.secret(secret)

    def _keys(self, name: str, identity: str) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A generated access key id (20 characters, like AWS's) and secret key (40)."""
        key_id = random.RandomString(
            f"{name}-{identity}-access-key-id",
            length=20,
            special=False,
            lower=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret = random.RandomPassword(
            f"{name}-{identity}-secret-access-key",
            length=40,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key_id.result, secret.result

    def _statefulset(
        self,
        name: str,
        args: ObjectStorageArgs,
        namespace: pulumi.Output[str],
        labels: Mapping[str, str],
        selector: Mapping[str, str],
        admin_secret: pulumi.Input[str],
        credentials_digest: pulumi.Output[str],
    ) -> k8s.apps.v1.StatefulSet:
        platform, cfg = args.platform, args.config.bundled
        server = kube.container(
            "seaweedfs",
            platform.image("seaweedfs"),
            cfg.resources,
            command=["weed"],
            args=server_args(),
            env=[
                kube.secret_env("AWS_ACCESS_KEY_ID", admin_secret, "access-key-id"),
                kube.secret_env("AWS_SECRET_ACCESS_KEY", admin_secret, "secret-access-key"),
                {"name": "HOME", "value": "/tmp"},
            ],
            ports=[
                ("s3", S3_PORT),
                ("metrics", METRICS_PORT),
                ("master", MASTER_PORT),
                ("master-grpc", MASTER_PORT + GRPC_OFFSET),
                ("volume", VOLUME_PORT),
                ("volume-grpc", VOLUME_PORT + GRPC_OFFSET),
                ("filer", FILER_PORT),
                ("filer-grpc", FILER_PORT + GRPC_OFFSET),
            ],
            liveness=kube.http_probe("/healthz", "s3", period=15, failures=4),
            readiness=kube.http_probe("/healthz", "s3", period=5),
            mounts=[{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        )
        server["startupProbe"] = kube.http_probe("/healthz", "s3", period=5, failures=60)
        workload = kube.Workload(
            containers=[server],
            uid=SEAWEEDFS_UID,
            fs_group=SEAWEEDFS_UID,
            volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        )
        template = workload.template(labels)
        # Rolls the pod when the admin credentials it reads at start change.
        template["metadata"]["annotations"] = {CREDENTIALS_DIGEST: credentials_digest}
        return k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={
                "name": SERVICE,
                "namespace": namespace,
                "labels": dict(labels),
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={
                "serviceName": SERVICE,
                "replicas": 1,
                "selector": {"matchLabels": dict(selector)},
                "template": template,
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain" if platform.protect_stateful else "Delete",
                    "whenScaled": "Retain",
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": dict(labels)},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": cfg.storage_size}},
                        },
                    }
                ],
            },
            opts=platform.stateful(self),
        )

    def _services(
        self, name: str, namespace: pulumi.Output[str], labels: Mapping[str, str], selector: Mapping[str, str]
    ) -> None:
        kube.service(
            f"{name}-service",
            name=SERVICE,
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[("s3", S3_PORT, "s3"), ("metrics", METRICS_PORT, "metrics")],
            parent=self,
            # Governs the StatefulSet (serviceName); clients resolve it to the pod's IP.
            headless=True,
        )
        kube.service(
            f"{name}-admin-service",
            name=ADMIN_SERVICE,
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[
                ("master", MASTER_PORT, "master"),
                ("master-grpc", MASTER_PORT + GRPC_OFFSET, "master-grpc"),
                ("filer", FILER_PORT, "filer"),
                ("filer-grpc", FILER_PORT + GRPC_OFFSET, "filer-grpc"),
            ],
            parent=self,
        )

    def _network_policies(
        self, name: str, namespace: pulumi.Output[str], labels: Mapping[str, str], selector: Mapping[str, str]
    ) -> None:
        """S3 and metrics for everyone; master and filer (no authentication) for grant Jobs only.

        Grant Jobs (the platform's and later teams') serve nothing: they admit no ingress.
        """
        admin_ports = (MASTER_PORT, MASTER_PORT + GRPC_OFFSET, FILER_PORT, FILER_PORT + GRPC_OFFSET)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-grant-network-policy",
            metadata={"name": "s3-grant", "namespace": namespace, "labels": dict(labels)},
            spec={
                "podSelector": {"matchLabels": {ADMIN_CLIENT_LABEL: "true"}},
                "policyTypes": ["Ingress"],
                "ingress": [],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"name": SERVICE, "namespace": namespace, "labels": dict(labels)},
            spec={
                "podSelector": {"matchLabels": dict(selector)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"ports": _tcp(S3_PORT, METRICS_PORT)},
                    {
                        "from": [{"podSelector": {"matchLabels": {ADMIN_CLIENT_LABEL: "true"}}}],
                        "ports": _tcp(*admin_ports),
                    },
                    {"from": [{"podSelector": {"matchLabels": dict(selector)}}]},
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )


    def _egress(
        self, name: str, namespace: pulumi.Output[str], labels: Mapping[str, str], selector: Mapping[str, str]
    ) -> None:
        """Default deny; SeaweedFS talks to itself only, grant Jobs to its master, filer and S3."""
        kube.isolate_namespace(name, namespace=namespace, labels=labels, parent=self)
        admin_ports = (MASTER_PORT, MASTER_PORT + GRPC_OFFSET, FILER_PORT, FILER_PORT + GRPC_OFFSET, S3_PORT)
        to_server = [{"podSelector": {"matchLabels": dict(selector)}}]
        kube.egress_only_to(
            f"{name}-egress",
            name=f"{SERVICE}-egress",
            namespace=namespace,
            labels=labels,
            pods=selector,
            rules=[{"to": to_server}],
            parent=self,
        )
        kube.egress_only_to(
            f"{name}-grant-egress",
            name="s3-grant-egress",
            namespace=namespace,
            labels=labels,
            pods={ADMIN_CLIENT_LABEL: "true"},
            rules=[{"to": to_server, "ports": _tcp(*admin_ports)}],
            parent=self,
        )


def server_args() -> list[str]:
    """``weed mini``: master, volume, filer and S3 in one process, every port explicit."""
    return [
        "-logtostderr=true",
        "mini",
        "-dir=/data",
        "-ip.bind=0.0.0.0",
        f"-master.port={MASTER_PORT}",
        f"-volume.port={VOLUME_PORT}",
        f"-filer.port={FILER_PORT}",
        f"-s3.port={S3_PORT}",
        f"-metricsPort={METRICS_PORT}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
    ]


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]
