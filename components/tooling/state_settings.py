"""What the Pulumi state bucket must have, and the input and report of ``mlplane state bootstrap|check``
(issue 11, item 9; docs/state.md). No AWS calls here: components/tooling/state_backend.py makes them.

The bucket holds every stack's state (the cluster-admin kubeconfig, every generated credential,
encrypted by the stack's secrets provider), so it gets: versioning, default encryption (SSE-KMS with
a customer key, or SSE-S3 with ``--no-kms``), all four public-access blocks, ``BucketOwnerEnforced``
object ownership, a bucket policy denying requests without TLS (``aws:SecureTransport = false``) and a
lifecycle rule on Pulumi's prefix (``.pulumi/``) expiring noncurrent versions after N days and
aborting incomplete multipart uploads.

Upstream facts, each read from the source named:
- Bucket names: AWS "General purpose bucket naming rules" (docs.aws.amazon.com/AmazonS3/latest/
  userguide/bucketnamingrules.html). KMS alias names: ``AliasNameType`` in botocore's KMS model
  (``^[a-zA-Z0-9:/_-]+$``, 1-256 characters; ``alias/aws/`` is reserved for AWS managed keys).
- Pulumi's DIY backend keeps everything under ``.pulumi/`` in the bucket (Pulumi docs, "Using a DIY
  backend").
- The login URL: gocloud.dev ``aws.V2ConfigFromURLParams`` (v0.46.1-0.20260810195832-b5401c07b5f1,
  the version pulumi/pkg v3.259.0 requires) takes ``region`` and ``profile`` and ignores ``awssdk``;
  the secrets provider: gocloud ``secrets/awskms`` ``OpenKeeperURL`` (key ID = host + path, so
  ``awskms://alias/NAME?region=R`` or ``awskms://KEY-ID?region=R``); Pulumi's
  ``pulumi stack init --secrets-provider`` reference shows the same forms.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_NONCURRENT_DAYS = 90
ABORT_MULTIPART_DAYS = 7
#: Pulumi keeps everything under this prefix of the bucket (the DIY backend docs: ``s3://bucket/.pulumi``).
STATE_PREFIX = ".pulumi/"
LIFECYCLE_RULE_ID = "mlplane-state-versions"
TLS_SID = "DenyInsecureTransport"
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

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


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies_insecure_transport(statement: Mapping[str, Any], bucket_arn: str) -> bool:
    """A Deny for everyone of every S3 action on the bucket and its objects when TLS is not used."""
    if statement.get("Effect") != "Deny" or "NotPrincipal" in statement or "NotAction" in statement:
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))):
        return False
    if not {"s3:*", "*"} & set(as_list(statement.get("Action"))):
        return False
    resources = set(as_list(statement.get("Resource")))
    if not ({"*", f"{bucket_arn}*"} & resources or {bucket_arn, f"{bucket_arn}/*"} <= resources):
        return False
    for operator, conditions in (statement.get("Condition") or {}).items():
        if operator.lower() != "bool" or not isinstance(conditions, dict):
            continue
        for key, value in conditions.items():
            if key.lower() == "aws:securetransport" and [str(v).lower() for v in as_list(value)] == ["false"]:
                return True
    return False


def merged_policy(existing: Mapping[str, Any] | None, bucket_arn: str) -> dict[str, Any]:
    """The user's policy with the TLS-only statement added; every statement of theirs kept as is."""
    policy = copy.deepcopy(dict(existing or {}))
    policy.setdefault("Version", "2012-10-17")
    statements = as_list(policy.get("Statement", []))
    sids = {s.get("Sid") for s in statements if isinstance(s, dict)}
    statement = tls_statement(bucket_arn)
    if TLS_SID in sids:
        statement["Sid"] = next(f"mlplane{TLS_SID}{n or ''}" for n in range(100) if f"mlplane{TLS_SID}{n or ''}" not in sids)
    policy["Statement"] = [*statements, statement]
    return policy


def covers_state(rule: Mapping[str, Any]) -> bool:
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


def iam_policy(bucket: str = "BUCKET", region: str = "REGION", account: str = "ACCOUNT", partition: str = "aws") -> dict[str, Any]:
    """The IAM policy ``mlplane state bootstrap --fix`` needs at most (docs/state.md)."""
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "StateBucket", "Effect": "Allow", "Action": sorted({
                "s3:CreateBucket", "s3:ListBucket", "s3:GetBucketVersioning", "s3:PutBucketVersioning",
                "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock", "s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls",
                "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"}),
             "Resource": arn},
            # CreateKey names no resource; the others apply to the key, unknown until it exists.
            {"Sid": "StateKey", "Effect": "Allow", "Action": sorted({
                "kms:CreateKey", "kms:TagResource", "kms:DescribeKey", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation"}),
             "Resource": "*"},
            {"Sid": "StateKeyAlias", "Effect": "Allow", "Action": "kms:CreateAlias",
             "Resource": [f"arn:{partition}:kms:{region}:{account}:alias/{bucket}", f"arn:{partition}:kms:{region}:{account}:key/*"]},
        ],
    }
