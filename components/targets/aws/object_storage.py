"""S3 on the AWS target: a bucket per purpose (and per team), locked down, reached by roles.

Every bucket (docs/components/aws-storage.md): all four public-access blocks, object ownership
``BucketOwnerEnforced`` (ACLs off), SSE-KMS with the platform's key and an S3 Bucket Key, versioning,
a bucket policy denying every request without TLS (``aws:SecureTransport`` false), a lifecycle rule
expiring noncurrent versions after ``aws.storage.noncurrent_version_days`` and aborting incomplete
multipart uploads; ``force_destroy`` only in throwaway stacks; protected and retained on delete
outside them. No access keys exist: workloads get a role scoped to their buckets through
:meth:`AwsObjectStorage.bind` (EKS Pod Identity, :mod:`mlplane.targets.aws.identity`).

Names: bucket names are global across all AWS accounts, so the physical name is the configured one
(``object_storage.buckets.<purpose>``, a team's ``team-<name>``) plus ``-`` and an 8-character
suffix generated once per store (``random.RandomString``, kept in the stack's state).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from mlplane.backing.object_storage import GrantTarget
from mlplane.backing.workload_identity import BucketAccess, PodIdentity, TeamBinding
from mlplane.config import ObjectStoreBuckets
from mlplane.core import kube
from mlplane.targets.aws import identity as iam
from mlplane.targets.aws.context import AwsContext

TYPE = "mlplane:aws:ObjectStorage"
#: Length of the random suffix that makes bucket names globally unique.
SUFFIX_LENGTH = 8
BUCKET_NAME_MAX = 63
#: Days after which an incomplete multipart upload is aborted (its parts are billed until then).
ABORT_INCOMPLETE_DAYS = 7


def endpoint(region: str) -> str:
    """The regional S3 endpoint (AWS General Reference, "Amazon S3 endpoints")."""
    return f"https://s3.{region}.amazonaws.com"


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request to the bucket and its objects that does not use TLS (S3 User Guide,
    "Enforce encryption of data in transit": ``aws:SecureTransport``)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )


def physical_name(configured: str, suffix: str) -> str:
    """``<configured>-<suffix>`` within S3's 63 characters (the configured part shortened); S3
    names are lower case (the suffix is generated so; an offline render's stand-in may not be)."""
    head = configured[: BUCKET_NAME_MAX - len(suffix) - 1].rstrip("-.")
    return f"{head}-{suffix.lower()}"


class AwsObjectStorage(pulumi.ComponentResource):
    """S3 buckets for artifacts, datasets and models, and the roles that reach them.

    The outputs of the local ObjectStorage that apply: ``endpoint`` (the regional S3 endpoint),
    ``region``, ``artifacts_bucket``, ``datasets_bucket``, ``models_bucket`` (physical names),
    ``external_url`` (the endpoint too), ``namespace`` (empty: nothing runs in the cluster).
    No keys: ``admin_access_key_id`` and the ``mlflow_*`` keys are empty; services call
    :meth:`bind` (through ``mlplane.backing.workload_identity.bind``). ``grant_target`` is None
    (no grant Jobs), ``ready`` lists the buckets' policies, ``bucket_arns`` maps purpose to ARN.
    """

    endpoint: pulumi.Output[str]
    region: pulumi.Output[str]
    artifacts_bucket: pulumi.Output[str]
    datasets_bucket: pulumi.Output[str]
    models_bucket: pulumi.Output[str]
    external_url: pulumi.Output[str]
    namespace: pulumi.Output[str]

    def __init__(
        self, name: str, ctx: AwsContext, buckets: ObjectStoreBuckets, throwaway: bool,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__(TYPE, name, None, opts)
        self._name, self._ctx, self._throwaway = name, ctx, throwaway
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self.grant_target: GrantTarget | None = None
        self.ready: list[pulumi.Resource] = []
        self.suffix = random.RandomString(
            f"{name}-suffix", length=SUFFIX_LENGTH, special=False, upper=False,
            opts=pulumi.ResourceOptions(parent=self),
        ).result
        self.buckets: dict[str, aws.s3.Bucket] = {}
        for purpose in ("artifacts", "datasets", "models"):
            self.buckets[purpose] = self.bucket(f"{name}-{purpose}", getattr(buckets, purpose), purpose=purpose)
        self.bucket_arns = {purpose: bucket.arn for purpose, bucket in self.buckets.items()}
        region = ctx.config.region
        self.endpoint = pulumi.Output.from_input(endpoint(region))
        self.external_url = self.endpoint
        self.region = pulumi.Output.from_input(region)
        self.artifacts_bucket = self.buckets["artifacts"].bucket
        self.datasets_bucket = self.buckets["datasets"].bucket
        self.models_bucket = self.buckets["models"].bucket
        self.namespace = pulumi.Output.from_input("")
        empty = pulumi.Output.from_input("")
        self.admin_access_key_id = self.mlflow_access_key_id = empty
        self.admin_secret_access_key = self.mlflow_secret_access_key = pulumi.Output.secret("")
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "region": self.region,
                "artifacts_bucket": self.artifacts_bucket,
                "datasets_bucket": self.datasets_bucket,
                "models_bucket": self.models_bucket,
            }
        )

    # -------------------------------------------------------------------------- buckets

    def bucket(self, name: str, configured: str, *, purpose: str, team: str | None = None) -> aws.s3.Bucket:
        """One locked-down bucket and its configuration (children ``<name>``, ``<name>-...``)."""
        ctx = self._ctx
        tags = {**ctx.tags, "mlplane.dev/purpose": purpose, **({"mlplane.dev/team": team} if team else {})}
        # Outside throwaway stacks the platform's buckets are protected and retained; a team's is
        # retained only, so that removing the team (its file gone, the platform updated) drops it
        # from the state and keeps it with its data in the account. Its settings below are
        # retained with it: deleting them would strip a kept bucket of its public-access block.
        keep = ctx.protect
        bucket = aws.s3.Bucket(
            name,
            bucket=self.suffix.apply(lambda s: physical_name(configured, s)),
            force_destroy=self._throwaway,
            tags=tags,
            opts=ctx.opts(self, retain_on_delete=keep) if team else ctx.stateful(self),
        )
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=ctx.opts(self, retain_on_delete=keep),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=ctx.opts(self, retain_on_delete=keep),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": ctx.kms_key_arn,
                    },
                    # Fewer KMS requests (S3 User Guide, "Reducing the cost of SSE-KMS with Bucket Keys").
                    "bucket_key_enabled": True,
                }
            ],
            opts=ctx.opts(self, retain_on_delete=keep),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=ctx.opts(self, retain_on_delete=keep),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": ctx.config.storage.noncurrent_version_days
                    },
                },
                {
                    "id": "abort-incomplete-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_INCOMPLETE_DAYS},
                },
            ],
            # A lifecycle rule on noncurrent versions needs versioning on first.
            opts=ctx.opts(self, depends_on=[versioning], retain_on_delete=keep),
        )
        policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            # S3 rejects a bucket policy while the public-access block is being written.
            opts=ctx.opts(self, depends_on=[block], retain_on_delete=keep),
        )
        self.ready.append(policy)
        return bucket

    # ------------------------------------------------------------------------ identities

    def statements(
        self, buckets: Mapping[str, BucketAccess], sid: str = "Platform", prefixes: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """IAM statements for ``buckets`` (purpose -> access), one group per access level; only
        under the key ``prefixes`` when any are given."""
        statements: list[dict[str, Any]] = []
        for access in ("read-only", "read-write"):
            arns = [self.bucket_arns[p] for p, a in sorted(buckets.items()) if a == access]
            if arns:
                label = "Read" if access == "read-only" else "ReadWrite"
                statements += iam.bucket_statements(
                    f"{sid}{label}", arns, access, self._ctx.kms_key_arn, self._ctx.config.region, prefixes
                )
        return statements

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
        """A role limited to ``buckets`` (only under the key ``prefixes`` when given) and
        ``statements``, bound to the service account by EKS Pod Identity
        (:func:`mlplane.targets.aws.identity.workload_role`); children of this store named
        ``<store>-<name>-...``."""
        unknown = set(buckets) - set(self.bucket_arns)
        if unknown:
            raise ValueError(f"{name}: unknown bucket purpose(s) {sorted(unknown)}; known: {sorted(self.bucket_arns)}")
        role = iam.workload_role(
            self._ctx, f"{self._name}-{name}", parent=self, namespace=namespace, service_account=service_account,
            statements=[*self.statements(buckets, prefixes=prefixes), *statements],
            description=f"mlplane {self._ctx.name}: pods of {namespace}/{service_account}",
        )
        return role.identity

    def grant_team(
        self, team: str, bucket: str | None, bindings: Sequence[TeamBinding]
    ) -> tuple[aws.s3.Bucket | None, list[PodIdentity]]:
        """A team's bucket (``<bucket>-<suffix>``, the same secure defaults) and, per binding, a role
        bound to its (namespace, service account): ``access`` on the team's bucket only (none:
        no S3 at all) plus the binding's ``statements`` (e.g. push to the team's repositories).
        The AWS side of the team's grant; the platform stack calls it for each admitted team
        (mlplane.services.team_grants). No bindings: the bucket alone (a team being offboarded:
        its roles go, its data stays). ``bucket`` None: no bucket (a team without object storage
        whose runners push to its repositories), then no binding may ask for bucket access.
        Children ``<store>-team-<team>-...``."""
        prefix = f"{self._name}-team-{team}"
        team_bucket = None
        if bucket is not None:
            team_bucket = self.bucket(f"{prefix}-bucket", bucket, purpose="team", team=team)
        elif any(binding.access is not None for binding in bindings):
            raise ValueError(f"team '{team}': a binding asks for bucket access, but the team has no bucket")
        ctx = self._ctx
        identities: list[PodIdentity] = []
        for binding in bindings:
            statements = list(binding.statements)
            if binding.access is not None and team_bucket is not None:
                statements = [
                    *iam.bucket_statements("Team", [team_bucket.arn], binding.access, ctx.kms_key_arn, ctx.config.region),
                    *statements,
                ]
            role = iam.workload_role(
                ctx, f"{prefix}-{binding.service_account}", parent=self, namespace=binding.namespace,
                service_account=binding.service_account, statements=statements,
                description=f"mlplane {ctx.name}: team {team}, pods of {binding.namespace}/{binding.service_account}",
            )
            identities.append(role.identity)
        return team_bucket, identities

