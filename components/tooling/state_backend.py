"""The AWS side of ``mlplane state bootstrap`` and ``mlplane state check``: the S3 bucket (and KMS
key) behind Pulumi's self-managed state backend, made to have what state_settings.py asks for
(issue 11, item 9; docs/state.md).

A bucket this module creates is configured in full. An existing bucket is inspected setting by
setting and never changed unless the caller asks for ``fix``; then only the missing settings are
applied, the TLS-only statement is merged into the user's policy (their statements are kept) and the
lifecycle rule is merged into the user's rules. Every AWS error becomes a :class:`StateBackendError`
naming the API call and, for a denial, the IAM permission it needs; bad input is a
:class:`StateInputError` raised before any call. boto3 only (``pip install 'mlplane[aws]'``).

The IAM permission per API call is read from the "Permissions" section of each operation in
botocore's service models (``botocore/data/s3/2006-03-01/service-2.json``: HeadBucket needs
``s3:ListBucket``, PutBucketEncryption ``s3:PutEncryptionConfiguration``, PutPublicAccessBlock
``s3:PutBucketPublicAccessBlock``, PutBucketLifecycleConfiguration ``s3:PutLifecycleConfiguration``;
``botocore/data/kms/2014-11-01/service-2.json``: CreateKey with tags also needs ``kms:TagResource``,
CreateAlias ``kms:CreateAlias`` on the alias and the key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mlplane.tooling.state_settings import (  # noqa: F401 (re-exported: the commands and tests use them from here)
    ABORT_MULTIPART_DAYS,
    DEFAULT_NONCURRENT_DAYS,
    FAILING,
    LIFECYCLE_RULE_ID,
    PUBLIC_ACCESS_FLAGS,
    STATE_PREFIX,
    TLS_SID,
    Report,
    Request,
    Row,
    StateBackendError,
    StateInputError,
    as_list,
    covers_state,
    bucket_problems,
    denies_insecure_transport,
    iam_policy,
    kms_problems,
    known_regions,
    lifecycle_rule,
    merged_policy,
    request,
    tls_statement,
)

#: API call -> the IAM permission it needs (botocore's service models, see the module docstring).
PERMISSIONS = {
    "HeadBucket": "s3:ListBucket",
    "CreateBucket": "s3:CreateBucket and s3:PutBucketOwnershipControls",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
    "PutBucketOwnershipControls": "s3:PutBucketOwnershipControls",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DescribeKey": "kms:DescribeKey",
    "CreateKey": "kms:CreateKey and kms:TagResource",
    "CreateAlias": "kms:CreateAlias (on the alias and the key)",
    "GetKeyRotationStatus": "kms:GetKeyRotationStatus",
    "EnableKeyRotation": "kms:EnableKeyRotation",
    "GetCallerIdentity": "none (sts:GetCallerIdentity is always allowed)",
}
#: What to do about an error code, where AWS's own message does not say it.
HINTS = {
    "BucketAlreadyExists": "the name is taken by another AWS account (bucket names are global within a partition): "
                           "choose another --bucket",
    "InvalidBucketAclWithObjectOwnership": "the bucket's ACLs grant access to others: remove those grants before "
                                           "BucketOwnerEnforced can be set",
}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AllAccessDisabled", "403"}

# --------------------------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------------------------


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class _Aws:
    """The clients, every call through :meth:`call`: AWS errors become :class:`StateBackendError`."""

    def __init__(self, req: Request, session: Any = None):
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import ProfileNotFound
        except ImportError:
            raise StateBackendError("boto3 is not installed: pip install 'mlplane[aws]'") from None
        try:
            session = session or boto3.Session(profile_name=req.profile)
        except ProfileNotFound:
            raise StateInputError(f"--profile {req.profile!r}: no such profile in the AWS config and credentials files") from None
        config = Config(retries={"max_attempts": 3, "mode": "standard"})
        self.req = req
        self.s3 = session.client("s3", region_name=req.region, config=config)
        self.kms = session.client("kms", region_name=req.region, config=config)
        self.sts = session.client("sts", region_name=req.region, config=config)
        self.identity = "the caller"

    def call(self, client: Any, operation: str, resource: str, absent: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """The response, or None when the error code is in ``absent`` (the setting does not exist)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(client, _snake(operation))(**kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in absent:
                return None
            if code in DENIED:
                raise StateBackendError(
                    f"{operation} on {resource} was denied (AccessDenied) for {self.identity}: it needs the IAM permission "
                    f"{PERMISSIONS.get(operation, operation)} on {resource} (docs/state.md lists the whole policy)") from None
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            hint = f" ({HINTS[code]})" if code in HINTS else ""
            raise StateBackendError(f"{operation} on {resource} failed: {code}: {message}{hint}") from None
        except NoCredentialsError:
            raise StateBackendError("no AWS credentials found: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID "
                                    "and AWS_SECRET_ACCESS_KEY, or run where an instance or pod role is available") from None
        except BotoCoreError as error:
            raise StateBackendError(f"{operation} on {resource} failed: {error}") from None


@dataclass
class _Key:
    ref: str  # what the secrets provider uses: alias/NAME or the key ID
    arn: str


class _Run:
    def __init__(self, req: Request, mode: str, fix: bool, session: Any):
        self.req, self.mode, self.fix = req, mode, fix
        self.aws = _Aws(req, session)
        self.report = Report(req, mode)

    # -- KMS --------------------------------------------------------------------------------

    def describe(self, ref: str) -> dict[str, Any] | None:
        response = self.aws.call(self.aws.kms, "DescribeKey", ref, absent=("NotFoundException",), KeyId=ref)
        return None if response is None else response["KeyMetadata"]

    def key(self, create: bool) -> _Key | None:
        """The key asked for (created with its alias when ``create`` and the alias does not exist)."""
        ref = self.req.key_ref
        assert ref is not None
        rows = self.report.rows
        label = f"--kms-key {ref}" if self.req.kms_key else f"the KMS key {ref} (the default of --kms-key)"
        meta = self.describe(ref)
        if meta is None:
            if not ref.startswith("alias/"):
                raise StateBackendError(f"{label}: no such key in {self.req.region} for account {self.report.account} "
                                        "(only an alias/NAME is created when missing)")
            if not create:
                rows.append(Row("kms key", "weak", "no such alias", f"{ref} (symmetric, enabled; created by --fix)"))
                return None
            created = self.aws.call(
                self.aws.kms, "CreateKey", f"account {self.report.account}",
                Description=f"mlplane: Pulumi state in s3://{self.req.bucket} and the stacks' secrets",
                KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT",
                Tags=[{"TagKey": "managed-by", "TagValue": "mlplane"}, {"TagKey": "mlplane:state-bucket", "TagValue": self.req.bucket}],
            )["KeyMetadata"]
            try:
                self.aws.call(self.aws.kms, "EnableKeyRotation", created["Arn"], KeyId=created["KeyId"])
                self.aws.call(self.aws.kms, "CreateAlias", ref, AliasName=ref, TargetKeyId=created["KeyId"])
            except StateBackendError as error:
                raise StateBackendError(f"{error}. The key {created['Arn']} was created without its alias: give it the alias "
                                        f"{ref} (aws kms create-alias) or schedule its deletion, then run again") from None
            rows.append(Row("kms key", "created", "none", f"{ref} -> {created['Arn']}"))
            rows.append(Row("kms key rotation", "created", "none", "enabled"))
            return _Key(ref, created["Arn"])
        problems = []
        if meta.get("KeyState") != "Enabled":
            problems.append(f"its state is {meta.get('KeyState')}")
        if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
            problems.append(f"it is a {meta.get('KeySpec')} {meta.get('KeyUsage')} key")
        if meta.get("KeyManager") == "AWS":
            problems.append("it is an AWS managed key")
        if problems:
            raise StateBackendError(f"{label}: {' and '.join(problems)}; S3 default encryption and Pulumi's awskms "
                                    "secrets provider need an enabled customer managed symmetric ENCRYPT_DECRYPT key")
        rows.append(Row("kms key", "ok", f"{ref} -> {meta['Arn']}", f"{ref} (symmetric, enabled)"))
        self.rotation(meta)
        provider_ref = ref if ref.startswith("alias/") else meta["KeyId"]
        if ref.startswith("arn:") and ":alias/" in ref:
            provider_ref = ref.split(":", 5)[5]
        return _Key(provider_ref, meta["Arn"])

    def rotation(self, meta: Mapping[str, Any]) -> None:
        status = self.aws.call(self.aws.kms, "GetKeyRotationStatus", meta["Arn"], KeyId=meta["KeyId"])
        if status.get("KeyRotationEnabled"):
            self.report.rows.append(Row("kms key rotation", "ok", "enabled", "enabled"))
        elif self.fix:
            self.aws.call(self.aws.kms, "EnableKeyRotation", meta["Arn"], KeyId=meta["KeyId"])
            self.report.rows.append(Row("kms key rotation", "fixed", "disabled", "enabled"))
        else:
            self.report.rows.append(Row("kms key rotation", "weak", "disabled", "enabled"))

    # -- the bucket -------------------------------------------------------------------------

    def start(self) -> None:
        identity = self.aws.call(self.aws.sts, "GetCallerIdentity", "the caller")
        self.report.account = identity["Account"]
        self.aws.identity = identity.get("Arn", identity["Account"])
        self.partition = identity.get("Arn", "arn:aws:").split(":")[1] or "aws"
        self.arn = f"arn:{self.partition}:s3:::{self.req.bucket}"

    def exists(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket = self.req.bucket
        try:
            head = self.aws.s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=self.report.account)
        except BotoCoreError as error:
            raise StateBackendError(f"HeadBucket on {self.arn} failed: {error}") from None
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.response.get("Error", {}).get("Code", ""))
            if status == 404 or code in ("404", "NoSuchBucket"):
                return False
            if status == 403 or code in DENIED:
                raise StateBackendError(
                    f"bucket {bucket} exists but account {self.report.account} cannot use it: either it belongs to another "
                    "AWS account (bucket names are global: choose another --bucket) or your identity "
                    f"({self.aws.identity}) lacks the IAM permission s3:ListBucket on {self.arn} (HeadBucket)") from None
            raise StateBackendError(f"HeadBucket on {self.arn} failed: {code} (HTTP {status})") from None
        region = head.get("BucketRegion") or head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if region and region != self.req.region:
            raise StateBackendError(f"bucket {bucket} is in {region}, not in --region {self.req.region}: run again with --region {region}")
        return True

    def create(self) -> None:
        req, s3, arn = self.req, self.aws.s3, self.arn
        key = self.key(create=True) if req.key_ref else None
        kwargs: dict[str, Any] = {"Bucket": req.bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if req.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": req.region}
        self.aws.call(s3, "CreateBucket", arn, **kwargs)
        self.report.created_bucket = True
        try:
            self.aws.call(s3, "PutPublicAccessBlock", arn, Bucket=req.bucket,
                          PublicAccessBlockConfiguration={flag: True for flag in PUBLIC_ACCESS_FLAGS})
            self.aws.call(s3, "PutBucketEncryption", arn, Bucket=req.bucket, ServerSideEncryptionConfiguration=self.encryption(key))
            self.aws.call(s3, "PutBucketVersioning", arn, Bucket=req.bucket, VersioningConfiguration={"Status": "Enabled"})
            self.aws.call(s3, "PutBucketPolicy", arn, Bucket=req.bucket, Policy=json.dumps(merged_policy(None, arn)))
            self.aws.call(s3, "PutBucketLifecycleConfiguration", arn, Bucket=req.bucket,
                          LifecycleConfiguration={"Rules": [lifecycle_rule(req.noncurrent_days)]})
        except StateBackendError as error:
            raise StateBackendError(f"{error}. The bucket {req.bucket} was created but not fully configured: once the "
                                    f"permission is granted, finish it with `mlplane state bootstrap --bucket {req.bucket} "
                                    f"--region {req.region} --fix`") from None
        rows = self.report.rows
        rows.insert(0, Row("bucket", "created", "none", f"{req.bucket} in {req.region}"))
        rows.extend(Row(f"public access: {flag}", "created", "none", "true") for flag in PUBLIC_ACCESS_FLAGS)
        rows.append(Row("object ownership", "created", "none", "BucketOwnerEnforced"))
        rows.append(Row("encryption", "created", "none", self.expected_encryption(key)))
        rows.append(Row("versioning", "created", "none", "Enabled"))
        rows.append(Row("policy: TLS only", "created", "none", f"Deny s3:* when aws:SecureTransport is false ({TLS_SID})"))
        rows.extend(self.lifecycle_rows_created())
        self.report.key = key.ref if key else None

    def encryption(self, key: _Key | None) -> dict[str, Any]:
        if key is None:
            return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
        return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key.arn},
                           "BucketKeyEnabled": True}]}

    def expected_encryption(self, key: _Key | None) -> str:
        if self.req.no_kms:
            return "AES256 (SSE-S3) or stronger"
        return f"aws:kms with {key.arn if key else self.req.key_ref}"

    def lifecycle_rows_created(self) -> list[Row]:
        days = self.req.noncurrent_days
        return [Row("lifecycle: noncurrent versions", "created", "none", f"expire after {days} days ({STATE_PREFIX})"),
                Row("lifecycle: incomplete uploads", "created", "none", f"abort after {ABORT_MULTIPART_DAYS} days")]

    def inspect(self) -> None:
        """An existing bucket: each setting compared, the weaker ones fixed only with ``fix``."""
        req, s3, arn, rows = self.req, self.aws.s3, self.arn, self.report.rows
        rows.append(Row("bucket", "ok", f"{req.bucket} in {req.region} (exists)", f"{req.bucket} in {req.region}"))
        fixes: dict[str, Callable[[], None]] = {}
        pending: list[tuple[Row, str]] = []

        def fixable(row: Row, fix_id: str, fixer: Callable[[], None]) -> None:
            rows.append(row)
            pending.append((row, fix_id))
            fixes.setdefault(fix_id, fixer)

        block = self.aws.call(s3, "GetPublicAccessBlock", arn, absent=("NoSuchPublicAccessBlockConfiguration",), Bucket=req.bucket)
        flags = (block or {}).get("PublicAccessBlockConfiguration", {})
        for flag in PUBLIC_ACCESS_FLAGS:
            row = Row(f"public access: {flag}", "ok", str(flags[flag]).lower() if flag in flags else "not set", "true")
            if flags.get(flag) is True:
                rows.append(row)
            else:
                fixable(replace(row, status="weak"), "public-access", lambda: self.aws.call(
                    s3, "PutPublicAccessBlock", arn, Bucket=req.bucket,
                    PublicAccessBlockConfiguration={f: True for f in PUBLIC_ACCESS_FLAGS}))

        controls = self.aws.call(s3, "GetBucketOwnershipControls", arn, absent=("OwnershipControlsNotFoundError",), Bucket=req.bucket)
        ownership = next((r.get("ObjectOwnership") for r in (controls or {}).get("OwnershipControls", {}).get("Rules", [])), None)
        row = Row("object ownership", "ok", ownership or "not set (ACLs enabled)", "BucketOwnerEnforced")
        if ownership == "BucketOwnerEnforced":
            rows.append(row)
        else:
            fixable(replace(row, status="weak"), "ownership", lambda: self.aws.call(
                s3, "PutBucketOwnershipControls", arn, Bucket=req.bucket,
                OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}))

        self.inspect_encryption(fixable)

        versioning = self.aws.call(s3, "GetBucketVersioning", arn, Bucket=req.bucket).get("Status")
        row = Row("versioning", "ok", versioning or "never enabled", "Enabled")
        if versioning == "Enabled":
            rows.append(row)
        else:
            fixable(replace(row, status="weak"), "versioning", lambda: self.aws.call(
                s3, "PutBucketVersioning", arn, Bucket=req.bucket, VersioningConfiguration={"Status": "Enabled"}))

        response = self.aws.call(s3, "GetBucketPolicy", arn, absent=("NoSuchBucketPolicy",), Bucket=req.bucket)
        policy = json.loads(response["Policy"]) if response else None
        statements = [s for s in as_list((policy or {}).get("Statement", [])) if isinstance(s, dict)]
        tls = next((s for s in statements if denies_insecure_transport(s, arn)), None)
        expected = "Deny s3:* when aws:SecureTransport is false"
        if tls is not None:
            rows.append(Row("policy: TLS only", "ok", f"statement {tls.get('Sid') or '(no Sid)'}", expected))
        else:
            found = f"{len(statements)} statement(s), none denies plain HTTP" if policy else "no bucket policy"
            fixable(Row("policy: TLS only", "weak", found, f"{expected} (merged into the policy, its statements kept)"), "policy",
                 lambda: self.aws.call(s3, "PutBucketPolicy", arn, Bucket=req.bucket, Policy=json.dumps(merged_policy(policy, arn))))

        self.inspect_lifecycle(fixable)

        if self.fix:
            for fixer in fixes.values():
                fixer()
            for row, _ in pending:
                row.status = "fixed"

    def inspect_encryption(self, fixable: Callable[[Row, str, Callable[[], None]], None]) -> None:
        req, s3, arn, rows = self.req, self.aws.s3, self.arn, self.report.rows
        response = self.aws.call(s3, "GetBucketEncryption", arn, absent=("ServerSideEncryptionConfigurationNotFoundError",),
                                 Bucket=req.bucket)
        defaults = [r.get("ApplyServerSideEncryptionByDefault") or {}
                    for r in (response or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])]
        default = next((d for d in defaults if d.get("SSEAlgorithm")), {})
        algorithm, key_id = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")
        kms = algorithm in ("aws:kms", "aws:kms:dsse")
        found = ("none" if not algorithm else "AES256 (SSE-S3)" if algorithm == "AES256"
                 else f"{algorithm} with {key_id or 'the AWS managed key aws/s3'}")

        def put(key: _Key | None) -> Callable[[], None]:
            return lambda: self.aws.call(s3, "PutBucketEncryption", arn, Bucket=req.bucket,
                                         ServerSideEncryptionConfiguration=self.encryption(key))

        if req.no_kms:
            row = Row("encryption", "ok", found, self.expected_encryption(None))
            if algorithm in ("AES256", "aws:kms", "aws:kms:dsse"):
                rows.append(row)
            else:
                fixable(replace(row, status="weak"), "encryption", put(None))
            return
        if kms and req.kms_key is None:
            # No key asked for: the bucket's own KMS key is kept (and offered to the secrets provider).
            if not key_id:
                rows.append(Row("encryption", "advice", found, "aws:kms with a customer managed key (Pulumi's secrets "
                                "provider cannot use aws/s3): --kms-key, then --fix"))
                return
            meta = self.describe(key_id)
            if meta is not None:
                default = self.describe(req.key_ref) if req.key_ref else None
                ref = (req.key_ref if default is not None and default["Arn"] == meta["Arn"]
                       else key_id if key_id.startswith("alias/") else meta["KeyId"])
                rows.append(Row("encryption", "ok", found, "aws:kms (the bucket's key is kept)"))
                rows.append(Row("kms key", "ok", f"{ref} -> {meta['Arn']}", "an enabled symmetric key"))
                self.rotation(meta)
                self.report.key = ref
                return
        key = self.key(create=self.fix)
        if key is not None:
            self.report.key = key.ref
        if kms and key is not None and key_id is not None:
            same = key_id in (key.arn, key.arn.rsplit("/", 1)[-1], req.key_ref)
            if not same:
                meta = self.describe(key_id)
                same = meta is not None and meta["Arn"] == key.arn
            if same:
                rows.append(Row("encryption", "ok", found, self.expected_encryption(key)))
                return
        fixable(Row("encryption", "weak", found, self.expected_encryption(key)), "encryption", put(key))

    def inspect_lifecycle(self, fixable: Callable[[Row, str, Callable[[], None]], None]) -> None:
        req, s3, arn, rows = self.req, self.aws.s3, self.arn, self.report.rows
        response = self.aws.call(s3, "GetBucketLifecycleConfiguration", arn, absent=("NoSuchLifecycleConfiguration",),
                                 Bucket=req.bucket)
        rules = list((response or {}).get("Rules", []))
        days = req.noncurrent_days

        def put() -> None:
            kept = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
            self.aws.call(s3, "PutBucketLifecycleConfiguration", arn, Bucket=req.bucket,
                          LifecycleConfiguration={"Rules": [*kept, lifecycle_rule(days)]})

        expected = f"expire after {days} days ({STATE_PREFIX})"
        ours = next((r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID), None)
        expiring = [r for r in rules if covers_state(r) and (r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")]
        if expiring:
            rule = ours if ours in expiring else expiring[0]
            now = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
            row = Row("lifecycle: noncurrent versions", "ok", f"expire after {now} days (rule {rule.get('ID', '?')})", expected)
            if rule is ours and now != days:
                fixable(replace(row, status="advice"), "lifecycle", put)
            else:
                rows.append(row)
        else:
            fixable(Row("lifecycle: noncurrent versions", "advice", "no rule: old versions kept forever", expected), "lifecycle", put)
        expected = f"abort after {ABORT_MULTIPART_DAYS} days"
        aborting = [r for r in rules if covers_state(r) and r.get("AbortIncompleteMultipartUpload")]
        if aborting:
            now = aborting[0]["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")
            rows.append(Row("lifecycle: incomplete uploads", "ok", f"abort after {now} days", expected))
        else:
            fixable(Row("lifecycle: incomplete uploads", "advice", "no rule", expected), "lifecycle", put)



def run(req: Request, mode: str = "bootstrap", *, fix: bool = False, session: Any = None) -> Report:
    """Bootstrap (create or inspect, and with ``fix`` repair) or check the state bucket.

    ``mode`` is ``bootstrap`` or ``check`` (read only: never creates, never fixes). ``session`` is a
    boto3 Session (default: one for ``req.profile``).
    """
    if mode not in ("bootstrap", "check") or (fix and mode != "bootstrap"):
        raise ValueError(f"mode {mode!r} with fix={fix}")
    state = _Run(req, mode, fix, session)
    state.start()
    if state.exists():
        state.inspect()
    elif mode == "check":
        state.report.rows.append(Row("bucket", "missing", "none", f"{req.bucket} in {req.region}"))
    else:
        state.create()
    return state.report
