"""Workload identity: how a service's pods reach the object store without static keys.

The contract between the services and a target's object store. The local store (SeaweedFS, or an
external S3 endpoint) hands out access keys, which services keep in a Secret; a store that offers
:class:`BindsWorkloads` (the AWS target's S3, ``mlplane.targets.aws.object_storage``) binds a
Kubernetes service account to a cloud role instead, and pods running as that account get
short-lived credentials from the node. Services ask :func:`bind` and get a :class:`PodIdentity`
or None (keys, as before): no AWS type ever reaches a service.

EKS Pod Identity (docs/components/aws-identity.md): the EKS Pod Identity webhook adds to every pod
of an associated service account the env ``AWS_CONTAINER_CREDENTIALS_FULL_URI=
http://169.254.170.23/v1/credentials`` and ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` with a
projected token volume of its own (EKS User Guide, "pod-id-how-it-works"; the same constants in
awslabs/aws-s3-csi-driver ``pkg/driver/node/credentialprovider`` tests). The agent listens on the
node's link-local 169.254.170.23 and [fd00:ec2::23], port 80 (EKS User Guide,
"pod-id-agent-setup", Considerations): pods need an egress rule to it, :meth:`PodIdentity.egress`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import pulumi
import pulumi_kubernetes as k8s

#: The EKS Pod Identity Agent's addresses and port (see the module docstring).
AGENT_CIDRS = ("169.254.170.23/32", "fd00:ec2::23/128")
AGENT_PORT = 80
#: What an identity may do on a bucket: read (get, list) or read and write (also put, delete).
BucketAccess = Literal["read-only", "read-write"]
#: The platform's buckets, by purpose (object_storage.buckets).
PURPOSES = ("artifacts", "datasets", "models")


@dataclass(frozen=True)
class PodIdentity:
    """Pods running as ``service_account`` in ``namespace`` hold the bound role's credentials."""

    namespace: str
    service_account: str
    #: Resources to create before the pods start (the association): without it the webhook
    #: does not inject the credentials and the pod starts with none.
    ready: Sequence[pulumi.Resource] = field(default_factory=tuple)

    @staticmethod
    def egress() -> dict[str, Any]:
        """NetworkPolicy egress rule: the node's Pod Identity Agent, where pods fetch credentials."""
        return {
            "to": [{"ipBlock": {"cidr": cidr}} for cidr in AGENT_CIDRS],
            "ports": [{"port": AGENT_PORT, "protocol": "TCP"}],
        }


@runtime_checkable
class BindsWorkloads(Protocol):
    """An object store that binds service accounts to a role scoped to some of its buckets."""

    def bind(
        self,
        name: str,
        namespace: str,
        service_account: str,
        buckets: Mapping[str, BucketAccess],
        *,
        statements: Sequence[Mapping[str, Any]] = (),
        prefixes: Sequence[str] = (),
    ) -> PodIdentity:
        """A role allowed ``buckets`` (purpose -> access; see :data:`PURPOSES`), only under the
        key ``prefixes`` when any are given, and ``statements`` (further IAM statements, e.g. the
        registry's push), bound to ``service_account`` in ``namespace``; children of the store
        named ``<store name>-<name>-...``."""
        ...


@dataclass(frozen=True)
class TeamBinding:
    """One service account of a team and what its role may do."""

    namespace: str
    service_account: str
    #: Access to the team's bucket (None: none).
    access: BucketAccess | None = "read-write"
    #: Further statements (the registry's push to the team's repositories).
    statements: Sequence[Mapping[str, Any]] = ()


@runtime_checkable
class GrantsTeams(Protocol):
    """An object store whose team grant is a bucket and roles bound to the team's service
    accounts (S3 on AWS), instead of an identity with keys (the bundled SeaweedFS)."""

    def grant_team(
        self, team: str, bucket: str | None, bindings: Sequence[TeamBinding]
    ) -> tuple[Any, list[PodIdentity]]:
        """The team's bucket (configured name ``bucket``; None: no bucket, roles without bucket
        access) and one role per binding; returns the bucket (its physical name is ``.bucket``;
        None without one) and the identities."""
        ...


@runtime_checkable
class PushesWithIdentity(Protocol):
    """A registry that pods push to with their workload identity (ECR), not a password."""

    def push_statements(self) -> list[dict[str, Any]]:
        """What the platform's CI job pods need to push (and pull) the platform's repositories."""
        ...

    def team_push_statements(self, team: str) -> list[dict[str, Any]]:
        """What a team's CI job pods need to push (and pull) the team's repositories only."""
        ...


def bind(
    storage: object,
    name: str,
    namespace: str,
    service_account: str,
    buckets: Mapping[str, BucketAccess],
    *,
    statements: Sequence[Mapping[str, Any]] = (),
    prefixes: Sequence[str] = (),
) -> PodIdentity | None:
    """``storage.bind(...)`` when the store binds workloads; None when it hands out keys."""
    if not isinstance(storage, BindsWorkloads):
        return None
    for purpose, access in buckets.items():
        if purpose not in PURPOSES:
            raise ValueError(f"bucket purpose '{purpose}' is not one of {', '.join(PURPOSES)}")
        if access not in ("read-only", "read-write"):
            raise ValueError(f"bucket access '{access}' for '{purpose}' is not 'read-only' or 'read-write'")
    for prefix in prefixes:
        if not prefix or not prefix.endswith("/") or "*" in prefix or "?" in prefix:
            raise ValueError(f"key prefix '{prefix}' must be non-empty, end with '/' and hold no wildcard")
    if prefixes:
        return storage.bind(name, namespace, service_account, buckets, statements=statements, prefixes=prefixes)
    return storage.bind(name, namespace, service_account, buckets, statements=statements)


def service_account(
    resource_name: str,
    identity: PodIdentity,
    labels: Mapping[str, str],
    *,
    parent: pulumi.Resource,
    namespace: pulumi.Input[str] | None = None,
) -> k8s.core.v1.ServiceAccount:
    """The identity's ServiceAccount, created after the identity's ``ready`` resources (its
    association): pods cannot start before their service account exists, so they always get the
    role's credentials. No API token is mounted (pods that run as it do not call the Kubernetes
    API); the Pod Identity webhook mounts its own audience-bound token."""
    return k8s.core.v1.ServiceAccount(
        resource_name,
        metadata={
            "name": identity.service_account,
            "namespace": namespace if namespace is not None else identity.namespace,
            "labels": dict(labels),
        },
        automount_service_account_token=False,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(identity.ready)),
    )
