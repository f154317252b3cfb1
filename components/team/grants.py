"""A team's grants on the platform's backing services: its bucket and S3 identity, its MLflow
workspace and account."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from mlplane.backing import object_storage
from mlplane.config import Resources
from mlplane.core import kube
from mlplane.services import tracking
from mlplane.team.names import (
    MLFLOW_ROLE,
    MLFLOW_SCRIPT,
    MLFLOW_SECRET,
    S3_REVOKE_SCRIPT,
    S3_SECRET,
    TEAM_LABEL,
)


class Grants:
    """The Team's grants: its bucket and S3 identity, its MLflow workspace and account (and their revocation)."""

    def _object_storage(self) -> None:
        cfg, out = self._args.config, self._args.outputs
        key_id = random.RandomString(
            f"{self._name}-s3-access-key-id", length=20, special=False, lower=False, opts=self._child()
        ).result
        secret_key = pulumi.Output.secret(
            random.RandomPassword(f"{self._name}-s3-secret-access-key", length=40, special=False, opts=self._child()).result
        )
        target = object_storage.seaweedfs_target(self._platform, cfg.object_storage.setup_job_resources)
        target = object_storage.GrantTarget(
            namespace=target.namespace, image=target.image, master=target.master, filer=target.filer,
            resources=target.resources, labels={**target.labels, TEAM_LABEL: cfg.name},
        )
        grant = object_storage.BucketGrant(
            identity=cfg.identity, buckets=(cfg.bucket,), access_key_id=key_id, secret_access_key=secret_key
        )
        if self._args.offboarding:
            self._s3_revoke(grant, target)
        else:
            object_storage.bucket_grant_job(f"{self._name}-s3-grant", grant, target, self._child())
        k8s.core.v1.Secret(
            f"{self._name}-s3-credentials",
            metadata={"name": S3_SECRET, "namespace": self.work.name, "labels": self._labels(S3_SECRET)},
            type="Opaque",
            string_data={
                "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_ENDPOINT_URL_S3": out.s3_endpoint,
                "AWS_DEFAULT_REGION": out.s3_region,
                "MLPLANE_BUCKET": cfg.bucket,
            },
            opts=self._child(),
        )
        self.bucket = cfg.bucket
        self.s3_access_key_id = key_id
        self.s3_secret_access_key = secret_key

    def _s3_revoke(self, grant: object_storage.BucketGrant, target: object_storage.GrantTarget) -> None:
        """A Job removing the identity (and the bucket, unless data is kept)."""
        plain = {
            "SEAWEEDFS_MASTER": target.master,
            "SEAWEEDFS_FILER": target.filer,
            "S3_IDENTITY": grant.identity,
            "S3_BUCKETS": " ".join(grant.buckets),
            "DELETE_BUCKETS": "true" if self._args.delete_data else "false",
            "HOME": "/tmp",
        }
        container = _job_container(
            "revoke", target.image, target.resources, ["/bin/sh", "-c", S3_REVOKE_SCRIPT],
            [{"name": key, "value": value} for key, value in plain.items()],
        )
        labels = {**target.labels, object_storage.ADMIN_CLIENT_LABEL: "true"}
        digest = object_storage.content_digest(target.image, S3_REVOKE_SCRIPT, *plain.values())
        self._job(
            f"{self._name}-s3-revoke-job",
            pulumi.Output.concat("s3-revoke-", grant.identity, "-", digest),
            target.namespace,
            dict(target.labels),
            _job_template(container, object_storage.SEAWEEDFS_UID, labels),
        )

    # ----------------------------------------------------------------------------- tracking

    def _tracking(self) -> None:
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        tracking_ns = f"{plat.name}-tracking"
        password = pulumi.Output.secret(
            random.RandomPassword(f"{self._name}-mlflow-password", length=32, special=False, opts=self._child()).result
        )
        labels = {**self._platform.labels("tracking", f"{cfg.identity}-setup"), TEAM_LABEL: cfg.name}
        selector = self._platform.selector("tracking", f"{cfg.identity}-setup")
        setup_secret = k8s.core.v1.Secret(
            f"{self._name}-mlflow-setup-secret",
            metadata={"name": f"{cfg.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
            type="Opaque",
            # Only the team's own password: the Job reads the admin credential from the
            # platform's own Secret, so no copy of it is left behind (and none in team state).
            string_data={"team-password": password},
            opts=self._child(),
        )
        # The Job serves nothing: no ingress at all.
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-mlflow-setup-network-policy",
            metadata={"name": f"{cfg.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
            spec={"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
            opts=self._child(),
        )
        action = "revoke" if self._args.offboarding else "grant"
        plain = {
            "MLFLOW_TRACKING_URI": out.tracking_uri,
            "TEAM_ACTION": action,
            "TEAM_WORKSPACE": cfg.identity,
            "TEAM_USERNAME": cfg.identity,
            "TEAM_ROLE": MLFLOW_ROLE,
            "TEAM_DESCRIPTION": f"Team {cfg.name} (stack {cfg.stack})",
            "TEAM_DELETE_DATA": "true" if self._args.delete_data else "false",
            "HOME": "/tmp",
        }
        secret_name = setup_secret.metadata.name
        image = self._platform.image("mlflow")
        container = _job_container(
            f"mlflow-{action}", image, cfg.tracking.setup_job_resources, ["python", "-c", MLFLOW_SCRIPT],
            [
                *({"name": key, "value": value} for key, value in plain.items()),
                kube.secret_env("MLFLOW_ADMIN_USERNAME", tracking.ADMIN_SECRET, "username"),
                kube.secret_env("MLFLOW_ADMIN_PASSWORD", tracking.ADMIN_SECRET, "password"),
                kube.secret_env("TEAM_PASSWORD", secret_name, "team-password"),
                *tracking.MLFLOW_TELEMETRY_ENV,
            ],
        )
        container["workingDir"] = "/tmp"
        digest = object_storage.content_digest(image, MLFLOW_SCRIPT, *plain.values(), password)
        self._job(
            f"{self._name}-mlflow-{action}-job",
            pulumi.Output.concat(cfg.identity, f"-mlflow-{action}-", digest),
            tracking_ns,
            labels,
            _job_template(container, tracking.MLFLOW_UID, labels),
            depends_on=[setup_secret],
        )
        self._mlflow_secrets = {
            space.role: k8s.core.v1.Secret(
                f"{self._name}-{space.role}-mlflow-credentials",
                metadata={"name": MLFLOW_SECRET, "namespace": space.name, "labels": self._labels(MLFLOW_SECRET)},
                type="Opaque",
                string_data={"username": cfg.identity, "password": password},
                opts=self._child(),
            )
            for space in (self.work, self.serving)
        }
        self.mlflow_workspace = cfg.identity
        self.mlflow_username = pulumi.Output.from_input(cfg.identity)
        self.mlflow_password = password

    def _job(
        self,
        resource_name: str,
        name: pulumi.Input[str],
        namespace: str,
        labels: Mapping[str, str],
        template: dict[str, Any],
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        k8s.batch.v1.Job(
            resource_name,
            metadata={
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={"backoffLimit": 3, "activeDeadlineSeconds": 900, "template": template},
            opts=self._child(depends_on=list(depends_on)),
        )



def _job_container(
    name: str, image: str, spec: Resources, command: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    container = kube.container(
        name, image, spec, command=command, env=env, liveness={}, readiness={},
        mounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    # A Job runs to completion: probes do not apply (checkov does not ask them of Jobs either).
    del container["livenessProbe"], container["readinessProbe"]
    return container


def _job_template(container: dict[str, Any], uid: int, labels: Mapping[str, str]) -> dict[str, Any]:
    template = kube.Workload(
        containers=[container], uid=uid, volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    ).template(labels)
    template["spec"]["restartPolicy"] = "Never"
    return template
