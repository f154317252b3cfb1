"""A team's credentials for the platform's backing services, in its own namespaces.

The grants themselves (its bucket and S3 identity, its MLflow workspace and account, and their
revocation when the team is offboarded) are made by the platform stack in its namespaces
(mlplane.services.team_grants); the team stack reads what they generated from the platform's
secret output ``teamCredentials`` and writes it into Secrets of the team's namespaces.

On a platform whose store binds workloads (S3 and ECR on AWS) there is no S3 key: the platform
binds roles to the team's service accounts (mlplane.services.team_grants.bound_accounts), the
team stack creates those accounts and runs its pods as them, and writes no ``s3-credentials``
Secret; where the bucket is (endpoint, region, its physical name) is in the ``team-environment``
ConfigMap of both namespaces.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from mlplane.backing import workload_identity
from mlplane.services import team_grants
from mlplane.team.names import MLFLOW_SECRET, S3_SECRET


class Grants:
    """The Team's credentials: its S3 identity and its MLflow account."""

    def _bound(self) -> list[tuple[str, str, str | None, bool]]:
        """The team's service accounts the platform binds to roles (empty: it hands out keys)."""
        if not self._args.binds_workloads:
            return []
        return team_grants.bound_accounts(
            self._args.config, self.work.name, self.serving.name, registry_push=True
        )

    def _workload_account(self, namespace: str, account: str) -> workload_identity.PodIdentity | None:
        """The identity of ``account`` in ``namespace`` when the platform binds it."""
        if (namespace, account) in {(found[0], found[1]) for found in self._bound()}:
            return workload_identity.PodIdentity(namespace=namespace, service_account=account)
        return None

    def _workload_accounts(self) -> None:
        """The work namespace's bound service account (CI job pods, members' pods that need the
        bucket or the registry push): no API token; the serving namespace's are made with its
        inference objects (mlplane.services.drift)."""
        for namespace, account, _, _ in self._bound():
            if namespace == self.work.name:
                identity = workload_identity.PodIdentity(namespace=namespace, service_account=account)
                workload_identity.service_account(
                    f"{self._name}-work-{account}-account", identity, self._labels(account), parent=self
                )

    def _object_storage(self) -> None:
        cfg, out = self._args.config, self._args.outputs
        if self._args.binds_workloads:
            # No key: the bound service accounts (_workload_accounts) and team-environment.
            self.bucket = self._bucket_name
            return
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
