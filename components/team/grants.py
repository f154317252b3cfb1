"""A team's credentials for the platform's backing services, in its own namespaces.

The grants themselves (its bucket and S3 identity, its MLflow workspace and account, and their
revocation when the team is offboarded) are made by the platform stack in its namespaces
(mlplane.services.team_grants); the team stack reads what they generated from the platform's
secret output ``teamCredentials`` and writes it into Secrets of the team's namespaces.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from mlplane.team.names import MLFLOW_SECRET, S3_SECRET


class Grants:
    """The Team's credentials: its S3 identity and its MLflow account."""

    def _object_storage(self) -> None:
        cfg, out = self._args.config, self._args.outputs
        key_id = out.credential("s3AccessKeyId")
        secret_key = out.credential("s3SecretAccessKey")
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

    def _tracking(self) -> None:
        cfg = self._args.config
        password = self._args.outputs.credential("mlflowPassword")
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
        self.mlflow_password: pulumi.Output[str] | None = password
