"""Workload identity on EKS: an IAM role a Kubernetes service account's pods assume through EKS
Pod Identity (docs/components/aws-identity.md).

One helper, :func:`workload_role`: the role (trusted by ``pods.eks.amazonaws.com`` only, with the
two actions EKS Pod Identity needs: ``sts:AssumeRole`` and ``sts:TagSession``; EKS User Guide,
"pod-id-role"; and only for the session tags of this cluster, namespace and service account, so no
other cluster's association, in this account or another, can use it), a least-privilege inline policy built from explicit statements (refused when a
statement allows a ``*`` action or every action of a service on the ``*`` resource), and the
``aws.eks.PodIdentityAssociation`` for one (namespace, service account). The other AWS modules
build their statements with the helpers below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from mlplane.backing.workload_identity import PodIdentity
from mlplane.targets.aws.context import AwsContext

#: The service principal of EKS Pod Identity and what it must be allowed (EKS User Guide,
#: "Create an IAM role for EKS Pod Identity": the trust policy's two actions).
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
TRUST_ACTIONS = ("sts:AssumeRole", "sts:TagSession")
#: Session tags EKS Pod Identity adds to its AssumeRole request, which a trust policy may require
#: (EKS User Guide, "pod-id-role", Setting Conditions, and "pod-id-abac", List of session tags added
#: by EKS Pod Identity: eks-cluster-arn, eks-cluster-name, kubernetes-namespace,
#: kubernetes-service-account, kubernetes-pod-name, kubernetes-pod-uid). The cluster's ARN names its
#: account, so it does what ``aws:SourceAccount`` would; that key is not documented for this
#: principal, and a condition on a key the request lacks would refuse every pod.
CLUSTER_TAG, NAMESPACE_TAG, ACCOUNT_TAG = (
    "aws:RequestTag/eks-cluster-arn", "aws:RequestTag/kubernetes-namespace", "aws:RequestTag/kubernetes-service-account",
)
#: IAM role names are at most 64 characters (IAM quotas, "Role name").
ROLE_NAME_MAX = 64
#: Object-level S3 actions per bucket access; the bucket itself is listed with s3:ListBucket
#: (and its location read by clients that discover the region).
OBJECT_ACTIONS: dict[str, tuple[str, ...]] = {
    "read-only": ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"),
    "read-write": (
        "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging",
        "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    ),
}
BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")
#: SSE-KMS objects: reading needs Decrypt, writing GenerateDataKey (S3 User Guide, "Using SSE-KMS",
#: permissions), limited to calls S3 makes on the caller's behalf (kms:ViaService).
KMS_ACTIONS: dict[str, tuple[str, ...]] = {
    "read-only": ("kms:Decrypt",),
    "read-write": ("kms:Decrypt", "kms:GenerateDataKey"),
}



def trust_policy(cluster_arn: str, namespace: str, service_account: str) -> str:
    """The role's trust: EKS Pod Identity, for pods of ``namespace``/``service_account`` on the
    cluster ``cluster_arn`` only (the session tags it adds to the request)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EksPodIdentity",
                    "Effect": "Allow",
                    "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                    "Action": list(TRUST_ACTIONS),
                    "Condition": {
                        "StringEquals": {
                            CLUSTER_TAG: cluster_arn, NAMESPACE_TAG: namespace, ACCOUNT_TAG: service_account,
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


#: The last context's cluster ARN (one lookup of account and partition per stack run).
_CLUSTER_ARN: list[tuple[AwsContext, pulumi.Output[str]]] = []


def cluster_arn(ctx: AwsContext, parent: pulumi.Resource) -> pulumi.Output[str]:
    """``arn:<partition>:eks:<region>:<account>:cluster/<name>`` of the context's cluster (the
    account and partition of the credentials that run the stack, where the cluster is)."""
    if not _CLUSTER_ARN or _CLUSTER_ARN[0][0] is not ctx:
        invoke = pulumi.InvokeOutputOptions(provider=ctx.provider, parent=parent)
        partition = aws.get_partition_output(opts=invoke).partition
        account = aws.get_caller_identity_output(opts=invoke).account_id
        arn = pulumi.Output.concat(
            "arn:", partition, ":eks:", ctx.config.region, ":", account, ":cluster/", ctx.cluster_name
        )
        _CLUSTER_ARN[:] = [(ctx, arn)]
    return _CLUSTER_ARN[0][1]


def bucket_statements(
    sid: str, bucket_arns: Sequence[pulumi.Input[str]], access: str, kms_key_arn: pulumi.Input[str], region: str,
    prefixes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Least privilege on some buckets: list them, ``access`` on their objects, the KMS key through S3.

    With ``prefixes`` (each ending in ``/``) only the keys under them: objects ``<bucket>/<prefix>*``,
    and ``s3:ListBucket`` only with an ``s3:prefix`` under them (S3 User Guide, "Bucket policy
    examples using condition keys": ``s3:prefix`` limits ListObjects). The other bucket-level
    actions take no ``s3:prefix`` and are left out."""
    if access not in OBJECT_ACTIONS:
        raise ValueError(f"access '{access}' is not one of {', '.join(OBJECT_ACTIONS)}")
    if prefixes:
        listing: dict[str, Any] = {
            "Sid": f"{sid}Buckets", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": list(bucket_arns),
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        }
        objects = [pulumi.Output.concat(arn, "/", p, "*") for arn in bucket_arns for p in prefixes]
    else:
        listing = {"Sid": f"{sid}Buckets", "Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": list(bucket_arns)}
        objects = [pulumi.Output.concat(arn, "/*") for arn in bucket_arns]
    return [
        listing,
        {
            "Sid": f"{sid}Objects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS[access]),
            "Resource": objects,
        },
        {
            "Sid": f"{sid}Key",
            "Effect": "Allow",
            "Action": list(KMS_ACTIONS[access]),
            "Resource": [kms_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    ]


def check_statements(statements: Sequence[Mapping[str, Any]]) -> None:
    """Refuse what least privilege forbids: an Allow of ``*`` (or ``<service>:*``) on ``*``, or an
    Allow without actions or resources. Raises ValueError naming the statement."""
    for index, statement in enumerate(statements):
        sid = statement.get("Sid", f"#{index}")
        actions = statement.get("Action")
        resources = statement.get("Resource")
        if statement.get("Effect") != "Allow":
            continue
        actions = [actions] if isinstance(actions, str) else list(actions or [])
        resources = [resources] if isinstance(resources, str) else list(resources or [])
        if not actions or not resources:
            raise ValueError(f"policy statement {sid}: an Allow needs actions and resources (given {statement})")
        wildcard_action = any(a == "*" or (isinstance(a, str) and a.endswith(":*")) for a in actions)
        if wildcard_action and "*" in resources:
            raise ValueError(f"policy statement {sid}: allows every action ({actions}) on every resource ('*')")


def policy_document(statements: Sequence[Mapping[str, Any]]) -> pulumi.Output[str]:
    """The JSON policy of ``statements`` (their ARNs resolved), checked by :func:`check_statements`."""

    def render(resolved: list[dict[str, Any]]) -> str:
        check_statements(resolved)
        return json.dumps({"Version": "2012-10-17", "Statement": resolved}, sort_keys=True)

    return pulumi.Output.from_input([dict(s) for s in statements]).apply(render)


def role_name(ctx: AwsContext, suffix: str) -> str:
    """``<platform>-<suffix>``, shortened with a stable digest when over IAM's 64 characters."""
    full = f"{ctx.name}-{suffix}"
    if len(full) <= ROLE_NAME_MAX:
        return full
    import hashlib

    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: ROLE_NAME_MAX - 9]}-{digest}"


@dataclass(frozen=True)
class WorkloadRole:
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    association: aws.eks.PodIdentityAssociation
    identity: PodIdentity


def workload_role(
    ctx: AwsContext,
    name: str,
    *,
    parent: pulumi.Resource,
    namespace: str,
    service_account: str,
    statements: Sequence[Mapping[str, Any]],
    description: str,
) -> WorkloadRole:
    """The role ``<platform>-<namespace>-<service account>`` with ``statements`` as its only
    permissions, bound to that service account. Children ``<name>-role``, ``<name>-policy``,
    ``<name>-pod-identity`` of ``parent``."""
    if not statements:
        raise ValueError(f"{name}: a workload role needs at least one policy statement")
    check_statements([s for s in statements if all(isinstance(r, str) for r in _list(s.get("Resource")))])
    role = aws.iam.Role(
        f"{name}-role",
        name=role_name(ctx, f"{namespace}-{service_account}"),
        description=description,
        assume_role_policy=cluster_arn(ctx, parent).apply(lambda arn: trust_policy(arn, namespace, service_account)),
        max_session_duration=3600,
        tags={**ctx.tags, "mlplane.dev/namespace": namespace, "mlplane.dev/service-account": service_account},
        opts=ctx.opts(parent),
    )
    policy = aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        name="least-privilege",
        policy=policy_document(statements),
        opts=ctx.opts(parent),
    )
    association = aws.eks.PodIdentityAssociation(
        f"{name}-pod-identity",
        cluster_name=ctx.cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        tags=dict(ctx.tags),
        # The role has its permissions before a pod can assume it.
        opts=ctx.opts(parent, depends_on=[policy]),
    )
    identity = PodIdentity(namespace=namespace, service_account=service_account, ready=(association,))
    return WorkloadRole(role=role, policy=policy, association=association, identity=identity)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
