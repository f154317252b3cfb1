"""A team's grants on the platform's backing services, made by the platform stack.

Everything that has to run or live in the platform's own namespaces for a team belongs to the
platform stack, which holds the admin identity there:

- the team's S3 identity and bucket in the bundled SeaweedFS: a Secret ``s3-identity-team-<name>``
  and a grant Job in ``<platform>-storage`` (:func:`mlplane.backing.object_storage.bucket_grant_job`);
- the team's MLflow workspace, account and role: a Secret ``team-<name>-mlflow-setup`` with the
  team's password, a NetworkPolicy admitting nothing to the Job's pod, and a Job in
  ``<platform>-tracking`` that calls MLflow's REST API with the platform's admin credential;
- while a team is offboarded (``mlplane:offboardTeams`` on the platform stack, set only by
  `mlplane team destroy` in a copy of the config), revoke Jobs instead of the grant Jobs.

The credentials (generated here) reach the team stack through the platform's secret output
``teamCredentials``; the team stack writes them into Secrets of its own namespaces. So a team's
provisioning identity needs no right at all in the storage and tracking namespaces: it cannot run a
Job next to the platform's admin credentials, and the kubernetes provider never has to list or
watch objects there on its behalf (it cannot, and its deletion await would wait for ever).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from mlplane import scripts
from mlplane.backing import object_storage
from mlplane.config import Resources
from mlplane.config.team import TeamConfig
from mlplane.core import kube
from mlplane.services import tracking

#: The MLflow role that gives the team account MANAGE on its workspace.
MLFLOW_ROLE = "team"
#: Creates (grant) or removes (revoke) the team's MLflow workspace, account and role through
#: MLflow's REST API. Idempotent; standard library only; never prints a secret.
MLFLOW_SCRIPT = scripts.text("team_mlflow.py")
#: Removes the team's S3 identity and (unless data is kept) its bucket from the bundled SeaweedFS.
#: ``weed shell`` reports command errors on its output but exits 0: the result is read back.
S3_REVOKE_SCRIPT = scripts.text("team_s3_revoke.sh")
#: How an offboarded team's data is treated (``mlplane:offboardTeams`` values).
OFFBOARDING_MODES = ("delete-data", "keep-data")


@dataclass(frozen=True)
class Offboarding:
    """A team being offboarded: its grant Jobs become revoke Jobs."""

    delete_data: bool = True


@dataclass(frozen=True)
class TeamCredentials:
    """What the platform generated for one team (each None when the team does not use that service)."""

    s3_access_key_id: pulumi.Output[str] | None = None
    s3_secret_access_key: pulumi.Output[str] | None = None
    mlflow_password: pulumi.Output[str] | None = None

    def output(self) -> dict[str, pulumi.Output[str]]:
        """The ``teamCredentials.<team>`` entry (the whole output is secret)."""
        values = {
            "s3AccessKeyId": self.s3_access_key_id,
            "s3SecretAccessKey": self.s3_secret_access_key,
            "mlflowPassword": self.mlflow_password,
        }
        return {key: value for key, value in values.items() if value is not None}


def grant_team(
    name: str,
    team: TeamConfig,
    platform: kube.Platform,
    parent: pulumi.Resource,
    *,
    object_storage_namespace: bool,
    tracking_namespace: bool,
    tracking_uri: pulumi.Input[str],
    offboarding: Offboarding | None = None,
) -> TeamCredentials:
    """The grants of ``team`` (children of ``parent``, named ``<name>-<role>``): its S3 identity
    and bucket when it uses object storage and the store is bundled (``object_storage_namespace``),
    its MLflow workspace and account when it uses tracking."""
    s3_key_id = s3_secret = password = None
    if team.uses("object_storage") and object_storage_namespace:
        s3_key_id, s3_secret = _object_storage(name, team, platform, parent, offboarding)
    if team.uses("tracking") and tracking_namespace:
        password = _tracking(name, team, platform, parent, tracking_uri, offboarding)
    return TeamCredentials(s3_key_id, s3_secret, password)


def _object_storage(
    name: str, team: TeamConfig, platform: kube.Platform, parent: pulumi.Resource, offboarding: Offboarding | None
) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    child = pulumi.ResourceOptions(parent=parent)
    key_id = random.RandomString(f"{name}-s3-access-key-id", length=20, special=False, lower=False, opts=child).result
    secret_key = pulumi.Output.secret(
        random.RandomPassword(f"{name}-s3-secret-access-key", length=40, special=False, opts=child).result
    )
    target = object_storage.seaweedfs_target(platform, team.object_storage.setup_job_resources)
    target = object_storage.GrantTarget(
        namespace=target.namespace, image=target.image, master=target.master, filer=target.filer,
        resources=target.resources, labels={**target.labels, kube.TEAM_LABEL: team.name},
    )
    grant = object_storage.BucketGrant(
        identity=team.identity, buckets=(team.bucket,), access_key_id=key_id, secret_access_key=secret_key
    )
    if offboarding is not None:
        _s3_revoke(name, grant, target, parent, offboarding)
    else:
        object_storage.bucket_grant_job(f"{name}-s3-grant", grant, target, child)
    return key_id, secret_key


def _s3_revoke(
    name: str, grant: object_storage.BucketGrant, target: object_storage.GrantTarget, parent: pulumi.Resource,
    offboarding: Offboarding,
) -> None:
    """A Job removing the identity (and the bucket, unless data is kept)."""
    plain = {
        "SEAWEEDFS_MASTER": target.master,
        "SEAWEEDFS_FILER": target.filer,
        "S3_IDENTITY": grant.identity,
        "S3_BUCKETS": " ".join(grant.buckets),
        "DELETE_BUCKETS": "true" if offboarding.delete_data else "false",
        "HOME": "/tmp",
    }
    container = _job_container(
        "revoke", target.image, target.resources, ["/bin/sh", "-c", S3_REVOKE_SCRIPT],
        [{"name": key, "value": value} for key, value in plain.items()],
    )
    labels = {**target.labels, object_storage.ADMIN_CLIENT_LABEL: "true"}
    digest = object_storage.content_digest(target.image, S3_REVOKE_SCRIPT, *plain.values())
    _job(
        f"{name}-s3-revoke-job",
        pulumi.Output.concat("s3-revoke-", grant.identity, "-", digest),
        target.namespace,
        dict(target.labels),
        _job_template(container, object_storage.SEAWEEDFS_UID, labels),
        parent,
    )


def _tracking(
    name: str, team: TeamConfig, platform: kube.Platform, parent: pulumi.Resource,
    tracking_uri: pulumi.Input[str], offboarding: Offboarding | None,
) -> pulumi.Output[str]:
    child = pulumi.ResourceOptions(parent=parent)
    tracking_ns = f"{platform.name}-tracking"
    password = pulumi.Output.secret(
        random.RandomPassword(f"{name}-mlflow-password", length=32, special=False, opts=child).result
    )
    labels = {**platform.labels("tracking", f"{team.identity}-setup"), kube.TEAM_LABEL: team.name}
    selector = platform.selector("tracking", f"{team.identity}-setup")
    setup_secret = k8s.core.v1.Secret(
        f"{name}-mlflow-setup-secret",
        metadata={"name": f"{team.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
        type="Opaque",
        # Only the team's own password: the Job reads the admin credential from the platform's
        # own Secret, so no copy of it is made.
        string_data={"team-password": password},
        opts=child,
    )
    # The Job serves nothing: no ingress at all.
    k8s.networking.v1.NetworkPolicy(
        f"{name}-mlflow-setup-network-policy",
        metadata={"name": f"{team.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
        spec={"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
        opts=child,
    )
    action = "revoke" if offboarding is not None else "grant"
    plain = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TEAM_ACTION": action,
        "TEAM_WORKSPACE": team.identity,
        "TEAM_USERNAME": team.identity,
        "TEAM_ROLE": MLFLOW_ROLE,
        "TEAM_DESCRIPTION": f"Team {team.name} (stack {team.stack})",
        # Read by a revoke only (a grant deletes nothing).
        "TEAM_DELETE_DATA": "false" if offboarding is not None and not offboarding.delete_data else "true",
        "HOME": "/tmp",
    }
    image = platform.image("mlflow")
    container = _job_container(
        f"mlflow-{action}", image, team.tracking.setup_job_resources, ["python", "-c", MLFLOW_SCRIPT],
        [
            *({"name": key, "value": value} for key, value in plain.items()),
            kube.secret_env("MLFLOW_ADMIN_USERNAME", tracking.ADMIN_SECRET, "username"),
            kube.secret_env("MLFLOW_ADMIN_PASSWORD", tracking.ADMIN_SECRET, "password"),
            kube.secret_env("TEAM_PASSWORD", setup_secret.metadata.name, "team-password"),
            *tracking.MLFLOW_TELEMETRY_ENV,
        ],
    )
    container["workingDir"] = "/tmp"
    digest = object_storage.content_digest(image, MLFLOW_SCRIPT, *plain.values(), password)
    _job(
        f"{name}-mlflow-{action}-job",
        pulumi.Output.concat(team.identity, f"-mlflow-{action}-", digest),
        tracking_ns,
        labels,
        _job_template(container, tracking.MLFLOW_UID, labels),
        parent,
        depends_on=[setup_secret],
    )
    return password


def _job(
    resource_name: str,
    name: pulumi.Input[str],
    namespace: str,
    labels: Mapping[str, str],
    template: dict[str, Any],
    parent: pulumi.Resource,
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
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
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
