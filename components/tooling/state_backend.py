"""Pulumi's self-managed S3 state backend: the bucket (and KMS key) behind ``mlplane state bootstrap``
and ``mlplane state check`` (issue 11, item 9; docs/state.md).

The bucket holds every stack's state (the cluster-admin kubeconfig, every generated credential,
encrypted by the stack's secrets provider), so it gets: versioning, default encryption (SSE-KMS with
a customer key, or SSE-S3 with ``--no-kms``), all four public-access blocks, ``BucketOwnerEnforced``
object ownership, a bucket policy denying requests without TLS (``aws:SecureTransport = false``) and a
lifecycle rule on Pulumi's prefix (``.pulumi/``) expiring noncurrent versions after N days and
aborting incomplete multipart uploads.

A bucket this module creates is configured in full. An existing bucket is inspected setting by
setting and never changed unless the caller asks for ``fix``; then only the missing settings are
applied, the TLS-only statement is merged into the user's policy (their statements are kept) and the
lifecycle rule is merged into the user's rules. Every AWS error becomes a :class:`StateBackendError`
naming the API call and, for a denial, the IAM permission it needs; bad input is a
:class:`StateInputError` raised before any call. boto3 only (``pip install 'mlplane[aws]'``).

Upstream facts, each read from the source named:
- IAM permission per API call: the "Permissions" section of each operation in botocore's service
  models (``botocore/data/s3/2006-03-01/service-2.json``: HeadBucket needs ``s3:ListBucket``,
  PutBucketEncryption ``s3:PutEncryptionConfiguration``, PutPublicAccessBlock
  ``s3:PutBucketPublicAccessBlock``, PutBucketLifecycleConfiguration ``s3:PutLifecycleConfiguration``;
  ``botocore/data/kms/2014-11-01/service-2.json``: CreateKey with tags also ``kms:TagResource``).
- Bucket names: AWS "General purpose bucket naming rules" (docs.aws.amazon.com/AmazonS3/latest/
  userguide/bucketnamingrules.html). KMS alias names: ``AliasNameType`` in botocore's KMS model
  (``^[a-zA-Z0-9:/_-]+$``, 1-256 characters; ``alias/aws/`` is reserved).
- The login URL: gocloud.dev ``aws.V2ConfigFromURLParams`` (v0.46.1-0.20260810195832-b5401c07b5f1,
  the version pulumi/pkg v3.259.0 requires) takes ``region`` and ``profile`` and ignores ``awssdk``;
  the secrets provider: gocloud ``secrets/awskms`` ``OpenKeeperURL`` (key ID = host + path, so
  ``awskms://alias/NAME?region=R`` or ``awskms://KEY-ID?region=R``); Pulumi's
  ``pulumi stack init --secrets-provider`` reference shows the same forms.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_NONCURRENT_DAYS = 90
ABORT_MULTIPART_DAYS = 7
#: Pulumi keeps everything under this prefix of the bucket (the DIY backend docs: ``s3://bucket/.pulumi``).
STATE_PREFIX = ".pulumi/"
LIFECYCLE_RULE_ID = "mlplane-state-versions"
TLS_SID = "DenyInsecureTransport"
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

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

#: Row statuses: ``weak`` and ``missing`` fail (exit 1); ``advice`` is reported without failing.
FAILING = ("weak", "missing")


class StateInputError(Exception):
    """Bad input: one line per problem, naming the option, what was given and what is allowed (exit 2)."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("; ".join(problems))


class StateBackendError(Exception):
    """AWS refused or failed a call: one message naming the call and what to do (exit 1)."""


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
ALIAS = re.compile(r"alias/[a-zA-Z0-9/_-]+")
KEY_ID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})")
KEY_ARN = re.compile(r"arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(key/(?P<id>\S+)|(?P<alias>alias/\S+))")


@dataclass(frozen=True)
class Request:
    """What to bootstrap or check, validated."""

    bucket: str
    region: str
    #: The KMS key asked for (``alias/NAME``, key ID or ARN); None: the default ``alias/<bucket>``.
    kms_key: str | None = None
    no_kms: bool = False
    noncurrent_days: int = DEFAULT_NONCURRENT_DAYS
    profile: str | None = None

    @property
    def key_ref(self) -> str | None:
        return None if self.no_kms else (self.kms_key or f"alias/{self.bucket}")


def bucket_problems(bucket: str) -> list[str]:
    given = f"--bucket {bucket!r}"
    rules = "3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
    if not 3 <= len(bucket) <= 63 or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", bucket):
        return [f"{given}: not a valid S3 bucket name (allowed: {rules})"]
    if "." in bucket:
        return [f"{given}: periods are not allowed (AWS recommends avoiding them: HTTPS requests in virtual-hosted "
                f"style fail certificate checks on dotted names, and the default KMS alias is alias/<bucket>); allowed: {rules}"]
    try:
        ipaddress.ip_address(bucket)
        return [f"{given}: a bucket name must not look like an IP address"]
    except ValueError:
        pass
    for prefix in BUCKET_RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return [f"{given}: the prefix {prefix!r} is reserved by AWS (reserved: {', '.join(BUCKET_RESERVED_PREFIXES)})"]
    for suffix in BUCKET_RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return [f"{given}: the suffix {suffix!r} is reserved by AWS (reserved: {', '.join(BUCKET_RESERVED_SUFFIXES)})"]
    return []


def known_regions() -> dict[str, list[str]]:
    """Partition -> the S3 regions the installed botocore knows (offline)."""
    import boto3

    session = boto3.session.Session()
    return {p: session.get_available_regions("s3", partition_name=p) for p in session.get_available_partitions()}


def kms_problems(value: str, region: str) -> list[str]:
    given = f"--kms-key {value!r}"
    allowed = "alias/NAME (letters, digits, '/', '_', '-'), a key ID (UUID or mrk-...) or a key ARN in the bucket's region"
    if value.startswith("arn:"):
        match = KEY_ARN.fullmatch(value)
        if not match:
            return [f"{given}: not a KMS key or alias ARN (allowed: {allowed})"]
        if match.group(2) != region:
            return [f"{given}: the key is in {match.group(2)}, the bucket in {region}: S3 default encryption needs a key "
                    "in the bucket's region"]
        value = match.group("alias") or match.group("id")
        if match.group("id"):
            return [] if KEY_ID.fullmatch(value) else [f"{given}: not a KMS key ARN (allowed: {allowed})"]
    if value.startswith("alias/"):
        if not ALIAS.fullmatch(value) or len(value) > 256:
            return [f"{given}: not a valid KMS alias (allowed: {allowed}; at most 256 characters)"]
        if value.startswith("alias/aws/"):
            return [f"{given}: alias/aws/ names AWS managed keys, which neither a bucket policy nor Pulumi's secrets "
                    "provider can use; give a customer managed key (or leave --kms-key out to create alias/<bucket>)"]
        return []
    if KEY_ID.fullmatch(value):
        return []
    return [f"{given}: not a KMS key reference (allowed: {allowed})"]


def request(
    bucket: str,
    region: str | None,
    *,
    kms_key: str | None = None,
    no_kms: bool = False,
    noncurrent_days: int = DEFAULT_NONCURRENT_DAYS,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    regions: Mapping[str, list[str]] | None = None,
) -> Request:
    """Validate the input; every problem at once, as a :class:`StateInputError`."""
    env = os.environ if env is None else env
    problems = bucket_problems(bucket)
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    regions = known_regions() if regions is None else regions
    everywhere = sorted(r for names in regions.values() for r in names)
    if not region:
        problems.append("--region: not given and neither AWS_REGION nor AWS_DEFAULT_REGION is set "
                        f"(allowed: an S3 region, e.g. {', '.join(everywhere[:4])}, ...)")
    elif region not in everywhere:
        near = [r for r in everywhere if r.split("-")[0] == region.split("-")[0]] or everywhere
        problems.append(f"--region {region!r}: not an S3 region known to botocore (allowed: {', '.join(near)}; "
                        "a region newer than the installed boto3 needs `pip install -U boto3`)")
    if no_kms and kms_key:
        problems.append(f"--no-kms and --kms-key {kms_key!r}: choose one (SSE-S3 without a key, or SSE-KMS with it)")
    elif kms_key and region:
        problems.extend(kms_problems(kms_key, region))
    if not 1 <= noncurrent_days <= 3650:
        problems.append(f"--noncurrent-days {noncurrent_days}: allowed 1-3650 (days a replaced state file is kept)")
    if profile is not None and not re.fullmatch(r"[A-Za-z0-9_.+=,@-]+", profile):
        problems.append(f"--profile {profile!r}: not a profile name (letters, digits and _.+=,@-)")
    if problems:
        raise StateInputError(*problems)
    assert region is not None
    return Request(bucket, region, kms_key, no_kms, noncurrent_days, profile)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One setting: ``ok``, ``created`` (just set), ``fixed`` (was weaker, set with fix), ``weak``
    (weaker, left unchanged), ``missing`` or ``advice`` (reported, not failing)."""

    setting: str
    status: str
    found: str
    expected: str

    def as_json(self) -> dict[str, str]:
        return {"setting": self.setting, "status": self.status, "found": self.found, "expected": self.expected}


@dataclass
class Report:
    request: Request
    mode: str
    account: str = ""
    created_bucket: bool = False
    rows: list[Row] = field(default_factory=list)
    #: The KMS key the secrets provider can use (an ``alias/...`` or a key ID), when there is one.
    key: str | None = None

    @property
    def failed(self) -> bool:
        return any(r.status in FAILING for r in self.rows)

    @property
    def changed(self) -> bool:
        return any(r.status in ("created", "fixed") for r in self.rows)

    @property
    def result(self) -> str:
        if self.created_bucket:
            return "created"
        if any(r.status == "missing" for r in self.rows):
            return "missing"
        if self.failed:
            return "weak"
        return "fixed" if self.changed else "unchanged"

    def login_url(self) -> str:
        query = f"region={self.request.region}" + (f"&profile={self.request.profile}" if self.request.profile else "")
        return f"s3://{self.request.bucket}?{query}"

    def secrets_provider(self) -> str | None:
        if not self.key:
            return None
        query = f"region={self.request.region}" + (f"&profile={self.request.profile}" if self.request.profile else "")
        return f"awskms://{self.key}?{query}"

    def summary(self) -> str:
        b = self.request.bucket
        weak = [r.setting for r in self.rows if r.status in FAILING]
        if self.result == "missing":
            return f"bucket {b} does not exist in account {self.account}: create it with `mlplane state bootstrap --bucket {b}`"
        if weak:
            return (f"{len(weak)} setting(s) of bucket {b} are weaker than expected ({', '.join(weak)}); nothing was changed. "
                    "Apply the missing settings with `mlplane state bootstrap ... --fix` (your policy statements and "
                    "lifecycle rules are kept)")
        if self.created_bucket:
            return f"created bucket {b} in {self.request.region} with every setting"
        if self.changed:
            return f"applied {sum(r.status in ('created', 'fixed') for r in self.rows)} missing setting(s) to bucket {b}"
        return f"no change: bucket {b} already has every setting"

    def next_steps(self) -> list[str]:
        steps = [f"pulumi login '{self.login_url()}'"]
        provider = self.secrets_provider()
        if provider:
            steps.append(f"pulumi stack init STACK --secrets-provider '{provider}'   # stack secrets encrypted with the KMS key")
        else:
            steps.append("export PULUMI_CONFIG_PASSPHRASE=...   # a strong secret kept out of git (or PULUMI_CONFIG_PASSPHRASE_FILE), "
                         "before `pulumi stack init STACK`; or pass --secrets-provider awskms://alias/NAME?region=... with a KMS key")
        return steps

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.request.bucket, "region": self.request.region, "account": self.account, "mode": self.mode,
            "result": self.result, "changed": self.changed, "summary": self.summary(),
            "settings": [r.as_json() for r in self.rows],
            "login": f"pulumi login '{self.login_url()}'", "backend_url": self.login_url(),
            "secrets_provider": self.secrets_provider(),
        }


# --------------------------------------------------------------------------------------------
# The desired settings
# --------------------------------------------------------------------------------------------


def tls_statement(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": TLS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def lifecycle_rule(days: int) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": STATE_PREFIX},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies_insecure_transport(statement: Mapping[str, Any], bucket_arn: str) -> bool:
    """A Deny for everyone of every S3 action on the bucket and its objects when TLS is not used."""
    if statement.get("Effect") != "Deny" or "NotPrincipal" in statement or "NotAction" in statement:
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))):
        return False
    if not {"s3:*", "*"} & set(_as_list(statement.get("Action"))):
        return False
    resources = set(_as_list(statement.get("Resource")))
    if "*" not in resources and not {bucket_arn, f"{bucket_arn}/*"} <= resources | ({bucket_arn, f"{bucket_arn}/*"} if f"{bucket_arn}*" in resources else set()):
        return False
    for operator, conditions in (statement.get("Condition") or {}).items():
        if operator.lower() != "bool" or not isinstance(conditions, dict):
            continue
        for key, value in conditions.items():
            if key.lower() == "aws:securetransport" and [str(v).lower() for v in _as_list(value)] == ["false"]:
                return True
    return False


def merged_policy(existing: Mapping[str, Any] | None, bucket_arn: str) -> dict[str, Any]:
    """The user's policy with the TLS-only statement added; every statement of theirs kept as is."""
    policy = copy.deepcopy(dict(existing or {}))
    policy.setdefault("Version", "2012-10-17")
    statements = _as_list(policy.get("Statement", []))
    sids = {s.get("Sid") for s in statements if isinstance(s, dict)}
    statement = tls_statement(bucket_arn)
    if TLS_SID in sids:
        statement["Sid"] = next(f"mlplane{TLS_SID}{n or ''}" for n in range(100) if f"mlplane{TLS_SID}{n or ''}" not in sids)
    policy["Statement"] = [*statements, statement]
    return policy


def _covers_state(rule: Mapping[str, Any]) -> bool:
    """An enabled rule whose filter includes Pulumi's prefix."""
    if rule.get("Status") != "Enabled":
        return False
    filt = rule.get("Filter")
    if filt is None:
        prefix = rule.get("Prefix", "")
    elif not filt:
        prefix = ""
    elif set(filt) == {"Prefix"}:
        prefix = filt["Prefix"]
    else:
        return False  # tags, sizes, And: narrower than every state file
    return STATE_PREFIX.startswith(prefix)


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
        meta = self.describe(ref)
        if meta is None:
            if not ref.startswith("alias/"):
                raise StateBackendError(f"--kms-key {ref}: no such key in {self.req.region} for account {self.report.account} "
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
            raise StateBackendError(f"--kms-key {ref}: {' and '.join(problems)}; S3 default encryption and Pulumi's awskms "
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
        statements = [s for s in _as_list((policy or {}).get("Statement", [])) if isinstance(s, dict)]
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
        expiring = [r for r in rules if _covers_state(r) and (r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")]
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
        aborting = [r for r in rules if _covers_state(r) and r.get("AbortIncompleteMultipartUpload")]
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


def iam_policy(bucket: str = "BUCKET", region: str = "REGION", account: str = "ACCOUNT", partition: str = "aws") -> dict[str, Any]:
    """The IAM policy ``mlplane state bootstrap --fix`` needs at most (docs/state.md)."""
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "StateBucket", "Effect": "Allow", "Resource": arn, "Action": sorted({
                "s3:CreateBucket", "s3:ListBucket", "s3:GetBucketVersioning", "s3:PutBucketVersioning",
                "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock", "s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls",
                "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"})},
            {"Sid": "StateKey", "Effect": "Allow", "Resource": "*", "Action": sorted({
                "kms:CreateKey", "kms:TagResource", "kms:DescribeKey", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation"}),
             },
            {"Sid": "StateKeyAlias", "Effect": "Allow", "Action": "kms:CreateAlias",
             "Resource": [f"arn:{partition}:kms:{region}:{account}:alias/{bucket}", f"arn:{partition}:kms:{region}:{account}:key/*"]},
        ],
    }
