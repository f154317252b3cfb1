"""S3 on the AWS target: every bucket's secure defaults, one test per property; the roles that
reach them (EKS Pod Identity), their policies parsed; protection in and outside throwaway stacks."""

from __future__ import annotations

import json

import pytest

from mlplane.backing.workload_identity import PodIdentity, bind
from mlplane.config import ObjectStoreBuckets
from mlplane.targets.aws import identity as iam
from mlplane.targets.aws.object_storage import AwsObjectStorage, TeamBinding, physical_name

from aws_backing_mocks import (  # noqa: F401 (aws_mocks: the fixture)
    KMS_KEY, REGION, allows_wildcard_on_wildcard, aws_mocks, context, of_type, policy, run,
)

pytestmark = pytest.mark.usefixtures("aws_mocks")
NAME = "mlplane-storage"
BUCKET = "aws:s3/bucket:Bucket"


def render(throwaway: bool = False, bindings: bool = True):
    def build():
        ctx = context(protect=not throwaway)
        store = AwsObjectStorage(NAME, ctx, ObjectStoreBuckets(), throwaway)
        out = {
            "store": store, "endpoint": store.endpoint, "region": store.region,
            "artifacts": store.artifacts_bucket, "namespace": store.namespace,
        }
        if bindings:
            out["identity"] = bind(store, "mlflow", "mlplane-tracking", "mlflow", {"artifacts": "read-write"})
            out["team"] = store.grant_team(
                "vision", "team-vision",
                [TeamBinding("vision", "team-runner"), TeamBinding("vision-serving", "model-server", "read-only")],
            )
        return out

    return run(build)


def buckets(result):
    return of_type(result, BUCKET)


def test_one_bucket_per_purpose_and_the_team_bucket():
    result, _ = render()
    names = sorted(r.name for r in buckets(result))
    assert names == [f"{NAME}-artifacts", f"{NAME}-datasets", f"{NAME}-models", f"{NAME}-team-vision-bucket"]


def test_physical_names_are_the_configured_name_and_a_suffix():
    result, out = render()
    physical = result.named(f"{NAME}-artifacts").inputs["bucket"]
    assert physical.startswith("mlplane-artifacts-") and len(physical) == len("mlplane-artifacts-") + 8
    assert out["artifacts"] == physical


def test_physical_name_fits_63_characters():
    assert len(physical_name("a" * 63, "abcdefgh")) == 63
    assert physical_name("a" * 63, "abcdefgh").endswith("-abcdefgh")


def test_physical_name_is_lower_case():
    assert physical_name("mlplane-artifacts", "TPAR22dd") == "mlplane-artifacts-tpar22dd"


@pytest.mark.parametrize("flag", ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"])
def test_all_four_public_access_blocks(flag):
    result, _ = render()
    blocks = of_type(result, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert len(blocks) == len(buckets(result))
    key = "".join(p.capitalize() if i else p for i, p in enumerate(flag.split("_")))
    assert all(b.inputs[key] is True for b in blocks)


def test_bucket_owner_enforced():
    result, _ = render()
    controls = of_type(result, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert len(controls) == len(buckets(result))
    assert all(c.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced" for c in controls)


def test_sse_kms_with_the_platform_key_and_bucket_key():
    result, _ = render()
    configs = of_type(result, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert len(configs) == len(buckets(result))
    for config in configs:
        (rule,) = config.inputs["rules"]
        default = rule["applyServerSideEncryptionByDefault"]
        assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KMS_KEY}
        assert rule["bucketKeyEnabled"] is True


def test_versioning_enabled():
    result, _ = render()
    versioning = of_type(result, "aws:s3/bucketVersioning:BucketVersioning")
    assert len(versioning) == len(buckets(result))
    assert all(v.inputs["versioningConfiguration"]["status"] == "Enabled" for v in versioning)


def test_tls_only_bucket_policy():
    result, _ = render()
    policies = of_type(result, "aws:s3/bucketPolicy:BucketPolicy")
    assert len(policies) == len(buckets(result))
    for record in policies:
        (statement,) = policy(record)["Statement"]
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        arn = statement["Resource"][0]
        assert arn.startswith("arn:aws:s3:::") and statement["Resource"] == [arn, f"{arn}/*"]


def test_noncurrent_versions_expire_after_the_configured_days():
    result, _ = render()
    lifecycles = of_type(result, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert len(lifecycles) == len(buckets(result))
    for record in lifecycles:
        rules = {r["id"]: r for r in record.inputs["rules"]}
        assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
        assert rules["expire-noncurrent-versions"]["status"] == "Enabled"


def test_incomplete_multipart_uploads_are_aborted():
    result, _ = render()
    for record in of_type(result, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        rules = {r["id"]: r for r in record.inputs["rules"]}
        assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_noncurrent_days_follow_the_config():
    def build():
        ctx = context({"aws": {"region": REGION, "storage": {"noncurrent_version_days": 90}}})
        AwsObjectStorage(NAME, ctx, ObjectStoreBuckets(), False)
        return {}

    result, _ = run(build)
    record = result.named(f"{NAME}-artifacts-lifecycle")
    rules = {r["id"]: r for r in record.inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 90}


def test_buckets_are_protected_and_retained_outside_throwaway():
    result, _ = render()
    platform = [b for b in buckets(result) if "-team-" not in b.name]
    assert platform and all(b.protect and b.retain_on_delete for b in platform)


def test_a_teams_bucket_and_its_settings_are_retained_not_protected():
    """Removing a team drops its bucket from the platform's state and keeps it, data and public-access
    block included, in the account; protected, the platform's update would stop on it instead."""
    result, _ = render()
    prefix = f"{NAME}-team-vision-bucket"
    kept = [r for r in result.resources if r.name == prefix or r.name.startswith(f"{prefix}-")]
    assert {r.name.removeprefix(prefix) for r in kept} >= {"", "-public-access-block", "-encryption", "-policy", "-versioning"}
    assert all(r.retain_on_delete and not r.protect for r in kept), [(r.name, r.protect) for r in kept]


def test_force_destroy_off_outside_throwaway():
    result, _ = render()
    assert all(b.inputs["forceDestroy"] is False for b in buckets(result))


def test_throwaway_buckets_are_not_protected_and_force_destroy():
    result, _ = render(throwaway=True)
    assert all(not b.protect and not b.retain_on_delete for b in buckets(result))
    assert all(b.inputs["forceDestroy"] is True for b in buckets(result))


def test_outputs_match_the_local_contract():
    _, out = render(bindings=False)
    assert out["endpoint"] == f"https://s3.{REGION}.amazonaws.com"
    assert out["region"] == REGION
    assert out["namespace"] == ""
    store = out["store"]
    assert store.grant_target is None and store.scrape_targets == [] and store.uis == []


def test_every_aws_resource_is_a_child_of_the_store_on_the_aws_provider():
    result, _ = render()
    store = result.named(NAME)
    for record in result.resources:
        if record.type.startswith("aws:"):
            assert record.parent == store.urn, record.name
            assert record.provider and "pulumi:providers:aws::aws" in record.provider, record.name
            assert record.name.startswith(f"{NAME}-"), record.name


# ------------------------------------------------------------------------------ identities


def test_bind_returns_the_pod_identity():
    _, out = render()
    identity = out["identity"]
    assert isinstance(identity, PodIdentity)
    assert (identity.namespace, identity.service_account) == ("mlplane-tracking", "mlflow")
    assert identity.ready


def test_role_trusts_eks_pod_identity_only():
    result, _ = render()
    role = result.named(f"{NAME}-mlflow-role")
    (statement,) = policy(role, "assumeRolePolicy")["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Effect"] == "Allow"


def test_role_trusts_only_its_service_account_on_this_clusters_account():
    """Without conditions any Pod Identity association, on any cluster of the account, could use
    the role (review of issue 11, nit): the session tags EKS adds pin cluster, namespace and account."""
    result, _ = render()
    (statement,) = policy(result.named(f"{NAME}-mlflow-role"), "assumeRolePolicy")["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/eks-cluster-arn": "arn:aws:eks:eu-west-1:123456789012:cluster/mlplane",
            "aws:RequestTag/kubernetes-namespace": "mlplane-tracking",
            "aws:RequestTag/kubernetes-service-account": "mlflow",
        }
    }


def test_pod_identity_association_binds_the_service_account():
    result, _ = render()
    association = result.named(f"{NAME}-mlflow-pod-identity")
    assert association.inputs["namespace"] == "mlplane-tracking"
    assert association.inputs["serviceAccount"] == "mlflow"
    assert association.inputs["clusterName"] == "mlplane"
    assert association.inputs["roleArn"].endswith(":role/mlplane-mlplane-tracking-mlflow")


def test_mlflow_role_is_scoped_to_the_artifacts_bucket_and_key():
    result, _ = render()
    artifacts = result.named(f"{NAME}-artifacts").inputs["bucket"]
    document = policy(result.named(f"{NAME}-mlflow-policy"))
    resources = {r for s in document["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{artifacts}", f"arn:aws:s3:::{artifacts}/*", KMS_KEY}
    key = next(s for s in document["Statement"] if s["Resource"] == [KMS_KEY])
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}


def test_no_role_allows_wildcard_actions_on_wildcard_resources():
    result, _ = render()
    policies = of_type(result, "aws:iam/rolePolicy:RolePolicy")
    assert len(policies) == 3
    for record in policies:
        document = policy(record)
        assert not allows_wildcard_on_wildcard(document)
        assert all(a != "*" and not a.endswith(":*") for s in document["Statement"] for a in s["Action"])


def test_read_only_access_cannot_write():
    def build():
        store = AwsObjectStorage(NAME, context(), ObjectStoreBuckets(), False)
        bind(store, "ci", "mlplane-runners", "ci-job", {"datasets": "read-only"})
        return {}

    result, _ = run(build)
    actions = {a for s in policy(result.named(f"{NAME}-ci-policy"))["Statement"] for a in s["Action"]}
    assert "s3:GetObject" in actions and "kms:Decrypt" in actions
    assert not {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"} & actions


def test_team_roles_reach_only_the_team_bucket_and_bind_each_service_account():
    result, out = render()
    team_bucket = result.named(f"{NAME}-team-vision-bucket").inputs["bucket"]
    assert team_bucket.startswith("team-vision-")
    for account in ("team-runner", "model-server"):
        document = policy(result.named(f"{NAME}-team-vision-{account}-policy"))
        s3 = {r for s in document["Statement"] for r in s["Resource"] if r.startswith("arn:aws:s3")}
        assert s3 == {f"arn:aws:s3:::{team_bucket}", f"arn:aws:s3:::{team_bucket}/*"}
    associations = sorted(
        (r.inputs["namespace"], r.inputs["serviceAccount"])
        for r in of_type(result, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.name.startswith(f"{NAME}-team-vision")
    )
    assert associations == [("vision", "team-runner"), ("vision-serving", "model-server")]
    _, identities = out["team"]
    assert [i.service_account for i in identities] == ["team-runner", "model-server"]


def test_team_model_servers_only_read():
    result, _ = render()
    actions = {a for s in policy(result.named(f"{NAME}-team-vision-model-server-policy"))["Statement"] for a in s["Action"]}
    assert "s3:GetObject" in actions and "s3:PutObject" not in actions


def test_team_bucket_has_the_same_secure_defaults():
    result, _ = render()
    prefix = f"{NAME}-team-vision-bucket"
    assert result.named(prefix).retain_on_delete
    assert result.named(f"{prefix}-public-access-block").inputs["restrictPublicBuckets"] is True
    assert policy(result.named(f"{prefix}-policy"))["Statement"][0]["Condition"]


def test_bind_refuses_an_unknown_purpose():
    def build():
        store = AwsObjectStorage(NAME, context(), ObjectStoreBuckets(), False)
        bind(store, "x", "ns", "sa", {"secrets": "read-write"})  # type: ignore[dict-item]
        return {}

    with pytest.raises(ValueError, match="bucket purpose 'secrets' is not one of artifacts, datasets, models"):
        run(build)


def test_a_team_grant_without_bindings_keeps_the_bucket_and_binds_nothing():
    """An offboarded team (mlplane.services.team_grants): its roles go, its bucket stays."""
    def build():
        store = AwsObjectStorage(NAME, context(), ObjectStoreBuckets(), False)
        store.grant_team("vision", "team-vision", [])
        return {}

    result, _ = run(build)
    assert [r.name for r in of_type(result, "aws:s3/bucket:Bucket") if "team-vision" in r.name] == [
        f"{NAME}-team-vision-bucket"
    ]
    assert [r.name for r in of_type(result, "aws:iam/role:Role") if "team-vision" in r.name] == []


# ------------------------------------------------------------------- the policy checks


def test_check_statements_refuses_wildcard_action_on_wildcard_resource():
    with pytest.raises(ValueError, match=r"statement Bad: allows every action \(\['\*'\]\) on every resource"):
        iam.check_statements([{"Sid": "Bad", "Effect": "Allow", "Action": "*", "Resource": "*"}])


def test_check_statements_refuses_a_service_wildcard_on_wildcard_resource():
    with pytest.raises(ValueError, match="every resource"):
        iam.check_statements([{"Sid": "S3", "Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}])


def test_check_statements_refuses_an_allow_without_resources():
    with pytest.raises(ValueError, match="needs actions and resources"):
        iam.check_statements([{"Effect": "Allow", "Action": ["s3:GetObject"]}])


def test_check_statements_accepts_a_deny_of_everything():
    iam.check_statements([{"Effect": "Deny", "Action": "*", "Resource": "*"}])


def test_role_names_fit_iam_limit_and_stay_stable():
    ctx_name = "p" * 40

    class Ctx:
        name = ctx_name

    first = iam.role_name(Ctx(), "a-very-long-namespace-name-x-service-account")  # type: ignore[arg-type]
    assert len(first) == 64
    assert first == iam.role_name(Ctx(), "a-very-long-namespace-name-x-service-account")  # type: ignore[arg-type]
    assert json.loads(iam.trust_policy("arn", "ns", "sa"))["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
