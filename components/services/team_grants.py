"""A team's grants on the platform's backing services, made by the platform stack.

Everything that has to run or live in the platform's own namespaces for a team belongs to the
platform stack, which holds the admin identity there:

- the team's S3 identity and bucket in the bundled SeaweedFS: a Secret ``s3-identity-team-<name>``
  and a grant Job in ``<platform>-storage`` (:func:`mlplane.backing.object_storage.bucket_grant_job`);
- the team's MLflow workspace, account and role: a Secret ``team-<name>-mlflow-setup`` with the
  team's password, a NetworkPolicy admitting nothing to the Job's pod, and a Job in
  ``<platform>-tracking`` that calls MLflow's REST API with the platform's admin credential;
- while a team is offboarded (``mlplane:offboardTeams`` on the platform stack, set only by
  `mlplane team destroy` in a copy of the config), revoke Jobs instead of the grant Jobs;
- with a store that grants teams roles instead of keys (S3 on AWS,
  :class:`mlplane.backing.workload_identity.GrantsTeams`): the team's bucket and one role per
  service account of :func:`team_bindings`, bound by EKS Pod Identity, with no key at all
  (``teamCredentials`` then holds only the MLflow password). An offboarded team keeps its bucket
  (protected outside throwaway stacks: its data is deleted by an administrator, never by a
  destroy) and loses its roles.

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
from mlplane.backing.workload_identity import BucketAccess, GrantsTeams, PushesWithIdentity, TeamBinding
from mlplane.config import Resources
from mlplane.config.team import TeamConfig
from mlplane.core import kube
from mlplane.services import ci_runners, drift, tracking

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
#: With a store that grants teams roles: every service account a pod in a team's work or serving
#: namespace may run as besides ``default`` (mlplane.services.admission): the CI job pods (and the
#: members' own pods that need the bucket), the logging model pods, the drift jobs, the exporter.
WORKLOAD_ACCOUNTS: tuple[str, ...] = (ci_runners.JOB_ACCOUNT, *drift.ACCOUNTS.values())


def team_bindings(
    team: TeamConfig, work_namespace: str, serving_namespace: str,
    push_statements: Sequence[Mapping[str, Any]] = (),
) -> list[TeamBinding]:
    """The service accounts of a team a store that grants teams roles binds, and what each may do:

    - work namespace, ``ci-jobs`` (its CI job pods; the members' own pods that need S3): read and
      write its bucket (with 'object_storage') and ``push_statements`` (the registry's push to the
      team's repositories, with 'registry' and runners);
    - serving namespace, with logging: ``inference-logger`` (model pods that log) read-write, and
      with drift ``drift-job`` read-write (it writes its results) and ``drift-exporter`` read-only.

    The team stack runs its workloads as exactly these (mlplane.team, :func:`bound_accounts`)."""
    return [
        TeamBinding(namespace, account, access, list(push_statements) if push else [])
        for namespace, account, access, push in bound_accounts(
            team, work_namespace, serving_namespace, registry_push=bool(push_statements)
        )
    ]


def bound_accounts(
    team: TeamConfig, work_namespace: str, serving_namespace: str, *, registry_push: bool
) -> list[tuple[str, str, BucketAccess | None, bool]]:
    """(namespace, service account, bucket access, registry push) of :func:`team_bindings`:
    what the platform binds and the team stack runs its pods as (``registry_push``: the
    registry takes pushes with a workload identity)."""
    found: list[tuple[str, str, BucketAccess | None, bool]] = []
    storage = team.uses("object_storage")
    push = registry_push and team.uses("registry") and team.ci_runners.enabled
    if storage or push:
        found.append((work_namespace, ci_runners.JOB_ACCOUNT, "read-write" if storage else None, push))
    if storage and team.serving.logging:
        found.append((serving_namespace, drift.ACCOUNTS["logger"], "read-write", False))
        if team.serving.drift:
            found.append((serving_namespace, drift.ACCOUNTS["drift"], "read-write", False))
            found.append((serving_namespace, drift.ACCOUNTS["exporter"], "read-only", False))
    return found


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
    #: The physical name of the team's bucket when the store names it (S3: ``<bucket>-<suffix>``),
    #: published in the platform's (plain) output ``teamBuckets``, not in ``teamCredentials``.
    bucket: pulumi.Output[str] | None = None

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
    storage: GrantsTeams | None = None,
    registry: PushesWithIdentity | None = None,
) -> TeamCredentials:
    """The grants of ``team`` (children of ``parent``, named ``<name>-<role>``): its S3 identity
    and bucket when it uses object storage and the store is bundled (``object_storage_namespace``),
    or its bucket and workload roles when the store grants teams roles (``storage``; children of
    the store), its MLflow workspace and account when it uses tracking."""
    s3_key_id = s3_secret = password = None
    bucket: pulumi.Output[str] | None = None
    if storage is not None:
        bucket = _workload_roles(team, platform, storage, registry, offboarding)
    elif team.uses("object_storage") and object_storage_namespace:
        s3_key_id, s3_secret = _object_storage(name, team, platform, parent, offboarding)
    if team.uses("tracking") and tracking_namespace:
        password = _tracking(name, team, platform, parent, tracking_uri, offboarding)
    return TeamCredentials(s3_key_id, s3_secret, password, bucket)


def _workload_roles(
    team: TeamConfig, platform: kube.Platform, storage: GrantsTeams, registry: PushesWithIdentity | None,
    offboarding: Offboarding | None,
) -> pulumi.Output[str] | None:
    """The team's bucket and roles on a store that grants teams roles; returns the bucket's
    physical name (None without 'object_storage': roles for the registry push only)."""
    work, serving = team.namespaces(platform.name)
    push = registry.team_push_statements(team.name) if registry is not None else []
    bindings = [] if offboarding is not None else team_bindings(team, work, serving, push)
    if not team.uses("object_storage") and not bindings:
        return None
    bucket, _ = storage.grant_team(team.name, team.bucket if team.uses("object_storage") else None, bindings)
    return bucket.bucket if bucket is not None else None


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
        _job_template(container, tracking.MLFLOW_UID, labels, platform.place("system")),
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


def _job_template(
    container: dict[str, Any], uid: int, labels: Mapping[str, str], placement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    template = kube.Workload(
        containers=[container], uid=uid, volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        placement=placement or {},
    ).template(labels)
    template["spec"]["restartPolicy"] = "Never"
    return template
