"""The Pulumi state bucket (components/tooling/state_backend.py) against moto (``moto.mock_aws``):
first run, re-run without change, a weak existing bucket reported setting by setting and left
unchanged, ``fix`` keeping the user's policy statements and lifecycle rules, the KMS key and its
alias, missing permissions, a bucket of another account, and bad input.

Missing permissions are simulated with a botocore ``before-call`` hook on the session that answers the
denied operation the way S3 and KMS do (HTTP 403, code AccessDenied / AccessDeniedException), not
with moto's IAM enforcement: moto authorizes S3 requests by API name (``moto/s3/responses.py``
ACTION_MAP: PutPublicAccessBlock, ...) rather than by the IAM action names AWS checks
(s3:PutBucketPublicAccessBlock, ...), so a real least-privilege policy cannot be expressed there.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from mlplane.tooling import state_backend as sb
from mlplane.tooling.state_backend import StateBackendError, StateInputError

REGION = "eu-west-1"
BUCKET = "acme-pulumi-state"
ARN = f"arn:aws:s3:::{BUCKET}"


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def req(**kwargs) -> sb.Request:
    return sb.request(kwargs.pop("bucket", BUCKET), kwargs.pop("region", REGION), **kwargs)


def deny(session, operation: str, service: str = "s3", code: str = "AccessDenied") -> list[str]:
    """Answer ``operation`` with 403 the way AWS does; returns the list of denied calls seen."""
    seen: list[str] = []

    class Response:
        status_code = 403
        headers: dict = {}

    def handler(**_):
        seen.append(operation)
        return Response(), {"Error": {"Code": code, "Message": "Access Denied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}

    session.events.register(f"before-call.{service}.{operation}", handler)
    return seen


def statuses(report: sb.Report) -> dict[str, str]:
    return {row.setting: row.status for row in report.rows}


def weak_bucket(session, *, policy: dict | None = None, rules: list | None = None) -> None:
    """A bucket made by hand: ACLs on, no public-access block, no versioning, SSE-S3 only, no TLS rule."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectOwnership="ObjectWriter")
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": False})
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    if policy:
        s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": rules})


def bucket_settings(session) -> dict:
    s3 = session.client("s3")
    return {
        "versioning": s3.get_bucket_versioning(Bucket=BUCKET).get("Status"),
        "encryption": s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"],
        "block": s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"],
        "ownership": s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"],
        "policy": json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]) if _has_policy(s3) else None,
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"] if _has_lifecycle(s3) else None,
    }


def _has_policy(s3) -> bool:
    try:
        s3.get_bucket_policy(Bucket=BUCKET)
        return True
    except s3.exceptions.ClientError:
        return False


def _has_lifecycle(s3) -> bool:
    try:
        s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)
        return True
    except s3.exceptions.ClientError:
        return False


# --------------------------------------------------------------------------------------------
# First run, re-run
# --------------------------------------------------------------------------------------------


def test_first_run_creates_a_bucket_with_every_setting_and_a_kms_key_with_its_alias(aws):
    report = sb.run(req(), session=aws)
    assert report.result == "created" and not report.failed
    assert set(statuses(report).values()) == {"created"}
    settings = bucket_settings(aws)
    assert settings["versioning"] == "Enabled"
    assert settings["block"] == {flag: True for flag in sb.PUBLIC_ACCESS_FLAGS}
    assert settings["ownership"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    kms = aws.client("kms")
    key = kms.describe_key(KeyId=f"alias/{BUCKET}")["KeyMetadata"]
    assert settings["encryption"] == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
                                       "BucketKeyEnabled": True}]
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    # moto ignores Condition in Deny statements (security-baseline.md), so the policy JSON is checked itself.
    assert settings["policy"]["Statement"] == [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [ARN, f"{ARN}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    assert settings["lifecycle"] == [{
        "ID": "mlplane-state-versions", "Filter": {"Prefix": ".pulumi/"}, "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 90}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]
    assert report.login_url() == f"s3://{BUCKET}?region={REGION}"
    assert report.secrets_provider() == f"awskms://alias/{BUCKET}?region={REGION}"


def test_a_rerun_changes_nothing_and_says_so(aws):
    sb.run(req(), session=aws)
    before = bucket_settings(aws)
    keys = aws.client("kms").list_keys()["Keys"]
    puts = []
    aws.events.register("before-call.*.*", lambda model, **_: puts.append(model.name) if model.name.startswith(("Put", "Create", "Enable")) else None)
    again = sb.run(req(), session=aws)
    assert puts == []
    assert again.result == "unchanged" and not again.changed and not again.failed
    assert set(statuses(again).values()) == {"ok"}
    assert again.summary() == f"no change: bucket {BUCKET} already has every setting"
    assert bucket_settings(aws) == before and aws.client("kms").list_keys()["Keys"] == keys
    assert again.secrets_provider() == f"awskms://alias/{BUCKET}?region={REGION}"  # the alias, as on the first run
    assert sb.run(req(), "check", session=aws).result == "unchanged"


def test_no_kms_uses_sse_s3_and_advises_a_passphrase(aws):
    report = sb.run(req(no_kms=True), session=aws)
    assert bucket_settings(aws)["encryption"][0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert aws.client("kms").list_keys()["Keys"] == []
    assert report.secrets_provider() is None and "PULUMI_CONFIG_PASSPHRASE" in report.next_steps()[1]
    assert sb.run(req(no_kms=True), session=aws).result == "unchanged"


def test_us_east_1_is_created_without_a_location_constraint(aws):
    report = sb.run(req(region="us-east-1", no_kms=True), session=boto3.Session(region_name="us-east-1"))
    assert report.result == "created"


def test_an_existing_kms_key_is_used_and_not_recreated(aws):
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    report = sb.run(req(kms_key=key["Arn"]), session=aws)
    assert statuses(report)["kms key"] == "ok" and len(kms.list_keys()["Keys"]) == 1
    assert bucket_settings(aws)["encryption"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key["Arn"]
    assert report.secrets_provider() == f"awskms://{key['KeyId']}?region={REGION}"


def test_a_key_id_that_does_not_exist_is_an_error_and_nothing_is_created(aws):
    with pytest.raises(StateBackendError, match="--kms-key 1234abcd-12ab-34cd-56ef-1234567890ab: no such key"):
        sb.run(req(kms_key="1234abcd-12ab-34cd-56ef-1234567890ab"), session=aws)
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_a_disabled_key_is_refused(aws):
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/state", TargetKeyId=key["KeyId"])
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(StateBackendError, match="--kms-key alias/state: its state is Disabled"):
        sb.run(req(kms_key="alias/state"), session=aws)
    assert aws.client("s3").list_buckets()["Buckets"] == []


# --------------------------------------------------------------------------------------------
# An existing bucket with weaker settings
# --------------------------------------------------------------------------------------------

USER_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "ReadForAuditors", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/auditor"},
    "Action": "s3:GetObject", "Resource": f"{ARN}/*"}]}
USER_RULE = {"ID": "logs-expire", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}}


def test_a_weak_existing_bucket_is_reported_setting_by_setting_and_left_unchanged(aws):
    weak_bucket(aws, policy=USER_POLICY, rules=[USER_RULE])
    before = bucket_settings(aws)
    report = sb.run(req(), session=aws)
    rows = {row.setting: row for row in report.rows}
    assert report.failed and report.result == "weak"
    assert rows["versioning"].status == "weak" and rows["versioning"].found == "never enabled"
    assert rows["encryption"].status == "weak" and rows["encryption"].found == "AES256 (SSE-S3)"
    assert rows["encryption"].expected == f"aws:kms with alias/{BUCKET}"
    assert rows["public access: IgnorePublicAcls"].status == "weak" and rows["public access: IgnorePublicAcls"].found == "false"
    assert rows["public access: RestrictPublicBuckets"].status == "weak"
    assert rows["public access: BlockPublicAcls"].status == "ok"
    assert rows["object ownership"].status == "weak" and rows["object ownership"].found == "ObjectWriter"
    assert rows["policy: TLS only"].status == "weak" and rows["policy: TLS only"].found == "1 statement(s), none denies plain HTTP"
    assert rows["kms key"].status == "weak"  # the default alias does not exist and is not created without --fix
    assert rows["lifecycle: noncurrent versions"].status == "advice"
    assert "--fix" in report.summary() and "nothing was changed" in report.summary()
    assert bucket_settings(aws) == before
    assert aws.client("kms").list_keys()["Keys"] == []


def test_a_bucket_without_any_configuration_reports_each_setting_as_missing(aws):
    aws.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    aws.client("s3").delete_bucket_ownership_controls(Bucket=BUCKET)
    rows = {row.setting: row for row in sb.run(req(no_kms=True), "check", session=aws).rows}
    assert all(rows[f"public access: {flag}"].found == "not set" for flag in sb.PUBLIC_ACCESS_FLAGS)
    assert rows["object ownership"].found == "not set (ACLs enabled)"
    assert rows["encryption"].found == "none" and rows["encryption"].status == "weak"
    assert rows["policy: TLS only"].found == "no bucket policy"


def test_fix_applies_the_missing_settings_and_keeps_the_users_statements_and_rules(aws):
    weak_bucket(aws, policy=USER_POLICY, rules=[USER_RULE])
    report = sb.run(req(), fix=True, session=aws)
    assert not report.failed and report.result == "fixed"
    assert {s for s in statuses(report).values()} <= {"ok", "fixed", "created"}
    settings = bucket_settings(aws)
    assert settings["versioning"] == "Enabled"
    assert settings["block"] == {flag: True for flag in sb.PUBLIC_ACCESS_FLAGS}
    assert settings["ownership"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    key = aws.client("kms").describe_key(KeyId=f"alias/{BUCKET}")["KeyMetadata"]
    assert settings["encryption"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key["Arn"]
    statements = settings["policy"]["Statement"]
    assert statements[0] == USER_POLICY["Statement"][0]
    assert [s["Sid"] for s in statements] == ["ReadForAuditors", "DenyInsecureTransport"]
    assert USER_RULE in settings["lifecycle"] and len(settings["lifecycle"]) == 2
    assert sb.run(req(), "check", session=aws).result == "unchanged"


def test_fix_merges_into_a_single_statement_policy_with_a_clashing_sid(aws):
    statement = {**USER_POLICY["Statement"][0], "Sid": "DenyInsecureTransport"}
    weak_bucket(aws, policy={"Version": "2012-10-17", "Statement": statement})
    sb.run(req(no_kms=True), fix=True, session=aws)
    statements = bucket_settings(aws)["policy"]["Statement"]
    assert statements[0] == statement and statements[1]["Sid"] == "mlplaneDenyInsecureTransport"


def test_an_existing_tls_statement_in_another_form_is_recognised():
    for statement in (
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["s3:*"], "Resource": [ARN, f"{ARN}/*"],
         "Condition": {"Bool": {"aws:securetransport": False}}},
        {"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}},
    ):
        assert sb.denies_insecure_transport(statement, ARN)
    for statement in (
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"{ARN}/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Deny", "NotPrincipal": {"AWS": "x"}, "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ):
        assert not sb.denies_insecure_transport(statement, ARN)


def test_an_existing_bucket_with_its_own_kms_key_keeps_it(aws):
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    sb.run(req(kms_key=key["Arn"]), session=aws)
    report = sb.run(req(), "check", session=aws)  # no --kms-key: the bucket's key is accepted, alias/<bucket> not created
    assert report.result == "unchanged" and report.secrets_provider() == f"awskms://{key['KeyId']}?region={REGION}"
    assert len(kms.list_keys()["Keys"]) == 1


def test_a_bucket_encrypted_with_another_key_than_the_one_asked_for_is_weak(aws):
    kms = aws.client("kms")
    sb.run(req(), session=aws)
    other = kms.create_key()["KeyMetadata"]
    kms.enable_key_rotation(KeyId=other["KeyId"])
    report = sb.run(req(kms_key=other["Arn"]), "check", session=aws)
    assert statuses(report)["encryption"] == "weak"


def test_key_rotation_off_is_weak_and_fixed_only_with_fix(aws):
    kms = aws.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/{BUCKET}", TargetKeyId=key["KeyId"])
    report = sb.run(req(), session=aws)
    assert statuses(report)["kms key rotation"] == "weak" and report.failed
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False
    assert statuses(sb.run(req(), fix=True, session=aws))["kms key rotation"] == "fixed"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True


def test_our_lifecycle_rule_with_other_days_is_advice_and_updated_by_fix(aws):
    sb.run(req(no_kms=True), session=aws)
    report = sb.run(req(no_kms=True, noncurrent_days=30), session=aws)
    assert statuses(report)["lifecycle: noncurrent versions"] == "advice" and not report.failed
    sb.run(req(no_kms=True, noncurrent_days=30), fix=True, session=aws)
    assert bucket_settings(aws)["lifecycle"][0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


def test_check_on_a_missing_bucket_fails_and_creates_nothing(aws):
    report = sb.run(req(), "check", session=aws)
    assert report.result == "missing" and report.failed and "mlplane state bootstrap" in report.summary()
    assert aws.client("s3").list_buckets()["Buckets"] == [] and aws.client("kms").list_keys()["Keys"] == []


def test_a_bucket_in_another_region_is_named(aws):
    aws.client("s3", region_name="eu-central-1").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    with pytest.raises(StateBackendError, match=f"bucket {BUCKET} is in eu-central-1, not in --region {REGION}"):
        sb.run(req(), "check", session=aws)


# --------------------------------------------------------------------------------------------
# Another account's bucket, missing permissions
# --------------------------------------------------------------------------------------------


def test_a_name_taken_by_another_account_is_a_clear_error(aws, monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "222222222222")
    boto3.Session(region_name=REGION).client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    # moto answers HeadBucket of another account's bucket with 200; AWS with 403 (ExpectedBucketOwner differs).
    deny(aws, "HeadBucket", code="403")
    with pytest.raises(StateBackendError, match="belongs to another AWS account .* lacks the IAM permission s3:ListBucket"):
        sb.run(req(), session=aws)
    assert aws.client("kms").list_keys()["Keys"] == []


def test_bucket_already_exists_on_create_is_a_clear_error(aws, monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "222222222222")
    boto3.Session(region_name=REGION).client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.delenv("MOTO_ACCOUNT_ID")

    class NotFound:
        status_code = 404
        headers: dict = {}

    aws.events.register("before-call.s3.HeadBucket", lambda **_: (NotFound(), {"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}))
    with pytest.raises(StateBackendError, match="another AWS account"):
        sb.run(req(no_kms=True), session=aws)


@pytest.mark.parametrize(
    ("operation", "service", "permission"),
    [
        ("CreateBucket", "s3", "s3:CreateBucket"),
        ("CreateKey", "kms", "kms:CreateKey"),
        ("DescribeKey", "kms", "kms:DescribeKey"),
    ],
)
def test_a_denied_call_before_the_bucket_names_the_permission_and_creates_nothing(aws, operation, service, permission):
    deny(aws, operation, service, code="AccessDeniedException" if service == "kms" else "AccessDenied")
    with pytest.raises(StateBackendError) as error:
        sb.run(req(), session=aws)
    assert f"{operation} on" in str(error.value) and "was denied" in str(error.value) and permission in str(error.value)
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_a_denied_call_after_create_names_the_permission_and_how_to_finish(aws):
    deny(aws, "PutBucketPolicy")
    with pytest.raises(StateBackendError) as error:
        sb.run(req(no_kms=True), session=aws)
    message = str(error.value)
    assert "PutBucketPolicy on arn:aws:s3:::acme-pulumi-state was denied" in message and "s3:PutBucketPolicy" in message
    assert "created but not fully configured" in message and "--fix" in message
    deny_again = boto3.Session(region_name=REGION)
    report = sb.run(req(no_kms=True), fix=True, session=deny_again)
    assert statuses(report)["policy: TLS only"] == "fixed" and not report.failed


@pytest.mark.parametrize(
    ("operation", "permission"),
    [
        ("GetBucketEncryption", "s3:GetEncryptionConfiguration"),
        ("GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
        ("GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
        ("PutBucketEncryption", "s3:PutEncryptionConfiguration"),
    ],
)
def test_a_denied_check_or_fix_names_the_iam_permission(aws, operation, permission):
    weak_bucket(aws)
    deny(aws, operation)
    with pytest.raises(StateBackendError, match=f"{operation} on {ARN} was denied .* needs the IAM permission {permission}"):
        sb.run(req(), fix=operation.startswith("Put"), session=aws)


def test_no_credentials_is_a_clear_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StateBackendError, match="no AWS credentials found"):
        sb.run(req(), session=boto3.Session(region_name=REGION))


def test_every_permission_named_is_in_the_documented_policy():
    allowed = {a for s in sb.iam_policy()["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    for operation, permission in sb.PERMISSIONS.items():
        if operation == "GetCallerIdentity":
            continue
        named = {word.strip("(),") for word in permission.split() if ":" in word}
        assert named <= allowed, (operation, named - allowed)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

REGIONS = {"aws": ["eu-west-1", "us-east-1"], "aws-cn": ["cn-north-1"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": "Acme_State"}, "--bucket 'Acme_State': not a valid S3 bucket name"),
        ({"bucket": "ab"}, "--bucket 'ab': not a valid S3 bucket name (allowed: 3-63"),
        ({"bucket": "a" * 64}, "not a valid S3 bucket name"),
        ({"bucket": "acme.state"}, "--bucket 'acme.state': periods are not allowed"),
        ({"bucket": "xn--state"}, "the prefix 'xn--' is reserved"),
        ({"bucket": "state-s3alias"}, "the suffix '-s3alias' is reserved"),
        ({"bucket": "-state"}, "not a valid S3 bucket name"),
        ({"region": "eu-west-9"}, "--region 'eu-west-9': not an S3 region known to botocore (allowed: eu-west-1"),
        ({"region": "Frankfurt"}, "--region 'Frankfurt': not an S3 region"),
        ({"region": None}, "--region: not given and neither AWS_REGION nor AWS_DEFAULT_REGION is set"),
        ({"kms_key": "my-key"}, "--kms-key 'my-key': not a KMS key reference (allowed: alias/NAME"),
        ({"kms_key": "alias/"}, "--kms-key 'alias/': not a valid KMS alias"),
        ({"kms_key": "alias/has space"}, "not a valid KMS alias"),
        ({"kms_key": "alias/aws/s3"}, "alias/aws/ names AWS managed keys"),
        ({"kms_key": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}, "the key is in us-east-1, the bucket in eu-west-1"),
        ({"kms_key": "arn:aws:kms:eu-west-1:123:key/x"}, "not a KMS key or alias ARN"),
        ({"kms_key": "alias/x", "no_kms": True}, "--no-kms and --kms-key 'alias/x': choose one"),
        ({"noncurrent_days": 0}, "--noncurrent-days 0: allowed 1-3650"),
        ({"profile": "a b"}, "--profile 'a b': not a profile name"),
    ],
)
def test_bad_input_names_the_option_what_was_given_and_what_is_allowed(kwargs, message):
    args = {"bucket": BUCKET, "region": REGION, **kwargs}
    with pytest.raises(StateInputError) as error:
        sb.request(args.pop("bucket"), args.pop("region"), env={}, regions=REGIONS, **args)
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_every_problem_is_reported_at_once():
    with pytest.raises(StateInputError) as error:
        sb.request("Bad", "nowhere-1", kms_key="nope", noncurrent_days=-1, env={}, regions=REGIONS)
    assert len(error.value.problems) == 4


def test_good_input_and_the_region_from_the_environment():
    assert sb.request(BUCKET, None, env={"AWS_REGION": "cn-north-1"}, regions=REGIONS).region == "cn-north-1"
    for key in ("alias/team/state_1", "1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab",
                "arn:aws:kms:eu-west-1:123456789012:alias/state", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"):
        assert sb.request(BUCKET, REGION, kms_key=key, env={}, regions=REGIONS).key_ref == key
    assert sb.request(BUCKET, REGION, env={}, regions=REGIONS).key_ref == f"alias/{BUCKET}"
    assert sb.request(BUCKET, REGION, no_kms=True, env={}, regions=REGIONS).key_ref is None


def test_the_regions_come_from_botocore():
    regions = sb.known_regions()
    assert "us-east-1" in regions["aws"] and "cn-north-1" in regions["aws-cn"]


def test_the_documented_bootstrap_policy_is_the_one_the_code_names():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "state.md").read_text()
    block = text.split("iam_policy() by tests/unit/tooling/test_state_backend.py. -->\n```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == sb.iam_policy()


def test_a_users_own_whole_bucket_rule_satisfies_the_lifecycle(aws):
    rule = {"ID": "theirs", "Filter": {}, "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 365},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}
    weak_bucket(aws, rules=[rule])
    rows = {row.setting: row for row in sb.run(req(no_kms=True), "check", session=aws).rows}
    assert rows["lifecycle: noncurrent versions"].status == "ok" and "365 days (rule theirs)" in rows["lifecycle: noncurrent versions"].found
    assert rows["lifecycle: incomplete uploads"].status == "ok"
    narrower = {**rule, "ID": "logs", "Filter": {"Prefix": "logs/"}}
    aws.client("s3").put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [narrower]})
    rows = {row.setting: row for row in sb.run(req(no_kms=True), "check", session=aws).rows}
    assert rows["lifecycle: noncurrent versions"].status == "advice"


def test_check_never_fixes():
    with pytest.raises(ValueError):
        sb.run(req(), "check", fix=True)
